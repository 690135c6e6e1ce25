#!/usr/bin/env python3
"""etcdctl 3.4 against reference etcd and against the server under test, side
by side: the same commands on two fresh clusters, outputs (exit code, stdout,
stderr) compared after masking IDs, revisions, raft terms/indexes, times,
sizes and versions (see etcdctl_mask.py and compare.py).

Run alone:  python3 test_etcdctl_compare.py --server build/detcd [-v] [-k name]
"""

import json
import os
import unittest
import time

import cluster
from compare import CompareCase

FORMATS = ["simple", "json", "fields", "protobuf", "table"]


class KV(CompareCase):
    """put / get / del / txn."""

    def test_put_get_every_format(self):
        self.both(["put", "fmt/a", "value-a"])
        self.both(["put", "fmt/b", "value b with spaces"])
        for fmt in FORMATS:
            rc = 4 if fmt == "table" else 0  # table: not supported for get
            self.both(["get", "fmt/a", "-w", fmt], expect_rc=rc)
            self.both(["get", "fmt/", "--prefix", "-w", fmt], expect_rc=rc)
            self.both(["get", "fmt/missing", "-w", fmt], expect_rc=rc)
        for fmt in ["simple", "json", "fields", "protobuf"]:
            self.both(["put", "fmt/a", "value-a2", "--prev-kv", "-w", fmt])
            self.both(["put", "fmt/new-" + fmt, "x", "--prev-kv", "-w", fmt])
        self.both(["get", "fmt/", "--prefix", "-w", "json"])

    def test_put_options(self):
        self.both(["put", "popt/k", "from-args"])
        self.both(["put", "popt/stdin"], stdin="from stdin\n")
        self.both(["get", "popt/stdin", "-w", "json"])
        self.both(["put", "popt/k", "--ignore-value"])
        self.both(["get", "popt/k", "-w", "fields"])
        self.both(["put", "popt/absent", "--ignore-value"], expect_rc=1)
        self.both(["put", "popt/absent", "--ignore-lease", "v"], expect_rc=1)
        self.both(["put", "popt/k", "--ignore-lease", "v2", "-w", "json"])
        self.both(["put", "popt/empty", ""])
        self.both(["get", "popt/empty", "-w", "json"])
        self.both(["put", "popt/bin", "\x01\x02\xff"])
        self.both(["get", "popt/bin", "--hex"])
        self.both(["put", "popt/-dash", "v"], expect_rc=None)
        self.both(["put", "--", "-dashkey", "v"])
        self.both(["get", "--", "-dashkey"])

    def test_get_options(self):
        for k, v in [("g/a", "5"), ("g/b", "4"), ("g/c", "3"), ("g/d", "2"),
                     ("g/e", "1")]:
            self.both(["put", k, v])
        self.both(["put", "g/b", "44"])
        self.both(["put", "g/b", "444"])
        rev = self.each(lambda s: s.ctl(["get", "g/a", "-w", "json"])
                        .json()["header"]["revision"])
        self.both(["get", "g/b", "--rev=%d" % (rev[0] - 1)],
                  ref_args=["get", "g/b", "--rev=%d" % (rev[0] - 1)],
                  srv_args=["get", "g/b", "--rev=%d" % (rev[1] - 1)])
        cases = [
            ["get", "g/", "--prefix"],
            ["get", "g/b", "g/d"],
            ["get", "g/b", "g/d", "-w", "json"],
            ["get", "g/c", "--from-key"],
            ["get", "g/c", "--from-key", "--keys-only"],
            ["get", "g/", "--prefix", "--limit=2"],
            ["get", "g/", "--prefix", "--limit=2", "-w", "json"],
            ["get", "g/", "--prefix", "--limit=2", "-w", "fields"],
            ["get", "g/", "--prefix", "--print-value-only"],
            ["get", "g/", "--prefix", "--keys-only"],
            ["get", "g/", "--prefix", "--keys-only", "-w", "json"],
            ["get", "g/", "--prefix", "--keys-only", "-w", "protobuf"],
            ["get", "g/", "--prefix", "--consistency=s"],
            ["get", "g/", "--prefix", "--hex"],
            ["get", "g/", "--prefix", "--limit=1", "-w", "json"],
            ["get", "g/", "--prefix", "--limit=1", "--keys-only", "-w",
             "fields"],
            ["get", "g/", "--prefix", "--limit=0"],
            ["get", "g/z", "g/a"],                       # end before start
            ["get", "g/a", "g/a"],                       # empty range
            ["get", "g/", "--prefix", "--rev=1"],
        ]
        for target in ["CREATE", "KEY", "MODIFY", "VALUE", "VERSION"]:
            for order in ["ASCEND", "DESCEND"]:
                cases.append(["get", "g/", "--prefix", "--sort-by=" + target,
                              "--order=" + order])
            cases.append(["get", "g/", "--prefix", "--sort-by=" + target,
                          "--limit=3", "--keys-only"])
        cases.append(["get", "g/", "--prefix", "--order=DESCEND"])
        cases.append(["get", "g/", "--prefix", "--order=DESCEND", "--limit=2"])
        for c in cases:
            self.both(c, expect_rc=None)
        # Bad option values are etcdctl's own errors, but must not differ.
        self.both(["get", "g/", "--prefix", "--sort-by=BAD"], expect_rc=None)
        self.both(["get", "g/", "--prefix", "--order=BAD"], expect_rc=None)
        self.both(["get", "g/a", "--prefix", "--from-key"], expect_rc=None)

    def test_del(self):
        keys = ["d/a", "d/b", "d/c", "d/d", "d/e", "d/f", "d/g", "d2/x", "d3/y"]
        for k in keys:
            self.both(["put", k, "v-" + k])
        self.both(["del", "d/a"])
        self.both(["del", "d/a"])                        # already gone: 0
        self.both(["del", "d/b", "--prev-kv"])
        self.both(["del", "d/c", "d/e", "--prev-kv", "-w", "json"])
        self.both(["del", "d/e", "--prev-kv", "-w", "fields"])
        self.both(["del", "d/f", "--prev-kv", "-w", "protobuf"])
        self.both(["del", "d/", "--prefix", "--prev-kv"])
        self.both(["del", "d2/x", "--from-key", "--prev-kv", "-w", "json"])
        self.both(["get", "", "--from-key", "--keys-only"])
        self.both(["del", "nothing/", "--prefix", "-w", "json"])
        self.both(["del", "zz", "aa"])                   # end before start
        self.both(["del", "d/a", "--prefix", "--from-key"], expect_rc=None)

    def test_txn(self):
        self.both(["put", "t/k1", "v1"])
        self.both(["put", "t/k2", "v2"])
        txns = [
            # success branch with every request kind
            'value("t/k1") = "v1"\n\nput t/k1 new1\nget t/k2\ndel t/k2\n'
            'get t/ --prefix\n\nput t/k1 else\n\n',
            # failure branch
            'value("t/k1") = "nope"\n\nput t/x y\n\nput t/k3 from-else\n'
            'get t/k3 --prefix -w json\n\n',
            # several compares, each target and operator
            'version("t/k1") = "2"\nmod("t/k1") > "0"\ncreate("t/k1") != "0"\n'
            'create("t/missing") = "0"\nversion("t/k3") < "5"\n'
            'mod("t/k3") < "1000000"\n\nget t/k1\n\n\n',
            'ver("t/k1") > "100"\n\n\nget t/k1 --keys-only\n\n',
            'c("t/k1") = "0"\n\n\nput t/k4 --prev-kv v4\n\n',
            'm("t/k1") != "0"\nval("t/k1") != "x"\n\ndel t/ --prefix --prev-kv\n'
            '\n\n',
            # no compares: always succeeds
            '\nput t/a 1\nput t/b 2\nput t/c 3\n\n\n',
            '\nget t/ --prefix --limit=2\nget t/a t/c\nget t/b --rev=1\n\n\n',
            # nothing at all
            '\n\n\n',
        ]
        for body in txns:
            for fmt in ["simple", "json", "fields", "protobuf"]:
                self.both(["txn", "-w", fmt], stdin=body, expect_rc=None)
        self.both(["txn", "-i"], stdin=txns[0])
        # Duplicate keys among a txn's puts: etcd rejects the txn.
        self.both(["txn"], stdin='\nput t/dup 1\nput t/dup 2\n\n\n',
                  expect_rc=1)
        self.both(["txn"], stdin='\nput t/dup 1\ndel t/dup\n\n\n', expect_rc=1)
        # Malformed input: etcdctl's own errors.
        self.both(["txn"], stdin='bad compare\n\n\n\n', expect_rc=None)
        self.both(["txn"], stdin='value("t/a") = \n\n\n\n', expect_rc=None)
        self.both(["txn"], stdin='\nfrobnicate k\n\n\n', expect_rc=None)
        self.both(["txn"], stdin='\nput only\n\n\n', expect_rc=None)
        self.both(["get", "t/", "--prefix", "-w", "json"])


