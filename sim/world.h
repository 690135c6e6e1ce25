// The simulated world's heart: virtual time and an event queue ordered by
// (time, seq). Time jumps straight to the next event, so a simulated minute
// of a quiet cluster costs microseconds. Single-threaded by construction.
//
// Every observation that matters feeds a rolling trace hash: each event's
// virtual time, every delivered message's bytes (SimNetwork), every disk
// write and sync (SimDisk), every client answer (the workload). Two runs of
// the same seed must end with the same hash (the determinism check). When a
// TraceLog is attached, every observation is also recorded (time, event,
// node, kind, hash of its bytes, and the bytes themselves up to a budget),
// so the first diverging event of two runs can be found and shown
// (harness/trace.h FirstDivergence).
#ifndef DETCD_SIM_WORLD_H_
#define DETCD_SIM_WORLD_H_

#include <cstdint>
#include <cstring>
#include <functional>
#include <queue>
#include <string>
#include <string_view>
#include <vector>

#include "engine/util/check.h"

namespace detcd::sim {

inline constexpr int64_t kMicrosecond = 1000;
inline constexpr int64_t kMillisecond = 1000 * kMicrosecond;
inline constexpr int64_t kSecond = 1000 * kMillisecond;

// A fast, stable 64-bit hash of bytes for the trace (not cryptographic):
// 16 bytes per 64x64->128-bit multiply, as in wyhash. Byte-wise FNV-1a
// (util::Fnv1a) would cost more than the simulation itself once every
// message and disk write is hashed. Stable across processes and runs: no
// per-process seed.
namespace trace_internal {
inline constexpr uint64_t kP0 = 0xa0761d6478bd642fULL;
inline constexpr uint64_t kP1 = 0xe7037ed1a0b428dbULL;
inline constexpr uint64_t kP2 = 0x8ebc6af09c88c6e3ULL;
inline constexpr uint64_t kP3 = 0x589965cc75374cc3ULL;
inline uint64_t Mum(uint64_t a, uint64_t b) {
  const unsigned __int128 r = static_cast<unsigned __int128>(a) * b;
  return static_cast<uint64_t>(r) ^ static_cast<uint64_t>(r >> 64);
}
inline uint64_t Load64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
inline uint64_t Load32(const char* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
}  // namespace trace_internal

inline uint64_t TraceHashBytes(std::string_view s) {
  using namespace trace_internal;
  const char* p = s.data();
  size_t n = s.size();
  uint64_t h = kP0 ^ Mum(s.size() ^ kP1, kP2);
  while (n > 16) {
    h = Mum(Load64(p) ^ kP1, Load64(p + 8) ^ h);
    p += 16;
    n -= 16;
  }
  uint64_t a = 0, b = 0;
  if (n >= 8) {  // 8..16 bytes: two overlapping words
    a = Load64(p);
    b = Load64(p + n - 8);
  } else if (n >= 4) {
    a = Load32(p);
    b = Load32(p + n - 4);
  } else if (n > 0) {
    const auto* u = reinterpret_cast<const unsigned char*>(p);
    a = (uint64_t{u[0]} << 16) | (uint64_t{u[n >> 1]} << 8) | u[n - 1];
  }
  return Mum(Mum(a ^ kP1, b ^ h) ^ kP3, s.size() ^ kP0);
}

// What a trace record observed.
enum class TraceKind : uint8_t {
  kEvent,      // an event ran; aux = its scheduling sequence number
  kDeliver,    // a message delivered to `node` from `aux`
  kResponse,   // a client's answer: node = client, aux = outcome
  kDiskWrite,  // an append to a file on `node`'s disk; aux = path hash
  kDiskSync,   // an fsync of a file or directory of `node`; aux = path hash
  kValue,      // a value folded in by Mix() (starts, crashes, final state)
};

inline const char* TraceKindName(TraceKind k) {
  switch (k) {
    case TraceKind::kEvent: return "event";
    case TraceKind::kDeliver: return "deliver";
    case TraceKind::kResponse: return "response";
    case TraceKind::kDiskWrite: return "disk-write";
    case TraceKind::kDiskSync: return "disk-sync";
    case TraceKind::kValue: return "value";
  }
  return "?";
}

struct TraceRecord {
  int64_t time = 0;     // virtual time
  uint64_t event = 0;   // the number of the event it happened in
  uint64_t node = 0;
  uint64_t aux = 0;     // per kind, see TraceKind
  uint64_t hash = 0;    // of the bytes (or the value itself)
  uint64_t size = 0;    // of the bytes
  uint64_t bytes_at = kNoBytes;  // offset in TraceLog::bytes
  TraceKind kind = TraceKind::kValue;
  static constexpr uint64_t kNoBytes = ~uint64_t{0};
};

// Everything a run folded into its trace hash, in order. Only kept when
// asked for (the determinism check): a run records a few hundred thousand
// records and a few megabytes of bytes.
struct TraceLog {
  std::vector<TraceRecord> records;
  std::string bytes;  // the records' bytes while under byte_budget
  uint64_t byte_budget = uint64_t{64} << 20;
  uint64_t final_hash = 0;
};

class World {
 public:
  using Fn = std::function<void()>;

