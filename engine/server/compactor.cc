#include "engine/server/compactor.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/mvcc/kv_store.h"
#include "engine/util/check.h"

namespace detcd::server {
namespace {

constexpr int64_t kHourNs = int64_t{3600} * 1'000'000'000;
// etcd's retryDivisor: a periodic compactor wakes 10 times per period.
constexpr int64_t kRetryDivisor = 10;

}  // namespace

absl::Status CompactorOptions::Validate() const {
  switch (mode) {
    case Mode::kOff:
      return absl::OkStatus();
    case Mode::kPeriodic:
      if (retention < kRetryDivisor) {
        return absl::InvalidArgumentError(
            "auto compaction: a periodic retention must be at least 10ns");
      }
      return absl::OkStatus();
    case Mode::kRevision:
      if (retention <= 0) {
        return absl::InvalidArgumentError(
            "auto compaction: a revision retention must be > 0");
      }
      if (revision_interval_ns <= 0) {
        return absl::InvalidArgumentError(
            "auto compaction: the revision interval must be > 0");
      }
      return absl::OkStatus();
  }
  return absl::InvalidArgumentError("auto compaction: unknown mode");
}

Compactor::Compactor(CompactorOptions opts, std::function<int64_t()> now,
                     std::function<int64_t()> rev, CompactFn compact, LogFn log)
    : opts_(opts),
      now_(std::move(now)),
      rev_(std::move(rev)),
      compact_(std::move(compact)),
      log_(std::move(log)) {
  DETCD_CHECK(opts_.Validate().ok());
  DETCD_CHECK(opts_.mode != CompactorOptions::Mode::kOff);
}

Compactor::~Compactor() { *alive_ = false; }

int64_t Compactor::retry_interval_ns() const {
  if (opts_.mode == CompactorOptions::Mode::kRevision) {
    return opts_.revision_interval_ns;
  }
  // etcd's getRetryInterval: min(period, 1h) / 10.
  return std::min(opts_.retention, kHourNs) / kRetryDivisor;
}

void Compactor::Tick(bool leader) {
  const int64_t now = now_();
  if (!started_) return Start(now);
  if (busy_ || now < next_wake_ns_) return;
  if (opts_.mode == CompactorOptions::Mode::kPeriodic) {
    WakePeriodic(now, leader);
  } else {
    WakeRevision(now, leader);
  }
}

void Compactor::Start(int64_t now) {
  started_ = true;
  if (opts_.mode == CompactorOptions::Mode::kPeriodic) {
    last_success_ns_ = now;
    wait_ns_ = opts_.retention;
    Sample();
  }
  next_wake_ns_ = now + retry_interval_ns();
}

void Compactor::Sample() {
  revs_.push_back(rev_());
  // etcd's getRetentions: period / interval + 1 samples, so the oldest is
  // the revision seen one period ago.
  const size_t keep =
      static_cast<size_t>(opts_.retention / retry_interval_ns()) + 1;
  while (revs_.size() > keep) revs_.pop_front();
}

void Compactor::WakePeriodic(int64_t now, bool leader) {
  if (!leader || now - last_success_ns_ < wait_ns_) {
    Sample();
    next_wake_ns_ = now + retry_interval_ns();
    return;
  }
  // After the first, compactions come every min(period, 1h).
  wait_ns_ = std::min(opts_.retention, kHourNs);
  Compact(now, revs_.front());
}

void Compactor::WakeRevision(int64_t now, bool leader) {
  next_wake_ns_ = now + opts_.revision_interval_ns;
  if (!leader) return;
  const int64_t rev = rev_() - opts_.retention;
  if (rev <= 0 || rev == prev_) return;
  Compact(now, rev);
}

void Compactor::Compact(int64_t now, int64_t revision) {
  busy_ = true;
  Log(Step::kStarting, revision, 0, absl::OkStatus());
  // etcd's "took": since the last success (periodic), or since this
  // compaction started (revision).
  const int64_t since =
      opts_.mode == CompactorOptions::Mode::kPeriodic ? last_success_ns_ : now;
  compact_(revision, [this, alive = alive_, revision, since](absl::Status s) {
    if (!*alive) return;
    busy_ = false;
    const int64_t at = now_();
    if (s.ok() || mvcc::IsErrCompacted(s)) {
      Log(Step::kCompleted, revision, at - since, absl::OkStatus());
      if (opts_.mode == CompactorOptions::Mode::kPeriodic) {
        last_success_ns_ = at;
      } else {
        prev_ = revision;
      }
    } else {
      Log(Step::kFailed, revision, 0, s);
    }
    // The loop goes round: a periodic compactor samples first.
    if (opts_.mode == CompactorOptions::Mode::kPeriodic) Sample();
    next_wake_ns_ = at + retry_interval_ns();
  });
}

void Compactor::Log(Step step, int64_t revision, int64_t took_ns,
                    const absl::Status& error) {
  if (!log_) return;
  const bool periodic = opts_.mode == CompactorOptions::Mode::kPeriodic;
  LogRecord r;
  r.level =
      step == Step::kFailed ? LogRecord::Level::kWarn : LogRecord::Level::kInfo;
  const char* kind = periodic ? "periodic" : "revision";
  switch (step) {
    case Step::kStarting:
      r.message = absl::StrCat("starting auto ", kind, " compaction");
      break;
    case Step::kCompleted:
      r.message = absl::StrCat("completed auto ", kind, " compaction");
      break;
    case Step::kFailed:
      r.message = absl::StrCat("failed auto ", kind, " compaction");
      break;
  }
  r.fields.emplace_back("revision", revision);
  if (periodic) {
    r.fields.emplace_back("compact-period", LogNanos{opts_.retention});
  } else {
    r.fields.emplace_back("revision-compaction-retention", opts_.retention);
  }
  if (step == Step::kCompleted)
    r.fields.emplace_back("took", LogNanos{took_ns});
  if (step == Step::kFailed) {
    r.fields.emplace_back("retry-interval", LogNanos{retry_interval_ns()});
    r.fields.emplace_back("error", std::string(error.message()));
  }
  // capnslog (etcd 3.4's default logger).
  switch (step) {
    case Step::kStarting:
      r.capnslog.emplace_back(absl::StrCat(
          "Starting auto-compaction at revision ", revision, " (retention: "));
      if (periodic) {
        r.capnslog.emplace_back(LogNanos{opts_.retention});
        r.capnslog.emplace_back(")");
      } else {
        r.capnslog.emplace_back(absl::StrCat(opts_.retention, " revisions)"));
      }
      break;
    case Step::kCompleted:
      r.capnslog.emplace_back(
          absl::StrCat("Finished auto-compaction at revision ", revision));
      break;
    case Step::kFailed:
      r.capnslog.emplace_back(
          absl::StrCat("Failed auto-compaction at revision ", revision, " (",
                       error.message(), ")\nRetry after "));
      r.capnslog.emplace_back(LogNanos{retry_interval_ns()});
      break;
  }
  log_(r);
}

}  // namespace detcd::server
