#include "harness/trace.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <type_traits>

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

// ---- the determinism trace ----

namespace {

void PutWord(std::string* out, uint64_t v) {
  out->append(reinterpret_cast<const char*>(&v), sizeof(v));
}
void PutBytes(std::string* out, std::string_view b) {
  PutWord(out, b.size());
  out->append(b);
}
void PutKv(std::string* out, const mvcc::KeyValue& kv) {
  PutBytes(out, kv.key);
  PutBytes(out, kv.value);
  PutWord(out, static_cast<uint64_t>(kv.create_revision));
  PutWord(out, static_cast<uint64_t>(kv.mod_revision));
  PutWord(out, static_cast<uint64_t>(kv.version));
  PutWord(out, static_cast<uint64_t>(kv.lease));
}

// Bytes as a readable string: printable ASCII as is, the rest as \xNN.
std::string Escape(std::string_view b) {
  std::string out;
  for (unsigned char c : b) {
    if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"') {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppendFormat(&out, "\\x%02x", c);
    }
  }
  return out;
}

bool SameRecord(const sim::TraceRecord& a, const sim::TraceRecord& b) {
  return a.time == b.time && a.event == b.event && a.node == b.node &&
         a.aux == b.aux && a.hash == b.hash && a.size == b.size &&
         a.kind == b.kind;
}

std::string_view BytesOf(const sim::TraceLog& log, const sim::TraceRecord& r) {
  if (r.bytes_at == sim::TraceRecord::kNoBytes ||
      r.bytes_at + r.size > log.bytes.size()) {
    return {};
  }
  return std::string_view(log.bytes).substr(r.bytes_at, r.size);
}

std::string Describe(const sim::TraceLog& log, size_t i) {
  if (i >= log.records.size()) return "(the run had ended: no more records)";
  std::string d = DescribeRecord(log.records[i], i);
  const sim::TraceRecord& r = log.records[i];
  if (r.kind == sim::TraceKind::kDiskSync) {
    std::string_view path = BytesOf(log, r);
    if (!path.empty()) absl::StrAppend(&d, " (", Escape(path), ")");
  }
  return d;
}

}  // namespace

uint64_t TraceHashResponse(const absl::Status& s, const Response& r) {
  std::string b;
  PutWord(&b, static_cast<uint64_t>(s.code()));
  PutBytes(&b, std::string_view(s.message().data(), s.message().size()));
  PutWord(&b, r.succeeded ? 1 : 0);
  PutWord(&b, static_cast<uint64_t>(r.revision));
  for (const OpResult& o : r.results) {
    PutWord(&b, o.kvs.size());
    for (const mvcc::KeyValue& kv : o.kvs) PutKv(&b, kv);
    PutWord(&b, static_cast<uint64_t>(o.count));
    PutWord(&b, static_cast<uint64_t>(o.deleted));
    PutWord(&b, o.has_prev ? 1 : 0);
    if (o.has_prev) PutKv(&b, o.prev);
    PutWord(&b, o.prev_kvs.size());
    for (const mvcc::KeyValue& kv : o.prev_kvs) PutKv(&b, kv);
  }
  return sim::TraceHashBytes(b);
}

std::string DescribeRecord(const sim::TraceRecord& r, size_t index) {
  std::string out = absl::StrFormat("#%d t=%d.%09ds event %d: ", index,
                                    r.time / sim::kSecond,
                                    r.time % sim::kSecond, r.event);
  switch (r.kind) {
    case sim::TraceKind::kEvent:
      absl::StrAppend(&out, "an event runs (scheduled as #", r.aux, ")");
      break;
    case sim::TraceKind::kDeliver:
      absl::StrAppendFormat(&out,
                            "message to node %d from node %d, %d bytes, "
                            "hash %016x",
                            r.node, r.aux, r.size, r.hash);
      break;
    case sim::TraceKind::kResponse:
      absl::StrAppendFormat(&out, "client %d gets an answer (%s), hash %016x",
                            r.node,
                            r.aux == 0   ? "ok"
                            : r.aux == 1 ? "failed"
                                         : "unknown",
                            r.hash);
      break;
    case sim::TraceKind::kDiskWrite:
      absl::StrAppendFormat(&out,
                            "node %d writes %d bytes (file %016x), hash %016x",
                            r.node, r.size, r.aux, r.hash);
      break;
    case sim::TraceKind::kDiskSync:
      absl::StrAppendFormat(&out, "node %d fsyncs (file size %d)", r.node,
                            r.aux);
      break;
    case sim::TraceKind::kValue:
      absl::StrAppendFormat(&out, "value %016x", r.hash);
      break;
  }
  return out;
}

