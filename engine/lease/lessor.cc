#include "engine/lease/lessor.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_format.h"
#include "engine/util/check.h"
#include "engine/util/coding.h"
#include "engine/util/hash.h"
#include "engine/util/probes.h"

namespace detcd::lease {
namespace {

constexpr uint32_t kSnapshotMagic = 0x3153454C;  // "LES1" little-endian
constexpr uint64_t kSnapshotVersion = 1;
constexpr size_t kChecksumBytes = 8;

constexpr char kLeaseNotFoundMsg[] = "etcdserver: requested lease not found";
constexpr char kNotPrimaryMsg[] = "etcdserver: not leader";

// Time arithmetic saturates: a huge TTL on a clock far from zero must mean
// "very late", never wrap around to "already expired".
int64_t SatAdd(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) {
    return b > 0 ? std::numeric_limits<int64_t>::max()
                 : std::numeric_limits<int64_t>::min();
  }
  return r;
}

int64_t SatSub(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_sub_overflow(a, b, &r)) {
    return b < 0 ? std::numeric_limits<int64_t>::max()
                 : std::numeric_limits<int64_t>::min();
  }
  return r;
}

// ttl_s <= kMaxLeaseTtlS, so this never overflows.
int64_t SecondsToNanos(int64_t s) { return s * kNanosPerSecond; }

int64_t CeilSeconds(int64_t ns) {
  return ns / kNanosPerSecond + (ns % kNanosPerSecond > 0 ? 1 : 0);
}

absl::Status Corrupt(std::string_view what) {
  return absl::DataLossError(
      absl::StrFormat("lease snapshot corrupt: %s", what));
}

}  // namespace

absl::Status ErrLeaseNotFound() {
  return absl::NotFoundError(kLeaseNotFoundMsg);
}
absl::Status ErrLeaseExists() {
  return absl::FailedPreconditionError("etcdserver: lease already exists");
}
absl::Status ErrLeaseTTLTooLarge() {
  return absl::OutOfRangeError("etcdserver: too large lease TTL");
}
absl::Status ErrNotPrimary() {
  return absl::FailedPreconditionError(kNotPrimaryMsg);
}
bool IsErrLeaseNotFound(const absl::Status& s) {
  return absl::IsNotFound(s) && s.message() == kLeaseNotFoundMsg;
}
bool IsErrNotPrimary(const absl::Status& s) {
  return absl::IsFailedPrecondition(s) && s.message() == kNotPrimaryMsg;
}

absl::Status LessorOptions::Validate() const {
  if (min_ttl_s < 1) {
    return absl::InvalidArgumentError("lease: min_ttl_s must be >= 1");
  }
  if (max_ttl_s < min_ttl_s || max_ttl_s > kMaxLeaseTtlS) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "lease: max_ttl_s must be in [min_ttl_s, %d]", kMaxLeaseTtlS));
  }
  if (checkpoint_interval_ns <= 0) {
    return absl::InvalidArgumentError(
        "lease: checkpoint_interval_ns must be > 0");
  }
  if (expired_retry_ns <= 0) {
    return absl::InvalidArgumentError("lease: expired_retry_ns must be > 0");
  }
  if (max_checkpoints_per_call == 0 || max_expired_per_call == 0) {
    return absl::InvalidArgumentError(
        "lease: max_checkpoints_per_call and max_expired_per_call must be > 0");
  }
  return absl::OkStatus();
}

Lessor::Lessor(LessorOptions options) : options_(options) {
  DETCD_CHECK_MSG(options_.Validate().ok(), "invalid LessorOptions");
}

// ---------------------------------------------------------------------------
// Primary-only bookkeeping. Each Set* keeps the lease field and its index
// entry in step; kNever is never indexed.

void Lessor::SetExpiry(int64_t id, Lease& l, int64_t expiry_ns) {
  l.expiry_ns = expiry_ns;
  l.reported_expired = false;
  SetNotify(id, l, NotifyAt(l, expiry_ns));
}

int64_t Lessor::NotifyAt(const Lease& l, int64_t expiry_ns) const {
  if (options_.bugs.on(planted::Bug::kEarlyLeaseRevoke) &&
      expiry_ns != kNever) {
    // PLANTED: Expired() names the lease half its TTL early.
    return SatSub(expiry_ns, SecondsToNanos(l.ttl_s) / 2);
  }
  return expiry_ns;
}

