// lease grant / revoke / timetolive / list / keep-alive.
#include <csignal>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/detcdctl/commands.h"
#include "cli/detcdctl/ctl.h"
#include "cli/detcdctl/gofmt.h"
#include "detcd/errors.h"
#include "detcd/lease.h"

namespace detcd::ctl {
namespace {

namespace pb = etcdserverpb;

int64_t LeaseFromArgs(const std::string& arg) {
  auto id = GoParseInt(arg, 16);
  if (!id.ok()) {
    ExitWithError(kExitBadArgs, absl::StrCat("bad lease ID arg (",
                                             id.status().message(),
                                             "), expecting ID in Hex"));
  }
  return *id;
}

}  // namespace

std::unique_ptr<Command> NewLeaseCommand() {
  auto lc = std::make_unique<Command>("lease <subcommand>",
                                      "Lease related commands");
  lc->Add("grant <ttl>", "Creates leases", "",
          [](Command& cmd, const std::vector<std::string>& args) {
            if (args.size() != 1) {
              ExitWithError(kExitBadArgs,
                            "lease grant command needs TTL argument");
            }
            auto ttl = GoParseInt(args[0], 10);
            if (!ttl.ok()) {
              ExitWithError(kExitBadArgs, absl::StrCat("bad TTL (",
                                                       ttl.status().message(),
                                                       ")"));
            }
            client::CallOptions ctx = CommandCtx(cmd);
            auto cli = MustClientFromCmd(cmd);
            pb::LeaseGrantRequest r;
            r.set_ttl(*ttl);
            auto resp = cli->LeaseGrant(r, ctx);
            if (!resp.ok()) {
              ExitWithError(kExitError,
                            absl::StrCat("failed to grant lease (",
                                         client::ErrorText(resp.status()),
                                         ")"));
            }
            display().Grant(*resp);
          });
  lc->Add("revoke <leaseID>", "Revokes leases", "",
          [](Command& cmd, const std::vector<std::string>& args) {
            if (args.size() != 1) {
              ExitWithError(kExitBadArgs,
                            "lease revoke command needs 1 argument");
            }
            int64_t id = LeaseFromArgs(args[0]);
            client::CallOptions ctx = CommandCtx(cmd);
            auto cli = MustClientFromCmd(cmd);
            pb::LeaseRevokeRequest r;
            r.set_id(id);
            auto resp = cli->LeaseRevoke(r, ctx);
            if (!resp.ok()) {
              ExitWithError(kExitError,
                            absl::StrCat("failed to revoke lease (",
                                         client::ErrorText(resp.status()),
                                         ")"));
            }
            display().Revoke(id, *resp);
          });
  Command* ttl = lc->Add(
      "timetolive <leaseID> [options]", "Get lease information", "",
      [](Command& cmd, const std::vector<std::string>& args) {
        if (args.size() != 1) {
          ExitWithError(kExitBadArgs,
                        "lease timetolive command needs lease ID as argument");
        }
        bool keys = cmd.Lookup("keys")->b();
        auto cli = MustClientFromCmd(cmd);
        pb::LeaseTimeToLiveRequest r;
        r.set_id(LeaseFromArgs(args[0]));
        r.set_keys(keys);
        auto resp = cli->LeaseTimeToLive(r);
        if (!resp.ok()) ExitWithStatus(kExitBadConnection, resp.status());
        display().TimeToLive(*resp, keys);
      });
  ttl->Bool("keys", 0, false, "Get keys attached to this lease");
  lc->Add("list", "List all active leases", "",
          [](Command& cmd, const std::vector<std::string>&) {
            auto cli = MustClientFromCmd(cmd);
            auto resp = cli->LeaseLeases(pb::LeaseLeasesRequest());
            if (!resp.ok()) ExitWithStatus(kExitBadConnection, resp.status());
            display().Leases(*resp);
          });
  Command* ka = lc->Add(
      "keep-alive [options] <leaseID>", "Keeps leases alive (renew)", "",
      [](Command& cmd, const std::vector<std::string>& args) {
        if (args.size() != 1) {
          ExitWithError(kExitBadArgs,
                        "lease keep-alive command needs lease ID as argument");
        }
        int64_t id = LeaseFromArgs(args[0]);
        if (cmd.Lookup("once")->b()) {
          auto cli = MustClientFromCmd(cmd);
          auto resp = cli->LeaseKeepAliveOnce(id);
          if (!resp.ok()) ExitWithStatus(kExitBadConnection, resp.status());
          if (resp->ttl() <= 0) {
            ExitWithError(kExitBadConnection, client::kErrLeaseNotFound);
          }
          display().KeepAlive(*resp);
          return;
        }
        auto cli = MustClientFromCmd(cmd);
        client::KeepAliveLoop(
            cli.get(), id,
            [](const pb::LeaseKeepAliveResponse& r) {
              display().KeepAlive(r);
              std::fflush(stdout);
            },
            nullptr)
            .IgnoreError();
        if (display().format() == OutFormat::kSimple) {
          Out(absl::StrFormat("lease %016x expired or revoked.\n",
                              static_cast<uint64_t>(id)));
        }
      });
  ka->Bool("once", 0, false,
           "Resets the keep-alive time to its original value and exits "
           "immediately");
  return lc;
}

}  // namespace detcd::ctl
