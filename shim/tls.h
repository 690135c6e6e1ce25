// TLS (OpenSSL 3) for the real server's sockets: the peer transport and the
// client listener both hand a connected fd to a TlsContext and get back a
// Stream, so the code above them reads and writes bytes the same way whether
// the URL is http or https.
//
// No cryptography is written here: certificates, handshakes, verification and
// ALPN are all OpenSSL's. Auto-TLS (etcd's --auto-tls / --peer-auto-tls)
// generates a self-signed certificate with OpenSSL's API into auto_tls_dir.
#ifndef DETCD_SHIM_TLS_H_
#define DETCD_SHIM_TLS_H_

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace detcd::shim {

// The TLS settings of one listener or dialer, named after etcd's flags
// (--cert-file, --key-file, --trusted-ca-file, --client-crl-file,
// --client-cert-auth, --auto-tls, and their --peer-* twins).
struct TlsFiles {
  std::string cert_file;
  std::string key_file;
  std::string trusted_ca_file;
  std::string crl_file;
  bool client_cert_auth = false;
  bool auto_tls = false;
  // Where auto-TLS writes cert.pem and key.pem (etcd: <data-dir>/fixtures/
  // client or peer). Reused when both files already exist.
  std::string auto_tls_dir;
  // Subject alternative names for the auto-TLS certificate: host names and IP
  // addresses (a host:port is accepted; the port is dropped).
  std::vector<std::string> hosts;

  // True when the files describe TLS at all (a cert or auto-TLS).
  bool enabled() const { return auto_tls || !cert_file.empty(); }
};

// A connected byte stream: a plain fd or TLS over an fd. Blocking I/O. One
// reader thread and one writer thread may use a stream at the same time;
// Shutdown() may be called from any thread to unblock both.
//
// A TLS stream puts its fd in non-blocking mode and blocks in poll(2)
// instead, so that Read and WriteAll can run at once on two threads.
// Both kinds honour SO_RCVTIMEO / SO_SNDTIMEO set on fd(): a Read or
// WriteAll that waits longer fails (< 0 / false). Polling fd() for
// readability before Read works, except that a TLS stream may already hold
// decrypted bytes from a previous Read's record (callers that read whole
// frames with Read never notice).
//
// Creating a TlsContext sets SIGPIPE to ignored for the process: OpenSSL
// writes with write(2), and a peer that went away must give EPIPE, not kill
// the server.
class Stream {
 public:
  virtual ~Stream();
  virtual int fd() const = 0;
  // Returns > 0 bytes read, 0 at end of stream, < 0 on error.
  virtual long Read(void* buf, size_t n) = 0;
  // Writes all n bytes; false on error (the stream is then unusable).
  virtual bool WriteAll(const void* buf, size_t n) = 0;
  // Shuts the socket down both ways so blocked Read/WriteAll calls return.
  // The fd itself is closed by the destructor.
  virtual void Shutdown() = 0;
  // The ALPN protocol agreed in the handshake ("" when none or plain).
  virtual std::string alpn() const { return ""; }
  // The common name of the peer's verified certificate ("" when none).
  virtual std::string peer_common_name() const { return ""; }
};

// Wraps a connected socket; the stream owns (and closes) fd. Writes use
// MSG_NOSIGNAL.
std::unique_ptr<Stream> PlainStream(int fd);

// Generates <dir>/cert.pem and <dir>/key.pem (0600, dir created 0700) unless
// both exist, as etcd's transport.SelfCert: an ECDSA P-256 key, organization
// "etcd", valid one year, SANs from hosts (IP or DNS; a port is dropped),
// usable as server and client certificate. Used by auto-TLS.
absl::Status EnsureSelfCert(const std::string& dir,
                            const std::vector<std::string>& hosts,
                            std::string* cert_path, std::string* key_path);

class TlsContext {
 public:
  // Server side: cert/key (or, with auto_tls, a self-signed certificate
  // generated into auto_tls_dir, as etcd's --auto-tls does), the CA that
  // signs client certificates, and with client_cert_auth a client certificate
  // is required and verified. alpn: the protocols offered, in preference
  // order (e.g. {"h2", "http/1.1"}); empty = no ALPN.
  static absl::StatusOr<std::shared_ptr<TlsContext>> Server(
      const TlsFiles& f, std::vector<std::string> alpn);
  // Client side (peer dialing): presents cert/key if given (auto_tls: a
  // generated one); verifies the server against trusted_ca_file, or skips
  // verification with auto_tls, as etcd does for auto-TLS peers.
  static absl::StatusOr<std::shared_ptr<TlsContext>> Client(
      const TlsFiles& f, std::vector<std::string> alpn);

  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  // Handshakes over fd (owned) within timeout_ms; on failure returns the
  // reason (for logs) and closes fd.
  absl::StatusOr<std::unique_ptr<Stream>> Accept(int fd, int timeout_ms);
  // server_name: sent as SNI and, when verifying, checked against the
  // server certificate's SANs (a host name or an IP address; "" = skip the
  // name check but still verify the chain).
  absl::StatusOr<std::unique_ptr<Stream>> Connect(
      int fd, const std::string& server_name, int timeout_ms);

  bool is_server() const { return is_server_; }

 private:
  struct Impl;
  static absl::Status Begin(bool server, const TlsFiles& f,
                            const std::vector<std::string>& alpn, Impl* impl,
                            std::string* cert, std::string* key,
                            bool* self_cert);
  TlsContext(std::unique_ptr<Impl> impl, bool is_server);
  std::unique_ptr<Impl> impl_;
  bool is_server_;
};

}  // namespace detcd::shim

#endif  // DETCD_SHIM_TLS_H_
