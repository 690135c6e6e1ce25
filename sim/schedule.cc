#include "sim/schedule.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "engine/util/buggify.h"
#include "engine/util/check.h"

namespace detcd::sim {

namespace {

const char* KindName(Schedule::UnitKind k) {
  return k == Schedule::UnitKind::kEvent ? "event" : "op";
}

// Unit texts live in one tab-separated line.
std::string OneLine(std::string_view s) {
  std::string r(s);
  for (char& c : r) {
    if (c == '\t' || c == '\n' || c == '\r') c = ' ';
  }
  return r;
}

// Streams are written 64 indices a line, as deltas.
constexpr size_t kPerLine = 64;

}  // namespace

size_t Schedule::CountUnits(UnitKind k) const {
  return std::count_if(units.begin(), units.end(),
                       [k](const Unit& u) { return u.kind == k; });
}

std::string Schedule::Serialize() const {
  std::string s = absl::StrCat("detcd-schedule ", kVersion, "\n");
  absl::StrAppend(&s, "seed ", seed, "\n", "scenario ", scenario, "\n",
                  "nodes ", nodes, "\n", "ops ", ops, "\n", "clients ", clients,
                  "\n", "watchers ", watchers, "\n", "lease_clients ",
                  lease_clients, "\n", "fault_phase_ns ", fault_phase_ns, "\n");
  if (!buggify.empty()) absl::StrAppend(&s, "buggify ", buggify, "\n");
  if (!recorded_bug.empty()) {
    absl::StrAppend(&s, "recorded_bug ", recorded_bug, "\n");
  }
  if (!failure.empty()) absl::StrAppend(&s, "failure ", OneLine(failure), "\n");
  for (const Unit& u : units) {
    absl::StrAppend(&s, "unit\t", KindName(u.kind), "\t", u.id, "\t", u.time_ns,
                    "\t", OneLine(u.what), "\t", OneLine(u.result), "\n");
  }
  for (const auto& [name, st] : streams) {
    if (st.indices.empty()) continue;
    for (size_t i = 0; i < st.indices.size(); i += kPerLine) {
      absl::StrAppend(&s, "stream ", name, " ", st.base);
      // Each line starts absolute, then deltas (usually small).
      absl::StrAppend(&s, " ", st.indices[i]);
      for (size_t j = i + 1; j < std::min(st.indices.size(), i + kPerLine);
           ++j) {
        const int64_t d =
            static_cast<int64_t>(st.indices[j] - st.indices[j - 1]);
        absl::StrAppend(&s, " ", d >= 0 ? "+" : "", d);
      }
      s += "\n";
    }
  }
  return s;
}

absl::StatusOr<Schedule> Schedule::Parse(std::string_view std_text) {
  // Debian's Abseil has its own string_view.
  const absl::string_view text(std_text.data(), std_text.size());
  Schedule sch;
  int line_no = 0;
  bool have_header = false;
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("schedule line ", line_no, ": ", why));
  };
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    // A unit's last field may be empty: keep its tabs.
    if (absl::StartsWith(line, "unit\t")) {
      absl::ConsumeSuffix(&line, "\r");
    } else {
      line = absl::StripTrailingAsciiWhitespace(line);
    }
    if (line.empty() || line[0] == '#') continue;
    if (!have_header) {
      int v = 0;
      if (!absl::ConsumePrefix(&line, "detcd-schedule ") ||
          !absl::SimpleAtoi(line, &v)) {
        return bad("not a detcd schedule (no 'detcd-schedule 1' header)");
      }
      if (v != kVersion) {
        return bad(
            absl::StrCat("version ", v, " (this build reads ", kVersion, ")"));
      }
      have_header = true;
      continue;
    }
    if (absl::StartsWith(line, "unit\t")) {
      std::vector<absl::string_view> f = absl::StrSplit(line, '\t');
      if (f.size() != 6) return bad("a unit has 6 tab-separated fields");
      Unit u;
      if (f[1] == "event") {
        u.kind = UnitKind::kEvent;
      } else if (f[1] == "op") {
        u.kind = UnitKind::kOp;
      } else {
        return bad("unit kind is event or op");
      }
      u.id = std::string(f[2]);
      if (!absl::SimpleAtoi(f[3], &u.time_ns)) return bad("unit time");
      u.what = std::string(f[4]);
      u.result = std::string(f[5]);
      sch.units.push_back(std::move(u));
      continue;
    }
    const size_t sp = line.find(' ');
    if (sp == absl::string_view::npos) return bad("a key without a value");
    const absl::string_view key = line.substr(0, sp);
    const absl::string_view val = line.substr(sp + 1);
    auto num = [&](auto* out) { return absl::SimpleAtoi(val, out); };
    bool ok = true;
    if (key == "seed") {
      ok = num(&sch.seed);
    } else if (key == "scenario") {
      sch.scenario = std::string(val);
    } else if (key == "nodes") {
      ok = num(&sch.nodes);
    } else if (key == "ops") {
      ok = num(&sch.ops);
    } else if (key == "clients") {
      ok = num(&sch.clients);
    } else if (key == "watchers") {
      ok = num(&sch.watchers);
    } else if (key == "lease_clients") {
      ok = num(&sch.lease_clients);
    } else if (key == "fault_phase_ns") {
      ok = num(&sch.fault_phase_ns);
    } else if (key == "buggify") {
      if (val != "all" &&
          !::detcd::buggify::Find(std::string_view(val.data(), val.size()))) {
        return bad("buggify: \"all\" or a fault point's name");
      }
      sch.buggify = std::string(val);
    } else if (key == "recorded_bug") {
      sch.recorded_bug = std::string(val);
    } else if (key == "failure") {
      sch.failure = std::string(val);
    } else if (key == "stream") {
      std::vector<absl::string_view> f =
          absl::StrSplit(val, ' ', absl::SkipEmpty());
      if (f.size() < 3) return bad("stream NAME BASE INDEX [DELTA...]");
      Stream& st = sch.streams[std::string(f[0])];
      if (!st.base.empty() && st.base != f[1]) {
        return bad("a stream's lines name different bases");
      }
      st.base = std::string(f[1]);
      uint64_t prev = 0;
      for (size_t i = 2; i < f.size(); ++i) {
        if (i == 2) {
          if (!absl::SimpleAtoi(f[i], &prev)) return bad("stream index");
        } else {
          int64_t d = 0;
          absl::string_view t = f[i];
          absl::ConsumePrefix(&t, "+");
          if (!absl::SimpleAtoi(t, &d)) return bad("stream delta");
          prev = static_cast<uint64_t>(static_cast<int64_t>(prev) + d);
        }
        st.indices.push_back(prev);
      }
    } else {
      return bad(absl::StrCat("unknown key '", key, "'"));
    }
    if (!ok) return bad(absl::StrCat("bad value for ", key));
  }
  if (!have_header) return absl::InvalidArgumentError("empty schedule");
  if (sch.scenario.empty()) return absl::InvalidArgumentError("no scenario");
  return sch;
}

