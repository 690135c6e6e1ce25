// Record and replay of what the simulated WORLD decided in a run (issue 16):
// its fault events, the random draws of the network, the disks, the
// cluster's injected crashes, the scenario and the client workload. The
// engine's own draws (election timeouts, ...) are not part of it: replaying
// a schedule against changed code re-checks that code against the same
// world, even though the code's own choices changed.
//
// Every world draw goes through a ScheduledRng. Without a Decisions object
// (the plain path) it is the SeededRng it wraps, draw for draw, so plain
// runs are exactly what they were. With one, each draw is taken from a named
// STREAM (a link of the network, a client's n-th operation, a fault event)
// and is recorded as an index into its BASE generator (SeededRng(seed)
// .Derive(base name), the sequence the plain path draws from). A replay
// serves each stream the indices it recorded, in order; a stream that asks
// for more than was recorded gets fresh values of its base. Streams are
// named by identity (who drew, for what), so code that draws more or less in
// one place does not shift the draws of another.
//
// Fault events and client operations are UNITS: listed ones happen (an
// operation is not invoked before its recorded time), unlisted ones are
// skipped. Dropping units is how the shrinker (scenarios/shrink.h) makes a
// failing schedule small. The file format is docs/schedule-format.md.
#ifndef DETCD_SIM_SCHEDULE_H_
#define DETCD_SIM_SCHEDULE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/env/env.h"

namespace detcd::sim {

// A schedule as stored in a file: the run's parameters, its units and its
// streams.
struct Schedule {
  static constexpr int kVersion = 1;

  enum class UnitKind : uint8_t { kEvent, kOp };
  struct Unit {
    UnitKind kind = UnitKind::kEvent;
    std::string id;       // "e0#3.1" (events), "c2.7" (operations)
    int64_t time_ns = 0;  // when it happened (operations: invoked)
    std::string what;     // readable: what the event did, the request
    std::string result;   // operations: ok, fail: ..., unknown
  };
  struct Stream {
    std::string base;               // the SeededRng(seed).Derive(base) sequence
    std::vector<uint64_t> indices;  // positions in that sequence, in order
  };

  // Run parameters (detcd-sim's flags).
  uint64_t seed = 1;
  std::string scenario;
  int nodes = 3;
  int ops = 500;
  int clients = 5;
  int watchers = 3;
  int lease_clients = 2;
  int64_t fault_phase_ns = 0;
  // The engine's BUGGIFY setting the run had: "" off, "all" (--buggify) or
  // one fault point's name (--buggify-point). Which points fire is the
  // engine's own draw from the seed, so only the setting is carried.
  std::string buggify;
  // Informational: the planted bug it was recorded with and how it failed.
  std::string recorded_bug;
  std::string failure;

  std::vector<Unit> units;  // in the order they happened
  std::map<std::string, Stream> streams;

  size_t CountUnits(UnitKind k) const;
  std::string Serialize() const;
  static absl::StatusOr<Schedule> Parse(std::string_view text);
  // The units in time order, one line each (the shrinker's story).
  std::string Story() const;
};

class ScheduledRng;

// The live source of world decisions in one run: replays `input` (if any)
// and records everything drawn into output() (always).
class Decisions {
 public:
  explicit Decisions(const Schedule* input = nullptr);
  bool replaying() const { return input_ != nullptr; }
  const Schedule& output() const { return out_; }
  Schedule& mutable_output() { return out_; }

  // Streams are addressed by a handle (stable for the run).
  int StreamHandle(std::string_view name, std::string_view base);

  // Units. Replaying: is the unit listed (unlisted ones are skipped), and
  // when did it happen. Recording: note it (listed in the output).
  bool Listed(Schedule::UnitKind k, std::string_view id) const;
  std::optional<int64_t> RecordedTime(Schedule::UnitKind k,
                                      std::string_view id) const;
  // Returns the unit's index in the output, for SetResult.
  size_t Note(Schedule::UnitKind k, std::string id, int64_t time_ns,
              std::string what);
  void SetWhat(size_t unit, std::string what) {
    out_.units[unit].what = std::move(what);
  }
  void SetResult(size_t unit, std::string result) {
    out_.units[unit].result = std::move(result);
  }
  // Replaying: the client's listed operations, in order (their n).
  std::vector<int> ListedOps(int client) const;

 private:
  friend class ScheduledRng;
  struct StreamState {
    int base = 0;
    const std::vector<uint64_t>* in = nullptr;  // replayed indices
    size_t cursor = 0;
    std::vector<uint64_t>* out = nullptr;  // into out_.streams
  };
  struct Base {
    std::string name;
    std::unique_ptr<env::SeededRng> gen;  // produces `values` lazily
    std::vector<uint64_t> values;
    uint64_t next_fresh = 0;  // fresh indices for unrecorded draws
  };
  int BaseHandle(std::string_view name, const env::SeededRng& initial);
  uint64_t ValueAt(int base, uint64_t index);
  // A draw of `rng` in its current stream.
  uint64_t Draw(ScheduledRng* rng);

  const Schedule* input_;
  Schedule out_;
  std::vector<StreamState> streams_;
  std::map<std::string, int, std::less<>> stream_by_name_;
  std::vector<Base> bases_;
  std::map<std::string, uint64_t, std::less<>> max_index_;  // per base, input
  std::map<std::string, const Schedule::Unit*, std::less<>> listed_[2];
};

// An env::Rng for world decisions: the wrapped SeededRng unless a run has
// Decisions (then drawn stream by stream, recorded, replayed).
class ScheduledRng final : public env::Rng {
 public:
  // `base` names the sequence `rng` draws (SeededRng(seed).Derive(base));
  // the default stream has the same name.
  ScheduledRng(env::SeededRng rng, Decisions* d = nullptr,
               std::string_view base = "");
  uint64_t Next() override {
    if (d_ == nullptr) return rng_.Next();
    return d_->Draw(this);
  }
  bool scheduled() const { return d_ != nullptr; }
  Decisions* decisions() const { return d_; }
  // Makes `stream` current (a no-op on the plain path).
  void Use(std::string_view stream) {
    if (d_ != nullptr) stream_ = d_->StreamHandle(stream, base_name_);
  }
  void UseHandle(int stream) { stream_ = stream; }
  int stream() const { return stream_; }

 private:
  friend class Decisions;
  env::SeededRng rng_;
  Decisions* d_;
  std::string base_name_;
  int base_ = -1;
  int stream_ = -1;
  uint64_t drawn_ = 0;  // recording without input: the base's next index
};

// A view of a shared ScheduledRng that draws in one named stream, for an
// actor whose draws happen in many callbacks (a simulated client and the
// drivers it owns): each draw makes the stream current first. The plain
// path draws the shared sequence as before; recorded, each actor's draws
// are a stream of their own, so a replay serves each actor its values
// whatever the order the actors draw in.
class StreamRng final : public env::Rng {
 public:
  StreamRng(ScheduledRng* rng, std::string_view stream) : rng_(rng) {
    if (rng_->scheduled()) {
      const int before = rng_->stream();
      rng_->Use(stream);
      handle_ = rng_->stream();
      rng_->UseHandle(before);
    }
  }
  uint64_t Next() override {
    if (handle_ >= 0) rng_->UseHandle(handle_);
    return rng_->Next();
  }

 private:
  ScheduledRng* rng_;
  int handle_ = -1;
};

}  // namespace detcd::sim

#endif  // DETCD_SIM_SCHEDULE_H_
