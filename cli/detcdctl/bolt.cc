#include "cli/detcdctl/bolt.h"

#include <cstring>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

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

namespace {

constexpr uint32_t kWritePageSize = 4096;
constexpr uint16_t kMetaFlag = 0x04;
constexpr uint16_t kFreelistFlag = 0x10;

template <typename T>
void Put(std::string* s, size_t off, T v) {
  std::memcpy(s->data() + off, &v, sizeof v);
}

// Lays out pages after the ones already in *pages.
class TreeWriter {
 public:
  explicit TreeWriter(std::vector<std::string>* pages) : pages_(pages) {}

  // One B+tree over the sorted (key, value, flags) elements; returns its
  // root page id.
  uint64_t Write(const std::vector<std::tuple<std::string, std::string,
                                              uint32_t>>& elems) {
    std::vector<std::pair<std::string, uint64_t>> level;  // first key, page
    size_t i = 0;
    while (i < elems.size()) {
      size_t j = i, bytes = kPageHeader;
      do {
        bytes += kElem + std::get<0>(elems[j]).size() +
                 std::get<1>(elems[j]).size();
        ++j;
      } while (j < elems.size() &&
               bytes + kElem + std::get<0>(elems[j]).size() +
                       std::get<1>(elems[j]).size() <=
                   kWritePageSize);
      std::string page(Round(bytes), '\0');
      uint64_t id = Place(&page, kLeaf, j - i);
      size_t data = kPageHeader + (j - i) * kElem;
      for (size_t k = i; k < j; ++k) {
        const auto& [key, value, flags] = elems[k];
        size_t e = kPageHeader + (k - i) * kElem;
        Put<uint32_t>(&page, e, flags);
        Put<uint32_t>(&page, e + 4, static_cast<uint32_t>(data - e));
        Put<uint32_t>(&page, e + 8, static_cast<uint32_t>(key.size()));
        Put<uint32_t>(&page, e + 12, static_cast<uint32_t>(value.size()));
        std::memcpy(page.data() + data, key.data(), key.size());
        std::memcpy(page.data() + data + key.size(), value.data(),
                    value.size());
        data += key.size() + value.size();
      }
      (*pages_)[id] = std::move(page);
      level.emplace_back(std::get<0>(elems[i]), id);
      i = j;
    }
    while (level.size() > 1) {
      std::vector<std::pair<std::string, uint64_t>> up;
      size_t a = 0;
      while (a < level.size()) {
        size_t b = a, bytes = kPageHeader;
        do {
          bytes += kElem + level[b].first.size();
          ++b;
        } while (b < level.size() &&
                 bytes + kElem + level[b].first.size() <= kWritePageSize);
        std::string page(Round(bytes), '\0');
        uint64_t id = Place(&page, kBranch, b - a);
        size_t data = kPageHeader + (b - a) * kElem;
        for (size_t k = a; k < b; ++k) {
          size_t e = kPageHeader + (k - a) * kElem;
          const std::string& key = level[k].first;
          Put<uint32_t>(&page, e, static_cast<uint32_t>(data - e));
          Put<uint32_t>(&page, e + 4, static_cast<uint32_t>(key.size()));
          Put<uint64_t>(&page, e + 8, level[k].second);
          std::memcpy(page.data() + data, key.data(), key.size());
          data += key.size();
        }
        (*pages_)[id] = std::move(page);
        up.emplace_back(level[a].first, id);
        a = b;
      }
      level = std::move(up);
    }
    return level.empty() ? 0 : level[0].second;
  }

 private:
  static size_t Round(size_t bytes) {
    return (bytes + kWritePageSize - 1) / kWritePageSize * kWritePageSize;
  }

  // Reserves the page ids for a page of page->size() bytes and writes
  // its header.
  uint64_t Place(std::string* page, uint16_t flags, size_t count) {
    uint64_t id = pages_->size();
    uint32_t overflow =
        static_cast<uint32_t>(page->size() / kWritePageSize - 1);
    Put<uint64_t>(page, 0, id);
    Put<uint16_t>(page, 8, flags);
    Put<uint16_t>(page, 10, static_cast<uint16_t>(count));
    Put<uint32_t>(page, 12, overflow);
    pages_->resize(pages_->size() + 1 + overflow);
    return id;
  }

  std::vector<std::string>* pages_;
};

std::string MetaPage(uint64_t id, uint64_t root, uint64_t high,
                     uint64_t txid) {
  std::string page(kWritePageSize, '\0');
  Put<uint64_t>(&page, 0, id);
  Put<uint16_t>(&page, 8, kMetaFlag);
  size_t m = kPageHeader;
  Put<uint32_t>(&page, m, kMagic);
  Put<uint32_t>(&page, m + 4, 2);  // version
  Put<uint32_t>(&page, m + 8, kWritePageSize);
  Put<uint64_t>(&page, m + 16, root);
  Put<uint64_t>(&page, m + 32, 2);  // freelist page
  Put<uint64_t>(&page, m + 40, high);
  Put<uint64_t>(&page, m + 48, txid);
  Put<uint64_t>(&page, m + 56,
                Fnv1a(absl::string_view(page).substr(m, 56)));
  return page;
}

}  // namespace

std::string WriteBolt(
    const std::map<std::string, std::map<std::string, std::string>>& buckets,
    uint64_t txid) {
  std::vector<std::string> pages(3);
  std::string freelist(kWritePageSize, '\0');
  Put<uint64_t>(&freelist, 0, 2);
  Put<uint16_t>(&freelist, 8, kFreelistFlag);
  pages[2] = freelist;
  TreeWriter w(&pages);
  std::vector<std::tuple<std::string, std::string, uint32_t>> root_elems;
  for (const auto& [name, kvs] : buckets) {
    std::string header(16, '\0');
    if (kvs.empty()) {
      // An inline bucket: header with root 0, then an empty leaf page.
      std::string inline_page(kPageHeader, '\0');
      Put<uint16_t>(&inline_page, 8, kLeaf);
      header += inline_page;
    } else {
      std::vector<std::tuple<std::string, std::string, uint32_t>> elems;
      for (const auto& [k, v] : kvs) elems.emplace_back(k, v, 0);
      Put<uint64_t>(&header, 0, w.Write(elems));
    }
    root_elems.emplace_back(name, header, kBucketLeafFlag);
  }
  uint64_t root = 0;
  if (root_elems.empty()) {
    std::string page(kWritePageSize, '\0');
    uint64_t id = pages.size();
    Put<uint64_t>(&page, 0, id);
    Put<uint16_t>(&page, 8, kLeaf);
    pages.push_back(page);
    root = id;
  } else {
    root = w.Write(root_elems);
  }
  uint64_t high = pages.size();
  pages[0] = MetaPage(0, root, high, txid > 0 ? txid - 1 : 0);
  pages[1] = MetaPage(1, root, high, txid);
  std::string out;
  out.reserve(high * kWritePageSize);
  for (const std::string& p : pages) out += p;  // overflow slots are empty
  return out;
}

}  // namespace detcd::ctl
