// The membership store: conf change contexts, agreement with raft's
// ConfState, publish, and its snapshot image.
#include "engine/server/membership.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace detcd::server {
namespace {

using raft::ConfChange;
using raft::ConfChangeType;
using raft::ConfState;

MemberInfo Info(uint64_t id, std::string name, std::string peer) {
  MemberInfo m;
  m.id = id;
  m.name = std::move(name);
  m.peer_urls = {std::move(peer)};
  return m;
}

TEST(MemberContext, RoundTripsAndRejectsOtherFormats) {
  MemberInfo m = Info(7, "infra7", "http://10.0.0.7:2380");
  m.client_urls = {"http://10.0.0.7:2379", "http://127.0.0.1:2379"};
  m.is_learner = true;
  MemberInfo back;
  ASSERT_TRUE(DecodeMemberContext(EncodeMemberContext(m), &back));
  EXPECT_EQ(back, m);
  EXPECT_FALSE(DecodeMemberContext("", &back));
  std::string other = EncodeMemberContext(m);
  other[0] = 9;  // a future kind
  EXPECT_FALSE(DecodeMemberContext(other, &back));
  EXPECT_FALSE(DecodeMemberContext(std::string("\x01\xff\xff", 3), &back));
  EXPECT_EQ(back, m);  // untouched by failures
}

// Founders apply their founding entries one by one while raft already
// lists all of them; a joiner fed from index 1 sees raft's membership grow
// with each entry. Both must end with the same store.
TEST(Membership, FoundersAndJoinersAgree) {
  const ConfState all{{1, 2, 3}, {}};
  Membership founder, joiner;
  for (uint64_t id = 1; id <= 3; ++id) {
    ConfChange cc{ConfChangeType::kAddNode, id, ""};
    const std::string ctx = EncodeMemberContext(
        Info(id, "m" + std::to_string(id), "http://h" + std::to_string(id)),
        MemberChange::kFounding);
    EXPECT_TRUE(founder.Check(cc, ctx).ok());
    founder.ApplyConfChange(cc, ctx, all);
    ConfState grown;
    for (uint64_t v = 1; v <= id; ++v) grown.voters.push_back(v);
    joiner.ApplyConfChange(cc, ctx, grown);
  }
  EXPECT_EQ(founder.Snapshot(), joiner.Snapshot());
  std::vector<MemberInfo> list = founder.List();
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[0].id, 1u);
  EXPECT_EQ(list[1].name, "m2");
  EXPECT_EQ(list[2].peer_urls, std::vector<std::string>{"http://h3"});
}

