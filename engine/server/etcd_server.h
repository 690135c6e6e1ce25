// EtcdServer: one etcd member. A Node (raft + WAL + snapshots) replicating
// an EtcdStateMachine (MVCC + lessor), plus what a member does on its own:
//
//  - client requests with etcd's semantics: writes go through raft (a
//    follower's proposal is forwarded to the leader by raft itself);
//    linearizable reads wait for a ReadIndex and are then served from the
//    local store; serializable reads are served locally at once;
//  - lease keep-alive and time-to-live, which only the leader (the primary
//    lessor) can answer: a follower forwards them to the leader over the
//    peer transport and relays the answer;
//  - the leader's lease duties: propose revokes for expired leases and
//    checkpoints of remaining TTLs;
//  - the watch hub, fed by every applied write and synced periodically;
//  - etcd's Cluster and Maintenance services: the membership with names
//    and URLs (membership.h), publishing this member's attributes, alarms
//    and the space quota (quota.h), status, hashes, defragment, leader
//    moves and snapshot images.
//
// Errors are engine statuses; errors.h's ToClientError turns any of them
// into the code and message etcd's gRPC layer sends.
//
// Every response carries etcd's ResponseHeader (cluster_id, member_id,
// revision, raft_term). All completions are callbacks run inside the input
// call that caused them (Tick, OnMessage or the request call itself).
//
// Peer payloads carry a one-byte channel tag: 'r' raft message, 'q' a
// forwarded request (lease keep-alive or time-to-live, member promote, sent
// to the leader; HashKV, sent to any member for the corruption checks and
// answered by it whether it leads or not), 'a' its answer, 'g' "you were
// removed". Forwarded request:
//   'q' varint(from) varint(request id) byte(kind) request-bytes
// answer: 'a' varint(request id) EncodeResult(status, response).
// Removed members: raft messages from a member this one applied the
// removal of are dropped and answered (at most once a tick per sender)
// with 'g' varint(sender), as etcd's peer handler answers a removed
// member's streams with 410 Gone; the removed member then knows it was
// removed (removed()) even if it never applied its own removal.
#ifndef DETCD_ENGINE_SERVER_ETCD_SERVER_H_
#define DETCD_ENGINE_SERVER_ETCD_SERVER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/auth/auth_store.h"
#include "engine/auth/bcrypt.h"
#include "engine/auth/token.h"
#include "engine/env/env.h"
#include "engine/mvcc/watchable_store.h"
#include "engine/server/compactor.h"
#include "engine/server/corruption_check.h"
#include "engine/server/etcd_state_machine.h"
#include "engine/server/log_record.h"
#include "engine/server/membership.h"
#include "engine/server/node.h"
#include "engine/util/planted.h"
#include "etcdserverpb/rpc.pb.h"

