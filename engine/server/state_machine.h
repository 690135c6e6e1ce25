// What the Node replicates. Until the MVCC store lands, tests and the
// simulator plug in small state machines; the etcd apply layer will be one
// more implementation of this interface.
#ifndef DETCD_ENGINE_SERVER_STATE_MACHINE_H_
#define DETCD_ENGINE_SERVER_STATE_MACHINE_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace detcd::server {

class StateMachine {
 public:
  virtual ~StateMachine() = default;
  // Applies one committed command (in log order, exactly once per index
  // since the last Restore) and returns the result handed to the proposer.
  virtual std::string Apply(uint64_t index, std::string_view command) = 0;
  // The whole state as of the last applied index.
  virtual std::string Snapshot() const = 0;
  // Replaces the whole state with a snapshot image.
  virtual absl::Status Restore(std::string_view image) = 0;
};

}  // namespace detcd::server

#endif  // DETCD_ENGINE_SERVER_STATE_MACHINE_H_
