#include "harness/auth_workload.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/server/errors.h"

namespace detcd::harness {
namespace {

namespace pb = etcdserverpb;
using Request = pb::InternalRaftRequest;

const std::vector<std::string> kUsers = {"alice", "bob", "carol"};
const std::vector<std::string> kRoles = {"ra", "rb", "rc"};
const std::string kFromKey(1, '\0');

// The permission shapes the admin grants and revokes: a prefix, a single
// key, a range, from a key on.
struct Shape {
  const char* key;
  std::string range_end;
};
const std::vector<Shape>& Shapes() {
  static const std::vector<Shape>* s = new std::vector<Shape>{
      {"a/", "a0"},   {"b/", "b0"},     {"a/1", ""},
      {"b/1", "b/3"}, {"z/", kFromKey}, {"b/2", ""},
  };
  return *s;
}

authpb::Permission MakePerm(const Shape& s, authpb::Permission::Type t) {
  authpb::Permission p;
  p.set_key(s.key);
  p.set_range_end(s.range_end);
  p.set_permtype(t);
  return p;
}

Request UserAdd(const std::string& name, const std::string& password) {
  Request r;
  r.mutable_auth_user_add()->set_name(name);
  r.mutable_auth_user_add()->set_password(password);
  return r;
}
Request GrantRole(const std::string& user, const std::string& role) {
  Request r;
  r.mutable_auth_user_grant_role()->set_user(user);
  r.mutable_auth_user_grant_role()->set_role(role);
  return r;
}
Request RoleAdd(const std::string& name) {
  Request r;
  r.mutable_auth_role_add()->set_name(name);
  return r;
}
Request GrantPerm(const std::string& role, const authpb::Permission& p) {
  Request r;
  r.mutable_auth_role_grant_permission()->set_name(role);
  *r.mutable_auth_role_grant_permission()->mutable_perm() = p;
  return r;
}

bool IsReadOnly(const Request& r) {
  if (r.has_range()) return true;
  if (!r.has_txn()) return false;
  for (const auto* ops : {&r.txn().success(), &r.txn().failure()}) {
    for (const pb::RequestOp& op : *ops) {
      if (!op.has_request_range()) return false;
    }
  }
  return true;
}

using Finish = std::function<void(const absl::Status&, uint64_t, uint64_t,
                                  const std::string&)>;

// Calls the member's method for `r`; `finish` gets the outcome, the raft
// indexes the member had applied when the request reached it and when it
// answered, and a token (Authenticate).
void Dispatch(server::EtcdServer& s, const Request& r, const Finish& finish) {
  server::EtcdServer* sp = &s;
  const uint64_t from = s.node().applied_index();
  auto done = [sp, from, finish](const auto& resp) {
    finish(resp.status(), from, sp->node().applied_index(), "");
  };
  if (r.has_put()) return s.Put(r.put(), done);
  if (r.has_delete_range()) return s.DeleteRange(r.delete_range(), done);
  if (r.has_txn()) return s.Txn(r.txn(), done);
  if (r.has_range()) return s.Range(r.range(), done);
  if (r.has_authenticate()) {
    pb::AuthenticateRequest a;
    a.set_name(r.authenticate().name());
    a.set_password(r.authenticate().password());
    return s.Authenticate(
        a, [sp, from, finish](absl::StatusOr<pb::AuthenticateResponse> resp) {
          finish(resp.status(), from, sp->node().applied_index(),
                 resp.ok() ? resp->token() : "");
        });
  }
  if (r.has_auth_enable()) return s.AuthEnable(r.auth_enable(), done);
  if (r.has_auth_disable()) return s.AuthDisable(r.auth_disable(), done);
  if (r.has_auth_user_add()) return s.UserAdd(r.auth_user_add(), done);
  if (r.has_auth_user_delete()) return s.UserDelete(r.auth_user_delete(), done);
  if (r.has_auth_user_change_password()) {
    return s.UserChangePassword(r.auth_user_change_password(), done);
  }
  if (r.has_auth_user_grant_role()) {
    return s.UserGrantRole(r.auth_user_grant_role(), done);
  }
  if (r.has_auth_user_revoke_role()) {
    return s.UserRevokeRole(r.auth_user_revoke_role(), done);
  }
  if (r.has_auth_role_add()) return s.RoleAdd(r.auth_role_add(), done);
  if (r.has_auth_role_delete()) return s.RoleDelete(r.auth_role_delete(), done);
  if (r.has_auth_role_grant_permission()) {
    return s.RoleGrantPermission(r.auth_role_grant_permission(), done);
  }
  if (r.has_auth_role_revoke_permission()) {
    return s.RoleRevokePermission(r.auth_role_revoke_permission(), done);
  }
  if (r.has_auth_user_list()) return s.UserList(r.auth_user_list(), done);
  finish(absl::InternalError("auth workload: unknown request"), 0, 0, "");
}

}  // namespace

AuthWorkload::AuthWorkload(Cluster* cluster, env::SeededRng rng,
                           AuthWorkloadOptions opts)
    : cluster_(cluster),
      rng_(rng, cluster->options().decisions, "auth-workload"),
      opts_(opts) {
  cluster_->set_commit_filter(
      [this](const raft::Entry& e) { return checker_.OnCommitted(e); });
  checker_.set_lease_keys([this](int64_t lease) {
    // The KV model is right before the entry being judged.
    std::vector<std::string> keys;
    const KvModel& m = cluster_->model();
    for (const mvcc::KeyValue& kv : m.LiveAt(m.rev())) {
      if (kv.lease == lease) keys.push_back(kv.key);
    }
    return keys;
  });
  // etcd's documented set-up: root first, then roles and users, then on.
  setup_.push_back(UserAdd("root", kRootPassword));
  setup_.push_back(GrantRole("root", "root"));
  for (const std::string& role : kRoles) setup_.push_back(RoleAdd(role));
  const auto& sh = Shapes();
  setup_.push_back(GrantPerm("ra", MakePerm(sh[0], authpb::Permission::READ)));
  setup_.push_back(
      GrantPerm("rb", MakePerm(sh[1], authpb::Permission::READWRITE)));
  setup_.push_back(GrantPerm("rc", MakePerm(sh[4], authpb::Permission::READ)));
  setup_.push_back(
      GrantPerm("rc", MakePerm(sh[2], authpb::Permission::READWRITE)));
  setup_.push_back(GrantPerm("rc", MakePerm(sh[3], authpb::Permission::WRITE)));
  for (const std::string& u : kUsers) {
    setup_.push_back(UserAdd(u, NewPassword(u)));
  }
  setup_.push_back(GrantRole("alice", "ra"));  // read-only on a/
  setup_.push_back(GrantRole("bob", "rb"));    // read-write on b/
  setup_.push_back(GrantRole("carol", "ra"));  // mixed
  setup_.push_back(GrantRole("carol", "rc"));
  Request enable;
  enable.mutable_auth_enable();
  setup_.push_back(enable);
  for (const std::string& u : kUsers) {
    users_.push_back(UserClient{u, std::nullopt, 0, 0, false});
  }
}

AuthWorkload::~AuthWorkload() { cluster_->set_commit_filter(nullptr); }

void AuthWorkload::Later(int64_t delay_ns, std::function<void()> fn) {
  cluster_->world().After(delay_ns, std::move(fn));
}

uint64_t AuthWorkload::RandomUpNode() {
  std::vector<uint64_t> up = cluster_->UpNodes();
  return up.empty() ? 0 : up[rng_.Uniform(up.size())];
}

bool AuthWorkload::Ended() const {
  return cluster_->world().now() >= opts_.end_ns;
}

std::string AuthWorkload::NewPassword(const std::string& user) {
  std::vector<std::string>& pw = passwords_[user];
  pw.push_back(absl::StrCat("pw-", user, "-", pw.size()));
  return pw.back();
}

std::string AuthWorkload::AdminStep() {
  std::string stream = absl::StrCat("auth/admin.", admin_steps_++);
  Use(stream);
  return stream;
}

std::string AuthWorkload::UserStep(int c) {
  std::string stream = absl::StrCat("auth/u", c, ".", users_[c].steps++);
  Use(stream);
  return stream;
}

void AuthWorkload::Start() {
  Use("auth/start");
  Later(rng_.Range(0, 50 * sim::kMillisecond), [this] { SetupStep(0); });
}

void AuthWorkload::Send(uint64_t id,
                        const std::optional<server::Caller>& caller,
                        const Request& r, Answer answer) {
  const uint64_t call = ++next_call_;
  pending_[call] = std::move(answer);
  // Whichever comes first, the answer or the timeout, is delivered, from a
  // fresh event (never back into a member from its own callback).
  Finish finish = [this, call](const absl::Status& s, uint64_t from,
                               uint64_t index, const std::string& token) {
    auto it = pending_.find(call);
    if (it == pending_.end()) return;
    Answer a = std::move(it->second);
    pending_.erase(it);
    Later(0, [a = std::move(a), s, from, index, token] {
      a(s, from, index, token);
    });
  };
  Later(opts_.timeout_ns, [finish] {
    finish(absl::DeadlineExceededError("client timeout"), 0, 0, "");
  });
  auto fn = [r, finish](server::EtcdServer& s) { Dispatch(s, r, finish); };
  const bool up = caller.has_value() ? cluster_->CallAs(id, *caller, fn)
                                     : cluster_->Call(id, fn);
  if (!up) finish(absl::UnavailableError("member down"), 0, 0, "");
}

// ---- admin ----

void AuthWorkload::SetupStep(size_t step) {
  const std::string stream = AdminStep();
  if (step == setup_.size()) {
    enabled_ = true;
    AdminAuthenticate();
    for (size_t c = 0; c < users_.size(); ++c) {
      Later(rng_.Range(0, opts_.user_think_max_ns),
            [this, c] { UserNext(static_cast<int>(c)); });
    }
    return;
  }
  const uint64_t target = RandomUpNode();
  if (target == 0) {
    Later(50 * sim::kMillisecond, [this, step] { SetupStep(step); });
    return;
  }
  const Request r = setup_[step];
  Send(target, std::nullopt, r,
       [this, step, r, stream](const absl::Status& s, uint64_t, uint64_t index,
                               const std::string&) {
         Use(stream);
         checker_.OnAnswer("root", r, false, index, index, s);
         const absl::Status c = s.ok() ? s : server::ToClientError(s);
         // A step that took effect before (its answer was lost) is done.
         const bool done =
             s.ok() || c.message() == "etcdserver: user name already exists" ||
             c.message() == "etcdserver: role name already exists";
         if (done) return SetupStep(step + 1);
         Later(rng_.Range(10, 100) * sim::kMillisecond,
               [this, step] { SetupStep(step); });
       });
}

void AuthWorkload::AdminAuthenticate() {
  if (Ended()) return;
  const std::string stream = AdminStep();
  const uint64_t target = RandomUpNode();
  if (target == 0) {
    Later(50 * sim::kMillisecond, [this] { AdminAuthenticate(); });
    return;
  }
  Request r;
  r.mutable_authenticate()->set_name("root");
  r.mutable_authenticate()->set_password(kRootPassword);
  Send(target, std::nullopt, r,
       [this, stream](const absl::Status& s, uint64_t, uint64_t,
                      const std::string& token) {
         Use(stream);
         if (s.ok()) {
           admin_token_ = token;
           return AdminNext();
         }
         Later(rng_.Range(10, 100) * sim::kMillisecond,
               [this] { AdminAuthenticate(); });
       });
}

AuthWorkload::Request AuthWorkload::RandomAdminRequest() {
  const std::string& role = kRoles[rng_.Uniform(kRoles.size())];
  const std::string& user = kUsers[rng_.Uniform(kUsers.size())];
  const Shape& shape = Shapes()[rng_.Uniform(Shapes().size())];
  const auto type = static_cast<authpb::Permission::Type>(rng_.Uniform(3));
  const uint64_t dice = rng_.Uniform(100);
  Request r;
  if (dice < 30) return GrantPerm(role, MakePerm(shape, type));
  if (dice < 50) {
    auto* v = r.mutable_auth_role_revoke_permission();
    v->set_role(role);
    v->set_key(shape.key);
    v->set_range_end(shape.range_end);
    return r;
  }
  if (dice < 63) return GrantRole(user, role);
  if (dice < 76) {
    r.mutable_auth_user_revoke_role()->set_name(user);
    r.mutable_auth_user_revoke_role()->set_role(role);
    return r;
  }
  if (dice < 84) {
    r.mutable_auth_user_change_password()->set_name(user);
    r.mutable_auth_user_change_password()->set_password(NewPassword(user));
    return r;
  }
  if (dice < 90) {
    // The user goes, and comes back a little later with a new password
    // and one of the roles.
    r.mutable_auth_user_delete()->set_name(user);
    admin_queue_.push_back(UserAdd(user, NewPassword(user)));
    admin_queue_.push_back(GrantRole(user, role));
    return r;
  }
  if (dice < 95) {
    r.mutable_auth_role_delete()->set_role(role);
    admin_queue_.push_back(RoleAdd(role));
    admin_queue_.push_back(GrantPerm(role, MakePerm(shape, type)));
    admin_queue_.push_back(GrantRole(user, role));
    return r;
  }
  if (dice < 97) {
    // Auth off for a moment (every token ends, the revision moves), then
    // on again.
    r.mutable_auth_disable();
    Request enable;
    enable.mutable_auth_enable();
    admin_queue_.push_back(enable);
    return r;
  }
  r.mutable_auth_user_list();
  return r;
}

void AuthWorkload::AdminNext() {
  if (Ended()) return;
  // Enabling auth again goes with the root certificate: while auth is off
  // there is no token to be had.
  const bool enable_next =
      !admin_queue_.empty() && admin_queue_.front().has_auth_enable();
  if (!admin_token_.has_value() && !enable_next) return AdminAuthenticate();
  const std::string stream = AdminStep();
  const uint64_t target = RandomUpNode();
  if (target == 0) {
    Later(50 * sim::kMillisecond, [this] { AdminNext(); });
    return;
  }
  Request r;
  if (admin_queue_.empty()) {
    r = RandomAdminRequest();
  } else {
    r = admin_queue_.front();
    admin_queue_.pop_front();
  }
  std::optional<server::Caller> caller;
  if (!enable_next) caller = server::Caller{*admin_token_, ""};
  Send(target, caller, r,
       [this, r, stream](const absl::Status& s, uint64_t, uint64_t index,
                         const std::string&) {
         Use(stream);
         checker_.OnAnswer("root", r, false, index, index, s);
         if (!s.ok() &&
             server::ToClientError(s) == AuthChecker::InvalidToken()) {
           admin_token_.reset();
         }
         Later(rng_.Range(opts_.admin_think_min_ns, opts_.admin_think_max_ns),
               [this] { AdminNext(); });
       });
}

// ---- users ----

AuthWorkload::Request AuthWorkload::RandomUserRequest() {
  static const char* kAreas[] = {"a", "b", "z"};
  auto key = [&] {
    const uint64_t area = rng_.Uniform(3);
    return absl::StrCat(kAreas[area], "/", rng_.Uniform(area == 2 ? 3 : 4));
  };
  // A key range: a prefix, a range within b/, from z/ on, or one key.
  auto range = [&](std::string* k, std::string* end) {
    switch (rng_.Uniform(5)) {
      case 0:
        *k = "a/";
        *end = "a0";
        break;
      case 1:
        *k = "b/";
        *end = "b0";
        break;
      case 2:
        *k = "b/1";
        *end = "b/3";
        break;
      case 3:
        *k = "z/";
        *end = kFromKey;
        break;
      default:
        *k = key();
        end->clear();
        break;
    }
  };
  const std::string value = absl::StrCat("v", next_call_);
  const uint64_t dice = rng_.Uniform(100);
  Request r;
  if (dice < 30) {
    pb::PutRequest* p = r.mutable_put();
    p->set_key(key());
    p->set_value(value);
    p->set_prev_kv(rng_.Chance(0.2));
  } else if (dice < 40) {
    pb::DeleteRangeRequest* d = r.mutable_delete_range();
    std::string k, end;
    if (rng_.Chance(0.6)) {
      k = key();
    } else {
      range(&k, &end);
    }
    d->set_key(k);
    d->set_range_end(end);
    d->set_prev_kv(rng_.Chance(0.2));
  } else if (dice < 75) {
    pb::RangeRequest* g = r.mutable_range();
    std::string k, end;
    range(&k, &end);
    g->set_key(k);
    g->set_range_end(end);
    g->set_serializable(rng_.Chance(0.3));
  } else {
    pb::TxnRequest* t = r.mutable_txn();
    pb::Compare* c = t->add_compare();
    c->set_key(key());
    c->set_target(pb::Compare::VERSION);
    c->set_result(rng_.Chance(0.5) ? pb::Compare::GREATER : pb::Compare::EQUAL);
    c->set_version(0);
    const bool writes = dice < 90;
    if (writes) {
      pb::PutRequest* p = t->add_success()->mutable_request_put();
      p->set_key(key());
      p->set_value(value);
    }
    std::string k, end;
    range(&k, &end);
    pb::RangeRequest* g = t->add_success()->mutable_request_range();
    g->set_key(k);
    g->set_range_end(end);
    t->add_failure()->mutable_request_range()->set_key(key());
    if (writes && rng_.Chance(0.3)) {
      pb::DeleteRangeRequest* d =
          t->add_failure()->mutable_request_delete_range();
      d->set_key(key());
      d->set_prev_kv(rng_.Chance(0.5));
    }
  }
  return r;
}

void AuthWorkload::UserNext(int ci) {
  UserClient& c = users_[ci];
  if (Ended()) return;
  const std::string stream = UserStep(ci);
  const uint64_t target = RandomUpNode();
  if (target == 0) {
    Later(50 * sim::kMillisecond, [this, ci] { UserNext(ci); });
    return;
  }
  auto next = [this, ci, stream] {
    Use(stream);
    Later(rng_.Range(1, opts_.user_think_max_ns), [this, ci] { UserNext(ci); });
  };
  if (!c.token.has_value()) {
    // The newest password first, then older ones (a change whose answer
    // was lost may or may not have taken effect).
    const std::vector<std::string>& pw = passwords_[c.user];
    const std::string& password =
        pw[pw.size() - 1 - (c.password_try % pw.size())];
    Request r;
    r.mutable_authenticate()->set_name(c.user);
    r.mutable_authenticate()->set_password(password);
    Send(target, std::nullopt, r,
         [this, ci, next](const absl::Status& s, uint64_t, uint64_t,
                          const std::string& token) {
           UserClient& c = users_[ci];
           if (s.ok()) {
             c.token = token;
             c.password_try = 0;
           } else if (server::ToClientError(s).message() ==
                      "etcdserver: authentication failed, invalid user ID or "
                      "password") {
             ++c.password_try;
           }
           next();
         });
    return;
  }
  const Request r = RandomUserRequest();
  const bool read = IsReadOnly(r);
  Send(target, server::Caller{*c.token, ""}, r,
       [this, ci, r, read, next](const absl::Status& s, uint64_t from,
                                 uint64_t index, const std::string&) {
         UserClient& c = users_[ci];
         checker_.OnAnswer(c.user, r, read, from, index, s);
         if (!s.ok() &&
             server::ToClientError(s) == AuthChecker::InvalidToken()) {
           c.token.reset();
         }
         next();
       });
}

}  // namespace detcd::harness