namespace detcd::server {

struct EtcdServerOptions {
  NodeOptions node;
  uint64_t cluster_id = 0;
  // The founding members' names and peer URLs (etcd's --initial-cluster);
  // used only when founding (node.initial_voters not empty), and then
  // every id must be an initial voter and no founder a learner. Each
  // founder's info goes into its founding AddNode entry (membership.h),
  // so every founder must be given the same list. Client URLs are
  // published later (Publish).
  std::vector<MemberInfo> initial_members;
  // etcd's --quota-backend-bytes: 0 means etcd's default (2 GiB), a
  // negative value no quota.
  int64_t quota_backend_bytes = 0;
  // What Status reports as the server's version.
  std::string version = "3.5.0";
  // etcd's --strict-reconfig-check: membership changes that would leave
  // fewer started members than a quorum are refused, and so are changes
  // while the links to the voters say the quorum is at risk (etcd's
  // isConnectedFullySince / numConnectedSince over health_interval_ns,
  // see set_peer_link_age).
  bool strict_reconfig_check = true;
  // etcd's HealthInterval: how long a link must have been up for its peer
  // to count as connected in those checks.
  int64_t health_interval_ns = 5'000'000'000;
  // Where MemberAdd's new ids come from; empty: this member's Rng (etcd
  // hashes the URLs and the time; any id never used will do). The
  // simulator hands out the small ids its checkers index by.
  std::function<uint64_t()> new_member_id;
  // Wall-clock length of one raft tick (etcd's --heartbeat-interval).
  int64_t tick_ns = 100'000'000;
  KvLimits kv;
  // A compaction's revisions are removed after its apply, this many
  // records per step between the requests (EtcdStateMachine::Options).
  size_t compact_step_records = 8192;
  // A Range is read this many keys at a time (RangeReader): the first
  // piece when it is served, the rest, if any, as background work, so a
  // read of a million keys (most of a second) does not stop the member's
  // other work. About 5 ms of work.
  size_t range_step_keys = 10000;
  // min_ttl_s 0: etcd's rule, ceil(1.5 * election timeout) in seconds.
  lease::LessorOptions lease;
  mvcc::WatchLimits watch;
  int watch_sync_ticks = 1;     // catch up slow watchers (etcd: 100 ms)
  int lease_check_ticks = 5;    // revoke expired leases (etcd: 500 ms)
  // etcd's --auto-compaction-mode / --auto-compaction-retention
  // (compactor.h: only the leader compacts); off by default.
  CompactorOptions auto_compaction;
  // etcd's --experimental-initial-corrupt-check and
  // --experimental-corrupt-check-time (corruption_check.h); off by default.
  CorruptCheckOptions corrupt_check;
  // Planted bugs for the simulator's checker tests; all off in production.
  planted::Bugs bugs;  // engine/util/planted.h
  // Auth (engine/auth, etcd_server_auth.cc). etcd's --bcrypt-cost (out of
  // 4..31: etcd's default 10, as etcd falls back), --auth-token-ttl for
  // simple tokens, and the token provider: null means etcd's default
  // "simple" tokens on this member's Clock and Rng; the real server passes
  // its JWT provider for --auth-token jwt.
  int bcrypt_cost = auth::kBcryptDefaultCost;
  int64_t auth_token_ttl_ns = auth::SimpleTokenProvider::kDefaultTtlNs;
  std::shared_ptr<auth::TokenProvider> token_provider;
  // etcd's --client-cert-auth: a caller without a token is the user its
  // verified client certificate's common name names.
  bool client_cert_auth = false;

  absl::Status Validate() const;
};

// A client request's credentials as its transport saw them (etcd reads
// them from the gRPC context): the "token" metadata, if sent, and the
// common name of the verified client certificate ("" without one).
struct Caller {
  std::optional<std::string> token;
  std::string cert_cn;
};

// Parses an image made by EtcdServer::SnapshotImage.
absl::StatusOr<raft::Snapshot> DecodeSnapshotImage(std::string_view image);
// The same without copying the data: *data views `image`.
absl::Status DecodeSnapshotImageView(std::string_view image,
                                     raft::SnapshotMetadata* meta,
                                     std::string_view* data);

class EtcdServer {
 public:
  template <typename Resp>
  using Done = std::function<void(absl::StatusOr<Resp>)>;

  EtcdServer(const env::Env& env, EtcdServerOptions opts);
  ~EtcdServer();
  EtcdServer(const EtcdServer&) = delete;
  EtcdServer& operator=(const EtcdServer&) = delete;

  absl::Status Start();
  void Tick();
  // n raft ticks at once (etcd's advanceTicks): the initial election tick
  // advance of shim/server.cc; leases, watches and deadlines do not move.
  void AdvanceRaftTicks(int n);
  // Node::CampaignIfOnlyVoter (a single-member cluster at start).
  void CampaignIfOnlyVoter();
  // own: the string payload views, if the caller gives it up
  // (Node::OnMessage).
  void OnMessage(std::string_view payload, std::string* own = nullptr);
  // Node::ReportUnreachable (the real peer transport's on_unreachable).
  void ReportUnreachable(uint64_t peer);
  // For the real peer transport (PeerTransportOptions::coalesce): joins
  // consecutive raft appends among payloads queued together for one peer
  // into one (raft::JoinAppends); other payloads pass unchanged, in order.
  // Pure: any thread.
  static void CoalescePeerPayloads(std::vector<std::string>* payloads);

