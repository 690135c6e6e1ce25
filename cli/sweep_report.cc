#include "cli/sweep_report.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "engine/util/probes.h"
#include "nlohmann/json.hpp"

namespace detcd::cli {
namespace {

using Json = nlohmann::json;

// The JSON summary's format name; a reader refuses other versions rather
// than merging counts it would misread.
constexpr char kFormat[] = "detcd-sim-sweep/1";
// Idle seeds listed by name (the count is always exact).
constexpr size_t kMaxIdleListed = 100;

bool IsProbe(const std::string& name) {
  return absl::StartsWith(name, kProbePrefix);
}

std::string XmlEscape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        // XML 1.0 has no other control characters than tab and newline.
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n') {
          out += ' ';
        } else {
          out += c;
        }
    }
  }
  return out;
}

}  // namespace

void Summary::Add(const SeedResult& r) {
  ScenarioRow& row = rows_[r.scenario];
  ++row.seeds;
  row.sim_s += r.sim_s;
  row.wall_s += r.wall_s;
  row.events += r.events;
  if (r.inconclusive) {
    ++row.inconclusive;
    inconclusive_seeds_.push_back(r.seed);
  }
  if (r.idle) {
    ++row.idle;
    ++idle_total_;
    if (idle_seeds_.size() < kMaxIdleListed) {
      idle_seeds_.push_back(
          absl::StrCat(r.seed, " (", r.scenario, "): ", r.notes));
    }
  }
  for (const auto& [name, n] : r.coverage) coverage_[name] += n;
  if (!r.ok) {
    ++row.failed;
    failures_.push_back(
        FailedSeed{r.seed, r.scenario, r.caught_by, r.first_failure, r.replay});
  }
}

void Summary::Merge(const Summary& o) {
  for (const auto& [name, r] : o.rows_) {
    ScenarioRow& row = rows_[name];
    row.seeds += r.seeds;
    row.failed += r.failed;
    row.inconclusive += r.inconclusive;
    row.idle += r.idle;
    row.events += r.events;
    row.sim_s += r.sim_s;
    row.wall_s += r.wall_s;
  }
  for (const auto& [name, n] : o.coverage_) coverage_[name] += n;
  failures_.insert(failures_.end(), o.failures_.begin(), o.failures_.end());
  std::sort(
      failures_.begin(), failures_.end(),
      [](const FailedSeed& a, const FailedSeed& b) { return a.seed < b.seed; });
  for (const std::string& s : o.idle_seeds_) {
    if (idle_seeds_.size() < kMaxIdleListed) idle_seeds_.push_back(s);
  }
  idle_total_ += o.idle_total_;
  inconclusive_seeds_.insert(inconclusive_seeds_.end(),
                             o.inconclusive_seeds_.begin(),
                             o.inconclusive_seeds_.end());
  std::sort(inconclusive_seeds_.begin(), inconclusive_seeds_.end());
  elapsed_s = std::max(elapsed_s, o.elapsed_s);
  seeds_per_min += o.seeds_per_min;
  jobs += o.jobs;
}

uint64_t Summary::seeds() const {
  uint64_t n = 0;
  for (const auto& [name, r] : rows_) n += r.seeds;
  return n;
}

uint64_t Summary::idle() const { return idle_total_; }

std::map<std::string, uint64_t> Summary::Probes() const {
  std::map<std::string, uint64_t> out;
  for (const probes::ProbeInfo& p : probes::kProbes) {
    const std::string name = kProbePrefix + std::string(p.name);
    auto it = coverage_.find(name);
    out[std::string(p.name)] = it == coverage_.end() ? 0 : it->second;
  }
  return out;
}

std::vector<std::string> Summary::Unreached() const {
  std::vector<std::string> out;
  for (const auto& [name, n] : Probes()) {
    if (n == 0) out.push_back(name);
  }
  return out;
}

void Summary::PrintTable(std::FILE* out) const {
  std::fprintf(out, "\n%-22s %7s %6s %6s %5s %10s %10s %11s %9s\n", "scenario",
               "seeds", "failed", "inconc", "idle", "sim s/run", "wall s/run",
               "events/s", "sim/wall");
  ScenarioRow all;
  auto line = [&](const std::string& name, const ScenarioRow& r) {
    const double n = r.seeds ? static_cast<double>(r.seeds) : 1;
    std::fprintf(
        out, "%-22s %7llu %6llu %6llu %5llu %10.2f %10.4f %11.0f %9.0f\n",
        name.c_str(), (unsigned long long)r.seeds, (unsigned long long)r.failed,
        (unsigned long long)r.inconclusive, (unsigned long long)r.idle,
        r.sim_s / n, r.wall_s / n, r.wall_s > 0 ? r.events / r.wall_s : 0,
        r.wall_s > 0 ? r.sim_s / r.wall_s : 0);
  };
  for (const auto& [name, r] : rows_) {
    line(name, r);
    all.seeds += r.seeds;
    all.failed += r.failed;
    all.inconclusive += r.inconclusive;
    all.idle += r.idle;
    all.events += r.events;
    all.sim_s += r.sim_s;
    all.wall_s += r.wall_s;
  }
  if (all.seeds == 0) return;
  line("total", all);
  std::fprintf(out,
               "throughput: %.0f seeds/min (%d jobs), %.0f simulated s per "
               "wall s per core\n",
               seeds_per_min, jobs,
               all.wall_s > 0 ? all.sim_s / all.wall_s : 0);
}

