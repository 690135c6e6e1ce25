// shim/bolt.h: the streaming writer's files read back whole through the
// reader, whatever the sizes of keys and values and however the file is
// taken in pieces.
#include "shim/bolt.h"

#include <map>
#include <string>

#include "gtest/gtest.h"
#include "rapidcheck/gtest.h"

namespace detcd::shim {
namespace {

// Equal files, or where they first differ (not the whole files).
::testing::AssertionResult SameFile(const std::string& a,
                                    const std::string& b) {
  if (a == b) return ::testing::AssertionSuccess();
  size_t i = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
  return ::testing::AssertionFailure()
         << "sizes " << a.size() << " and " << b.size()
         << ", first difference at byte " << i << " (page " << i / 4096
         << ")";
}

using Buckets = std::map<std::string, std::map<std::string, std::string>>;

// Every bucket's key-values as the reader walks them.
Buckets ReadBack(const std::string& file) {
  absl::StatusOr<BoltReader> r = BoltReader::Open(file);
  EXPECT_TRUE(r.ok()) << r.status();
  Buckets out;
  if (!r.ok()) return out;
  absl::Status s = r->ForEach(
      [&](absl::string_view name) { out[std::string(name)]; },
      [&](absl::string_view b, absl::string_view k, absl::string_view v) {
        out[std::string(b)][std::string(k)] = std::string(v);
      });
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(r->Size(), static_cast<int64_t>(file.size()));
  return out;
}

// The file taken `piece` bytes at a time.
std::string Stream(const Buckets& b, size_t piece, uint64_t* size,
                   uint64_t txid = 7) {
  BoltWriter::Buckets in;
  for (const auto& [name, kvs] : b) {
    in.emplace_back(name, std::make_unique<BoltMapBucket>(kvs));
  }
  absl::StatusOr<BoltWriter> w = BoltWriter::Make(std::move(in), txid);
  EXPECT_TRUE(w.ok()) << w.status();
  if (!w.ok()) return "";
  *size = w->size();
  std::string out;
  for (int calls = 0;; ++calls) {
    const size_t before = out.size();
    absl::StatusOr<bool> done = w->Next(piece, &out);
    EXPECT_TRUE(done.ok()) << done.status();
    if (!done.ok() || *done) break;
    EXPECT_GE(out.size() - before, piece);  // whole pages, at least `piece`
    EXPECT_LT(calls, 1 << 20);
    if (calls >= 1 << 20) break;
  }
  EXPECT_EQ(out.size() % 4096, 0u);
  return out;
}

TEST(BoltWriterTest, ManyKeysMakeBranchLevelsAndReadBack) {
  Buckets b;
  for (int i = 0; i < 200000; ++i) {
    char key[17];
    snprintf(key, sizeof key, "%016d", i);
    b["key"][key] = std::string(i % 97, static_cast<char>('a' + i % 26));
  }
  b["empty"];
  b["meta"]["consistent_index"] = std::string(8, '\1');
  uint64_t size = 0;
  const std::string whole = WriteBolt(b, 7);
  EXPECT_TRUE(SameFile(Stream(b, 1, &size), whole));
  EXPECT_TRUE(SameFile(Stream(b, 1 << 20, &size), whole));
  EXPECT_EQ(size, whole.size());
  EXPECT_EQ(ReadBack(whole), b);
}

TEST(BoltWriterTest, AValueLargerThanAPageSpansPages) {
  Buckets b;
  b["big"]["a"] = "x";
  b["big"]["b"] = std::string(1536 * 1024 + 3, 'v');
  b["big"]["c"] = "y";
  const std::string whole = WriteBolt(b, 2);
  EXPECT_EQ(ReadBack(whole), b);
  uint64_t size = 0;
  EXPECT_TRUE(SameFile(Stream(b, 4096, &size, 2), whole));
}

TEST(BoltWriterTest, NoBucketsIsAnEmptyDatabase) {
  const std::string whole = WriteBolt({}, 1);
  EXPECT_EQ(whole.size(), 4u * 4096);  // meta, meta, freelist, root leaf
  EXPECT_TRUE(ReadBack(whole).empty());
}

TEST(BoltWriterTest, RefusesKeysOutOfOrderAndEmptyNames) {
  class Backwards : public BoltBucket {
   public:
    void Rewind() override { n_ = 0; }
    absl::StatusOr<bool> Next(absl::string_view* k,
                              absl::string_view* v) override {
      if (n_ == 2) return false;
      *k = n_++ == 0 ? "b" : "a";
      *v = "";
      return true;
    }

   private:
    int n_ = 0;
  };
  BoltWriter::Buckets in;
  in.emplace_back("key", std::make_unique<Backwards>());
  absl::StatusOr<BoltWriter> w = BoltWriter::Make(std::move(in), 1);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().message(), "bolt: keys out of order in key");
  BoltWriter::Buckets unnamed;
  unnamed.emplace_back("", std::make_unique<BoltMapBucket>(
                               std::map<std::string, std::string>{}));
  EXPECT_FALSE(BoltWriter::Make(std::move(unnamed), 1).ok());
}

RC_GTEST_PROP(BoltWriterProp, AnyBucketsReadBackInAnyPieces, ()) {
  const auto names = *rc::gen::container<std::vector<std::string>>(
      rc::gen::nonEmpty(rc::gen::string<std::string>()));
  Buckets b;
  for (const std::string& n : names) {
    auto& kvs = b[n];
    const int keys = *rc::gen::inRange(0, 300);
    for (int i = 0; i < keys; ++i) {
      std::string k = *rc::gen::nonEmpty(rc::gen::string<std::string>());
      const int len = *rc::gen::element(0, 10, 100, 3000, 5000, 20000);
      kvs[k] = std::string(static_cast<size_t>(len), 'z');
    }
  }
  const std::string whole = WriteBolt(b, 3);
  RC_ASSERT(ReadBack(whole) == b);
  uint64_t size = 0;
  const size_t piece = *rc::gen::inRange<size_t>(1, 100000);
  RC_ASSERT(SameFile(Stream(b, piece, &size, 3), whole));
  RC_ASSERT(size == whole.size());
}

}  // namespace
}  // namespace detcd::shim
