"""Golden comparison of detcdctl against etcdctl 3.4 (Python stdlib only).

Both sides run the same server binary (two fresh clusters of it, fed the
same commands in the same order): one side is driven by Debian's etcdctl,
the other by detcdctl. Their exit codes, stdout and stderr must be equal
byte for byte after masking what legitimately differs between two
clusters (etcdctl_mask.py: IDs, revisions, raft terms, timings, hashes,
ports, temp paths), plus two things only etcdctl prints:

  - clientv3's zap warnings for retried calls ("retrying of unary invoker
    failed"), which the issue exempts;
  - capnslog's timestamps ("2006-01-02 15:04:05.000000 W | pkg/flags:").

Command-line arguments (before unittest's):
  --detcdctl PATH    detcdctl under test [DETCD_DETCDCTL]; default
                     <build>/detcdctl next to --server
  --server PATH      the server both sides run (detcd, or /usr/bin/etcd for
                     the RPCs detcd does not serve yet)
"""

import json
import os
import re
import subprocess
import sys
import time
import unittest

import cluster
import compare
import etcdctl_mask as em

DETCDCTL = os.environ.get("DETCD_DETCDCTL", "")


def parse_detcdctl_arg():
    """Removes --detcdctl from sys.argv (cluster.main parses the rest)."""
    global DETCDCTL
    argv = []
    it = iter(sys.argv)
    for a in it:
        if a == "--detcdctl":
            DETCDCTL = next(it)
        elif a.startswith("--detcdctl="):
            DETCDCTL = a.split("=", 1)[1]
        else:
            argv.append(a)
    sys.argv = argv


def detcdctl_binary():
    if DETCDCTL:
        return os.path.abspath(DETCDCTL)
    server = cluster.CONFIG["server"]
    return os.path.join(os.path.dirname(server), "detcdctl")


# ---------------------------------------------------------------- running


def run_ctl(binary, endpoints, args, stdin=None, timeout=20.0, env=None,
            dial_timeout="2s", command_timeout="5s"):
    """cluster.run_etcdctl with the binary as a parameter."""
    argv = [binary, "--endpoints=" + ",".join(endpoints),
            "--dial-timeout=" + dial_timeout,
            "--command-timeout=" + command_timeout] + list(args)
    return run_argv(argv, stdin=stdin, timeout=timeout, env=env)


def run_argv(argv, stdin=None, timeout=20.0, env=None, cwd=None):
    if isinstance(stdin, str):
        stdin = stdin.encode()
    start = time.monotonic()
    try:
        p = subprocess.run(argv, input=stdin if stdin is not None else b"",
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=cluster.etcdctl_env(env), timeout=timeout,
                           preexec_fn=cluster._die_with_parent, cwd=cwd)
        return cluster.Result(argv, p.returncode, p.stdout, p.stderr,
                              time.monotonic() - start)
    except subprocess.TimeoutExpired as e:
        return cluster.Result(argv, None, e.stdout or b"", e.stderr or b"",
                              time.monotonic() - start, timed_out=True)


class CtlBackground(cluster.Background):
    """cluster.Background for a chosen binary."""

    def __init__(self, binary, endpoints, args, stdin_pipe=False, env=None):
        saved = cluster.CONFIG["etcdctl"]
        cluster.CONFIG["etcdctl"] = binary
        try:
            super().__init__(endpoints, args, stdin_pipe=stdin_pipe, env=env)
        finally:
            cluster.CONFIG["etcdctl"] = saved


def _cluster_etcdctl(self, args, stdin=None, members=None, endpoints=None,
                     **kw):
    eps = endpoints or self.endpoints(members)
    binary = getattr(self, "ctl_binary", None) or cluster.CONFIG["etcdctl"]
    flags = list(getattr(self, "ctl_flags", []))
    return run_ctl(binary, eps, flags + list(args), stdin=stdin, **kw)


def _cluster_background(self, args, members=None, stdin_pipe=False):
    binary = getattr(self, "ctl_binary", None) or cluster.CONFIG["etcdctl"]
    flags = list(getattr(self, "ctl_flags", []))
    return CtlBackground(binary, self.endpoints(members), flags + list(args),
                         stdin_pipe=stdin_pipe)


