#include "detcd/recipe_core.h"

#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace detcd::client {
namespace {

namespace pb = etcdserverpb;

// errors.cc's PlainError mark (the same payload URL, so IsPlainError and
// ErrorText see a recipe's errors as plain errors).
constexpr char kPlainPayload[] = "type.detcd/client.PlainError";

constexpr char kNotLeader[] = "election: not leader";

pb::RequestOp PutOp(const std::string& key, const std::string& val,
                    int64_t lease) {
  pb::RequestOp op;
  auto* p = op.mutable_request_put();
  p->set_key(key);
  p->set_value(val);
  p->set_lease(lease);
  return op;
}

pb::RequestOp GetOp(const std::string& key) {
  pb::RequestOp op;
  op.mutable_request_range()->set_key(key);
  return op;
}

pb::RequestOp DeleteOp(const std::string& key) {
  pb::RequestOp op;
  op.mutable_request_delete_range()->set_key(key);
  return op;
}

pb::Compare NumberIs(const std::string& key, pb::Compare::CompareTarget t,
                     pb::Compare::CompareResult res, int64_t n) {
  pb::Compare c;
  c.set_key(key);
  c.set_target(t);
  c.set_result(res);
  switch (t) {
    case pb::Compare::VERSION:
      c.set_version(n);
      break;
    case pb::Compare::CREATE:
      c.set_create_revision(n);
      break;
    case pb::Compare::MOD:
      c.set_mod_revision(n);
      break;
    default:
      c.set_lease(n);
      break;
  }
  return c;
}

// Creates key with val on lease unless it exists (etcd's putNewKV).
pb::TxnRequest PutNewTxn(const std::string& key, const std::string& val,
                         int64_t lease) {
  pb::TxnRequest t;
  *t.add_compare() = NumberIs(key, pb::Compare::VERSION, pb::Compare::EQUAL, 0);
  *t.add_success() = PutOp(key, val, lease);
  return t;
}

pb::RangeRequest PrefixRange(const std::string& prefix) {
  pb::RangeRequest r;
  r.set_key(prefix);
  r.set_range_end(RecipePrefixEnd(prefix));
  return r;
}

bool HasDelete(const RecipeReply& r) {
  for (const mvccpb::Event& e : r.events) {
    if (e.type() == mvccpb::Event::DELETE) return true;
  }
  return false;
}

// A reply that lacks what a well-formed server sends: an error, not a crash.
// A lock or campaign puts its session key with a txn, and a deadline or
// cancellation ends the wait for that txn, not the txn: one in flight then
// is applied afterwards, and its key would block every later caller until
// the session's lease expired (etcd's recipe leaves it so). So the machine
// reads the revision first (linearizable: every key created before has a
// create revision at or below it), and when its create txn fails it deletes
// the key if it was created after that revision, by this call. The delete
// is proposed after the put, so it applies after it; when nothing was put
// its compare fails and it writes nothing.
pb::RangeRequest RevisionRead(const std::string& key) {
  pb::RangeRequest r;
  r.set_key(key);
  r.set_count_only(true);
  return r;
}

pb::TxnRequest DeleteIfCreatedAfter(const std::string& key, int64_t rev) {
  pb::TxnRequest t;
  *t.add_compare() =
      NumberIs(key, pb::Compare::CREATE, pb::Compare::GREATER, rev);
  *t.add_success() = DeleteOp(key);
  return t;
}

RecipeCall Malformed(absl::string_view what) {
  return RecipeCall::Done(absl::InternalError(
      absl::StrCat("recipe: malformed response to ", what)));
}

}  // namespace

absl::Status RecipeError(absl::string_view text) {
  absl::Status s(absl::StatusCode::kUnknown, text);
  s.SetPayload(kPlainPayload, absl::Cord("1"));
  return s;
}

std::string RecipePrefixEnd(absl::string_view prefix) {
  std::string end(prefix);
  for (int i = static_cast<int>(end.size()) - 1; i >= 0; --i) {
    if (static_cast<unsigned char>(end[i]) < 0xff) {
      end[i] = static_cast<char>(static_cast<unsigned char>(end[i]) + 1);
      end.resize(i + 1);
      return end;
    }
  }
  return std::string(1, '\0');
}

