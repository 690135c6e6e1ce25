#include "shim/bolt.h"

#include <algorithm>
#include <cstring>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/util/check.h"
#include "engine/util/hash.h"

namespace detcd::shim {
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

// bbolt's meta checksum is FNV-1a 64 (Go's hash/fnv New64a).
uint64_t Fnv1a(absl::string_view s) {
  return util::Fnv1a(std::string_view(s.data(), s.size()));
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

absl::StatusOr<bool> BoltMapBucket::Next(absl::string_view* key,
                                         absl::string_view* value) {
  if (it_ == kvs_.end()) return false;
  *key = it_->first;
  *value = it_->second;
  ++it_;
  return true;
}

namespace {

constexpr uint64_t kWritePageSize = 4096;
constexpr uint16_t kMetaFlag = 0x04;
constexpr uint16_t kFreelistFlag = 0x10;
constexpr uint64_t kMaxCount = 0xffff;  // a page's element count is a u16

template <typename T>
void Put(std::string* s, size_t off, T v) {
  std::memcpy(s->data() + off, &v, sizeof v);
}

uint64_t PagesFor(uint64_t bytes) {
  return (bytes + kWritePageSize - 1) / kWritePageSize;
}

// A page of `bytes` (header included) with its header filled in.
std::string NewPage(uint64_t id, uint16_t flags, uint64_t count,
                    uint64_t bytes) {
  std::string page(PagesFor(bytes) * kWritePageSize, '\0');
  Put<uint64_t>(&page, 0, id);
  Put<uint16_t>(&page, 8, flags);
  Put<uint16_t>(&page, 10, static_cast<uint16_t>(count));
  Put<uint32_t>(&page, 12, static_cast<uint32_t>(PagesFor(bytes) - 1));
  return page;
}

std::string MetaPage(uint64_t id, uint64_t root, uint64_t high,
                     uint64_t txid) {
  std::string page = NewPage(id, kMetaFlag, 0, kWritePageSize);
  size_t m = kPageHeader;
  Put<uint32_t>(&page, m, kMagic);
  Put<uint32_t>(&page, m + 4, 2);  // version
  Put<uint32_t>(&page, m + 8, static_cast<uint32_t>(kWritePageSize));
  Put<uint64_t>(&page, m + 16, root);
  Put<uint64_t>(&page, m + 32, 2);  // freelist page
  Put<uint64_t>(&page, m + 40, high);
  Put<uint64_t>(&page, m + 48, txid);
  Put<uint64_t>(&page, m + 56,
                Fnv1a(absl::string_view(page).substr(m, 56)));
  return page;
}

// Greedy packing: an element joins the current page while the page stays
// within kWritePageSize (an element alone may exceed it).
struct Packer {
  uint64_t bytes = 0, count = 0;
  // True if an element of `e` bytes starts a new page.
  bool Add(uint64_t e) {
    if (count > 0 && bytes + e <= kWritePageSize && count < kMaxCount) {
      bytes += e;
      ++count;
      return false;
    }
    bytes = kPageHeader + e;
    count = 1;
    return true;
  }
};

}  // namespace

// One bucket's tree: its leaves (first key, elements, bytes, page id) and
// its branch levels, levels[0] over the leaves.
struct BoltTree {
  struct Page {
    size_t first = 0;  // first child (leaves: first element's ordinal)
    size_t first_leaf = 0;  // the leaf whose first key this page starts with
    uint64_t count = 0, bytes = 0, id = 0;
  };
  std::string name;
  std::unique_ptr<BoltBucket> src;
  uint32_t elem_flags = 0;  // kBucketLeafFlag for the root bucket's
  std::vector<std::string> first_keys;  // of each leaf
  std::vector<Page> leaves;
  std::vector<std::vector<Page>> levels;
  uint64_t root() const {
    if (!levels.empty()) return levels.back()[0].id;
    return leaves.empty() ? 0 : leaves[0].id;
  }
};

struct BoltWriter::Layout {
  std::vector<BoltTree> trees;  // the buckets by name, then the root bucket
  uint64_t txid = 0, high = 0;
  // Where Next is.
  bool meta_out = false;
  size_t tree = 0, level = 0, page = 0;
  bool in_levels = false;
  absl::Status Lay(BoltTree* t, uint64_t* next_id);
  absl::Status EmitLeaf(BoltTree* t, const BoltTree::Page& p,
                        std::string* out);
  static void EmitBranch(const BoltTree& t, size_t level,
                         const BoltTree::Page& p, std::string* out);
};

absl::Status BoltWriter::Layout::Lay(BoltTree* t, uint64_t* next_id) {
  t->src->Rewind();
  Packer pk;
  std::string prev;
  size_t ordinal = 0;
  while (true) {
    absl::string_view k, v;
    absl::StatusOr<bool> more = t->src->Next(&k, &v);
    if (!more.ok()) return more.status();
    if (!*more) break;
    if (k.empty()) return Corrupt(absl::StrCat("empty key in ", t->name));
    if (ordinal > 0 && !(absl::string_view(prev) < k)) {
      return Corrupt(absl::StrCat("keys out of order in ", t->name));
    }
    prev.assign(k.data(), k.size());
    if (pk.Add(kElem + k.size() + v.size())) {
      t->leaves.push_back({ordinal, t->leaves.size(), 0, 0, 0});
      t->first_keys.emplace_back(k);
    }
    t->leaves.back().count = pk.count;
    t->leaves.back().bytes = pk.bytes;
    ++ordinal;
  }
  for (BoltTree::Page& p : t->leaves) {
    p.id = *next_id;
    *next_id += PagesFor(p.bytes);
  }
  const std::vector<BoltTree::Page>* below = &t->leaves;
  while (below->size() > 1) {
    std::vector<BoltTree::Page> up;
    Packer bp;
    for (size_t i = 0; i < below->size(); ++i) {
      const size_t leaf = (*below)[i].first_leaf;
      if (bp.Add(kElem + t->first_keys[leaf].size())) {
        up.push_back({i, leaf, 0, 0, 0});
      }
      up.back().count = bp.count;
      up.back().bytes = bp.bytes;
    }
    for (BoltTree::Page& p : up) {
      p.id = *next_id;
      *next_id += PagesFor(p.bytes);
    }
    t->levels.push_back(std::move(up));
    below = &t->levels.back();
  }
  return absl::OkStatus();
}

absl::Status BoltWriter::Layout::EmitLeaf(BoltTree* t,
                                          const BoltTree::Page& p,
                                          std::string* out) {
  std::string page = NewPage(p.id, kLeaf, p.count, p.bytes);
  size_t data = kPageHeader + p.count * kElem;
  for (uint64_t i = 0; i < p.count; ++i) {
    absl::string_view k, v;
    absl::StatusOr<bool> more = t->src->Next(&k, &v);
    if (!more.ok()) return more.status();
    if (!*more || data + k.size() + v.size() > page.size()) {
      return absl::InternalError(
          absl::StrCat("bolt: bucket ", t->name, " changed while written"));
    }
    size_t e = kPageHeader + i * kElem;
    Put<uint32_t>(&page, e, t->elem_flags);
    Put<uint32_t>(&page, e + 4, static_cast<uint32_t>(data - e));
    Put<uint32_t>(&page, e + 8, static_cast<uint32_t>(k.size()));
    Put<uint32_t>(&page, e + 12, static_cast<uint32_t>(v.size()));
    std::memcpy(page.data() + data, k.data(), k.size());
    std::memcpy(page.data() + data + k.size(), v.data(), v.size());
    data += k.size() + v.size();
  }
  if (data != p.bytes) {
    return absl::InternalError(
        absl::StrCat("bolt: bucket ", t->name, " changed while written"));
  }
  out->append(page);
  return absl::OkStatus();
}

void BoltWriter::Layout::EmitBranch(const BoltTree& t, size_t level,
                                    const BoltTree::Page& p,
                                    std::string* out) {
  const std::vector<BoltTree::Page>& below =
      level == 0 ? t.leaves : t.levels[level - 1];
  std::string page = NewPage(p.id, kBranch, p.count, p.bytes);
  size_t data = kPageHeader + p.count * kElem;
  for (uint64_t i = 0; i < p.count; ++i) {
    const BoltTree::Page& child = below[p.first + i];
    const std::string& key = t.first_keys[child.first_leaf];
    size_t e = kPageHeader + i * kElem;
    Put<uint32_t>(&page, e, static_cast<uint32_t>(data - e));
    Put<uint32_t>(&page, e + 4, static_cast<uint32_t>(key.size()));
    Put<uint64_t>(&page, e + 8, child.id);
    std::memcpy(page.data() + data, key.data(), key.size());
    data += key.size();
  }
  out->append(page);
}

BoltWriter::BoltWriter(std::unique_ptr<Layout> l) : l_(std::move(l)) {}
BoltWriter::BoltWriter(BoltWriter&&) noexcept = default;
BoltWriter& BoltWriter::operator=(BoltWriter&&) noexcept = default;
BoltWriter::~BoltWriter() = default;

absl::StatusOr<BoltWriter> BoltWriter::Make(Buckets buckets, uint64_t txid) {
  auto l = std::make_unique<Layout>();
  l->txid = txid;
  std::sort(buckets.begin(), buckets.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  uint64_t next_id = 3;  // after the meta pages and the freelist
  std::map<std::string, std::string> headers;
  for (auto& [name, src] : buckets) {
    if (name.empty() || headers.count(name) != 0) {
      return Corrupt(absl::StrCat("bad bucket name \"", name, "\""));
    }
    BoltTree t;
    t.name = name;
    t.src = std::move(src);
    if (absl::Status s = l->Lay(&t, &next_id); !s.ok()) return s;
    std::string header(16, '\0');
    if (t.leaves.empty()) {
      // An inline bucket: header with root 0, then an empty leaf page.
      std::string inline_page(kPageHeader, '\0');
      Put<uint16_t>(&inline_page, 8, kLeaf);
      header += inline_page;
    } else {
      Put<uint64_t>(&header, 0, t.root());
    }
    headers.emplace(name, std::move(header));
    l->trees.push_back(std::move(t));
  }
  BoltTree root;
  root.name = "(root)";
  root.elem_flags = kBucketLeafFlag;
  root.src = std::make_unique<BoltMapBucket>(std::move(headers));
  if (absl::Status s = l->Lay(&root, &next_id); !s.ok()) return s;
  if (root.leaves.empty()) {
    // No buckets: the root is one empty leaf.
    root.leaves.push_back({0, 0, 0, kPageHeader, next_id++});
  }
  l->trees.push_back(std::move(root));
  l->high = next_id;
  return BoltWriter(std::move(l));
}

uint64_t BoltWriter::size() const { return l_->high * kWritePageSize; }

absl::StatusOr<bool> BoltWriter::Next(size_t max, std::string* out) {
  Layout& l = *l_;
  const size_t start = out->size();
  if (!l.meta_out) {
    const uint64_t root = l.trees.back().root();
    out->append(MetaPage(0, root, l.high, l.txid > 0 ? l.txid - 1 : 0));
    out->append(MetaPage(1, root, l.high, l.txid));
    out->append(NewPage(2, kFreelistFlag, 0, kWritePageSize));
    l.meta_out = true;
    if (!l.trees.empty()) l.trees[0].src->Rewind();
  }
  // Moves between trees and levels do not count: at the limit, the pages
  // are out exactly when the file is.
  auto full = [&] { return out->size() - start >= max; };
  while (l.tree < l.trees.size()) {
    BoltTree& t = l.trees[l.tree];
    if (!l.in_levels) {
      if (l.page < t.leaves.size()) {
        if (full()) return false;
        if (absl::Status s = l.EmitLeaf(&t, t.leaves[l.page], out); !s.ok()) {
          return s;
        }
        ++l.page;
        continue;
      }
      absl::string_view k, v;
      absl::StatusOr<bool> more = t.src->Next(&k, &v);
      if (!more.ok()) return more.status();
      if (*more) {
        return absl::InternalError(
            absl::StrCat("bolt: bucket ", t.name, " changed while written"));
      }
      l.in_levels = true;
      l.level = 0;
      l.page = 0;
    }
    if (l.level < t.levels.size()) {
      if (l.page < t.levels[l.level].size()) {
        if (full()) return false;
        Layout::EmitBranch(t, l.level, t.levels[l.level][l.page], out);
        ++l.page;
      } else {
        ++l.level;
        l.page = 0;
      }
      continue;
    }
    ++l.tree;
    l.in_levels = false;
    l.page = 0;
    if (l.tree < l.trees.size()) l.trees[l.tree].src->Rewind();
  }
  return true;
}

std::string WriteBolt(
    const std::map<std::string, std::map<std::string, std::string>>& buckets,
    uint64_t txid) {
  BoltWriter::Buckets in;
  for (const auto& [name, kvs] : buckets) {
    in.emplace_back(name, std::make_unique<BoltMapBucket>(kvs));
  }
  absl::StatusOr<BoltWriter> w = BoltWriter::Make(std::move(in), txid);
  DETCD_CHECK_MSG(w.ok(), "bolt: buckets in memory do not lay out");
  std::string out;
  out.reserve(w->size());
  absl::StatusOr<bool> done = w->Next(w->size(), &out);
  DETCD_CHECK_MSG(done.ok() && *done, "bolt: writing from memory failed");
  return out;
}

}  // namespace detcd::shim
