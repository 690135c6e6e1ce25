// The revisioned key-value store (etcd's mvcc.KV), in memory.
//
// Every change is kept under its revision until a compaction removes it, so
// reads at a past revision see the store exactly as it was. Keys are
// ordered bytewise. Ranges follow etcd: an empty `end` means the single
// key `key`; `end` == "\0" (one zero byte) means every key >= `key`;
// otherwise [key, end). (key "\0", end "\0") is every key.
//
// Writes go through a WriteTxn: all changes of one transaction share one
// main revision (sub revisions 0, 1, ... in order), reads inside it see
// its earlier writes, and a transaction that changes nothing does not
// advance the revision.
#ifndef DETCD_ENGINE_MVCC_KV_STORE_H_
#define DETCD_ENGINE_MVCC_KV_STORE_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/env/env.h"
#include "engine/mvcc/types.h"

namespace detcd::mvcc {

// etcd's texts; both are OutOfRange as etcd's gRPC layer reports them.
absl::Status ErrCompacted();  // "mvcc: required revision has been compacted"
absl::Status ErrFutureRev();  // "mvcc: required revision is a future revision"
bool IsErrCompacted(const absl::Status& s);
bool IsErrFutureRev(const absl::Status& s);

// A key-value as a range's selection sees it before anything is copied:
// views into the store, valid during the call that offers it.
struct KeyValueView {
  std::string_view key;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;
  std::string_view value;
  int64_t lease = 0;
};

struct RangeOptions {
  int64_t limit = 0;  // 0: no limit
  int64_t rev = 0;    // 0: the latest revision
  bool count_only = false;
  bool keys_only = false;  // kvs without values
  // Stop after this many keys of the range (0: no bound); `resume` then
  // says where to go on, so a large range can be read in pieces between
  // other work (at a fixed rev: writes between the pieces do not show).
  size_t max_keys = 0;
  // Only key-values `keep` accepts go into kvs (count still counts every
  // key of the range; RangeResult::kept those accepted).
  std::function<bool(const KeyValueView&)> keep;
  // With a limit: kvs holds the first `limit` (accepted) key-values by
  // `before`, a strict total order, in that order, instead of the first
  // in key order: a top-k of the range that copies only the k.
  std::function<bool(const KeyValueView&, const KeyValueView&)> before;
};

struct RangeResult {
  std::vector<KeyValue> kvs;  // in key order, at most limit
  int64_t count = 0;          // all keys in the range, ignoring limit
  int64_t kept = 0;           // with keep or before: the keys accepted (all)
  int64_t rev = 0;            // the revision the range was read at
  // With max_keys: the key to read on from (the same range from there),
  // when some keys were left unvisited; empty otherwise.
  std::optional<std::string> resume;
};

struct KeyValueHash {
  uint32_t hash = 0;
  int64_t compact_revision = 0;
  int64_t revision = 0;
};

class KvStore final : public EventHistory {
 public:
  KvStore();
  ~KvStore() override;
  KvStore(const KvStore&) = delete;
  KvStore& operator=(const KvStore&) = delete;

  int64_t Rev() const override;
  int64_t CompactRev() const override;
  absl::Status Changes(int64_t from, int64_t to, size_t max_events,
                       std::vector<Event>* out, int64_t* next) const override;

  // etcd's rules: rev > Rev() is ErrFutureRev; 0 < rev < CompactRev() is
  // ErrCompacted; rev <= 0 reads the latest revision.
  absl::StatusOr<RangeResult> Range(std::string_view key, std::string_view end,
                                    const RangeOptions& o) const;

