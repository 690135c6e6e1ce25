#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <utility>

#include "engine/env/env.h"

namespace detcd::env {
namespace {

// Disk::OpenRead's file for disks that only read whole files.
class WholeFile final : public ReadableFile {
 public:
  explicit WholeFile(std::string data) : data_(std::move(data)) {}
  uint64_t size() const override { return data_.size(); }
  absl::StatusOr<size_t> Read(char* buf, size_t n) override {
    n = std::min(n, data_.size() - at_);
    if (n > 0) std::memcpy(buf, data_.data() + at_, n);
    at_ += n;
    return n;
  }

 private:
  std::string data_;
  size_t at_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ReadableFile>> Disk::OpenRead(
    const std::string& path) {
  auto data = ReadAll(path);
  if (!data.ok()) return data.status();
  return std::unique_ptr<ReadableFile>(new WholeFile(*std::move(data)));
}

}  // namespace detcd::env