class Watch(CompareCase):

    def test_watch_key(self):
        self.watch_both(["w1/k"], [["put", "w1/k", "a"], ["put", "w1/other", "x"],
                                   ["put", "w1/k", "b"], ["del", "w1/k"]],
                        sync_key="w1/k", end_key="w1/k")

    def test_watch_prefix(self):
        self.watch_both(["--prefix", "w2/"],
                        [["put", "w2/a", "1"], ["put", "w2x", "no"],
                         ["put", "w2/b", "2"], ["del", "w2/", "--prefix"]],
                        sync_key="w2/sync", end_key="w2/end")

    def test_watch_range(self):
        self.watch_both(["w3/b", "w3/d"],
                        [["put", "w3/a", "no"], ["put", "w3/b", "yes"],
                         ["put", "w3/c", "yes"], ["put", "w3/d", "no"],
                         ["del", "w3/a", "w3/z"]],
                        sync_key="w3/b", end_key="w3/c")

    def test_watch_prev_kv(self):
        self.both(["put", "w4/k", "old"])
        for fmt in ["simple", "json", "fields"]:
            self.watch_both(["--prefix", "w4/", "--prev-kv", "-w", fmt],
                            [["put", "w4/k", "new-" + fmt],
                             ["del", "w4/k"], ["put", "w4/k", "again-" + fmt]],
                            sync_key="w4/sync", end_key="w4/end", fmt=fmt)

    def test_watch_formats(self):
        for fmt in ["json", "fields"]:
            self.watch_both(["--prefix", "w5/", "-w", fmt],
                            [["put", "w5/a", fmt], ["del", "w5/a"]],
                            sync_key="w5/sync", end_key="w5/end", fmt=fmt)

    def test_watch_rev_history(self):
        for i in range(4):
            self.both(["put", "w6/k", "v%d" % i])
        self.both(["del", "w6/k"])
        revs = self.each(lambda s: s.ctl(["get", "w6/k", "-w", "json"])
                         .json()["header"]["revision"])
        # Five events replayed from history: start five revisions back.
        for fmt in ["simple", "json", "fields", "protobuf"]:
            def five_events(b, fmt=fmt):
                if fmt == "protobuf":
                    return b.count(b"w6/k") >= 5
                if fmt == "json":
                    return b.count(b'"kv"') >= 5
                return b.count(b"w6/k") >= 5
            a = ["watch", "w6/k", "--rev=%d" % (revs[0] - 4), "-w", fmt]
            b = ["watch", "w6/k", "--rev=%d" % (revs[1] - 4), "-w", fmt]
            ra = self.ref.cluster.background(a)
            rb = self.srv.cluster.background(b)
            # Then quiet: the last event complete, and extra (wrong) events
            # would show too.
            oka = ra.wait_for(five_events, 10) and ra.wait_quiet()
            okb = rb.wait_for(five_events, 10) and rb.wait_quiet()
            ra, rb = ra.stop(), rb.stop()
            self.assertTrue(oka, ra.describe())
            self.assertTrue(okb, "server watch --rev did not replay:\n" +
                            rb.describe())
            ra.rc = rb.rc = 0  # both were killed by us
            self.assertSameOutput(a, ra, rb, b)
        # --prev-kv on replayed events
        a = ["watch", "w6/k", "--rev=%d" % (revs[0] - 2), "--prev-kv"]
        b = ["watch", "w6/k", "--rev=%d" % (revs[1] - 2), "--prev-kv"]
        ra = self.ref.cluster.background(a)
        rb = self.srv.cluster.background(b)
        oka = ra.wait_for(lambda o: o.count(b"DELETE") >= 1, 10) and \
            ra.wait_quiet()
        okb = rb.wait_for(lambda o: o.count(b"DELETE") >= 1, 10) and \
            rb.wait_quiet()
        ra, rb = ra.stop(), rb.stop()
        self.assertTrue(oka and okb, rb.describe())
        ra.rc = rb.rc = 0
        self.assertSameOutput(a, ra, rb, b)

    def test_watch_interactive(self):
        ops = [["put", "w7/a", "1"], ["put", "w7/b", "2"], ["put", "w7/a", "3"]]
        self.watch_both(["-i"], ops, stdin_lines=["watch w7/a"],
                        sync_key="w7/a", end_key="w7/a")
        # Two watchers and a progress request on one stream; -i also reports
        # bad lines on stderr.
        self.watch_both(["-i"], [["put", "w7/c", "x"]],
                        stdin_lines=["watch --prefix w7/", "bogus command"],
                        sync_key="w7/sync", end_key="w7/end",
                        after_lines=["progress"],
                        after_text="progress notify")


