#!/usr/bin/env python3
"""Locks and elections against real etcd 3.4 and the server under test, side
by side, with compared outputs:

  - `etcdctl lock` contention: three etcdctl processes take one lock in turns,
    each holder running a command (`-- sh -c ...`) that appends a start and an
    end line to a shared file; the file must show no overlap, and the lock's
    revisions (ETCD_LOCK_REV, the fencing token) must grow;
  - `etcdctl lock --ttl`: the session lease has the TTL asked for, and after
    the holder is SIGKILLed the lock is free once that lease expires;
  - `etcdctl elect`: a campaign, an observer (`elect -l`), a second
    candidate waiting; SIGKILL of the leader's process, its lease expires
    (etcdctl's session TTL, 60 s) and the second candidate leads, which the
    observer prints;
  - golock (tests/integration/golock, Go clientv3 from Debian's
    golang-etcd-server-dev): etcd's Lock and Election gRPC services through
    their generated clients, and clientv3's concurrency package (mutex with
    fenced writes, election with observation, session expiry); its
    transcript must be the same on both servers. `golock -auth` does the
    services again with auth enabled: the caller's token reaches the inner
    calls, etcd's errors without a token or without permission.

etcd and the server under test run at the same time (one thread each), so the
lease expiries are waited out once.

Run alone:  python3 test_lock_election.py --server build/detcd [-v]
"""

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import cluster
from cluster import CONFIG, ClusterTestCase

HERE = os.path.dirname(os.path.abspath(__file__))
GOLOCK_SRC = os.path.join(HERE, "golock", "main.go")


def golock_binary():
    """Builds golock/main.go offline (GOPATH mode, Debian's gocode) into a
    cache dir unless the cached binary is newer than the source."""
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME") or
                         os.path.expanduser("~/.cache"), "detcd-it-golock")
    os.makedirs(cache, exist_ok=True)
    out = os.path.join(cache, "golock")
    if os.path.exists(out) and \
            os.path.getmtime(out) >= os.path.getmtime(GOLOCK_SRC):
        return out
    gocache = os.path.join(os.environ.get("XDG_CACHE_HOME") or
                           os.path.expanduser("~/.cache"), "detcd-it-gocache")
    os.makedirs(gocache, exist_ok=True)
    p = subprocess.run(["go", "build", "-o", out + ".tmp", GOLOCK_SRC],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       env=cluster.go_env(gocache), timeout=600,
                       cwd=os.path.dirname(GOLOCK_SRC))
    if p.returncode != 0:
        raise cluster.ClusterError("building golock failed:\n" +
                                   p.stdout.decode("utf-8", "replace"))
    os.replace(out + ".tmp", out)
    return out


def side_by_side(clusters, scenario):
    """Runs scenario(cluster) for each cluster in a thread of its own (child
    processes die with the thread that started them, so each scenario
    waits for its own); returns {label: result} and re-raises the first
    exception."""
    results, errors = {}, {}

    def run(c):
        try:
            results[c.label] = scenario(c)
        except Exception as e:  # pylint: disable=broad-except
            errors[c.label] = e

    threads = [threading.Thread(target=run, args=(c,)) for c in clusters]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for label, e in errors.items():
        raise AssertionError("%s: %s" % (label, e)) from e
    return results


def lease_masked(text):
    """Lease ids in keys ("name/694d7a1b2c3d4e5f") as <lease>."""
    return re.sub(r"/[0-9a-f]{1,16}\b", "/<lease>", text)


