"""Disaster recovery: `snapshot save` from a loaded cluster, `snapshot
restore` into a NEW cluster, one restore per member as etcd's docs do, then
every key, revision and lease must be there (issue 11, part 5).

  (a) a 3-member detcd cluster (history, overwrites, deletes, a recreated
      key, leases with and without keys, a revoked lease, txns, a
      compaction) saved with detcdctl (etcdctl's save gives the same
      bytes), restored with detcdctl into 3 new detcd members: at every
      revision from the compaction to the head, the same keys with the same
      create / mod revisions, versions, values and leases; the same leases
      with their TTLs and keys; HashKV equal on every member and to the
      source's; etcd's member and cluster ids for the new --initial-cluster;
      the restored cluster takes writes and keep-alives.
  (b) the same workload on a real etcd 3.4, its snapshot.db restored into
      3 detcd members with detcdctl, compared key by key against the real
      etcd's answers (and against a real etcd restored by etcdctl 3.4).
  (a2) the detcd snapshot (etcd's backend db, as etcd's Snapshot stream
      sends) restored by etcdctl 3.4 into a real etcd: the same keys,
      history and leases.
  (c) corrupted, truncated and padded files, of both kinds, refused with
      etcdctl's messages and exit 1; the data dir is left absent.
  (d) etcdctl 3.4's answers where the formats are the same: missing file,
      existing data dir, bad hash, missing hash, a file too short, a name
      not in --initial-cluster, a bad peer URL, no argument; and its
      "restoring snapshot" log line.
  (f) etcdctl 3.4's restore of either file, started with detcd (etcd's
      runbook, detcd as the server): the same state as (a) / (b); a data
      dir that etcd has run on is refused.
  (e) auth is carried over: a detcd member and a real etcd 3.4 with auth
      enabled (root, and alice whose role may read and write the prefix
      foo/) saved, restored with detcdctl into new detcd clusters (and
      each file with etcdctl 3.4 into a new etcd): auth is still on, root
      still admin, alice still limited to her prefix and checked against
      her password; every cluster answers the same script alike.

Run alone:
  python3 tests/integration/test_snapshot_restore.py --server build/detcd \\
      --detcdctl build/detcdctl
"""

import base64
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest

import cluster as it
import test_detcdctl_lib as lib


def member_id(peer_urls, token):
    b = "".join(sorted(peer_urls)) + token
    return int.from_bytes(hashlib.sha1(b.encode()).digest()[:8], "big")


def cluster_id(ids):
    b = b"".join(i.to_bytes(8, "big") for i in sorted(ids))
    return int.from_bytes(hashlib.sha1(b).digest()[:8], "big")


def run(argv, timeout=60.0, cwd=None):
    """Runs a command (no endpoints added); never raises on failure."""
    start = time.monotonic()
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, env=it.etcdctl_env(),
                       timeout=timeout, cwd=cwd)
    return it.Result(argv, p.returncode, p.stdout, p.stderr,
                     time.monotonic() - start)


def detcdctl():
    return lib.detcdctl_binary()


def error_lines(r):
    """stderr without the zap log lines (JSON objects)."""
    return [l for l in r.err.splitlines() if not l.startswith("{")]


def log_lines(r):
    out = []
    for l in r.err.splitlines():
        if l.startswith("{"):
            d = json.loads(l)
            d.pop("ts", None)
            out.append(d)
    return out


# ---------------------------------------------------------------- workload

