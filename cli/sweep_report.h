// What a detcd-sim sweep reports: the per-scenario table, probe coverage,
// the progress bar, JSON summaries that merge (shards of one sweep run on
// many machines, see docs/sweeps.md) and JUnit XML for CI systems.
//
// A sweep's worker processes send one result line per seed; the sweep
// parses each into a SeedResult and adds it to a Summary. A Summary written
// with --json can be read back and merged with others (`detcd-sim --merge
// a.json b.json ...`): every count is a sum, so the merge of the shards'
// summaries is the summary of the whole sweep.
#ifndef DETCD_CLI_SWEEP_REPORT_H_
#define DETCD_CLI_SWEEP_REPORT_H_

#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace detcd::cli {

// One seed's outcome, as a sweep worker reported it.
struct SeedResult {
  uint64_t seed = 0;
  bool ok = false;
  std::string scenario;
  bool inconclusive = false;
  bool idle = false;
  double sim_s = 0;
  double wall_s = 0;
  uint64_t events = 0;
  std::string caught_by;                     // comma-separated checker kinds
  std::string notes;                         // why the seed was idle
  std::string first_failure;                 // one line
  std::string replay;                        // the command that replays it
  std::map<std::string, uint64_t> coverage;  // incl. "probe.*", "buggify.*"
};

struct ScenarioRow {
  uint64_t seeds = 0, failed = 0, inconclusive = 0, idle = 0, events = 0;
  double sim_s = 0, wall_s = 0;  // summed over its seeds
};

struct FailedSeed {
  uint64_t seed = 0;
  std::string scenario, caught_by, failure, replay;
};

// Coverage counters named "probe.<name>" are the engine's probes
// (engine/util/probes.h); Summary keeps them apart from the rest.
inline constexpr char kProbePrefix[] = "probe.";

class Summary {
 public:
  void Add(const SeedResult& r);
  // Adds every count of `other` (another shard of the same sweep).
  void Merge(const Summary& other);

  uint64_t seeds() const;
  uint64_t failed() const { return failures_.size(); }
  uint64_t idle() const;
  const std::vector<FailedSeed>& failures() const { return failures_; }
  const std::vector<std::string>& idle_seeds() const { return idle_seeds_; }
  const std::vector<uint64_t>& inconclusive_seeds() const {
    return inconclusive_seeds_;
  }
  const std::map<std::string, ScenarioRow>& rows() const { return rows_; }
  // Every probe of the engine's list with its count (zeros included).
  std::map<std::string, uint64_t> Probes() const;
  // The probes that no seed reached.
  std::vector<std::string> Unreached() const;

  // Wall time the sweep took (max over merged shards: they run side by
  // side) and the sum of the shards' seeds/min (each on its own machine).
  double elapsed_s = 0;
  double seeds_per_min = 0;
  int jobs = 0;
  std::string command;  // how it was run (informational)

  // Per-scenario table: seeds, failures, inconclusive checks, idle seeds,
  // events per wall second and simulated-to-wall time ratio (per core).
  void PrintTable(std::FILE* out) const;
  // Each probe's count, and those never reached.
  void PrintProbes(std::FILE* out) const;
  // The other coverage counters, summed.
  void PrintCoverage(std::FILE* out) const;

  std::string ToJson() const;
  static absl::StatusOr<Summary> FromJson(const std::string& text);
  // JUnit XML: a test case per scenario (its seeds, passed or not) and
  // one per failing seed, whose failure text holds the replay command.
  std::string ToJUnit() const;

 private:
  std::map<std::string, ScenarioRow> rows_;
  std::map<std::string, uint64_t> coverage_;
  std::vector<FailedSeed> failures_;
  std::vector<std::string> idle_seeds_;  // "seed (scenario): notes", first 100
  uint64_t idle_total_ = 0;
  std::vector<uint64_t> inconclusive_seeds_;
};

// One line of progress: on a terminal a bar that rewrites itself (\r), else
// a plain line. total == 0: unknown (a --duration sweep; the bar then shows
// the time used of `duration_s`).
std::string ProgressLine(bool tty, uint64_t done, uint64_t total,
                         uint64_t failed, double elapsed_s, double duration_s);

// "10m", "90s", "1h", "600" (seconds) -> seconds; false if malformed.
bool ParseDuration(const std::string& s, double* seconds);

absl::Status WriteFile(const std::string& path, const std::string& data);

}  // namespace detcd::cli

#endif  // DETCD_CLI_SWEEP_REPORT_H_
