#include "absl/strings/string_view.h"
#include "cli/detcdctl/command.h"

#include <algorithm>
#include <utility>
#include <cstdio>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "cli/detcdctl/gofmt.h"
#include "cli/detcdctl/layout.h"

namespace detcd::ctl {
namespace {

constexpr char kVersion[] = "3.4.23";
constexpr char kApiVersion[] = "3.4";

void Out(absl::string_view s) { std::fwrite(s.data(), 1, s.size(), stdout); }
void Err(absl::string_view s) {
  std::fflush(stdout);
  std::fwrite(s.data(), 1, s.size(), stderr);
  std::fflush(stderr);
}

// cobra's ld: Levenshtein distance, optionally case-insensitive.
int Levenshtein(std::string s, std::string t, bool ignore_case) {
  if (ignore_case) {
    s = absl::AsciiStrToLower(s);
    t = absl::AsciiStrToLower(t);
  }
  std::vector<std::vector<int>> d(s.size() + 1,
                                  std::vector<int>(t.size() + 1));
  for (size_t i = 0; i <= s.size(); ++i) d[i][0] = static_cast<int>(i);
  for (size_t j = 0; j <= t.size(); ++j) d[0][j] = static_cast<int>(j);
  for (size_t j = 1; j <= t.size(); ++j) {
    for (size_t i = 1; i <= s.size(); ++i) {
      if (s[i - 1] == t[j - 1]) {
        d[i][j] = d[i - 1][j - 1];
      } else {
        d[i][j] = std::min({d[i - 1][j], d[i][j - 1], d[i - 1][j - 1]}) + 1;
      }
    }
  }
  return d[s.size()][t.size()];
}

}  // namespace

// ---------------------------------------------------------------- Flag

Flag::Flag(std::string name, char shorthand, Type type, std::string usage)
    : name_(std::move(name)),
      shorthand_(shorthand),
      type_(type),
      usage_(std::move(usage)) {}

absl::Status Flag::Set(absl::string_view v) {
  switch (type_) {
    case Type::kBool: {
      auto b = GoParseBool(v);
      if (!b.ok()) return b.status();
      b_ = *b;
      break;
    }
    case Type::kString:
      s_ = std::string(v);
      break;
    case Type::kInt64:
    case Type::kInt: {
      auto i = GoParseInt(v, 0);
      if (!i.ok()) return i.status();
      i_ = *i;
      break;
    }
    case Type::kDuration: {
      auto d = GoParseDuration(v);
      if (!d.ok()) return d.status();
      i_ = *d;
      break;
    }
    case Type::kStringSlice: {
      std::vector<std::string> rec;
      if (!v.empty()) {
        auto r = GoReadCsvRecord(v);
        if (!r.ok()) return r.status();
        rec = *r;
      }
      if (!changed_) {
        slice_ = rec;
      } else {
        slice_.insert(slice_.end(), rec.begin(), rec.end());
      }
      break;
    }
  }
  changed_ = true;
  return absl::OkStatus();
}

void Flag::Reset() {
  changed_ = false;
  b_ = def_b_;
  s_ = def_s_;
  i_ = def_i_;
  slice_ = def_slice_;
}

std::string Flag::UsageLine() const {
  std::string line = shorthand_ != 0
                         ? absl::StrFormat("  -%c, --%s", shorthand_, name_)
                         : absl::StrFormat("      --%s", name_);
  bool noopt = type_ == Type::kBool;
  if (noopt) line += "[";
  line += "=";
  line += type_ == Type::kString ? GoQuote(def_text_) : def_text_;
  if (noopt) line += "]";
  return absl::StrCat(line, "\t", usage_, "\n");
}

// ---------------------------------------------------------------- Command

Command::Command(std::string use, std::string short_desc,
                 std::string long_desc, RunFn run)
    : use_(std::move(use)),
      short_(std::move(short_desc)),
      long_(std::move(long_desc)),
      run_(std::move(run)) {}

Command* Command::Add(std::unique_ptr<Command> c) {
  c->parent_ = this;
  subs_.push_back(std::move(c));
  return subs_.back().get();
}

Command* Command::Add(std::string use, std::string short_desc,
                      std::string long_desc, RunFn run) {
  return Add(std::make_unique<Command>(std::move(use), std::move(short_desc),
                                       std::move(long_desc), std::move(run)));
}

Flag* Command::Define(std::unique_ptr<Flag> f, bool persistent) {
  f->Reset();
  auto& list = persistent ? persistent_ : local_;
  list.push_back(std::move(f));
  return list.back().get();
}

Flag* Command::Bool(std::string name, char shorthand, bool def,
                    std::string usage, bool persistent) {
  auto f = std::make_unique<Flag>(std::move(name), shorthand, Flag::Type::kBool,
                                  std::move(usage));
  f->def_b_ = def;
  f->def_text_ = def ? "true" : "false";
  return Define(std::move(f), persistent);
}

Flag* Command::String(std::string name, char shorthand, std::string def,
                      std::string usage, bool persistent) {
  auto f = std::make_unique<Flag>(std::move(name), shorthand,
                                  Flag::Type::kString, std::move(usage));
  f->def_s_ = def;
  f->def_text_ = def;
  return Define(std::move(f), persistent);
}

Flag* Command::Int64(std::string name, char shorthand, int64_t def,
                     std::string usage, bool persistent) {
  auto f = std::make_unique<Flag>(std::move(name), shorthand,
                                  Flag::Type::kInt64, std::move(usage));
  f->def_i_ = def;
  f->def_text_ = absl::StrCat(def);
  return Define(std::move(f), persistent);
}

Flag* Command::Int(std::string name, char shorthand, int64_t def,
                   std::string usage, bool persistent) {
  Flag* f = Int64(std::move(name), shorthand, def, std::move(usage),
                  persistent);
  f->type_ = Flag::Type::kInt;
  return f;
}

Flag* Command::Duration(std::string name, char shorthand, int64_t def_ns,
                        std::string usage, bool persistent) {
  auto f = std::make_unique<Flag>(std::move(name), shorthand,
                                  Flag::Type::kDuration, std::move(usage));
  f->def_i_ = def_ns;
  f->def_text_ = GoDuration(def_ns);
  return Define(std::move(f), persistent);
}

Flag* Command::StringSlice(std::string name, char shorthand,
                           std::vector<std::string> def, std::string usage,
                           bool persistent) {
  auto f = std::make_unique<Flag>(std::move(name), shorthand,
                                  Flag::Type::kStringSlice, std::move(usage));
  f->def_text_ = GoCsvSliceString(def);
  f->def_slice_ = std::move(def);
  return Define(std::move(f), persistent);
}

Flag* Command::Lookup(absl::string_view name) {
  for (Command* c = this; c != nullptr; c = c->parent_) {
    if (c == this) {
      for (auto& f : local_) {
        if (f->name() == name) return f.get();
      }
    }
    for (auto& f : c->persistent_) {
      if (f->name() == name) return f.get();
    }
  }
  return nullptr;
}

Flag* Command::LookupShort(char ch) {
  for (Command* c = this; c != nullptr; c = c->parent_) {
    if (c == this) {
      for (auto& f : local_) {
        if (f->shorthand() == ch) return f.get();
      }
    }
    for (auto& f : c->persistent_) {
      if (f->shorthand() == ch) return f.get();
    }
  }
  return nullptr;
}

namespace {
void SortByName(std::vector<Flag*>* v) {
  std::sort(v->begin(), v->end(),
            [](Flag* a, Flag* b) { return a->name() < b->name(); });
}
}  // namespace

std::vector<Flag*> Command::LocalFlags() {
  std::vector<Flag*> v;
  for (auto& f : local_) v.push_back(f.get());
  for (auto& f : persistent_) v.push_back(f.get());
  SortByName(&v);
  return v;
}

std::vector<Flag*> Command::LocalNonPersistentFlags() {
  std::vector<Flag*> v;
  for (auto& f : local_) v.push_back(f.get());
  return v;
}

std::vector<Flag*> Command::InheritedFlags() {
  std::vector<Flag*> v;
  for (Command* c = parent_; c != nullptr; c = c->parent_) {
    for (auto& f : c->persistent_) v.push_back(f.get());
  }
  SortByName(&v);
  return v;
}

void Command::ResetFlags() {
  for (auto& f : local_) f->Reset();
  for (Command* c = this; c != nullptr; c = c->parent_) {
    for (auto& f : c->persistent_) f->Reset();
  }
}

std::string Command::Name() const {
  size_t sp = use_.find(' ');
  return sp == std::string::npos ? use_ : use_.substr(0, sp);
}

std::string Command::CommandPath() const {
  if (parent_ == nullptr) return Name();
  return absl::StrCat(parent_->CommandPath(), " ", Name());
}

Command* Command::Root() {
  Command* c = this;
  while (c->parent_ != nullptr) c = c->parent_;
  return c;
}

std::vector<Command*> Command::SortedSubs() {
  std::vector<Command*> v;
  for (auto& s : subs_) v.push_back(s.get());
  std::sort(v.begin(), v.end(),
            [](Command* a, Command* b) { return a->Name() < b->Name(); });
  return v;
}

std::vector<Command*> Command::AllSubcommands() {
  std::vector<Command*> out;
  for (Command* s : SortedSubs()) {
    out.push_back(s);
    for (Command* d : s->AllSubcommands()) out.push_back(d);
  }
  return out;
}

bool Command::HasAvailableSubs() {
  for (auto& s : subs_) {
    if (s->IsAvailable()) return true;
  }
  return false;
}

bool Command::IsAvailable() {
  if (hidden_) return false;
  if (parent_ != nullptr && Name() == "help" && parent_->parent_ == nullptr) {
    return false;
  }
  return Runnable() || HasAvailableSubs();
}

void Command::EnsureHelpFlag() {
  for (auto& f : local_) {
    if (f->name() == "help") return;
  }
  Bool("help", 'h', false, absl::StrCat("help for ", Name()));
}

std::string Command::Usage() {
  std::string t = "NAME:\n";
  if (parent_ == nullptr) {
    absl::StrAppend(&t, "\t", Name(), " - ", short_, "\n");
  } else {
    std::string path = CommandPath();
    std::string rel(absl::StripPrefix(path, Root()->Name() + " "));
    absl::StrAppend(&t, "\t", rel, " - ", short_, "\n");
  }
  std::string use_line =
      parent_ != nullptr ? absl::StrCat(parent_->CommandPath(), " ", use_)
                         : use_;
  if (!no_flags_in_use_line_ && !absl::StrContains(use_line, "[flags]")) {
    use_line += " [flags]";
  }
  absl::StrAppend(&t, "\nUSAGE:\n\t", use_line, "\n");
  if (parent_ == nullptr) absl::StrAppend(&t, "\nVERSION:\n\t", kVersion, "\n");
  if (!subs_.empty()) {
    absl::StrAppend(&t, "\nAPI VERSION:\n\t", kApiVersion, "\n");
    absl::StrAppend(&t, "\n\nCOMMANDS:\n");
    std::string self = CommandPath();
    for (Command* s : AllSubcommands()) {
      if (!s->Runnable()) continue;
      std::string rel(absl::StripPrefix(s->CommandPath(), self + " "));
      absl::StrAppend(&t, "\t", rel, "\t", s->short_desc(), "\n");
    }
  }
  if (!long_.empty()) {
    absl::StrAppend(&t, "\nDESCRIPTION:\n");
    absl::string_view body = absl::StripAsciiWhitespace(long_);
    for (absl::string_view line : absl::StrSplit(body, '\n')) {
      absl::StrAppend(&t, "\t", line, "\n");
    }
  }
  std::vector<Flag*> local = LocalFlags();
  if (!local.empty()) {
    absl::StrAppend(&t, "\nOPTIONS:\n");
    for (Flag* f : local) t += f->UsageLine();
  }
  std::vector<Flag*> inherited = InheritedFlags();
  if (!inherited.empty()) {
    absl::StrAppend(&t, "\nGLOBAL OPTIONS:\n");
    for (Flag* f : inherited) t += f->UsageLine();
  }
  t += "\n";
  return TabFormat(t);
}

absl::Status Command::ParseFlags(const std::vector<std::string>& in,
                                 std::vector<std::string>* positional) {
  EnsureHelpFlag();
  auto set = [&](Flag* f, absl::string_view value) -> absl::Status {
    absl::Status s = f->Set(value);
    if (s.ok()) return s;
    std::string name = f->shorthand() != 0
                           ? absl::StrFormat("-%c, --%s", f->shorthand(),
                                             f->name())
                           : absl::StrCat("--", f->name());
    return absl::InvalidArgumentError(
        absl::StrCat("invalid argument ", GoQuote(value), " for ",
                     GoQuote(name), " flag: ", s.message()));
  };
  for (size_t i = 0; i < in.size(); ++i) {
    const std::string& s = in[i];
    if (s.size() < 2 || s[0] != '-') {
      positional->push_back(s);
      continue;
    }
    if (s[1] == '-') {
      if (s.size() == 2) {  // "--" ends the flags
        positional->insert(positional->end(), in.begin() + i + 1, in.end());
        break;
      }
      absl::string_view name = absl::string_view(s).substr(2);
      if (name.empty() || name[0] == '-' || name[0] == '=') {
        return absl::InvalidArgumentError(
            absl::StrCat("bad flag syntax: ", s));
      }
      size_t eq = name.find('=');
      absl::string_view fname = name.substr(0, eq);
      Flag* f = Lookup(fname);
      if (f == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat("unknown flag: --", fname));
      }
      std::string value;
      if (eq != absl::string_view::npos) {
        value = std::string(name.substr(eq + 1));
      } else if (!f->takes_value()) {
        value = "true";
      } else if (i + 1 < in.size()) {
        value = in[++i];
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("flag needs an argument: ", s));
      }
      if (auto st = set(f, value); !st.ok()) return st;
      continue;
    }
    absl::string_view shorts = absl::string_view(s).substr(1);
    while (!shorts.empty()) {
      char c = shorts[0];
      Flag* f = LookupShort(c);
      if (f == nullptr) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "unknown shorthand flag: '%c' in -%s", c, shorts));
      }
      std::string value;
      absl::string_view rest = shorts.substr(1);
      if (shorts.size() > 2 && shorts[1] == '=') {
        value = std::string(shorts.substr(2));
        rest = "";
      } else if (!f->takes_value()) {
        value = "true";
      } else if (shorts.size() > 1) {
        value = std::string(shorts.substr(1));
        rest = "";
      } else if (i + 1 < in.size()) {
        value = in[++i];
      } else {
        return absl::InvalidArgumentError(absl::StrFormat(
            "flag needs an argument: '%c' in -%s", c, shorts));
      }
      if (auto st = set(f, value); !st.ok()) return st;
      shorts = rest;
    }
  }
  return absl::OkStatus();
}

