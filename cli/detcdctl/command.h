// Commands and flags with the syntax and messages of the Go libraries
// etcdctl is built on (spf13/cobra 1.6 and spf13/pflag), so that every
// command line etcdctl accepts is accepted here with the same meaning,
// and every one it refuses is refused with the same text and exit code:
//
//  - flags anywhere among the arguments; `--name=value`, `--name value`,
//    `-n value`, `-nvalue`, `-n=value`; bool flags alone or `--b=false`;
//    `--` ends the flags;
//  - command names matched by unique prefix (`etcdctl ge k`);
//  - pflag's errors ("unknown flag: --x", "flag needs an argument: --x",
//    `invalid argument "x" for "--limit" flag: strconv.ParseInt: ...`),
//    cobra's ("unknown command \"x\" for \"etcdctl\"" with suggestions);
//  - etcdctl's help page layout (its own template over text/tabwriter).
//
// CLI11 was considered (the project's usual choice) but its parser gives
// different meanings to some of these forms (`--rev -1`, prefix matching),
// and its errors and help are its own; matching etcdctl byte for byte
// would have meant rewriting all of that around it.
#ifndef DETCD_CLI_DETCDCTL_COMMAND_H_
#define DETCD_CLI_DETCDCTL_COMMAND_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/status/status.h"

namespace detcd::ctl {

class Command;

// One flag (pflag.Flag). Values are kept typed; `def_text` is what the
// help page shows as the default.
class Flag {
 public:
  enum class Type { kBool, kString, kInt64, kInt, kDuration, kStringSlice };

  Flag(std::string name, char shorthand, Type type, std::string usage);

  const std::string& name() const { return name_; }
  char shorthand() const { return shorthand_; }
  Type type() const { return type_; }
  const std::string& usage() const { return usage_; }
  bool changed() const { return changed_; }
  // Bool flags take no value (pflag's NoOptDefVal "true").
  bool takes_value() const { return type_ != Type::kBool; }

  // Parses and stores v; the error is pflag's value error (strconv's
  // text), to be wrapped as `invalid argument "v" for "--name" flag: ...`.
  absl::Status Set(absl::string_view v);
  // Restores the default and clears changed() (a fresh parse).
  void Reset();

  bool b() const { return b_; }
  const std::string& s() const { return s_; }
  int64_t i() const { return i_; }
  int64_t ns() const { return i_; }  // durations
  const std::vector<std::string>& slice() const { return slice_; }

  // Help line, etcdFlagUsages' format ("  -w, --write-out=\"simple\"\t...").
  std::string UsageLine() const;

 private:
  friend class Command;
  std::string name_;
  char shorthand_;
  Type type_;
  std::string usage_;
  std::string def_text_;
  bool def_b_ = false;
  std::string def_s_;
  int64_t def_i_ = 0;
  std::vector<std::string> def_slice_;
  bool changed_ = false;
  bool b_ = false;
  std::string s_;
  int64_t i_ = 0;
  std::vector<std::string> slice_;
};

// Thrown-free control flow: command functions call Exit (ctl.h), which
// ends the process, as etcdctl's ExitWithError does.
using RunFn = std::function<void(Command& cmd,
                                 const std::vector<std::string>& args)>;

// cobra's ValidArgsFunction: completions ("name\tdescription") for the
// command's positional arguments; sets *directive (cobra's
// ShellCompDirective bits).
using CompleteFn = std::function<std::vector<std::string>(
    Command& cmd, const std::vector<std::string>& args,
    const std::string& to_complete, int* directive)>;

class Command {
 public:
  Command(std::string use, std::string short_desc, std::string long_desc = "",
          RunFn run = nullptr);

  Command* Add(std::unique_ptr<Command> c);
  Command* Add(std::string use, std::string short_desc,
               std::string long_desc = "", RunFn run = nullptr);

