// watch (also interactive, and `-- command` run per event).
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "cli/detcdctl/commands.h"
#include "cli/detcdctl/ctl.h"
#include "cli/detcdctl/gofmt.h"
#include "detcd/watch.h"

extern char** environ;

namespace detcd::ctl {
namespace {

namespace pb = etcdserverpb;

const char* kBadArgsNum = "bad number of arguments";
const char* kBadArgsNumConflictEnv =
    "bad number of arguments (found conflicting environment key)";
const char* kBadArgsNumSeparator =
    "bad number of arguments (found separator --, but no commands)";
const char* kBadArgsInteractiveWatch =
    "args[0] must be 'watch' for interactive calls";

// The watch flags of one request (the global ones, or an interactive
// line's).
struct WatchFlags {
  int64_t rev = 0;
  bool prefix = false;
  bool prev_kv = false;
};

struct ParsedWatch {
  std::vector<std::string> watch_args;
  std::vector<std::string> exec_args;
};

int IndexOf(const std::vector<std::string>& v, const std::string& s) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] == s) return static_cast<int>(i);
  }
  return -1;
}

// etcdctl's parseWatchArgs.
absl::StatusOr<ParsedWatch> ParseWatchArgs(
    const std::vector<std::string>& os_args,
    const std::vector<std::string>& command_args, const std::string& env_key,
    const std::string& env_range, bool interactive, WatchFlags* flags) {
  std::vector<std::string> raw = os_args;
  int w = IndexOf(raw, "watch");
  if (w >= 0) raw.erase(raw.begin(), raw.begin() + w + 1);
  std::vector<std::string> watch_args = command_args;
  auto err = [&](const char* e) {
    *flags = WatchFlags();
    return absl::InvalidArgumentError(e);
  };
  std::vector<std::string> args_with_sep;
  if (!interactive) {
    int exec_idx = IndexOf(raw, "--");
    bool exec_exist = exec_idx >= 0;
    if (exec_exist && exec_idx == static_cast<int>(raw.size()) - 1) {
      return absl::InvalidArgumentError(kBadArgsNumSeparator);
    }
    if (!exec_exist && raw.empty() && env_key.empty()) {
      return absl::InvalidArgumentError(kBadArgsNum);
    }
    if (exec_exist && !env_key.empty()) {
      int ridx = static_cast<int>(raw.size()) - 1;
      for (int widx = static_cast<int>(watch_args.size()) - 1; widx >= 0;
           --widx) {
        if (ridx >= 0 && watch_args[widx] == raw[ridx]) {
          --ridx;
          continue;
        }
        if (ridx == exec_idx) {
          return absl::InvalidArgumentError(kBadArgsNumConflictEnv);
        }
      }
    }
    if (!exec_exist && !watch_args.empty() && !env_key.empty()) {
      return absl::InvalidArgumentError(kBadArgsNumConflictEnv);
    }
    args_with_sep = raw;
  } else {
    if (watch_args.empty() || watch_args[0] != "watch") {
      return err(kBadArgsInteractiveWatch);
    }
    watch_args.erase(watch_args.begin());
    int exec_idx = IndexOf(watch_args, "--");
    bool exec_exist = exec_idx >= 0;
    if (exec_exist && exec_idx == static_cast<int>(watch_args.size()) - 1) {
      return err(kBadArgsNumSeparator);
    }
    std::unique_ptr<Command> wc = NewWatchCommand();
    std::vector<std::string> pargs;
    if (absl::Status s = wc->ParseFlags(watch_args, &pargs); !s.ok()) {
      *flags = WatchFlags();
      return s;
    }
    if (!exec_exist && env_key.empty() && pargs.empty()) {
      return err(kBadArgsNum);
    }
    if (!exec_exist && !pargs.empty() && !env_key.empty()) {
      return err(kBadArgsNumConflictEnv);
    }
    args_with_sep = watch_args;
  }
  ParsedWatch out;
  int idx = IndexOf(args_with_sep, "--");
  bool found_sep = idx >= 0;
  if (found_sep) {
    out.exec_args.assign(args_with_sep.begin() + idx + 1,
                         args_with_sep.end());
  }
  if (interactive) {
    std::unique_ptr<Command> wc = NewWatchCommand();
    std::vector<std::string> pargs;
    if (absl::Status s = wc->ParseFlags(args_with_sep, &pargs); !s.ok()) {
      return s;
    }
    watch_args = pargs;
    flags->prefix = wc->Lookup("prefix")->b();
    flags->rev = wc->Lookup("rev")->i();
    flags->prev_kv = wc->Lookup("prev-kv")->b();
  }
  if (!env_key.empty()) {
    std::vector<std::string> ranges = {env_key};
    if (!env_range.empty()) ranges.push_back(env_range);
    watch_args.insert(watch_args.begin(), ranges.begin(), ranges.end());
  }
  if (!found_sep) {
    out.watch_args = watch_args;
    return out;
  }
  int end_idx = static_cast<int>(watch_args.size()) - 1;
  for (; end_idx >= 0; --end_idx) {
    if (watch_args[end_idx] == args_with_sep[idx + 1]) break;
  }
  if (end_idx < 0) end_idx = 0;
  watch_args.resize(end_idx);
  out.watch_args = watch_args;
  return out;
}

