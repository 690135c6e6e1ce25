// EtcdServer's maintenance duties that etcd runs from goroutines of their
// own: the auto compactor (compactor.h), the corruption checks
// (corruption_check.h) and the "alarm raised" / "alarm disarmed" lines.
// Kept apart from etcd_server.cc; everything here runs inside the member's
// inputs (Tick, OnMessage, request calls), like the rest of the engine.
#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/server/etcd_server.h"

namespace detcd::server {

void EtcdServer::InitMaintenance() {
  auto log = [this](const LogRecord& r) {
    if (log_) log_(r);
  };
  if (opts_.auto_compaction.mode != CompactorOptions::Mode::kOff) {
    compactor_ = std::make_unique<Compactor>(
        opts_.auto_compaction, [this] { return now(); },
        [this] { return sm_.kv().Rev(); },
        [this](int64_t revision, std::function<void(absl::Status)> done) {
          etcdserverpb::CompactionRequest r;
          r.set_revision(revision);
          Compact(r, [done = std::move(done)](
                         absl::StatusOr<etcdserverpb::CompactionResponse> c) {
            done(c.status());
          });
        },
        log);
  }
  CorruptionChecker::Hooks h;
  h.self = opts_.node.id;
  h.now = [this] { return now(); };
  h.local = [this](std::function<void(absl::StatusOr<KvHash>)> done) {
    // As a HashKV at the latest revision: in steps on a large store.
    auto job = std::make_unique<HashJob>();
    job->done = [done = std::move(done)](
                    absl::StatusOr<etcdserverpb::HashKVResponse> r) {
      if (!r.ok()) return done(r.status());
      done(KvHash{r->hash(), r->hash_revision(), r->compact_revision()});
    };
    if (StepHash(*job)) return;
    hash_jobs_.push_back(std::move(job));
  };
  h.ask_peers = [this](int64_t revision,
                       std::function<void(std::vector<PeerHash>)> done) {
    AskPeersHashKV(revision, std::move(done));
  };
  h.linearizable_read = [this](std::function<void(absl::Status)> done) {
    LinearizableRead(std::move(done));
  };
  h.raise_corrupt = [this] {
    // etcd 3.4.23 raises it for member 0: it cannot tell which one is
    // wrong.
    etcdserverpb::AlarmRequest req;
    req.set_action(etcdserverpb::AlarmRequest::ACTIVATE);
    req.set_memberid(0);
    req.set_alarm(etcdserverpb::CORRUPT);
    Alarm(req, [](absl::StatusOr<etcdserverpb::AlarmResponse>) {
      // Lost: the next check finds the mismatch again.
    });
  };
  h.log = log;
  corrupt_ =
      std::make_unique<CorruptionChecker>(opts_.corrupt_check, std::move(h));
}

void EtcdServer::MaintenanceTick() {
  if (node_->failed()) return;
  const bool leader = node_->is_leader();
  if (compactor_) compactor_->Tick(leader);
  corrupt_->Tick(leader);
  if (log_) LogAlarmChanges();
}

void EtcdServer::CheckInitialHashKV(std::function<void(absl::Status)> done) {
  corrupt_->CheckInitial(opts_.node.request_timeout_ticks * opts_.tick_ns,
                         std::move(done));
}

void EtcdServer::AskPeersHashKV(
    int64_t revision, std::function<void(std::vector<PeerHash>)> done) {
  struct Gather {
    std::vector<PeerHash> answers;  // by id, as the membership lists them
    size_t left = 0;
    std::function<void(std::vector<PeerHash>)> done;
  };
  auto g = std::make_shared<Gather>();
  for (const MemberInfo& m : sm_.membership().List()) {
    // etcd skips members without peer URLs (it has nowhere to send); the
    // peer channel addresses members by id, so every other one is asked.
    if (m.id == opts_.node.id) continue;
    PeerHash p;
    p.id = m.id;
    p.endpoints = m.peer_urls;
    g->answers.push_back(std::move(p));
  }
  std::sort(g->answers.begin(), g->answers.end(),
            [](const PeerHash& a, const PeerHash& b) { return a.id < b.id; });
  g->left = g->answers.size();
  g->done = std::move(done);
  if (g->left == 0) return g->done({});
  etcdserverpb::HashKVRequest req;
  req.set_revision(revision);
  const std::string bytes = req.SerializeAsString();
  for (size_t i = 0; i < g->answers.size(); ++i) {
    ForwardTo(g->answers[i].id, kHashKV, bytes,
              [g, i](absl::Status s, std::string_view result) {
                etcdserverpb::HashKVResponse resp;
                if (s.ok()) s = DecodeResult(result, &resp);
                PeerHash& p = g->answers[i];
                p.status = s;
                if (s.ok()) {
                  p.hash = KvHash{resp.hash(), resp.header().revision(),
                                  resp.compact_revision()};
                }
                if (--g->left == 0) g->done(std::move(g->answers));
              });
  }
}

void EtcdServer::ServeHashKV(const std::string& request,
                             std::function<void(std::string)> answer) {
  // etcd's peer /members/hashkv handler: any member answers from its own
  // store, leader or not.
  etcdserverpb::HashKVRequest r;
  if (!r.ParseFromString(request)) return;  // garbage: the asker times out
  HashKV(r, [answer = std::move(answer)](
                absl::StatusOr<etcdserverpb::HashKVResponse> resp) {
    answer(EncodeResult(resp.status(), resp.ok() ? &*resp : nullptr));
  });
}

void EtcdServer::LogAlarmChanges() {
  std::vector<etcdserverpb::AlarmMember> now_active =
      sm_.alarms().Get(etcdserverpb::NONE);
  if (!alarms_seen_) {
    // Alarms restored at start are not news (etcd logs at activation).
    alarms_seen_ = true;
    logged_alarms_ = std::move(now_active);
    return;
  }
  auto count = [](const std::vector<etcdserverpb::AlarmMember>& v,
                  etcdserverpb::AlarmType t) {
    return std::count_if(v.begin(), v.end(),
                         [t](const auto& a) { return a.alarm() == t; });
  };
  for (etcdserverpb::AlarmType t :
       {etcdserverpb::NOSPACE, etcdserverpb::CORRUPT}) {
    const auto before = count(logged_alarms_, t);
    const auto after = count(now_active, t);
    if ((before == 0) == (after == 0)) continue;
    // etcd logs when the first alarm of a type is raised and when the last
    // one is cleared.
    const std::vector<etcdserverpb::AlarmMember>& v =
        after > 0 ? now_active : logged_alarms_;
    uint64_t from = 0;
    for (const auto& a : v) {
      if (a.alarm() == t) from = a.memberid();
    }
    const std::string name = etcdserverpb::AlarmType_Name(t);
    LogRecord r;
    r.level = LogRecord::Level::kWarn;
    r.message = after > 0 ? "alarm raised" : "alarm disarmed";
    r.fields.emplace_back("alarm", name);
    r.fields.emplace_back("from", HexId(from));
    if (after > 0) {
      r.capnslog = {
          absl::StrCat("alarm ", name, " raised by peer ", HexId(from))};
    } else {
      r.capnslog = {absl::StrCat("alarm disarmed {Action:DEACTIVATE MemberID:",
                                 from, " Alarm:", name, "}")};
    }
    log_(r);
  }
  logged_alarms_ = std::move(now_active);
}

}  // namespace detcd::server
