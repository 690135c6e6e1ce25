#include "detcd/recipe_driver.h"

#include <algorithm>
#include <utility>

#include "absl/time/clock.h"
#include "detcd/errors.h"
#include "detcd/watch.h"

namespace detcd::client {
namespace {

namespace pb = etcdserverpb;

// Why a watch ended without an event the machine was waiting for.
absl::Status WatchEnded(Client* c, const Watcher& w, const WatchEvent* ev,
                        absl::Time deadline) {
  if (c->canceller() != nullptr && c->canceller()->cancelled()) {
    return absl::CancelledError(kContextCanceled);
  }
  if (absl::Now() >= deadline) {
    return absl::DeadlineExceededError(kContextDeadlineExceeded);
  }
  if (ev != nullptr && !ev->error.empty()) return PlainError(ev->error);
  if (!w.status().ok()) return w.status();
  return PlainError("watch closed waiting for events");
}

// One call that is not a watch.
RecipeReply Call(Client* c, const RecipeCall& call, absl::Time deadline) {
  CallOptions o;
  o.deadline = deadline;
  Canceller* saved = c->canceller();
  if (call.cleanup) {
    // Clean-up must run even though the canceller or the deadline stopped
    // the recipe.
    o = CallOptions::Timeout(absl::Seconds(5));
    c->set_canceller(nullptr);
  }
  RecipeReply r;
  switch (call.kind) {
    case RecipeCall::kRange: {
      auto resp = c->Range(call.range, o);
      if (resp.ok())
        r.range = *std::move(resp);
      else
        r.status = resp.status();
      break;
    }
    case RecipeCall::kTxn: {
      auto resp = c->Txn(call.txn, o);
      if (resp.ok())
        r.txn = *std::move(resp);
      else
        r.status = resp.status();
      break;
    }
    case RecipeCall::kDeleteRange: {
      auto resp = c->DeleteRange(call.del, o);
      if (resp.ok())
        r.del = *std::move(resp);
      else
        r.status = resp.status();
      break;
    }
    case RecipeCall::kLeaseGrant: {
      auto resp = c->LeaseGrant(call.grant, o);
      if (resp.ok())
        r.grant = *std::move(resp);
      else
        r.status = resp.status();
      break;
    }
    case RecipeCall::kLeaseRevoke: {
      auto resp = c->LeaseRevoke(call.revoke, o);
      if (resp.ok())
        r.revoke = *std::move(resp);
      else
        r.status = resp.status();
      break;
    }
    default:
      r.status = absl::InternalError("recipe: not a call");
  }
  if (call.cleanup) c->set_canceller(saved);
  return r;
}

}  // namespace

absl::Status RunSteps(Client* c, RecipeSteps& steps, absl::Time deadline) {
  if (c->canceller() != nullptr) {
    deadline = std::min(deadline, c->canceller()->deadline());
  }
  RecipeCall call = steps.Start();
  while (call.kind != RecipeCall::kDone) {
    if (call.kind == RecipeCall::kKeepWatching) {
      call = RecipeCall::Done(absl::InternalError("recipe: no watch open"));
      break;
    }
    if (call.kind != RecipeCall::kWatch) {
      call = steps.Next(Call(c, call, deadline));
      continue;
    }
    // A watch: its batches go to the machine until it asks for something
    // else (the watcher closes when it goes out of scope).
    Watcher w(c, {}, c->canceller());
    w.Add(call.watch);
    WatchEvent ev;
    for (;;) {
      RecipeReply r;
      if (!w.Next(&ev, deadline)) {
        r.status = WatchEnded(c, w, nullptr, deadline);
        call = steps.Next(r);
        break;
      }
      if (ev.has_response && ev.response.events_size() > 0) {
        r.events.assign(ev.response.events().begin(),
                        ev.response.events().end());
        r.header = ev.response.header();
        call = steps.Next(r);
        if (call.kind != RecipeCall::kKeepWatching) break;
        r = RecipeReply();
      }
      if (ev.closing) {
        r.status = WatchEnded(c, w, &ev, deadline);
        call = steps.Next(r);
        break;
      }
    }
  }
  return call.status;
}

}  // namespace detcd::client
