// Test helpers for shim/grpc_h2 (grpc_h2_test, grpc_h2_proxy_test).
#ifndef DETCD_TESTS_SHIM_GRPC_H2_TESTING_H_
#define DETCD_TESTS_SHIM_GRPC_H2_TESTING_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "etcdserverpb/rpc.grpc.pb.h"
#include "gtest/gtest.h"
#include "shim/grpc_h2.h"

namespace detcd::shim::h2::testing {

// A loopback listener whose accepted connections go to `server` (peer
// "ipv4:<address>", the given certificate CN), as the client listener
// hands them over. Stop before the server stops.
class Acceptor {
 public:
  Acceptor(Server* server, std::string cert_cn = "") {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(fd_, 16), 0);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this, server, cert_cn] {
      while (true) {
        sockaddr_in peer{};
        socklen_t pl = sizeof peer;
        int fd = ::accept(fd_, reinterpret_cast<sockaddr*>(&peer), &pl);
        if (fd < 0) return;
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof ip);
        server->AddConnection(fd,
                              std::string("ipv4:") + ip + ":" +
                                  std::to_string(ntohs(peer.sin_port)),
                              cert_cn);
      }
    });
  }
  ~Acceptor() { Stop(); }
  void Stop() {
    if (fd_ >= 0) {
      ::shutdown(fd_, SHUT_RDWR);
      ::close(fd_);
      fd_ = -1;
    }
    if (thread_.joinable()) thread_.join();
  }
  int port() const { return port_; }
  std::string target() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
};

// `threads` clients each open `per_thread` Watch streams that send one
// request for key "end", read one answer and finish; the server ends each
// stream after that answer, before the client half-closes (gRPC C++'s
// client then resets it). Returns how many ended OK with the answer.
inline int StreamsEndedByTheServer(const std::shared_ptr<grpc::Channel>& ch,
                                   int threads, int per_thread) {
  auto w = etcdserverpb::Watch::NewStub(ch);
  std::vector<std::thread> ts;
  std::atomic<int> ok{0};
  for (int t = 0; t < threads; ++t) {
    ts.emplace_back([&] {
      for (int i = 0; i < per_thread; ++i) {
        grpc::ClientContext ctx;
        auto stream = w->Watch(&ctx);
        etcdserverpb::WatchRequest req;
        req.mutable_create_request()->set_key("end");
        stream->Write(req);
        etcdserverpb::WatchResponse resp;
        bool got = stream->Read(&resp) && resp.events_size() == 1 &&
                   resp.events(0).kv().key() == "end";
        grpc::Status st = stream->Finish();
        if (st.ok() && got) {
          ok.fetch_add(1);
        } else {
          ADD_FAILURE() << "answer " << got << ", status " << st.error_code()
                        << " " << st.error_message();
        }
      }
    });
  }
  for (std::thread& t : ts) t.join();
  return ok.load();
}

}  // namespace detcd::shim::h2::testing

#endif  // DETCD_TESTS_SHIM_GRPC_H2_TESTING_H_
