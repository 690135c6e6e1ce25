#include "tests/raft/test_network.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace detcd::raft::testing {

void Classic(Config& c) {
  c.pre_vote = false;
  c.check_quorum = false;
}

std::vector<Entry> EntriesWithTerms(uint64_t first,
                                    const std::vector<uint64_t>& terms) {
  std::vector<Entry> out;
  out.reserve(terms.size());
  for (size_t k = 0; k < terms.size(); ++k) {
    out.push_back(Entry{terms[k], first + k, EntryType::kNormal, {}});
  }
  return out;
}

std::vector<std::pair<uint64_t, uint64_t>> IndexTerms(
    const std::vector<Entry>& ents) {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  out.reserve(ents.size());
  for (const Entry& e : ents) out.emplace_back(e.index, e.term);
  return out;
}

std::vector<Message> Filter(const std::vector<Message>& msgs, MessageType t,
                            NodeId to) {
  std::vector<Message> out;
  for (const Message& m : msgs) {
    if (m.type == t && (to == kNone || m.to == to)) out.push_back(m);
  }
  return out;
}

std::string Describe(const Message& m) {
  std::string s = absl::StrCat(MessageTypeName(m.type), " ", m.from, "->",
                               m.to, " term=", m.term);
  if (m.log_term != 0 || m.index != 0) {
    absl::StrAppend(&s, " log_term=", m.log_term, " index=", m.index);
  }
  if (m.commit != 0) absl::StrAppend(&s, " commit=", m.commit);
  if (!m.entries.empty()) {
    absl::StrAppend(&s, " entries=[",
                    absl::StrJoin(m.entries, ",",
                                  [](std::string* out, const Entry& e) {
                                    absl::StrAppend(out, e.term, "/", e.index);
                                  }),
                    "]");
  }
  if (m.reject) absl::StrAppend(&s, " REJECT hint=", m.reject_hint);
  if (m.snapshot) {
    absl::StrAppend(&s, " snapshot=", m.snapshot->metadata.term, "/",
                    m.snapshot->metadata.index);
  }
  if (!m.context.empty()) absl::StrAppend(&s, " ctx=", m.context);
  return s;
}

std::vector<std::string> Peer::AppliedData() const {
  std::vector<std::string> out;
  for (const Entry& e : applied) {
    if (e.type == EntryType::kNormal && !e.data.empty()) out.push_back(e.data.str());
  }
  return out;
}

Network::Network(const std::vector<NodeId>& ids, NetworkOptions options)
    : options_(std::move(options)),
      rng_(env::SeededRng(options_.seed).Derive("network")) {
  ConfState cs;
  for (NodeId id : ids) {
    bool learner = std::find(options_.learners.begin(), options_.learners.end(),
                             id) != options_.learners.end();
    (learner ? cs.learners : cs.voters).push_back(id);
  }
  std::sort(cs.voters.begin(), cs.voters.end());
  std::sort(cs.learners.begin(), cs.learners.end());
  for (NodeId id : ids) AddPeer(id, &cs);
}

Peer& Network::AddPeer(NodeId id, const ConfState* cs,
                       const std::function<void(MemoryStorage&)>& setup,
                       const ConfigFn& configure) {
  auto p = std::make_unique<Peer>();
  p->id = id;
  p->storage = std::make_unique<MemoryStorage>();
  if (cs != nullptr) p->storage->SetInitialConfState(*cs);
  if (setup) setup(*p->storage);
  const Snapshot& snap = p->storage->snapshot();
  p->conf_state = snap.metadata.conf_state;
  p->applied_index = snap.metadata.index;
  p->snapshot_data = snap.data;
  Peer& ref = *p;
  peers_[id] = std::move(p);
  return BuildRaft(ref, configure);
}