class Lease(CompareCase):
    FLAGS = ()

    def test_lease_lifecycle(self):
        ids = self.grant(100)
        a, b = self.lease_args(["put", "l/a", "1", "--lease={lease}"], ids)
        self.both(a, srv_args=b)
        a, b = self.lease_args(["put", "l/b", "2", "--lease={lease}"], ids)
        self.both(a, srv_args=b)
        self.both(["get", "l/", "--prefix", "-w", "json"])
        self.both(["get", "l/", "--prefix", "-w", "fields"])
        for fmt in ["simple", "json", "fields"]:
            a, b = self.lease_args(["lease", "timetolive", "{lease}", "-w", fmt],
                                   ids)
            self.both(a, srv_args=b)
            a, b = self.lease_args(["lease", "timetolive", "{lease}", "--keys",
                                    "-w", fmt], ids)
            self.both(a, srv_args=b)
            a, b = self.lease_args(["lease", "keep-alive", "--once", "{lease}",
                                    "-w", fmt], ids)
            self.both(a, srv_args=b)
            self.both(["lease", "list", "-w", fmt])
        ids2 = self.grant(200, "json")
        self.both(["lease", "list"])
        for fmt in ["simple", "json", "fields"]:
            self.both(["lease", "grant", "50", "-w", fmt])
        self.both(["lease", "list", "-w", "json"])
        a, b = self.lease_args(["lease", "revoke", "{lease}"], ids)
        self.both(a, srv_args=b)
        self.both(["get", "l/", "--prefix"])
        a, b = self.lease_args(["lease", "timetolive", "{lease}"], ids)
        self.both(a, srv_args=b)
        a, b = self.lease_args(["lease", "timetolive", "{lease}", "-w", "json"],
                               ids)
        self.both(a, srv_args=b)
        a, b = self.lease_args(["lease", "revoke", "{lease}", "-w", "json"],
                               ids2)
        self.both(a, srv_args=b)

    def test_lease_errors(self):
        self.both(["lease", "revoke", "1234abcd"], expect_rc=1)
        self.both(["lease", "timetolive", "1234abcd"])
        self.both(["lease", "timetolive", "1234abcd", "-w", "json"])
        self.both(["lease", "keep-alive", "--once", "1234abcd"], expect_rc=2)
        self.both(["put", "le/k", "v", "--lease=1234abcd"], expect_rc=1)
        self.both(["lease", "grant", "0"], expect_rc=None)
        self.both(["lease", "grant", "-5"], expect_rc=None)
        self.both(["lease", "grant", "x"], expect_rc=None)
        self.both(["lease", "revoke", "zz"], expect_rc=None)
        self.both(["put", "le/k", "v", "--lease=zz"], expect_rc=None)
        # A lease with a TTL of 9,000,000,001 s is beyond etcd's maximum.
        self.both(["lease", "grant", "9000000001"], expect_rc=None)

    def test_lease_expiry(self):
        ids = self.grant(2)
        a, b = self.lease_args(["put", "lx/k", "v", "--lease={lease}"], ids)
        self.both(a, srv_args=b)
        self.both(["get", "lx/k", "--keys-only"])
        deadline = time.monotonic() + 15
        gone = {}
        while time.monotonic() < deadline and len(gone) < 2:
            for side in (self.ref, self.srv):
                if side.name not in gone:
                    r = side.ctl(["get", "lx/k", "--limit=1", "-w", "json"])
                    if r.ok and not r.json().get("count"):
                        gone[side.name] = time.monotonic()
            time.sleep(0.2)
        self.assertIn("etcd", gone, "reference: leased key did not expire")
        self.assertIn("server", gone, "server: leased key did not expire "
                      "within 15 s of a 2 s lease")
        a, b = self.lease_args(["lease", "timetolive", "{lease}"], ids)
        self.both(a, srv_args=b)


