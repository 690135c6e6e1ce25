#include "detcd/watch.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/time/clock.h"
#include "detcd/errors.h"

namespace detcd::client {
namespace {

namespace pb = etcdserverpb;

// clientv3's backoff between attempts to re-open a failed stream.
constexpr absl::Duration kMaxBackoff = absl::Milliseconds(100);

bool IsProgressNotify(const pb::WatchResponse& r) {
  return r.events_size() == 0 && !r.canceled() && !r.created() &&
         r.compact_revision() == 0 && r.header().revision() != 0;
}

// clientv3's isHaltErr for a stream error: everything but Unavailable and
// Internal (transient transport trouble) stops the watcher; so does "no
// leader" for a require-leader watch.
bool Halts(const absl::Status& s) {
  if (s.message() == kErrNoLeader) return true;
  return s.code() != absl::StatusCode::kUnavailable &&
         s.code() != absl::StatusCode::kInternal;
}

}  // namespace

Watcher::Watcher(Client* client, CallOptions opts, Canceller* parent)
    : client_(client), opts_(opts), canceller_(parent) {
  opts_.deadline = absl::InfiniteFuture();
  thread_ = std::thread([this] { Run(); });
}

Watcher::~Watcher() {
  Close();
  if (thread_.joinable()) thread_.join();
}

int Watcher::Add(const pb::WatchCreateRequest& req) {
  absl::MutexLock l(&mu_);
  int h = next_handle_++;
  watches_[h].req = req;
  unsent_.push_back(h);
  if (stream_) SendNextCreate();
  return h;
}

void Watcher::RequestProgress() {
  absl::MutexLock l(&mu_);
  if (!stream_) return;
  pb::WatchRequest r;
  r.mutable_progress_request();
  stream_->Send(r);
}

void Watcher::Close() {
  std::shared_ptr<WatchStream> s;
  {
    absl::MutexLock l(&mu_);
    if (closed_) return;
    closed_ = true;
    s = stream_;
  }
  canceller_.Cancel();
  if (s) s->Cancel();
}

absl::Status Watcher::status() const {
  absl::MutexLock l(&mu_);
  return status_;
}

bool Watcher::Next(WatchEvent* out) {
  absl::MutexLock l(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !queue_.empty() || closed_ || halted_;
  };
  mu_.Await(absl::Condition(&ready));
  if (queue_.empty()) return false;
  *out = std::move(queue_.front());
  queue_.pop_front();
  return true;
}

bool Watcher::Next(WatchEvent* out, absl::Time deadline) {
  absl::MutexLock l(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !queue_.empty() || closed_ || halted_;
  };
  mu_.AwaitWithDeadline(absl::Condition(&ready), deadline);
  if (queue_.empty()) return false;
  *out = std::move(queue_.front());
  queue_.pop_front();
  return true;
}

std::string Watcher::endpoint() const {
  absl::MutexLock l(&mu_);
  return stream_ ? stream_->endpoint() : std::string();
}

bool Watcher::AllDone() const {
  for (const auto& [h, w] : watches_) {
    if (!w.done) return false;
  }
  return true;
}

void Watcher::Deliver(int handle, const pb::WatchResponse& r,
                      std::string error, bool closing) {
  WatchEvent ev;
  ev.watch = handle;
  ev.response = r;
  ev.error = std::move(error);
  ev.closing = closing;
  queue_.push_back(std::move(ev));
}

void Watcher::SendNextCreate() {
  while (pending_.empty() && !unsent_.empty()) {
    int h = unsent_.front();
    unsent_.pop_front();
    auto it = watches_.find(h);
    if (it == watches_.end() || it->second.done) continue;
    pb::WatchRequest r;
    *r.mutable_create_request() = it->second.req;
    pending_.push_back(h);
    stream_->Send(r);
  }
}

bool Watcher::Connect() {
  pending_.clear();
  unsent_.clear();
  partial_.reset();
  for (auto& [h, w] : watches_) {
    if (w.done) continue;
    w.server_id = -1;
    w.created = false;
    unsent_.push_back(h);
  }
  SendNextCreate();
  return true;
}

void Watcher::Halt(const absl::Status& s) {
  halted_ = true;
  status_ = s;
  if (closed_) return;
  std::string text = ErrorText(s);
  for (auto& [h, w] : watches_) {
    if (w.done) continue;
    w.done = true;
    pb::WatchResponse r;
    r.set_canceled(true);
    Deliver(h, r, text, true);
  }
}

void Watcher::Dispatch(const pb::WatchResponse& in) {
  // Join fragments (clientv3 merges events of one watch id until a
  // response without the fragment flag).
  pb::WatchResponse r;
  if (partial_ && !in.created() && !in.canceled() &&
      partial_->watch_id() == in.watch_id()) {
    r = std::move(*partial_);
    partial_.reset();
    for (const auto& e : in.events()) *r.add_events() = e;
    r.set_fragment(in.fragment());
  } else {
    r = in;
  }
  if (r.fragment()) {
    partial_ = std::make_unique<pb::WatchResponse>(std::move(r));
    return;
  }
  partial_.reset();

  if (r.created()) {
    if (pending_.empty()) return;
    int h = pending_.front();
    pending_.pop_front();
    Watch& w = watches_[h];
    if (r.watch_id() == -1 || (r.canceled() && !r.cancel_reason().empty())) {
      // The server refused the watch.
      w.done = true;
      pb::WatchResponse c;
      c.set_canceled(true);
      Deliver(h, c, r.cancel_reason(), true);
    } else {
      w.server_id = r.watch_id();
      w.created = true;
      // A watch from "now" resumes after the revision it was created at.
      if (w.req.start_revision() == 0) {
        w.req.set_start_revision(r.header().revision() + 1);
      }
    }
    SendNextCreate();
    return;
  }
  if (r.watch_id() == -1 && IsProgressNotify(r)) {
    for (auto& [h, w] : watches_) {
      if (w.done || !w.created) continue;
      w.req.set_start_revision(
          std::max(w.req.start_revision(), r.header().revision() + 1));
      Deliver(h, r, "", false);
    }
    return;
  }
  int handle = -1;
  for (auto& [h, w] : watches_) {
    if (!w.done && w.created && w.server_id == r.watch_id()) handle = h;
  }
  if (handle < 0) {
    if (!r.canceled()) {
      // Events for a watch we do not know: cancel it on the server.
      pb::WatchRequest c;
      c.mutable_cancel_request()->set_watch_id(r.watch_id());
      stream_->Send(c);
    }
    return;
  }
  Watch& w = watches_[handle];
  if (r.canceled() && r.compact_revision() == 0) {
    // Cancelled by the server without compaction: the watch ends quietly.
    w.done = true;
    WatchEvent ev;
    ev.watch = handle;
    ev.has_response = false;
    ev.closing = true;
    queue_.push_back(std::move(ev));
    return;
  }
  if (r.events_size() > 0) {
    w.req.set_start_revision(
        r.events(r.events_size() - 1).kv().mod_revision() + 1);
  } else if (r.header().revision() != 0) {
    w.req.set_start_revision(
        std::max(w.req.start_revision(), r.header().revision() + 1));
  }
  if (r.compact_revision() != 0) {
    w.done = true;
    Deliver(handle, r, std::string(kErrCompacted), true);
    return;
  }
  Deliver(handle, r, "", false);
}

void Watcher::Run() {
  absl::MutexLock l(&mu_);
  absl::Duration backoff = absl::Milliseconds(1);
  while (!closed_ && !halted_) {
    if (!stream_) {
      auto has_work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return closed_ || !AllDone();
      };
      mu_.Await(absl::Condition(&has_work));
      if (closed_) break;
      mu_.Unlock();
      auto s = client_->OpenWatch(opts_, &canceller_);
      mu_.Lock();
      if (closed_) break;
      if (!s.ok()) {
        if (Halts(s.status())) {
          Halt(s.status());
          break;
        }
        continue;
      }
      stream_ = std::move(*s);
      Connect();
    }
    std::shared_ptr<WatchStream> st = stream_;
    mu_.Unlock();
    pb::WatchResponse r;
    bool ok = st->Read(&r);
    mu_.Lock();
    if (ok) {
      backoff = absl::Milliseconds(1);
      Dispatch(r);
      continue;
    }
    mu_.Unlock();
    absl::Status s = st->Finish();
    mu_.Lock();
    stream_.reset();
    if (closed_) break;
    if (s.ok()) s = absl::UnknownError("EOF");
    if (Halts(s)) {
      Halt(s);
      break;
    }
    // Transient: back off a little (25% more each time, up to 100 ms) and
    // resume every watch on a new stream.
    backoff = std::min(backoff + backoff / 4 + absl::Milliseconds(1),
                       kMaxBackoff);
    mu_.AwaitWithTimeout(absl::Condition(&closed_), backoff);
  }
  if (!halted_) halted_ = true;
}

}  // namespace detcd::client
