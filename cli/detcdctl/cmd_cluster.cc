// member, endpoint, move-leader, alarm, defrag.
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "cli/detcdctl/commands.h"
#include "cli/detcdctl/ctl.h"
#include "cli/detcdctl/gofmt.h"
#include "detcd/errors.h"
#include "shim/defrag.h"

namespace detcd::ctl {
namespace {

namespace pb = etcdserverpb;

uint64_t MemberIdArg(const std::string& arg) {
  auto id = GoParseUint(arg, 16);
  if (!id.ok()) {
    ExitWithError(kExitBadArgs, absl::StrCat("bad member ID arg (",
                                             id.status().message(),
                                             "), expecting ID in Hex"));
  }
  return *id;
}

// etcdctl's endpointsFromCluster: --endpoints as given, or with --cluster
// every member's client URLs (from a member list made without auth).
std::vector<std::string> EndpointsFromCluster(Command& cmd) {
  if (!cmd.Lookup("cluster")->b()) return cmd.Lookup("endpoints")->slice();
  ClientSetup setup = ClientConfigFromCmd(cmd);
  setup.config.username.clear();
  setup.config.password.clear();
  auto c = MustClient(setup);
  auto resp = c->MemberList(pb::MemberListRequest(), CommandCtx(cmd));
  if (!resp.ok()) {
    ExitWithError(kExitError,
                  absl::StrCat("failed to fetch endpoints from etcd cluster "
                               "member list: ",
                               client::ErrorText(resp.status())));
  }
  std::vector<std::string> out;
  for (const auto& m : resp->members()) {
    for (const auto& u : m.clienturls()) out.push_back(u);
  }
  return out;
}

void EndpointHealth(Command& cmd) {
  ClientSetup setup = ClientConfigFromCmd(cmd);
  std::vector<std::string> eps = EndpointsFromCluster(cmd);
  absl::Mutex mu;
  std::vector<EpHealth> list;
  std::vector<std::thread> threads;
  for (const std::string& ep : eps) {
    threads.emplace_back([&, ep] {
      ClientSetup one = setup;
      one.config.endpoints = {ep};
      EpHealth h;
      h.ep = ep;
      auto cli = client::Client::New(one.config);
      if (!cli.ok()) {
        h.error = client::ErrorText(cli.status());
      } else {
        auto start = std::chrono::steady_clock::now();
        pb::RangeRequest r;
        r.set_key("health");
        auto resp = (*cli)->Range(r, CommandCtx(cmd));
        h.took = GoDuration(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                std::chrono::steady_clock::now() - start)
                                .count());
        // Permission denied still proves the request went through raft.
        if (resp.ok() || resp.status().message() == client::kErrPermissionDenied) {
          h.health = true;
        } else {
          h.error = client::ErrorText(resp.status());
        }
      }
      absl::MutexLock l(&mu);
      list.push_back(h);
    });
  }
  for (auto& t : threads) t.join();
  bool errs = false;
  for (const auto& h : list) errs = errs || !h.error.empty();
  display().EndpointHealth(list);
  if (errs) ExitWithError(kExitError, "unhealthy cluster");
}

void EndpointStatus(Command& cmd) {
  auto c = MustClientFromCmd(cmd);
  std::vector<EpStatus> list;
  bool failed = false;
  for (const std::string& ep : EndpointsFromCluster(cmd)) {
    auto resp = c->Status(ep, CommandCtx(cmd));
    if (!resp.ok()) {
      failed = true;
      Err(absl::StrCat("Failed to get the status of endpoint ", ep, " (",
                       client::ErrorText(resp.status()), ")\n"));
      continue;
    }
    list.push_back({ep, *resp});
  }
  display().EndpointStatus(list);
  if (failed) Exit(kExitError);
}

void EndpointHashKV(Command& cmd) {
  auto c = MustClientFromCmd(cmd);
  std::vector<EpHashKV> list;
  absl::Status last;
  int64_t rev = cmd.Lookup("rev")->i();
  for (const std::string& ep : EndpointsFromCluster(cmd)) {
    auto resp = c->HashKV(ep, rev, CommandCtx(cmd));
    if (!resp.ok()) {
      last = resp.status();
      Err(absl::StrCat("Failed to get the hash of endpoint ", ep, " (",
                       client::ErrorText(resp.status()), ")\n"));
      continue;
    }
    list.push_back({ep, *resp});
  }
  display().EndpointHashKV(list);
  if (!last.ok()) ExitWithStatus(kExitError, last);
}

}  // namespace