// etcdctl's getWatchChan: the create request.
absl::StatusOr<pb::WatchCreateRequest> WatchRequest(
    const std::vector<std::string>& args, const WatchFlags& f) {
  if (args.empty()) return absl::InvalidArgumentError(kBadArgsNum);
  pb::WatchCreateRequest r;
  std::string key = args[0];
  r.set_start_revision(f.rev);
  if (args.size() == 2) {
    if (f.prefix) {
      return absl::InvalidArgumentError(
          "`range_end` and `--prefix` are mutually exclusive");
    }
    r.set_range_end(args[1]);
  }
  if (f.prefix) {
    if (key.empty()) {
      key = std::string(1, '\0');
      r.set_range_end(std::string(1, '\0'));
    } else {
      r.set_range_end(PrefixRangeEnd(key));
    }
  }
  r.set_key(key);
  if (f.prev_kv) r.set_prev_kv(true);
  return r;
}

// %q of a []string.
std::string QuoteSlice(const std::vector<std::string>& v) {
  std::vector<std::string> q;
  for (const std::string& s : v) q.push_back(GoQuote(s));
  return absl::StrCat("[", absl::StrJoin(q, " "), "]");
}

// Runs the `-- command` for one event with etcd's ETCD_WATCH_* variables;
// a failing command ends etcdctl (exit 1).
void RunExec(const std::vector<std::string>& exec, const pb::WatchResponse& r,
             const mvccpb::Event& ev) {
  std::fflush(stdout);
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) env.emplace_back(*e);
  std::vector<std::string> extra = {
      absl::StrCat("ETCD_WATCH_REVISION=", r.header().revision()),
      absl::StrCat("ETCD_WATCH_EVENT_TYPE=",
                   GoQuote(ev.type() == mvccpb::Event::DELETE ? "DELETE"
                                                              : "PUT")),
      absl::StrCat("ETCD_WATCH_KEY=", GoQuote(ev.kv().key())),
      absl::StrCat("ETCD_WATCH_VALUE=", GoQuote(ev.kv().value())),
  };
  // Go keeps the last of duplicate variables.
  for (const std::string& x : extra) {
    std::string key = x.substr(0, x.find('=') + 1);
    std::erase_if(env, [&](const std::string& e) { return e.rfind(key, 0) == 0; });
    env.push_back(x);
  }
  std::vector<char*> argv, envp;
  for (const std::string& a : exec) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const std::string& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  int pipefd[2];
  if (pipe(pipefd) != 0) return;
  pid_t pid = fork();
  if (pid == 0) {
    close(pipefd[0]);
    fcntl(pipefd[1], F_SETFD, FD_CLOEXEC);
    execvpe(argv[0], argv.data(), envp.data());
    int e = errno;
    (void)!write(pipefd[1], &e, sizeof e);
    _exit(127);
  }
  close(pipefd[1]);
  int child_errno = 0;
  bool exec_failed = read(pipefd[0], &child_errno, sizeof child_errno) ==
                     static_cast<ssize_t>(sizeof child_errno);
  close(pipefd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  std::string err;
  if (exec_failed) {
    err = ExecErrorText(exec[0], child_errno);
  } else if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
    err = absl::StrCat("exit status ", WEXITSTATUS(status));
  } else if (WIFSIGNALED(status)) {
    err = absl::StrCat("signal: ", strsignal(WTERMSIG(status)));
  }
  if (!err.empty()) {
    Err(absl::StrCat("command ", QuoteSlice(exec), " error (", err, ")\n"));
    Exit(1);
  }
}

// etcdctl's printWatchCh for one event of the watcher.
void PrintEvent(const client::WatchEvent& ev,
                const std::vector<std::string>& exec) {
  if (!ev.has_response) return;
  const pb::WatchResponse& r = ev.response;
  if (r.canceled()) {
    Err(absl::StrCat("watch was canceled (", ev.error, ")\n"));
  }
  bool progress = r.events_size() == 0 && !r.canceled() && !r.created() &&
                  r.compact_revision() == 0 && r.header().revision() != 0;
  if (progress) Out(absl::StrCat("progress notify: ", r.header().revision(), "\n"));
  display().Watch(r);
  std::fflush(stdout);
  if (!exec.empty()) {
    for (const auto& e : r.events()) RunExec(exec, r, e);
  }
}

