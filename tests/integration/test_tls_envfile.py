"""A three-member TLS cluster started from environment files written like
etcd's documented one (ETCD_NAME, ETCD_DATA_DIR, ETCD_CERT_FILE, ...,
ETCD_INITIAL_CLUSTER_STATE=new), with certificates this test makes with the
openssl command. etcdctl with --cacert/--cert/--key is served by every
member; a client without a certificate, or with one from another CA, is
refused and the members keep serving; plain HTTP/1.1 (/health) works over
TLS on the same port.

Run alone: python3 tests/integration/test_tls_envfile.py --server build/detcd
"""

import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

import cluster as it


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_pki(d, name):
    """A CA plus a certificate usable as server and client for 127.0.0.1."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", name + "-ca.key", "-out", name + "-ca.crt",
            "-subj", "/CN=" + name + "-ca", cwd=d)
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                "extendedKeyUsage=serverAuth,clientAuth\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key",
            "-out", name + ".csr", "-subj", "/CN=" + name, cwd=d)
    openssl("x509", "-req", "-in", name + ".csr", "-CA", name + "-ca.crt",
            "-CAkey", name + "-ca.key", "-CAcreateserial", "-days", "2",
            "-out", name + ".crt", "-extfile", "ext.cnf", cwd=d)
    return {k: os.path.join(d, name + ext) for k, ext in
            (("ca", "-ca.crt"), ("cert", ".crt"), ("key", ".key"))}


class TlsEnvFileTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="detcd-it-tls-")
        self.procs = []
        self.addCleanup(self.cleanup)

    def cleanup(self):
        for p, _ in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if self._outcome_failed():
            for p, log in self.procs:
                with open(log, errors="replace") as f:
                    tail = f.read().splitlines()[-20:]
                print("---- %s\n%s" % (log, "\n".join(tail)))
        if not it.KEEP:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _outcome_failed(self):
        outcome = getattr(self, "_outcome", None)
        errors = getattr(outcome, "errors", None) or []
        return any(exc for _, exc in errors)

    def test_three_members_from_env_files(self):
        pki = make_pki(self.dir, "good")
        other = make_pki(self.dir, "other")
        ports = it.free_ports(6)
        names = ["infra0", "infra1", "infra2"]
        client = ["https://127.0.0.1:%d" % ports[i] for i in range(3)]
        peer = ["https://127.0.0.1:%d" % ports[3 + i] for i in range(3)]
        initial = ",".join("%s=%s" % (n, u) for n, u in zip(names, peer))
        for i, name in enumerate(names):
            env_file = os.path.join(self.dir, name + ".env")
            with open(env_file, "w") as f:
                f.write("\n".join([
                    "ETCD_NAME=%s" % name,
                    "ETCD_DATA_DIR=%s" % os.path.join(self.dir, name + ".etcd"),
                    "ETCD_CERT_FILE=%s" % pki["cert"],
                    "ETCD_KEY_FILE=%s" % pki["key"],
                    "ETCD_TRUSTED_CA_FILE=%s" % pki["ca"],
                    "ETCD_CLIENT_CERT_AUTH=true",
                    "ETCD_LISTEN_CLIENT_URLS=%s" % client[i],
                    "ETCD_ADVERTISE_CLIENT_URLS=%s" % client[i],
                    "ETCD_PEER_CERT_FILE=%s" % pki["cert"],
                    "ETCD_PEER_KEY_FILE=%s" % pki["key"],
                    "ETCD_PEER_TRUSTED_CA_FILE=%s" % pki["ca"],
                    "ETCD_LISTEN_PEER_URLS=%s" % peer[i],
                    "ETCD_INITIAL_ADVERTISE_PEER_URLS=%s" % peer[i],
                    "ETCD_INITIAL_CLUSTER_TOKEN=etcd-cluster-1",
                    "ETCD_INITIAL_CLUSTER=%s" % initial,
                    "ETCD_INITIAL_CLUSTER_STATE=new",
                    "ETCD_HEARTBEAT_INTERVAL=50",
                    "ETCD_ELECTION_TIMEOUT=500",
                ]) + "\n")
            # As a systemd unit's EnvironmentFile would: the variables only.
            env = {k: v for k, v in os.environ.items()
                   if not k.startswith("ETCD")}
            with open(env_file) as f:
                for line in f:
                    k, _, v = line.strip().partition("=")
                    env[k] = v
            log = os.path.join(self.dir, name + ".log")
            with open(log, "w") as out:
                p = subprocess.Popen([it.CONFIG["server"]], env=env,
                                     stdout=out, stderr=subprocess.STDOUT,
                                     cwd=self.dir,
                                     preexec_fn=it._die_with_parent)
            self.procs.append((p, log))

        tls = ["--cacert", pki["ca"], "--cert", pki["cert"],
               "--key", pki["key"]]
        deadline = time.monotonic() + 30
        while True:
            r = it.run_etcdctl(client, tls + ["put", "tls-key", "tls-value"])
            if r.ok:
                break
            self.assertLess(time.monotonic(), deadline, r.describe())
            time.sleep(0.3)
        for ep in client:  # every member serves, with its own endpoint
            r = it.run_etcdctl([ep], tls + ["get", "tls-key",
                                           "--print-value-only"])
            self.assertTrue(r.ok, r.describe())
            self.assertEqual(r.out.strip(), "tls-value")
        r = it.run_etcdctl(client, tls + ["member", "list"])
        self.assertTrue(r.ok, r.describe())
        for n, u in zip(names, peer):
            self.assertIn(n, r.out)
            self.assertIn(u, r.out)

        # No client certificate, then one from another CA: refused.
        r = it.run_etcdctl(client[:1], ["--cacert", pki["ca"], "get", "x"],
                           command_timeout="2s")
        self.assertFalse(r.ok, r.describe())
        r = it.run_etcdctl(client[:1], ["--cacert", pki["ca"], "--cert",
                                        other["cert"], "--key", other["key"],
                                        "get", "x"], command_timeout="2s")
        self.assertFalse(r.ok, r.describe())

        # HTTP/1.1 on the same TLS port.
        h = subprocess.run(["curl", "-s", "--cacert", pki["ca"], "--cert",
                            pki["cert"], "--key", pki["key"],
                            client[0] + "/health"],
                           stdout=subprocess.PIPE, timeout=20)
        self.assertIn(b'"health":"true"', h.stdout)

        # Still serving after the refused clients.
        r = it.run_etcdctl(client, tls + ["put", "after", "ok"])
        self.assertTrue(r.ok, r.describe())
        for p, _ in self.procs:
            self.assertIsNone(p.poll(), "a member exited")
            p.send_signal(signal.SIGTERM)
        # A clean stop ends the process by the signal, as etcd's does.
        for p, _ in self.procs:
            self.assertEqual(p.wait(timeout=20), -signal.SIGTERM)


if __name__ == "__main__":
    it.main()
