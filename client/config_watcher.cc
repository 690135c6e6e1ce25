#include "detcd/config_watcher.h"

#include <algorithm>
#include <utility>

#include "detcd/errors.h"
#include "detcd/kv.h"
#include "detcd/watch.h"

namespace detcd::client {

namespace pb = etcdserverpb;

ConfigWatcher::~ConfigWatcher() { Stop(); }

absl::Status ConfigWatcher::Load(const CallOptions& o) {
  GetOptions g;
  g.prefix = true;
  auto r = c_->Get(prefix_, g, o);
  if (!r.ok()) return r.status();
  ConfigSnapshot snap;
  snap.revision = r->header().revision();
  for (const auto& kv : r->kvs()) {
    snap.values[kv.key().substr(prefix_.size())] = kv.value();
  }
  {
    absl::MutexLock l(&mu_);
    current_ = snap;
  }
  on_change_(snap);
  return absl::OkStatus();
}

absl::Status ConfigWatcher::Start(Callback on_change, const CallOptions& o) {
  if (thread_.joinable()) {
    return absl::FailedPreconditionError("ConfigWatcher already started");
  }
  on_change_ = std::move(on_change);
  if (absl::Status s = Load(o); !s.ok()) return s;
  thread_ = std::thread([this] { Run(); });
  return absl::OkStatus();
}

void ConfigWatcher::Run() {
  absl::Status why;
  for (;;) {
    Watcher w(c_, {}, &stop_);
    pb::WatchCreateRequest req;
    req.set_key(prefix_);
    req.set_range_end(PrefixEnd(prefix_));
    req.set_start_revision(Current().revision + 1);
    w.Add(req);
    WatchEvent ev;
    bool reload = false;
    while (!reload && w.Next(&ev)) {
      if (ev.closing) {
        if (ev.response.compact_revision() != 0) {
          reload = true;  // fell behind a compaction: read it all again
        } else {
          why = ev.error.empty() ? PlainError("config watch ended")
                                 : PlainError(ev.error);
        }
        break;
      }
      ConfigSnapshot snap = Current();
      if (ev.response.events_size() == 0) {
        // A progress notification: nothing changed up to its revision.
        absl::MutexLock l(&mu_);
        current_.revision =
            std::max(current_.revision, ev.response.header().revision());
        continue;
      }
      for (const auto& e : ev.response.events()) {
        std::string k = e.kv().key().substr(prefix_.size());
        if (e.type() == mvccpb::Event::PUT) {
          snap.values[k] = e.kv().value();
        } else {
          snap.values.erase(k);
        }
      }
      snap.revision = ev.response.header().revision();
      {
        absl::MutexLock l(&mu_);
        current_ = snap;
      }
      on_change_(snap);
    }
    if (stop_.cancelled()) break;
    if (!reload) {
      if (why.ok()) why = w.status();
      break;
    }
    // Retry the load until it works or we are stopped.
    absl::Status s;
    while (!(s = Load({})).ok() && !stop_.WaitForCancel(absl::Seconds(1))) {
    }
    if (!s.ok()) break;
  }
  absl::MutexLock l(&mu_);
  stopped_ = true;
  if (!stop_.cancelled()) status_ = why.ok() ? PlainError("stopped") : why;
}

ConfigSnapshot ConfigWatcher::Current() const {
  absl::MutexLock l(&mu_);
  return current_;
}

bool ConfigWatcher::WaitForRevision(int64_t rev, absl::Time deadline) {
  absl::MutexLock l(&mu_);
  auto reached = [this, rev]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return current_.revision >= rev || stopped_;
  };
  mu_.AwaitWithDeadline(absl::Condition(&reached), deadline);
  return current_.revision >= rev;
}

void ConfigWatcher::Stop() {
  stop_.Cancel();
  if (thread_.joinable()) thread_.join();
}

absl::Status ConfigWatcher::status() const {
  absl::MutexLock l(&mu_);
  return status_;
}

}  // namespace detcd::client
