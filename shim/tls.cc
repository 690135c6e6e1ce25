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

#include <netdb.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <climits>
#include <cstring>
#include <mutex>
#include <set>
#include <utility>

#include "absl/strings/match.h"
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

// Go's words for what OpenSSL's error queue holds (defined below).
std::string SslErrorsLikeGo();

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

  bool TryWrites() const override { return true; }
  long TryWrite(const void* buf, size_t n) override {
    for (;;) {
      ssize_t r = ::send(fd_, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (r >= 0) return r;
      if (errno == EINTR) continue;
      // Full, or not a socket (a pipe in tests): WriteAll takes it.
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOTSOCK) {
        return 0;
      }
      return -1;
    }
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
  std::string error() const override {
    absl::MutexLock lock(&mu_);
    return error_;
  }

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
        // An alert from the other side (a TLS 1.3 server refusing our
        // certificate) is only seen here; keep its words for the caller.
        if (err == SSL_ERROR_SSL && error_.empty()) error_ = SslErrorsLikeGo();
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
  mutable absl::Mutex mu_;  // guards ssl_ (OpenSSL objects are not thread-safe)
  SSL* ssl_;
  std::string error_;  // why the stream failed, when TLS says (guarded by mu_)
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
// transport.SelfCert: ECDSA key, organization "etcd", valid validity_years,
// SANs from `hosts`. Usable both as a server and as a client certificate.
absl::Status EnsureSelfCert(const std::string& dir,
                            const std::vector<std::string>& hosts,
                            std::string* cert_path, std::string* key_path,
                            uint64_t validity_years) {
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

  // etcd 3.5 refuses a zero validity (its text) before making anything.
  if (validity_years == 0) {
    return absl::InvalidArgumentError(
        "selfSignedCertValidity is invalid,it should be greater than 0");
  }
  if (validity_years > 1000) {
    return absl::InvalidArgumentError(
        "--self-signed-cert-validity must be at most 1000 years");
  }
  ERR_clear_error();
  EVP_PKEY* key = EVP_EC_gen("P-521");
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
    X509_time_adj_ex(X509_getm_notAfter(cert),
                     static_cast<int>(365 * validity_years), 0, nullptr);
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

namespace {

// Identifies a file's current contents cheaply: a rename over it, or a
// rewrite in place, changes at least one of these.
struct FileStamp {
  dev_t dev = 0;
  ino_t ino = 0;
  off_t size = -1;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  bool operator==(const FileStamp&) const = default;
};

// Go's os error texts, which etcd's logs show ("open x: no such file or
// directory").
std::string GoFileError(const char* op, const std::string& path, int err) {
  std::string e = strerror(err);
  if (!e.empty()) e[0] = static_cast<char>(std::tolower(e[0]));
  return absl::StrCat(op, " ", path, ": ", e);
}

absl::StatusOr<FileStamp> StampOf(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(GoFileError("open", path, errno));
  }
  FileStamp f;
  f.dev = st.st_dev;
  f.ino = st.st_ino;
  f.size = st.st_size;
  f.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 +
               st.st_mtim.tv_nsec;
  f.ctime_ns = static_cast<int64_t>(st.st_ctim.tv_sec) * 1'000'000'000 +
               st.st_ctim.tv_nsec;
  return f;
}

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(GoFileError("open", path, errno));
  std::string out;
  char buf[16384];
  for (;;) {
    ssize_t r = ::read(fd, buf, sizeof(buf));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      int err = errno;
      ::close(fd);
      return absl::InternalError(GoFileError("read", path, err));
    }
    if (r == 0) break;
    out.append(buf, static_cast<size_t>(r));
    // Certificates, keys and CRLs are small; a huge file is a mistake.
    if (out.size() > (64u << 20)) {
      ::close(fd);
      return absl::InvalidArgumentError(absl::StrCat(path, ": file too large"));
    }
  }
  ::close(fd);
  return out;
}

// A certificate chain and its key, as read from the files.
struct KeyPair {
  X509* leaf = nullptr;
  STACK_OF(X509)* chain = nullptr;  // what follows the leaf in the file
  EVP_PKEY* key = nullptr;
  KeyPair() = default;
  KeyPair(const KeyPair&) = delete;
  KeyPair& operator=(const KeyPair&) = delete;
  ~KeyPair() {
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
  }
};