# Every cluster's etcdctl calls go through the cluster's own binary (the
# detcdctl side sets ctl_binary).
cluster.Cluster.etcdctl = _cluster_etcdctl
cluster.Cluster.background = _cluster_background


# ---------------------------------------------------------------- masking

_RETRY_WARN = re.compile(r'^\{"level":"warn".*"msg":"retrying of unary '
                         r'invoker failed".*\}$')
_CAPNS = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} ([A-Z]) \| ")

_orig_mask_stderr = em.mask_stderr


def mask_stderr(raw, args, ident, strict_revisions=False):
    lines = []
    for line in raw.decode("utf-8", "replace").splitlines(keepends=True):
        if _RETRY_WARN.match(line.strip()):
            continue
        lines.append(_CAPNS.sub(r"<ts> \1 | ", line))
    return _orig_mask_stderr("".join(lines).encode(), args, ident,
                             strict_revisions)


em.mask_stderr = mask_stderr

# Protobuf output of the auth commands: their response messages.
em.PB_SCHEMA.update({
    "Permission": {1: ("permType", "int"), 2: ("key", "bytes"),
                   3: ("range_end", "bytes")},
    "AuthRoleGetResponse": {1: ("header", "ResponseHeader"),
                            2: ("perm", "Permission")},
    "AuthRoleListResponse": {1: ("header", "ResponseHeader"),
                             2: ("roles", "string")},
    "AuthUserGetResponse": {1: ("header", "ResponseHeader"),
                            2: ("roles", "string")},
    "AuthUserListResponse": {1: ("header", "ResponseHeader"),
                             2: ("users", "string")},
    "HeaderOnly": {1: ("header", "ResponseHeader")},
})
_AUTH_PB = {("role", "get"): "AuthRoleGetResponse",
            ("role", "list"): "AuthRoleListResponse",
            ("user", "get"): "AuthUserGetResponse",
            ("user", "list"): "AuthUserListResponse"}
_orig_mask_protobuf = em.mask_protobuf


def mask_protobuf(raw, args, ident, strict_revisions):
    cmd = em._command(args)
    if cmd[:1] in (["role"], ["user"], ["lease"], ["move-leader"]):
        top = _AUTH_PB.get(tuple(cmd[:2]), "HeaderOnly")
        try:
            tree = em.pb_decode(raw, top)
        except em.PbError as e:
            return "undecodable %s (%s): %r" % (top, e, raw)
        return "\n".join(em._pb_lines(tree, ident, strict_revisions)) + "\n"
    return _orig_mask_protobuf(raw, args, ident, strict_revisions)


em.mask_protobuf = mask_protobuf

# Keys of etcd's concurrency recipes end in the session's lease ID (hex),
# which differs between two clusters.
_RECIPE_KEY = re.compile(r"/[0-9a-f]{6,16}\b")
_orig_mask_stdout = em.mask_stdout


def mask_stdout(raw, args, ident, strict_revisions=False):
    out = _orig_mask_stdout(raw, args, ident, strict_revisions)
    if em._command(args)[:1] == ["member"]:
        # %16x pads IDs with spaces, and members come in ID order: both
        # depend on the random IDs, not on the tool.
        out = re.sub(r"(Member|cluster) +", r"\1 ", out)
        out = re.sub(r'ETCD_INITIAL_CLUSTER="([^"]*)"',
                     lambda m: 'ETCD_INITIAL_CLUSTER="%s"' % ",".join(
                         sorted(m.group(1).split(","))), out)
    if em._command(args)[:1] in (["lock"], ["elect"]):
        out = _RECIPE_KEY.sub("/<lease>", out)
    return out


em.mask_stdout = mask_stdout


# ---------------------------------------------------------------- cases


