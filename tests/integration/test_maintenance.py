"""Compaction, database size, defragmentation and corruption checks on real
detcd processes, driven by Debian's etcdctl 3.4 (issue 11, part 6).

  AutoCompactionTest  --auto-compaction-mode revision (the 5-minute check
      shortened by the test-only DETCD_TEST_AUTO_COMPACTION_REVISION_INTERVAL:
      etcd has no flag for it) and periodic (--auto-compaction-retention 2s)
      on 3 members: old revisions become "required revision has been
      compacted", only the leader logs etcd's compaction lines; capnslog's
      "Starting auto-compaction at revision ..." lines; a bad retention is
      refused with etcd's words (compared with a real etcd 3.4).
  DefragTest  Status's dbSize / dbSizeInUse before, after compaction and
      after `etcdctl defrag` (printed, with the members' bytes on disk)
      under --quota-backend-bytes: NOSPACE, then compaction + defrag +
      disarm let writes in again; `detcdctl defrag --data-dir` on a stopped
      member (quiet, as etcdctl 3.4), refused on a running member's dir; the
      member restarts with every key and revision, HashKV equal everywhere.
  CorruptCheckTest  a stopped member's snapshot edited offline
      (detcd-it-tamper: one value changed, checksums recomputed) ->
      --experimental-initial-corrupt-check refuses to start it ("found data
      inconsistency with peers"); started without it, the leader's periodic
      check (--experimental-corrupt-check-time 1s) raises CORRUPT: alarm
      list shows it, writes fail with "etcdserver: corrupt cluster", reads
      still work.

Run alone:
  python3 tests/integration/test_maintenance.py --server build/detcd \\
      --detcdctl build/detcdctl --tamper build/tests/integration/detcd-it-tamper
"""

import json
import os
import random
import string
import subprocess
import sys
import time
import unittest

import cluster as it
import test_detcdctl_lib as lib

TAMPER = os.environ.get("DETCD_TAMPER", "")
REVISION_INTERVAL_VAR = "DETCD_TEST_AUTO_COMPACTION_REVISION_INTERVAL"
COMPACTED = "etcdserver: mvcc: required revision has been compacted"


def parse_tamper_arg():
    global TAMPER
    argv = []
    args = iter(sys.argv)
    for a in args:
        if a == "--tamper":
            TAMPER = next(args)
        elif a.startswith("--tamper="):
            TAMPER = a.split("=", 1)[1]
        else:
            argv.append(a)
    sys.argv = argv


def tamper_binary():
    if TAMPER:
        return os.path.abspath(TAMPER)
    return os.path.join(os.path.dirname(it.CONFIG["server"]), "tests",
                        "integration", "detcd-it-tamper")


def run(argv, timeout=60.0):
    start = time.monotonic()
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=it.etcdctl_env(),
                       timeout=timeout)
    return it.Result(argv, p.returncode, p.stdout, p.stderr,
                     time.monotonic() - start)


def dir_bytes(path):
    n = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                n += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return n


def wait_until(what, predicate, timeout=20.0, step=0.2):
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0fs waiting for %s" %
                                 (timeout, what))
        time.sleep(step)


def log_records(member):
    """The member's zap lines, parsed."""
    out = []
    for line in member.log_text().splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def rand_value(rng, n=1024):
    return "".join(rng.choice(string.ascii_letters + string.digits)
                   for _ in range(n))


def load_txns(c, rng, txns, keys=50, prefix="k", members=None):
    """`txns` transactions of `keys` 1 KiB puts each (one revision each).
    Returns the last etcdctl Result (stops at the first failure)."""
    r = None
    for _ in range(txns):
        ops = "".join("put %s%03d %s\n" % (prefix, k, rand_value(rng))
                      for k in range(keys))
        r = c.etcdctl(["txn"], stdin="\n" + ops + "\n\n", members=members)
        if not r.ok:
            return r
    return r


def revision(c, members=None):
    return int(c.ctl_ok(["get", "nothing", "-w", "json"],
                        members=members).json()["header"]["revision"])


