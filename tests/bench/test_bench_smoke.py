#!/usr/bin/env python3
"""detcd-bench smoke runs: every workload once against a single-member detcd
with a small --total; the JSON result must show successes, no errors, and
the workload's effect must be visible through etcdctl.

  python3 tests/bench/test_bench_smoke.py --server build/detcd \
      --bench build/detcd-bench [-v] [unittest args]

Uses tests/integration/cluster.py for the member (free ports, temp dirs,
cleanup). Timings are printed, never checked.
"""

import argparse
import json
import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "integration"))
import cluster  # noqa: E402

ARGS = None


def bench(endpoints, args, timeout=120):
    argv = [ARGS.bench, "--endpoints", ",".join(endpoints), "--json",
            "--dial-timeout", "5s", "--command-timeout", "20s"] + args
    t0 = time.monotonic()
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    return p, time.monotonic() - t0


class BenchSmoke(cluster.ClusterTestCase):

    @classmethod
    def setUpClass(cls):
        cls.c = cls.new_class_cluster(ARGS.server, size=1, label="bench")
        cls.c.start()
        cls.eps = cls.c.endpoints()

    def run_json(self, args, want_sections=None):
        p, secs = bench(self.eps, args)
        err = p.stderr.decode(errors="replace")
        self.assertEqual(p.returncode, 0, "%s\nstderr: %s\nstdout: %s" % (
            args, err, p.stdout.decode(errors="replace")))
        # Not a terminal: no progress bar.
        self.assertNotIn("[=", err)
        r = json.loads(p.stdout)
        names = [s["name"] for s in r["sections"]]
        if want_sections:
            self.assertEqual(names, want_sections)
        for s in r["sections"]:
            self.assertGreater(s["count"], 0, s)
            self.assertEqual(s["errors"], 0, s)
            lat = s["latency_s"]
            self.assertLessEqual(lat["min"], lat["p50"])
            self.assertLessEqual(lat["p50"], lat["p99"])
            self.assertLessEqual(lat["p99"], lat["p99.9"])
            self.assertLessEqual(lat["p99.9"], lat["max"])
            self.assertEqual(sum(b["count"] for b in s["histogram"]),
                             s["count"])
        self.assertEqual(r["failure"], "")
        self.assertGreater(r["bench_cpu_s"], 0)
        sys.stderr.write("  %-40s %6.2fs %s\n" % (
            " ".join(args)[:40], secs,
            " ".join("%s=%.0f/s" % (s["name"], s["qps"])
                     for s in r["sections"])))
        return r

    def count(self, prefix):
        r = self.c.ctl_ok(["get", prefix, "--prefix", "--limit", "1",
                           "-w", "json"])
        return r.json().get("count", 0)

    def test_put_sequential_fills_the_key_space(self):
        r = self.run_json(["--conns", "2", "--clients", "4", "put",
                           "--total", "300", "--key-size", "10",
                           "--val-size", "64", "--key-space-size", "50",
                           "--sequential-keys"], ["put"])
        self.assertEqual(r["sections"][0]["count"], 300)
        # Keys 0000000000..0000000049.
        self.assertEqual(self.count("00000000"), 50)
        got = self.c.ctl_ok(["get", "0000000049", "--print-value-only"])
        self.assertEqual(len(got.out.strip()), 64)

    def test_grpc_client_fills_the_key_space_too(self):
        """--grpc-client: the same puts through gRPC C++ instead of the
        built-in HTTP/2 client (TLS and --user always take it)."""
        r = self.run_json(["--conns", "2", "--clients", "4", "--grpc-client",
                           "put", "--total", "300", "--key-size", "10",
                           "--val-size", "64", "--key-space-size", "50",
                           "--sequential-keys"], ["put"])
        self.assertEqual(r["sections"][0]["count"], 300)
        self.assertEqual(self.count("00000000"), 50)

    def test_range_linearizable_serializable_prefix(self):
        self.c.ctl_ok(["put", "rk", "v"])
        for extra in (["--consistency", "l"], ["--consistency", "s"],
                      ["--prefix"]):
            r = self.run_json(["--clients", "4", "range", "rk",
                               "--total", "200"] + extra, ["range"])
            self.assertEqual(r["sections"][0]["count"], 200)

    def test_duration_instead_of_total(self):
        t0 = time.monotonic()
        r = self.run_json(["--clients", "2", "range", "rk", "--consistency",
                           "s", "--duration", "1s", "--rate", "100"])
        self.assertLess(time.monotonic() - t0, 30)
        # 100/s over 1 s: about 100, bounded either way.
        self.assertGreater(r["sections"][0]["count"], 20)
        self.assertLessEqual(r["sections"][0]["count"], 105)

    def test_txn_put(self):
        r = self.run_json(["--clients", "4", "txn-put", "--total", "100",
                           "--txn-ops", "4", "--key-space-size", "40",
                           "--key-size", "6"], ["txn-put"])
        self.assertEqual(r["sections"][0]["count"], 100)

    def test_txn_mixed(self):
        r = self.run_json(["--clients", "4", "txn-mixed", "tm",
                           "--total", "200", "--rw-ratio", "1",
                           "--key-space-size", "10"], ["read", "write"])
        total = sum(s["count"] for s in r["sections"])
        self.assertEqual(total, 200)

    def test_watch_delivers_every_event(self):
        r = self.run_json(["--clients", "4", "watch", "--watchers", "12",
                           "--streams", "3", "--watched-key-total", "4",
                           "--put-total", "100", "--key-size", "12"],
                          ["watch", "put"])
        # 100 puts over 4 keys, 3 watchers per key.
        self.assertEqual(r["counters"]["events expected"], 300)
        self.assertEqual(r["counters"]["events delivered"], 300)
        self.assertEqual(r["sections"][0]["count"], 300)

    def test_watch_get(self):
        r = self.run_json(["--clients", "2", "watch-get", "wg",
                           "--watchers", "6", "--streams", "2",
                           "--watch-events", "50", "--total", "100"],
                          ["get"])
        self.assertEqual(r["counters"]["watchers"], 6)
        # Every watcher caught up on the 50 events from revision 1.
        self.assertEqual(r["counters"]["watch events delivered"], 300)

    def test_lease_keepalive(self):
        r = self.run_json(["--clients", "3", "lease-keepalive",
                           "--total", "300"], ["keepalive"])
        self.assertEqual(r["sections"][0]["count"], 300)
        # The bench revokes its leases at the end.
        leases = self.c.ctl_ok(["lease", "list"]).out
        self.assertIn("found 0 leases", leases)

    def test_stm_counts_every_increment(self):
        r = self.run_json(["--clients", "4", "stm", "--total", "60",
                           "--keys", "3", "--keys-per-txn", "2",
                           "--isolation", "s"], ["stm"])
        self.assertEqual(r["sections"][0]["count"], 60)
        # Each transaction added 1 to two keys: no lost update.
        total = 0
        for k in range(3):
            v = self.c.ctl_ok(["get", "stm/%08d" % k, "--print-value-only"])
            total += int(v.out.strip() or 0)
        self.assertEqual(total, 120)

    def test_lock_leaves_nothing_behind(self):
        r = self.run_json(["--clients", "4", "lock", "--total", "200",
                           "--lock-names", "2"], ["lock"])
        self.assertEqual(r["sections"][0]["count"], 200)
        # Every Lock was unlocked and every client's lease revoked: no
        # waiter or holder key is left under the names.
        self.assertEqual(self.count("lock/"), 0)
        self.assertIn("found 0 leases", self.c.ctl_ok(["lease", "list"]).out)

    def test_watch_resume_gets_each_event_and_cleans_up(self):
        r = self.run_json(["--clients", "3", "watch-resume", "--total",
                           "60"], ["resume"])
        # Each resume read its key's event at the put's revision (a wrong
        # revision or a missing event is an error) and canceled the watch.
        self.assertEqual(r["sections"][0]["count"], 60)
        self.assertEqual(self.count("resume/"), 0)

    def test_target_leader_and_text_output(self):
        p, _ = bench(self.eps, ["--target-leader", "range", "rk",
                                "--total", "10"])
        self.assertEqual(p.returncode, 0, p.stderr)
        # --json came first in bench(); text is asked for by --json=false.
        p, _ = bench(self.eps, ["range", "rk", "--total", "10",
                                "--json=false"])
        out = p.stdout.decode()
        self.assertEqual(p.returncode, 0, p.stderr)
        for want in ("Summary:", "Requests/sec:", "Response time histogram:",
                     "99.9% in", "Bench CPU:"):
            self.assertIn(want, out)

    def test_errors_exit_codes(self):
        p, _ = bench(self.eps, ["put", "--bogus"])
        self.assertEqual(p.returncode, 2)
        self.assertIn(b"unknown flag: --bogus", p.stderr)
        port = cluster.free_ports(1)[0]
        p, secs = bench(["127.0.0.1:%d" % port],
                        ["put", "--total", "1", "--dial-timeout", "1s"])
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"cannot reach", p.stderr)
        self.assertLess(secs, 20)


