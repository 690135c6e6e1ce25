#include "absl/strings/string_view.h"
#include "cli/detcdctl/gofmt.h"

#include <cmath>
#include <cstdio>
#include <limits>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "shim/go_format.h"

namespace detcd::ctl {
namespace {

// Decodes one UTF-8 rune at s[i]; returns its length, or 0 if invalid
// (Go then treats the byte as RuneError of width 1).
int DecodeRune(absl::string_view s, size_t i, uint32_t* r) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  if (c < 0x80) {
    *r = c;
    return 1;
  }
  int n;
  uint32_t v;
  uint32_t min;
  if ((c & 0xE0) == 0xC0) {
    n = 2;
    v = c & 0x1F;
    min = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    n = 3;
    v = c & 0x0F;
    min = 0x800;
  } else if ((c & 0xF8) == 0xF0) {
    n = 4;
    v = c & 0x07;
    min = 0x10000;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (int k = 1; k < n; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return 0;
    v = (v << 6) | (b(i + k) & 0x3F);
  }
  if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
  *r = v;
  return n;
}

// unicode.IsPrint, approximated outside ASCII: controls, format
// characters that commonly appear, separators other than space, private
// use and noncharacters are not printable.
bool IsPrint(uint32_t r) {
  if (r < 0x80) return r >= 0x20 && r < 0x7F;
  if (r < 0xA0) return false;
  if (r == 0xAD) return false;
  if (r >= 0x2000 && r <= 0x200F) return r < 0x200B;  // spaces; ZW*, marks
  if (r >= 0x2028 && r <= 0x202F) return false;
  if (r >= 0x205F && r <= 0x206F) return false;
  if (r == 0x3000) return false;
  if (r >= 0xE000 && r <= 0xF8FF) return false;
  if (r == 0xFEFF) return false;
  if (r >= 0xFFF9 && r <= 0xFFFB) return false;
  if ((r & 0xFFFE) == 0xFFFE) return false;
  if (r >= 0xF0000) return false;
  return true;
}

absl::Status NumError(absl::string_view fn, absl::string_view s,
                      absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("strconv.", fn, ": parsing ", GoQuote(s), ": ", what));
}

// Go's underscoreOK: underscores only between digits (after a base
// prefix), never leading or trailing or doubled.
bool UnderscoreOk(absl::string_view s) {
  char saw = '^';
  size_t i = 0;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) s.remove_prefix(1);
  bool hex = false;
  if (s.size() >= 2 && s[0] == '0') {
    char c = static_cast<char>(s[1] | 0x20);
    if (c == 'b' || c == 'o' || c == 'x') {
      hex = c == 'x';
      i = 2;
      saw = '0';
    }
  }
  for (; i < s.size(); ++i) {
    char c = s[i];
    if ((c >= '0' && c <= '9') ||
        (hex && ((c | 0x20) >= 'a' && (c | 0x20) <= 'f'))) {
      saw = '0';
      continue;
    }
    if (c == '_') {
      if (saw != '0') return false;
      saw = '_';
      continue;
    }
    if (saw == '_') return false;
    saw = '!';
  }
  return saw != '_';
}

// strconv.ParseUint's core. *range_err is set on overflow.
absl::StatusOr<uint64_t> ParseUintCore(absl::string_view fn,
                                       absl::string_view orig,
                                       absl::string_view s, int base,
                                       uint64_t max) {
  if (s.empty()) return NumError(fn, orig, "invalid syntax");
  bool base0 = base == 0;
  if (base == 0) {
    base = 10;
    if (s[0] == '0') {
      if (s.size() >= 3 && (s[1] | 0x20) == 'b') {
        base = 2;
        s.remove_prefix(2);
      } else if (s.size() >= 3 && (s[1] | 0x20) == 'o') {
        base = 8;
        s.remove_prefix(2);
      } else if (s.size() >= 3 && (s[1] | 0x20) == 'x') {
        base = 16;
        s.remove_prefix(2);
      } else {
        base = 8;
        s.remove_prefix(1);
      }
    }
  }
  bool underscores = false;
  uint64_t n = 0;
  bool overflow = false;
  const uint64_t cutoff = std::numeric_limits<uint64_t>::max() / base + 1;
  for (char c : s) {
    int d;
    if (c == '_' && base0) {
      underscores = true;
      continue;
    } else if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') {
      d = (c | 0x20) - 'a' + 10;
    } else {
      return NumError(fn, orig, "invalid syntax");
    }
    if (d >= base) return NumError(fn, orig, "invalid syntax");
    if (overflow) continue;
    if (n >= cutoff) {
      overflow = true;
      continue;
    }
    n *= base;
    uint64_t n1 = n + static_cast<uint64_t>(d);
    if (n1 < n || n1 > max) {
      overflow = true;
      continue;
    }
    n = n1;
  }
  if (underscores && !UnderscoreOk(orig)) {
    return NumError(fn, orig, "invalid syntax");
  }
  if (overflow) return NumError(fn, orig, "value out of range");
  return n;
}

}  // namespace