def load(c):
    """History, overwrites, deletes, a recreated key, leases with and
    without keys, a revoked lease, txns and a compaction on cluster c.
    Returns the compact revision."""
    ctl = c.ctl_ok
    ctl(["put", "a", "1"])
    ctl(["put", "a", "2"])
    ctl(["put", "b", "x"])
    ctl(["del", "b"])
    leases = []
    for ttl in ("300", "600", "900"):
        leases.append(ctl(["lease", "grant", ttl]).out.split()[1])
    ctl(["put", "--lease=" + leases[0], "c", "leased"])
    ctl(["put", "--lease=" + leases[0], "c2", "leased2"])
    ctl(["put", "--lease=" + leases[2], "e", "gone with its lease"])
    ctl(["lease", "revoke", leases[2]])
    ctl(["txn"], stdin="\n" + "".join("put k%03d v%d\n" % (i, i)
                                      for i in range(100)) + "\n\n")
    compact = ctl(["get", "a", "-w", "json"]).json()["header"]["revision"]
    ctl(["txn"], stdin="\n" + "".join(
        ("put k%03d w%d\n" % (i, i)) if i < 50 else ("del k%03d\n" % i)
        for i in range(100)) + "\n\n")
    ctl(["compact", str(compact)])
    ctl(["put", "b", "again"])  # recreated: a new create revision
    ctl(["put", "a", "3"])
    ctl(["put", "--lease=" + leases[1], "g", "on the second lease"])
    ctl(["del", "c2"])  # a tombstone above the compaction
    ctl(["txn"], stdin="\nput t1 v1\nput t2 v2\ndel k000\n\n\n")
    for i in range(5):
        ctl(["put", "many", "v%d" % i])
    return compact


def kvs(resp):
    return [(base64.b64decode(kv["key"]), kv.get("create_revision", 0),
             kv.get("mod_revision", 0), kv.get("version", 0),
             base64.b64decode(kv.get("value", "")), kv.get("lease", 0))
            for kv in resp.get("kvs", [])]


def state(c, members, compact):
    """What clients see on `members`: the head revision, every key at
    every revision from the compaction to the head, and the leases."""
    ctl = lambda args: c.ctl_ok(args, members=members)
    head = ctl(["get", "", "--prefix", "-w", "json"]).json()
    rev = head["header"]["revision"]
    by_rev = {}
    for r in range(compact, rev + 1):
        by_rev[r] = kvs(ctl(["get", "", "--prefix", "--rev=%d" % r,
                             "-w", "json"]).json())
    leases = {}
    for l in ctl(["lease", "list", "-w", "json"]).json().get("leases", []):
        t = ctl(["lease", "timetolive", "%x" % l["id"], "--keys",
                 "-w", "json"]).json()
        leases[l["id"]] = (t["granted-ttl"],
                           sorted(base64.b64decode(k) for k in
                                  t.get("keys") or []))
    return {"revision": rev, "kvs": by_rev, "leases": leases}


def hashkv(c, rev):
    r = c.ctl_ok(["endpoint", "hashkv", "--rev=%d" % rev, "-w", "json"])
    return {e["Endpoint"]: (e["HashKV"]["hash"],
                            e["HashKV"]["compact_revision"]) for e in r.json()}


class RestoreCase(it.ClusterTestCase):
    def restore(self, snap, size, tool=None, binary=None, extra=(),
                start=True):
        """A new cluster restored from snap, one restore per member;
        started and healthy (unless not start)."""
        c = self.new_cluster(binary or it.CONFIG["server"], start=False,
                             size=size)
        for m in c.members:
            r = run([tool or detcdctl(), "snapshot", "restore", snap,
                     "--name", m.name, "--data-dir", m.data_dir,
                     "--initial-cluster", c.initial_cluster(),
                     "--initial-cluster-token", c.token,
                     "--initial-advertise-peer-urls", m.peer_url] +
                    list(extra))
            self.assertTrue(r.ok, r.describe())
            self.assertEqual(r.out, "")
        if start:
            c.start()
        return c