std::vector<std::string> Command::StripFlags(
    const std::vector<std::string>& args) {
  std::vector<std::string> commands;
  auto noopt = [&](absl::string_view name) {
    Flag* f = Lookup(name);
    return f != nullptr && !f->takes_value();
  };
  auto short_noopt = [&](absl::string_view name) {
    if (name.empty()) return false;
    Flag* f = LookupShort(name[0]);
    return f != nullptr && !f->takes_value();
  };
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& s = args[i];
    size_t left = args.size() - i - 1;
    if (s == "--") break;
    bool long_with_value = absl::StartsWith(s, "--") &&
                           !absl::StrContains(s, "=") &&
                           !noopt(absl::string_view(s).substr(2));
    bool short_with_value =
        absl::StartsWith(s, "-") && !absl::StrContains(s, "=") &&
        s.size() == 2 && !short_noopt(absl::string_view(s).substr(1));
    if (long_with_value || short_with_value) {
      if (left <= 1) break;
      ++i;
      continue;
    }
    if (!s.empty() && s[0] != '-') commands.push_back(s);
  }
  return commands;
}

Command* Command::FindNext(absl::string_view next) {
  std::vector<Command*> matches;
  for (auto& c : subs_) {
    if (c->Name() == next) return c.get();
    if (absl::StartsWith(c->Name(), next)) matches.push_back(c.get());
  }
  return matches.size() == 1 ? matches[0] : nullptr;
}

