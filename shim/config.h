// detcd's server configuration: etcd 3.4's command-line flags, ETCD_*
// environment variables and --config-file YAML, parsed the way etcd 3.4's
// etcdmain does it, so scripts, unit files and config files written for etcd
// work unchanged.
//
// Sources, in etcd's order:
//   1. command-line flags, with Go's flag package syntax (-flag, --flag,
//      -flag=value, -flag value; bools take no separate value);
//   2. ETCD_<FLAG> variables for flags not given on the command line; a
//      variable that shadows a given flag is a fatal conflict, and an unknown
//      ETCD_* variable a warning;
//   3. or, when --config-file (or ETCD_CONFIG_FILE) names a file, that YAML
//      file alone: other flags and variables are then ignored, as in etcd.
//
// Texts of errors and warnings are etcd's (see docs/flags.md for every flag,
// its default, its variable and whether detcd acts on it). ParseServerConfig
// is a pure function of its arguments plus the config file it reads: it never
// prints, exits, or looks at the process environment itself.
#ifndef DETCD_SHIM_CONFIG_H_
#define DETCD_SHIM_CONFIG_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace detcd::shim {

// One URL of a URL-list flag. etcd accepts only scheme://host:port with
// scheme http, https, unix or unixs and no path; for unix/unixs the socket's
// file name is "host:port" itself.
struct Url {
  std::string scheme;  // http | https | unix | unixs (lower case)
  std::string host;    // without the brackets of an IPv6 literal
  int port = 0;        // 0 when the URL says "host:" (Go accepts that)
  std::string raw;     // canonical "scheme://host:port" (brackets kept)
};

struct TlsConfig {
  std::string cert_file, key_file, trusted_ca_file, crl_file;
  // The certificate this member presents when it is the TLS client (etcd
  // 3.5's --client-cert-file / --peer-client-cert-file); empty: cert_file.
  std::string client_cert_file, client_key_file;
  bool client_cert_auth = false;
  bool auto_tls = false;
  bool skip_client_san_verify = false;
  std::vector<std::string> allowed_cn, allowed_hostname;
  // True when this side serves TLS: certificates given or auto TLS asked.
  bool enabled() const;
};

struct ClusterMember {
  std::string name;
  std::vector<Url> peer_urls;  // sorted by raw, as etcd sorts them
};

struct ServerConfig {
  // --- Member.
  std::string name = "default";
  std::string data_dir;  // "" on the flag; set to name + ".etcd" after parsing
  std::string wal_dir;
  uint64_t snapshot_count = 100000;
  int64_t heartbeat_interval_ms = 100;
  int64_t election_timeout_ms = 1000;
  bool initial_election_tick_advance = true;
  // URL lists keep etcd's order: sorted by their canonical text.
  std::vector<Url> listen_client_urls = {
      {"http", "localhost", 2379, "http://localhost:2379"}};
  std::vector<Url> advertise_client_urls = {
      {"http", "localhost", 2379, "http://localhost:2379"}};
  std::vector<Url> listen_peer_urls = {
      {"http", "localhost", 2380, "http://localhost:2380"}};
  std::vector<Url> initial_advertise_peer_urls = {
      {"http", "localhost", 2380, "http://localhost:2380"}};
  std::vector<Url> listen_metrics_urls;
  std::vector<Url> listen_client_http_urls;  // etcd 3.5
  uint64_t max_snapshots = 5;
  uint64_t max_wals = 5;
  int64_t quota_backend_bytes = 0;  // 0: the default quota (2 GiB in etcd)
  int64_t backend_batch_interval_ms = 0;
  int64_t backend_batch_limit = 0;
  uint64_t max_request_bytes = 1572864;
  uint32_t max_txn_ops = 128;
  uint32_t max_concurrent_streams = 4294967295u;
  int64_t grpc_keepalive_min_time_ms = 5000,
          grpc_keepalive_interval_ms = 7200000,
          grpc_keepalive_timeout_ms = 20000;
  // detcd only: gRPC on shim/grpc_h2 (false: gRPC C++'s transport alone).
  bool native_grpc = true;
  bool socket_reuse_port = false, socket_reuse_address = false;  // etcd 3.5
  int64_t raft_read_timeout_ms = 5000, raft_write_timeout_ms = 5000;  // 3.5