std::unique_ptr<Command> NewMemberCommand() {
  auto mc = std::make_unique<Command>("member <subcommand>",
                                      "Membership related commands");
  Command* add = mc->Add(
      "add <memberName> [options]", "Adds a member into the cluster", "",
      [](Command& cmd, const std::vector<std::string>& args) {
        if (args.empty()) ExitWithError(kExitBadArgs, "member name not provided");
        if (args.size() > 1) {
          std::string ev = "too many arguments";
          for (const std::string& s : args) {
            if (absl::StartsWith(absl::AsciiStrToLower(s), "http")) {
              absl::StrAppend(&ev, ", did you mean --peer-urls=", s);
            }
          }
          ExitWithError(kExitBadArgs, ev);
        }
        std::string name = args[0];
        std::string peer_urls = cmd.Lookup("peer-urls")->s();
        if (peer_urls.empty()) {
          ExitWithError(kExitBadArgs, "member peer urls not provided");
        }
        pb::MemberAddRequest r;
        for (absl::string_view u : absl::StrSplit(peer_urls, ',')) {
          r.add_peerurls(std::string(u));
        }
        r.set_islearner(cmd.Lookup("learner")->b());
        client::CallOptions ctx = CommandCtx(cmd);
        auto cli = MustClientFromCmd(cmd);
        auto resp = cli->MemberAdd(r, ctx);
        if (!resp.ok()) ExitWithStatus(kExitError, resp.status());
        display().MemberAdd(*resp);
        if (display().format() == OutFormat::kSimple) {
          std::vector<std::string> conf;
          for (const auto& m : resp->members()) {
            for (const auto& u : m.peerurls()) {
              std::string n = m.id() == resp->member().id() ? name : m.name();
              conf.push_back(absl::StrCat(n, "=", u));
            }
          }
          Out("\n");
          Out(absl::StrCat("ETCD_NAME=", GoQuote(name), "\n"));
          Out(absl::StrCat("ETCD_INITIAL_CLUSTER=",
                           GoQuote(absl::StrJoin(conf, ",")), "\n"));
          Out(absl::StrCat("ETCD_INITIAL_ADVERTISE_PEER_URLS=",
                           GoQuote(peer_urls), "\n"));
          Out("ETCD_INITIAL_CLUSTER_STATE=\"existing\"\n");
        }
      });
  add->String("peer-urls", 0, "", "comma separated peer URLs for the new member.");
  add->Bool("learner", 0, false, "indicates if the new member is raft learner");
  mc->Add("remove <memberID>", "Removes a member from the cluster", "",
          [](Command& cmd, const std::vector<std::string>& args) {
            if (args.size() != 1) {
              ExitWithError(kExitBadArgs, "member ID is not provided");
            }
            uint64_t id = MemberIdArg(args[0]);
            pb::MemberRemoveRequest r;
            r.set_id(id);
            client::CallOptions ctx = CommandCtx(cmd);
            auto cli = MustClientFromCmd(cmd);
            auto resp = cli->MemberRemove(r, ctx);
            if (!resp.ok()) ExitWithStatus(kExitError, resp.status());
            display().MemberRemove(id, *resp);
          });
  Command* upd = mc->Add(
      "update <memberID> [options]", "Updates a member in the cluster", "",
      [](Command& cmd, const std::vector<std::string>& args) {
        if (args.size() != 1) {
          ExitWithError(kExitBadArgs, "member ID is not provided");
        }
        uint64_t id = MemberIdArg(args[0]);
        std::string peer_urls = cmd.Lookup("peer-urls")->s();
        if (peer_urls.empty()) {
          ExitWithError(kExitBadArgs, "member peer urls not provided");
        }
        pb::MemberUpdateRequest r;
        r.set_id(id);
        for (absl::string_view u : absl::StrSplit(peer_urls, ',')) {
          r.add_peerurls(std::string(u));
        }
        client::CallOptions ctx = CommandCtx(cmd);
        auto cli = MustClientFromCmd(cmd);
        auto resp = cli->MemberUpdate(r, ctx);
        if (!resp.ok()) ExitWithStatus(kExitError, resp.status());
        display().MemberUpdate(id, *resp);
      });
  upd->String("peer-urls", 0, "",
              "comma separated peer URLs for the updated member.");
  mc->Add("list", "Lists all members in the cluster",
          "When --write-out is set to simple, this command prints out "
          "comma-separated member lists for each endpoint.\nThe items in the "
          "lists are ID, Status, Name, Peer Addrs, Client Addrs, Is "
          "Learner.\n",
          [](Command& cmd, const std::vector<std::string>&) {
            client::CallOptions ctx = CommandCtx(cmd);
            auto cli = MustClientFromCmd(cmd);
            auto resp = cli->MemberList(pb::MemberListRequest(), ctx);
            if (!resp.ok()) ExitWithStatus(kExitError, resp.status());
            display().MemberList(*resp);
          });
  mc->Add("promote <memberID>", "Promotes a non-voting member in the cluster",
          "Promotes a non-voting learner member to a voting one in the "
          "cluster.\n",
          [](Command& cmd, const std::vector<std::string>& args) {
            if (args.size() != 1) {
              ExitWithError(kExitBadArgs, "member ID is not provided");
            }
            uint64_t id = MemberIdArg(args[0]);
            pb::MemberPromoteRequest r;
            r.set_id(id);
            client::CallOptions ctx = CommandCtx(cmd);
            auto cli = MustClientFromCmd(cmd);
            auto resp = cli->MemberPromote(r, ctx);
            if (!resp.ok()) ExitWithStatus(kExitError, resp.status());
            display().MemberPromote(id, *resp);
          });
  return mc;
}