Command* Command::Find(const std::vector<std::string>& args,
                       std::vector<std::string>* rest) {
  Command* c = this;
  std::vector<std::string> cur = args;
  for (;;) {
    // cobra defines the help flag only when a command executes, so while
    // finding the command "--help" reads as a flag taking a value.
    std::vector<std::string> words = c->StripFlags(cur);
    if (words.empty()) break;
    Command* next = c->FindNext(words[0]);
    if (next == nullptr) break;
    auto it = std::find(cur.begin(), cur.end(), words[0]);
    if (it != cur.end()) cur.erase(it);
    c = next;
  }
  *rest = cur;
  return c;
}

std::string Command::Suggestions(absl::string_view arg) {
  std::vector<std::string> found;
  for (auto& c : subs_) {
    if (!c->IsAvailable()) continue;
    std::string name = c->Name();
    bool by_distance = Levenshtein(std::string(arg), name, true) <= 2;
    bool by_prefix = absl::StartsWith(absl::AsciiStrToLower(name),
                                      absl::AsciiStrToLower(arg));
    if (by_distance || by_prefix) found.push_back(name);
  }
  if (found.empty()) return "";
  std::string s = "\n\nDid you mean this?\n";
  for (const std::string& f : found) absl::StrAppend(&s, "\t", f, "\n");
  return s;
}