// ------------------------------------------------------------ RecipeCall

RecipeCall RecipeCall::Done(absl::Status s) {
  RecipeCall c;
  c.kind = kDone;
  c.status = std::move(s);
  return c;
}

RecipeCall RecipeCall::Range(pb::RangeRequest r) {
  RecipeCall c;
  c.kind = kRange;
  c.range = std::move(r);
  return c;
}

RecipeCall RecipeCall::Txn(pb::TxnRequest t, bool cleanup) {
  RecipeCall c;
  c.kind = kTxn;
  c.txn = std::move(t);
  c.cleanup = cleanup;
  return c;
}

RecipeCall RecipeCall::Delete(std::string key, bool cleanup) {
  RecipeCall c;
  c.kind = kDeleteRange;
  c.del.set_key(std::move(key));
  c.cleanup = cleanup;
  return c;
}

RecipeCall RecipeCall::Watch(std::string key, std::string range_end,
                             int64_t start_revision) {
  RecipeCall c;
  c.kind = kWatch;
  c.watch.set_key(std::move(key));
  c.watch.set_range_end(std::move(range_end));
  c.watch.set_start_revision(start_revision);
  return c;
}

RecipeCall RecipeCall::KeepWatching() {
  RecipeCall c;
  c.kind = kKeepWatching;
  return c;
}

// ------------------------------------------------------------ requests

pb::Compare CreateRevisionIs(const std::string& key, int64_t rev) {
  return NumberIs(key, pb::Compare::CREATE, pb::Compare::EQUAL, rev);
}

pb::RangeRequest TopByCreate(const std::string& prefix, bool first) {
  pb::RangeRequest r = PrefixRange(prefix);
  r.set_sort_target(pb::RangeRequest::CREATE);
  r.set_sort_order(first ? pb::RangeRequest::ASCEND
                         : pb::RangeRequest::DESCEND);
  r.set_limit(1);
  return r;
}

std::string SessionKey(const std::string& prefix, int64_t lease) {
  return absl::StrFormat("%s%x", prefix, static_cast<uint64_t>(lease));
}

// ------------------------------------------------------------ Mutex

RecipeCall LockSteps::Start() {
  m_->key = SessionKey(m_->prefix, m_->lease);
  state_ = kBefore;
  return RecipeCall::Range(RevisionRead(m_->key));
}

RecipeCall LockSteps::Create() {
  pb::TxnRequest t;
  *t.add_compare() = CreateRevisionIs(m_->key, 0);
  *t.add_success() = PutOp(m_->key, "", m_->lease);
  *t.add_success()->mutable_request_range() = TopByCreate(m_->prefix, true);
  *t.add_failure() = GetOp(m_->key);
  *t.add_failure()->mutable_request_range() = TopByCreate(m_->prefix, true);
  state_ = kCreate;
  return RecipeCall::Txn(std::move(t));
}

RecipeCall LockSteps::RangeOlder() {
  // Every key created before ours, newest first: wait for each to go.
  pb::RangeRequest r = TopByCreate(m_->prefix, false);
  r.set_max_create_revision(m_->rev - 1);
  state_ = kRangeOlder;
  return RecipeCall::Range(std::move(r));
}

RecipeCall LockSteps::Fail(absl::Status s) {
  // Give up our place in the queue.
  error_ = std::move(s);
  state_ = kCleanup;
  return RecipeCall::Delete(m_->key, /*cleanup=*/true);
}

