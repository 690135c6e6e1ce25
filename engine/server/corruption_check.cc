#include "engine/server/corruption_check.h"

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/mvcc/kv_store.h"

namespace detcd::server {
namespace {

using Level = LogRecord::Level;

// Go's %q of a string (the ASCII text etcd's URLs and errors are).
std::string GoQuote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

// Go's %q of a []string: ["a" "b"].
std::string GoQuoteList(const std::vector<std::string>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i > 0) out.push_back(' ');
    out += GoQuote(v[i]);
  }
  out.push_back(']');
  return out;
}

// The error as etcd's peer client reports it: mvcc's two errors come back
// as the gRPC layer's (rpctypes) errors, with its "etcdserver: " prefix.
std::string PeerErrorText(const absl::Status& s) {
  if (mvcc::IsErrCompacted(s) || mvcc::IsErrFutureRev(s)) {
    return absl::StrCat("etcdserver: ", s.message());
  }
  return std::string(s.message());
}

LogRecord Record(Level level, std::string message) {
  LogRecord r;
  r.level = level;
  r.message = std::move(message);
  return r;
}

}  // namespace

CorruptionChecker::CorruptionChecker(CorruptCheckOptions opts, Hooks hooks)
    : opts_(opts), hooks_(std::move(hooks)) {}

CorruptionChecker::~CorruptionChecker() { *alive_ = false; }

void CorruptionChecker::Emit(LogRecord r) const {
  if (hooks_.log) hooks_.log(r);
}

void CorruptionChecker::CheckInitial(int64_t timeout_ns,
                                     std::function<void(absl::Status)> done) {
  if (!opts_.initial) return done(absl::OkStatus());
  const std::string self = HexId(hooks_.self);
  {
    LogRecord r = Record(Level::kInfo, "starting initial corruption check");
    r.fields.emplace_back("local-member-id", self);
    r.fields.emplace_back("timeout", LogNanos{timeout_ns});
    r.capnslog = {absl::StrCat(self,
                               " starting initial corruption check "
                               "with timeout "),
                  LogNanos{timeout_ns}, "..."};
    Emit(std::move(r));
  }
  hooks_.local([this, alive = alive_, self, done = std::move(done)](
                   absl::StatusOr<KvHash> local) mutable {
    if (!*alive) return;
    if (!local.ok()) {
      return done(absl::InternalError(absl::StrCat(
          self, " failed to fetch hash (", local.status().message(), ")")));
    }
    AskPeersInitially(self, *local, std::move(done));
  });
}

