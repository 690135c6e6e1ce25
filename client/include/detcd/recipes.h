// etcd's contrib/recipes on detcd's client: a FIFO queue, a priority queue,
// a barrier and a double barrier, with the keys and semantics of etcd 3.4's
// recipes, so C++ and Go programs can share one queue or barrier.
//
//  - Queue: Enqueue puts "<prefix>/<unix nanos>" (created only if new);
//    Dequeue takes the key with the lowest create revision by deleting it
//    with a transaction that checks its mod revision, so each item goes to
//    exactly one taker; with nothing queued it waits for the next put.
//  - PriorityQueue: keys "<prefix>/<priority %05d>/<sequence %016d>"
//    (lower numbers first, FIFO within a priority); the sequence is
//    allocated with a transaction on the guard key "__<prefix>/<pri>".
//  - Barrier: Hold creates the key, Release deletes it, Wait blocks while
//    it exists.
//  - DoubleBarrier: count processes Enter (each with a key under
//    "<key>/waiters" on its session's lease; the last one puts
//    "<key>/ready") and all Leave together; a process that dies lets the
//    others through when its lease expires.
//
// Blocking calls end at their deadline (DeadlineExceeded "context deadline
// exceeded") or when the client's canceller fires (Cancelled "context
// canceled"); other errors are the calls' own.
#ifndef DETCD_CLIENT_RECIPES_H_
#define DETCD_CLIENT_RECIPES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "detcd/client.h"
#include "detcd/concurrency.h"
#include "mvccpb/kv.pb.h"

namespace detcd::client {

// etcd's recipe errors (contrib/recipes/client.go), as PlainError texts.
inline constexpr char kErrKeyExists[] = "key already exists";
inline constexpr char kErrTooManyClients[] = "too many clients";

// Watches [key, range_end) from revision rev and returns the event that
// completes the sequence `types` (etcd's WaitEvents / WaitPrefixEvents:
// events of other types in between are skipped).
absl::StatusOr<mvccpb::Event> WaitEvents(
    Client* c, const std::string& key, const std::string& range_end,
    int64_t rev, const std::vector<mvccpb::Event::EventType>& types,
    absl::Time deadline = absl::InfiniteFuture());

class Queue {
 public:
  Queue(Client* c, std::string prefix) : c_(c), prefix_(std::move(prefix)) {}
  absl::Status Enqueue(const std::string& value);
  absl::StatusOr<std::string> Dequeue(
      absl::Time deadline = absl::InfiniteFuture());

 private:
  Client* c_;
  std::string prefix_;
};

class PriorityQueue {
 public:
  PriorityQueue(Client* c, std::string prefix)
      : c_(c), prefix_(std::move(prefix) + "/") {}
  // Lower priority values are dequeued first.
  absl::Status Enqueue(const std::string& value, uint16_t priority);
  absl::StatusOr<std::string> Dequeue(
      absl::Time deadline = absl::InfiniteFuture());

 private:
  Client* c_;
  std::string prefix_;  // with the trailing "/"
};

class Barrier {
 public:
  Barrier(Client* c, std::string key) : c_(c), key_(std::move(key)) {}
  // Creates the barrier key; PlainError kErrKeyExists if it exists.
  absl::Status Hold();
  absl::Status Release();
  // Returns once the barrier key does not exist. (etcd's recipe waits for
  // a put and then a delete seen from its read revision, which misses a
  // delete when the hold was older than that read; this waits for the
  // delete alone.)
  absl::Status Wait(absl::Time deadline = absl::InfiniteFuture());

 private:
  Client* c_;
  std::string key_;
};

class DoubleBarrier {
 public:
  DoubleBarrier(Session* s, std::string key, int count)
      : s_(s), key_(std::move(key)), count_(count) {}
  // Blocks until `count` processes have entered. PlainError
  // kErrTooManyClients when more than count are waiting.
  absl::Status Enter(absl::Time deadline = absl::InfiniteFuture());
  // Blocks until every process that entered has left.
  absl::Status Leave(absl::Time deadline = absl::InfiniteFuture());
  // This process's waiter key (after Enter).
  const std::string& key() const { return my_key_; }

 private:
  Session* s_;
  std::string key_;
  int count_;
  std::string my_key_;
};

}  // namespace detcd::client

#endif  // DETCD_CLIENT_RECIPES_H_
