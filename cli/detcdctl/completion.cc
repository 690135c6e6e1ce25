#include "cli/detcdctl/completion.h"

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/detcdctl/completion_scripts.h"
#include "cli/detcdctl/ctl.h"
#include "cli/detcdctl/gofmt.h"

namespace detcd::ctl {
namespace {

constexpr char kCompleteCmd[] = "__complete";
constexpr char kCompleteNoDescCmd[] = "__completeNoDesc";

// ShellCompDirective's string(): the names of the bits set.
std::string DirectiveText(int d) {
  std::vector<std::string> names;
  if (d & kCompError) names.push_back("ShellCompDirectiveError");
  if (d & kCompNoSpace) names.push_back("ShellCompDirectiveNoSpace");
  if (d & kCompNoFileComp) names.push_back("ShellCompDirectiveNoFileComp");
  if (d & kCompFilterFileExt) {
    names.push_back("ShellCompDirectiveFilterFileExt");
  }
  if (d & kCompFilterDirs) names.push_back("ShellCompDirectiveFilterDirs");
  if (names.empty()) names.push_back("ShellCompDirectiveDefault");
  return absl::StrJoin(names, ", ");
}

// Go's %v of a []string.
std::string GoSlice(const std::vector<std::string>& v) {
  return absl::StrCat("[", absl::StrJoin(v, " "), "]");
}

// cobra's isFlagArg: "--x..." (3 bytes at least) or "-x...".
bool IsFlagArg(const std::string& a) {
  return (a.size() >= 3 && a[1] == '-') ||
         (a.size() >= 2 && a[0] == '-' && a[1] != '-');
}

// cobra's findFlag: a one-letter name is a shorthand.
Flag* FindFlag(Command* cmd, const std::string& name) {
  std::string long_name = name;
  if (name.size() == 1) {
    Flag* s = cmd->LookupShort(name[0]);
    if (s == nullptr) return nullptr;
    long_name = s->name();
  }
  return cmd->Lookup(long_name);
}

// cobra's checkIfFlagCompletion: whether the word being typed is the value
// of a flag (`--flag=<word>`, or `<word>` after a flag that takes one);
// then the flag is returned, and *args loses that flag's word.
struct FlagValue {
  Flag* flag = nullptr;
  std::string error;  // flagCompError
};

FlagValue CheckFlagValue(Command* cmd, std::vector<std::string>* args,
                         std::string* last) {
  FlagValue out;
  std::string name;
  std::vector<std::string> trimmed = *args;
  bool with_equal = false;
  const std::string orig_last = *last;
  if (!last->empty() && (*last)[0] == '-') {
    size_t eq = last->find('=');
    if (eq == std::string::npos) return out;  // a flag name being typed
    if (absl::StartsWith(absl::string_view(*last).substr(0, eq), "--")) {
      name = last->substr(2, eq - 2);
    } else {
      // The last of a run of shorthands: "-asd=" completes d's value.
      name = last->substr(eq - 1, 1);
    }
    *last = last->substr(eq + 1);
    with_equal = true;
  }
  if (name.empty() && !args->empty()) {
    const std::string& prev = args->back();
    if (IsFlagArg(prev) && prev.find('=') == std::string::npos) {
      name = absl::StartsWith(prev, "--") ? prev.substr(2)
                                          : prev.substr(prev.size() - 1);
      trimmed.pop_back();
    }
  }
  if (name.empty()) return out;
  Flag* f = FindFlag(cmd, name);
  if (f == nullptr) {
    // Not this command's flag: the original words stay.
    *last = orig_last;
    out.error = absl::StrCat("Subcommand '", cmd->Name(),
                             "' does not support flag '", name, "'");
    return out;
  }
  if (!with_equal && !f->takes_value()) {
    // A bool flag alone takes no value: the word is an argument.
    return out;
  }
  *args = trimmed;
  out.flag = f;
  return out;
}

// getFlagNameCompletions: "--name\tusage" and "-s\tusage" matching the
// typed prefix.
void FlagNames(Flag* f, const std::string& prefix,
               std::vector<std::string>* out) {
  std::string long_name = absl::StrCat("--", f->name());
  if (absl::StartsWith(long_name, prefix)) {
    out->push_back(absl::StrCat(long_name, "\t", f->usage()));
  }
  if (f->shorthand() != 0) {
    std::string short_name = absl::StrCat("-", std::string(1, f->shorthand()));
    if (absl::StartsWith(short_name, prefix)) {
      out->push_back(absl::StrCat(short_name, "\t", f->usage()));
    }
  }
}

// The root's help command is listed although it is not "available".
bool IsRootHelp(Command* cmd, Command* sub) {
  return cmd->parent() == nullptr && sub->Name() == "help";
}

std::vector<std::string> SubcommandNames(Command* cmd,
                                         const std::string& prefix,
                                         bool* any) {
  std::vector<std::string> out;
  for (Command* s : cmd->SortedSubs()) {
    if (!s->IsAvailable() && !IsRootHelp(cmd, s)) continue;
    if (absl::StartsWith(s->Name(), prefix)) {
      out.push_back(absl::StrCat(s->Name(), "\t", s->short_desc()));
    }
    *any = true;
  }
  return out;
}

std::vector<std::string> NoFileCompletions(Command&,
                                           const std::vector<std::string>&,
                                           const std::string&,
                                           int* directive) {
  *directive = kCompNoFileComp;
  return {};
}

// cobra's NoArgs refusal and its printing (ExecuteC's error and usage,
// then etcdctl's Start prints the error again).
[[noreturn]] void UsageFailure(Command& cmd, const std::string& msg) {
  Err(absl::StrCat("Error: ", msg, "\n"));
  Out(cmd.Usage());
  std::fflush(stdout);
  Err("\n");
  Err(absl::StrCat("Error: ", msg, "\n"));
  Exit(1);
}

// The name the shell completes: the program as it was run.
std::string ProgramName() {
  const std::vector<std::string>& argv = OsArgs();
  if (argv.empty()) return "detcdctl";
  const std::string& a = argv[0];
  size_t slash = a.rfind('/');
  return slash == std::string::npos ? a : a.substr(slash + 1);
}

// cobra's CompDebug: to $BASH_COMP_DEBUG_FILE if set, and to stderr.
void CompDebug(const std::string& msg) {
  std::string line = absl::StrCat("[Debug] ", msg);
  if (const char* path = std::getenv("BASH_COMP_DEBUG_FILE");
      path != nullptr && *path != '\0') {
    if (FILE* f = std::fopen(path, "a")) {
      std::fwrite(line.data(), 1, line.size(), f);
      std::fclose(f);
    }
  }
  Err(line);
}

}  // namespace

std::unique_ptr<Command> NewCompletionCommand(const std::string& root_name) {
  auto c = std::make_unique<Command>(
      "completion", "Generate the autocompletion script for the specified shell",
      absl::StrCat("Generate the autocompletion script for ", root_name,
                   " for the specified shell.\nSee each sub-command's help "
                   "for details on how to use the generated script.\n"));
  c->set_complete(NoFileCompletions);
  for (const char* shell : {"bash", "zsh", "fish", "powershell"}) {
    std::string name = shell;
    Command* s = c->Add(
        name, absl::StrCat("Generate the autocompletion script for ", name),
        CompletionLong(name, root_name),
        [name](Command& cmd, const std::vector<std::string>& args) {
          if (!args.empty()) {
            UsageFailure(cmd, absl::StrCat("unknown command ", GoQuote(args[0]),
                                           " for ",
                                           GoQuote(cmd.CommandPath())));
          }
          Out(CompletionScript(name, ProgramName(),
                               !cmd.Lookup("no-descriptions")->b()));
        });
    s->Bool("no-descriptions", 0, false, "disable completion descriptions");
    s->set_complete(NoFileCompletions);
    // cobra sets DisableFlagsInUseLine on the bash command only.
    if (name == "bash") s->set_no_flags_in_use_line(true);
  }
  return c;
}

std::vector<std::string> Completions(Command* root,
                                     const std::vector<std::string>& line,
                                     int* directive, std::string* error) {
  *directive = kCompDefault;
  error->clear();
  std::string to_complete = line.back();
  std::vector<std::string> trimmed(line.begin(), line.end() - 1);
  Command* cmd = nullptr;
  std::vector<std::string> args;
  if (!root->Resolve(trimmed, &cmd, &args).ok()) {
    *error = absl::StrCat("Unable to find a command for arguments: ",
                          GoSlice(trimmed));
    return {};
  }
  cmd->EnsureHelpFlag();
  FlagValue fv = CheckFlagValue(cmd, &args, &to_complete);

  // A "--" already typed ends the flags: an extra one would then count as
  // an argument.
  std::vector<std::string> positional;
  std::vector<std::string> with_end = args;
  with_end.push_back("--");
  cmd->ResetFlags();
  (void)cmd->ParseFlags(with_end, &positional);
  size_t with_end_count = positional.size();
  cmd->ResetFlags();
  positional.clear();
  if (absl::Status st = cmd->ParseFlags(args, &positional); !st.ok()) {
    *error = absl::StrCat("Error while parsing flags from args ",
                          GoSlice(args), ": ", st.message());
    return {};
  }
  bool flag_completion = with_end_count <= positional.size();
  if (!fv.error.empty() && flag_completion) {
    *error = fv.error;
    return {};
  }
  if (cmd->HelpRequested()) {
    *directive = kCompNoFileComp;
    return {};
  }
  args = positional;

  std::vector<std::string> out;
  if (fv.flag == nullptr && !to_complete.empty() && to_complete[0] == '-' &&
      to_complete.find('=') == std::string::npos && flag_completion) {
    // Flag names: inherited ones, then the command's own, each in name
    // order; a flag already given is offered again only if it repeats.
    std::vector<Flag*> own = cmd->LocalFlags();
    auto offer = [&](Flag* f) {
      if (!f->changed() || f->type() == Flag::Type::kStringSlice) {
        FlagNames(f, to_complete, &out);
      }
    };
    for (Flag* f : cmd->InheritedFlags()) {
      bool shadowed = false;
      for (Flag* o : own) shadowed = shadowed || o->name() == f->name();
      if (!shadowed) offer(f);
    }
    for (Flag* f : own) offer(f);
    *directive = kCompNoFileComp;
    if (out.size() == 1 && absl::EndsWith(out[0], "=")) {
      *directive = kCompNoSpace;
    }
    return out;
  }
  if (fv.flag == nullptr) {
    bool local_given = false;
    for (Flag* f : cmd->LocalNonPersistentFlags()) {
      local_given = local_given || f->changed();
    }
    if (args.empty() && !local_given) {
      bool any = false;
      out = SubcommandNames(cmd, to_complete, &any);
      if (any) *directive = kCompNoFileComp;
    }
  }
  // No flag has a value completer (as in etcdctl); commands may complete
  // their arguments.
  if (fv.flag == nullptr || !flag_completion) {
    if (const CompleteFn& fn = cmd->complete()) {
      std::vector<std::string> more = fn(*cmd, args, to_complete, directive);
      out.insert(out.end(), more.begin(), more.end());
    }
  }
  return out;
}

bool IsCompleteRequest(const std::vector<std::string>& args) {
  return !args.empty() &&
         (args[0] == kCompleteCmd || args[0] == kCompleteNoDescCmd);
}

int RunCompleteRequest(Command* root, const std::vector<std::string>& args) {
  bool no_desc = args[0] == kCompleteNoDescCmd;
  // cobra adds the command (hidden) only when it is asked for.
  Command* cc = root->Add(
      absl::StrCat(kCompleteCmd, " [command-line]"),
      "Request shell completion choices for the specified command-line",
      absl::StrCat(kCompleteCmd,
                   " is a special command that is used by the shell "
                   "completion logic\nto request completion choices for the "
                   "specified command-line."),
      [](Command&, const std::vector<std::string>&) {});
  cc->set_hidden(true);
  cc->set_no_flags_in_use_line(true);
  cc->EnsureHelpFlag();
  if (args.size() < 2) {
    UsageFailure(*cc, "requires at least 1 arg(s), only received 0");
  }
  // The help command completes command names (cobra's InitDefaultHelpCmd).
  for (Command* s : root->SortedSubs()) {
    if (s->Name() != "help") continue;
    s->set_complete([root](Command&, const std::vector<std::string>& a,
                           const std::string& prefix, int* directive) {
      *directive = kCompNoFileComp;
      Command* target = nullptr;
      std::vector<std::string> rest;
      if (!root->Resolve(a, &target, &rest).ok()) return std::vector<std::string>{};
      bool any = false;
      return SubcommandNames(target, prefix, &any);
    });
  }
  std::vector<std::string> line(args.begin() + 1, args.end());
  int directive = kCompDefault;
  std::string error;
  std::vector<std::string> comps = Completions(root, line, &directive, &error);
  if (!error.empty()) CompDebug(absl::StrCat("[Error] ", error, "\n"));
  std::string text;
  for (std::string c : comps) {
    if (no_desc) c = c.substr(0, c.find('\t'));
    // Only the first line of a description, and no trailing tab.
    c = c.substr(0, c.find('\n'));
    absl::StrAppend(&text, absl::StripAsciiWhitespace(c), "\n");
  }
  absl::StrAppend(&text, ":", directive, "\n");
  Out(text);
  Err(absl::StrCat("Completion ended with directive: ",
                   DirectiveText(directive), "\n"));
  return 0;
}

}  // namespace detcd::ctl
