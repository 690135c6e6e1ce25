// Shell completion as etcdctl 3.4 has it from cobra 1.6: the `completion
// bash|zsh|fish|powershell` command printing cobra's scripts, and the
// hidden `__complete` / `__completeNoDesc` command those scripts run to
// ask for the candidates of a partly typed command line (cobra's
// getCompletions: subcommand names, flag names, no values; each candidate
// "word\tdescription" on its own line, then ":<directive>").
#ifndef DETCD_CLI_DETCDCTL_COMPLETION_H_
#define DETCD_CLI_DETCDCTL_COMPLETION_H_

#include <memory>
#include <string>
#include <vector>

#include "cli/detcdctl/command.h"

namespace detcd::ctl {

// cobra's ShellCompDirective bits.
enum CompDirective : int {
  kCompDefault = 0,
  kCompError = 1,
  kCompNoSpace = 2,
  kCompNoFileComp = 4,
  kCompFilterFileExt = 8,
  kCompFilterDirs = 16,
};

// The `completion` command (cobra's InitDefaultCompletionCmd). The scripts
// complete the program by the name it was run as (argv[0]'s base name:
// "detcdctl", or "etcdctl" when installed under that name, which gives
// etcdctl's scripts byte for byte); the help texts name the root command.
std::unique_ptr<Command> NewCompletionCommand(const std::string& root_name);

// Whether args (argv without the program name) asks for completions.
bool IsCompleteRequest(const std::vector<std::string>& args);

// Runs `__complete` / `__completeNoDesc` args[1..] on the command tree of
// root, printing cobra's output; returns the exit code.
int RunCompleteRequest(Command* root, const std::vector<std::string>& args);

// The candidates and directive for a command line whose last word is
// being typed (cobra's getCompletions); *error is cobra's message when
// the line cannot be completed (printed as "[Debug] [Error] ...").
std::vector<std::string> Completions(Command* root,
                                     const std::vector<std::string>& line,
                                     int* directive, std::string* error);

}  // namespace detcd::ctl

#endif  // DETCD_CLI_DETCDCTL_COMPLETION_H_
