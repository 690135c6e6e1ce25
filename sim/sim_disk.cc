#include "sim/sim_disk.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/util/check.h"

namespace detcd::sim {
namespace {

uint64_t PageFloor(uint64_t off) {
  return off / SimDisk::kPageBytes * SimDisk::kPageBytes;
}

// Writes bytes at offset off of image, zero-filling any gap before it.
void Put(std::string& image, uint64_t off, std::string_view bytes) {
  if (image.size() < off) image.resize(off, '\0');
  const size_t overlap = std::min<size_t>(bytes.size(), image.size() - off);
  image.replace(off, overlap, bytes.substr(0, overlap));
  image.append(bytes.substr(overlap));
}

}  // namespace

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
    return disk_->SyncOrHold(file_, path_);
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

SimDisk::SimDisk(env::SeededRng rng, Decisions* decisions,
                 std::string_view name)
    : rng_(std::move(rng), decisions, name) {
  dirs_[""].durable_entry = true;
}

SimDisk::~SimDisk() = default;

void SimDisk::OnIo(Io io, const std::string& path, std::string_view bytes) {
  if (trace_world_ == nullptr) return;  // the determinism trace (set_trace)
  switch (io) {
    case Io::kWrite:
      trace_world_->Note(TraceKind::kDiskWrite, trace_node_,
                         TraceHashBytes(path), bytes);
      break;
    case Io::kSync:
      trace_world_->Note(TraceKind::kDiskSync, trace_node_, bytes.size(),
                         path);
      break;
    case Io::kSyncDir:
      trace_world_->Note(TraceKind::kDiskSync, trace_node_, 0, path);
      break;
  }
}

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
  if (dead_) {
    *out = absl::InternalError(
        absl::StrCat("EIO: ", op, " ", path, ": the power is off"));
    return true;
  }
  if (faults_.eio_probability <= 0 || !rng_.Chance(faults_.eio_probability)) {
    return false;
  }
  ++injected_errors_;
  *out = absl::InternalError(absl::StrCat("EIO: ", op, " ", path));
  return true;
}

bool SimDisk::PowerCut(const std::string& path, absl::Status* out) {
  if (!faults_.power_cut_at_next_sync) return false;
  faults_.power_cut_at_next_sync = false;
  dead_ = true;
  ++injected_errors_;
  *out = absl::InternalError(
      absl::StrCat("EIO: fsync ", path, ": power cut during fsync"));
  return true;
}