void Lessor::SetNotify(int64_t id, Lease& l, int64_t notify_ns) {
  if (l.notify_ns != kNever) notify_index_.erase({l.notify_ns, id});
  l.notify_ns = notify_ns;
  if (notify_ns != kNever) notify_index_.insert({notify_ns, id});
}

void Lessor::SetCheckpointDue(int64_t id, Lease& l, int64_t due_ns) {
  if (l.checkpoint_due_ns != kNever) {
    checkpoint_index_.erase({l.checkpoint_due_ns, id});
  }
  l.checkpoint_due_ns = due_ns;
  if (due_ns != kNever) checkpoint_index_.insert({due_ns, id});
}

void Lessor::SetClearRetry(int64_t id, Lease& l, int64_t retry_ns) {
  if (l.clear_retry_ns != kNever) {
    clear_retry_index_.erase({l.clear_retry_ns, id});
  }
  l.clear_retry_ns = retry_ns;
  if (retry_ns != kNever) clear_retry_index_.insert({retry_ns, id});
}

void Lessor::EraseIndexes(int64_t id, const Lease& l) {
  if (l.notify_ns != kNever) notify_index_.erase({l.notify_ns, id});
  if (l.checkpoint_due_ns != kNever) {
    checkpoint_index_.erase({l.checkpoint_due_ns, id});
  }
  if (l.clear_retry_ns != kNever) {
    clear_retry_index_.erase({l.clear_retry_ns, id});
  }
  clear_queue_.erase(id);
}

// Indexes are cleared wholesale by the callers.
void Lessor::ResetPrimaryState(Lease& l) {
  l.expiry_ns = kNever;
  l.notify_ns = kNever;
  l.reported_expired = false;
  l.checkpoint_due_ns = kNever;
  l.inflight.clear();
  l.forgotten_seq = 0;
  l.clear_after_seq = -1;
  l.clear_retry_ns = kNever;
}

bool Lessor::Stale(const Lease& l) {
  if (l.remaining_ttl_s > 0 || l.forgotten_seq > 0) return true;
  return std::any_of(l.inflight.begin(), l.inflight.end(),
                     [](const Issued& i) { return i.remaining_ttl_s > 0; });
}

void Lessor::StopAwaiting(int64_t id, Lease& l) {
  l.clear_after_seq = -1;
  clear_queue_.erase(id);
  SetClearRetry(id, l, kNever);
}

// Called on the primary after an applied checkpoint set remaining_ttl_s.
// Under the Promote() contract the entry is one this primary handed out;
// proposals apply in hand-out order, so the items in front of the match
// were lost. Matching the earliest equal value errs towards "still in
// flight", which only costs an extra clear.
void Lessor::NoteApplied(int64_t id, Lease& l, int64_t remaining_ttl_s) {
  auto it = std::find_if(
      l.inflight.begin(), l.inflight.end(),
      [&](const Issued& i) { return i.remaining_ttl_s == remaining_ttl_s; });
  if (it != l.inflight.end()) {
    const Issued matched = *it;
    l.inflight.erase(l.inflight.begin(), it + 1);
    // Everything handed out before the applied one is applied or lost.
    if (matched.seq > l.forgotten_seq) l.forgotten_seq = 0;
    if (l.clear_after_seq >= 0 && matched.remaining_ttl_s == 0 &&
        matched.seq > static_cast<uint64_t>(l.clear_after_seq)) {
      StopAwaiting(id, l);
    }
  }
  // Nothing stale left anywhere: no value computed before the renew can
  // take effect any more.
  if (l.clear_after_seq >= 0 && !Stale(l)) StopAwaiting(id, l);
}

Lessor::CheckpointItem Lessor::HandOut(Lease& l, int64_t id,
                                       int64_t remaining_ttl_s) {
  if (l.inflight.size() >= kMaxInflightCheckpointsPerLease) {
    const Issued& oldest = l.inflight.front();
    if (oldest.remaining_ttl_s > 0) l.forgotten_seq = oldest.seq;
    l.inflight.erase(l.inflight.begin());
  }
  l.inflight.push_back(Issued{++issue_seq_, remaining_ttl_s});
  return CheckpointItem{id, remaining_ttl_s};
}

