// Tests of detcd's etcd-compatible configuration parsing (shim/config.h).
// Expected texts are etcd 3.4.23's; the EtcdConformance suite runs the real
// etcd binary (Debian's etcd-server) on failing inputs and compares.
#include "shim/config.h"

#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace detcd::shim {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;

using Args = std::vector<std::string>;

ParseOutcome Parse(const Args& args, const Args& env = {}) {
  return ParseServerConfig(args, env);
}

// Parses and expects success.
ServerConfig Ok(const Args& args, const Args& env = {}) {
  ParseOutcome o = Parse(args, env);
  EXPECT_EQ(o.action, ParseOutcome::Action::kRun) << o.output;
  return o.config;
}

std::vector<std::string> Raw(const std::vector<Url>& urls) {
  std::vector<std::string> out;
  for (const Url& u : urls) out.push_back(u.raw);
  return out;
}

bool Contains(const std::vector<std::string>& v, const std::string& s) {
  for (const auto& x : v) {
    if (x == s) return true;
  }
  return false;
}

// A temp dir removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "detcd-config-test-XXXXXX")
            .string();
    char* p = mkdtemp(tmpl.data());
    EXPECT_NE(p, nullptr);
    path_ = tmpl;
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string Write(const std::string& name, const std::string& text) const {
    const std::string p = path_ + "/" + name;
    std::ofstream(p) << text;
    return p;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(ConfigDefaults, MatchEtcd) {
  ServerConfig c = Ok({});
  EXPECT_EQ(c.name, "default");
  EXPECT_EQ(c.data_dir, "default.etcd");
  EXPECT_EQ(c.wal_dir, "");
  EXPECT_EQ(c.snapshot_count, 100000u);
  EXPECT_EQ(c.heartbeat_interval_ms, 100);
  EXPECT_EQ(c.election_timeout_ms, 1000);
  EXPECT_TRUE(c.initial_election_tick_advance);
  EXPECT_THAT(Raw(c.listen_client_urls), ElementsAre("http://localhost:2379"));
  EXPECT_THAT(Raw(c.advertise_client_urls),
              ElementsAre("http://localhost:2379"));
  EXPECT_THAT(Raw(c.listen_peer_urls), ElementsAre("http://localhost:2380"));
  EXPECT_THAT(Raw(c.initial_advertise_peer_urls),
              ElementsAre("http://localhost:2380"));
  EXPECT_THAT(c.listen_metrics_urls, IsEmpty());
  EXPECT_EQ(c.initial_cluster_string, "default=http://localhost:2380");
  ASSERT_EQ(c.initial_cluster.size(), 1u);
  EXPECT_EQ(c.initial_cluster[0].name, "default");
  EXPECT_THAT(Raw(c.initial_cluster[0].peer_urls),
              ElementsAre("http://localhost:2380"));
  EXPECT_EQ(c.initial_cluster_token, "etcd-cluster");
  EXPECT_EQ(c.initial_cluster_state, "new");
  EXPECT_EQ(c.quota_backend_bytes, 0);
  EXPECT_EQ(c.max_request_bytes, 1572864u);
  EXPECT_EQ(c.max_txn_ops, 128u);
  EXPECT_EQ(c.max_concurrent_streams, 4294967295u);
  EXPECT_EQ(c.grpc_keepalive_min_time_ms, 5000);
  EXPECT_EQ(c.grpc_keepalive_interval_ms, 7200000);
  EXPECT_EQ(c.grpc_keepalive_timeout_ms, 20000);
  EXPECT_FALSE(c.pre_vote);
  EXPECT_TRUE(c.strict_reconfig_check);
  EXPECT_FALSE(c.force_new_cluster);
  EXPECT_EQ(c.log_level, "info");
  EXPECT_EQ(c.logger, "zap");
  EXPECT_THAT(c.log_outputs, ElementsAre("default"));
  EXPECT_FALSE(c.client_tls.enabled());
  EXPECT_FALSE(c.peer_tls.enabled());
  EXPECT_EQ(c.auto_compaction_mode, "periodic");
  EXPECT_EQ(c.auto_compaction_retention, "0");
  EXPECT_EQ(c.auth_token, "simple");
  EXPECT_EQ(c.bcrypt_cost, 10u);
  EXPECT_EQ(c.auth_token_ttl, 300u);
  EXPECT_THAT(c.cors, ElementsAre("*"));
  EXPECT_THAT(c.host_whitelist, ElementsAre("*"));
  EXPECT_EQ(c.metrics, "basic");
  EXPECT_TRUE(c.enable_grpc_gateway);
  EXPECT_FALSE(c.enable_v2);
  EXPECT_EQ(c.proxy, "off");
  EXPECT_EQ(c.discovery_fallback, "proxy");
  EXPECT_EQ(c.max_snapshots, 5u);
  EXPECT_EQ(c.max_wals, 5u);
  EXPECT_THAT(c.explicitly_set, IsEmpty());
  EXPECT_TRUE(Contains(c.warnings,
                       "no data-dir provided, using default data-dir "
                       "./default.etcd"));
  EXPECT_EQ(std::string(kServerVersion), "3.4.23");
  EXPECT_EQ(std::string(kClusterVersion), "3.4.0");
}

TEST(ConfigFlags, GoFlagSyntaxes) {
  EXPECT_EQ(Ok({"--name=a"}).name, "a");
  EXPECT_EQ(Ok({"--name", "a"}).name, "a");
  EXPECT_EQ(Ok({"-name", "a"}).name, "a");
  EXPECT_EQ(Ok({"-name=a"}).name, "a");
  // A value may start with a dash: Go takes the next argument whole.
  EXPECT_EQ(Ok({"--name", "-x"}).name, "-x");
  EXPECT_EQ(Ok({"--name="}).name, "");
  // Last one wins.
  EXPECT_EQ(Ok({"--name=a", "--name=b"}).name, "b");
  EXPECT_TRUE(Ok({"--pre-vote"}).pre_vote);
  EXPECT_TRUE(Ok({"-pre-vote=true"}).pre_vote);
  EXPECT_TRUE(Ok({"--pre-vote=1"}).pre_vote);
  EXPECT_TRUE(Ok({"--pre-vote=T"}).pre_vote);
  EXPECT_FALSE(Ok({"--strict-reconfig-check=false"}).strict_reconfig_check);
  EXPECT_FALSE(Ok({"--strict-reconfig-check=0"}).strict_reconfig_check);
  // Go's base prefixes and digit separators.
  EXPECT_EQ(Ok({"--snapshot-count=0x10"}).snapshot_count, 16u);
  EXPECT_EQ(Ok({"--snapshot-count=010"}).snapshot_count, 8u);
  EXPECT_EQ(Ok({"--snapshot-count=1_000"}).snapshot_count, 1000u);
  EXPECT_EQ(Ok({"--quota-backend-bytes=-1"}).quota_backend_bytes, -1);
  EXPECT_EQ(Ok({"--quota-backend-bytes=8589934592"}).quota_backend_bytes,
            8589934592);
  EXPECT_EQ(Ok({"--grpc-keepalive-min-time=1m30s"}).grpc_keepalive_min_time_ms,
            90000);
  EXPECT_EQ(Ok({"--grpc-keepalive-interval=0"}).grpc_keepalive_interval_ms, 0);
  EXPECT_EQ(Ok({"--grpc-keepalive-timeout=1.5s"}).grpc_keepalive_timeout_ms,
            1500);
  EXPECT_EQ(Ok({"--max-txn-ops=1024"}).max_txn_ops, 1024u);
  EXPECT_EQ(Ok({"--max-request-bytes=10485760"}).max_request_bytes, 10485760u);
  EXPECT_EQ(Ok({"--max-concurrent-streams=100"}).max_concurrent_streams, 100u);
  ServerConfig c = Ok({"--heartbeat-interval=50", "--election-timeout=500",
                       "--snapshot-count", "7", "--data-dir", "/tmp/x",
                       "--wal-dir=/tmp/w", "--initial-cluster-state=existing",
                       "--initial-cluster-token=tok", "--force-new-cluster"});
  EXPECT_EQ(c.heartbeat_interval_ms, 50);
  EXPECT_EQ(c.election_timeout_ms, 500);
  EXPECT_EQ(c.snapshot_count, 7u);
  EXPECT_EQ(c.data_dir, "/tmp/x");
  EXPECT_EQ(c.wal_dir, "/tmp/w");
  EXPECT_EQ(c.initial_cluster_state, "existing");
  EXPECT_EQ(c.initial_cluster_token, "tok");
  EXPECT_TRUE(c.force_new_cluster);
  EXPECT_TRUE(Contains(c.explicitly_set, "force-new-cluster"));
  EXPECT_TRUE(Contains(c.explicitly_set, "data-dir"));
  EXPECT_FALSE(Contains(c.warnings,
                        "no data-dir provided, using default data-dir "
                        "./default.etcd"));
}

TEST(ConfigFlags, UrlListsAreSortedAndValidated) {
  ServerConfig c =
      Ok({"--listen-client-urls", "http://127.0.0.1:2379, https://[::1]:22379",
          "--advertise-client-urls=http://10.0.0.1:2379",
          "--listen-peer-urls=unix://localhost:12345",
          "--listen-metrics-urls=http://0.0.0.0:9090"});
  EXPECT_THAT(Raw(c.listen_client_urls),
              ElementsAre("http://127.0.0.1:2379", "https://[::1]:22379"));
  EXPECT_EQ(c.listen_client_urls[1].host, "::1");
  EXPECT_EQ(c.listen_client_urls[1].port, 22379);
  EXPECT_EQ(c.listen_client_urls[1].scheme, "https");
  EXPECT_EQ(c.listen_peer_urls[0].scheme, "unix");
  EXPECT_THAT(Raw(c.listen_metrics_urls), ElementsAre("http://0.0.0.0:9090"));
  // etcd's UniqueURLs: "" is an allowed value that changes nothing.
  EXPECT_THAT(Raw(Ok({"--listen-peer-urls="}).listen_peer_urls),
              ElementsAre("http://localhost:2380"));
}

TEST(ConfigFlags, ListenClientUrlsNeedAdvertise) {
  ParseOutcome o = Parse({"--listen-client-urls=http://127.0.0.1:2379"});
  ASSERT_EQ(o.action, ParseOutcome::Action::kPrintAndExit);
  EXPECT_EQ(o.exit_code, 1);
  EXPECT_TRUE(o.output_to_stderr);
  EXPECT_EQ(o.error,
            "--advertise-client-urls is required when --listen-client-urls is "
            "set explicitly");
  EXPECT_THAT(o.output,
              StartsWith("error verifying flags, --advertise-client-urls is "
                         "required when --listen-client-urls is set "
                         "explicitly. See 'detcd --help'.\n"));
  EXPECT_THAT(o.output, HasSubstr("must advertise accessible url(s)"));
  // Through the environment it is the same.
  EXPECT_EQ(
      Parse({}, {"ETCD_LISTEN_CLIENT_URLS=http://127.0.0.1:2379"}).exit_code,
      1);
  // With discovery falling back to a proxy etcd lets it through.
  ServerConfig c = Ok({"--listen-client-urls=http://127.0.0.1:2379",
                       "--discovery=https://discovery.example/abc"});
  EXPECT_THAT(Raw(c.advertise_client_urls),
              ElementsAre("http://localhost:2379"));
  EXPECT_EQ(c.initial_cluster_string, "");
  EXPECT_THAT(c.initial_cluster, IsEmpty());
}

// The flag-stage errors: Go's flag package prints the error and the usage
// to stderr, and etcd exits 2.
void ExpectFlagError(const Args& args, const std::string& first_line) {
  SCOPED_TRACE(testing::PrintToString(args));
  ParseOutcome o = Parse(args);
  ASSERT_EQ(o.action, ParseOutcome::Action::kPrintAndExit);
  EXPECT_EQ(o.exit_code, 2);
  EXPECT_TRUE(o.output_to_stderr);
  EXPECT_EQ(o.error, first_line);
  EXPECT_THAT(o.output, StartsWith(first_line + "\nUsage:\n\n  detcd [flags]"));
}

TEST(ConfigFlags, BadValuesExitTwoWithUsage) {
  ExpectFlagError(
      {"--snapshot-count=abc"},
      "invalid value \"abc\" for flag -snapshot-count: parse error");
  ExpectFlagError({"--snapshot-count=-1"},
                  "invalid value \"-1\" for flag -snapshot-count: parse error");
  ExpectFlagError({"--heartbeat-interval=99999999999999999999"},
                  "invalid value \"99999999999999999999\" for flag "
                  "-heartbeat-interval: value out of range");
  ExpectFlagError({"--grpc-keepalive-min-time=5"},
                  "invalid value \"5\" for flag -grpc-keepalive-min-time: "
                  "parse error");
  ExpectFlagError({"--max-concurrent-streams=abc"},
                  "invalid value \"abc\" for flag -max-concurrent-streams: "
                  "strconv.ParseUint: parsing \"abc\": invalid syntax");
  ExpectFlagError({"--max-concurrent-streams=4294967296"},
                  "invalid value \"4294967296\" for flag "
                  "-max-concurrent-streams: strconv.ParseUint: parsing "
                  "\"4294967296\": value out of range");
  ExpectFlagError({"--nosuchflag"},
                  "flag provided but not defined: -nosuchflag");
  ExpectFlagError({"-nosuchflag=3"},
                  "flag provided but not defined: -nosuchflag");
  ExpectFlagError({"--name"}, "flag needs an argument: -name");
  ExpectFlagError(
      {"--enable-v2=maybe"},
      "invalid boolean value \"maybe\" for -enable-v2: parse error");
  ExpectFlagError({"---name=x"}, "bad flag syntax: ---name=x");
  ExpectFlagError({"-=x"}, "bad flag syntax: -=x");
  ExpectFlagError({"--initial-cluster-state=bogus"},
                  "invalid value \"bogus\" for flag -initial-cluster-state: "
                  "invalid value");
  ExpectFlagError({"--listen-client-urls=ftp://a:1"},
                  "invalid value \"ftp://a:1\" for flag -listen-client-urls: "
                  "URL scheme must be http, https, unix, or unixs: ftp://a:1");
  ExpectFlagError({"--listen-client-urls=http://a"},
                  "invalid value \"http://a\" for flag -listen-client-urls: "
                  "URL address does not have the form \"host:port\": "
                  "http://a");
  ExpectFlagError({"--listen-client-urls=http://a:1/x"},
                  "invalid value \"http://a:1/x\" for flag "
                  "-listen-client-urls: URL must not contain a path: "
                  "http://a:1/x");
  ExpectFlagError({"--listen-peer-urls=127.0.0.1:2380"},
                  "invalid value \"127.0.0.1:2380\" for flag "
                  "-listen-peer-urls: parse \"127.0.0.1:2380\": first path "
                  "segment in URL cannot contain colon");
  ExpectFlagError({"--advertise-client-urls=http://a:b"},
                  "invalid value \"http://a:b\" for flag "
                  "-advertise-client-urls: parse \"http://a:b\": invalid port "
                  "\":b\" after host");
  ExpectFlagError({"--cors=ftp://x:1"},
                  "invalid value \"ftp://x:1\" for flag -cors: URL scheme must "
                  "be http, https, unix, or unixs: ftp://x:1");
  ExpectFlagError({"--proxy=sometimes"},
                  "invalid value \"sometimes\" for flag -proxy: invalid value");
}

TEST(ConfigFlags, StrayArgumentsExitOne) {
  ParseOutcome o = Parse({"stray"});
  EXPECT_EQ(o.exit_code, 1);
  EXPECT_EQ(o.output,
            "error verifying flags, 'stray' is not a valid flag. See 'detcd "
            "--help'.\n");
  // A bool flag takes no separate value.
  EXPECT_EQ(Parse({"--pre-vote", "false"}).error,
            "'false' is not a valid flag");
  // "--" ends the flags.
  EXPECT_EQ(Parse({"--", "--name=x"}).error, "'--name=x' is not a valid flag");
  EXPECT_EQ(Parse({"-"}).error, "'-' is not a valid flag");
}

TEST(ConfigFlags, ValidationErrorsExitOne) {
  struct Case {
    Args args;
    std::string error;
  };
  const Case cases[] = {
      {{"--election-timeout=10"},
       "--election-timeout[10ms] should be at least as 5 times as "
       "--heartbeat-interval[100ms]"},
      {{"--election-timeout=60000"},
       "--election-timeout[60000ms] is too long, and should be set less than "
       "50000ms"},
      {{"--heartbeat-interval=0"},
       "--heartbeat-interval must be >0 (set to 0ms)"},
      {{"--election-timeout=0"}, "--election-timeout must be >0 (set to 0ms)"},
      {{"--listen-client-urls=http://example.com:1",
        "--advertise-client-urls=http://a:1"},
       "expected IP in URL for binding (http://example.com:1)"},
      {{"--listen-peer-urls=http://example.com:1"},
       "expected IP in URL for binding (http://example.com:1)"},
      {{"--advertise-client-urls=http://:1"},
       "--advertise-client-urls \"http://:1\" must be \"host:port\" "
       "(unexpected empty host (http://:1))"},
      {{"--initial-advertise-peer-urls=http://:1"},
       "--initial-advertise-peer-urls \"http://:1\" must be \"host:port\" "
       "(unexpected empty host (http://:1))"},
      {{"--discovery=http://x", "--initial-cluster=a=http://b:1"},
       "multiple discovery or bootstrap flags are set. Choose one of "
       "\"initial-cluster\", \"discovery\" or \"discovery-srv\""},
      {{"--auto-compaction-mode=x"}, "unknown auto-compaction-mode \"x\""},
      {{"--experimental-enable-lease-checkpoint-persist"},
       "setting experimental-enable-lease-checkpoint-persist requires "
       "experimental-enable-lease-checkpoint"},
      {{"--logger=glog"}, "unknown logger option \"glog\""},
      {{"--log-level=loud"}, "unknown level \"loud\""},
      {{"--log-outputs=default,stderr"},
       "multi logoutput for \"default\" is not supported yet"},
      {{"--logger=capnslog", "--log-outputs=stderr,stdout"},
       "--logger=capnslog supports only 1 value in '--log-outputs', got "
       "[\"stderr\" \"stdout\"]"},
      {{"--logger=capnslog", "--log-outputs=/tmp/f"},
       "unknown log-output \"/tmp/f\" (only supports \"default\", "
       "\"stderr\", \"stdout\")"},
      {{"--log-output=stdout", "--log-outputs=stdout"},
       "'--log-output=[\"stdout\"]' and '--log-outputs=[\"stdout\"]' are "
       "incompatible; only set --log-outputs"},
  };
  for (const Case& tc : cases) {
    SCOPED_TRACE(testing::PrintToString(tc.args));
    ParseOutcome o = Parse(tc.args);
    ASSERT_EQ(o.action, ParseOutcome::Action::kPrintAndExit);
    EXPECT_EQ(o.exit_code, 1);
    EXPECT_TRUE(o.output_to_stderr);
    EXPECT_EQ(o.error, tc.error);
    EXPECT_THAT(o.output, StartsWith("error verifying flags, " + tc.error +
                                     ". See 'detcd --help'.\n"));
  }
  // Bounds that pass.
  ServerConfig c =
      Ok({"--heartbeat-interval=10000", "--election-timeout=50000"});
  EXPECT_EQ(c.election_timeout_ms, 50000);
  EXPECT_EQ(Ok({"--heartbeat-interval=10", "--election-timeout=50"})
                .election_timeout_ms,
            50);
}

TEST(ConfigEnv, VariablesFillUnsetFlags) {
  ServerConfig c = Ok(
      {"--name=n1"},
      {"PATH=/bin", "ETCD_DATA_DIR=/var/lib/x", "ETCD_PRE_VOTE=true",
       "ETCD_SNAPSHOT_COUNT=42", "ETCD_LISTEN_PEER_URLS=http://127.0.0.1:12380",
       "ETCD_INITIAL_ADVERTISE_PEER_URLS=http://127.0.0.1:12380",
       "ETCD_GRPC_KEEPALIVE_TIMEOUT=3s"});
  EXPECT_EQ(c.name, "n1");
  EXPECT_EQ(c.data_dir, "/var/lib/x");
  EXPECT_TRUE(c.pre_vote);
  EXPECT_EQ(c.snapshot_count, 42u);
  EXPECT_EQ(c.grpc_keepalive_timeout_ms, 3000);
  EXPECT_THAT(Raw(c.listen_peer_urls), ElementsAre("http://127.0.0.1:12380"));
  // The renamed member's default initial cluster uses its advertised URL.
  EXPECT_EQ(c.initial_cluster_string, "n1=http://127.0.0.1:12380");
  EXPECT_TRUE(Contains(c.notices,
                       "recognized and used environment variable "
                       "ETCD_DATA_DIR=/var/lib/x"));
  EXPECT_TRUE(Contains(c.explicitly_set, "pre-vote"));
  EXPECT_THAT(c.warnings,
              ::testing::Not(::testing::Contains(HasSubstr("unrecognized"))));
}

TEST(ConfigEnv, ConflictWithFlagIsFatal) {
  const std::string want =
      "conflicting environment variable \"ETCD_NAME\" is shadowed by "
      "corresponding command-line flag (either unset environment variable or "
      "disable flag)";
  ParseOutcome o = Parse({"--name=y"}, {"ETCD_NAME=x"});
  ASSERT_EQ(o.action, ParseOutcome::Action::kPrintAndExit);
  EXPECT_EQ(o.exit_code, 1);
  EXPECT_TRUE(o.output_to_stderr);
  EXPECT_EQ(o.error, want);
  EXPECT_EQ(o.output, want + "\n");
  // An empty variable still conflicts (etcd checks presence).
  EXPECT_EQ(Parse({"--name=y"}, {"ETCD_NAME="}).error, want);
  // Single-dash flags and bools too.
  EXPECT_THAT(Parse({"-pre-vote"}, {"ETCD_PRE_VOTE=false"}).error,
              HasSubstr("\"ETCD_PRE_VOTE\" is shadowed"));
}

TEST(ConfigEnv, UnknownVariablesWarnEtcdctlIgnored) {
  ServerConfig c =
      Ok({}, {"ETCD_FOO=bar", "ETCDCTL_API=3", "ETCDCTL_ENDPOINTS=http://x:1",
              "HOME=/root", "ETCD_NAME="});
  EXPECT_TRUE(
      Contains(c.warnings, "unrecognized environment variable ETCD_FOO=bar"));
  // An empty ETCD_ variable is not used, so etcd calls it unrecognized.
  EXPECT_TRUE(
      Contains(c.warnings, "unrecognized environment variable ETCD_NAME="));
  for (const std::string& w : c.warnings) {
    EXPECT_THAT(w, ::testing::Not(HasSubstr("ETCDCTL")));
    EXPECT_THAT(w, ::testing::Not(HasSubstr("HOME")));
  }
  EXPECT_EQ(c.name, "default");
}

TEST(ConfigEnv, WarningsSurviveAFailure) {
  ParseOutcome o = Parse({"--election-timeout=10", "-v"}, {"ETCD_FOO=1"});
  EXPECT_EQ(o.exit_code, 1);
  EXPECT_TRUE(Contains(o.config.warnings,
                       "unrecognized environment variable ETCD_FOO=1"));
  EXPECT_TRUE(Contains(o.config.warnings,
                       "flag \"-v\" is no longer supported - ignoring."));
}

TEST(ConfigEnv, BadValueReportsVariable) {
  ParseOutcome o = Parse({}, {"ETCD_SNAPSHOT_COUNT=abc"});
  EXPECT_EQ(o.exit_code, 1);
  EXPECT_EQ(o.error,
            "invalid value \"abc\" for ETCD_SNAPSHOT_COUNT: parse error");
  EXPECT_EQ(o.output,
            "error verifying flags, invalid value \"abc\" for "
            "ETCD_SNAPSHOT_COUNT: parse error. See 'detcd --help'.\n");
  // The conflict check comes first, as in etcd.
  o = Parse({"--name=x"}, {"ETCD_SNAPSHOT_COUNT=abc", "ETCD_NAME=y"});
  EXPECT_THAT(o.error, HasSubstr("conflicting environment variable"));
}

TEST(ConfigEnv, FirstDuplicateWins) {
  EXPECT_EQ(Ok({}, {"ETCD_NAME=a", "ETCD_NAME=b"}).name, "a");
}

TEST(ConfigRefused, V2FlagsAreRefused) {
  for (const Args& args :
       {Args{"--enable-v2"}, Args{"--enable-v2=true"}, Args{"--proxy=on"},
        Args{"--proxy", "readonly"}, Args{"--experimental-enable-v2v3=/v2/"}}) {
    SCOPED_TRACE(testing::PrintToString(args));
    ParseOutcome o = Parse(args);
    ASSERT_EQ(o.action, ParseOutcome::Action::kPrintAndExit);
    EXPECT_EQ(o.exit_code, 1);
    EXPECT_TRUE(o.output_to_stderr);
    EXPECT_THAT(o.output, HasSubstr("detcd does not serve etcd's v2 API"));
  }
  EXPECT_EQ(Parse({}, {"ETCD_ENABLE_V2=true"}).exit_code, 1);
  // The values that serve nothing v2 are fine.
  EXPECT_FALSE(Ok({"--enable-v2=false"}).enable_v2);
  EXPECT_EQ(
      Ok({"--proxy=off", "--proxy-dial-timeout=3000"}).proxy_dial_timeout_ms,
      3000u);
  EXPECT_EQ(Ok({"--discovery-fallback=exit"}).discovery_fallback, "exit");
}

TEST(ConfigDeprecated, WarningsAndIgnoredFlags) {
  ServerConfig c = Ok({"--debug", "--log-package-levels=etcdmain=DEBUG",
                       "--logger=capnslog", "-v", "--snapshot"});
  EXPECT_TRUE(c.debug);
  EXPECT_EQ(c.logger, "capnslog");
  EXPECT_EQ(c.log_level, "debug");  // capnslog's --debug
  EXPECT_TRUE(Contains(c.warnings,
                       "Deprecated '--debug' flag is set to true (use "
                       "'--log-level=debug' instead"));
  EXPECT_TRUE(Contains(c.warnings,
                       "Deprecated '--logger=capnslog' flag is set; use "
                       "'--logger=zap' flag instead"));
  EXPECT_TRUE(Contains(c.warnings,
                       "Deprecated '--log-package-levels=etcdmain=DEBUG' flag "
                       "is set; use '--logger=zap' flag instead"));
  EXPECT_TRUE(
      Contains(c.warnings, "flag \"-v\" is no longer supported - ignoring."));
  EXPECT_TRUE(Contains(
      c.warnings, "flag \"-snapshot\" is no longer supported - ignoring."));
  // --log-output alone (same length as --log-outputs) only warns in 3.4.
  c = Ok({"--log-output=stderr"});
  EXPECT_THAT(c.log_outputs, ElementsAre("default"));
  EXPECT_TRUE(Contains(c.warnings,
                       "Deprecated '--log-output' flag is set to [\"stderr\"]; "
                       "please use '--log-outputs' flag"));
  // Log outputs are a sorted set, as etcd's UniqueStrings.
  EXPECT_THAT(Ok({"--log-outputs=stdout,stderr,stdout"}).log_outputs,
              ElementsAre("stderr", "stdout"));
}

TEST(ConfigCluster, InitialClusterParsing) {
  ServerConfig c =
      Ok({"--name=n1",
          "--initial-cluster=n1=http://10.0.0.2:2380,n2=http://10.0.0.3:2380,"
          "n1=http://10.0.0.1:2380,,n3=https://[::1]:2380",
          "--initial-advertise-peer-urls=http://10.0.0.1:2380,http://"
          "10.0.0.2:2380"});
  ASSERT_EQ(c.initial_cluster.size(), 3u);
  EXPECT_EQ(c.initial_cluster[0].name, "n1");
  EXPECT_THAT(Raw(c.initial_cluster[0].peer_urls),
              ElementsAre("http://10.0.0.1:2380", "http://10.0.0.2:2380"));
  EXPECT_EQ(c.initial_cluster[1].name, "n2");
  EXPECT_EQ(c.initial_cluster[2].name, "n3");
  EXPECT_EQ(c.initial_cluster[2].peer_urls[0].host, "::1");
  EXPECT_EQ(c.initial_cluster_error, "");

  // A renamed member with several advertised URLs.
  c = Ok({"--name=solo", "--initial-advertise-peer-urls",
          "http://127.0.0.2:2380,http://127.0.0.1:2380"});
  EXPECT_EQ(c.initial_cluster_string,
            "solo=http://127.0.0.1:2380,solo=http://127.0.0.2:2380");
  ASSERT_EQ(c.initial_cluster.size(), 1u);
  EXPECT_EQ(c.initial_cluster[0].peer_urls.size(), 2u);
  EXPECT_EQ(c.data_dir, "solo.etcd");

  // etcd keeps the default cluster when only the advertise URL changes.
  c = Ok({"--initial-advertise-peer-urls=http://127.0.0.1:2380"});
  EXPECT_EQ(c.initial_cluster_string, "default=http://localhost:2380");

  // A malformed cluster is reported when bootstrapping, not at parse.
  c = Ok({"--initial-cluster=n1"});
  EXPECT_THAT(c.initial_cluster, IsEmpty());
  EXPECT_EQ(c.initial_cluster_error,
            "error setting up initial cluster: URL scheme must be http, "
            "https, unix, or unixs: ");

  // Discovery replaces the default cluster.
  c = Ok({"--discovery-srv=example.com"});
  EXPECT_EQ(c.initial_cluster_string, "");
  EXPECT_EQ(c.discovery_srv, "example.com");
}

TEST(ConfigVersionHelp, VersionOutput) {
  for (const Args& args : {Args{"--version"}, Args{"-version"},
                           Args{"--version=true", "--name=x"}}) {
    ParseOutcome o = Parse(args);
    ASSERT_EQ(o.action, ParseOutcome::Action::kPrintAndExit);
    EXPECT_EQ(o.exit_code, 0);
    EXPECT_FALSE(o.output_to_stderr);
    EXPECT_THAT(o.output, StartsWith("etcd Version: 3.4.23\nGit SHA: "));
    EXPECT_THAT(o.output, HasSubstr("\nGo Version: detcd\nGo OS/Arch: linux/"));
    EXPECT_EQ(std::count(o.output.begin(), o.output.end(), '\n'), 4);
  }
  // --version=false just runs.
  EXPECT_EQ(Parse({"--version=false"}).action, ParseOutcome::Action::kRun);
}

TEST(ConfigVersionHelp, HelpListsEveryFlag) {
  for (const Args& args : {Args{"--help"}, Args{"-h"}, Args{"-help"},
                           Args{"-h=false"}, Args{"--name=x", "--help"}}) {
    ParseOutcome o = Parse(args);
    ASSERT_EQ(o.action, ParseOutcome::Action::kPrintAndExit);
    EXPECT_EQ(o.exit_code, 0);
    EXPECT_FALSE(o.output_to_stderr);
    EXPECT_EQ(o.output, UsageText());
  }
  const std::string help = UsageText();
  EXPECT_THAT(help, StartsWith("Usage:\n\n  detcd [flags]\n"));
  EXPECT_THAT(help, HasSubstr("\nMember:\n  --name 'default'\n"));
  EXPECT_THAT(help, HasSubstr("  --data-dir '${name}.etcd'\n"));
  EXPECT_THAT(help, HasSubstr("  --heartbeat-interval '100'\n"));
  EXPECT_THAT(help,
              HasSubstr("  --listen-client-urls 'http://localhost:2379'\n"));
  EXPECT_THAT(help, HasSubstr("  --initial-cluster "
                              "'default=http://localhost:2380'\n"));
  for (const FlagInfo& f : ListFlags()) {
    if (f.status == FlagStatus::kIgnored || f.name == "config-file" ||
        f.name == "version") {
      continue;
    }
    EXPECT_THAT(help, HasSubstr("  --" + f.name + " ")) << f.name;
  }
}

TEST(ConfigGateway, SubcommandsAreRefused) {
  ParseOutcome o = Parse({"grpc-proxy", "start"});
  EXPECT_EQ(o.exit_code, 1);
  EXPECT_THAT(o.output, HasSubstr("grpc-proxy"));
}

TEST(ConfigFile, YamlWithTransportSecurity) {
  TempDir dir;
  const std::string path = dir.Write("etcd.yaml", R"(
# etcd's sample keys
name: 'infra1'
data-dir: /var/lib/etcd/infra1
wal-dir:
snapshot-count: 5000
heartbeat-interval: 200
election-timeout: 2000
quota-backend-bytes: 4294967296
listen-peer-urls: https://127.0.0.1:2380
listen-client-urls: https://127.0.0.1:2379,http://127.0.0.1:22379
initial-advertise-peer-urls: https://127.0.0.1:2380
advertise-client-urls: https://127.0.0.1:2379
initial-cluster: infra1=https://127.0.0.1:2380,infra2=https://127.0.0.2:2380
initial-cluster-token: 'etcd-cluster-1'
initial-cluster-state: 'new'
strict-reconfig-check: false
enable-v2: false
enable-pprof: true
proxy: 'off'
proxy-failure-wait: 5000
cors:
grpc-keepalive-min-time: 3000000000
max-txn-ops: 256
client-transport-security:
  cert-file: /etc/ssl/server.crt
  key-file: /etc/ssl/server.key
  client-cert-auth: true
  trusted-ca-file: /etc/ssl/ca.crt
  auto-tls: false
peer-transport-security:
  cert-file: /etc/ssl/peer.crt
  key-file: /etc/ssl/peer.key
  client-cert-auth: yes
  trusted-ca-file: /etc/ssl/ca.crt
  allowed-cn: [member]
peer-crl-file: /etc/ssl/peer.crl
log-level: debug
logger: zap
log-outputs: [stderr, /var/log/etcd.log]
auto-compaction-mode: revision
auto-compaction-retention: 1000
force-new-cluster: false
pre-vote: true
experimental-watch-progress-notify-interval: 5000000000
)");
  // Flags and variables are ignored when a file is given, conflicts too.
  ParseOutcome o = Parse({"--config-file", path, "--name=other"},
                         {"ETCD_NAME=envname", "ETCD_SNAPSHOT_COUNT=abc"});
  ASSERT_EQ(o.action, ParseOutcome::Action::kRun) << o.output;
  const ServerConfig& c = o.config;
  EXPECT_EQ(c.config_file, path);
  EXPECT_EQ(c.name, "infra1");
  EXPECT_EQ(c.data_dir, "/var/lib/etcd/infra1");
  EXPECT_EQ(c.wal_dir, "");
  EXPECT_EQ(c.snapshot_count, 5000u);
  EXPECT_EQ(c.heartbeat_interval_ms, 200);
  EXPECT_EQ(c.election_timeout_ms, 2000);
  EXPECT_EQ(c.quota_backend_bytes, 4294967296);
  EXPECT_THAT(Raw(c.listen_client_urls),
              ElementsAre("http://127.0.0.1:22379", "https://127.0.0.1:2379"));
  EXPECT_THAT(Raw(c.advertise_client_urls),
              ElementsAre("https://127.0.0.1:2379"));
  ASSERT_EQ(c.initial_cluster.size(), 2u);
  EXPECT_EQ(c.initial_cluster[1].name, "infra2");
  EXPECT_EQ(c.initial_cluster_token, "etcd-cluster-1");
  EXPECT_FALSE(c.strict_reconfig_check);
  EXPECT_TRUE(c.enable_pprof);
  EXPECT_THAT(c.cors, ElementsAre("*"));
  EXPECT_EQ(c.grpc_keepalive_min_time_ms, 3000);
  EXPECT_EQ(c.max_txn_ops, 256u);
  EXPECT_EQ(c.client_tls.cert_file, "/etc/ssl/server.crt");
  EXPECT_EQ(c.client_tls.key_file, "/etc/ssl/server.key");
  EXPECT_TRUE(c.client_tls.client_cert_auth);
  EXPECT_EQ(c.client_tls.trusted_ca_file, "/etc/ssl/ca.crt");
  EXPECT_TRUE(c.client_tls.enabled());
  EXPECT_EQ(c.peer_tls.cert_file, "/etc/ssl/peer.crt");
  EXPECT_TRUE(c.peer_tls.client_cert_auth);
  EXPECT_THAT(c.peer_tls.allowed_cn, ElementsAre("member"));
  EXPECT_EQ(c.peer_tls.crl_file, "/etc/ssl/peer.crl");
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_THAT(c.log_outputs, ElementsAre("stderr", "/var/log/etcd.log"));
  EXPECT_EQ(c.auto_compaction_mode, "revision");
  EXPECT_EQ(c.auto_compaction_retention, "1000");
  EXPECT_TRUE(c.pre_vote);
  EXPECT_EQ(c.experimental_watch_progress_notify_interval_ms, 5000);
  EXPECT_TRUE(Contains(c.explicitly_set, "name"));
  EXPECT_FALSE(Contains(c.explicitly_set, "config-file"));
  EXPECT_THAT(c.notices, ::testing::Contains(
                             HasSubstr("Loading server configuration from")));
  EXPECT_TRUE(Contains(c.warnings,
                       "ignoring command-line flags because a configuration "
                       "file is used: --name"));
  for (const std::string& w : c.warnings) {
    EXPECT_THAT(w, ::testing::Not(HasSubstr("unrecognized")));
  }

  // ETCD_CONFIG_FILE works the same.
  EXPECT_EQ(Ok({}, {"ETCD_CONFIG_FILE=" + path}).name, "infra1");
}

TEST(ConfigFile, DefaultsMatchFlagDefaults) {
  TempDir dir;
  const std::string empty = dir.Write("empty.yaml", "");
  ServerConfig from_file = Ok({"--config-file=" + empty});
  ServerConfig from_flags = Ok({});
  EXPECT_EQ(from_file.name, from_flags.name);
  EXPECT_EQ(from_file.data_dir, from_flags.data_dir);
  EXPECT_EQ(Raw(from_file.listen_client_urls),
            Raw(from_flags.listen_client_urls));
  EXPECT_EQ(Raw(from_file.advertise_client_urls),
            Raw(from_flags.advertise_client_urls));
  EXPECT_EQ(from_file.initial_cluster_string,
            from_flags.initial_cluster_string);
  EXPECT_EQ(from_file.snapshot_count, from_flags.snapshot_count);
  EXPECT_EQ(from_file.grpc_keepalive_interval_ms,
            from_flags.grpc_keepalive_interval_ms);
  EXPECT_EQ(from_file.log_outputs, from_flags.log_outputs);
  EXPECT_EQ(from_file.logger, from_flags.logger);
  EXPECT_EQ(from_file.cors, from_flags.cors);

  // Renamed member in a file: etcd rewrites the default cluster too.
  const std::string named = dir.Write("named.yaml", "name: n7\n");
  EXPECT_EQ(Ok({"--config-file", named}).initial_cluster_string,
            "n7=http://localhost:2380");
  // In a file, listen-client-urls alone keeps the default advertise URL.
  const std::string lc =
      dir.Write("lc.yaml", "listen-client-urls: http://127.0.0.1:1234\n");
  EXPECT_THAT(Raw(Ok({"--config-file", lc}).advertise_client_urls),
              ElementsAre("http://localhost:2379"));
}

TEST(ConfigFile, Errors) {
  TempDir dir;
  struct Case {
    std::string yaml;
    std::string output;  // exact output line
  };
  const std::string ve = "error verifying flags, ";
  const std::string see = ". See 'detcd --help'.\n";
  const std::string um =
      "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal ";
  const Case cases[] = {
      {"snapshot-count: abc\n",
       ve + um +
           "string into Go struct field configYAML.snapshot-count of "
           "type uint64" +
           see},
      {"grpc-keepalive-min-time: 5s\n",
       ve + um +
           "string into Go struct field configYAML.grpc-keepalive-min-"
           "time of type time.Duration" +
           see},
      {"election-timeout: \"1000\"\n",
       ve + um +
           "string into Go struct field configYAML.election-timeout of "
           "type uint" +
           see},
      {"election-timeout: -5\n",
       ve + um +
           "number -5 into Go struct field configYAML.election-timeout "
           "of type uint" +
           see},
      {"election-timeout: 1000.5\n",
       ve + um +
           "number 1000.5 into Go struct field configYAML.election-"
           "timeout of type uint" +
           see},
      {"pre-vote: 1\n",
       ve + um +
           "number into Go struct field configYAML.pre-vote of type "
           "bool" +
           see},
      {"log-outputs: stderr\n",
       ve + um +
           "string into Go struct field configYAML.log-outputs of type "
           "[]string" +
           see},
      {"proxy-dial-timeout: abc\n",
       ve + um +
           "string into Go struct field configProxy.proxy-dial-timeout "
           "of type uint" +
           see},
      {"client-transport-security: yes\n",
       ve + um +
           "bool into Go struct field configYAML.client-transport-"
           "security of type embed.securityConfig" +
           see},
      {"- a\n- b\n",
       ve + um + "array into Go value of type embed.configYAML" + see},
      {"listen-client-urls: ftp://x:1\n",
       "unexpected error setting up listen-client-urls: URL scheme must be "
       "http, https, unix, or unixs: ftp://x:1\n"},
      {"advertise-client-urls: http://x\n",
       "unexpected error setting up advertise-peer-urls: URL address does "
       "not have the form \"host:port\": http://x\n"},
      {"initial-cluster-state: weird\n",
       ve + "unexpected clusterState \"weird\"" + see},
      {"election-timeout: 10\n",
       ve +
           "--election-timeout[10ms] should be at least as 5 times as "
           "--heartbeat-interval[100ms]" +
           see},
      {"log-outputs: [stdout]\nlog-output: [stdout]\n",
       ve +
           "'--log-output=[\"stdout\"]' and '--log-outputs=[\"stdout\"]' are "
           "incompatible; only set --log-outputs" +
           see},
      {"advertise-client-urls: http://:1\n",
       ve +
           "--advertise-client-urls \"http://:1\" must be \"host:port\" "
           "(unexpected empty host (http://:1))" +
           see},
      {"discovery-fallback: maybe\n",
       "unexpected error setting up discovery-fallback flag: invalid value\n"},
      {"enable-v2: true\n",
       "detcd does not serve etcd's v2 API: --enable-v2=true is not supported "
       "(remove it or set --enable-v2=false)\n"},
  };
  int n = 0;
  for (const Case& tc : cases) {
    SCOPED_TRACE(tc.yaml);
    const std::string path =
        dir.Write("c" + std::to_string(n++) + ".yaml", tc.yaml);
    ParseOutcome o = Parse({"--config-file", path});
    ASSERT_EQ(o.action, ParseOutcome::Action::kPrintAndExit);
    EXPECT_EQ(o.exit_code, 1);
    EXPECT_TRUE(o.output_to_stderr);
    EXPECT_EQ(o.output, tc.output);
  }
  ParseOutcome o = Parse({"--config-file", dir.path() + "/missing.yaml"});
  EXPECT_EQ(o.exit_code, 1);
  EXPECT_EQ(o.error,
            "open " + dir.path() + "/missing.yaml: no such file or directory");
  const std::string bad = dir.Write("bad.yaml", "name: [\n");
  o = Parse({"--config-file", bad});
  EXPECT_EQ(o.exit_code, 1);
  EXPECT_THAT(o.error,
              StartsWith("error converting YAML to JSON: yaml: line "));
  // The flag stage still runs first: a bad flag is exit 2 even with a file.
  const std::string good = dir.Write("good.yaml", "name: x\n");
  EXPECT_EQ(Parse({"--config-file", good, "--snapshot-count=abc"}).exit_code,
            2);
  // Unknown keys are ignored (encoding/json), with a warning from detcd.
  const std::string unknown = dir.Write("unknown.yaml", "bogus-key: 1\n");
  EXPECT_THAT(Ok({"--config-file", unknown}).warnings,
              ::testing::Contains(HasSubstr("\"bogus-key\"")));
}

TEST(ConfigUrl, ParseUrl) {
  absl::StatusOr<Url> u = ParseUrl("http://127.0.0.1:2379");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->scheme, "http");
  EXPECT_EQ(u->host, "127.0.0.1");
  EXPECT_EQ(u->port, 2379);
  EXPECT_EQ(u->raw, "http://127.0.0.1:2379");
  u = ParseUrl(" HTTPS://[fe80::1]:443 ");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->scheme, "https");
  EXPECT_EQ(u->host, "fe80::1");
  EXPECT_EQ(u->raw, "https://[fe80::1]:443");
  u = ParseUrl("unixs://localhost:1");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->scheme, "unixs");
  EXPECT_TRUE(ParseUrl("http://a:").ok());  // Go accepts an empty port

  auto err = [](std::string_view s) {
    return std::string(ParseUrl(s).status().message());
  };
  EXPECT_EQ(err("localhost:2379"),
            "URL scheme must be http, https, unix, or unixs: localhost:2379");
  EXPECT_EQ(err("http://::1:2379"),
            "URL address does not have the form \"host:port\": "
            "http://::1:2379");
  EXPECT_EQ(err("http://[::1:2379"),
            "parse \"http://[::1:2379\": missing ']' in host");
  EXPECT_EQ(err("://x"), "parse \"://x\": missing protocol scheme");
  EXPECT_EQ(err("http://a:1/"), "URL must not contain a path: http://a:1/");
  EXPECT_EQ(err(""), "URL scheme must be http, https, unix, or unixs: ");
}

