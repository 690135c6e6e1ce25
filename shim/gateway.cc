#include "shim/gateway.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/time/time.h"
#include "etcdserverpb/rpc.pb.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/dynamic_message.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "h2_unary.h"
#include "nlohmann/json.hpp"
#include "v3electionpb/v3election.pb.h"
#include "v3lockpb/v3lock.pb.h"

namespace detcd::shim {
namespace {

namespace gpb = google::protobuf;

// Debian's abseil has its own string_view type.
absl::string_view AV(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

// ---------------------------------------------------------------------------
// Go's encoding/json scanner texts.

// Go's quoteChar: the offending byte as the scanner's errors show it.
std::string QuoteChar(unsigned char c) {
  if (c == '\'') return "'\\''";
  if (c == '"') return "'\"'";
  switch (c) {
    case '\a':
      return "'\\a'";
    case '\b':
      return "'\\b'";
    case '\f':
      return "'\\f'";
    case '\n':
      return "'\\n'";
    case '\r':
      return "'\\r'";
    case '\t':
      return "'\\t'";
    case '\v':
      return "'\\v'";
    case '\\':
      return "'\\\\'";
    default:
      break;
  }
  if (c < 0x20 || c == 0x7f) return absl::StrFormat("'\\x%02x'", c);
  if (c < 0x80) return std::string("'") + static_cast<char>(c) + "'";
  // string(byte) in Go is the rune U+00XX; strconv.Quote escapes the
  // unprintable ones.
  if (c <= 0xa0 || c == 0xad) return absl::StrFormat("'\\u00%02x'", c);
  std::string out = "'";
  out += static_cast<char>(0xc0 | (c >> 6));
  out += static_cast<char>(0x80 | (c & 0x3f));
  return out + "'";
}

bool IsJsonSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

// A recursive-descent check with the scanner's messages. Depth is bounded
// (Go's limit is 10000 nested values).
class GoScanner {
 public:
  explicit GoScanner(std::string_view s) : s_(s) {}

  // Scans one value starting at pos_ (whitespace before it skipped).
  bool Value(int depth) {
    SkipSpace();
    if (Eof()) return Fail("unexpected EOF");
    if (depth > 10000) return Fail("exceeded max depth");
    char c = s_[pos_];
    switch (c) {
      case '{':
        return Object(depth);
      case '[':
        return Array(depth);
      case '"':
        return String();
      case 't':
        return Literal("true");
      case 'f':
        return Literal("false");
      case 'n':
        return Literal("null");
      default:
        break;
    }
    if (c == '-' || absl::ascii_isdigit(static_cast<unsigned char>(c))) {
      return Number();
    }
    return Invalid(c, "looking for beginning of value");
  }

  size_t pos() const { return pos_; }
  void set_pos(size_t p) { pos_ = p; }
  const std::string& error() const { return error_; }
  void SkipSpace() {
    while (!Eof() && IsJsonSpace(s_[pos_])) ++pos_;
  }
  bool Eof() const { return pos_ >= s_.size(); }
  bool Invalid(char c, std::string_view context) {
    return Fail(absl::StrCat("invalid character ",
                             QuoteChar(static_cast<unsigned char>(c)), " ",
                             AV(context)));
  }

 private:
  bool Fail(std::string e) {
    error_ = std::move(e);
    return false;
  }

  bool Object(int depth) {
    ++pos_;  // '{'
    SkipSpace();
    if (Eof()) return Fail("unexpected EOF");
    if (s_[pos_] == '}') {
      ++pos_;
      return true;
    }
    while (true) {
      SkipSpace();
      if (Eof()) return Fail("unexpected EOF");
      if (s_[pos_] != '"') {
        return Invalid(s_[pos_], "looking for beginning of object key string");
      }
      if (!String()) return false;
      SkipSpace();
      if (Eof()) return Fail("unexpected EOF");
      if (s_[pos_] != ':') return Invalid(s_[pos_], "after object key");
      ++pos_;
      if (!Value(depth + 1)) return false;
      SkipSpace();
      if (Eof()) return Fail("unexpected EOF");
      if (s_[pos_] == '}') {
        ++pos_;
        return true;
      }
      if (s_[pos_] != ',') {
        return Invalid(s_[pos_], "after object key:value pair");
      }
      ++pos_;
    }
  }

  bool Array(int depth) {
    ++pos_;  // '['
    SkipSpace();
    if (Eof()) return Fail("unexpected EOF");
    if (s_[pos_] == ']') {
      ++pos_;
      return true;
    }
    while (true) {
      if (!Value(depth + 1)) return false;
      SkipSpace();
      if (Eof()) return Fail("unexpected EOF");
      if (s_[pos_] == ']') {
        ++pos_;
        return true;
      }
      if (s_[pos_] != ',') return Invalid(s_[pos_], "after array element");
      ++pos_;
    }
  }

  bool String() {
    ++pos_;  // '"'
    while (true) {
      if (Eof()) return Fail("unexpected EOF");
      unsigned char c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') {
        ++pos_;
        return true;
      }
      if (c < 0x20) return Invalid(static_cast<char>(c), "in string literal");
      if (c == '\\') {
        ++pos_;
        if (Eof()) return Fail("unexpected EOF");
        char e = s_[pos_];
        if (e == 'u') {
          ++pos_;
          for (int i = 0; i < 4; ++i, ++pos_) {
            if (Eof()) return Fail("unexpected EOF");
            if (!absl::ascii_isxdigit(static_cast<unsigned char>(s_[pos_]))) {
              return Invalid(s_[pos_], "in \\u hexadecimal character escape");
            }
          }
          continue;
        }
        if (std::string_view("\"\\/bfnrt").find(e) == std::string_view::npos) {
          return Invalid(e, "in string escape code");
        }
      }
      ++pos_;
    }
  }

  bool Literal(std::string_view word) {
    for (size_t i = 0; i < word.size(); ++i, ++pos_) {
      if (Eof()) return Fail("unexpected EOF");
      if (s_[pos_] != word[i]) {
        return Invalid(s_[pos_],
                       absl::StrCat("in literal ", AV(word), " (expecting '",
                                    AV(word.substr(i, 1)), "')"));
      }
    }
    return true;
  }

  bool Digit() const {
    return !Eof() && absl::ascii_isdigit(static_cast<unsigned char>(s_[pos_]));
  }

  // A number ends at the first byte that cannot continue it; that byte is
  // judged by the enclosing value. At the end of input a number is whole
  // only after the digits Go needs.
  bool Number() {
    if (s_[pos_] == '-') {
      ++pos_;
      if (Eof()) return Fail("unexpected EOF");
      if (!Digit()) return Invalid(s_[pos_], "in numeric literal");
    }
    if (s_[pos_] == '0') {
      ++pos_;
    } else {
      while (Digit()) ++pos_;
    }
    if (!Eof() && s_[pos_] == '.') {
      ++pos_;
      if (Eof()) return Fail("unexpected EOF");
      if (!Digit()) {
        return Invalid(s_[pos_], "after decimal point in numeric literal");
      }
      while (Digit()) ++pos_;
    }
    if (!Eof() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      ++pos_;
      if (!Eof() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (Eof()) return Fail("unexpected EOF");
      if (!Digit()) {
        return Invalid(s_[pos_], "in exponent of numeric literal");
      }
      while (Digit()) ++pos_;
    }
    return true;
  }

  std::string_view s_;
  size_t pos_ = 0;
  std::string error_;
};

// json.Unmarshal's check of a whole input (one value, then only spaces).
bool GoValidWhole(std::string_view s, std::string* error) {
  if (std::all_of(s.begin(), s.end(), IsJsonSpace)) {
    *error = "unexpected end of JSON input";
    return false;
  }
  GoScanner sc(s);
  if (!sc.Value(0)) {
    *error = sc.error() == "unexpected EOF" ? "unexpected end of JSON input"
                                            : sc.error();
    return false;
  }
  sc.SkipSpace();
  if (!sc.Eof()) {
    sc.Invalid(s[sc.pos()], "after top-level value");
    *error = sc.error();
    return false;
  }
  return true;
}

// ---------------------------------------------------------------------------
// golang/protobuf jsonpb's type checks, for its texts.

std::string GoKind(const nlohmann::json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::string:
      return "string";
    case nlohmann::json::value_t::boolean:
      return "bool";
    case nlohmann::json::value_t::array:
      return "array";
    case nlohmann::json::value_t::object:
      return "object";
    case nlohmann::json::value_t::null:
      return "null";
    default:
      return "number";
  }
}

absl::Status CannotUnmarshal(std::string_view what, std::string_view type) {
  return absl::InvalidArgumentError(
      absl::StrCat("json: cannot unmarshal ", AV(what),
                   " into Go value of type ", AV(type)));
}

// The Go type name protoc-gen-go gives a message or enum: the package, then
// the nested names joined by '_' (etcdserverpb.RangeRequest_SortOrder).
std::string GoTypeName(const std::string& full_name,
                       const std::string& package) {
  std::string rest = full_name.substr(package.empty() ? 0 : package.size() + 1);
  return absl::StrCat(package, ".", absl::StrReplaceAll(rest, {{".", "_"}}));
}

// Go's base64.StdEncoding.Decode's complaint about `s`, if any (padding
// required, \r and \n skipped).
std::optional<size_t> Base64Error(std::string_view s) {
  auto alpha = [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '+' ||
           c == '/';
  };
  size_t si = 0;
  const size_t n = s.size();
  auto skip_newlines = [&] {
    while (si < n && (s[si] == '\r' || s[si] == '\n')) ++si;
  };
  while (true) {
    for (int j = 0; j < 4; ++j) {
      skip_newlines();
      if (si == n) {
        if (j == 0) return std::nullopt;
        return si - static_cast<size_t>(j);
      }
      char c = s[si++];
      if (alpha(c)) continue;
      if (c != '=') return si - 1;
      // Padding: only in the third or fourth place of a quantum.
      if (j < 2) return si - 1;
      if (j == 2) {
        skip_newlines();
        if (si == n) return n;
        if (s[si] != '=') return si - 1;
        ++si;
      }
      skip_newlines();
      if (si < n) return si;
      return std::nullopt;
    }
  }
}

absl::Status CheckMessage(const nlohmann::json& j, const gpb::Descriptor* d,
                          nlohmann::json* out);

// An integer field: jsonpb takes numbers, and strings whose contents are
// a JSON number (it strips the quotes and unmarshals the rest).
absl::Status CheckInteger(const nlohmann::json& v, std::string_view type,
                          bool is_signed, int bits) {
  std::string text;
  nlohmann::json num;
  if (v.is_string()) {
    text = v.get<std::string>();
    std::string err;
    if (!GoValidWhole(text, &err)) return absl::InvalidArgumentError(err);
    try {
      num = nlohmann::json::parse(text);
    } catch (const std::exception&) {
      return CannotUnmarshal("number " + text, type);
    }
  } else {
    num = v;
    text = v.dump();
  }
  if (!num.is_number()) return CannotUnmarshal(GoKind(num), type);
  if (num.is_number_float()) return CannotUnmarshal("number " + text, type);
  bool fits;
  if (num.is_number_unsigned()) {
    uint64_t u = num.get<uint64_t>();
    fits = is_signed ? u <= (uint64_t{1} << (bits - 1)) - 1
                     : bits == 64 || u <= (uint64_t{1} << bits) - 1;
  } else {
    int64_t i = num.get<int64_t>();
    if (is_signed) {
      fits = bits == 64 || (i >= -(int64_t{1} << (bits - 1)) &&
                            i <= (int64_t{1} << (bits - 1)) - 1);
    } else {
      fits = i >= 0 && (bits == 64 ||
                        static_cast<uint64_t>(i) <= (uint64_t{1} << bits) - 1);
    }
  }
  if (!fits) return CannotUnmarshal("number " + text, type);
  return absl::OkStatus();
}

// Checks one field value; *out receives it as protobuf's parser gets it.
absl::Status CheckValue(const nlohmann::json& v, const gpb::FieldDescriptor* f,
                        nlohmann::json* out) {
  *out = v;
  if (v.is_null()) return absl::OkStatus();
  switch (f->cpp_type()) {
    case gpb::FieldDescriptor::CPPTYPE_MESSAGE:
      return CheckMessage(v, f->message_type(), out);
    case gpb::FieldDescriptor::CPPTYPE_ENUM: {
      const gpb::EnumDescriptor* e = f->enum_type();
      std::string go = GoTypeName(e->full_name(), e->file()->package());
      if (v.is_string()) {
        if (e->FindValueByName(v.get<std::string>()) == nullptr) {
          return absl::InvalidArgumentError(
              absl::StrCat("unknown value ", GoJsonString(v.get<std::string>()),
                           " for enum ", go));
        }
        return absl::OkStatus();
      }
      return CheckInteger(v, go, true, 32);
    }
    case gpb::FieldDescriptor::CPPTYPE_INT64:
      return CheckInteger(v, "int64", true, 64);
    case gpb::FieldDescriptor::CPPTYPE_INT32:
      return CheckInteger(v, "int32", true, 32);
    case gpb::FieldDescriptor::CPPTYPE_UINT64:
      return CheckInteger(v, "uint64", false, 64);
    case gpb::FieldDescriptor::CPPTYPE_UINT32:
      return CheckInteger(v, "uint32", false, 32);
    case gpb::FieldDescriptor::CPPTYPE_BOOL:
      if (!v.is_boolean()) return CannotUnmarshal(GoKind(v), "bool");
      return absl::OkStatus();
    case gpb::FieldDescriptor::CPPTYPE_STRING:
      if (f->type() == gpb::FieldDescriptor::TYPE_BYTES) {
        if (!v.is_string()) return CannotUnmarshal(GoKind(v), "[]uint8");
        if (auto at = Base64Error(v.get_ref<const std::string&>())) {
          return absl::InvalidArgumentError(
              absl::StrCat("illegal base64 data at input byte ", *at));
        }
        return absl::OkStatus();
      }
      if (!v.is_string()) return CannotUnmarshal(GoKind(v), "string");
      return absl::OkStatus();
    default:
      return absl::OkStatus();
  }
}

// jsonpb walks the message's fields in declaration order, each found by
// its proto name, else its lowerCamel name; other keys are ignored. *out
// receives the known fields only (under their proto names), so protobuf's
// parser never sees what Go would ignore (e.g. unknown values nested deeper
// than its recursion limit).
absl::Status CheckMessage(const nlohmann::json& j, const gpb::Descriptor* d,
                          nlohmann::json* out) {
  *out = nlohmann::json(nullptr);
  if (j.is_null()) return absl::OkStatus();
  if (!j.is_object()) {
    return CannotUnmarshal(GoKind(j), "map[string]json.RawMessage");
  }
  *out = nlohmann::json::object();
  for (int i = 0; i < d->field_count(); ++i) {
    const gpb::FieldDescriptor* f = d->field(i);
    auto it = j.find(f->name());
    if (it == j.end()) it = j.find(f->json_name());
    if (it == j.end() || it->is_null()) continue;
    nlohmann::json& dst = (*out)[f->name()];
    if (f->is_repeated()) {
      if (!it->is_array()) {
        return CannotUnmarshal(GoKind(*it), "[]json.RawMessage");
      }
      dst = nlohmann::json::array();
      for (const nlohmann::json& e : *it) {
        nlohmann::json c;
        absl::Status s = CheckValue(e, f, &c);
        if (!s.ok()) return s;
        dst.push_back(std::move(c));
      }
      continue;
    }
    absl::Status s = CheckValue(*it, f, &dst);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Calls.

grpc::ByteBuffer ToByteBuffer(const std::string& bytes) {
  grpc::Slice slice(bytes.data(), bytes.size());
  return grpc::ByteBuffer(&slice, 1);
}

std::string FromByteBuffer(const grpc::ByteBuffer& bb) {
  std::vector<grpc::Slice> slices;
  std::string out;
  if (!bb.Dump(&slices).ok()) return out;
  for (const grpc::Slice& s : slices) {
    out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return out;
}

// Drives one call of any shape through a generic stub on a completion
// queue of its own, on the calling thread: sends `requests`, half-closes,
// hands each response to `on_response` (false cancels the call), and
// cancels the call when `client_gone` says so. Returns the call's status.
grpc::Status RunCall(grpc::GenericStub& stub, const std::string& method,
                     const std::vector<std::string>& requests,
                     const std::string& token,
                     const std::function<bool()>& client_gone,
                     int poll_interval_ms,
                     const std::function<bool(std::string)>& on_response) {
  enum Op : intptr_t { kStart = 1, kWrite, kWritesDone, kRead, kFinish };
  auto tag = [](Op op) { return reinterpret_cast<void*>(op); };
  grpc::CompletionQueue cq;
  grpc::ClientContext ctx;
  if (!token.empty()) ctx.AddMetadata("authorization", token);
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call =
      stub.PrepareCall(&ctx, method, &cq);
  grpc::Status status;
  grpc::ByteBuffer write_buf, read_buf;
  size_t next_write = 0;
  int pending = 0;
  bool finished = false, cancelled = false;

  auto write_next = [&] {
    if (next_write < requests.size()) {
      write_buf = ToByteBuffer(requests[next_write++]);
      call->Write(write_buf, tag(kWrite));
    } else {
      call->WritesDone(tag(kWritesDone));
    }
    ++pending;
  };
  auto finish = [&] {
    call->Finish(&status, tag(kFinish));
    ++pending;
  };
  auto cancel = [&] {
    if (!cancelled) ctx.TryCancel();
    cancelled = true;
  };

  call->StartCall(tag(kStart));
  ++pending;
  while (pending > 0) {
    void* got = nullptr;
    bool ok = false;
    auto deadline = std::chrono::system_clock::now() +
                    std::chrono::milliseconds(poll_interval_ms);
    grpc::CompletionQueue::NextStatus ns = cq.AsyncNext(&got, &ok, deadline);
    if (ns == grpc::CompletionQueue::SHUTDOWN) break;
    if (ns == grpc::CompletionQueue::TIMEOUT) {
      if (client_gone && client_gone()) cancel();
      continue;
    }
    --pending;
    switch (static_cast<Op>(reinterpret_cast<intptr_t>(got))) {
      case kStart:
        if (!ok) {
          finish();
          break;
        }
        write_next();
        call->Read(&read_buf, tag(kRead));
        ++pending;
        break;
      case kWrite:
        if (ok) write_next();
        break;
      case kWritesDone:
        break;
      case kRead:
        if (!ok) {
          finish();
          break;
        }
        if (!on_response(FromByteBuffer(read_buf))) cancel();
        call->Read(&read_buf, tag(kRead));
        ++pending;
        break;
      case kFinish:
        finished = true;
        break;
    }
  }
  (void)finished;
  cq.Shutdown();
  void* got;
  bool ok;
  while (cq.Next(&got, &ok)) {
  }
  return status;
}

// ---------------------------------------------------------------------------
// Answers.

// A status as etcd's gateway shows it. The server's own texts pass as they
// are; the one gRPC itself writes when a request exceeds the server's limit
// is grpc-go's in etcd ("grpc: received message larger than max (N vs.
// M)"), C++ gRPC's here.
std::string GoStatusMessage(const grpc::Status& s) {
  static constexpr std::string_view kCpp = "Received message larger than max";
  const std::string& m = s.error_message();
  if (s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED &&
      m.compare(0, kCpp.size(), kCpp) == 0) {
    return "grpc: received message larger than max" + m.substr(kCpp.size());
  }
  return m;
}

std::string ErrorBody(const std::string& message, int code) {
  return absl::StrCat("{\"error\":", GoJsonString(message),
                      ",\"message\":", GoJsonString(message),
                      ",\"code\":", code, "}");
}

HttpResponse JsonError(int grpc_code, const std::string& message) {
  HttpResponse r;
  r.status = HttpStatusFromGrpcCode(grpc_code);
  r.content_type = "application/json";
  r.body = ErrorBody(message, grpc_code);
  return r;
}

// net/http's http.Error: text, nosniff, a newline after the message.
HttpResponse PlainError(int status, std::string_view text) {
  HttpResponse r;
  r.status = status;
  r.content_type = "text/plain; charset=utf-8";
  r.headers.push_back({"X-Content-Type-Options", "nosniff"});
  r.body = absl::StrCat(AV(text), "\n");
  return r;
}

// grpc-gateway's streamChunk for an error.
std::string StreamErrorChunk(const grpc::Status& s) {
  int code = static_cast<int>(s.error_code());
  int http = HttpStatusFromGrpcCode(code);
  std::string_view text = HttpReason(http);
  return absl::StrCat(
      "{\"error\":{\"grpc_code\":", code, ",\"http_code\":", http,
      ",\"message\":", GoJsonString(GoStatusMessage(s)),
      ",\"http_status\":", GoJsonString(std::string(text.data(), text.size())),
      "}}");
}

// The body's requests, as grpc-gateway's decoder reads them: values one
// after another. Unary calls take the first value (an empty body is the
// empty request); streams take every value up to the end or up to one
// that does not decode, which ends the sending (grpc-gateway logs it and
// half-closes). Only a first value that does not decode is an error.
absl::Status DecodeRequests(std::string_view body,
                            const gpb::Message& prototype, bool all,
                            std::vector<std::string>* out) {
  size_t pos = 0;
  while (true) {
    std::string_view value;
    std::string error;
    JsonNext n = NextJsonValue(body, &pos, &value, &error);
    if (n == JsonNext::kEnd) break;
    absl::Status s;
    std::unique_ptr<gpb::Message> m(prototype.New());
    if (n == JsonNext::kError) {
      s = absl::InvalidArgumentError(error);
    } else {
      s = JsonToProto(value, m.get());
    }
    if (!s.ok()) {
      if (out->empty()) return s;
      break;
    }
    out->push_back(m->SerializeAsString());
    if (!all) break;
  }
  if (!all && out->empty()) out->push_back(std::string());
  return absl::OkStatus();
}

}  // namespace

// ---------------------------------------------------------------------------
// Public helpers.

JsonNext NextJsonValue(std::string_view body, size_t* pos,
                       std::string_view* value, std::string* error) {
  GoScanner sc(body);
  sc.set_pos(*pos);
  sc.SkipSpace();
  if (sc.Eof()) {
    *pos = body.size();
    return JsonNext::kEnd;
  }
  size_t start = sc.pos();
  if (!sc.Value(0)) {
    *error = sc.error();
    *pos = body.size();
    return JsonNext::kError;
  }
  *value = body.substr(start, sc.pos() - start);
  *pos = sc.pos();
  return JsonNext::kValue;
}

absl::Status JsonToProto(std::string_view value, gpb::Message* msg) {
  msg->Clear();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(value);
  } catch (const std::exception& e) {
    // Syntax was checked before; nlohmann is stricter only about UTF-8.
    return absl::InvalidArgumentError(e.what());
  }
  if (j.is_null()) return absl::OkStatus();
  nlohmann::json known;
  absl::Status s = CheckMessage(j, msg->GetDescriptor(), &known);
  if (!s.ok()) return s;
  std::string text;
  try {
    text = known.dump();
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(e.what());
  }
  gpb::util::JsonParseOptions opts;
  opts.ignore_unknown_fields = true;
  auto st = gpb::util::JsonStringToMessage(text, msg, opts);
  if (!st.ok()) {
    return absl::InvalidArgumentError(std::string(st.message()));
  }
  return absl::OkStatus();
}

std::string ProtoToJson(const gpb::Message& msg) {
  gpb::util::JsonPrintOptions opts;
  opts.preserve_proto_field_names = true;
  std::string out;
  auto st = gpb::util::MessageToJsonString(msg, &out, opts);
  if (!st.ok()) return "{}";
  return out;
}

std::string GoJsonString(std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "\"";
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '"':
        out += "\\\"";
        continue;
      case '\\':
        out += "\\\\";
        continue;
      case '\n':
        out += "\\n";
        continue;
      case '\r':
        out += "\\r";
        continue;
      case '\t':
        out += "\\t";
        continue;
      case '<':
      case '>':
      case '&':
        out += "\\u00";
        out += kHex[c >> 4];
        out += kHex[c & 0xf];
        continue;
      default:
        break;
    }
    if (c < 0x20) {
      out += "\\u00";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
      continue;
    }
    // U+2028 and U+2029 (E2 80 A8 / A9) are escaped by Go too.
    if (c == 0xe2 && i + 2 < s.size() &&
        static_cast<unsigned char>(s[i + 1]) == 0x80 &&
        (static_cast<unsigned char>(s[i + 2]) == 0xa8 ||
         static_cast<unsigned char>(s[i + 2]) == 0xa9)) {
      out +=
          static_cast<unsigned char>(s[i + 2]) == 0xa8 ? "\\u2028" : "\\u2029";
      i += 2;
      continue;
    }
    out += static_cast<char>(c);
  }
  out += "\"";
  return out;
}

int HttpStatusFromGrpcCode(int code) {
  switch (static_cast<grpc::StatusCode>(code)) {
    case grpc::StatusCode::OK:
      return 200;
    case grpc::StatusCode::CANCELLED:
      return 408;
    case grpc::StatusCode::UNKNOWN:
      return 500;
    case grpc::StatusCode::INVALID_ARGUMENT:
      return 400;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return 504;
    case grpc::StatusCode::NOT_FOUND:
      return 404;
    case grpc::StatusCode::ALREADY_EXISTS:
      return 409;
    case grpc::StatusCode::PERMISSION_DENIED:
      return 403;
    case grpc::StatusCode::UNAUTHENTICATED:
      return 401;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return 429;
    case grpc::StatusCode::FAILED_PRECONDITION:
      return 412;
    case grpc::StatusCode::ABORTED:
      return 409;
    case grpc::StatusCode::OUT_OF_RANGE:
      return 400;
    case grpc::StatusCode::UNIMPLEMENTED:
      return 501;
    case grpc::StatusCode::INTERNAL:
      return 500;
    case grpc::StatusCode::UNAVAILABLE:
      return 503;
    case grpc::StatusCode::DATA_LOSS:
      return 500;
    default:
      return 500;
  }
}

// ---------------------------------------------------------------------------
// The gateway.

struct Gateway::Route {
  std::string grpc_method;  // "/etcdserverpb.KV/Range"
  const gpb::Message* request;
  const gpb::Message* response;
  bool streaming;         // client or server streaming
  bool client_streaming;  // watch, lease/keepalive
};

namespace {

// etcd's google.api.http paths (after /v3/) and the methods behind them.
// /v3/maintenance/hash is bound to both Hash and HashKV in rpc.proto; etcd
// 3.4's gateway answers it with Hash (seen: no hash_revision), so Hash
// answers it.
constexpr std::pair<const char*, const char*> kRoutes[] = {
    {"kv/range", "etcdserverpb.KV.Range"},
    {"kv/put", "etcdserverpb.KV.Put"},
    {"kv/deleterange", "etcdserverpb.KV.DeleteRange"},
    {"kv/txn", "etcdserverpb.KV.Txn"},
    {"kv/compaction", "etcdserverpb.KV.Compact"},
    {"watch", "etcdserverpb.Watch.Watch"},
    {"lease/grant", "etcdserverpb.Lease.LeaseGrant"},
    {"lease/revoke", "etcdserverpb.Lease.LeaseRevoke"},
    {"kv/lease/revoke", "etcdserverpb.Lease.LeaseRevoke"},
    {"lease/keepalive", "etcdserverpb.Lease.LeaseKeepAlive"},
    {"lease/timetolive", "etcdserverpb.Lease.LeaseTimeToLive"},
    {"kv/lease/timetolive", "etcdserverpb.Lease.LeaseTimeToLive"},
    {"lease/leases", "etcdserverpb.Lease.LeaseLeases"},
    {"kv/lease/leases", "etcdserverpb.Lease.LeaseLeases"},
    {"cluster/member/add", "etcdserverpb.Cluster.MemberAdd"},
    {"cluster/member/remove", "etcdserverpb.Cluster.MemberRemove"},
    {"cluster/member/update", "etcdserverpb.Cluster.MemberUpdate"},
    {"cluster/member/list", "etcdserverpb.Cluster.MemberList"},
    {"cluster/member/promote", "etcdserverpb.Cluster.MemberPromote"},
    {"maintenance/alarm", "etcdserverpb.Maintenance.Alarm"},
    {"maintenance/status", "etcdserverpb.Maintenance.Status"},
    {"maintenance/defragment", "etcdserverpb.Maintenance.Defragment"},
    {"maintenance/hash", "etcdserverpb.Maintenance.Hash"},
    {"maintenance/snapshot", "etcdserverpb.Maintenance.Snapshot"},
    {"maintenance/transfer-leadership", "etcdserverpb.Maintenance.MoveLeader"},
    {"auth/enable", "etcdserverpb.Auth.AuthEnable"},
    {"auth/disable", "etcdserverpb.Auth.AuthDisable"},
    {"auth/authenticate", "etcdserverpb.Auth.Authenticate"},
    {"auth/user/add", "etcdserverpb.Auth.UserAdd"},
    {"auth/user/get", "etcdserverpb.Auth.UserGet"},
    {"auth/user/list", "etcdserverpb.Auth.UserList"},
    {"auth/user/delete", "etcdserverpb.Auth.UserDelete"},
    {"auth/user/changepw", "etcdserverpb.Auth.UserChangePassword"},
    {"auth/user/grant", "etcdserverpb.Auth.UserGrantRole"},
    {"auth/user/revoke", "etcdserverpb.Auth.UserRevokeRole"},
    {"auth/role/add", "etcdserverpb.Auth.RoleAdd"},
    {"auth/role/get", "etcdserverpb.Auth.RoleGet"},
    {"auth/role/list", "etcdserverpb.Auth.RoleList"},
    {"auth/role/delete", "etcdserverpb.Auth.RoleDelete"},
    {"auth/role/grant", "etcdserverpb.Auth.RoleGrantPermission"},
    {"auth/role/revoke", "etcdserverpb.Auth.RoleRevokePermission"},
    {"lock/lock", "v3lockpb.Lock.Lock"},
    {"lock/unlock", "v3lockpb.Lock.Unlock"},
    {"election/campaign", "v3electionpb.Election.Campaign"},
    {"election/proclaim", "v3electionpb.Election.Proclaim"},
    {"election/leader", "v3electionpb.Election.Leader"},
    {"election/observe", "v3electionpb.Election.Observe"},
    {"election/resign", "v3electionpb.Election.Resign"},
};

const std::map<std::string, Gateway::Route, std::less<>>& Routes() {
  static const auto* routes = [] {
    // Make sure the generated files are linked in and registered.
    (void)etcdserverpb::RangeRequest::descriptor();
    (void)v3lockpb::LockRequest::descriptor();
    (void)v3electionpb::CampaignRequest::descriptor();
    auto* m = new std::map<std::string, Gateway::Route, std::less<>>;
    const gpb::DescriptorPool* pool = gpb::DescriptorPool::generated_pool();
    gpb::MessageFactory* factory = gpb::MessageFactory::generated_factory();
    for (const auto& [path, full] : kRoutes) {
      const gpb::MethodDescriptor* md = pool->FindMethodByName(full);
      if (md == nullptr) continue;
      Gateway::Route r;
      r.grpc_method =
          absl::StrCat("/", md->service()->full_name(), "/", md->name());
      r.request = factory->GetPrototype(md->input_type());
      r.response = factory->GetPrototype(md->output_type());
      r.streaming = md->client_streaming() || md->server_streaming();
      r.client_streaming = md->client_streaming();
      m->emplace(path, std::move(r));
    }
    return m;
  }();
  return *routes;
}

// The path after the version prefix, or nullopt when not the gateway's.
std::optional<std::string_view> GatewayPath(std::string_view path) {
  for (std::string_view prefix : {"/v3/", "/v3beta/", "/v3alpha/"}) {
    if (absl::StartsWith(AV(path), AV(prefix)))
      return path.substr(prefix.size());
  }
  return std::nullopt;
}

}  // namespace

Gateway::Gateway(std::shared_ptr<grpc::Channel> channel, GatewayOptions options)
    : channel_(std::move(channel)),
      stub_(std::make_unique<grpc::GenericStub>(channel_)),
      options_(std::move(options)) {
  (void)Routes();
}

Gateway::~Gateway() = default;

bool Gateway::Owns(std::string_view path) {
  return GatewayPath(path).has_value();
}

void Gateway::AddCors(const HttpRequest& req, HttpResponse* resp) const {
  std::string origin;
  // etcd's OriginAllowed: an empty list allows every origin, as "*" does.
  if (options_.cors.empty() ||
      std::find(options_.cors.begin(), options_.cors.end(), "*") !=
          options_.cors.end()) {
    origin = "*";
  } else {
    auto it = req.headers.find("origin");
    if (it == req.headers.end() ||
        std::find(options_.cors.begin(), options_.cors.end(), it->second) ==
            options_.cors.end()) {
      return;
    }
    origin = it->second;
  }
  auto& h = resp->headers;
  h.insert(
      h.begin(),
      {{"Access-Control-Allow-Headers", "accept, content-type, authorization"},
       {"Access-Control-Allow-Methods", "POST, GET, OPTIONS, PUT, DELETE"},
       {"Access-Control-Allow-Origin", origin}});
}

HttpResponse Gateway::Handle(const HttpRequest& req) {
  HttpResponse resp;
  std::optional<std::string_view> sub = GatewayPath(req.path);
  if (req.method == "OPTIONS") {
    // etcd's accessController answers every OPTIONS itself.
    resp.content_type.clear();
  } else if (!sub.has_value()) {
    resp = PlainError(404, "Not Found");
  } else {
    const auto& routes = Routes();
    auto it = routes.find(*sub);
    if (it == routes.end()) {
      resp = PlainError(404, "Not Found");
    } else if (req.method != "POST") {
      resp = PlainError(405, "Method Not Allowed");
    } else if (it->second.streaming) {
      resp = Stream(req, it->second);
    } else {
      resp = Unary(req, it->second);
    }
  }
  AddCors(req, &resp);
  // net/http writes the handler's header fields sorted by name (then Date
  // and the framing fields).
  if (!resp.content_type.empty()) {
    resp.headers.push_back({"Content-Type", resp.content_type});
    resp.content_type.clear();
  }
  std::stable_sort(
      resp.headers.begin(), resp.headers.end(),
      [](const auto& a, const auto& b) { return a.first < b.first; });
  return resp;
}

namespace {
std::string Token(const HttpRequest& req) {
  auto it = req.headers.find("authorization");
  return it == req.headers.end() ? std::string() : it->second;
}
}  // namespace

namespace {
// Each HTTP connection thread's connection to the native transport.
struct NativeConn {
  const Gateway* gateway = nullptr;
  std::unique_ptr<client::H2UnaryConn> conn;
};
thread_local NativeConn native_conn;
}  // namespace

bool Gateway::NativeUnary(const std::string& method, const std::string& request,
                          const std::string& token,
                          const std::function<bool()>& client_gone,
                          grpc::Status* status, std::string* response) {
  NativeConn& nc = native_conn;
  if (nc.gateway != this || nc.conn == nullptr || nc.conn->broken()) {
    nc = NativeConn{};
    const int fd = options_.native_connect();
    if (fd < 0) return false;
    auto c = client::H2UnaryConn::FromFd(fd, "gateway");
    if (!c.ok()) return false;
    nc = NativeConn{this, *std::move(c)};
  }
  std::vector<std::pair<std::string, std::string>> md;
  if (!token.empty()) md.emplace_back("authorization", token);
  bool done = false;
  absl::Status st;
  nc.conn->Start(
      method, request, absl::ZeroDuration(),
      [&](absl::Status s, std::string_view m) {
        done = true;
        st = std::move(s);
        if (st.ok()) response->assign(m);
      },
      md);
  while (!done) {
    client::H2UnaryConn::PollAll({nc.conn.get()},
                                 absl::Milliseconds(options_.poll_interval_ms));
    if (!done && client_gone && client_gone()) {
      // Closing the connection cancels the call on the server.
      nc = NativeConn{};
      st = absl::CancelledError("context canceled");
      break;
    }
  }
  *status = grpc::Status(static_cast<grpc::StatusCode>(st.code()),
                         std::string(st.message()));
  return true;
}

HttpResponse Gateway::Unary(const HttpRequest& req, const Route& route) {
  std::vector<std::string> requests;
  absl::Status s = DecodeRequests(req.body, *route.request, false, &requests);
  if (!s.ok()) return JsonError(3, std::string(s.message()));
  std::string response_bytes;
  bool got = false;
  grpc::Status st;
  if (requests.size() == 1 && options_.native_serves &&
      options_.native_connect && options_.native_serves(route.grpc_method) &&
      NativeUnary(route.grpc_method, requests[0], Token(req), req.client_gone,
                  &st, &response_bytes)) {
    got = st.ok();
  } else {
    st = RunCall(*stub_, route.grpc_method, requests, Token(req),
                 req.client_gone, options_.poll_interval_ms,
                 [&](std::string bytes) {
                   response_bytes = std::move(bytes);
                   got = true;
                   return true;
                 });
  }
  if (!st.ok()) {
    // The server's trailer metadata (content-type; grpc-status and
    // grpc-message are not forwarded) comes back as HTTP trailers, as
    // grpc-gateway's error handler sends them.
    HttpResponse err =
        JsonError(static_cast<int>(st.error_code()), GoStatusMessage(st));
    err.headers.push_back({"Trailer", "Grpc-Trailer-Content-Type"});
    err.trailers.push_back({"Grpc-Trailer-Content-Type", "application/grpc"});
    return err;
  }
  std::unique_ptr<gpb::Message> m(route.response->New());
  if (!got || !m->ParseFromString(response_bytes)) {
    return JsonError(13, "failed to parse the server's response");
  }
  HttpResponse resp;
  resp.content_type = "application/json";
  resp.headers.push_back({"Grpc-Metadata-Content-Type", "application/grpc"});
  resp.body = ProtoToJson(*m);
  return resp;
}

HttpResponse Gateway::Stream(const HttpRequest& req, const Route& route) {
  auto requests = std::make_shared<std::vector<std::string>>();
  absl::Status s =
      DecodeRequests(req.body, *route.request, true, requests.get());
  if (!s.ok()) {
    // grpc-gateway returns the decoder's error as is for client streams (no
    // gRPC status: Unknown, 500) and as InvalidArgument for the others.
    return JsonError(route.client_streaming ? 2 : 3, std::string(s.message()));
  }
  HttpResponse resp;
  resp.content_type = "application/json";
  resp.headers.push_back({"Grpc-Metadata-Content-Type", "application/grpc"});
  std::string token = Token(req);
  std::function<bool()> client_gone = req.client_gone;
  const Route* r = &route;
  resp.stream = [this, requests, token, client_gone, r](HttpBodyWriter& w) {
    bool client_lost = false;
    grpc::Status st =
        RunCall(*stub_, r->grpc_method, *requests, token, client_gone,
                options_.poll_interval_ms, [&](std::string bytes) {
                  std::unique_ptr<gpb::Message> m(r->response->New());
                  if (!m->ParseFromString(bytes)) return false;
                  std::string line =
                      absl::StrCat("{\"result\":", ProtoToJson(*m), "}\n");
                  if (!w.Write(line)) {
                    client_lost = true;
                    return false;
                  }
                  return true;
                });
    if (st.ok() || client_lost) return;
    if (client_gone && client_gone()) return;
    if (!w.started()) {
      w.SetStatus(HttpStatusFromGrpcCode(static_cast<int>(st.error_code())));
    }
    w.Write(StreamErrorChunk(st));
  };
  return resp;
}

}  // namespace detcd::shim
