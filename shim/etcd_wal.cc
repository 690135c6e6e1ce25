#include "shim/etcd_wal.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "engine/wal/crc32c.h"
#include "shim/go_format.h"

namespace detcd::shim {
namespace {

bool Varint(absl::string_view* in, uint64_t* v) {
  *v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (in->empty()) return false;
    uint8_t b = static_cast<uint8_t>((*in)[0]);
    in->remove_prefix(1);
    *v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) return true;
  }
  return false;
}

}  // namespace

bool PbFields(absl::string_view in, std::vector<PbField>* out) {
  while (!in.empty()) {
    uint64_t key;
    if (!Varint(&in, &key)) return false;
    PbField f;
    f.num = static_cast<uint32_t>(key >> 3);
    f.wire = static_cast<int>(key & 7);
    if (f.num == 0) return false;
    switch (f.wire) {
      case 0:
        if (!Varint(&in, &f.v)) return false;
        break;
      case 1:
        if (in.size() < 8) return false;
        std::memcpy(&f.v, in.data(), 8);
        in.remove_prefix(8);
        break;
      case 2: {
        uint64_t n;
        if (!Varint(&in, &n) || n > in.size()) return false;
        f.bytes = in.substr(0, n);
        in.remove_prefix(n);
        break;
      }
      case 5: {
        if (in.size() < 4) return false;
        uint32_t x;
        std::memcpy(&x, in.data(), 4);
        f.v = x;
        in.remove_prefix(4);
        break;
      }
      default:
        return false;
    }
    out->push_back(f);
  }
  return true;
}

bool ParseHexPair(absl::string_view name, absl::string_view suffix, uint64_t* a,
                  uint64_t* b) {
  if (!absl::ConsumeSuffix(&name, suffix) || name.size() != 33 ||
      name[16] != '-') {
    return false;
  }
  return absl::SimpleHexAtoi(name.substr(0, 16), a) &&
         absl::SimpleHexAtoi(name.substr(17), b);
}

absl::Status ReadEtcdWalRecords(
    const std::vector<std::string>& paths,
    const std::function<absl::Status(int64_t, absl::string_view)>& fn) {
  uint32_t crc = 0;
  for (const std::string& path : paths) {
    std::ifstream f(path, std::ios::binary);
    if (!f) {
      return absl::NotFoundError(
          absl::StrCat("open ", path, ": ", GoErrno(errno)));
    }
    std::ostringstream ss;
    ss << f.rdbuf();
    const std::string data = ss.str();
    absl::string_view in(data);
    while (in.size() >= 8) {
      int64_t len;
      std::memcpy(&len, in.data(), 8);
      if (len == 0) break;  // preallocated space
      uint64_t rec_bytes = static_cast<uint64_t>(len) & 0x00FFFFFFFFFFFFFFULL;
      uint64_t pad = len < 0 ? (static_cast<uint64_t>(len) >> 56) & 0x7 : 0;
      if (rec_bytes + pad > in.size() - 8) break;  // a torn tail
      absl::string_view rec = in.substr(8, rec_bytes);
      in.remove_prefix(8 + rec_bytes + pad);
      std::vector<PbField> fs;
      if (!PbFields(rec, &fs)) return absl::DataLossError("wal: bad record");
      int64_t type = 0;
      uint32_t rcrc = 0;
      absl::string_view rdata;
      for (const PbField& pf : fs) {
        if (pf.num == 1) type = static_cast<int64_t>(pf.v);
        if (pf.num == 2) rcrc = static_cast<uint32_t>(pf.v);
        if (pf.num == 3) rdata = pf.bytes;
      }
      if (type == 4) {  // crc: the chain's value so far
        if (crc != 0 && rcrc != crc) {
          return absl::DataLossError("wal: crc mismatch");
        }
        crc = rcrc;
        continue;
      }
      crc = crc32c::Extend(crc, rdata.data(), rdata.size());
      if (rcrc != crc) return absl::DataLossError("walpb: crc mismatch");
      if (absl::Status s = fn(type, rdata); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace detcd::shim