RecipeCall LockSteps::Next(const RecipeReply& r) {
  switch (state_) {
    case kBefore:
      if (!r.status.ok()) return RecipeCall::Done(r.status);
      before_ = r.range.header().revision();
      return Create();
    case kCreate: {
      if (!r.status.ok()) {
        error_ = r.status;
        state_ = kUndoCreate;
        return RecipeCall::Txn(DeleteIfCreatedAfter(m_->key, before_),
                               /*cleanup=*/true);
      }
      if (r.txn.responses_size() < 2) return Malformed("lock txn");
      m_->rev = r.txn.header().revision();
      if (!r.txn.succeeded()) {
        const auto& mine = r.txn.responses(0).response_range().kvs();
        if (mine.empty()) return Malformed("lock txn");
        m_->rev = mine[0].create_revision();
      }
      const auto& owner = r.txn.responses(1).response_range().kvs();
      if (owner.empty() || owner[0].create_revision() == m_->rev) {
        m_->header = r.txn.header();
        return RecipeCall::Done(absl::OkStatus());
      }
      return RangeOlder();
    }
    case kRangeOlder:
      if (!r.status.ok()) return Fail(r.status);
      if (r.range.kvs_size() == 0) {
        m_->header = r.range.header();
        return RecipeCall::Done(absl::OkStatus());
      }
      state_ = kWatchOlder;
      return RecipeCall::Watch(r.range.kvs(0).key(), "",
                               r.range.header().revision());
    case kWatchOlder:
      if (!r.status.ok()) return Fail(r.status);
      return HasDelete(r) ? RangeOlder() : RecipeCall::KeepWatching();
    case kCleanup:
      if (r.status.ok()) {
        m_->key = std::string(1, '\0');
        m_->rev = -1;
      }
      return RecipeCall::Done(error_);
    case kUndoCreate:
      return RecipeCall::Done(error_);
  }
  return RecipeCall::Done(absl::InternalError("lock: bad state"));
}

RecipeCall UnlockSteps::Start() { return RecipeCall::Delete(m_->key); }

RecipeCall UnlockSteps::Next(const RecipeReply& r) {
  if (r.status.ok()) {
    m_->key = std::string(1, '\0');
    m_->rev = -1;
    m_->header = r.del.header();
  }
  return RecipeCall::Done(r.status);
}

// ------------------------------------------------------------ Election

namespace {

pb::TxnRequest ProclaimTxn(const ElectionState& e, const std::string& val) {
  pb::TxnRequest t;
  *t.add_compare() = CreateRevisionIs(e.leader_key, e.leader_rev);
  *t.add_success() = PutOp(e.leader_key, val, e.lease);
  return t;
}

pb::TxnRequest ResignTxn(const ElectionState& e) {
  pb::TxnRequest t;
  *t.add_compare() = CreateRevisionIs(e.leader_key, e.leader_rev);
  *t.add_success() = DeleteOp(e.leader_key);
  return t;
}

}  // namespace

RecipeCall CampaignSteps::Start() {
  state_ = kBefore;
  return RecipeCall::Range(
      RevisionRead(SessionKey(e_->prefix, e_->lease)));
}

RecipeCall CampaignSteps::Create() {
  const std::string k = SessionKey(e_->prefix, e_->lease);
  pb::TxnRequest t;
  *t.add_compare() = CreateRevisionIs(k, 0);
  *t.add_success() = PutOp(k, val_, e_->lease);
  *t.add_failure() = GetOp(k);
  state_ = kCreate;
  return RecipeCall::Txn(std::move(t));
}

RecipeCall CampaignSteps::RangeOlder() {
  pb::RangeRequest r = TopByCreate(e_->prefix, false);
  r.set_max_create_revision(e_->leader_rev - 1);
  state_ = kRangeOlder;
  return RecipeCall::Range(std::move(r));
}

