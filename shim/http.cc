#include "shim/http.h"

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace detcd::shim {
namespace {

// RFC 9110 token characters (method names, header field names).
bool IsTchar(char c) {
  if (absl::ascii_isalnum(static_cast<unsigned char>(c))) return true;
  switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*':
    case '+': case '-': case '.': case '^': case '_': case '`': case '|':
    case '~':
      return true;
    default:
      return false;
  }
}

bool IsToken(absl::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), IsTchar);
}

// Field values may hold visible characters, spaces, tabs and obs-text; no
// other control characters (a bare CR or NUL is a smuggling vector).
bool IsFieldValue(absl::string_view s) {
  for (char c : s) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 && c != '\t') return false;
    if (u == 0x7f) return false;
  }
  return true;
}

// Takes the next line starting at *pos (without its LF and an optional CR
// before it). False when no complete line is buffered yet.
bool NextLine(absl::string_view buf, size_t* pos, absl::string_view* line) {
  size_t nl = buf.find('\n', *pos);
  if (nl == absl::string_view::npos) return false;
  size_t end = nl;
  if (end > *pos && buf[end - 1] == '\r') --end;
  *line = buf.substr(*pos, end - *pos);
  *pos = nl + 1;
  return true;
}

// True when the comma-separated list `value` holds `token` (ASCII
// case-insensitive), as in "Connection: keep-alive, Upgrade".
bool HasToken(absl::string_view value, absl::string_view token) {
  for (absl::string_view part : absl::StrSplit(value, ',')) {
    if (absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(part), token)) {
      return true;
    }
  }
  return false;
}

HttpParse Bad(int status, int* error_status) {
  *error_status = status;
  return HttpParse::kBad;
}

// Decodes a chunked body starting at buf[pos]. kComplete sets *end to the
// first byte after the chunked message (trailers included).
HttpParse ParseChunked(absl::string_view buf, size_t pos, size_t max_body,
                       std::string* body, size_t* end, int* error_status) {
  body->clear();
  while (true) {
    absl::string_view line;
    size_t line_start = pos;
    if (!NextLine(buf, &pos, &line)) {
      // A size line is a few hex digits; an endless one is not a client.
      if (buf.size() - line_start > 1024) return Bad(400, error_status);
      return HttpParse::kIncomplete;
    }
    absl::string_view size_text = line.substr(0, line.find(';'));
    size_text = absl::StripTrailingAsciiWhitespace(size_text);
    if (size_text.empty() || size_text.size() > 15) {
      return Bad(400, error_status);
    }
    uint64_t size = 0;
    for (char c : size_text) {
      if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) {
        return Bad(400, error_status);
      }
      size = size * 16 + (absl::ascii_isdigit(static_cast<unsigned char>(c))
                              ? c - '0'
                              : absl::ascii_tolower(c) - 'a' + 10);
    }
    if (size == 0) break;
    if (size > max_body || body->size() + size > max_body) {
      return Bad(413, error_status);
    }
    if (buf.size() - pos < size) return HttpParse::kIncomplete;
    body->append(buf.data() + pos, size);
    pos += size;
    // The chunk's data ends with CRLF (or a bare LF).
    if (buf.size() - pos < 1) return HttpParse::kIncomplete;
    if (buf[pos] == '\r') {
      if (buf.size() - pos < 2) return HttpParse::kIncomplete;
      if (buf[pos + 1] != '\n') return Bad(400, error_status);
      pos += 2;
    } else if (buf[pos] == '\n') {
      pos += 1;
    } else {
      return Bad(400, error_status);
    }
  }
  // Trailer fields (ignored) up to an empty line.
  while (true) {
    absl::string_view line;
    size_t line_start = pos;
    if (!NextLine(buf, &pos, &line)) {
      if (buf.size() - line_start > 64 * 1024) return Bad(431, error_status);
      return HttpParse::kIncomplete;
    }
    if (line.empty()) break;
  }
  *end = pos;
  return HttpParse::kComplete;
}