class AutoCompactionTest(it.ClusterTestCase):

    def test_revision_mode_keeps_the_last_n_revisions(self):
        os.environ[REVISION_INTERVAL_VAR] = "1s"
        self.addCleanup(os.environ.pop, REVISION_INTERVAL_VAR, None)
        c = self.new_cluster(it.CONFIG["server"], size=3, extra_flags=[
            "--auto-compaction-mode", "revision",
            "--auto-compaction-retention", "10"])
        for i in range(30):
            c.ctl_ok(["put", "key", "v%d" % i])
        head = revision(c)
        leader = c.leader()

        def compacted_at():
            recs = [r for r in log_records(leader)
                    if r.get("msg") == "completed auto revision compaction"]
            return recs and recs[-1]["revision"]
        rev = wait_until("a revision compaction at head - 10",
                         lambda: compacted_at() == head - 10 and head - 10)
        sys.stderr.write("\n  revision mode: head %d, compacted at %d\n" %
                         (head, rev))
        old = c.etcdctl(["get", "key", "--rev", str(rev - 1)])
        self.assertNotEqual(old.rc, 0)
        self.assertIn(COMPACTED, old.err)
        kept = c.ctl_ok(["get", "key", "--rev", str(rev), "--print-value-only"])
        self.assertEqual(kept.out.strip(), "v%d" % (rev - 2))
        start = [r for r in log_records(leader)
                 if r.get("msg") == "starting auto revision compaction"]
        self.assertEqual(start[-1]["revision-compaction-retention"], 10)
        for m in c.members:
            if m is leader:
                continue
            self.assertFalse(
                [r for r in log_records(m) if "auto revision compaction" in
                 r.get("msg", "")], "a follower compacted: %s" % m.name)

    def test_periodic_mode_compacts_what_is_older_than_the_retention(self):
        c = self.new_cluster(it.CONFIG["server"], size=3, extra_flags=[
            "--auto-compaction-retention", "2s"])
        first = revision(c)
        deadline = time.monotonic() + 5.0
        i = 0
        while time.monotonic() < deadline:
            c.ctl_ok(["put", "p", str(i)])
            i += 1
            time.sleep(0.1)
        # What was written in the last 2 s is still there (compactions keep
        # running: this has to be read before they pass it).
        head = revision(c)
        self.assertTrue(c.ctl_ok(["get", "p", "--rev", str(head - 1)]).out)
        leader = c.leader()
        recs = wait_until("a periodic compaction", lambda: [
            r for r in log_records(leader)
            if r.get("msg") == "completed auto periodic compaction"])
        self.assertEqual(recs[-1]["compact-period"], "2s")
        rev = recs[-1]["revision"]
        sys.stderr.write("\n  periodic mode: %d puts, revisions %d..%d, "
                         "last compaction at %d\n" % (i, first, head, rev))
        self.assertGreater(rev, first)
        old = c.etcdctl(["get", "p", "--rev", str(rev - 1)])
        self.assertIn(COMPACTED, old.err)

    def test_capnslog_lines_and_bad_retention(self):
        c = self.new_cluster(it.CONFIG["server"], size=1, extra_flags=[
            "--auto-compaction-retention", "1s", "--logger", "capnslog"])
        c.ctl_ok(["put", "a", "1"])
        m = c.members[0]
        wait_until("capnslog compaction lines", lambda: (
            "Starting auto-compaction at revision " in m.log_text() and
            "Finished auto-compaction at revision " in m.log_text()))
        self.assertIn("(retention: 1s)", m.log_text())
        # etcd's words for a retention it cannot parse, on both servers.
        want = 'error parsing CompactionRetention: time: invalid duration ' \
               '"abc"'
        for binary in (it.CONFIG["server"], it.CONFIG["reference"]):
            bad = self.new_cluster(binary, start=False, size=1, extra_flags=[
                "--auto-compaction-retention", "abc"])
            bad.members[0].start()
            rc = bad.members[0].proc.wait(30)
            self.assertNotEqual(rc, 0)
            text = bad.members[0].log_text()
            self.assertTrue(want in text or want.replace('"', '\\"') in text,
                            "%s: %s" % (binary, text))
            self.assertFalse(os.path.exists(bad.members[0].data_dir))


