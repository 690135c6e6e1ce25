// Auth tokens (etcd's TokenProvider): who a token stands for. Token state is
// member-local, like a primary lessor's expiries: a simple token is
// installed on every member when its Authenticate entry is applied, and
// each member expires it on its own clock.
//
// SimpleTokenProvider is etcd's "simple" token: "<16 random letters>.<raft
// index of the Authenticate entry>"; it names a user until it has not been
// used for `ttl_ns` (every use restarts the count, as etcd's TTL keeper
// does), until the user is deleted or changes password, or until auth is
// disabled. Its info() revision is the store's current one, so a simple
// token always speaks for the user's current permissions. Its clock and
// randomness are the member's Env (deterministic in the simulator).
//
// The JWT provider signs with OpenSSL and reads the wall clock, so it lives
// in the real server (shim/jwt_token.h) behind the same interface.
#ifndef DETCD_ENGINE_AUTH_TOKEN_H_
#define DETCD_ENGINE_AUTH_TOKEN_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <map>
#include "absl/status/statusor.h"
#include "engine/auth/auth_store.h"

namespace detcd::auth {

// The raft index in a simple token ("<prefix>.<index>"); false for anything
// else (a JWT has two dots).
bool SimpleTokenIndex(std::string_view token, uint64_t* index);

class TokenProvider {
 public:
  virtual ~TokenProvider() = default;
  // Auth was enabled / disabled (disable forgets every token).
  virtual void Enable() = 0;
  virtual void Disable() = 0;
  // The user was deleted or changed password: its tokens end.
  virtual void InvalidateUser(std::string_view user) = 0;
  // Before proposing an Authenticate: the part of the token the proposer
  // chooses (simple tokens' random letters; "" for JWT).
  virtual std::string GenTokenPrefix() = 0;
  // When an Authenticate entry at raft `index` is applied: the token for
  // `user` at auth `revision`.
  virtual absl::StatusOr<std::string> Assign(std::string_view user,
                                             uint64_t revision, uint64_t index,
                                             std::string_view prefix) = 0;
  // The identity behind `token`, or nullopt if it is not a valid token.
  // `current_revision`: the store's revision now.
  virtual std::optional<AuthInfo> Info(std::string_view token,
                                       uint64_t current_revision) = 0;
  // Called periodically: drop what expired.
  virtual void Sweep() {}
};

class SimpleTokenProvider final : public TokenProvider {
 public:
  static constexpr int64_t kDefaultTtlNs = 300'000'000'000;  // etcd: 5 min
  // now_ns: the member's clock; random: the member's Rng.
  SimpleTokenProvider(std::function<int64_t()> now_ns,
                      std::function<uint64_t()> random, int64_t ttl_ns);

  void Enable() override { enabled_ = true; }
  void Disable() override;
  void InvalidateUser(std::string_view user) override;
  std::string GenTokenPrefix() override;
  absl::StatusOr<std::string> Assign(std::string_view user, uint64_t revision,
                                     uint64_t index,
                                     std::string_view prefix) override;
  std::optional<AuthInfo> Info(std::string_view token,
                               uint64_t current_revision) override;
  void Sweep() override;

  size_t size() const { return tokens_.size(); }

 private:
  struct Entry {
    std::string user;
    int64_t expires_ns;
  };
  std::function<int64_t()> now_ns_;
  std::function<uint64_t()> random_;
  int64_t ttl_ns_;
  bool enabled_ = false;
  std::map<std::string, Entry, std::less<>> tokens_;
};

}  // namespace detcd::auth

#endif  // DETCD_ENGINE_AUTH_TOKEN_H_
