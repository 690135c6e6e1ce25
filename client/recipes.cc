#include "detcd/recipes.h"

#include <cstdio>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "detcd/errors.h"
#include "detcd/kv.h"
#include "detcd/recipe_driver.h"
#include "detcd/watch.h"

namespace detcd::client {
namespace {

namespace pb = etcdserverpb;

CallOptions Until(absl::Time deadline) {
  CallOptions o;
  o.deadline = deadline;
  return o;
}

// Creates key only if it does not exist; returns the revision of the put.
absl::StatusOr<int64_t> PutNew(Client* c, const std::string& key,
                               const std::string& val, int64_t lease,
                               absl::Time deadline) {
  PutOptions po;
  po.lease = lease;
  auto r = Txn(c)
               .If(Compare(cmp::Version(key), CmpOp::kEqual, 0))
               .Then(OpPut(key, val, po))
               .Commit(Until(deadline));
  if (!r.ok()) return r.status();
  if (!r->succeeded()) return PlainError(kErrKeyExists);
  return r->header().revision();
}

// "<prefix>/<unix nanos>", retried on a collision (etcd's newUniqueKV).
absl::StatusOr<std::pair<std::string, int64_t>> PutUnique(
    Client* c, const std::string& prefix, const std::string& val, int64_t lease,
    absl::Time deadline) {
  for (;;) {
    std::string key =
        absl::StrFormat("%s/%d", prefix, absl::ToUnixNanos(absl::Now()));
    auto rev = PutNew(c, key, val, lease, deadline);
    if (rev.ok()) return std::make_pair(key, *rev);
    if (rev.status().message() != kErrKeyExists) return rev.status();
  }
}

}  // namespace

absl::StatusOr<mvccpb::Event> WaitEvents(
    Client* c, const std::string& key, const std::string& range_end,
    int64_t rev, const std::vector<mvccpb::Event::EventType>& types,
    absl::Time deadline) {
  if (types.empty()) return absl::InvalidArgumentError("no event types");
  Watcher w(c, {}, c->canceller());
  pb::WatchCreateRequest req;
  req.set_key(key);
  req.set_range_end(range_end);
  req.set_start_revision(rev);
  w.Add(req);
  size_t i = 0;
  WatchEvent ev;
  for (;;) {
    if (!w.Next(&ev, deadline)) {
      if (c->canceller() != nullptr && c->canceller()->cancelled()) {
        return absl::CancelledError(kContextCanceled);
      }
      if (absl::Now() >= deadline) {
        return absl::DeadlineExceededError(kContextDeadlineExceeded);
      }
      return w.status().ok() ? PlainError("lost watcher waiting for events")
                             : w.status();
    }
    if (ev.has_response) {
      for (const auto& e : ev.response.events()) {
        if (e.type() == types[i] && ++i == types.size()) return e;
      }
    }
    if (ev.closing) {
      if (!ev.error.empty()) return PlainError(ev.error);
      return PlainError("watch closed waiting for events");
    }
  }
}

// ---------------------------------------------------------------- Queue

absl::Status Queue::Enqueue(const std::string& value) {
  EnqueueSteps steps(prefix_, value, 0,
                     [] { return absl::ToUnixNanos(absl::Now()); });
  return RunSteps(c_, steps);
}

absl::StatusOr<std::string> Queue::Dequeue(absl::Time deadline) {
  DequeueSteps steps(prefix_, pb::RangeRequest::CREATE);
  if (absl::Status s = RunSteps(c_, steps, deadline); !s.ok()) return s;
  return steps.value();
}

// ----------------------------------------------------------------
// PriorityQueue

absl::Status PriorityQueue::Enqueue(const std::string& value,
                                    uint16_t priority) {
  PriorityEnqueueSteps steps(prefix_, value, priority);
  return RunSteps(c_, steps);
}

absl::StatusOr<std::string> PriorityQueue::Dequeue(absl::Time deadline) {
  DequeueSteps steps(prefix_, pb::RangeRequest::KEY);
  if (absl::Status s = RunSteps(c_, steps, deadline); !s.ok()) return s;
  return steps.value();
}

// ---------------------------------------------------------------- Barrier

absl::Status Barrier::Hold() {
  return PutNew(c_, key_, "", 0, absl::InfiniteFuture()).status();
}

absl::Status Barrier::Release() { return c_->Delete(key_).status(); }

absl::Status Barrier::Wait(absl::Time deadline) {
  auto resp = c_->Get(key_, {}, Until(deadline));
  if (!resp.ok()) return resp.status();
  if (resp->kvs_size() == 0) return absl::OkStatus();
  return WaitEvents(c_, key_, "", resp->header().revision() + 1,
                    {mvccpb::Event::DELETE}, deadline)
      .status();
}

// ----------------------------------------------------------------
// DoubleBarrier

absl::Status DoubleBarrier::Enter(absl::Time deadline) {
  Client* c = s_->client();
  const std::string waiters = key_ + "/waiters";
  auto mine = PutUnique(c, waiters, "", s_->lease(), deadline);
  if (!mine.ok()) return mine.status();
  my_key_ = mine->first;
  GetOptions g;
  g.prefix = true;
  auto resp = c->Get(waiters, g, Until(deadline));
  if (!resp.ok()) return resp.status();
  if (resp->kvs_size() > count_) return PlainError(kErrTooManyClients);
  if (resp->kvs_size() == count_) {
    return c->Put(key_ + "/ready", "", {}, Until(deadline)).status();
  }
  return WaitEvents(c, key_ + "/ready", "", mine->second, {mvccpb::Event::PUT},
                    deadline)
      .status();
}

absl::Status DoubleBarrier::Leave(absl::Time deadline) {
  Client* c = s_->client();
  const std::string waiters = key_ + "/waiters";
  for (;;) {
    GetOptions g;
    g.prefix = true;
    auto resp = c->Get(waiters, g, Until(deadline));
    if (!resp.ok()) return resp.status();
    if (resp->kvs_size() == 0) return absl::OkStatus();
    const mvccpb::KeyValue* lowest = &resp->kvs(0);
    const mvccpb::KeyValue* highest = &resp->kvs(0);
    for (const auto& kv : resp->kvs()) {
      if (kv.mod_revision() < lowest->mod_revision()) lowest = &kv;
      if (kv.mod_revision() > highest->mod_revision()) highest = &kv;
    }
    if (resp->kvs_size() == 1) {
      // The last one out clears the barrier.
      if (auto s = c->Delete(key_ + "/ready", {}, Until(deadline)).status();
          !s.ok()) {
        return s;
      }
      return c->Delete(my_key_, {}, Until(deadline)).status();
    }
    // The lowest waits for the highest to go; everyone else leaves and
    // waits for the lowest. A dead process's key goes with its lease, so
    // nobody waits for ever.
    const mvccpb::KeyValue* wait_for = lowest;
    if (lowest->key() == my_key_) {
      wait_for = highest;
    } else if (auto s = c->Delete(my_key_, {}, Until(deadline)).status();
               !s.ok()) {
      return s;
    }
    auto ev = WaitEvents(c, wait_for->key(), "", wait_for->mod_revision(),
                         {mvccpb::Event::DELETE}, deadline);
    if (!ev.ok()) return ev.status();
  }
}

}  // namespace detcd::client