TEST(ConfigTls, Enabled) {
  TlsConfig t;
  EXPECT_FALSE(t.enabled());
  t.cert_file = "c";
  EXPECT_FALSE(t.enabled());
  t.key_file = "k";
  EXPECT_TRUE(t.enabled());
  TlsConfig a;
  a.auto_tls = true;
  EXPECT_TRUE(a.enabled());
  ServerConfig c =
      Ok({"--cert-file=/c", "--key-file=/k", "--client-cert-auth",
          "--trusted-ca-file=/ca", "--peer-auto-tls",
          "--peer-cert-allowed-cn=etcd", "--client-cert-allowed-hostname=h1",
          "--experimental-peer-skip-client-san-verification",
          "--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,"
          "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"});
  EXPECT_TRUE(c.client_tls.enabled());
  EXPECT_TRUE(c.client_tls.client_cert_auth);
  EXPECT_EQ(c.client_tls.trusted_ca_file, "/ca");
  EXPECT_TRUE(c.peer_tls.enabled());
  EXPECT_THAT(c.peer_tls.allowed_cn, ElementsAre("etcd"));
  EXPECT_THAT(c.client_tls.allowed_hostname, ElementsAre("h1"));
  EXPECT_TRUE(c.peer_tls.skip_client_san_verify);
  EXPECT_EQ(c.cipher_suites.size(), 2u);
}