// ---------------------------------------------------------------------------
// Applied.

absl::StatusOr<int64_t> Lessor::Grant(int64_t id, int64_t ttl_s,
                                      int64_t now_ns) {
  if (id == 0) return ErrLeaseNotFound();  // etcd's NoLease
  if (ttl_s > options_.max_ttl_s) return ErrLeaseTTLTooLarge();
  if (leases_.contains(id)) return ErrLeaseExists();
  ttl_s = std::max(ttl_s, options_.min_ttl_s);
  Lease& l = leases_[id];
  l.ttl_s = ttl_s;
  if (primary_) {
    SetExpiry(id, l, SatAdd(now_ns, SecondsToNanos(ttl_s)));
    SetCheckpointDue(id, l, SatAdd(now_ns, options_.checkpoint_interval_ns));
  }
  ++counters_.granted;
  return ttl_s;
}

absl::StatusOr<std::vector<std::string>> Lessor::Revoke(int64_t id) {
  auto it = leases_.find(id);
  if (it == leases_.end()) return ErrLeaseNotFound();
  ++counters_.revoked;
  if (primary_ && it->second.reported_expired) ++counters_.expired;
  EraseIndexes(id, it->second);
  std::vector<std::string> keys(it->second.keys.begin(), it->second.keys.end());
  leases_.erase(it);
  return keys;
}

absl::Status Lessor::Attach(int64_t id, std::string_view key) {
  auto it = leases_.find(id);
  if (it == leases_.end()) return ErrLeaseNotFound();
  it->second.keys.insert(std::string(key));
  return absl::OkStatus();
}

void Lessor::Detach(int64_t id, std::string_view key) {
  auto it = leases_.find(id);
  if (it == leases_.end()) return;
  it->second.keys.erase(std::string(key));
}

void Lessor::Checkpoint(int64_t id, int64_t remaining_ttl_s,
                        int64_t /*now_ns*/) {
  auto it = leases_.find(id);
  if (it == leases_.end()) return;
  // A negative value cannot come from a lessor; treat it as "unset" rather
  // than let it poison Promote().
  Lease& l = it->second;
  DETCD_PROBE(kLeaseCheckpointApplied);
  l.remaining_ttl_s = std::clamp<int64_t>(remaining_ttl_s, 0, kMaxLeaseTtlS);
  if (primary_) NoteApplied(id, l, l.remaining_ttl_s);
}

// ---------------------------------------------------------------------------
// Leader only.

void Lessor::Promote(int64_t now_ns, int64_t extend_ns) {
  DETCD_CHECK(extend_ns >= 0);
  ClearPrimaryIndexes();
  primary_ = true;
  if (extend_ns > 0 && !leases_.empty()) DETCD_PROBE(kLeasePromoteExtended);
  const int64_t due = SatAdd(now_ns, options_.checkpoint_interval_ns);
  // Every lease's expiry, sorted; the indexes are then filled in order
  // (with a million leases, searching them for each insert was most of a
  // Promote that stalls a new leader's engine thread).
  std::vector<Expiry> expiries;
  expiries.reserve(leases_.size());
  for (auto& [id, l] : leases_) {
    ResetPrimaryState(l);
    const int64_t base_s = l.remaining_ttl_s > 0 ? l.remaining_ttl_s : l.ttl_s;
    expiries.push_back(Expiry{
        SatAdd(SatAdd(now_ns, SecondsToNanos(base_s)), extend_ns), id, &l});
    // SetCheckpointDue's work; in id order, each goes at the index's end.
    l.checkpoint_due_ns = due;
    if (due != kNever) checkpoint_index_.insert(checkpoint_index_.end(),
                                                {due, id});
  }
  std::sort(expiries.begin(), expiries.end());
  if (expiries.size() >= kLeaseRevokeRate) {
    SpreadPiledUpExpiries(now_ns, expiries);
  }
  std::vector<std::pair<int64_t, int64_t>> notify;  // (ns, id)
  notify.reserve(expiries.size());
  for (const Expiry& e : expiries) {
    Lease& l = *e.lease;  // SetExpiry's work, the index filled below
    l.expiry_ns = e.ns;
    l.reported_expired = false;
    l.notify_ns = NotifyAt(l, e.ns);
    if (l.notify_ns != kNever) notify.emplace_back(l.notify_ns, e.id);
  }
  if (!std::is_sorted(notify.begin(), notify.end())) {
    std::sort(notify.begin(), notify.end());
  }
  for (const auto& n : notify) notify_index_.insert(notify_index_.end(), n);
}

