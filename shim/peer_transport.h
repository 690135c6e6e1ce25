// The network between detcd members: env::Transport over TCP or TLS.
//
// Shape (as etcd's rafthttp streams): every member dials every peer it
// knows and uses that connection only to send; what a member receives comes
// in on connections its peers dialed. So each connection carries messages one
// way, a peer's messages arrive in the order they were sent on a connection,
// and loss happens only across reconnects or when a queue overflows (raft
// tolerates both).
//
// Sending never blocks the engine: Send() appends to the peer's bounded
// queue (messages and bytes). When the queue is full the OLDEST message is
// dropped (fresh heartbeats and appends are worth more than stale ones) and
// counted as a send failure, as etcd counts "dropped internal Raft message
// since sending buffer is full". A payload larger than max_frame_bytes
// (max_snapshot_bytes for a snapshot) is dropped at once with a log line.
// One sender thread per peer dials it
// (round-robin over its URLs, exponential backoff backoff_min_ms ..
// backoff_max_ms between failed attempts), then writes queued messages,
// large ones in write_chunk_bytes pieces. A peer is unreachable from a
// failed dial until the next successful one: the dial failure drops what
// was queued, and messages sent meanwhile are dropped at once, each counted
// as a send failure, as etcd's pipeline drops a message it cannot deliver;
// on_unreachable tells raft (etcd's ReportUnreachable), whose leader then
// probes the peer instead of streaming appends into a queue nobody reads
// (and a snapshot's sender hears false). A connection the peer dials into
// us ends its unreachability (as etcd's stream writer attaches to the
// stream the peer dials) and our dial to it starts at once. Messages
// queued before the first dial, or while a broken connection is redialed,
// wait for it. Each
// wake-up of the sender takes every small message queued by then (up to
// 256 KiB) and writes their frames in one write; a snapshot or a message
// larger than write_chunk_bytes goes alone, without a copy. The receiver
// reads into a 256 KiB buffer and cuts the frames out of it, so a batch
// usually costs one read. Between HoldSends and FlushSends (the engine
// thread around its batches) the calling thread writes what small
// messages it can itself (see FlushSends), without waking the sender.
//
// Receiving: one accept thread per listen URL, one reader thread per
// accepted connection. The handshake is checked (cluster id, receiver id,
// sender known via SetPeer, optional allowed CN); anything wrong closes the
// connection with a log line, and garbage on the port never stops the
// listener. Each payload goes to on_message(from, payload), called on the
// connection's reader thread (so calls for one connection are in order;
// calls for different peers may be concurrent).
//
// Wire format, all integers big-endian:
//   hello   dialer -> listener, once:
//             "detcd-peer1" (11 bytes) | u64 cluster id | u64 sender id |
//             u64 receiver id                                   (35 bytes)
//   answer  listener -> dialer, once:
//             "detcd-peer1" | u8 code                           (12 bytes)
//             code 0 accepted; 1 cluster id mismatch; 2 unknown sender;
//             3 receiver id mismatch; 4 certificate CN not allowed;
//             5 the sender was removed from the cluster (etcd's 410 Gone:
//             the dialer reports it through on_removed).
//             On a non-zero code the listener closes the connection.
//   frames  dialer -> listener, then, until either side closes:
//             u32 length | payload (length bytes)
//             0 < length <= max_frame_bytes of the receiver; a longer
//             frame closes the connection. A zero length carries no
//             message: it says that the next frame is a raft snapshot
//             (SendSnapshot), for the receiver's snapshot metrics, and
//             that frame's bound is max_snapshot_bytes.
// After the answer the listener writes nothing, so a dialer that finds its
// socket readable (checked when idle and before each write) knows the peer
// closed it and reconnects; the batch it was about to write waits for the
// new connection (and goes with the queue if that dial fails).
// A connection that opens with an HTTP request line instead of the hello
// ("GET /members HTTP/1.1", as etcd's peer port serves) goes to
// serve_http when it is set (etcd's joining members ask for the
// membership that way), except "GET /raft/probing", which the transport
// answers itself as etcd's peer port does ({"OK":true,"Now":"<RFC 3339>"}).
//
// Round-trip time (etcd's prober, rafthttp/probing_status.go): one prober
// thread sends "GET /raft/probing" to every peer every probe_interval_ms
// (etcd: 4 s) on a fresh connection to the peer's pinned URL (the next URL
// after a failure) and times the request from its first byte written to
// the answer's last byte read (connection set-up excluded, as Go's
// keep-alive client excludes it). The smoothed RTT is etcd's:
// srtt = 7/8 srtt + 1/8 rtt, from 0. As etcd's monitorProbingStatus, it is
// observed into etcd_network_peer_round_trip_time_seconds{To} first
// rtt_first_report_ms (5 s) after the peer was added, then every
// rtt_report_ms (30 s) while the probes succeed, every 5 s while they fail
// (with etcd's "prober detected unhealthy status" warning). etcd runs two
// probers (its stream and its snapshot round-trippers) into the one
// histogram; detcd has one connection kind, so one prober.
//
// Metrics (with PeerTransportOptions::registry; the other etcd_network_*
// families are made by the server from Stats()):
//   etcd_network_disconnected_peers_total{Local,Remote}: an established
//     outgoing stream broke (etcd: a peer turned inactive);
//   etcd_network_peer_received_failures_total{From}: an incoming stream of
//     a known peer broke inside a frame or sent an oversized one;
//   etcd_network_snapshot_send_{success,failures}{To},
//     _send_inflights_total{To}, _send_total_duration_seconds{To} (from
//     SendSnapshot to the last byte written, or to the drop);
//   etcd_network_snapshot_receive_{success,failures}{From},
//     _receive_inflights_total{From}, _receive_total_duration_seconds{From}
//     (from the marker frame to the snapshot frame's last byte);
//   etcd_network_peer_round_trip_time_seconds{To}.
// As in etcd, a labelled child appears at its first event.