class LockElectionTest(ClusterTestCase):

    def pair(self, size=1):
        etcd = self.new_cluster(CONFIG["reference"], size=size, label="etcd")
        server = self.new_cluster(CONFIG["server"], size=size, label="server")
        return [etcd, server]

    def assertSame(self, results, what):
        (l1, r1), (l2, r2) = sorted(results.items())
        self.assertEqual(r1, r2, "%s differs: %s vs %s" % (what, l1, l2))

    def test_lock_contention_three_processes(self):
        rounds = 3

        def scenario(c):
            fd, path = tempfile.mkstemp(prefix="detcd-it-lockfile-")
            os.close(fd)
            self.addCleanup(os.remove, path)
            # Each holder writes its start line, waits, then its end line:
            # with two holders at once the lines would interleave.
            cmd = ('echo "start $ETCD_LOCK_REV $ETCD_LOCK_KEY" >> %s; '
                   'sleep 0.2; echo "end $ETCD_LOCK_REV" >> %s' % (path, path))
            failures = []

            def worker():
                for _ in range(rounds):
                    r = cluster.run_etcdctl(c.endpoints(),
                                            ["lock", "contended", "--", "sh",
                                             "-c", cmd], timeout=60)
                    if not r.ok:
                        failures.append(r.describe())

            ws = [threading.Thread(target=worker) for _ in range(3)]
            for w in ws:
                w.start()
            for w in ws:
                w.join()
            self.assertEqual(failures, [], c.label)
            with open(path) as f:
                lines = f.read().split("\n")[:-1]
            shape, revs = [], []
            for i in range(0, len(lines), 2):
                start, end = lines[i].split(), lines[i + 1].split()
                self.assertEqual((start[0], end[0]), ("start", "end"),
                                 "%s: overlapping holders:\n%s" %
                                 (c.label, "\n".join(lines)))
                self.assertEqual(start[1], end[1], "%s: %s" % (c.label, lines))
                self.assertTrue(start[2].startswith("contended/"), start)
                revs.append(int(start[1]))
                shape.append("start/end")
            self.assertEqual(revs, sorted(revs), "%s: fencing revisions "
                             "not increasing: %s" % (c.label, revs))
            self.assertEqual(len(set(revs)), len(revs))
            left = c.ctl_ok(["get", "contended/", "--prefix", "--keys-only"])
            return shape, left.out

        results = side_by_side(self.pair(), scenario)
        for shape, left in results.values():
            self.assertEqual(shape, ["start/end"] * (3 * rounds))
            self.assertEqual(left, "")
        self.assertSame(results, "lock contention")

    def test_lock_ttl_released_after_holder_killed(self):
        ttl = 3

        def scenario(c):
            holder = cluster.Background(c.endpoints(),
                                        ["lock", "--ttl", str(ttl), "held"])
            try:
                self.assertTrue(holder.wait_for(lambda o: b"held/" in o),
                                "%s: lock not taken: %r" % (
                                    c.label, holder.output()))
                holder.wait_quiet()
                key = holder.output().decode().split("\n")[0]
                lease = key.split("/")[1]
                ttl_out = c.ctl_ok(["lease", "timetolive", lease]).out
                # The key names the lease in %x, timetolive in %016x; the
                # remaining seconds depend on when the line is read.
                ttl_out = re.sub(r"remaining\(-?\d+s\)", "remaining(*)",
                                 re.sub(r"\b0*%s\b" % lease, "<lease>",
                                        ttl_out))
                # SIGKILL: the session is neither unlocked nor revoked.
                killed = time.monotonic()
                holder.stop()
                r = cluster.run_etcdctl(c.endpoints(),
                                        ["lock", "held", "--", "echo", "got"],
                                        timeout=30)
                waited = time.monotonic() - killed
                self.assertTrue(r.ok, r.describe())
                # Released by the --ttl lease's expiry, long before the
                # 60 s a default session would hold it; the slack covers
                # etcdctl's start-up and expiry checks on a loaded machine.
                self.assertLess(waited, ttl + 20, "%s: %.1f s" % (c.label, waited))
                return lease_masked(holder.output().decode()), ttl_out, r.out
            finally:
                holder.stop()

        results = side_by_side(self.pair(), scenario)
        for printed, ttl_out, got in results.values():
            self.assertEqual(printed, "held/<lease>\n\n")
            self.assertIn("granted with TTL(%ds)" % ttl, ttl_out)
            self.assertEqual(got, "got\n")
        self.assertSame(results, "lock --ttl")

    @unittest.skipUnless(cluster.LONG, "waits out etcdctl's 60 s session "
                         "lease: DETCD_IT_LONG=1 (ctest -L long: "
                         "integration_lock_election_long)")
    def test_elect_observe_and_leader_kill(self):
        def scenario(c):
            observer = cluster.Background(c.endpoints(), ["elect", "-l", "el"])
            first = cluster.Background(c.endpoints(), ["elect", "el", "p1"])
            second = None
            try:
                self.assertTrue(first.wait_for(lambda o: b"p1" in o),
                                "%s: p1 not elected" % c.label)
                self.assertTrue(observer.wait_for(lambda o: b"p1" in o),
                                "%s: observer missed p1" % c.label)
                second = cluster.Background(c.endpoints(),
                                            ["elect", "el", "p2"])
                # p2 waits behind p1's key.
                self.assertFalse(second.wait_for(lambda o: o != b"",
                                                 timeout=1.0),
                                 "%s: p2 elected while p1 leads" % c.label)
                leader = c.ctl_ok(["get", "el/", "--prefix",
                                   "--sort-by=CREATE", "--limit=1",
                                   "--print-value-only"]).out
                # The leader's process dies: its session lease (etcdctl's
                # 60 s) expires, then p2 leads.
                killed = time.monotonic()
                first.stop()
                self.assertTrue(second.wait_for(lambda o: b"p2" in o,
                                                timeout=90),
                                "%s: p2 not elected after p1's lease "
                                "expired" % c.label)
                waited = time.monotonic() - killed
                self.assertGreater(waited, 30, c.label)
                self.assertTrue(observer.wait_for(lambda o: b"p2" in o,
                                                  timeout=10),
                                "%s: observer missed p2" % c.label)
                observer.wait_quiet()
                second.wait_quiet()
                # SIGINT: p2 resigns and exits 0; the observer too.
                second.proc.send_signal(signal.SIGINT)
                rc2 = second.proc.wait(10)
                gone = c.ctl_ok(["get", "el/", "--prefix", "--keys-only"]).out
                observer.proc.send_signal(signal.SIGINT)
                rco = observer.proc.wait(10)
                return (lease_masked(first.output().decode()),
                        lease_masked(second.output().decode()),
                        lease_masked(observer.output().decode()),
                        leader, rc2, rco, gone)
            finally:
                for b in (first, second, observer):
                    if b is not None:
                        b.stop()

        results = side_by_side(self.pair(), scenario)
        for p1, p2, obs, leader, rc2, rco, gone in results.values():
            self.assertEqual(p1, "el/<lease>\np1\n")
            self.assertEqual(p2, "el/<lease>\np2\n")
            self.assertEqual(obs, "el/<lease>\np1\nel/<lease>\np2\n")
            self.assertEqual(leader, "p1\n")
            self.assertEqual((rc2, rco), (0, 0))
            self.assertEqual(gone, "")
        self.assertSame(results, "elect")

    def golock(self, clusters, flags=()):
        binary = golock_binary()

        def scenario(c):
            p = subprocess.run([binary, "-v", "-endpoints",
                                ",".join(c.endpoints())] + list(flags),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=180,
                               preexec_fn=cluster._die_with_parent)  # pylint: disable=protected-access
            out = p.stdout.decode("utf-8", "replace")
            err = p.stderr.decode("utf-8", "replace")
            self.assertEqual(p.returncode, 0, "golock on %s:\n%s%s" % (
                c.label, out, err[-4000:]))
            self.assertIn("PASS", out)
            # golock's diagnostics (what a failed step left behind) are
            # outside the compared transcript: keep them in the log.
            if err.strip():
                sys.stderr.write("%s: %s" % (c.label, err[-4000:]))
            return out

        results = side_by_side(clusters, scenario)
        sys.stderr.write("\n" + results["server"])
        self.assertSame(results, "golock transcript")

    def test_go_lock_and_election_services(self):
        self.golock(self.pair(size=3))

    def test_go_services_with_auth(self):
        self.golock(self.pair(), ["-auth"])


if __name__ == "__main__":
    cluster.main()
