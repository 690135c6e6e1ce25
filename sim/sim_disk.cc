#include "sim/sim_disk.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace detcd::sim {

// A handle on one file. It holds the file image alive and remembers the
// disk epoch it was opened in: after a crash or wipe the handle is dead, as
// a file descriptor does not survive a reboot.
class SimFile final : public env::WritableFile {
 public:
  SimFile(SimDisk* disk, std::shared_ptr<SimDisk::File> file, std::string path)
      : disk_(disk),
        file_(std::move(file)),
        path_(std::move(path)),
        epoch_(disk->epoch_) {}

  absl::Status Append(std::string_view data) override {
    if (absl::Status s = Check(); !s.ok()) return s;
    return disk_->AppendTo(*file_, data, path_);
  }
  absl::Status Sync() override {
    if (absl::Status s = Check(); !s.ok()) return s;
    return disk_->SyncFile(*file_, path_);
  }
  absl::Status Close() override {
    closed_ = true;
    return absl::OkStatus();
  }

 private:
  absl::Status Check() const {
    if (closed_) return absl::FailedPreconditionError("file is closed");
    if (epoch_ != disk_->epoch_) {
      return absl::FailedPreconditionError(
          absl::StrCat("EIO: ", path_, ": handle from before a crash"));
    }
    return absl::OkStatus();
  }

  SimDisk* disk_;
  std::shared_ptr<SimDisk::File> file_;
  std::string path_;
  uint64_t epoch_;
  bool closed_ = false;
};

SimDisk::SimDisk(env::SeededRng rng) : rng_(std::move(rng)) {
  dirs_[""].durable_exists = true;
}

SimDisk::~SimDisk() = default;

void SimDisk::Split(const std::string& path, std::string* dir,
                    std::string* name) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) {
    dir->clear();
    *name = path;
  } else {
    *dir = path.substr(0, slash);
    *name = path.substr(slash + 1);
  }
}

bool SimDisk::Fail(const char* op, const std::string& path,
                   absl::Status* out) {
  if (faults_.eio_probability <= 0 || !rng_.Chance(faults_.eio_probability)) {
    return false;
  }
  ++injected_errors_;
  *out = absl::InternalError(absl::StrCat("EIO: ", op, " ", path));
  return true;
}

SimDisk::Dir* SimDisk::FindDir(const std::string& dir) {
  auto it = dirs_.find(dir);
  return it == dirs_.end() ? nullptr : &it->second;
}

std::shared_ptr<SimDisk::File> SimDisk::FindFile(const std::string& path) {
  std::string dir, name;
  Split(path, &dir, &name);
  Dir* d = FindDir(dir);
  if (d == nullptr) return nullptr;
  auto it = d->live.find(name);
  return it == d->live.end() ? nullptr : it->second;
}

uint64_t SimDisk::used_bytes() const {
  uint64_t n = 0;
  for (const auto& [path, d] : dirs_) {
    for (const auto& [name, f] : d.live) n += f->data.size();
  }
  return n;
}

absl::Status SimDisk::AppendTo(File& f, std::string_view data,
                               const std::string& path) {
  if (trace_world_) {  // the determinism trace (set_trace)
    trace_world_->Note(TraceKind::kDiskWrite, trace_node_,
                       TraceHashBytes(path), data);
  }
  pending_latency_ += faults_.write_latency_ns;
  absl::Status s;
  if (Fail("write", path, &s)) {
    // A failed write may still have put part of the data in the page cache.
    if (!data.empty() && rng_.Chance(0.5)) {
      f.data.append(data.substr(0, rng_.Uniform(data.size())));
    }
    return s;
  }
  if (capacity_ != 0 && used_bytes() + data.size() > capacity_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("ENOSPC: write ", path, ": no space left on device"));
  }
  f.data.append(data);
  return absl::OkStatus();
}