  // KV.
  void Range(const etcdserverpb::RangeRequest& r,
             Done<etcdserverpb::RangeResponse> done);
  void Put(const etcdserverpb::PutRequest& r,
           Done<etcdserverpb::PutResponse> done);
  void DeleteRange(const etcdserverpb::DeleteRangeRequest& r,
                   Done<etcdserverpb::DeleteRangeResponse> done);
  void Txn(const etcdserverpb::TxnRequest& r,
           Done<etcdserverpb::TxnResponse> done);
  void Compact(const etcdserverpb::CompactionRequest& r,
               Done<etcdserverpb::CompactionResponse> done);
  // Lease.
  void LeaseGrant(const etcdserverpb::LeaseGrantRequest& r,
                  Done<etcdserverpb::LeaseGrantResponse> done);
  void LeaseRevoke(const etcdserverpb::LeaseRevokeRequest& r,
                   Done<etcdserverpb::LeaseRevokeResponse> done);
  void LeaseKeepAlive(const etcdserverpb::LeaseKeepAliveRequest& r,
                      Done<etcdserverpb::LeaseKeepAliveResponse> done);
  void LeaseTimeToLive(const etcdserverpb::LeaseTimeToLiveRequest& r,
                       Done<etcdserverpb::LeaseTimeToLiveResponse> done);
  void LeaseLeases(const etcdserverpb::LeaseLeasesRequest& r,
                   Done<etcdserverpb::LeaseLeasesResponse> done);
  // Cluster.
  // Members by ascending id, with etcd's cluster header (no revision).
  // linearizable: after a ReadIndex, as a linearizable read.
  void MemberList(const etcdserverpb::MemberListRequest& r,
                  Done<etcdserverpb::MemberListResponse> done);
  // etcd's MemberAdd: ErrMemberBadURLs unless ParseMemberUrls accepts the
  // peer URLs; with strict_reconfig_check a voter is added only while the
  // started members stay a quorum (ErrNotEnoughStartedMembers). The new id
  // comes from this member's Rng. Checked again when applied
  // (Membership::Check). Answers once applied here: the new member (no
  // name until it publishes) and every member.
  void MemberAdd(const etcdserverpb::MemberAddRequest& r,
                 Done<etcdserverpb::MemberAddResponse> done);
  // strict_reconfig_check: removing a voter must leave a quorum of started
  // voters. ErrMemberNotFound for an unknown or removed id.
  void MemberRemove(const etcdserverpb::MemberRemoveRequest& r,
                    Done<etcdserverpb::MemberRemoveResponse> done);
  // New peer URLs (not validated, as in etcd; ErrPeerURLExist if another
  // member has one of them).
  void MemberUpdate(const etcdserverpb::MemberUpdateRequest& r,
                    Done<etcdserverpb::MemberUpdateResponse> done);
  // Only the leader knows whether a learner caught up, so a follower
  // forwards the request to it. Errors: raft's "can only promote a learner
  // member which is in sync with leader", ErrMemberNotLearner,
  // ErrMemberNotFound, ErrNotEnoughStartedMembers (strict check).
  void MemberPromote(const etcdserverpb::MemberPromoteRequest& r,
                     Done<etcdserverpb::MemberPromoteResponse> done);
  // etcd's publish: this member's name and client URLs reach every member
  // through raft (ClusterMemberAttrSetRequest). The caller retries until
  // it succeeds, as etcd's publish loop does.
  void Publish(std::string name, std::vector<std::string> client_urls,
               std::function<void(absl::Status)> done);

