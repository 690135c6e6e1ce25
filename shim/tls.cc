// TLS over OpenSSL 3.
//
// A TLS stream keeps its socket non-blocking and makes its calls blocking
// with poll(2), holding a mutex only around the OpenSSL call itself. That
// lets one thread sit in Read while another writes (the client listener's
// pumps do), which a blocking SSL object shared by two threads would not
// allow. Waits honour the socket's SO_RCVTIMEO / SO_SNDTIMEO, so callers set
// timeouts on stream->fd() as they would on a plain socket.
#include "shim/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstring>
#include <mutex>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"

namespace detcd::shim {
namespace {

int64_t NowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

// Writes to a socket whose peer has gone must fail with EPIPE, not kill the
// process: OpenSSL's socket BIO uses write(2), which raises SIGPIPE.
void IgnoreSigpipeOnce() {
  static std::once_flag once;
  std::call_once(once, [] { ::signal(SIGPIPE, SIG_IGN); });
}

// Drains OpenSSL's (per-thread) error queue into one line.
std::string SslErrors() {
  std::vector<std::string> parts;
  unsigned long e;
  while ((e = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    parts.emplace_back(buf);
  }
  return absl::StrJoin(parts, "; ");
}

// Milliseconds in the socket's SO_RCVTIMEO / SO_SNDTIMEO; -1 = none.
int SocketTimeoutMs(int fd, int opt) {
  timeval tv{};
  socklen_t len = sizeof(tv);
  if (::getsockopt(fd, SOL_SOCKET, opt, &tv, &len) != 0) return -1;
  if (tv.tv_sec == 0 && tv.tv_usec == 0) return -1;
  return static_cast<int>(tv.tv_sec * 1000 + (tv.tv_usec + 999) / 1000);
}

// Waits until fd is ready for `events`, up to timeout_ms (-1 = forever).
// False on timeout (errno = EAGAIN) or poll failure.
bool WaitFd(int fd, short events, int timeout_ms) {
  pollfd p{fd, events, 0};
  int64_t deadline = timeout_ms < 0 ? -1 : NowMs() + timeout_ms;
  for (;;) {
    int wait = -1;
    if (deadline >= 0) wait = static_cast<int>(std::max<int64_t>(0, deadline - NowMs()));
    int r = ::poll(&p, 1, wait);
    if (r > 0) return (p.revents & POLLNVAL) == 0;
    if (r == 0) {
      errno = EAGAIN;
      return false;
    }
    if (errno != EINTR) return false;
  }
}

bool IsIpAddress(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 ||
         inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

// "host:port", "[v6]:port", "host" -> host.
std::string HostOnly(const std::string& hostport) {
  if (!hostport.empty() && hostport[0] == '[') {
    size_t close = hostport.find(']');
    return close == std::string::npos ? hostport : hostport.substr(1, close - 1);
  }
  size_t colon = hostport.find(':');
  // More than one colon: a bare IPv6 address.
  if (colon != std::string::npos && hostport.find(':', colon + 1) == std::string::npos) {
    return hostport.substr(0, colon);
  }
  return hostport;
}

class PlainStreamImpl final : public Stream {
 public:
  explicit PlainStreamImpl(int fd) : fd_(fd) {}
  ~PlainStreamImpl() override { ::close(fd_); }
  int fd() const override { return fd_; }

  long Read(void* buf, size_t n) override {
    for (;;) {
      ssize_t r = ::read(fd_, buf, n);
      if (r >= 0) return r;
      if (errno == EINTR) continue;
      // A non-blocking fd: block here as the interface promises.
      if (errno == EAGAIN && !IsBlocking()) {
        if (!WaitFd(fd_, POLLIN, SocketTimeoutMs(fd_, SO_RCVTIMEO))) return -1;
        continue;
      }
      return -1;
    }
  }

  bool WriteAll(const void* buf, size_t n) override {
    const char* p = static_cast<const char*>(buf);
    while (n > 0) {
      ssize_t r = ::send(fd_, p, n, MSG_NOSIGNAL);
      if (r < 0 && errno == ENOTSOCK) r = ::write(fd_, p, n);
      if (r < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN && !IsBlocking()) {
          if (!WaitFd(fd_, POLLOUT, SocketTimeoutMs(fd_, SO_SNDTIMEO))) {
            return false;
          }
          continue;
        }
        return false;
      }
      p += r;
      n -= static_cast<size_t>(r);
    }
    return true;
  }

  void Shutdown() override { ::shutdown(fd_, SHUT_RDWR); }

 private:
  bool IsBlocking() const { return (::fcntl(fd_, F_GETFL) & O_NONBLOCK) == 0; }
  int fd_;
};

class TlsStream final : public Stream {
 public:
  TlsStream(int fd, SSL* ssl, bool verified) : fd_(fd), ssl_(ssl) {
    const unsigned char* proto = nullptr;
    unsigned int len = 0;
    SSL_get0_alpn_selected(ssl_, &proto, &len);
    if (proto != nullptr) alpn_.assign(reinterpret_cast<const char*>(proto), len);
    X509* cert = SSL_get0_peer_certificate(ssl_);
    if (verified && cert != nullptr && SSL_get_verify_result(ssl_) == X509_V_OK) {
      char cn[256];
      int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert),
                                        NID_commonName, cn, sizeof(cn));
      if (n > 0) cn_.assign(cn, static_cast<size_t>(n));
    }
  }

