// detcdctl's command tree: one function per group adds its commands (in
// etcdctl's order, which its help listing and "did you mean" suggestions
// follow).
#ifndef DETCD_CLI_DETCDCTL_COMMANDS_H_
#define DETCD_CLI_DETCDCTL_COMMANDS_H_

#include <memory>
#include <string>
#include <vector>

#include "cli/detcdctl/command.h"
#include "etcdserverpb/rpc.pb.h"

namespace detcd::ctl {

// The root command with etcdctl's global flags and every command.
std::unique_ptr<Command> NewRootCommand();

std::unique_ptr<Command> NewGetCommand();
std::unique_ptr<Command> NewPutCommand();
std::unique_ptr<Command> NewDelCommand();
std::unique_ptr<Command> NewTxnCommand();
std::unique_ptr<Command> NewCompactionCommand();
std::unique_ptr<Command> NewAlarmCommand();
std::unique_ptr<Command> NewDefragCommand();
std::unique_ptr<Command> NewEndpointCommand();
std::unique_ptr<Command> NewMoveLeaderCommand();
std::unique_ptr<Command> NewWatchCommand();
std::unique_ptr<Command> NewVersionCommand();
std::unique_ptr<Command> NewLeaseCommand();
std::unique_ptr<Command> NewMemberCommand();
std::unique_ptr<Command> NewSnapshotCommand();
std::unique_ptr<Command> NewMakeMirrorCommand();
std::unique_ptr<Command> NewMigrateCommand();
std::unique_ptr<Command> NewLockCommand();
std::unique_ptr<Command> NewElectCommand();
std::unique_ptr<Command> NewAuthCommand();
std::unique_ptr<Command> NewUserCommand();
std::unique_ptr<Command> NewRoleCommand();
std::unique_ptr<Command> NewCheckCommand();

// etcdctl's argify: splits a line into words, "double-quoted" (Go
// escapes) and 'single-quoted' strings kept together.
std::vector<std::string> Argify(const std::string& line);

// The request parts of get / put / del as etcdctl builds them from a
// parsed command (also used by txn's request lines).
etcdserverpb::RangeRequest GetOp(Command& cmd,
                                 const std::vector<std::string>& args);
etcdserverpb::PutRequest PutOp(Command& cmd,
                               const std::vector<std::string>& args);
etcdserverpb::DeleteRangeRequest DelOp(Command& cmd,
                                       const std::vector<std::string>& args);

}  // namespace detcd::ctl

#endif  // DETCD_CLI_DETCDCTL_COMMANDS_H_