  // Maintenance.
  // GET / ACTIVATE / DEACTIVATE through raft, as etcd does (GET included).
  void Alarm(const etcdserverpb::AlarmRequest& r,
             Done<etcdserverpb::AlarmResponse> done);
  // This member's view, at once: version (options), dbSize / dbSizeInUse
  // (EtcdStateMachine's estimates), leader, raftIndex (commit index),
  // raftTerm, raftAppliedIndex, errors ("etcdserver: no leader" without a
  // leader, then each active alarm as AlarmText), isLearner.
  void Status(const etcdserverpb::StatusRequest& r,
              Done<etcdserverpb::StatusResponse> done);
  // A 32-bit hash of the MVCC store, the membership and the alarms at
  // this member (local, like etcd's); header.revision is the current one.
  void Hash(const etcdserverpb::HashRequest& r,
            Done<etcdserverpb::HashResponse> done);
  // KvStore::HashByRev(revision): hash, compact_revision, hash_revision;
  // header.revision is the current revision. Errors: mvcc's compacted /
  // future revision.
  void HashKV(const etcdserverpb::HashKVRequest& r,
              Done<etcdserverpb::HashKVResponse> done);
  // This member only, as etcd's: the space compactions freed is given
  // back. db_size shrinks to db_size_in_use (etcd_state_machine.h), and
  // the persisted image is rewritten: a snapshot at the applied index
  // replaces the older ones (which still hold compacted history) and the
  // WAL segments it covers are released (Node::TakeSnapshot).
  void Defragment(const etcdserverpb::DefragmentRequest& r,
                  Done<etcdserverpb::DefragmentResponse> done);
  // etcd's MoveLeader: ErrNotLeader unless this member leads;
  // ErrBadLeaderTransferee unless the target is a voter; then transfers
  // and answers once this member sees the target as leader, or
  // ErrTimeoutLeaderTransfer after request_timeout_ticks.
  void MoveLeader(const etcdserverpb::MoveLeaderRequest& r,
                  Done<etcdserverpb::MoveLeaderResponse> done);
  // The whole replicated state at this member's applied index, for the
  // Snapshot stream (not linearizable, as etcd's is not):
  //   "detcd-snapshot1" raft::EncodeSnapshot(snapshot)
  // where snapshot.metadata is (applied index, its term, membership) and
  // snapshot.data the state machine's image (etcd_state_machine.h).
  // A large image is built in steps of kImageStepBytes between the
  // member's other work (StateMachine::BeginSnapshot, as the automatic
  // snapshots), not in one stall of the engine: the first steps run here
  // (a small state is done at once), the rest in ContinueImages, which the
  // real server calls after each batch while image_in_progress() and Tick
  // calls once per tick. A compaction under a writer starts it over at
  // the applied index then; the third try is written whole.
  void SnapshotImage(Done<std::string> done);
  bool image_in_progress() const { return !image_jobs_.empty(); }
  void ContinueImages();  // one step of the oldest image
  // Work done in steps between the requests: an automatic snapshot, the
  // image for a follower, a Maintenance snapshot's image, a compaction's
  // removal (the answers of physical compactions wait for it, as etcd's
  // do). Tick steps each once; the real server also calls
  // ContinueBackground after each batch while background_in_progress().
  bool background_in_progress() const {
    return node_->snapshot_in_progress() || node_->image_in_progress() ||
           node_->background_pending() || image_in_progress() ||
           !range_jobs_.empty() || !hash_jobs_.empty();
  }
  // A HashKV is computed this many bytes of records at a time
  // (KvStore::HashWriter), as a Maintenance snapshot's image is written.
  static constexpr size_t kHashStepBytes = 1 << 20;
  void ContinueBackground();

  static constexpr size_t kImageStepBytes = 1 << 20;
  // Disaster recovery (etcd's `snapshot restore`, shim/restore.h): on a
  // member that has just founded a new cluster (Start on an empty data
  // dir, before any tick or message), takes another cluster's store,
  // leases and auth store (EtcdStateMachine::AdoptData; auth_image ""
  // for a fresh one) and snapshots the result at the founding entries'
  // index, so the member restarts from it. Every founder given the same
  // images writes the same snapshot. FailedPrecondition on any other
  // member; DataLoss for images that do not decode or whose leases and
  // keys disagree (then the member is to be thrown away).
  absl::Status AdoptData(std::string_view kv_image,
                         std::string_view lessor_image,
                         std::string_view auth_image);

  // Auth (etcd_server_auth.cc), etcd 3.4's semantics. Every change and
  // every read except AuthStatus goes through raft, as in etcd 3.4, and
  // needs the root role once auth is on (UserGet of oneself and RoleGet of
  // one's own role excepted). UserAdd and UserChangePassword hash the
  // password (bcrypt_cost, salt from this member's Rng) before proposing,
  // so the log and snapshots never hold it. Authenticate: after a
  // ReadIndex, checks the password here, then proposes the token's
  // issue (simple tokens: "<random>.<index>"), retried if the auth
  // revision moved meanwhile (etcd's loop).
  void AuthEnable(const etcdserverpb::AuthEnableRequest& r,
                  Done<etcdserverpb::AuthEnableResponse> done);
  void AuthDisable(const etcdserverpb::AuthDisableRequest& r,
                   Done<etcdserverpb::AuthDisableResponse> done);
  // etcd 3.5's AuthStatus (local): enabled and the auth revision.
  void AuthStatus(const etcdserverpb::AuthStatusRequest& r,
                  Done<etcdserverpb::AuthStatusResponse> done);
  void Authenticate(const etcdserverpb::AuthenticateRequest& r,
                    Done<etcdserverpb::AuthenticateResponse> done);
  void UserAdd(const etcdserverpb::AuthUserAddRequest& r,
               Done<etcdserverpb::AuthUserAddResponse> done);
  void UserGet(const etcdserverpb::AuthUserGetRequest& r,
               Done<etcdserverpb::AuthUserGetResponse> done);
  void UserList(const etcdserverpb::AuthUserListRequest& r,
                Done<etcdserverpb::AuthUserListResponse> done);
  void UserDelete(const etcdserverpb::AuthUserDeleteRequest& r,
                  Done<etcdserverpb::AuthUserDeleteResponse> done);
  void UserChangePassword(
      const etcdserverpb::AuthUserChangePasswordRequest& r,
      Done<etcdserverpb::AuthUserChangePasswordResponse> done);
  void UserGrantRole(const etcdserverpb::AuthUserGrantRoleRequest& r,
                     Done<etcdserverpb::AuthUserGrantRoleResponse> done);
  void UserRevokeRole(const etcdserverpb::AuthUserRevokeRoleRequest& r,
                      Done<etcdserverpb::AuthUserRevokeRoleResponse> done);
  void RoleAdd(const etcdserverpb::AuthRoleAddRequest& r,
               Done<etcdserverpb::AuthRoleAddResponse> done);
  void RoleGet(const etcdserverpb::AuthRoleGetRequest& r,
               Done<etcdserverpb::AuthRoleGetResponse> done);
  void RoleList(const etcdserverpb::AuthRoleListRequest& r,
                Done<etcdserverpb::AuthRoleListResponse> done);
  void RoleDelete(const etcdserverpb::AuthRoleDeleteRequest& r,
                  Done<etcdserverpb::AuthRoleDeleteResponse> done);
  void RoleGrantPermission(
      const etcdserverpb::AuthRoleGrantPermissionRequest& r,
      Done<etcdserverpb::AuthRoleGrantPermissionResponse> done);
  void RoleRevokePermission(
      const etcdserverpb::AuthRoleRevokePermissionRequest& r,
      Done<etcdserverpb::AuthRoleRevokePermissionResponse> done);

