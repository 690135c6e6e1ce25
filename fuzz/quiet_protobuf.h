// Protobuf logs every string field with invalid UTF-8 it refuses to parse;
// fuzzed inputs hit that constantly, and the logging would cost more than
// the parsing. Included by the targets that parse protobufs.
#ifndef DETCD_FUZZ_QUIET_PROTOBUF_H_
#define DETCD_FUZZ_QUIET_PROTOBUF_H_

#include "google/protobuf/stubs/logging.h"

namespace detcd::fuzz {

inline const bool kProtobufQuiet = [] {
  google::protobuf::SetLogHandler(nullptr);  // null: discard
  return true;
}();

}  // namespace detcd::fuzz

#endif  // DETCD_FUZZ_QUIET_PROTOBUF_H_