class DetcdctlCase(compare.CompareCase):
    """Two clusters of one server; etcdctl drives the first, detcdctl the
    second. SERVER picks the server: "server" (--server) or "etcd"
    (--reference, for what detcd does not serve)."""

    SERVER = "server"

    @classmethod
    def server_binary(cls):
        key = "reference" if cls.SERVER == "etcd" else "server"
        return cluster.CONFIG[key]

    @classmethod
    def setUpClass(cls):
        if not os.access(detcdctl_binary(), os.X_OK):
            raise unittest.SkipTest("detcdctl %r not built (--detcdctl)" %
                                    detcdctl_binary())
        binary = cls.server_binary()
        ref = cls.new_class_cluster(binary, size=cls.SIZE,
                                    extra_flags=cls.FLAGS, label="etcdctl")
        srv = cls.new_class_cluster(binary, size=cls.SIZE,
                                    extra_flags=cls.FLAGS, label="detcdctl")
        srv.ctl_binary = detcdctl_binary()
        try:
            for m in ref.members + srv.members:
                m.start()
            ref.wait_healthy()
            srv.wait_healthy()
            cls.ref = compare.Side("etcd", ref)
            cls.srv = compare.Side("server", srv)
            cls.ref.register()
            cls.srv.register()
            for side in (cls.ref, cls.srv):
                side.strict = compare.STRICT_REVISIONS and \
                    cls.REVISIONS_COMPARABLE
        except BaseException:
            for c in (ref, srv):
                sys.stderr.write("\n" + c.log_report() + "\n")
            cls.tearDownClass()
            raise

    # -- commands that need no server

    def both_local(self, args, stdin=None, env=None, expect_rc=None,
                   cwd=None):
        """Runs `etcdctl args` and `detcdctl args` without the --endpoints
        and timeout flags run_ctl adds; compares them."""
        ra = run_argv([cluster.CONFIG["etcdctl"]] + list(args), stdin=stdin,
                      env=env, cwd=cwd)
        rb = run_argv([detcdctl_binary()] + list(args), stdin=stdin, env=env,
                      cwd=cwd)
        if expect_rc is not None and ra.rc != expect_rc:
            self.fail("etcdctl gave rc=%r (expected %r)\n%s" % (
                ra.rc, expect_rc, ra.describe()))
        self.assertSameOutput(args, ra, rb)
        return ra, rb


    def both_env(self, args, env_of, stdin=None, expect_rc=None, timeout=20.0,
                 keep_stderr=None):
        """Runs [binary] + args on each side with env_of(side) as extra
        environment (e.g. ETCDCTL_ENDPOINTS of that side's cluster)."""
        ra = run_argv([cluster.CONFIG["etcdctl"]] + list(args), stdin=stdin,
                      env=env_of(self.ref), timeout=timeout)
        rb = run_argv([detcdctl_binary()] + list(args), stdin=stdin,
                      env=env_of(self.srv), timeout=timeout)
        if expect_rc is not None and ra.rc != expect_rc:
            self.fail("etcdctl gave rc=%r (expected %r)\n%s" % (
                ra.rc, expect_rc, ra.describe()))
        if keep_stderr is not None:
            for r in (ra, rb):
                r.raw_err = b"".join(
                    l for l in r.raw_err.splitlines(keepends=True)
                    if keep_stderr(l.decode("utf-8", "replace")))
        self.assertSameOutput(args, ra, rb)
        return ra, rb


def endpoints_env(side, **extra):
    env = {"ETCDCTL_ENDPOINTS": ",".join(side.cluster.endpoints())}
    env.update(extra)
    return env


def command_paths():
    """Every command path etcdctl's help lists (runnable ones), plus the
    parents of subcommands."""
    r = run_argv([cluster.CONFIG["etcdctl"], "--help"])
    paths, in_cmds = [], False
    for line in r.out.splitlines():
        if line.startswith("COMMANDS:"):
            in_cmds = True
            continue
        if in_cmds:
            if not line.startswith("\t"):
                break
            words = line.strip().split("\t")[0].split()
            paths.append(words)
            if len(words) > 1 and words[:1] not in paths:
                paths.append(words[:1])
    return paths


def main():
    parse_detcdctl_arg()
    cluster.main()