void Summary::PrintProbes(std::FILE* out) const {
  const std::map<std::string, uint64_t> counts = Probes();
  std::fprintf(out, "\nprobes (summed over %llu seeds):\n",
               (unsigned long long)seeds());
  for (const probes::ProbeInfo& p : probes::kProbes) {
    std::fprintf(out, "  %-32s %10llu  %s\n", std::string(p.name).c_str(),
                 (unsigned long long)counts.at(std::string(p.name)),
                 std::string(p.what).c_str());
  }
  const std::vector<std::string> unreached = Unreached();
  if (unreached.empty()) {
    std::fprintf(out, "every probe was reached (%zu)\n", counts.size());
  } else {
    std::fprintf(out, "never reached: %zu of %zu: %s\n", unreached.size(),
                 counts.size(), absl::StrJoin(unreached, " ").c_str());
  }
}

void Summary::PrintCoverage(std::FILE* out) const {
  std::vector<std::string> cov;
  for (const auto& [name, n] : coverage_) {
    if (!IsProbe(name)) cov.push_back(absl::StrCat(name, "=", n));
  }
  if (cov.empty()) return;
  std::fprintf(out, "coverage (summed over the seeds): %s\n",
               absl::StrJoin(cov, " ").c_str());
}

std::string Summary::ToJson() const {
  Json j;
  j["format"] = kFormat;
  j["command"] = command;
  j["elapsed_s"] = elapsed_s;
  j["seeds_per_min"] = seeds_per_min;
  j["jobs"] = jobs;
  Json rows = Json::object();
  for (const auto& [name, r] : rows_) {
    rows[name] = {{"seeds", r.seeds},
                  {"failed", r.failed},
                  {"inconclusive", r.inconclusive},
                  {"idle", r.idle},
                  {"events", r.events},
                  {"sim_s", r.sim_s},
                  {"wall_s", r.wall_s}};
  }
  j["scenarios"] = rows;
  Json cov = Json::object();
  for (const auto& [name, n] : coverage_) cov[name] = n;
  j["coverage"] = cov;
  Json pr = Json::object();
  for (const auto& [name, n] : Probes()) pr[name] = n;
  j["probes"] = pr;  // for readers; merging uses "coverage"
  Json fails = Json::array();
  for (const FailedSeed& f : failures_) {
    fails.push_back({{"seed", f.seed},
                     {"scenario", f.scenario},
                     {"caught_by", f.caught_by},
                     {"failure", f.failure},
                     {"replay", f.replay}});
  }
  j["failures"] = fails;
  j["idle_total"] = idle_total_;
  j["idle"] = idle_seeds_;
  j["inconclusive"] = inconclusive_seeds_;
  return j.dump(1) + "\n";
}

absl::StatusOr<Summary> Summary::FromJson(const std::string& text) {
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("not a JSON object");
  }
  if (j.value("format", "") != kFormat) {
    return absl::InvalidArgumentError(absl::StrCat("format is not ", kFormat));
  }
  Summary s;
  try {
    s.command = j.value("command", "");
    s.elapsed_s = j.value("elapsed_s", 0.0);
    s.seeds_per_min = j.value("seeds_per_min", 0.0);
    s.jobs = j.value("jobs", 0);
    for (const auto& [name, r] : j.at("scenarios").items()) {
      ScenarioRow& row = s.rows_[name];
      row.seeds = r.at("seeds").get<uint64_t>();
      row.failed = r.at("failed").get<uint64_t>();
      row.inconclusive = r.at("inconclusive").get<uint64_t>();
      row.idle = r.at("idle").get<uint64_t>();
      row.events = r.at("events").get<uint64_t>();
      row.sim_s = r.at("sim_s").get<double>();
      row.wall_s = r.at("wall_s").get<double>();
    }
    for (const auto& [name, n] : j.at("coverage").items()) {
      s.coverage_[name] = n.get<uint64_t>();
    }
    for (const Json& f : j.at("failures")) {
      s.failures_.push_back(FailedSeed{f.at("seed").get<uint64_t>(),
                                       f.at("scenario").get<std::string>(),
                                       f.at("caught_by").get<std::string>(),
                                       f.at("failure").get<std::string>(),
                                       f.at("replay").get<std::string>()});
    }
    s.idle_total_ = j.at("idle_total").get<uint64_t>();
    s.idle_seeds_ = j.at("idle").get<std::vector<std::string>>();
    s.inconclusive_seeds_ = j.at("inconclusive").get<std::vector<uint64_t>>();
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed sweep summary: ", e.what()));
  }
  return s;
}