  // Who is calling. A transport sets the caller around each client call
  // (CallerScope); the request methods read it at once (and keep a copy
  // for checks after a ReadIndex). Outside a scope a call is the member's
  // own (the real server's internal calls; the simulator's clients until
  // they carry credentials): no API-layer auth checks, and its proposals
  // carry no user, so apply-time checks treat them as "no credentials".
  // Authorization as etcd 3.4: Range and read-only Txn check read
  // permissions after their ReadIndex; writes are stamped with the user
  // and auth revision and checked when applied; Defragment, Hash, HashKV,
  // MoveLeader, the Snapshot image and the member changes need root;
  // Compact, Alarm, Status, the lease calls (but LeaseRevoke's apply
  // check) need nothing. A token that is not valid here fails the call
  // with ErrInvalidAuthToken.
  class CallerScope {
   public:
    CallerScope(EtcdServer* s, const Caller* c) : s_(s), prev_(s->caller_) {
      s_->caller_ = c;
    }
    ~CallerScope() { s_->caller_ = prev_; }
    CallerScope(const CallerScope&) = delete;
    CallerScope& operator=(const CallerScope&) = delete;

   private:
    EtcdServer* s_;
    const Caller* prev_;
  };
  // etcd's isValidSimpleToken wait: a simple token names the raft index of
  // its Authenticate entry, and a member that has not applied it yet does
  // not know the token. Runs `go` at once unless `c` holds such a token
  // ahead of this member's applied index; then once that index is applied
  // (or after request_timeout_ticks, when the token is simply unknown).
  // Transports call requests through it.
  void AwaitCaller(const Caller& c, std::function<void()> go);
  // etcd's watch rule (isWatchPermitted) for the current caller: read
  // permission on [key, range_end). The watch service refuses the create
  // with created+canceled and the error's text (WatchCancelReason).
  absl::Status CheckWatchPermitted(std::string_view key,
                                   std::string_view range_end);
  // etcd's cancel reason for a refused watch create.
  static std::string WatchCancelReason(const absl::Status& s);
  // The identity behind the current caller (nullopt: none). Errors:
  // ErrInvalidAuthToken.
  absl::StatusOr<std::optional<auth::AuthInfo>> CurrentAuthInfo();

  // Watch: streams and watchers live in the hub; creates go through here
  // so the header revision and (planted) restart behaviour apply.
  // etcd's initial corruption check (corruption_check.h): compares this
  // member's hash with its peers' over the peer channel; the real server
  // runs it after Start and before serving clients, and stops on an error.
  // ok at once when corrupt_check.initial is off.
  void CheckInitialHashKV(std::function<void(absl::Status)> done);
  // Where the auto compactor, the corruption checks and alarm changes
  // ("alarm raised", "alarm disarmed") log their lines (log_record.h).
  void set_log(LogFn f) { log_ = std::move(f); }
  const Compactor* compactor() const { return compactor_.get(); }
  const CorruptionChecker& corruption_checker() const { return *corrupt_; }