  // --- Clustering.
  // Parsed from initial_cluster_string: "n1=http://a:2380,n1=http://b:2380,
  // n2=..." (a repeated name adds URLs to that member). Members keep their
  // order of first appearance. Empty when discovery replaces it.
  std::vector<ClusterMember> initial_cluster;
  std::string initial_cluster_string = "default=http://localhost:2380";
  // etcd reports a malformed --initial-cluster only when it bootstraps a new
  // member (an initialized data dir ignores the flag), so it is not a parse
  // error here: the server reports this text when it needs the cluster.
  std::string initial_cluster_error;
  std::string initial_cluster_token = "etcd-cluster";
  std::string initial_cluster_state = "new";
  std::string discovery, discovery_fallback = "proxy", discovery_proxy,
                         discovery_srv, discovery_srv_name;
  // etcd 3.6's v3 discovery (shim/discovery.h): a token and the gRPC
  // endpoints of the etcd (or detcd) cluster that serves it, with its
  // client settings (etcd 3.6's defaults).
  std::string discovery_token;
  std::vector<std::string> discovery_endpoints;  // sorted, unique
  int64_t discovery_dial_timeout_ms = 2000;
  int64_t discovery_request_timeout_ms = 5000;
  int64_t discovery_keepalive_time_ms = 2000;
  int64_t discovery_keepalive_timeout_ms = 6000;
  bool discovery_insecure_transport = true;
  bool discovery_insecure_skip_tls_verify = false;
  std::string discovery_cert, discovery_key, discovery_cacert;
  std::string discovery_user, discovery_password;
  bool strict_reconfig_check = true;
  bool enable_v2 = false;                  // only false is accepted
  std::string v2_deprecation = "not-yet";  // etcd 3.5
  bool pre_vote = false;                   // etcd 3.4 default
  std::string auto_compaction_mode = "periodic",
              auto_compaction_retention = "0";

  // --- Security.
  TlsConfig client_tls, peer_tls;
  std::vector<std::string> cipher_suites;
  std::vector<std::string> cors = {"*"};            // sorted, unique
  std::vector<std::string> host_whitelist = {"*"};  // sorted, unique
  uint64_t self_signed_cert_validity = 1;           // years; etcd 3.5
  std::string tls_min_version, tls_max_version;     // etcd 3.5; "" = default

  // --- Auth.
  std::string auth_token = "simple";
  uint64_t bcrypt_cost = 10;
  uint64_t auth_token_ttl = 300;

  // --- Profiling, monitoring, gateway.
  bool enable_pprof = false;
  std::string metrics = "basic";
  std::string trace_file;  // detcd only: Chrome trace JSON of the member
  bool enable_grpc_gateway = true;

  // --- Logging. etcd 3.4 defaults to "capnslog"; detcd logs etcd's zap JSON
  // shape by default, and stores "capnslog" when asked.
  std::string log_level = "info";
  std::string logger = "zap";
  std::string log_format = "json";  // etcd 3.5: json or console
  std::vector<std::string> log_outputs = {"default"};
  std::vector<std::string> deprecated_log_output = {"default"};  // --log-output
  bool debug = false;                                            // deprecated
  std::string log_package_levels;                                // deprecated
  bool enable_log_rotation = false;                              // etcd 3.5
  std::string log_rotation_config_json =
      R"({"maxsize": 100, "maxage": 0, "maxbackups": 0, "localtime": false, "compress": false})";

  // --- v2 proxy: only "off" is accepted; the timings are stored, unused.
  std::string proxy = "off";
  uint64_t proxy_failure_wait_ms = 5000, proxy_refresh_interval_ms = 30000,
           proxy_dial_timeout_ms = 1000, proxy_write_timeout_ms = 5000,
           proxy_read_timeout_ms = 0;

  // --- Experimental (3.4 and 3.5).
  bool experimental_initial_corrupt_check = false;
  int64_t experimental_corrupt_check_time_ms = 0;
  std::string experimental_enable_v2v3;  // only "" is accepted
  std::string experimental_backend_bbolt_freelist_type;
  bool experimental_enable_lease_checkpoint = false;
  bool experimental_enable_lease_checkpoint_persist = false;
  int64_t experimental_compaction_batch_limit = 1000;
  int64_t experimental_watch_progress_notify_interval_ms = 600000;
  int64_t experimental_warning_apply_duration_ms = 100;
  bool experimental_compact_hash_check_enabled = false;
  int64_t experimental_compact_hash_check_time_ms = 60000;
  int64_t experimental_compaction_sleep_interval_ms = 10;
  int64_t experimental_downgrade_check_time_ms = 5000;
  bool experimental_memory_mlock = false;
  bool experimental_txn_mode_write_with_shared_buffer = true;
  uint64_t experimental_bootstrap_defrag_threshold_megabytes = 0;
  bool experimental_stop_grpc_service_on_defrag = false;
  uint64_t experimental_snapshot_catchup_entries = 5000;
  int64_t experimental_max_learners = 1;
  int64_t experimental_wait_cluster_ready_timeout_ms = 5000;
  int64_t experimental_warning_unary_request_duration_ms = 300;
  bool experimental_enable_distributed_tracing = false;
  std::string experimental_distributed_tracing_address = "localhost:4317";
  std::string experimental_distributed_tracing_service_name = "etcd";
  std::string experimental_distributed_tracing_instance_id;
  int64_t experimental_distributed_tracing_sampling_rate = 0;