  ~TlsStream() override {
    {
      absl::MutexLock lock(&mu_);
      // A close_notify, best effort: the socket is non-blocking, so this
      // never waits for the peer.
      if (!shut_.load()) {
        ERR_clear_error();
        SSL_shutdown(ssl_);
        ERR_clear_error();
      }
      SSL_free(ssl_);
    }
    ::close(fd_);
  }

  int fd() const override { return fd_; }
  std::string alpn() const override { return alpn_; }
  std::string peer_common_name() const override { return cn_; }

  long Read(void* buf, size_t n) override {
    if (n == 0) return 0;
    int want = static_cast<int>(std::min<size_t>(n, INT_MAX));
    for (;;) {
      int r, err;
      {
        absl::MutexLock lock(&mu_);
        ERR_clear_error();
        r = SSL_read(ssl_, buf, want);
        if (r > 0) return r;
        err = SSL_get_error(ssl_, r);
        ERR_clear_error();
      }
      if (err == SSL_ERROR_ZERO_RETURN) return 0;
      if (shut_.load()) return -1;
      if (err == SSL_ERROR_WANT_READ) {
        if (!WaitFd(fd_, POLLIN, SocketTimeoutMs(fd_, SO_RCVTIMEO))) return -1;
      } else if (err == SSL_ERROR_WANT_WRITE) {
        if (!WaitFd(fd_, POLLOUT, SocketTimeoutMs(fd_, SO_SNDTIMEO))) return -1;
      } else {
        return -1;
      }
    }
  }

  bool WriteAll(const void* buf, size_t n) override {
    const char* p = static_cast<const char*>(buf);
    while (n > 0) {
      int chunk = static_cast<int>(std::min<size_t>(n, 1 << 30));
      int r, err;
      {
        absl::MutexLock lock(&mu_);
        ERR_clear_error();
        r = SSL_write(ssl_, p, chunk);
        err = r > 0 ? SSL_ERROR_NONE : SSL_get_error(ssl_, r);
        ERR_clear_error();
      }
      if (r > 0) {
        p += r;
        n -= static_cast<size_t>(r);
        continue;
      }
      if (shut_.load()) return false;
      if (err == SSL_ERROR_WANT_WRITE) {
        if (!WaitFd(fd_, POLLOUT, SocketTimeoutMs(fd_, SO_SNDTIMEO))) return false;
      } else if (err == SSL_ERROR_WANT_READ) {
        // Only during a renegotiation, which we refuse; a reader thread
        // consumes the bytes, so just retry shortly.
        if (!WaitFd(fd_, POLLIN, 10) && errno != EAGAIN) return false;
      } else {
        return false;
      }
    }
    return true;
  }

  void Shutdown() override {
    shut_.store(true);
    ::shutdown(fd_, SHUT_RDWR);
  }

