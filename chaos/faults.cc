#include "chaos/faults.h"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace detcd::chaos {

std::string WorldTarget::Describe() const {
  std::vector<std::string> parts;
  auto names = [](const std::set<int>& s) {
    std::vector<std::string> v;
    for (int i : s) v.push_back(absl::StrCat("m", i));
    return absl::StrJoin(v, ",");
  };
  if (!down.empty()) parts.push_back(absl::StrCat("down:", names(down)));
  if (!paused.empty()) parts.push_back(absl::StrCat("paused:", names(paused)));
  if (!disk_full.empty()) {
    parts.push_back(absl::StrCat("diskfull:", names(disk_full)));
  }
  if (!cuts.empty()) {
    std::vector<std::string> v;
    for (const auto& [a, b] : cuts) v.push_back(absl::StrCat("m", a, ">m", b));
    parts.push_back(absl::StrCat("cut:", absl::StrJoin(v, ",")));
  }
  return parts.empty() ? "all well" : absl::StrJoin(parts, " ");
}

Faults::Faults(NetnsCluster* c) : c_(c) {
  // sch_netem is a kernel option; probe it once.
  CommandResult r = c_->InNamespace(0, {"tc", "qdisc", "add", "dev", "eth0",
                                        "root", "netem", "delay", "0ms"});
  has_netem_ = r.exit_code == 0;
  if (has_netem_)
    c_->InNamespace(0, {"tc", "qdisc", "del", "dev", "eth0", "root"});
}

void Faults::Count(const std::string& what) {
  for (auto& [name, n] : counts_) {
    if (name == what) {
      ++n;
      return;
    }
  }
  counts_.emplace_back(what, 1);
}

absl::Status Faults::WriteRules() {
  absl::Status status;
  for (int b = 0; b < c_->size(); ++b) {
    std::string rules = absl::StrCat(
        "table inet detcd_chaos\n"
        "delete table inet detcd_chaos\n"
        "table inet detcd_chaos {\n"
        "  chain input {\n"
        "    type filter hook input priority 0; policy accept;\n");
    for (const auto& [from, to] : current_.cuts) {
      if (to == b)
        absl::StrAppend(&rules, "    ip saddr ", c_->ip(from), " drop\n");
    }
    if (loss_ > 0 && !has_netem_) {
      for (int a = 0; a < c_->size(); ++a) {
        if (a == b) continue;
        absl::StrAppend(&rules, "    ip saddr ", c_->ip(a),
                        " numgen random mod 1000 < ",
                        static_cast<int>(loss_ * 1000), " drop\n");
      }
    }
    absl::StrAppend(&rules, "  }\n}\n");
    const std::string path = absl::StrCat(c_->dir(), "/nft-m", b, ".nft");
    {
      std::ofstream f(path, std::ios::trunc);
      f << rules;
    }
    CommandResult r = c_->InNamespace(b, {"nft", "-f", path});
    if (r.exit_code != 0 && status.ok()) {
      status = absl::InternalError(
          absl::StrCat("nft in ", c_->ns(b), " failed: ", r.output));
    }
  }
  return status;
}

absl::Status Faults::Apply(const WorldTarget& t) {
  absl::Status status;
  auto keep = [&status](absl::Status s) {
    if (!s.ok() && status.ok()) status = std::move(s);
  };
  // The network first: a member restarted below comes back into the
  // partition the event describes, not into a healed one.
  if (t.cuts != current_.cuts) {
    current_.cuts = t.cuts;
    Count("cut-change");
    keep(WriteRules());
  }
  // Disks before processes: a member restarted below finds its disk as
  // the event left it.
  for (int i = 0; i < c_->size(); ++i) {
    const bool want = t.disk_full.count(i) > 0;
    if (want && !current_.disk_full.count(i)) keep(FillDisk(i));
    if (!want && current_.disk_full.count(i)) keep(FreeDisk(i));
  }
  current_.disk_full = t.disk_full;
  for (int i = 0; i < c_->size(); ++i) {
    const bool want_down = t.down.count(i) > 0;
    const bool want_paused = !want_down && t.paused.count(i) > 0;
    if (want_down) {
      if (c_->running(i)) {
        c_->Kill(i);
        Count("kill");
      }
      continue;
    }
    if (!c_->running(i)) {
      keep(c_->Start(i));
      Count("restart");
    }
    if (want_paused && !c_->paused(i)) {
      c_->Pause(i);
      Count("pause");
    } else if (!want_paused && c_->paused(i)) {
      c_->Resume(i);
      Count("resume");
    }
  }
  current_.down = t.down;
  current_.paused.clear();
  for (int i : t.paused) {
    if (!t.down.count(i)) current_.paused.insert(i);
  }
  return status;
}

absl::Status Faults::HealAll() {
  absl::Status s = SetNetwork(0, 0);
  absl::Status a = Apply(WorldTarget{});
  for (int i = 0; i < c_->size(); ++i) (void)FreeDisk(i);
  return s.ok() ? a : s;
}

absl::Status Faults::SetNetwork(double loss, int64_t delay_ms) {
  if (loss == loss_ && delay_ms == delay_ms_) return absl::OkStatus();
  loss_ = loss;
  delay_ms_ = delay_ms;
  if (loss > 0 || delay_ms > 0) Count("network");
  if (!has_netem_) {
    absl::Status s = WriteRules();
    if (s.ok() && delay_ms > 0) {
      return absl::UnimplementedError(
          "latency needs tc netem (sch_netem), which this kernel lacks: only "
          "the loss is applied");
    }
    return s;
  }
  absl::Status status;
  for (int i = 0; i < c_->size(); ++i) {
    c_->InNamespace(i, {"tc", "qdisc", "del", "dev", "eth0", "root"});
    if (loss <= 0 && delay_ms <= 0) continue;
    CommandResult r = c_->InNamespace(
        i, {"tc", "qdisc", "add", "dev", "eth0", "root", "netem", "delay",
            absl::StrCat(delay_ms, "ms"), absl::StrCat(delay_ms / 2 + 1, "ms"),
            "loss", absl::StrCat(loss * 100, "%")});
    if (r.exit_code != 0 && status.ok()) {
      status = absl::InternalError(absl::StrCat("tc netem: ", r.output));
    }
  }
  return status;
}

absl::Status Faults::FillDisk(int i) {
  if (c_->options().tmpfs_bytes <= 0) {
    return absl::FailedPreconditionError("disk faults need --tmpfs");
  }
  const std::string path = absl::StrCat(c_->data_dir(i), "/chaos.fill");
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return absl::InternalError(strerror(errno));
  struct statvfs st {};
  off_t off = lseek(fd, 0, SEEK_END);
  if (fstatvfs(fd, &st) == 0) {
    const off_t room = static_cast<off_t>(st.f_bavail) * st.f_frsize;
    if (room > 0 && fallocate(fd, 0, off, room) == 0) off += room;
  }
  // Whatever is left (fallocate rounds to pages): write until ENOSPC.
  static const char zeros[4096] = {};
  for (int k = 0; k < 100000; ++k) {
    if (write(fd, zeros, sizeof zeros) <= 0) break;
  }
  close(fd);
  Count("disk-fill");
  return absl::OkStatus();
}

absl::Status Faults::FreeDisk(int i) {
  if (c_->options().tmpfs_bytes <= 0) return absl::OkStatus();
  std::error_code ec;
  std::filesystem::remove(absl::StrCat(c_->data_dir(i), "/chaos.fill"), ec);
  return absl::OkStatus();
}

}  // namespace detcd::chaos