class Compaction(CompareCase):

    def test_compaction(self):
        for i in range(6):
            self.both(["put", "c/k", "v%d" % i])
        revs = self.each(lambda s: s.ctl(["get", "c/k", "-w", "json"])
                         .json()["header"]["revision"])

        def per_side(fmt_args):
            return ([a.format(r=revs[0]) for a in fmt_args],
                    [a.format(r=revs[1]) for a in fmt_args])

        for cmd in (["get", "c/k", "--rev={r}"],
                    ["endpoint", "hashkv", "-w", "json"]):
            a, b = per_side(cmd)
            self.both(a, srv_args=b)
        a, b = ([str(revs[0] - 3)], [str(revs[1] - 3)])
        self.both(["compaction"] + a, srv_args=["compaction"] + b)
        self.both(["compaction"] + a, srv_args=["compaction"] + b, expect_rc=1)
        a, b = ([str(revs[0] - 4)], [str(revs[1] - 4)])
        self.both(["get", "c/k", "--rev=" + a[0]], expect_rc=1,
                  srv_args=["get", "c/k", "--rev=" + b[0]])
        self.both(["get", "c/k", "--rev=" + str(revs[0] - 3)],
                  srv_args=["get", "c/k", "--rev=" + str(revs[1] - 3)])
        self.both(["endpoint", "hashkv", "-w", "json"])
        # --physical waits for the compaction to be applied on disk.
        self.both(["compaction", "--physical", str(revs[0] - 1)],
                  srv_args=["compaction", "--physical", str(revs[1] - 1)])
        # A future revision, and a watch from a compacted revision.
        self.both(["compaction", str(revs[0] + 100)], expect_rc=1,
                  srv_args=["compaction", str(revs[1] + 100)])
        self.both(["compaction", "0"], expect_rc=None)
        self.both(["compaction", "x"], expect_rc=None)
        a = ["watch", "c/k", "--rev=2"]
        ra = self.ref.ctl(a, timeout=5)
        rb = self.srv.ctl(a, timeout=5)
        self.assertEqual(ra.rc, 5, ra.describe())  # canceled by the server
        self.assertSameOutput(a, ra, rb)
        self.both(["get", "c/k", "-w", "json"])