  class WriteTxn {
   public:
    WriteTxn(WriteTxn&&) = default;
    // Reads at this transaction's revision, seeing its earlier writes
    // (o.rev other than 0 reads history as KvStore::Range does).
    absl::StatusOr<RangeResult> Range(std::string_view key,
                                      std::string_view end,
                                      const RangeOptions& o) const;
    // Returns the key's previous value, if it existed.
    std::optional<KeyValue> Put(std::string_view key, std::string_view value,
                                int64_t lease);
    // As Put, without a copy of the previous value: the pointer (null if
    // the key did not exist) is valid until this transaction's next write.
    const KeyValue* PutRef(std::string_view key, std::string_view value,
                           int64_t lease);
    // Returns the deleted key-values, in key order.
    std::vector<KeyValue> DeleteRange(std::string_view key,
                                      std::string_view end);
    // The revision this transaction has: Rev()+1 once it changed
    // something, Rev() before.
    int64_t Rev() const;
    // Commits; returns this transaction's events in sub-revision order
    // (empty if it changed nothing). Must be called exactly once.
    std::vector<Event> End();

   private:
    friend class KvStore;
    explicit WriteTxn(KvStore* s);
    KvStore* s_;
    std::vector<Event> events_;
    bool ended_ = false;
  };
  // One write transaction at a time.
  WriteTxn Write();

  // etcd's rules: rev <= CompactRev() is ErrCompacted, rev > Rev() is
  // ErrFutureRev. Afterwards reads at revisions >= rev still work; every
  // revision older than rev that is not a key's latest at rev is gone, and
  // so are tombstones at or below rev. (The store is in memory, so
  // compaction is always "physical" once this returns.)
  absl::Status Compact(int64_t rev);
  // Compact in two parts, for a caller that must not stop for the whole of
  // a large compaction (the engine thread: a million revisions take about
  // a quarter of a second). StartCompaction is what readers see, at once:
  // its errors are Compact's, and afterwards reads, Changes, HashByRev,
  // Hash and images are those after Compact(rev). The revisions it drops
  // still hold their memory, and count in revision_count(), size_bytes()
  // and compacted_revisions(), until CompactStep calls have removed them
  // (compaction_pending() is true until then). Another StartCompaction
  // meanwhile takes over the work left. No write transaction may be open
  // during a step. BeginImage and Snapshot first finish what is left.
  absl::Status StartCompaction(int64_t rev);
  bool compaction_pending() const;
  // Visits about `budget` of the records the pending compaction covers
  // (at least one, and the whole history of a key it starts on), dropping
  // those it removes; true once nothing is left.
  bool CompactStep(size_t budget);
  // All the steps left, at once.
  void FinishCompaction() const;
  // Revisions (tombstones included) removed by this store's compactions,
  // etcd's "db keys compacted". It belongs to the store object, not its
  // contents: Restore and Swap leave it alone, so it only grows.
  int64_t compacted_revisions() const { return compacted_revisions_; }

  // A hash of the key-values with revisions in (CompactRev(), rev] (rev 0:
  // latest), as etcd's HashKV; errors as Range.
  absl::StatusOr<KeyValueHash> HashByRev(int64_t rev) const;
  // A hash of everything the store holds, for comparing members.
  uint64_t Hash() const;

  size_t key_count() const;       // live keys
  size_t revision_count() const;  // kept revisions, tombstones included
  int64_t size_bytes() const;     // approximate memory held by key-values