  // --- Unsafe.
  bool force_new_cluster = false;
  bool unsafe_no_fsync = false;

  // --- Testing only: --experimental-planted-bug NAME (repeatable, hidden
  // from --help): engine bugs planted on purpose (engine/util/planted.h),
  // so detcd-chaos can show that its checkers catch them on a real cluster.
  std::vector<std::string> planted_bugs;

  // --- Where the configuration came from.
  std::string config_file;  // "" when flags and variables were used
  // Flags given on the command line or through ETCD_* (or keys present in
  // the config file), by flag name, sorted.
  std::vector<std::string> explicitly_set;
  // To log at start-up: warnings (unknown ETCD_* variables, deprecated or
  // ignored flags, ...) and notices (info lines such as used variables).
  std::vector<std::string> warnings;
  std::vector<std::string> notices;
};

struct ParseOutcome {
  enum class Action { kRun, kPrintAndExit };
  Action action = Action::kRun;
  // kRun: the configuration. On an error, only its warnings and notices are
  // meaningful: what etcd would have logged before the error.
  ServerConfig config;
  // kPrintAndExit: the text to print (help, version, or error [+ usage]),
  // newline-terminated, to stdout or stderr as output_to_stderr says.
  std::string output;
  // 0 for --help/--version; 2 for a flag the flag parser rejects (Go's flag
  // package); 1 for every other error (validation, conflicts, config file,
  // flags detcd refuses), as etcd 3.4.
  int exit_code = 0;
  bool output_to_stderr = false;
  // For errors: the bare error (output wraps it in etcd's sentence) so the
  // caller can also log it.
  std::string error;
};

// args: argv[1..]. env: the process environment as "K=V" strings, in
// environ order (pass environ).
ParseOutcome ParseServerConfig(const std::vector<std::string>& args,
                               const std::vector<std::string>& env);

// Full help (usage header + every flag we accept, with its default), what
// --help prints.
std::string UsageText();

// One URL checked as etcd checks each element of a URL list; error texts are
// etcd's ("URL scheme must be http, https, unix, or unixs: ...").
absl::StatusOr<Url> ParseUrl(std::string_view s);

// A cluster string "n1=u1,n1=u2,n2=u3" as etcd's types.NewURLsMap reads it
// (--initial-cluster, or what discovery returns): members in order of first
// appearance, a repeated name adding URLs, each member's URLs sorted.
absl::StatusOr<std::vector<ClusterMember>> ParseClusterString(
    std::string_view s);

// etcd's parseCompactionRetention (embed/etcd.go): a bare non-negative
// integer is hours in periodic mode and revisions in revision mode; any
// other text is a Go duration (in revision mode too, where etcd then counts
// its nanoseconds as revisions). Returns nanoseconds (periodic) or
// revisions (revision); 0 means off. Errors are etcd's: "error parsing
// CompactionRetention: time: invalid duration \"x\"" (or Go's "missing
// unit" / "unknown unit" texts). Beyond etcd, a negative duration is
// refused (etcd would run its compactor in a busy loop).
absl::StatusOr<int64_t> ParseCompactionRetention(std::string_view mode,
                                                 std::string_view retention);

// What detcd does with a flag (docs/flags.md lists these).
enum class FlagStatus {
  kImplemented,  // detcd acts on it
  kStored,       // parsed, validated and stored; used by later work
  kNoEffect,     // accepted and stored; nothing in detcd it could change
  kRefused,      // some values are refused with a message (v2 API, proxy)
  kIgnored,      // etcd's long-removed flags: warned about, then ignored
};

struct FlagInfo {
  std::string name;           // without dashes
  std::string default_value;  // as the help shows it
  std::string env_var;        // ETCD_...
  std::string yaml_key;       // "" when the config file cannot set it
  FlagStatus status;
  std::string note;     // why, for kStored / kNoEffect / kRefused
  std::string section;  // help section
};
std::vector<FlagInfo> ListFlags();

inline constexpr char kServerVersion[] = "3.4.23";  // /version, Status
inline constexpr char kClusterVersion[] = "3.4.0";

}  // namespace detcd::shim

#endif  // DETCD_SHIM_CONFIG_H_