class Maintenance(CompareCase):

    def test_endpoint(self):
        self.both(["put", "m/k", "v"])
        for fmt in ["simple", "json", "fields", "table"]:
            for cmd in (["endpoint", "health"], ["endpoint", "status"],
                        ["endpoint", "hashkv"]):
                self.both(cmd + ["-w", fmt])
                self.both(cmd + ["--cluster", "-w", fmt])
        self.both(["endpoint", "hashkv", "--rev=2", "-w", "json"])
        self.both(["endpoint", "status", "-w", "protobuf"], expect_rc=None)

    def test_member_list(self):
        for fmt in FORMATS:
            self.both(["member", "list", "-w", fmt])

    def test_snapshot_save(self):
        paths = [os.path.join(s.cluster.dir, "snap.db")
                 for s in (self.ref, self.srv)]
        self.both(["snapshot", "save", "<p>"],
                  ref_args=["snapshot", "save", paths[0]],
                  srv_args=["snapshot", "save", paths[1]])
        self.assertTrue(os.path.getsize(paths[0]) > 0, paths[0])
        # Several endpoints: refused by etcdctl before talking to a server.
        self.both(["snapshot", "save", "/nonexistent/dir/x.db"], expect_rc=None)

    @unittest.skip("known difference: detcd's snapshot file holds its own "
                   "image, not a bolt db, and etcdctl 3.4's snapshot status "
                   "opens bolt; detcdctl's snapshot status reads ours")
    def test_snapshot_status(self):
        """The saved snapshot is a bolt db etcdctl can read (etcdctl's
        snapshot status opens it with bbolt)."""
        paths = [os.path.join(s.cluster.dir, "snap2.db")
                 for s in (self.ref, self.srv)]
        self.both(["snapshot", "save", "<p>"],
                  ref_args=["snapshot", "save", paths[0]],
                  srv_args=["snapshot", "save", paths[1]])
        for fmt in ["simple", "json", "table"]:
            self.both(["snapshot", "status", "<p>", "-w", fmt],
                      ref_args=["snapshot", "status", paths[0], "-w", fmt],
                      srv_args=["snapshot", "status", paths[1], "-w", fmt])

    def test_defrag(self):
        self.both(["defrag"])
        self.both(["defrag", "--cluster"])
        self.both(["get", "m/k"])

    def test_alarm_empty(self):
        for fmt in ["simple", "json", "fields", "protobuf"]:
            # etcd sends alarm responses without a header: etcdctl's fields
            # printer crashes on them (rc 2), which a server must match.
            rc = 2 if fmt == "fields" else 0
            self.both(["alarm", "list", "-w", fmt], expect_rc=rc)
            self.both(["alarm", "disarm", "-w", fmt], expect_rc=rc)

    def test_version_and_health_http(self):
        """etcdctl's own version (no server) and the HTTP /health and
        /version endpoints on the client URL."""
        import urllib.request
        for side in (self.ref, self.srv):
            m = side.cluster.members[0]
            with urllib.request.urlopen(m.client_url + "/health", timeout=5) as f:
                body = json.loads(f.read())
            self.assertEqual(body.get("health"), "true", side.name)
            with urllib.request.urlopen(m.client_url + "/version",
                                        timeout=5) as f:
                body = json.loads(f.read())
            self.assertIn("etcdserver", body, side.name)
            self.assertIn("etcdcluster", body, side.name)


