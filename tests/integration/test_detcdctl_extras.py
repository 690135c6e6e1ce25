#!/usr/bin/env python3
"""detcdctl's shell completion, migrate, and where it deliberately differs
from etcdctl 3.4 (a clear error where etcdctl crashes):

- Completion: `completion bash|zsh|fish|powershell [--no-descriptions]`
  prints cobra's scripts byte for byte as etcdctl when run under the name
  etcdctl, and for the name detcdctl when run as detcdctl; the help pages
  of those commands; cobra's `__complete` / `__completeNoDesc` answers for
  many partial command lines, byte for byte; the bash script completing
  detcdctl's commands and flags in a real bash.
- Migrate: etcdctl's messages and exit codes for missing or empty dirs
  and transformers that cannot run; a detcd data dir has no v2 keys; a
  real etcd 3.4 member with v2 keys (and one recovered from a v2
  snapshot) migrated by both tools from copies of its data dir: the same
  output (etcd's log lines included), and etcd started on each copy serves
  the same v3 keys at the same revisions (default transformer, --no-ttl,
  a user transformer, a failing one, waiting for the database lock).
- Promote: `member promote -w json` after a learner caught up: the member
  is promoted, then a clear error (exit 4) where etcdctl panics.
- make-mirror --no-dest-prefix: src/ keys mirrored to the root (initial
  sync, live puts and deletes), as etcdctl does, on detcd and on etcd.
- --keepalive-time / --keepalive-timeout: a watch whose member is frozen
  (SIGSTOP) fails over after gRPC's 10 s minimum ping interval plus the
  timeout, or keeps waiting with a long timeout, as etcdctl's does.
- --insecure-discovery and the default endpoint 127.0.0.1:2379, inside a
  network namespace with dnsmasq (root only, else skipped): http SRV
  endpoints kept or dropped, https ones checked against the SRV domain.

Run alone:
  python3 test_detcdctl_extras.py --server build/detcd \\
      --detcdctl build/detcdctl [-v] [-k name]
"""

import filecmp
import os
import sys
import re
import shutil
import subprocess
import tempfile
import time
import unittest

import cluster
import test_detcdctl_lib as lib


def etcdctl():
    return cluster.CONFIG["etcdctl"]


def run(argv, cwd=None, env=None, timeout=20.0):
    return lib.run_argv(argv, cwd=cwd, env=env, timeout=timeout)


def same(case, ra, rb, what):
    case.assertEqual((ra.rc, ra.out, ra.err), (rb.rc, rb.out, rb.err),
                     "%s\n--- etcdctl\n%s\n--- detcdctl\n%s" % (
                         what, ra.describe(), rb.describe()))


SHELLS = ("bash", "zsh", "fish", "powershell")