Peer& Network::BuildRaft(Peer& p, const ConfigFn& configure) {
  p.rng = std::make_unique<env::SeededRng>(env::SeededRng(options_.seed).Derive(
      absl::StrCat("raft/", p.id, "/", p.incarnation)));
  Config c;
  c.id = p.id;
  c.storage = p.storage.get();
  c.rng = p.rng.get();
  c.applied = p.applied_index;
  if (options_.configure) options_.configure(c);
  if (configure) configure(c);
  absl::Status valid = c.Validate();
  EXPECT_TRUE(valid.ok()) << "peer " << p.id << ": " << valid;
  p.config = c;
  p.raft = std::make_unique<Raft>(c);
  return p;
}

void Network::Restart(NodeId id, const ConfigFn& configure) {
  Peer& p = peer(id);
  p.raft.reset();
  const Snapshot& snap = p.storage->snapshot();
  p.applied.clear();
  p.applied_index = snap.metadata.index;
  p.conf_state = snap.metadata.conf_state;
  p.conf_history.clear();
  p.snapshot_data = snap.data;
  p.read_states.clear();
  ++p.incarnation;
  BuildRaft(p, configure);
}

Peer& Network::peer(NodeId id) {
  auto it = peers_.find(id);
  if (it == peers_.end()) {
    ADD_FAILURE() << "no peer " << id;
    std::abort();
  }
  return *it->second;
}

std::vector<NodeId> Network::ids() const {
  std::vector<NodeId> out;
  for (const auto& [id, p] : peers_) out.push_back(id);
  return out;
}

void Network::ApplySnapshotToApp(Peer& p, const Snapshot& s) {
  p.applied.clear();
  p.applied_index = s.metadata.index;
  p.conf_state = s.metadata.conf_state;
  p.conf_history.clear();
  p.snapshot_data = s.data;
}

std::vector<Message> Network::Process(NodeId id) {
  Peer& p = peer(id);
  std::vector<Message> out;
  for (int round = 0; p.raft->HasReady(); ++round) {
    if (round > 1000) {
      ADD_FAILURE() << "peer " << id << " keeps producing Ready";
      break;
    }
    Ready rd = p.raft->GetReady();
    const HardState before = p.storage->InitialHardState();
    if (rd.soft_state) p.soft_states.push_back(*rd.soft_state);
    // 0. Early messages leave before this Ready is persisted: only a
    // leader's appends and heartbeats, of a term already durable.
    for (const Message& m : rd.early_messages) {
      EXPECT_EQ(m.from, id) << Describe(m);
      EXPECT_TRUE(m.type == MessageType::kApp ||
                  m.type == MessageType::kHeartbeat)
          << "peer " << id << " sent early: " << Describe(m);
      EXPECT_LE(m.term, before.term)
          << "peer " << id
          << " sent early a term it has not persisted: " << Describe(m);
      out.push_back(m);
    }
    // 1. Snapshot.
    if (rd.snapshot) {
      absl::Status s = p.storage->ApplySnapshot(*rd.snapshot);
      EXPECT_TRUE(s.ok()) << "peer " << id << ": " << s;
      ApplySnapshotToApp(p, *rd.snapshot);
    }
    // 2. Entries and hard state.
    if (!rd.entries.empty()) {
      absl::Status s = p.storage->Append(rd.entries);
      EXPECT_TRUE(s.ok()) << "peer " << id << ": " << s;
    }
    if (rd.hard_state) p.storage->SetHardState(*rd.hard_state);
    const HardState hs = p.storage->InitialHardState();
    if (!rd.entries.empty() || rd.snapshot || hs.term != before.term ||
        hs.vote != before.vote) {
      EXPECT_TRUE(rd.must_sync)
          << "peer " << id << ": Ready needs an fsync but must_sync is false";
    }
    // 3. Messages: check that nothing claims state that is not durable.
    for (const Message& m : rd.messages) {
      EXPECT_EQ(m.from, id) << Describe(m);
      if (m.type != MessageType::kPreVote &&
          m.type != MessageType::kPreVoteResp) {
        EXPECT_LE(m.term, hs.term)
            << "peer " << id << " sent a term it has not persisted: "
            << Describe(m);
      }
      if (m.type == MessageType::kAppResp && !m.reject) {
        EXPECT_LE(m.index, p.storage->LastIndex())
            << "peer " << id << " acknowledged entries it has not persisted: "
            << Describe(m);
      }
      if (m.type == MessageType::kVoteResp && !m.reject) {
        EXPECT_EQ(hs.vote, m.to) << "vote not persisted: " << Describe(m);
        EXPECT_EQ(hs.term, m.term) << "vote not persisted: " << Describe(m);
      }
      out.push_back(m);
    }
    // 4. Apply.
    for (const Entry& e : rd.committed_entries) {
      EXPECT_EQ(e.index, p.applied_index + 1)
          << "peer " << id << " applies out of order";
      auto t = p.storage->Term(e.index);
      EXPECT_TRUE(t.ok() && *t == e.term)
          << "peer " << id << " applies entry " << e.term << "/" << e.index
          << " that is not in stable storage";
      EXPECT_LE(e.index, hs.commit)
          << "peer " << id << " applies beyond its persisted commit";
      p.applied.push_back(e);
      p.applied_index = e.index;
      if (e.type == EntryType::kConfChange) {
        ConfChange cc;
        EXPECT_TRUE(DecodeConfChange(e.data, &cc));
        p.conf_state = p.raft->ApplyConfChange(cc);
        p.conf_history.emplace_back(e.index, p.conf_state);
      }
    }
    p.read_states.insert(p.read_states.end(), rd.read_states.begin(),
                         rd.read_states.end());
    p.raft->Advance(rd);
  }
  return out;
}

