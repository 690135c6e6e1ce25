// The in-memory revisioned store.
//
// Layout (why: every single-key operation is one descent of an ordered
// index plus O(1) work, and range scans walk that index):
//
//   KeyNode  one per key that has kept revisions: the key and its
//            KeyIndex, the kept revisions in increasing order, each
//            flagged put or tombstone (etcd keeps "generations"; a flat
//            list with tombstone flags carries the same information; one
//            revision is packed into the index's single word). The key is
//            alive iff its last revision is a put. Heap-allocated with the
//            key bytes right after it, so its address is stable and the
//            key exists once (the ordered index and every record reach
//            it through the node). While the key is alive,
//            the node also holds its latest revision's data (value, create
//            revision, version, lease), and that revision's 8-byte Record
//            is the node's address: a point read at the latest revision
//            then touches the index and the node only, not the deque.
//            The lease and value sit in the same block, in an area after
//            the key sized for those the key was created with, so a live
//            key is one malloc block; a later, longer payload (or one of 4
//            KiB or more) gets a block of its own. (The data lives in
//            exactly one place, so memory does not grow by a copy of every
//            live value.) When a newer revision or a delete replaces it,
//            the data moves into a RevData its Record points to: one block
//            with the value inside, or the long value's block handed over.
//   ordered  absl::btree_set of KeyNode pointers ordered by their keys,
//            owning the nodes: point operations descend it, range scans
//            and DeleteRange walk it in key order. A slot is 16 bytes:
//            the pointer and the key's first 8 bytes (OrderedSlot), so a
//            comparison reads the key through the node, a cache miss, only
//            when those bytes are equal. (Until 2026-12-07 a hash table
//            key -> node served the point operations beside it: 17 bytes
//            per key, and inserting into it was half a restore's time;
//            mvcc_bench's point read of a million keys took 467 ns with
//            it, 1066 ns by descent, and one of 100k keys 293 against 413
//            ns.)
//   entries  a deque with one Entry per main revision in
//            [base, current_rev] (one more while a write transaction that
//            changed something is open). Main revisions are dense, so a
//            revision (main, sub) is found at entries[main - base][sub].
//            An Entry holds the transaction's records in sub order.
//   old      the records kept below base: after Compact(c) a key keeps its
//            latest revision <= c unless that is a tombstone, and such a
//            record moves into its KeyNode (KeyNode::old) so that the
//            deque can drop every revision <= c. At most one record per key
//            is there, so memory after compaction is bounded by the live
//            data, not by history. `old` itself only lists them in
//            revision order, for Snapshot and Hash.
//
// A write transaction applies its changes to the key index and entries
// directly, at main revision current_rev + 1; current_rev only moves in
// End(). Reads outside the transaction use current_rev and so do not see
// them, the way etcd's reads at a revision ignore newer index entries.
//
// Compact(c) only has to look at keys that have a revision in
// (previous compact, c]: a key whose revisions are all older already has
// just its one kept record there, which stays kept. It is two parts
// (StartCompaction, CompactStep): compact_rev moves at once, and the
// records go later, the oldest entry first: at a record not yet gone, its
// whole key is compacted (CompactKey), and an entry whose records are all
// gone leaves the deque, so base moves up a revision at a time. Until base
// passes compact_rev ("pending"), entries in [base, compact_rev] still
// hold records that are logically gone; ForEachRecord skips them
// (Impl::Kept), reads never reach them (a read at rev >= compact_rev finds
// a key's latest revision at rev, which is at or past its kept one), and
// an image writer is never made while any are left.
//
// Memory (mvcc_bench BM_HeapPerKeyServerLoad: 1M 8-byte keys, 256-byte
// values, txns of 100 puts): 347 heap bytes per key: the node block with
// key and value is 320 (48 of fields), the record 8, the ordered index
// about 19 (10 with 8-byte slots, the node pointer alone). Compacted,
// 367: the records go, and each key's kept one is listed in `old`. (With
// a hash table beside the index: 364; with 80-byte nodes and 16-byte
// records: 395; with the value in a block of its own and each entry's
// growth slack: 450; before records shrank and keys were stored once:
// 572.)
#include "engine/mvcc/kv_store.h"

#include <algorithm>
#include <cstring>
#include <deque>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <utility>

#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/container/inlined_vector.h"
#include "absl/strings/str_cat.h"
#include "absl/types/compare.h"
#include "engine/util/check.h"
#include "engine/util/coding.h"
#include "engine/util/hash.h"
#include "engine/util/probes.h"
#include "engine/wal/crc32c.h"

namespace detcd::mvcc {

namespace {

// etcd's texts. (absl::string_view is not std::string_view in this Abseil
// build, so these stay plain C strings.)
constexpr char kCompactedText[] = "mvcc: required revision has been compacted";
constexpr char kFutureRevText[] =
    "mvcc: required revision is a future revision";

// An empty store is at revision 1; the first write gets revision 2 (etcd).
constexpr int64_t kInitialRev = 1;
constexpr int64_t kNoCompaction = -1;

// Snapshot image framing (see KvStore::Snapshot).
constexpr std::string_view kSnapshotMagic = "dmvc";
// A delta image (KvStore::BeginDelta): the same framing, its own magic.
constexpr std::string_view kDeltaMagic = "dmvd";
constexpr uint8_t kDeltaFormatVersion = 1;
constexpr uint8_t kRecordPut = 0;
constexpr uint8_t kRecordTombstone = 1;

// One kept revision of a key, as the key index lists it.
struct RevRef {
  int64_t main;
  uint32_t sub;
  bool tombstone;
};

// One key's kept revisions, oldest first, in one word, because there is
// one in every key's node and most keys have a single revision:
//   0         none;
//   odd       exactly one, packed: main in bits 18..63, sub in bits 2..17,
//             bit 1 the tombstone flag (a revision that does not fit, a
//             main of 2^46 or more or a sub of 2^16 or more, goes to a
//             block like several);
//   even      a heap block: a Block header, then cap RevRefs.
// Reads return RevRefs by value.
class KeyIndex {
 public:
  KeyIndex() = default;
  KeyIndex(const KeyIndex&) = delete;
  KeyIndex& operator=(const KeyIndex&) = delete;
  ~KeyIndex() { Drop(); }

  bool empty() const { return w_ == 0; }
  size_t size() const {
    if (w_ == 0) return 0;
    return packed() ? 1 : block()->size;
  }
  RevRef operator[](size_t i) const {
    return packed() ? Unpack(w_) : block()->refs()[i];
  }
  RevRef back() const { return (*this)[size() - 1]; }

  void push_back(const RevRef& r) {
    if (w_ == 0 && Fits(r)) {
      w_ = Pack(r);
      return;
    }
    const size_t n = size();
    if (packed() || w_ == 0 || block()->size == block()->cap) {
      DETCD_CHECK(n < std::numeric_limits<uint32_t>::max() / 2);
      Block* b = NewBlock(n == 0 ? 1 : static_cast<uint32_t>(2 * n));
      if (packed()) {
        b->refs()[0] = Unpack(w_);
      } else if (n > 0) {
        std::memcpy(b->refs(), block()->refs(), n * sizeof(RevRef));
      }
      b->size = static_cast<uint32_t>(n);
      Drop();
      w_ = reinterpret_cast<uintptr_t>(b);
    }
    Block* b = block();
    b->refs()[b->size++] = r;
  }
  // Drops the k oldest revisions.
  void erase_front(size_t k) {
    const size_t n = size();
    DETCD_CHECK(k <= n);
    if (k == 0) return;
    if (k == n) {
      Drop();
      return;
    }
    // n >= 2: a block.
    Block* b = block();
    const size_t left = n - k;
    if (left == 1 && Fits(b->refs()[k])) {
      const uintptr_t w = Pack(b->refs()[k]);
      Drop();
      w_ = w;
      return;
    }
    if (left * 4 <= b->cap) {
      // Give back what compaction freed.
      Block* nb = NewBlock(static_cast<uint32_t>(left));
      std::memcpy(nb->refs(), b->refs() + k, left * sizeof(RevRef));
      nb->size = static_cast<uint32_t>(left);
      Drop();
      w_ = reinterpret_cast<uintptr_t>(nb);
      return;
    }
    std::memmove(b->refs(), b->refs() + k, left * sizeof(RevRef));
    b->size = static_cast<uint32_t>(left);
  }

 private:
  struct Block {
    uint32_t size;
    uint32_t cap;
    RevRef* refs() { return reinterpret_cast<RevRef*>(this + 1); }
    const RevRef* refs() const {
      return reinterpret_cast<const RevRef*>(this + 1);
    }
  };
  static_assert(sizeof(Block) % alignof(RevRef) == 0);

  static constexpr int kSubBits = 16;
  static constexpr int kMainShift = 2 + kSubBits;