std::string FirstDivergence(const sim::TraceLog& a, std::string_view a_name,
                            const sim::TraceLog& b, std::string_view b_name) {
  const size_t n = std::min(a.records.size(), b.records.size());
  size_t i = 0;
  while (i < n && SameRecord(a.records[i], b.records[i])) ++i;
  if (i == n && a.records.size() == b.records.size()) {
    if (a.final_hash == b.final_hash) return "";
    return absl::StrFormat(
        "trace hash %016x (%s) vs %016x (%s) with the same %d records",
        a.final_hash, a_name, b.final_hash, b_name, n);
  }
  const int width = static_cast<int>(std::max(a_name.size(), b_name.size()));
  // The first line on its own says what differs (sweeps print only it).
  std::string out = absl::StrFormat(
      "first difference at record #%d: %s: %s | %s: %s\n"
      "    trace hash %016x (%s) vs %016x (%s)\n",
      i, a_name, Describe(a, i), b_name, Describe(b, i), a.final_hash,
      a_name, b.final_hash, b_name);
  const size_t from = i >= 3 ? i - 3 : 0;
  if (from < i) out.append("    the same on both before it:\n");
  for (size_t k = from; k < i; ++k) {
    absl::StrAppend(&out, "      ", Describe(a, k), "\n");
  }
  absl::StrAppendFormat(&out, "    %-*s %s\n", width + 1,
                        std::string(a_name) + ":", Describe(a, i));
  absl::StrAppendFormat(&out, "    %-*s %s\n", width + 1,
                        std::string(b_name) + ":", Describe(b, i));
  // Where the bytes differ, when both sides kept them.
  if (i < n && a.records[i].kind == b.records[i].kind) {
    std::string_view x = BytesOf(a, a.records[i]);
    std::string_view y = BytesOf(b, b.records[i]);
    if (!x.empty() && !y.empty() && x != y) {
      size_t at = 0;
      while (at < x.size() && at < y.size() && x[at] == y[at]) ++at;
      const size_t lo = at >= 16 ? at - 16 : 0;
      absl::StrAppendFormat(&out, "    the bytes differ from offset %d:\n", at);
      absl::StrAppendFormat(&out, "      %-*s \"%s\"\n", width + 1,
                            std::string(a_name) + ":",
                            Escape(x.substr(lo, 48)));
      absl::StrAppendFormat(&out, "      %-*s \"%s\"\n", width + 1,
                            std::string(b_name) + ":",
                            Escape(y.substr(lo, 48)));
    }
  }
  // What follows on each side (often shows the cause, e.g. a send order).
  for (const auto& [log, name] :
       {std::pair<const sim::TraceLog*, std::string_view>{&a, a_name},
        {&b, b_name}}) {
    if (i + 1 >= log->records.size()) continue;
    out.append("    then on ").append(name).append(":\n");
    for (size_t k = i + 1; k < std::min(i + 4, log->records.size()); ++k) {
      absl::StrAppend(&out, "      ", Describe(*log, k), "\n");
    }
  }
  out.pop_back();  // the last newline
  return out;
}

static_assert(std::is_trivially_copyable_v<sim::TraceRecord>);

std::string SerializeTraceLog(const sim::TraceLog& log) {
  std::string out = "DTL1";
  PutWord(&out, log.final_hash);
  PutWord(&out, log.records.size());
  out.append(reinterpret_cast<const char*>(log.records.data()),
             log.records.size() * sizeof(sim::TraceRecord));
  PutBytes(&out, log.bytes);
  return out;
}

bool ParseTraceLog(std::string_view data, sim::TraceLog* log) {
  auto word = [&](uint64_t* v) {
    if (data.size() < sizeof(*v)) return false;
    std::memcpy(v, data.data(), sizeof(*v));
    data.remove_prefix(sizeof(*v));
    return true;
  };
  if (data.substr(0, 4) != "DTL1") return false;
  data.remove_prefix(4);
  uint64_t n = 0, nbytes = 0;
  if (!word(&log->final_hash) || !word(&n) ||
      data.size() / sizeof(sim::TraceRecord) < n) {
    return false;
  }
  log->records.resize(n);
  std::memcpy(log->records.data(), data.data(), n * sizeof(sim::TraceRecord));
  data.remove_prefix(n * sizeof(sim::TraceRecord));
  if (!word(&nbytes) || data.size() != nbytes) return false;
  log->bytes.assign(data);
  return true;
}

}  // namespace detcd::harness
