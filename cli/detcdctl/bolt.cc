#include "cli/detcdctl/bolt.h"

#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"

namespace detcd::ctl {
namespace {

constexpr uint32_t kMagic = 0xED0CDAED;
constexpr uint16_t kBranch = 0x01;
constexpr uint16_t kLeaf = 0x02;
constexpr uint32_t kBucketLeafFlag = 0x01;
constexpr size_t kPageHeader = 16;
constexpr size_t kElem = 16;
constexpr int kMaxDepth = 64;

template <typename T>
T Load(absl::string_view s, size_t off) {
  T v;
  std::memcpy(&v, s.data() + off, sizeof v);
  return v;  // bolt files are little endian, as is every host we build on
}

uint64_t Fnv1a(absl::string_view s) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

absl::Status Corrupt(absl::string_view what) {
  return absl::DataLossError(absl::StrCat("bolt: ", what));
}

}  // namespace

bool LooksLikeBolt(absl::string_view data) {
  return data.size() >= kPageHeader + 8 &&
         Load<uint32_t>(data, kPageHeader) == kMagic;
}

absl::StatusOr<BoltReader> BoltReader::Open(std::string data) {
  BoltReader r;
  if (!LooksLikeBolt(data)) return Corrupt("invalid database");
  uint32_t ps = Load<uint32_t>(data, kPageHeader + 8);
  if (ps < 512 || ps > (1u << 24)) return Corrupt("bad page size");
  bool found = false;
  uint64_t best_txid = 0;
  for (int i = 0; i < 2; ++i) {
    size_t off = static_cast<size_t>(i) * ps + kPageHeader;
    if (off + 64 > data.size()) continue;
    absl::string_view meta(data.data() + off, 64);
    if (Load<uint32_t>(meta, 0) != kMagic) continue;
    if (Fnv1a(meta.substr(0, 56)) != Load<uint64_t>(meta, 56)) continue;
    uint64_t txid = Load<uint64_t>(meta, 48);
    if (!found || txid > best_txid) {
      found = true;
      best_txid = txid;
      r.root_ = Load<uint64_t>(meta, 16);
      r.high_ = Load<uint64_t>(meta, 40);
    }
  }
  if (!found) return Corrupt("invalid meta pages");
  r.page_size_ = ps;
  r.data_ = std::move(data);
  return r;
}

int64_t BoltReader::Size() const {
  return static_cast<int64_t>(high_) * page_size_;
}

absl::Status BoltReader::WalkPage(
    absl::string_view page,
    const std::function<void(absl::string_view, absl::string_view, bool)>& fn,
    int depth) const {
  if (page.size() < kPageHeader) return Corrupt("short page");
  uint16_t flags = Load<uint16_t>(page, 8);
  uint16_t count = Load<uint16_t>(page, 10);
  if (kPageHeader + count * kElem > page.size()) return Corrupt("bad page");
  for (uint16_t i = 0; i < count; ++i) {
    size_t e = kPageHeader + i * kElem;
    if (flags & kBranch) {
      uint64_t child = Load<uint64_t>(page, e + 8);
      if (absl::Status s = Walk(child, {}, fn, depth + 1); !s.ok()) return s;
    } else if (flags & kLeaf) {
      uint32_t eflags = Load<uint32_t>(page, e);
      uint32_t pos = Load<uint32_t>(page, e + 4);
      uint32_t ksize = Load<uint32_t>(page, e + 8);
      uint32_t vsize = Load<uint32_t>(page, e + 12);
      size_t k = e + pos;
      if (k + ksize + vsize > page.size()) return Corrupt("bad element");
      fn(page.substr(k, ksize), page.substr(k + ksize, vsize),
         (eflags & kBucketLeafFlag) != 0);
    } else {
      return Corrupt("unexpected page type");
    }
  }
  return absl::OkStatus();
}

absl::Status BoltReader::Walk(
    uint64_t pgid, absl::string_view inline_page,
    const std::function<void(absl::string_view, absl::string_view, bool)>& fn,
    int depth) const {
  if (depth > kMaxDepth) return Corrupt("tree too deep");
  if (!inline_page.empty()) return WalkPage(inline_page, fn, depth);
  size_t off = static_cast<size_t>(pgid) * page_size_;
  if (off + kPageHeader > data_.size()) return Corrupt("page out of range");
  uint32_t overflow = Load<uint32_t>(data_, off + 12);
  size_t len = static_cast<size_t>(overflow + 1) * page_size_;
  if (off + len > data_.size()) len = data_.size() - off;
  return WalkPage(absl::string_view(data_).substr(off, len), fn, depth);
}

absl::Status BoltReader::ForEach(
    const std::function<void(absl::string_view)>& on_bucket,
    const std::function<void(absl::string_view, absl::string_view,
                             absl::string_view)>& fn) const {
  absl::Status inner;
  absl::Status s = Walk(root_, {}, [&](absl::string_view name,
                                       absl::string_view hdr, bool bucket) {
    if (!inner.ok() || !bucket || hdr.size() < 16) return;
    on_bucket(name);
    uint64_t root = Load<uint64_t>(hdr, 0);
    absl::string_view inl = root == 0 ? hdr.substr(16) : absl::string_view();
    inner = Walk(root, inl, [&](absl::string_view k, absl::string_view v,
                                bool) { fn(name, k, v); },
                 1);
  }, 0);
  if (!s.ok()) return s;
  return inner;
}

absl::Status BoltReader::ForEachIn(
    absl::string_view bucket,
    const std::function<void(absl::string_view, absl::string_view)>& on_kv)
    const {
  absl::Status inner;
  bool found = false;
  absl::Status s = Walk(root_, {}, [&](absl::string_view name,
                                       absl::string_view hdr, bool is_bucket) {
    if (!inner.ok() || !is_bucket || name != bucket) return;
    found = true;
    if (hdr.size() < 16) {
      inner = Corrupt("short bucket header");
      return;
    }
    uint64_t root = Load<uint64_t>(hdr, 0);
    absl::string_view inl = root == 0 ? hdr.substr(16) : absl::string_view();
    inner = Walk(root, inl, [&](absl::string_view k, absl::string_view v,
                                bool nested) {
      if (!nested) on_kv(k, v);
    }, 1);
  }, 0);
  if (!s.ok()) return s;
  if (!inner.ok()) return inner;
  if (!found) {
    return absl::NotFoundError(absl::StrCat("bolt: no bucket ", bucket));
  }
  return absl::OkStatus();
}

}  // namespace detcd::ctl