void CorruptionChecker::AskPeersInitially(
    const std::string& self, const KvHash& h,
    std::function<void(absl::Status)> done) {
  hooks_.ask_peers(h.revision, [this, alive = alive_, self, h,
                                done = std::move(done)](
                                   std::vector<PeerHash> peers) {
    if (!*alive) return;
    int mismatch = 0;
    for (const PeerHash& p : peers) {
      const std::string peer = HexId(p.id);
      if (!p.status.ok()) {
        // etcd logs every failed request, then explains the two it knows.
        LogRecord f = Record(Level::kWarn, "failed hash kv request");
        const std::string ep = p.endpoints.empty() ? "" : p.endpoints[0];
        f.fields.emplace_back("local-member-id", self);
        f.fields.emplace_back("requested-revision", h.revision);
        f.fields.emplace_back("remote-peer-endpoint", ep);
        f.fields.emplace_back("error", PeerErrorText(p.status));
        f.capnslog = {absl::StrCat(
            self, " hash-kv error ", GoQuote(PeerErrorText(p.status)),
            " on peer ", GoQuote(ep), " with revision ", h.revision)};
        Emit(std::move(f));
        const bool future = mvcc::IsErrFutureRev(p.status);
        if (!future && !mvcc::IsErrCompacted(p.status)) continue;
        LogRecord r = Record(
            Level::kWarn,
            future ? "cannot fetch hash from slow remote peer"
                   : "cannot fetch hash from remote peer; local member is "
                     "behind");
        r.fields.emplace_back("local-member-id", self);
        r.fields.emplace_back("local-member-revision", h.revision);
        r.fields.emplace_back("local-member-compact-revision",
                              h.compact_revision);
        r.fields.emplace_back("local-member-hash", uint64_t{h.hash});
        r.fields.emplace_back("remote-peer-id", peer);
        r.fields.emplace_back("remote-peer-endpoints", p.endpoints);
        r.capnslog = {absl::StrCat(
            self, " cannot check the hash of peer(", GoQuoteList(p.endpoints),
            ") at revision ", h.revision, ": ", future ? "peer" : "local node",
            " is lagging behind(", GoQuote(PeerErrorText(p.status)), ")")};
        Emit(std::move(r));
        continue;
      }
      if (p.hash.hash == h.hash) continue;
      const bool same_compaction =
          p.hash.compact_revision == h.compact_revision;
      LogRecord r = Record(
          Level::kWarn,
          same_compaction
              ? "found different hash values from remote peer"
              : "found different compact revision values from remote peer");
      r.fields.emplace_back("local-member-id", self);
      r.fields.emplace_back("local-member-revision", h.revision);
      r.fields.emplace_back("local-member-compact-revision",
                            h.compact_revision);
      r.fields.emplace_back("local-member-hash", uint64_t{h.hash});
      r.fields.emplace_back("remote-peer-id", peer);
      r.fields.emplace_back("remote-peer-endpoints", p.endpoints);
      r.fields.emplace_back("remote-peer-revision", p.hash.revision);
      r.fields.emplace_back("remote-peer-compact-revision",
                            p.hash.compact_revision);
      r.fields.emplace_back("remote-peer-hash", uint64_t{p.hash.hash});
      if (same_compaction) {
        r.capnslog = {absl::StrCat(
            self, "'s hash ", h.hash, " != ", peer, "'s hash ", p.hash.hash,
            " (revision ", h.revision, ", peer revision ", p.hash.revision,
            ", compact revision ", h.compact_revision, ")")};
        ++mismatch;
      } else {
        r.capnslog = {absl::StrCat(self, " cannot check hash of peer(", peer,
                                   "): peer has a different compact revision ",
                                   p.hash.compact_revision,
                                   " (revision:", h.revision, ")")};
      }
      Emit(std::move(r));
    }
    if (mismatch > 0) {
      return done(absl::FailedPreconditionError(
          absl::StrCat(self, " found data inconsistency with peers")));
    }
    LogRecord r = Record(Level::kInfo,
                         "initial corruption checking passed; no corruption");
    r.fields.emplace_back("local-member-id", self);
    r.capnslog = {absl::StrCat(
        self, " succeeded on initial corruption checking: no corruption")};
    Emit(std::move(r));
    done(absl::OkStatus());
  });
}

void CorruptionChecker::Tick(bool leader) {
  if (opts_.interval_ns <= 0) return;
  const int64_t now = hooks_.now();
  if (!started_) {
    started_ = true;
    next_check_ns_ = now + opts_.interval_ns;
    LogRecord r = Record(Level::kInfo, "enabled corruption checking");
    r.fields.emplace_back("local-member-id", HexId(hooks_.self));
    r.fields.emplace_back("interval", LogNanos{opts_.interval_ns});
    r.capnslog = {"enabled corruption checking with ",
                  LogNanos{opts_.interval_ns}, " interval"};
    Emit(std::move(r));
    return;
  }
  if (busy_ || now < next_check_ns_) return;
  next_check_ns_ = now + opts_.interval_ns;
  if (!leader) return;  // etcd: only the leader checks
  RunPeriodic();
}

void CorruptionChecker::RunPeriodic() {
  auto failed = [this](const absl::Status& s) {
    LogRecord r = Record(Level::kWarn, "failed to check hash KV");
    r.fields.emplace_back("error", std::string(s.message()));
    r.capnslog = {absl::StrCat("check hash kv failed ", s.message())};
    Emit(std::move(r));
  };
  busy_ = true;
  hooks_.local([this, alive = alive_, failed](absl::StatusOr<KvHash> first) {
    if (!*alive) return;
    if (!first.ok()) {
      busy_ = false;
      return failed(first.status());
    }
    const KvHash h = *first;
    hooks_.ask_peers(h.revision, [this, alive, h,
                                  failed](std::vector<PeerHash> peers) {
      if (!*alive) return;
      hooks_.linearizable_read([this, alive, h, failed,
                                peers = std::move(peers)](absl::Status s) {
        if (!*alive) return;
        if (!s.ok()) {
          EndPeriodic();
          return failed(s);
        }
        hooks_.local([this, alive, h, peers](absl::StatusOr<KvHash> second) {
          if (!*alive) return;
          EndPeriodic();
          FinishPeriodic(h, peers, second);
        });
      });
    });
  });
}