 private:
  const int fd_;
  absl::Mutex mu_;  // guards ssl_ (OpenSSL objects are not thread-safe)
  SSL* ssl_;
  std::atomic<bool> shut_{false};
  std::string alpn_;
  std::string cn_;
};

// ALPN's wire format: each protocol prefixed by its length.
std::string AlpnWire(const std::vector<std::string>& protos) {
  std::string out;
  for (const std::string& p : protos) {
    if (p.empty() || p.size() > 255) continue;
    out.push_back(static_cast<char>(p.size()));
    out.append(p);
  }
  return out;
}

// Accepts a chain whose leaf's issuer publishes no CRL: etcd checks a
// presented certificate against the CRL file only for the serials it lists.
int VerifyIgnoringMissingCrl(int ok, X509_STORE_CTX* ctx) {
  if (!ok && X509_STORE_CTX_get_error(ctx) == X509_V_ERR_UNABLE_TO_GET_CRL) {
    X509_STORE_CTX_set_error(ctx, X509_V_OK);
    return 1;
  }
  return ok;
}

absl::Status WriteFile0600(const std::string& path, const std::string& data) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("open ", tmp, ": ", strerror(errno)));
  }
  size_t off = 0;
  while (off < data.size()) {
    ssize_t r = ::write(fd, data.data() + off, data.size() - off);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      int err = errno;
      ::close(fd);
      return absl::InternalError(absl::StrCat("write ", tmp, ": ", strerror(err)));
    }
    off += static_cast<size_t>(r);
  }
  ::fsync(fd);
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("rename ", tmp, ": ", strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status MkdirAll(const std::string& dir) {
  for (size_t pos = 1; pos <= dir.size(); ++pos) {
    if (pos != dir.size() && dir[pos] != '/') continue;
    std::string prefix = dir.substr(0, pos);
    if (::mkdir(prefix.c_str(), 0700) != 0 && errno != EEXIST) {
      return absl::InternalError(
          absl::StrCat("cannot create cert directory ", dir, ": ", strerror(errno)));
    }
  }
  return absl::OkStatus();
}

std::string BioToString(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(len));
}

bool AddExt(X509* cert, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) return false;
  bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

}  // namespace

// Generates (or reuses) <dir>/cert.pem and <dir>/key.pem, as etcd's
// transport.SelfCert: ECDSA key, organization "etcd", valid one year, SANs
// from `hosts`. Usable both as a server and as a client certificate.
absl::Status EnsureSelfCert(const std::string& dir,
                            const std::vector<std::string>& hosts,
                            std::string* cert_path, std::string* key_path) {
  if (dir.empty()) {
    return absl::InvalidArgumentError("auto TLS needs a directory for its certificate");
  }
  if (absl::Status s = MkdirAll(dir); !s.ok()) return s;
  *cert_path = dir + "/cert.pem";
  *key_path = dir + "/key.pem";
  struct stat st;
  if (::stat(cert_path->c_str(), &st) == 0 && ::stat(key_path->c_str(), &st) == 0) {
    return absl::OkStatus();
  }

  ERR_clear_error();
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* cert = X509_new();
  BIGNUM* serial = BN_new();
  BIO* cert_bio = BIO_new(BIO_s_mem());
  BIO* key_bio = BIO_new(BIO_s_mem());
  std::string error;
  do {
    if (key == nullptr || cert == nullptr || serial == nullptr ||
        cert_bio == nullptr || key_bio == nullptr) {
      error = "allocation failed";
      break;
    }
    X509_set_version(cert, 2);
    if (BN_rand(serial, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1 ||
        BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(cert)) == nullptr) {
      error = "cannot generate serial number";
      break;
    }
    X509_gmtime_adj(X509_getm_notBefore(cert), 0);
    X509_gmtime_adj(X509_getm_notAfter(cert), 365L * 24 * 3600);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("etcd"), -1, -1, 0);
    X509_set_issuer_name(cert, name);
    std::vector<std::string> sans;
    for (const std::string& h : hosts) {
      std::string host = HostOnly(h);
      if (host.empty()) continue;
      sans.push_back(absl::StrCat(IsIpAddress(host) ? "IP:" : "DNS:", host));
    }
    if (!AddExt(cert, NID_basic_constraints, "critical,CA:FALSE") ||
        !AddExt(cert, NID_key_usage, "critical,digitalSignature,keyEncipherment") ||
        !AddExt(cert, NID_ext_key_usage, "serverAuth,clientAuth") ||
        (!sans.empty() &&
         !AddExt(cert, NID_subject_alt_name, absl::StrJoin(sans, ",")))) {
      error = "cannot add certificate extensions";
      break;
    }
    if (X509_sign(cert, key, EVP_sha256()) == 0) {
      error = "cannot sign certificate";
      break;
    }
    if (PEM_write_bio_X509(cert_bio, cert) != 1 ||
        PEM_write_bio_PrivateKey(key_bio, key, nullptr, nullptr, 0, nullptr,
                                 nullptr) != 1) {
      error = "cannot encode certificate";
      break;
    }
  } while (false);
  std::string cert_pem, key_pem;
  if (error.empty()) {
    cert_pem = BioToString(cert_bio);
    key_pem = BioToString(key_bio);
  }
  BIO_free(key_bio);
  BIO_free(cert_bio);
  BN_free(serial);
  X509_free(cert);
  EVP_PKEY_free(key);
  if (!error.empty()) {
    return absl::InternalError(absl::StrCat("auto TLS: ", error, ": ", SslErrors()));
  }
  if (absl::Status s = WriteFile0600(*key_path, key_pem); !s.ok()) return s;
  return WriteFile0600(*cert_path, cert_pem);
}