std::shared_ptr<SimDisk::File> SimDisk::NewFile() {
  auto f = std::make_shared<File>();
  f->inode = next_inode_++;
  return f;
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

bool SimDisk::DirSurvives(const std::string& dir) const {
  std::string d = dir;
  for (;;) {
    auto it = dirs_.find(d);
    if (it == dirs_.end() || !it->second.durable_entry) return false;
    if (d.empty()) return true;
    size_t slash = d.rfind('/');
    d = slash == std::string::npos ? std::string() : d.substr(0, slash);
  }
}

uint64_t SimDisk::used_bytes() const {
  uint64_t n = 0;
  for (const auto& [path, d] : dirs_) {
    for (const auto& [name, f] : d.live) n += f->data.size();
  }
  return n;
}

int64_t SimDisk::pending_latency() const {
  int64_t stall = 0;
  if (now_ && stall_until_ > 0) {
    stall = std::max<int64_t>(0, stall_until_ - now_());
  }
  return pending_latency_ + stall;
}

void SimDisk::StallUntil(int64_t until_ns) {
  if (until_ns > stall_until_) {
    stall_until_ = until_ns;
    ++injected_errors_;
  }
}

absl::Status SimDisk::AppendTo(File& f, std::string_view data,
                               const std::string& path) {
  CompleteHeldSyncs();
  OnIo(Io::kWrite, path, data);
  pending_latency_ += faults_.write_latency_ns;
  const uint64_t old_size = f.data.size();
  // Appends land after what was appended: over the fill's zeros, if any.
  const uint64_t at = old_size - f.fill;
  auto write = [&f, at](std::string_view bytes) {
    if (bytes.empty()) return;
    Put(f.data, at, bytes);
    f.fill -= std::min<uint64_t>(f.fill, bytes.size());
    f.dirty_from = std::min(f.dirty_from, at);
  };
  absl::Status s;
  if (Fail("write", path, &s)) {
    // A failed write may still have put part of the data in the page cache.
    if (!dead_ && !data.empty() && rng_.Chance(0.5)) {
      write(data.substr(0, rng_.Uniform(data.size())));
    }
    return s;
  }
  const uint64_t growth = data.size() - std::min<uint64_t>(f.fill, data.size());
  if (capacity_ != 0 && used_bytes() + growth > capacity_) {
    ++injected_errors_;
    return absl::ResourceExhaustedError(
        absl::StrCat("ENOSPC: write ", path, ": no space left on device"));
  }
  write(data);
  return absl::OkStatus();
}

void SimDisk::WriteBack(File& f, uint64_t from, uint64_t to) {
  to = std::min<uint64_t>(to, f.data.size());
  if (from >= to) return;
  std::string_view bytes = std::string_view(f.data).substr(from, to - from);
  // Bytes written over the fill's zeros only grow the file's content.
  const uint64_t old_end = std::min<uint64_t>(f.synced.size(), f.zero_from);
  if (from < old_end) {
    const size_t n = std::min<size_t>(bytes.size(), old_end - from);
    if (f.synced.compare(from, n, bytes.substr(0, n)) != 0) ++f.rewrites;
  }
  Put(f.synced, from, bytes);
  if (f.zero_from != kClean && to > f.zero_from) {
    f.zero_from = to >= f.synced.size() ? kClean : to;
  }
  ++durable_version_;
}

absl::Status SimDisk::SyncOrHold(const std::shared_ptr<File>& f,
                                 const std::string& path) {
  if (!holding_syncs_) return SyncFile(*f, path);
  // Whether the fsync fails is decided now, so the caller sees its error
  // as from a real fsync; only the write-back (durability) waits for the
  // completion.
  absl::Status s;
  if (SyncFaults(*f, path, &s)) return s;
  held_syncs_.emplace_back(f, path);
  ++held_sync_count_;
  return absl::OkStatus();
}

void SimDisk::CompleteHeldSyncs() {
  if (!holding_syncs_) return;
  WriteBackHeld(held_syncs_);
  held_syncs_.clear();
}

void SimDisk::Submit(std::function<absl::Status()> work,
                     std::function<void(absl::Status)> done) {
  DETCD_CHECK_MSG(scheduler_ != nullptr, "SimDisk::Submit needs a scheduler");
  DETCD_CHECK_MSG(!holding_syncs_, "SimDisk::Submit inside a Submit");
  const int64_t charged = pending_latency_;
  holding_syncs_ = true;
  held_sync_count_ = 0;
  absl::Status status = work();
  holding_syncs_ = false;
  std::vector<std::pair<std::shared_ptr<File>, std::string>> syncs =
      std::move(held_syncs_);
  held_syncs_.clear();
  // The write's own latency delays its completion, not what the node
  // sends meanwhile (a stall delays both).
  int64_t delay =
      pending_latency() - charged +
      static_cast<int64_t>(held_sync_count_) * faults_.sync_latency_ns;
  pending_latency_ = charged;
  const uint64_t id = next_outstanding_++;
  outstanding_.push_back({id, std::move(syncs)});
  scheduler_(std::max<int64_t>(0, delay), [this, epoch = epoch_, id,
                                           status = std::move(status),
                                           done = std::move(done)] {
    // A crash before the completion: what reached the platters
    // was the crash's decision, and nobody waits any more.
    if (epoch != epoch_) return;
    auto it = std::find_if(outstanding_.begin(), outstanding_.end(),
                           [id](const Outstanding& o) { return o.id == id; });
    std::vector<std::pair<std::shared_ptr<File>, std::string>> held;
    if (it != outstanding_.end()) {  // else Drain wrote them
      held = std::move(it->syncs);
      outstanding_.erase(it);
    }
    if (dead_) {  // the power failed meanwhile: nothing written
      done(absl::InternalError("EIO: fsync: power cut"));
      return;
    }
    WriteBackHeld(held);
    done(status);
  });
}

void SimDisk::WriteBackHeld(
    const std::vector<std::pair<std::shared_ptr<File>, std::string>>& s) {
  for (const auto& [f, path] : s) {
    OnIo(Io::kSync, path, f->data);
    WriteBackAll(*f);
  }
}

void SimDisk::Drain() {
  std::vector<Outstanding> all = std::move(outstanding_);
  outstanding_.clear();
  if (dead_) return;  // the power failed: nothing more is written
  for (const Outstanding& o : all) WriteBackHeld(o.syncs);
}

absl::Status SimDisk::SyncFile(File& f, const std::string& path) {
  OnIo(Io::kSync, path, f.data);
  pending_latency_ += faults_.sync_latency_ns;
  absl::Status s;
  if (SyncFaults(f, path, &s)) return s;
  WriteBackAll(f);
  return absl::OkStatus();
}

bool SimDisk::SyncFaults(File& f, const std::string& path, absl::Status* out) {
  absl::Status& s = *out;
  if (PowerCut(path, &s)) return true;  // the dirty pages stay in flight
  if (Fail("fsync", path, &s)) {
    if (!dead_ && f.dirty_from != kClean) {
      // Linux: the pages that could not be written are marked clean anyway
      // and never retried; only some made it.
      for (uint64_t p = PageFloor(f.dirty_from); p < f.data.size();
           p += kPageBytes) {
        if (rng_.Chance(faults_.failed_sync_write_probability)) {
          WriteBack(f, p, p + kPageBytes);
        }
      }
      f.dirty_from = kClean;
    }
    return true;
  }
  return false;
}

void SimDisk::WriteBackAll(File& f) {
  ++syncs_;
  if (f.dirty_from != kClean) {
    WriteBack(f, PageFloor(f.dirty_from), f.data.size());
    f.dirty_from = kClean;
  }
  // The size too (a truncation, or pages a failed sync lost at the end,
  // which now read as zeros).
  if (f.synced.size() != f.data.size()) {
    if (f.synced.size() > f.data.size()) ++f.rewrites;
    f.synced.resize(f.data.size(), '\0');
    ++durable_version_;
  }
  // Both images are equal now, the fill's zeros their tail.
  f.zero_from = f.fill > 0 ? f.synced.size() - f.fill : kClean;
  FillAhead(f);
}

void SimDisk::FillAhead(File& f) {
  if (!f.fills || f.fill >= fill_ahead_bytes_) return;
  uint64_t add = fill_ahead_bytes_ - f.fill;
  if (capacity_ != 0) {
    const uint64_t used = used_bytes();
    add = used >= capacity_ ? 0 : std::min(add, capacity_ - used);
  }
  if (add == 0) return;
  // synced == data here (a successful sync just wrote everything back).
  if (f.zero_from == kClean) f.zero_from = f.synced.size();
  f.data.append(add, '\0');
  f.synced.append(add, '\0');
  f.fill += add;
  ++durable_version_;
}

absl::StatusOr<std::unique_ptr<env::WritableFile>> SimDisk::OpenAppend(
    const std::string& path) {
  CompleteHeldSyncs();
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
    f = NewFile();
    d->live[name] = f;
  }
  f->fills = true;
  return std::unique_ptr<env::WritableFile>(new SimFile(this, f, path));
}

