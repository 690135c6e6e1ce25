// etcdctl's `-w json`: Go's encoding/json over the gogoproto-generated
// structs (and a few clientv3 wrapper structs). That differs from
// protobuf's JSON mapping: field names are the .proto names, every field
// is omitempty, 64-bit integers are numbers, enums are numbers, bytes are
// base64, and a oneof reads {"<OneofName>":{"<FieldName>":...}} with Go's
// CamelCase names. Documents are built with nlohmann's ordered_json and
// written with Go's escaping.
#ifndef DETCD_CLI_DETCDCTL_JSON_H_
#define DETCD_CLI_DETCDCTL_JSON_H_

#include <string>

#include "google/protobuf/message.h"
#include "nlohmann/json.hpp"

namespace detcd::ctl {

using Json = nlohmann::ordered_json;

// A proto message as encoding/json shows its gogo struct.
Json GoJson(const google::protobuf::Message& m);

// json.Marshal's bytes for a document (no spaces, Go's string escaping).
std::string DumpGoJson(const Json& j);

// Go's CamelCase of a proto name ("response_put" -> "ResponsePut").
std::string GoCamel(const std::string& name);

}  // namespace detcd::ctl

#endif  // DETCD_CLI_DETCDCTL_JSON_H_