const char* StatusText(FlagStatus s) {
  switch (s) {
    case FlagStatus::kImplemented:
      return "implemented";
    case FlagStatus::kStored:
      return "stored";
    case FlagStatus::kNoEffect:
      return "no effect";
    case FlagStatus::kRefused:
      return "refused";
    case FlagStatus::kIgnored:
      return "ignored";
  }
  return "";
}

// One row of docs/flags.md's table, generated from the flag table so the
// page cannot drift from the code.
std::string MarkdownRow(const FlagInfo& f) {
  auto code = [](const std::string& s) {
    return s.empty() ? std::string("") : "`" + s + "`";
  };
  return "| `--" + f.name + "` | " + code(f.default_value) + " | `" +
         f.env_var + "` | " + code(f.yaml_key) + " | " + StatusText(f.status) +
         " | " + f.note + " |";
}

TEST(ConfigDocs, FlagsPageListsEveryFlag) {
  std::ifstream in("docs/flags.md");
  ASSERT_TRUE(in) << "run from the source root";
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string doc = ss.str();
  for (const FlagInfo& f : ListFlags()) {
    EXPECT_THAT(doc, HasSubstr(MarkdownRow(f) + "\n"))
        << "docs/flags.md is out of date; regenerate its table with "
           "config_test --gtest_also_run_disabled_tests "
           "--gtest_filter='*PrintFlagsTable'";
  }
}

