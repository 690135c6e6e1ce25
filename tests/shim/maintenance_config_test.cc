// etcd's --auto-compaction-retention parsing and the maintenance flags'
// way into EtcdServerOptions (shim/maintenance.h).
#include <cstdlib>

#include "gtest/gtest.h"
#include "shim/config.h"
#include "shim/maintenance.h"

namespace detcd::shim {
namespace {

constexpr int64_t kHour = int64_t{3600} * 1'000'000'000;

TEST(CompactionRetention, BareNumbersAreHoursOrRevisions) {
  EXPECT_EQ(*ParseCompactionRetention("periodic", "1"), kHour);
  EXPECT_EQ(*ParseCompactionRetention("periodic", "24"), 24 * kHour);
  EXPECT_EQ(*ParseCompactionRetention("revision", "1000"), 1000);
  EXPECT_EQ(*ParseCompactionRetention("periodic", "0"), 0);
  EXPECT_EQ(*ParseCompactionRetention("revision", "+5"), 5);  // Go's Atoi
  EXPECT_EQ(*ParseCompactionRetention("periodic", "-0"), 0);
}

TEST(CompactionRetention, OtherTextIsAGoDuration) {
  EXPECT_EQ(*ParseCompactionRetention("periodic", "30m"), kHour / 2);
  EXPECT_EQ(*ParseCompactionRetention("periodic", "1h30m"), kHour * 3 / 2);
  EXPECT_EQ(*ParseCompactionRetention("periodic", "2.5s"), 2'500'000'000);
  // etcd counts a duration's nanoseconds as revisions in revision mode.
  EXPECT_EQ(*ParseCompactionRetention("revision", "1us"), 1000);
}

TEST(CompactionRetention, ErrorsAreEtcds) {
  EXPECT_EQ(ParseCompactionRetention("periodic", "abc").status().message(),
            "error parsing CompactionRetention: time: invalid duration "
            "\"abc\"");
  EXPECT_EQ(ParseCompactionRetention("periodic", "-5").status().message(),
            "error parsing CompactionRetention: time: missing unit in "
            "duration \"-5\"");
  EXPECT_EQ(ParseCompactionRetention("periodic", "1.5").status().message(),
            "error parsing CompactionRetention: time: missing unit in "
            "duration \"1.5\"");
  EXPECT_EQ(ParseCompactionRetention("periodic", "5x").status().message(),
            "error parsing CompactionRetention: time: unknown unit \"x\" in "
            "duration \"5x\"");
  EXPECT_FALSE(ParseCompactionRetention("periodic", "-1h").ok());
}

ServerConfig Config(std::vector<std::string> args) {
  ParseOutcome p = ParseServerConfig(args, {});
  EXPECT_EQ(p.action, ParseOutcome::Action::kRun) << p.output;
  return p.config;
}

TEST(MaintenanceOptions, FlagsReachTheEngine) {
  auto off = MaintenanceOptionsFromConfig(Config({}));
  ASSERT_TRUE(off.ok());
  EXPECT_EQ(off->auto_compaction.mode, server::CompactorOptions::Mode::kOff);
  EXPECT_FALSE(off->corrupt_check.initial);
  EXPECT_EQ(off->corrupt_check.interval_ns, 0);

  auto periodic = MaintenanceOptionsFromConfig(
      Config({"--auto-compaction-retention=2",
              "--experimental-initial-"
              "corrupt-check",
              "--experimental-corrupt-check-time=90s"}));
  ASSERT_TRUE(periodic.ok());
  EXPECT_EQ(periodic->auto_compaction.mode,
            server::CompactorOptions::Mode::kPeriodic);
  EXPECT_EQ(periodic->auto_compaction.retention, 2 * kHour);
  EXPECT_TRUE(periodic->corrupt_check.initial);
  EXPECT_EQ(periodic->corrupt_check.interval_ns, int64_t{90'000'000'000});

  ::unsetenv(kRevisionIntervalVariable);
  auto revision = MaintenanceOptionsFromConfig(Config(
      {"--auto-compaction-mode=revision", "--auto-compaction-retention=50"}));
  ASSERT_TRUE(revision.ok());
  EXPECT_EQ(revision->auto_compaction.mode,
            server::CompactorOptions::Mode::kRevision);
  EXPECT_EQ(revision->auto_compaction.retention, 50);
  EXPECT_EQ(revision->auto_compaction.revision_interval_ns,
            int64_t{300'000'000'000});  // etcd's 5 minutes
  ::setenv(kRevisionIntervalVariable, "2s", 1);
  auto shortened = MaintenanceOptionsFromConfig(Config(
      {"--auto-compaction-mode=revision", "--auto-compaction-retention=50"}));
  ::unsetenv(kRevisionIntervalVariable);
  ASSERT_TRUE(shortened.ok());
  EXPECT_EQ(shortened->auto_compaction.revision_interval_ns, 2'000'000'000);

  EXPECT_FALSE(
      MaintenanceOptionsFromConfig(Config({"--auto-compaction-retention=abc"}))
          .ok());
  EXPECT_FALSE(
      MaintenanceOptionsFromConfig(Config({"--auto-compaction-retention=5ns"}))
          .ok());
}

}  // namespace
}  // namespace detcd::shim