absl::Status SimDisk::SyncFile(File& f, const std::string& path) {
  if (trace_world_) {  // the determinism trace (set_trace)
    trace_world_->Note(TraceKind::kDiskSync, trace_node_, f.data.size(), path);
  }
  pending_latency_ += faults_.sync_latency_ns;
  absl::Status s;
  if (Fail("fsync", path, &s)) return s;
  ++syncs_;
  f.synced = f.data;
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<env::WritableFile>> SimDisk::OpenAppend(
    const std::string& path) {
  absl::Status s;
  if (Fail("open", path, &s)) return s;
  std::shared_ptr<File> f = FindFile(path);
  if (f == nullptr) {
    std::string dir, name;
    Split(path, &dir, &name);
    Dir* d = FindDir(dir);
    if (d == nullptr) {
      return absl::NotFoundError(absl::StrCat(path, ": no such directory"));
    }
    f = std::make_shared<File>();
    d->live[name] = f;
  }
  return std::unique_ptr<env::WritableFile>(new SimFile(this, f, path));
}

absl::StatusOr<std::unique_ptr<env::WritableFile>> SimDisk::Create(
    const std::string& path) {
  absl::Status s;
  if (Fail("create", path, &s)) return s;
  std::string dir, name;
  Split(path, &dir, &name);
  Dir* d = FindDir(dir);
  if (d == nullptr) {
    return absl::NotFoundError(absl::StrCat(path, ": no such directory"));
  }
  // A new inode: the old one (if any) stays what the durable entry points at.
  auto f = std::make_shared<File>();
  d->live[name] = f;
  return std::unique_ptr<env::WritableFile>(new SimFile(this, f, path));
}

absl::StatusOr<std::string> SimDisk::ReadAll(const std::string& path) {
  absl::Status s;
  if (Fail("read", path, &s)) return s;
  std::shared_ptr<File> f = FindFile(path);
  if (f == nullptr) return absl::NotFoundError(absl::StrCat(path, ": not found"));
  return f->data;
}

absl::StatusOr<std::vector<std::string>> SimDisk::List(const std::string& dir) {
  Dir* d = FindDir(dir);
  if (d == nullptr) return absl::NotFoundError(absl::StrCat(dir, ": not found"));
  std::vector<std::string> names;
  names.reserve(d->live.size());
  for (const auto& [name, f] : d->live) names.push_back(name);
  // Subdirectories are entries too.
  const std::string prefix = dir.empty() ? "" : dir + "/";
  for (auto it = dirs_.lower_bound(prefix); it != dirs_.end(); ++it) {
    if (it->first.compare(0, prefix.size(), prefix) != 0) break;
    if (it->first.size() == prefix.size()) continue;
    std::string rest = it->first.substr(prefix.size());
    if (rest.find('/') == std::string::npos) names.push_back(rest);
  }
  std::sort(names.begin(), names.end());
  return names;
}

absl::Status SimDisk::CreateDir(const std::string& dir) {
  if (FindDir(dir) != nullptr) return absl::OkStatus();
  absl::Status s;
  if (Fail("mkdir", dir, &s)) return s;
  std::string parent, name;
  Split(dir, &parent, &name);
  if (FindDir(parent) == nullptr) {
    return absl::NotFoundError(absl::StrCat(dir, ": parent does not exist"));
  }
  dirs_[dir];
  return absl::OkStatus();
}

absl::Status SimDisk::Remove(const std::string& path) {
  absl::Status s;
  if (Fail("unlink", path, &s)) return s;
  std::string dir, name;
  Split(path, &dir, &name);
  Dir* d = FindDir(dir);
  if (d == nullptr || d->live.erase(name) == 0) {
    return absl::NotFoundError(absl::StrCat(path, ": not found"));
  }
  return absl::OkStatus();
}

absl::Status SimDisk::Rename(const std::string& from, const std::string& to) {
  absl::Status s;
  if (Fail("rename", from, &s)) return s;
  std::string fdir, fname, tdir, tname;
  Split(from, &fdir, &fname);
  Split(to, &tdir, &tname);
  Dir* fd = FindDir(fdir);
  Dir* td = FindDir(tdir);
  if (fd == nullptr || td == nullptr || !fd->live.contains(fname)) {
    return absl::NotFoundError(absl::StrCat(from, ": not found"));
  }
  std::shared_ptr<File> f = fd->live[fname];
  fd->live.erase(fname);
  td->live[tname] = std::move(f);
  return absl::OkStatus();
}

absl::Status SimDisk::Truncate(const std::string& path, uint64_t size) {
  absl::Status s;
  if (Fail("truncate", path, &s)) return s;
  std::shared_ptr<File> f = FindFile(path);
  if (f == nullptr) return absl::NotFoundError(absl::StrCat(path, ": not found"));
  if (size < f->data.size()) f->data.resize(size);
  // ftruncate's metadata change becomes durable with the next fsync of the
  // file; we keep it simple and make a shrink durable at once only if it
  // does not cut into synced data the caller has not re-synced. Callers
  // (the WAL) sync after truncating.
  return absl::OkStatus();
}

absl::Status SimDisk::SyncDir(const std::string& dir) {
  if (trace_world_) {  // the determinism trace (set_trace)
    trace_world_->Note(TraceKind::kDiskSync, trace_node_, 0, dir);
  }
  pending_latency_ += faults_.sync_latency_ns;
  absl::Status s;
  if (Fail("fsync", dir, &s)) return s;
  Dir* d = FindDir(dir);
  if (d == nullptr) return absl::NotFoundError(absl::StrCat(dir, ": not found"));
  ++syncs_;
  d->durable = d->live;
  d->durable_exists = true;
  // Syncing a directory also makes its entry in the parent durable, which
  // is what a careful caller gets by syncing the parent; we model the
  // common "mkdir then fsync(dir) then fsync(parent)" as one step.
  return absl::OkStatus();
}

bool SimDisk::Exists(const std::string& path) {
  if (FindDir(path) != nullptr) return true;
  return FindFile(path) != nullptr;
}

void SimDisk::Crash() {
  ++epoch_;
  pending_latency_ = 0;
  std::map<std::string, Dir> after;
  for (auto& [path, d] : dirs_) {
    if (!d.durable_exists) continue;
    Dir nd;
    nd.durable_exists = true;
    for (auto& [name, f] : d.durable) {
      // The same inode may be reachable from several names (it never is
      // with our callers); each name gets its own post-crash image.
      std::string image = f->synced;
      if (f->data.size() > f->synced.size() &&
          f->data.compare(0, f->synced.size(), f->synced) == 0) {
        std::string_view extra =
            std::string_view(f->data).substr(f->synced.size());
        if (rng_.Chance(faults_.crash_keep_unsynced_probability)) {
          image.append(extra);
        } else if (rng_.Chance(faults_.crash_tear_probability)) {
          size_t keep = rng_.Uniform(extra.size() + 1);
          image.append(extra.substr(0, keep));
          // Garble a few of the last bytes of the torn write.
          size_t garble = std::min<size_t>(keep, rng_.Uniform(9));
          for (size_t i = 0; i < garble; ++i) {
            image[image.size() - 1 - i] = static_cast<char>(rng_.Next());
          }
        }
      }
      auto nf = std::make_shared<File>();
      nf->data = image;
      nf->synced = image;
      nd.live[name] = nf;
      nd.durable[name] = nf;
    }
    after[path] = std::move(nd);
  }
  dirs_ = std::move(after);
  dirs_[""].durable_exists = true;
}

void SimDisk::Wipe() {
  ++epoch_;
  pending_latency_ = 0;
  dirs_.clear();
  dirs_[""].durable_exists = true;
}

}  // namespace detcd::sim