std::string GoQuote(absl::string_view s) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size();) {
    uint32_t r;
    int n = DecodeRune(s, i, &r);
    if (n == 0) {
      absl::StrAppendFormat(&out, "\\x%02x",
                            static_cast<unsigned char>(s[i]));
      ++i;
      continue;
    }
    if (r == '"' || r == '\\') {
      out += '\\';
      out += static_cast<char>(r);
    } else if (IsPrint(r)) {
      out.append(s.data() + i, n);
    } else {
      switch (r) {
        case '\a': out += "\\a"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\v': out += "\\v"; break;
        default:
          if (r < ' ' || r == 0x7F) {
            absl::StrAppendFormat(&out, "\\x%02x", r);
          } else if (r < 0x10000) {
            absl::StrAppendFormat(&out, "\\u%04x", r);
          } else {
            absl::StrAppendFormat(&out, "\\U%08x", r);
          }
      }
    }
    i += n;
  }
  out += '"';
  return out;
}

absl::StatusOr<uint64_t> GoParseUint(absl::string_view s, int base) {
  return ParseUintCore("ParseUint", s, s, base,
                       std::numeric_limits<uint64_t>::max());
}

absl::StatusOr<int64_t> GoParseInt(absl::string_view s, int base) {
  if (s.empty()) return NumError("ParseInt", s, "invalid syntax");
  absl::string_view body = s;
  bool neg = false;
  if (body[0] == '+' || body[0] == '-') {
    neg = body[0] == '-';
    body.remove_prefix(1);
  }
  auto u = ParseUintCore("ParseInt", s, body, base,
                         std::numeric_limits<uint64_t>::max());
  if (!u.ok()) return u.status();
  uint64_t cutoff = uint64_t{1} << 63;
  if (!neg && *u >= cutoff) return NumError("ParseInt", s, "value out of range");
  if (neg && *u > cutoff) return NumError("ParseInt", s, "value out of range");
  return neg ? static_cast<int64_t>(0 - *u) : static_cast<int64_t>(*u);
}

absl::StatusOr<bool> GoParseBool(absl::string_view s) {
  if (s == "1" || s == "t" || s == "T" || s == "TRUE" || s == "true" ||
      s == "True") {
    return true;
  }
  if (s == "0" || s == "f" || s == "F" || s == "FALSE" || s == "false" ||
      s == "False") {
    return false;
  }
  return NumError("ParseBool", s, "invalid syntax");
}

absl::StatusOr<int64_t> GoParseDuration(absl::string_view orig) {
  // Go's own quoting in these messages is strconv-like.
  auto invalid = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat("time: invalid duration ", GoQuote(orig)));
  };
  absl::string_view s = orig;
  bool neg = false;
  if (!s.empty() && (s[0] == '-' || s[0] == '+')) {
    neg = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s == "0") return 0;
  if (s.empty()) return invalid();
  uint64_t total = 0;
  const uint64_t kMax = uint64_t{1} << 63;
  while (!s.empty()) {
    if (!(s[0] == '.' || (s[0] >= '0' && s[0] <= '9'))) return invalid();
    // Integer part.
    uint64_t v = 0;
    bool overflow = false;
    size_t i = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      if (v > (kMax - 1) / 10) overflow = true;
      v = v * 10 + static_cast<uint64_t>(s[i] - '0');
      if (v > kMax) overflow = true;
      ++i;
    }
    if (overflow) return invalid();
    bool pre = i > 0;
    s.remove_prefix(i);
    // Fraction.
    uint64_t f = 0;
    double scale = 1;
    bool post = false;
    if (!s.empty() && s[0] == '.') {
      s.remove_prefix(1);
      size_t j = 0;
      bool of = false;
      while (j < s.size() && s[j] >= '0' && s[j] <= '9') {
        if (!of) {
          if (f > (kMax - 1) / 10) {
            of = true;
          } else {
            uint64_t y = f * 10 + static_cast<uint64_t>(s[j] - '0');
            if (y > kMax) {
              of = true;
            } else {
              f = y;
              scale *= 10;
            }
          }
        }
        ++j;
      }
      post = j > 0;
      s.remove_prefix(j);
    }
    if (!pre && !post) return invalid();
    // Unit.
    size_t k = 0;
    while (k < s.size() && s[k] != '.' && !(s[k] >= '0' && s[k] <= '9')) ++k;
    if (k == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("time: missing unit in duration ", GoQuote(orig)));
    }
    absl::string_view u = s.substr(0, k);
    s.remove_prefix(k);
    uint64_t unit;
    if (u == "ns") {
      unit = 1;
    } else if (u == "us" || u == "\xC2\xB5s" || u == "\xCE\xBCs") {
      unit = 1000;
    } else if (u == "ms") {
      unit = 1000000;
    } else if (u == "s") {
      unit = 1000000000;
    } else if (u == "m") {
      unit = 60ull * 1000000000;
    } else if (u == "h") {
      unit = 3600ull * 1000000000;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "time: unknown unit ", GoQuote(u), " in duration ", GoQuote(orig)));
    }
    if (v > kMax / unit) return invalid();
    v *= unit;
    if (f > 0) {
      v += static_cast<uint64_t>(static_cast<double>(f) *
                                 (static_cast<double>(unit) / scale));
      if (v > kMax) return invalid();
    }
    total += v;
    if (total > kMax) return invalid();
  }
  if (neg) return -static_cast<int64_t>(total);
  if (total > kMax - 1) return invalid();
  return static_cast<int64_t>(total);
}

