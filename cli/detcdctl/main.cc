// detcdctl: a drop-in replacement for etcdctl (v3 API, etcd 3.4): the
// same commands, flags, ETCDCTL_* variables, output formats, messages and
// exit codes, built on detcd's C++ client library (client/).
#include <grpc/support/log.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cli/detcdctl/commands.h"
#include "cli/detcdctl/completion.h"
#include "cli/detcdctl/ctl.h"

namespace detcd::ctl {
namespace {

constexpr int64_t kSecond = 1000000000;

// cobra's default help command.
std::unique_ptr<Command> NewHelpCommand(Command* root) {
  return std::make_unique<Command>(
      "help [command]", "Help about any command",
      "Help provides help for any command in the application.\n"
      "Simply type etcdctl help [path to command] for full details.",
      [root](Command&, const std::vector<std::string>& args) {
        Command* cmd = nullptr;
        std::vector<std::string> rest;
        if (!root->Resolve(args, &cmd, &rest).ok() || cmd == nullptr) {
          std::vector<std::string> q;
          for (const std::string& a : args) q.push_back(absl::StrCat("`", a, "`"));
          std::string list;
          for (size_t i = 0; i < q.size(); ++i) {
            absl::StrAppend(&list, i ? " " : "", q[i]);
          }
          Err(absl::StrCat("Unknown help topic [", list, "]\n"));
          Out(root->Usage());
          return;
        }
        cmd->EnsureHelpFlag();
        Out(cmd->Usage());
      });
}

}  // namespace

std::unique_ptr<Command> NewRootCommand() {
  auto root = std::make_unique<Command>(
      "etcdctl", "A simple command line client for etcd3.");
  Command* r = root.get();
  r->StringSlice("endpoints", 0, {"127.0.0.1:2379"}, "gRPC endpoints", true);
  r->Bool("debug", 0, false, "enable client-side debug logging", true);
  r->String("write-out", 'w', "simple",
            "set the output format (fields, json, protobuf, simple, table)",
            true);
  r->Bool("hex", 0, false, "print byte strings as hex encoded strings", true);
  r->Duration("dial-timeout", 0, 2 * kSecond,
              "dial timeout for client connections", true);
  r->Duration("command-timeout", 0, 5 * kSecond,
              "timeout for short running command (excluding dial timeout)",
              true);
  r->Duration("keepalive-time", 0, 2 * kSecond,
              "keepalive time for client connections", true);
  r->Duration("keepalive-timeout", 0, 6 * kSecond,
              "keepalive timeout for client connections", true);
  r->Bool("insecure-transport", 0, true,
          "disable transport security for client connections", true);
  r->Bool("insecure-discovery", 0, true,
          "accept insecure SRV records describing cluster endpoints", true);
  r->Bool("insecure-skip-tls-verify", 0, false,
          "skip server certificate verification (CAUTION: this option should "
          "be enabled only for testing purposes)",
          true);
  r->String("cert", 0, "",
            "identify secure client using this TLS certificate file", true);
  r->String("key", 0, "", "identify secure client using this TLS key file",
            true);
  r->String("cacert", 0, "",
            "verify certificates of TLS-enabled secure servers using this CA "
            "bundle",
            true);
  r->String("user", 0, "",
            "username[:password] for authentication (prompt if password is "
            "not supplied)",
            true);
  r->String("password", 0, "",
            "password for authentication (if this option is used, --user "
            "option shouldn't include password)",
            true);
  r->String("discovery-srv", 'd', "",
            "domain name to query for SRV records describing cluster "
            "endpoints",
            true);
  r->String("discovery-srv-name", 0, "",
            "service name to query when using DNS discovery", true);

  r->Add(NewGetCommand());
  r->Add(NewPutCommand());
  r->Add(NewDelCommand());
  r->Add(NewTxnCommand());
  r->Add(NewCompactionCommand());
  r->Add(NewAlarmCommand());
  r->Add(NewDefragCommand());
  r->Add(NewEndpointCommand());
  r->Add(NewMoveLeaderCommand());
  r->Add(NewWatchCommand());
  r->Add(NewVersionCommand());
  r->Add(NewLeaseCommand());
  r->Add(NewMemberCommand());
  r->Add(NewSnapshotCommand());
  r->Add(NewMakeMirrorCommand());
  r->Add(NewMigrateCommand());
  r->Add(NewLockCommand());
  r->Add(NewElectCommand());
  r->Add(NewAuthCommand());
  r->Add(NewUserCommand());
  r->Add(NewRoleCommand());
  r->Add(NewCheckCommand());
  r->Add(NewHelpCommand(r));
  r->Add(NewCompletionCommand(r->Name()));
  return root;
}

}  // namespace detcd::ctl

int main(int argc, char** argv) {
  using namespace detcd::ctl;
  // As etcdctl's main: ETCDCTL_API selects the API (only 3 here) and is
  // removed so it does not count as an unknown ETCDCTL_ variable.
  const char* api = std::getenv("ETCDCTL_API");
  if (api != nullptr && *api != '\0' && std::string(api) != "3") {
    Err(absl::StrCat("unsupported API version ", api, "\n"));
    Exit(1);
  }
  unsetenv("ETCDCTL_API");
  // gRPC core's own log lines (e.g. TLS handshake failures) are not
  // etcdctl's output; clientv3 discards them unless --debug.
  bool debug = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--debug" || a == "--debug=true") debug = true;
  }
  if (!debug) gpr_set_log_function([](gpr_log_func_args*) {});
  std::vector<std::string> args(argv + 1, argv + argc);
  SetOsArgs(std::vector<std::string>(argv, argv + argc));
  std::unique_ptr<Command> root = NewRootCommand();
  if (IsCompleteRequest(args)) Exit(RunCompleteRequest(root.get(), args));
  Exit(root->Execute(args));
}
