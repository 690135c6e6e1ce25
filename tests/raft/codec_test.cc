#include "engine/raft/codec.h"

#include <gtest/gtest.h>
#include <rapidcheck/gtest.h>

#include <memory>
#include <string>
#include <string_view>

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

// Given the string it decodes from (here behind a one-byte tag, as the
// real server's peer payloads are), DecodeMessage moves a snapshot's data
// out of it: the data keeps the string's buffer, nothing is copied.
TEST(Codec, MovesSnapshotDataOutOfItsOwner) {
  Message m = SampleMessage();
  ASSERT_NE(m.snapshot, nullptr);
  auto snap = std::make_shared<Snapshot>(*m.snapshot);
  snap->data = std::string(1 << 20, 'i');
  m.snapshot = snap;
  std::string own = "t" + EncodeMessage(m);
  const char* buffer = own.data();
  auto d = DecodeMessage(std::string_view(own).substr(1), &own);
  ASSERT_TRUE(d.ok()) << d.status();
  ExpectSame(m, *d);
  EXPECT_EQ(d->snapshot->data.data(), buffer);
  // Without an owner, or with one the view is not the tail of, a copy.
  std::string enc = EncodeMessage(m);
  auto c = DecodeMessage(enc);
  ASSERT_TRUE(c.ok());
  ExpectSame(m, *c);
  std::string other = "unrelated";
  auto o = DecodeMessage(enc, &other);
  ASSERT_TRUE(o.ok());
  ExpectSame(m, *o);
  EXPECT_EQ(other, "unrelated");
}

