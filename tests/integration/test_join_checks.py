#!/usr/bin/env python3
"""What a member joining a running cluster checks before it starts, on real
etcd 3.4 and on detcd side by side (same exit code, same fatal message).

- VersionCheckTest: the running cluster is a fake peer (an HTTP server on
  loopback answering GET /members as etcd's peer handler does, with this
  joiner already added) whose GET /version reports a cluster version that
  is too old (2.3.0), too new (3.5.0), not decided yet, or no version at
  all (404): the joiner refuses with "incompatible with current running
  cluster". With 3.4.0 it passes the check and keeps running (it then waits
  for a leader that the fake never provides).
- DiscoveryWhenJoiningTest: --discovery with --initial-cluster-state
  existing is refused ("discovery URL should not be set when joining
  existing initial cluster"), before any request to the discovery URL.
- TlsJoinTest: a member joins a cluster whose peers speak https with
  client-certificate authentication (certificates made here with openssl):
  its GET /members and /version go over TLS, then it catches up and
  serves; with a certificate of another CA the join fails (no cluster
  information), as etcd's.

Run alone: python3 tests/integration/test_join_checks.py --server build/detcd -v
"""

import http.server
import json
import os
import re
import subprocess
import threading
import time

import cluster as it

CLUSTER_ID = 0x1c2d3e4f5a6b7c8d
FAKE_ID = 0x1111222233334444
JOINER_ID = 0x5555666677778888


class FakePeer:
    """A running cluster's only member, as far as a joiner can tell: GET
    /members lists it and the joiner; GET /version says `version` (None:
    404, like a peer that does not serve it)."""

    def __init__(self, joiner_peer_url, version):
        self.version = version
        self.requests = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                fake.requests.append(self.path)
                if self.path == "/members":
                    body = json.dumps([
                        {"id": FAKE_ID, "peerURLs": [fake.url], "name": "a",
                         "clientURLs": ["http://127.0.0.1:1"]},
                        {"id": JOINER_ID, "peerURLs": [joiner_peer_url]},
                    ]) + "\n"
                    self.send(200, body, {"X-Etcd-Cluster-ID":
                                          "%x" % CLUSTER_ID})
                elif self.path == "/version" and fake.version is not None:
                    self.send(200, json.dumps({"etcdserver": "3.4.23",
                                               "etcdcluster": fake.version}))
                else:
                    self.send(404, "404 page not found\n")

            def send(self, code, body, headers=None):
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            # Raft streams and anything else a started member tries.
            do_POST = do_GET

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                      Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class JoinMember(it.Member):
    """A member started with its own flags (no static cluster of its own)."""

    def __init__(self, cluster, flags):
        ports = it.free_ports(2)
        super().__init__(cluster, 1, ports[0], ports[1])
        self.name = "b"
        self.data_dir = os.path.join(cluster.dir, "b.etcd")
        self.log_path = os.path.join(cluster.dir, "b.log")
        self.flags = flags

    def argv(self):
        return [
            self.cluster.binary,
            "--name", self.name,
            "--data-dir", self.data_dir,
            "--listen-client-urls", self.client_url,
            "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster-state", "existing",
        ] + self.flags(self)


def wait_exit(m, timeout):
    deadline = time.monotonic() + timeout
    while m.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    return None if m.alive() else m.proc.returncode


def fatal_text(m):
    """The fatal error of the member's last start: etcd's capnslog
    "C | etcdmain: ..." line or the "error" field of a zap fatal line."""
    text = m.log_text().split("===== start #")[-1]
    for line in reversed(text.splitlines()):
        mm = re.search(r" C \| etcdmain: (.*)$", line)
        if mm:
            return mm.group(1)
        mm = re.search(r'"level":"fatal".*"error":"((?:[^"\\]|\\.)*)"', line)
        if mm:
            return mm.group(1).replace('\\"', '"')
    return None


class JoinCase(it.ClusterTestCase):

    def run_both(self, flags, prepare=None, timeout=20.0):
        """Starts a joiner of each binary; returns [(rc, fatal text, member,
        fake or None)] for etcd then detcd. The fake peers and members are
        cleaned up by the clusters' cleanup."""
        out = []
        for binary in (it.CONFIG["reference"], it.CONFIG["server"]):
            c = self.new_cluster(binary, start=False, size=1)
            c.members = []
            m = JoinMember(c, flags)
            c.members.append(m)
            fake = prepare(m) if prepare else None
            if fake is not None:
                self.addCleanup(fake.close)
            m.start()
            rc = wait_exit(m, timeout)
            out.append((rc, fatal_text(m), m, fake))
        return out