std::string HttpDate() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char out[64];
  size_t n = std::strftime(out, sizeof out, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return std::string(out, n);
}


// After an error answer, read (and drop) what the client still sends for a
// short while, so that closing with unread bytes does not reset the
// connection before the client has read the answer.
void Linger(Stream& stream) {
  int64_t deadline = NowMs() + 500;
  char sink[4096];
  size_t total = 0;
  while (total < (256u << 10) && WaitReadable(stream.fd(), deadline)) {
    long n = stream.Read(sink, sizeof sink);
    if (n <= 0) return;
    total += static_cast<size_t>(n);
  }
}

absl::string_view Reason(int status) {
  std::string_view r = HttpReason(status);
  return absl::string_view(r.data(), r.size());
}

// True once the client has shut down its sending side or the connection
// broke. POLLRDHUP alone does not report pending request bytes (a pipelined
// request), only the end of the stream.
bool PeerClosed(int fd) {
  pollfd p{fd, POLLRDHUP, 0};
  if (::poll(&p, 1, 0) <= 0) return false;
  return (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

// The head of a streamed response: no Content-Length; chunked for
// HTTP/1.1, for HTTP/1.0 the end of the body is the end of the connection.
std::string StreamHead(const HttpResponse& r, int status, bool chunked,
                       bool keep_alive) {
  std::string out =
      absl::StrCat("HTTP/1.1 ", status, " ", Reason(status), "\r\n");
  if (!r.content_type.empty()) {
    absl::StrAppend(&out, "Content-Type: ", r.content_type, "\r\n");
  }
  for (const auto& [name, value] : r.headers) {
    absl::StrAppend(&out, name, ": ", value, "\r\n");
  }
  absl::StrAppend(&out, "Date: ", HttpDate(), "\r\n");
  if (chunked) absl::StrAppend(&out, "Transfer-Encoding: chunked\r\n");
  absl::StrAppend(&out, keep_alive ? "" : "Connection: close\r\n", "\r\n");
  return out;
}

class ChunkedWriter : public HttpBodyWriter {
 public:
  ChunkedWriter(Stream& stream, const HttpResponse& r, bool chunked,
                bool keep_alive, bool head_only)
      : stream_(stream),
        response_(r),
        status_(r.status),
        chunked_(chunked),
        keep_alive_(keep_alive),
        head_only_(head_only) {}

  void SetStatus(int status) override {
    if (!started_) status_ = status;
  }
  bool started() const override { return started_; }

  bool Write(std::string_view data) override {
    if (failed_) return false;
    std::string wire;
    if (!started_) {
      wire = StreamHead(response_, status_, chunked_, keep_alive_);
      started_ = true;
    }
    if (!data.empty() && !head_only_) {
      if (chunked_) {
        absl::StrAppend(&wire, absl::Hex(data.size()), "\r\n");
        wire.append(data.data(), data.size());
        wire += "\r\n";
      } else {
        wire.append(data.data(), data.size());
      }
    }
    if (!wire.empty() && !stream_.WriteAll(wire.data(), wire.size())) {
      failed_ = true;
    }
    return !failed_;
  }

  // Sends the head if nothing was written, then the last chunk. False when
  // the connection cannot carry another request.
  bool Finish() {
    if (!started_ && !Write("")) return false;
    if (failed_) return false;
    if (chunked_ && !head_only_) {
      static constexpr absl::string_view kLast = "0\r\n\r\n";
      if (!stream_.WriteAll(kLast.data(), kLast.size())) return false;
    }
    return chunked_ || head_only_;
  }

 private:
  Stream& stream_;
  const HttpResponse& response_;
  int status_;
  const bool chunked_;
  const bool keep_alive_;
  const bool head_only_;
  bool started_ = false;
  bool failed_ = false;
};

}  // namespace

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Waits until the stream's socket is readable or `deadline_ms` passes.
// False on timeout or a poll error.
bool WaitReadable(int fd, int64_t deadline_ms) {
  while (true) {
    int64_t left = deadline_ms - NowMs();
    if (left <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 1 << 30)));
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) return false;
  }
}

