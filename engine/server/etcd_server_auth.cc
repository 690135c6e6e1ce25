// EtcdServer's Auth service and the API-layer authorization (etcd 3.4's
// v3_server.go auth methods, AuthInfoFromCtx, doSerialize and the
// maintenance/membership admin checks). Apply-time checks live in
// etcd_state_machine.cc.
#include <array>
#include <utility>

#include "engine/auth/bcrypt.h"
#include "engine/server/errors.h"
#include "engine/server/etcd_server.h"

namespace detcd::server {
namespace {

// How often Authenticate proposes again when the auth revision moved
// between its password check and the token's apply (etcd loops without a
// bound; a bound keeps a member that is flooded with auth changes from
// spinning).
constexpr int kAuthenticateTries = 8;

}  // namespace

absl::StatusOr<std::optional<auth::AuthInfo>> EtcdServer::AuthInfoFor(
    const Caller* c) {
  if (c == nullptr) return std::optional<auth::AuthInfo>();
  if (c->token.has_value()) {
    std::optional<auth::AuthInfo> ai =
        tokens_->Info(*c->token, sm_.auth().revision());
    if (!ai.has_value()) return auth::ErrInvalidAuthToken();
    return ai;
  }
  if (opts_.client_cert_auth && !c->cert_cn.empty()) {
    return std::optional<auth::AuthInfo>(
        auth::AuthInfo{c->cert_cn, sm_.auth().revision()});
  }
  return std::optional<auth::AuthInfo>();
}

void EtcdServer::AwaitCaller(const Caller& c, std::function<void()> go) {
  uint64_t index = 0;
  if (!c.token.has_value() || !auth::SimpleTokenIndex(*c.token, &index) ||
      index <= node_->applied_index() || node_->failed()) {
    return go();
  }
  token_waits_.push_back(TokenWait{
      index, ticks_ + opts_.node.request_timeout_ticks, std::move(go)});
}

void EtcdServer::RunTokenWaits() {
  if (token_waits_.empty()) return;
  std::vector<std::function<void()>> ready;
  for (auto it = token_waits_.begin(); it != token_waits_.end();) {
    if (it->index <= node_->applied_index() || ticks_ >= it->deadline_tick ||
        node_->failed()) {
      ready.push_back(std::move(it->go));
      it = token_waits_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& go : ready) go();
}

absl::StatusOr<std::optional<auth::AuthInfo>> EtcdServer::CurrentAuthInfo() {
  return AuthInfoFor(caller_);
}

absl::Status EtcdServer::StampCaller(etcdserverpb::InternalRaftRequest* req) {
  absl::StatusOr<std::optional<auth::AuthInfo>> ai = AuthInfoFor(caller_);
  if (!ai.ok()) return ai.status();
  if (ai->has_value()) {
    req->mutable_header()->set_username((*ai)->user);
    req->mutable_header()->set_auth_revision((*ai)->revision);
  }
  return absl::OkStatus();
}

absl::Status EtcdServer::CheckAdmin() {
  if (caller_ == nullptr) return absl::OkStatus();
  absl::StatusOr<std::optional<auth::AuthInfo>> ai = AuthInfoFor(caller_);
  if (!ai.ok()) return ai.status();
  return sm_.auth().IsAdminPermitted(ai->has_value() ? &**ai : nullptr);
}

std::shared_ptr<const Caller> EtcdServer::KeepCaller() const {
  if (caller_ == nullptr) return nullptr;
  return std::make_shared<const Caller>(*caller_);
}

absl::Status EtcdServer::CheckRead(const std::shared_ptr<const Caller>& kept,
                                   std::string_view key,
                                   std::string_view range_end) {
  if (kept == nullptr) return absl::OkStatus();
  absl::StatusOr<std::optional<auth::AuthInfo>> ai = AuthInfoFor(kept.get());
  if (!ai.ok()) return ai.status();
  // etcd's doSerialize: no credentials is the empty AuthInfo.
  return sm_.auth().IsRangePermitted(ai->value_or(auth::AuthInfo{}), key,
                                     range_end);
}

absl::Status EtcdServer::CheckReadTxn(const std::shared_ptr<const Caller>& kept,
                                      const etcdserverpb::TxnRequest& t) {
  if (kept == nullptr) return absl::OkStatus();
  absl::StatusOr<std::optional<auth::AuthInfo>> ai = AuthInfoFor(kept.get());
  if (!ai.ok()) return ai.status();
  return CheckTxnAuth(sm_.auth(), ai->value_or(auth::AuthInfo{}), t);
}

absl::Status EtcdServer::CheckWatchPermitted(std::string_view key,
                                             std::string_view range_end) {
  if (caller_ == nullptr) return absl::OkStatus();
  absl::StatusOr<std::optional<auth::AuthInfo>> ai = AuthInfoFor(caller_);
  if (!ai.ok()) return ai.status();
  return sm_.auth().IsRangePermitted(ai->value_or(auth::AuthInfo{}), key,
                                     range_end);
}

std::string EtcdServer::WatchCancelReason(const absl::Status& s) {
  // etcd sends the gRPC error's Error() text: "rpc error: code = ... desc
  // = ..."; anything but a bad token, an old revision or a missing user
  // reads as permission denied.
  const absl::Status c = ToClientError(s);
  if (c.code() == absl::StatusCode::kUnauthenticated) {
    return "rpc error: code = Unauthenticated desc = "
           "etcdserver: invalid auth token";
  }
  if (c.message() == "etcdserver: revision of auth store is old") {
    return "rpc error: code = InvalidArgument desc = "
           "etcdserver: revision of auth store is old";
  }
  if (c.message() == "etcdserver: user name is empty") {
    return "rpc error: code = InvalidArgument desc = "
           "etcdserver: user name is empty";
  }
  return "rpc error: code = PermissionDenied desc = "
         "etcdserver: permission denied";
}

void EtcdServer::HashPassword(
    std::string password,
    std::function<void(absl::StatusOr<std::string>)> then) {
  std::array<uint8_t, 16> salt{};
  for (size_t i = 0; i < salt.size(); i += 8) {
    const uint64_t x = env_.rng->Next();
    for (size_t j = 0; j < 8; ++j) salt[i + j] = static_cast<uint8_t>(x >> (8 * j));
  }
  int cost = opts_.bcrypt_cost;
  if (cost < auth::kBcryptMinCost || cost > auth::kBcryptMaxCost) {
    cost = auth::kBcryptDefaultCost;  // etcd falls back to its default
  }
  // The salt comes from the engine's stream; the hash (tens of ms) is
  // made off the engine.
  auto out = std::make_shared<absl::StatusOr<std::string>>();
  OffEngine([out, password = std::move(password), cost,
             salt] { *out = auth::BcryptHash(password, cost, salt); },
            [out, then = std::move(then)] { then(std::move(*out)); });
}

void EtcdServer::OffEngine(std::function<void()> work,
                           std::function<void()> done) {
  if (env_.offload == nullptr) {
    work();
    return done();
  }
  env_.offload->Run(std::move(work),
                    [alive = std::weak_ptr<bool>(alive_), done] {
                      if (!alive.expired()) done();
                    });
}

template <typename Req, typename Resp>
void EtcdServer::ProposeAuth(
    const Req& r, Req* (etcdserverpb::InternalRaftRequest::*field)(),
    Done<Resp> done) {
  etcdserverpb::InternalRaftRequest req;
  if (absl::Status s = StampCaller(&req); !s.ok()) return done(s);
  *(req.*field)() = r;
  ProposeRequest(std::move(req), std::move(done));
}

using IRR = etcdserverpb::InternalRaftRequest;

void EtcdServer::AuthEnable(const etcdserverpb::AuthEnableRequest& r,
                            Done<etcdserverpb::AuthEnableResponse> done) {
  ProposeAuth(r, &IRR::mutable_auth_enable, std::move(done));
}

void EtcdServer::AuthDisable(const etcdserverpb::AuthDisableRequest& r,
                             Done<etcdserverpb::AuthDisableResponse> done) {
  ProposeAuth(r, &IRR::mutable_auth_disable, std::move(done));
}

void EtcdServer::AuthStatus(const etcdserverpb::AuthStatusRequest&,
                            Done<etcdserverpb::AuthStatusResponse> done) {
  etcdserverpb::AuthStatusResponse resp;
  resp.set_enabled(sm_.auth().enabled());
  resp.set_authrevision(sm_.auth().revision());
  FillHeader(&resp);
  done(std::move(resp));
}

void EtcdServer::Authenticate(const etcdserverpb::AuthenticateRequest& r,
                              Done<etcdserverpb::AuthenticateResponse> done) {
  AuthenticateOnce(r, kAuthenticateTries, std::move(done));
}

void EtcdServer::AuthenticateOnce(
    const etcdserverpb::AuthenticateRequest& r, int tries,
    Done<etcdserverpb::AuthenticateResponse> done) {
  LinearizableRead([this, r, tries, done = std::move(done)](absl::Status s) {
    if (!s.ok()) return done(s);
    // etcd's CheckPassword: the hash comparison is made here, before
    // proposing, so the log never holds the password. bcrypt takes tens of
    // ms: off the engine (etcd too checks outside its raft loop).
    absl::StatusOr<std::string> hash = sm_.auth().PasswordHash(r.name());
    if (!hash.ok()) return done(hash.status());
    const uint64_t checked = sm_.auth().revision();
    auto matches = std::make_shared<bool>(false);
    OffEngine(
        [matches, hash = *std::move(hash), password = r.password()] {
          *matches = auth::BcryptMatches(hash, password);
        },
        [this, r, tries, checked, matches, done = std::move(done)]() mutable {
          if (!*matches) return done(auth::ErrAuthFailed());
          ProposeAuthenticate(r, tries, checked, std::move(done));
        });
  });
}

void EtcdServer::ProposeAuthenticate(
    const etcdserverpb::AuthenticateRequest& r, int tries, uint64_t checked,
    Done<etcdserverpb::AuthenticateResponse> done) {
  etcdserverpb::InternalRaftRequest req;
  req.mutable_authenticate()->set_name(r.name());
  req.mutable_authenticate()->set_simple_token(tokens_->GenTokenPrefix());
  ProposeRequest<etcdserverpb::AuthenticateResponse>(
      std::move(req),
      [this, r, tries, checked, done = std::move(done)](
          absl::StatusOr<etcdserverpb::AuthenticateResponse> resp) mutable {
        if (!resp.ok() || checked == sm_.auth().revision() || tries <= 1) {
          return done(std::move(resp));
        }
        // The password was checked against an older store: again.
        AuthenticateOnce(r, tries - 1, std::move(done));
      });
}

void EtcdServer::UserAdd(const etcdserverpb::AuthUserAddRequest& r,
                         Done<etcdserverpb::AuthUserAddResponse> done) {
  // A user without a name is refused at apply; no need to hash for it.
  const bool hash = !r.options().no_password() && r.hashedpassword().empty() &&
                    !r.name().empty();
  ProposeAuthHashed(r, &IRR::mutable_auth_user_add, hash, std::move(done));
}

template <typename Req, typename Resp>
void EtcdServer::ProposeAuthHashed(
    const Req& r, Req* (etcdserverpb::InternalRaftRequest::*field)(), bool hash,
    Done<Resp> done) {
  // The caller is stamped now: the hash is made off the engine, and its
  // completion runs outside this request's caller scope.
  etcdserverpb::InternalRaftRequest req;
  if (absl::Status s = StampCaller(&req); !s.ok()) return done(s);
  Req* h = (req.*field)();
  *h = r;
  h->clear_password();
  if (!hash) return ProposeRequest(std::move(req), std::move(done));
  HashPassword(r.password(),
               [this, field, req = std::move(req), done = std::move(done)](
                   absl::StatusOr<std::string> hashed) mutable {
                 if (!hashed.ok()) return done(hashed.status());
                 (req.*field)()->set_hashedpassword(*std::move(hashed));
                 ProposeRequest(std::move(req), std::move(done));
               });
}

void EtcdServer::UserGet(const etcdserverpb::AuthUserGetRequest& r,
                         Done<etcdserverpb::AuthUserGetResponse> done) {
  ProposeAuth(r, &IRR::mutable_auth_user_get, std::move(done));
}

void EtcdServer::UserList(const etcdserverpb::AuthUserListRequest& r,
                          Done<etcdserverpb::AuthUserListResponse> done) {
  ProposeAuth(r, &IRR::mutable_auth_user_list, std::move(done));
}

void EtcdServer::UserDelete(const etcdserverpb::AuthUserDeleteRequest& r,
                            Done<etcdserverpb::AuthUserDeleteResponse> done) {
  ProposeAuth(r, &IRR::mutable_auth_user_delete, std::move(done));
}

void EtcdServer::UserChangePassword(
    const etcdserverpb::AuthUserChangePasswordRequest& r,
    Done<etcdserverpb::AuthUserChangePasswordResponse> done) {
  ProposeAuthHashed(r, &IRR::mutable_auth_user_change_password,
                    r.hashedpassword().empty(), std::move(done));
}

void EtcdServer::UserGrantRole(
    const etcdserverpb::AuthUserGrantRoleRequest& r,
    Done<etcdserverpb::AuthUserGrantRoleResponse> done) {
  ProposeAuth(r, &IRR::mutable_auth_user_grant_role, std::move(done));
}

void EtcdServer::UserRevokeRole(
    const etcdserverpb::AuthUserRevokeRoleRequest& r,
    Done<etcdserverpb::AuthUserRevokeRoleResponse> done) {
  ProposeAuth(r, &IRR::mutable_auth_user_revoke_role, std::move(done));
}

void EtcdServer::RoleAdd(const etcdserverpb::AuthRoleAddRequest& r,
                         Done<etcdserverpb::AuthRoleAddResponse> done) {
  ProposeAuth(r, &IRR::mutable_auth_role_add, std::move(done));
}

void EtcdServer::RoleGet(const etcdserverpb::AuthRoleGetRequest& r,
                         Done<etcdserverpb::AuthRoleGetResponse> done) {
  ProposeAuth(r, &IRR::mutable_auth_role_get, std::move(done));
}

void EtcdServer::RoleList(const etcdserverpb::AuthRoleListRequest& r,
                          Done<etcdserverpb::AuthRoleListResponse> done) {
  ProposeAuth(r, &IRR::mutable_auth_role_list, std::move(done));
}

void EtcdServer::RoleDelete(const etcdserverpb::AuthRoleDeleteRequest& r,
                            Done<etcdserverpb::AuthRoleDeleteResponse> done) {
  ProposeAuth(r, &IRR::mutable_auth_role_delete, std::move(done));
}

void EtcdServer::RoleGrantPermission(
    const etcdserverpb::AuthRoleGrantPermissionRequest& r,
    Done<etcdserverpb::AuthRoleGrantPermissionResponse> done) {
  ProposeAuth(r, &IRR::mutable_auth_role_grant_permission, std::move(done));
}

void EtcdServer::RoleRevokePermission(
    const etcdserverpb::AuthRoleRevokePermissionRequest& r,
    Done<etcdserverpb::AuthRoleRevokePermissionResponse> done) {
  ProposeAuth(r, &IRR::mutable_auth_role_revoke_permission, std::move(done));
}

}  // namespace detcd::server
