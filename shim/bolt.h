// bbolt files, etcd's backend database format: a reader (enough for
// etcdctl's `snapshot status` of a snapshot saved from etcd, and for
// importing one: walk every bucket's key-values in key order) and a writer
// (what `migrate` rewrites, and the file the Snapshot stream sends:
// shim/etcd_backend.h).
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
#ifndef DETCD_SHIM_BOLT_H_
#define DETCD_SHIM_BOLT_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace detcd::shim {

// Whether data starts like a bolt file (meta page magic).
bool LooksLikeBolt(absl::string_view data);

// One top-level bucket's key-values for BoltWriter, read twice (once to lay
// the pages out, once to fill them): keys strictly increasing, the same
// ones both times.
class BoltBucket {
 public:
  virtual ~BoltBucket() = default;
  // Back to the first key-value.
  virtual void Rewind() = 0;
  // The next key-value (views valid until the next call); false after the
  // last one; an error if the source cannot be read.
  virtual absl::StatusOr<bool> Next(absl::string_view* key,
                                    absl::string_view* value) = 0;
};

// A bucket held in memory.
class BoltMapBucket : public BoltBucket {
 public:
  explicit BoltMapBucket(std::map<std::string, std::string> kvs)
      : kvs_(std::move(kvs)), it_(kvs_.begin()) {}
  void Rewind() override { it_ = kvs_.begin(); }
  absl::StatusOr<bool> Next(absl::string_view* key,
                            absl::string_view* value) override;

 private:
  std::map<std::string, std::string> kvs_;
  std::map<std::string, std::string>::const_iterator it_;
};

// Writes a whole bolt file holding the given top-level buckets (no nested
// buckets, sequences 0) as one compact B+tree per bucket on 4096-byte
// pages, in file order and a few pages at a time, so a large file is never
// held whole: page 0 and 1 the meta pages (txid - 1 and txid, both naming
// the tree), page 2 an empty freelist, then each bucket in name order (its
// leaves in key order, then its branch levels bottom-up), then the root
// bucket's pages. Leaves and branches are filled greedily up to the page
// size; an element larger than that gets a leaf of its own spanning as
// many pages as it needs (bolt's overflow). Every page is reachable and
// none is free, so bbolt opens it as any file it wrote itself and its
// consistency check (tx.Check, which etcdctl's `snapshot status` runs)
// passes. Make reads every bucket once; memory beyond the buckets' own is
// the first key of each leaf page.
class BoltWriter {
 public:
  using Buckets =
      std::vector<std::pair<std::string, std::unique_ptr<BoltBucket>>>;
  // Names must be distinct and non-empty, keys non-empty.
  static absl::StatusOr<BoltWriter> Make(Buckets buckets, uint64_t txid);
  BoltWriter(BoltWriter&&) noexcept;
  BoltWriter& operator=(BoltWriter&&) noexcept;
  ~BoltWriter();

  uint64_t size() const;  // the file's bytes
  // Appends the file's next pages to *out, whole pages, until it grew by at
  // least `max` bytes or the file ends: true once all of it is out. Fails
  // if a bucket reads differently the second time.
  absl::StatusOr<bool> Next(size_t max, std::string* out);

 private:
  struct Layout;
  explicit BoltWriter(std::unique_ptr<Layout> l);
  std::unique_ptr<Layout> l_;
};

// The whole file at once, from buckets in memory (name -> key -> value,
// keys in byte order).
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

}  // namespace detcd::shim

#endif  // DETCD_SHIM_BOLT_H_
