#!/usr/bin/env python3
"""detcdctl's shell completion, migrate, and where it deliberately differs
from etcdctl 3.4 (a clear error where etcdctl crashes):

- Completion: `completion bash|zsh|fish|powershell [--no-descriptions]`
  prints cobra's scripts byte for byte as etcdctl when run under the name
  etcdctl, and for the name detcdctl when run as detcdctl; the help pages
  of those commands; cobra's `__complete` / `__completeNoDesc` answers for
  many partial command lines, byte for byte; the bash script completing
  detcdctl's commands and flags in a real bash.
- Migrate: etcdctl's messages and exit codes for the cases detcdctl
  handles (no or missing data dir, empty WAL, transformer that cannot
  run); a detcd data dir has no v2 keys; an etcd data dir is refused with
  a clear error and left untouched.
- Promote: `member promote -w json` after a learner caught up: the member
  is promoted, then a clear error (exit 4) where etcdctl panics.

Run alone:
  python3 test_detcdctl_extras.py --server build/detcd \\
      --detcdctl build/detcdctl [-v] [-k name]
"""

import filecmp
import os
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

    def test_etcd_data_dir_refused_untouched(self):
        d = self._stopped_member(cluster.CONFIG["reference"])
        before = snapshot_tree(d)
        r = run([lib.detcdctl_binary(), "migrate", "--data-dir", d])
        waldir = os.path.join(d, "member", "wal")
        self.assertEqual(r.rc, 1, r.describe())
        self.assertEqual(r.out, "using default transformer\n")
        self.assertEqual(
            r.err, "Error: migrate: %s holds an etcd WAL; detcdctl does not "
            "read etcd's v2 store (use etcdctl 3.4's migrate on a stopped "
            "etcd member)\n" % waldir)
        self.assertEqual(before, snapshot_tree(d))


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

    def test_promote_json(self):
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
                            ["member", "promote", "%x" % j.member_id,
                             "-w", "json"])
            if r.rc != 1:
                break
            self.assertIn("in sync with leader", r.err, r.describe())
            self.assertLess(time.monotonic(), deadline, r.describe())
            time.sleep(0.2)
        self.assertEqual((r.rc, r.out, r.err),
                         (4, "", "Error: json not supported as output "
                          "format\n"), r.describe())
        members = c.ctl_ok(["member", "list", "-w", "json"],
                           members=c.members[:1]).json()["members"]
        learners = [m for m in members if m.get("isLearner")]
        self.assertEqual(learners, [], members)


if __name__ == "__main__":
    lib.main()
