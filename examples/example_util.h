// What every example shares: the command line (--endpoints=h:p,h:p, as
// etcdctl's; default 127.0.0.1:2379), a client, a clean key prefix, and a
// check that ends the program with a message.
#ifndef DETCD_EXAMPLES_EXAMPLE_UTIL_H_
#define DETCD_EXAMPLES_EXAMPLE_UTIL_H_

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "detcd/client.h"
#include "detcd/errors.h"

namespace detcd::examples {

inline client::Config ParseFlags(int argc, char** argv) {
  client::Config cfg;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (absl::StartsWith(a, "--endpoints=")) {
      cfg.endpoints = absl::StrSplit(a.substr(12), ',', absl::SkipEmpty());
    } else {
      std::fprintf(stderr, "usage: %s [--endpoints=host:port,...]\n", argv[0]);
      std::exit(2);
    }
  }
  return cfg;
}

inline void Check(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "FAILED: %s\n", what.c_str());
    std::exit(1);
  }
}

inline void Check(const absl::Status& s, const std::string& what) {
  Check(s.ok(), what + ": " + client::ErrorText(s));
}

template <typename T>
T Must(absl::StatusOr<T> v, const std::string& what) {
  Check(v.status(), what);
  return *std::move(v);
}

inline std::unique_ptr<client::Client> Connect(int argc, char** argv) {
  return Must(client::Client::New(ParseFlags(argc, argv)), "connect");
}

// Deletes everything under prefix, so each run starts clean.
inline void Clean(client::Client* c, const std::string& prefix) {
  client::DeleteOptions d;
  d.prefix = true;
  Check(c->Delete(prefix, d).status(), "clean " + prefix);
}

}  // namespace detcd::examples

#endif  // DETCD_EXAMPLES_EXAMPLE_UTIL_H_
