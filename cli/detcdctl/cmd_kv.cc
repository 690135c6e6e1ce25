// get, put, del, txn, compaction.
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "cli/detcdctl/commands.h"
#include "cli/detcdctl/ctl.h"
#include "cli/detcdctl/gofmt.h"

namespace detcd::ctl {
namespace {

namespace pb = etcdserverpb;

// strconv.Unquote of a Go string literal ("..." or `...`); false if s is
// not one.
bool GoUnquote(absl::string_view s, std::string* out) {
  if (s.size() < 2) return false;
  if (s.front() == '`') {
    if (s.back() != '`') return false;
    *out = std::string(s.substr(1, s.size() - 2));
    return out->find('`') == std::string::npos;
  }
  if (s.front() != '"' || s.back() != '"') return false;
  std::string r;
  for (size_t i = 1; i + 1 < s.size(); ++i) {
    char c = s[i];
    if (c == '"' || c == '\n') return false;
    if (c != '\\') {
      r += c;
      continue;
    }
    if (++i + 1 > s.size() - 1) return false;
    char e = s[i];
    auto hexval = [](char h) -> int {
      if (h >= '0' && h <= '9') return h - '0';
      h = absl::ascii_tolower(h);
      if (h >= 'a' && h <= 'f') return h - 'a' + 10;
      return -1;
    };
    switch (e) {
      case 'a': r += '\a'; break;
      case 'b': r += '\b'; break;
      case 'f': r += '\f'; break;
      case 'n': r += '\n'; break;
      case 'r': r += '\r'; break;
      case 't': r += '\t'; break;
      case 'v': r += '\v'; break;
      case '\\': r += '\\'; break;
      case '"': r += '"'; break;
      case '\'': return false;
      case 'x': {
        if (i + 2 >= s.size() - 1 + 1) return false;
        int h1 = hexval(s[i + 1]), h2 = hexval(s[i + 2]);
        if (h1 < 0 || h2 < 0) return false;
        r += static_cast<char>(h1 * 16 + h2);
        i += 2;
        break;
      }
      case 'u':
      case 'U': {
        int n = e == 'u' ? 4 : 8;
        if (i + n > s.size() - 2) return false;
        uint32_t v = 0;
        for (int k = 1; k <= n; ++k) {
          int h = hexval(s[i + k]);
          if (h < 0) return false;
          v = v * 16 + static_cast<uint32_t>(h);
        }
        i += n;
        // UTF-8 encode.
        if (v < 0x80) {
          r += static_cast<char>(v);
        } else if (v < 0x800) {
          r += static_cast<char>(0xC0 | (v >> 6));
          r += static_cast<char>(0x80 | (v & 0x3F));
        } else if (v < 0x10000) {
          r += static_cast<char>(0xE0 | (v >> 12));
          r += static_cast<char>(0x80 | ((v >> 6) & 0x3F));
          r += static_cast<char>(0x80 | (v & 0x3F));
        } else {
          r += static_cast<char>(0xF0 | (v >> 18));
          r += static_cast<char>(0x80 | ((v >> 12) & 0x3F));
          r += static_cast<char>(0x80 | ((v >> 6) & 0x3F));
          r += static_cast<char>(0x80 | (v & 0x3F));
        }
        break;
      }
      default:
        if (e >= '0' && e <= '7') {
          if (i + 2 > s.size() - 2) return false;
          int v = 0;
          for (int k = 0; k < 3; ++k) {
            char d = s[i + k];
            if (d < '0' || d > '7') return false;
            v = v * 8 + (d - '0');
          }
          if (v > 255) return false;
          r += static_cast<char>(v);
          i += 2;
          break;
        }
        return false;
    }
  }
  *out = r;
  return true;
}

// The length of the Go quoted string at the start of s (what %q scans),
// or 0 if there is none.
size_t QuotedPrefix(absl::string_view s) {
  if (s.empty()) return 0;
  if (s[0] == '`') {
    size_t e = s.find('`', 1);
    return e == absl::string_view::npos ? 0 : e + 1;
  }
  if (s[0] != '"') return 0;
  for (size_t i = 1; i < s.size(); ++i) {
    if (s[i] == '\\') {
      ++i;
      continue;
    }
    if (s[i] == '"') return i + 1;
  }
  return 0;
}

void SkipSpaces(absl::string_view* s) {
  while (!s->empty() && ((*s)[0] == ' ' || (*s)[0] == '\t' ||
                         (*s)[0] == '\r')) {
    s->remove_prefix(1);
  }
}

// etcdctl's parseCompare (fmt.Sscanf(rest, "%q) %s %q", ...)).
pb::Compare ParseCompare(const std::string& line) {
  size_t lp = line.find('(');
  if (lp == std::string::npos) {
    ExitWithError(kExitInvalidInput,
                  absl::StrCat("malformed comparison: ", line));
  }
  std::string target = line.substr(0, lp);
  absl::string_view rest = absl::string_view(line).substr(lp + 1);
  std::string key, op, val;
  int n = 0;
  [&] {
    SkipSpaces(&rest);
    size_t q = QuotedPrefix(rest);
    if (q == 0 || !GoUnquote(rest.substr(0, q), &key)) return;
    ++n;
    rest.remove_prefix(q);
    if (rest.empty() || rest[0] != ')') return;
    rest.remove_prefix(1);
    SkipSpaces(&rest);
    size_t e = 0;
    while (e < rest.size() && rest[e] != ' ' && rest[e] != '\t') ++e;
    if (e == 0) return;
    op = std::string(rest.substr(0, e));
    ++n;
    rest.remove_prefix(e);
    SkipSpaces(&rest);
    q = QuotedPrefix(rest);
    if (q == 0 || !GoUnquote(rest.substr(0, q), &val)) return;
    ++n;
  }();
  if (n != 3) {
    ExitWithError(kExitInvalidInput,
                  absl::StrCat("malformed comparison: ", line, "; got ",
                               target, "(", GoQuote(key), ") ", op, " ",
                               GoQuote(val)));
  }
  pb::Compare c;
  c.set_key(key);
  if (op == "=") {
    c.set_result(pb::Compare::EQUAL);
  } else if (op == "!=") {
    c.set_result(pb::Compare::NOT_EQUAL);
  } else if (op == "<") {
    c.set_result(pb::Compare::LESS);
  } else if (op == ">") {
    c.set_result(pb::Compare::GREATER);
  } else {
    // clientv3.Compare panics on other operators (etcdctl 3.4 prints a
    // Go panic, exit 2); a clear error instead.
    ExitWithError(kExitInvalidInput,
                  absl::StrCat("malformed comparison: ", line,
                               " (unknown operator ", op, ")"));
  }
  auto int_val = [&]() -> int64_t {
    auto v = GoParseInt(val, 10);
    if (!v.ok()) {
      ExitWithError(kExitInvalidInput,
                    absl::StrCat("invalid txn compare request: ", line));
    }
    return *v;
  };
  if (target == "ver" || target == "version") {
    c.set_target(pb::Compare::VERSION);
    c.set_version(int_val());
  } else if (target == "c" || target == "create") {
    c.set_target(pb::Compare::CREATE);
    c.set_create_revision(int_val());
  } else if (target == "m" || target == "mod") {
    c.set_target(pb::Compare::MOD);
    c.set_mod_revision(int_val());
  } else if (target == "val" || target == "value") {
    c.set_target(pb::Compare::VALUE);
    c.set_value(val);
  } else if (target == "lease") {
    // etcdctl 3.4 passes the value as a string where clientv3 wants an
    // int64 and panics (exit 2); a clear error instead.
    ExitWithError(kExitInvalidInput,
                  absl::StrCat("malformed comparison: ", line,
                               " (the lease target is not supported)"));
  } else {
    ExitWithError(kExitInvalidInput,
                  absl::StrCat("malformed comparison: ", line,
                               " (unknown target ", target, ")"));
  }
  return c;
}

// bufio.Reader.ReadString('\n') on stdin (4 KiB reads, like Go's bufio:
// what it buffered is not seen by a later read of stdin, e.g. put's value
// from stdin inside a txn); EOF before a newline is an error for txn.
std::string ReadLineOrExit() {
  static std::string buf;
  static size_t pos = 0;
  std::string line;
  for (;;) {
    while (pos < buf.size()) {
      char c = buf[pos++];
      line += c;
      if (c == '\n') return line;
    }
    buf.assign(4096, '\0');
    pos = 0;
    ssize_t n = ::read(STDIN_FILENO, buf.data(), buf.size());
    if (n <= 0) {
      buf.clear();
      ExitWithError(kExitInvalidInput, "EOF");
    }
    buf.resize(static_cast<size_t>(n));
  }
}

std::vector<pb::Compare> ReadCompares() {
  std::vector<pb::Compare> out;
  for (;;) {
    std::string line(absl::StripAsciiWhitespace(ReadLineOrExit()));
    if (line.empty()) break;
    out.push_back(ParseCompare(line));
  }
  return out;
}

// etcdctl's parseRequestUnion: the line runs as a get / put / del command
// line under a fresh, silent cobra root.
pb::RequestOp ParseRequest(const std::string& line) {
  std::vector<std::string> args = Argify(line);
  if (args.size() < 2) {
    ExitWithError(kExitInvalidInput,
                  absl::StrCat("invalid txn compare request: ", line));
  }
  std::optional<pb::RequestOp> op;
  Command root("", "");
  Command* put = root.Add(NewPutCommand());
  Command* get = root.Add(NewGetCommand());
  Command* del = root.Add(NewDelCommand());
  auto invalid = [&]() {
    ExitWithError(kExitInvalidInput,
                  absl::StrCat("invalid txn request: ", line));
  };
  Command* cmd = nullptr;
  std::vector<std::string> rest;
  if (!root.Resolve(args, &cmd, &rest).ok()) invalid();
  std::vector<std::string> positional;
  if (!cmd->ParseFlags(rest, &positional).ok()) {
    Err(absl::StrCat(cmd->DefaultUsage(), "\n"));
    invalid();
  }
  if (cmd == put) {
    *(op.emplace().mutable_request_put()) = PutOp(*cmd, positional);
  } else if (cmd == get) {
    *(op.emplace().mutable_request_range()) = GetOp(*cmd, positional);
  } else if (cmd == del) {
    *(op.emplace().mutable_request_delete_range()) = DelOp(*cmd, positional);
  } else {
    invalid();
  }
  return *op;
}

std::vector<pb::RequestOp> ReadOps() {
  std::vector<pb::RequestOp> out;
  for (;;) {
    std::string line(absl::StripAsciiWhitespace(ReadLineOrExit()));
    if (line.empty()) break;
    out.push_back(ParseRequest(line));
  }
  return out;
}

}  // namespace

std::vector<std::string> Argify(const std::string& s) {
  static const std::regex re(R"re("(?:[^"\\]|\\.)*"|'[^']*'|[^'"\s]\S*[^'"\s]?)re");
  std::vector<std::string> args;
  for (auto it = std::sregex_iterator(s.begin(), s.end(), re);
       it != std::sregex_iterator(); ++it) {
    args.push_back(it->str());
  }
  size_t n = args.size();
  for (std::string& a : args) {
    if (a.empty()) continue;
    if (a[0] == '\'') {
      // etcdctl slices with the number of words, not the word's length.
      if (n < 1 || n - 1 > a.size() || n - 1 < 1) {
        // etcdctl 3.4 crashes here (a Go panic, exit 2).
        ExitWithError(kExitInvalidInput,
                      absl::StrCat("invalid single-quoted argument ", a));
      }
      a = a.substr(1, n - 2);
    } else if (a[0] == '"') {
      std::string u;
      if (!GoUnquote(a, &u)) ExitWithError(kExitInvalidInput, "invalid syntax");
      a = u;
    }
  }
  return args;
}

// ---------------------------------------------------------------- get

pb::RangeRequest GetOp(Command& cmd, const std::vector<std::string>& args) {
  if (args.empty()) {
    ExitWithError(kExitBadArgs,
                  "get command needs one argument as key and an optional "
                  "argument as range_end");
  }
  bool prefix = cmd.Lookup("prefix")->b();
  bool from_key = cmd.Lookup("from-key")->b();
  if (prefix && from_key) {
    ExitWithError(kExitBadArgs,
                  "`--prefix` and `--from-key` cannot be set at the same "
                  "time, choose one");
  }
  pb::RangeRequest r;
  std::string consistency = cmd.Lookup("consistency")->s();
  if (consistency == "s") {
    r.set_serializable(true);
  } else if (consistency != "l") {
    ExitWithError(kExitBadFeature, absl::StrCat("unknown consistency flag ",
                                                GoQuote(consistency)));
  }
  std::string key = args[0];
  if (args.size() > 1) {
    if (prefix || from_key) {
      ExitWithError(kExitBadArgs,
                    "too many arguments, only accept one argument when "
                    "`--prefix` or `--from-key` is set");
    }
    r.set_range_end(args[1]);
  }
  r.set_limit(cmd.Lookup("limit")->i());
  int64_t rev = cmd.Lookup("rev")->i();
  if (rev > 0) r.set_revision(rev);
  std::string order_s = cmd.Lookup("order")->s();
  std::string order = absl::AsciiStrToUpper(order_s);
  pb::RangeRequest::SortOrder sort_order = pb::RangeRequest::NONE;
  if (order == "ASCEND") {
    sort_order = pb::RangeRequest::ASCEND;
  } else if (order == "DESCEND") {
    sort_order = pb::RangeRequest::DESCEND;
  } else if (!order.empty()) {
    ExitWithError(kExitBadFeature, absl::StrCat("bad sort order ", order_s));
  }
  std::string target_s = cmd.Lookup("sort-by")->s();
  std::string target = absl::AsciiStrToUpper(target_s);
  pb::RangeRequest::SortTarget sort_target = pb::RangeRequest::KEY;
  if (target == "CREATE") {
    sort_target = pb::RangeRequest::CREATE;
  } else if (target == "KEY") {
    sort_target = pb::RangeRequest::KEY;
  } else if (target == "MODIFY") {
    sort_target = pb::RangeRequest::MOD;
  } else if (target == "VALUE") {
    sort_target = pb::RangeRequest::VALUE;
  } else if (target == "VERSION") {
    sort_target = pb::RangeRequest::VERSION;
  } else if (!target.empty()) {
    ExitWithError(kExitBadFeature, absl::StrCat("bad sort target ", target_s));
  }
  // clientv3.WithSort: ascending by key is the server's natural order.
  if (sort_target == pb::RangeRequest::KEY &&
      sort_order == pb::RangeRequest::ASCEND) {
    sort_order = pb::RangeRequest::NONE;
  }
  r.set_sort_order(sort_order);
  r.set_sort_target(sort_target);
  if (prefix) {
    if (key.empty()) {
      key = std::string(1, '\0');
      r.set_range_end(std::string(1, '\0'));
    } else {
      r.set_range_end(PrefixRangeEnd(key));
    }
  }
  if (from_key) {
    if (key.empty()) key = std::string(1, '\0');
    r.set_range_end(std::string(1, '\0'));
  }
  r.set_key(key);
  if (cmd.Lookup("keys-only")->b()) r.set_keys_only(true);
  return r;
}

std::unique_ptr<Command> NewGetCommand() {
  auto c = std::make_unique<Command>(
      "get [options] <key> [range_end]", "Gets the key or a range of keys", "",
      [](Command& cmd, const std::vector<std::string>& args) {
        pb::RangeRequest req = GetOp(cmd, args);
        client::CallOptions ctx = CommandCtx(cmd);
        auto cli = MustClientFromCmd(cmd);
        auto resp = cli->Range(req, ctx);
        if (!resp.ok()) ExitWithStatus(kExitError, resp.status());
        if (cmd.Lookup("print-value-only")->b()) {
          if (display().format() != OutFormat::kSimple) {
            ExitWithError(kExitBadArgs,
                          "print-value-only is only for `--write-out=simple`");
          }
          display().set_value_only(true);
        }
        display().Get(*resp);
      });
  c->String("consistency", 0, "l", "Linearizable(l) or Serializable(s)");
  c->String("order", 0, "",
            "Order of results; ASCEND or DESCEND (ASCEND by default)");
  c->String("sort-by", 0, "",
            "Sort target; CREATE, KEY, MODIFY, VALUE, or VERSION");
  c->Int64("limit", 0, 0, "Maximum number of results");
  c->Bool("prefix", 0, false, "Get keys with matching prefix");
  c->Bool("from-key", 0, false,
          "Get keys that are greater than or equal to the given key using "
          "byte compare");
  c->Int64("rev", 0, 0, "Specify the kv revision");
  c->Bool("keys-only", 0, false, "Get only the keys");
  c->Bool("print-value-only", 0, false,
          "Only write values when using the \"simple\" output format");
  return c;
}

// ---------------------------------------------------------------- put

pb::PutRequest PutOp(Command& cmd, const std::vector<std::string>& args) {
  const char* kNeed =
      "put command needs 1 argument and input from stdin or 2 arguments";
  if (args.empty()) ExitWithError(kExitBadArgs, kNeed);
  bool ignore_value = cmd.Lookup("ignore-value")->b();
  if (ignore_value && args.size() > 1) {
    ExitWithError(kExitBadArgs,
                  "put command needs only 1 argument when 'ignore-value' is "
                  "set");
  }
  pb::PutRequest r;
  r.set_key(args[0]);
  if (!ignore_value) {
    if (args.size() > 1) {
      r.set_value(args[1]);
    } else {
      std::string v = ReadAllStdin();
      if (v.empty()) ExitWithError(kExitBadArgs, kNeed);
      r.set_value(v);
    }
  }
  auto id = GoParseInt(cmd.Lookup("lease")->s(), 16);
  if (!id.ok()) {
    ExitWithError(kExitBadArgs, absl::StrCat("bad lease ID (",
                                             id.status().message(),
                                             "), expecting ID in Hex"));
  }
  if (*id != 0) r.set_lease(*id);
  if (cmd.Lookup("prev-kv")->b()) r.set_prev_kv(true);
  if (ignore_value) r.set_ignore_value(true);
  if (cmd.Lookup("ignore-lease")->b()) r.set_ignore_lease(true);
  return r;
}

std::unique_ptr<Command> NewPutCommand() {
  auto c = std::make_unique<Command>(
      "put [options] <key> <value> (<value> can also be given from stdin)",
      "Puts the given key into the store",
      R"(
Puts the given key into the store.

When <value> begins with '-', <value> is interpreted as a flag.
Insert '--' for workaround:

$ put <key> -- <value>
$ put -- <key> <value>

If <value> isn't given as a command line argument and '--ignore-value' is not specified,
this command tries to read the value from standard input.

If <lease> isn't given as a command line argument and '--ignore-lease' is not specified,
this command tries to read the value from standard input.

For example,
$ cat file | put <key>
will store the content of the file to <key>.
)",
      [](Command& cmd, const std::vector<std::string>& args) {
        pb::PutRequest req = PutOp(cmd, args);
        client::CallOptions ctx = CommandCtx(cmd);
        auto cli = MustClientFromCmd(cmd);
        auto resp = cli->Put(req, ctx);
        if (!resp.ok()) ExitWithStatus(kExitError, resp.status());
        display().Put(*resp);
      });
  c->String("lease", 0, "0", "lease ID (in hexadecimal) to attach to the key");
  c->Bool("prev-kv", 0, false,
          "return the previous key-value pair before modification");
  c->Bool("ignore-value", 0, false, "updates the key using its current value");
  c->Bool("ignore-lease", 0, false, "updates the key using its current lease");
  return c;
}

