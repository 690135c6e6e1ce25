#include "engine/raft/codec.h"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

namespace detcd::raft {
namespace {

Message SampleMessage() {
  Message m;
  m.type = MessageType::kApp;
  m.to = 2;
  m.from = 1;
  m.term = 7;
  m.log_term = 6;
  m.index = 300;
  m.commit = 299;
  m.reject = true;
  m.reject_hint = 12;
  m.context = "ctx";
  m.entries = {Entry{7, 301, EntryType::kNormal, "a"},
               Entry{7, 302, EntryType::kConfChange,
                     EncodeConfChange({ConfChangeType::kAddNode, 4, "u"})}};
  auto s = std::make_shared<Snapshot>();
  s->data = std::string(1000, 'z');
  s->metadata = {ConfState{{1, 2, 3}, {4}}, 290, 5};
  m.snapshot = s;
  return m;
}

void ExpectSame(const Message& a, const Message& b) {
  EXPECT_EQ(a.type, b.type);
  EXPECT_EQ(a.to, b.to);
  EXPECT_EQ(a.from, b.from);
  EXPECT_EQ(a.term, b.term);
  EXPECT_EQ(a.log_term, b.log_term);
  EXPECT_EQ(a.index, b.index);
  EXPECT_EQ(a.commit, b.commit);
  EXPECT_EQ(a.reject, b.reject);
  EXPECT_EQ(a.reject_hint, b.reject_hint);
  EXPECT_EQ(a.context, b.context);
  EXPECT_EQ(a.entries, b.entries);
  ASSERT_EQ(a.snapshot == nullptr, b.snapshot == nullptr);
  if (a.snapshot) {
    EXPECT_EQ(*a.snapshot, *b.snapshot);
  }
}

TEST(Codec, RoundTripsEveryField) {
  Message m = SampleMessage();
  auto d = DecodeMessage(EncodeMessage(m));
  ASSERT_TRUE(d.ok()) << d.status();
  ExpectSame(m, *d);
}

TEST(Codec, RejectsEveryTruncation) {
  std::string enc = EncodeMessage(SampleMessage());
  for (size_t n = 0; n < enc.size(); ++n) {
    EXPECT_FALSE(DecodeMessage(enc.substr(0, n)).ok()) << "prefix " << n;
  }
  EXPECT_FALSE(DecodeMessage(enc + "x").ok());
}

TEST(Codec, RejectsLocalTypesAndBadVersion) {
  Message m;
  m.type = MessageType::kHup;
  EXPECT_FALSE(DecodeMessage(EncodeMessage(m)).ok());
  std::string enc = EncodeMessage(SampleMessage());
  enc[0] = 2;
  EXPECT_FALSE(DecodeMessage(enc).ok());
}

TEST(Codec, ConfChangeRoundTripAndRejectsGarbage) {
  ConfChange cc{ConfChangeType::kAddLearnerNode, 99, "peer-urls"};
  ConfChange out;
  ASSERT_TRUE(DecodeConfChange(EncodeConfChange(cc), &out));
  EXPECT_EQ(cc, out);
  EXPECT_FALSE(DecodeConfChange("", &out));
  EXPECT_FALSE(DecodeConfChange(std::string("\x01\x07\x01\x00", 4), &out));
}

RC_GTEST_PROP(Codec, ArbitraryBytesNeverCrashAndValidOnesRoundTrip,
              (const std::string& garbage, uint64_t term, uint64_t index,
               std::string data)) {
  (void)DecodeMessage(garbage);  // must not crash; result irrelevant
  Message m;
  m.type = MessageType::kHeartbeat;
  m.to = 1;
  m.from = 2;
  m.term = term;
  m.index = index;
  m.entries.push_back(Entry{term, index, EntryType::kNormal, data});
  auto d = DecodeMessage(EncodeMessage(m));
  RC_ASSERT(d.ok());
  RC_ASSERT(d->entries == m.entries);
  RC_ASSERT(d->term == term);
}

}  // namespace
}  // namespace detcd::raft
