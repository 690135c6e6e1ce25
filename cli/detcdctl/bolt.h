// A read-only reader of bbolt files, enough for etcdctl's `snapshot status`
// of a snapshot saved from etcd (whose backend is a bolt database): walk
// every bucket's key-values in key order.
//
// Layout (bbolt, little endian): pages of pageSize bytes; page header
// {id u64, flags u16, count u16, overflow u32}; pages 0 and 1 hold the two
// meta pages {magic 0xED0CDAED u32, version u32, pageSize u32, flags u32,
// root bucket {root pgid u64, sequence u64}, freelist u64, pgid u64,
// txid u64, checksum u64 (FNV-1a over the fields before it)}, the valid one
// with the higher txid is current. Branch elements {pos u32, ksize u32,
// pgid u64}; leaf elements {flags u32, pos u32, ksize u32, vsize u32}, key
// and value at the element's address + pos. A leaf value with flag 1 is a
// bucket header {root pgid u64, sequence u64}; root 0 means the bucket's
// single leaf page is stored inline right after the header.
#ifndef DETCD_CLI_DETCDCTL_BOLT_H_
#define DETCD_CLI_DETCDCTL_BOLT_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace detcd::ctl {

// Whether data starts like a bolt file (meta page magic).
bool LooksLikeBolt(absl::string_view data);

// A whole bolt file holding the given top-level buckets (name -> key ->
// value, in byte order; no nested buckets, sequences 0), written as one
// compact tree per bucket on 4096-byte pages with an empty freelist; both
// meta pages name it (txid and txid - 1). bbolt opens it as any file it
// wrote itself (what `migrate` needs to write etcd's backend).
std::string WriteBolt(
    const std::map<std::string, std::map<std::string, std::string>>& buckets,
    uint64_t txid);

class BoltReader {
 public:
  static absl::StatusOr<BoltReader> Open(std::string data);

  // tx.Size(): the high-water page id times the page size.
  int64_t Size() const;
  // For every top-level bucket in byte order: on_bucket(name), then
  // on_kv(name, key, value) for its key-values in key order (etcdctl's
  // Status walk).
  absl::Status ForEach(
      const std::function<void(absl::string_view bucket)>& on_bucket,
      const std::function<void(absl::string_view bucket, absl::string_view key,
                               absl::string_view value)>& on_kv) const;
  // on_kv(key, value) for the key-values of the top-level bucket `bucket`
  // in key order (nested buckets skipped); NotFound if there is none.
  absl::Status ForEachIn(
      absl::string_view bucket,
      const std::function<void(absl::string_view key,
                               absl::string_view value)>& on_kv) const;

 private:
  absl::Status Walk(uint64_t pgid, absl::string_view inline_page,
                    const std::function<void(absl::string_view,
                                             absl::string_view, bool)>& fn,
                    int depth) const;
  absl::Status WalkPage(absl::string_view page,
                        const std::function<void(absl::string_view,
                                                 absl::string_view, bool)>& fn,
                        int depth) const;

  std::string data_;
  uint32_t page_size_ = 4096;
  uint64_t root_ = 0;
  uint64_t high_ = 0;
};

}  // namespace detcd::ctl

#endif  // DETCD_CLI_DETCDCTL_BOLT_H_