  mvcc::WatchHub& watch_hub() { return *hub_; }
  void WatchCreate(mvcc::WatchHub::StreamId s, mvcc::WatchCreate req);

  Node& node() { return *node_; }
  const Node& node() const { return *node_; }
  const EtcdStateMachine& state() const { return sm_; }
  uint64_t id() const { return opts_.node.id; }
  uint64_t cluster_id() const { return opts_.cluster_id; }
  // True when Start found an existing data dir (a restart).
  bool restarted() const { return restarted_; }
  // True once this member applied its own removal from the cluster, or a
  // member that applied it refused its messages ('g'); etcd then stops the
  // member ("the member has been permanently removed from the cluster").
  bool removed() const {
    return told_removed_ || sm_.membership().IsRemoved(opts_.node.id);
  }
  // The links to peers, for the strict reconfiguration checks: how long
  // this member has been connected to `peer` without a break, in ns, 0 if
  // it is not connected now (etcd's rafthttp ActiveSince). The real server
  // asks its peer transport, the simulator its network. Unset: no link is
  // known to be down, so only the started-members rules apply.
  void set_peer_link_age(std::function<int64_t(uint64_t peer)> f) {
    peer_link_age_ = std::move(f);
  }
  // etcd's learner rule (its v3rpc interceptors): a learner serves only
  // Status and serializable Range; any other request, and every stream, is
  // refused with ErrNotSupportedForLearner. `supported`: the request is
  // one of those.
  absl::Status CheckLearnerRpc(bool supported) const;
  // The peer transport's refusal of this member's streams because `by`
  // applied its removal (etcd's 410 Gone): the same as a 'g' payload.
  void OnRemovedByPeer(uint64_t by) {
    if (by != opts_.node.id) told_removed_ = true;
  }
  // Called with the raft command of every acknowledged write (the
  // simulator's durability check).
  void set_on_ack(std::function<void(std::string_view)> f) {
    on_ack_ = std::move(f);
  }
  // Called with each applied write's events (the simulator's watch
  // checker records the committed history from it).
  void set_on_events(EtcdStateMachine::EventsFn f) {
    on_events_ = std::move(f);
  }
  void set_on_lease_revoked(std::function<void(int64_t)> f) {
    sm_.set_on_lease_revoked(std::move(f));
  }
  void set_on_lease_granted(std::function<void(int64_t)> f) {
    sm_.set_on_lease_granted(std::move(f));
  }
  void set_on_compaction(
      std::function<void(EtcdStateMachine::CompactionPhase)> f) {
    sm_.set_on_compaction(std::move(f));
  }
  void set_on_slow_apply(EtcdStateMachine::SlowApplyFn f,
                         int64_t threshold_ns) {
    sm_.set_on_slow_apply(std::move(f), threshold_ns);
  }

 private:
  class PeerTransport;
  enum ForwardKind : uint8_t {
    kKeepAlive = 1,
    kTimeToLive = 2,
    kMemberPromote = 3,
    kHashKV = 4,  // to any member, not only the leader
  };
  struct Forwarded {
    std::function<void(absl::Status, std::string_view)> done;
    int deadline_tick;
  };