  // Flag definitions (local to this command, or persistent: inherited by
  // its subcommands).
  Flag* Bool(std::string name, char shorthand, bool def, std::string usage,
             bool persistent = false);
  Flag* String(std::string name, char shorthand, std::string def,
               std::string usage, bool persistent = false);
  Flag* Int64(std::string name, char shorthand, int64_t def,
              std::string usage, bool persistent = false);
  Flag* Int(std::string name, char shorthand, int64_t def, std::string usage,
            bool persistent = false);
  Flag* Duration(std::string name, char shorthand, int64_t def_ns,
                 std::string usage, bool persistent = false);
  Flag* StringSlice(std::string name, char shorthand,
                    std::vector<std::string> def, std::string usage,
                    bool persistent = false);

  // A flag visible to this command (local, own persistent or inherited).
  Flag* Lookup(absl::string_view name);
  Flag* LookupShort(char c);
  // The flags of this command's parents that reach it.
  std::vector<Flag*> InheritedFlags();

  std::string Name() const;
  // "etcdctl lease grant".
  std::string CommandPath() const;
  Command* parent() const { return parent_; }
  Command* Root();
  bool Runnable() const { return static_cast<bool>(run_); }
  const std::string& short_desc() const { return short_; }
  const std::vector<std::unique_ptr<Command>>& subcommands() const {
    return subs_;
  }
  void set_hidden(bool h) { hidden_ = h; }
  void set_complete(CompleteFn f) { complete_ = std::move(f); }
  // cobra's DisableFlagsInUseLine: no " [flags]" on the usage line.
  void set_no_flags_in_use_line(bool v) { no_flags_in_use_line_ = v; }
  const CompleteFn& complete() const { return complete_; }

  // cobra's IsAvailableCommand: shown in listings and completions (not
  // hidden, not the root's help command, runnable or with such
  // subcommands).
  bool IsAvailable();
  // Subcommands in name order (cobra's Commands()).
  std::vector<Command*> SortedSubs();
  // This command's own flags, local and persistent, in name order.
  std::vector<Flag*> LocalFlags();
  // Its local flags that are not persistent (unsorted).
  std::vector<Flag*> LocalNonPersistentFlags();

  // etcdctl's usage page for this command.
  std::string Usage();

  // Runs the command line (argv without the program name) as cobra's
  // ExecuteC on the root; returns the process exit code for the cases
  // that return (run functions usually exit themselves).
  int Execute(const std::vector<std::string>& args);

  // Parses args as this command's flags (pflag's Parse); non-flag
  // arguments land in *positional. Used by txn and watch -i for their
  // sub-command lines too.
  absl::Status ParseFlags(const std::vector<std::string>& args,
                          std::vector<std::string>* positional);
  // Clears every flag value visible to this command.
  void ResetFlags();

  // cobra's Find plus its root check: the command named by args and the
  // arguments left for it, or the "unknown command" error (with
  // suggestions) when the root has no such subcommand.
  absl::Status Resolve(const std::vector<std::string>& args, Command** cmd,
                       std::vector<std::string>* rest);
  // cobra's default usage template (what an embedded cobra root without
  // etcdctl's usage function prints, e.g. for txn's request lines).
  std::string DefaultUsage();
  // Runs the command's function.
  void Run(const std::vector<std::string>& args) { run_(*this, args); }
  bool HelpRequested();
  // cobra's InitDefaultHelpFlag: -h/--help, defined when the command runs
  // or its help is asked for.
  void EnsureHelpFlag();

 private:
  Flag* Define(std::unique_ptr<Flag> f, bool persistent);
  std::vector<Command*> AllSubcommands();
  bool HasAvailableSubs();
  Command* FindNext(absl::string_view next);
  Command* Find(const std::vector<std::string>& args,
                std::vector<std::string>* rest);
  std::vector<std::string> StripFlags(const std::vector<std::string>& args);
  std::string Suggestions(absl::string_view arg);

  std::string use_, short_, long_;
  RunFn run_;
  Command* parent_ = nullptr;
  std::vector<std::unique_ptr<Command>> subs_;
  std::vector<std::unique_ptr<Flag>> local_, persistent_;
  bool hidden_ = false;
  CompleteFn complete_;
  bool no_flags_in_use_line_ = false;
};

}  // namespace detcd::ctl

#endif  // DETCD_CLI_DETCDCTL_COMMAND_H_