class Alarm(CompareCase):
    """NOSPACE: a small --quota-backend-bytes fills up; the alarm is listed,
    writes fail with etcd's text, and compact + defrag + disarm recover."""

    FLAGS = ("--quota-backend-bytes=300000",)
    REVISIONS_COMPARABLE = False  # how many puts fit differs by design

    def test_nospace(self):
        value = "x" * 20000
        results = {}
        for side in (self.ref, self.srv):
            last = None
            for i in range(60):
                last = side.ctl(["put", "q/%03d" % i, value])
                if not last.ok:
                    break
            results[side.name] = last
        ra, rb = results["etcd"], results["server"]
        self.assertNotEqual(ra.rc, 0, "reference never hit the quota")
        self.assertSameOutput(["put", "q/k", "v"], ra, rb)
        self.both(["put", "q/other", "v"], expect_rc=1)
        for fmt in ["simple", "json", "fields", "protobuf"]:
            self.both(["alarm", "list", "-w", fmt],
                      expect_rc=2 if fmt == "fields" else 0)
        self.both(["get", "q/", "--prefix", "--limit=1", "-w", "json"],
                  compare=False)
        self.both(["del", "q/", "--prefix"], compare=False)
        revs = self.each(lambda s: s.ctl(["get", "q", "-w", "json"])
                         .json()["header"]["revision"])
        self.both(["compaction", "--physical", str(revs[0])],
                  srv_args=["compaction", "--physical", str(revs[1])])
        self.both(["defrag"])
        self.both(["alarm", "disarm"])
        self.both(["alarm", "list"])
        self.both(["put", "q/after", "ok"])
        self.both(["get", "q/after"])


class Limits(CompareCase):
    """Request limits with etcd's defaults (128 ops, 1.5 MiB)."""

    def test_txn_ops_limit(self):
        ok = "\n" + "".join("put lim/%d v\n" % i for i in range(128)) + "\n\n"
        over = "\n" + "".join("put lim/%d v\n" % i for i in range(129)) + "\n\n"
        self.both(["txn"], stdin=ok)
        self.both(["get", "lim/", "--prefix", "--limit=1", "-w", "json"])
        self.both(["txn"], stdin=over, expect_rc=1)
        self.both(["txn"], stdin="\n\n" + "".join(
            "put lim/e%d v\n" % i for i in range(129)) + "\n", expect_rc=1)
        self.both(["txn"], stdin="".join(
            'value("lim/%d") = "v"\n' % i for i in range(129)) + "\n\n\n",
            expect_rc=1)
        self.both(["get", "lim/", "--prefix", "--limit=1", "-w", "json"])

    def test_request_too_large(self):
        self.both(["put", "big/ok"], stdin="v" * (1024 * 1024))
        self.both(["put", "big/k"], stdin="v" * (1536 * 1024 + 100),
                  expect_rc=1)
        # Beyond gRPC's receive limit (max-request-bytes + 512 KiB).
        self.both(["put", "big/k"], stdin="v" * (3 * 1024 * 1024),
                  expect_rc=1)
        self.both(["get", "big/", "--prefix", "--keys-only"])

    def test_bad_keys(self):
        self.both(["put", "", "v"], expect_rc=1)
        self.both(["get", ""], expect_rc=None)
        self.both(["del", ""], expect_rc=None)
        self.both(["get", "x", "--rev=-1"], expect_rc=None)
        self.both(["get", "x", "--rev=99999999"], expect_rc=1)
        self.both(["get", "x", "--limit=-1"], expect_rc=None)
        self.both(["watch", "x", "--rev=-1"], expect_rc=None, timeout=3)