// With https URLs the same bytes travel inside TLS (TlsContext), with the
// peer certificates of --peer-cert-file etc.; the listener verifies client
// certificates when the TLS files say so.
#ifndef DETCD_SHIM_PEER_TRANSPORT_H_
#define DETCD_SHIM_PEER_TRANSPORT_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/env/env.h"
#include "shim/metrics.h"
#include "shim/tls.h"

namespace detcd::shim {

struct PeerTransportOptions {
  uint64_t cluster_id = 0;
  uint64_t local_id = 0;
  // --listen-peer-urls: "http://host:port", "https://host:port" or
  // "host:port" (plain). Port 0 binds a free port (see ListenPorts()). An
  // empty host or 0.0.0.0 listens on every IPv4 address, [::] on every one.
  // "unix://host:port" / "unixs://host:port" listen on a unix socket whose
  // file name is the literal "host:port" in the working directory (etcd's
  // semantics; a stale file is replaced, the file is removed at Stop);
  // peers with such URLs are dialed the same way (unixs: TLS, with the
  // URL's host as server name).
  std::vector<std::string> listen_urls;
  // --peer-* TLS: the server side for https listen URLs, the client side
  // when dialing https peer URLs.
  TlsFiles tls;
  // --peer-cert-allowed-cn: when set, an incoming peer's verified
  // certificate must carry this common name.
  std::string allowed_cn;

  size_t max_frame_bytes = 64 << 20;
  // A raft snapshot travels whole in one frame, with a bound of its own:
  // the wire's u32 length allows 4 GiB - 1 (an image of ~15M keys of 256
  // bytes). It was max_frame_bytes, 64 MiB, until 2026-12: a store of
  // more than ~250k such keys could not bring a new or lagging member up
  // to date. Snapshots do not count against queue_max_bytes.
  size_t max_snapshot_bytes = UINT32_MAX;
  size_t queue_max_messages = 4096;      // per peer (etcd: streamBufSize)
  size_t queue_max_bytes = 256 << 20;    // per peer
  size_t write_chunk_bytes = 64 << 10;
  int dial_timeout_ms = 1000;            // TCP connect + TLS + answer
  int accept_timeout_ms = 5000;          // listener: TLS + hello
  int backoff_min_ms = 100;
  int backoff_max_ms = 2000;
  int max_incoming_connections = 1024;   // more are closed at once
  // The prober (see above); probe_interval_ms 0 runs none.
  int probe_interval_ms = 4000;    // etcd's proberInterval
  int rtt_first_report_ms = 5000;  // etcd's statusErrorInterval
  int rtt_report_ms = 30000;       // etcd's statusMonitoringInterval

  // Where the event-driven etcd_network_* families go (see above); null:
  // none (Stats() still counts). Must outlive the transport.
  metrics::Registry* registry = nullptr;