class DefragTest(it.ClusterTestCase):

    def figures(self, c, what, rows):
        for s in c.status():
            st = s["Status"]
            name = [m.name for m in c.members if m.endpoint == s["Endpoint"]]
            m = [m for m in c.members if m.endpoint == s["Endpoint"]][0]
            rows.append((what, name[0], int(st["dbSize"]),
                         int(st.get("dbSizeInUse", 0)),
                         dir_bytes(os.path.join(m.data_dir, "member"))))

    def print_figures(self, title, rows):
        sys.stderr.write("\n  %s\n  %-22s %-6s %10s %14s %12s\n" % (
            title, "", "member", "dbSize", "dbSizeInUse", "disk bytes"))
        for r in rows:
            sys.stderr.write("  %-22s %-6s %10d %14d %12d\n" % r)

    def test_compaction_and_defrag_return_space_under_the_quota(self):
        quota = 600 * 1024
        c = self.new_cluster(it.CONFIG["server"], size=3, extra_flags=[
            "--quota-backend-bytes", str(quota), "--snapshot-count", "5"])
        rng = random.Random(11)
        r = load_txns(c, rng, 20, members=c.members[:1])
        self.assertFalse(r.ok, "the quota never refused a write")
        self.assertIn("etcdserver: mvcc: database space exceeded", r.err)
        alarms = c.ctl_ok(["alarm", "list"]).out
        self.assertIn("alarm:NOSPACE", alarms)
        rows = []
        self.figures(c, "before", rows)
        c.ctl_ok(["compact", str(revision(c))])
        time.sleep(0.3)
        self.figures(c, "after compaction", rows)
        # Compacted but not defragmented: the quota still sees the file.
        self.assertFalse(c.etcdctl(["put", "x", "y"]).ok)
        d = c.ctl_ok(["defrag"])
        self.assertEqual(d.out.count("Finished defragmenting etcd member["),
                         3, d.out)
        self.figures(c, "after defrag", rows)
        self.print_figures("db size, quota %d" % quota, rows)
        for name in ("m0", "m1", "m2"):
            before, compacted, defragged = [r for r in rows if r[1] == name]
            self.assertGreaterEqual(before[2], quota * 0.9)
            self.assertLess(compacted[3], before[3] / 5)   # in use falls
            self.assertEqual(compacted[2], before[2])      # the file stays
            self.assertLess(defragged[2], before[2] / 5)   # defrag gives back
            self.assertEqual(defragged[2], defragged[3])
            self.assertLess(defragged[4], before[4])       # and on disk
        c.ctl_ok(["alarm", "disarm"])
        c.ctl_ok(["put", "x", "y"])
        self.assertEqual(c.ctl_ok(["alarm", "list"]).out, "")

    def test_offline_defrag_of_a_stopped_member(self):
        c = self.new_cluster(it.CONFIG["server"], size=3)
        rng = random.Random(12)
        self.assertTrue(load_txns(c, rng, 8).ok)
        for i in range(20):
            c.ctl_ok(["put", "single%d" % i, rand_value(rng, 200)])
        compact_at = revision(c) - 5
        c.ctl_ok(["compact", str(compact_at)])
        for i in range(5):
            c.ctl_ok(["put", "after%d" % i, str(i)])
        head = revision(c)
        m0, m2 = c.members[0], c.members[2]
        detcdctl = lib.detcdctl_binary()
        # A running member's dir is refused at once (etcdctl 3.4 would wait
        # for the lock).
        busy = run([detcdctl, "defrag", "--data-dir", m0.data_dir])
        self.assertEqual(busy.rc, 1)
        self.assertTrue(busy.err.startswith(
            "Failed to defragment etcd data[%s] (cannot lock data dir" %
            m0.data_dir), busy.describe())
        self.assertIn("omit --data-dir", busy.err)
        m2.terminate()
        before = dir_bytes(os.path.join(m2.data_dir, "member"))
        r = run([detcdctl, "defrag", "--data-dir", m2.data_dir])
        self.assertEqual((r.rc, r.out, r.err), (0, "", ""), r.describe())
        after = dir_bytes(os.path.join(m2.data_dir, "member"))
        sys.stderr.write("\n  offline defrag of %s: %d -> %d bytes on disk "
                         "(wal + snap)\n" % (m2.name, before, after))
        self.assertLess(after, before / 2)
        # Again: nothing left to give back, and still quiet.
        again = run([detcdctl, "defrag", "--data-dir", m2.data_dir])
        self.assertEqual((again.rc, again.out, again.err), (0, "", ""))
        missing = run([detcdctl, "defrag", "--data-dir",
                       os.path.join(c.dir, "nope")])
        self.assertEqual(missing.rc, 1)
        self.assertIn("no detcd member data in", missing.err)
        m2.start()
        c.wait_healthy()
        dump = ["get", "", "--from-key", "-w", "json", "--consistency", "s"]
        want = c.ctl_ok(dump, members=[m0]).json()
        got = c.ctl_ok(dump, members=[m2]).json()
        self.assertEqual(got["header"]["revision"], head)
        self.assertEqual(got["kvs"], want["kvs"])
        self.assertEqual(got["count"], want["count"])
        # History since the compaction, and the compaction itself.
        at = c.ctl_ok(["get", "single14", "--rev", str(compact_at), "-w",
                       "json", "--consistency", "s"], members=[m2]).json()
        self.assertEqual(len(at["kvs"]), 1)
        old = c.etcdctl(["get", "single0", "--rev", str(compact_at - 1),
                         "--consistency", "s"], members=[m2])
        self.assertIn(COMPACTED, old.err)
        hashes = c.ctl_ok(["endpoint", "hashkv", "-w", "json"]).json()
        self.assertEqual(len({h["HashKV"]["hash"] for h in hashes}), 1,
                         hashes)
        c.ctl_ok(["put", "later", "1"])
        wait_until("m2 to apply a later write", lambda: c.etcdctl(
            ["get", "later", "--consistency", "s", "--print-value-only"],
            members=[m2]).out.strip() == "1")