class SmallLimits(CompareCase):
    """--max-txn-ops and --max-request-bytes are honoured."""

    FLAGS = ("--max-txn-ops=4", "--max-request-bytes=10000")

    def test_small_limits(self):
        self.both(["txn"], stdin="\n" + "".join(
            "put s/%d v\n" % i for i in range(4)) + "\n\n")
        self.both(["txn"], stdin="\n" + "".join(
            "put s/%d v\n" % i for i in range(5)) + "\n\n", expect_rc=1)
        self.both(["put", "s/big"], stdin="v" * 9000)
        self.both(["put", "s/big"], stdin="v" * 11000, expect_rc=1)
        self.both(["get", "s/", "--prefix", "--keys-only"])


class Tour(CompareCase):
    """etcd's "interacting with etcd" walk-through, in order."""

    def test_tour(self):
        b = self.both
        b(["put", "foo", "bar"])
        b(["put", "foo1", "bar1"])
        b(["put", "foo2", "bar2"])
        b(["put", "foo3", "bar3"])
        b(["get", "foo"])
        b(["get", "foo", "--hex"])
        b(["get", "foo", "--print-value-only"])
        b(["get", "foo", "foo3"])
        b(["get", "--prefix", "foo"])
        b(["get", "--prefix", "--limit=2", "foo"])
        b(["get", "foo", "-w", "fields"])
        # revisions
        b(["put", "foo", "bar_new"])
        b(["put", "foo1", "bar1_new"])
        revs = self.each(lambda s: s.ctl(["get", "foo", "-w", "json"])
                         .json()["header"]["revision"])
        for back in range(0, 8):
            b(["get", "--prefix", "foo", "--rev=%d" % (revs[0] - back)],
              srv_args=["get", "--prefix", "foo", "--rev=%d" % (revs[1] - back)],
              expect_rc=None)
        # keys >= a key
        b(["put", "a", "123"])
        b(["put", "b", "456"])
        b(["put", "z", "789"])
        b(["get", "--from-key", "b"])
        b(["get", "--from-key", "a"])
        # deletes
        b(["del", "foo"])
        b(["del", "foo", "foo9"])
        b(["put", "zoo", "val"])
        b(["put", "zoo1", "val1"])
        b(["put", "zoo2", "val2"])
        b(["del", "--prev-kv", "zoo"])
        b(["del", "--prefix", "zoo"])
        b(["del", "--from-key", "b"])
        b(["get", "--from-key", ""])
        # watch: live, range, prefix, interactive
        self.watch_both(["foo"], [["put", "foo", "bar"]], sync_key="foo",
                        end_key="foo")
        self.watch_both(["foo", "foo9"], [["put", "foo1", "bar1"]],
                        sync_key="foo5", end_key="foo8")
        self.watch_both(["--prefix", "foo"], [["put", "foo2", "bar2"]],
                        sync_key="fooS", end_key="fooE")
        self.watch_both(["-i"], [["put", "foo", "bar1"], ["put", "zoo", "z"]],
                        stdin_lines=["watch foo", "watch zoo"],
                        sync_key=["foo", "zoo"], end_key="zoo")
        # historical watch
        b(["put", "foo", "bar"])
        b(["put", "foo", "bar_new"])
        revs = self.each(lambda s: s.ctl(["get", "foo", "-w", "json"])
                         .json()["header"]["revision"])
        for side, rev in zip((self.ref, self.srv), revs):
            side.hist = side.cluster.background(
                ["watch", "--rev=%d" % (rev - 1), "foo"])
        outs = []
        for side in (self.ref, self.srv):
            side.hist.wait_for(lambda o: o.count(b"bar_new") >= 1, 10)
            side.hist.wait_quiet()
            r = side.hist.stop()
            r.rc = 0
            outs.append(r)
        self.assertSameOutput(["watch", "foo"], outs[0], outs[1])
        for side, rev in zip((self.ref, self.srv), revs):
            side.hist = side.cluster.background(
                ["watch", "--prev-kv", "--rev=%d" % rev, "foo"])
        outs = []
        for side in (self.ref, self.srv):
            side.hist.wait_for(lambda o: o.count(b"bar_new") >= 1, 10)
            side.hist.wait_quiet()
            r = side.hist.stop()
            r.rc = 0
            outs.append(r)
        self.assertSameOutput(["watch", "foo"], outs[0], outs[1])
        # compaction
        b(["compaction", str(revs[0] - 1)],
          srv_args=["compaction", str(revs[1] - 1)])
        b(["get", "--rev=%d" % (revs[0] - 2), "foo"], expect_rc=1,
          srv_args=["get", "--rev=%d" % (revs[1] - 2), "foo"])
        # leases
        ids = self.grant(60)
        a, s = self.lease_args(["put", "--lease={lease}", "foo", "bar"], ids)
        b(a, srv_args=s)
        a, s = self.lease_args(["lease", "timetolive", "{lease}"], ids)
        b(a, srv_args=s)
        a, s = self.lease_args(["lease", "timetolive", "--keys", "{lease}"], ids)
        b(a, srv_args=s)
        a, s = self.lease_args(["lease", "keep-alive", "--once", "{lease}"], ids)
        b(a, srv_args=s)
        # keep-alive without --once renews until killed
        kas = []
        for side, lid in zip((self.ref, self.srv), ids):
            kas.append(side.cluster.background(["lease", "keep-alive",
                                                "%x" % lid]))
        outs = []
        for side, ka in zip((self.ref, self.srv), kas):
            ok = ka.wait_for(lambda o: o.count(b"keepalived") >= 1, 10)
            r = ka.stop()
            self.assertTrue(ok, "%s: keep-alive printed nothing:\n%s" % (
                side.name, r.describe()))
            outs.append(r)
        first = [r.out.splitlines()[0] for r in outs]
        self.assertSameText("first keep-alive line",
                            self.ref.ident.text(first[0]),
                            self.srv.ident.text(first[1]))
        a, s = self.lease_args(["lease", "revoke", "{lease}"], ids)
        b(a, srv_args=s)
        b(["get", "foo"])