// Reads a PEM certificate chain and key; the errors are Go's
// tls.X509KeyPair texts, which etcd's logs show.
absl::StatusOr<std::shared_ptr<KeyPair>> LoadKeyPairFiles(const std::string& cert,
                                                          const std::string& key) {
  if (cert.empty() || key.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "KeyFile and CertFile must both be present[key: ", key, ", cert: ", cert, "]"));
  }
  absl::StatusOr<std::string> cert_pem = ReadWholeFile(cert);
  if (!cert_pem.ok()) return cert_pem.status();
  absl::StatusOr<std::string> key_pem = ReadWholeFile(key);
  if (!key_pem.ok()) return key_pem.status();
  auto kp = std::make_shared<KeyPair>();
  ERR_clear_error();
  BIO* bio = BIO_new_mem_buf(cert_pem->data(), static_cast<int>(cert_pem->size()));
  kp->leaf = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  kp->chain = sk_X509_new_null();
  while (kp->leaf != nullptr) {
    X509* more = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
    if (more == nullptr) break;
    sk_X509_push(kp->chain, more);
  }
  BIO_free(bio);
  if (kp->leaf == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        "tls: failed to find any PEM data in certificate input");
  }
  bio = BIO_new_mem_buf(key_pem->data(), static_cast<int>(key_pem->size()));
  kp->key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (kp->key == nullptr) {
    ERR_clear_error();
    return absl::InvalidArgumentError("tls: failed to find any PEM data in key input");
  }
  if (X509_check_private_key(kp->leaf, kp->key) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError("tls: private key does not match public key");
  }
  ERR_clear_error();
  return kp;
}

// Serial numbers as Go's big.Int.Bytes(): big-endian magnitude, no sign
// byte, no leading zeros.
std::string SerialBytes(const ASN1_INTEGER* serial) {
  BIGNUM* bn = ASN1_INTEGER_to_BN(serial, nullptr);
  if (bn == nullptr) return "";
  std::string out(static_cast<size_t>(BN_num_bytes(bn)), '\0');
  BN_bn2bin(bn, reinterpret_cast<unsigned char*>(out.data()));
  BN_free(bn);
  return out;
}

std::string Hex(const std::string& bytes) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

// The revoked serials of a CRL file, PEM or DER as Go's x509.ParseCRL reads.
absl::StatusOr<std::set<std::string>> LoadRevokedSerials(const std::string& path) {
  absl::StatusOr<std::string> data = ReadWholeFile(path);
  if (!data.ok()) return data.status();
  ERR_clear_error();
  BIO* bio = BIO_new_mem_buf(data->data(), static_cast<int>(data->size()));
  X509_CRL* crl = nullptr;
  if (absl::StrContains(*data, "-----BEGIN X509 CRL")) {
    crl = PEM_read_bio_X509_CRL(bio, nullptr, nullptr, nullptr);
  } else {
    crl = d2i_X509_CRL_bio(bio, nullptr);
  }
  BIO_free(bio);
  ERR_clear_error();
  if (crl == nullptr) return absl::InvalidArgumentError("x509: malformed crl");
  std::set<std::string> revoked;
  STACK_OF(X509_REVOKED)* list = X509_CRL_get_REVOKED(crl);
  for (int i = 0; i < sk_X509_REVOKED_num(list); ++i) {
    const X509_REVOKED* r = sk_X509_REVOKED_value(list, i);
    revoked.insert(SerialBytes(X509_REVOKED_get0_serialNumber(r)));
  }
  X509_CRL_free(crl);
  return revoked;
}

std::string CommonName(X509* cert) {
  char cn[256];
  int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn,
                                    sizeof(cn));
  return n > 0 ? std::string(cn, static_cast<size_t>(n)) : "";
}

// The certificate's IP and DNS subject alternative names.
void SubjectAltNames(X509* cert, std::vector<std::string>* ips,
                     std::vector<std::string>* dns) {
  auto* names = static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (names == nullptr) return;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* g = sk_GENERAL_NAME_value(names, i);
    if (g->type == GEN_DNS) {
      const ASN1_STRING* s = g->d.dNSName;
      dns->emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                        static_cast<size_t>(ASN1_STRING_length(s)));
    } else if (g->type == GEN_IPADD) {
      const ASN1_STRING* s = g->d.iPAddress;
      char buf[INET6_ADDRSTRLEN] = "";
      if (ASN1_STRING_length(s) == 4) {
        inet_ntop(AF_INET, ASN1_STRING_get0_data(s), buf, sizeof(buf));
      } else if (ASN1_STRING_length(s) == 16) {
        inet_ntop(AF_INET6, ASN1_STRING_get0_data(s), buf, sizeof(buf));
      }
      if (buf[0] != '\0') ips->emplace_back(buf);
    }
  }
  GENERAL_NAMES_free(names);
}