  template <typename Resp>
  void ProposeRequest(etcdserverpb::InternalRaftRequest req, Done<Resp> done);
  // As ProposeRequest with `r` as req's request field, lent to req for the
  // encoding only: the client's request (a put's value may be 1.5 MiB) is
  // not copied into req. The command's bytes are those ProposeRequest would
  // make of a copy.
  template <typename Resp, typename Req>
  void ProposeLent(etcdserverpb::InternalRaftRequest req,
                   void (etcdserverpb::InternalRaftRequest::*lend)(Req*),
                   Req* (etcdserverpb::InternalRaftRequest::*take_back)(),
                   const Req& r, Done<Resp> done);
  // Proposes the encoded request `cmd` whose header id is rid.
  template <typename Resp>
  void ProposeEncoded(uint64_t rid, std::string cmd, Done<Resp> done);
  // Auth (etcd_server_auth.cc). The identity behind `c` (null: internal).
  absl::StatusOr<std::optional<auth::AuthInfo>> AuthInfoFor(const Caller* c);
  // Stamps req's header with the current caller's user and auth revision
  // (etcd's processInternalRaftRequestOnce); ErrInvalidAuthToken.
  absl::Status StampCaller(etcdserverpb::InternalRaftRequest* req);
  // etcd's IsAdminPermitted for the current caller (ok for internal calls).
  absl::Status CheckAdmin();
  // A copy of the current caller for checks made later (null: internal).
  std::shared_ptr<const Caller> KeepCaller() const;
  // Read checks after a ReadIndex, for `kept` (KeepCaller).
  absl::Status CheckRead(const std::shared_ptr<const Caller>& kept,
                         std::string_view key, std::string_view range_end);
  absl::Status CheckReadTxn(const std::shared_ptr<const Caller>& kept,
                            const etcdserverpb::TxnRequest& t);
  template <typename Req, typename Resp>
  void ProposeAuth(const Req& r, Req* (etcdserverpb::InternalRaftRequest::*field)(),
                   Done<Resp> done);
  void AuthenticateOnce(const etcdserverpb::AuthenticateRequest& r, int tries,
                        Done<etcdserverpb::AuthenticateResponse> done);
  // bcrypt hash of a password at bcrypt_cost with a salt from the Rng.
  // Hashes a password with bcrypt off the engine (OffEngine), then `then`.
  void HashPassword(std::string password,
                    std::function<void(absl::StatusOr<std::string>)> then);
  // ProposeAuth for a request carrying a password: with `hash`, the
  // password is replaced by its hash (HashPassword) before proposing; the
  // password itself never enters the log.
  template <typename Req, typename Resp>
  void ProposeAuthHashed(const Req& r,
                         Req* (etcdserverpb::InternalRaftRequest::*field)(),
                         bool hash, Done<Resp> done);
  void ProposeAuthenticate(const etcdserverpb::AuthenticateRequest& r,
                           int tries, uint64_t checked,
                           Done<etcdserverpb::AuthenticateResponse> done);
  // Calls waiting in AwaitCaller; run from AfterInput.
  struct TokenWait {
    uint64_t index;
    int deadline_tick;
    std::function<void()> go;
  };
  void RunTokenWaits();
  template <typename Resp>
  void FillHeader(Resp* r) const;
  // etcd's quota check before proposing: ErrNoSpace (and a NOSPACE alarm
  // for this member) if a write of `cost` would not fit.
  absl::Status CheckQuota(int64_t cost);
  void RaiseNoSpace();
  void CheckLeaderMoves();
  // Proposes a membership change; `then` gets the outcome once applied
  // here (or the proposal's error).
  void ProposeMemberChange(const raft::ConfChange& cc,
                           std::function<void(absl::Status)> then);
  // etcd's Cluster service header: ids and term, no revision.
  void FillClusterHeader(etcdserverpb::ResponseHeader* h) const;
  void AddMembers(
      google::protobuf::RepeatedPtrField<etcdserverpb::Member>* out) const;
  uint64_t NewMemberId();
  // etcd's mayAddMember / mayRemoveMember (strict reconfiguration).
  absl::Status MayAddMember(bool learner) const;
  absl::Status MayRemoveMember(uint64_t id) const;
  // Voting members this member has been connected to for longer than the
  // health interval (itself included), and how many voting members there
  // are (etcd's numConnectedSince).
  std::pair<int, int> ConnectedVoters() const;
  // A raft message from a removed member: dropped, and the sender told.
  bool RefuseRemovedSender(std::string_view raft_payload);
  struct LeaderMove {
    uint64_t target;
    int deadline_tick;
    Done<etcdserverpb::MoveLeaderResponse> done;
  };
  // Runs `serve` once a read at this member is linearizable.
  void LinearizableRead(std::function<void(absl::Status)> serve);
  void Forward(ForwardKind kind, std::string request,
               std::function<void(absl::Status, std::string_view)> done);
  void ForwardTo(uint64_t to, ForwardKind kind, std::string request,
                 std::function<void(absl::Status, std::string_view)> done);
  // Auto compaction, corruption checks and alarm logging
  // (etcd_server_maintenance.cc).
  void InitMaintenance();
  void MaintenanceTick();
  void AskPeersHashKV(int64_t revision,
                      std::function<void(std::vector<PeerHash>)> done);
  void ServeHashKV(const std::string& request,
                   std::function<void(std::string)> answer);
  void LogAlarmChanges();
  template <typename Req, typename Resp>
  void Relay(ForwardKind kind, const Req& r, Done<Resp> done);
  void ServeForwarded(uint64_t from, uint64_t rid, ForwardKind kind,
                      std::string request);
  // The leader's answers (run after a ReadIndex confirmed leadership).
  absl::StatusOr<etcdserverpb::LeaseKeepAliveResponse> RenewHere(
      const etcdserverpb::LeaseKeepAliveRequest& r);
  absl::StatusOr<etcdserverpb::LeaseTimeToLiveResponse> TimeToLiveHere(
      const etcdserverpb::LeaseTimeToLiveRequest& r);
  void AfterInput();  // leadership changes -> lessor promote/demote
  void ProposeCheckpoints();
  struct HeldKeepAlive {
    int64_t id;
    etcdserverpb::LeaseKeepAliveResponse resp;
    Done<etcdserverpb::LeaseKeepAliveResponse> done;
  };
  void LeaderDuties();
  uint64_t NextRequestId();
  int64_t now() const { return env_.clock->NowNanos(); }
  // Runs `work` through env::Offload (inline without one), then `done` on
  // the engine, unless this server is gone by then.
  void OffEngine(std::function<void()> work, std::function<void()> done);
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);

