"""TLS hardening between members (issue 12 part 2) and unix-socket peer
listeners (part 3):

- a 3-member detcd cluster over peer TLS with every check on (client
  certificates required, --peer-crl-file, --peer-cert-allowed-cn) keeps
  every acknowledged write through a member's kill and restart under load;
- a member whose certificate is from another CA, is revoked, or carries
  another common name cannot join: it stops with the reason in its log, and
  the cluster's member logs etcd's "rejected connection" with the same
  reason; on detcd and on real etcd 3.4, compared;
- members talking over unix:// peer URLs (sockets named host:port in their
  shared working directory, as etcd's), on detcd and etcd, and unixs://
  (TLS over unix sockets) on detcd.

Run alone: python3 tests/integration/test_tls_peers.py --server build/detcd
"""

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

import cluster as it
import tls_pki


class Proc:
    """One member process; its log is <dir>/<name>.log."""

    def __init__(self, test, binary, name, args, cwd):
        self.name = name
        self.binary = binary
        self.args = list(args)
        self.cwd = cwd
        self.log = os.path.join(cwd, name + ".log")
        self.proc = None
        test.addCleanup(self.kill)
        self.start()

    def start(self):
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [self.binary] + self.args, cwd=self.cwd, stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=it._die_with_parent)

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log_text(self):
        with open(self.log, errors="replace") as f:
            return f.read().replace('\\"', '"')

    def rejections(self):
        out = []
        with open(self.log, errors="replace") as f:
            for line in f:
                if '"rejected connection"' in line:
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        pass
        return out


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.2)


class TlsPeersTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pki_dir = tempfile.mkdtemp(prefix="detcd-it-tlsp-pki-")
        d = cls.pki_dir
        # EC keys: quick to make, and what etcd's docs' cfssl examples use.
        cls.ca = tls_pki.Ca(d, "ca", key="ec:" + cls._ec_params(d))
        cls.other_ca = tls_pki.Ca(d, "other-ca", key="ec:" +
                                  cls._ec_params(d))
        cls.member_cert = cls.ca.issue("member", cn="member")
        cls.revoked = cls.ca.issue("revoked", cn="member")
        cls.ca.revoke(cls.revoked)
        cls.wrong_cn = cls.ca.issue("wrong-cn", cn="intruder")
        cls.stranger = cls.other_ca.issue("stranger", cn="member")

    @staticmethod
    def _ec_params(d):
        path = os.path.join(d, "p256.pem")
        if not os.path.exists(path):
            subprocess.run(["openssl", "ecparam", "-name", "prime256v1",
                            "-out", path], check=True)
        return path

    @classmethod
    def tearDownClass(cls):
        if not it.KEEP:
            shutil.rmtree(cls.pki_dir, ignore_errors=True)

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="detcd-it-tlsp-")
        if not it.KEEP:
            self.addCleanup(shutil.rmtree, self.dir, True)

    def peer_tls(self, leaf, ca=None):
        return ["--peer-cert-file", leaf["cert"], "--peer-key-file",
                leaf["key"], "--peer-trusted-ca-file", ca or self.ca.cert,
                "--peer-client-cert-auth", "--peer-crl-file", self.ca.crl,
                "--peer-cert-allowed-cn", "member"]

    def member_args(self, name, client, peer, cluster, state="new",
                    extra=()):
        return ["--name", name, "--data-dir",
                os.path.join(self.dir, name + ".etcd"),
                "--listen-client-urls", client, "--advertise-client-urls",
                client, "--listen-peer-urls", peer,
                "--initial-advertise-peer-urls", peer,
                "--initial-cluster", cluster, "--initial-cluster-state",
                state, "--initial-cluster-token", "tls-peers",
                "--heartbeat-interval", "50", "--election-timeout", "500",
                "--logger", "zap"] + list(extra)

    def ctl(self, endpoints, args, timeout=20):
        return it.run_etcdctl(endpoints, args, timeout=timeout,
                              command_timeout="4s")

    def healthy(self, endpoints):
        return all(self.ctl([ep], ["endpoint", "health"]).ok
                   for ep in endpoints)

    def start_cluster(self, binary, size, peer_scheme, extra_for):
        ports = it.free_ports(2 * size)
        clients = ["http://127.0.0.1:%d" % ports[i] for i in range(size)]
        if peer_scheme in ("unix", "unixs"):
            peers = ["%s://127.0.0.1:%d" % (peer_scheme, ports[size + i])
                     for i in range(size)]
        else:
            peers = ["%s://127.0.0.1:%d" % (peer_scheme, ports[size + i])
                     for i in range(size)]
        names = ["m%d" % i for i in range(size)]
        initial = ",".join("%s=%s" % (n, p) for n, p in zip(names, peers))
        procs = [Proc(self, binary, names[i],
                      self.member_args(names[i], clients[i], peers[i],
                                       initial, extra=extra_for(i)),
                      self.dir) for i in range(size)]
        wait_for(lambda: self.healthy(clients), 40,
                 "cluster health (%s)" % binary)
        return procs, clients, peers, initial

    def test_restart_under_load_over_peer_tls(self):
        binary = it.CONFIG["server"]
        procs, clients, peers, _ = self.start_cluster(
            binary, 3, "https", lambda i: self.peer_tls(self.member_cert))
        acked, stop = [], threading.Event()
        failures = []

        def load():
            i = 0
            while not stop.is_set():
                key = "load-%05d" % i
                r = self.ctl(clients, ["put", key, "v%d" % i])
                if r.ok:
                    acked.append(key)
                else:
                    failures.append(r.err)
                i += 1

        t = threading.Thread(target=load)
        t.start()
        try:
            wait_for(lambda: len(acked) >= 20, 30, "writes before restart")
            victim = procs[1]
            victim.kill()
            n = len(acked)
            wait_for(lambda: len(acked) >= n + 20, 30,
                     "writes with a member down")
            victim.start()
            wait_for(lambda: self.healthy([clients[1]]), 30,
                     "restarted member's health")
            n = len(acked)
            wait_for(lambda: len(acked) >= n + 20, 30,
                     "writes after the restart")
        finally:
            stop.set()
            t.join()
        # Every member, the restarted one included, has every acknowledged
        # write (a linearizable read on each endpoint).
        for ep in clients:
            r = self.ctl([ep], ["get", "load-", "--prefix", "--keys-only"])
            self.assertTrue(r.ok, r.describe())
            have = set(r.out.split())
            missing = [k for k in acked if k not in have]
            self.assertEqual(missing, [], ep)
        r = self.ctl(clients[:1], ["member", "list"])
        self.assertTrue(r.ok, r.describe())
        for p in peers:
            self.assertIn(p, r.out)
        for p in procs:
            self.assertIsNone(p.proc.poll(), p.name)
            self.assertEqual(p.rejections(), [], p.name)

    def test_member_revoked_while_running_cannot_talk_after_reconnecting(self):
        # The members share one CRL file; revoking m2's certificate in it
        # takes effect at the next handshake (as etcd's: established
        # streams are not cut). m2, restarted, can no longer reach the
        # others, and they log why.
        crl = os.path.join(self.dir, "crl.pem")
        shutil.copy(self.ca.crl, crl)
        leaves = [self.member_cert, self.member_cert,
                  self.ca.issue("m2-%d" % os.getpid(), cn="member")]

        def flags(i):
            f = self.peer_tls(leaves[i])
            f[f.index("--peer-crl-file") + 1] = crl
            return f

        procs, clients, peers, _ = self.start_cluster(
            it.CONFIG["server"], 3, "https", flags)
        r = self.ctl(clients, ["put", "before", "1"])
        self.assertTrue(r.ok, r.describe())
        self.ca.revoke(leaves[2])
        shutil.copy(self.ca.crl, crl + ".tmp")
        os.replace(crl + ".tmp", crl)
        procs[2].kill()
        procs[2].start()
        serial = leaves[2]["serial"].lower().lstrip("0")
        revoked = "transport: certificate serial %s revoked" % serial
        wait_for(lambda: any(r["error"] == revoked
                             for p in procs[:2] for r in p.rejections()),
                 20, "the others refusing m2")
        # m2 hears no leader: its linearizable reads fail; the other two
        # serve on.
        time.sleep(2)
        self.assertFalse(self.ctl([clients[2]], ["get", "before"]).ok)
        r = self.ctl(clients[:2], ["put", "after", "1"])
        self.assertTrue(r.ok, r.describe())
        # m2's own log: its dials fail; the others, dialing m2, refuse its
        # revoked certificate too (detcd's dialers check the CRL as well).
        self.assertIn("failed to dial remote peer", procs[2].log_text())
        self.assertTrue(any(revoked in p.log_text() for p in procs[:2]))

    def wrong_joiner(self, binary, leaf, ca=None):
        """A 1-member TLS cluster; a learner with `leaf` as its certificate
        is added and started. Returns (joiner, member, its rejections'
        errors) once the joiner has exited or was refused long enough."""
        procs, clients, peers, initial = self.start_cluster(
            binary, 1, "https", lambda i: self.peer_tls(self.member_cert))
        member = procs[0]
        cport, pport = it.free_ports(2)
        jpeer = "https://127.0.0.1:%d" % pport
        jclient = "http://127.0.0.1:%d" % cport
        r = self.ctl(clients, ["member", "add", "bad", "--learner",
                               "--peer-urls", jpeer])
        self.assertTrue(r.ok, r.describe())
        joiner = Proc(self, binary, "bad", self.member_args(
            "bad", jclient, jpeer, initial + ",bad=" + jpeer,
            state="existing", extra=self.peer_tls(leaf, ca)), self.dir)
        # It must not become a working member: it exits, or at least never
        # serves; the cluster refuses its connections and logs why.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and joiner.proc.poll() is None:
            time.sleep(0.2)
        self.assertFalse(self.ctl([jclient], ["get", "x"]).ok)
        wait_for(lambda: member.rejections(), 10, "a rejection on " + binary)
        errors = sorted({r["error"] for r in member.rejections()})
        # The cluster serves on.
        r = self.ctl(clients, ["put", "after", "1"])
        self.assertTrue(r.ok, r.describe())
        joiner.exited_by_itself = joiner.proc.poll()
        joiner.kill()
        member.kill()
        return joiner, member, errors

    # What etcd's joiner (and detcd's) says before it stops.
    JOIN_FAILED = ("cannot fetch cluster info from peer urls: could not "
                   "retrieve cluster information from the given URLs")

    def check_wrong_joiner(self, leaf, expect_error, expect_joiner_log):
        out = {}
        for label, binary in (("detcd", it.CONFIG["server"]),
                              ("etcd", it.CONFIG["reference"])):
            with self.subTest(binary=label):
                sub = tempfile.mkdtemp(prefix=label + "-", dir=self.dir)
                saved, self.dir = self.dir, sub
                try:
                    joiner, member, errors = self.wrong_joiner(binary, leaf)
                finally:
                    self.dir = saved
                self.assertIn(expect_error, errors, label)
                self.assertIn(expect_joiner_log, joiner.log_text(), label)
                # It stopped by itself, as etcd's does ("discovery failed").
                self.assertIsNotNone(joiner.exited_by_itself, label)
                self.assertNotEqual(joiner.exited_by_itself, 0, label)
                out[label] = errors
        self.assertEqual(out.get("detcd"), out.get("etcd"))

    def test_member_from_another_ca_cannot_join(self):
        self.check_wrong_joiner(
            self.stranger,
            "tls: failed to verify client certificate: x509: certificate "
            "signed by unknown authority", self.JOIN_FAILED)

    def test_revoked_member_cannot_join(self):
        serial = self.revoked["serial"].lower().lstrip("0")
        self.check_wrong_joiner(
            self.revoked, "transport: certificate serial %s revoked" % serial,
            self.JOIN_FAILED)

    def test_member_with_another_cn_cannot_join(self):
        self.check_wrong_joiner(
            self.wrong_cn, "client certificate authentication failed",
            self.JOIN_FAILED)

    def test_unix_socket_peers(self):
        results = {}
        cases = [("detcd", it.CONFIG["server"], "unix", lambda i: []),
                 ("etcd", it.CONFIG["reference"], "unix", lambda i: []),
                 ("detcd-unixs", it.CONFIG["server"], "unixs",
                  lambda i: self.peer_tls(self.member_cert))]
        for label, binary, scheme, extra in cases:
            with self.subTest(case=label):
                sub = tempfile.mkdtemp(prefix=label + "-", dir=self.dir)
                saved, self.dir = self.dir, sub
                try:
                    procs, clients, peers, _ = self.start_cluster(
                        binary, 3, scheme, extra)
                finally:
                    self.dir = saved
                for p in peers:  # socket files named host:port
                    self.assertTrue(os.path.exists(
                        os.path.join(sub, p.split("://", 1)[1])), p)
                r = self.ctl(clients[:1], ["put", "over-unix", label])
                self.assertTrue(r.ok, r.describe())
                outs = []
                for ep in clients:
                    r = self.ctl([ep], ["get", "over-unix",
                                        "--consistency=s",
                                        "--print-value-only"])
                    outs.append(r.out.strip())
                wait_for(lambda: all(self.ctl([ep], [
                    "get", "over-unix", "--consistency=s",
                    "--print-value-only"]).out.strip() == label
                    for ep in clients), 10, "replication over " + scheme)
                r = self.ctl(clients[:1], ["member", "list"])
                self.assertTrue(r.ok, r.describe())
                for p in peers:
                    self.assertIn(p, r.out)
                results[label] = sorted(
                    line.split(", ")[3] for line in r.out.splitlines())
                for p in procs:
                    p.proc.terminate()
                    p.proc.wait(15)
                # Clean stops remove the peer socket files.
                for p in peers:
                    self.assertFalse(os.path.exists(
                        os.path.join(sub, p.split("://", 1)[1])), p)
        self.assertEqual([u.split(":", 1)[0] for u in results["detcd"]],
                         [u.split(":", 1)[0] for u in results["etcd"]])


if __name__ == "__main__":
    it.main()