// ---------------------------------------------------------------- del

pb::DeleteRangeRequest DelOp(Command& cmd,
                             const std::vector<std::string>& args) {
  if (args.empty() || args.size() > 2) {
    ExitWithError(kExitBadArgs,
                  "del command needs one argument as key and an optional "
                  "argument as range_end");
  }
  bool prefix = cmd.Lookup("prefix")->b();
  bool from_key = cmd.Lookup("from-key")->b();
  if (prefix && from_key) {
    ExitWithError(kExitBadArgs,
                  "`--prefix` and `--from-key` cannot be set at the same "
                  "time, choose one");
  }
  pb::DeleteRangeRequest r;
  std::string key = args[0];
  if (args.size() > 1) {
    if (prefix || from_key) {
      ExitWithError(kExitBadArgs,
                    "too many arguments, only accept one argument when "
                    "`--prefix` or `--from-key` is set");
    }
    r.set_range_end(args[1]);
  }
  if (prefix) {
    if (key.empty()) {
      key = std::string(1, '\0');
      r.set_range_end(std::string(1, '\0'));
    } else {
      r.set_range_end(PrefixRangeEnd(key));
    }
  }
  if (cmd.Lookup("prev-kv")->b()) r.set_prev_kv(true);
  if (from_key) {
    if (key.empty()) key = std::string(1, '\0');
    r.set_range_end(std::string(1, '\0'));
  }
  r.set_key(key);
  return r;
}