  env::Env env_;
  EtcdServerOptions opts_;
  std::unique_ptr<PeerTransport> peer_;
  std::shared_ptr<auth::TokenProvider> tokens_;  // before sm_, which uses it
  const Caller* caller_ = nullptr;  // CallerScope
  std::vector<TokenWait> token_waits_;  // AwaitCaller, in arrival order
  EtcdStateMachine sm_;
  std::unique_ptr<Node> node_;
  std::unique_ptr<mvcc::WatchHub> hub_;
  // SnapshotImage's images being built, oldest first.
  struct ImageJob {
    raft::SnapshotMetadata meta;
    std::unique_ptr<ImageWriter> writer;
    std::string data;
    Done<std::string> done;
    int tries = 0;
  };
  std::vector<std::unique_ptr<ImageJob>> image_jobs_;
  // Makes the job's writer, unless a compaction is being removed (its
  // image would finish that at once): ContinueImages makes it after.
  void BeginImage(ImageJob* job);
  // Physical compactions applied here whose answer waits until their
  // revisions are removed.
  struct PhysicalCompaction {
    etcdserverpb::CompactionResponse resp;
    Done<etcdserverpb::CompactionResponse> done;
  };
  std::vector<PhysicalCompaction> physical_compactions_;
  void AnswerPhysicalCompactions();
  // Ranges being read in pieces.
  struct RangeJob {
    etcdserverpb::RangeRequest request;  // the reader points into it
    std::optional<RangeReader> reader;
    Done<etcdserverpb::RangeResponse> done;
    int steps = 0;
  };
  std::vector<std::unique_ptr<RangeJob>> range_jobs_;
  // HashKVs being computed in steps.
  struct HashJob {
    int64_t revision = 0;
    std::optional<mvcc::KvStore::HashWriter> writer;
    Done<etcdserverpb::HashKVResponse> done;
  };
  std::vector<std::unique_ptr<HashJob>> hash_jobs_;
  bool StepHash(HashJob& job);  // true once answered
  void ContinueHashes();
  // One piece of the job's range; true once it is answered.
  bool StepRange(RangeJob& job);
  void ContinueRanges();
  bool restarted_ = false;
  bool promoted_ = false;
  // Keep-alives renewed here whose answer waits until the lessor's clear
  // of a stale remaining TTL is applied (see Lessor::AwaitingClear).
  std::vector<HeldKeepAlive> held_;
  uint64_t last_leader_ = 0;
  int ticks_ = 0;
  bool ids_seeded_ = false;
  uint64_t next_request_ = 0;
  uint64_t next_forward_ = 0;  // random start: see the constructor
  std::map<uint64_t, Forwarded> forwarded_;  // by request id
  int64_t quota_bytes_ = 0;  // 0: no quota
  bool nospace_pending_ = false;  // our NOSPACE alarm is being proposed
  std::vector<LeaderMove> leader_moves_;
  // Writes proposed here and not yet answered (for the planted re-propose
  // bug only).
  std::map<uint64_t, std::string> inflight_;
  std::function<void(std::string_view)> on_ack_;
  EtcdStateMachine::EventsFn on_events_;
  std::function<int64_t(uint64_t)> peer_link_age_;
  bool told_removed_ = false;
  // Removed senders told at this tick (one 'g' per sender per tick).
  std::map<uint64_t, int> gone_told_tick_;
  // Maintenance (etcd_server_maintenance.cc).
  LogFn log_;
  std::unique_ptr<Compactor> compactor_;  // null when auto compaction is off
  std::unique_ptr<CorruptionChecker> corrupt_;
  bool alarms_seen_ = false;
  std::vector<etcdserverpb::AlarmMember> logged_alarms_;
};

}  // namespace detcd::server

#endif  // DETCD_ENGINE_SERVER_ETCD_SERVER_H_