absl::Status Command::Resolve(const std::vector<std::string>& args,
                              Command** cmd, std::vector<std::string>* rest) {
  *cmd = Find(args, rest);
  // cobra's legacyArgs: the root refuses unknown subcommands.
  if ((*cmd)->parent_ == nullptr && !(*cmd)->subs_.empty()) {
    std::vector<std::string> words = (*cmd)->StripFlags(*rest);
    if (!words.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown command ", GoQuote(words[0]), " for ",
          GoQuote((*cmd)->CommandPath()), (*cmd)->Suggestions(words[0])));
    }
  }
  return absl::OkStatus();
}

bool Command::HelpRequested() {
  Flag* help = Lookup("help");
  return help != nullptr && help->b();
}

std::string Command::DefaultUsage() {
  EnsureHelpFlag();
  std::string use_line =
      parent_ != nullptr ? absl::StrCat(parent_->CommandPath(), " ", use_)
                         : use_;
  if (!absl::StrContains(use_line, "[flags]")) use_line += " [flags]";
  std::string t = absl::StrCat("Usage:\n  ", use_line, "\n\nFlags:\n");
  // pflag's FlagUsages: name and type, then the usage aligned.
  std::vector<std::pair<std::string, std::string>> lines;
  size_t maxlen = 0;
  for (Flag* f : LocalFlags()) {
    std::string line = f->shorthand() != 0
                           ? absl::StrFormat("  -%c, --%s", f->shorthand(),
                                             f->name())
                           : absl::StrCat("      --", f->name());
    std::string usage = f->usage_;
    bool zero = true;
    std::string def;
    switch (f->type()) {
      case Flag::Type::kBool:
        zero = !f->def_b_;
        def = f->def_text_;
        break;
      case Flag::Type::kString:
        line += " string";
        zero = f->def_s_.empty();
        def = GoQuote(f->def_s_);
        break;
      case Flag::Type::kInt64:
      case Flag::Type::kInt:
        line += " int";
        zero = f->def_i_ == 0;
        def = f->def_text_;
        break;
      case Flag::Type::kDuration:
        line += " duration";
        zero = f->def_i_ == 0;
        def = f->def_text_;
        break;
      case Flag::Type::kStringSlice:
        line += " strings";
        zero = f->def_slice_.empty();
        def = f->def_text_;
        break;
    }
    maxlen = std::max(maxlen, line.size());
    if (!zero) absl::StrAppend(&usage, " (default ", def, ")");
    lines.emplace_back(line, usage);
  }
  std::string flags;
  for (auto& [l, u] : lines) {
    // pflag pads to the longest name plus one, then Fprintln adds a space
    // on each side of the padding.
    absl::StrAppend(&flags, l, " ", std::string(maxlen + 1 - l.size(), ' '),
                    " ", u, "\n");
  }
  absl::StrAppend(&t, absl::StripTrailingAsciiWhitespace(flags), "\n");
  return t;
}

int Command::Execute(const std::vector<std::string>& args) {
  std::vector<std::string> rest;
  Command* cmd = nullptr;
  if (absl::Status st = Resolve(args, &cmd, &rest); !st.ok()) {
    Err(absl::StrCat("Error: ", st.message(), "\n", "Run '",
                     cmd->CommandPath(), " --help' for usage.\n"));
    Err(absl::StrCat("Error: ", st.message(), "\n"));
    return 1;
  }
  std::vector<std::string> positional;
  absl::Status st = cmd->ParseFlags(rest, &positional);
  if (!st.ok()) {
    // cobra prints the error, then the usage (etcdctl's usage function
    // writes to stdout, cobra's line ending to stderr); etcdctl's Start
    // prints the error once more.
    Err(absl::StrCat("Error: ", st.message(), "\n"));
    Out(cmd->Usage());
    std::fflush(stdout);
    Err("\n");
    Err(absl::StrCat("Error: ", st.message(), "\n"));
    return 1;
  }
  if (cmd->HelpRequested() || !cmd->Runnable()) {
    Out(cmd->Usage());
    return 0;
  }
  cmd->run_(*cmd, positional);
  return 0;
}

}  // namespace detcd::ctl
