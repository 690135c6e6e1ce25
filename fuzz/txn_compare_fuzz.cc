// The txn compare evaluator and txn apply (engine/server/etcd_kv.h) on a
// scratch store.
//
// Input: byte(n) then n x (lp(key) lp(value)) puts, each its own revision
// (at most 16), then byte(d): if odd, a delete of the first put's key (so
// tombstones and version resets are reachable); the rest is a TxnRequest
// protobuf.
// Oracles:
//  - a txn that fails validation (CheckTxn) or apply changes nothing;
//  - `succeeded` equals a brute-force evaluation of the top-level compares
//    over every live key (etcd's rules: every key in the range must
//    satisfy the compare; no key compares as a zero KeyValue, except that a
//    value compare on no key fails);
//  - a read-only txn answers the same through ApplyReadOnlyTxn and through
//    ApplyTxn.
#include <string>
#include <vector>

#include "engine/mvcc/kv_store.h"
#include "engine/server/etcd_kv.h"
#include "engine/util/coding.h"
#include "etcdserverpb/rpc.pb.h"
#include "fuzz/fuzz_target.h"
#include "fuzz/quiet_protobuf.h"

namespace detcd::fuzz {
namespace {

namespace pb = etcdserverpb;

bool InRange(const std::string& k, const pb::Compare& c) {
  const std::string& key = c.key();
  const std::string& end = c.range_end();
  if (end.empty()) return k == key;
  if (end == std::string(1, '\0')) return k >= key;
  return k >= key && k < end;
}

int Cmp(int64_t a, int64_t b) { return a < b ? -1 : (a > b ? 1 : 0); }

bool Holds(const pb::Compare& c, const mvcc::KeyValue& kv) {
  int r = 0;
  switch (c.target()) {
    case pb::Compare::VALUE: {
      std::string v = c.has_value() ? c.value() : std::string();
      r = kv.value < v ? -1 : (kv.value > v ? 1 : 0);
      break;
    }
    case pb::Compare::CREATE:
      r = Cmp(kv.create_revision,
              c.has_create_revision() ? c.create_revision() : 0);
      break;
    case pb::Compare::MOD:
      r = Cmp(kv.mod_revision, c.has_mod_revision() ? c.mod_revision() : 0);
      break;
    case pb::Compare::VERSION:
      r = Cmp(kv.version, c.has_version() ? c.version() : 0);
      break;
    case pb::Compare::LEASE:
      r = Cmp(kv.lease, c.has_lease() ? c.lease() : 0);
      break;
    default:
      break;
  }
  switch (c.result()) {
    case pb::Compare::EQUAL:
      return r == 0;
    case pb::Compare::NOT_EQUAL:
      return r != 0;
    case pb::Compare::GREATER:
      return r > 0;
    case pb::Compare::LESS:
      return r < 0;
    default:
      return true;
  }
}

bool ReferenceCompares(const std::vector<mvcc::KeyValue>& live,
                       const pb::TxnRequest& t) {
  for (const pb::Compare& c : t.compare()) {
    bool any = false, all = true;
    for (const mvcc::KeyValue& kv : live) {
      if (!InRange(kv.key, c)) continue;
      any = true;
      all = all && Holds(c, kv);
    }
    const bool ok = any ? all
                        : (c.target() != pb::Compare::VALUE &&
                           Holds(c, mvcc::KeyValue{}));
    if (!ok) return false;
  }
  return true;
}

}  // namespace
}  // namespace detcd::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace detcd;
  using namespace detcd::fuzz;
  std::string_view in = AsView(data, size);
  mvcc::KvStore kv;
  const int puts = TakeByte(&in) % 17;
  coding::Reader r(in);
  std::string first;
  for (int i = 0; i < puts; ++i) {
    std::string k, v;
    if (!r.GetLengthPrefixed(&k) || !r.GetLengthPrefixed(&v)) break;
    if (i == 0) first = k;
    auto w = kv.Write();
    w.Put(k, v, /*lease=*/0);
    w.End();
  }
  in = r.rest();
  if (TakeByte(&in) % 2 == 1 && !first.empty()) {
    auto w = kv.Write();
    w.DeleteRange(first, "");
    w.End();
  }
  pb::TxnRequest t;
  if (!t.ParseFromArray(in.data(), static_cast<int>(in.size()))) return 0;

  const uint64_t hash_before = kv.Hash();
  const int64_t rev_before = kv.Rev();
  std::vector<mvcc::KeyValue> live;
  {
    auto all = kv.Range(std::string(1, '\0'), std::string(1, '\0'), {});
    if (!all.ok()) Fail("cannot read the whole store");
    live = all->kvs;
  }
  const bool reference = ReferenceCompares(live, t);

  if (!server::CheckTxn(t, server::KvLimits{}).ok()) return 0;
  std::optional<absl::StatusOr<pb::TxnResponse>> read_only;
  if (server::IsTxnReadOnly(t)) {
    read_only = server::ApplyReadOnlyTxn(kv, t);
    if (kv.Hash() != hash_before) Fail("a read-only txn changed the store");
  }
  absl::StatusOr<pb::TxnResponse> resp = [&] {
    auto w = kv.Write();
    auto out = server::ApplyTxn(w, /*leases=*/nullptr, t);
    const std::vector<mvcc::Event> events = w.End();
    if (!out.ok() && !events.empty()) Fail("a failed txn wrote events");
    return out;
  }();
  if (!resp.ok()) {
    if (kv.Hash() != hash_before || kv.Rev() != rev_before) {
      Fail("a failed txn changed the store");
    }
  } else if (resp->succeeded() != reference) {
    Fail("txn compares disagree with the reference evaluation");
  }
  if (read_only) {
    if (read_only->ok() != resp.ok()) {
      Fail("read-only txn: ApplyReadOnlyTxn and ApplyTxn disagree on error");
    }
    if (resp.ok() && read_only->value().SerializeAsString() !=
                         resp->SerializeAsString()) {
      Fail("read-only txn: ApplyReadOnlyTxn and ApplyTxn answer differently");
    }
  }
  return 0;
}
