// auth, user, role.
#include <termios.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "cli/detcdctl/commands.h"
#include "cli/detcdctl/ctl.h"
#include "detcd/errors.h"

namespace detcd::ctl {
namespace {

namespace pb = etcdserverpb;

// speakeasy.Ask: prompt on stdout, read without echo from the terminal.
absl::StatusOr<std::string> Ask(const std::string& prompt) {
  Out(prompt);
  std::fflush(stdout);
  struct termios old;
  if (tcgetattr(STDIN_FILENO, &old) != 0) {
    return absl::InvalidArgumentError("inappropriate ioctl for device");
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

std::string ReadPasswordInteractive(const std::string& name) {
  auto p1 = Ask(absl::StrCat("Password of ", name, ": "));
  if (!p1.ok()) {
    ExitWithError(kExitBadArgs, absl::StrCat("failed to ask password: ",
                                             p1.status().message()));
  }
  if (p1->empty()) ExitWithError(kExitBadArgs, "empty password");
  auto p2 = Ask(absl::StrCat("Type password of ", name,
                             " again for confirmation: "));
  if (!p2.ok()) {
    ExitWithError(kExitBadArgs, absl::StrCat("failed to ask password: ",
                                             p2.status().message()));
  }
  if (*p1 != *p2) ExitWithError(kExitBadArgs, "given passwords are different");
  return *p1;
}

// fmt.Scanf("%s", &password): the first space-separated word of stdin.
std::string ScanWord() {
  std::string w;
  int c;
  while ((c = std::fgetc(stdin)) != EOF && c != '\n' && c != ' ' && c != '\t' &&
         c != '\r') {
    w += static_cast<char>(c);
  }
  return w;
}

// clientv3.StrToPermissionType.
authpb::Permission::Type PermType(const std::string& s) {
  std::string u = absl::AsciiStrToUpper(s);
  if (u == "READ") return authpb::Permission::READ;
  if (u == "WRITE") return authpb::Permission::WRITE;
  if (u == "READWRITE") return authpb::Permission::READWRITE;
  ExitWithError(kExitBadArgs, absl::StrCat("invalid permission type: ", s));
}

// etcdctl's permRange / rangeEndFromPermFlags.
std::pair<std::string, std::string> PermRange(Command& cmd,
                                              const std::vector<std::string>& args) {
  bool prefix = cmd.Lookup("prefix")->b();
  bool from_key = cmd.Lookup("from-key")->b();
  std::string key = args[0];
  std::string end;
  if (key.empty()) {
    if (prefix && from_key) {
      ExitWithError(kExitBadArgs,
                    "--from-key and --prefix flags are mutually exclusive");
    }
    key = std::string(1, '\0');
    if (prefix || from_key) end = std::string(1, '\0');
    return {key, end};
  }
  if (args.size() == 1) {
    if (prefix) {
      if (from_key) {
        ExitWithError(kExitBadArgs,
                      "--from-key and --prefix flags are mutually exclusive");
      }
      return {key, PrefixRangeEnd(key)};
    }
    if (from_key) return {key, std::string(1, '\0')};
    return {key, ""};
  }
  if (prefix) {
    ExitWithError(kExitBadArgs, "unexpected endkey argument with --prefix flag");
  }
  if (from_key) {
    ExitWithError(kExitBadArgs,
                  "unexpected endkey argument with --from-key flag");
  }
  return {key, args[1]};
}

// The response, or etcdctl's exit on the call's error.
template <typename T>
T MustOk(absl::StatusOr<T> r) {
  if (!r.ok()) ExitWithStatus(kExitError, r.status());
  return std::move(*r);
}

}  // namespace

std::unique_ptr<Command> NewAuthCommand() {
  auto ac = std::make_unique<Command>("auth <enable or disable>",
                                      "Enable or disable authentication");
  ac->Add("enable", "Enables authentication", "",
          [](Command& cmd, const std::vector<std::string>& args) {
            if (!args.empty()) {
              ExitWithError(kExitBadArgs,
                            "auth enable command does not accept any "
                            "arguments");
            }
            client::CallOptions ctx = CommandCtx(cmd);
            auto cli = MustClientFromCmd(cmd);
            absl::Status err;
            for (;;) {
              auto r = cli->AuthEnable(ctx);
              if (r.ok()) break;
              err = r.status();
              if (err.message() != client::kErrRootRoleNotExist) break;
              // Make the root role and grant it to root, then retry.
              pb::AuthRoleAddRequest ra;
              ra.set_name("root");
              auto rr = cli->RoleAdd(ra, ctx);
              if (!rr.ok()) {
                err = rr.status();
                break;
              }
              pb::AuthUserGrantRoleRequest g;
              g.set_user("root");
              g.set_role("root");
              auto gr = cli->UserGrantRole(g, ctx);
              if (!gr.ok()) {
                err = gr.status();
                break;
              }
              err = absl::OkStatus();
            }
            if (!err.ok()) ExitWithStatus(kExitError, err);
            Out("Authentication Enabled\n");
          });
  ac->Add("disable", "Disables authentication", "",
          [](Command& cmd, const std::vector<std::string>& args) {
            if (!args.empty()) {
              ExitWithError(kExitBadArgs,
                            "auth disable command does not accept any "
                            "arguments");
            }
            client::CallOptions ctx = CommandCtx(cmd);
            auto r = MustClientFromCmd(cmd)->AuthDisable(ctx);
            if (!r.ok()) ExitWithStatus(kExitError, r.status());
            Out("Authentication Disabled\n");
          });
  return ac;
}

std::unique_ptr<Command> NewUserCommand() {
  auto uc = std::make_unique<Command>("user <subcommand>",
                                      "User related commands");
  Command* add = uc->Add(
      "add <user name or user:password> [options]", "Adds a new user", "",
      [](Command& cmd, const std::vector<std::string>& args) {
        if (args.size() != 1) {
          ExitWithError(kExitBadArgs,
                        "user add command requires user name as its argument");
        }
        pb::AuthUserAddRequest r;
        r.mutable_options();  // clientv3 always sends the options
        std::string user, password;
        if (!cmd.Lookup("no-password")->b()) {
          std::string from_flag = cmd.Lookup("new-user-password")->s();
          if (!from_flag.empty()) {
            user = args[0];
            password = from_flag;
          } else {
            size_t colon = args[0].find(':');
            if (colon == std::string::npos) {
              user = args[0];
              password = cmd.Lookup("interactive")->b()
                             ? ReadPasswordInteractive(args[0])
                             : ScanWord();
            } else {
              user = args[0].substr(0, colon);
              password = args[0].substr(colon + 1);
              if (user.empty()) {
                ExitWithError(kExitBadArgs,
                              "empty user name is not allowed");
              }
            }
          }
        } else {
          user = args[0];
          r.mutable_options()->set_no_password(true);
        }
        r.set_name(user);
        r.set_password(password);
        auto resp = MustOk(MustClientFromCmd(cmd)->UserAdd(r));
        display().UserAdd(user, resp);
      });
  add->Bool("interactive", 0, true,
            "Read password from stdin instead of interactive terminal");
  add->String("new-user-password", 0, "",
              "Supply password from the command line flag");
  add->Bool("no-password", 0, false,
            "Create a user without password (CN based auth only)");
  uc->Add("delete <user name>", "Deletes a user", "",
          [](Command& cmd, const std::vector<std::string>& args) {
            if (args.size() != 1) {
              ExitWithError(kExitBadArgs,
                            "user delete command requires user name as its "
                            "argument");
            }
            pb::AuthUserDeleteRequest r;
            r.set_name(args[0]);
            auto resp = MustOk(MustClientFromCmd(cmd)->UserDelete(r));
            display().UserDelete(args[0], resp);
          });
  Command* get = uc->Add(
      "get <user name> [options]", "Gets detailed information of a user", "",
      [](Command& cmd, const std::vector<std::string>& args) {
        if (args.size() != 1) {
          ExitWithError(kExitBadArgs,
                        "user get command requires user name as its argument");
        }
        auto cli = MustClientFromCmd(cmd);
        pb::AuthUserGetRequest r;
        r.set_name(args[0]);
        auto resp = MustOk(cli->UserGet(r));
        if (cmd.Lookup("detail")->b()) {
          Out(absl::StrCat("User: ", args[0], "\n"));
          for (const auto& role : resp.roles()) {
            Out("\n");
            pb::AuthRoleGetRequest rg;
            rg.set_role(role);
            auto rr = MustOk(cli->RoleGet(rg));
            display().RoleGet(role, rr);
          }
        } else {
          display().UserGet(args[0], resp);
        }
      });
  get->Bool("detail", 0, false, "Show permissions of roles granted to the user");
  uc->Add("list", "Lists all users", "",
          [](Command& cmd, const std::vector<std::string>& args) {
            if (!args.empty()) {
              ExitWithError(kExitBadArgs,
                            "user list command requires no arguments");
            }
            auto resp = MustOk(
                MustClientFromCmd(cmd)->UserList(pb::AuthUserListRequest()));
            display().UserList(resp);
          });
  Command* pw = uc->Add(
      "passwd <user name> [options]", "Changes password of user", "",
      [](Command& cmd, const std::vector<std::string>& args) {
        if (args.size() != 1) {
          ExitWithError(kExitBadArgs,
                        "user passwd command requires user name as its "
                        "argument");
        }
        std::string password = cmd.Lookup("interactive")->b()
                                   ? ReadPasswordInteractive(args[0])
                                   : ScanWord();
        pb::AuthUserChangePasswordRequest r;
        r.set_name(args[0]);
        r.set_password(password);
        auto resp =
            MustOk(MustClientFromCmd(cmd)->UserChangePassword(r));
        display().UserChangePassword(resp);
      });
  pw->Bool("interactive", 0, true,
           "If true, read password from stdin instead of interactive "
           "terminal");
  uc->Add("grant-role <user name> <role name>", "Grants a role to a user", "",
          [](Command& cmd, const std::vector<std::string>& args) {
            if (args.size() != 2) {
              ExitWithError(kExitBadArgs,
                            "user grant command requires user name and role "
                            "name as its argument");
            }
            pb::AuthUserGrantRoleRequest r;
            r.set_user(args[0]);
            r.set_role(args[1]);
            auto resp = MustOk(MustClientFromCmd(cmd)->UserGrantRole(r));
            display().UserGrantRole(args[0], args[1], resp);
          });
  uc->Add("revoke-role <user name> <role name>", "Revokes a role from a user",
          "", [](Command& cmd, const std::vector<std::string>& args) {
            if (args.size() != 2) {
              ExitWithError(kExitBadArgs,
                            "user revoke-role requires user name and role "
                            "name as its argument");
            }
            pb::AuthUserRevokeRoleRequest r;
            r.set_name(args[0]);
            r.set_role(args[1]);
            auto resp = MustOk(MustClientFromCmd(cmd)->UserRevokeRole(r));
            display().UserRevokeRole(args[0], args[1], resp);
          });
  return uc;
}

std::unique_ptr<Command> NewRoleCommand() {
  auto rc = std::make_unique<Command>("role <subcommand>",
                                      "Role related commands");
  rc->Add("add <role name>", "Adds a new role", "",
          [](Command& cmd, const std::vector<std::string>& args) {
            if (args.size() != 1) {
              ExitWithError(kExitBadArgs,
                            "role add command requires role name as its "
                            "argument");
            }
            pb::AuthRoleAddRequest r;
            r.set_name(args[0]);
            auto resp = MustOk(MustClientFromCmd(cmd)->RoleAdd(r));
            display().RoleAdd(args[0], resp);
          });
  rc->Add("delete <role name>", "Deletes a role", "",
          [](Command& cmd, const std::vector<std::string>& args) {
            if (args.size() != 1) {
              ExitWithError(kExitBadArgs,
                            "role delete command requires role name as its "
                            "argument");
            }
            pb::AuthRoleDeleteRequest r;
            r.set_role(args[0]);
            auto resp = MustOk(MustClientFromCmd(cmd)->RoleDelete(r));
            display().RoleDelete(args[0], resp);
          });
  rc->Add("get <role name>", "Gets detailed information of a role", "",
          [](Command& cmd, const std::vector<std::string>& args) {
            if (args.size() != 1) {
              ExitWithError(kExitBadArgs,
                            "role get command requires role name as its "
                            "argument");
            }
            pb::AuthRoleGetRequest r;
            r.set_role(args[0]);
            auto resp = MustOk(MustClientFromCmd(cmd)->RoleGet(r));
            display().RoleGet(args[0], resp);
          });
  rc->Add("list", "Lists all roles", "",
          [](Command& cmd, const std::vector<std::string>& args) {
            if (!args.empty()) {
              ExitWithError(kExitBadArgs,
                            "role list command requires no arguments");
            }
            auto resp = MustOk(
                MustClientFromCmd(cmd)->RoleList(pb::AuthRoleListRequest()));
            display().RoleList(resp);
          });
  Command* grant = rc->Add(
      "grant-permission [options] <role name> <permission type> <key> "
      "[endkey]",
      "Grants a key to a role", "",
      [](Command& cmd, const std::vector<std::string>& args) {
        if (args.size() < 3) {
          ExitWithError(kExitBadArgs,
                        "role grant command requires role name, permission "
                        "type, and key [endkey] as its argument");
        }
        authpb::Permission::Type perm = PermType(args[1]);
        auto [key, end] = PermRange(
            cmd, std::vector<std::string>(args.begin() + 2, args.end()));
        pb::AuthRoleGrantPermissionRequest r;
        r.set_name(args[0]);
        r.mutable_perm()->set_key(key);
        r.mutable_perm()->set_range_end(end);
        r.mutable_perm()->set_permtype(perm);
        auto resp =
            MustOk(MustClientFromCmd(cmd)->RoleGrantPermission(r));
        display().RoleGrantPermission(args[0], resp);
      });
  grant->Bool("prefix", 0, false, "grant a prefix permission");
  grant->Bool("from-key", 0, false,
              "grant a permission of keys that are greater than or equal to "
              "the given key using byte compare");
  Command* revoke = rc->Add(
      "revoke-permission <role name> <key> [endkey]",
      "Revokes a key from a role", "",
      [](Command& cmd, const std::vector<std::string>& args) {
        if (args.size() < 2) {
          ExitWithError(kExitBadArgs,
                        "role revoke-permission command requires role name "
                        "and key [endkey] as its argument");
        }
        auto [key, end] = PermRange(
            cmd, std::vector<std::string>(args.begin() + 1, args.end()));
        pb::AuthRoleRevokePermissionRequest r;
        r.set_role(args[0]);
        r.set_key(key);
        r.set_range_end(end);
        auto resp =
            MustOk(MustClientFromCmd(cmd)->RoleRevokePermission(r));
        display().RoleRevokePermission(args[0], args[1], end, resp);
      });
  revoke->Bool("prefix", 0, false, "revoke a prefix permission");
  revoke->Bool("from-key", 0, false,
               "revoke a permission of keys that are greater than or equal "
               "to the given key using byte compare");
  return rc;
}

}  // namespace detcd::ctl