std::unique_ptr<Command> NewDelCommand() {
  auto c = std::make_unique<Command>(
      "del [options] <key> [range_end]",
      "Removes the specified key or range of keys [key, range_end)", "",
      [](Command& cmd, const std::vector<std::string>& args) {
        pb::DeleteRangeRequest req = DelOp(cmd, args);
        client::CallOptions ctx = CommandCtx(cmd);
        auto cli = MustClientFromCmd(cmd);
        auto resp = cli->DeleteRange(req, ctx);
        if (!resp.ok()) ExitWithStatus(kExitError, resp.status());
        display().Del(*resp);
      });
  c->Bool("prefix", 0, false, "delete keys with matching prefix");
  c->Bool("prev-kv", 0, false, "return deleted key-value pairs");
  c->Bool("from-key", 0, false,
          "delete keys that are greater than or equal to the given key using "
          "byte compare");
  return c;
}

// ---------------------------------------------------------------- txn

std::unique_ptr<Command> NewTxnCommand() {
  auto c = std::make_unique<Command>(
      "txn [options]", "Txn processes all the requests in one transaction", "",
      [](Command& cmd, const std::vector<std::string>& args) {
        if (!args.empty()) {
          ExitWithError(kExitBadArgs, "txn command does not accept argument");
        }
        bool interactive = cmd.Lookup("interactive")->b();
        auto cli = MustClientFromCmd(cmd);
        auto prompt = [&](const char* s) {
          if (interactive) Out(absl::StrCat(s, "\n"));
        };
        pb::TxnRequest req;
        prompt("compares:");
        for (auto& cmp : ReadCompares()) *req.add_compare() = cmp;
        prompt("success requests (get, put, del):");
        for (auto& op : ReadOps()) *req.add_success() = op;
        prompt("failure requests (get, put, del):");
        for (auto& op : ReadOps()) *req.add_failure() = op;
        // etcdctl's txn runs without a deadline.
        auto resp = cli->Txn(req, client::CallOptions{});
        if (!resp.ok()) ExitWithStatus(kExitError, resp.status());
        display().Txn(*resp);
      });
  c->Bool("interactive", 'i', false, "Input transaction in interactive mode");
  return c;
}

// ---------------------------------------------------------------- compaction

std::unique_ptr<Command> NewCompactionCommand() {
  auto c = std::make_unique<Command>(
      "compaction [options] <revision>", "Compacts the event history in etcd",
      "", [](Command& cmd, const std::vector<std::string>& args) {
        if (args.size() != 1) {
          ExitWithError(kExitBadArgs, "compaction command needs 1 argument");
        }
        auto rev = GoParseInt(args[0], 10);
        if (!rev.ok()) ExitWithError(kExitError, rev.status().message());
        pb::CompactionRequest req;
        req.set_revision(*rev);
        if (cmd.Lookup("physical")->b()) req.set_physical(true);
        auto cli = MustClientFromCmd(cmd);
        auto resp = cli->Compact(req, CommandCtx(cmd));
        if (!resp.ok()) ExitWithStatus(kExitError, resp.status());
        Out(absl::StrCat("compacted revision ", *rev, "\n"));
      });
  c->Bool("physical", 0, false,
          "'true' to wait for compaction to physically remove all old "
          "revisions");
  return c;
}

}  // namespace detcd::ctl
