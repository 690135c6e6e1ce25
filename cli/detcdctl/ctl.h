// Shared parts of detcdctl's commands: exit codes and error printing as
// etcdctl's ExitWithError, the global flags (and their ETCDCTL_*
// variables) turned into a client, and the output printer.
#ifndef DETCD_CLI_DETCDCTL_CTL_H_
#define DETCD_CLI_DETCDCTL_CTL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "cli/detcdctl/command.h"
#include "cli/detcdctl/printer.h"
#include "detcd/client.h"

namespace detcd::ctl {

// etcdctl's exit codes (command/error.go).
enum ExitCode {
  kExitSuccess = 0,
  kExitError = 1,
  kExitBadConnection = 2,
  kExitInvalidInput = 3,
  kExitBadFeature = 4,
  kExitInterrupted = 5,
  kExitIO = 6,
  kExitBadArgs = 128,
};

// stdout / stderr writes (stdio, so they interleave as etcdctl's do).
void Out(absl::string_view s);
void Err(absl::string_view s);
// Prints "Error: <msg>" on stderr and exits with code.
[[noreturn]] void ExitWithError(int code, absl::string_view msg);
// The same with a client error's etcdctl text (errors.h's ErrorText).
[[noreturn]] void ExitWithStatus(int code, const absl::Status& s);
// Flushes and exits.
[[noreturn]] void Exit(int code);

// The printer chosen by -w / --hex (set when a client is made, as
// etcdctl's initDisplayFromCmd).
Printer& display();
void InitDisplay(Command& cmd);

struct ClientSetup {
  client::Config config;
  std::vector<std::string> endpoints;
  bool insecure_transport = true;
};

// etcdctl's clientConfigFromCmd: ETCDCTL_* variables into the inherited
// flags, --debug, endpoints (or DNS discovery), TLS, auth (asks for the
// password when --user has none), the printer.
ClientSetup ClientConfigFromCmd(Command& cmd);
// clientv3.New with that configuration; exits as etcdctl does on failure.
std::unique_ptr<client::Client> MustClient(const ClientSetup& setup);
std::unique_ptr<client::Client> MustClientFromCmd(Command& cmd);

// --command-timeout as call options.
client::CallOptions CommandCtx(Command& cmd);
// Whether --command-timeout was given.
bool CommandTimeoutSet(Command& cmd);

// Reads all of stdin.
std::string ReadAllStdin();

// Go's os/exec error for a command that could not start: names without a
// '/' are looked up in $PATH.
std::string ExecErrorText(const std::string& name, int err);

// The process's argv (etcdctl's watch looks at os.Args).
void SetOsArgs(std::vector<std::string> args);
const std::vector<std::string>& OsArgs();

}  // namespace detcd::ctl

#endif  // DETCD_CLI_DETCDCTL_CTL_H_
