#include "harness/recipe_checker.h"

#include <algorithm>
#include <limits>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "sim/world.h"

namespace detcd::harness {
namespace {

// Reports at most a few violations of each kind, then how many more.
class Reporter {
 public:
  explicit Reporter(std::vector<std::string>* out) : out_(out) {}
  ~Reporter() {
    for (const auto& [kind, n] : counts_) {
      if (n > kMax) {
        out_->push_back(absl::StrCat(kind, ": ", n - kMax, " more violations"));
      }
    }
  }
  void Add(const std::string& kind, std::string what) {
    if (++counts_[kind] <= kMax)
      out_->push_back(absl::StrCat(kind, ": ", what));
  }

 private:
  static constexpr int kMax = 3;
  std::vector<std::string>* out_;
  std::map<std::string, int> counts_;
};

// The create revision of the owner (lowest create revision), 0 if none.
int64_t Owner(const std::map<std::string, int64_t>& keys) {
  int64_t low = 0;
  for (const auto& [k, create] : keys) {
    if (low == 0 || create < low) low = create;
  }
  return low;
}

// "t<token>/..." -> token, or -1.
int64_t TokenOf(const std::string& value) {
  if (!absl::StartsWith(value, "t")) return -1;
  const size_t slash = value.find('/');
  int64_t t = -1;
  if (!absl::SimpleAtoi(
          value.substr(
              1, slash == std::string::npos ? std::string::npos : slash - 1),
          &t)) {
    return -1;
  }
  return t;
}

void Track(std::map<std::string, int64_t>* keys, const mvcc::Event& e) {
  if (e.type == mvcc::Event::kDelete) {
    keys->erase(e.kv.key);
  } else {
    (*keys)[e.kv.key] = e.kv.create_revision;
  }
}

}  // namespace

void CheckRecipes(const KvModel& model, const RecipeRecords& rec,
                  const RecipeCheckOptions& o,
                  std::vector<std::string>* failures,
                  std::map<std::string, uint64_t>* coverage) {
  Reporter report(failures);
  const int64_t last = model.rev();
  const std::string queue_dir = rec.queue_prefix + "/";
  std::map<std::string, int64_t> locks, candidates, queued;
  std::set<std::string> queue_created;
  std::map<std::string, int64_t> queue_deleted;  // key -> revision

  std::vector<RecipeRecords::Win> wins = rec.wins;
  std::stable_sort(wins.begin(), wins.end(), [](const auto& a, const auto& b) {
    return a.won_revision < b.won_revision;
  });
  size_t next_win = 0;
  // Wins whose revision has been reached are checked against the
  // candidates alive then.
  auto check_wins = [&](int64_t upto) {
    for (; next_win < wins.size() && wins[next_win].won_revision <= upto;
         ++next_win) {
      const RecipeRecords::Win& w = wins[next_win];
      for (const auto& [key, create] : candidates) {
        if (create < w.term) {
          report.Add("election",
                     absl::StrCat("client ", w.client, " won term ", w.term,
                                  " at revision ", w.won_revision,
                                  " while the older candidate ", key,
                                  " (created at ", create, ") was alive"));
          break;
        }
      }
    }
  };

  std::vector<RecipeRecords::Observation> seen = rec.observations;
  std::stable_sort(seen.begin(), seen.end(), [](const auto& a, const auto& b) {
    return a.revision < b.revision;
  });
  size_t next_seen = 0;
  auto check_observations = [&](int64_t upto) {
    for (; next_seen < seen.size() && seen[next_seen].revision <= upto;
         ++next_seen) {
      const RecipeRecords::Observation& o = seen[next_seen];
      std::string oldest;
      int64_t oldest_create = 0;
      for (const auto& [key, create] : candidates) {
        if (oldest_create == 0 || create < oldest_create) {
          oldest = key;
          oldest_create = create;
        }
      }
      if (oldest_create != o.term || (o.term != 0 && oldest != o.key)) {
        report.Add(
            "election",
            absl::StrCat(
                "client ", o.client,
                " read the leader at "
                "revision ",
                o.revision, " as ",
                o.term == 0 ? std::string("nobody")
                            : absl::StrCat(o.key, " (term ", o.term, ")"),
                " but the oldest candidate then was ",
                oldest_create == 0
                    ? std::string("none")
                    : absl::StrCat(oldest, " (term ", oldest_create, ")")));
      }
    }
  };
  int64_t last_token = 0;
  std::string last_write;
  uint64_t writes = 0;
  std::set<int64_t> holders;
  check_wins(1);
  check_observations(1);
  for (int64_t r = 2; r <= last; ++r) {
    const std::vector<mvcc::Event>& events = model.EventsAt(r);
    // The fence: a write to the resource at r is judged by the lock keys
    // as they were before revision r.
    for (const mvcc::Event& e : events) {
      if (e.kv.key != rec.resource_key || e.type != mvcc::Event::kPut) continue;
      ++writes;
      const int64_t token = TokenOf(e.kv.value);
      holders.insert(token);
      const int64_t owner = Owner(locks);
      if (token != owner) {
        report.Add("lock",
                   absl::StrCat("the resource was written at revision ", r,
                                " by \"", e.kv.value, "\" (token ", token,
                                ") while the lock's owner was ",
                                owner == 0 ? std::string("nobody")
                                           : absl::StrCat("token ", owner),
                                ": a write not fenced by the lock"));
      }
      if (token < last_token) {
        report.Add("lock",
                   absl::StrCat("holders' writes interleave: \"", e.kv.value,
                                "\" at revision ", r, " after \"", last_write,
                                "\" (a newer token)"));
      }
      last_token = std::max(last_token, token);
      last_write = e.kv.value;
    }
    for (const mvcc::Event& e : events) {
      const std::string& k = e.kv.key;
      if (!rec.lock_prefix.empty() && absl::StartsWith(k, rec.lock_prefix)) {
        Track(&locks, e);
      } else if (!rec.election_prefix.empty() &&
                 absl::StartsWith(k, rec.election_prefix)) {
        Track(&candidates, e);
      } else if (!rec.queue_prefix.empty() && absl::StartsWith(k, queue_dir)) {
        Track(&queued, e);
        if (e.type == mvcc::Event::kDelete) {
          queue_deleted[k] = r;
        } else {
          queue_created.insert(k);
        }
      }
    }
    check_wins(r);
    check_observations(r);
  }
  check_wins(std::numeric_limits<int64_t>::max());
  check_observations(std::numeric_limits<int64_t>::max());
  (*coverage)["recipe.lock.fenced-writes"] += writes;
  (*coverage)["recipe.lock.holders"] += holders.size();

  // One leader per term.
  std::map<int64_t, int> leader_of;
  for (const RecipeRecords::Win& w : rec.wins) {
    auto [it, fresh] = leader_of.emplace(w.term, w.client);
    if (!fresh && it->second != w.client) {
      report.Add("election", absl::StrCat("term ", w.term,
                                          " has two leaders: "
                                          "clients ",
                                          it->second, " and ", w.client));
    }
  }
  (*coverage)["recipe.election.wins"] += rec.wins.size();
  // Each observer's terms never go back.
  std::map<int, int64_t> newest_seen;  // observer -> newest term
  for (const RecipeRecords::Observation& o : rec.observations) {
    if (o.term == 0) continue;
    int64_t& newest = newest_seen[o.client];
    if (o.term < newest) {
      report.Add("election", absl::StrCat("client ", o.client, " read term ",
                                          o.term, " after term ", newest));
    }
    newest = std::max(newest, o.term);
  }
  (*coverage)["recipe.election.observations"] += rec.observations.size();

  // Queue: once, from an enqueue, nothing lost.
  std::set<std::string> enqueued_values;
  for (const auto& e : rec.enqueues) enqueued_values.insert(e.value);
  std::map<std::string, int> delivered;      // value -> times
  std::set<std::string> taken, maybe_taken;  // keys
  for (const auto& d : rec.dequeues) {
    if (d.acked) {
      taken.insert(d.key);
      if (++delivered[d.value] == 2) {
        report.Add("queue",
                   absl::StrCat("item \"", d.value, "\" was delivered twice"));
      }
      if (!enqueued_values.contains(d.value)) {
        report.Add("queue",
                   absl::StrCat("item \"", d.value,
                                "\" was delivered but never enqueued"));
      }
      if (!queue_deleted.contains(d.key)) {
        report.Add("queue", absl::StrCat("item \"", d.value, "\" (", d.key,
                                         ") was delivered but never deleted"));
      }
    } else {
      for (const std::string& k : d.attempted) maybe_taken.insert(k);
    }
  }
  for (const auto& e : rec.enqueues) {
    if (!e.acked) continue;
    if (!queue_created.contains(e.key)) {
      report.Add("queue", absl::StrCat("acknowledged item \"", e.value, "\" (",
                                       e.key, ") was never committed"));
    } else if (!queued.contains(e.key) && !taken.contains(e.key) &&
               !maybe_taken.contains(e.key)) {
      report.Add("queue",
                 absl::StrCat("acknowledged item \"", e.value, "\" (", e.key,
                              ") was lost: deleted at revision ",
                              queue_deleted[e.key], " by no dequeue"));
    }
  }
  (*coverage)["recipe.queue.delivered"] += taken.size();

  // Registry: entries go with their leases.
  std::map<std::string, int64_t> live_lease;  // key -> lease
  if (!rec.registrations.empty()) {
    for (const mvcc::KeyValue& kv : model.LiveAt(last)) {
      live_lease[kv.key] = kv.lease;
    }
  }
  uint64_t expiries = 0;
  for (const auto& g : rec.registrations) {
    if (!g.stopped) continue;
    const int64_t must_be_gone =
        g.last_alive_ns + g.ttl_s * sim::kSecond + o.registry_slack_ns;
    if (o.end_ns <= must_be_gone) continue;
    ++expiries;
    auto it = live_lease.find(g.key);
    if (it != live_lease.end() && it->second == g.lease) {
      report.Add("registry",
                 absl::StrCat("entry ", g.key, " (lease ", g.lease, ", ttl ",
                              g.ttl_s, " s) is still registered ",
                              (o.end_ns - must_be_gone) / sim::kMillisecond,
                              " ms after its lease must have expired"));
    }
  }
  if (!rec.registrations.empty()) {
    (*coverage)["recipe.registry.expiries"] += expiries;
  }
}

}  // namespace detcd::harness