class Completion(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        if not os.access(lib.detcdctl_binary(), os.X_OK):
            raise unittest.SkipTest("detcdctl not built")
        cls.tmp = tempfile.mkdtemp(prefix="detcd-it-completion-")
        # detcdctl installed under etcdctl's name.
        cls.as_etcdctl = os.path.join(cls.tmp, "etcdctl")
        os.symlink(lib.detcdctl_binary(), cls.as_etcdctl)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_scripts_as_etcdctl(self):
        for shell in SHELLS:
            for extra in ([], ["--no-descriptions"]):
                args = ["completion", shell] + extra
                ra = run([etcdctl()] + args)
                rb = run([self.as_etcdctl] + args)
                self.assertEqual(ra.rc, 0, ra.describe())
                same(self, ra, rb, " ".join(args))

    def test_scripts_for_detcdctl(self):
        """The same scripts with the program's own name in the function
        names, the `complete` registration and the ActiveHelp variable."""
        for shell in SHELLS:
            ra = run([etcdctl(), "completion", shell])
            rb = run([lib.detcdctl_binary(), "completion", shell])
            want = ra.raw_out.decode()
            # The header pads the name to 36 columns.
            want = want.replace("%-36s" % "etcdctl", "%-36s" % "detcdctl")
            want = want.replace("ETCDCTL_ACTIVE_HELP", "DETCDCTL_ACTIVE_HELP")
            want = re.sub(r"\betcdctl\b", "detcdctl", want)
            want = want.replace("__etcdctl", "__detcdctl").replace(
                "_etcdctl", "_detcdctl")
            self.assertEqual(rb.rc, 0, rb.describe())
            self.assertEqual(rb.raw_out.decode(), want, shell)
            self.assertNotIn("etcdctl", rb.out.replace("detcdctl", ""))

    def test_help_and_errors(self):
        cases = [["completion"], ["completion", "--help"],
                 ["completion", "x"], ["completion", "bash", "x"],
                 ["completion", "zsh", "a", "b"], ["help", "completion"],
                 ["completion", "fish", "--nope"],
                 # etcdctl 3.4 has no `auth status` (the issue lists it):
                 # both print auth's usage.
                 ["auth", "status"]]
        for shell in SHELLS:
            cases.append(["completion", shell, "--help"])
            cases.append(["help", "completion", shell])
        for args in cases:
            same(self, run([etcdctl()] + args),
                 run([lib.detcdctl_binary()] + args), " ".join(args))

    LINES = [
        [], [""], ["g"], ["get", ""], ["get", "-"], ["get", "--p"],
        ["get", "--prefix", "-"], ["get", "--prefix", "--"],
        ["get", "-w", ""], ["get", "-w", "j"], ["get", "-w=j"],
        ["get", "--write-out="], ["get", "--limit=x", "-"],
        ["get", "a", ""], ["get", "a", "-"], ["get", "--", "-"],
        ["get", "-h", ""], ["get", "--help", "-"], ["nosuch", ""],
        ["lease", ""], ["lease", "g"], ["lease", "bogus", ""],
        ["lease", "grant", "-"], ["lea", "gr", ""], ["member", ""],
        ["member", "add", "--"], ["member", "add", "--learner", ""],
        ["help", ""], ["help", "lease", ""], ["help", "nosuch", ""],
        ["help", "le"], ["completion", ""], ["completion", "bash", ""],
        ["completion", "bash", "-"], ["--endpoints", ""],
        ["--endpoints=a", ""], ["--hex", ""], ["--hex", "ge"],
        ["-w", "json", "g"], ["get", "--xyz=", ""], ["get", "--xyz", ""],
        ["get", "-x", ""], ["get", "-q=", ""], ["watch", "k", "--", ""],
        ["watch", "-i", "-"], ["txn", "-"], ["snapshot", "restore", "-"],
        ["user", "add", "--interactive=false", "-"],
        ["role", "grant-permission", "--"], ["check", ""],
        ["check", "perf", "--l"], ["endpoint", "--cluster", ""],
        ["endpoint", "--cluster", "-"], ["defrag", "--data-dir", ""],
        ["make-mirror", "--dest-"], ["elect", "-l", "-"],
        ["lock", "--ttl", "5", "-"], ["alarm", "l"], ["auth", ""],
        ["version", "-"], ["migrate", "--"], ["move-leader", ""],
        ["compaction", "--physical", "-"], ["del", "--prev-kv", "--p"],
        ["put", "k", "v", "--lease=1", "-"], ["-d", ""], ["-d", "x", "g"],
    ]

    def test_complete_requests(self):
        env = {"BASH_COMP_DEBUG_FILE": ""}
        for cmd in ("__complete", "__completeNoDesc"):
            for line in self.LINES:
                args = [cmd] + line
                same(self, run([etcdctl()] + args, env=env),
                     run([lib.detcdctl_binary()] + args, env=env),
                     " ".join(repr(a) for a in args))

    def test_bash_script_completes_detcdctl(self):
        """The bash script, sourced in a real bash, completes detcdctl's
        commands and flags through `detcdctl __complete`. bash-completion's
        _get_comp_words_by_ref is replaced by a minimal stand-in (the
        package is not installed here)."""
        bash = shutil.which("bash")
        if bash is None:
            self.skipTest("no bash")
        bindir = os.path.join(self.tmp, "bin")
        os.makedirs(bindir, exist_ok=True)
        link = os.path.join(bindir, "detcdctl")
        if not os.path.exists(link):
            os.symlink(lib.detcdctl_binary(), link)
        script = os.path.join(self.tmp, "detcdctl.bash")
        with open(script, "wb") as f:
            f.write(run([lib.detcdctl_binary(), "completion", "bash"]).raw_out)
        driver = r'''
_get_comp_words_by_ref() {
    cur="${COMP_WORDS[COMP_CWORD]}"
    prev="${COMP_WORDS[COMP_CWORD-1]}"
    words=("${COMP_WORDS[@]}")
    cword=$COMP_CWORD
}
compopt() { :; }
source "$1"
shift
COMP_WORDS=("$@")
COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
COMP_LINE="${COMP_WORDS[*]}"
COMP_POINT=${#COMP_LINE}
complete -p detcdctl
__start_detcdctl
printf '%s\n' "${COMPREPLY[@]}"
'''
        env = dict(os.environ)
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")

        def complete(*words):
            p = subprocess.run([bash, "-c", driver, "drv", script] + list(words),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=env, timeout=30)
            self.assertEqual(p.returncode, 0, p.stderr.decode())
            lines = p.stdout.decode().splitlines()
            self.assertTrue(lines and "__start_detcdctl detcdctl" in lines[0],
                            lines)
            return [l.strip() for l in lines[1:]]

        self.assertEqual(complete("detcdctl", "lea"), ["lease"])
        self.assertEqual(complete("detcdctl", "lease", "re"), ["revoke"])
        got = complete("detcdctl", "get", "--pr")
        self.assertEqual(sorted(got), ["--prefix", "--print-value-only"])
        self.assertIn("snapshot", complete("detcdctl", "s"))


class PanicsToErrors(unittest.TestCase):
    """Input on which etcdctl 3.4 crashes with a Go panic (exit 2):
    detcdctl prints a clear error instead (exit 3, ExitInvalidInput),
    before any server is contacted."""

    CASES = [
        ('value("k") ~ "1"\n\n\n', "Error: malformed comparison: "
         'value("k") ~ "1" (unknown operator ~)\n'),
        ('lease("k") = "1"\n\n\n', "Error: malformed comparison: "
         'lease("k") = "1" (the lease target is not supported)\n'),
        ("\nput 'a' b c d e\n\n", "Error: invalid single-quoted argument "
         "'a'\n"),
    ]

    def test_txn_interactive(self):
        if not os.access(lib.detcdctl_binary(), os.X_OK):
            self.skipTest("detcdctl not built")
        for stdin, err in self.CASES:
            args = ["--endpoints=127.0.0.1:1", "--dial-timeout=1s", "txn",
                    "-i"]
            ra = lib.run_argv([etcdctl()] + args, stdin=stdin)
            rb = lib.run_argv([lib.detcdctl_binary()] + args, stdin=stdin)
            self.assertEqual(ra.rc, 2, ra.describe())
            self.assertIn("panic: ", ra.err)
            self.assertEqual((rb.rc, rb.err), (3, err), rb.describe())
            self.assertEqual(rb.out, ra.out)  # the prompts


class Migrate(unittest.TestCase):
    """etcdctl's migrate behaviour where detcdctl can follow it."""

    def setUp(self):
        if not os.access(lib.detcdctl_binary(), os.X_OK):
            self.skipTest("detcdctl not built")
        self.tmp = tempfile.mkdtemp(prefix="detcd-it-migrate-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def both(self, args, cwd=None):
        ra = run([etcdctl(), "migrate"] + args, cwd=cwd or self.tmp)
        rb = run([lib.detcdctl_binary(), "migrate"] + args,
                 cwd=cwd or self.tmp)
        same(self, ra, rb, "migrate " + " ".join(args))
        return ra, rb

    def test_errors_as_etcdctl(self):
        empty = os.path.join(self.tmp, "e")
        os.makedirs(os.path.join(empty, "member", "snap"))
        self.both([])
        self.both(["extra-arg"])
        self.both(["--data-dir", "/nonexistent/dir"])
        self.both(["--data-dir", "./x/../nowhere/"])
        self.both(["--data-dir", "e"])  # no member/wal
        os.makedirs(os.path.join(empty, "member", "wal"))
        self.both(["--data-dir", "e"])  # empty WAL
        self.both(["--data-dir", "e", "--wal-dir", "/nonexistent/wal"])
        self.both(["--data-dir", "e", "--transformer", "/nonexistent/t"])
        self.both(["--data-dir", "e", "--transformer", "no-such-program-x"])
        self.both(["--data-dir", "e", "--transformer", self.tmp])
        self.both(["--data-dir", "e", "--no-ttl=maybe"])
        self.both(["--help"])

    def _stopped_member(self, binary):
        c = cluster.Cluster(binary, size=1, label="migrate")
        self.addCleanup(c.close)
        c.start()
        r = c.etcdctl(["put", "k", "v"])
        self.assertEqual(r.rc, 0, r.describe())
        c.members[0].stop()
        return c.members[0].data_dir

    def test_detcd_data_dir_has_no_v2_keys(self):
        d = self._stopped_member(cluster.CONFIG["server"])
        waldir = os.path.join(d, "member", "wal")
        first = sorted(n for n in os.listdir(waldir) if n.endswith(".wal"))[0]
        with open(os.path.join(waldir, first), "rb") as f:
            if f.read(17)[9:] != b"detcdwal":
                self.skipTest("the server is not detcd")
        before = snapshot_tree(d)
        r = run([lib.detcdctl_binary(), "migrate", "--data-dir", d])
        self.assertEqual((r.rc, r.out, r.err),
                         (0, "using default transformer\n"
                          "no v2 keys to migrate\n", ""), r.describe())
        self.assertEqual(before, snapshot_tree(d))

    def test_etcd_member_without_v2_keys(self):
        d = self._stopped_member(cluster.CONFIG["reference"])
        a, b = os.path.join(self.tmp, "a"), os.path.join(self.tmp, "b")
        shutil.copytree(d, a)
        shutil.copytree(d, b)
        before = snapshot_tree(b)
        ra = run([etcdctl(), "migrate", "--data-dir", a])
        rb = run([lib.detcdctl_binary(), "migrate", "--data-dir", b])
        self.assertEqual((ra.rc, ra.out, ra.err), (rb.rc, rb.out, rb.err))
        self.assertTrue(rb.out.endswith("no v2 keys to migrate\n"), rb.out)
        self.assertIn('"msg":"added member"', rb.out)
        self.assertEqual(before, snapshot_tree(b))

    def test_empty_wal_dir_then_no_snap_dir(self):
        d = os.path.join(self.tmp, "x")
        os.makedirs(os.path.join(d, "member", "wal"))
        self.both(["--data-dir", "x"])
        os.makedirs(os.path.join(d, "member", "snap"))
        with open(os.path.join(d, "member", "wal", "junk.tmp"), "w") as f:
            f.write("x")
        with open(os.path.join(d, "member", "wal", "junk"), "w") as f:
            f.write("x")
        self.both(["--data-dir", "x"])


# A transformer as etcdctl's protocol wants it: JSON nodes on stdin,
# length-prefixed mvccpb.KeyValue on stdout (upper-cased values, keys under
# /t, directories as keys too).
TRANSFORMER = r'''#!/usr/bin/env python3
import json, struct, sys

def varint(n):
    out = b""
    while True:
        b = n & 0x7f
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])

def field(num, wire, payload):
    return varint(num << 3 | wire) + payload

data = sys.stdin.read()
dec = json.JSONDecoder()
i = 0
while i < len(data):
    node, i = dec.raw_decode(data, i)
    key = ("/t" + node["key"]).encode()
    value = node.get("value", "<dir>").upper().encode()
    kv = field(1, 2, varint(len(key)) + key)
    kv += field(2, 0, varint(node.get("createdIndex", 0)))
    kv += field(3, 0, varint(node.get("modifiedIndex", 0)))
    kv += field(4, 0, varint(7))
    kv += field(5, 2, varint(len(value)) + value)
    sys.stdout.buffer.write(struct.pack("<q", len(kv)) + kv)
    sys.stderr.write("node %s dir=%s\n" % (node["key"], node.get("dir", False)))
'''


def b64(s):
    import base64
    return base64.b64decode(s).decode("utf-8", "replace")


def v2_request(endpoint, method, key, **params):
    """One etcd v2 API call (etcd --enable-v2)."""
    import urllib.parse
    import urllib.request
    body = urllib.parse.urlencode(params).encode() if params else None
    req = urllib.request.Request("http://%s/v2/keys%s" % (endpoint, key),
                                 data=body, method=method)
    if body:
        req.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


class MigrateEtcd(cluster.ClusterTestCase):
    """A real etcd 3.4 member with v2 keys (written through its v2 API,
    with directories, in-order keys, TTLs, compare-and-swap, deletes,
    membership changes) migrated by etcdctl and by detcdctl from two
    copies of its data dir: the same output, and etcd started again on
    each copy serves the same v3 keys at the same revisions."""

    @classmethod
    def setUpClass(cls):
        if not os.access(lib.detcdctl_binary(), os.X_OK):
            raise unittest.SkipTest("detcdctl not built")
        cls.tmp = tempfile.mkdtemp(prefix="detcd-it-migrate-etcd-")
        c = cluster.Cluster(cluster.CONFIG["reference"], size=1,
                            extra_flags=["--enable-v2",
                                         "--snapshot-count=%d" %
                                         cls.SNAPSHOT_COUNT],
                            label="migrate-etcd")
        try:
            c.start()
            ep = c.endpoints()[0]
            ok = (200, 201)
            v2 = lambda *a, **kw: v2_request(ep, *a, **kw)
            assert v2("PUT", "/foo", value="bar") in ok
            assert v2("PUT", "/dir/a", value="1") in ok
            assert v2("PUT", "/dir/b", value="2") in ok
            assert v2("PUT", "/dir/sub/c", value="3") in ok
            assert v2("POST", "/queue", value="job1") in ok
            assert v2("POST", "/queue", value="job2") in ok
            assert v2("PUT", "/ttl", value="t", ttl="600") in ok
            assert v2("PUT", "/ttl", ttl="900", refresh="true",
                      prevExist="true") in ok
            assert v2("PUT", "/foo", value="bar2", prevValue="bar") in ok
            assert v2("PUT", "/foo", value="no", prevValue="bad") == 412
            assert v2("PUT", "/new", value="n", prevExist="false") in ok
            assert v2("PUT", "/new", value="n2", prevExist="false") == 412
            assert v2("DELETE", "/dir/b") in ok
            assert v2("DELETE", "/dir/sub?recursive=true") in ok
            assert v2("PUT", "/emptydir?dir=true") in ok
            assert v2("PUT", "/esc", value="<tag> & \"q\" \u00e9") in ok
            r = c.etcdctl(["put", "v3key", "v3value"])
            assert r.rc == 0, r.describe()
            for i in range(cls.EXTRA_PUTS):
                assert v2("PUT", "/many/%03d" % i, value=str(i)) in ok
            c.members[0].stop()
            cls.src = c.members[0].data_dir
            cls.transformer = os.path.join(cls.tmp, "transform.py")
            with open(cls.transformer, "w") as f:
                f.write(TRANSFORMER)
            os.chmod(cls.transformer, 0o755)
        except BaseException:
            c.close()
            raise
        cls.cluster = c

    SNAPSHOT_COUNT = 100000
    EXTRA_PUTS = 0

    @classmethod
    def tearDownClass(cls):
        cls.cluster.close()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def copy(self, name):
        d = os.path.join(self.tmp, name)
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(self.src, d)
        return d

    def serve(self, data_dir):
        """etcd started on a migrated copy: every key with its revisions."""
        c = cluster.Cluster(cluster.CONFIG["reference"], size=1,
                            label="migrated")
        self.addCleanup(c.close)
        m = c.members[0]
        # The copy's member restarts alone on new ports (a single
        # member needs no peer; its stored peer URL does not matter).
        m.data_dir = data_dir
        m.start()
        c.wait_healthy()
        r = c.etcdctl(["get", "", "--from-key", "-w", "json"])
        self.assertEqual(r.rc, 0, r.describe())
        doc = r.json()
        kvs = [(b64(k["key"]), b64(k.get("value", "")), k.get("create_revision"),
                k.get("mod_revision"), k.get("version"))
               for k in doc.get("kvs", [])]
        m.stop()
        return doc["header"]["revision"], kvs

    def migrate_both(self, args, expect_rc=0):
        a, b = self.copy("a"), self.copy("b")
        ra = run([etcdctl(), "migrate", "--data-dir", a] + args)
        rb = run([lib.detcdctl_binary(), "migrate", "--data-dir", b] + args)
        self.assertEqual(ra.rc, expect_rc, ra.describe())
        # The data dir paths differ.
        self.assertEqual((rb.rc, rb.out, rb.err.replace(b, a)),
                         (ra.rc, ra.out, ra.err), rb.describe())
        return a, b, ra

    def serve_both(self, a, b, args):
        """What etcd serves on each migrated copy. etcdctl 3.4's own migrate
        has come out short now and then on a loaded machine (its copy
        served only the v3 key while detcdctl's had them all, twice in
        full runs, never alone): the reference side is migrated once more
        on a fresh copy before the two are compared."""
        sa, sb = self.serve(a), self.serve(b)
        if sa != sb:
            a2 = self.copy("a2")
            r = run([etcdctl(), "migrate", "--data-dir", a2] + args)
            self.assertEqual(r.rc, 0, r.describe())
            sys.stderr.write("  etcdctl's migrate retried: %d keys, then %d\n"
                             % (len(sa[1]), len(self.serve(a2)[1])))
            sa = self.serve(a2)
        return sa, sb

    def test_default_transformer(self):
        a, b, ra = self.migrate_both([])
        self.assertIn("finished transforming keys", ra.out)
        sa, sb = self.serve_both(a, b, [])
        self.assertEqual(sa, sb)
        self.assertIn("/foo", [k[0] for k in sb[1]])

    def test_no_ttl(self):
        a, b, _ = self.migrate_both(["--no-ttl"])
        sa, sb = self.serve_both(a, b, ["--no-ttl"])
        self.assertEqual(sa, sb)
        self.assertNotIn("/ttl", [k[0] for k in sb[1]])

    def test_user_transformer(self):
        args = ["--transformer", self.transformer]
        a, b, _ = self.migrate_both(args)
        sa, sb = self.serve_both(a, b, args)
        self.assertEqual(sa, sb)
        self.assertIn("/t/foo", [k[0] for k in sb[1]])

    def test_failing_transformer(self):
        self.migrate_both(["--transformer", "false"], expect_rc=1)

    def test_refuses_while_locked_then_waits(self):
        """etcd running on the dir: migrate waits for its lock (etcdctl's
        message after a second); here the lock is a test's flock."""
        import fcntl
        b = self.copy("locked")
        db = os.path.join(b, "member", "snap", "db")
        fd = os.open(db, os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_EX)
        p = subprocess.Popen([lib.detcdctl_binary(), "migrate", "--data-dir",
                              b], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        want = ("waiting for etcd to close and release its lock on \"%s\"\n"
                % db).encode()
        import select
        err = b""
        deadline = time.monotonic() + 30
        while len(err) < len(want) and time.monotonic() < deadline:
            if select.select([p.stderr], [], [], 1)[0]:
                chunk = os.read(p.stderr.fileno(), 4096)
                if not chunk:
                    break
                err += chunk
        self.assertEqual(err, want)
        self.assertIsNone(p.poll())  # still waiting
        os.close(fd)
        out, rest = p.communicate(timeout=30)
        self.assertEqual((p.returncode, rest), (0, b""))
        self.assertTrue(out.decode().endswith("finished transforming keys\n"))


class MigrateEtcdFromSnapshot(MigrateEtcd):
    """The same after etcd cut v2 snapshots (--snapshot-count 20): the
    store is recovered from member/snap, then the WAL after it."""

    SNAPSHOT_COUNT = 20
    EXTRA_PUTS = 50


def snapshot_tree(d):
    """Every file under d with its bytes."""
    out = {}
    for root, _, files in os.walk(d):
        for f in files:
            p = os.path.join(root, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, d)] = fh.read()
    return out


class PromoteFormats(cluster.ClusterTestCase):
    """`member promote -w json|fields|protobuf|table`: etcdctl 3.4 promotes,
    then crashes (Go panic, exit 2) for want of a printer; detcdctl
    promotes, then says the format is not supported (exit 4)."""

    def _promote(self, fmt_args):
        """A 1-member cluster grows a learner; detcdctl promotes it (retried
        while the learner is not in sync yet); returns the last result and
        the learner's member ID."""
        import test_membership as tm
        if not os.access(lib.detcdctl_binary(), os.X_OK):
            self.skipTest("detcdctl not built")
        c = tm.adopt(self.new_cluster(cluster.CONFIG["server"], size=1,
                                      label="promote"))
        helper = tm.MembershipCase("run")
        helper.assertIn = self.assertIn
        helper.assertLess = self.assertLess
        helper.assertRegex = self.assertRegex
        j = tm.MembershipCase.add_and_start(helper, c, c.members[:1], "l1")
        deadline = time.monotonic() + 30
        while True:
            r = lib.run_ctl(lib.detcdctl_binary(), c.endpoints(c.members[:1]),
                            ["member", "promote", "%x" % j.member_id] +
                            fmt_args)
            if r.rc != 1:
                break
            self.assertIn("in sync with leader", r.err, r.describe())
            self.assertLess(time.monotonic(), deadline, r.describe())
            time.sleep(0.2)
        members = c.ctl_ok(["member", "list", "-w", "json"],
                           members=c.members[:1]).json()["members"]
        learners = [m for m in members if m.get("isLearner")]
        self.assertEqual(learners, [], members)
        return r, j.member_id

    def test_promote_json(self):
        r, _ = self._promote(["-w", "json"])
        self.assertEqual((r.rc, r.out, r.err),
                         (4, "", "Error: json not supported as output "
                          "format\n"), r.describe())

    def test_promote_simple(self):
        r, mid = self._promote([])
        self.assertEqual(r.rc, 0, r.describe())
        self.assertRegex(r.out, r"^Member %16x promoted in cluster +[0-9a-f]+\n$"
                         % mid)
        self.assertEqual(r.err, "")



class MirrorNoDestPrefix(lib.DetcdctlCase):
    """make-mirror --prefix=src/ --no-dest-prefix: each tool mirrors its
    cluster's src/ keys to the root of the destination (here the same
    cluster): the initial sync, then live puts and deletes; the keyspaces
    the two tools leave behind are equal (and as expected)."""

    def test_mirror_to_root(self):
        self.both(["put", "src/a", "1"])
        self.both(["put", "src/b", "2"])
        self.both(["put", "other/x", "not mirrored"])
        procs = {}
        for side in (self.ref, self.srv):
            procs[side.name] = side.cluster.background(
                ["make-mirror", "--prefix=src/", "--no-dest-prefix",
                 side.cluster.endpoints()[0]])
        try:
            # The initial sync first (else the delete below could race it).
            self._wait_key("b")
            self.both(["put", "src/c", "3"])
            self.both(["del", "src/a"])
            self.both(["put", "src/b", "22"])
            self.both(["put", "src/end", "x"])
            self._wait_key("end")
            # All live updates were applied in order: "end" came last.
            self.both(["get", "", "--from-key"])
        finally:
            outs = {n: p.stop() for n, p in procs.items()}
        self.assertEqual(outs["etcd"].out, outs["server"].out)
        self.assertEqual(outs["server"].err, "", outs["server"].describe())
        r = self.srv.ctl(["get", "", "--from-key"])
        lines = r.out.splitlines()
        self.assertEqual(list(zip(lines[0::2], lines[1::2])), [
            ("b", "22"), ("c", "3"), ("end", "x"), ("other/x", "not mirrored"),
            ("src/b", "22"), ("src/c", "3"), ("src/end", "x")], r.describe())

    def _wait_key(self, key):
        deadline = time.monotonic() + 20
        while True:
            got = [s.ctl(["get", key, "--print-value-only"]).out
                   for s in (self.ref, self.srv)]
            if all(got):
                return
            self.assertLess(time.monotonic(), deadline,
                            "mirror did not write %r: %r" % (key, got))
            time.sleep(0.2)


class MirrorNoDestPrefixOnEtcd(MirrorNoDestPrefix):
    """The same with real etcd 3.4 under both tools."""

    SERVER = "etcd"


class Keepalive(cluster.ClusterTestCase):
    """--keepalive-time / --keepalive-timeout: a watch given the endpoints
    of members A and B streams from A (B starts only once the watch is
    established); A is then frozen (SIGSTOP) while its TCP connection stays
    open, and an event is written through the other members. Only client
    keepalive pings notice the frozen member: with --keepalive-timeout=2s
    the watch gives up on A and resumes on B within gRPC's 10 s minimum
    ping interval plus the timeout; with --keepalive-timeout=120s it is
    still waiting on A 20 s later and gets the event from A once A is
    thawed. etcdctl and detcdctl, run side by side on the same cluster,
    print the same events at the same stages."""

    BINARY = "server"

    def setUp(self):
        if not os.access(lib.detcdctl_binary(), os.X_OK):
            self.skipTest("detcdctl not built")
        self.c = self.new_cluster(cluster.CONFIG[self.BINARY], size=3,
                                  start=False, label="keepalive")
        a, b, c = self.c.members
        # A and C form the quorum until B joins; C leads throughout, so
        # writes need no election while A is frozen.
        a.start()
        c.start()
        self.c.wait_healthy(members=[a, c])
        ids = self.c.member_ids()
        deadline = time.monotonic() + 20
        while self.c.leader(exclude=()).name != c.name:
            self.assertLess(time.monotonic(), deadline, "cannot move leader")
            self.c.etcdctl(["move-leader", "%x" % ids[c.name]],
                           members=[a, c])
            time.sleep(0.2)

    def _watches(self, ka_flags):
        a, b, c = self.c.members
        procs = {}
        for tool in (etcdctl(), lib.detcdctl_binary()):
            procs[tool] = lib.CtlBackground(
                tool, self.c.endpoints([a, b]),
                ka_flags + ["watch", "--prefix", "ka/"])
        self.addCleanup(lambda: [p.stop() for p in procs.values()])
        # The watch is established on A when a put through C reaches it
        # (puts before that are not seen: repeat until both printed one).
        deadline = time.monotonic() + 20
        while not all(b"ka/sync" in p.output() for p in procs.values()):
            self.assertLess(time.monotonic(), deadline, repr(
                {t: p.output() + p._err for t, p in procs.items()}))
            self.c.ctl_ok(["put", "ka/sync", "1"], members=[c])
            for p in procs.values():
                p.wait_for(lambda o: b"ka/sync" in o, 0.5)
        for p in procs.values():
            p.wait_quiet()
        self.cuts = {t: len(p.output()) for t, p in procs.items()}
        b.start()
        self.c.wait_healthy(members=[b])
        a.stop()  # SIGSTOP: the connection stays up, nothing answers
        # If A led, a put forwarded to it before B and C elected another
        # leader is lost and times out (etcd's too); put again until one
        # lands (seen once in a full run: the first timed out after 6 s).
        deadline = time.monotonic() + 30
        while True:
            r = self.c.etcdctl(["put", "ka/after", "2"], members=[c],
                               command_timeout="10s")
            if r.ok or time.monotonic() > deadline:
                break
        self.assertTrue(r.ok, r.describe())
        return procs

    WANT = "PUT\nka/after\n2\n"

    def assert_after(self, out, r):
        # One event per put that landed: a put that timed out may still
        # have been committed (see _watches), so the same event may repeat.
        self.assertTrue(out and out == self.WANT * (len(out) //
                                                    len(self.WANT)),
                        r.describe())

    def test_short_timeout_fails_over(self):
        procs = self._watches(["--keepalive-time=1s",
                               "--keepalive-timeout=2s"])
        start = time.monotonic()
        for tool, p in procs.items():
            ok = p.wait_for(lambda o: b"ka/after\n2\n" in o, 45)
            took = time.monotonic() - start
            p.wait_quiet()
            r = p.stop()
            self.assertTrue(ok, r.describe())
            self.assert_after(r.out[self.cuts[tool]:], r)
            # Not before gRPC's minimum ping interval (10 s) could pass.
            self.assertGreater(took, 5, "%s: %.1f s" % (tool, took))

    def test_long_timeout_keeps_waiting(self):
        procs = self._watches(["--keepalive-time=1s",
                               "--keepalive-timeout=120s"])
        time.sleep(20)  # the condition tested is that nothing happens
        for tool, p in procs.items():
            self.assertEqual(p.output()[self.cuts[tool]:], b"", tool)
            self.assertIsNone(p.proc.poll(), tool)
        self.c.members[0].cont()
        for tool, p in procs.items():
            ok = p.wait_for(lambda o: b"ka/after\n2\n" in o, 30)
            p.wait_quiet()
            r = p.stop()
            self.assertTrue(ok, r.describe())
            self.assert_after(r.out[self.cuts[tool]:], r)


@unittest.skipUnless(cluster.LONG, "the client's side, 40 s more: "
                     "DETCD_IT_LONG=1 (ctest -L long: "
                     "integration_detcdctl_long)")
class KeepaliveOnEtcd(Keepalive):
    """The same against real etcd 3.4 members."""

    BINARY = "reference"


class KeepaliveFlags(unittest.TestCase):
    """Bad --keepalive-time / --keepalive-timeout values: etcdctl's usage
    errors."""

    def test_bad_values(self):
        if not os.access(lib.detcdctl_binary(), os.X_OK):
            self.skipTest("detcdctl not built")
        for flags in (["--keepalive-time=x"], ["--keepalive-timeout=5"],
                      ["--keepalive-time", "-"], ["--keepalive-timeout="]):
            args = ["--endpoints=127.0.0.1:1", "--dial-timeout=1s"] + flags + \
                ["get", "k"]
            same(self, run([etcdctl()] + args),
                 run([lib.detcdctl_binary()] + args), " ".join(flags))



class NsServer(cluster.Member):
    """A one-member cluster's member started inside a network namespace,
    with https client URLs when given a certificate."""

    def __init__(self, c, client_port, peer_port, ns, tls=None):
        super().__init__(c, 0, client_port, peer_port)
        self.ns = ns
        self.tls = tls

    @property
    def client_url(self):
        return "%s://127.0.0.1:%d" % ("https" if self.tls else "http",
                                      self.client_port)

    def argv(self):
        a = super().argv()
        if self.tls:
            a += ["--cert-file", self.tls["cert"], "--key-file",
                  self.tls["key"]]
        return self.ns.argv(a)


class InsecureDiscovery(cluster.ClusterTestCase):
    """--insecure-discovery with --discovery-srv, and the default endpoint,
    inside a network namespace with dnsmasq as its resolver (as in
    test_discovery_srv.py; needs root, else skipped). Three one-member
    clusters there: A (http), T (https; its certificate names only the SRV
    domains, not the records' host names) and D on the namespace's own
    127.0.0.1:2379, etcdctl's default endpoint. Each holds a different
    value of `who`. What etcdctl 3.4 does (ctlv3/command/global.go):
    --insecure-discovery (default true) keeps http:// endpoints found by
    SRV; =false drops them, saying so on stderr, and checks https servers'
    certificates against the SRV domain instead of the record's host name
    (which also makes it dial --endpoints, the fallback when no endpoint is
    left, over TLS). detcdctl's exit codes, stdout and stderr are the
    same. Without --discovery-srv, no --endpoints: D answers."""

    BINARY = "server"

    @classmethod
    def setUpClass(cls):
        if not os.access(lib.detcdctl_binary(), os.X_OK):
            raise unittest.SkipTest("detcdctl not built")
        import test_discovery_srv as ds
        cls.ns = ds.NetNsDns()
        why = cls.ns.setup()
        if why is not None:
            cls.ns.close()
            raise unittest.SkipTest(why)
        try:
            cls._start(ds)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def _start(cls, ds):
        pa, pa_peer, pt, pt_peer, pd_peer = cluster.free_ports(5)
        cls.pa = pa
        cls.pki = ds.make_domain_pki(cls.ns.dir, ["tls.detcd.test",
                                                  "tlsonly.detcd.test"])
        srv = [("_etcd-client._tcp.plain.detcd.test", "a.detcd.test", pa),
               ("_etcd-client-ssl._tcp.tls.detcd.test", "t.detcd.test", pt),
               ("_etcd-client._tcp.tls.detcd.test", "a.detcd.test", pa),
               ("_etcd-client-ssl._tcp.tlsonly.detcd.test", "t.detcd.test",
                pt)]
        cls.ns.serve(srv, [("a.detcd.test", "127.0.0.1"),
                           ("t.detcd.test", "127.0.0.1")])
        binary = cluster.CONFIG[cls.BINARY]
        servers = {}
        for who, port, peer, tls in (("A", pa, pa_peer, None),
                                     ("T", pt, pt_peer, cls.pki),
                                     ("default", 2379, pd_peer, None)):
            c = cls.new_class_cluster(binary, size=1, label="insecure-disc")
            c.members = [NsServer(c, port, peer, cls.ns, tls)]
            c.members[0].start()
            servers[who] = c.members[0]
        # Each gets its value (retried until it serves).
        for who, m in servers.items():
            args = ["--endpoints=" + m.client_url, "--dial-timeout=1s"]
            if m.tls:  # (the certificate does not name 127.0.0.1)
                args += ["--cacert", m.tls["ca"], "--insecure-skip-tls-verify"]
            deadline = time.monotonic() + 30
            while True:
                r = cls.ctl(etcdctl(), args + ["put", "who", who])
                if r.rc == 0:
                    break
                if time.monotonic() > deadline or not m.alive():
                    raise RuntimeError("%s does not serve: %s\n%s" % (
                        who, r.describe(), m.log_tail()))
                time.sleep(0.2)

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        cls.ns.close()

    @classmethod
    def ctl(cls, tool, args):
        return lib.run_argv(cls.ns.argv([tool] + args), timeout=30)

    def check(self, args, rc, out, err):
        """etcdctl gives (rc, out, err) (err: a regex); detcdctl the same
        bytes as etcdctl."""
        ra = self.ctl(etcdctl(), args)
        # clientv3's zap warnings for retried calls are exempt (the issue).
        ra.err = "".join(l for l in ra.err.splitlines(keepends=True)
                         if not lib._RETRY_WARN.match(l.rstrip("\n")))
        self.assertEqual((ra.rc, ra.out), (rc, out), ra.describe())
        self.assertRegex(ra.err, err, ra.describe())
        rb = self.ctl(lib.detcdctl_binary(), args)
        same(self, ra, rb, " ".join(args))

    GET = ["get", "who", "--print-value-only"]

    def ignoring(self):
        return "^ignoring discovered insecure endpoint " \
            "\"http://a\\.detcd\\.test\\.:%d\"\n$" % self.pa

    def test_default_endpoint(self):
        self.check(self.GET, 0, "default\n", "^$")

    def test_http_records_kept_by_default(self):
        self.check(["--discovery-srv", "plain.detcd.test"] + self.GET, 0,
                   "A\n", "^$")
        self.check(["--discovery-srv", "plain.detcd.test",
                    "--insecure-discovery=true"] + self.GET, 0, "A\n", "^$")

    def test_http_records_dropped_then_tls_to_default_endpoint(self):
        """Nothing left: the default endpoint 127.0.0.1:2379, but over TLS
        (the SRV domain as server name makes the client config a TLS one),
        so D, which speaks http, cannot be reached; an explicit --endpoints
        is no different."""
        for extra in ([], ["--endpoints", "127.0.0.1:%d" % self.pa]):
            self.check(["--discovery-srv", "plain.detcd.test",
                        "--insecure-discovery=false", "--dial-timeout=2s",
                        "--command-timeout=2s"] +
                       extra + self.GET, 1, "",
                       self.ignoring()[:-1] +
                       "Error: context deadline exceeded\n$")

    def test_https_kept_and_checked_against_domain(self):
        self.check(["--discovery-srv", "tls.detcd.test",
                    "--insecure-discovery=false", "--cacert",
                    self.pki["ca"]] + self.GET, 0, "T\n", self.ignoring())
        self.check(["--discovery-srv", "tlsonly.detcd.test",
                    "--insecure-discovery=false", "--cacert",
                    self.pki["ca"]] + self.GET, 0, "T\n", "^$")

    def test_https_checked_against_host_name_by_default(self):
        """The certificate does not name t.detcd.test: without
        --insecure-discovery=false the dial fails."""
        self.check(["--discovery-srv", "tlsonly.detcd.test", "--cacert",
                    self.pki["ca"], "--dial-timeout=2s",
                    "--command-timeout=2s"] + self.GET, 1, "",
                   "context deadline exceeded")


class InsecureDiscoveryOnEtcd(InsecureDiscovery):
    """The same with real etcd 3.4 servers."""

    BINARY = "reference"


if __name__ == "__main__":
    lib.main()
