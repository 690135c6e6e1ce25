// A live view of a configuration prefix: every key under it, kept current
// by a watch, with a callback after each change.
//
// Start reads the prefix (one linearizable range) and watches from the
// revision after it, so the view moves from one revision of the store to
// the next as the server committed them: each callback sees the whole
// configuration as of one revision (the events of one transaction come in
// one response and are applied together). When the watch falls behind a
// compaction, the view is read again and the callback sees the result.
// The watcher's stream fails over to another endpoint like every Watcher.
#ifndef DETCD_CLIENT_CONFIG_WATCHER_H_
#define DETCD_CLIENT_CONFIG_WATCHER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "detcd/client.h"

namespace detcd::client {

struct ConfigSnapshot {
  // Keys without the prefix -> values.
  std::map<std::string, std::string> values;
  int64_t revision = 0;
};

class ConfigWatcher {
 public:
  using Callback = std::function<void(const ConfigSnapshot&)>;
  ConfigWatcher(Client* c, std::string prefix)
      : c_(c), prefix_(std::move(prefix)) {}
  ~ConfigWatcher();  // Stop
  ConfigWatcher(const ConfigWatcher&) = delete;
  ConfigWatcher& operator=(const ConfigWatcher&) = delete;

  // Loads the prefix (bounded by o's deadline), calls on_change with it,
  // then follows changes on a thread of its own, calling on_change (from
  // that thread) after each. Call once.
  absl::Status Start(Callback on_change, const CallOptions& o = {});
  ConfigSnapshot Current() const;
  // Waits until the view has reached revision rev (a change under the
  // prefix at rev or later, or a progress notification past it); false at
  // the deadline or once the watcher stopped.
  bool WaitForRevision(int64_t rev, absl::Time deadline);
  // Stops following; status() then tells why it stopped on its own, if
  // it did.
  void Stop();
  absl::Status status() const;

 private:
  absl::Status Load(const CallOptions& o);
  void Run();

  Client* c_;
  std::string prefix_;
  Callback on_change_;
  Canceller stop_;
  mutable absl::Mutex mu_;
  ConfigSnapshot current_ ABSL_GUARDED_BY(mu_);
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace detcd::client

#endif  // DETCD_CLIENT_CONFIG_WATCHER_H_
