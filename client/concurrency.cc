#include "detcd/concurrency.h"

#include <utility>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "detcd/errors.h"
#include "detcd/lease.h"
#include "detcd/watch.h"

namespace detcd::client {
namespace {

namespace pb = etcdserverpb;

std::string PrefixEnd(const std::string& key) {
  std::string end = key;
  for (int i = static_cast<int>(end.size()) - 1; i >= 0; --i) {
    if (static_cast<unsigned char>(end[i]) < 0xff) {
      end[i] = static_cast<char>(static_cast<unsigned char>(end[i]) + 1);
      return end.substr(0, i + 1);
    }
  }
  return std::string(1, '\0');
}

pb::Compare CreateRevisionIs(const std::string& key, int64_t rev) {
  pb::Compare c;
  c.set_key(key);
  c.set_target(pb::Compare::CREATE);
  c.set_result(pb::Compare::EQUAL);
  c.set_create_revision(rev);
  return c;
}

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

// clientv3's WithFirstCreate / WithLastCreate on a prefix.
pb::RangeRequest TopByCreate(const std::string& prefix, bool first) {
  pb::RangeRequest r;
  r.set_key(prefix);
  r.set_range_end(PrefixEnd(prefix));
  r.set_sort_target(pb::RangeRequest::CREATE);
  r.set_sort_order(first ? pb::RangeRequest::ASCEND : pb::RangeRequest::DESCEND);
  r.set_limit(1);
  return r;
}

// Waits until key is deleted, watching from revision rev.
absl::Status WaitDelete(Client* c, const std::string& key, int64_t rev) {
  Watcher w(c, {}, c->canceller());
  pb::WatchCreateRequest req;
  req.set_key(key);
  req.set_start_revision(rev);
  w.Add(req);
  WatchEvent ev;
  while (w.Next(&ev)) {
    if (ev.has_response) {
      for (const auto& e : ev.response.events()) {
        if (e.type() == mvccpb::Event::DELETE) return absl::OkStatus();
      }
    }
    if (ev.closing) {
      if (!ev.error.empty()) return PlainError(ev.error);
      break;
    }
  }
  if (c->canceller() != nullptr && c->canceller()->cancelled()) {
    return absl::CancelledError(kContextCanceled);
  }
  if (!w.status().ok()) return w.status();
  return PlainError("lost watcher waiting for delete");
}

// Waits until every key under prefix created at or before max_create_rev
// is gone; returns the header of the last range.
absl::StatusOr<pb::ResponseHeader> WaitDeletes(Client* c,
                                               const std::string& prefix,
                                               int64_t max_create_rev) {
  for (;;) {
    pb::RangeRequest r = TopByCreate(prefix, false);
    r.set_max_create_revision(max_create_rev);
    auto resp = c->Range(r);
    if (!resp.ok()) return resp.status();
    if (resp->kvs_size() == 0) return resp->header();
    absl::Status s =
        WaitDelete(c, resp->kvs(0).key(), resp->header().revision());
    if (!s.ok()) return s;
  }
}

}  // namespace

// ---------------------------------------------------------------- Session

Session::Session(Client* client, int64_t lease, int ttl)
    : client_(client), lease_(lease), ttl_(ttl) {}

absl::StatusOr<std::unique_ptr<Session>> Session::New(Client* client,
                                                      int ttl_s) {
  if (ttl_s <= 0) ttl_s = kDefaultTtlSeconds;
  pb::LeaseGrantRequest g;
  g.set_ttl(ttl_s);
  auto resp = client->LeaseGrant(g);
  if (!resp.ok()) return resp.status();
  std::unique_ptr<Session> s(new Session(client, resp->id(), ttl_s));
  Session* raw = s.get();
  s->keeper_ = std::thread([raw] {
    KeepAliveLoop(raw->client_, raw->lease_,
                  [](const pb::LeaseKeepAliveResponse&) {}, &raw->stop_)
        .IgnoreError();
    raw->done_.store(true);
  });
  return s;
}

std::unique_ptr<Session> Session::Attach(Client* client, int64_t lease) {
  std::unique_ptr<Session> s(new Session(client, lease, kDefaultTtlSeconds));
  s->done_.store(true);
  return s;
}

Session::~Session() { Orphan(); }

bool Session::done() const { return done_.load(); }

bool Session::WaitDone(Canceller* stop) {
  while (!done_.load()) {
    if (stop != nullptr) {
      if (stop->WaitForCancel(absl::Milliseconds(50))) break;
    } else {
      absl::SleepFor(absl::Milliseconds(50));
    }
  }
  return done_.load();
}

void Session::Orphan() {
  stop_.Cancel();
  if (keeper_.joinable()) keeper_.join();
}

absl::Status Session::Close() {
  Orphan();
  pb::LeaseRevokeRequest r;
  r.set_id(lease_);
  return client_->LeaseRevoke(r, CallOptions::Timeout(absl::Seconds(ttl_)))
      .status();
}

// ---------------------------------------------------------------- Mutex

Mutex::Mutex(Session* s, std::string prefix)
    : s_(s), prefix_(std::move(prefix) + "/") {}

absl::Status Mutex::Lock() {
  Client* c = s_->client();
  key_ = absl::StrFormat("%s%x", prefix_, static_cast<uint64_t>(s_->lease()));
  pb::TxnRequest t;
  *t.add_compare() = CreateRevisionIs(key_, 0);
  *t.add_success() = PutOp(key_, "", s_->lease());
  *t.add_success()->mutable_request_range() = TopByCreate(prefix_, true);
  *t.add_failure() = GetOp(key_);
  *t.add_failure()->mutable_request_range() = TopByCreate(prefix_, true);
  auto resp = c->Txn(t);
  if (!resp.ok()) return resp.status();
  rev_ = resp->header().revision();
  if (!resp->succeeded()) {
    rev_ = resp->responses(0).response_range().kvs(0).create_revision();
  }
  const auto& owner = resp->responses(1).response_range().kvs();
  if (owner.empty() || owner[0].create_revision() == rev_) {
    header_ = resp->header();
    return absl::OkStatus();
  }
  auto hdr = WaitDeletes(c, prefix_, rev_ - 1);
  if (!hdr.ok()) {
    // Give up our place in the queue (with a call of its own: the
    // canceller that stopped us must not stop this).
    Canceller* saved = c->canceller();
    c->set_canceller(nullptr);
    Unlock().IgnoreError();
    c->set_canceller(saved);
    return hdr.status();
  }
  header_ = *hdr;
  return absl::OkStatus();
}

pb::Compare Mutex::IsOwner() const { return CreateRevisionIs(key_, rev_); }

absl::Status Mutex::Unlock() {
  pb::DeleteRangeRequest d;
  d.set_key(key_);
  auto r = s_->client()->DeleteRange(d);
  if (!r.ok()) return r.status();
  key_ = std::string(1, '\0');
  rev_ = -1;
  return absl::OkStatus();
}

// ---------------------------------------------------------------- Election

Election::Election(Session* s, std::string prefix)
    : s_(s), prefix_(std::move(prefix) + "/") {}

Election Election::Resume(Session* s, std::string prefix,
                          std::string leader_key, int64_t leader_rev) {
  Election e(s, std::move(prefix));
  e.leader_key_ = std::move(leader_key);
  e.leader_rev_ = leader_rev;
  e.leader_ = true;
  return e;
}

absl::Status Election::Campaign(const std::string& val) {
  Client* c = s_->client();
  std::string k =
      absl::StrFormat("%s%x", prefix_, static_cast<uint64_t>(s_->lease()));
  pb::TxnRequest t;
  *t.add_compare() = CreateRevisionIs(k, 0);
  *t.add_success() = PutOp(k, val, s_->lease());
  *t.add_failure() = GetOp(k);
  auto resp = c->Txn(t);
  if (!resp.ok()) return resp.status();
  leader_key_ = k;
  leader_rev_ = resp->header().revision();
  leader_ = true;
  if (!resp->succeeded()) {
    const auto& kv = resp->responses(0).response_range().kvs(0);
    leader_rev_ = kv.create_revision();
    if (kv.value() != val) {
      if (absl::Status s = Proclaim(val); !s.ok()) {
        Resign().IgnoreError();
        return s;
      }
    }
  }
  auto hdr = WaitDeletes(c, prefix_, leader_rev_ - 1);
  if (!hdr.ok()) {
    if (c->canceller() != nullptr && c->canceller()->cancelled()) {
      Canceller* saved = c->canceller();
      c->set_canceller(nullptr);
      Resign().IgnoreError();
      c->set_canceller(saved);
    } else {
      leader_ = false;
    }
    return hdr.status();
  }
  header_ = resp->header();
  return absl::OkStatus();
}

absl::Status Election::Proclaim(const std::string& val) {
  if (!leader_) return PlainError(kErrElectionNotLeader);
  pb::TxnRequest t;
  *t.add_compare() = CreateRevisionIs(leader_key_, leader_rev_);
  *t.add_success() = PutOp(leader_key_, val, s_->lease());
  auto resp = s_->client()->Txn(t);
  if (!resp.ok()) return resp.status();
  if (!resp->succeeded()) {
    leader_key_.clear();
    return PlainError(kErrElectionNotLeader);
  }
  header_ = resp->header();
  return absl::OkStatus();
}

absl::Status Election::Resign() {
  if (!leader_) return absl::OkStatus();
  pb::TxnRequest t;
  *t.add_compare() = CreateRevisionIs(leader_key_, leader_rev_);
  pb::RequestOp del;
  del.mutable_request_delete_range()->set_key(leader_key_);
  *t.add_success() = del;
  auto resp = s_->client()->Txn(t);
  if (resp.ok()) header_ = resp->header();
  leader_key_.clear();
  leader_ = false;
  return resp.status();
}

absl::StatusOr<pb::RangeResponse> Election::Leader() {
  auto resp = s_->client()->Range(TopByCreate(prefix_, true));
  if (!resp.ok()) return resp.status();
  if (resp->kvs_size() == 0) return PlainError(kErrElectionNoLeader);
  return resp;
}

absl::Status Election::Observe(
    const std::function<bool(const pb::RangeResponse&)>& on_leader) {
  Client* c = s_->client();
  for (;;) {
    auto resp = c->Range(TopByCreate(prefix_, true));
    if (!resp.ok()) return resp.status();
    pb::RangeResponse cur;
    if (resp->kvs_size() == 0) {
      // No leader yet: wait for the first key under the prefix.
      Watcher w(c, {}, c->canceller());
      pb::WatchCreateRequest req;
      req.set_key(prefix_);
      req.set_range_end(PrefixEnd(prefix_));
      req.set_start_revision(resp->header().revision());
      w.Add(req);
      bool found = false;
      WatchEvent ev;
      while (!found && w.Next(&ev)) {
        if (!ev.error.empty() || (ev.closing && !ev.has_response)) {
          return PlainError(ev.error);
        }
        for (const auto& e : ev.response.events()) {
          if (e.type() == mvccpb::Event::PUT) {
            *cur.mutable_header() = ev.response.header();
            cur.mutable_header()->set_revision(e.kv().mod_revision());
            *cur.add_kvs() = e.kv();
            found = true;
            break;
          }
        }
      }
      if (!found) return w.status().ok() ? PlainError("") : w.status();
    } else {
      *cur.mutable_header() = resp->header();
      *cur.add_kvs() = resp->kvs(0);
    }
    if (!on_leader(cur)) return absl::OkStatus();
    // Follow the leader's key until it is deleted.
    Watcher w(c, {}, c->canceller());
    pb::WatchCreateRequest req;
    req.set_key(cur.kvs(0).key());
    req.set_start_revision(cur.header().revision() + 1);
    w.Add(req);
    bool deleted = false;
    WatchEvent ev;
    while (!deleted) {
      if (!w.Next(&ev)) return w.status();
      if (ev.closing && !ev.has_response) return absl::OkStatus();
      for (const auto& e : ev.response.events()) {
        if (e.type() == mvccpb::Event::DELETE) {
          deleted = true;
          break;
        }
        pb::RangeResponse upd = *resp;
        *upd.mutable_header() = ev.response.header();
        upd.clear_kvs();
        *upd.add_kvs() = e.kv();
        if (!on_leader(upd)) return absl::OkStatus();
      }
      if (ev.closing) break;
    }
  }
}

}  // namespace detcd::client
