// TLS (OpenSSL 3) for the real server's sockets: the peer transport and the
// client listener both hand a connected fd to a TlsContext and get back a
// Stream, so the code above them reads and writes bytes the same way whether
// the URL is http or https.
//
// No cryptography is written here: certificates, handshakes, verification and
// ALPN are all OpenSSL's. Auto-TLS (etcd's --auto-tls / --peer-auto-tls)
// generates a self-signed certificate with OpenSSL's API into auto_tls_dir.
//
// What follows etcd's pkg/transport (3.4, and 3.5 where named):
//   - the key pair is read again from its files whenever they change on disk
//     (etcd reads them on every handshake), so a rotated certificate is used
//     from the next connection on, without a restart; a pair that cannot be
//     loaded fails that handshake with the reason. The trusted CA file is
//     read once, at start, as in etcd;
//   - the CRL file is read (again, when it changes) after each handshake and
//     the serials of the certificates the other side sent are looked up in
//     it, as etcd's checkCRL; its signature is not checked (neither does
//     etcd). etcd does this on listeners only; detcd also refuses a revoked
//     server certificate when dialing a peer;
//   - allowed CN / hostname are checked on the verified leaf certificate
//     inside the handshake, on both sides, as etcd's VerifyPeerCertificate;
//   - peer listeners check a client certificate's SANs against the address
//     it connects from (etcd's checkSAN), unless told to skip it;
//   - cipher suites by Go's names (TLS 1.2; TLS 1.3's are not configurable,
//     as in Go), TLS1.2 / TLS1.3 as minimum and maximum version (3.5);
//   - handshake failures carry Go's texts for the cases operators meet ("tls:
//     client didn't provide a certificate", "tls: failed to verify client
//     certificate: x509: certificate signed by unknown authority", ...), so
//     logs read as etcd's.
#ifndef DETCD_SHIM_TLS_H_
#define DETCD_SHIM_TLS_H_

#include <cstddef>
#include <cstdint>
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
  // --self-signed-cert-validity (etcd 3.5): years an auto-TLS certificate
  // made now stays valid; must be > 0 when one is made.
  uint64_t self_signed_cert_validity_years = 1;

  // --cipher-suites: Go's names (as etcd takes them), in preference order.
  // They restrict TLS 1.2; TLS 1.3 keeps its own suites. Empty: OpenSSL's.
  std::vector<std::string> cipher_suites;
  // --tls-min-version / --tls-max-version (etcd 3.5): "TLS1.2", "TLS1.3";
  // "" = TLS1.2 as the minimum, the highest known as the maximum.
  std::string min_version, max_version;
  // --peer-cert-allowed-cn / --peer-cert-allowed-hostname /
  // --client-cert-allowed-hostname: the other side's verified certificate
  // must carry one of these common names, or be valid for one of these host
  // names or IPs (SANs). Checked by listeners and dialers alike, as etcd's.
  std::vector<std::string> allowed_cn, allowed_hostname;
  // Listener side: a client certificate that names hosts (SANs) must name
  // the address it connects from (etcd's checkSAN on peer listeners; off
  // with --experimental-peer-skip-client-san-verification). Not applied to
  // unix sockets, which have no address to compare.
  bool check_client_san = false;
  // Dialer side: the name the server's certificate must be valid for (and
  // the SNI sent), instead of the host of the URL dialed (etcd's
  // TLSInfo.ServerName; set for DNS SRV discovery, shim/discovery.h).
  std::string server_name;

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
  // Writes what the connection takes now, without blocking: the bytes
  // written (0 when it takes none now), or -1 on error (errno says why).
  // Only streams whose TryWrites() is true can; a TLS record cannot be
  // left half written, so TLS streams take nothing.
  virtual bool TryWrites() const { return false; }
  virtual long TryWrite(const void* buf, size_t n);
  // Shuts the socket down both ways so blocked Read/WriteAll calls return.
  // The fd itself is closed by the destructor.
  virtual void Shutdown() = 0;
  // The ALPN protocol agreed in the handshake ("" when none or plain).
  virtual std::string alpn() const { return ""; }
  // The common name of the peer's verified certificate ("" when none).
  virtual std::string peer_common_name() const { return ""; }
  // Why the last Read or WriteAll failed, when TLS knows more than the
  // socket (e.g. "remote error: tls: bad certificate": TLS 1.3 servers
  // refuse a client certificate after the client's handshake ended). ""
  // when nothing is known.
  virtual std::string error() const { return ""; }
};

// What a refused handshake learned about the other side, for etcd's
// "rejected connection" log line.
struct HandshakeInfo {
  std::string remote_addr;  // "ip:port" ("@" for unix sockets)
  std::string server_name;  // SNI the client sent
  // From the certificate the other side presented, when the handshake got
  // that far and verified it (etcd logs these only then).
  bool have_certificate = false;
  std::vector<std::string> ip_addresses, dns_names;
};

// Maps etcd's (Go's) cipher suite names to OpenSSL's; the error is etcd's
// ("unexpected TLS cipher suite \"X\"") for an unknown name, or says that
// OpenSSL lacks a suite Go knows. TLS 1.3 names map to "".
absl::StatusOr<std::vector<std::string>> OpenSslCipherNames(
    const std::vector<std::string>& go_names);

// Wraps a connected socket; the stream owns (and closes) fd. Writes use
// MSG_NOSIGNAL.
std::unique_ptr<Stream> PlainStream(int fd);

// Generates <dir>/cert.pem and <dir>/key.pem (0600, dir created 0700) unless
// both exist, as etcd's transport.SelfCert: an ECDSA P-521 key, organization
// "etcd", valid validity_years (etcd 3.5's --self-signed-cert-validity; 0 is
// etcd's error), SANs from hosts (IP or DNS; a port is dropped), usable as
// server and client certificate. Used by auto-TLS.
absl::Status EnsureSelfCert(const std::string& dir,
                            const std::vector<std::string>& hosts,
                            std::string* cert_path, std::string* key_path,
                            uint64_t validity_years = 1);

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

  // Handshakes over fd (owned) within timeout_ms, then runs the checks
  // above (CRL, SANs); on failure returns the reason (for logs), fills
  // *info if given, and closes fd.
  absl::StatusOr<std::unique_ptr<Stream>> Accept(int fd, int timeout_ms,
                                                 HandshakeInfo* info = nullptr);
  // server_name: sent as SNI and, when verifying, checked against the
  // server certificate's SANs (a host name or an IP address; "" = skip the
  // name check but still verify the chain).
  absl::StatusOr<std::unique_ptr<Stream>> Connect(
      int fd, const std::string& server_name, int timeout_ms);

  // Handshakes that had to (re)load the key pair from its files; tests see
  // a rotation through it.
  uint64_t key_pair_loads() const;

  bool is_server() const { return is_server_; }

  struct Impl;  // defined in tls.cc; public only for its callbacks

 private:
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