RecipeCall CampaignSteps::Next(const RecipeReply& r) {
  // Waiting failed: a campaign its caller cancelled or let run out of
  // time withdraws its candidacy (etcd's, on its context's end); any other
  // error leaves the key (the session may still win later) but this call
  // does not lead.
  auto wait_failed = [&](const absl::Status& s) {
    if (s.code() == absl::StatusCode::kCancelled ||
        s.code() == absl::StatusCode::kDeadlineExceeded) {
      error_ = s;
      state_ = kResign;
      return RecipeCall::Txn(ResignTxn(*e_), /*cleanup=*/true);
    }
    e_->leader = false;
    return RecipeCall::Done(s);
  };
  switch (state_) {
    case kBefore:
      if (!r.status.ok()) return RecipeCall::Done(r.status);
      before_ = r.range.header().revision();
      return Create();
    case kCreate: {
      if (!r.status.ok()) {  // as a lock's (RevisionRead)
        error_ = r.status;
        state_ = kUndoCreate;
        return RecipeCall::Txn(
            DeleteIfCreatedAfter(SessionKey(e_->prefix, e_->lease), before_),
            /*cleanup=*/true);
      }
      e_->leader_key = SessionKey(e_->prefix, e_->lease);
      e_->leader_rev = r.txn.header().revision();
      e_->leader = true;
      create_header_ = r.txn.header();
      if (!r.txn.succeeded()) {
        if (r.txn.responses_size() < 1 ||
            r.txn.responses(0).response_range().kvs_size() < 1) {
          return Malformed("campaign txn");
        }
        const auto& kv = r.txn.responses(0).response_range().kvs(0);
        e_->leader_rev = kv.create_revision();
        if (kv.value() != val_) {
          state_ = kProclaim;
          return RecipeCall::Txn(ProclaimTxn(*e_, val_));
        }
      }
      return RangeOlder();
    }
    case kProclaim:
      if (!r.status.ok() || !r.txn.succeeded()) {
        error_ = r.status.ok() ? RecipeError(kNotLeader) : r.status;
        if (!r.status.ok()) {
          state_ = kResign;
          return RecipeCall::Txn(ResignTxn(*e_), /*cleanup=*/true);
        }
        e_->leader_key.clear();
        e_->leader = false;
        return RecipeCall::Done(error_);
      }
      e_->header = r.txn.header();
      return RangeOlder();
    case kRangeOlder:
      if (!r.status.ok()) return wait_failed(r.status);
      if (r.range.kvs_size() == 0) {
        e_->won_revision = r.range.header().revision();
        e_->header = create_header_;
        return RecipeCall::Done(absl::OkStatus());
      }
      state_ = kWatchOlder;
      return RecipeCall::Watch(r.range.kvs(0).key(), "",
                               r.range.header().revision());
    case kWatchOlder:
      if (!r.status.ok()) return wait_failed(r.status);
      return HasDelete(r) ? RangeOlder() : RecipeCall::KeepWatching();
    case kResign:
      if (r.status.ok()) e_->header = r.txn.header();
      e_->leader_key.clear();
      e_->leader = false;
      return RecipeCall::Done(error_);
    case kUndoCreate:
      return RecipeCall::Done(error_);
  }
  return RecipeCall::Done(absl::InternalError("campaign: bad state"));
}

RecipeCall ProclaimSteps::Start() {
  if (!e_->leader) return RecipeCall::Done(RecipeError(kNotLeader));
  return RecipeCall::Txn(ProclaimTxn(*e_, val_));
}

RecipeCall ProclaimSteps::Next(const RecipeReply& r) {
  if (!r.status.ok()) return RecipeCall::Done(r.status);
  if (!r.txn.succeeded()) {
    e_->leader_key.clear();
    return RecipeCall::Done(RecipeError(kNotLeader));
  }
  e_->header = r.txn.header();
  return RecipeCall::Done(absl::OkStatus());
}

RecipeCall ResignSteps::Start() {
  if (!e_->leader) return RecipeCall::Done(absl::OkStatus());
  return RecipeCall::Txn(ResignTxn(*e_));
}

RecipeCall ResignSteps::Next(const RecipeReply& r) {
  if (r.status.ok()) e_->header = r.txn.header();
  e_->leader_key.clear();
  e_->leader = false;
  return RecipeCall::Done(r.status);
}

RecipeCall LeaderSteps::Start() {
  return RecipeCall::Range(TopByCreate(prefix_, true));
}

RecipeCall LeaderSteps::Next(const RecipeReply& r) {
  if (!r.status.ok()) return RecipeCall::Done(r.status);
  response_ = r.range;
  if (response_.kvs_size() == 0) {
    return RecipeCall::Done(RecipeError("election: no leader"));
  }
  return RecipeCall::Done(absl::OkStatus());
}

RecipeCall ObserveSteps::Start() {
  state_ = kRange;
  return RecipeCall::Range(TopByCreate(prefix_, true));
}