bool Network::Keep(const Message& m) {
  if (!Has(m.to)) return false;
  if (ignore_.count(m.type)) return false;
  auto it = drop_.find({m.from, m.to});
  if (it != drop_.end()) {
    if (it->second >= 1.0) return false;
    if (it->second > 0 && rng_.UniformDouble() < it->second) return false;
  }
  if (keep_ && !keep_(m)) return false;
  return true;
}

std::vector<Message> Network::FilterAll(std::vector<Message> msgs) {
  std::vector<Message> out;
  out.reserve(msgs.size());
  for (Message& m : msgs) {
    if (Keep(m)) out.push_back(std::move(m));
  }
  return out;
}

std::vector<Message> Network::Deliver(Message m) {
  if (!Has(m.to)) return {};
  trace_.push_back(m);
  NodeId to = m.to;
  (void)peer(to).raft->Step(std::move(m));
  return FilterAll(Process(to));
}

void Network::Send(std::vector<Message> msgs) {
  std::vector<Message> queue = FilterAll(std::move(msgs));
  int delivered = 0;
  for (size_t head = 0; head < queue.size(); ++head) {
    if (++delivered > options_.max_deliveries) {
      ADD_FAILURE() << "network did not quiesce after " << delivered
                    << " deliveries";
      return;
    }
    std::vector<Message> more = Deliver(std::move(queue[head]));
    for (Message& m : more) queue.push_back(std::move(m));
  }
}

std::vector<Message> Network::Step(NodeId id, Message m) {
  (void)peer(id).raft->Step(std::move(m));
  return Process(id);
}

std::vector<Message> Network::Tick(NodeId id, int n) {
  std::vector<Message> out = Process(id);
  for (int i = 0; i < n; ++i) {
    peer(id).raft->Tick();
    std::vector<Message> more = Process(id);
    out.insert(out.end(), more.begin(), more.end());
  }
  return out;
}

void Network::TickAll(int n) {
  for (int i = 0; i < n; ++i) {
    for (NodeId id : ids()) Send(Tick(id));
  }
}

absl::Status Network::Campaign(NodeId id) {
  absl::Status s = raft(id).Campaign();
  Send(Process(id));
  return s;
}