  // Called from transport threads with each received payload. Required.
  std::function<void(uint64_t from, std::string payload)> on_message;
  // Called on a reader thread after on_message gave it payloads and before
  // it reads again (or ends): the payloads of one read are handed over
  // together (the server then wakes its engine once for them, or runs
  // them on this thread). Unset: nothing.
  std::function<void()> after_messages;
  // Runs a function on the engine's thread (the server's engine loop).
  // With it, SendSnapshot reports each snapshot when its last byte has been
  // written to the peer's connection (or when it was dropped) through this;
  // without it, SendSnapshot reports at once, as env::Transport's default.
  std::function<void(std::function<void()>)> post_to_engine;
  // Peer-port HTTP (see the wire format): serves the connection, with the
  // bytes already read, on its reader thread. Unset: such connections are
  // rejected like any other garbage.
  std::function<void(std::unique_ptr<Stream> stream, std::string initial)>
      serve_http;
  // Whether a sender that is not a peer (any more) was removed from the
  // cluster: its handshake is answered with code 5. Any thread.
  std::function<bool(uint64_t id)> is_removed;
  // A peer answered our handshake with code 5: this member was removed.
  // Called on the sender's thread.
  std::function<void(uint64_t by)> on_removed;
  // May join messages of one batch before it is written (the server joins
  // consecutive raft appends: EtcdServer::CoalescePeerPayloads): gets the
  // batch's payloads in order, leaves fewer or the same. Called on the
  // peer's sender thread; snapshots never pass through it.
  std::function<void(std::vector<std::string>* payloads)> coalesce;
  // The peer is unreachable (see above): called on the sender's thread at
  // the failed dial and on the engine's thread (inside Send) for messages
  // dropped while it stays so, at most once per unreachable_report_ms per
  // peer. Unset: nobody is told.
  std::function<void(uint64_t id)> on_unreachable;
  int unreachable_report_ms = 100;
};

struct PeerStats {
  uint64_t id = 0;
  uint64_t sent_bytes = 0;      // etcd_network_peer_sent_bytes_total
  uint64_t writes = 0;          // writes of queued messages: one per batch
                                // (all small messages queued at a wake-up)
                                // or per large message / snapshot
  uint64_t joined = 0;          // messages folded into others by coalesce
  uint64_t received_bytes = 0;  // etcd_network_peer_received_bytes_total
  uint64_t send_failures = 0;   // etcd_network_peer_sent_failures_total:
                                // messages dropped or lost in a failed write
  bool unreachable = false;     // the last dial failed
  uint64_t dial_failures = 0;   // failed connection attempts
  size_t queued_messages = 0;
  bool connected = false;       // outgoing stream up
  uint64_t disconnects = 0;     // established outgoing streams that broke
  uint64_t receive_failures = 0;
  uint64_t snapshots_sent = 0, snapshot_send_failures = 0;
  uint64_t snapshots_received = 0, snapshot_receive_failures = 0;
  uint64_t probes = 0, probe_failures = 0;
  int64_t srtt_ns = 0;  // the prober's smoothed round trip
};

struct PeerTransportStats {
  std::vector<PeerStats> peers;  // sorted by id; includes removed peers we
                                 // received from (received_bytes only)
  int active_peers = 0;          // etcd_network_active_peers
  uint64_t dropped_unknown = 0;  // Send() to an id without SetPeer
  uint64_t rejected_connections = 0;  // bad handshake / TLS / garbage
};

class PeerTransport final : public env::Transport {
 public:
  // Binds every listen URL (errors come back here, in etcd's words: "listen
  // tcp 127.0.0.1:2380: bind: address already in use") and starts the
  // accept threads.
  static absl::StatusOr<std::unique_ptr<PeerTransport>> Start(
      PeerTransportOptions options);
  ~PeerTransport() override;  // Stop()
  PeerTransport(const PeerTransport&) = delete;
  PeerTransport& operator=(const PeerTransport&) = delete;

  // env::Transport. Never blocks (beyond short mutexes).
  void Send(uint64_t to, std::string payload) override;
  // A snapshot travels like any message; `done` (through post_to_engine)
  // says true once the whole frame was written to the connection, false if
  // it was dropped (queue overflow, too large, unknown, removed or
  // unreachable peer, stop, a failed write). Exactly one report per call.
  void SendSnapshot(uint64_t to, std::string payload,
                    SnapshotDone done) override;
  // The same, the frame written from the two parts (the image is not
  // copied; the queue holds it until it is written or dropped).
  void SendSnapshotParts(uint64_t to, std::string head,
                         std::shared_ptr<const std::string> tail,
                         SnapshotDone done) override;

  // Between HoldSends and FlushSends (the engine thread, around each of
  // its batches), Send and SendSnapshot on the calling thread queue without
  // waking the senders. FlushSends then writes, from the calling thread,
  // the small messages queued for each peer whose plain-TCP connection is
  // up and idle: one non-blocking write per peer, framed as a sender
  // would; a sender is woken only for the rest (snapshots, long messages,
  // TLS, a busy or broken connection, bytes a full socket did not take,
  // which it writes first). Each message on an idle cluster thus leaves
  // without a thread hop: a wake-up of the sender cost more time and CPU
  // than the write. Not nested.
  void HoldSends();
  void FlushSends();
  // Within a hold: sends what it holds so far, as FlushSends, and goes on
  // holding (before the engine thread blocks on something, a write it
  // runs itself, so that the messages queued before it leave first).
  void FlushHeldSends();