// Go's certificate.VerifyHostname for one name: an IP against the IP SANs,
// a host name against the DNS SANs (wildcards allowed); the subject's CN is
// not consulted (Go stopped doing so in 1.15).
bool CertValidForHost(X509* cert, const std::string& host) {
  if (IsIpAddress(host)) return X509_check_ip_asc(cert, host.c_str(), 0) == 1;
  return X509_check_host(cert, host.data(), host.size(),
                         X509_CHECK_FLAG_NEVER_CHECK_SUBJECT, nullptr) == 1;
}

// Go's %q of a []string: ["a" "b"].
std::string GoQuoteList(const std::vector<std::string>& v) {
  std::vector<std::string> q;
  for (const std::string& s : v) q.push_back(absl::StrCat("\"", s, "\""));
  return absl::StrCat("[", absl::StrJoin(q, " "), "]");
}

// etcd's checkCertSAN: a client certificate that names hosts must name the
// address it connects from, by IP SAN, or by a DNS SAN that the address's
// reverse lookup gives or that resolves to the address.
absl::Status CheckCertSan(X509* cert, const std::string& host) {
  std::vector<std::string> ips, dns;
  SubjectAltNames(cert, &ips, &dns);
  if (ips.empty() && dns.empty()) return absl::OkStatus();
  if (!ips.empty()) {
    if (X509_check_ip_asc(cert, host.c_str(), 0) == 1) return absl::OkStatus();
    if (dns.empty()) {
      return absl::PermissionDeniedError(absl::StrCat(
          "x509: certificate is valid for ", absl::StrJoin(ips, ", "), ", not ", host));
    }
  }
  std::string lookup_error;
  // Reverse lookup of the address.
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (inet_pton(AF_INET, host.c_str(), &reinterpret_cast<sockaddr_in*>(&ss)->sin_addr) == 1) {
    ss.ss_family = AF_INET;
    len = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, host.c_str(),
                       &reinterpret_cast<sockaddr_in6*>(&ss)->sin6_addr) == 1) {
    ss.ss_family = AF_INET6;
    len = sizeof(sockaddr_in6);
  }
  if (len != 0) {
    char name[NI_MAXHOST];
    int r = getnameinfo(reinterpret_cast<sockaddr*>(&ss), len, name, sizeof(name),
                        nullptr, 0, NI_NAMEREQD);
    if (r == 0) {
      std::string n = name;
      if (!n.empty() && n.back() == '.') n.pop_back();
      for (const std::string& d : dns) {
        if (absl::StartsWith(d, "*.") ? absl::EndsWith(n, d.substr(1)) : n == d) {
          return absl::OkStatus();
        }
      }
    } else {
      lookup_error = absl::StrCat("lookup ", host, ": ", gai_strerror(r));
    }
  }
  // Forward lookup of each name.
  for (const std::string& d : dns) {
    if (absl::StartsWith(d, "*.")) continue;
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    int r = getaddrinfo(d.c_str(), nullptr, &hints, &res);
    if (r != 0) {
      lookup_error = absl::StrCat("lookup ", d, ": ", gai_strerror(r));
      continue;
    }
    bool match = false;
    for (addrinfo* a = res; a != nullptr && !match; a = a->ai_next) {
      char buf[INET6_ADDRSTRLEN] = "";
      if (a->ai_family == AF_INET) {
        inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr, buf,
                  sizeof(buf));
      } else if (a->ai_family == AF_INET6) {
        inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr, buf,
                  sizeof(buf));
      }
      match = host == buf;
    }
    freeaddrinfo(res);
    if (match) return absl::OkStatus();
  }
  return absl::PermissionDeniedError(absl::StrCat(
      "tls: \"", host, "\" does not match any of DNSNames ", GoQuoteList(dns),
      lookup_error.empty() ? "" : absl::StrCat(" (", lookup_error, ")")));
}

