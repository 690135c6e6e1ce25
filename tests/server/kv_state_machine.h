// The simulator's state machine until the MVCC store lands: a small
// key-value map with commands "put <key> <value>" and "del <key>", plus a
// running hash over every applied command. The hash lets checkers compare
// whole states cheaply; the snapshot is the real serialized map, so
// snapshot install and restart are exercised for real.
#ifndef DETCD_TESTS_SERVER_KV_STATE_MACHINE_H_
#define DETCD_TESTS_SERVER_KV_STATE_MACHINE_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "engine/server/state_machine.h"

namespace detcd::harness {

class KvStateMachine final : public server::StateMachine {
 public:
  std::string Apply(uint64_t index, std::string_view command) override;
  std::string Snapshot() const override;
  absl::Status Restore(std::string_view image) override;

  static uint64_t MixHash(uint64_t h, uint64_t index, std::string_view cmd);

  uint64_t hash() const { return hash_; }
  uint64_t last_index() const { return last_index_; }
  const std::map<std::string, std::string>& data() const { return data_; }

 private:
  std::map<std::string, std::string> data_;
  uint64_t hash_ = 0;
  uint64_t last_index_ = 0;
};

}  // namespace detcd::harness

#endif  // DETCD_TESTS_SERVER_KV_STATE_MACHINE_H_