std::string GoDuration(int64_t ns) { return shim::GoDurationString(ns); }

std::string HumanizeBytes(uint64_t s) {
  if (s < 10) return absl::StrCat(s, " B");
  static const char* kSizes[] = {"B", "kB", "MB", "GB", "TB", "PB", "EB"};
  double e = std::floor(std::log(static_cast<double>(s)) / std::log(1000.0));
  const char* suffix = kSizes[static_cast<int>(e)];
  double val =
      std::floor(static_cast<double>(s) / std::pow(1000.0, e) * 10 + 0.5) / 10;
  if (val < 10) return absl::StrFormat("%.1f %s", val, suffix);
  return absl::StrFormat("%.0f %s", val, suffix);
}

std::string GoStringSlice(const std::vector<std::string>& v) {
  return absl::StrCat("[", absl::StrJoin(v, " "), "]");
}

absl::StatusOr<std::vector<std::string>> GoReadCsvRecord(absl::string_view s) {
  std::vector<std::string> out;
  // encoding/csv reads one line; a trailing newline ends it.
  size_t nl = s.find('\n');
  if (nl != absl::string_view::npos) s = s.substr(0, nl);
  if (!s.empty() && s.back() == '\r') s.remove_suffix(1);
  size_t i = 0;
  size_t col = 1;
  while (true) {
    std::string field;
    if (i < s.size() && s[i] == '"') {
      ++i;
      while (true) {
        if (i >= s.size()) {
          return absl::InvalidArgumentError(absl::StrFormat(
              "parse error on line 1, column %d: extraneous or missing \" in "
              "quoted-field",
              s.size() + 1));
        }
        if (s[i] == '"') {
          if (i + 1 < s.size() && s[i + 1] == '"') {
            field += '"';
            i += 2;
            continue;
          }
          ++i;
          if (i < s.size() && s[i] != ',') {
            return absl::InvalidArgumentError(absl::StrFormat(
                "parse error on line 1, column %d: extraneous or missing \" "
                "in quoted-field",
                i + 1));
          }
          break;
        }
        field += s[i++];
      }
    } else {
      while (i < s.size() && s[i] != ',') {
        if (s[i] == '"') {
          return absl::InvalidArgumentError(absl::StrFormat(
              "parse error on line 1, column %d: bare \" in non-quoted-field",
              i + 1));
        }
        field += s[i++];
      }
    }
    out.push_back(std::move(field));
    col = i;
    if (i >= s.size()) break;
    ++i;  // the comma
  }
  (void)col;
  return out;
}

std::string GoCsvSliceString(const std::vector<std::string>& v) {
  std::vector<std::string> fields;
  for (const std::string& f : v) {
    bool quote = f.find_first_of(",\"\r\n") != std::string::npos ||
                 (!f.empty() && (f[0] == ' ' || f[0] == '\t'));
    if (!quote) {
      fields.push_back(f);
      continue;
    }
    std::string q = "\"";
    for (char c : f) {
      if (c == '"') q += '"';
      q += c;
    }
    q += '"';
    fields.push_back(q);
  }
  return absl::StrCat("[", absl::StrJoin(fields, ","), "]");
}

std::string Hex(uint64_t v) { return absl::StrFormat("%x", v); }
std::string Hex16(uint64_t v) { return absl::StrFormat("%016x", v); }

std::string GoJsonString(absl::string_view s) {
  static const char kHex[] = "0123456789abcdef";
  std::string out = "\"";
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if (c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' &&
          c != '&') {
        out += static_cast<char>(c);
      } else {
        switch (c) {
          case '"': out += "\\\""; break;
          case '\\': out += "\\\\"; break;
          case '\n': out += "\\n"; break;
          case '\r': out += "\\r"; break;
          case '\t': out += "\\t"; break;
          default:
            out += "\\u00";
            out += kHex[c >> 4];
            out += kHex[c & 0xF];
        }
      }
      ++i;
      continue;
    }
    uint32_t r;
    int n = DecodeRune(s, i, &r);
    if (n == 0) {
      out += "\\ufffd";
      ++i;
      continue;
    }
    if (r == 0x2028 || r == 0x2029) {
      absl::StrAppendFormat(&out, "\\u%04x", r);
    } else {
      out.append(s.data() + i, n);
    }
    i += n;
  }
  out += '"';
  return out;
}

std::string Base64(absl::string_view s) { return absl::Base64Escape(s); }

}  // namespace detcd::ctl