// Go's cipher suite names (tls.CipherSuites, tls.InsecureCipherSuites and
// etcd's two aliases) and the IANA name OpenSSL knows each by; TLS 1.3
// suites map to "" (Go does not let them be configured).
struct GoCipher {
  const char* go_name;
  const char* iana_name;
};
constexpr GoCipher kGoCiphers[] = {
    {"TLS_RSA_WITH_AES_128_CBC_SHA", "TLS_RSA_WITH_AES_128_CBC_SHA"},
    {"TLS_RSA_WITH_AES_256_CBC_SHA", "TLS_RSA_WITH_AES_256_CBC_SHA"},
    {"TLS_RSA_WITH_AES_128_GCM_SHA256", "TLS_RSA_WITH_AES_128_GCM_SHA256"},
    {"TLS_RSA_WITH_AES_256_GCM_SHA384", "TLS_RSA_WITH_AES_256_GCM_SHA384"},
    {"TLS_AES_128_GCM_SHA256", ""},
    {"TLS_AES_256_GCM_SHA384", ""},
    {"TLS_CHACHA20_POLY1305_SHA256", ""},
    {"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"},
    {"TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA"},
    {"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA"},
    {"TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA"},
    {"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"},
    {"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"},
    {"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"},
    {"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"},
    {"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
     "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"},
    {"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
     "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"},
    {"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"},
    {"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
     "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"},
    {"TLS_RSA_WITH_RC4_128_SHA", "TLS_RSA_WITH_RC4_128_SHA"},
    {"TLS_RSA_WITH_3DES_EDE_CBC_SHA", "TLS_RSA_WITH_3DES_EDE_CBC_SHA"},
    {"TLS_RSA_WITH_AES_128_CBC_SHA256", "TLS_RSA_WITH_AES_128_CBC_SHA256"},
    {"TLS_ECDHE_ECDSA_WITH_RC4_128_SHA", "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA"},
    {"TLS_ECDHE_RSA_WITH_RC4_128_SHA", "TLS_ECDHE_RSA_WITH_RC4_128_SHA"},
    {"TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA"},
    {"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256"},
    {"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256"},
};

// etcd 3.5's tlsutil.GetTLSVersion; 0 = no bound.
absl::StatusOr<int> TlsVersion(const std::string& v, int if_empty) {
  if (v.empty()) return if_empty;
  if (v == "TLS1.2") return TLS1_2_VERSION;
  if (v == "TLS1.3") return TLS1_3_VERSION;
  return absl::InvalidArgumentError(absl::StrCat(
      "unexpected TLS version \"", v, "\" (must be one of: TLS1.2, TLS1.3)"));
}

// Go's alert texts ("remote error: tls: bad certificate").
const char* AlertText(int alert) {
  switch (alert) {
    case SSL_AD_HANDSHAKE_FAILURE: return "handshake failure";
    case SSL_AD_BAD_CERTIFICATE: return "bad certificate";
    case SSL_AD_UNSUPPORTED_CERTIFICATE: return "unsupported certificate";
    case SSL_AD_CERTIFICATE_REVOKED: return "revoked certificate";
    case SSL_AD_CERTIFICATE_EXPIRED: return "expired certificate";
    case SSL_AD_CERTIFICATE_UNKNOWN: return "unknown certificate";
    case SSL_AD_UNKNOWN_CA: return "unknown certificate authority";
    case SSL_AD_PROTOCOL_VERSION: return "protocol version not supported";
    case SSL_AD_CERTIFICATE_REQUIRED: return "certificate required";
    case SSL_AD_INTERNAL_ERROR: return "internal error";
    case SSL_AD_DECRYPT_ERROR: return "error decrypting message";
    case SSL_AD_NO_APPLICATION_PROTOCOL: return "no application protocol";
    case SSL_AD_ACCESS_DENIED: return "access denied";
    default: return nullptr;
  }
}

// Drains OpenSSL's error queue into Go's words where Go has them (an alert
// from the other side, no common cipher), else OpenSSL's own text.
std::string SslErrorsLikeGo() {
  std::vector<std::string> parts;
  std::string go;
  unsigned long e;
  while ((e = ERR_get_error()) != 0) {
    int reason = ERR_GET_REASON(e);
    if (go.empty() && ERR_GET_LIB(e) == ERR_LIB_SSL) {
      if (reason >= SSL_AD_REASON_OFFSET) {
        if (const char* t = AlertText(reason - SSL_AD_REASON_OFFSET)) {
          go = absl::StrCat("remote error: tls: ", t);
        }
      } else if (reason == SSL_R_NO_SHARED_CIPHER) {
        go = "tls: no cipher suite supported by both client and server";
      } else if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
        go = "tls: client didn't provide a certificate";
      }
    }
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    parts.emplace_back(buf);
  }
  if (!go.empty()) return go;
  return absl::StrJoin(parts, "; ");
}

