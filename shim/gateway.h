// etcd's gRPC gateway: the v3 API as JSON over HTTP/1.1 on the client URLs
// (`curl -d '{"key":"Zm9v"}' http://127.0.0.1:2379/v3/kv/range`), as etcd
// 3.4 serves it with grpc-gateway v1 and JSONPb{OrigName: true}.
//
// Every call goes through this member's own gRPC server (an in-process
// channel and a generic stub), so the gateway runs the same service code,
// auth checks and metrics as gRPC clients: it only translates.
//
// The translation, as grpc-gateway's:
//   - paths: POST /v3/<service path> from etcd's google.api.http options
//     (kv/range, watch, lease/keepalive, maintenance/status, lock, ...);
//     /v3beta/ is rewritten to /v3/ (etcd's accessController); /v3alpha/ is
//     served too (etcd 3.3's prefix; 3.4.23 answers it 404);
//   - requests: one JSON object per call (proto or lowerCamel field names,
//     int64 as numbers or strings, bytes base64, enums by name or number,
//     unknown fields ignored, an empty body or `null` is the empty
//     request). Malformed JSON gets Go's encoding/json texts ("unexpected
//     EOF", "invalid character 'x' looking for beginning of value", "json:
//     cannot unmarshal bool into Go value of type int64", ...), code 3;
//   - responses: protobuf's JSON mapping with proto field names, int64 as
//     strings, bytes base64, defaults omitted;
//   - errors: {"error": msg, "message": msg, "code": grpc code} with
//     grpc-gateway's HTTP status for the code (3 -> 400, 16 -> 401, ...);
//   - streams (watch, lease/keepalive, maintenance/snapshot,
//     election/observe): the body holds the requests (JSON values one
//     after another); after the last one the gateway half-closes the
//     stream, as grpc-gateway does at the end of the body. The answer is
//     chunked, one {"result": msg} line per response as it arrives; an
//     error ends it with {"error": {"grpc_code", "http_code", "message",
//     "http_status"}}. The call is cancelled when the client goes away;
//   - the Authorization header is the auth token ("authorization"
//     metadata, as grpc-gateway forwards it);
//   - CORS headers and OPTIONS as etcd's accessController (--cors).
#ifndef DETCD_SHIM_GATEWAY_H_
#define DETCD_SHIM_GATEWAY_H_

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "google/protobuf/message.h"
#include "grpcpp/generic/generic_stub.h"
#include "shim/http.h"

namespace detcd::shim {

struct GatewayOptions {
  // --cors: allowed origins ("*", or an empty list, allows any); etcd adds
  // its CORS headers to every answer when allowed.
  std::vector<std::string> cors = {"*"};
  // How often a waiting call checks whether its client went away.
  int poll_interval_ms = 100;
  // The native gRPC transport (shim/grpc_h2.h), when the server runs one:
  // unary calls of the methods it serves go to it over a connection of
  // each HTTP connection's thread (`native_connect` returns one end of a
  // new connection to it, or -1) instead of through gRPC C++'s in-process
  // channel. Unset: everything takes the channel.
  std::function<bool(std::string_view method)> native_serves;
  std::function<int()> native_connect;
};

class Gateway {
 public:
  // `channel` reaches this member's gRPC server (InProcessChannel).
  Gateway(std::shared_ptr<grpc::Channel> channel, GatewayOptions options);
  ~Gateway();
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  // True for the paths the gateway answers: /v3/..., /v3beta/...,
  // /v3alpha/... (everything under them, unknown ones get 404 here).
  static bool Owns(std::string_view path);

  // Thread-safe; runs on the connection's thread and may block while the
  // call runs (streams: until the stream ends or the client goes away).
  HttpResponse Handle(const HttpRequest& req);

  // A path's gRPC method and message types (defined in gateway.cc).
  struct Route;

 private:
  HttpResponse Unary(const HttpRequest& req, const Route& route);
  // A unary call over the native transport (GatewayOptions::native_*);
  // false if it could not be made there (the caller takes the channel).
  bool NativeUnary(const std::string& method, const std::string& request,
                   const std::string& token,
                   const std::function<bool()>& client_gone,
                   grpc::Status* status, std::string* response);
  HttpResponse Stream(const HttpRequest& req, const Route& route);
  void AddCors(const HttpRequest& req, HttpResponse* resp) const;

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<grpc::GenericStub> stub_;
  GatewayOptions options_;
};

// --- Parts exposed for tests ---

// Go's json.Decoder.Decode over a body holding JSON values one after
// another: finds the next value at *pos, skipping whitespace. kEnd at the
// end of the body (io.EOF); kError with Go's text in *error ("unexpected
// EOF", "invalid character ..."). Only the syntax is checked.
enum class JsonNext { kValue, kEnd, kError };
JsonNext NextJsonValue(std::string_view body, size_t* pos,
                       std::string_view* value, std::string* error);

// Fills `msg` from one JSON value as grpc-gateway's JSONPb decoder does
// (`null` leaves it empty); errors carry Go's texts.
absl::Status JsonToProto(std::string_view value,
                         google::protobuf::Message* msg);

// A message as grpc-gateway's JSONPb{OrigName: true} marshals it.
std::string ProtoToJson(const google::protobuf::Message& msg);

// Go's encoding/json form of a string (quotes, escapes; <, >, & as \u003c,
// \u003e, \u0026 as Go's HTML-safe encoder).
std::string GoJsonString(std::string_view s);

// grpc-gateway's HTTPStatusFromCode.
int HttpStatusFromGrpcCode(int code);

}  // namespace detcd::shim

#endif  // DETCD_SHIM_GATEWAY_H_
