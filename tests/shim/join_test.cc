// Joining a running cluster (shim/join.h): the version compatibility rule
// (etcd's isCompatibleWithVers) and the /members JSON both ways.
#include "shim/join.h"

#include <gtest/gtest.h>

namespace detcd::shim {
namespace {

RemoteVersion Answer(uint64_t id, std::string cluster) {
  RemoteVersion v;
  v.id = id;
  v.answered = true;
  v.server = "3.4.23";
  v.cluster = std::move(cluster);
  return v;
}

bool Compatible(const std::vector<RemoteVersion>& v) {
  return IsCompatibleWithVersions(v, "3.0.0", "3.4.0");
}

TEST(JoinVersionTest, AcceptsVersionsWithinRange) {
  EXPECT_TRUE(Compatible({Answer(1, "3.4.0")}));
  EXPECT_TRUE(Compatible({Answer(1, "3.0.0"), Answer(2, "3.3.0")}));
  // A pre-release of the maximum sorts before it.
  EXPECT_TRUE(Compatible({Answer(1, "3.4.0-rc.1")}));
  EXPECT_TRUE(Compatible({Answer(1, "3.4.0+build7")}));
}

TEST(JoinVersionTest, RefusesTooLowOrTooHigh) {
  EXPECT_FALSE(Compatible({Answer(1, "2.3.0")}));
  EXPECT_FALSE(Compatible({Answer(1, "3.5.0")}));
  EXPECT_FALSE(Compatible({Answer(1, "3.4.1")}));
  EXPECT_FALSE(Compatible({Answer(1, "4.0.0")}));
  EXPECT_FALSE(Compatible({Answer(1, "3.0.0-alpha")}));  // below 3.0.0
  // One bad member is enough.
  EXPECT_FALSE(Compatible({Answer(1, "3.4.0"), Answer(2, "3.5.0")}));
}

TEST(JoinVersionTest, NeedsOneParsableAnswer) {
  EXPECT_FALSE(Compatible({}));
  RemoteVersion silent;
  silent.id = 1;
  EXPECT_FALSE(Compatible({silent}));
  EXPECT_FALSE(Compatible({Answer(1, "not_decided")}));
  EXPECT_FALSE(Compatible({Answer(1, "")}));
  EXPECT_FALSE(Compatible({Answer(1, "3.4")}));
  EXPECT_FALSE(Compatible({Answer(1, "3.x.0")}));
  EXPECT_FALSE(Compatible({Answer(1, "3.4.0-rc..1")}));  // empty part
  EXPECT_FALSE(Compatible({Answer(1, "3.4.0-r_c")}));
  // As go-semver: an empty pre-release after "-" is none.
  EXPECT_TRUE(Compatible({Answer(1, "3.4.0-")}));
  // Unparsable or silent members are skipped when another one answers.
  EXPECT_TRUE(
      Compatible({silent, Answer(2, "not_decided"), Answer(3, "3.4.0")}));
}

TEST(JoinMembersJsonTest, RoundTrips) {
  server::MemberInfo a;
  a.id = 0x10;
  a.name = "a";
  a.peer_urls = {"http://127.0.0.1:2380"};
  a.client_urls = {"http://127.0.0.1:2379"};
  server::MemberInfo b;
  b.id = 0x2;
  b.peer_urls = {"http://127.0.0.1:2381"};
  b.is_learner = true;
  const std::string json = PeerMembersJson({b, a});
  EXPECT_EQ(json,
            "[{\"id\":2,\"peerURLs\":[\"http://127.0.0.1:2381\"],"
            "\"isLearner\":true},{\"id\":16,\"peerURLs\":"
            "[\"http://127.0.0.1:2380\"],\"name\":\"a\",\"clientURLs\":"
            "[\"http://127.0.0.1:2379\"]}]\n");
  auto parsed = ParsePeerMembersJson(json);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->size(), 2u);
  EXPECT_EQ((*parsed)[0].id, 2u);
  EXPECT_TRUE((*parsed)[0].is_learner);
  EXPECT_EQ((*parsed)[1].name, "a");
  EXPECT_FALSE(ParsePeerMembersJson("{\"id\":1}").ok());
}

}  // namespace
}  // namespace detcd::shim