RecipeCall ObserveSteps::Follow(pb::RangeResponse cur) {
  if (!emit_(cur)) return RecipeCall::Done(absl::OkStatus());
  state_ = kFollow;
  return RecipeCall::Watch(cur.kvs(0).key(), "", cur.header().revision() + 1);
}

RecipeCall ObserveSteps::Next(const RecipeReply& r) {
  if (!r.status.ok()) return RecipeCall::Done(r.status);
  switch (state_) {
    case kRange:
      last_ = r.range;
      if (last_.kvs_size() > 0) {
        pb::RangeResponse cur;
        *cur.mutable_header() = last_.header();
        *cur.add_kvs() = last_.kvs(0);
        return Follow(std::move(cur));
      }
      // Nobody campaigns: the first candidate to come leads.
      state_ = kWaitFirst;
      return RecipeCall::Watch(prefix_, RecipePrefixEnd(prefix_),
                               last_.header().revision());
    case kWaitFirst:
      for (const mvccpb::Event& e : r.events) {
        if (e.type() != mvccpb::Event::PUT) continue;
        pb::RangeResponse cur;
        *cur.mutable_header() = r.header;
        cur.mutable_header()->set_revision(e.kv().mod_revision());
        *cur.add_kvs() = e.kv();
        return Follow(std::move(cur));
      }
      return RecipeCall::KeepWatching();
    case kFollow:
      for (const mvccpb::Event& e : r.events) {
        // The leader left: whoever is first now leads.
        if (e.type() == mvccpb::Event::DELETE) return Start();
        pb::RangeResponse upd = last_;
        *upd.mutable_header() = r.header;
        upd.clear_kvs();
        *upd.add_kvs() = e.kv();
        if (!emit_(upd)) return RecipeCall::Done(absl::OkStatus());
      }
      return RecipeCall::KeepWatching();
  }
  return RecipeCall::Done(absl::InternalError("observe: bad state"));
}

// ------------------------------------------------------------ Queue

RecipeCall EnqueueSteps::Try() {
  key_ = absl::StrCat(prefix_, "/", unique_());
  return RecipeCall::Txn(PutNewTxn(key_, value_, lease_));
}

RecipeCall EnqueueSteps::Start() { return Try(); }

RecipeCall EnqueueSteps::Next(const RecipeReply& r) {
  if (!r.status.ok()) return RecipeCall::Done(r.status);
  if (!r.txn.succeeded()) return Try();  // the key was taken: a new one
  revision_ = r.txn.header().revision();
  return RecipeCall::Done(absl::OkStatus());
}

RecipeCall DequeueSteps::Get() {
  pb::RangeRequest g = PrefixRange(prefix_);
  g.set_sort_target(order_);
  g.set_sort_order(pb::RangeRequest::ASCEND);
  g.set_limit(1);
  state_ = kGet;
  return RecipeCall::Range(std::move(g));
}

RecipeCall DequeueSteps::DeleteRevKey(const mvccpb::KeyValue& kv) {
  // etcd's deleteRevKey: only if nobody changed (took) it since we read it.
  candidate_ = kv;
  attempted_.push_back(kv.key());
  pb::TxnRequest t;
  *t.add_compare() = NumberIs(kv.key(), pb::Compare::MOD, pb::Compare::EQUAL,
                              kv.mod_revision());
  *t.add_success() = DeleteOp(kv.key());
  return RecipeCall::Txn(std::move(t));
}

RecipeCall DequeueSteps::Start() { return Get(); }