TEST(ConfigDocs, DISABLED_PrintFlagsTable) {
  std::string section = "-";
  for (const FlagInfo& f : ListFlags()) {
    if (f.section != section) {
      section = f.section;
      std::printf(
          "\n### %s\n\n| flag | default | variable | config-file key "
          "| status | note |\n|---|---|---|---|---|---|\n",
          section.empty() ? "Meta" : section.c_str());
    }
    std::printf("%s\n", MarkdownRow(f).c_str());
  }
}

// Every flag's default, given back as a value, parses (the table's kinds
// match its fields) and leaves the field at its default.
TEST(ConfigTable, DefaultsRoundTrip) {
  const ServerConfig base = Ok({});
  for (const FlagInfo& f : ListFlags()) {
    if (f.status == FlagStatus::kIgnored || f.name == "config-file" ||
        f.name == "data-dir" || f.name == "listen-client-urls" ||
        f.default_value.empty() || f.default_value == "math.MaxUint32") {
      continue;
    }
    SCOPED_TRACE(f.name);
    ParseOutcome o = Parse({"--" + f.name + "=" + f.default_value});
    EXPECT_EQ(o.action, ParseOutcome::Action::kRun) << o.output;
  }
  (void)base;
}

// --- Side by side with the real etcd 3.4 binary, on inputs that make it
// exit at once (never one that would start a server).

