#include "engine/server/etcd_state_machine.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/server/errors.h"
#include "engine/util/check.h"
#include "engine/util/coding.h"
#include "engine/util/hash.h"

namespace detcd::server {
namespace {

constexpr std::string_view kImageMagic = "detcd-sm3";
// The same with the auth store's image at the end.
constexpr std::string_view kImageMagicAuth = "detcd-sm4";
// A delta image's (EtcdStateMachine::SplitDelta).
constexpr std::string_view kDeltaMagic = "detcd-sd3";
constexpr std::string_view kDeltaMagicAuth = "detcd-sd4";

// The database size estimate's constants (see etcd_state_machine.h).
constexpr int64_t kEmptyDbBytes = 20 * 1024;
constexpr int64_t kLeaseDbBytes = 64;
constexpr int64_t kAlarmDbBytes = 64;

// The apply layer's view of the lessor.
class LessorHooks final : public LeaseHooks {
 public:
  explicit LessorHooks(lease::Lessor* l) : l_(l) {}
  bool Exists(int64_t id) const override { return l_->Get(id).ok(); }
  void Attach(int64_t id, std::string_view key) override {
    // The apply layer checked Exists first, in the same entry.
    (void)l_->Attach(id, key);
  }
  void Detach(int64_t id, std::string_view key) override {
    l_->Detach(id, key);
  }

