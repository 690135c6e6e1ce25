#include "cli/detcdctl/json.h"

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "cli/detcdctl/gofmt.h"
#include "google/protobuf/descriptor.h"

namespace detcd::ctl {
namespace {

namespace gp = google::protobuf;

Json Scalar(const gp::Message& m, const gp::Reflection* r,
            const gp::FieldDescriptor* f, int index) {
  bool rep = f->is_repeated();
  switch (f->cpp_type()) {
    case gp::FieldDescriptor::CPPTYPE_INT32:
      return rep ? r->GetRepeatedInt32(m, f, index) : r->GetInt32(m, f);
    case gp::FieldDescriptor::CPPTYPE_INT64:
      return rep ? r->GetRepeatedInt64(m, f, index) : r->GetInt64(m, f);
    case gp::FieldDescriptor::CPPTYPE_UINT32:
      return rep ? r->GetRepeatedUInt32(m, f, index) : r->GetUInt32(m, f);
    case gp::FieldDescriptor::CPPTYPE_UINT64:
      return rep ? r->GetRepeatedUInt64(m, f, index) : r->GetUInt64(m, f);
    case gp::FieldDescriptor::CPPTYPE_BOOL:
      return rep ? r->GetRepeatedBool(m, f, index) : r->GetBool(m, f);
    case gp::FieldDescriptor::CPPTYPE_ENUM:
      return rep ? r->GetRepeatedEnumValue(m, f, index)
                 : r->GetEnumValue(m, f);
    case gp::FieldDescriptor::CPPTYPE_STRING: {
      std::string s = rep ? r->GetRepeatedString(m, f, index)
                          : r->GetString(m, f);
      if (f->type() == gp::FieldDescriptor::TYPE_BYTES) return Base64(s);
      return s;
    }
    case gp::FieldDescriptor::CPPTYPE_MESSAGE:
      return GoJson(rep ? r->GetRepeatedMessage(m, f, index)
                        : r->GetMessage(m, f));
    default:
      return nullptr;
  }
}

bool IsZero(const Json& j) {
  if (j.is_number_integer()) return j.get<int64_t>() == 0;
  if (j.is_number_unsigned()) return j.get<uint64_t>() == 0;
  if (j.is_boolean()) return !j.get<bool>();
  if (j.is_string()) return j.get<std::string>().empty();
  return false;
}

void Dump(const Json& j, std::string* out) {
  switch (j.type()) {
    case Json::value_t::null: *out += "null"; break;
    case Json::value_t::boolean: *out += j.get<bool>() ? "true" : "false"; break;
    case Json::value_t::number_integer:
      absl::StrAppend(out, j.get<int64_t>());
      break;
    case Json::value_t::number_unsigned:
      absl::StrAppend(out, j.get<uint64_t>());
      break;
    case Json::value_t::string:
      *out += GoJsonString(j.get_ref<const std::string&>());
      break;
    case Json::value_t::array: {
      *out += '[';
      bool first = true;
      for (const Json& e : j) {
        if (!first) *out += ',';
        first = false;
        Dump(e, out);
      }
      *out += ']';
      break;
    }
    case Json::value_t::object: {
      *out += '{';
      bool first = true;
      for (auto it = j.begin(); it != j.end(); ++it) {
        if (!first) *out += ',';
        first = false;
        *out += GoJsonString(it.key());
        *out += ':';
        Dump(it.value(), out);
      }
      *out += '}';
      break;
    }
    default:
      *out += "null";
  }
}

}  // namespace

std::string GoCamel(const std::string& name) {
  std::string out;
  bool up = true;
  for (char c : name) {
    if (c == '_') {
      up = true;
      continue;
    }
    out += up ? absl::ascii_toupper(c) : c;
    up = false;
  }
  return out;
}

Json GoJson(const gp::Message& m) {
  Json obj = Json::object();
  const gp::Descriptor* d = m.GetDescriptor();
  const gp::Reflection* r = m.GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const gp::FieldDescriptor* f = d->field(i);
    // Fields newer than etcd 3.4's structs are unknown to etcdctl 3.4.
    if (f->full_name() == "etcdserverpb.HashKVResponse.hash_revision") continue;
    if (const gp::OneofDescriptor* o = f->real_containing_oneof()) {
      // The oneof appears once, at its first member's position.
      if (o->field(0) != f) continue;
      const gp::FieldDescriptor* set = r->GetOneofFieldDescriptor(m, o);
      if (set == nullptr) {
        obj[GoCamel(o->name())] = nullptr;
      } else {
        Json inner = Json::object();
        inner[GoCamel(set->name())] = Scalar(m, r, set, 0);
        obj[GoCamel(o->name())] = inner;
      }
      continue;
    }
    if (f->is_repeated()) {
      int n = r->FieldSize(m, f);
      if (n == 0) continue;
      Json arr = Json::array();
      for (int k = 0; k < n; ++k) arr.push_back(Scalar(m, r, f, k));
      obj[f->name()] = arr;
      continue;
    }
    if (f->cpp_type() == gp::FieldDescriptor::CPPTYPE_MESSAGE) {
      if (!r->HasField(m, f)) continue;
      obj[f->name()] = Scalar(m, r, f, 0);
      continue;
    }
    Json v = Scalar(m, r, f, 0);
    if (IsZero(v)) continue;
    obj[f->name()] = v;
  }
  return obj;
}

std::string DumpGoJson(const Json& j) {
  std::string out;
  Dump(j, &out);
  return out;
}

}  // namespace detcd::ctl
