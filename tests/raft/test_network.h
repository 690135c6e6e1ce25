// A scripted in-memory network of Raft nodes for unit tests (in the spirit of
// etcd-io/raft raft_test.go's `network`; our own code).
//
// Each peer owns a MemoryStorage, a SeededRng derived from the network's seed
// and a Raft. Every time a peer is stepped or ticked, the network handles its
// Ready exactly as raft.h's Ready contract says (persist snapshot, entries and
// hard state into the MemoryStorage; collect the messages; apply committed
// entries, calling ApplyConfChange for conf changes; record read states;
// Advance), and checks the parts of the contract it can see.
//
// Send() delivers messages breadth-first until no message is left. Delivery
// can be shaped with Drop (a fraction of one direction), Cut (both
// directions), Isolate (everything to and from a node), Ignore (a message
// type) and an arbitrary filter; Recover() clears all of it. Ticks are never
// implicit: tests call Tick()/TickAll() and decide what to deliver.
#ifndef DETCD_TESTS_RAFT_TEST_NETWORK_H_
#define DETCD_TESTS_RAFT_TEST_NETWORK_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "engine/env/env.h"
#include "engine/raft/raft.h"
#include "engine/raft/storage.h"
#include "engine/raft/types.h"

namespace detcd::raft::testing {

// Adjusts a peer's Config before its Raft is built (id, storage and rng are
// already filled in).
using ConfigFn = std::function<void(Config&)>;

// Config tweak for tests of the bare algorithm of the paper: no pre-vote, no
// check-quorum.
void Classic(Config& c);

// Builds entries with the given terms at indexes first, first+1, ...
std::vector<Entry> EntriesWithTerms(uint64_t first,
                                    const std::vector<uint64_t>& terms);
// (index, term) pairs of a list of entries, for compact comparisons.
std::vector<std::pair<uint64_t, uint64_t>> IndexTerms(
    const std::vector<Entry>& ents);

// Returns the messages of type t (and, if to != kNone, addressed to `to`).
std::vector<Message> Filter(const std::vector<Message>& msgs, MessageType t,
                            NodeId to = kNone);
std::string Describe(const Message& m);

// One node: a Raft plus the storage and application state its owner keeps.
struct Peer {
  NodeId id = kNone;
  std::unique_ptr<MemoryStorage> storage;
  std::unique_ptr<env::SeededRng> rng;
  std::unique_ptr<Raft> raft;
  Config config;  // as last used to build raft

  // Application state, rebuilt from the snapshot on restart.
  std::vector<Entry> applied;  // every applied entry since the snapshot
  uint64_t applied_index = 0;
  ConfState conf_state;            // after the last applied conf change
  std::string snapshot_data;       // data of the last installed snapshot
  std::vector<ReadState> read_states;
  std::vector<SoftState> soft_states;  // every soft state change seen
  // (applied index, membership) after each applied conf change, to know
  // the membership at any applied index when compacting.
  std::vector<std::pair<uint64_t, ConfState>> conf_history;
  int incarnation = 0;  // bumped by Restart; names the rng stream

  // Data of applied normal entries (skipping empty ones), in order.
  std::vector<std::string> AppliedData() const;
};

struct NetworkOptions {
  uint64_t seed = 1;
  ConfigFn configure;  // applied to every peer's Config
  // Learners among the initial members (the other ids are voters).
  std::vector<NodeId> learners;
  // Upper bound on messages delivered by one Send(), to catch livelocks.
  int max_deliveries = 1000000;
};

class Network {
 public:
  // A cluster whose founding members are `ids` (voters, except those listed
  // in options.learners); each peer starts from an empty log with that
  // ConfState recorded as its initial membership.
  explicit Network(const std::vector<NodeId>& ids, NetworkOptions options = {});

