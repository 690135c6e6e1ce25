// Software transactional memory over etcd transactions, as clientv3's
// concurrency.NewSTM: `apply` reads and writes keys through an Stm; its
// writes are buffered and committed in one Txn whose comparisons check
// that what it read is unchanged (depending on the isolation level); on a
// conflict the whole apply runs again from scratch.
//
//   auto r = RunStm(client, [](Stm& s) {
//     int64_t a = std::stoll(s.Get("a")), b = std::stoll(s.Get("b"));
//     s.Put("a", std::to_string(a - 10));
//     s.Put("b", std::to_string(b + 10));
//     return absl::OkStatus();
//   });
//
// Isolation levels (etcd's):
//  - kSerializableSnapshot (the default): every read sees the revision of
//    the first one, and the commit fails if any key read or written
//    changed since then (no write skew).
//  - kSerializable: reads at the first read's revision; the commit checks
//    the keys read.
//  - kRepeatableReads: each key read once (from any member, serializable
//    range); the commit checks the keys read.
//  - kReadCommitted: reads of committed data, no checks at commit.
//
// A read that fails aborts the transaction: Get returns "" and RunStm
// returns the error once apply returns (apply may check ok() to stop
// early). An error returned by apply aborts it too. Apply must not have
// effects outside the Stm: it may run more than once.
#ifndef DETCD_CLIENT_STM_H_
#define DETCD_CLIENT_STM_H_

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "detcd/client.h"
#include "etcdserverpb/rpc.pb.h"

namespace detcd::client {

enum class Isolation {
  kSerializableSnapshot,
  kSerializable,
  kRepeatableReads,
  kReadCommitted,
};

struct StmOptions {
  Isolation isolation = Isolation::kSerializableSnapshot;
  // Keys read together on each attempt's first read (WithPrefetch).
  std::vector<std::string> prefetch;
  // Bounds every call of the transaction (reads and commits).
  CallOptions call;
  // Gives up (Aborted "stm: too many conflicts") after this many attempts;
  // 0: no bound, as clientv3.
  int max_attempts = 0;
};

class Stm {
 public:
  // The value of the first of keys that exists in the write set, else of
  // the first key as read (all keys are read in one transaction and added
  // to the read set); "" if absent.
  std::string Get(const std::vector<std::string>& keys);
  std::string Get(std::initializer_list<std::string> keys) {
    return Get(std::vector<std::string>(keys));
  }
  std::string Get(const std::string& key) {
    return Get(std::vector<std::string>{key});
  }
  // The mod revision of key as read (0 if absent).
  int64_t Rev(const std::string& key);
  void Put(const std::string& key, const std::string& value, int64_t lease = 0);
  void Del(const std::string& key);
  // False once a read failed (the attempt is doomed).
  bool ok() const { return error_.ok(); }

 private:
  friend absl::StatusOr<etcdserverpb::TxnResponse> RunStm(
      Client* c, const std::function<absl::Status(Stm&)>& apply,
      const StmOptions& opts);
  Stm(Client* c, const StmOptions& opts) : c_(c), opts_(opts) {}
  const etcdserverpb::RangeResponse* Fetch(const std::vector<std::string>& k);
  void Reset();
  // Commits; an empty optional means a conflict (retry).
  absl::StatusOr<std::optional<etcdserverpb::TxnResponse>> Commit();
  bool SnapshotReads() const {
    return opts_.isolation == Isolation::kSerializableSnapshot ||
           opts_.isolation == Isolation::kSerializable;
  }

  struct Write {
    std::string value;
    etcdserverpb::RequestOp op;
  };
  Client* c_;
  StmOptions opts_;
  std::map<std::string, etcdserverpb::RangeResponse> rset_;
  std::map<std::string, Write> wset_;
  // The snapshot levels' read revision (0 until the first read) and the
  // values a failed commit brought back for the next attempt.
  int64_t read_rev_ = 0;
  std::map<std::string, etcdserverpb::RangeResponse> prefetched_;
  absl::Status error_;
};

absl::StatusOr<etcdserverpb::TxnResponse> RunStm(
    Client* c, const std::function<absl::Status(Stm&)>& apply,
    const StmOptions& opts = {});

}  // namespace detcd::client

#endif  // DETCD_CLIENT_STM_H_
