#include "absl/strings/string_view.h"
#include "cli/detcdctl/ctl.h"

#include <sys/time.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <iostream>
#include <iterator>
#include <set>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "cli/detcdctl/discovery.h"
#include "cli/detcdctl/gofmt.h"
#include "detcd/errors.h"

extern char** environ;

namespace detcd::ctl {
namespace {

std::unique_ptr<Printer> g_display;

// capnslog's line: "2006-01-02 15:04:05.000000 W | pkg/flags: ...".
void CapnsLog(char level, absl::string_view msg) {
  struct timeval tv;
  gettimeofday(&tv, nullptr);
  struct tm tm;
  localtime_r(&tv.tv_sec, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  Err(absl::StrFormat("%s.%06d %c | pkg/flags: %s\n", buf,
                      static_cast<int>(tv.tv_usec), level, msg));
}

std::string EnvKey(const std::string& flag) {
  return absl::StrCat("ETCDCTL_",
                      absl::AsciiStrToUpper(absl::StrReplaceAll(flag, {{"-", "_"}})));
}

// pflag's Value.String() (what --debug prints).
std::string FlagValueString(const Flag& f) {
  switch (f.type()) {
    case Flag::Type::kBool: return f.b() ? "true" : "false";
    case Flag::Type::kString: return f.s();
    case Flag::Type::kInt64:
    case Flag::Type::kInt: return absl::StrCat(f.i());
    case Flag::Type::kDuration: return GoDuration(f.ns());
    case Flag::Type::kStringSlice: return GoCsvSliceString(f.slice());
  }
  return "";
}

// etcd's flags.SetPflagsFromEnv over the inherited flags, with its checks
// of the remaining variables.
void FlagsFromEnv(const std::vector<Flag*>& flags,
                  const std::set<std::string>& silent) {
  std::set<std::string> already, used;
  for (Flag* f : flags) {
    std::string key = EnvKey(f->name());
    if (f->changed()) {
      already.insert(key);
      continue;
    }
    const char* v = std::getenv(key.c_str());
    if (v != nullptr && *v != '\0') {
      used.insert(key);
      (void)f->Set(v);  // etcdctl ignores a bad value (keeps the default)
    }
  }
  for (char** e = environ; *e != nullptr; ++e) {
    absl::string_view kv(*e);
    std::string key(kv.substr(0, kv.find('=')));
    if (used.count(key) > 0 || silent.count(key) > 0) continue;
    if (already.count(key) > 0) {
      CapnsLog('C', absl::StrCat("conflicting environment variable ",
                                 GoQuote(key),
                                 " is shadowed by corresponding command-line "
                                 "flag (either unset environment variable or "
                                 "disable flag)"));
      Exit(1);
    }
    if (absl::StartsWith(kv, "ETCDCTL_")) {
      CapnsLog('W', absl::StrCat("unrecognized environment variable ", kv));
    }
  }
}

std::string GetStringFlag(Command& cmd, absl::string_view name) {
  Flag* f = cmd.Lookup(name);
  return f == nullptr ? "" : f->s();
}

bool GetBoolFlag(Command& cmd, absl::string_view name) {
  Flag* f = cmd.Lookup(name);
  return f != nullptr && f->b();
}

int64_t GetDurationFlag(Command& cmd, absl::string_view name) {
  Flag* f = cmd.Lookup(name);
  return f == nullptr ? 0 : f->ns();
}

// speakeasy.Ask: the prompt on stdout, the answer read without echo.
std::string AskPassword(const std::string& prompt) {
  Out(prompt);
  std::fflush(stdout);
  struct termios old;
  if (tcgetattr(STDIN_FILENO, &old) != 0) {
    ExitWithError(kExitError, "inappropriate ioctl for device");
  }
  struct termios noecho = old;
  noecho.c_lflag &= ~static_cast<tcflag_t>(ECHO);
  tcsetattr(STDIN_FILENO, TCSANOW, &noecho);
  std::string line;
  std::getline(std::cin, line);
  tcsetattr(STDIN_FILENO, TCSANOW, &old);
  Out("\n");
  return line;
}

absl::Status CheckReadable(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    std::string err = std::strerror(errno);
    if (!err.empty()) err[0] = absl::ascii_tolower(err[0]);
    return absl::InvalidArgumentError(absl::StrCat("open ", path, ": ", err));
  }
  std::fclose(f);
  return absl::OkStatus();
}

}  // namespace

void Out(absl::string_view s) { std::fwrite(s.data(), 1, s.size(), stdout); }

void Err(absl::string_view s) {
  std::fflush(stdout);
  std::fwrite(s.data(), 1, s.size(), stderr);
  std::fflush(stderr);
}

void Exit(int code) {
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(code);
}

void ExitWithError(int code, absl::string_view msg) {
  Err(absl::StrCat("Error: ", msg, "\n"));
  Exit(code);
}

void ExitWithStatus(int code, const absl::Status& s) {
  ExitWithError(code, client::ErrorText(s));
}

Printer& display() {
  if (!g_display) g_display = std::make_unique<Printer>(OutFormat::kSimple, false);
  return *g_display;
}

void InitDisplay(Command& cmd) {
  bool hex = GetBoolFlag(cmd, "hex");
  std::string w = GetStringFlag(cmd, "write-out");
  OutFormat f;
  if (w == "simple") {
    f = OutFormat::kSimple;
  } else if (w == "fields") {
    f = OutFormat::kFields;
  } else if (w == "json") {
    f = OutFormat::kJson;
  } else if (w == "protobuf") {
    f = OutFormat::kProtobuf;
  } else if (w == "table") {
    f = OutFormat::kTable;
  } else {
    ExitWithError(kExitBadFeature, "unsupported output format");
  }
  g_display = std::make_unique<Printer>(f, hex);
}

ClientSetup ClientConfigFromCmd(Command& cmd) {
  std::vector<Flag*> inherited = cmd.InheritedFlags();
  std::set<std::string> silent;
  if (cmd.Name() == "watch") {
    // etcdctl registers these for watch so they are not "unrecognized".
    silent = {"ETCDCTL_WATCH_KEY", "ETCDCTL_WATCH_RANGE_END"};
  }
  FlagsFromEnv(inherited, silent);
  if (GetBoolFlag(cmd, "debug")) {
    std::vector<std::string> lines;
    for (Flag* f : inherited) {
      lines.push_back(absl::StrCat(EnvKey(f->name()), "=", FlagValueString(*f)));
    }
    if (cmd.Name() == "watch") {
      lines.push_back("ETCDCTL_WATCH_KEY=");
      lines.push_back("ETCDCTL_WATCH_RANGE_END=");
      std::sort(lines.begin(), lines.end());
    }
    for (const std::string& l : lines) Err(l + "\n");
  }

  ClientSetup setup;
  client::Config& c = setup.config;
  // Endpoints: DNS discovery first, else --endpoints.
  std::string domain = GetStringFlag(cmd, "discovery-srv");
  bool insecure_discovery = GetBoolFlag(cmd, "insecure-discovery");
  std::vector<std::string> eps;
  if (!domain.empty()) {
    auto found = DiscoverEndpoints(domain, GetStringFlag(cmd, "discovery-srv-name"));
    if (!found.ok()) ExitWithError(kExitError, found.status().message());
    for (const std::string& ep : *found) {
      if (!insecure_discovery && absl::StartsWith(ep, "http://")) {
        Err(absl::StrCat("ignoring discovered insecure endpoint ", GoQuote(ep),
                         "\n"));
        continue;
      }
      eps.push_back(ep);
    }
  }
  if (eps.empty()) {
    Flag* f = cmd.Lookup("endpoints");
    for (const std::string& ep : f->slice()) {
      eps.push_back(std::string(absl::StripAsciiWhitespace(ep)));
    }
  }
  setup.endpoints = eps;
  c.endpoints = eps;
  c.dial_timeout = absl::Nanoseconds(GetDurationFlag(cmd, "dial-timeout"));
  c.keepalive_time = absl::Nanoseconds(GetDurationFlag(cmd, "keepalive-time"));
  c.keepalive_timeout =
      absl::Nanoseconds(GetDurationFlag(cmd, "keepalive-timeout"));

  // TLS (secureCfgFromCmd, newClientCfg).
  client::TlsConfig tls;
  for (const char* name : {"cert", "key", "cacert"}) {
    Flag* f = cmd.Lookup(name);
    if (f->changed() && f->s().empty()) {
      ExitWithError(kExitBadArgs,
                    absl::StrCat("empty string is passed to --", name,
                                 " option"));
    }
  }
  tls.cert_file = GetStringFlag(cmd, "cert");
  tls.key_file = GetStringFlag(cmd, "key");
  tls.ca_file = GetStringFlag(cmd, "cacert");
  if (!insecure_discovery) tls.server_name = domain;
  setup.insecure_transport = GetBoolFlag(cmd, "insecure-transport");
  tls.insecure_skip_verify = GetBoolFlag(cmd, "insecure-skip-tls-verify");
  if (!tls.cert_file.empty() || !tls.key_file.empty() || !tls.ca_file.empty() ||
      !tls.server_name.empty() || !setup.insecure_transport) {
    c.tls = tls;
  }

  // Auth.
  std::string user = GetStringFlag(cmd, "user");
  std::string password = GetStringFlag(cmd, "password");
  if (!user.empty()) {
    if (password.empty()) {
      size_t colon = user.find(':');
      if (colon == std::string::npos) {
        c.username = user;
        c.password = AskPassword("Password: ");
      } else {
        c.username = user.substr(0, colon);
        c.password = user.substr(colon + 1);
      }
    } else {
      c.username = user;
      c.password = password;
    }
  }
  InitDisplay(cmd);
  return setup;
}

std::unique_ptr<client::Client> MustClient(const ClientSetup& setup) {
  const client::Config& c = setup.config;
  if (c.tls.has_value()) {
    // transport.TLSInfo.ClientConfig's checks.
    const client::TlsConfig& t = *c.tls;
    if (!t.cert_file.empty() || !t.key_file.empty()) {
      if (t.cert_file.empty() || t.key_file.empty()) {
        ExitWithError(kExitBadArgs,
                      absl::StrCat("KeyFile and CertFile must both be "
                                   "present[key: ",
                                   t.key_file, ", cert: ", t.cert_file, "]"));
      }
      for (const std::string& p : {t.cert_file, t.key_file}) {
        if (auto s = CheckReadable(p); !s.ok()) {
          ExitWithError(kExitBadArgs, s.message());
        }
      }
    }
    if (!t.ca_file.empty()) {
      if (auto s = CheckReadable(t.ca_file); !s.ok()) {
        ExitWithError(kExitBadArgs, s.message());
      }
    }
  }
  auto cli = client::Client::New(c);
  if (!cli.ok()) ExitWithStatus(kExitBadConnection, cli.status());
  return std::move(*cli);
}

std::unique_ptr<client::Client> MustClientFromCmd(Command& cmd) {
  return MustClient(ClientConfigFromCmd(cmd));
}

client::CallOptions CommandCtx(Command& cmd) {
  return client::CallOptions::Timeout(
      absl::Nanoseconds(GetDurationFlag(cmd, "command-timeout")));
}

bool CommandTimeoutSet(Command& cmd) {
  Flag* f = cmd.Lookup("command-timeout");
  return f != nullptr && f->changed();
}

std::string ExecErrorText(const std::string& name, int err) {
  std::string e = std::strerror(err);
  if (!e.empty()) e[0] = absl::ascii_tolower(e[0]);
  if (name.find('/') == std::string::npos) {
    return absl::StrCat("exec: ", GoQuote(name),
                        ": executable file not found in $PATH");
  }
  return absl::StrCat("fork/exec ", name, ": ", e);
}

namespace {
std::vector<std::string>* g_os_args = new std::vector<std::string>();
}  // namespace

void SetOsArgs(std::vector<std::string> args) { *g_os_args = std::move(args); }
const std::vector<std::string>& OsArgs() { return *g_os_args; }

std::string ReadAllStdin() {
  std::string out;
  char buf[65536];
  ssize_t n;
  while ((n = ::read(STDIN_FILENO, buf, sizeof buf)) > 0) {
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

}  // namespace detcd::ctl
