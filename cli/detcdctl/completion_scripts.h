// The texts of etcdctl 3.4's `completion` command: cobra 1.6's generated
// shell completion scripts and the help texts of `completion <shell>`.
#ifndef DETCD_CLI_DETCDCTL_COMPLETION_SCRIPTS_H_
#define DETCD_CLI_DETCDCTL_COMPLETION_SCRIPTS_H_

#include <string>

#include "absl/strings/string_view.h"

namespace detcd::ctl {

// The script for shell ("bash", "zsh", "fish" or "powershell"; "" for
// another) completing the program `name` (the word the shell completes,
// whose `__complete` command the script runs); `descriptions` false is
// `--no-descriptions` (the script asks `__completeNoDesc`).
std::string CompletionScript(absl::string_view shell, absl::string_view name,
                             bool descriptions);

// The long help of `completion <shell>`; root_name is the root command's
// name shown in its examples.
std::string CompletionLong(absl::string_view shell,
                           absl::string_view root_name);

}  // namespace detcd::ctl

#endif  // DETCD_CLI_DETCDCTL_COMPLETION_SCRIPTS_H_