class BenchAuth(cluster.ClusterTestCase):

    def test_user_password(self):
        c = self.new_cluster(ARGS.server, size=1, label="bench-auth")
        c.ctl_ok(["user", "add", "root:rootpw"])
        c.ctl_ok(["auth", "enable"])
        p, _ = bench(c.endpoints(), ["put", "--total", "20"])
        self.assertNotEqual(p.returncode, 0)  # no credentials: refused
        p, _ = bench(c.endpoints(), ["--user", "root:rootpw", "put",
                                     "--total", "20"])
        self.assertEqual(p.returncode, 0, p.stderr)
        r = json.loads(p.stdout)
        self.assertEqual(r["sections"][0]["errors"], 0)
        self.assertEqual(r["sections"][0]["count"], 20)


class BenchTls(unittest.TestCase):

    def test_client_certificates(self):
        import shutil
        import tempfile
        import tls_pki
        d = tempfile.mkdtemp(prefix="detcd-bench-tls-")
        self.addCleanup(shutil.rmtree, d, True)
        ca = tls_pki.Ca(d, "ca")
        server = ca.issue("server")
        client = ca.issue("client")
        cport, pport = cluster.free_ports(2)
        url = "https://127.0.0.1:%d" % cport
        peer = "http://127.0.0.1:%d" % pport
        logf = open(os.path.join(d, "member.log"), "wb")
        proc = subprocess.Popen([
            ARGS.server, "--name", "m0", "--data-dir", os.path.join(d, "m0"),
            "--listen-client-urls", url, "--advertise-client-urls", url,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", "m0=" + peer,
            "--cert-file", server["cert"], "--key-file", server["key"],
            "--trusted-ca-file", ca.cert, "--client-cert-auth"],
            stdout=logf, stderr=subprocess.STDOUT,
            preexec_fn=cluster._die_with_parent)
        logf.close()

        def stop():
            proc.kill()
            proc.wait()
        self.addCleanup(stop)
        tls = ["--cacert", ca.cert, "--cert", client["cert"],
               "--key", client["key"]]
        deadline = time.monotonic() + 30
        while True:
            p, _ = bench([url], tls + ["--dial-timeout", "0.5s", "range", "x",
                                       "--total", "1"])
            if p.returncode == 0:
                break
            self.assertIsNone(proc.poll(), "detcd exited")
            self.assertLess(time.monotonic(), deadline, p.stderr)
            time.sleep(0.1)
        p, _ = bench([url], tls + ["--clients", "4", "put", "--total", "50"])
        self.assertEqual(p.returncode, 0, p.stderr)
        r = json.loads(p.stdout)
        self.assertEqual(r["sections"][0]["count"], 50)
        self.assertEqual(r["sections"][0]["errors"], 0)
        # Without a client certificate the server refuses the handshake.
        p, _ = bench([url], ["--cacert", ca.cert, "--dial-timeout", "1s",
                             "put", "--total", "1"])
        self.assertNotEqual(p.returncode, 0)


def main():
    global ARGS
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--server", required=True)
    ap.add_argument("--bench", required=True)
    ARGS, rest = ap.parse_known_args()
    ARGS.server = os.path.abspath(ARGS.server)
    ARGS.bench = os.path.abspath(ARGS.bench)
    unittest.main(argv=[sys.argv[0]] + rest)


if __name__ == "__main__":
    main()