  static bool Fits(const RevRef& r) {
    return r.main >= 0 && r.main < (int64_t{1} << (64 - kMainShift)) &&
           r.sub < (uint32_t{1} << kSubBits);
  }
  static uintptr_t Pack(const RevRef& r) {
    return (static_cast<uintptr_t>(r.main) << kMainShift) |
           (static_cast<uintptr_t>(r.sub) << 2) | (r.tombstone ? 2 : 0) | 1;
  }
  static RevRef Unpack(uintptr_t w) {
    return RevRef{static_cast<int64_t>(w >> kMainShift),
                  static_cast<uint32_t>((w >> 2) & ((1u << kSubBits) - 1)),
                  (w & 2) != 0};
  }
  static Block* NewBlock(uint32_t cap) {
    void* mem = ::operator new(sizeof(Block) + cap * sizeof(RevRef));
    Block* b = new (mem) Block{0, cap};
    DETCD_CHECK((reinterpret_cast<uintptr_t>(b) & 1) == 0);
    return b;
  }

  bool packed() const { return (w_ & 1) != 0; }
  Block* block() const { return reinterpret_cast<Block*>(w_); }
  void Drop() {
    if (w_ != 0 && !packed()) ::operator delete(block());
    w_ = 0;
  }

  uintptr_t w_ = 0;
};
static_assert(sizeof(KeyIndex) == 8);

struct KeyNode;

// A value at least this long is never copied into a node or a RevData: it
// gets a heap block of its own, which moves (a pointer) when a newer
// revision replaces it. Shorter values live inside those blocks.
constexpr size_t kMaxInlineValueBytes = 4096;

// Reads and writes a pointer kept in an unaligned byte area.
char* LoadPtr(const char* at) {
  char* p;
  std::memcpy(&p, at, sizeof(p));
  return p;
}
void StorePtr(char* at, char* p) { std::memcpy(at, &p, sizeof(p)); }

// The data of a put revision that is not its key's live latest one (a
// replaced or deleted value kept for history): one heap block, the value
// right after the fields, or (long values) a pointer to the value's own
// block there (the value starting heap_offset bytes into that block).
struct RevData {
  KeyNode* node = nullptr;
  int64_t create_revision = 0;
  int64_t version = 0;
  int64_t lease = 0;
  uint32_t size = 0;
  bool heap = false;
  uint8_t heap_offset = 0;

  const char* tail() const { return reinterpret_cast<const char*>(this + 1); }
  char* tail() { return reinterpret_cast<char*>(this + 1); }
  std::string_view value() const {
    return std::string_view(heap ? LoadPtr(tail()) + heap_offset : tail(),
                            size);
  }
  // heap_block: a block from new char[] this takes over, holding the value
  // at heap_offset; or null to copy `value` inline.
  static RevData* Make(std::string_view value, char* heap_block,
                       uint8_t heap_offset) {
    const size_t tail = heap_block != nullptr ? sizeof(char*) : value.size();
    void* mem = ::operator new(sizeof(RevData) + tail);
    RevData* d = new (mem) RevData();
    d->size = static_cast<uint32_t>(value.size());
    d->heap = heap_block != nullptr;
    if (d->heap) {
      StorePtr(d->tail(), heap_block);
      d->heap_offset = heap_offset;
    } else if (!value.empty()) {
      std::memcpy(d->tail(), value.data(), value.size());
    }
    return d;
  }
  static void Free(RevData* d) {
    if (d == nullptr) return;
    if (d->heap) delete[] LoadPtr(d->tail());
    d->~RevData();
    ::operator delete(d);
  }
};

// One revision of one key, one tagged word. Three kinds:
//   latest put  the key's node: the revision's data (value, create
//               revision, version, lease) is in the KeyNode, so a live
//               key's value exists once, and a store of live keys pays 8
//               bytes per revision for its log;
//   older put   the RevData SpillLatest moved the data into when a newer
//               revision or a delete replaced it (it names the node);
//   tombstone   the key's node, flagged.
// Read a record's data through View().
class Record {
 public:
  Record() = default;
  Record(KeyNode* node, bool tombstone)
      : w_(reinterpret_cast<uintptr_t>(node) | (tombstone ? kTombstone : 0)) {
    DETCD_CHECK((reinterpret_cast<uintptr_t>(node) & kFlagMask) == 0);
  }
  ~Record() { RevData::Free(data()); }
  Record(const Record&) = delete;
  Record& operator=(const Record&) = delete;
  Record(Record&& o) noexcept : w_(o.w_) { o.w_ = 0; }
  Record& operator=(Record&& o) noexcept {
    if (this != &o) {
      RevData::Free(data());
      w_ = o.w_;
      o.w_ = 0;
    }
    return *this;
  }

  // The node or data block the word points to, without reading it.
  const void* block() const {
    return reinterpret_cast<const void*>(w_ & ~kFlagMask);
  }
  KeyNode* node() const {
    if (RevData* d = data()) return d->node;
    return reinterpret_cast<KeyNode*>(w_ & ~kFlagMask);
  }
  bool tombstone() const { return (w_ & kTombstone) != 0; }
  // Set only inside Compact: the record was dropped or moved to `old`.
  bool gone() const { return (w_ & kGone) != 0; }
  void set_gone() { w_ |= kGone; }
  bool in_node() const { return (w_ & (kTombstone | kData)) == 0; }
  RevData* data() const {
    return (w_ & kData) != 0 ? reinterpret_cast<RevData*>(w_ & ~kFlagMask)
                             : nullptr;
  }
  // Takes ownership of d (the record must be a put without data).
  void set_data(RevData* d) {
    DETCD_CHECK(in_node());
    const uintptr_t p = reinterpret_cast<uintptr_t>(d);
    DETCD_CHECK((p & kFlagMask) == 0);
    d->node = node();
    w_ = p | kData | (w_ & kGone);
  }

 private:
  static constexpr uintptr_t kTombstone = 1;
  static constexpr uintptr_t kGone = 2;
  static constexpr uintptr_t kData = 4;
  static constexpr uintptr_t kFlagMask = 7;
  static_assert(alignof(RevData) >= 8);

  uintptr_t w_ = 0;  // KeyNode* or RevData*, | flags
};
static_assert(sizeof(Record) == 8);

// One per key with kept revisions, in one heap block: the fields, the key
// bytes, then an area of value_cap bytes (KeyNode::Make) for the latest
// revision's payload: its lease (8 bytes, only when it has one) and its
// value. So the key exists once for the ordered index and every record,
// and a live key whose payload fits the area (the usual case: the area is
// sized for the payload the key was created with) costs one malloc block
// in all. A longer payload has a block of its own, its
// pointer kept at the start of the area (value_cap >= 8).
struct KeyNode {
  // While latest_in_node, the key's latest revision (revs.back()) is a live
  // put whose Record is in_node, and these two fields and the payload are
  // its data.
  int64_t create_revision = 0;
  int64_t version = 0;
  KeyIndex revs;
  // The record of revs[0] when that revision is older than the deque
  // (compaction kept it); node() is null otherwise.
  Record old;
  uint32_t key_size = 0;
  uint32_t value_size = 0;
  uint16_t value_cap = 0;
  bool latest_in_node = false;
  bool has_lease = false;  // the payload starts with the lease

  KeyNode() = default;
  KeyNode(const KeyNode&) = delete;
  KeyNode& operator=(const KeyNode&) = delete;
  ~KeyNode() { FreeValue(); }

  std::string_view key() const {
    return std::string_view(reinterpret_cast<const char*>(this + 1), key_size);
  }
  // Main revision of the latest revision while latest_in_node, else 0.
  int64_t mod() const { return latest_in_node ? revs.back().main : 0; }

  std::string_view value() const {
    return std::string_view(payload() + LeaseBytes(), value_size);
  }
  int64_t lease() const {
    if (!has_lease) return 0;
    int64_t l;
    std::memcpy(&l, payload(), sizeof(l));
    return l;
  }
  void SetValue(std::string_view v, int64_t lease) {
    DETCD_CHECK(v.size() < std::numeric_limits<uint32_t>::max() - 8);
    FreeValue();
    value_size = static_cast<uint32_t>(v.size());
    has_lease = lease != 0;
    char* dst = area();
    if (payload_on_heap()) {
      char* h = new char[PayloadSize()];
      StorePtr(dst, h);
      dst = h;
    }
    if (has_lease) std::memcpy(dst, &lease, sizeof(lease));
    if (!v.empty()) std::memcpy(dst + LeaseBytes(), v.data(), v.size());
  }
  // Moves the value and lease out into a RevData (a long payload's block
  // is handed over, a short value copied) and leaves the node without
  // them.
  RevData* TakeValue() {
    const bool on_heap = payload_on_heap();
    RevData* d = RevData::Make(value(), on_heap ? LoadPtr(area()) : nullptr,
                               static_cast<uint8_t>(LeaseBytes()));
    d->lease = lease();
    value_size = 0;  // the block, if any, is the RevData's now
    has_lease = false;
    return d;
  }

