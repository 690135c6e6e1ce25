#include "shim/trace_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace detcd::shim {
namespace {

int64_t MonotonicNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The simulator's escaping (harness/trace.cc): bytes outside printable
// ASCII as \u00XX, so any key or error text stays valid JSON.
void AppendJsonString(std::string* out, std::string_view s) {
  out->push_back('"');
  for (unsigned char c : s) {
    if (c == '"') {
      out->append("\\\"");
    } else if (c == '\\') {
      out->append("\\\\");
    } else if (c == '\n') {
      out->append("\\n");
    } else if (c < 0x20 || c >= 0x7f) {
      absl::StrAppendFormat(out, "\\u%04x", c);
    } else {
      out->push_back(static_cast<char>(c));
    }
  }
  out->push_back('"');
}

std::string Event(uint64_t track, double ts_us, double dur_us,
                  std::string_view name, std::string_view detail) {
  std::string out =
      absl::StrFormat("{\"pid\":1,\"tid\":%d,\"ts\":%.3f,", track, ts_us);
  if (dur_us >= 0) {
    absl::StrAppendFormat(&out, "\"ph\":\"X\",\"dur\":%.3f,", dur_us);
  } else {
    out.append("\"ph\":\"i\",\"s\":\"t\",");
  }
  out.append("\"name\":");
  AppendJsonString(&out, name);
  if (!detail.empty()) {
    out.append(",\"args\":{\"detail\":");
    AppendJsonString(&out, detail);
    out.append("}");
  }
  out.append("},\n");
  return out;
}

std::string TrackName(uint64_t tid, std::string_view name) {
  std::string out = absl::StrCat(
      "{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":1,\"tid\":", tid,
      ",\"args\":{\"name\":");
  AppendJsonString(&out, name);
  out.append("}},\n");
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TraceFile>> TraceFile::Open(
    const std::string& path) {
  const int fd =
      ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("open %s: %s", path, std::strerror(errno)));
  }
  std::unique_ptr<TraceFile> t(new TraceFile(fd, MonotonicNs()));
  std::string head = "[\n";
  head += TrackName(kRaft, "raft");
  head += TrackName(kApply, "apply");
  head += TrackName(kWal, "wal");
  for (int i = 0; i < kLanes; ++i) {
    head += TrackName(kRequests + i, absl::StrCat("requests ", i));
  }
  t->Write(std::move(head));
  return t;
}

TraceFile::~TraceFile() { Close(); }

double TraceFile::NowUs() const {
  return static_cast<double>(MonotonicNs() - start_ns_) / 1000.0;
}

void TraceFile::Instant(uint64_t track, std::string_view name,
                        std::string_view detail) {
  Write(Event(track, NowUs(), -1, name, detail));
}

void TraceFile::Span(uint64_t track, double start_us, std::string_view name,
                     std::string_view detail) {
  const double now = NowUs();
  Write(Event(track, start_us, now - start_us, name, detail));
}

int TraceFile::AcquireLane() {
  absl::MutexLock l(&mu_);
  for (int i = 0; i < kLanes; ++i) {
    if ((lanes_in_use_ & (1u << i)) == 0) {
      lanes_in_use_ |= 1u << i;
      return i;
    }
  }
  return kLanes - 1;  // all busy: share the last lane
}

void TraceFile::ReleaseLane(int lane) {
  absl::MutexLock l(&mu_);
  if (lane >= 0 && lane < kLanes) lanes_in_use_ &= ~(1u << lane);
}

void TraceFile::Write(std::string line) {
  absl::MutexLock l(&mu_);
  if (fd_ < 0) return;
  std::string_view rest = line;
  while (!rest.empty()) {
    const ssize_t n = ::write(fd_, rest.data(), rest.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // a full disk loses trace lines, nothing else
    rest.remove_prefix(static_cast<size_t>(n));
  }
}

void TraceFile::Close() {
  {
    absl::MutexLock l(&mu_);
    if (fd_ < 0) return;
  }
  // The last event ends with ",\n": a final empty object keeps the array
  // valid JSON for strict readers.
  Write("{}\n]\n");
  absl::MutexLock l(&mu_);
  ::close(fd_);
  fd_ = -1;
}

}  // namespace detcd::shim
