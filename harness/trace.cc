#include "harness/trace.h"

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace detcd::harness {
namespace {

void AppendJsonString(std::string* out, std::string_view s) {
  out->push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"': out->append("\\\""); break;
      case '\\': out->append("\\\\"); break;
      case '\n': out->append("\\n"); break;
      default:
        if (c < 0x20 || c >= 0x7f) {
          absl::StrAppendFormat(out, "\\u%04x", c);
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
  }
  out->push_back('"');
}

}  // namespace

void Trace::Event(int64_t t_ns, uint64_t node, std::string_view name,
                  std::string_view detail) {
  events_.push_back(
      Ev{t_ns, -1, node, std::string(name), std::string(detail)});
}

void Trace::Span(int64_t start_ns, int64_t end_ns, uint64_t track,
                 std::string_view name, std::string_view detail) {
  events_.push_back(Ev{start_ns, end_ns - start_ns, track, std::string(name),
                       std::string(detail)});
}

std::string Trace::ToJson() const {
  std::string out = "{\"traceEvents\":[\n";
  bool first = true;
  auto sep = [&] {
    if (!first) out.append(",\n");
    first = false;
  };
  // Name the tracks.
  std::vector<uint64_t> tracks;
  for (const Ev& e : events_) tracks.push_back(e.track);
  std::sort(tracks.begin(), tracks.end());
  tracks.erase(std::unique(tracks.begin(), tracks.end()), tracks.end());
  for (uint64_t t : tracks) {
    sep();
    std::string name = t == 0 ? "cluster" : absl::StrCat("node ", t);
    if (t >= 1000) name = absl::StrCat("client ", t - 1000);
    absl::StrAppend(&out,
                    "{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":1,\"tid\":",
                    t, ",\"args\":{\"name\":");
    AppendJsonString(&out, name);
    out.append("}}");
  }
  for (const Ev& e : events_) {
    sep();
    // Trace-event timestamps are microseconds.
    absl::StrAppendFormat(&out, "{\"pid\":1,\"tid\":%d,\"ts\":%.3f,", e.track,
                          e.t_ns / 1000.0);
    if (e.dur_ns >= 0) {
      absl::StrAppendFormat(&out, "\"ph\":\"X\",\"dur\":%.3f,",
                            e.dur_ns / 1000.0);
    } else {
      out.append("\"ph\":\"i\",\"s\":\"t\",");
    }
    out.append("\"name\":");
    AppendJsonString(&out, e.name);
    if (!e.detail.empty()) {
      out.append(",\"args\":{\"detail\":");
      AppendJsonString(&out, e.detail);
      out.append("}");
    }
    out.append("}");
  }
  out.append("\n]}\n");
  return out;
}

absl::Status Trace::WriteFile(const std::string& path) const {
  // Writing the trace file is the CLI's output, not part of a run.
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) return absl::UnavailableError("cannot open " + path);
  std::string json = ToJson();
  size_t n = std::fwrite(json.data(), 1, json.size(), f);
  bool ok = n == json.size() && std::fclose(f) == 0;
  return ok ? absl::OkStatus() : absl::DataLossError("short write " + path);
}

}  // namespace detcd::harness
