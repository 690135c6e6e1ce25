// Values shared by the MVCC store, the watch hub, the apply layer and the
// simulator's checkers. Field names and meanings follow etcd's mvccpb.
//
// A revision is (main, sub): main grows by one for every write transaction
// that changes something; sub numbers the changes inside that transaction
// from 0. A key's create_revision and mod_revision are main revisions; its
// version counts modifications since creation (1 on create) and restarts
// after a delete.
#ifndef DETCD_ENGINE_MVCC_TYPES_H_
#define DETCD_ENGINE_MVCC_TYPES_H_

#include <compare>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace detcd::mvcc {

struct Revision {
  int64_t main = 0;
  int64_t sub = 0;
  auto operator<=>(const Revision&) const = default;
};

struct KeyValue {
  std::string key;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;
  std::string value;
  int64_t lease = 0;
  bool operator==(const KeyValue&) const = default;
};

struct Event {
  enum Type { kPut = 0, kDelete = 1 };  // mvccpb.Event.EventType numbers
  Type type = kPut;
  // For a delete: key and mod_revision (the deleting revision) only, as
  // etcd sends tombstones.
  KeyValue kv;
  // The key's value just before this event; has_prev_kv is false when the
  // key did not exist.
  bool has_prev_kv = false;
  KeyValue prev_kv;
  bool operator==(const Event&) const = default;
};

// The store's history of changes, as the watch hub reads it to catch up
// watchers that fell behind (KvStore implements it).
class EventHistory {
 public:
  virtual ~EventHistory() = default;
  // The latest main revision (1 in an empty store, as in etcd).
  virtual int64_t Rev() const = 0;
  // The last compaction's revision, or -1 if never compacted.
  virtual int64_t CompactRev() const = 0;
  // Appends to *out the events of every key with main revision in
  // [from, to], in (main, sub) order, each with prev_kv filled in. Stops
  // after the revision at which *out reached max_events (never splitting a
  // revision) and sets *next to the first revision not returned (to + 1
  // when done). Fails with ErrCompacted if from <= CompactRev().
  virtual absl::Status Changes(int64_t from, int64_t to, size_t max_events,
                               std::vector<Event>* out,
                               int64_t* next) const = 0;
};

}  // namespace detcd::mvcc

#endif  // DETCD_ENGINE_MVCC_TYPES_H_
