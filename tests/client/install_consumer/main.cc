// Uses the installed headers and libraries: a client, the Txn builder, a
// recipe type, and a call that must end at its deadline (nothing listens
// on the endpoint). Prints OK and exits 0 when all behaved.
#include <cstdio>

#include "detcd/client.h"
#include "detcd/errors.h"
#include "detcd/kv.h"
#include "detcd/recipes.h"
#include "detcd/stm.h"

int main() {
  namespace dc = detcd::client;
  dc::Config cfg;
  cfg.endpoints = {"127.0.0.1:1"};
  auto c = dc::Client::New(cfg);
  if (!c.ok()) return 1;
  dc::Txn t(c->get());
  t.If(dc::Compare(dc::cmp::Version("k"), dc::CmpOp::kEqual, 0))
      .Then(dc::OpPut("k", "v"));
  if (t.request().compare_size() != 1) return 2;
  dc::Queue q(c->get(), "/q");
  (void)q;
  auto r = (*c)->Get("k", {},
                     dc::CallOptions::Timeout(absl::Milliseconds(200)));
  if (r.status().code() != absl::StatusCode::kDeadlineExceeded) return 3;
  std::printf("%s\nOK\n", dc::ErrorText(r.status()).c_str());
  return 0;
}