  // payload_hint: the size of the payload (value, plus 8 with a lease) the
  // key is created with.
  static KeyNode* Make(std::string_view key, size_t payload_hint) {
    DETCD_CHECK(key.size() < std::numeric_limits<uint32_t>::max());
    const size_t cap = payload_hint < kMaxInlineValueBytes
                           ? std::max(payload_hint, sizeof(char*))
                           : sizeof(char*);
    void* mem = ::operator new(sizeof(KeyNode) + key.size() + cap);
    KeyNode* n = new (mem) KeyNode();
    n->key_size = static_cast<uint32_t>(key.size());
    n->value_cap = static_cast<uint16_t>(cap);
    if (!key.empty()) {
      std::memcpy(reinterpret_cast<char*>(n + 1), key.data(), key.size());
    }
    return n;
  }
  struct Free {
    void operator()(KeyNode* n) const {
      n->~KeyNode();
      ::operator delete(n);
    }
  };

 private:
  size_t LeaseBytes() const { return has_lease ? sizeof(int64_t) : 0; }
  size_t PayloadSize() const { return value_size + LeaseBytes(); }
  bool payload_on_heap() const { return PayloadSize() > value_cap; }
  char* area() { return reinterpret_cast<char*>(this + 1) + key_size; }
  const char* area() const {
    return reinterpret_cast<const char*>(this + 1) + key_size;
  }
  const char* payload() const {
    const char* a = area();
    return payload_on_heap() ? LoadPtr(a) : a;
  }
  void FreeValue() {
    if (payload_on_heap()) delete[] LoadPtr(area());
    value_size = 0;
    has_lease = false;
  }
};
static_assert(sizeof(KeyNode) == 48);
static_assert(kMaxInlineValueBytes <= std::numeric_limits<uint16_t>::max());

// The payload hint for a key created with this value and lease.
size_t PayloadHint(std::string_view value, int64_t lease) {
  return value.size() + (lease != 0 ? sizeof(int64_t) : 0);
}

// A record's data, wherever it lives.
struct RecView {
  std::string_view value;
  int64_t create_revision;
  int64_t version;
  int64_t lease;
  bool tombstone;
};

RecView View(const Record& r) {
  if (r.in_node()) {
    const KeyNode& n = *r.node();
    return RecView{n.value(), n.create_revision, n.version, n.lease(), false};
  }
  if (r.tombstone()) return RecView{{}, 0, 0, 0, true};
  const RevData& d = *r.data();
  return RecView{d.value(), d.create_revision, d.version, d.lease, false};
}

// What EncodeRecord appends for a record of this revision, key length and
// data, without encoding it.
size_t RecordImageBytes(int64_t main, uint32_t sub, size_t key,
                        const RecView& r) {
  using coding::VarintLength;
  const size_t n = VarintLength(static_cast<uint64_t>(main)) +
                   VarintLength(sub) + 1 + VarintLength(key) + key;
  if (r.tombstone) return n;
  return n + VarintLength(r.value.size()) + r.value.size() +
         VarintLength(static_cast<uint64_t>(r.create_revision)) +
         VarintLength(static_cast<uint64_t>(r.version)) +
         VarintLength(static_cast<uint64_t>(r.lease));
}

size_t RecordImageBytes(int64_t main, uint32_t sub, const Record& rec) {
  return RecordImageBytes(main, sub, rec.node()->key().size(), View(rec));
}

// A walk over records in revision order (the image writer's) jumps around
// the heap: each record's block, the node a data block names (for the
// key) and the value are cache misses, one after another. The walk asks
// for them ahead, in two stages: the block first, and once it has
// arrived the node and the value's lines.
void PrefetchBlock(const Record& r) { __builtin_prefetch(r.block()); }

void PrefetchData(const Record& r) {
  if (r.tombstone()) return __builtin_prefetch(r.block());
  const RecView v = View(r);
  constexpr size_t kMaxLines = 16;
  for (size_t off = 0; off < v.value.size() && off < kMaxLines * 64;
       off += 64) {
    __builtin_prefetch(v.value.data() + off);
  }
  if (const RevData* d = r.data()) __builtin_prefetch(d->node);
}

// A key's first 8 bytes as a big-endian number, zero-padded: when two
// keys' heads differ, they order the keys (a shorter key is a prefix of a
// longer one up to its end, and its padding is no greater than the longer
// key's byte there); when they are equal the keys still may not be.
uint64_t KeyHead(std::string_view k) {
  unsigned char b[8] = {};
  std::memcpy(b, k.data(), std::min<size_t>(k.size(), 8));
  uint64_t h = 0;
  for (unsigned char c : b) h = h << 8 | c;
  return h;
}

// A slot of the ordered index: the node and its key's head, so that a
// descent compares most keys without reading their nodes (each a cache
// miss on a large store: ~13% of a 3-member put run's CPU went into those
// comparisons when the slot was the node pointer alone).
struct OrderedSlot {
  uint64_t head;
  KeyNode* node;
};

// A key looked up in the ordered index, its head computed once.
struct KeyProbe {
  explicit KeyProbe(std::string_view k) : key(k), head(KeyHead(k)) {}
  std::string_view key;
  uint64_t head;
};

// Orders the ordered index's slots by key (heads first); also compares a
// slot with a probe, so lookups need no node.
struct SlotLess {
  using is_transparent = void;
  static std::string_view K(const OrderedSlot& s) { return s.node->key(); }
  static std::string_view K(const KeyProbe& p) { return p.key; }
  template <typename A, typename B>
  absl::weak_ordering operator()(const A& a, const B& b) const {
    if (a.head != b.head) {
      return a.head < b.head ? absl::weak_ordering::less
                             : absl::weak_ordering::greater;
    }
    const int c = K(a).compare(K(b));
    if (c < 0) return absl::weak_ordering::less;
    if (c > 0) return absl::weak_ordering::greater;
    return absl::weak_ordering::equivalent;
  }
};

// The changes of one main revision, by sub revision (two fit in the
// vector's own 24 bytes).
using Entry = absl::InlinedVector<Record, 2>;

// size_bytes() approximates the heap the store holds: value bytes per
// kept revision plus its bookkeeping (the deque slot, the RevRef), and key
// bytes once per key plus the key's node, ordered-index slot and the
// hash slot it had then. The overheads are what mvcc_bench's heap_per_key
// measured for small keys and values before records shrank to 16 bytes and keys
// were stored once (2026-12); they are kept, not re-measured, because the
// figure is the member's reported db size and drives the space quota,
// which the simulator's runs and clients observe.
constexpr int64_t kRecordOverheadBytes = 112;
constexpr int64_t kKeyOverheadBytes = 176;

int64_t RecordBytes(const Record& r) {
  const size_t value = View(r).value.size();
  return static_cast<int64_t>(value) + kRecordOverheadBytes;
}
int64_t KeyBytes(std::string_view key) {
  return static_cast<int64_t>(key.size()) + kKeyOverheadBytes;
}

bool IsGteEnd(std::string_view end) {
  return end.size() == 1 && end[0] == '\0';
}

KeyValue MakeKv(const KeyNode& n, const RecView& r, int64_t main,
                bool keys_only) {
  KeyValue kv;
  kv.key = n.key();
  kv.create_revision = r.create_revision;
  kv.mod_revision = main;
  kv.version = r.version;
  if (!keys_only) kv.value = r.value;
  kv.lease = r.lease;
  return kv;
}
KeyValue MakeKv(const Record& r, int64_t main, bool keys_only) {
  return MakeKv(*r.node(), View(r), main, keys_only);
}
// The latest revision of a live key, from its node.
KeyValue MakeLatestKv(const KeyNode& n, bool keys_only) {
  KeyValue kv;
  kv.key = n.key();
  kv.create_revision = n.create_revision;
  kv.mod_revision = n.mod();
  kv.version = n.version;
  if (!keys_only) kv.value = n.value();
  kv.lease = n.lease();
  return kv;
}

// Index of the key's last revision with main <= rev, or -1.
int LastAtOrBefore(const KeyIndex& ki, int64_t rev) {
  const size_t n = ki.size();
  if (n > 0 && ki[n - 1].main <= rev) return static_cast<int>(n) - 1;
  size_t lo = 0, hi = n;  // the first revision with main > rev
  while (lo < hi) {
    const size_t mid = lo + (hi - lo) / 2;
    if (ki[mid].main <= rev) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return static_cast<int>(lo) - 1;
}

// Index of the key's last revision strictly before (main, sub), or -1.
int LastBefore(const KeyIndex& ki, int64_t main, uint32_t sub) {
  const Revision r{main, sub};
  size_t lo = 0, hi = ki.size();  // the first revision >= r
  while (lo < hi) {
    const size_t mid = lo + (hi - lo) / 2;
    const RevRef ref = ki[mid];
    if (Revision{ref.main, ref.sub} < r) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return static_cast<int>(lo) - 1;
}

void EncodeRecord(std::string* out, int64_t main, uint32_t sub,
                  const Record& rec) {
  const RecView r = View(rec);
  coding::PutVarint64(out, static_cast<uint64_t>(main));
  coding::PutVarint64(out, sub);
  out->push_back(
      static_cast<char>(r.tombstone ? kRecordTombstone : kRecordPut));
  coding::PutLengthPrefixed(out, rec.node()->key());
  if (r.tombstone) return;
  coding::PutLengthPrefixed(out, r.value);
  coding::PutVarint64(out, static_cast<uint64_t>(r.create_revision));
  coding::PutVarint64(out, static_cast<uint64_t>(r.version));
  coding::PutVarint64(out, static_cast<uint64_t>(r.lease));
}

// Reads a length-prefixed string as a view into the reader's input (no
// copy: Restore decodes keys and values straight into the store).
bool GetView(coding::Reader* in, std::string_view* out) {
  uint64_t len = 0;
  if (!in->GetVarint64(&len) || len > in->remaining()) return false;
  *out = in->rest().substr(0, len);
  *in = coding::Reader(in->rest().substr(len));
  return true;
}

uint32_t Fold32(uint64_t h) { return static_cast<uint32_t>(h ^ (h >> 32)); }

// HashKV's step per record (HashByRev, HashWriter): like etcd's it covers
// (compact, rev] plus the revisions the compaction kept; the function is
// FNV-1a-64 over our record encoding (folded to 32 bits at the end), not
// etcd's CRC32C over bbolt bytes. Returns the record's encoded size.
size_t HashRecord(uint64_t* h, std::string* buf, int64_t main, uint32_t sub,
                  const Record& r) {
  buf->clear();
  EncodeRecord(buf, main, sub, r);
  *h = util::Fnv1a(*buf, *h);
  return buf->size();
}

}  // namespace

absl::Status ErrCompacted() { return absl::OutOfRangeError(kCompactedText); }
absl::Status ErrFutureRev() { return absl::OutOfRangeError(kFutureRevText); }
bool IsErrCompacted(const absl::Status& s) {
  return s.code() == absl::StatusCode::kOutOfRange &&
         s.message() == kCompactedText;
}
bool IsErrFutureRev(const absl::Status& s) {
  return s.code() == absl::StatusCode::kOutOfRange &&
         s.message() == kFutureRevText;
}

struct KvStore::Impl {
  int64_t current_rev = kInitialRev;
  int64_t compact_rev = kNoCompaction;
  bool txn_open = false;

  // Owns the nodes (freed by EraseKey and ~Impl).
  absl::btree_set<OrderedSlot, SlotLess> ordered;
  // Main revision of entries.front(); revisions below it live in `old`.
  int64_t base = kInitialRev + 1;
  std::deque<Entry> entries;
  absl::btree_map<Revision, KeyNode*> old;

  // Statistics, kept up to date by every change (an open transaction's
  // changes included).
  size_t live_keys = 0;
  size_t revisions = 0;
  int64_t bytes = 0;
  // The committed records' share of the image (RecordImageBytes summed)
  // and their number, so that an image's size is known when its writer is
  // made; an open transaction's records are counted apart until End().
  uint64_t image_bytes = 0;
  uint64_t image_records = 0;
  uint64_t txn_image_bytes = 0;
  uint64_t txn_image_records = 0;

  void AddToImage(int64_t main, uint32_t sub, const Record& r) {
    txn_image_bytes += RecordImageBytes(main, sub, r);
    ++txn_image_records;
  }
  void TakeFromImage(const RevRef& ref, const Record& r) {
    image_bytes -= RecordImageBytes(ref.main, ref.sub, r);
    --image_records;
  }

  Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  ~Impl() {
    // Records only point at nodes; drop them first, then the nodes.
    entries.clear();
    old.clear();
    for (const OrderedSlot& s : ordered) KeyNode::Free()(s.node);
  }

  // Whether revision ref of key node n is the one its node keeps (old).
  static bool IsOld(const KeyNode& n, const RevRef& ref) {
    if (n.old.node() == nullptr) return false;
    const RevRef first = n.revs[0];
    return first.main == ref.main && first.sub == ref.sub;
  }

  // The record of revision ref of key node n: in the node below base, and
  // also at or above it while a compaction is pending (its steps move a
  // key's kept record into the node before the entry leaves the deque).
  const Record& Get(const KeyNode& n, const RevRef& ref) const {
    if (ref.main >= base && (ref.main > compact_rev || !IsOld(n, ref))) {
      size_t i = static_cast<size_t>(ref.main - base);
      DETCD_CHECK(i < entries.size() && ref.sub < entries[i].size());
      const Record& r = entries[i][ref.sub];
      DETCD_CHECK_MSG(!r.gone(), "key index names a dropped revision");
      return r;
    }
    DETCD_CHECK_MSG(IsOld(n, ref), "key index names a dropped revision");
    return n.old;
  }

  Record& GetMut(KeyNode& n, const RevRef& ref) {
    return const_cast<Record&>(Get(n, ref));
  }

  // Moves the data of key node n's latest revision from the node back into
  // its Record, because a newer revision (or a tombstone) is about to
  // replace it. A no-op when the key is not alive.
  void SpillLatest(KeyNode* n) {
    if (!n->latest_in_node) return;
    Record& r = GetMut(*n, n->revs.back());
    DETCD_CHECK(r.in_node());
    RevData* d = n->TakeValue();
    d->create_revision = n->create_revision;
    d->version = n->version;
    r.set_data(d);
    n->latest_in_node = false;
  }
  // Makes key node n's new latest revision (a put, already revs.back(),
  // whose Record is in_node) hold this data, in the node.
  static void SetLatest(KeyNode* n, std::string_view value,
                        int64_t create_revision, int64_t version,
                        int64_t lease) {
    DETCD_CHECK(!n->latest_in_node && !n->revs.empty() &&
                !n->revs.back().tombstone);
    n->SetValue(value, lease);
    n->create_revision = create_revision;
    n->version = version;
    n->latest_in_node = true;
  }

  KeyNode* FindKey(std::string_view key) const {
    auto it = ordered.find(KeyProbe(key));
    return it == ordered.end() ? nullptr : it->node;
  }
  // payload_hint: PayloadHint of the value and lease a new key is created
  // with (its node's area).
  KeyNode* FindOrAddKey(std::string_view key, size_t payload_hint) {
    const KeyProbe probe(key);
    // Keys often arrive in increasing order (sequential fills, a restore
    // of such a store): a key after the last one needs no descent.
    auto at = ordered.end();
    if (!ordered.empty() &&
        SlotLess()(*std::prev(at), probe) != absl::weak_ordering::less) {
      at = ordered.lower_bound(probe);
      if (at != ordered.end() && at->node->key() == key) return at->node;
    }
    std::unique_ptr<KeyNode, KeyNode::Free> node(
        KeyNode::Make(key, payload_hint));
    const size_t before = ordered.size();
    ordered.insert(at, OrderedSlot{probe.head, node.get()});
    DETCD_CHECK(ordered.size() == before + 1);
    KeyNode* n = node.release();
    bytes += KeyBytes(key);
    return n;
  }
  // Forgets a key that has no kept revisions left (frees its node).
  void EraseKey(KeyNode* n) {
    DETCD_CHECK(n->revs.empty());
    bytes -= KeyBytes(n->key());
    auto it = ordered.find(KeyProbe(n->key()));
    DETCD_CHECK(it != ordered.end() && it->node == n);
    ordered.erase(it);
    KeyNode::Free()(n);
  }

  // The range read shared by KvStore::Range and WriteTxn::Range; cur is
  // the reader's current revision.
  absl::StatusOr<RangeResult> RangeAt(std::string_view key,
                                      std::string_view end,
                                      const RangeOptions& o,
                                      int64_t cur) const {
    int64_t rev = o.rev;
    if (rev > cur) return ErrFutureRev();
    if (rev <= 0) rev = cur;
    if (rev < compact_rev) return ErrCompacted();
    RangeResult res;
    res.rev = cur;  // etcd reports the current revision, not the read one
    const size_t limit = o.limit > 0 ? static_cast<size_t>(o.limit)
                                     : std::numeric_limits<size_t>::max();
    // With `before` and a limit: the best `limit` so far, a heap with the
    // worst on top, copied out at the end.
    struct Pick {
      KeyValueView view;
      const KeyNode* node;
      int index;  // into node->revs; -1: the node's latest
    };
    const bool top = o.before && o.limit > 0 && !o.count_only;
    std::vector<Pick> picks;
    auto worse = [&o](const Pick& a, const Pick& b) {
      return o.before(a.view, b.view);
    };
    auto offer = [&](const KeyValueView& v, const KeyNode& n, int index) {
      if (o.keep && !o.keep(v)) return;
      ++res.kept;
      if (!top) {
        if (res.kvs.size() >= limit) return;
        res.kvs.push_back(index < 0 ? MakeLatestKv(n, o.keys_only)
                                    : MakeKv(Get(n, n.revs[index]),
                                             n.revs[index].main, o.keys_only));
        return;
      }
      if (picks.size() < limit) {
        picks.push_back(Pick{v, &n, index});
        std::push_heap(picks.begin(), picks.end(), worse);
      } else if (o.before(v, picks.front().view)) {
        std::pop_heap(picks.begin(), picks.end(), worse);
        picks.back() = Pick{v, &n, index};
        std::push_heap(picks.begin(), picks.end(), worse);
      }
    };
    auto visit = [&](const KeyNode& n) {
      if (n.latest_in_node && n.mod() <= rev) {
        // The common case, a read of the latest revision: the node has it.
        ++res.count;
        if (o.count_only) return;
        if (!o.keep && !top) {
          if (res.kvs.size() >= limit) return;
          res.kvs.push_back(MakeLatestKv(n, o.keys_only));
          return;
        }
        offer(KeyValueView{n.key(), n.create_revision, n.mod(), n.version,
                           n.value(), n.lease()},
              n, -1);
        return;
      }
      const KeyIndex& ki = n.revs;
      int i = LastAtOrBefore(ki, rev);
      if (i < 0 || ki[i].tombstone) return;
      ++res.count;
      if (o.count_only) return;
      if (!o.keep && !top) {
        if (res.kvs.size() >= limit) return;
        res.kvs.push_back(MakeKv(Get(n, ki[i]), ki[i].main, o.keys_only));
        return;
      }
      const RecView r = View(Get(n, ki[i]));
      offer(KeyValueView{n.key(), r.create_revision, ki[i].main, r.version,
                         r.value, r.lease},
            n, i);
    };
    // The picks, best first, copied into kvs.
    auto take_picks = [&] {
      if (!top) return;
      std::sort_heap(picks.begin(), picks.end(), worse);
      res.kvs.reserve(picks.size());
      for (const Pick& p : picks) {
        const KeyNode& n = *p.node;
        res.kvs.push_back(p.index < 0
                              ? MakeLatestKv(n, o.keys_only)
                              : MakeKv(Get(n, n.revs[p.index]),
                                       n.revs[p.index].main, o.keys_only));
      }
    };
    if (end.empty()) {
      if (const KeyNode* n = FindKey(key)) visit(*n);
      take_picks();
      return res;
    }
    const bool to_last = IsGteEnd(end);
    if (!to_last && end <= key) return res;
    size_t left = o.max_keys > 0 ? o.max_keys : ordered.size() + 1;
    for (auto it = ordered.lower_bound(KeyProbe(key)); it != ordered.end();
         ++it) {
      if (!to_last && it->node->key() >= end) break;
      if (left-- == 0) {
        res.resume = std::string(it->node->key());
        break;
      }
      visit(*it->node);
    }
    take_picks();
    return res;
  }

  // Some of the records a compaction covers are still in the deque.
  bool pending() const { return base <= compact_rev; }
  // The compaction's cursor: entries.front() (main revision base) has its
  // records before compact_sub gone.
  size_t compact_sub = 0;

  // Whether the committed record (main, sub) of key node n is logically
  // there: not one that the pending compaction drops.
  bool Kept(const KeyNode& n, int64_t main, uint32_t sub) const {
    if (!pending() || main > compact_rev) return true;
    const int i = LastAtOrBefore(n.revs, compact_rev);
    DETCD_CHECK(i >= 0);
    const RevRef r = n.revs[i];
    return r.main == main && r.sub == sub && !r.tombstone;
  }

  // Removes the records of the pending compaction, oldest first, visiting
  // about `budget` records (one at least, and a key's whole history once
  // started); returns the revisions it dropped. Leaves pending() false
  // once done.
  size_t CompactSome(size_t budget) {
    const size_t before = revisions;
    size_t spent = 0;
    while (pending()) {
      Entry& e = entries.front();
      for (; compact_sub < e.size(); ++compact_sub) {
        if (spent >= budget) return before - revisions;
        Record& r = e[compact_sub];
        ++spent;
        if (r.gone()) continue;
        spent += CompactKey(r.node(), compact_rev);
        DETCD_CHECK(r.gone());
      }
      entries.pop_front();
      ++base;
      compact_sub = 0;
    }
    return before - revisions;
  }

  // Drops the revisions of key node n that a compaction at c removes;
  // called (from CompactSome) at the key's oldest record in the deque
  // while that is <= c, so once per key touched since the previous
  // compaction. Returns the revisions it dropped.
  size_t CompactKey(KeyNode* n, int64_t c) {
    KeyIndex& ki = n->revs;
    int last = LastAtOrBefore(ki, c);
    DETCD_CHECK(last >= 0);
    const int keep_from = ki[last].tombstone ? last + 1 : last;
    for (int j = 0; j < keep_from; ++j) {
      const RevRef ref = ki[j];
      if (j == 0 && IsOld(*n, ref)) {
        bytes -= RecordBytes(n->old);
        TakeFromImage(ref, n->old);
        DETCD_CHECK(old.erase(Revision{ref.main, ref.sub}) == 1);
        n->old = Record();
      } else {
        DETCD_CHECK(ref.main >= base);
        Record& r = entries[static_cast<size_t>(ref.main - base)][ref.sub];
        bytes -= RecordBytes(r);
        TakeFromImage(ref, r);
        r.set_gone();
      }
      --revisions;
    }
    if (keep_from == last && !IsOld(*n, ki[last])) {
      // The kept record outlives its deque entry.
      const RevRef ref = ki[last];
      DETCD_CHECK(ref.main >= base);
      Record& r = entries[static_cast<size_t>(ref.main - base)][ref.sub];
      DETCD_CHECK(n->old.node() == nullptr);
      n->old = std::move(r);
      old.emplace(Revision{ref.main, ref.sub}, n);
      r.set_gone();
    }
    ki.erase_front(static_cast<size_t>(keep_from));
    if (ki.empty()) EraseKey(n);
    return static_cast<size_t>(keep_from);
  }

  // Calls f(main, sub, record) for every committed record in revision
  // order (not those a pending compaction drops).
  // (While one is pending, `old` also holds records at or above base, the
  // kept ones its steps moved out of their entries: they go in their
  // places.)
  template <typename F>
  void ForEachRecord(int64_t up_to, F&& f) const {
    auto it = old.begin();
    for (; it != old.end() && it->first.main < base; ++it) {
      const Revision rev = it->first;
      if (rev.main > up_to) return;
      const auto sub = static_cast<uint32_t>(rev.sub);
      if (Kept(*it->second, rev.main, sub)) f(rev.main, sub, it->second->old);
    }
    for (int64_t m = base; m <= up_to; ++m) {
      const Entry& e = entries[static_cast<size_t>(m - base)];
      for (size_t s = 0; s < e.size(); ++s) {
        const auto sub = static_cast<uint32_t>(s);
        if (it != old.end() &&
            it->first == Revision{m, static_cast<int64_t>(s)}) {
          const KeyNode& n = *it->second;
          ++it;
          if (Kept(n, m, sub)) f(m, sub, n.old);
          continue;
        }
        if (e[s].gone() || !Kept(*e[s].node(), m, sub)) continue;
        f(m, sub, e[s]);
      }
    }
  }
};

KvStore::KvStore() : impl_(new Impl) {}
KvStore::~KvStore() { delete impl_; }

int64_t KvStore::Rev() const { return impl_->current_rev; }
int64_t KvStore::CompactRev() const { return impl_->compact_rev; }

absl::StatusOr<RangeResult> KvStore::Range(std::string_view key,
                                           std::string_view end,
                                           const RangeOptions& o) const {
  return impl_->RangeAt(key, end, o, impl_->current_rev);
}

absl::Status KvStore::Changes(int64_t from, int64_t to, size_t max_events,
                              std::vector<Event>* out, int64_t* next) const {
  DETCD_CHECK(out != nullptr && next != nullptr);
  const Impl& st = *impl_;
  if (from <= st.compact_rev) return ErrCompacted();
  // Revisions past the committed one do not exist (yet).
  const int64_t last = std::min(to, st.current_rev);
  int64_t m = std::max(from, st.base);
  for (; m <= last; ++m) {
    const Entry& e = st.entries[static_cast<size_t>(m - st.base)];
    for (size_t s = 0; s < e.size(); ++s) {
      const Record& r = e[s];
      Event ev;
      if (r.tombstone()) {
        ev.type = Event::kDelete;
        ev.kv.key = r.node()->key();
        ev.kv.mod_revision = m;
      } else {
        ev.type = Event::kPut;
        ev.kv = MakeKv(r, m, /*keys_only=*/false);
      }
      const KeyIndex& ki = r.node()->revs;
      int p = LastBefore(ki, m, static_cast<uint32_t>(s));
      // The key's previous revision is kept: it is either newer than the
      // compaction or the key's latest at it (a dropped tombstone means
      // there was no previous value, which is what we report).
      if (p >= 0 && !ki[p].tombstone) {
        ev.has_prev_kv = true;
        ev.prev_kv = MakeKv(st.Get(*r.node(), ki[p]), ki[p].main, false);
      }
      out->push_back(std::move(ev));
    }
    if (out->size() >= max_events) {
      *next = m + 1;
      return absl::OkStatus();
    }
  }
  *next = std::max(from, last + 1);
  return absl::OkStatus();
}

KvStore::WriteTxn::WriteTxn(KvStore* s) : s_(s) {}

KvStore::WriteTxn KvStore::Write() {
  DETCD_CHECK_MSG(!impl_->txn_open, "one write transaction at a time");
  impl_->txn_open = true;
  return WriteTxn(this);
}

int64_t KvStore::WriteTxn::Rev() const {
  return s_->impl_->current_rev + (events_.empty() ? 0 : 1);
}

absl::StatusOr<RangeResult> KvStore::WriteTxn::Range(
    std::string_view key, std::string_view end, const RangeOptions& o) const {
  DETCD_CHECK(!ended_);
  return s_->impl_->RangeAt(key, end, o, Rev());
}

std::optional<KeyValue> KvStore::WriteTxn::Put(std::string_view key,
                                               std::string_view value,
                                               int64_t lease) {
  const KeyValue* prev = PutRef(key, value, lease);
  if (prev == nullptr) return std::nullopt;
  return *prev;
}

const KeyValue* KvStore::WriteTxn::PutRef(std::string_view key,
                                          std::string_view value,
                                          int64_t lease) {
  DETCD_CHECK(!ended_);
  Impl& st = *s_->impl_;
  const int64_t main = st.current_rev + 1;
  DETCD_CHECK(events_.size() < std::numeric_limits<uint32_t>::max());
  const uint32_t sub = static_cast<uint32_t>(events_.size());
  if (sub == 0) {
    DETCD_CHECK(st.base + static_cast<int64_t>(st.entries.size()) == main);
    st.entries.emplace_back();
  }
  KeyNode* node = st.FindOrAddKey(key, PayloadHint(value, lease));
  KeyIndex& ki = node->revs;

  Event& ev = events_.emplace_back();
  ev.type = Event::kPut;
  int64_t create_revision = main;
  int64_t version = 1;
  if (node->latest_in_node) {
    // The key is alive; its latest revision's data is in the node. Move
    // it back into its record before the entry may grow (and move it).
    DETCD_CHECK(!ki.empty() && !ki.back().tombstone);
    create_revision = node->create_revision;
    version = node->version + 1;
    ev.has_prev_kv = true;
    ev.prev_kv = MakeLatestKv(*node, /*keys_only=*/false);
    st.SpillLatest(node);
  } else {
    DETCD_CHECK(ki.empty() || ki.back().tombstone);
    ++st.live_keys;
  }
  ki.push_back(RevRef{main, sub, false});
  Impl::SetLatest(node, value, create_revision, version, lease);
  Record rec(node, /*tombstone=*/false);

  ev.kv.key = node->key();
  ev.kv.create_revision = create_revision;
  ev.kv.mod_revision = main;
  ev.kv.version = version;
  ev.kv.value = value;
  ev.kv.lease = lease;

  st.bytes += RecordBytes(rec);
  st.AddToImage(main, sub, rec);
  ++st.revisions;
  st.entries.back().push_back(std::move(rec));

  return ev.has_prev_kv ? &ev.prev_kv : nullptr;
}

std::vector<KeyValue> KvStore::WriteTxn::DeleteRange(std::string_view key,
                                                     std::string_view end) {
  DETCD_CHECK(!ended_);
  Impl& st = *s_->impl_;
  std::vector<KeyValue> deleted;
  const int64_t main = st.current_rev + 1;

  // Every index entry a writer sees is at or below its own revision, so
  // "alive" is simply "last revision is a put".
  auto del = [&](KeyNode* n) {
    KeyIndex& ki = n->revs;
    if (ki.empty() || ki.back().tombstone) return;
    DETCD_CHECK(events_.size() < std::numeric_limits<uint32_t>::max());
    const uint32_t sub = static_cast<uint32_t>(events_.size());
    if (sub == 0) {
      DETCD_CHECK(st.base + static_cast<int64_t>(st.entries.size()) == main);
      st.entries.emplace_back();
    }
    Event& ev = events_.emplace_back();
    ev.type = Event::kDelete;
    ev.has_prev_kv = true;
    DETCD_CHECK(n->latest_in_node);
    ev.prev_kv = MakeLatestKv(*n, /*keys_only=*/false);
    st.SpillLatest(n);
    ev.kv.key = n->key();
    ev.kv.mod_revision = main;
    deleted.push_back(ev.prev_kv);

    Record rec(n, /*tombstone=*/true);
    st.bytes += RecordBytes(rec);
    st.AddToImage(main, sub, rec);
    ++st.revisions;
    --st.live_keys;
    st.entries.back().push_back(std::move(rec));
    ki.push_back(RevRef{main, sub, true});
  };

  if (end.empty()) {
    if (KeyNode* n = st.FindKey(key)) del(n);
    return deleted;
  }
  const bool to_last = IsGteEnd(end);
  if (!to_last && end <= key) return deleted;
  for (auto it = st.ordered.lower_bound(KeyProbe(key));
       it != st.ordered.end(); ++it) {
    if (!to_last && it->node->key() >= end) break;
    del(it->node);
  }
  return deleted;
}

std::vector<Event> KvStore::WriteTxn::End() {
  DETCD_CHECK_MSG(!ended_, "WriteTxn::End called twice");
  Impl& st = *s_->impl_;
  DETCD_CHECK(st.txn_open);
  ended_ = true;
  st.txn_open = false;
  st.image_bytes += st.txn_image_bytes;
  st.image_records += st.txn_image_records;
  st.txn_image_bytes = st.txn_image_records = 0;
  if (!events_.empty()) {
    // The entry grew by doubling; a transaction of 100 puts would leave
    // 28 empty slots (16 bytes each) for as long as its revision is kept.
    st.entries.back().shrink_to_fit();
    ++st.current_rev;
    DETCD_CHECK(st.base + static_cast<int64_t>(st.entries.size()) ==
                st.current_rev + 1);
    if (st.pending()) DETCD_PROBE(kMvccWriteDuringCompaction);
  }
  return std::move(events_);
}

absl::Status KvStore::Compact(int64_t rev) {
  if (absl::Status s = StartCompaction(rev); !s.ok()) return s;
  FinishCompaction();
  return absl::OkStatus();
}

absl::Status KvStore::StartCompaction(int64_t rev) {
  Impl& st = *impl_;
  DETCD_CHECK_MSG(!st.txn_open, "Compact during a write transaction");
  if (rev <= st.compact_rev) return ErrCompacted();
  if (rev > st.current_rev) return ErrFutureRev();
  if (st.pending()) DETCD_PROBE(kMvccCompactionTakenOver);
  st.compact_rev = rev;
  ++epoch_;  // image writers walk the entries the compaction drops
  return absl::OkStatus();
}

bool KvStore::compaction_pending() const { return impl_->pending(); }

bool KvStore::CompactStep(size_t budget) {
  DETCD_CHECK_MSG(!impl_->txn_open, "Compact during a write transaction");
  compacted_revisions_ +=
      static_cast<int64_t>(impl_->CompactSome(std::max<size_t>(budget, 1)));
  return !impl_->pending();
}

void KvStore::FinishCompaction() const {
  if (!impl_->pending()) return;
  DETCD_CHECK_MSG(!impl_->txn_open, "Compact during a write transaction");
  compacted_revisions_ += static_cast<int64_t>(
      impl_->CompactSome(std::numeric_limits<size_t>::max()));
}

absl::StatusOr<KeyValueHash> KvStore::HashByRev(int64_t rev) const {
  const Impl& st = *impl_;
  if (rev > st.current_rev) return ErrFutureRev();
  if (rev <= 0) rev = st.current_rev;
  if (rev < st.compact_rev) return ErrCompacted();
  // (The walk the writer steps through needs no compaction pending; this
  // one skips what a pending one removes.)
  uint64_t h = util::kFnvOffset;
  std::string buf;
  st.ForEachRecord(rev, [&](int64_t main, uint32_t sub, const Record& r) {
    HashRecord(&h, &buf, main, sub, r);
  });
  KeyValueHash out;
  out.hash = Fold32(h);
  out.compact_revision = st.compact_rev;
  out.revision = rev;
  return out;
}

absl::StatusOr<KvStore::HashWriter> KvStore::BeginHash(int64_t rev) const {
  const Impl& st = *impl_;
  if (rev > st.current_rev) return ErrFutureRev();
  if (rev <= 0) rev = st.current_rev;
  if (rev < st.compact_rev) return ErrCompacted();
  if (st.pending()) {
    return absl::FailedPreconditionError(
        "mvcc hash: a compaction is being removed");
  }
  return HashWriter(this, rev);
}

KvStore::HashWriter::HashWriter(const KvStore* s, int64_t rev)
    : walk_(s, rev), h_(util::kFnvOffset) {
  out_.compact_revision = s->impl_->compact_rev;
  out_.revision = rev;
}

absl::StatusOr<bool> KvStore::HashWriter::Step(size_t budget) {
  if (!walk_.valid()) {
    return absl::FailedPreconditionError(
        "mvcc hash: the store was compacted or replaced under the hash");
  }
  const bool done =
      walk_.Walk(budget, [&](int64_t main, uint32_t sub, const Record& r) {
        return HashRecord(&h_, &buf_, main, sub, r) + ImageWriter::kRecordCost;
      });
  if (done) out_.hash = Fold32(h_);
  return done;
}

uint64_t KvStore::Hash() const {
  const Impl& st = *impl_;
  std::string buf;
  coding::PutVarint64(&buf, static_cast<uint64_t>(st.current_rev));
  coding::PutVarint64(&buf, static_cast<uint64_t>(st.compact_rev + 1));
  uint64_t h = util::Fnv1a(buf);
  st.ForEachRecord(st.current_rev,
                   [&](int64_t main, uint32_t sub, const Record& r) {
                     HashRecord(&h, &buf, main, sub, r);
                   });
  return h;
}

size_t KvStore::key_count() const { return impl_->live_keys; }
size_t KvStore::revision_count() const { return impl_->revisions; }
int64_t KvStore::size_bytes() const { return impl_->bytes; }

// Image format, all integers little-endian base-128 varints (coding.h)
// unless noted:
//
//   bytes 0..3   "dmvc"
//   byte  4      format version, 2 (1: the same with another checksum)
//   varint       current revision (>= 1)
//   varint       compact revision + 1 (0 = never compacted)
//   varint       number of records N
//   N records, in strictly increasing (main, sub) order:
//     varint     main revision
//     varint     sub revision
//     byte       0 = put, 1 = tombstone
//     varint+    key length, key bytes
//     for a put only:
//       varint+  value length, value bytes
//       varint   create_revision
//       varint   version
//       varint   lease (int64 as two's-complement uint64)
//   fixed32      checksum: crc32c of every preceding byte, little-endian
//                (version 1: FNV-1a-64 of them, folded to 32 bits as
//                low ^ high)
//
// Records at or below the compact revision are the ones compaction kept
// (one put per key); above it every revision is present. An open write
// transaction's uncommitted changes are not included.
//
// A delta image (BeginDelta) is the same with the magic "dmvd", format
// version 1, the since revision S as a varint before the current
// revision, and only the records above S (all of them: a delta is never
// made across a compaction, so its compact revision is its base's).
// ApplyDelta adds it to a store at revision S.
std::string KvStore::Snapshot() const {
  // One unbounded step of the incremental writer: one encoder for both.
  ImageWriter w = BeginImage();
  std::string out;
  absl::StatusOr<bool> done = w.Step(std::numeric_limits<size_t>::max(), &out);
  DETCD_CHECK(done.ok() && *done);
  return out;
}

void KvStore::Swap(KvStore& other) {
  DETCD_CHECK_MSG(!impl_->txn_open && !other.impl_->txn_open,
                  "Swap during a write transaction");
  std::swap(impl_, other.impl_);
  ++epoch_;
  ++other.epoch_;
}

absl::StatusOr<KvStore::ImageReader> KvStore::ImageReader::Open(
    std::string_view image) {
  return OpenAny(image, /*delta=*/false);
}

absl::StatusOr<KvStore::ImageReader> KvStore::ImageReader::OpenDelta(
    std::string_view image) {
  return OpenAny(image, /*delta=*/true);
}

absl::StatusOr<KvStore::ImageReader> KvStore::ImageReader::OpenAny(
    std::string_view image, bool delta) {
  auto bad = [](const char* why) {
    return absl::DataLossError(absl::StrCat("mvcc snapshot: ", why));
  };
  constexpr size_t kHeader = 5, kTrailer = 4;
  if (image.size() < kHeader + kTrailer) return bad("truncated");
  if (image.substr(0, 4) != (delta ? kDeltaMagic : kSnapshotMagic)) {
    return bad("bad magic");
  }
  const auto version = static_cast<uint8_t>(image[4]);
  if (delta ? version != kDeltaFormatVersion
            : version != 1 && version != kImageFormatVersion) {
    return bad("unknown format version");
  }
  std::string_view body = image.substr(0, image.size() - kTrailer);
  if (coding::DecodeFixed32(image.data() + body.size()) !=
      (version == 1 && !delta ? Fold32(util::Fnv1a(body))
                              : ImageChecksum(body))) {
    return bad("checksum mismatch");
  }
  coding::Reader in(body.substr(kHeader));
  constexpr uint64_t kMaxRev = std::numeric_limits<int64_t>::max() - 1;
  uint64_t since = 0, cur = 0, compact_plus1 = 0, n = 0;
  if ((delta && !in.GetVarint64(&since)) || !in.GetVarint64(&cur) ||
      !in.GetVarint64(&compact_plus1) || !in.GetVarint64(&n)) {
    return bad("truncated header");
  }
  if (cur < static_cast<uint64_t>(kInitialRev) || cur > kMaxRev) {
    return bad("bad current revision");
  }
  if (compact_plus1 > cur + 1) return bad("bad compact revision");
  if (delta && (since < static_cast<uint64_t>(kInitialRev) || since > cur)) {
    return bad("bad delta base revision");
  }
  ImageReader r;
  r.since_ = static_cast<int64_t>(since);
  r.body_ = body;
  r.first_ = r.pos_ = body.size() - in.remaining();
  r.rev_ = static_cast<int64_t>(cur);
  r.compact_rev_ = static_cast<int64_t>(compact_plus1) - 1;
  r.records_ = n;
  return r;
}

absl::StatusOr<bool> KvStore::ImageReader::Next(ImageRecord* out) {
  auto bad = [](const char* why) {
    return absl::DataLossError(absl::StrCat("mvcc snapshot: ", why));
  };
  coding::Reader in(body_.substr(pos_));
  if (read_ == records_) {
    if (!in.empty()) return bad("trailing bytes");
    return false;
  }
  constexpr uint64_t kMaxRev = std::numeric_limits<int64_t>::max() - 1;
  uint64_t main = 0, sub = 0;
  uint8_t kind = 0;
  std::string_view key, value;
  if (!in.GetVarint64(&main) || !in.GetVarint64(&sub) || !in.GetByte(&kind) ||
      !GetView(&in, &key)) {
    return bad("truncated record");
  }
  if (kind != kRecordPut && kind != kRecordTombstone) {
    return bad("bad record kind");
  }
  const bool tombstone = kind == kRecordTombstone;
  int64_t create_revision = 0, version = 0, lease = 0;
  if (!tombstone) {
    uint64_t c = 0, v = 0, l = 0;
    if (!GetView(&in, &value) || !in.GetVarint64(&c) ||
        !in.GetVarint64(&v) || !in.GetVarint64(&l)) {
      return bad("truncated record");
    }
    if (c > kMaxRev || v > kMaxRev) return bad("bad record");
    create_revision = static_cast<int64_t>(c);
    version = static_cast<int64_t>(v);
    lease = static_cast<int64_t>(l);
  }
  if (main > static_cast<uint64_t>(rev_) ||
      sub >= std::numeric_limits<uint32_t>::max()) {
    return bad("record revision out of range");
  }
  *out = ImageRecord{static_cast<int64_t>(main),
                     static_cast<int64_t>(sub),
                     tombstone,
                     key,
                     value,
                     create_revision,
                     version,
                     lease};
  pos_ = body_.size() - in.remaining();
  ++read_;
  return true;
}

absl::Status KvStore::Restore(std::string_view image,
                              const env::ReadBehind& behind) {
  DETCD_CHECK_MSG(!impl_->txn_open, "Restore during a write transaction");
  absl::StatusOr<ImageReader> reader = ImageReader::Open(image);
  if (!reader.ok()) return reader.status();

  auto st = std::make_unique<Impl>();
  st->compact_rev = reader->compact_revision();
  st->base = std::max(kInitialRev + 1, st->compact_rev + 1);
  // Nothing yet: the records (from the first, kept ones on) come next.
  st->current_rev = 0;
  if (absl::Status s = LoadRecords(st.get(), &*reader, behind); !s.ok()) {
    return s;
  }
  delete impl_;
  impl_ = st.release();
  ++epoch_;
  return absl::OkStatus();
}

absl::Status KvStore::ApplyDelta(std::string_view delta,
                                 const env::ReadBehind& behind) {
  Impl& st = *impl_;
  DETCD_CHECK_MSG(!st.txn_open, "ApplyDelta during a write transaction");
  absl::StatusOr<ImageReader> reader = ImageReader::OpenDelta(delta);
  if (!reader.ok()) return reader.status();
  FinishCompaction();
  if (reader->since() != st.current_rev ||
      reader->compact_revision() != st.compact_rev ||
      st.base + static_cast<int64_t>(st.entries.size()) != st.current_rev + 1) {
    return absl::DataLossError(
        absl::StrCat("mvcc snapshot: a delta from revision ", reader->since(),
                     " (compacted at ", reader->compact_revision(),
                     ") does not continue the store at revision ",
                     st.current_rev, " (compacted at ", st.compact_rev, ")"));
  }
  return LoadRecords(&st, &*reader, behind);
}

absl::Status KvStore::LoadRecords(Impl* st, ImageReader* reader,
                                  const env::ReadBehind& behind) {
  auto bad = [](const char* why) {
    return absl::DataLossError(absl::StrCat("mvcc snapshot: ", why));
  };
  // A delta's records follow the store's revision.
  Revision prev_rev{st->current_rev, 0};
  ImageRecord rec;
  while (true) {
    // The last record's bytes are in its node now.
    if (behind) behind(reader->position());
    absl::StatusOr<bool> more = reader->Next(&rec);
    if (!more.ok()) return more.status();
    if (!*more) break;
    const bool tombstone = rec.tombstone;
    const std::string_view key = rec.key, value = rec.value;
    const int64_t create_revision = rec.create_revision;
    const int64_t version = rec.version, lease = rec.lease;
    const Revision rev{rec.main, rec.sub};
    if (rev.main <= kInitialRev || !(prev_rev < rev)) {
      return bad("records out of order");
    }
    const bool kept_old = rev.main < st->base;
    if (kept_old && (tombstone || rev.main > st->compact_rev)) {
      return bad("tombstone at or below the compact revision");
    }
    if (!kept_old) {
      // Above the compaction every revision is present, subs from 0.
      const bool same_main = rev.main == prev_rev.main;
      const bool next_main = prev_rev.main < st->base
                                 ? rev.main == st->base
                                 : rev.main == prev_rev.main + 1;
      if (same_main ? rev.sub != prev_rev.sub + 1
                    : !next_main || rev.sub != 0) {
        return bad("missing revision");
      }
    }
    KeyNode* node = st->FindOrAddKey(key, PayloadHint(value, lease));
    KeyIndex& ki = node->revs;
    const bool alive = !ki.empty() && !ki.back().tombstone;
    if (kept_old && !ki.empty()) return bad("two kept revisions of a key");
    if (tombstone) {
      if (!alive) return bad("tombstone of a missing key");
      --st->live_keys;
    } else if (alive) {
      if (create_revision != node->create_revision ||
          version != node->version + 1) {
        return bad("inconsistent version");
      }
    } else {
      const bool ok = kept_old ? (create_revision >= kInitialRev + 1 &&
                                  create_revision <= rev.main && version >= 1)
                               : (create_revision == rev.main && version == 1);
      if (!ok) return bad("inconsistent create revision");
      ++st->live_keys;
    }
    // As in Put and DeleteRange: the key's latest live revision keeps its
    // data in the node, decoded straight into it from the image.
    st->SpillLatest(node);
    ki.push_back(RevRef{rev.main, static_cast<uint32_t>(rev.sub), tombstone});
    if (!tombstone) {
      Impl::SetLatest(node, value, create_revision, version, lease);
    }
    Record r(node, tombstone);
    st->bytes += RecordBytes(r);
    st->image_bytes += RecordImageBytes(
        rev.main, static_cast<uint32_t>(rev.sub), key.size(),
        RecView{value, create_revision, version, lease, tombstone});
    ++st->image_records;
    ++st->revisions;
    if (kept_old) {
      node->old = std::move(r);
      st->old.emplace(rev, node);
    } else {
      if (rev.sub == 0) {
        // As End() does: the finished entry gives back its growth slack.
        if (!st->entries.empty()) st->entries.back().shrink_to_fit();
        st->entries.emplace_back();
      }
      st->entries.back().push_back(std::move(r));
    }
    prev_rev = rev;
  }
  st->current_rev = reader->revision();
  if (st->base + static_cast<int64_t>(st->entries.size()) !=
      st->current_rev + 1) {
    return bad("missing revision");
  }
  return absl::OkStatus();
}

// The incremental image writer (KvStore::ImageWriter). It walks the same
// records in the same order as Snapshot() always did and writes the same
// bytes; only the work is cut into steps.

uint32_t KvStore::ImageChecksum(std::string_view bytes) {
  return crc32c::Value(bytes);
}

KvStore::ImageWriter KvStore::BeginImage() const {
  // An open write transaction's changes are above current_rev: left out
  // (and not yet in the store's image sums). The sums count what a pending
  // compaction drops until it is done, so it is done first.
  FinishCompaction();
  return ImageWriter(this, nullptr);
}

KvStore::ImageMark KvStore::mark_now() const {
  FinishCompaction();
  return ImageMark{impl_->current_rev, epoch_, impl_->image_records,
                   impl_->image_bytes};
}

std::optional<KvStore::ImageWriter> KvStore::BeginDelta(
    const ImageMark& since) const {
  FinishCompaction();
  // Only writes since: the records up to the mark are where they were, and
  // the running sums grew by exactly the records above it.
  if (since.epoch != epoch_ || since.revision > impl_->current_rev ||
      since.records > impl_->image_records ||
      since.record_bytes > impl_->image_bytes) {
    return std::nullopt;
  }
  return ImageWriter(this, &since);
}

KvStore::ImageWriter::ImageWriter(const KvStore* s, const ImageMark* since)
    : walk_(s, s->impl_->current_rev),
      mark_(s->mark_now()),
      rev_(s->impl_->current_rev),
      compact_rev_(s->impl_->compact_rev),
      records_(s->impl_->image_records) {
  record_bytes_ = s->impl_->image_bytes;
  if (since != nullptr) {
    delta_ = true;
    since_ = since->revision;
    walk_.next_ = Revision{since_ + 1, 0};
    records_ -= since->records;
    record_bytes_ -= since->record_bytes;
  }
  bytes_ = kSnapshotMagic.size() + 1 +
           (delta_ ? coding::VarintLength(static_cast<uint64_t>(since_)) : 0) +
           coding::VarintLength(static_cast<uint64_t>(rev_)) +
           coding::VarintLength(static_cast<uint64_t>(compact_rev_ + 1)) +
           coding::VarintLength(records_) + record_bytes_ + 4;
}

template <typename F>
bool KvStore::RecordWalk::Walk(size_t budget, F&& f) {
  const Impl& st = *s_->impl_;
  DETCD_CHECK(!st.pending());
  size_t spent = 0;
  Revision from = next_;
  if (from.main < st.base) {
    // The records compaction kept, below the deque.
    for (auto it = st.old.lower_bound(from); it != st.old.end(); ++it) {
      if (it->first.main > up_to_) break;
      if (spent >= budget) {
        next_ = it->first;
        return false;
      }
      spent += f(it->first.main, static_cast<uint32_t>(it->first.sub),
                 it->second->old);
    }
    from = Revision{st.base, 0};
  }
  // How many revisions ahead each prefetch stage runs (PrefetchBlock).
  constexpr int64_t kBlockAhead = 32, kDataAhead = 16;
  constexpr size_t kMaxSubs = 4;  // records per revision prefetched
  auto ahead = [&](int64_t m, auto&& prefetch) {
    if (m > up_to_) return;
    const Entry& e = st.entries[static_cast<size_t>(m - st.base)];
    for (size_t i = 0; i < e.size() && i < kMaxSubs; ++i) prefetch(e[i]);
  };
  for (int64_t m = from.main; m <= up_to_; ++m) {
    ahead(m + kBlockAhead, PrefetchBlock);
    ahead(m + kDataAhead, PrefetchData);
    const Entry& e = st.entries[static_cast<size_t>(m - st.base)];
    size_t sub = m == from.main ? static_cast<size_t>(from.sub) : 0;
    for (; sub < e.size(); ++sub) {
      if (spent >= budget) {
        next_ = Revision{m, static_cast<int64_t>(sub)};
        return false;
      }
      spent += f(m, static_cast<uint32_t>(sub), e[sub]);
    }
  }
  next_ = Revision{up_to_ + 1, 0};
  return true;
}

absl::StatusOr<bool> KvStore::ImageWriter::Step(size_t budget,
                                                std::string* out) {
  if (!walk_.valid()) {
    return absl::FailedPreconditionError(
        "mvcc snapshot: the store was compacted or replaced under the image");
  }
  switch (phase_) {
    case Phase::kHeader: {
      const size_t at = out->size();
      if (delta_) {
        out->append(kDeltaMagic);
        out->push_back(static_cast<char>(kDeltaFormatVersion));
        coding::PutVarint64(out, static_cast<uint64_t>(since_));
      } else {
        out->append(kSnapshotMagic);
        out->push_back(static_cast<char>(kImageFormatVersion));
      }
      coding::PutVarint64(out, static_cast<uint64_t>(rev_));
      coding::PutVarint64(out, static_cast<uint64_t>(compact_rev_ + 1));
      coding::PutVarint64(out, records_);
      crc_ = crc32c::Extend(0, out->data() + at, out->size() - at);
      phase_ = Phase::kRecords;
      [[fallthrough]];
    }
    case Phase::kRecords: {
      const size_t at = out->size();
      const bool done =
          walk_.Walk(budget, [&](int64_t main, uint32_t sub, const Record& r) {
            const size_t before = out->size();
            EncodeRecord(out, main, sub, r);
            return out->size() - before + kRecordCost;
          });
      crc_ = crc32c::Extend(crc_, out->data() + at, out->size() - at);
      written_ += out->size() - at;
      if (!done) return false;
      // The store's running sums promised this size to the callers'
      // length prefixes: a difference is a bug in keeping them.
      DETCD_CHECK_MSG(written_ == record_bytes_,
                      "mvcc image: records differ from the size promised");
      coding::PutFixed32(out, crc_);
      phase_ = Phase::kDone;
      return true;
    }
    case Phase::kDone:
      return true;
  }
  return true;
}

}  // namespace detcd::mvcc