struct TlsContext::Impl {
  SSL_CTX* ctx = nullptr;
  std::string alpn_wire;  // our protocols, in preference order
  bool verify = false;    // peers' certificates are verified
  ~Impl() { SSL_CTX_free(ctx); }
};

namespace {

// Server side: picks the first of our protocols the client also offers.
int SelectAlpn(SSL*, const unsigned char** out, unsigned char* outlen,
               const unsigned char* in, unsigned int inlen, void* arg) {
  const std::string& ours = *static_cast<const std::string*>(arg);
  for (size_t i = 0; i < ours.size();) {
    size_t len = static_cast<unsigned char>(ours[i]);
    std::string_view mine(ours.data() + i + 1, len);
    for (unsigned int j = 0; j < inlen;) {
      unsigned int l = in[j];
      if (j + 1 + l > inlen) break;
      if (std::string_view(reinterpret_cast<const char*>(in + j + 1), l) == mine) {
        *out = in + j + 1;
        *outlen = static_cast<unsigned char>(l);
        return SSL_TLSEXT_ERR_OK;
      }
      j += 1 + l;
    }
    i += 1 + len;
  }
  // No common protocol: carry on without ALPN (as Go's server does for
  // clients that offer only unknown ones).
  return SSL_TLSEXT_ERR_NOACK;
}

absl::Status LoadKeyPair(SSL_CTX* ctx, const std::string& cert,
                         const std::string& key) {
  if (key.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("TLS: cert file ", cert, " given without a key file"));
  }
  if (SSL_CTX_use_certificate_chain_file(ctx, cert.c_str()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("TLS: cannot load certificate ", cert, ": ", SslErrors()));
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("TLS: cannot load key ", key, ": ", SslErrors()));
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "TLS: key ", key, " does not match certificate ", cert, ": ", SslErrors()));
  }
  return absl::OkStatus();
}

absl::Status LoadCa(SSL_CTX* ctx, const std::string& ca_file) {
  if (ca_file.empty()) {
    SSL_CTX_set_default_verify_paths(ctx);
    return absl::OkStatus();
  }
  if (SSL_CTX_load_verify_locations(ctx, ca_file.c_str(), nullptr) != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "TLS: cannot load trusted CA file ", ca_file, ": ", SslErrors()));
  }
  return absl::OkStatus();
}

absl::Status LoadCrl(SSL_CTX* ctx, const std::string& crl_file) {
  if (crl_file.empty()) return absl::OkStatus();
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  if (X509_STORE_load_file(store, crl_file.c_str()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("TLS: cannot load CRL file ", crl_file, ": ", SslErrors()));
  }
  X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
  return absl::OkStatus();
}

// Settings shared by both sides.
absl::StatusOr<SSL_CTX*> NewCtx(bool server) {
  IgnoreSigpipeOnce();
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (ctx == nullptr) return absl::InternalError("TLS: " + SslErrors());
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF |
                               SSL_OP_NO_TICKET);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (server) {
    // No session tickets after the handshake: a server then sends nothing
    // the application did not write, so an idle client can treat a readable
    // socket as "closed by the peer" (the peer transport does).
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  }
  return ctx;
}

}  // namespace