class SnapshotRestore(RestoreCase):
    @classmethod
    def setUpClass(cls):
        if not os.access(detcdctl(), os.X_OK):
            raise unittest.SkipTest("detcdctl %r not built (--detcdctl)" %
                                    detcdctl())
        cls.dir = tempfile.mkdtemp(prefix="detcd-it-restore-")
        # The detcd source: 3 members, loaded, saved by detcdctl and by
        # etcdctl from the same member.
        src = cls.new_class_cluster(it.CONFIG["server"], size=3).start()
        cls.compact = load(src)
        m = src.members[0]
        cls.src_state = state(src, [m], cls.compact)
        cls.src_hash = hashkv(src, cls.src_state["revision"])
        cls.detcd_snap = os.path.join(cls.dir, "detcd.snap")
        r = run([detcdctl(), "--endpoints=" + m.endpoint, "snapshot", "save",
                 cls.detcd_snap])
        assert r.ok, r.describe()
        cls.etcdctl_saved = os.path.join(cls.dir, "detcd-by-etcdctl.snap")
        r = src.etcdctl(["snapshot", "save", cls.etcdctl_saved], members=[m])
        assert r.ok, r.describe()
        # The etcd source: a real etcd 3.4 with the same workload.
        ref = cls.new_class_cluster(it.CONFIG["reference"], size=1).start()
        cls.etcd_compact = load(ref)
        cls.etcd_state = state(ref, ref.members, cls.etcd_compact)
        cls.etcd_snap = os.path.join(cls.dir, "etcd.db")
        r = ref.etcdctl(["snapshot", "save", cls.etcd_snap])
        assert r.ok, r.describe()
        src.close()  # the tests need only their files and answers
        ref.close()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def check_restored(self, c, want, compact):
        for m in c.members:
            got = state(c, [m], compact)
            self.assertEqual(got["revision"], want["revision"], m.name)
            for rev, kv in want["kvs"].items():
                self.assertEqual(got["kvs"][rev], kv, "%s rev %d" % (m.name,
                                                                    rev))
            self.assertEqual(got["leases"], want["leases"], m.name)
            r = c.etcdctl(["get", "a", "--rev=%d" % (compact - 1)],
                          members=[m])
            self.assertIn("required revision has been compacted", r.err)
        hashes = hashkv(c, want["revision"])
        self.assertEqual(len(set(hashes.values())), 1, hashes)
        self.assertEqual(list(hashes.values())[0][1], compact)
        # The new membership, with etcd's ids for the new --initial-cluster.
        ids = {m.name: member_id([m.peer_url], c.token) for m in c.members}
        ml = c.ctl_ok(["member", "list", "-w", "json"]).json()
        self.assertEqual({m["name"]: m["ID"] for m in ml["members"]}, ids)
        self.assertEqual({m["name"]: m["peerURLs"] for m in ml["members"]},
                         {m.name: [m.peer_url] for m in c.members})
        self.assertEqual(ml["header"]["cluster_id"],
                         cluster_id(list(ids.values())))
        return hashes

    def test_a_detcd_cluster_restored(self):
        with open(self.detcd_snap, "rb") as f, \
                open(self.etcdctl_saved, "rb") as g:
            self.assertEqual(f.read(), g.read(),
                             "detcdctl and etcdctl saved different bytes")
        st = run([detcdctl(), "snapshot", "status", self.detcd_snap, "-w",
                  "json"])
        self.assertTrue(st.ok, st.describe())
        self.assertEqual(st.json()["revision"], self.src_state["revision"])
        c = self.restore(self.detcd_snap, 3)
        hashes = self.check_restored(c, self.src_state, self.compact)
        self.assertEqual(set(hashes.values()), set(self.src_hash.values()))
        for s in c.status():
            self.assertGreaterEqual(s["Status"]["raftTerm"], 2)
        # It serves: writes continue the revisions, leases keep alive.
        r = c.ctl_ok(["put", "after", "restore", "-w", "json"])
        self.assertEqual(r.json()["header"]["revision"],
                         self.src_state["revision"] + 1)
        for lid in self.src_state["leases"]:
            c.ctl_ok(["lease", "keep-alive", "--once", "%x" % lid])

    def test_a2_detcd_snapshot_restored_into_etcd(self):
        """detcd's snapshot is etcd's backend db: etcdctl 3.4 restores it
        and real etcd serves the same keys, history and leases."""
        st = run([it.CONFIG["etcdctl"], "snapshot", "status",
                  self.detcd_snap, "-w", "json"])
        self.assertTrue(st.ok, st.describe())
        self.assertEqual(st.json()["revision"], self.src_state["revision"])
        e = self.restore(self.detcd_snap, 1, tool=it.CONFIG["etcdctl"],
                         binary=it.CONFIG["reference"])
        got = state(e, e.members, self.compact)
        self.assertEqual(got, self.src_state)
        e.ctl_ok(["put", "after", "restore"])

    def test_f_etcdctl_restore_started_with_detcd(self):
        """etcd's runbook with detcd as the server: etcdctl 3.4 restores
        each member's data dir (etcd's format), detcd starts on them and
        serves the same state, with etcd's member and cluster ids; etcd's
        files stay beside as member.etcd. A dir etcd has run on is refused
        with a clear message."""
        for snap, want, compact in (
                (self.detcd_snap, self.src_state, self.compact),
                (self.etcd_snap, self.etcd_state, self.etcd_compact)):
            c = self.restore(snap, 3, tool=it.CONFIG["etcdctl"])
            self.check_restored(c, want, compact)
            for m in c.members:
                self.assertTrue(os.path.isdir(os.path.join(
                    m.data_dir, "member.etcd", "wal")), m.data_dir)
            c.ctl_ok(["put", "after", "restore"])
        # Real etcd ran on this one: its WAL holds entries of its own.
        e = self.restore(self.etcd_snap, 1, tool=it.CONFIG["etcdctl"],
                         binary=it.CONFIG["reference"])
        e.ctl_ok(["put", "ran", "on etcd"])
        m = e.members[0]
        m.kill()
        d = self.new_cluster(it.CONFIG["server"], start=False, size=1)
        shutil.copytree(m.data_dir, d.members[0].data_dir)
        r = run([it.CONFIG["server"], "--name", m.name, "--data-dir",
                 d.members[0].data_dir], timeout=30)
        self.assertNotEqual(r.rc, 0, r.describe())
        self.assertIn("holds entries of its own", r.err + r.out)
        self.assertFalse(os.path.exists(os.path.join(
            d.members[0].data_dir, "member.etcd")))

    def test_b_etcd_snapshot_restored(self):
        c = self.restore(self.etcd_snap, 3)
        self.check_restored(c, self.etcd_state, self.etcd_compact)
        c.ctl_ok(["put", "after", "restore"])
        # Real etcd restored by etcdctl 3.4 from the same file answers alike.
        e = self.restore(self.etcd_snap, 1, tool=it.CONFIG["etcdctl"],
                         binary=it.CONFIG["reference"])
        got = state(e, e.members, self.etcd_compact)
        self.assertEqual(got, self.etcd_state)

    def refused(self, snap, *want, extra=()):
        """detcdctl refuses snap: exit 1, `Error: ...` containing every
        `want`, and no data dir (nor a temporary one) left."""
        parent = tempfile.mkdtemp(dir=self.dir)
        data = os.path.join(parent, "m.etcd")
        r = run([detcdctl(), "snapshot", "restore", snap, "--data-dir",
                 data] + list(extra))
        self.assertEqual(r.rc, 1, r.describe())
        errs = error_lines(r)
        self.assertEqual(len(errs), 1, r.describe())
        self.assertTrue(errs[0].startswith("Error: "), r.describe())
        for w in want:
            self.assertIn(w, errs[0])
        self.assertEqual(os.listdir(parent), [], r.describe())
        return errs[0]

    def variant(self, src, name, edit):
        with open(src, "rb") as f:
            b = bytearray(f.read())
        b = edit(b)
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            f.write(bytes(b))
        return path

    def test_c_corrupt_and_truncated_files_refused(self):
        def flip(at):
            def edit(b):
                b[at(b)] ^= 0x5a
                return b
            return edit
        middle = flip(lambda b: len(b) // 2)
        for kind, src in (("detcd", self.detcd_snap), ("etcd", self.etcd_snap)):
            with self.subTest(kind=kind):
                corrupt = self.variant(src, kind + ".flip", middle)
                short = self.variant(src, kind + ".short",
                                     lambda b: b[:len(b) - 100])
                padded = self.variant(src, kind + ".padded",
                                      lambda b: b + b"\0" * 100)
                tiny = self.variant(src, kind + ".tiny", lambda b: b[:10])
                # detcd's snapshot is etcd's backend db too: etcd's checks.
                self.refused(corrupt, "expected sha256 [")
                self.refused(short, "snapshot missing hash")
                self.refused(padded, "snapshot missing hash")
                self.refused(tiny, "invalid argument")
        # An etcd db without its trailer (as copied from a data dir) needs
        # --skip-hash-check, and then restores.
        raw = self.variant(self.etcd_snap, "etcd.raw", lambda b: b[:-32])
        self.refused(raw, "snapshot missing hash but --skip-hash-check=false")
        data = os.path.join(self.dir, "raw.etcd")
        r = run([detcdctl(), "snapshot", "restore", raw, "--data-dir", data,
                 "--skip-hash-check"])
        self.assertTrue(r.ok, r.describe())

    def test_d_messages_as_etcdctl(self):
        exists = os.path.join(self.dir, "exists.etcd")
        os.makedirs(exists, exist_ok=True)
        corrupt = self.variant(self.etcd_snap, "etcd.flip2",
                               lambda b: b[:100] + bytes([b[100] ^ 1]) +
                               b[101:])
        short = self.variant(self.etcd_snap, "etcd.short2",
                             lambda b: b[:len(b) - 1])
        tiny = self.variant(self.etcd_snap, "etcd.tiny2", lambda b: b[:31])
        cases = [
            ("missing file", ["nothere.db"], True),
            ("existing data dir", [self.etcd_snap, "--data-dir", exists],
             False),
            ("bad hash", [corrupt], True),
            ("missing hash", [short], True),
            ("too short", [tiny], True),
            ("name not in cluster", [self.etcd_snap, "--name", "stranger"],
             False),
            ("bad peer URL", [self.etcd_snap, "--initial-advertise-peer-urls",
                              "ftp://127.0.0.1:2380"], False),
            ("no argument", [], False),
        ]
        for what, args, own_dir in cases:
            with self.subTest(what):
                outs = []
                for tool in (it.CONFIG["etcdctl"], detcdctl()):
                    cwd = tempfile.mkdtemp(dir=self.dir)
                    extra = ["--data-dir", "r.etcd"] if own_dir else []
                    outs.append(run([tool, "snapshot", "restore"] + args +
                                    extra, cwd=cwd))
                want, got = outs
                self.assertEqual((got.rc, error_lines(got), got.out),
                                 (want.rc, error_lines(want), want.out),
                                 "\n%s\n%s" % (want.describe(),
                                               got.describe()))
                if what == "missing file":
                    # etcd's "restoring snapshot" line, fields and all.
                    self.assertEqual(log_lines(got), log_lines(want))


ROOT = ["--user", "root:rootpw"]
ALICE = ["--user", "alice:alicepw"]
FAST_BCRYPT = ("--bcrypt-cost", "4")  # quick hashes, on etcd too

# Who may do what once restored: (args, must succeed). Errors: no user
# ("user name is empty"), outside alice's prefix ("permission denied"),
# a wrong password ("authentication failed").
AUTH_SCRIPT = [
    (["get", "bar"], False),
    (["put", "foo/x", "y"], False),
    (["user", "list"], False),
    (ROOT + ["user", "list"], True),
    (ROOT + ["role", "list"], True),
    (ROOT + ["role", "get", "prefix"], True),
    (ROOT + ["user", "get", "alice"], True),
    (ROOT + ["get", "bar"], True),
    (ALICE + ["get", "foo/1"], True),
    (ALICE + ["put", "foo/2", "two"], True),
    (ALICE + ["get", "foo/", "--prefix"], True),
    (ALICE + ["get", "bar"], False),
    (ALICE + ["put", "bar", "x"], False),
    (ALICE + ["user", "list"], False),
    (["--user", "alice:wrong", "get", "foo/1"], False),
]


def load_auth(c):
    """Keys, root, alice with a role on the prefix foo/, auth enabled."""
    ctl = c.ctl_ok
    ctl(["put", "foo/1", "one"])
    ctl(["put", "bar", "root only"])
    ctl(["user", "add", "root:rootpw"])
    ctl(["user", "add", "alice:alicepw"])
    ctl(["role", "add", "prefix"])
    ctl(["role", "grant-permission", "prefix", "readwrite", "foo/",
         "--prefix=true"])
    ctl(["user", "grant-role", "alice", "prefix"])
    ctl(["auth", "enable"])


class AuthRestore(RestoreCase):
    """(e): auth survives a restore, from detcd's file and etcd's."""

    @classmethod
    def setUpClass(cls):
        if not os.access(detcdctl(), os.X_OK):
            raise unittest.SkipTest("detcdctl %r not built (--detcdctl)" %
                                    detcdctl())
        cls.dir = tempfile.mkdtemp(prefix="detcd-it-restore-auth-")
        cls.snaps = {}
        for kind, binary in (("detcd", it.CONFIG["server"]),
                             ("etcd", it.CONFIG["reference"])):
            src = cls.new_class_cluster(binary, size=1,
                                        extra_flags=FAST_BCRYPT).start()
            load_auth(src)
            path = os.path.join(cls.dir, kind + ".snap")
            src.ctl_ok(ROOT + ["snapshot", "save", path])
            cls.snaps[kind] = path
            src.close()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def start_with_auth(self, c):
        """Starts c; healthy as root (an anonymous health check is refused
        with "user name is empty" once auth is on)."""
        for m in c.members:
            m.start()
        deadline = time.monotonic() + 30
        for m in c.members:
            while True:
                self.assertTrue(m.alive(), m.log_tail())
                r = c.etcdctl(ROOT + ["endpoint", "health"], members=[m],
                              timeout=5.0)
                if r.ok:
                    break
                self.assertLess(time.monotonic(), deadline, r.describe())
                time.sleep(0.1)
        return c

    def answers(self, c, members=None):
        """AUTH_SCRIPT run through etcdctl 3.4: (rc, out, error lines)."""
        got = []
        for args, ok in AUTH_SCRIPT:
            r = c.etcdctl(args, members=members)
            self.assertEqual(r.ok, ok, r.describe())
            got.append((r.rc, r.out, error_lines(r)))
        return got

    def check_limits(self, answers):
        by_args = {" ".join(a): ans for (a, _), ans in zip(AUTH_SCRIPT,
                                                           answers)}
        user_empty = "Error: etcdserver: user name is empty"
        denied = "Error: etcdserver: permission denied"
        self.assertEqual(by_args["get bar"][2], [user_empty])
        self.assertEqual(by_args["user list"][2], [user_empty])
        self.assertEqual(by_args["--user root:rootpw user list"][1],
                         "alice\nroot\n")
        self.assertEqual(by_args["--user root:rootpw get bar"][1],
                         "bar\nroot only\n")
        self.assertEqual(by_args["--user alice:alicepw get foo/ --prefix"][1],
                         "foo/1\none\nfoo/2\ntwo\n")
        self.assertEqual(by_args["--user alice:alicepw get bar"][2], [denied])
        self.assertEqual(by_args["--user alice:alicepw put bar x"][2],
                         [denied])
        self.assertIn("authentication failed",
                      " ".join(by_args["--user alice:wrong get foo/1"][2]))

    def test_e_auth_carried_over(self):
        # detcd's own file into 3 detcd members: each enforces it.
        c = self.start_with_auth(self.restore(self.snaps["detcd"], 3,
                                              start=False))
        for m in c.members:
            r = c.etcdctl(ROOT + ["user", "list"], members=[m])
            self.assertEqual(r.out, "alice\nroot\n", r.describe())
        from_detcd = self.answers(c)
        self.check_limits(from_detcd)
        # etcd's file: detcd restored by detcdctl and etcd restored by
        # etcdctl 3.4 answer as the restored detcd cluster does.
        d = self.start_with_auth(self.restore(self.snaps["etcd"], 3,
                                              start=False))
        e = self.start_with_auth(self.restore(
            self.snaps["etcd"], 1, tool=it.CONFIG["etcdctl"],
            binary=it.CONFIG["reference"], start=False))
        from_etcd = self.answers(e)
        self.check_limits(from_etcd)
        self.assertEqual(self.answers(d), from_etcd)
        self.assertEqual(from_detcd, from_etcd)
        # detcd's file is etcd's backend db: etcdctl 3.4 restores it into a
        # real etcd that keeps its auth the same way.
        f = self.start_with_auth(self.restore(
            self.snaps["detcd"], 1, tool=it.CONFIG["etcdctl"],
            binary=it.CONFIG["reference"], start=False))
        self.assertEqual(self.answers(f), from_etcd)


if __name__ == "__main__":
    lib.parse_detcdctl_arg()
    it.main()
