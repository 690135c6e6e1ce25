// The native transport's fallback (shim/grpc_h2): a call to a method it
// does not serve itself is relayed, messages and status unchanged, to a
// grpc::Server through a channel (the server's InProcessChannel), so that
// every etcd method keeps working while methods move to the native path
// one by one. Request metadata goes along (gRPC's reserved names
// excepted); the client certificate's CN travels as "detcd-peer-cn"
// (any such header from the client is dropped first).
#ifndef DETCD_SHIM_GRPC_H2_PROXY_H_
#define DETCD_SHIM_GRPC_H2_PROXY_H_

#include <memory>

#include <grpcpp/grpcpp.h>

#include "shim/grpc_h2.h"

namespace detcd::shim::h2 {

inline constexpr char kProxiedCnKey[] = "detcd-peer-cn";

HandlerFactory ProxyTo(std::shared_ptr<grpc::Channel> channel);

}  // namespace detcd::shim::h2

#endif  // DETCD_SHIM_GRPC_H2_PROXY_H_
