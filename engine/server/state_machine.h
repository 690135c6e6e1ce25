// What the Node replicates: the etcd apply layer (EtcdStateMachine), and
// small state machines in tests and the simulator.
#ifndef DETCD_ENGINE_SERVER_STATE_MACHINE_H_
#define DETCD_ENGINE_SERVER_STATE_MACHINE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/env/env.h"
#include "engine/raft/types.h"

namespace detcd::server {

// A state machine image written in bounded steps (an incremental snapshot),
// interleaved with applies: the image is the state when the writer was
// made, whatever is applied between the steps. size() is exact from the
// start (callers put the image behind a length prefix).
class ImageWriter {
 public:
  virtual ~ImageWriter() = default;
  // About `budget` bytes of work (at least some progress per call); true
  // once the whole image is out. An error (the state machine was restored
  // or compacted under the image) means the image cannot be finished: the
  // caller drops it and takes another later.
  virtual absl::StatusOr<bool> Step(size_t budget, std::string* out) = 0;
  virtual uint64_t size() const = 0;
};

// An image already in memory, out in one step (small state machines).
class StringImageWriter final : public ImageWriter {
 public:
  explicit StringImageWriter(std::string image) : image_(std::move(image)) {}
  absl::StatusOr<bool> Step(size_t, std::string* out) override {
    out->append(image_);
    image_.clear();
    return true;
  }
  uint64_t size() const override { return size_; }

 private:
  std::string image_;
  uint64_t size_ = image_.size();
};

class StateMachine {
 public:
  virtual ~StateMachine() = default;
  // Applies one committed command (in log order, exactly once per index
  // since the last Restore) and returns the result handed to the proposer.
  virtual std::string Apply(uint64_t index, std::string_view command) = 0;
  // The same, told which member proposed it (its full id, 0 if unknown):
  // what the Node calls. The default ignores the proposer.
  virtual std::string ApplyFrom(uint64_t index, uint64_t /*proposer*/,
                                std::string_view command) {
    return Apply(index, command);
  }
  // Before a committed membership change takes effect: an error refuses
  // it on every member (raft's membership stays as it is) and goes to the
  // proposer. Must depend only on replicated state. The default accepts
  // everything.
  virtual absl::Status CheckConfChange(const raft::ConfChange& /*cc*/,
                                       std::string_view /*context*/) const {
    return absl::OkStatus();
  }
  // A committed membership change at `index` took effect in raft (in log
  // order with Apply, exactly once per index since the last Restore).
  // `context` is the proposer's context with the Node's envelope removed
  // (the founders' is NodeOptions::founding_contexts; empty if none);
  // `after` is the membership now. The result goes to the proposer. The
  // default keeps no membership of its own.
  virtual std::string ApplyConfChange(uint64_t /*index*/,
                                      const raft::ConfChange& /*cc*/,
                                      std::string_view /*context*/,
                                      const raft::ConfState& /*after*/) {
    return "";
  }
  // The whole state as of the last applied index.
  virtual std::string Snapshot() const = 0;
  // The same image, written in steps (see ImageWriter). The state machine
  // must outlive the writer. The default writes Snapshot() in one step.
  virtual std::unique_ptr<ImageWriter> BeginSnapshot() const {
    return std::make_unique<StringImageWriter>(Snapshot());
  }
  // Delta images (the Node's incremental snapshot files): an image of
  // what changed since an earlier image, which a restart applies on top of
  // it. A point is where an image left the state (opaque to the Node);
  // image_point() is the state now, which is what an image begun at once
  // shows, and what a Restore just installed. BeginDeltaSnapshot answers
  // null when no delta can be made from `since` (the default: always) and
  // a whole image is needed. A delta image names the index of the image
  // it continues (DeltaBase; nullopt for a whole image), and
  // ApplyDelta adds it to the state restored from that image.
  struct ImagePoint {
    uint64_t index = 0;                // the applied index the image shows
    uint64_t state[4] = {0, 0, 0, 0};  // the state machine's own
  };
  virtual std::optional<ImagePoint> image_point() const { return std::nullopt; }
  virtual std::unique_ptr<ImageWriter> BeginDeltaSnapshot(
      const ImagePoint& /*since*/) const {
    return nullptr;
  }
  virtual std::optional<uint64_t> DeltaBase(std::string_view /*image*/) const {
    return std::nullopt;
  }
  // (`behind` as RestoreReading's.)
  virtual absl::Status ApplyDelta(std::string_view /*image*/,
                                  const env::ReadBehind& /*behind*/) {
    return absl::UnimplementedError("this state machine takes no deltas");
  }
  // Replaces the whole state with a snapshot image.
  virtual absl::Status Restore(std::string_view image) = 0;
  // Restore for a caller that gives the image's memory back as it is read
  // (a member restarting from its snapshot file, env::Memory): `behind` is
  // told the points in `image` before which nothing is read again. The
  // default reads the image whole and tells nothing.
  virtual absl::Status RestoreReading(std::string_view image,
                                      const env::ReadBehind& /*behind*/) {
    return Restore(image);
  }
  // Restore in two parts, for a large image: PrepareRestore does the costly
  // part (decoding and checking the image into state of its own) and may
  // run on another thread than the state machine's owner, concurrently with
  // its other calls: it reads only `image` and what never changes after
  // construction, and tells `behind` (may be null) as RestoreReading does.
  // RestorePrepared then installs it (with the same image, which must
  // still be there: it reads it only if nothing was prepared). Errors are
  // Restore's; nothing changes when either fails. Afterwards *prepared
  // holds what is left to free (the replaced state), which the caller may
  // free elsewhere, or null. The default prepares nothing (null, telling
  // nothing) and restores from the image.
  class Prepared {
   public:
    virtual ~Prepared() = default;
  };
  virtual absl::StatusOr<std::unique_ptr<Prepared>> PrepareRestore(
      std::string_view /*image*/, const env::ReadBehind& /*behind*/) const {
    return nullptr;
  }
  virtual absl::Status RestorePrepared(std::string_view image,
                                       std::unique_ptr<Prepared>* prepared) {
    prepared->reset();
    return Restore(image);
  }
  // Work an apply left to be done in bounded steps between the Node's
  // other work (the MVCC store removing a compaction's revisions): true
  // while some is left. The Node steps it as it steps a snapshot, and
  // starts no automatic snapshot while some is left (the image would
  // first finish it at once). The work must change nothing that results,
  // reads or images show. The default has none.
  virtual bool background_pending() const { return false; }
  virtual void BackgroundStep() {}
};

}  // namespace detcd::server

#endif  // DETCD_ENGINE_SERVER_STATE_MACHINE_H_