std::string Schedule::Story() const {
  std::vector<const Unit*> order;
  for (const Unit& u : units) order.push_back(&u);
  std::stable_sort(
      order.begin(), order.end(),
      [](const Unit* a, const Unit* b) { return a->time_ns < b->time_ns; });
  std::string s;
  for (const Unit* u : order) {
    absl::StrAppend(
        &s, absl::StrFormat("  %9.3f s  %-5s %-10s %s", u->time_ns / 1e9,
                            KindName(u->kind), u->id, u->what));
    if (!u->result.empty()) absl::StrAppend(&s, " -> ", u->result);
    s += "\n";
  }
  return s;
}

// ---- Decisions ----

Decisions::Decisions(const Schedule* input) : input_(input) {
  if (input_ == nullptr) return;
  out_.seed = input_->seed;
  for (const Schedule::Unit& u : input_->units) {
    listed_[static_cast<int>(u.kind)].emplace(u.id, &u);
  }
  for (const auto& [name, st] : input_->streams) {
    uint64_t& m = max_index_[st.base];
    for (uint64_t i : st.indices) m = std::max(m, i + 1);
  }
}

int Decisions::BaseHandle(std::string_view name,
                          const env::SeededRng& initial) {
  for (size_t i = 0; i < bases_.size(); ++i) {
    if (bases_[i].name == name) return static_cast<int>(i);
  }
  Base b;
  b.name = std::string(name);
  b.gen = std::make_unique<env::SeededRng>(initial);
  auto it = max_index_.find(name);
  b.next_fresh = it == max_index_.end() ? 0 : it->second;
  bases_.push_back(std::move(b));
  return static_cast<int>(bases_.size()) - 1;
}