struct EtcdRun {
  int exit_code;
  std::string out;
};

EtcdRun RunEtcd(const Args& args, const Args& env, const std::string& cwd) {
  std::string cmd = "cd '" + cwd + "' && env -i PATH=/usr/bin:/bin";
  for (const auto& e : env) cmd += " '" + e + "'";
  cmd += " timeout 10 /usr/bin/etcd";
  for (const auto& a : args) cmd += " '" + a + "'";
  cmd += " </dev/null 2>&1";
  EtcdRun r{-1, ""};
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0)
    r.out.append(buf.data(), n);
  int st = pclose(p);
  r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

TEST(EtcdConformance, SameErrorsAndExitCodes) {
  if (access("/usr/bin/etcd", X_OK) != 0) {
    GTEST_SKIP() << "etcd 3.4 (Debian's etcd-server) is not installed";
  }
  TempDir dir;
  struct Case {
    Args args;
    Args env;
  };
  const Case cases[] = {
      {{"--snapshot-count=abc"}, {}},
      {{"--heartbeat-interval=99999999999999999999"}, {}},
      {{"--nosuchflag"}, {}},
      {{"--name"}, {}},
      {{"--enable-v2=maybe"}, {}},
      {{"---name=x"}, {}},
      {{"--initial-cluster-state=bogus"}, {}},
      {{"--listen-client-urls=ftp://a:1"}, {}},
      {{"--listen-client-urls=http://a:1/x"}, {}},
      {{"--listen-peer-urls=127.0.0.1:2380"}, {}},
      {{"--max-concurrent-streams=abc"}, {}},
      {{"stray"}, {}},
      {{"--election-timeout=10"}, {}},
      {{"--election-timeout=60000"}, {}},
      {{"--heartbeat-interval=0"}, {}},
      {{"--advertise-client-urls=http://:1"}, {}},
      {{"--listen-client-urls=http://127.0.0.1:1"}, {}},
      {{"--discovery=http://x", "--initial-cluster=a=http://b:1"}, {}},
      {{"--auto-compaction-mode=x"}, {}},
      {{"--name=y"}, {"ETCD_NAME=x"}},
      {{}, {"ETCD_SNAPSHOT_COUNT=abc"}},
  };
  for (const Case& tc : cases) {
    SCOPED_TRACE(testing::PrintToString(tc.args) +
                 testing::PrintToString(tc.env));
    const EtcdRun etcd = RunEtcd(tc.args, tc.env, dir.path());
    ParseOutcome ours = Parse(tc.args, tc.env);
    ASSERT_EQ(ours.action, ParseOutcome::Action::kPrintAndExit);
    EXPECT_EQ(ours.exit_code, etcd.exit_code) << etcd.out;
    // etcd's text holds ours, maybe inside a log line.
    EXPECT_THAT(etcd.out, HasSubstr(ours.error)) << etcd.out;
  }
  // Nothing was created by the failing runs.
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

TEST(EtcdConformance, VersionShape) {
  if (access("/usr/bin/etcd", X_OK) != 0) GTEST_SKIP();
  TempDir dir;
  const EtcdRun etcd = RunEtcd({"--version"}, {}, dir.path());
  const std::string ours = Parse({"--version"}).output;
  auto prefixes = [](const std::string& s) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    std::string line;
    while (std::getline(ss, line))
      out.push_back(line.substr(0, line.find(':')));
    return out;
  };
  EXPECT_EQ(prefixes(ours), prefixes(etcd.out));
  EXPECT_EQ(etcd.exit_code, 0);
  EXPECT_THAT(etcd.out, StartsWith("etcd Version: 3.4.23\n"));
}

}  // namespace
}  // namespace detcd::shim