TEST(Membership, LearnersPromotionRemovalAndPublish) {
  Membership m;
  m.ApplyConfChange({ConfChangeType::kAddNode, 1, ""},
                    EncodeMemberContext(Info(1, "a", "http://a")),
                    {{1}, {}});
  // A learner added with only its peer URLs (as etcd's MemberAdd).
  m.ApplyConfChange({ConfChangeType::kAddLearnerNode, 5, ""},
                    EncodeMemberContext(Info(5, "", "http://e")),
                    {{1}, {5}});
  ASSERT_NE(m.Find(5), nullptr);
  EXPECT_TRUE(m.Find(5)->is_learner);
  EXPECT_EQ(m.Find(5)->name, "");
  // It starts and publishes.
  ASSERT_TRUE(m.SetAttributes(5, "e", {"http://e:2379"}).ok());
  // Promotion keeps the published attributes.
  m.ApplyConfChange({ConfChangeType::kAddNode, 5, ""},
                    EncodeMemberContext(Info(5, "", "http://e")),
                    {{1, 5}, {}});
  EXPECT_FALSE(m.Find(5)->is_learner);
  EXPECT_EQ(m.Find(5)->name, "e");
  EXPECT_EQ(m.Find(5)->client_urls,
            std::vector<std::string>{"http://e:2379"});
  // A conf change without a context (the simulator's) still counts.
  m.ApplyConfChange({ConfChangeType::kAddNode, 9, ""}, "", {{1, 5, 9}, {}});
  ASSERT_NE(m.Find(9), nullptr);
  EXPECT_EQ(m.Find(9)->peer_urls.size(), 0u);
  // Removal.
  m.ApplyConfChange({ConfChangeType::kRemoveNode, 5, ""}, "", {{1, 9}, {}});
  EXPECT_EQ(m.Find(5), nullptr);
  EXPECT_TRUE(m.IsRemoved(5));
  EXPECT_EQ(m.SetAttributes(5, "again", {}).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(m.SetAttributes(42, "never", {}).message(),
            "etcdserver: member not found");
}

// Raft refused the change (e.g. demoting a voter): its membership wins.
TEST(Membership, RaftsConfStateDecides) {
  Membership m;
  m.ApplyConfChange({ConfChangeType::kAddNode, 1, ""}, "", {{1}, {}});
  m.ApplyConfChange({ConfChangeType::kAddLearnerNode, 1, ""},
                    EncodeMemberContext(Info(1, "x", "http://x")), {{1}, {}});
  EXPECT_FALSE(m.Find(1)->is_learner);
  m.ApplyConfChange({ConfChangeType::kAddNode, 2, ""},
                    EncodeMemberContext(Info(2, "y", "http://y")), {{1}, {}});
  EXPECT_EQ(m.Find(2), nullptr);
  EXPECT_EQ(m.size(), 1u);
}

TEST(Membership, ImageRoundTripsAndRejectsCorruption) {
  Membership m;
  m.ApplyConfChange({ConfChangeType::kAddNode, 1, ""},
                    EncodeMemberContext(Info(1, "a", "http://a")),
                    {{1}, {}});
  m.ApplyConfChange({ConfChangeType::kAddLearnerNode, 3, ""}, "",
                    {{1}, {3}});
  ASSERT_TRUE(m.SetAttributes(1, "a", {"http://a:2379"}).ok());
  m.ApplyConfChange({ConfChangeType::kRemoveNode, 3, ""}, "", {{1}, {}});
  const std::string image = m.Snapshot();
  Membership back;
  ASSERT_TRUE(back.Restore(image).ok());
  EXPECT_EQ(back.Snapshot(), image);
  EXPECT_EQ(back.List(), m.List());
  EXPECT_TRUE(back.IsRemoved(3));
  for (size_t cut = 0; cut < image.size(); ++cut) {
    EXPECT_FALSE(back.Restore(image.substr(0, cut)).ok()) << cut;
  }
  EXPECT_FALSE(back.Restore(image + "x").ok());
  EXPECT_EQ(back.Snapshot(), image);  // failures change nothing
}

TEST(Membership, ChecksAsEtcdValidatesConfChanges) {
  Membership m;
  m.ApplyConfChange({ConfChangeType::kAddNode, 1, ""},
                    EncodeMemberContext(Info(1, "a", "http://a:1")),
                    {{1}, {}});
  auto ctx = [](uint64_t id, std::string url, MemberChange kind) {
    return EncodeMemberContext(Info(id, "", std::move(url)), kind);
  };
  const ConfChange add2{ConfChangeType::kAddNode, 2, ""};
  EXPECT_TRUE(m.Check(add2, ctx(2, "http://b:1", MemberChange::kAdd)).ok());
  EXPECT_EQ(m.Check(add2, ctx(2, "http://a:1", MemberChange::kAdd)).message(),
            "etcdserver: Peer URLs already exists");
  EXPECT_EQ(m.Check({ConfChangeType::kAddNode, 1, ""},
                    ctx(1, "http://z:1", MemberChange::kAdd))
                .message(),
            "etcdserver: member ID already exist");
  // Raw conf changes are raft's alone.
  EXPECT_TRUE(m.Check({ConfChangeType::kAddNode, 1, ""}, "").ok());
  EXPECT_EQ(m.Check({ConfChangeType::kAddNode, 1, ""},
                    ctx(1, "", MemberChange::kPromote))
                .message(),
            "etcdserver: can only promote a learner member");
  EXPECT_EQ(m.Check({ConfChangeType::kAddNode, 3, ""},
                    ctx(3, "", MemberChange::kPromote))
                .code(),
            absl::StatusCode::kNotFound);
  m.ApplyConfChange({ConfChangeType::kAddLearnerNode, 5, ""},
                    ctx(5, "http://e:1", MemberChange::kAdd), {{1}, {5}});
  EXPECT_TRUE(m.Check({ConfChangeType::kAddNode, 5, ""},
                      ctx(5, "", MemberChange::kPromote))
                  .ok());
  EXPECT_EQ(m.Check({ConfChangeType::kAddLearnerNode, 6, ""},
                    ctx(6, "http://f:1", MemberChange::kAdd))
                .message(),
            "etcdserver: too many learner members in cluster");
  EXPECT_EQ(m.Check({ConfChangeType::kUpdateNode, 1, ""},
                    ctx(1, "http://e:1", MemberChange::kUpdate))
                .message(),
            "etcdserver: Peer URLs already exists");
  EXPECT_TRUE(m.Check({ConfChangeType::kUpdateNode, 1, ""},
                      ctx(1, "http://a:1", MemberChange::kUpdate))
                  .ok());
  m.ApplyConfChange({ConfChangeType::kUpdateNode, 1, ""},
                    ctx(1, "http://a:2", MemberChange::kUpdate), {{1}, {5}});
  EXPECT_EQ(m.Find(1)->peer_urls, std::vector<std::string>{"http://a:2"});
  EXPECT_EQ(m.Find(1)->name, "a");
  m.ApplyConfChange({ConfChangeType::kRemoveNode, 5, ""},
                    ctx(5, "", MemberChange::kRemove), {{1}, {}});
  // A removed id never comes back.
  EXPECT_EQ(m.Check({ConfChangeType::kAddNode, 5, ""},
                    ctx(5, "http://q:1", MemberChange::kAdd))
                .message(),
            "etcdserver: member not found");
  EXPECT_EQ(m.Check({ConfChangeType::kRemoveNode, 9, ""},
                    ctx(9, "", MemberChange::kRemove))
                .code(),
            absl::StatusCode::kNotFound);
}

TEST(Membership, StrictReconfigCounts) {
  Membership m;
  // Two named voters, one unnamed.
  m.ApplyConfChange({ConfChangeType::kAddNode, 1, ""},
                    EncodeMemberContext(Info(1, "a", "http://a:1")),
                    {{1, 2, 3}, {}});
  m.ApplyConfChange({ConfChangeType::kAddNode, 2, ""},
                    EncodeMemberContext(Info(2, "b", "http://b:1")),
                    {{1, 2, 3}, {}});
  EXPECT_FALSE(m.IsReadyToAddVotingMember());  // 2 started of 4 voters
  EXPECT_TRUE(m.IsReadyToRemoveVotingMember(3));   // 2 of 2
  EXPECT_FALSE(m.IsReadyToRemoveVotingMember(1));  // 1 of 2
  EXPECT_TRUE(m.IsReadyToPromoteMember());        // 3 of 4
  Membership one;
  one.ApplyConfChange({ConfChangeType::kAddNode, 1, ""},
                      EncodeMemberContext(Info(1, "a", "http://a:1")),
                      {{1}, {}});
  EXPECT_TRUE(one.IsReadyToAddVotingMember());  // etcd's restore case
}

TEST(MemberUrls, AsEtcdsNewURLs) {
  auto ok = ParseMemberUrls({" http://b:2380", "https://a:2380",
                             "unix://sock:0", "HTTP://[fe80::1]:2380",
                             "http://user@h:1?q=1"});
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->front(), "HTTP://[fe80::1]:2380");
  for (const char* bad :
       {"", "b:2380", "ftp://a:1", "http://a", "http://a:1/", "http://a:1/x",
        "http://a:1:2", "http://[::1]"}) {
    EXPECT_EQ(ParseMemberUrls({bad}).status().message(),
              "etcdserver: given member URLs are invalid")
        << bad;
  }
  EXPECT_FALSE(ParseMemberUrls({}).ok());
}

TEST(Membership, ToProtoIsEtcdsMember) {
  MemberInfo m = Info(9, "n9", "http://p9");
  m.client_urls = {"http://c9"};
  m.is_learner = true;
  etcdserverpb::Member pb;
  ToProto(m, &pb);
  EXPECT_EQ(pb.id(), 9u);
  EXPECT_EQ(pb.name(), "n9");
  EXPECT_EQ(pb.peerurls(0), "http://p9");
  EXPECT_EQ(pb.clienturls(0), "http://c9");
  EXPECT_TRUE(pb.islearner());
}

}  // namespace
}  // namespace detcd::server