// etcd's Promote, after the refresh: walks the leases in expiry order
// (ties by id here) in windows that start at a lease's expiry and last a
// second; the first 3/4 * kLeaseRevokeRate of a window keep their expiry,
// each later one is pushed to expire (its count in the window / that
// target) seconds after the window's start, and the window reaches there.
// The order of `sorted` is kept: a pushed lease expires before any later
// window starts.
void Lessor::SpreadPiledUpExpiries(int64_t now_ns,
                                   std::vector<Expiry>& sorted) {
  constexpr int64_t kTarget = static_cast<int64_t>(kLeaseRevokeRate) * 3 / 4;
  int64_t base = SatSub(sorted.front().ns, now_ns);
  int64_t next = SatAdd(base, kNanosPerSecond);
  int64_t expires = 0;
  for (Expiry& e : sorted) {
    const int64_t remaining = SatSub(e.ns, now_ns);
    if (remaining > next) {
      base = remaining;
      next = SatAdd(base, kNanosPerSecond);
      expires = 1;
      continue;
    }
    ++expires;
    if (expires <= kTarget) continue;
    const int64_t delay =
        kNanosPerSecond * expires / kTarget - (remaining - base);
    next = SatAdd(base, delay);
    if (delay > 0) e.ns = SatAdd(e.ns, delay);  // only extends (always > 0)
  }
}

void Lessor::Demote() {
  ClearPrimaryIndexes();
  primary_ = false;
  for (auto& [id, l] : leases_) ResetPrimaryState(l);
}

void Lessor::ClearPrimaryIndexes() {
  notify_index_.clear();
  checkpoint_index_.clear();
  clear_queue_.clear();
  clear_retry_index_.clear();
}

absl::StatusOr<int64_t> Lessor::Renew(int64_t id, int64_t now_ns) {
  if (!primary_) return ErrNotPrimary();
  auto it = leases_.find(id);
  if (it == leases_.end()) return ErrLeaseNotFound();
  Lease& l = it->second;
  // reported_expired guards against a clock that steps backwards after
  // Expired() named the lease: its revoke may already be in the log.
  const bool expired = l.reported_expired || now_ns >= l.expiry_ns;
  if (expired && options_.bugs.on(planted::Bug::kLateRenew)) {
    // PLANTED: the expired lease is renewed (its revoke may be in flight).
  } else if (expired) {
    return ErrLeaseNotFound();
  }
  if (Stale(l)) {
    // Any clear handed out from now on was handed out after this renew.
    l.clear_after_seq = static_cast<int64_t>(issue_seq_);
    clear_queue_.insert(id);
    SetClearRetry(id, l, kNever);
  } else {
    StopAwaiting(id, l);
  }
  SetExpiry(id, l, SatAdd(now_ns, SecondsToNanos(l.ttl_s)));
  ++counters_.renewed;
  return l.ttl_s;
}

bool Lessor::AwaitingClear(int64_t id) const {
  if (!primary_) return false;
  auto it = leases_.find(id);
  return it != leases_.end() && it->second.clear_after_seq >= 0;
}

std::vector<int64_t> Lessor::Expired(int64_t now_ns) {
  std::vector<int64_t> out;
  if (!primary_) return out;
  const int64_t retry = SatAdd(now_ns, options_.expired_retry_ns);
  while (!notify_index_.empty() && out.size() < options_.max_expired_per_call) {
    const auto [notify_ns, id] = *notify_index_.begin();
    if (notify_ns > now_ns) break;
    Lease& l = leases_.at(id);
    DETCD_CHECK(l.expiry_ns <= now_ns ||
                options_.bugs.on(planted::Bug::kEarlyLeaseRevoke));
    DETCD_PROBE(kLeaseExpired);
    out.push_back(id);
    l.reported_expired = true;
    // retry > now_ns, so the loop does not see this lease again.
    SetNotify(id, l, retry);
  }
  return out;
}

