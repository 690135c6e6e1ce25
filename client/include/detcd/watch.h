// Watches over one gRPC Watch stream, with etcd clientv3's semantics:
//
//  - several watches share the stream; each is created in turn (the
//    server answers creates in order, which is how a created response is
//    matched to its request);
//  - the stream is re-opened on another endpoint when it fails with
//    Unavailable (a member died or was partitioned), and every open watch
//    is re-created from the revision after the last one it delivered, so
//    no event is lost or repeated across the switch;
//  - responses split in fragments are joined;
//  - a progress notification from the server (watch id -1) goes to every
//    watch;
//  - created responses are not delivered (clientv3 hides them);
//  - a watch the server cancels with a compacted revision delivers that
//    response (CompactRevision set) and ends; any other cancel ends it
//    silently.
//
// A halting error (anything but Unavailable, e.g. "etcdserver: no leader"
// for a require-leader watch, or the client's own cancellation) ends every
// watch: each gets a final response with canceled set and Next reports the
// error.
#ifndef DETCD_CLIENT_WATCH_H_
#define DETCD_CLIENT_WATCH_H_

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <memory>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "detcd/client.h"
#include "etcdserverpb/rpc.pb.h"

namespace detcd::client {

struct WatchEvent {
  int watch = -1;  // handle from Watcher::Add
  // False for the silent end of a watch the server cancelled (nothing to
  // show, only `closing`).
  bool has_response = true;
  // The response as clientv3 presents it (fragments joined).
  etcdserverpb::WatchResponse response;
  // clientv3's WatchResponse.Err() text when the watch ended by error
  // (compaction, a refused create, a halting stream error); else empty.
  std::string error;
  // The watch ends with this event.
  bool closing = false;
};

class Watcher {
 public:
  // opts.require_leader as clientv3's WithRequireLeader; opts.deadline is
  // ignored (watches last until closed). Cancelling `parent` ends the
  // watcher as a halting error ("context canceled").
  explicit Watcher(Client* client, CallOptions opts = {},
                   Canceller* parent = nullptr);
  ~Watcher();
  Watcher(const Watcher&) = delete;
  Watcher& operator=(const Watcher&) = delete;

  // Starts a watch; returns its handle. Thread-safe.
  int Add(const etcdserverpb::WatchCreateRequest& req);
  // Asks the server for a progress notification (delivered to every
  // watch). Thread-safe.
  void RequestProgress();
  // Blocks for the next response of any watch. Returns false once every
  // watch has ended and its responses were taken, or after Close.
  bool Next(WatchEvent* out);
  // The same, giving up at deadline: false with absl::Now() >= deadline
  // means nothing arrived in time (the watches go on).
  bool Next(WatchEvent* out, absl::Time deadline);
  // The endpoint of the current stream ("" between streams).
  std::string endpoint() const;
  // Ends all watches; Next returns false. Thread-safe.
  void Close();
  // Why the watcher stopped (OK after Close or when every watch ended).
  absl::Status status() const;

 private:
  struct Watch {
    etcdserverpb::WatchCreateRequest req;  // start_revision kept current
    int64_t server_id = -1;
    bool done = false;
    bool created = false;
  };

  void Run();
  // Opens a stream and sends every open watch's create request.
  bool Connect() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sends the next queued create request if none is awaiting its answer.
  void SendNextCreate() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Dispatch(const etcdserverpb::WatchResponse& r)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Deliver(int handle, const etcdserverpb::WatchResponse& r,
               std::string error, bool closing)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Halt(const absl::Status& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool AllDone() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Client* client_;
  CallOptions opts_;
  Canceller canceller_;
  mutable absl::Mutex mu_;
  std::map<int, Watch> watches_ ABSL_GUARDED_BY(mu_);
  // Handles whose create request was sent on the current stream and not
  // yet answered (at most one, as clientv3), and those waiting to be sent.
  std::deque<int> pending_ ABSL_GUARDED_BY(mu_);
  std::deque<int> unsent_ ABSL_GUARDED_BY(mu_);
  std::deque<WatchEvent> queue_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<WatchStream> stream_ ABSL_GUARDED_BY(mu_);
  // The fragments of a response being joined.
  std::unique_ptr<etcdserverpb::WatchResponse> partial_ ABSL_GUARDED_BY(mu_);
  int next_handle_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool halted_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace detcd::client

#endif  // DETCD_CLIENT_WATCH_H_