class WalReleaseTest(it.ClusterTestCase):

    def test_stop_right_after_a_snapshot_leaves_no_released_wal(self):
        """A snapshot (here defrag's) releases the WAL segments behind it,
        which the real disk unlinks on a thread of its own; a member
        stopped at once still removes them before its process ends by the
        signal (the next start would read them again)."""
        c = self.new_cluster(it.CONFIG["server"], size=1)
        value = "v" * (1 << 20)
        # About 150 MiB of log: the first two 64 MiB segments fill up.
        for i in range(150):
            r = c.etcdctl(["put", "k%d" % (i % 5)], stdin=value)
            self.assertTrue(r.ok, r.describe())
        m = c.members[0]
        waldir = os.path.join(m.data_dir, "member", "wal")
        wals = lambda: sorted(n for n in os.listdir(waldir)
                              if n.endswith(".wal"))
        self.assertGreaterEqual(len(wals()), 3, wals())
        c.ctl_ok(["defrag"])
        m.terminate()
        self.assertEqual(len(wals()), 1, wals())

class CorruptCheckTest(it.ClusterTestCase):

    def test_a_member_whose_data_differs_raises_corrupt(self):
        tamper = tamper_binary()
        if not os.access(tamper, os.X_OK):
            self.skipTest("detcd-it-tamper not built (--tamper)")
        flags = ["--experimental-corrupt-check-time", "1s"]
        c = self.new_cluster(it.CONFIG["server"], size=3, extra_flags=flags)
        for i in range(10):
            c.ctl_ok(["put", "key%d" % i, "value%d" % i])
        compact_at = revision(c) - 3
        c.ctl_ok(["compact", str(compact_at)])
        m0, m1, m2 = c.members
        # m2 must have applied the compaction before it stops: a member
        # that never learnt the compaction's commit restarts with another
        # compact revision, and etcd's checks skip such a peer ("found
        # different compact revision values"), so nothing would be found.
        wait_until("m2 to apply the compaction", lambda: COMPACTED in c.etcdctl(
            ["get", "key0", "--rev", str(compact_at - 1),
             "--consistency", "s"], members=[m2]).err)
        leader = c.leader()
        if leader is m2:
            ids = c.member_ids()
            c.ctl_ok(["move-leader", "%x" % ids["m0"]], members=[m2])
        m2.terminate()
        r = run([lib.detcdctl_binary(), "defrag", "--data-dir", m2.data_dir])
        self.assertEqual(r.rc, 0, r.describe())
        t = run([tamper, m2.data_dir, "key9", "VALUE9"])
        self.assertEqual(t.rc, 0, t.describe())

        # With the initial check, the member refuses to serve.
        c.extra_flags = flags + ["--experimental-initial-corrupt-check"]
        m2.start()
        c.extra_flags = flags
        rc = m2.proc.wait(30)
        self.assertNotEqual(rc, 0)
        text = m2.log_text()
        self.assertIn("starting initial corruption check", text)
        self.assertIn("found different hash values from remote peer", text)
        self.assertIn("found data inconsistency with peers", text)
        self.assertNotIn("ready to serve client requests",
                         text.split("===== start #2")[-1])

        # Without it, the leader's periodic check finds the difference.
        m2.start()
        c.wait_healthy(members=[m2])
        alarms = wait_until("the CORRUPT alarm", lambda: (
            lambda out: "alarm:CORRUPT" in out and out)(
                c.etcdctl(["alarm", "list"], members=[m0]).out), timeout=30)
        # Member 0, as etcd 3.4.23 raises it (Go's text leaves out zeros).
        self.assertEqual(alarms, "alarm:CORRUPT \n")
        leader = c.leader()
        msgs = [r.get("msg") for r in log_records(leader)]
        self.assertIn("same compact revision then hashes must match", msgs)
        self.assertIn("alarm raised", msgs)
        sys.stderr.write("\n  CORRUPT raised by %s's check; %s\n" % (
            leader.name, [r for r in log_records(leader)
                          if r.get("msg") == "same compact revision then "
                          "hashes must match"][0]))
        # The cluster refuses writes; reads still work.
        put = c.etcdctl(["put", "key0", "new"], members=[m0])
        self.assertNotEqual(put.rc, 0)
        self.assertIn("etcdserver: corrupt cluster", put.err)
        get = c.ctl_ok(["get", "key0", "--print-value-only"], members=[m1])
        self.assertEqual(get.out.strip(), "value0")
        st = c.status(members=[m1])[0]["Status"]
        self.assertIn("alarm:CORRUPT ", st.get("errors", []))