std::string Rfc3339(const ASN1_TIME* t) {
  struct tm tm {};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return "?";
  char buf[32];
  strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string NowRfc3339() {
  time_t now = ::time(nullptr);
  struct tm tm {};
  gmtime_r(&now, &tm);
  char buf[32];
  strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// What the callbacks learn during one handshake (SSL app data).
struct HandshakeState {
  int verify_error = X509_V_OK;  // the first verification failure
  std::string verify_detail;     // Go's words for it
  std::string key_pair_error;    // our certificate could not be loaded
};

// Go's x509 texts for a verification failure.
std::string GoVerifyText(int err, X509* cert) {
  switch (err) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
      return "x509: certificate signed by unknown authority";
    case X509_V_ERR_CERT_HAS_EXPIRED:
      return absl::StrCat(
          "x509: certificate has expired or is not yet valid: current time ",
          NowRfc3339(), " is after ",
          Rfc3339(cert ? X509_get0_notAfter(cert) : nullptr));
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return absl::StrCat(
          "x509: certificate has expired or is not yet valid: current time ",
          NowRfc3339(), " is before ",
          Rfc3339(cert ? X509_get0_notBefore(cert) : nullptr));
    case X509_V_ERR_INVALID_PURPOSE:
      return "x509: certificate specifies an incompatible key usage";
    default:
      return absl::StrCat("x509: ", X509_verify_cert_error_string(err));
  }
}

}  // namespace

struct TlsContext::Impl {
  SSL_CTX* ctx = nullptr;
  bool server = false;
  std::string alpn_wire;  // our protocols, in preference order
  bool verify = false;    // the other side's certificate is verified
  std::vector<std::string> allowed_cn, allowed_hostname;
  bool check_client_san = false;

  // The key pair we present, re-read when its files change.
  std::string cert_file, key_file;
  absl::Mutex mu;
  FileStamp cert_stamp ABSL_GUARDED_BY(mu), key_stamp ABSL_GUARDED_BY(mu);
  std::shared_ptr<KeyPair> pair ABSL_GUARDED_BY(mu);
  std::atomic<uint64_t> loads{0};

  // The CRL, re-read when its file changes.
  std::string crl_file;
  FileStamp crl_stamp ABSL_GUARDED_BY(mu);
  std::shared_ptr<const std::set<std::string>> revoked ABSL_GUARDED_BY(mu);

  ~Impl() { SSL_CTX_free(ctx); }

  // The current key pair, reloading it if a file changed since the last
  // load. A pair that fails to load is an error for this handshake only; the
  // next one tries again.
  absl::StatusOr<std::shared_ptr<KeyPair>> CurrentPair() {
    absl::StatusOr<FileStamp> cs = StampOf(cert_file);
    if (!cs.ok()) return cs.status();
    absl::StatusOr<FileStamp> ks = StampOf(key_file);
    if (!ks.ok()) return ks.status();
    {
      absl::MutexLock l(&mu);
      if (pair != nullptr && *cs == cert_stamp && *ks == key_stamp) return pair;
    }
    auto loaded = LoadKeyPairFiles(cert_file, key_file);
    if (!loaded.ok()) return loaded.status();
    loads.fetch_add(1, std::memory_order_relaxed);
    absl::MutexLock l(&mu);
    pair = *loaded;
    cert_stamp = *cs;
    key_stamp = *ks;
    return pair;
  }

  // The revoked serials, reloading the CRL if its file changed.
  absl::StatusOr<std::shared_ptr<const std::set<std::string>>> CurrentRevoked() {
    absl::StatusOr<FileStamp> st = StampOf(crl_file);
    if (!st.ok()) return st.status();
    {
      absl::MutexLock l(&mu);
      if (revoked != nullptr && *st == crl_stamp) return revoked;
    }
    auto loaded = LoadRevokedSerials(crl_file);
    if (!loaded.ok()) return loaded.status();
    auto shared = std::make_shared<const std::set<std::string>>(*std::move(loaded));
    absl::MutexLock l(&mu);
    revoked = shared;
    crl_stamp = *st;
    return revoked;
  }

