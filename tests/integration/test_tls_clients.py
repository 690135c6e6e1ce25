"""TLS hardening on the client side (issue 12 part 1) and unix-socket client
listeners (part 3), each case run on detcd and on real etcd 3.4 in the same
test and compared:

- http, https, unix and unixs listen URLs side by side on one member;
- client certificates: none, from another CA, expired, revoked by
  --client-crl-file: refused, the member keeps serving, and the reason is
  logged as etcd's "rejected connection" warning (same error text);
- rotation without restart: replaced server certificate files are served
  from the next connection on; a CRL rewritten on disk revokes at once;
- --cipher-suites (a TLS 1.2 client offering another suite is refused);
- etcd 3.5's --tls-min-version / --tls-max-version and
  --self-signed-cert-validity (detcd only: etcd 3.4 has no such flags), with
  3.5's error texts.

Run alone: python3 tests/integration/test_tls_clients.py --server build/detcd
"""

import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

import cluster as it
import tls_pki


def ctl(endpoint, args, cwd=None, tls=None, timeout=15):
    """etcdctl against one endpoint; tls: (ca, cert, key), any may be None,
    or ("insecure", any_pem_file): no server verification."""
    argv = [it.CONFIG["etcdctl"], "--endpoints=" + endpoint,
            "--dial-timeout=2s", "--command-timeout=3s"]
    if tls and tls[0] == "insecure":
        # etcdctl 3.4 applies the flag only to a TLS config it built from
        # a cert or CA file, so one is given too (it is not used).
        argv += ["--insecure-skip-tls-verify", "--cacert", tls[1]]
    elif tls:
        ca, cert, key = tls
        if ca:
            argv += ["--cacert", ca]
        if cert:
            argv += ["--cert", cert, "--key", key]
    p = subprocess.run(argv + list(args), cwd=cwd, env=it.etcdctl_env(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout, preexec_fn=it._die_with_parent)
    return p.returncode, p.stdout.decode(errors="replace"), \
        p.stderr.decode(errors="replace")


class Member:
    """One member of `binary` in its own directory (its working directory,
    where unix sockets named host:port appear)."""

    def __init__(self, test, binary, label, flags, wait_endpoint=None,
                 wait_tls=None):
        self.dir = tempfile.mkdtemp(prefix="detcd-it-tlsc-%s-" % label,
                                    dir=test.dir)
        self.label = label
        ports = it.free_ports(1)
        self.peer = "http://127.0.0.1:%d" % ports[0]
        self.log = os.path.join(self.dir, "member.log")
        argv = [binary, "--name", "m", "--data-dir",
                os.path.join(self.dir, "m.etcd"),
                "--listen-peer-urls", self.peer,
                "--initial-advertise-peer-urls", self.peer,
                "--initial-cluster", "m=" + self.peer,
                "--logger", "zap"] + list(flags)
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(argv, cwd=self.dir, stdout=out,
                                         stderr=subprocess.STDOUT,
                                         preexec_fn=it._die_with_parent)
        test.addCleanup(self.stop)
        if wait_endpoint:
            deadline = time.monotonic() + 30
            while True:
                rc, _, err = ctl(wait_endpoint, ["endpoint", "health"],
                                 cwd=self.dir, tls=wait_tls)
                if rc == 0:
                    break
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("%s did not get healthy: %s\n%s" % (
                        label, err, self.log_text()[-3000:]))
                time.sleep(0.2)

    def log_text(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def rejections(self):
        """The "rejected connection" warnings, as parsed JSON lines."""
        out = []
        for line in self.log_text().splitlines():
            if '"rejected connection"' in line:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
        return out

    def wait_rejection(self, count, timeout=10):
        deadline = time.monotonic() + timeout
        while len(self.rejections()) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.rejections()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def tls_client(ca, cert=None, key=None, max_version=None, min_version=None,
               ciphers=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(ca)
    if cert:
        ctx.load_cert_chain(cert, key)
    if max_version:
        ctx.maximum_version = max_version
    if min_version:
        ctx.minimum_version = min_version
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


def handshake(port, ctx):
    """Handshakes with 127.0.0.1:port and reads one byte after (a TLS 1.3
    server refuses a client certificate after the client's handshake).
    Returns (ok, served certificate dict or error text)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                cert = s.getpeercert()
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n"
                          b"Connection: close\r\n\r\n")
                data = s.recv(1)
                if not data:
                    return False, "closed"
                return True, cert
    except (ssl.SSLError, OSError) as e:
        return False, str(e)


class TlsClientsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pki_dir = tempfile.mkdtemp(prefix="detcd-it-tlsc-pki-")
        d = cls.pki_dir
        cls.ca = tls_pki.Ca(d, "ca")
        cls.other_ca = tls_pki.Ca(d, "other-ca")
        cls.server = cls.ca.issue("server")
        cls.client = cls.ca.issue("client", cn="root")
        cls.revoked = cls.ca.issue("revoked")
        cls.ca.revoke(cls.revoked)
        cls.expired = cls.ca.issue("expired", start="20200101000000Z",
                                   end="20200102000000Z")
        cls.stranger = cls.other_ca.issue("stranger")
        cls.binaries = [("detcd", it.CONFIG["server"]),
                        ("etcd", it.CONFIG["reference"])]

    @classmethod
    def tearDownClass(cls):
        if not it.KEEP:
            shutil.rmtree(cls.pki_dir, ignore_errors=True)

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="detcd-it-tlsc-")
        if not it.KEEP:
            self.addCleanup(shutil.rmtree, self.dir, True)

    def good(self):
        return (self.ca.cert, self.client["cert"], self.client["key"])

    def test_listeners_side_by_side_and_refused_certificates(self):
        results = {}
        for label, binary in self.binaries:
            ports = it.free_ports(2)
            https = "https://127.0.0.1:%d" % ports[0]
            http = "http://127.0.0.1:%d" % ports[1]
            unix = "unix://localhost:%d" % ports[0]
            unixs = "unixs://localhost:%d" % ports[1]
            m = Member(self, binary, label, [
                "--listen-client-urls", ",".join([https, http, unix, unixs]),
                "--advertise-client-urls", https,
                "--cert-file", self.server["cert"],
                "--key-file", self.server["key"],
                "--trusted-ca-file", self.ca.cert, "--client-cert-auth",
                "--client-crl-file", self.ca.crl,
            ], wait_endpoint=https, wait_tls=self.good())
            out = []
            # Every listener serves; the unix ones are files named host:port
            # in the member's working directory.
            self.assertTrue(os.path.exists(
                os.path.join(m.dir, "localhost:%d" % ports[0])), label)
            for ep, tls, key in ((https, self.good(), "https"),
                                 (http, None, "http"),
                                 (unix, None, "unix"),
                                 (unixs, self.good(), "unixs")):
                rc, o, e = ctl(ep, ["put", "k-" + key, "v-" + key],
                               cwd=m.dir, tls=tls)
                self.assertEqual(rc, 0, "%s %s: %s" % (label, key, e))
                rc, o, e = ctl(ep, ["get", "k-", "--prefix"], cwd=m.dir,
                               tls=tls)
                self.assertEqual(rc, 0, "%s %s: %s" % (label, key, e))
                out.append(o)
            # Refused clients; the member serves on.
            refused = [("no certificate", (self.ca.cert, None, None)),
                       ("other CA", (self.ca.cert, self.stranger["cert"],
                                     self.stranger["key"])),
                       ("expired", (self.ca.cert, self.expired["cert"],
                                    self.expired["key"])),
                       ("revoked", (self.ca.cert, self.revoked["cert"],
                                    self.revoked["key"]))]
            errors = []
            for what, tls in refused:
                before = len(m.rejections())
                rc, o, e = ctl(https, ["get", "k-https"], cwd=m.dir, tls=tls)
                self.assertNotEqual(rc, 0, "%s accepted %s" % (label, what))
                rej = m.wait_rejection(before + 1)
                self.assertGreater(len(rej), before,
                                   "%s logged no rejection for %s" % (label,
                                                                      what))
                errors.append(rej[before]["error"])
                # The SANs are logged when the certificate got that far.
                if what == "revoked":
                    self.assertEqual(rej[before].get("ip-addresses"),
                                     ["127.0.0.1"], label)
                    self.assertEqual(rej[before].get("dns-names"),
                                     ["localhost"], label)
            rc, o, e = ctl(https, ["get", "k-https"], cwd=m.dir,
                           tls=self.good())
            self.assertEqual(rc, 0, label + ": " + e)
            self.assertIsNone(m.proc.poll(), label)
            # A clean stop removes the unix socket files, as Go's listener.
            m.stop()
            self.assertFalse(os.path.exists(
                os.path.join(m.dir, "localhost:%d" % ports[0])), label)
            results[label] = (out, errors)
        d_out, d_err = results["detcd"]
        e_out, e_err = results["etcd"]
        self.assertEqual(d_out, e_out)
        # The expired certificate's text carries the current time: compare
        # up to it.
        cut = lambda s: s.split(": current time")[0]
        self.assertEqual([cut(x) for x in d_err], [cut(x) for x in e_err])
        self.assertEqual(d_err[0], "tls: client didn't provide a certificate")
        self.assertIn("revoked", d_err[3])
        self.assertIn(self.revoked["serial"].lower().lstrip("0"), d_err[3])

    def test_rotation_of_certificate_and_crl_without_restart(self):
        for label, binary in self.binaries:
            d = tempfile.mkdtemp(prefix="rot-%s-" % label, dir=self.dir)
            # Files the member reads; replaced by rename below.
            cert = os.path.join(d, "server.crt")
            key = os.path.join(d, "server.key")
            crl = os.path.join(d, "crl.pem")
            shutil.copy(self.server["cert"], cert)
            shutil.copy(self.server["key"], key)
            shutil.copy(self.ca.crl, crl)
            port = it.free_ports(1)[0]
            https = "https://127.0.0.1:%d" % port
            m = Member(self, binary, label, [
                "--listen-client-urls", https, "--advertise-client-urls",
                https, "--cert-file", cert, "--key-file", key,
                "--trusted-ca-file", self.ca.cert, "--client-cert-auth",
                "--client-crl-file", crl,
            ], wait_endpoint=https, wait_tls=self.good())
            ctx = tls_client(self.ca.cert, self.client["cert"],
                             self.client["key"])
            ok, served = handshake(port, ctx)
            self.assertTrue(ok, "%s: %s" % (label, served))
            self.assertEqual(served["serialNumber"], self.server["serial"])
            # A new certificate (same key) replaces the file: new
            # connections get it, with no restart.
            renewed = self.ca.issue("renewed-%s" % label, cn="server",
                                    key_file=self.server["key"])
            shutil.copy(renewed["cert"], cert + ".tmp")
            os.replace(cert + ".tmp", cert)
            ok, served = handshake(port, ctx)
            self.assertTrue(ok, "%s: %s" % (label, served))
            self.assertEqual(served["serialNumber"], renewed["serial"], label)
            rc, _, e = ctl(https, ["put", "after-rotation", "1"],
                           tls=self.good())
            self.assertEqual(rc, 0, label + ": " + e)
            # A client certificate revoked in a rewritten CRL is refused from
            # the next connection on.
            victim = self.ca.issue("victim-%s" % label)
            vtls = (self.ca.cert, victim["cert"], victim["key"])
            rc, _, e = ctl(https, ["get", "after-rotation"], tls=vtls)
            self.assertEqual(rc, 0, label + ": " + e)
            self.ca.revoke(victim)
            shutil.copy(self.ca.crl, crl + ".tmp")
            os.replace(crl + ".tmp", crl)
            rc, _, e = ctl(https, ["get", "after-rotation"], tls=vtls)
            self.assertNotEqual(rc, 0, label + " still accepts a revoked cert")
            self.assertTrue(any("revoked" in r["error"]
                                for r in m.wait_rejection(1)), label)
            rc, _, e = ctl(https, ["get", "after-rotation"], tls=self.good())
            self.assertEqual(rc, 0, label + ": " + e)
            m.stop()

    def test_cipher_suites(self):
        results = {}
        for label, binary in self.binaries:
            port = it.free_ports(1)[0]
            https = "https://127.0.0.1:%d" % port
            m = Member(self, binary, label, [
                "--listen-client-urls", https, "--advertise-client-urls",
                https, "--cert-file", self.server["cert"], "--key-file",
                self.server["key"],
                "--cipher-suites", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            ], wait_endpoint=https, wait_tls=(self.ca.cert, None, None))
            tls12 = ssl.TLSVersion.TLSv1_2
            ok_other, why = handshake(port, tls_client(
                self.ca.cert, max_version=tls12,
                ciphers="ECDHE-RSA-AES256-GCM-SHA384"))
            ok_listed, _ = handshake(port, tls_client(
                self.ca.cert, max_version=tls12,
                ciphers="ECDHE-RSA-AES128-GCM-SHA256"))
            rej = m.wait_rejection(1)
            results[label] = (ok_other, ok_listed,
                              [r["error"] for r in rej][:1])
            m.stop()
        self.assertEqual(results["detcd"], results["etcd"])
        self.assertEqual(results["detcd"],
                         (False, True, ["tls: no cipher suite supported by "
                                        "both client and server"]))

    def test_tls_versions_and_self_signed_validity(self):
        # etcd 3.5 flags: detcd alone.
        binary = it.CONFIG["server"]
        port = it.free_ports(1)[0]
        https = "https://127.0.0.1:%d" % port
        m = Member(self, binary, "min13", [
            "--listen-client-urls", https, "--advertise-client-urls", https,
            "--cert-file", self.server["cert"], "--key-file",
            self.server["key"], "--tls-min-version", "TLS1.3",
        ], wait_endpoint=https, wait_tls=(self.ca.cert, None, None))
        ok, why = handshake(port, tls_client(
            self.ca.cert, max_version=ssl.TLSVersion.TLSv1_2))
        self.assertFalse(ok, why)
        ok, why = handshake(port, tls_client(self.ca.cert))
        self.assertTrue(ok, why)
        m.stop()

        port = it.free_ports(1)[0]
        https = "https://127.0.0.1:%d" % port
        m = Member(self, binary, "max12", [
            "--listen-client-urls", https, "--advertise-client-urls", https,
            "--cert-file", self.server["cert"], "--key-file",
            self.server["key"], "--tls-max-version", "TLS1.2",
        ], wait_endpoint=https, wait_tls=(self.ca.cert, None, None))
        ok, why = handshake(port, tls_client(
            self.ca.cert, min_version=ssl.TLSVersion.TLSv1_3))
        self.assertFalse(ok, why)
        ok, why = handshake(port, tls_client(self.ca.cert))
        self.assertTrue(ok, why)
        m.stop()

        # etcd 3.5's refusals, as its texts.
        for flags, text in (
                (["--tls-min-version", "TLS1.1"],
                 'unexpected TLS version "TLS1.1" (must be one of: TLS1.2, '
                 'TLS1.3)'),
                (["--tls-min-version", "TLS1.3", "--tls-max-version",
                  "TLS1.2"],
                 "min version (TLS1.3) is greater than max version (TLS1.2)"),
                (["--tls-min-version", "TLS1.3", "--cipher-suites",
                  "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"],
                 "cipher suites cannot be configured when only TLS1.3 is "
                 "enabled"),
                (["--cipher-suites", "TLS_NO_SUCH_SUITE",
                  "--listen-client-urls", "https://127.0.0.1:%d" % port,
                  "--advertise-client-urls", "https://127.0.0.1:%d" % port,
                  "--cert-file", self.server["cert"], "--key-file",
                  self.server["key"]],
                 'unexpected TLS cipher suite "TLS_NO_SUCH_SUITE"')):
            m = Member(self, binary, "bad", flags)
            self.assertNotEqual(m.proc.wait(20), 0, flags)
            self.assertIn(text, m.log_text().replace('\\"', '"'), flags)

        # Auto TLS certificates live --self-signed-cert-validity years.
        port = it.free_ports(1)[0]
        https = "https://127.0.0.1:%d" % port
        m = Member(self, binary, "auto", [
            "--listen-client-urls", https, "--advertise-client-urls", https,
            "--auto-tls", "--self-signed-cert-validity", "3",
        ], wait_endpoint=https, wait_tls=("insecure", self.ca.cert))
        cert = os.path.join(m.dir, "m.etcd", "fixtures", "client", "cert.pem")
        end = subprocess.run(["openssl", "x509", "-in", cert, "-noout",
                              "-enddate"], stdout=subprocess.PIPE,
                             check=True).stdout.decode()
        year = int(end.strip().split()[-2])
        self.assertEqual(year, time.gmtime().tm_year + 3, end)
        m.stop()
        m = Member(self, binary, "auto0", [
            "--listen-client-urls", https, "--advertise-client-urls", https,
            "--auto-tls", "--self-signed-cert-validity", "0"])
        self.assertNotEqual(m.proc.wait(20), 0)
        self.assertIn("selfSignedCertValidity is invalid", m.log_text())


if __name__ == "__main__":
    it.main()