  int64_t now() const { return now_; }
  uint64_t events_run() const { return events_run_; }

  void At(int64_t when, Fn fn) {
    DETCD_CHECK_MSG(when >= now_, "cannot schedule in the past");
    uint32_t slot;
    if (free_.empty()) {
      slot = static_cast<uint32_t>(fns_.size());
      fns_.push_back(std::move(fn));
    } else {
      slot = free_.back();
      free_.pop_back();
      fns_[slot] = std::move(fn);
    }
    queue_.push(Event{when, next_seq_++, slot});
  }
  void After(int64_t delay, Fn fn) { At(now_ + delay, std::move(fn)); }

  // Runs the next event; false if there is none or it lies beyond `limit`.
  bool RunNext(int64_t limit) {
    if (queue_.empty() || queue_.top().when > limit) return false;
    // Move out before popping: the event may schedule more events.
    const Event ev = queue_.top();
    queue_.pop();
    Fn fn = std::move(fns_[ev.slot]);
    fns_[ev.slot] = nullptr;
    free_.push_back(ev.slot);
    now_ = ev.when;
    ++events_run_;
    NoteHash(TraceKind::kEvent, 0, ev.seq, static_cast<uint64_t>(ev.when));
    fn();
    return true;
  }
  // Runs every event up to `limit`, then sets the time to `limit`.
  void RunUntil(int64_t limit) {
    while (RunNext(limit)) {
    }
    if (limit > now_) now_ = limit;
  }
  size_t pending() const { return queue_.size(); }

  // Trace hash. Note() folds one observation in (and records it if a log
  // is attached); Mix() folds in a plain value or bytes.
  void Note(TraceKind kind, uint64_t node, uint64_t aux,
            std::string_view bytes) {
    Fold(kind, node, aux, TraceHashBytes(bytes), bytes.size(), &bytes);
  }
  // An observation whose bytes the caller has hashed (or that is a value).
  void NoteHash(TraceKind kind, uint64_t node, uint64_t aux, uint64_t hash) {
    Fold(kind, node, aux, hash, 0, nullptr);
  }
  void Mix(uint64_t v) { NoteHash(TraceKind::kValue, 0, 0, v); }
  void Mix(std::string_view s) { Note(TraceKind::kValue, 0, 0, s); }
  // Records every later observation into `log` (nullptr: stop).
  void set_log(TraceLog* log) { log_ = log; }
  uint64_t trace_hash() const { return hash_; }

 private:
  void Fold(TraceKind kind, uint64_t node, uint64_t aux, uint64_t h,
            uint64_t size, const std::string_view* bytes) {
    using namespace trace_internal;
    hash_ = Mum(hash_ ^ h ^ kP0,
                (node << 8 | static_cast<uint64_t>(kind)) ^
                    Mum(aux ^ kP1, size ^ kP2));
    if (log_ != nullptr) Record(kind, node, aux, h, size, bytes);
  }
  void Record(TraceKind kind, uint64_t node, uint64_t aux, uint64_t h,
              uint64_t size, const std::string_view* bytes) {
    TraceRecord r;
    r.time = now_;
    r.event = events_run_;
    r.node = node;
    r.aux = aux;
    r.hash = h;
    r.size = size;
    r.kind = kind;
    if (bytes != nullptr &&
        log_->bytes.size() + bytes->size() <= log_->byte_budget) {
      r.bytes_at = log_->bytes.size();
      log_->bytes.append(*bytes);
    }
    log_->records.push_back(r);
  }

  // The heap holds small plain records and the callbacks stay put in a
  // slab (fns_, reused through free_): sifting the heap then moves 24
  // bytes instead of std::function objects. Order is (when, seq) either way.
  struct Event {
    int64_t when;
    uint64_t seq;
    uint32_t slot;  // in fns_
  };
  struct Later {
    bool operator()(const Event& a, const Event& b) const {
      return a.when != b.when ? a.when > b.when : a.seq > b.seq;
    }
  };
  std::priority_queue<Event, std::vector<Event>, Later> queue_;
  std::vector<Fn> fns_;
  std::vector<uint32_t> free_;
  int64_t now_ = 0;
  uint64_t next_seq_ = 0;
  uint64_t events_run_ = 0;
  uint64_t hash_ = trace_internal::kP3;
  TraceLog* log_ = nullptr;
};

}  // namespace detcd::sim

#endif  // DETCD_SIM_WORLD_H_