void Interactive(Command& cmd, const std::string& env_key,
                 const std::string& env_range) {
  auto cli = MustClientFromCmd(cmd);
  client::CallOptions o;
  o.require_leader = true;
  client::Watcher watcher(cli.get(), o);
  absl::Mutex mu;
  std::map<int, std::vector<std::string>> execs;
  std::thread printer([&] {
    client::WatchEvent ev;
    while (watcher.Next(&ev)) {
      std::vector<std::string> exec;
      {
        absl::MutexLock l(&mu);
        exec = execs[ev.watch];
      }
      PrintEvent(ev, exec);
    }
  });
  printer.detach();
  std::string line;
  for (;;) {
    line.clear();
    int c;
    bool nl = false;
    while ((c = std::fgetc(stdin)) != EOF) {
      if (c == '\n') {
        nl = true;
        break;
      }
      line += static_cast<char>(c);
    }
    if (!nl) {
      ExitWithError(kExitInvalidInput,
                    "Error reading watch request line: EOF");
    }
    std::vector<std::string> args = Argify(line);
    if (args.empty()) {
      Err(absl::StrCat("Invalid command: ", line,
                       " (watch and progress supported)\n"));
      continue;
    }
    if (args[0] == "watch") {
      if (args.size() < 2 && env_key.empty()) {
        Err(absl::StrCat("Invalid command ", line,
                         " (command type or key is not provided)\n"));
        continue;
      }
      WatchFlags f;
      auto parsed =
          ParseWatchArgs(OsArgs(), args, env_key, env_range, true, &f);
      if (!parsed.ok()) ExitWithError(kExitBadArgs, parsed.status().message());
      auto req = WatchRequest(parsed->watch_args, f);
      if (!req.ok()) {
        Err(absl::StrCat("Invalid command ", line, " (",
                         req.status().message(), ")\n"));
        continue;
      }
      absl::MutexLock l(&mu);
      int h = watcher.Add(*req);
      execs[h] = parsed->exec_args;
    } else if (args[0] == "progress") {
      watcher.RequestProgress();
    } else {
      Err(absl::StrCat("Invalid command ", line, " (only support watch)\n"));
    }
  }
}

}  // namespace

std::unique_ptr<Command> NewWatchCommand() {
  auto c = std::make_unique<Command>(
      "watch [options] [key or prefix] [range_end] [--] [exec-command arg1 "
      "arg2 ...]",
      "Watches events stream on keys or prefixes", "",
      [](Command& cmd, const std::vector<std::string>& args) {
        const char* k = std::getenv("ETCDCTL_WATCH_KEY");
        const char* r = std::getenv("ETCDCTL_WATCH_RANGE_END");
        std::string env_key = k ? k : "", env_range = r ? r : "";
        if (env_key.empty() && !env_range.empty()) {
          ExitWithError(kExitBadArgs,
                        absl::StrCat("ETCDCTL_WATCH_KEY is empty but got "
                                     "ETCDCTL_WATCH_RANGE_END=",
                                     GoQuote(env_range)));
        }
        if (cmd.Lookup("interactive")->b()) {
          Interactive(cmd, env_key, env_range);
          return;
        }
        WatchFlags f;
        f.rev = cmd.Lookup("rev")->i();
        f.prefix = cmd.Lookup("prefix")->b();
        f.prev_kv = cmd.Lookup("prev-kv")->b();
        auto parsed =
            ParseWatchArgs(OsArgs(), args, env_key, env_range, false, &f);
        if (!parsed.ok()) ExitWithError(kExitBadArgs, parsed.status().message());
        auto cli = MustClientFromCmd(cmd);
        auto req = WatchRequest(parsed->watch_args, f);
        if (!req.ok()) ExitWithError(kExitBadArgs, req.status().message());
        client::CallOptions o;
        o.require_leader = true;
        client::Watcher watcher(cli.get(), o);
        watcher.Add(*req);
        client::WatchEvent ev;
        while (watcher.Next(&ev)) {
          PrintEvent(ev, parsed->exec_args);
          if (ev.closing) break;
        }
        ExitWithError(kExitInterrupted, "watch is canceled by the server");
      });
  c->Bool("interactive", 'i', false, "Interactive mode");
  c->Bool("prefix", 0, false, "Watch on a prefix if prefix is set");
  c->Int64("rev", 0, 0, "Revision to start watching");
  c->Bool("prev-kv", 0, false,
          "get the previous key-value pair before the event happens");
  return c;
}

}  // namespace detcd::ctl
