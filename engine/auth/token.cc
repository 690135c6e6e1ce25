#include "engine/auth/token.h"

#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace detcd::auth {
namespace {
constexpr std::string_view kLetters =
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
constexpr int kSimpleTokenLength = 16;
}  // namespace

SimpleTokenProvider::SimpleTokenProvider(std::function<int64_t()> now_ns,
                                         std::function<uint64_t()> random,
                                         int64_t ttl_ns)
    : now_ns_(std::move(now_ns)),
      random_(std::move(random)),
      ttl_ns_(ttl_ns > 0 ? ttl_ns : kDefaultTtlNs) {}

void SimpleTokenProvider::Disable() {
  enabled_ = false;
  tokens_.clear();
}

void SimpleTokenProvider::InvalidateUser(std::string_view user) {
  for (auto it = tokens_.begin(); it != tokens_.end();) {
    if (it->second.user == user) {
      it = tokens_.erase(it);
    } else {
      ++it;
    }
  }
}

std::string SimpleTokenProvider::GenTokenPrefix() {
  std::string out;
  for (int i = 0; i < kSimpleTokenLength; ++i) {
    out.push_back(kLetters[random_() % kLetters.size()]);
  }
  return out;
}

absl::StatusOr<std::string> SimpleTokenProvider::Assign(
    std::string_view user, uint64_t /*revision*/, uint64_t index,
    std::string_view prefix) {
  std::string token = absl::StrCat(std::string(prefix), ".", index);
  // etcd assigns only while its TTL keeper runs (auth enabled); the token
  // is still answered, it just never works.
  if (enabled_) {
    tokens_[token] = Entry{std::string(user), now_ns_() + ttl_ns_};
  }
  return token;
}

bool SimpleTokenIndex(std::string_view token, uint64_t* index) {
  const size_t dot = token.find('.');
  return dot != std::string_view::npos &&
         token.find('.', dot + 1) == std::string_view::npos &&
         absl::SimpleAtoi(std::string(token.substr(dot + 1)), index);
}

std::optional<AuthInfo> SimpleTokenProvider::Info(std::string_view token,
                                                  uint64_t current_revision) {
  // etcd's shape check: "<prefix>.<index>" with a numeric index.
  uint64_t index = 0;
  if (!SimpleTokenIndex(token, &index)) return std::nullopt;
  auto it = tokens_.find(token);
  if (it == tokens_.end()) return std::nullopt;
  const int64_t now = now_ns_();
  if (now > it->second.expires_ns) {
    tokens_.erase(it);
    return std::nullopt;
  }
  it->second.expires_ns = now + ttl_ns_;  // each use restarts the TTL
  return AuthInfo{it->second.user, current_revision};
}

void SimpleTokenProvider::Sweep() {
  const int64_t now = now_ns_();
  for (auto it = tokens_.begin(); it != tokens_.end();) {
    if (now > it->second.expires_ns) {
      it = tokens_.erase(it);
    } else {
      ++it;
    }
  }
}

}  // namespace detcd::auth