RecipeCall DequeueSteps::Next(const RecipeReply& r) {
  switch (state_) {
    case kGet:
      if (!r.status.ok()) return RecipeCall::Done(r.status);
      if (r.range.kvs_size() > 0) {
        state_ = kDeleteFound;
        return DeleteRevKey(r.range.kvs(0));
      }
      if (r.range.more()) return Get();
      state_ = kWatchPut;
      return RecipeCall::Watch(prefix_, RecipePrefixEnd(prefix_),
                               r.range.header().revision());
    case kWatchPut:
      if (!r.status.ok()) return RecipeCall::Done(r.status);
      for (const mvccpb::Event& e : r.events) {
        if (e.type() == mvccpb::Event::PUT) {
          state_ = kDeleteWatched;
          return DeleteRevKey(e.kv());
        }
      }
      return RecipeCall::KeepWatching();
    case kDeleteFound:
    case kDeleteWatched:
      if (!r.status.ok()) return RecipeCall::Done(r.status);
      if (r.txn.succeeded()) {
        value_ = candidate_.value();
        key_ = candidate_.key();
        return RecipeCall::Done(absl::OkStatus());
      }
      return Get();  // someone else took it
  }
  return RecipeCall::Done(absl::InternalError("dequeue: bad state"));
}

PriorityEnqueueSteps::PriorityEnqueueSteps(const std::string& prefix,
                                           std::string value, uint16_t priority)
    : prefix_(absl::StrFormat("%s%05d", prefix, priority)),
      guard_("__" + prefix_),
      value_(std::move(value)) {}

RecipeCall PriorityEnqueueSteps::Last() {
  pb::RangeRequest r = PrefixRange(prefix_);
  r.set_sort_target(pb::RangeRequest::KEY);
  r.set_sort_order(pb::RangeRequest::DESCEND);
  r.set_limit(1);
  state_ = kLast;
  return RecipeCall::Range(std::move(r));
}

RecipeCall PriorityEnqueueSteps::Start() { return Last(); }

RecipeCall PriorityEnqueueSteps::Next(const RecipeReply& r) {
  if (!r.status.ok()) return RecipeCall::Done(r.status);
  if (state_ == kPut) {
    return r.txn.succeeded() ? RecipeCall::Done(absl::OkStatus()) : Last();
  }
  // etcd's newSequentialKV: the number after the last key, allocated under
  // a guard key whose mod revision must not have moved since the read
  // (else a concurrent enqueue took it, or took and deleted it).
  int64_t seq = 0;
  if (r.range.kvs_size() > 0) {
    std::vector<absl::string_view> fields =
        absl::StrSplit(r.range.kvs(0).key(), '/');
    if (!absl::SimpleAtoi(fields.back(), &seq)) {
      return RecipeCall::Done(
          RecipeError(absl::StrCat("bad sequence key ", r.range.kvs(0).key())));
    }
    ++seq;
  }
  const std::string key = absl::StrFormat("%s/%016d", prefix_, seq);
  pb::TxnRequest t;
  *t.add_compare() = NumberIs(guard_, pb::Compare::MOD, pb::Compare::LESS,
                              r.range.header().revision() + 1);
  *t.add_success() = PutOp(guard_, "", 0);
  *t.add_success() = PutOp(key, value_, 0);
  state_ = kPut;
  return RecipeCall::Txn(std::move(t));
}

// ------------------------------------------------------------ Register

RecipeCall RegisterSteps::Start() {
  RecipeCall c;
  c.kind = RecipeCall::kLeaseGrant;
  c.grant.set_ttl(ttl_s_);
  state_ = kGrant;
  return c;
}

RecipeCall RegisterSteps::Next(const RecipeReply& r) {
  switch (state_) {
    case kGrant:
      if (!r.status.ok()) return RecipeCall::Done(r.status);
      lease_ = r.grant.id();
      ttl_ = r.grant.ttl();
      state_ = kCreate;
      return RecipeCall::Txn(PutNewTxn(key_, value_, lease_));
    case kCreate: {
      if (r.status.ok() && r.txn.succeeded()) {
        revision_ = r.txn.header().revision();
        return RecipeCall::Done(absl::OkStatus());
      }
      // Taken (by a live registration) or failed: the lease is of no use.
      error_ = r.status.ok() ? RecipeError(kRecipeErrKeyExists) : r.status;
      state_ = kRevoke;
      RecipeCall c;
      c.kind = RecipeCall::kLeaseRevoke;
      c.revoke.set_id(lease_);
      c.cleanup = true;
      return c;
    }
    case kRevoke:
      return RecipeCall::Done(error_);
  }
  return RecipeCall::Done(absl::InternalError("register: bad state"));
}

}  // namespace detcd::client
