#include "chaos/checks.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/server/node.h"
#include "harness/history_proto.h"
#include "etcdserverpb/raft_internal.pb.h"

namespace detcd::chaos {

namespace pb = etcdserverpb;
using harness::RequestOp;

mvcc::Event FromEvent(const mvccpb::Event& e) {
  mvcc::Event out;
  out.type = e.type() == mvccpb::Event::DELETE ? mvcc::Event::kDelete
                                               : mvcc::Event::kPut;
  out.kv = harness::FromProto(e.kv());
  out.has_prev_kv = e.has_prev_kv();
  if (out.has_prev_kv) out.prev_kv = harness::FromProto(e.prev_kv());
  return out;
}

mvcc::WatchResponse FromWatch(const pb::WatchResponse& r) {
  mvcc::WatchResponse out;
  out.watch_id = r.watch_id();
  out.created = r.created();
  out.canceled = r.canceled();
  out.compact_revision = r.compact_revision();
  out.cancel_reason = r.cancel_reason();
  out.fragment = r.fragment();
  out.revision = r.header().revision();
  for (const mvccpb::Event& e : r.events()) out.events.push_back(FromEvent(e));
  return out;
}

std::map<int64_t, std::vector<mvcc::Event>> ByRevision(
    const std::vector<mvcc::Event>& events) {
  std::map<int64_t, std::vector<mvcc::Event>> out;
  for (const mvcc::Event& e : events) out[e.kv.mod_revision].push_back(e);
  return out;
}

static std::string Show(const mvcc::Event& e) {
  return absl::StrCat(e.type == mvcc::Event::kPut ? "PUT " : "DELETE ",
                      e.kv.key, e.type == mvcc::Event::kPut ? "=" : "",
                      e.type == mvcc::Event::kPut ? e.kv.value : "", " mod ",
                      e.kv.mod_revision, " create ", e.kv.create_revision,
                      " version ", e.kv.version, " lease ", e.kv.lease,
                      e.has_prev_kv ? absl::StrCat(" prev ", e.prev_kv.value,
                                                   "@", e.prev_kv.mod_revision)
                                    : "");
}

std::string BuildModel(const std::vector<mvcc::Event>& events,
                       harness::KvModel* model) {
  const std::map<int64_t, std::vector<mvcc::Event>> by_rev = ByRevision(events);
  uint64_t index = model->applied_index();
  std::set<int64_t> leases;
  auto append = [&](const pb::InternalRaftRequest& r) {
    raft::Entry e;
    e.term = 1;
    e.index = ++index;
    e.data = server::Envelope(0, 0, r.SerializeAsString());
    model->Apply(e);
  };
  int64_t expect = model->rev() + 1;
  for (const auto& [rev, evs] : by_rev) {
    if (rev != expect) {
      return absl::StrCat("event history: revision ", rev, " follows ",
                          expect - 1, " (a gap)");
    }
    // A lease must exist in the model before a key is put under it (the
    // grant consumes no revision).
    for (const mvcc::Event& e : evs) {
      if (e.type == mvcc::Event::kPut && e.kv.lease != 0 &&
          leases.insert(e.kv.lease).second) {
        pb::InternalRaftRequest g;
        g.mutable_lease_grant()->set_id(e.kv.lease);
        g.mutable_lease_grant()->set_ttl(1);
        append(g);
      }
    }
    pb::InternalRaftRequest r;
    pb::TxnRequest* t = r.mutable_txn();
    for (const mvcc::Event& e : evs) {
      if (e.type == mvcc::Event::kPut) {
        pb::PutRequest* p = t->add_success()->mutable_request_put();
        p->set_key(e.kv.key);
        p->set_value(e.kv.value);
        p->set_lease(e.kv.lease);
      } else {
        t->add_success()->mutable_request_delete_range()->set_key(e.kv.key);
      }
    }
    append(r);
    if (!model->problem().empty()) return model->problem();
    if (model->rev() != rev) {
      return absl::StrCat("event history: revision ", rev,
                          " does not apply as a write (a put or delete of a "
                          "key that cannot change)");
    }
    const std::vector<mvcc::Event>& got = model->EventsAt(rev);
    for (size_t k = 0; k < std::max(got.size(), evs.size()); ++k) {
      if (k < got.size() && k < evs.size() && got[k] == evs[k]) continue;
      return absl::StrCat("event history: revision ", rev, " event #", k,
                          " is ", k < evs.size() ? Show(evs[k]) : "missing",
                          ", recomputed from the revisions before it: ",
                          k < got.size() ? Show(got[k]) : "none");
    }
    ++expect;
  }
  return "";
}

std::vector<std::string> CheckHistoryAgainstModel(const harness::History& h,
                                                  const harness::KvModel& m,
                                                  size_t limit) {
  std::vector<std::string> out;
  auto problem = [&](const harness::Operation& op, const std::string& what) {
    if (out.size() < limit) {
      out.push_back(
          absl::StrCat("acknowledged write not in the event "
                       "history: ",
                       harness::FormatOp(op), ": ", what));
    }
  };
  for (const harness::Operation& op : h.ops) {
    if (op.outcome != harness::Operation::kOk || harness::IsReadOnly(op.req) ||
        op.req.revoke_lease != 0) {
      continue;
    }
    const int64_t rev = op.resp.revision;
    if (rev > m.rev()) {
      problem(op, absl::StrCat("revision ", rev, " beyond the history's ",
                               m.rev()));
      continue;
    }
    const std::vector<harness::RequestOp>& branch =
        op.resp.succeeded ? op.req.success : op.req.failure;
    const std::vector<mvcc::Event>& evs = m.EventsAt(rev);
    for (size_t i = 0; i < branch.size() && i < op.resp.results.size(); ++i) {
      const harness::RequestOp& ro = branch[i];
      if (ro.kind == RequestOp::kPut) {
        const bool found =
            std::any_of(evs.begin(), evs.end(), [&](const mvcc::Event& e) {
              return e.type == mvcc::Event::kPut && e.kv.key == ro.key &&
                     e.kv.value == ro.value && e.kv.lease == ro.lease;
            });
        if (!found) {
          problem(op, absl::StrCat("no PUT of ", ro.key, " at revision ", rev));
        }
      } else if (ro.kind == RequestOp::kDelete) {
        const int64_t deleted = op.resp.results[i].deleted;
        const int64_t n =
            std::count_if(evs.begin(), evs.end(), [](const mvcc::Event& e) {
              return e.type == mvcc::Event::kDelete;
            });
        if (n < deleted) {
          problem(op, absl::StrCat(deleted, " deleted but ", n,
                                   " DELETE events at revision ", rev));
        }
      }
    }
  }
  return out;
}

void ReplayLeaseEvents(std::vector<LeaseEvent> events,
                       harness::LeaseChecker* checker) {
  auto when = [](const LeaseEvent& e) {
    return e.kind == LeaseEvent::kRevokeRequested ? e.invoke_ns : e.return_ns;
  };
  std::stable_sort(events.begin(), events.end(),
                   [&](const LeaseEvent& a, const LeaseEvent& b) {
                     if (when(a) != when(b)) return when(a) < when(b);
                     return a.kind == LeaseEvent::kPrimary &&
                            b.kind != LeaseEvent::kPrimary;
                   });
  for (const LeaseEvent& e : events) {
    switch (e.kind) {
      case LeaseEvent::kPrimary:
        checker->OnPrimary(e.return_ns);
        break;
      case LeaseEvent::kGranted:
        checker->OnGranted(e.id, e.ttl_s, e.invoke_ns, e.return_ns);
        break;
      case LeaseEvent::kKeepAlive:
        checker->OnKeepAlive(e.id, e.invoke_ns, e.return_ns, e.outcome,
                             e.may_renew_later);
        break;
      case LeaseEvent::kTimeToLive:
        checker->OnTimeToLive(e.id, e.invoke_ns, e.return_ns, e.ttl_s);
        break;
      case LeaseEvent::kRevokeRequested:
        checker->OnRevokeRequested(e.id, e.invoke_ns);
        break;
    }
  }
}

}  // namespace detcd::chaos