std::vector<Lessor::CheckpointItem> Lessor::DueCheckpoints(int64_t now_ns) {
  std::vector<CheckpointItem> out;
  if (!primary_) return out;
  const size_t limit = options_.max_checkpoints_per_call;
  const int64_t retry = SatAdd(now_ns, options_.expired_retry_ns);

  // Clears first: a keep-alive is waiting on each.
  while (!clear_queue_.empty() && out.size() < limit) {
    const int64_t id = *clear_queue_.begin();
    clear_queue_.erase(clear_queue_.begin());
    Lease& l = leases_.at(id);
    out.push_back(HandOut(l, id, 0));
    SetClearRetry(id, l, retry);
  }
  // Clears handed out long ago and still not applied were probably lost.
  while (!clear_retry_index_.empty() && out.size() < limit) {
    const auto [retry_ns, id] = *clear_retry_index_.begin();
    if (retry_ns > now_ns) break;
    Lease& l = leases_.at(id);
    DETCD_CHECK(l.clear_after_seq >= 0);
    out.push_back(HandOut(l, id, 0));
    SetClearRetry(id, l, retry);  // > now_ns: not seen again in this loop
  }
  // Scheduled checkpoints. Each lease handled here is rescheduled after
  // now_ns or unscheduled, so the loop ends.
  const int64_t next_due = SatAdd(now_ns, options_.checkpoint_interval_ns);
  while (!checkpoint_index_.empty() && out.size() < limit) {
    const auto [due_ns, id] = *checkpoint_index_.begin();
    if (due_ns > now_ns) break;
    Lease& l = leases_.at(id);
    if (l.reported_expired || now_ns >= l.expiry_ns) {
      // Expired: about to be revoked; nothing worth recording.
      SetCheckpointDue(id, l, kNever);
      continue;
    }
    SetCheckpointDue(id, l, next_due);
    if (l.expiry_ns == kNever) continue;  // saturated: nothing to record
    const int64_t remaining_s = CeilSeconds(SatSub(l.expiry_ns, now_ns));
    // Not below the TTL (just promoted or renewed): recording it would only
    // lengthen what the next leader grants.
    if (remaining_s >= l.ttl_s) continue;
    out.push_back(HandOut(l, id, remaining_s));
  }
  return out;
}

// ---------------------------------------------------------------------------
// Queries.

absl::StatusOr<Lessor::LeaseInfo> Lessor::Get(int64_t id) const {
  auto it = leases_.find(id);
  if (it == leases_.end()) return ErrLeaseNotFound();
  const Lease& l = it->second;
  return LeaseInfo{id, l.ttl_s, l.remaining_ttl_s,
                   std::vector<std::string>(l.keys.begin(), l.keys.end())};
}

absl::StatusOr<int64_t> Lessor::RemainingTtlSeconds(int64_t id,
                                                    int64_t now_ns) const {
  auto it = leases_.find(id);
  if (it == leases_.end()) return ErrLeaseNotFound();
  const Lease& l = it->second;
  if (!primary_) return l.remaining_ttl_s > 0 ? l.remaining_ttl_s : l.ttl_s;
  if (l.reported_expired || now_ns >= l.expiry_ns) return -1;
  return SatSub(l.expiry_ns, now_ns) / kNanosPerSecond;
}

absl::StatusOr<int64_t> Lessor::ExpiryNs(int64_t id) const {
  auto it = leases_.find(id);
  if (it == leases_.end()) return ErrLeaseNotFound();
  return it->second.expiry_ns;
}

std::vector<int64_t> Lessor::Ids() const {
  std::vector<int64_t> ids;
  ids.reserve(leases_.size());
  for (const auto& [id, l] : leases_) ids.push_back(id);
  return ids;
}

// ---------------------------------------------------------------------------
// Snapshot.

