#include "shim/grpc_h2_proxy.h"

#include <deque>
#include <string>
#include <utility>

#include <grpcpp/generic/generic_stub.h>

#include "absl/synchronization/mutex.h"

namespace detcd::shim::h2 {
namespace {

grpc::ByteBuffer ToBuffer(const std::string& s) {
  grpc::Slice slice(s);
  return grpc::ByteBuffer(&slice, 1);
}

std::string FromBuffer(const grpc::ByteBuffer& b) {
  std::vector<grpc::Slice> slices;
  std::string out;
  if (!b.Dump(&slices).ok()) return out;
  out.reserve(b.Length());
  for (const grpc::Slice& s : slices) {
    out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return out;
}

bool Relayed(const std::string& name) {
  return name.rfind("grpc-", 0) != 0 && name != "user-agent" &&
         name != kProxiedCnKey && name != "host";
}

// One relayed call: gRPC's client reactor on one side, the native call on
// the other. Owns itself until gRPC says OnDone and the transport let go.
//
// gRPC may end a call (OnDone) as soon as no operation is outstanding, and
// no operation may start after that. Two holds keep it open while this
// side may still start one from outside gRPC's reactions: the transport's
// (client messages and the half-close come from the loop thread; let go at
// the half-close, a cancel, when the transport drops the call, or when the
// server ended its side: a read failed) and a paused read's (taken in
// OnReadDone, let go when the read restarts, so the failed read that ends
// a finished call always comes).
class Relay final
    : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  Relay(grpc::GenericStub* stub, CallPtr call) : call_(std::move(call)) {
    for (const auto& [k, v] : call_->metadata()) {
      if (Relayed(k)) ctx_.AddMetadata(k, v);
    }
    if (!call_->cert_cn().empty()) {
      ctx_.AddMetadata(kProxiedCnKey, call_->cert_cn());
    }
    stub->PrepareBidiStreamingCall(&ctx_, call_->method(),
                                   grpc::StubOptions(), this);
    AddHold();  // the transport's
    StartRead(&in_);
    StartCall();
  }

  // Transport side (loop thread).
  void Send(std::string m) {
    absl::MutexLock l(&mu_);
    if (!transport_hold_) return;
    out_.push_back(ToBuffer(m));
    if (!writing_) {
      writing_ = true;
      StartWrite(&out_.front());
    }
  }
  void HalfClose() {
    absl::MutexLock l(&mu_);
    if (!transport_hold_) return;
    half_closed_ = true;
    if (!writing_) StartWritesDone();
    LetGoLocked();
  }
  void Cancel() {
    ctx_.TryCancel();
    absl::MutexLock l(&mu_);
    LetGoLocked();
    ResumeLocked(/*read=*/false);
  }
  void Detach() {
    {
      absl::MutexLock l(&mu_);
      LetGoLocked();
      ResumeLocked(/*read=*/false);
    }
    Unref();
  }
  // The transport wrote everything queued (loop thread).
  void Resume() {
    absl::MutexLock l(&mu_);
    ResumeLocked(/*read=*/true);
  }

  // gRPC side.
  void OnWriteDone(bool ok) override {
    absl::MutexLock l(&mu_);
    out_.pop_front();
    if (!ok) {
      out_.clear();
      writing_ = false;
      return;
    }
    if (!out_.empty()) {
      StartWrite(&out_.front());
    } else {
      writing_ = false;
      if (half_closed_) StartWritesDone();
    }
  }
  void OnReadDone(bool ok) override {
    if (!ok) {
      // The server ended its side: nothing more is worth sending, and the
      // call may end (gRPC's OnDone waits for the transport's hold).
      absl::MutexLock l(&mu_);
      LetGoLocked();
      return;
    }
    call_->Write(FromBuffer(in_));
    // The next message is read only once this one is on its way to the
    // client: a client that reads slowly holds the relay back, so the
    // server's own flow control (the watch stream's queue and its pending
    // events) sees the slow reader, instead of the relay buffering for it.
    if (call_->pending_bytes() == 0 || call_->done()) {
      StartRead(&in_);
      return;
    }
    absl::MutexLock l(&mu_);
    AddHold();
    paused_ = true;
    // It may have drained meanwhile, before OnDrained could see paused_.
    if (call_->pending_bytes() == 0) ResumeLocked(/*read=*/true);
  }
  void OnDone(const grpc::Status& s) override {
    call_->Finish(Status{static_cast<int>(s.error_code()), s.error_message()});
    Unref();
  }

 private:
  void LetGoLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!transport_hold_) return;
    transport_hold_ = false;
    RemoveHold();
  }
  // Ends a pause: restarts the read, or (read false: the call is being
  // dropped) just lets go of its hold.
  void ResumeLocked(bool read) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!paused_) return;
    paused_ = false;
    if (read) StartRead(&in_);
    RemoveHold();
  }
  void Unref() {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  CallPtr call_;
  grpc::ClientContext ctx_;
  grpc::ByteBuffer in_;
  absl::Mutex mu_;
  std::deque<grpc::ByteBuffer> out_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool half_closed_ ABSL_GUARDED_BY(mu_) = false;
  bool transport_hold_ ABSL_GUARDED_BY(mu_) = true;
  bool paused_ ABSL_GUARDED_BY(mu_) = false;  // a read waits for OnDrained
  std::atomic<int> refs_{2};  // gRPC's (OnDone) and the handler's
};

class RelayHandler final : public Handler {
 public:
  explicit RelayHandler(Relay* r) : relay_(r) {}
  ~RelayHandler() override { relay_->Detach(); }
  void OnMessage(std::string m) override { relay_->Send(std::move(m)); }
  void OnHalfClose() override { relay_->HalfClose(); }
  void OnCancel() override { relay_->Cancel(); }
  void OnDrained() override { relay_->Resume(); }

 private:
  Relay* relay_;
};

}  // namespace

HandlerFactory ProxyTo(std::shared_ptr<grpc::Channel> channel) {
  auto stub = std::make_shared<grpc::GenericStub>(std::move(channel));
  return [stub](CallPtr call) -> std::unique_ptr<Handler> {
    return std::make_unique<RelayHandler>(new Relay(stub.get(), std::move(call)));
  };
}

}  // namespace detcd::shim::h2