  // Adds a peer. With cs == nullptr the peer starts without any membership
  // (a brand-new server waiting to be added by a conf change). `setup` may
  // prepare its storage (entries, hard state) before the Raft is built.
  Peer& AddPeer(NodeId id, const ConfState* cs,
                const std::function<void(MemoryStorage&)>& setup = nullptr,
                const ConfigFn& configure = nullptr);
  // Rebuilds a peer's Raft from its storage, as after a crash: volatile
  // state is lost and the application state restarts from the snapshot.
  void Restart(NodeId id, const ConfigFn& configure = nullptr);

  bool Has(NodeId id) const { return peers_.count(id) > 0; }
  Peer& peer(NodeId id);
  Raft& raft(NodeId id) { return *peer(id).raft; }
  MemoryStorage& storage(NodeId id) { return *peer(id).storage; }
  std::vector<NodeId> ids() const;

  // Delivers messages (and everything they cause) until none is left.
  void Send(std::vector<Message> msgs);
  void Send(Message m) { Send(std::vector<Message>{std::move(m)}); }
  // Delivers one message to its destination and returns what the receiver
  // sent in response, filtered but not delivered.
  std::vector<Message> Deliver(Message m);

  // Steps a message directly into a peer (bypassing filters) and handles
  // its Ready; returns the messages it produced (not delivered).
  std::vector<Message> Step(NodeId id, Message m);
  // Ticks a peer n times, handling Ready after each tick; returns every
  // message produced (not delivered).
  std::vector<Message> Tick(NodeId id, int n = 1);
  // Ticks every peer once (in id order) and delivers everything, n times.
  void TickAll(int n = 1);
  // Handles a peer's pending Ready (if any) and returns its messages.
  std::vector<Message> Process(NodeId id);

  // Convenience wrappers that call the API and deliver the outcome.
  absl::Status Campaign(NodeId id);
  absl::Status Propose(NodeId id, std::string data);
  absl::Status ProposeConfChange(NodeId id, const ConfChange& cc);
  absl::Status ReadIndex(NodeId id, std::string ctx);
  void TransferLeader(NodeId leader, NodeId transferee);
  // Sends a leader's heartbeats (kBeat) and delivers the outcome.
  void Heartbeat(NodeId leader);
  // Takes a snapshot of a peer's applied state at `index` (<= applied) and
  // compacts its storage up to it.
  void Compact(NodeId id, uint64_t index, std::string data = "snap");

  // Delivery shaping.
  void Drop(NodeId from, NodeId to, double fraction);
  void Cut(NodeId a, NodeId b);
  void Isolate(NodeId id);
  void Ignore(MessageType t);
  // Extra filter: return false to drop the message. Applied after the
  // other rules; stays until Recover().
  void SetFilter(std::function<bool(const Message&)> keep);
  void Recover();

  // Every message that passed the filters, in delivery order (cleared by
  // ClearTrace).
  const std::vector<Message>& trace() const { return trace_; }
  void ClearTrace() { trace_.clear(); }

  // The unique leader among the peers, or kNone if there is none; a test
  // failure is recorded if two peers lead in the same term.
  NodeId Leader();

  // Test-failure checks on the cluster: logs of all peers agree on every
  // index both hold up to their commit indexes, and applied sequences are
  // prefixes of one another.
  void ExpectConsistent();

 private:
  Peer& BuildRaft(Peer& p, const ConfigFn& configure);
  bool Keep(const Message& m);
  std::vector<Message> FilterAll(std::vector<Message> msgs);
  void ApplySnapshotToApp(Peer& p, const Snapshot& s);

  NetworkOptions options_;
  env::SeededRng rng_;  // for probabilistic drops
  std::map<NodeId, std::unique_ptr<Peer>> peers_;
  std::map<std::pair<NodeId, NodeId>, double> drop_;
  std::set<MessageType> ignore_;
  std::function<bool(const Message&)> keep_;
  std::vector<Message> trace_;
};

}  // namespace detcd::raft::testing

#endif  // DETCD_TESTS_RAFT_TEST_NETWORK_H_
