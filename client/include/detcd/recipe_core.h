// The recipes' logic with no I/O: each recipe operation (Mutex lock,
// Election campaign, Queue dequeue, ...) is a step machine that says which
// request it needs next and is fed the reply. Two drivers run the same
// machines:
//
//  - the blocking client (recipe_driver.h, RunSteps): each step is a call on
//    detcd::client::Client, a watch step a Watcher; Mutex, Election, Queue,
//    PriorityQueue and ServiceRegistry::Register are thin wrappers;
//  - the simulator's recipe clients (harness/recipe_clients.h): each step
//    is a request to a simulated member's EtcdServer, a watch step a stream
//    on its watch hub, all single-threaded and deterministic.
//
// So what the simulator proves (mutual exclusion with fencing, one leader
// per term, queue items delivered once) is proven of the code the client
// library ships. The machines depend only on the protocol messages (no
// gRPC, no clock, no threads): time, deadlines, cancellation, retries and
// member choice belong to the drivers.
//
// Protocol of a machine: Start() returns the first call; each reply goes to
// Next(), which returns the next call, until a kDone call carries the
// outcome. After a kWatch call the driver opens the watch and passes every
// batch of events (or the watch's end, as an error) to Next(); a
// kKeepWatching answer keeps that watch open for the next batch, any other
// call closes it.
#ifndef DETCD_CLIENT_RECIPE_CORE_H_
#define DETCD_CLIENT_RECIPE_CORE_H_

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "etcdserverpb/rpc.pb.h"
#include "mvccpb/kv.pb.h"

namespace detcd::client {

// A recipe's own error ("election: not leader", "key already exists"),
// marked as errors.h's PlainError is (IsPlainError and ErrorText treat both
// alike: the text alone, as Go prints a plain error).
absl::Status RecipeError(absl::string_view text);

// The end of the range of every key starting with prefix (kv.h's
// PrefixEnd calls it; here so the machines need nothing but the messages).
std::string RecipePrefixEnd(absl::string_view prefix);

// What a machine asks its driver to do.
struct RecipeCall {
  enum Kind {
    kDone,          // finished; `status` is the outcome
    kRange,         // range
    kTxn,           // txn
    kDeleteRange,   // del
    kLeaseGrant,    // grant
    kLeaseRevoke,   // revoke
    kWatch,         // open `watch`; every batch of events goes to Next()
    kKeepWatching,  // (after a watch reply) wait for the watch's next batch
  };
  Kind kind = kDone;
  absl::Status status;
  etcdserverpb::RangeRequest range;
  etcdserverpb::TxnRequest txn;
  etcdserverpb::DeleteRangeRequest del;
  etcdserverpb::LeaseGrantRequest grant;
  etcdserverpb::LeaseRevokeRequest revoke;
  etcdserverpb::WatchCreateRequest watch;
  // Clean-up after a failure (giving a place in a queue back, revoking a
  // lease nobody will use): the driver makes it even when its caller's
  // cancellation or deadline stopped the recipe (bounded by the driver).
  bool cleanup = false;

  static RecipeCall Done(absl::Status s);
  static RecipeCall Range(etcdserverpb::RangeRequest r);
  static RecipeCall Txn(etcdserverpb::TxnRequest t, bool cleanup = false);
  static RecipeCall Delete(std::string key, bool cleanup = false);
  static RecipeCall Watch(std::string key, std::string range_end,
                          int64_t start_revision);
  static RecipeCall KeepWatching();
};

// The driver's answer to the last call. `status` is the call's error, or
// for a watch the reason it ended (the watch is then closed). A watch
// batch has its events (at least one) in `events`.
struct RecipeReply {
  absl::Status status;
  etcdserverpb::RangeResponse range;
  etcdserverpb::TxnResponse txn;
  etcdserverpb::DeleteRangeResponse del;
  etcdserverpb::LeaseGrantResponse grant;
  etcdserverpb::LeaseRevokeResponse revoke;
  std::vector<mvccpb::Event> events;
  // A watch batch's response header (its revision: the batch's last).
  etcdserverpb::ResponseHeader header;
};

// A completion for an asynchronous request (the engine's EtcdServer::Done
// shape) that puts the answer in one field of a reply, or its error in
// status, and hands the reply to cb: the drivers' glue.
template <typename Resp>
std::function<void(absl::StatusOr<Resp>)> FillReply(
    std::function<void(RecipeReply)> cb, Resp RecipeReply::*field) {
  return [cb = std::move(cb), field](absl::StatusOr<Resp> r) {
    RecipeReply rep;
    if (r.ok()) {
      rep.*field = *std::move(r);
    } else {
      rep.status = r.status();
    }
    cb(std::move(rep));
  };
}

class RecipeSteps {
 public:
  virtual ~RecipeSteps() = default;
  virtual RecipeCall Start() = 0;
  virtual RecipeCall Next(const RecipeReply& r) = 0;
};

// ------------------------------------------------------------ requests

// Compare: key's create revision is rev (0: the key does not exist).
etcdserverpb::Compare CreateRevisionIs(const std::string& key, int64_t rev);
// clientv3's WithFirstCreate / WithLastCreate on a prefix (limit 1).
etcdserverpb::RangeRequest TopByCreate(const std::string& prefix, bool first);
// The lock / election key of a session: "<prefix><lease id hex>".
std::string SessionKey(const std::string& prefix, int64_t lease);

// ------------------------------------------------------------ concurrency

// A Mutex's state (concurrency.h): prefix with its trailing "/", the
// session's lease; key and rev (the fencing token) once locked.
struct MutexState {
  std::string prefix;
  int64_t lease = 0;
  std::string key;
  int64_t rev = -1;
  etcdserverpb::ResponseHeader header;
};

// clientv3's Mutex.Lock: create "<prefix><lease hex>" unless it exists,
// then wait until every key created before it is gone (watching the one
// just before it). On an error while waiting, the key is deleted (a
// clean-up call) and the error returned. Unlike clientv3, the revision is
// read first, and a create txn that fails (it may still apply: a deadline
// ends the wait, not the txn) is followed by a clean-up that deletes the
// key if it was created after that revision.
class LockSteps : public RecipeSteps {
 public:
  explicit LockSteps(MutexState* m) : m_(m) {}
  RecipeCall Start() override;
  RecipeCall Next(const RecipeReply& r) override;