Stream::~Stream() = default;

std::unique_ptr<Stream> PlainStream(int fd) {
  return std::make_unique<PlainStreamImpl>(fd);
}

TlsContext::TlsContext(std::unique_ptr<Impl> impl, bool is_server)
    : impl_(std::move(impl)), is_server_(is_server) {}

TlsContext::~TlsContext() = default;

// The setup both sides share: an OpenSSL context, the ALPN list, and the
// certificate to present. Given certificates win over auto-TLS, as in etcd
// ("ignoring peer auto TLS since certs given").
absl::Status TlsContext::Begin(bool server, const TlsFiles& f,
                               const std::vector<std::string>& alpn,
                               Impl* impl, std::string* cert,
                               std::string* key, bool* self_cert) {
  auto ctx = NewCtx(server);
  if (!ctx.ok()) return ctx.status();
  impl->ctx = *ctx;
  impl->alpn_wire = AlpnWire(alpn);
  *cert = f.cert_file;
  *key = f.key_file;
  *self_cert = cert->empty() && f.auto_tls;
  if (*self_cert) return EnsureSelfCert(f.auto_tls_dir, f.hosts, cert, key);
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<TlsContext>> TlsContext::Server(
    const TlsFiles& f, std::vector<std::string> alpn) {
  auto impl = std::make_unique<Impl>();
  std::string cert, key;
  bool self_cert = false;
  if (absl::Status s = Begin(/*server=*/true, f, alpn, impl.get(), &cert, &key,
                             &self_cert);
      !s.ok()) {
    return s;
  }
  if (cert.empty()) {
    return absl::InvalidArgumentError(
        "TLS: a server needs a cert file and key file (or auto TLS)");
  }
  if (absl::Status s = LoadKeyPair(impl->ctx, cert, key); !s.ok()) return s;
  // etcd requires and verifies client certificates when a trusted CA is set
  // or client-cert-auth is on. An auto-TLS server replaces the whole TLS
  // config with its self-signed one, so it verifies no one.
  if (!self_cert && (!f.trusted_ca_file.empty() || f.client_cert_auth)) {
    if (absl::Status s = LoadCa(impl->ctx, f.trusted_ca_file); !s.ok()) return s;
    if (!f.trusted_ca_file.empty()) {
      // Tells clients which CAs we accept, so they pick the right cert.
      STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(f.trusted_ca_file.c_str());
      if (names != nullptr) SSL_CTX_set_client_CA_list(impl->ctx, names);
    }
    if (absl::Status s = LoadCrl(impl->ctx, f.crl_file); !s.ok()) return s;
    SSL_CTX_set_verify(impl->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       VerifyIgnoringMissingCrl);
    impl->verify = true;
  } else {
    SSL_CTX_set_verify(impl->ctx, SSL_VERIFY_NONE, nullptr);
  }
  if (!impl->alpn_wire.empty()) {
    SSL_CTX_set_alpn_select_cb(impl->ctx, SelectAlpn, &impl->alpn_wire);
  }
  ERR_clear_error();
  return std::shared_ptr<TlsContext>(new TlsContext(std::move(impl), true));
}

absl::StatusOr<std::shared_ptr<TlsContext>> TlsContext::Client(
    const TlsFiles& f, std::vector<std::string> alpn) {
  auto impl = std::make_unique<Impl>();
  std::string cert, key;
  bool self_cert = false;
  if (absl::Status s = Begin(/*server=*/false, f, alpn, impl.get(), &cert, &key,
                             &self_cert);
      !s.ok()) {
    return s;
  }
  if (!cert.empty()) {
    if (absl::Status s = LoadKeyPair(impl->ctx, cert, key); !s.ok()) return s;
  }
  if (self_cert) {
    // etcd skips verification with self-signed (auto-TLS) certificates.
    SSL_CTX_set_verify(impl->ctx, SSL_VERIFY_NONE, nullptr);
  } else {
    if (absl::Status s = LoadCa(impl->ctx, f.trusted_ca_file); !s.ok()) return s;
    if (absl::Status s = LoadCrl(impl->ctx, f.crl_file); !s.ok()) return s;
    SSL_CTX_set_verify(impl->ctx, SSL_VERIFY_PEER, VerifyIgnoringMissingCrl);
    impl->verify = true;
  }
  if (!impl->alpn_wire.empty()) {
    SSL_CTX_set_alpn_protos(
        impl->ctx, reinterpret_cast<const unsigned char*>(impl->alpn_wire.data()),
        static_cast<unsigned int>(impl->alpn_wire.size()));
  }
  ERR_clear_error();
  return std::shared_ptr<TlsContext>(new TlsContext(std::move(impl), false));
}

namespace {

// Runs the handshake on a non-blocking fd until done or the deadline.
absl::Status Handshake(SSL* ssl, int fd, bool server, int timeout_ms) {
  const int64_t deadline = NowMs() + std::max(timeout_ms, 1);
  for (;;) {
    ERR_clear_error();
    int r = server ? SSL_accept(ssl) : SSL_connect(ssl);
    if (r == 1) return absl::OkStatus();
    int err = SSL_get_error(ssl, r);
    if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
      int64_t left = deadline - NowMs();
      if (left <= 0 ||
          !WaitFd(fd, err == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT,
                  static_cast<int>(left))) {
        if (errno == EAGAIN) {
          return absl::DeadlineExceededError("tls: handshake timed out");
        }
        return absl::UnavailableError(absl::StrCat("tls: poll: ", strerror(errno)));
      }
      continue;
    }
    std::string why;
    long verify = SSL_get_verify_result(ssl);
    if (verify != X509_V_OK) {
      why = absl::StrCat("certificate verify failed: ",
                         X509_verify_cert_error_string(verify));
    }
    std::string ssl_errors = SslErrors();
    if (!ssl_errors.empty()) {
      if (!why.empty()) why += "; ";
      why += ssl_errors;
    }
    if (why.empty()) {
      why = err == SSL_ERROR_SYSCALL
                ? (errno != 0 ? strerror(errno) : "connection closed by peer")
                : absl::StrCat("SSL error ", err);
    }
    return absl::UnavailableError(absl::StrCat("tls: handshake failed: ", why));
  }
}

absl::StatusOr<std::unique_ptr<Stream>> Establish(SSL_CTX* ctx, int fd, bool server,
                                                  const std::string& server_name,
                                                  bool verify, int timeout_ms) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    int err = errno;
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat("tls: fcntl: ", strerror(err)));
  }
  ERR_clear_error();
  SSL* ssl = SSL_new(ctx);
  if (ssl == nullptr || SSL_set_fd(ssl, fd) != 1) {
    SSL_free(ssl);
    ::close(fd);
    return absl::InternalError("tls: " + SslErrors());
  }
  if (!server && !server_name.empty()) {
    const bool ip = IsIpAddress(server_name);
    // SNI carries host names only (RFC 6066).
    if (!ip) SSL_set_tlsext_host_name(ssl, server_name.c_str());
    if (verify) {
      X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
      int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, server_name.c_str())
                  : X509_VERIFY_PARAM_set1_host(param, server_name.c_str(), 0);
      if (ok != 1) {
        SSL_free(ssl);
        ::close(fd);
        return absl::InvalidArgumentError(
            absl::StrCat("tls: bad server name ", server_name));
      }
    }
  }
  if (absl::Status s = Handshake(ssl, fd, server, timeout_ms); !s.ok()) {
    SSL_free(ssl);
    ::close(fd);
    return s;
  }
  return std::unique_ptr<Stream>(new TlsStream(fd, ssl, verify));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Stream>> TlsContext::Accept(int fd, int timeout_ms) {
  if (!is_server_) {
    ::close(fd);
    return absl::FailedPreconditionError("tls: Accept on a client context");
  }
  return Establish(impl_->ctx, fd, true, "", impl_->verify, timeout_ms);
}

absl::StatusOr<std::unique_ptr<Stream>> TlsContext::Connect(
    int fd, const std::string& server_name, int timeout_ms) {
  if (is_server_) {
    ::close(fd);
    return absl::FailedPreconditionError("tls: Connect on a server context");
  }
  return Establish(impl_->ctx, fd, false, server_name, impl_->verify, timeout_ms);
}

}  // namespace detcd::shim
