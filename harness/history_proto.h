// A history's requests as etcd's protobuf messages, and etcd's answers as a
// history's results: one conversion for the simulated clients
// (harness/workload.cc) and the real-cluster chaos clients (chaos/).
#ifndef DETCD_HARNESS_HISTORY_PROTO_H_
#define DETCD_HARNESS_HISTORY_PROTO_H_

#include "engine/mvcc/types.h"
#include "etcdserverpb/rpc.pb.h"
#include "harness/history.h"

namespace detcd::harness {

etcdserverpb::RangeRequest RangeProto(const RequestOp& op);
etcdserverpb::PutRequest PutProto(const RequestOp& op);
etcdserverpb::DeleteRangeRequest DeleteProto(const RequestOp& op);
etcdserverpb::RequestOp OpProto(const RequestOp& op);
etcdserverpb::TxnRequest TxnProto(const Request& req);

mvcc::KeyValue FromProto(const mvccpb::KeyValue& kv);
OpResult FromRange(const etcdserverpb::RangeResponse& r);
OpResult FromPut(const etcdserverpb::PutResponse& r);
OpResult FromDelete(const etcdserverpb::DeleteRangeResponse& r);
Response FromTxn(const etcdserverpb::TxnResponse& t);

}  // namespace detcd::harness

#endif  // DETCD_HARNESS_HISTORY_PROTO_H_
