#include "engine/raft/progress.h"

#include <algorithm>

#include "engine/util/check.h"

namespace detcd::raft {

void Inflights::Add(uint64_t index, uint64_t bytes) {
  DETCD_CHECK_MSG(q_.empty() || q_.back().index < index,
                  "inflight indexes must increase");
  q_.push_back({index, bytes});
  bytes_ += bytes;
}

void Inflights::FreeLE(uint64_t to) {
  while (!q_.empty() && q_.front().index <= to) {
    bytes_ -= q_.front().bytes;
    q_.pop_front();
  }
}

bool Inflights::Full() const {
  return Count() >= max_count_ || (max_bytes_ != 0 && bytes_ >= max_bytes_);
}

const char* ProgressStateName(ProgressState s) {
  switch (s) {
    case ProgressState::kProbe:
      return "StateProbe";
    case ProgressState::kReplicate:
      return "StateReplicate";
    case ProgressState::kSnapshot:
      return "StateSnapshot";
  }
  return "?";
}

void Progress::ResetState(ProgressState s) {
  msg_app_flow_paused = false;
  append_held = false;
  pending_snapshot = 0;
  state = s;
  inflights.Reset();
}

void Progress::BecomeProbe() {
  // Coming back from a snapshot, the follower has at least the snapshot.
  if (state == ProgressState::kSnapshot) {
    uint64_t pending = pending_snapshot;
    ResetState(ProgressState::kProbe);
    next = std::max(match + 1, pending + 1);
  } else {
    ResetState(ProgressState::kProbe);
    next = match + 1;
  }
}

void Progress::BecomeReplicate() {
  ResetState(ProgressState::kReplicate);
  next = match + 1;
}

void Progress::BecomeSnapshot(uint64_t snapshot_index) {
  ResetState(ProgressState::kSnapshot);
  pending_snapshot = snapshot_index;
}

void Progress::SentEntries(int entries, uint64_t bytes) {
  switch (state) {
    case ProgressState::kReplicate:
      if (entries > 0) {
        next += entries;
        inflights.Add(next - 1, bytes);
      }
      msg_app_flow_paused = inflights.Full();
      break;
    case ProgressState::kProbe:
      if (entries > 0) msg_app_flow_paused = true;
      break;
    case ProgressState::kSnapshot:
      DETCD_CHECK_MSG(false, "sending entries in snapshot state");
  }
}

bool Progress::MaybeUpdate(uint64_t n) {
  bool updated = false;
  if (match < n) {
    match = n;
    updated = true;
    msg_app_flow_paused = false;
  }
  next = std::max(next, n + 1);
  return updated;
}

bool Progress::MaybeDecrTo(uint64_t rejected, uint64_t match_hint) {
  if (state == ProgressState::kReplicate) {
    // Stale if the rejected index is at or below what is known to match.
    if (rejected <= match) return false;
    next = match + 1;
    return true;
  }
  // In probe state only the latest probe (index next-1) counts.
  if (next - 1 != rejected) return false;
  next = std::max<uint64_t>(std::min(rejected, match_hint + 1), match + 1);
  msg_app_flow_paused = false;
  return true;
}

bool Progress::IsPaused() const {
  switch (state) {
    case ProgressState::kProbe:
      return msg_app_flow_paused;
    case ProgressState::kReplicate:
      return msg_app_flow_paused;
    case ProgressState::kSnapshot:
      return true;
  }
  return true;
}

ConfState ProgressTracker::GetConfState() const {
  ConfState cs;
  cs.voters.assign(voters_.begin(), voters_.end());
  cs.learners.assign(learners_.begin(), learners_.end());
  return cs;
}

void ProgressTracker::AddVoter(NodeId id, uint64_t next) {
  learners_.erase(id);
  voters_.insert(id);
  auto it = progress_.find(id);
  if (it == progress_.end()) {
    it = progress_.emplace(id, Progress(max_inflight_, max_inflight_bytes_))
             .first;
    it->second.next = next;
    // A new member counts as active so that adding it does not make the
    // leader step down at the next check-quorum before it is heard from.
    it->second.recent_active = true;
  }
  it->second.is_learner = false;
}

void ProgressTracker::AddLearner(NodeId id, uint64_t next) {
  DETCD_CHECK_MSG(!voters_.count(id), "cannot demote a voter to learner");
  learners_.insert(id);
  auto it = progress_.find(id);
  if (it == progress_.end()) {
    it = progress_.emplace(id, Progress(max_inflight_, max_inflight_bytes_))
             .first;
    it->second.next = next;
    it->second.recent_active = true;
  }
  it->second.is_learner = true;
}

void ProgressTracker::Remove(NodeId id) {
  voters_.erase(id);
  learners_.erase(id);
  progress_.erase(id);
  votes_.erase(id);
}

Progress* ProgressTracker::Get(NodeId id) {
  auto it = progress_.find(id);
  return it == progress_.end() ? nullptr : &it->second;
}

const Progress* ProgressTracker::Get(NodeId id) const {
  auto it = progress_.find(id);
  return it == progress_.end() ? nullptr : &it->second;
}

void ProgressTracker::ResetProgress(uint64_t last_index, NodeId self) {
  for (auto& [id, pr] : progress_) {
    bool learner = pr.is_learner;
    pr = Progress(max_inflight_, max_inflight_bytes_);
    pr.is_learner = learner;
    pr.next = last_index + 1;
    if (id == self) pr.match = last_index;
  }
}

uint64_t ProgressTracker::Committed() const {
  if (voters_.empty()) return UINT64_MAX;  // no constraint (as in etcd)
  std::vector<uint64_t> m;
  m.reserve(voters_.size());
  for (NodeId id : voters_) {
    auto it = progress_.find(id);
    m.push_back(it == progress_.end() ? 0 : it->second.match);
  }
  std::sort(m.begin(), m.end(), std::greater<uint64_t>());
  return m[Quorum() - 1];
}

bool ProgressTracker::QuorumActive() const {
  int active = 0;
  for (NodeId id : voters_) {
    auto it = progress_.find(id);
    if (it != progress_.end() && it->second.recent_active) ++active;
  }
  return active >= Quorum();
}

void ProgressTracker::ResetRecentActive(NodeId self) {
  for (auto& [id, pr] : progress_) pr.recent_active = (id == self);
}

void ProgressTracker::RecordVote(NodeId id, bool granted) {
  votes_.emplace(id, granted);  // first answer wins
}

ProgressTracker::VoteOutcome ProgressTracker::TallyVotes(int* granted,
                                                          int* rejected) const {
  int g = 0, r = 0;
  for (NodeId id : voters_) {
    auto it = votes_.find(id);
    if (it == votes_.end()) continue;
    if (it->second) {
      ++g;
    } else {
      ++r;
    }
  }
  if (granted) *granted = g;
  if (rejected) *rejected = r;
  const int q = Quorum();
  if (g >= q) return VoteOutcome::kWon;
  if (r > static_cast<int>(voters_.size()) - q) return VoteOutcome::kLost;
  return VoteOutcome::kPending;
}

void ReadOnly::AddRequest(uint64_t index, Message m) {
  std::string ctx = m.entries.empty() ? std::string() : m.entries[0].data.str();
  if (pending_.count(ctx)) return;
  pending_.emplace(ctx, Status{std::move(m), index, {}});
  queue_.push_back(std::move(ctx));
}

const std::set<NodeId>* ReadOnly::RecvAck(NodeId id, const std::string& ctx) {
  auto it = pending_.find(ctx);
  if (it == pending_.end()) return nullptr;
  it->second.acks.insert(id);
  return &it->second.acks;
}

std::vector<ReadOnly::Status> ReadOnly::Advance(const std::string& ctx) {
  std::vector<Status> out;
  if (!pending_.count(ctx)) return out;
  while (!queue_.empty()) {
    std::string c = std::move(queue_.front());
    queue_.pop_front();
    auto it = pending_.find(c);
    DETCD_CHECK(it != pending_.end());
    out.push_back(std::move(it->second));
    pending_.erase(it);
    if (c == ctx) break;
  }
  return out;
}

std::string ReadOnly::LastPendingRequestCtx() const {
  return queue_.empty() ? std::string() : queue_.back();
}

}  // namespace detcd::raft