  // The whole store (every kept revision, the current and compact
  // revisions) as one image; Restore replaces the store with one.
  std::string Snapshot() const;
  // `behind` (may be null) is told, before each record is decoded, where
  // in `image` nothing before is read again (after the checksum's pass,
  // the records are read once, in order): the caller may give that memory
  // back (env::Memory).
  absl::Status Restore(std::string_view image,
                       const env::ReadBehind& behind = nullptr);
  // The image format written now (kv_store.cc documents it) and the
  // checksum that ends such an image: crc32c of every byte before it.
  // Restore also reads version 1, whose checksum was FNV-1a-64 folded to 32
  // bits, computed a byte at a time (mvcc_bench BM_Snapshot/100000/256:
  // 59 ms with it, 39 with crc32c).
  static constexpr uint8_t kImageFormatVersion = 2;
  static uint32_t ImageChecksum(std::string_view bytes);
  // One record of an image, read in place: views into the image.
  struct ImageRecord {
    int64_t main = 0;
    int64_t sub = 0;
    bool tombstone = false;
    std::string_view key;
    std::string_view value;  // a put's; empty for a tombstone
    int64_t create_revision = 0;
    int64_t version = 0;
    int64_t lease = 0;
  };
  // Reads an image (Snapshot()'s format) without restoring it, for a
  // caller that turns it into another format (the real server's etcd
  // backend file, shim/etcd_backend.h) and for Restore itself. Open checks
  // the magic, version, checksum and header; Next decodes the records in
  // order with the format's bounds (Restore adds the consistency rules
  // between records). Errors are Restore's ("mvcc snapshot: ...").
  class ImageReader {
   public:
    static absl::StatusOr<ImageReader> Open(std::string_view image);
    // A delta image (DeltaImageWriter's format) instead.
    static absl::StatusOr<ImageReader> OpenDelta(std::string_view image);
    // A delta's records are those above this revision (0 for an image).
    int64_t since() const { return since_; }
    int64_t revision() const { return rev_; }
    int64_t compact_revision() const { return compact_rev_; }  // 0: never
    uint64_t records() const { return records_; }
    // The next record into *r: false after the last one (DataLoss if bytes
    // follow it), DataLoss for a truncated or malformed record.
    absl::StatusOr<bool> Next(ImageRecord* r);
    // Where the next record starts: Next reads nothing before it again.
    const char* position() const { return body_.data() + pos_; }
    // Back to the first record.
    void Rewind() {
      pos_ = first_;
      read_ = 0;
    }

   private:
    ImageReader() = default;
    static absl::StatusOr<ImageReader> OpenAny(std::string_view image,
                                               bool delta);
    std::string_view body_;  // the image without its checksum
    size_t first_ = 0;       // where the records start in body_
    size_t pos_ = 0;
    uint64_t read_ = 0;
    int64_t since_ = 0;
    int64_t rev_ = 0;
    int64_t compact_rev_ = 0;
    uint64_t records_ = 0;
  };

  // Exchanges the contents of two stores (no copy). A caller that first
  // restores an image into a scratch store to validate it can then swap
  // it in instead of restoring the image a second time, which would hold
  // two full stores in memory at once. No write transaction may be open
  // on either.
  void Swap(KvStore& other);

  // Writes the image Snapshot() returns, in bounded steps, while the store
  // goes on taking writes between them (an incremental snapshot: the
  // engine thread must not stop for a whole 1M-key image). The image is
  // the store at Rev() when the writer was made: every revision <= that
  // stays where the writer finds it until a compaction, so later writes do
  // not disturb it. A Compact, Restore or Swap of the store invalidates
  // the writer (Step then answers FailedPrecondition and the caller drops
  // the image). The store must outlive the writer.
  //
  // size() is exact from the start (the callers' formats put the image
  // behind a length prefix): the store keeps its records' image bytes and
  // count as running sums, updated by every write, compaction and restore.
  // A walk over the committed records up to a revision, in revision
  // order, a bounded number at a time (for ImageWriter and HashWriter):
  // made with no compaction pending, valid until the store's next
  // Compact, Restore or Swap.
  class RecordWalk {
   private:
    friend class KvStore;
    RecordWalk(const KvStore* s, int64_t up_to)
        : s_(s), epoch_(s->epoch_), up_to_(up_to) {}
    bool valid() const { return s_->epoch_ == epoch_; }
    // Calls f(main, sub, record) for records from next_ on, while the
    // costs f returns stay within `budget` (at least one record); true
    // once past the last.
    template <typename F>
    bool Walk(size_t budget, F&& f);

    const KvStore* s_;
    uint64_t epoch_;
    int64_t up_to_;
    Revision next_{0, 0};  // the next record to visit
  };

  // Where an image left the store: a delta image continues from it (see
  // BeginDelta). Made by ImageWriter::mark() or mark_now().
  struct ImageMark {
    int64_t revision = 0;
    uint64_t epoch = 0;  // the store's: no compaction, restore or swap since
    uint64_t records = 0;
    uint64_t record_bytes = 0;
  };
  // The store as it is now, committed writes only (no compaction pending).
  ImageMark mark_now() const;