std::string_view HttpReason(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Request Entity Too Large";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

HttpParse ParseHttpRequest(std::string_view std_buf, const HttpLimits& limits,
                           HttpRequest* req, size_t* consumed,
                           bool* keep_alive, bool* expect_continue,
                           int* error_status) {
  const absl::string_view buf(std_buf.data(), std_buf.size());
  *expect_continue = false;
  *keep_alive = false;
  size_t pos = 0;
  // Robustness (RFC 9112 section 2.2): empty lines before a request line
  // are skipped, e.g. a stray CRLF after a previous body.
  while (pos < buf.size() && (buf[pos] == '\n' ||
                              (buf[pos] == '\r' && pos + 1 < buf.size() &&
                               buf[pos + 1] == '\n'))) {
    pos += buf[pos] == '\r' ? 2 : 1;
  }
  size_t start = pos;

  absl::string_view request_line;
  if (!NextLine(buf, &pos, &request_line)) {
    // Reject junk early instead of waiting for a line end that a random
    // byte stream may never send: the method must be a token.
    absl::string_view partial = buf.substr(start);
    size_t sp = partial.find(' ');
    absl::string_view method = partial.substr(0, sp);
    if (!std::all_of(method.begin(), method.end(), IsTchar) ||
        (sp == 0 && !partial.empty())) {
      return Bad(400, error_status);
    }
    if (partial.size() > limits.max_header_bytes) return Bad(431, error_status);
    return HttpParse::kIncomplete;
  }
  std::vector<absl::string_view> parts = absl::StrSplit(request_line, ' ');
  if (parts.size() != 3 || !IsToken(parts[0]) || parts[1].empty() ||
      !IsFieldValue(parts[1]) || parts[1].find('\t') != absl::string_view::npos) {
    return Bad(400, error_status);
  }
  absl::string_view version = parts[2];
  bool http11;
  if (version == "HTTP/1.1") {
    http11 = true;
  } else if (version == "HTTP/1.0") {
    http11 = false;
  } else if (version.size() == 8 && absl::StartsWith(version, "HTTP/") &&
             absl::ascii_isdigit(static_cast<unsigned char>(version[5])) &&
             version[6] == '.' &&
             absl::ascii_isdigit(static_cast<unsigned char>(version[7]))) {
    return Bad(505, error_status);
  } else {
    return Bad(400, error_status);
  }

  // Header fields up to the empty line.
  std::map<std::string, std::string> headers;
  while (true) {
    absl::string_view line;
    if (!NextLine(buf, &pos, &line)) {
      if (buf.size() - start > limits.max_header_bytes) {
        return Bad(431, error_status);
      }
      return HttpParse::kIncomplete;
    }
    if (pos - start > limits.max_header_bytes) return Bad(431, error_status);
    if (line.empty()) break;
    // Obsolete line folding and whitespace before the colon are rejected
    // (RFC 9112 sections 5.1 and 5.2).
    if (line[0] == ' ' || line[0] == '\t') return Bad(400, error_status);
    size_t colon = line.find(':');
    if (colon == absl::string_view::npos) return Bad(400, error_status);
    absl::string_view name = line.substr(0, colon);
    if (!IsToken(name)) return Bad(400, error_status);
    absl::string_view value =
        absl::StripAsciiWhitespace(line.substr(colon + 1));
    if (!IsFieldValue(value)) return Bad(400, error_status);
    std::string key = absl::AsciiStrToLower(name);
    auto [it, inserted] = headers.try_emplace(key, value);
    if (!inserted) absl::StrAppend(&it->second, ", ", value);
  }
  size_t header_end = pos;

  // Target: origin form, absolute form (proxies' style; the authority is
  // dropped), or "*" for OPTIONS.
  absl::string_view target = parts[1];
  if (target[0] != '/') {
    size_t scheme_end = target.find("://");
    if (scheme_end != absl::string_view::npos &&
        (absl::EqualsIgnoreCase(target.substr(0, scheme_end), "http") ||
         absl::EqualsIgnoreCase(target.substr(0, scheme_end), "https"))) {
      size_t slash = target.find('/', scheme_end + 3);
      target = slash == absl::string_view::npos ? absl::string_view("/")
                                                : target.substr(slash);
    } else if (!(target == "*" && parts[0] == "OPTIONS")) {
      return Bad(400, error_status);
    }
  }

  // Body framing (RFC 9112 section 6.3).
  auto te = headers.find("transfer-encoding");
  auto cl = headers.find("content-length");
  bool chunked = false;
  uint64_t content_length = 0;
  if (te != headers.end()) {
    if (cl != headers.end()) return Bad(400, error_status);
    if (!absl::EqualsIgnoreCase(te->second, "chunked")) {
      return Bad(501, error_status);
    }
    chunked = true;
  } else if (cl != headers.end()) {
    // Repeated identical values ("5, 5") are allowed; differing ones are
    // not.
    absl::string_view first;
    for (absl::string_view v : absl::StrSplit(cl->second, ',')) {
      v = absl::StripAsciiWhitespace(v);
      if (v.empty() || v.size() > 18 ||
          !std::all_of(v.begin(), v.end(), [](char c) {
            return absl::ascii_isdigit(static_cast<unsigned char>(c));
          })) {
        return Bad(400, error_status);
      }
      if (first.empty()) {
        first = v;
      } else if (v != first) {
        return Bad(400, error_status);
      }
    }
    if (!absl::SimpleAtoi(first, &content_length)) {
      return Bad(400, error_status);
    }
  }
  size_t header_bytes = header_end - start;
  size_t max_body = limits.max_request_bytes > header_bytes
                        ? limits.max_request_bytes - header_bytes
                        : 0;
  if (content_length > max_body) return Bad(413, error_status);

  auto conn = headers.find("connection");
  if (http11) {
    *keep_alive = conn == headers.end() || !HasToken(conn->second, "close");
  } else {
    *keep_alive = conn != headers.end() && HasToken(conn->second, "keep-alive");
  }
  auto expect = headers.find("expect");
  if (expect != headers.end() && http11 &&
      absl::EqualsIgnoreCase(expect->second, "100-continue") &&
      (chunked || content_length > 0)) {
    *expect_continue = true;
  }

  size_t end;
  std::string body;
  if (chunked) {
    HttpParse r = ParseChunked(buf, header_end, max_body, &body, &end,
                               error_status);
    if (r != HttpParse::kComplete) return r;
  } else {
    if (buf.size() - header_end < content_length) {
      return HttpParse::kIncomplete;
    }
    body.assign(buf.data() + header_end, content_length);
    end = header_end + content_length;
  }

  req->method = std::string(parts[0]);
  req->http11 = http11;
  size_t q = target.find('?');
  req->path = std::string(target.substr(0, q));
  req->query = q == absl::string_view::npos ? std::string()
                                            : std::string(target.substr(q + 1));
  req->headers = std::move(headers);
  req->body = std::move(body);
  *consumed = end;
  return HttpParse::kComplete;
}

std::string SerializeHttpResponse(const HttpResponse& r, bool head,
                                  bool keep_alive) {
  std::string out = absl::StrCat("HTTP/1.1 ", r.status, " ",
                                 Reason(r.status), "\r\n");
  // 1xx, 204 and 304 answers carry no body and no length (RFC 9110 8.6).
  bool bodyless = r.status < 200 || r.status == 204 || r.status == 304;
  if (!r.content_type.empty() && !bodyless) {
    absl::StrAppend(&out, "Content-Type: ", r.content_type, "\r\n");
  }
  for (const auto& [name, value] : r.headers) {
    absl::StrAppend(&out, name, ": ", value, "\r\n");
  }
  absl::StrAppend(&out, "Date: ", HttpDate(), "\r\n");
  const bool chunked = !bodyless && !r.trailers.empty();
  if (chunked) {
    absl::StrAppend(&out, "Transfer-Encoding: chunked\r\n");
  } else if (!bodyless) {
    absl::StrAppend(&out, "Content-Length: ", r.body.size(), "\r\n");
  }
  absl::StrAppend(&out, keep_alive ? "" : "Connection: close\r\n", "\r\n");
  if (head || bodyless) return out;
  if (!chunked) return out + r.body;
  if (!r.body.empty()) {
    absl::StrAppend(&out, absl::Hex(r.body.size()), "\r\n", r.body, "\r\n");
  }
  out += "0\r\n";
  for (const auto& [name, value] : r.trailers) {
    absl::StrAppend(&out, name, ": ", value, "\r\n");
  }
  return out + "\r\n";
}

int ServeHttpConnection(Stream& stream, std::string initial,
                        const HttpHandler& handler, const HttpLimits& limits) {
  std::string buf = std::move(initial);
  const std::string peer_cn = stream.peer_common_name();
  auto chunk = std::make_unique<char[]>(64 * 1024);
  int served = 0;
  bool continue_sent = false;
  // A request's clock starts with its first byte; before that the
  // connection is idle.
  int64_t request_start = buf.empty() ? 0 : NowMs();
  int64_t idle_start = NowMs();
  while (true) {
    HttpRequest req;
    size_t consumed = 0;
    bool keep_alive = false, expect_continue = false;
    int error_status = 0;
    HttpParse r = ParseHttpRequest(buf, limits, &req, &consumed, &keep_alive,
                                   &expect_continue, &error_status);
    if (r == HttpParse::kComplete) {
      req.peer_common_name = peer_cn;
      const int fd = stream.fd();
      req.client_gone = [fd] { return PeerClosed(fd); };
      HttpResponse resp = handler(req);
      ++served;
      if (resp.stream) {
        // HTTP/1.0 has no chunks: the body ends with the connection.
        const bool chunked = req.http11;
        keep_alive = keep_alive && chunked;
        ChunkedWriter writer(stream, resp, chunked, keep_alive,
                             req.method == "HEAD");
        resp.stream(writer);
        if (!writer.Finish() || !keep_alive) return served;
      } else {
        // HTTP/1.0 has no chunks, so no trailers.
        if (!req.http11) resp.trailers.clear();
        std::string wire = SerializeHttpResponse(resp, req.method == "HEAD",
                                                 keep_alive);
        if (!stream.WriteAll(wire.data(), wire.size())) return served;
      }
      if (!keep_alive) return served;
      buf.erase(0, consumed);
      continue_sent = false;
      request_start = buf.empty() ? 0 : NowMs();
      idle_start = NowMs();
      continue;
    }
    if (r == HttpParse::kBad) {
      HttpResponse resp;
      resp.status = error_status;
      resp.body = absl::StrCat(error_status, " ", Reason(error_status));
      std::string wire = SerializeHttpResponse(resp, false, false);
      ++served;
      if (stream.WriteAll(wire.data(), wire.size())) Linger(stream);
      return served;
    }
    if (expect_continue && !continue_sent) {
      static constexpr absl::string_view kContinue =
          "HTTP/1.1 100 Continue\r\n\r\n";
      if (!stream.WriteAll(kContinue.data(), kContinue.size())) return served;
      continue_sent = true;
    }
    int64_t deadline = request_start != 0
                           ? request_start + limits.request_timeout_ms
                           : idle_start + limits.idle_timeout_ms;
    // poll() sees the socket, not bytes decrypted and kept inside a TLS
    // stream; reading 64 KiB at a time (more than a TLS record holds) leaves
    // none behind, so waiting on the socket is enough.
    if (!WaitReadable(stream.fd(), deadline)) return served;
    long n = stream.Read(chunk.get(), 64 * 1024);
    if (n <= 0) return served;
    if (buf.empty()) request_start = NowMs();
    buf.append(chunk.get(), static_cast<size_t>(n));
  }
}

}  // namespace detcd::shim