  bool Allowed(X509* leaf) const {
    if (allowed_cn.empty() && allowed_hostname.empty()) return true;
    const std::string cn = CommonName(leaf);
    for (const std::string& a : allowed_cn) {
      if (a == cn) return true;
    }
    for (const std::string& h : allowed_hostname) {
      if (CertValidForHost(leaf, h)) return true;
    }
    return false;
  }
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

// Hands OpenSSL the current key pair at each handshake (server: before it
// answers the ClientHello; client: when the server asks for a certificate),
// so that replaced files take effect on the next connection.
int CertCallback(SSL* ssl, void* arg) {
  auto* impl = static_cast<TlsContext::Impl*>(arg);
  auto* state = static_cast<HandshakeState*>(SSL_get_app_data(ssl));
  auto pair = impl->CurrentPair();
  if (!pair.ok()) {
    // etcd's words, as it logs them when its GetCertificate fails.
    if (state != nullptr) {
      state->key_pair_error =
          absl::StrCat(absl::IsNotFound(pair.status())
                           ? "failed to find cert files: "
                           : "failed to load certificate: ",
                       pair.status().message());
    }
    return 0;
  }
  const KeyPair& kp = **pair;
  return SSL_use_cert_and_key(ssl, kp.leaf, kp.key, kp.chain, 1) == 1 ? 1 : 0;
}

// Records the first verification failure in Go's words, and applies the
// allowed CN / hostname rule to a leaf that verified.
int VerifyCallback(int ok, X509_STORE_CTX* sctx) {
  SSL* ssl = static_cast<SSL*>(
      X509_STORE_CTX_get_ex_data(sctx, SSL_get_ex_data_X509_STORE_CTX_idx()));
  if (ssl == nullptr) return ok;
  auto* state = static_cast<HandshakeState*>(SSL_get_app_data(ssl));
  auto* impl = static_cast<TlsContext::Impl*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  if (!ok) {
    if (state != nullptr && state->verify_error == X509_V_OK) {
      state->verify_error = X509_STORE_CTX_get_error(sctx);
      state->verify_detail =
          GoVerifyText(state->verify_error, X509_STORE_CTX_get_current_cert(sctx));
    }
    return 0;
  }
  if (impl != nullptr && X509_STORE_CTX_get_error_depth(sctx) == 0 &&
      !impl->Allowed(X509_STORE_CTX_get_current_cert(sctx))) {
    // CERT_REJECTED makes OpenSSL send the bad_certificate alert, which Go
    // sends when VerifyPeerCertificate refuses (the other side then logs
    // "remote error: tls: bad certificate", as against etcd);
    // APPLICATION_VERIFICATION would send handshake_failure.
    X509_STORE_CTX_set_error(sctx, X509_V_ERR_CERT_REJECTED);
    if (state != nullptr && state->verify_error == X509_V_OK) {
      state->verify_error = X509_V_ERR_APPLICATION_VERIFICATION;
      // etcd's VerifyPeerCertificate text (used on both sides).
      state->verify_detail = "client certificate authentication failed";
    }
    return 0;
  }
  return 1;
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

// Settings shared by both sides.
absl::StatusOr<SSL_CTX*> NewCtx(bool server, const TlsFiles& f) {
  IgnoreSigpipeOnce();
  absl::StatusOr<int> min = TlsVersion(f.min_version, TLS1_2_VERSION);
  if (!min.ok()) return min.status();
  absl::StatusOr<int> max = TlsVersion(f.max_version, 0);
  if (!max.ok()) return max.status();
  if (*max != 0 && *min > *max) {
    return absl::InvalidArgumentError(absl::StrCat("min version (", f.min_version,
                                                   ") is greater than max version (",
                                                   f.max_version, ")"));
  }
  absl::StatusOr<std::vector<std::string>> ciphers = OpenSslCipherNames(f.cipher_suites);
  if (!ciphers.ok()) return ciphers.status();
  std::vector<std::string> tls12;
  for (const std::string& c : *ciphers) {
    if (!c.empty()) tls12.push_back(c);
  }
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (ctx == nullptr) return absl::InternalError("TLS: " + SslErrors());
  int lowest = *min;
  if (!f.cipher_suites.empty() && tls12.empty()) {
    // Only TLS 1.3 names: as in Go, no TLS 1.2 suite is left.
    lowest = TLS1_3_VERSION;
  }
  SSL_CTX_set_min_proto_version(ctx, lowest);
  SSL_CTX_set_max_proto_version(ctx, *max);
  if (!tls12.empty() &&
      SSL_CTX_set_cipher_list(ctx, absl::StrJoin(tls12, ":").c_str()) != 1) {
    SSL_CTX_free(ctx);
    return absl::InvalidArgumentError(absl::StrCat(
        "TLS: none of the cipher suites is usable: ", absl::StrJoin(f.cipher_suites, ","),
        ": ", SslErrors()));
  }
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

absl::StatusOr<std::vector<std::string>> OpenSslCipherNames(
    const std::vector<std::string>& go_names) {
  std::vector<std::string> out;
  for (const std::string& name : go_names) {
    const GoCipher* found = nullptr;
    for (const GoCipher& c : kGoCiphers) {
      if (name == c.go_name) found = &c;
    }
    if (found == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected TLS cipher suite \"", name, "\""));
    }
    if (found->iana_name[0] == '\0') {
      out.emplace_back();
      continue;
    }
    const char* ossl = OPENSSL_cipher_name(found->iana_name);
    if (ossl == nullptr || std::string_view(ossl) == "(NONE)") {
      return absl::InvalidArgumentError(
          absl::StrCat("TLS cipher suite \"", name, "\" is not available in OpenSSL"));
    }
    out.emplace_back(ossl);
  }
  return out;
}

Stream::~Stream() = default;

long Stream::TryWrite(const void*, size_t) { return 0; }

std::unique_ptr<Stream> PlainStream(int fd) {
  return std::make_unique<PlainStreamImpl>(fd);
}

TlsContext::TlsContext(std::unique_ptr<Impl> impl, bool is_server)
    : impl_(std::move(impl)), is_server_(is_server) {}

TlsContext::~TlsContext() = default;

uint64_t TlsContext::key_pair_loads() const {
  return impl_->loads.load(std::memory_order_relaxed);
}

// The setup both sides share: an OpenSSL context, the ALPN list, the
// checks, and the certificate to present. Given certificates win over
// auto-TLS, as in etcd ("ignoring peer auto TLS since certs given").
absl::Status TlsContext::Begin(bool server, const TlsFiles& f,
                               const std::vector<std::string>& alpn,
                               Impl* impl, std::string* cert,
                               std::string* key, bool* self_cert) {
  if (!f.allowed_cn.empty() && !f.allowed_hostname.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "AllowedCN and AllowedHostname are mutually exclusive (cn=\"",
        absl::StrJoin(f.allowed_cn, ","), "\", hostname=\"",
        absl::StrJoin(f.allowed_hostname, ","), "\")"));
  }
  auto ctx = NewCtx(server, f);
  if (!ctx.ok()) return ctx.status();
  impl->ctx = *ctx;
  impl->server = server;
  SSL_CTX_set_app_data(impl->ctx, impl);
  impl->alpn_wire = AlpnWire(alpn);
  impl->allowed_cn = f.allowed_cn;
  impl->allowed_hostname = f.allowed_hostname;
  impl->check_client_san = server && f.check_client_san;
  *cert = f.cert_file;
  *key = f.key_file;
  *self_cert = cert->empty() && f.auto_tls;
  if (*self_cert) {
    if (absl::Status s = EnsureSelfCert(f.auto_tls_dir, f.hosts, cert, key,
                                        f.self_signed_cert_validity_years);
        !s.ok()) {
      return s;
    }
  }
  if (!cert->empty()) {
    // As etcd, the pair must load at start; later it is re-read whenever
    // its files change.
    impl->cert_file = *cert;
    impl->key_file = *key;
    auto pair = impl->CurrentPair();
    if (!pair.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("TLS: cannot load key pair (cert ", *cert, ", key ", *key,
                       "): ", pair.status().message()));
    }
    SSL_CTX_set_cert_cb(impl->ctx, CertCallback, impl);
  }
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
    SSL_CTX_set_verify(impl->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       VerifyCallback);
    impl->verify = true;
  } else {
    SSL_CTX_set_verify(impl->ctx, SSL_VERIFY_NONE, nullptr);
  }
  // etcd checks the CRL whenever the other side presented certificates.
  impl->crl_file = f.crl_file;
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
  if (self_cert) {
    // etcd skips verification with self-signed (auto-TLS) certificates.
    SSL_CTX_set_verify(impl->ctx, SSL_VERIFY_NONE, nullptr);
  } else {
    if (absl::Status s = LoadCa(impl->ctx, f.trusted_ca_file); !s.ok()) return s;
    SSL_CTX_set_verify(impl->ctx, SSL_VERIFY_PEER, VerifyCallback);
    impl->verify = true;
    impl->crl_file = f.crl_file;
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

// "ip:port" of the socket's other end ("@" for a unix socket, as Go shows
// an unnamed one's address); host gets the bare IP ("" for unix).
std::string RemoteAddr(int fd, std::string* host) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  host->clear();
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  char buf[INET6_ADDRSTRLEN] = "?";
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, buf, sizeof(buf));
    *host = buf;
    return absl::StrCat(buf, ":", ntohs(a->sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof(buf));
    *host = buf;
    return absl::StrCat("[", buf, "]:", ntohs(a->sin6_port));
  }
  return "@";
}