absl::Status Network::Propose(NodeId id, std::string data) {
  absl::Status s = raft(id).Propose(std::move(data));
  Send(Process(id));
  return s;
}

absl::Status Network::ProposeConfChange(NodeId id, const ConfChange& cc) {
  absl::Status s = raft(id).ProposeConfChange(cc);
  Send(Process(id));
  return s;
}

absl::Status Network::ReadIndex(NodeId id, std::string ctx) {
  absl::Status s = raft(id).ReadIndex(std::move(ctx));
  Send(Process(id));
  return s;
}

void Network::TransferLeader(NodeId leader, NodeId transferee) {
  raft(leader).TransferLeader(transferee);
  Send(Process(leader));
}

void Network::Heartbeat(NodeId leader) {
  Message m;
  m.type = MessageType::kBeat;
  m.from = leader;
  Send(Step(leader, std::move(m)));
}

void Network::Compact(NodeId id, uint64_t index, std::string data) {
  Peer& p = peer(id);
  EXPECT_LE(index, p.applied_index) << "compacting beyond the applied index";
  ConfState cs = p.storage->snapshot().metadata.conf_state;
  for (const auto& [at, c] : p.conf_history) {
    if (at <= index) cs = c;
  }
  auto snap = p.storage->CreateSnapshot(index, &cs, std::move(data));
  EXPECT_TRUE(snap.ok()) << snap.status();
  absl::Status s = p.storage->Compact(index);
  EXPECT_TRUE(s.ok()) << s;
}

void Network::Drop(NodeId from, NodeId to, double fraction) {
  drop_[{from, to}] = fraction;
}

void Network::Cut(NodeId a, NodeId b) {
  Drop(a, b, 1.0);
  Drop(b, a, 1.0);
}

void Network::Isolate(NodeId id) {
  for (NodeId other : ids()) {
    if (other != id) Cut(id, other);
  }
}

void Network::Ignore(MessageType t) { ignore_.insert(t); }

void Network::SetFilter(std::function<bool(const Message&)> keep) {
  keep_ = std::move(keep);
}

void Network::Recover() {
  drop_.clear();
  ignore_.clear();
  keep_ = nullptr;
}

NodeId Network::Leader() {
  std::map<uint64_t, NodeId> by_term;
  for (const auto& [id, p] : peers_) {
    if (p->raft->state() != StateType::kLeader) continue;
    auto [it, inserted] = by_term.emplace(p->raft->term(), id);
    if (!inserted) {
      ADD_FAILURE() << "two leaders in term " << p->raft->term() << ": "
                    << it->second << " and " << id;
    }
  }
  return by_term.empty() ? kNone : by_term.rbegin()->second;
}

void Network::ExpectConsistent() {
  for (auto a = peers_.begin(); a != peers_.end(); ++a) {
    for (auto b = std::next(a); b != peers_.end(); ++b) {
      const RaftLog& la = a->second->raft->log();
      const RaftLog& lb = b->second->raft->log();
      uint64_t lo = std::max(la.FirstIndex(), lb.FirstIndex());
      uint64_t hi = std::min(la.committed(), lb.committed());
      for (uint64_t i = lo; i <= hi; ++i) {
        EXPECT_EQ(la.ZeroTermOnError(i), lb.ZeroTermOnError(i))
            << "committed logs of " << a->first << " and " << b->first
            << " differ at index " << i;
      }
      std::map<uint64_t, const Entry*> applied;
      for (const Entry& e : a->second->applied) applied[e.index] = &e;
      for (const Entry& e : b->second->applied) {
        auto it = applied.find(e.index);
        if (it == applied.end()) continue;
        EXPECT_EQ(*it->second, e)
            << "peers " << a->first << " and " << b->first
            << " applied different entries at index " << e.index;
      }
    }
  }
}

}  // namespace detcd::raft::testing