  class ImageWriter {
   public:
    // Does about `budget` units of work (a record costs its encoded bytes
    // plus a fixed kRecordCost; at least one record per call), appending
    // the image's next bytes to *out. True once the whole image is out.
    absl::StatusOr<bool> Step(size_t budget, std::string* out);
    uint64_t size() const { return bytes_; }
    // The store as this image shows it.
    const ImageMark& mark() const { return mark_; }

    static constexpr size_t kRecordCost = 64;

   private:
    friend class KvStore;
    enum class Phase { kHeader, kRecords, kDone };
    // since: null for a whole image, else the mark a delta continues from.
    ImageWriter(const KvStore* s, const ImageMark* since);

    RecordWalk walk_;
    ImageMark mark_;
    int64_t since_ = 0;  // a delta's: its records are above this revision
    bool delta_ = false;
    int64_t rev_;          // the image's current revision
    int64_t compact_rev_;  // and compact revision
    Phase phase_ = Phase::kHeader;
    uint64_t records_;
    uint64_t record_bytes_;  // the records' share of bytes_
    uint64_t bytes_;
    uint64_t written_ = 0;  // record bytes out so far
    uint32_t crc_ = 0;  // the checksum so far
  };
  ImageWriter BeginImage() const;
  // A delta image: what the store gained since `since` (a mark of this
  // store's), nothing but the records written after it, with the current
  // and compact revisions. Only writes may have happened since: after a
  // Compact, Restore or Swap (the mark's epoch is gone) there is none
  // (nullopt) and a whole image is needed. Format (kv_store.cc):
  // Snapshot()'s with the magic "dmvd" and the since revision in the
  // header.
  std::optional<ImageWriter> BeginDelta(const ImageMark& since) const;
  // Adds a delta image to the store, which must be the state it was made
  // from (the store at its since revision, never compacted since: the
  // delta's compact revision is the store's). The records get Restore's
  // checks. On an error the store is left part-way: the caller drops it.
  absl::Status ApplyDelta(std::string_view delta,
                          const env::ReadBehind& behind = nullptr);

  // HashByRev in steps, as the image writer writes an image: the hash of
  // the store as it was when BeginHash was called, while it goes on taking
  // writes (a million keys take about a third of a second). BeginHash has
  // HashByRev's errors, and FailedPrecondition while a compaction is being
  // removed (try again once compaction_pending() is false); a Compact,
  // Restore or Swap makes the next Step fail with FailedPrecondition
  // (begin again).
  class HashWriter {
   public:
    // About `budget` units of work, as ImageWriter::Step; true once done.
    absl::StatusOr<bool> Step(size_t budget);
    // The hash, once Step returned true.
    const KeyValueHash& result() const { return out_; }

   private:
    friend class KvStore;
    HashWriter(const KvStore* s, int64_t rev);
    RecordWalk walk_;
    uint64_t h_;
    KeyValueHash out_;
    std::string buf_;
  };
  absl::StatusOr<HashWriter> BeginHash(int64_t rev) const;

 private:
  // Implementation details are the implementer's choice.
  struct Impl;
  Impl* impl_;
  // Restore's and ApplyDelta's part: the reader's records into *st, which
  // is at the revision before them (st->current_rev), with Restore's
  // checks; st ends at the reader's revision.
  static absl::Status LoadRecords(Impl* st, ImageReader* reader,
                                  const env::ReadBehind& behind);
  // Mutable: finishing a pending compaction (a const BeginImage may) does
  // not change what the store holds logically.
  mutable int64_t compacted_revisions_ = 0;
  // Moves on every Compact, Restore and Swap: ImageWriters made before are
  // no longer valid.
  uint64_t epoch_ = 0;
};

}  // namespace detcd::mvcc

#endif  // DETCD_ENGINE_MVCC_KV_STORE_H_