// Runs the handshake on a non-blocking fd until done or the deadline. The
// reason of a failure reads as Go's where Go has words for it.
absl::Status Handshake(SSL* ssl, int fd, bool server, int timeout_ms,
                       const HandshakeState& state) {
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
    const int saved_errno = errno;
    std::string ssl_errors = SslErrorsLikeGo();
    if (!state.key_pair_error.empty()) {
      return absl::FailedPreconditionError(state.key_pair_error);
    }
    if (state.verify_error != X509_V_OK) {
      if (state.verify_error == X509_V_ERR_APPLICATION_VERIFICATION || !server) {
        return absl::PermissionDeniedError(state.verify_detail);
      }
      return absl::PermissionDeniedError(
          absl::StrCat("tls: failed to verify client certificate: ", state.verify_detail));
    }
    std::string why = ssl_errors;
    if (why.empty()) {
      why = err == SSL_ERROR_SYSCALL
                ? (saved_errno != 0 ? strerror(saved_errno) : "EOF")
                : absl::StrCat("SSL error ", err);
    }
    return absl::UnavailableError(why);
  }
}

// After a handshake: etcd's CRL check of what the other side sent and,
// on peer listeners, its SAN check against the connecting address.
absl::Status PostHandshakeChecks(TlsContext::Impl& impl, SSL* ssl,
                                 const std::string& remote_host) {
  X509* leaf = SSL_get0_peer_certificate(ssl);
  if (leaf == nullptr) return absl::OkStatus();
  if (!impl.crl_file.empty()) {
    auto revoked = impl.CurrentRevoked();
    if (!revoked.ok()) return revoked.status();
    std::vector<X509*> sent = {leaf};
    STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl);
    for (int i = 0; chain != nullptr && i < sk_X509_num(chain); ++i) {
      sent.push_back(sk_X509_value(chain, i));
    }
    for (X509* c : sent) {
      std::string serial = SerialBytes(X509_get0_serialNumber(c));
      if ((*revoked)->contains(serial)) {
        return absl::PermissionDeniedError(
            absl::StrCat("transport: certificate serial ", Hex(serial), " revoked"));
      }
    }
  }
  if (impl.check_client_san && !remote_host.empty()) {
    return CheckCertSan(leaf, remote_host);
  }
  return absl::OkStatus();
}

}  // namespace