class VersionCheckTest(JoinCase):

    def joined_to_fake(self, version, timeout=20.0):
        fakes = {}

        def prepare(m):
            fakes[m] = FakePeer(m.peer_url, version)
            return fakes[m]

        def flags(m):
            return ["--initial-cluster", "a=%s,b=%s" % (fakes[m].url,
                                                        m.peer_url)]

        return self.run_both(flags, prepare, timeout)

    def check_refused(self, version):
        results = self.joined_to_fake(version)
        for rc, text, m, fake in results:
            self.assertIsNotNone(rc, "%s kept running:\n%s" %
                                 (m.cluster.binary, m.log_tail()))
            self.assertEqual(text, "incompatible with current running cluster",
                             m.log_tail())
            # It asked for the members, then for the version.
            self.assertIn("/members", fake.requests)
            self.assertIn("/version", fake.requests)
        (erc, _, _, _), (drc, _, _, _) = results
        self.assertEqual(drc, erc)
        return results

    def test_too_low(self):
        _, (_, _, m, _) = self.check_refused("2.3.0")
        self.assertIn("cluster version of remote member is not compatible; "
                      "too low", m.log_text())

    def test_too_high(self):
        _, (_, _, m, _) = self.check_refused("3.5.0")
        self.assertIn("cluster version of remote member is not compatible; "
                      "too high", m.log_text())

    def test_not_decided(self):
        _, (_, _, m, _) = self.check_refused("not_decided")
        self.assertIn("failed to parse cluster version of remote member",
                      m.log_text())

    def test_no_version(self):
        _, (_, _, m, _) = self.check_refused(None)
        self.assertIn("failed to unmarshal response", m.log_text())

    def test_compatible_passes(self):
        for rc, text, m, fake in self.joined_to_fake("3.4.0", timeout=3.0):
            self.assertIsNone(rc, "%s exited:\n%s" % (m.cluster.binary,
                                                      m.log_tail()))
            self.assertIn("/version", fake.requests)
            self.assertNotIn("incompatible", m.log_text())
            m.kill()


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_pki(d):
    """A CA and one server+client certificate for 127.0.0.1 / localhost."""
    os.makedirs(d, exist_ok=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=join-ca",
            cwd=d)
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                "extendedKeyUsage=serverAuth,clientAuth\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "peer.key",
            "-out", "peer.csr", "-subj", "/CN=peer", cwd=d)
    openssl("x509", "-req", "-in", "peer.csr", "-CA", "ca.crt", "-CAkey",
            "ca.key", "-CAcreateserial", "-days", "2", "-out", "peer.crt",
            "-extfile", "ext.cnf", cwd=d)
    return ["--peer-cert-file", os.path.join(d, "peer.crt"),
            "--peer-key-file", os.path.join(d, "peer.key"),
            "--peer-trusted-ca-file", os.path.join(d, "ca.crt"),
            "--peer-client-cert-auth"]


class TlsPeerMember(it.Member):
    """A member with https peer URLs, its own --initial-cluster and state."""

    def __init__(self, cluster, index, name, tls_flags):
        ports = it.free_ports(2)
        super().__init__(cluster, index, ports[0], ports[1])
        self.name = name
        self.data_dir = os.path.join(cluster.dir, name + ".etcd")
        self.log_path = os.path.join(cluster.dir, name + ".log")
        self.tls_flags = tls_flags
        self.initial = ""
        self.state = "new"

    @property
    def peer_url(self):
        return "https://127.0.0.1:%d" % self.peer_port

    def argv(self):
        c = self.cluster
        return [
            c.binary, "--name", self.name, "--data-dir", self.data_dir,
            "--listen-client-urls", self.client_url,
            "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", self.initial,
            "--initial-cluster-token", c.token,
            "--initial-cluster-state", self.state,
            "--heartbeat-interval", str(c.heartbeat_ms),
            "--election-timeout", str(c.election_ms),
        ] + self.tls_flags


class TlsJoinTest(it.ClusterTestCase):

    def join_over_tls(self, binary):
        c = self.new_cluster(binary, start=False, size=1, label="join-tls")
        tls = make_pki(c.dir)
        a = TlsPeerMember(c, 0, "a", tls)
        a.initial = "a=" + a.peer_url
        c.members = [a]
        a.start()
        c.wait_healthy()
        c.ctl_ok(["put", "before", "join"])
        b = TlsPeerMember(c, 1, "b", tls)
        r = c.ctl_ok(["member", "add", "b", "--peer-urls", b.peer_url])
        b.initial = re.search(r'ETCD_INITIAL_CLUSTER="([^"]*)"',
                              r.out).group(1)
        b.state = "existing"
        # With a certificate from another CA the member cannot read the
        # cluster (the peers demand client certificates of theirs, and it
        # does not trust their certificate either).
        b.tls_flags = make_pki(os.path.join(c.dir, "other"))
        c.members.append(b)
        b.start()
        rc = wait_exit(b, 30)
        bare = fatal_text(b)
        b.proc = None
        # With it, it joins.
        b.tls_flags = tls
        b.start()
        c.wait_healthy(members=[b], timeout=30)
        c.ctl_ok(["put", "after", "join"], members=[b])
        r = c.ctl_ok(["get", "--prefix", "", "--consistency=s",
                      "--print-value-only"], members=[b])
        self.assertEqual(r.out.split(), ["join", "join"])
        # The new member publishes its name once it has caught up.
        deadline = time.monotonic() + 15
        while True:
            names = sorted(m.get("name", "") for m in
                           c.ctl_ok(["member", "list", "-w", "json"])
                           .json()["members"])
            if names == ["a", "b"] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual(names, ["a", "b"])
        c.close()
        return rc, bare

    def test_join_tls_peers(self):
        ref = self.join_over_tls(it.CONFIG["reference"])
        got = self.join_over_tls(it.CONFIG["server"])
        self.assertIn("cannot fetch cluster info from peer urls", ref[1])
        self.assertEqual(got, ref)


class DiscoveryWhenJoiningTest(JoinCase):

    def test_discovery_with_existing_refused(self):
        disc = FakePeer("http://127.0.0.1:1", None)
        self.addCleanup(disc.close)

        def flags(m):
            return ["--discovery", disc.url + "/v2/keys/discovery/tok"]

        results = self.run_both(flags)
        (erc, etext, _, _), (drc, dtext, _, _) = results
        self.assertEqual(etext, "discovery URL should not be set when joining "
                                "existing initial cluster")
        self.assertEqual((drc, dtext), (erc, etext))
        # Refused before any request to the discovery service.
        self.assertEqual(disc.requests, [])


if __name__ == "__main__":
    it.main()