  // Adds a peer or changes its URLs (the sender reconnects). Any thread,
  // any time. The local id is ignored.
  void SetPeer(uint64_t id, std::vector<std::string> urls);
  // Forgets a peer: its queue is dropped, its outgoing and incoming
  // connections are closed. Does not wait for its thread (reaped later).
  void RemovePeer(uint64_t id);
  // For a member that learns the cluster id after starting.
  void SetClusterId(uint64_t cluster_id);

  // Closes everything and joins every thread. Idempotent; Send afterwards
  // drops.
  void Stop();

  // Bound ports, in listen URL order.
  std::vector<int> ListenPorts() const;
  bool Connected(uint64_t id) const;
  // How long the outgoing stream to `id` has been up without a break, in
  // ns (etcd's ActiveSince), 0 if it is not up now.
  int64_t LinkAgeNanos(uint64_t id) const;
  PeerTransportStats Stats() const;

 private:
  struct Peer;
  struct Listener;
  struct Incoming;

  explicit PeerTransport(PeerTransportOptions options);
  // Queues a payload for `to`; `done` (may be empty) is told the outcome.
  struct Received;  // per sender: what its incoming streams delivered
  struct Families;  // the event-driven metric families (registry set)

  struct HeldSends;  // the calling thread's (HoldSends)
  static HeldSends& Held();

  void Enqueue(uint64_t to, std::string payload, SnapshotDone done,
               bool snapshot = false,
               std::shared_ptr<const std::string> tail = nullptr);
  // FlushSends for one peer; true if its sender must be woken.
  bool FlushPeer(Peer& p);
  void SenderLoop(std::shared_ptr<Peer> p);
  // A dial failed: the peer turns unreachable, its queue is dropped.
  void DropUnreachable(Peer& p);
  // A known peer's connection into us was accepted: it is reachable again.
  void PeerDialedIn(uint64_t id);
  // Calls on_unreachable for p (force: regardless of the last report).
  void ReportUnreachable(Peer& p, bool force);
  absl::StatusOr<std::unique_ptr<Stream>> Dial(Peer& p, const std::string& url);
  // TCP / unix connect (+ TLS) to a peer URL by `deadline_ms`
  // (CLOCK_MONOTONIC ms). `set_kill` registers each socket so another
  // thread can shut it down (false: give up); `stopping` is polled.
  absl::StatusOr<std::unique_ptr<Stream>> Connect(
      const std::string& url, int64_t deadline_ms,
      const std::function<bool(int fd)>& set_kill,
      const std::function<bool()>& stopping);
  void ProbeLoop();
  // One "GET /raft/probing" round trip in ns, or the error.
  absl::StatusOr<int64_t> Probe(const std::string& url);
  // One frame of `payload`, then `*tail` when given, as one message.
  bool WriteFrame(Peer& p, Stream& s, const std::string& payload,
                  const std::string* tail = nullptr);
  void AcceptLoop(Listener* l);
  void ServeIncoming(uint64_t conn_id, int fd, bool tls, std::string remote);
  void ReapLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::shared_ptr<Received> RecvCounterLocked(uint64_t id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const PeerTransportOptions opts_;
  std::atomic<uint64_t> cluster_id_;
  // The client context for https peer URLs: made at Start when peer TLS is
  // configured, else on the first https dial (loading the system CAs costs
  // ~50 ms, wasted on clusters without TLS).
  absl::StatusOr<std::shared_ptr<TlsContext>> ClientTls();

  std::shared_ptr<TlsContext> tls_server_;  // set if a listen URL is https
  absl::Mutex tls_mu_;
  std::shared_ptr<TlsContext> tls_client_ ABSL_GUARDED_BY(tls_mu_);
  std::vector<std::unique_ptr<Listener>> listeners_;
  int wake_pipe_[2] = {-1, -1};

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::map<uint64_t, std::shared_ptr<Peer>> peers_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<Peer>> retired_ ABSL_GUARDED_BY(mu_);
  uint64_t next_conn_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<uint64_t, std::unique_ptr<Incoming>> incoming_ ABSL_GUARDED_BY(mu_);
  std::map<uint64_t, std::shared_ptr<Received>> recv_bytes_
      ABSL_GUARDED_BY(mu_);
  std::unique_ptr<Families> families_;  // null without a registry
  // The prober: its thread, its stop flag and the socket it is using.
  std::thread prober_;
  absl::Mutex probe_mu_;
  absl::CondVar probe_cv_;
  bool probe_stop_ ABSL_GUARDED_BY(probe_mu_) = false;
  int probe_kill_fd_ ABSL_GUARDED_BY(probe_mu_) = -1;
  std::atomic<uint64_t> dropped_unknown_{0};
  std::atomic<uint64_t> rejected_{0};
};

}  // namespace detcd::shim

#endif  // DETCD_SHIM_PEER_TRANSPORT_H_