namespace {

absl::StatusOr<std::unique_ptr<Stream>> Establish(
      TlsContext::Impl& impl, int fd, bool server, const std::string& server_name,
      int timeout_ms, HandshakeInfo* info) {
    std::string remote_host;
    std::string remote = RemoteAddr(fd, &remote_host);
    if (info != nullptr) info->remote_addr = remote;
    int flags = ::fcntl(fd, F_GETFL);
    if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
      int err = errno;
      ::close(fd);
      return absl::InvalidArgumentError(absl::StrCat("tls: fcntl: ", strerror(err)));
    }
    ERR_clear_error();
    SSL* ssl = SSL_new(impl.ctx);
    if (ssl == nullptr || SSL_set_fd(ssl, fd) != 1) {
      SSL_free(ssl);
      ::close(fd);
      return absl::InternalError("tls: " + SslErrors());
    }
    if (!server && !server_name.empty()) {
      const bool ip = IsIpAddress(server_name);
      // SNI carries host names only (RFC 6066).
      if (!ip) SSL_set_tlsext_host_name(ssl, server_name.c_str());
      if (impl.verify) {
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
    HandshakeState state;
    SSL_set_app_data(ssl, &state);
    absl::Status s = Handshake(ssl, fd, server, timeout_ms, state);
    SSL_set_app_data(ssl, nullptr);
    if (info != nullptr && server) {
      const char* sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
      if (sni != nullptr) info->server_name = sni;
    }
    if (s.ok()) {
      s = PostHandshakeChecks(impl, ssl, remote_host);
      if (!s.ok() && info != nullptr) {
        if (X509* leaf = SSL_get0_peer_certificate(ssl)) {
          info->have_certificate = true;
          SubjectAltNames(leaf, &info->ip_addresses, &info->dns_names);
        }
      }
    }
    if (!s.ok()) {
      SSL_free(ssl);
      ::close(fd);
      return s;
    }
    return std::unique_ptr<Stream>(new TlsStream(fd, ssl, impl.verify));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Stream>> TlsContext::Accept(int fd, int timeout_ms,
                                                           HandshakeInfo* info) {
  if (!is_server_) {
    ::close(fd);
    return absl::FailedPreconditionError("tls: Accept on a client context");
  }
  return Establish(*impl_, fd, true, "", timeout_ms, info);
}

absl::StatusOr<std::unique_ptr<Stream>> TlsContext::Connect(
    int fd, const std::string& server_name, int timeout_ms) {
  if (is_server_) {
    ::close(fd);
    return absl::FailedPreconditionError("tls: Connect on a server context");
  }
  return Establish(*impl_, fd, false, server_name, timeout_ms,
                                     nullptr);
}

}  // namespace detcd::shim