int Decisions::StreamHandle(std::string_view name, std::string_view base) {
  auto it = stream_by_name_.find(name);
  if (it != stream_by_name_.end()) return it->second;
  StreamState st;
  for (size_t i = 0; i < bases_.size(); ++i) {
    if (bases_[i].name == base) st.base = static_cast<int>(i);
  }
  Schedule::Stream& out = out_.streams[std::string(name)];
  out.base = std::string(base);
  st.out = &out.indices;
  if (input_ != nullptr) {
    auto in = input_->streams.find(std::string(name));
    if (in != input_->streams.end() && in->second.base == base) {
      st.in = &in->second.indices;
    }
  }
  streams_.push_back(st);
  const int h = static_cast<int>(streams_.size()) - 1;
  stream_by_name_.emplace(std::string(name), h);
  return h;
}

uint64_t Decisions::ValueAt(int base, uint64_t index) {
  Base& b = bases_[base];
  // Indices come from a file: bound the work a bad one can ask for.
  DETCD_CHECK_MSG(index < (uint64_t{1} << 28),
                  "schedule: stream index out of range");
  while (b.values.size() <= index) b.values.push_back(b.gen->Next());
  return b.values[index];
}

uint64_t Decisions::Draw(ScheduledRng* rng) {
  StreamState& st = streams_[rng->stream_];
  uint64_t index;
  uint64_t value;
  if (input_ == nullptr) {
    // Recording only: the plain sequence, draw for draw.
    index = rng->drawn_++;
    value = rng->rng_.Next();
  } else {
    if (st.in != nullptr && st.cursor < st.in->size()) {
      index = (*st.in)[st.cursor++];
    } else {
      index = bases_[st.base].next_fresh++;
    }
    value = ValueAt(st.base, index);
  }
  st.out->push_back(index);
  return value;
}

bool Decisions::Listed(Schedule::UnitKind k, std::string_view id) const {
  const auto& m = listed_[static_cast<int>(k)];
  return m.find(id) != m.end();
}

std::optional<int64_t> Decisions::RecordedTime(Schedule::UnitKind k,
                                               std::string_view id) const {
  const auto& m = listed_[static_cast<int>(k)];
  auto it = m.find(id);
  if (it == m.end()) return std::nullopt;
  return it->second->time_ns;
}

size_t Decisions::Note(Schedule::UnitKind k, std::string id, int64_t time_ns,
                       std::string what) {
  Schedule::Unit u;
  u.kind = k;
  u.id = std::move(id);
  u.time_ns = time_ns;
  u.what = std::move(what);
  out_.units.push_back(std::move(u));
  return out_.units.size() - 1;
}

std::vector<int> Decisions::ListedOps(int client) const {
  std::vector<int> r;
  const std::string prefix = absl::StrCat("c", client, ".");
  for (const auto& [id, u] :
       listed_[static_cast<int>(Schedule::UnitKind::kOp)]) {
    absl::string_view rest = id;
    int n = 0;
    if (absl::ConsumePrefix(&rest, prefix) && absl::SimpleAtoi(rest, &n)) {
      r.push_back(n);
    }
  }
  std::sort(r.begin(), r.end());
  return r;
}

// ---- ScheduledRng ----

ScheduledRng::ScheduledRng(env::SeededRng rng, Decisions* d,
                           std::string_view base)
    : rng_(rng), d_(d), base_name_(base) {
  if (d_ == nullptr) return;
  DETCD_CHECK_MSG(!base_name_.empty(), "a scheduled rng needs a base name");
  base_ = d_->BaseHandle(base_name_, rng_);
  stream_ = d_->StreamHandle(base_name_, base_name_);
}

}  // namespace detcd::sim