 private:
  lease::Lessor* l_;
};

}  // namespace

std::string EncodeResult(const absl::Status& s,
                         const google::protobuf::MessageLite* response) {
  std::string out;
  coding::PutVarint64(&out, static_cast<uint64_t>(s.code()));
  coding::PutLengthPrefixed(
      &out, std::string_view(s.message().data(), s.message().size()));
  if (s.ok() && response != nullptr) response->AppendToString(&out);
  return out;
}

absl::Status DecodeResultBytes(std::string_view result,
                               std::string_view* response) {
  coding::Reader r(result);
  uint64_t code = 0;
  std::string message;
  if (!r.GetVarint64(&code) || !r.GetLengthPrefixed(&message) ||
      code > static_cast<uint64_t>(absl::StatusCode::kUnauthenticated)) {
    return absl::InternalError("etcdserver: malformed apply result");
  }
  if (code != 0) {
    return absl::Status(static_cast<absl::StatusCode>(code), message);
  }
  *response = r.rest();
  return absl::OkStatus();
}

absl::Status DecodeResult(std::string_view result,
                          google::protobuf::MessageLite* response) {
  std::string_view bytes;
  if (absl::Status s = DecodeResultBytes(result, &bytes); !s.ok()) return s;
  if (response != nullptr &&
      !response->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::InternalError("etcdserver: malformed apply response");
  }
  return absl::OkStatus();
}

EtcdStateMachine::EtcdStateMachine(Options o)
    : opts_(std::move(o)), lessor_(opts_.lease) {
  db_size_ = db_size_in_use();
}

void EtcdStateMachine::BackgroundStep() {
  if (!kv_.compaction_pending()) return;
  if (kv_.CompactStep(opts_.compact_step_records) && on_compaction_) {
    on_compaction_(CompactionPhase::kRemoved);
  }
}

void EtcdStateMachine::Defragment() {
  FinishCompaction();
  db_size_ = db_size_in_use();
}

int64_t EtcdStateMachine::db_size_in_use() const {
  return kEmptyDbBytes + kv_.size_bytes() +
         kLeaseDbBytes * static_cast<int64_t>(lessor_.size()) +
         membership_.ApproxBytes() +
         kAlarmDbBytes * static_cast<int64_t>(alarms_.size()) +
         auth_.ApproxBytes();
}

void EtcdStateMachine::Emit(std::vector<mvcc::Event> events) {
  if (!events.empty() && on_events_) on_events_(events);
}

uint64_t EtcdStateMachine::RequestKey(uint64_t proposer, uint64_t id) {
  if (id == 0) return 0;
  uint64_t h = proposer + 0x9e3779b97f4a7c15ULL;  // splitmix64's finalizer
  h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
  h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
  h ^= h >> 31;
  const uint64_t key = id ^ h;
  return key == 0 ? 1 : key;
}

std::string EtcdStateMachine::ApplyFrom(uint64_t index, uint64_t proposer,
                                        std::string_view command) {
  last_index_ = index;
  std::string result;
  etcdserverpb::InternalRaftRequest req;
  if (!req.ParseFromArray(command.data(), static_cast<int>(command.size()))) {
    // Every member rejects the same bytes the same way.
    result = EncodeResult(
        absl::InvalidArgumentError("etcdserver: malformed raft request"),
        nullptr);
  } else if (const uint64_t id = RequestKey(proposer, req.header().id());
             id != 0 && recent_ids_.contains(id)) {
    // The same proposal twice in the log (a duplicated message): it took
    // effect the first time. Whoever still waits for it missed that
    // answer (its member skipped the first entry by a snapshot), so the
    // error says the outcome is unknown, not that nothing happened (seed
    // 3113 of recipes with buggify: a client told "failed" saw its write).
    result = EncodeResult(
        absl::UnavailableError("etcdserver: duplicate request ignored (it "
                               "was applied before; its result is unknown)"),
        nullptr);
  } else {
    if (id != 0) {
      recent_ids_.insert(id);
      recent_order_.push_back(id);
      if (recent_order_.size() > kRecentRequestIds) {
        recent_ids_.erase(recent_order_.front());
        recent_order_.pop_front();
      }
    }
    if (on_slow_apply_ && opts_.now_ns) {
      const int64_t start = opts_.now_ns();
      result = ApplyRequest(req);
      const int64_t took = opts_.now_ns() - start;
      if (took > slow_apply_ns_) on_slow_apply_(req, result, took);
    } else {
      result = ApplyRequest(req);
    }
  }
  result_hash_ ^= index + 0x9e3779b97f4a7c15ULL + (result_hash_ << 6) +
                  (result_hash_ >> 2);
  if (req.has_authenticate()) {
    // The token is member-local (a JWT differs per member): hash only the
    // outcome.
    result_hash_ =
        util::Fnv1a(EncodeResult(DecodeResult(result, nullptr), nullptr),
                    result_hash_);
  } else {
    result_hash_ = util::Fnv1a(result, result_hash_);
  }
  NoteSize();
  return result;
}

std::string EtcdStateMachine::ApplyConfChange(uint64_t index,
                                              const raft::ConfChange& cc,
                                              std::string_view context,
                                              const raft::ConfState& after) {
  membership_.ApplyConfChange(cc, context, after);
  NoteSize();
  (void)index;  // conf changes do not move last_index (a command index)
  return "";
}

absl::Status EtcdStateMachine::AlarmGate(
    const etcdserverpb::InternalRaftRequest& r) const {
  if (alarms_.Has(etcdserverpb::CORRUPT)) {
    if (r.has_put() || r.has_delete_range() || r.has_txn() ||
        r.has_compaction() || r.has_lease_grant() || r.has_lease_revoke() ||
        r.has_range()) {
      return ErrCorrupt();
    }
  } else if (alarms_.Has(etcdserverpb::NOSPACE)) {
    if (r.has_put() || r.has_lease_grant() ||
        (r.has_txn() && QuotaCost(r.txn()) > 0)) {
      return ErrNoSpace();
    }
  }
  return absl::OkStatus();
}

namespace {

// etcd's needAdminPermission.
bool NeedsAdmin(const etcdserverpb::InternalRaftRequest& r) {
  return r.has_auth_enable() || r.has_auth_disable() || r.has_auth_user_add() ||
         r.has_auth_user_delete() || r.has_auth_user_change_password() ||
         r.has_auth_user_grant_role() || r.has_auth_user_revoke_role() ||
         r.has_auth_role_add() || r.has_auth_role_grant_permission() ||
         r.has_auth_role_revoke_permission() || r.has_auth_role_delete() ||
         r.has_auth_user_list() || r.has_auth_role_list();
}

// etcd's checkTxnReqsPermission.
absl::Status CheckOps(
    const auth::AuthStore& as, const auth::AuthInfo& ai,
    const google::protobuf::RepeatedPtrField<etcdserverpb::RequestOp>& ops) {
  for (const etcdserverpb::RequestOp& op : ops) {
    absl::Status s;
    if (op.has_request_range()) {
      s = as.IsRangePermitted(ai, op.request_range().key(),
                              op.request_range().range_end());
    } else if (op.has_request_put()) {
      s = as.IsPutPermitted(ai, op.request_put().key());
    } else if (op.has_request_delete_range()) {
      const auto& d = op.request_delete_range();
      if (d.prev_kv()) s = as.IsRangePermitted(ai, d.key(), d.range_end());
      if (s.ok()) s = as.IsDeleteRangePermitted(ai, d.key(), d.range_end());
    }
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckTxnAuth(const auth::AuthStore& as, const auth::AuthInfo& ai,
                          const etcdserverpb::TxnRequest& t) {
  for (const etcdserverpb::Compare& c : t.compare()) {
    if (absl::Status s = as.IsRangePermitted(ai, c.key(), c.range_end());
        !s.ok()) {
      return s;
    }
  }
  if (absl::Status s = CheckOps(as, ai, t.success()); !s.ok()) return s;
  return CheckOps(as, ai, t.failure());
}

absl::Status EtcdStateMachine::CheckLeasePuts(const auth::AuthInfo& ai,
                                              int64_t lease) const {
  if (lease == 0 || !auth_.enabled()) return absl::OkStatus();
  absl::StatusOr<lease::Lessor::LeaseInfo> l = lessor_.Get(lease);
  if (!l.ok()) return absl::OkStatus();
  for (const std::string& k : l->keys) {
    if (absl::Status s = auth_.IsPutPermitted(ai, k); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status EtcdStateMachine::AuthGate(
    const etcdserverpb::InternalRaftRequest& r) const {
  if (!auth_.enabled()) return absl::OkStatus();
  auth::AuthInfo ai{r.header().username(), r.header().auth_revision()};
  if (opts_.bugs.on(planted::Bug::kAuthSkipOldRevision) && ai.revision != 0) {
    // PLANTED: the stamped revision is taken to be the current one, so a
    // request authorized before an auth change is not refused as stale.
    ai.revision = auth_.revision();
  }
  if (NeedsAdmin(r)) return auth_.IsAdminPermitted(&ai);
  if (r.has_put()) {
    const etcdserverpb::PutRequest& p = r.put();
    if (absl::Status s = auth_.IsPutPermitted(ai, p.key()); !s.ok()) return s;
    if (absl::Status s = CheckLeasePuts(ai, p.lease()); !s.ok()) return s;
    if (p.prev_kv()) return auth_.IsRangePermitted(ai, p.key(), "");
  } else if (r.has_delete_range()) {
    const etcdserverpb::DeleteRangeRequest& d = r.delete_range();
    if (absl::Status s = auth_.IsDeleteRangePermitted(ai, d.key(), d.range_end());
        !s.ok()) {
      return s;
    }
    if (d.prev_kv()) return auth_.IsRangePermitted(ai, d.key(), d.range_end());
  } else if (r.has_txn()) {
    return CheckTxnAuth(auth_, ai, r.txn());
  } else if (r.has_range()) {
    return auth_.IsRangePermitted(ai, r.range().key(), r.range().range_end());
  } else if (r.has_lease_revoke()) {
    return CheckLeasePuts(ai, r.lease_revoke().id());
  } else if (r.has_auth_user_get()) {
    // One may read one's own user.
    absl::Status s = auth_.IsAdminPermitted(&ai);
    if (!s.ok() && r.auth_user_get().name() != ai.user) return s;
  } else if (r.has_auth_role_get()) {
    // ... and a role one has.
    absl::Status s = auth_.IsAdminPermitted(&ai);
    if (!s.ok() && !auth_.HasRole(ai.user, r.auth_role_get().role())) return s;
  }
  return absl::OkStatus();
}

void EtcdStateMachine::SyncTokens() {
  if (opts_.tokens == nullptr) return;
  if (auth_.enabled()) {
    opts_.tokens->Enable();
  } else {
    opts_.tokens->Disable();
  }
}

std::optional<std::string> EtcdStateMachine::ApplyAuth(
    const etcdserverpb::InternalRaftRequest& r) {
  auto answer = [&](const absl::Status& s, auto resp) {
    resp.mutable_header()->set_revision(kv_.Rev());
    return EncodeResult(s, s.ok() ? &resp : nullptr);
  };
  if (r.has_auth_enable()) {
    absl::Status s = auth_.Enable();
    SyncTokens();
    return answer(s, etcdserverpb::AuthEnableResponse());
  }
  if (r.has_auth_disable()) {
    auth_.Disable();
    SyncTokens();
    return answer(absl::OkStatus(), etcdserverpb::AuthDisableResponse());
  }
  if (r.has_authenticate()) {
    const auto& a = r.authenticate();
    if (absl::Status s = auth_.CanAuthenticate(a.name()); !s.ok()) {
      return EncodeResult(s, nullptr);
    }
    absl::StatusOr<std::string> token =
        opts_.tokens == nullptr
            ? absl::StatusOr<std::string>(
                  absl::StrCat(a.simple_token(), ".", last_index_))
            : opts_.tokens->Assign(a.name(), auth_.revision(), last_index_,
                                   a.simple_token());
    if (!token.ok()) return EncodeResult(token.status(), nullptr);
    etcdserverpb::AuthenticateResponse resp;
    resp.set_token(*std::move(token));
    return answer(absl::OkStatus(), std::move(resp));
  }
  if (r.has_auth_user_add()) {
    const auto& u = r.auth_user_add();
    return answer(auth_.UserAdd(u.name(), u.hashedpassword(),
                                u.options().no_password()),
                  etcdserverpb::AuthUserAddResponse());
  }
  if (r.has_auth_user_delete()) {
    const std::string& name = r.auth_user_delete().name();
    absl::Status s = auth_.UserDelete(name);
    if (s.ok() && opts_.tokens != nullptr) opts_.tokens->InvalidateUser(name);
    return answer(s, etcdserverpb::AuthUserDeleteResponse());
  }
  if (r.has_auth_user_change_password()) {
    const auto& c = r.auth_user_change_password();
    absl::Status s = auth_.UserChangePassword(c.name(), c.hashedpassword());
    if (s.ok() && opts_.tokens != nullptr) opts_.tokens->InvalidateUser(c.name());
    return answer(s, etcdserverpb::AuthUserChangePasswordResponse());
  }
  if (r.has_auth_user_grant_role()) {
    return answer(auth_.UserGrantRole(r.auth_user_grant_role().user(),
                                      r.auth_user_grant_role().role()),
                  etcdserverpb::AuthUserGrantRoleResponse());
  }
  if (r.has_auth_user_revoke_role()) {
    return answer(auth_.UserRevokeRole(r.auth_user_revoke_role().name(),
                                       r.auth_user_revoke_role().role()),
                  etcdserverpb::AuthUserRevokeRoleResponse());
  }
  if (r.has_auth_user_get()) {
    absl::StatusOr<std::vector<std::string>> roles =
        auth_.UserGet(r.auth_user_get().name());
    etcdserverpb::AuthUserGetResponse resp;
    if (roles.ok()) {
      for (const std::string& x : *roles) resp.add_roles(x);
    }
    return answer(roles.status(), std::move(resp));
  }
  if (r.has_auth_user_list()) {
    etcdserverpb::AuthUserListResponse resp;
    for (const std::string& x : auth_.UserList()) resp.add_users(x);
    return answer(absl::OkStatus(), std::move(resp));
  }
  if (r.has_auth_role_add()) {
    return answer(auth_.RoleAdd(r.auth_role_add().name()),
                  etcdserverpb::AuthRoleAddResponse());
  }
  if (r.has_auth_role_delete()) {
    return answer(auth_.RoleDelete(r.auth_role_delete().role()),
                  etcdserverpb::AuthRoleDeleteResponse());
  }
  if (r.has_auth_role_get()) {
    absl::StatusOr<std::vector<authpb::Permission>> perms =
        auth_.RoleGet(r.auth_role_get().role());
    etcdserverpb::AuthRoleGetResponse resp;
    if (perms.ok()) {
      for (const authpb::Permission& p : *perms) *resp.add_perm() = p;
    }
    return answer(perms.status(), std::move(resp));
  }
  if (r.has_auth_role_list()) {
    etcdserverpb::AuthRoleListResponse resp;
    for (const std::string& x : auth_.RoleList()) resp.add_roles(x);
    return answer(absl::OkStatus(), std::move(resp));
  }
  if (r.has_auth_role_grant_permission()) {
    return answer(auth_.RoleGrantPermission(r.auth_role_grant_permission().name(),
                                            r.auth_role_grant_permission().perm()),
                  etcdserverpb::AuthRoleGrantPermissionResponse());
  }
  if (r.has_auth_role_revoke_permission()) {
    const auto& v = r.auth_role_revoke_permission();
    return answer(auth_.RoleRevokePermission(v.role(), v.key(), v.range_end()),
                  etcdserverpb::AuthRoleRevokePermissionResponse());
  }
  return std::nullopt;
}

std::string EtcdStateMachine::ApplyRequest(
    const etcdserverpb::InternalRaftRequest& r) {
  if (absl::Status s = AlarmGate(r); !s.ok()) return EncodeResult(s, nullptr);
  if (absl::Status s = AuthGate(r); !s.ok()) return EncodeResult(s, nullptr);
  if (std::optional<std::string> a = ApplyAuth(r); a.has_value()) {
    return *std::move(a);
  }
  LessorHooks hooks(&lessor_);
  auto write = [&](auto&& fn) {
    mvcc::KvStore::WriteTxn txn = kv_.Write();
    auto resp = fn(txn);
    Emit(txn.End());
    return EncodeResult(resp.status(), resp.ok() ? &*resp : nullptr);
  };
  if (r.has_put()) {
    return write([&](mvcc::KvStore::WriteTxn& t) {
      return ApplyPut(t, &hooks, r.put());
    });
  }
  if (r.has_delete_range()) {
    return write([&](mvcc::KvStore::WriteTxn& t) {
      return ApplyDeleteRange(t, &hooks, r.delete_range());
    });
  }
  if (r.has_txn()) {
    return write([&](mvcc::KvStore::WriteTxn& t) {
      return ApplyTxn(t, &hooks, r.txn());
    });
  }
  if (r.has_range()) {
    auto resp = ApplyRange(kv_, r.range());
    return EncodeResult(resp.status(), resp.ok() ? &*resp : nullptr);
  }
  if (r.has_compaction()) {
    using P = CompactionPhase;
    if (on_compaction_) on_compaction_(P::kStart);
    auto resp = ApplyCompaction(kv_, r.compaction());
    if (on_compaction_ && resp.ok()) {
      on_compaction_(P::kApplied);
      if (!kv_.compaction_pending()) on_compaction_(P::kRemoved);
    }
    return EncodeResult(resp.status(), resp.ok() ? &*resp : nullptr);
  }
  if (r.has_lease_grant()) {
    etcdserverpb::LeaseGrantResponse resp;
    absl::StatusOr<int64_t> ttl = lessor_.Grant(
        r.lease_grant().id(), r.lease_grant().ttl(), opts_.now_ns());
    if (!ttl.ok()) return EncodeResult(ttl.status(), nullptr);
    if (on_lease_granted_ && lessor_.is_primary()) {
      on_lease_granted_(r.lease_grant().id());
    }
    resp.set_id(r.lease_grant().id());
    resp.set_ttl(*ttl);
    resp.mutable_header()->set_revision(kv_.Rev());
    return EncodeResult(absl::OkStatus(), &resp);
  }
  if (r.has_lease_revoke()) return ApplyLeaseRevoke(r.lease_revoke().id());
  if (r.has_lease_checkpoint()) {
    const int64_t now = opts_.now_ns();
    for (const auto& cp : r.lease_checkpoint().checkpoints()) {
      lessor_.Checkpoint(cp.id(), cp.remaining_ttl(), now);
    }
    etcdserverpb::LeaseCheckpointResponse resp;
    resp.mutable_header()->set_revision(kv_.Rev());
    return EncodeResult(absl::OkStatus(), &resp);
  }
  if (r.has_alarm()) {
    etcdserverpb::AlarmResponse resp = ApplyAlarm(alarms_, r.alarm());
    resp.mutable_header()->set_revision(kv_.Rev());
    return EncodeResult(absl::OkStatus(), &resp);
  }
  if (r.has_cluster_member_attr_set()) {
    const auto& a = r.cluster_member_attr_set();
    absl::Status s = membership_.SetAttributes(
        a.member_id(), a.member_attributes().name(),
        {a.member_attributes().client_urls().begin(),
         a.member_attributes().client_urls().end()});
    etcdserverpb::EmptyResponse resp;
    return EncodeResult(s, &resp);
  }
  return EncodeResult(
      absl::UnimplementedError("etcdserver: unsupported raft request"),
      nullptr);
}

std::string EtcdStateMachine::ApplyLeaseRevoke(int64_t id) {
  absl::StatusOr<std::vector<std::string>> keys = lessor_.Revoke(id);
  if (!keys.ok()) return EncodeResult(keys.status(), nullptr);
  // All of the lease's keys go in one revision, as in etcd.
  mvcc::KvStore::WriteTxn txn = kv_.Write();
  for (const std::string& k : *keys) txn.DeleteRange(k, "");
  etcdserverpb::LeaseRevokeResponse resp;
  resp.mutable_header()->set_revision(txn.Rev());
  Emit(txn.End());
  if (on_lease_revoked_) on_lease_revoked_(id);
  return EncodeResult(absl::OkStatus(), &resp);
}

void EtcdStateMachine::FinishCompaction() const {
  if (!kv_.compaction_pending()) return;
  kv_.FinishCompaction();
  if (on_compaction_) on_compaction_(CompactionPhase::kRemoved);
}

std::string EtcdStateMachine::Snapshot() const {
  FinishCompaction();  // (as kv_.Snapshot would, but with its callback)
  std::string out = ImageHead();
  coding::PutLengthPrefixed(&out, kv_.Snapshot());
  out.append(ImageTail());
  return out;
}

// The image's bytes before the MVCC store's length prefix (a delta's
// with `since`).
std::string EtcdStateMachine::ImageHead(const ImagePoint* since) const {
  std::string out(since != nullptr
                      ? (auth_.pristine() ? kDeltaMagic : kDeltaMagicAuth)
                      : (auth_.pristine() ? kImageMagic : kImageMagicAuth));
  if (since != nullptr) coding::PutVarint64(&out, since->index);
  coding::PutVarint64(&out, last_index_);
  coding::PutVarint64(&out, result_hash_);
  return out;
}

// The image's bytes after the MVCC store.
std::string EtcdStateMachine::ImageTail() const {
  std::string out;
  coding::PutLengthPrefixed(&out, lessor_.Snapshot());
  coding::PutLengthPrefixed(&out, membership_.Snapshot());
  coding::PutLengthPrefixed(&out, alarms_.Snapshot());
  coding::PutVarint64(&out, recent_order_.size());
  for (uint64_t id : recent_order_) coding::PutVarint64(&out, id);
  if (!auth_.pristine()) coding::PutLengthPrefixed(&out, auth_.Snapshot());
  return out;
}

namespace {

// head, lp(MVCC image), tail: the head and tail are copied at the start
// (leases, members, alarms, auth: small next to the store), the store is
// written by its own writer (which knows its size from the start).
class EtcdImageWriter final : public ImageWriter {
 public:
  EtcdImageWriter(std::string head, mvcc::KvStore::ImageWriter kv,
                  std::string tail)
      : head_(std::move(head)), kv_(std::move(kv)), tail_(std::move(tail)) {}

  absl::StatusOr<bool> Step(size_t budget, std::string* out) override {
    if (!head_out_) {
      out->append(head_);
      coding::PutVarint64(out, kv_.size());
      head_out_ = true;
    }
    absl::StatusOr<bool> r = kv_.Step(budget, out);
    if (!r.ok() || !*r) return r;
    out->append(tail_);
    return true;
  }
  uint64_t size() const override {
    return head_.size() + coding::VarintLength(kv_.size()) + kv_.size() +
           tail_.size();
  }

 private:
  std::string head_;
  mvcc::KvStore::ImageWriter kv_;
  std::string tail_;
  bool head_out_ = false;
};

}  // namespace

std::unique_ptr<ImageWriter> EtcdStateMachine::BeginSnapshot() const {
  FinishCompaction();
  return std::make_unique<EtcdImageWriter>(
      ImageHead(), kv_.BeginImage(), ImageTail());
}

std::optional<StateMachine::ImagePoint> EtcdStateMachine::image_point() const {
  FinishCompaction();
  const mvcc::KvStore::ImageMark m = kv_.mark_now();
  ImagePoint p;
  p.state[0] = static_cast<uint64_t>(m.revision);
  p.state[1] = m.epoch;
  p.state[2] = m.records;
  p.state[3] = m.record_bytes;
  return p;
}

std::unique_ptr<ImageWriter> EtcdStateMachine::BeginDeltaSnapshot(
    const ImagePoint& since) const {
  FinishCompaction();
  mvcc::KvStore::ImageMark m;
  m.revision = static_cast<int64_t>(since.state[0]);
  m.epoch = since.state[1];
  m.records = since.state[2];
  m.record_bytes = since.state[3];
  std::optional<mvcc::KvStore::ImageWriter> kv = kv_.BeginDelta(m);
  if (!kv.has_value()) return nullptr;
  return std::make_unique<EtcdImageWriter>(ImageHead(&since), *std::move(kv),
                                           ImageTail());
}

std::optional<uint64_t> EtcdStateMachine::DeltaBase(
    std::string_view image) const {
  absl::StatusOr<ImageSections> sec = SplitDelta(image);
  if (!sec.ok()) return std::nullopt;
  return sec->delta_base;
}

namespace {

// A checked image, ready to swap in (EtcdStateMachine::PrepareRestore).
struct PreparedImage final : StateMachine::Prepared {
  uint64_t last = 0;
  uint64_t hash = 0;
  std::optional<lease::Lessor::Decoded> leases;
  std::deque<uint64_t> order;
  auth::AuthStore auth;  // an image without the section: a fresh store
  mvcc::KvStore kv;
  Membership members;
  AlarmSet alarms;
};

}  // namespace

absl::Status EtcdStateMachine::Restore(std::string_view image) {
  return RestoreReading(image, nullptr);
}

absl::Status EtcdStateMachine::RestoreReading(std::string_view image,
                                              const env::ReadBehind& behind) {
  absl::StatusOr<std::unique_ptr<Prepared>> p = PrepareRestore(image, behind);
  if (!p.ok()) return p.status();
  return RestorePrepared(image, &*p);
}

absl::StatusOr<EtcdStateMachine::ImageSections> EtcdStateMachine::SplitImage(
    std::string_view image) {
  return Split(image, /*delta=*/false);
}

absl::StatusOr<EtcdStateMachine::ImageSections> EtcdStateMachine::SplitDelta(
    std::string_view image) {
  return Split(image, /*delta=*/true);
}

absl::StatusOr<EtcdStateMachine::ImageSections> EtcdStateMachine::Split(
    std::string_view image, bool delta) {
  const std::string_view plain = delta ? kDeltaMagic : kImageMagic;
  const std::string_view auth = delta ? kDeltaMagicAuth : kImageMagicAuth;
  const bool with_auth = image.substr(0, auth.size()) == auth;
  if (!with_auth && image.substr(0, plain.size()) != plain) {
    return absl::DataLossError("etcd snapshot: bad magic");
  }
  static_assert(kImageMagic.size() == kImageMagicAuth.size());
  static_assert(kDeltaMagic.size() == kDeltaMagicAuth.size());
  coding::Reader r(image.substr(plain.size()));
  ImageSections out;
  uint64_t n = 0;
  if ((delta && !r.GetVarint64(&out.delta_base)) ||
      !r.GetVarint64(&out.last_index) || !r.GetVarint64(&out.result_hash) ||
      !r.GetLengthPrefixed(&out.kv) || !r.GetLengthPrefixed(&out.lessor) ||
      !r.GetLengthPrefixed(&out.membership) ||
      !r.GetLengthPrefixed(&out.alarms) || !r.GetVarint64(&n) ||
      n > kRecentRequestIds) {
    return absl::DataLossError("etcd snapshot: truncated");
  }
  for (uint64_t i = 0; i < n; ++i) {
    uint64_t id = 0;
    if (!r.GetVarint64(&id)) {
      return absl::DataLossError("etcd snapshot: truncated");
    }
    out.recent.push_back(id);
  }
  if (with_auth && (!r.GetLengthPrefixed(&out.auth) || out.auth.empty())) {
    return absl::DataLossError("etcd snapshot: truncated");
  }
  if (!r.empty()) return absl::DataLossError("etcd snapshot: trailing bytes");
  return out;
}

absl::StatusOr<std::unique_ptr<StateMachine::Prepared>>
EtcdStateMachine::PrepareRestore(std::string_view image,
                                 const env::ReadBehind& behind) const {
  // Views into `image` (a 1M-key store's image is hundreds of MiB). The
  // sections after the store's are read after it, the auth section (the
  // last) before it: `behind` is told points inside the store's only.
  absl::StatusOr<ImageSections> sec = SplitImage(image);
  if (!sec.ok()) return sec.status();
  auto p = std::make_unique<PreparedImage>();
  p->last = sec->last_index;
  p->hash = sec->result_hash;
  p->order = std::move(sec->recent);
  if (!sec->auth.empty()) {
    if (absl::Status s = p->auth.Restore(sec->auth); !s.ok()) return s;
  }
  const std::string_view kv_image = sec->kv, lease_image = sec->lessor;
  const std::string_view members_image = sec->membership;
  const std::string_view alarms_image = sec->alarms;
  // Every part is checked before anything is replaced.
  if (absl::Status s = p->kv.Restore(kv_image, behind); !s.ok()) return s;
  absl::StatusOr<lease::Lessor::Decoded> leases =
      lease::Lessor(opts_.lease).Decode(lease_image);
  if (!leases.ok()) return leases.status();
  p->leases.emplace(*std::move(leases));
  if (absl::Status s = p->members.Restore(members_image); !s.ok()) return s;
  if (absl::Status s = p->alarms.Restore(alarms_image); !s.ok()) return s;
  return p;
}

absl::Status EtcdStateMachine::RestorePrepared(
    std::string_view image, std::unique_ptr<Prepared>* prepared) {
  auto* p = dynamic_cast<PreparedImage*>(prepared->get());
  if (p == nullptr) {
    prepared->reset();
    return Restore(image);
  }
  // The checked store is the new one (restoring the image again would
  // hold two full stores at once, and take twice the time); the old one
  // is left in *prepared.
  kv_.Swap(p->kv);
  InstallSections(p);  // the old leases are left there too
  return absl::OkStatus();
}

void EtcdStateMachine::InstallSections(Prepared* prepared) {
  auto* p = static_cast<PreparedImage*>(prepared);
  lessor_.Install(&*p->leases);
  membership_ = std::move(p->members);
  alarms_ = std::move(p->alarms);
  auth_ = std::move(p->auth);
  SyncTokens();
  db_size_ = db_size_in_use();  // the received file replaces ours
  last_index_ = p->last;
  result_hash_ = p->hash;
  recent_ids_ = absl::btree_set<uint64_t>(p->order.begin(), p->order.end());
  recent_order_ = std::move(p->order);
  if (on_restore_) on_restore_();
}

absl::Status EtcdStateMachine::ApplyDelta(std::string_view image,
                                          const env::ReadBehind& behind) {
  absl::StatusOr<ImageSections> sec = SplitDelta(image);
  if (!sec.ok()) return sec.status();
  // Every other part is checked before the store takes the delta (which
  // cannot be undone).
  PreparedImage p;
  p.last = sec->last_index;
  p.hash = sec->result_hash;
  p.order = std::move(sec->recent);
  if (!sec->auth.empty()) {
    if (absl::Status s = p.auth.Restore(sec->auth); !s.ok()) return s;
  }
  absl::StatusOr<lease::Lessor::Decoded> leases = lessor_.Decode(sec->lessor);
  if (!leases.ok()) return leases.status();
  p.leases.emplace(*std::move(leases));
  if (absl::Status s = p.members.Restore(sec->membership); !s.ok()) return s;
  if (absl::Status s = p.alarms.Restore(sec->alarms); !s.ok()) return s;
  if (absl::Status s = kv_.ApplyDelta(sec->kv, behind); !s.ok()) return s;
  InstallSections(&p);
  return absl::OkStatus();
}

absl::Status EtcdStateMachine::AdoptData(std::string_view kv_image,
                                         std::string_view lessor_image,
                                         std::string_view auth_image) {
  // The lessor and auth images are decoded first: KvStore::Restore
  // replaces the store only once the whole image is valid, so after it
  // nothing can fail.
  absl::StatusOr<lease::Lessor::Decoded> leases = lessor_.Decode(lessor_image);
  if (!leases.ok()) return leases.status();
  auth::AuthStore auth;
  if (!auth_image.empty()) {
    if (absl::Status s = auth.Restore(auth_image); !s.ok()) return s;
  }
  if (absl::Status s = kv_.Restore(kv_image); !s.ok()) return s;
  lessor_.Install(&*leases);
  auth_ = std::move(auth);
  SyncTokens();
  alarms_ = AlarmSet();
  db_size_ = db_size_in_use();
  if (on_restore_) on_restore_();
  return absl::OkStatus();
}

std::string EtcdStateMachine::CheckLeaseInvariant() const {
  absl::StatusOr<mvcc::RangeResult> all =
      kv_.Range(std::string_view("\0", 1), std::string_view("\0", 1), {});
  if (!all.ok()) return all.status().ToString();
  size_t leased = 0;
  for (const mvcc::KeyValue& kv : all->kvs) {
    if (kv.lease == 0) continue;
    ++leased;
    absl::StatusOr<lease::Lessor::LeaseInfo> l = lessor_.Get(kv.lease);
    if (!l.ok()) {
      return absl::StrCat("key ", kv.key, " outlived its lease ", kv.lease,
                          " (mod revision ", kv.mod_revision, ")");
    }
    bool listed = false;
    for (const std::string& k : l->keys) listed |= (k == kv.key);
    if (!listed) {
      return absl::StrCat("key ", kv.key, " carries lease ", kv.lease,
                          " but the lease does not list it");
    }
  }
  size_t attached = 0;
  for (int64_t id : lessor_.Ids()) {
    absl::StatusOr<lease::Lessor::LeaseInfo> l = lessor_.Get(id);
    if (l.ok()) attached += l->keys.size();
  }
  if (attached != leased) {
    return absl::StrCat("lessor lists ", attached, " attached keys, store has ",
                        leased, " keys with leases");
  }
  return "";
}

}  // namespace detcd::server