absl::StatusOr<std::unique_ptr<env::WritableFile>> SimDisk::Create(
    const std::string& path) {
  CompleteHeldSyncs();
  absl::Status s;
  if (Fail("create", path, &s)) return s;
  std::string dir, name;
  Split(path, &dir, &name);
  Dir* d = FindDir(dir);
  if (d == nullptr) {
    return absl::NotFoundError(absl::StrCat(path, ": no such directory"));
  }
  // A new inode: the old one (if any) stays what the durable entry points at.
  auto f = NewFile();
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
  CompleteHeldSyncs();
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
  CompleteHeldSyncs();
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
  CompleteHeldSyncs();
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
  CompleteHeldSyncs();
  absl::Status s;
  if (Fail("truncate", path, &s)) return s;
  std::shared_ptr<File> f = FindFile(path);
  if (f == nullptr) return absl::NotFoundError(absl::StrCat(path, ": not found"));
  if (size < f->data.size()) {
    const uint64_t cut = f->data.size() - size;
    f->fill -= std::min(f->fill, cut);
    f->data.resize(size);
    if (f->dirty_from != kClean && f->dirty_from >= size) {
      f->dirty_from = kClean;
    }
  }
  // The new size reaches the disk with the next Sync of the file (callers,
  // the WAL, sync after truncating); a crash before it keeps the old size.
  return absl::OkStatus();
}

absl::Status SimDisk::SyncDir(const std::string& dir) {
  CompleteHeldSyncs();
  OnIo(Io::kSyncDir, dir, {});
  pending_latency_ += faults_.sync_latency_ns;
  absl::Status s;
  if (PowerCut(dir, &s)) return s;
  if (Fail("fsync", dir, &s)) return s;
  Dir* d = FindDir(dir);
  if (d == nullptr) return absl::NotFoundError(absl::StrCat(dir, ": not found"));
  ++syncs_;
  ++durable_version_;
  d->durable = d->live;
  // The entries of its subdirectories are entries of this directory too.
  const std::string prefix = dir.empty() ? "" : dir + "/";
  for (auto it = dirs_.lower_bound(prefix); it != dirs_.end(); ++it) {
    if (it->first.compare(0, prefix.size(), prefix) != 0) break;
    if (it->first.size() == prefix.size()) continue;
    if (it->first.find('/', prefix.size()) == std::string::npos) {
      it->second.durable_entry = true;
    }
  }
  return absl::OkStatus();
}