std::unique_ptr<Command> NewEndpointCommand() {
  auto ec = std::make_unique<Command>("endpoint <subcommand>",
                                      "Endpoint related commands");
  ec->Bool("cluster", 0, false, "use all endpoints from the cluster member list",
           true);
  ec->Add("health",
          "Checks the healthiness of endpoints specified in `--endpoints` flag",
          "", [](Command& cmd, const std::vector<std::string>&) {
            EndpointHealth(cmd);
          });
  ec->Add("status",
          "Prints out the status of endpoints specified in `--endpoints` flag",
          "When --write-out is set to simple, this command prints out "
          "comma-separated status lists for each endpoint.\nThe items in the "
          "lists are endpoint, ID, version, db size, is leader, is learner, "
          "raft term, raft index, raft applied index, errors.\n",
          [](Command& cmd, const std::vector<std::string>&) {
            EndpointStatus(cmd);
          });
  Command* hc = ec->Add(
      "hashkv", "Prints the KV history hash for each endpoint in --endpoints",
      "", [](Command& cmd, const std::vector<std::string>&) {
        EndpointHashKV(cmd);
      });
  hc->Int64("rev", 0, 0, "maximum revision to hash (default: all revisions)",
            true);
  return ec;
}

std::unique_ptr<Command> NewMoveLeaderCommand() {
  return std::make_unique<Command>(
      "move-leader <transferee-member-id>",
      "Transfers leadership to another etcd cluster member.", "",
      [](Command& cmd, const std::vector<std::string>& args) {
        if (args.size() != 1) {
          ExitWithError(kExitBadArgs, "move-leader command needs 1 argument");
        }
        auto target = GoParseUint(args[0], 16);
        if (!target.ok()) ExitWithError(kExitBadArgs, target.status().message());
        ClientSetup setup = ClientConfigFromCmd(cmd);
        std::vector<std::string> eps = MustClient(setup)->endpoints();
        client::CallOptions ctx = CommandCtx(cmd);
        std::unique_ptr<client::Client> leader;
        uint64_t leader_id = 0;
        for (const std::string& ep : eps) {
          ClientSetup one = setup;
          one.config.endpoints = {ep};
          auto cli = MustClient(one);
          auto resp = cli->Status(ep, ctx);
          if (!resp.ok()) ExitWithStatus(kExitError, resp.status());
          if (resp->header().member_id() == resp->leader()) {
            leader = std::move(cli);
            leader_id = resp->leader();
            break;
          }
        }
        if (!leader) {
          ExitWithError(kExitBadArgs, absl::StrCat("no leader endpoint given at ",
                                                   GoStringSlice(eps)));
        }
        pb::MoveLeaderRequest r;
        r.set_targetid(*target);
        auto resp = leader->MoveLeader(r, ctx);
        if (!resp.ok()) ExitWithStatus(kExitError, resp.status());
        display().MoveLeader(leader_id, *target, *resp);
      });
}