void CorruptionChecker::EndPeriodic() {
  busy_ = false;
  // The next check counts from the end of this one, as etcd's loop.
  next_check_ns_ = hooks_.now() + opts_.interval_ns;
}

void CorruptionChecker::FinishPeriodic(const KvHash& h,
                                       const std::vector<PeerHash>& peers,
                                       const absl::StatusOr<KvHash>& second) {
  if (!second.ok()) {
    LogRecord r = Record(Level::kWarn, "failed to check hash KV");
    r.fields.emplace_back("error", std::string(second.status().message()));
    r.capnslog = {
        absl::StrCat("check hash kv failed ", second.status().message())};
    return Emit(std::move(r));
  }
  const KvHash h2 = *second;
  bool alarmed = false;
  if (h2.hash != h.hash && h2.revision == h.revision &&
      h.compact_revision == h2.compact_revision) {
    LogRecord r = Record(Level::kWarn, "found hash mismatch");
    r.fields.emplace_back("revision-1", h.revision);
    r.fields.emplace_back("compact-revision-1", h.compact_revision);
    r.fields.emplace_back("hash-1", uint64_t{h.hash});
    r.fields.emplace_back("revision-2", h2.revision);
    r.fields.emplace_back("compact-revision-2", h2.compact_revision);
    r.fields.emplace_back("hash-2", uint64_t{h2.hash});
    r.capnslog = {absl::StrCat("mismatched hashes ", h.hash, " and ", h2.hash,
                               " for revision ", h.revision)};
    Emit(std::move(r));
    alarmed = true;
  }
  int checked = 0;
  for (const PeerHash& p : peers) {
    if (!p.status.ok()) continue;
    ++checked;
    const std::string peer = HexId(p.id);
    if (p.hash.revision > h2.revision) {
      LogRecord r = Record(
          Level::kWarn,
          "revision from follower must be less than or equal to leader's");
      r.fields.emplace_back("leader-revision", h2.revision);
      r.fields.emplace_back("follower-revision", p.hash.revision);
      r.fields.emplace_back("follower-peer-id", peer);
      r.capnslog = {absl::StrCat("revision ", p.hash.revision, " from member ",
                                 peer, ", expected at most ", h2.revision)};
      Emit(std::move(r));
      alarmed = true;
    }
    if (p.hash.compact_revision > h2.compact_revision) {
      LogRecord r = Record(Level::kWarn,
                           "compact revision from follower must be less than "
                           "or equal to leader's");
      r.fields.emplace_back("leader-compact-revision", h2.compact_revision);
      r.fields.emplace_back("follower-compact-revision",
                            p.hash.compact_revision);
      r.fields.emplace_back("follower-peer-id", peer);
      r.capnslog = {absl::StrCat("compact revision ", p.hash.compact_revision,
                                 " from member ", peer, ", expected at most ",
                                 h2.compact_revision)};
      Emit(std::move(r));
      alarmed = true;
    }
    if (p.hash.compact_revision == h.compact_revision &&
        p.hash.hash != h.hash) {
      LogRecord r =
          Record(Level::kWarn, "same compact revision then hashes must match");
      r.fields.emplace_back("leader-compact-revision", h2.compact_revision);
      r.fields.emplace_back("leader-hash", uint64_t{h.hash});
      r.fields.emplace_back("follower-compact-revision",
                            p.hash.compact_revision);
      r.fields.emplace_back("follower-hash", uint64_t{p.hash.hash});
      r.fields.emplace_back("follower-peer-id", peer);
      r.capnslog = {absl::StrCat("hash ", p.hash.hash, " at revision ",
                                 h.revision, " from member ", peer,
                                 ", expected hash ", h.hash)};
      Emit(std::move(r));
      alarmed = true;
    }
  }
  LogRecord r = Record(Level::kInfo, "finished peer corruption check");
  r.fields.emplace_back("number-of-peers-checked", int64_t{checked});
  r.capnslog = {"finished peer corruption check"};
  Emit(std::move(r));
  ++checks_;
  if (alarmed) {
    ++mismatches_;
    hooks_.raise_corrupt();
  }
}

}  // namespace detcd::server