bool SimDisk::Exists(const std::string& path) {
  if (FindDir(path) != nullptr) return true;
  return FindFile(path) != nullptr;
}

std::vector<SimDisk::SyncedFile> SimDisk::SyncedFiles(
    const std::string& dir) const {
  std::vector<SyncedFile> out;
  if (!DirSurvives(dir)) return out;
  const Dir& d = dirs_.at(dir);
  out.reserve(d.durable.size());
  for (const auto& [name, f] : d.durable) {
    out.push_back(SyncedFile{name, f->synced, f->inode, f->rewrites});
  }
  return out;
}

std::string SimDisk::CrashImage(const File& f, const CrashModel& m) {
  std::string image = f.synced;
  if (f.dirty_from == kClean) return image;
  bool lost = false;
  for (uint64_t p = PageFloor(f.dirty_from); p < f.data.size();
       p += kPageBytes) {
    const uint64_t end = std::min<uint64_t>(p + kPageBytes, f.data.size());
    std::string_view page = std::string_view(f.data).substr(p, end - p);
    if (rng_.Chance(m.keep)) {
      Put(image, p, page);
      continue;
    }
    lost = true;
    if (!rng_.Chance(m.tear)) continue;
    // Torn: each sector written or not; now and then one half written,
    // its last bytes garbage.
    for (uint64_t s = p; s < end; s += kSectorBytes) {
      std::string_view sector = std::string_view(f.data).substr(
          s, std::min<uint64_t>(kSectorBytes, end - s));
      const uint64_t dice = rng_.Uniform(20);
      if (dice < 9) {
        Put(image, s, sector);
      } else if (dice == 19) {
        const size_t keep = rng_.Uniform(sector.size() + 1);
        Put(image, s, sector.substr(0, keep));
        const size_t garble = std::min<size_t>(keep, rng_.Uniform(9));
        for (size_t i = 0; i < garble; ++i) {
          const uint64_t at = s + keep - 1 - i;
          // Synced bytes are never damaged.
          if (at >= f.synced.size()) image[at] = static_cast<char>(rng_.Next());
        }
      }
    }
  }
  if (lost && image.size() < f.data.size() && rng_.Chance(m.zero_fill)) {
    image.resize(f.data.size(), '\0');
  }
  return image;
}

void SimDisk::CrashWith(const CrashModel& m) {
  ++epoch_;
  outstanding_.clear();  // their completions never come
  ++durable_version_;
  pending_latency_ = 0;
  dead_ = false;
  std::map<std::string, Dir> after;
  // Parents sort before their children, so a directory's parent has been
  // decided when the directory is.
  for (auto& [path, d] : dirs_) {
    if (!d.durable_entry) continue;
    if (!path.empty()) {
      size_t slash = path.rfind('/');
      std::string parent =
          slash == std::string::npos ? std::string() : path.substr(0, slash);
      if (!after.contains(parent)) continue;
    }
    Dir nd;
    nd.durable_entry = true;
    for (auto& [name, f] : d.durable) {
      // The same inode may be reachable from several names (it never is
      // with our callers); each name gets its own post-crash image.
      auto nf = NewFile();
      nf->data = CrashImage(*f, m);
      nf->synced = nf->data;
      nd.live[name] = nf;
      nd.durable[name] = nf;
    }
    after[path] = std::move(nd);
  }
  dirs_ = std::move(after);
  dirs_[""].durable_entry = true;
}

void SimDisk::Crash() {
  CrashWith(CrashModel{faults_.crash_keep_unsynced_probability,
                       faults_.crash_tear_probability,
                       faults_.crash_zero_fill_probability});
}

void SimDisk::CrashRandomly() {
  CrashModel m;
  const uint64_t dice = rng_.Uniform(10);
  if (dead_) {
    // The power failed in the middle of an fsync: its pages were on their
    // way to the platters, and a write cut short tears.
    m.keep = rng_.UniformDouble() * 0.5;
    m.tear = 0.5 + rng_.UniformDouble() * 0.5;
  } else if (dice < 2) {
    // Nothing unsynced reached the disk.
  } else if (dice < 3) {
    m.keep = 1;  // everything did
  } else {
    m.keep = rng_.UniformDouble();
    m.tear = rng_.UniformDouble() * 0.6;
    m.zero_fill = 0.2;
  }
  CrashWith(m);
}

void SimDisk::Wipe() {
  ++epoch_;
  outstanding_.clear();  // their completions never come
  ++durable_version_;
  pending_latency_ = 0;
  dead_ = false;
  dirs_.clear();
  dirs_[""].durable_entry = true;
}

}  // namespace detcd::sim