std::string Lessor::Snapshot() const {
  std::string out;
  coding::PutFixed32(&out, kSnapshotMagic);
  coding::PutVarint64(&out, kSnapshotVersion);
  coding::PutVarint64(&out, leases_.size());
  for (const auto& [id, l] : leases_) {
    coding::PutVarint64(&out, static_cast<uint64_t>(id));
    coding::PutVarint64(&out, static_cast<uint64_t>(l.ttl_s));
    coding::PutVarint64(&out, static_cast<uint64_t>(l.remaining_ttl_s));
    coding::PutVarint64(&out, l.keys.size());
    for (const std::string& k : l.keys) coding::PutLengthPrefixed(&out, k);
  }
  const uint64_t sum = util::Fnv1a(out);
  coding::PutFixed32(&out, static_cast<uint32_t>(sum));
  coding::PutFixed32(&out, static_cast<uint32_t>(sum >> 32));
  return out;
}

absl::Status Lessor::Restore(std::string_view image) {
  absl::StatusOr<Decoded> d = Decode(image);
  if (!d.ok()) return d.status();
  Install(&*d);
  return absl::OkStatus();
}

void Lessor::Install(Decoded* d) {
  ClearPrimaryIndexes();
  primary_ = false;
  leases_.swap(d->leases);
}

absl::StatusOr<Lessor::Decoded> Lessor::Decode(std::string_view image) const {
  if (image.size() < 4 + kChecksumBytes) return Corrupt("too short");
  const std::string_view body = image.substr(0, image.size() - kChecksumBytes);
  const char* tail = image.data() + body.size();
  const uint64_t want = coding::DecodeFixed32(tail) |
                        uint64_t{coding::DecodeFixed32(tail + 4)} << 32;
  if (util::Fnv1a(body) != want) return Corrupt("checksum mismatch");
  if (coding::DecodeFixed32(body.data()) != kSnapshotMagic) {
    return Corrupt("bad magic");
  }
  coding::Reader r(body.substr(4));
  uint64_t version = 0, count = 0;
  if (!r.GetVarint64(&version)) return Corrupt("truncated header");
  if (version != kSnapshotVersion) {
    return Corrupt(absl::StrFormat("unknown version %d", version));
  }
  if (!r.GetVarint64(&count)) return Corrupt("truncated header");
  // Every lease takes at least 4 bytes; refuse counts the input cannot hold
  // before looping on them.
  if (count > r.remaining() / 4) return Corrupt("lease count too large");

  Decoded out;
  absl::btree_map<int64_t, Lease>& leases = out.leases;
  bool have_prev = false;
  int64_t prev_id = 0;
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t id_u = 0, ttl = 0, remaining = 0, nkeys = 0;
    if (!r.GetVarint64(&id_u) || !r.GetVarint64(&ttl) ||
        !r.GetVarint64(&remaining) || !r.GetVarint64(&nkeys)) {
      return Corrupt("truncated lease");
    }
    const int64_t id = static_cast<int64_t>(id_u);
    if (id == 0) return Corrupt("lease id 0");
    if (have_prev && id <= prev_id) return Corrupt("lease ids out of order");
    if (ttl < 1 || ttl > static_cast<uint64_t>(kMaxLeaseTtlS)) {
      return Corrupt("ttl out of range");
    }
    if (remaining > static_cast<uint64_t>(kMaxLeaseTtlS)) {
      return Corrupt("remaining ttl out of range");
    }
    if (nkeys > r.remaining()) return Corrupt("key count too large");
    Lease l;
    l.ttl_s = std::max(static_cast<int64_t>(ttl), options_.min_ttl_s);
    l.remaining_ttl_s = static_cast<int64_t>(remaining);
    std::string key, prev_key;
    for (uint64_t k = 0; k < nkeys; ++k) {
      if (!r.GetLengthPrefixed(&key)) return Corrupt("truncated key");
      if (k > 0 && key <= prev_key) return Corrupt("keys out of order");
      l.keys.insert(l.keys.end(), key);
      prev_key = key;
    }
    leases.emplace_hint(leases.end(), id, std::move(l));
    have_prev = true;
    prev_id = id;
  }
  if (!r.empty()) return Corrupt("trailing bytes");
  return out;
}

}  // namespace detcd::lease