 private:
  enum State {
    kBefore, kCreate, kRangeOlder, kWatchOlder, kCleanup, kUndoCreate
  };
  RecipeCall Create();
  RecipeCall RangeOlder();
  RecipeCall Fail(absl::Status s);
  MutexState* m_;
  State state_ = kBefore;
  int64_t before_ = 0;  // the revision read before the create txn
  absl::Status error_;
};

// Mutex.Unlock: deletes the key (header: the delete's).
class UnlockSteps : public RecipeSteps {
 public:
  explicit UnlockSteps(MutexState* m) : m_(m) {}
  RecipeCall Start() override;
  RecipeCall Next(const RecipeReply& r) override;

 private:
  MutexState* m_;
};

// An Election's state (concurrency.h).
struct ElectionState {
  std::string prefix;  // with the trailing "/"
  int64_t lease = 0;
  std::string leader_key;
  int64_t leader_rev = 0;  // the leader key's create revision: the term
  bool leader = false;
  etcdserverpb::ResponseHeader header;
  // The revision at which Campaign saw every older candidate gone (the
  // header of its last range): the first revision of this leadership.
  int64_t won_revision = 0;
};

// Election.Campaign(val): create the candidate key (or proclaim val on it
// if it exists with another value), then wait for every older candidate to
// go. Cancelled or out of time while waiting: resign; any other error: not
// leader. The create txn is fenced and undone on failure as LockSteps'.
class CampaignSteps : public RecipeSteps {
 public:
  CampaignSteps(ElectionState* e, std::string val)
      : e_(e), val_(std::move(val)) {}
  RecipeCall Start() override;
  RecipeCall Next(const RecipeReply& r) override;

 private:
  enum State {
    kBefore, kCreate, kProclaim, kRangeOlder, kWatchOlder, kResign,
    kUndoCreate
  };
  RecipeCall Create();
  RecipeCall RangeOlder();
  ElectionState* e_;
  std::string val_;
  State state_ = kBefore;
  int64_t before_ = 0;  // as LockSteps'
  etcdserverpb::ResponseHeader create_header_;
  absl::Status error_;
};

// Election.Proclaim(val): put val on the leader key if it is still ours
// (fenced by its create revision).
class ProclaimSteps : public RecipeSteps {
 public:
  ProclaimSteps(ElectionState* e, std::string val)
      : e_(e), val_(std::move(val)) {}
  RecipeCall Start() override;
  RecipeCall Next(const RecipeReply& r) override;

 private:
  ElectionState* e_;
  std::string val_;
};

// Election.Resign: delete the leader key if it is still ours.
class ResignSteps : public RecipeSteps {
 public:
  explicit ResignSteps(ElectionState* e) : e_(e) {}
  RecipeCall Start() override;
  RecipeCall Next(const RecipeReply& r) override;

 private:
  ElectionState* e_;
};

// Election.Leader: the candidate with the lowest create revision, as a
// one-key range response; "election: no leader" when nobody campaigns.
class LeaderSteps : public RecipeSteps {
 public:
  explicit LeaderSteps(std::string prefix) : prefix_(std::move(prefix)) {}
  RecipeCall Start() override;
  RecipeCall Next(const RecipeReply& r) override;
  const etcdserverpb::RangeResponse& response() const { return response_; }