class DeltaSnapshotTest(it.ClusterTestCase):

    def test_restart_reads_the_chain_of_delta_snapshots(self):
        """Automatic snapshots after a whole one are deltas (".delta": what
        changed since the newest file); a member killed and started again
        restores the whole image, applies the deltas on it, then the WAL
        after them, and serves every key it had. A compaction makes the
        next snapshot whole."""
        c = self.new_cluster(it.CONFIG["server"], size=1,
                             extra_flags=["--snapshot-count", "5"])
        m = c.members[0]
        snapdir = os.path.join(m.data_dir, "member", "snap")
        files = lambda: sorted(n for n in os.listdir(snapdir)
                               if n.endswith(".snap") or
                               n.endswith(".delta"))
        rng = random.Random(13)
        want = {}

        def load(txns):
            for _ in range(txns):
                ops = ""
                for key in ("k%03d" % k for k in rng.sample(range(80), 20)):
                    want[key] = rand_value(rng, 200)
                    ops += "put %s %s\n" % (key, want[key])
                c.ctl_ok(["txn"], stdin="\n" + ops + "\n\n")

        def check():
            got = c.ctl_ok(["get", "k", "--prefix"]).out.split("\n")
            pairs = dict(zip(got[0:-1:2], got[1::2]))
            self.assertEqual(pairs, want)

        def restart():
            rev = revision(c)
            m.restart(hard=True)
            c.wait_healthy()
            self.assertEqual(revision(c), rev)
            check()

        load(40)
        deltas = [n for n in files() if n.endswith(".delta")]
        self.assertGreaterEqual(len(deltas), 3, files())
        self.assertTrue(files()[-1].endswith(".delta"), files())
        restart()
        load(12)
        restart()
        # A compaction: the first file after it is whole.
        before = files()[-1]
        c.ctl_ok(["compact", str(revision(c) - 30)])
        load(12)
        after = [n for n in files() if n > before]
        self.assertTrue(after and after[0].endswith(".snap"), files())
        restart()
        sys.stderr.write("\n  snapshot files at the end: %s\n" % files())


if __name__ == "__main__":
    lib.parse_detcdctl_arg()
    parse_tamper_arg()
    it.main()