// The head of a snapshot message, then the snapshot's data, are the whole
// message: a transport sends the image from where it lies.
TEST(Codec, HeadAndDataAreTheWholeMessage) {
  Message m = SampleMessage();
  for (size_t n :
       {size_t{0}, size_t{1}, size_t{127}, size_t{128}, size_t{1} << 20}) {
    auto snap = std::make_shared<Snapshot>(*m.snapshot);
    snap->data = std::string(n, 'h');
    m.snapshot = snap;
    const std::string head = EncodeMessageHead(m);
    EXPECT_EQ(head + snap->data, EncodeMessage(m)) << n;
    EXPECT_LT(head.size(), 64u) << "the head holds no data";
  }
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

// An append of `n` entries after (index, log_term), in term 5.
Message Append(uint64_t index, uint64_t log_term, int n, uint64_t commit) {
  Message m;
  m.type = MessageType::kApp;
  m.to = 2;
  m.from = 1;
  m.term = 5;
  m.log_term = log_term;
  m.index = index;
  m.commit = commit;
  for (int i = 0; i < n; ++i) {
    m.entries.push_back(Entry{5, index + 1 + i, EntryType::kNormal,
                              std::string(10 + i, static_cast<char>('a' + i))});
  }
  return m;
}

// A snapshot file's decoded body becomes the snapshot, its data moved out
// of the buffer; exactly one encoded snapshot is accepted.
TEST(Codec, DecodesAWholeSnapshotInPlace) {
  Snapshot want;
  want.data = std::string(100000, 'd') + "end";
  want.metadata = {ConfState{{1, 2, 3}, {4}}, 290, 5};
  std::string enc;
  EncodeSnapshot(&enc, want);
  std::string buf = enc;
  Snapshot got;
  ASSERT_TRUE(DecodeWholeSnapshot(&buf, &got));
  EXPECT_EQ(got, want);
  for (size_t n : {size_t{0}, size_t{3}, enc.size() - 1}) {
    std::string cut = enc.substr(0, n);
    Snapshot s;
    EXPECT_FALSE(DecodeWholeSnapshot(&cut, &s)) << n;
  }
  std::string longer = enc + "x";
  Snapshot s;
  EXPECT_FALSE(DecodeWholeSnapshot(&longer, &s));
}

TEST(Codec, JoinsContinuingAppends) {
  // Entries, then a commit-only append, then more entries.
  const std::vector<Message> msgs = {Append(10, 4, 3, 9), Append(13, 5, 0, 12),
                                     Append(13, 5, 2, 13)};
  std::vector<std::string> wire;
  std::vector<AppendFrame> frames;
  for (const Message& m : msgs) wire.push_back(EncodeMessage(m));
  for (const std::string& w : wire) {
    auto f = ParseAppendFrame(w);
    ASSERT_TRUE(f.has_value());
    frames.push_back(*f);
  }
  EXPECT_EQ(frames[0].last_index, 13u);
  EXPECT_EQ(frames[0].last_term, 5u);
  EXPECT_EQ(frames[1].last_index, 13u);
  EXPECT_EQ(frames[1].last_term, 5u);
  EXPECT_TRUE(ContinuesAppend(frames[0], frames[1]));
  EXPECT_TRUE(ContinuesAppend(frames[1], frames[2]));
  auto joined = DecodeMessage(JoinAppends(frames));
  ASSERT_TRUE(joined.ok()) << joined.status();
  Message want = msgs[0];
  want.commit = 13;
  for (const Entry& e : msgs[2].entries) want.entries.push_back(e);
  ExpectSame(*joined, want);
  // A run of one is the message itself.
  EXPECT_EQ(JoinAppends({frames[0]}), wire[0]);
}

TEST(Codec, OnlyPlainContinuingAppendsJoin) {
  const std::string first = EncodeMessage(Append(10, 4, 3, 9));
  auto prev = ParseAppendFrame(first);
  ASSERT_TRUE(prev.has_value());
  auto continues = [&](const Message& m) {
    const std::string w = EncodeMessage(m);
    auto f = ParseAppendFrame(w);
    return f.has_value() && ContinuesAppend(*prev, *f);
  };
  EXPECT_TRUE(continues(Append(13, 5, 1, 9)));
  EXPECT_FALSE(continues(Append(14, 5, 1, 9)));  // a gap
  EXPECT_FALSE(continues(Append(12, 5, 1, 9)));  // overlaps
  EXPECT_FALSE(continues(Append(13, 4, 1, 9)));  // another term before it
  Message m = Append(13, 5, 1, 9);
  m.term = 6;
  EXPECT_FALSE(continues(m));
  m = Append(13, 5, 1, 9);
  m.to = 3;
  EXPECT_FALSE(continues(m));
  // Not plain appends: never parsed as frames.
  m = Append(13, 5, 1, 9);
  m.context = "c";
  EXPECT_FALSE(ParseAppendFrame(EncodeMessage(m)).has_value());
  m = Append(13, 5, 1, 9);
  m.reject = true;
  EXPECT_FALSE(ParseAppendFrame(EncodeMessage(m)).has_value());
  m = Append(13, 5, 1, 9);
  m.type = MessageType::kHeartbeat;
  EXPECT_FALSE(ParseAppendFrame(EncodeMessage(m)).has_value());
  m = Append(13, 5, 2, 9);
  m.entries[1].index = 20;  // not consecutive
  EXPECT_FALSE(ParseAppendFrame(EncodeMessage(m)).has_value());
  Message snap = SampleMessage();
  snap.reject = false;
  snap.reject_hint = 0;
  snap.context.clear();
  EXPECT_FALSE(ParseAppendFrame(EncodeMessage(snap)).has_value());
  // Truncations and garbage.
  for (size_t n = 0; n < first.size(); ++n) {
    EXPECT_FALSE(ParseAppendFrame(first.substr(0, n)).has_value()) << n;
  }
  EXPECT_FALSE(ParseAppendFrame(first + "x").has_value());
}

RC_GTEST_PROP(Codec, JoinedRunsDecodeAsTheirConcatenation,
              (uint8_t count, uint64_t start, uint8_t sizes_seed)) {
  const int runs = 1 + count % 6;
  const uint64_t index = start % (uint64_t{1} << 40);
  std::vector<Message> msgs;
  uint64_t next = index;
  for (int i = 0; i < runs; ++i) {
    const int n = (sizes_seed >> i) % 3;
    msgs.push_back(Append(next, i == 0 ? 4 : 5, n, next));
    next += n;
  }
  std::vector<std::string> wire;
  for (const Message& m : msgs) wire.push_back(EncodeMessage(m));
  std::vector<AppendFrame> frames;
  for (const std::string& w : wire) {
    auto f = ParseAppendFrame(w);
    RC_ASSERT(f.has_value());
    if (!frames.empty() && !ContinuesAppend(frames.back(), *f)) {
      // An empty first append names (index, 4), not term 5: only when the
      // first carried entries does the chain hold from the start.
      RC_ASSERT(frames.size() == 1 && msgs[0].entries.empty());
      frames.clear();
    }
    frames.push_back(*f);
  }
  auto d = DecodeMessage(JoinAppends(frames));
  RC_ASSERT(d.ok());
  std::vector<Entry> want;
  for (const Message& m : msgs) {
    for (const Entry& e : m.entries) {
      if (e.index > frames[0].index) want.push_back(e);
    }
  }
  RC_ASSERT(d->entries == want);
  RC_ASSERT(d->commit == msgs.back().commit);
  RC_ASSERT(d->index == frames[0].index);
  RC_ASSERT(d->log_term == frames[0].log_term);
}

}  // namespace
}  // namespace detcd::raft