 private:
  std::string prefix_;  // with the trailing "/"
  etcdserverpb::RangeResponse response_;
};

// Election.Observe: the leader now (the candidate with the lowest create
// revision, or the first one to come when nobody campaigns), then each
// change of its key, each as a one-key range response given to `emit`,
// and the next leader once that key is deleted; until emit returns false
// (the outcome is then OK) or a call or watch fails (its error).
class ObserveSteps : public RecipeSteps {
 public:
  using Emit = std::function<bool(const etcdserverpb::RangeResponse&)>;
  ObserveSteps(std::string prefix, Emit emit)
      : prefix_(std::move(prefix)), emit_(std::move(emit)) {}
  RecipeCall Start() override;
  RecipeCall Next(const RecipeReply& r) override;

 private:
  enum State { kRange, kWaitFirst, kFollow };
  // Emits `cur` and follows its key from after its revision.
  RecipeCall Follow(etcdserverpb::RangeResponse cur);
  std::string prefix_;  // with the trailing "/"
  Emit emit_;
  State state_ = kRange;
  etcdserverpb::RangeResponse last_;  // the last leader range
};

// ------------------------------------------------------------ recipes

// etcd's contrib/recipes errors.
inline constexpr char kRecipeErrKeyExists[] = "key already exists";

// Queue.Enqueue: "<prefix>/<unique>" created only if new (etcd's
// newUniqueKV), retried with a fresh suffix on a collision. unique() gives
// the suffix (the blocking client: Unix nanoseconds, as etcd).
class EnqueueSteps : public RecipeSteps {
 public:
  EnqueueSteps(std::string prefix, std::string value, int64_t lease,
               std::function<int64_t()> unique)
      : prefix_(std::move(prefix)),
        value_(std::move(value)),
        lease_(lease),
        unique_(std::move(unique)) {}
  RecipeCall Start() override;
  RecipeCall Next(const RecipeReply& r) override;
  // After success: the key and the revision that created it.
  const std::string& key() const { return key_; }
  int64_t revision() const { return revision_; }

 private:
  RecipeCall Try();
  std::string prefix_, value_;
  int64_t lease_;
  std::function<int64_t()> unique_;
  std::string key_;
  int64_t revision_ = 0;
  bool any_error_ = false;
};

// Queue.Dequeue / PriorityQueue.Dequeue: take the first key under prefix
// in `order` (CREATE: FIFO; KEY: priority) by deleting it with a txn that
// checks its mod revision (so each item goes to exactly one taker); with
// nothing queued, wait for the next put.
class DequeueSteps : public RecipeSteps {
 public:
  DequeueSteps(std::string prefix, etcdserverpb::RangeRequest::SortTarget order)
      : prefix_(std::move(prefix)), order_(order) {}
  RecipeCall Start() override;
  RecipeCall Next(const RecipeReply& r) override;
  // After success: the item taken.
  const std::string& value() const { return value_; }
  const std::string& key() const { return key_; }
  // Every key this dequeue tried to delete (an attempt whose reply was
  // lost may have taken it): for checkers.
  const std::vector<std::string>& attempted() const { return attempted_; }

 private:
  enum State { kGet, kDeleteFound, kWatchPut, kDeleteWatched };
  RecipeCall Get();
  RecipeCall DeleteRevKey(const mvccpb::KeyValue& kv);
  std::string prefix_;
  etcdserverpb::RangeRequest::SortTarget order_;
  State state_ = kGet;
  mvccpb::KeyValue candidate_;
  bool more_ = false;  // the last get found something (lost a race)
  std::string value_, key_;
  std::vector<std::string> attempted_;
};

// PriorityQueue.Enqueue: "<prefix><priority %05d>/<sequence %016d>", the
// sequence allocated under the guard key "__<prefix><priority %05d>"
// (etcd's newSequentialKV). prefix has its trailing "/".
class PriorityEnqueueSteps : public RecipeSteps {
 public:
  PriorityEnqueueSteps(const std::string& prefix, std::string value,
                       uint16_t priority);
  RecipeCall Start() override;
  RecipeCall Next(const RecipeReply& r) override;

 private:
  enum State { kLast, kPut };
  RecipeCall Last();
  std::string prefix_, guard_, value_;
  State state_ = kLast;
};

// ServiceRegistry.Register: grant a lease of ttl_s, create key with value
// on it (unless the key exists: kRecipeErrKeyExists); on failure the lease
// is revoked (a clean-up call). After success lease() is the lease to keep
// alive.
class RegisterSteps : public RecipeSteps {
 public:
  RegisterSteps(std::string key, std::string value, int64_t ttl_s)
      : key_(std::move(key)), value_(std::move(value)), ttl_s_(ttl_s) {}
  RecipeCall Start() override;
  RecipeCall Next(const RecipeReply& r) override;
  int64_t lease() const { return lease_; }
  int64_t ttl() const { return ttl_; }
  int64_t revision() const { return revision_; }

 private:
  enum State { kGrant, kCreate, kRevoke };
  std::string key_, value_;
  int64_t ttl_s_;
  State state_ = kGrant;
  int64_t lease_ = 0, ttl_ = 0, revision_ = 0;
  absl::Status error_;
};

}  // namespace detcd::client

#endif  // DETCD_CLIENT_RECIPE_CORE_H_