std::unique_ptr<Command> NewAlarmCommand() {
  auto ac = std::make_unique<Command>("alarm <subcommand>",
                                      "Alarm related commands");
  ac->Add("disarm", "Disarms all alarms", "",
          [](Command& cmd, const std::vector<std::string>& args) {
            if (!args.empty()) {
              ExitWithError(kExitBadArgs,
                            "alarm disarm command accepts no arguments");
            }
            client::CallOptions ctx = CommandCtx(cmd);
            auto cli = MustClientFromCmd(cmd);
            // clientv3's AlarmDisarm of "every alarm": list, then disarm
            // each; the combined response has no header.
            pb::AlarmRequest list;
            list.set_action(pb::AlarmRequest::GET);
            auto all = cli->Alarm(list, ctx);
            if (!all.ok()) ExitWithStatus(kExitError, all.status());
            pb::AlarmResponse ret;
            for (const auto& a : all->alarms()) {
              pb::AlarmRequest d;
              d.set_action(pb::AlarmRequest::DEACTIVATE);
              d.set_memberid(a.memberid());
              d.set_alarm(a.alarm());
              auto dr = cli->Alarm(d, ctx);
              if (!dr.ok()) ExitWithStatus(kExitError, dr.status());
              for (const auto& x : dr->alarms()) *ret.add_alarms() = x;
            }
            display().Alarm(ret);
          });
  ac->Add("list", "Lists all alarms", "",
          [](Command& cmd, const std::vector<std::string>& args) {
            if (!args.empty()) {
              ExitWithError(kExitBadArgs,
                            "alarm list command accepts no arguments");
            }
            client::CallOptions ctx = CommandCtx(cmd);
            auto cli = MustClientFromCmd(cmd);
            pb::AlarmRequest r;
            r.set_action(pb::AlarmRequest::GET);
            auto resp = cli->Alarm(r, ctx);
            if (!resp.ok()) ExitWithStatus(kExitError, resp.status());
            display().Alarm(*resp);
          });
  return ac;
}

std::unique_ptr<Command> NewDefragCommand() {
  auto c = std::make_unique<Command>(
      "defrag", "Defragments the storage of the etcd members with given endpoints",
      "", [](Command& cmd, const std::vector<std::string>&) {
        std::string data_dir = cmd.Lookup("data-dir")->s();
        if (!data_dir.empty()) {
          // etcd rewrites its bolt file; detcd rewrites the member's
          // snapshot and WAL (shim/defrag.h). Quiet on success, as
          // etcdctl 3.4. Unlike etcdctl, which waits for a running etcd
          // to let go of the file, a dir in use is refused at once.
          auto r = shim::DefragDataDir(data_dir);
          if (!r.ok()) {
            Err(absl::StrCat("Failed to defragment etcd data[", data_dir,
                             "] (", r.status().message(), ")\n"));
            Exit(kExitError);
          }
          return;
        }
        int failures = 0;
        auto c = MustClientFromCmd(cmd);
        for (const std::string& ep : EndpointsFromCluster(cmd)) {
          auto resp = c->Defragment(ep, CommandCtx(cmd));
          if (!resp.ok()) {
            Err(absl::StrCat("Failed to defragment etcd member[", ep, "] (",
                             client::ErrorText(resp.status()), ")\n"));
            ++failures;
          } else {
            Out(absl::StrCat("Finished defragmenting etcd member[", ep, "]\n"));
          }
        }
        if (failures != 0) Exit(kExitError);
      });
  c->Bool("cluster", 0, false, "use all endpoints from the cluster member list",
          true);
  c->String("data-dir", 0, "",
            "Optional. If present, defragments a data directory not in use by "
            "etcd.");
  return c;
}

}  // namespace detcd::ctl
