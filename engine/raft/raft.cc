#include "engine/raft/raft.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/util/check.h"
#include "engine/util/probes.h"

namespace detcd::raft {
namespace {

constexpr char kCampaignTransfer[] = "transfer";

bool IsVoteRequest(MessageType t) {
  return t == MessageType::kVote || t == MessageType::kPreVote;
}

MessageType VoteRespType(MessageType t) {
  return t == MessageType::kVote ? MessageType::kVoteResp
                                 : MessageType::kPreVoteResp;
}

uint64_t PayloadSize(const std::vector<Entry>& es) {
  uint64_t n = 0;
  for (const auto& e : es) n += e.data.size();
  return n;
}

}  // namespace

absl::Status ErrProposalDropped(std::string_view why) {
  return absl::UnavailableError(
      why.empty() ? std::string("raft proposal dropped")
                  : absl::StrCat("raft proposal dropped: ", std::string(why)));
}

absl::Status Config::Validate() const {
  if (absl::Status s = ValidateLimits(); !s.ok()) return s;
  if (storage == nullptr) {
    return absl::InvalidArgumentError("storage cannot be nil");
  }
  if (rng == nullptr) return absl::InvalidArgumentError("rng cannot be nil");
  return absl::OkStatus();
}

absl::Status Config::ValidateLimits() const {
  if (id == kNone) return absl::InvalidArgumentError("cannot use none as id");
  if (heartbeat_tick <= 0) {
    return absl::InvalidArgumentError("heartbeat tick must be greater than 0");
  }
  if (election_tick <= heartbeat_tick) {
    return absl::InvalidArgumentError(
        "election tick must be greater than heartbeat tick");
  }
  if (election_tick > 100000) {
    return absl::InvalidArgumentError("election tick must be at most 100000");
  }
  if (max_inflight_msgs <= 0 || max_inflight_msgs > (1 << 20)) {
    return absl::InvalidArgumentError(
        "max inflight messages must be in [1, 1048576]");
  }
  if (max_size_per_msg == 0) {
    return absl::InvalidArgumentError(
        "max size per message must be greater than 0");
  }
  if (max_inflight_bytes != 0 && max_inflight_bytes < max_size_per_msg) {
    return absl::InvalidArgumentError(
        "max inflight bytes must be >= max message size");
  }
  if (max_committed_size_per_ready == 0) {
    return absl::InvalidArgumentError(
        "max committed size per ready must be greater than 0");
  }
  return absl::OkStatus();
}

const char* StateTypeName(StateType s) {
  switch (s) {
    case StateType::kFollower:
      return "StateFollower";
    case StateType::kCandidate:
      return "StateCandidate";
    case StateType::kLeader:
      return "StateLeader";
    case StateType::kPreCandidate:
      return "StatePreCandidate";
  }
  return "?";
}

Raft::Raft(const Config& c)
    : id_(c.id),
      cfg_(c),
      rng_(c.rng),
      log_(c.storage, c.max_committed_size_per_ready),
      tracker_(c.max_inflight_msgs, c.max_inflight_bytes) {
  absl::Status valid = c.Validate();
  DETCD_CHECK_MSG(valid.ok(), std::string(valid.message()).c_str());
  ApplyConfState(c.storage->InitialConfState());
  HardState hs = c.storage->InitialHardState();
  if (!hs.IsEmpty()) LoadState(hs);
  persisted_term_ = term_;
  if (c.applied > 0) log_.AppliedTo(c.applied);
  BecomeFollower(term_, kNone);
  prev_soft_state_ = soft_state();
  prev_hard_state_ = hard_state();
}

void Raft::LoadState(const HardState& hs) {
  // A persisted commit below the snapshot is possible (crash between saving
  // the snapshot and the hard state) and harmless: the snapshot is
  // committed. One beyond the log means lost entries.
  DETCD_CHECK_MSG(
      hs.commit <= log_.LastIndex(),
      "persisted commit index is beyond the log: log corrupt or truncated");
  log_.CommitTo(hs.commit);
  term_ = hs.term;
  vote_ = hs.vote;
}

void Raft::ApplyConfState(const ConfState& cs) {
  tracker_ = ProgressTracker(cfg_.max_inflight_msgs, cfg_.max_inflight_bytes);
  uint64_t next = log_.LastIndex() + 1;
  for (NodeId id : cs.voters) tracker_.AddVoter(id, next);
  for (NodeId id : cs.learners) tracker_.AddLearner(id, next);
  if (Progress* self = tracker_.Get(id_)) self->match = log_.LastIndex();
  is_learner_ = tracker_.learners().count(id_) > 0;
}

// ---- role transitions ----

void Raft::Reset(uint64_t term) {
  if (term_ != term) {
    // Messages of an older term still waiting for their Ready are stale,
    // and some would now be false: an append response leaves only once its
    // Ready is persisted, and if a newer leader replaced the entries it
    // acknowledges before that Ready was taken, they were never persisted
    // (the simulator's ready-ordering check caught one acknowledging index
    // 88 of term 12 while the durable entry there had term 13). Dropping a
    // message is always safe.
    auto stale = [term](const Message& m) {
      return m.term != 0 && m.term < term;
    };
    std::erase_if(msgs_, stale);
    std::erase_if(early_msgs_, stale);
    term_ = term;
    vote_ = kNone;
  }
  lead_ = kNone;
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  ResetRandomizedElectionTimeout();
  AbortLeaderTransfer();
  tracker_.ResetVotes();
  tracker_.ResetProgress(log_.LastIndex(), id_);
  pending_conf_index_ = 0;
  uncommitted_size_ = 0;
  read_only_.Clear();
  pending_read_index_messages_.clear();
}

void Raft::ResetRandomizedElectionTimeout() {
  randomized_election_timeout_ =
      cfg_.election_tick + static_cast<int>(rng_->Uniform(cfg_.election_tick));
}

void Raft::BecomeFollower(uint64_t term, NodeId lead) {
  Reset(term);
  lead_ = lead;
  state_ = StateType::kFollower;
}

void Raft::BecomePreCandidate() {
  DETCD_CHECK_MSG(state_ != StateType::kLeader,
                  "invalid transition [leader -> pre-candidate]");
  // Pre-vote changes neither the term nor the vote: a node that cannot win
  // must not disturb the cluster (thesis §9.6).
  tracker_.ResetVotes();
  lead_ = kNone;
  state_ = StateType::kPreCandidate;
}

void Raft::BecomeCandidate() {
  DETCD_CHECK_MSG(state_ != StateType::kLeader,
                  "invalid transition [leader -> candidate]");
  Reset(term_ + 1);
  vote_ = id_;
  state_ = StateType::kCandidate;
}

void Raft::BecomeLeader() {
  DETCD_CHECK_MSG(state_ != StateType::kFollower,
                  "invalid transition [follower -> leader]");
  Reset(term_);
  lead_ = id_;
  state_ = StateType::kLeader;
  if (Progress* self = tracker_.Get(id_)) {
    self->BecomeReplicate();
    self->recent_active = true;  // the leader always hears itself
    // Only what is durable counts (see raft.h); an unstable tail (a
    // deferred Ready, a single voter elected at once) counts when the
    // owner reports it persisted.
    if (!cfg_.bugs.on(planted::Bug::kLeaderCountsUnpersisted)) {  // PLANTED
      self->match = std::min(self->match, log_.StableLastIndex());
    }
  }
  // An empty entry of the new term: committing it commits everything before
  // it (§5.4.2) and establishes the leader's commit index for ReadIndex.
  bool ok = AppendEntries({Entry{}});
  DETCD_CHECK_MSG(ok, "empty entry was dropped");
  // Conservatively treat the whole log as possibly holding a conf change,
  // so no new one is accepted until this term's first entry (the one just
  // appended) is applied: a leader must commit an entry of its own term
  // before it changes the membership (raft-dev, 2015).
  pending_conf_index_ = log_.LastIndex();
}

// ---- ticks ----

void Raft::Tick() {
  if (state_ == StateType::kLeader) {
    TickHeartbeat();
  } else {
    TickElection();
  }
}

bool Raft::PastElectionTimeout() const {
  return election_elapsed_ >= randomized_election_timeout_;
}

bool Raft::Promotable() const {
  return tracker_.IsVoter(id_) && !log_.HasPendingSnapshot();
}

void Raft::TickElection() {
  ++election_elapsed_;
  // BUGGIFY: the timer runs out early, as after a long GC pause or a clock
  // that jumped: legal (any node may campaign at any time; pre-vote and
  // the voters' lease check keep a live leader in place).
  if (Promotable() &&
      (PastElectionTimeout() ||
       buggify::Fires(cfg_.buggify, buggify::Point::kSpuriousCampaign, 0.01))) {
    election_elapsed_ = 0;
    Message m;
    m.type = MessageType::kHup;
    m.from = id_;
    (void)Step(std::move(m));
  }
}

void Raft::TickHeartbeat() {
  ++heartbeat_elapsed_;
  ++election_elapsed_;
  if (election_elapsed_ >= cfg_.election_tick) {
    election_elapsed_ = 0;
    if (cfg_.check_quorum) {
      Message m;
      m.type = MessageType::kCheckQuorum;
      m.from = id_;
      (void)Step(std::move(m));
    }
    // A transfer that did not finish within an election timeout is given
    // up, so proposals flow again.
    if (state_ == StateType::kLeader && lead_transferee_ != kNone) {
      DETCD_PROBE(kRaftTransferAborted);
      AbortLeaderTransfer();
    }
  }
  if (state_ != StateType::kLeader) return;
  if (heartbeat_elapsed_ >= cfg_.heartbeat_tick) {
    heartbeat_elapsed_ = 0;
    Message m;
    m.type = MessageType::kBeat;
    m.from = id_;
    (void)Step(std::move(m));
  }
}

// ---- elections ----

void Raft::Hup(bool transfer) {
  if (state_ == StateType::kLeader) return;
  if (!Promotable()) return;
  // Committed but unapplied conf changes would change who may vote; wait.
  if (log_.committed() > log_.applied()) {
    auto ents = log_.Slice(log_.applied() + 1, log_.committed() + 1, UINT64_MAX);
    if (ents.ok()) {
      for (const auto& e : *ents) {
        if (e.type == EntryType::kConfChange) return;
      }
    }
  }
  StartCampaign(cfg_.pre_vote && !transfer, transfer);
}

void Raft::StartCampaign(bool pre_vote, bool transfer) {
  MessageType vote_type;
  uint64_t term;
  if (pre_vote) {
    BecomePreCandidate();
    vote_type = MessageType::kPreVote;
    term = term_ + 1;  // the term we would campaign in; not adopted yet
  } else {
    BecomeCandidate();
    vote_type = MessageType::kVote;
    term = term_;
  }
  if (Poll(id_, VoteRespType(vote_type), true) == VoteResult::kWon) {
    // Single-voter cluster: won at once.
    if (pre_vote) {
      StartCampaign(false, transfer);
    } else {
      BecomeLeader();
    }
    return;
  }
  for (NodeId id : tracker_.voters()) {
    if (id == id_) continue;
    Message m;
    m.type = vote_type;
    m.to = id;
    m.term = term;
    m.index = log_.LastIndex();
    m.log_term = log_.LastTerm();
    if (transfer) m.context = kCampaignTransfer;
    Send(std::move(m));
  }
}

Raft::VoteResult Raft::Poll(NodeId id, MessageType, bool granted) {
  tracker_.RecordVote(id, granted);
  switch (tracker_.TallyVotes(nullptr, nullptr)) {
    case ProgressTracker::VoteOutcome::kWon:
      return VoteResult::kWon;
    case ProgressTracker::VoteOutcome::kLost:
      return VoteResult::kLost;
    case ProgressTracker::VoteOutcome::kPending:
      return VoteResult::kPending;
  }
  return VoteResult::kPending;
}

// ---- the step function ----

absl::Status Raft::Step(Message m) {
  const uint64_t term_on_arrival = term_;
  if (m.term == 0) {
    // Local message (or a forwarded proposal / read index).
  } else if (m.term > term_) {
    if (IsVoteRequest(m.type)) {
      bool force = m.context == kCampaignTransfer;
      bool in_lease = cfg_.check_quorum && lead_ != kNone &&
                      election_elapsed_ < cfg_.election_tick;
      // While we hear from a live leader, a higher-term campaign is a
      // disruption (e.g. a node rejoining from a partition); ignore it
      // unless the leader itself asked for it (transfer).
      if (!force && in_lease) {
        DETCD_PROBE(kRaftVoteIgnoredInLease);
        return absl::OkStatus();
      }
    }
    if (m.type == MessageType::kPreVote) {
      // Never change our term in response to a pre-vote.
    } else if (m.type == MessageType::kPreVoteResp && !m.reject) {
      // A granted pre-vote carries the future term; the term is adopted
      // only when the real election starts.
    } else if (m.type == MessageType::kApp ||
               m.type == MessageType::kHeartbeat ||
               m.type == MessageType::kSnap) {
      BecomeFollower(m.term, m.from);
    } else {
      BecomeFollower(m.term, kNone);
    }
  } else if (m.term < term_) {
    if ((cfg_.check_quorum || cfg_.pre_vote) &&
        (m.type == MessageType::kHeartbeat || m.type == MessageType::kApp)) {
      // A stale leader (e.g. back from a partition) learns the new term from
      // this answer and steps down; otherwise, with pre-vote or check-quorum,
      // nobody would ever tell it.
      DETCD_PROBE(kRaftStaleTermAnswered);
      Message resp;
      resp.type = MessageType::kAppResp;
      resp.to = m.from;
      Send(std::move(resp));
    } else if (m.type == MessageType::kPreVote) {
      Message resp;
      resp.type = MessageType::kPreVoteResp;
      resp.to = m.from;
      resp.term = term_;
      resp.reject = true;
      Send(std::move(resp));
    }
    return absl::OkStatus();  // stale: ignore
  }

  switch (m.type) {
    case MessageType::kHup:
      Hup(false);
      return absl::OkStatus();
    case MessageType::kVote:
    case MessageType::kPreVote: {
      // We can grant if we already voted for this candidate (a repeated
      // request), if we have not voted and know no leader this term, or for a
      // pre-vote of a future term.
      bool can_vote =
          vote_ == m.from || (vote_ == kNone && lead_ == kNone) ||
          (m.type == MessageType::kPreVote && m.term > term_);
      Message resp;
      resp.type = VoteRespType(m.type);
      resp.to = m.from;
      if (can_vote && log_.IsUpToDate(m.index, m.log_term)) {
        // Answer with the candidate's term: for a pre-vote that is a term we
        // have not entered, and the pre-candidate counts only answers to it.
        resp.term = m.term;
        if (m.type == MessageType::kVote) {
          election_elapsed_ = 0;
          vote_ = m.from;
          if (m.log_term < term_on_arrival) ++coverage_.vote_for_older_last_term;
        }
      } else {
        if (can_vote) DETCD_PROBE(kRaftVoteRejectedLog);
        resp.term = term_;
        resp.reject = true;
      }
      Send(std::move(resp));
      return absl::OkStatus();
    }
    default:
      switch (state_) {
        case StateType::kLeader:
          return StepLeader(m);
        case StateType::kCandidate:
        case StateType::kPreCandidate:
          return StepCandidate(m);
        case StateType::kFollower:
          return StepFollower(m);
      }
  }
  return absl::OkStatus();
}

absl::Status Raft::StepLeader(Message& m) {
  switch (m.type) {
    case MessageType::kBeat:
      BroadcastHeartbeat();
      return absl::OkStatus();
    case MessageType::kCheckQuorum:
      if (!tracker_.QuorumActive()) {
        DETCD_PROBE(kRaftCheckQuorumStepDown);
        BecomeFollower(term_, kNone);
        return absl::OkStatus();
      }
      tracker_.ResetRecentActive(id_);
      return absl::OkStatus();
    case MessageType::kProp: {
      if (m.entries.empty()) {
        return absl::InvalidArgumentError("proposal without entries");
      }
      if (!tracker_.IsMember(id_)) {
        return ErrProposalDropped("leader is not a member");
      }
      if (lead_transferee_ != kNone) {
        return ErrProposalDropped("leadership transfer in progress");
      }
      // The index the last conf change of this proposal will get; it
      // becomes pending only once the append succeeded, so a refused
      // proposal blocks no later conf change.
      uint64_t conf_index = 0;
      for (size_t i = 0; i < m.entries.size(); ++i) {
        Entry& e = m.entries[i];
        if (e.type != EntryType::kConfChange) continue;
        ConfChange cc;
        if (!DecodeConfChange(e.data, &cc) || cc.node_id == kNone) {
          return absl::InvalidArgumentError("malformed conf change");
        }
        if (pending_conf_index_ > log_.applied() || conf_index != 0) {
          return ErrProposalDropped(
              "a conf change is pending (or this term's first entry is not "
              "applied yet)");
        }
        bool voter = tracker_.IsVoter(cc.node_id);
        bool learner = tracker_.learners().count(cc.node_id) > 0;
        switch (cc.type) {
          case ConfChangeType::kAddNode:
            if (learner) {
              const Progress* pr = tracker_.Get(cc.node_id);
              if (pr->match + cfg_.max_learner_lag < log_.LastIndex()) {
                return absl::FailedPreconditionError(
                    "can only promote a learner member which is in sync "
                    "with leader");
              }
            }
            break;
          case ConfChangeType::kAddLearnerNode:
            if (voter) {
              return absl::FailedPreconditionError(
                  "cannot demote a voter to a learner");
            }
            break;
          case ConfChangeType::kRemoveNode:
            if (voter && tracker_.voters().size() == 1) {
              return absl::FailedPreconditionError(
                  "cannot remove the last voter");
            }
            break;
          case ConfChangeType::kUpdateNode:
            break;
        }
        conf_index = log_.LastIndex() + i + 1;
      }
      if (!AppendEntries(std::move(m.entries))) {
        return ErrProposalDropped("too many uncommitted bytes");
      }
      if (conf_index != 0) pending_conf_index_ = conf_index;
      BroadcastAppend();
      return absl::OkStatus();
    }
    case MessageType::kReadIndex:
      if (m.entries.size() != 1) {
        return absl::InvalidArgumentError("read index needs one context");
      }
      if (tracker_.IsSingleton()) {
        RespondToReadIndex(m, log_.committed());
      } else if (!CommittedEntryInCurrentTerm()) {
        // The commit index of a new leader may lag the true one until it
        // commits an entry of its own term (§8); hold the request until then.
        DETCD_PROBE(kRaftReadIndexHeld);
        pending_read_index_messages_.push_back(std::move(m));
      } else if (cfg_.bugs.on(planted::Bug::kReadIndexWithoutQuorum)) {
        // PLANTED BUG: answers at once, without the heartbeat round that
        // proves this node still leads (a deposed leader serves stale reads).
        RespondToReadIndex(m, log_.committed());
      } else {
        HandleReadIndexRequest(m);
      }
      return absl::OkStatus();
    default:
      break;
  }

  Progress* pr = tracker_.Get(m.from);
  if (pr == nullptr) return absl::OkStatus();  // not a member (any more)
  switch (m.type) {
    case MessageType::kAppResp:
      HandleAppendResponse(m, *pr);
      break;
    case MessageType::kHeartbeatResp:
      HandleHeartbeatResponse(m, *pr);
      break;
    case MessageType::kSnapStatus:
      if (pr->state != ProgressState::kSnapshot) break;
      if (m.reject) pr->pending_snapshot = 0;
      pr->BecomeProbe();
      // Wait for a heartbeat response (or an append response) before
      // probing, so a failed snapshot is not retried in a tight loop.
      pr->msg_app_flow_paused = true;
      break;
    case MessageType::kUnreachable:
      if (pr->state == ProgressState::kReplicate) pr->BecomeProbe();
      break;
    case MessageType::kTransferLeader:
      HandleTransferLeader(m, *pr);
      break;
    default:
      break;
  }
  return absl::OkStatus();
}

absl::Status Raft::StepCandidate(Message& m) {
  const MessageType my_resp = state_ == StateType::kPreCandidate
                                  ? MessageType::kPreVoteResp
                                  : MessageType::kVoteResp;
  switch (m.type) {
    case MessageType::kProp:
    case MessageType::kReadIndex:
      return ErrProposalDropped("no leader");
    case MessageType::kApp:
      BecomeFollower(m.term, m.from);  // a leader of our term exists
      HandleAppendEntries(m);
      break;
    case MessageType::kHeartbeat:
      BecomeFollower(m.term, m.from);
      HandleHeartbeat(m);
      break;
    case MessageType::kSnap:
      BecomeFollower(m.term, m.from);
      HandleSnapshot(m);
      break;
    default:
      if (m.type != my_resp) break;
      switch (Poll(m.from, m.type, !m.reject)) {
        case VoteResult::kWon:
          if (state_ == StateType::kPreCandidate) {
            StartCampaign(false, false);
          } else {
            BecomeLeader();
            BroadcastAppend();
          }
          break;
        case VoteResult::kLost:
          // A pre-candidate stays in its term; a candidate keeps its term
          // and vote (it voted for itself).
          BecomeFollower(term_, kNone);
          break;
        case VoteResult::kPending:
          break;
      }
      break;
  }
  return absl::OkStatus();
}

absl::Status Raft::StepFollower(Message& m) {
  switch (m.type) {
    case MessageType::kProp:
      if (lead_ == kNone) return ErrProposalDropped("no leader");
      m.to = lead_;
      Send(std::move(m));
      break;
    case MessageType::kApp:
      election_elapsed_ = 0;
      lead_ = m.from;
      HandleAppendEntries(m);
      break;
    case MessageType::kHeartbeat:
      election_elapsed_ = 0;
      lead_ = m.from;
      HandleHeartbeat(m);
      break;
    case MessageType::kSnap:
      election_elapsed_ = 0;
      lead_ = m.from;
      HandleSnapshot(m);
      break;
    case MessageType::kTransferLeader:
      if (lead_ == kNone) break;
      m.to = lead_;
      Send(std::move(m));
      break;
    case MessageType::kTimeoutNow:
      // The leader asks us to campaign at once, skipping pre-vote and the
      // lease check of the voters (the leader itself is stepping aside).
      Hup(true);
      break;
    case MessageType::kReadIndex:
      if (lead_ == kNone) {
        DETCD_PROBE(kRaftReadIndexRefused);
        return ErrProposalDropped("no leader");
      }
      m.to = lead_;
      Send(std::move(m));
      break;
    case MessageType::kReadIndexResp:
      if (m.entries.size() != 1) break;
      read_states_.push_back({m.index, m.entries[0].data.str()});
      break;
    default:
      break;
  }
  return absl::OkStatus();
}

// ---- leader-side handling ----

void Raft::HandleAppendResponse(Message& m, Progress& pr) {
  pr.recent_active = true;
  if (m.reject) {
    DETCD_PROBE(kRaftAppendRejected);
    // Fast backtracking: the follower told us the term it has at its hint
    // index; skip every entry of ours with a larger term in one step.
    uint64_t next_probe_idx = m.reject_hint;
    if (m.log_term > 0) {
      next_probe_idx = log_.FindConflictByTerm(m.reject_hint, m.log_term).first;
    }
    if (pr.MaybeDecrTo(m.index, next_probe_idx)) {
      if (pr.state == ProgressState::kReplicate) pr.BecomeProbe();
      SendAppend(m.from);
    }
    return;
  }
  bool old_paused = pr.IsPaused();
  if (!pr.MaybeUpdate(m.index) &&
      !(pr.match == m.index && pr.state == ProgressState::kProbe)) {
    return;  // stale
  }
  switch (pr.state) {
    case ProgressState::kProbe:
      pr.BecomeReplicate();
      break;
    case ProgressState::kSnapshot:
      // The follower caught up past the snapshot (or the snapshot landed);
      // resume normal replication if our log still covers it.
      if (pr.match + 1 >= log_.FirstIndex()) {
        pr.BecomeProbe();
        pr.BecomeReplicate();
      }
      break;
    case ProgressState::kReplicate:
      pr.inflights.FreeLE(m.index);
      break;
  }
  if (MaybeCommit()) {
    ReleasePendingReadIndexMessages();
    BroadcastAppend();
  } else if (old_paused || pr.append_held) {
    SendAppend(m.from);
  }
  // Send as much as flow control allows.
  while (MaybeSendAppend(m.from, false)) {
  }
  if (m.from == lead_transferee_ && pr.match == log_.LastIndex()) {
    SendTimeoutNow(m.from);
  }
}

void Raft::HandleHeartbeatResponse(Message& m, Progress& pr) {
  pr.recent_active = true;
  pr.msg_app_flow_paused = false;
  if (pr.match < log_.LastIndex() || pr.state == ProgressState::kProbe) {
    MaybeSendAppend(m.from, true, /*may_hold=*/false);
  }
  if (m.context.empty()) return;
  const std::set<NodeId>* acks = read_only_.RecvAck(m.from, m.context);
  if (acks == nullptr) return;
  int voters = 0;
  for (NodeId id : *acks) voters += tracker_.IsVoter(id) ? 1 : 0;
  if (voters < tracker_.Quorum()) return;
  for (ReadOnly::Status& rs : read_only_.Advance(m.context)) {
    RespondToReadIndex(rs.req, rs.index);
  }
}

void Raft::HandleReadIndexRequest(Message& m) {
  std::string ctx = m.entries[0].data.str();
  read_only_.AddRequest(log_.committed(), std::move(m));
  read_only_.RecvAck(id_, ctx);
  BroadcastHeartbeatWithContext(ctx);
}

void Raft::RespondToReadIndex(const Message& req, uint64_t read_index) {
  if (req.from == kNone || req.from == id_) {
    read_states_.push_back({read_index, req.entries[0].data.str()});
    return;
  }
  Message resp;
  resp.type = MessageType::kReadIndexResp;
  resp.to = req.from;
  resp.index = read_index;
  resp.entries = req.entries;
  Send(std::move(resp));
}

bool Raft::CommittedEntryInCurrentTerm() const {
  return log_.ZeroTermOnError(log_.committed()) == term_;
}

void Raft::ReleasePendingReadIndexMessages() {
  if (pending_read_index_messages_.empty()) return;
  if (!CommittedEntryInCurrentTerm()) return;
  std::vector<Message> pending = std::move(pending_read_index_messages_);
  pending_read_index_messages_.clear();
  for (Message& m : pending) HandleReadIndexRequest(m);
}

void Raft::HandleTransferLeader(Message& m, Progress& pr) {
  if (pr.is_learner) return;  // a learner cannot lead
  NodeId transferee = m.from;
  if (lead_transferee_ != kNone) {
    if (lead_transferee_ == transferee) return;  // already under way
    AbortLeaderTransfer();
  }
  if (transferee == id_) return;  // already the leader
  // The transfer must finish within an election timeout.
  election_elapsed_ = 0;
  lead_transferee_ = transferee;
  if (pr.match == log_.LastIndex()) {
    SendTimeoutNow(transferee);
  } else {
    SendAppend(transferee);
  }
}

void Raft::SendTimeoutNow(NodeId to) {
  Message m;
  m.type = MessageType::kTimeoutNow;
  m.to = to;
  Send(std::move(m));
}

// ---- follower-side handling ----

void Raft::HandleAppendEntries(const Message& m) {
  Message resp;
  resp.type = MessageType::kAppResp;
  resp.to = m.from;
  if (m.index < log_.committed()) {
    // Everything up to our commit index matches any leader's log.
    resp.index = log_.committed();
    Send(std::move(resp));
    return;
  }
  if (auto last = log_.MaybeAppend(m.index, m.log_term, m.commit, m.entries)) {
    // Acknowledge what the append covered, never a tail beyond it: that
    // tail may be an old term's entries the leader does not have.
    if (log_.LastIndex() > *last) ++coverage_.follower_tail_beyond_append;
    resp.index = *last;
    Send(std::move(resp));
    return;
  }
  // Tell the leader where our logs can possibly agree: the last index at or
  // below its probe whose term is <= the term it sent.
  uint64_t hint = std::min(m.index, log_.LastIndex());
  auto [hint_index, hint_term] = log_.FindConflictByTerm(hint, m.log_term);
  resp.index = m.index;
  resp.reject = true;
  resp.reject_hint = hint_index;
  resp.log_term = hint_term;
  Send(std::move(resp));
}

void Raft::HandleHeartbeat(const Message& m) {
  log_.CommitTo(m.commit);
  Message resp;
  resp.type = MessageType::kHeartbeatResp;
  resp.to = m.from;
  resp.context = m.context;
  Send(std::move(resp));
}

void Raft::HandleSnapshot(const Message& m) {
  Message resp;
  resp.type = MessageType::kAppResp;
  resp.to = m.from;
  if (m.snapshot != nullptr && Restore(m.snapshot)) {
    resp.index = log_.LastIndex();
  } else {
    DETCD_PROBE(kRaftSnapshotIgnored);
    resp.index = log_.committed();
  }
  Send(std::move(resp));
}

bool Raft::Restore(const std::shared_ptr<const Snapshot>& snap) {
  const Snapshot& s = *snap;
  if (s.metadata.index <= log_.committed()) return false;
  DETCD_CHECK_MSG(state_ == StateType::kFollower,
                  "only a follower restores a snapshot");
  const ConfState& cs = s.metadata.conf_state;
  bool member = cs.Contains(id_);
  if (!member) return false;  // stale or misdirected snapshot: ignore
  if (log_.MatchTerm(s.metadata.index, s.metadata.term)) {
    // We already have the entries: just fast-forward the commit index.
    log_.CommitTo(s.metadata.index);
    return false;
  }
  log_.Restore(snap);
  ApplyConfState(cs);
  return true;
}

// ---- sending ----

void Raft::Send(Message m) {
  if (m.from == kNone) m.from = id_;
  const bool early =
      state_ == StateType::kLeader &&
      (m.type == MessageType::kApp || m.type == MessageType::kHeartbeat) &&
      term_ == persisted_term_;
  if (IsVoteRequest(m.type) || m.type == MessageType::kVoteResp ||
      m.type == MessageType::kPreVoteResp) {
    DETCD_CHECK_MSG(m.term != 0, "vote messages must carry a term");
  } else {
    DETCD_CHECK_MSG(m.term == 0, "term is set by Send");
    // Proposals and read-index requests are forwarded as local messages.
    if (m.type != MessageType::kProp && m.type != MessageType::kReadIndex) {
      m.term = term_;
    }
  }
  (early ? early_msgs_ : msgs_).push_back(std::move(m));
}

bool Raft::MaybeSendAppend(NodeId to, bool send_if_empty, bool may_hold) {
  Progress* pr = tracker_.Get(to);
  if (pr == nullptr || pr->IsPaused()) return false;
  if (may_hold && cfg_.hold_small_appends > 0 &&
      pr->state == ProgressState::kReplicate && pr->inflights.Count() > 0 &&
      log_.LastIndex() + 1 - pr->next < cfg_.hold_small_appends) {
    pr->append_held = true;  // the answer to the append in flight sends it
    return false;
  }
  Message m;
  m.to = to;
  auto prev_term = log_.Term(pr->next - 1);
  auto ents = prev_term.ok() ? log_.EntriesFrom(pr->next, cfg_.max_size_per_msg)
                             : absl::StatusOr<std::vector<Entry>>(
                                   prev_term.status());
  if (!ents.ok()) {
    // The entries were compacted away: send a snapshot instead.
    if (!pr->recent_active) return false;
    auto snap = log_.GetSnapshot();
    if (!snap.ok()) return false;  // temporarily unavailable: retry later
    DETCD_CHECK_MSG(!snap->IsEmpty(), "need a non-empty snapshot");
    uint64_t index = snap->metadata.index;
    m.type = MessageType::kSnap;
    m.snapshot = std::make_shared<const Snapshot>(*std::move(snap));
    pr->BecomeSnapshot(index);
    DETCD_PROBE(kRaftSnapshotSent);
    Send(std::move(m));
    return true;
  }
  if (ents->empty() && !send_if_empty) return false;
  m.type = MessageType::kApp;
  m.index = pr->next - 1;
  m.log_term = *prev_term;
  m.commit = log_.committed();
  int n = static_cast<int>(ents->size());
  uint64_t bytes = PayloadSize(*ents);
  m.entries = *std::move(ents);
  pr->SentEntries(n, bytes);
  pr->append_held = false;
  Send(std::move(m));
  return true;
}

void Raft::SendHeartbeat(NodeId to, const std::string& ctx) {
  // Never tell a follower to commit beyond what it is known to hold.
  const Progress* pr = tracker_.Get(to);
  Message m;
  m.type = MessageType::kHeartbeat;
  m.to = to;
  m.commit = std::min(pr->match, log_.committed());
  m.context = ctx;
  Send(std::move(m));
}

void Raft::BroadcastAppend() {
  for (const auto& [id, pr] : tracker_.progress()) {
    if (id != id_) SendAppend(id);
  }
}

void Raft::BroadcastHeartbeat() {
  BroadcastHeartbeatWithContext(read_only_.LastPendingRequestCtx());
}

void Raft::BroadcastHeartbeatWithContext(const std::string& ctx) {
  for (const auto& [id, pr] : tracker_.progress()) {
    if (id != id_) SendHeartbeat(id, ctx);
  }
}

// ---- log and commit ----

bool Raft::AppendEntries(std::vector<Entry> es) {
  uint64_t li = log_.LastIndex();
  for (size_t i = 0; i < es.size(); ++i) {
    es[i].term = term_;
    es[i].index = li + 1 + i;
  }
  if (!IncreaseUncommittedSize(es)) return false;
  li = log_.Append(std::move(es));
  // The leader counts these entries for itself only once the owner reports
  // them durable (OnPersisted): its appends leave before its fsync.
  if (cfg_.bugs.on(planted::Bug::kLeaderCountsUnpersisted)) {
    // PLANTED BUG: counts itself at once, while its kApp (and so the
    // commit index that counting makes) leave before the sync.
    if (Progress* self = tracker_.Get(id_)) self->MaybeUpdate(li);
    MaybeCommit();
  }
  return true;
}

bool Raft::MaybeCommit() {
  uint64_t mci = tracker_.Committed();
  if (mci == UINT64_MAX) return false;
  if (mci > log_.committed() && log_.ZeroTermOnError(mci) != term_) {
    ++coverage_.old_term_quorum;
  }
  if (cfg_.bugs.on(planted::Bug::kCommitOldTerm)) {
    // PLANTED BUG: commits any entry stored on a majority, whatever its term
    // (the Figure 8 hazard of Raft §5.4.2).
    if (mci > log_.committed() && mci <= log_.LastIndex()) {
      log_.CommitTo(mci);
      return true;
    }
    return false;
  }
  return log_.MaybeCommit(mci, term_);
}

bool Raft::IncreaseUncommittedSize(const std::vector<Entry>& es) {
  uint64_t s = PayloadSize(es);
  uint64_t max = cfg_.max_uncommitted_entries_size;
  // Always admit a proposal when nothing is outstanding, so a single entry
  // larger than the limit cannot wedge the leader forever.
  if (max != 0 && uncommitted_size_ > 0 && s > 0 && uncommitted_size_ + s > max) {
    return false;
  }
  uncommitted_size_ += s;
  return true;
}

void Raft::ReduceUncommittedSize(uint64_t size) {
  uncommitted_size_ = size > uncommitted_size_ ? 0 : uncommitted_size_ - size;
}

// ---- API ----

absl::Status Raft::Campaign() {
  Message m;
  m.type = MessageType::kHup;
  m.from = id_;
  return Step(std::move(m));
}

absl::Status Raft::Propose(std::string data) {
  Message m;
  m.type = MessageType::kProp;
  m.from = id_;
  m.entries.push_back(Entry{0, 0, EntryType::kNormal, std::move(data)});
  return Step(std::move(m));
}

absl::Status Raft::ProposeConfChange(const ConfChange& cc) {
  if (cc.node_id == kNone) {
    return absl::InvalidArgumentError("conf change needs a node id");
  }
  Message m;
  m.type = MessageType::kProp;
  m.from = id_;
  m.entries.push_back(
      Entry{0, 0, EntryType::kConfChange, EncodeConfChange(cc)});
  return Step(std::move(m));
}

absl::Status Raft::ReadIndex(std::string ctx) {
  if (ctx.empty()) {
    return absl::InvalidArgumentError("read index context must not be empty");
  }
  Message m;
  m.type = MessageType::kReadIndex;
  m.from = id_;
  m.entries.push_back(Entry{0, 0, EntryType::kNormal, std::move(ctx)});
  return Step(std::move(m));
}

void Raft::TransferLeader(NodeId transferee) {
  Message m;
  m.type = MessageType::kTransferLeader;
  m.from = transferee;
  m.to = id_;
  (void)Step(std::move(m));
}

void Raft::ReportUnreachable(NodeId id) {
  Message m;
  m.type = MessageType::kUnreachable;
  m.from = id;
  (void)Step(std::move(m));
}

void Raft::ReportSnapshot(NodeId id, bool failed) {
  Message m;
  m.type = MessageType::kSnapStatus;
  m.from = id;
  m.reject = failed;
  (void)Step(std::move(m));
}

ConfState Raft::ApplyConfChange(const ConfChange& cc) {
  const uint64_t next = log_.LastIndex() + 1;
  switch (cc.type) {
    case ConfChangeType::kAddNode:
      if (cc.node_id != kNone) tracker_.AddVoter(cc.node_id, next);
      break;
    case ConfChangeType::kAddLearnerNode:
      // Demoting a voter is refused at proposal time; a committed one (from
      // an older leader) is ignored rather than applied half-way.
      if (cc.node_id != kNone && !tracker_.IsVoter(cc.node_id)) {
        tracker_.AddLearner(cc.node_id, next);
      }
      break;
    case ConfChangeType::kRemoveNode:
      tracker_.Remove(cc.node_id);
      if (lead_transferee_ == cc.node_id) AbortLeaderTransfer();
      break;
    case ConfChangeType::kUpdateNode:
      break;  // nothing changes in raft's membership
  }
  is_learner_ = tracker_.learners().count(id_) > 0;
  if (state_ == StateType::kLeader) {
    if (!tracker_.IsVoter(id_)) {
      // Removed (thesis §4.2.2): stop leading; the remaining voters elect a
      // new leader after their election timeout.
      BecomeFollower(term_, kNone);
    } else if (MaybeCommit()) {
      // A smaller quorum may commit more at once.
      BroadcastAppend();
    } else if ((cc.type == ConfChangeType::kAddNode ||
                cc.type == ConfChangeType::kAddLearnerNode) &&
               cc.node_id != id_) {
      // Never to ourselves: a leader that received its own kApp would take
      // itself for the leader as a follower later in the term.
      SendAppend(cc.node_id);
    }
  }
  return tracker_.GetConfState();
}

// ---- Ready ----

bool Raft::HasReady() const {
  if (soft_state() != prev_soft_state_) return true;
  HardState hs = hard_state();
  if (!hs.IsEmpty() && hs != prev_hard_state_) return true;
  if (log_.HasPendingSnapshot()) return true;
  if (!msgs_.empty() || !early_msgs_.empty() ||
      !log_.UnstableEntries().empty()) {
    return true;
  }
  if (log_.HasNextCommittedEnts()) return true;
  return !read_states_.empty();
}

Ready Raft::GetReady() {
  Ready rd;
  rd.entries = log_.UnstableEntries();
  rd.committed_entries = log_.NextCommittedEnts();
  rd.messages = std::move(msgs_);
  msgs_.clear();
  // A vote of an earlier term that a newer term overtook before it was
  // persisted (inputs batched into one Ready while a write was in flight):
  // only the newer hard state reaches the disk, so the vote was never
  // durable as such. Sending it would be harmless (a voter never votes in
  // a term below its durable one) but would claim what the disk does not
  // hold; drop it, as the network may.
  std::erase_if(rd.messages, [this](const Message& m) {
    return m.type == MessageType::kVoteResp && m.term < term_;
  });
  rd.early_messages = std::move(early_msgs_);
  early_msgs_.clear();
  SoftState ss = soft_state();
  if (ss != prev_soft_state_) {
    rd.soft_state = ss;
    prev_soft_state_ = ss;
  }
  HardState hs = hard_state();
  if (hs != prev_hard_state_) rd.hard_state = hs;
  rd.snapshot = log_.UnstableSnapshot();
  rd.read_states = std::move(read_states_);
  read_states_.clear();
  rd.must_sync = !rd.entries.empty() || rd.snapshot != nullptr ||
                 hs.term != prev_hard_state_.term ||
                 hs.vote != prev_hard_state_.vote;
  prev_hard_state_ = hs;
  if (!rd.committed_entries.empty()) {
    log_.AcceptApplying(rd.committed_entries.back().index);
    if (state_ == StateType::kLeader) {
      ReduceUncommittedSize(PayloadSize(rd.committed_entries));
    }
  }
  return rd;
}

void Raft::Advance(const Ready& rd) {
  if (rd.hard_state) persisted_term_ = rd.hard_state->term;
  if (rd.snapshot) log_.StableSnapTo(rd.snapshot->metadata.index);
  if (!rd.entries.empty()) {
    const Entry& e = rd.entries.back();
    OnPersisted(e.index, e.term);
  }
  if (!rd.committed_entries.empty()) {
    log_.AppliedTo(rd.committed_entries.back().index);
  } else if (rd.snapshot && rd.snapshot->metadata.index > log_.applied()) {
    log_.AppliedTo(rd.snapshot->metadata.index);
  }
}

void Raft::OnPersisted(uint64_t index, uint64_t term) {
  // Replaced while it was being written (a new leader's entries): the
  // newer entries stay unstable, and nothing is counted.
  if (!log_.MatchTerm(index, term)) return;
  log_.StableTo(index, term);
  if (state_ != StateType::kLeader) return;
  Progress* self = tracker_.Get(id_);
  if (self == nullptr) return;
  // Everything up to the stable end is durable (the Ready order), so the
  // leader counts that much for itself.
  if (!self->MaybeUpdate(std::min(index, log_.StableLastIndex()))) return;
  if (MaybeCommit()) {
    ReleasePendingReadIndexMessages();
    BroadcastAppend();
  }
}

std::vector<Message> Raft::TakeEarlyMessages() {
  std::vector<Message> out = std::move(early_msgs_);
  early_msgs_.clear();
  return out;
}

std::vector<Message> Raft::pending_messages() const {
  std::vector<Message> out = early_msgs_;
  out.insert(out.end(), msgs_.begin(), msgs_.end());
  return out;
}

std::vector<Message> Raft::TakeMessages() {
  std::vector<Message> out = std::move(early_msgs_);
  early_msgs_.clear();
  for (Message& m : msgs_) out.push_back(std::move(m));
  msgs_.clear();
  return out;
}

Status Raft::GetStatus() const {
  Status s;
  s.id = id_;
  s.hard_state = hard_state();
  s.soft_state = soft_state();
  s.applied = log_.applied();
  s.lead_transferee = lead_transferee_;
  s.conf_state = tracker_.GetConfState();
  if (state_ == StateType::kLeader) s.progress = tracker_.progress();
  return s;
}

}  // namespace detcd::raft
