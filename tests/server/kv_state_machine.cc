#include "tests/server/kv_state_machine.h"

#include "engine/util/coding.h"
#include "engine/util/hash.h"

namespace detcd::harness {

uint64_t KvStateMachine::MixHash(uint64_t h, uint64_t index,
                                 std::string_view cmd) {
  h ^= index + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
  return util::Fnv1a(cmd, h);
}

std::string KvStateMachine::Apply(uint64_t index, std::string_view command) {
  hash_ = MixHash(hash_, index, command);
  last_index_ = index;
  // Result: the previous value, as a put would return prev_kv.
  if (command.substr(0, 4) == "put ") {
    std::string_view rest = command.substr(4);
    size_t sp = rest.find(' ');
    std::string key(rest.substr(0, sp));
    std::string value(sp == std::string_view::npos ? "" : rest.substr(sp + 1));
    std::string prev = data_.count(key) ? data_[key] : "";
    data_[key] = std::move(value);
    return prev;
  }
  if (command.substr(0, 4) == "del ") {
    std::string key(command.substr(4));
    auto it = data_.find(key);
    if (it == data_.end()) return "";
    std::string prev = std::move(it->second);
    data_.erase(it);
    return prev;
  }
  return "";
}

// Image: varint(last_index) varint(hash) varint(n) (lp key, lp value)*n
std::string KvStateMachine::Snapshot() const {
  std::string out;
  coding::PutVarint64(&out, last_index_);
  coding::PutVarint64(&out, hash_);
  coding::PutVarint64(&out, data_.size());
  for (const auto& [k, v] : data_) {
    coding::PutLengthPrefixed(&out, k);
    coding::PutLengthPrefixed(&out, v);
  }
  return out;
}

absl::Status KvStateMachine::Restore(std::string_view image) {
  coding::Reader r(image);
  uint64_t last = 0, hash = 0, n = 0;
  if (!r.GetVarint64(&last) || !r.GetVarint64(&hash) || !r.GetVarint64(&n) ||
      n > r.remaining()) {
    return absl::DataLossError("kv snapshot: bad header");
  }
  std::map<std::string, std::string> data;
  for (uint64_t i = 0; i < n; ++i) {
    std::string k, v;
    if (!r.GetLengthPrefixed(&k) || !r.GetLengthPrefixed(&v)) {
      return absl::DataLossError("kv snapshot: truncated");
    }
    data.emplace(std::move(k), std::move(v));
  }
  if (!r.empty()) return absl::DataLossError("kv snapshot: trailing bytes");
  data_ = std::move(data);
  hash_ = hash;
  last_index_ = last;
  return absl::OkStatus();
}

}  // namespace detcd::harness
