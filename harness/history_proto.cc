#include "harness/history_proto.h"

namespace detcd::harness {

mvcc::KeyValue FromProto(const mvccpb::KeyValue& kv) {
  mvcc::KeyValue out;
  out.key = kv.key();
  out.create_revision = kv.create_revision();
  out.mod_revision = kv.mod_revision();
  out.version = kv.version();
  out.value = kv.value();
  out.lease = kv.lease();
  return out;
}

etcdserverpb::RangeRequest RangeProto(const RequestOp& op) {
  etcdserverpb::RangeRequest r;
  r.set_key(op.key);
  r.set_range_end(op.range_end);
  return r;
}
etcdserverpb::PutRequest PutProto(const RequestOp& op) {
  etcdserverpb::PutRequest r;
  r.set_key(op.key);
  r.set_value(op.value);
  r.set_lease(op.lease);
  r.set_prev_kv(op.prev_kv);
  return r;
}
etcdserverpb::DeleteRangeRequest DeleteProto(const RequestOp& op) {
  etcdserverpb::DeleteRangeRequest r;
  r.set_key(op.key);
  r.set_range_end(op.range_end);
  r.set_prev_kv(op.prev_kv);
  return r;
}

etcdserverpb::RequestOp OpProto(const RequestOp& op) {
  etcdserverpb::RequestOp out;
  switch (op.kind) {
    case RequestOp::kRange:
      *out.mutable_request_range() = RangeProto(op);
      break;
    case RequestOp::kPut:
      *out.mutable_request_put() = PutProto(op);
      break;
    case RequestOp::kDelete:
      *out.mutable_request_delete_range() = DeleteProto(op);
      break;
  }
  return out;
}

etcdserverpb::TxnRequest TxnProto(const Request& req) {
  etcdserverpb::TxnRequest t;
  for (const Compare& c : req.compares) {
    etcdserverpb::Compare* pc = t.add_compare();
    pc->set_key(c.key);
    pc->set_range_end(c.range_end);
    switch (c.result) {
      case Compare::kEqual:
        pc->set_result(etcdserverpb::Compare::EQUAL);
        break;
      case Compare::kGreater:
        pc->set_result(etcdserverpb::Compare::GREATER);
        break;
      case Compare::kLess:
        pc->set_result(etcdserverpb::Compare::LESS);
        break;
      case Compare::kNotEqual:
        pc->set_result(etcdserverpb::Compare::NOT_EQUAL);
        break;
    }
    switch (c.target) {
      case Compare::kVersion:
        pc->set_target(etcdserverpb::Compare::VERSION);
        pc->set_version(c.number);
        break;
      case Compare::kCreate:
        pc->set_target(etcdserverpb::Compare::CREATE);
        pc->set_create_revision(c.number);
        break;
      case Compare::kMod:
        pc->set_target(etcdserverpb::Compare::MOD);
        pc->set_mod_revision(c.number);
        break;
      case Compare::kValue:
        pc->set_target(etcdserverpb::Compare::VALUE);
        pc->set_value(c.value);
        break;
      case Compare::kLease:
        pc->set_target(etcdserverpb::Compare::LEASE);
        pc->set_lease(c.number);
        break;
    }
  }
  for (const RequestOp& op : req.success) *t.add_success() = OpProto(op);
  for (const RequestOp& op : req.failure) *t.add_failure() = OpProto(op);
  return t;
}

OpResult FromRange(const etcdserverpb::RangeResponse& r) {
  OpResult o;
  for (const auto& kv : r.kvs()) o.kvs.push_back(FromProto(kv));
  o.count = r.count();
  return o;
}
OpResult FromPut(const etcdserverpb::PutResponse& r) {
  OpResult o;
  o.has_prev = r.has_prev_kv();
  if (o.has_prev) o.prev = FromProto(r.prev_kv());
  return o;
}
OpResult FromDelete(const etcdserverpb::DeleteRangeResponse& r) {
  OpResult o;
  o.deleted = r.deleted();
  for (const auto& kv : r.prev_kvs()) o.prev_kvs.push_back(FromProto(kv));
  return o;
}

Response FromTxn(const etcdserverpb::TxnResponse& t) {
  Response resp;
  resp.succeeded = t.succeeded();
  resp.revision = t.header().revision();
  for (const etcdserverpb::ResponseOp& op : t.responses()) {
    if (op.has_response_range()) {
      resp.results.push_back(FromRange(op.response_range()));
    } else if (op.has_response_put()) {
      resp.results.push_back(FromPut(op.response_put()));
    } else if (op.has_response_delete_range()) {
      resp.results.push_back(FromDelete(op.response_delete_range()));
    } else {
      resp.results.emplace_back();
    }
  }
  return resp;
}

}  // namespace detcd::harness