std::string Summary::ToJUnit() const {
  std::string cases;
  uint64_t tests = 0;
  double total_wall = 0;
  for (const auto& [name, r] : rows_) {
    ++tests;
    total_wall += r.wall_s;
    absl::StrAppend(
        &cases,
        absl::StrFormat("  <testcase classname=\"detcd-sim.%s\" name=\"%s: "
                        "%d seeds\" time=\"%.3f\">\n",
                        XmlEscape(name), XmlEscape(name), r.seeds, r.wall_s));
    if (r.failed > 0) {
      absl::StrAppend(
          &cases,
          absl::StrFormat("    <failure message=\"%d of %d seeds "
                          "failed (listed as their own test cases)\"/>\n",
                          r.failed, r.seeds));
    }
    absl::StrAppend(&cases, "  </testcase>\n");
  }
  for (const FailedSeed& f : failures_) {
    ++tests;
    const std::string msg =
        absl::StrCat("caught by ", f.caught_by, ": ", f.failure);
    absl::StrAppend(
        &cases, absl::StrFormat(
                    "  <testcase classname=\"detcd-sim.%s\" name=\"seed %d\">\n"
                    "    <failure message=\"%s\">%s\nreplay: %s</failure>\n"
                    "  </testcase>\n",
                    XmlEscape(f.scenario), f.seed, XmlEscape(msg),
                    XmlEscape(msg), XmlEscape(f.replay)));
  }
  uint64_t failing_rows = 0;
  for (const auto& [name, r] : rows_) failing_rows += r.failed > 0 ? 1 : 0;
  return absl::StrFormat(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<testsuites tests=\"%d\" failures=\"%d\" time=\"%.3f\">\n"
      " <testsuite name=\"detcd-sim\" tests=\"%d\" failures=\"%d\" "
      "time=\"%.3f\">\n%s </testsuite>\n</testsuites>\n",
      tests, failures_.size() + failing_rows, elapsed_s, tests,
      failures_.size() + failing_rows, total_wall, cases);
}

std::string ProgressLine(bool tty, uint64_t done, uint64_t total,
                         uint64_t failed, double elapsed_s, double duration_s) {
  const double rate = elapsed_s > 0 ? done / elapsed_s : 0;
  double frac = 0;
  std::string count;
  std::string eta;
  if (total > 0) {
    frac = static_cast<double>(done) / total;
    count = absl::StrFormat("%d/%d seeds", done, total);
    if (rate > 0 && done < total) {
      eta = absl::StrFormat(", %.0f s left", (total - done) / rate);
    }
  } else {
    frac = duration_s > 0 ? std::min(1.0, elapsed_s / duration_s) : 0;
    count = absl::StrFormat("%d seeds", done);
    eta =
        absl::StrFormat(", %.0f s left", std::max(0.0, duration_s - elapsed_s));
  }
  const std::string stats =
      absl::StrFormat("%s, %.1f seeds/s, %d failed, %.1f s%s", count, rate,
                      failed, elapsed_s, eta);
  if (!tty) return absl::StrCat("progress: ", stats, "\n");
  constexpr int kWidth = 30;
  const int filled = static_cast<int>(std::lround(frac * kWidth));
  // \x1b[K clears what a longer previous line left behind.
  return absl::StrCat("\r[", std::string(filled, '#'),
                      std::string(kWidth - filled, '.'), "] ",
                      absl::StrFormat("%3.0f%% ", frac * 100), stats, "\x1b[K");
}

bool ParseDuration(const std::string& s, double* seconds) {
  if (s.empty()) return false;
  double unit = 1;
  std::string num = s;
  switch (s.back()) {
    case 's':
      unit = 1;
      num.pop_back();
      break;
    case 'm':
      unit = 60;
      num.pop_back();
      break;
    case 'h':
      unit = 3600;
      num.pop_back();
      break;
    default:
      break;
  }
  double v = 0;
  if (!absl::SimpleAtod(num, &v) || !(v > 0) || !std::isfinite(v)) {
    return false;
  }
  *seconds = v * unit;
  return true;
}

absl::Status WriteFile(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) return absl::UnavailableError(absl::StrCat("cannot open ", path));
  f << data;
  f.close();
  if (!f) return absl::UnavailableError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

}  // namespace detcd::cli