class MoveLeader(CompareCase):
    """Three members per side: member list, cluster-wide endpoint commands,
    move-leader."""

    SIZE = 3

    def _leader_to(self, side, name, timeout=15):
        """Moves leadership on side to member `name` (not compared)."""
        deadline = time.monotonic() + timeout
        target = side.member(name)
        ids = side.cluster.member_ids()
        while time.monotonic() < deadline:
            leader = side.cluster.leader()
            if leader is target:
                return
            side.ctl(["move-leader", "%x" % ids[name]],
                     members=[leader])
            time.sleep(0.1)
        self.fail("%s: could not move leadership to %s" % (side.name, name))

    def test_three_members(self):
        for side in (self.ref, self.srv):
            self._leader_to(side, "m0")
        for fmt in ["simple", "json", "fields", "table"]:
            self.both(["member", "list", "-w", fmt])
            self.both(["endpoint", "status", "--cluster", "-w", fmt])
            self.both(["endpoint", "health", "--cluster", "-w", fmt])
        self.both(["put", "ml/k", "v"])
        for side in (self.ref, self.srv):
            # hashkv needs every member to have applied the put
            side.cluster.wait_healthy()
        self.both(["endpoint", "hashkv", "--cluster", "-w", "json"])

    def test_move_leader(self):
        for side in (self.ref, self.srv):
            self._leader_to(side, "m0")
        ids = [s.cluster.member_ids() for s in (self.ref, self.srv)]
        m0 = [s.member("m0") for s in (self.ref, self.srv)]
        m1 = [s.member("m1") for s in (self.ref, self.srv)]
        m2 = [s.member("m2") for s in (self.ref, self.srv)]
        # Only followers given: etcdctl finds no leader among them.
        ra, rb = [s.ctl(["move-leader", "%x" % i["m1"]], members=[f])
                  for s, i, f in zip((self.ref, self.srv), ids, m2)]
        self.assertSameOutput(["move-leader", "x"], ra, rb)
        # To m1 through all endpoints.
        a, b = [["move-leader", "%x" % i["m1"]] for i in ids]
        self.both(a, srv_args=b, all_members=True)
        for side in (self.ref, self.srv):
            self.assertEqual(side.cluster.leader().name, "m1", side.name)
        self.both(["endpoint", "status", "--cluster", "-w", "json"],
                  compare=False)
        # To an unknown member ID, and to the current leader.
        self.both(["move-leader", "1234"], expect_rc=1, all_members=True)
        a, b = [["move-leader", "%x" % i["m1"]] for i in ids]
        self.both(a, srv_args=b, expect_rc=None, all_members=True)
        self.both(["move-leader", "zz"], expect_rc=None, all_members=True)
        del m0, m1


if __name__ == "__main__":
    cluster.main()
