#!/usr/bin/env python3
"""detcdctl against etcdctl 3.4, byte for byte (after masking), on the same
server: every command of test_etcdctl_compare.py (put/get/del/txn, watch,
lease, compaction, endpoint, member list, snapshot save, defrag, alarms,
limits, the etcd tour, move-leader), plus help pages, flag and argument
errors, ETCDCTL_* variables. See test_detcdctl_lib.py.

Run alone:
  python3 test_detcdctl_compare.py --server build/detcd \\
      --detcdctl build/detcdctl [-v] [-k name]
With --server /usr/bin/etcd it checks detcdctl against real etcd.
"""

import os
import re
import signal
import time
import unittest

import cluster
import compare
import test_detcdctl_lib as lib
import test_etcdctl_compare as tec


class KV(lib.DetcdctlCase, tec.KV):
    pass


class Watch(lib.DetcdctlCase, tec.Watch):
    pass


class Lease(lib.DetcdctlCase, tec.Lease):
    pass


class Compaction(lib.DetcdctlCase, tec.Compaction):
    pass


class AlarmFieldsError:
    """As etcdctl, except `alarm list|disarm -w fields` on etcd's alarm
    response (no header): etcdctl 3.4 crashes with a Go panic (exit 2),
    detcdctl gives a clear error (exit 4, ExitBadFeature); README.md."""

    FIELDS_ERROR = ("Error: fields not supported as output format for a "
                    "response without header\n")

    def both(self, args, **kw):
        if args[:1] == ["alarm"] and "fields" in args:
            kw["compare"] = False
            ra, rb = super().both(args, **kw)
            self.assertIn("panic: ", ra.err, ra.describe())
            self.assertEqual((rb.rc, rb.out, rb.err),
                             (4, "", self.FIELDS_ERROR), rb.describe())
            return ra, rb
        return super().both(args, **kw)


class Maintenance(AlarmFieldsError, lib.DetcdctlCase, tec.Maintenance):
    pass


class Alarm(AlarmFieldsError, lib.DetcdctlCase, tec.Alarm):
    pass


class Limits(lib.DetcdctlCase, tec.Limits):
    pass


class SmallLimits(lib.DetcdctlCase, tec.SmallLimits):
    pass


class Tour(lib.DetcdctlCase, tec.Tour):
    pass


class MoveLeader(lib.DetcdctlCase, tec.MoveLeader):
    pass


class CommandLine(lib.DetcdctlCase):
    """Help pages, usage errors, ETCDCTL_* variables: etcdctl's own
    behaviour, mostly before any server is contacted."""

    # Paths whose help pages are not compared (none: the completion
    # commands' pages match too; test_detcdctl_extras.py runs them).
    SKIP_PATHS = ()

    def test_help_pages(self):
        self.both_local([], expect_rc=0)
        self.both_local(["--help"], expect_rc=0)
        self.both_local(["help"], expect_rc=0)
        self.both_local(["help", "nonexistent"], expect_rc=0)
        self.both_local(["help", "get", "extra"], expect_rc=0)
        self.both_local(["--help", "get"], expect_rc=0)
        for path in lib.command_paths():
            if path[:1] in self.SKIP_PATHS:
                continue
            self.both_local(path + ["--help"], expect_rc=0)
            self.both_local(path + ["-h"], expect_rc=0)
            self.both_local(["help"] + path, expect_rc=0)
        # Unique prefixes select commands.
        self.both_local(["ge", "--help"], expect_rc=0)
        self.both_local(["lea", "gr", "--help"], expect_rc=0)

    def test_usage_errors(self):
        cases = [
            ["-w"], ["--endpoints"], ["---x"], ["--nope"], ["-x"],
            ["l"], ["frob"], ["get", "--foo", "a"], ["get", "-x", "a"],
            ["get", "--limit=x", "a"], ["get", "--limit"],
            ["get", "--prefix=maybe", "a"], ["ge", "a", "--hex=2"],
            ["get"], ["get", "-w=bad", "a"], ["get", "--consistency=x", "a"],
            ["get", "--sort-by=x", "a"], ["get", "--order=x", "a"],
            ["get", "a", "b", "--prefix"], ["get", "a", "--prefix",
                                              "--from-key"],
            ["put"], ["put", "a", "b", "--ignore-value"],
            ["put", "a", "b", "--lease=zz"], ["del"], ["del", "a", "b", "c"],
            ["lease", "grant"], ["lease", "grant", "x"],
            ["lease", "revoke", "zz"], ["lease", "timetolive"],
            ["lease", "keep-alive"], ["member", "add"],
            ["member", "add", "x"], ["member", "add", "x", "http://a:1"],
            ["member", "remove", "zz"], ["member", "update", "1"],
            ["member", "promote"], ["move-leader", "zz"], ["move-leader"],
            ["compaction", "x"], ["compaction"], ["snapshot", "save"],
            ["snapshot", "status"], ["snapshot", "restore"],
            ["snapshot", "status", "/nonexistent/snap.db"],
            ["watch"], ["watch", "a", "--"], ["txn", "a"],
            ["alarm", "list", "x"], ["alarm", "disarm", "x"],
            ["auth", "enable", "x"], ["auth", "disable", "x"],
            ["user", "add"], ["user", "delete"], ["user", "get"],
            ["user", "list", "x"], ["user", "passwd"],
            ["user", "grant-role", "u"], ["user", "revoke-role", "u"],
            ["role", "add"], ["role", "delete"], ["role", "get"],
            ["role", "list", "x"], ["role", "grant-permission", "r"],
            ["role", "grant-permission", "r", "foo", "k"],
            ["role", "grant-permission", "r", "read", "k", "z", "--prefix"],
            ["role", "revoke-permission", "r"],
            ["elect"], ["lock"], ["make-mirror"],
            ["check", "perf", "--load=q"], ["check", "datascale", "--load=q"],
            ["version", "--hex=x"], ["lease", "unknown-sub"],
        ]
        for args in cases:
            self.both_local(["--dial-timeout=1s", "--command-timeout=2s",
                             "--endpoints=127.0.0.1:1"] + args)

    def test_version(self):
        self.both_local(["version"], expect_rc=0)
        self.both_local(["version", "-w", "json"], expect_rc=0)

    def test_environment(self):
        eps = lib.endpoints_env
        self.both_env(["put", "env/k", "v"], eps, expect_rc=0)
        self.both_env(["get", "env/k"], eps, expect_rc=0)
        self.both_env(["get", "env/k"],
                      lambda s: eps(s, ETCDCTL_WRITE_OUT="json"), expect_rc=0)
        self.both_env(["get", "env/k"],
                      lambda s: eps(s, ETCDCTL_HEX="true"), expect_rc=0)
        self.both_env(["get", "env/k", "-w", "fields"],
                      lambda s: eps(s, ETCDCTL_DIAL_TIMEOUT="3s"), expect_rc=0)
        # A bad value is ignored (the default stays).
        self.both_env(["get", "env/k"],
                      lambda s: eps(s, ETCDCTL_DIAL_TIMEOUT="x"), expect_rc=0)
        # An unknown ETCDCTL_ variable is reported, the command still runs.
        self.both_env(["get", "env/k"],
                      lambda s: eps(s, ETCDCTL_FOO="1"), expect_rc=0)
        # A flag and its variable both set: etcdctl refuses (exit 1).
        self.both_env(["get", "env/k", "--write-out=json"],
                      lambda s: eps(s, ETCDCTL_WRITE_OUT="fields"),
                      expect_rc=1)
        self.both_env(["get", "env/k", "--endpoints=" +
                       self.ref.cluster.endpoints()[0]],
                      eps, expect_rc=1)
        # ETCDCTL_API=3 is accepted and not reported.
        self.both_env(["get", "env/k"],
                      lambda s: eps(s, ETCDCTL_API="3"), expect_rc=0)
        # --debug lists the client settings (then grpc-go's own debug log,
        # which is not etcdctl's and not compared).
        self.both_env(["get", "env/k", "--debug"], eps, expect_rc=0,
                      keep_stderr=lambda l: l.startswith("ETCDCTL_"))


def stop_with(bg, sig=signal.SIGINT, timeout=10.0):
    """Sends sig to a background etcdctl and returns its Result (rc is the
    exit code, or -signal if it died of it)."""
    if bg.proc.poll() is None:
        bg.proc.send_signal(sig)
    try:
        bg.proc.wait(timeout)
    except Exception:  # pylint: disable=broad-except
        pass
    return bg.stop()


class Members(lib.DetcdctlCase):
    """member add (voter refused on one started member; learner), list in
    every format, update, promote (learner not in sync), remove."""

    def _learn_member(self, side, r):
        m = re.search(r"Member\s+([0-9a-f]+) added", r.out)
        if m:
            side.ident.add_id(int(m.group(1), 16), "<member:new>")

    def test_member_changes(self):
        ports = {}
        for side in (self.ref, self.srv):
            ports[side.name] = cluster.free_ports(2)
            side.ident.add_port(ports[side.name][0], "<peer:new>")
            side.ident.add_port(ports[side.name][1], "<peer:upd>")
        url = {n: "http://127.0.0.1:%d" % p[0] for n, p in ports.items()}
        url2 = {n: "http://127.0.0.1:%d" % p[1] for n, p in ports.items()}

        def per_side(fmt):
            return ([a.format(url=url["etcd"], url2=url2["etcd"]) for a in fmt],
                    [a.format(url=url["server"], url2=url2["server"])
                     for a in fmt])

        a, b = per_side(["member", "add", "n1", "--learner",
                         "--peer-urls={url}"])
        ra, rb = self.both(a, srv_args=b, compare=False)
        self._learn_member(self.ref, ra)
        self._learn_member(self.srv, rb)
        self.assertSameOutput(a, ra, rb, b)
        for fmt in tec.FORMATS:
            self.both(["member", "list", "-w", fmt])
        ids = [s.cluster.etcdctl(["member", "list", "-w", "json"]).json()
               for s in (self.ref, self.srv)]
        new = []
        for doc in ids:
            new.append([m["ID"] for m in doc["members"] if not m.get("name")][0])
        a, b = per_side(["member", "update", "%x", "--peer-urls={url2}"])
        self.both([a[0], a[1], "%x" % new[0], a[3]],
                  srv_args=[b[0], b[1], "%x" % new[1], b[3]])
        self.both(["member", "list"])
        self.both(["member", "promote", "%x" % new[0]],
                  srv_args=["member", "promote", "%x" % new[1]], expect_rc=1)
        self.both(["member", "update", "%x" % new[0]],
                  srv_args=["member", "update", "%x" % new[1]], expect_rc=128)
        self.both(["member", "remove", "%x" % new[0]],
                  srv_args=["member", "remove", "%x" % new[1]])
        self.both(["member", "remove", "%x" % new[0]],
                  srv_args=["member", "remove", "%x" % new[1]], expect_rc=1)
        self.both(["member", "list", "-w", "json"])


class WatchExtras(lib.DetcdctlCase):
    """watch -- command with ETCD_WATCH_* variables, ETCDCTL_WATCH_KEY."""

    def test_watch_exec(self):
        self.watch_both(
            ["x1/", "--prefix", "--", "sh", "-c",
             'echo "EXEC $ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY '
             '$ETCD_WATCH_VALUE"'],
            [["put", "x1/a", "1"], ["put", "x1/b", "two words"],
             ["del", "x1/a"]],
            sync_key="x1/sync", end_key="x1/end",
            wait_text="EXEC \"PUT\" \"x1/end\"")

    def test_watch_bad_args(self):
        for args in (["watch", "a", "--"], ["watch", "a", "b", "--prefix"],
                     ["watch", "--rev=x", "a"]):
            self.both(args, expect_rc=None, timeout=5)

    def test_watch_env_key(self):
        procs = {}
        for side in (self.ref, self.srv):
            binary = getattr(side.cluster, "ctl_binary", None) or \
                cluster.CONFIG["etcdctl"]
            procs[side.name] = lib.CtlBackground(
                binary, side.cluster.endpoints(), ["watch", "--prefix"],
                env={"ETCDCTL_WATCH_KEY": "x2/"})
        try:
            for i in range(40):
                self.both(["put", "x2/k", "v%d" % i])
                if all(p.wait_for(lambda b: b"x2/k" in b, 0.25)
                       for p in procs.values()):
                    break
            self.both(["put", "x2/last", "end"])
            for p in procs.values():
                p.wait_for(lambda b: b"end" in b, 10)
                p.wait_quiet()
        finally:
            outs = [procs[n].stop() for n in ("etcd", "server")]
        # Both printed the same kind of events (the number of sync puts
        # seen before each watch started may differ).
        for r in outs:
            self.assertIn(b"PUT\nx2/last\nend\n", r.raw_out, r.describe())
        # Conflicting key and argument.
        self.both_env(["watch", "x2/"], lambda s: lib.endpoints_env(
            s, ETCDCTL_WATCH_KEY="x2/"), expect_rc=128)
        self.both_env(["watch"], lambda s: lib.endpoints_env(
            s, ETCDCTL_WATCH_RANGE_END="z"), expect_rc=128)


class WatchProgress(lib.DetcdctlCase):
    """Progress notifications: etcdctl 3.4 has no `watch --progress-notify`
    (3.5 added it; the issue lists it), so both refuse the flag alike; the
    interactive `progress` request prints "progress notify: <revision>" on
    both (real etcd: detcd does not answer progress requests yet)."""

    SERVER = "etcd"

    def test_progress(self):
        self.both(["watch", "--progress-notify", "pn/k"], expect_rc=1)
        self.both(["put", "pn/k", "v"])
        procs = {s.name: s.cluster.background(["watch", "-i"],
                                              stdin_pipe=True)
                 for s in (self.ref, self.srv)}
        try:
            for p in procs.values():
                p.write(b"watch pn/k\n")
            # A progress request before the watch stream exists is a no-op
            # in clientv3: ask until the answer comes.
            for p in procs.values():
                for _ in range(15):
                    p.write(b"progress\n")
                    if p.wait_for(lambda b: b"progress notify: " in b, 1):
                        break
                self.assertIn(b"progress notify: ", p.output())
        finally:
            outs = {n: stop_with(p) for n, p in procs.items()}
        for r in outs.values():
            self.assertRegex(r.out, r"^(progress notify: \d+\n)+$",
                             r.describe())
        self.assertEqual(outs["etcd"].err, outs["server"].err)


class LockElect(lib.DetcdctlCase):
    """lock (with a command, holding until SIGINT, contention) and elect
    (campaign, observe); etcdctl builds both on KV, watch and leases."""

    def _both_bg(self, args):
        return {s.name: s.cluster.background(args) for s in (self.ref,
                                                              self.srv)}

    def test_lock_command(self):
        self.both(["lock", "lk1", "--", "sh", "-c",
                   'echo "held $ETCD_LOCK_KEY"'], timeout=15)
        self.both(["lock", "lk1", "--ttl=5", "--", "false"], expect_rc=1,
                  timeout=15)
        self.both(["lock", "lk1", "--", "/nonexistent/cmd"], expect_rc=1,
                  timeout=15)
        self.both(["lock", "lk1", "--ttl=x"], expect_rc=1)

    def test_lock_hold_and_interrupt(self):
        holders = self._both_bg(["lock", "lk2"])
        for p in holders.values():
            self.assertTrue(p.wait_for(lambda b: b"lk2/" in b, 10),
                            p.output())
        waiters = self._both_bg(["lock", "lk2", "--", "echo", "second"])
        time.sleep(1)
        for p in waiters.values():
            self.assertNotIn(b"second", p.output())
        results = {n: stop_with(p) for n, p in holders.items()}
        self.assertSameOutput(["lock", "lk2"], results["etcd"],
                              results["server"])
        self.assertEqual(results["server"].rc, 0, results["server"].describe())
        for p in waiters.values():
            self.assertTrue(p.wait_for(lambda b: b"second" in b, 10),
                            p.output())
        results = {n: stop_with(p) for n, p in waiters.items()}
        self.assertSameOutput(["lock", "lk2"], results["etcd"],
                              results["server"])
        self.both(["get", "lk2", "--prefix", "--keys-only"])

    def test_elect(self):
        self.both(["elect", "el1"], expect_rc=128)
        self.both(["elect", "-l", "el1", "p"], expect_rc=128)
        observers = self._both_bg(["elect", "-l", "el1"])
        leaders = self._both_bg(["elect", "el1", "first"])
        for p in leaders.values():
            self.assertTrue(p.wait_for(lambda b: b"first" in b, 10),
                            p.output())
        for p in observers.values():
            self.assertTrue(p.wait_for(lambda b: b"first" in b, 10),
                            p.output())
        results = {n: stop_with(p) for n, p in leaders.items()}
        self.assertSameOutput(["elect", "el1"], results["etcd"],
                              results["server"])
        followers = self._both_bg(["elect", "el1", "second"])
        for p in followers.values():
            self.assertTrue(p.wait_for(lambda b: b"second" in b, 10),
                            p.output())
        for p in observers.values():
            self.assertTrue(p.wait_for(lambda b: b"second" in b, 10),
                            p.output())
            p.wait_quiet()
        results = {n: stop_with(p) for n, p in followers.items()}
        self.assertSameOutput(["elect", "el1"], results["etcd"],
                              results["server"])
        results = {n: stop_with(p) for n, p in observers.items()}
        self.assertSameOutput(["elect", "-l", "el1"], results["etcd"],
                              results["server"])


class LockElectOnEtcd(LockElect):
    SERVER = "etcd"


class Auth(lib.DetcdctlCase):
    """Users, roles, permissions and authentication, on detcd (AuthOnEtcd:
    the same on real etcd)."""

    def test_roles(self):
        b = self.both
        b(["role", "add", "r1"])
        b(["role", "add", "r1"], expect_rc=1)
        b(["role", "add", "r2", "-w", "json"])
        b(["role", "grant-permission", "r1", "read", "k1"])
        b(["role", "grant-permission", "r1", "readwrite", "p/", "--prefix"])
        b(["role", "grant-permission", "r1", "write", "z", "--from-key"])
        b(["role", "grant-permission", "r1", "READ", "a", "c"])
        b(["role", "grant-permission", "r1", "read", "", "--prefix"])
        b(["role", "grant-permission", "nobody", "read", "k"], expect_rc=1)
        for fmt in ("simple", "json", "fields", "protobuf"):
            b(["role", "get", "r1", "-w", fmt])
            b(["role", "list", "-w", fmt])
        b(["role", "get", "r1", "-w", "table"], expect_rc=4)
        b(["role", "revoke-permission", "r1", "k1"])
        b(["role", "revoke-permission", "r1", "p/", "--prefix"])
        b(["role", "revoke-permission", "r1", "z", "--from-key"])
        b(["role", "revoke-permission", "r1", "a", "c", "-w", "json"])
        b(["role", "revoke-permission", "r1", "k1"], expect_rc=1)
        b(["role", "get", "r1"])
        b(["role", "delete", "r2"])
        b(["role", "delete", "r2"], expect_rc=1)
        b(["role", "get", "missing"], expect_rc=1)

    def test_users_and_auth(self):
        b = self.both
        b(["user", "add", "u1", "--new-user-password=pw1"])
        b(["user", "add", "u2", "--interactive=false"], stdin="pw2\n")
        b(["user", "add", "u3:pw3", "-w", "json"])
        b(["user", "add", ":pw"], expect_rc=128)
        b(["user", "add", "u1", "--new-user-password=x"], expect_rc=1)
        b(["user", "add", "u4", "--no-password"])
        b(["role", "add", "ur"])
        b(["role", "grant-permission", "ur", "readwrite", "a/", "--prefix"])
        b(["user", "grant-role", "u1", "ur"])
        b(["user", "grant-role", "u1", "nope"], expect_rc=1)
        for fmt in ("simple", "json", "protobuf"):
            b(["user", "get", "u1", "-w", fmt])
            b(["user", "list", "-w", fmt])
        b(["user", "get", "u1", "-w", "fields"], expect_rc=4)
        b(["user", "get", "u1", "--detail"])
        b(["user", "get", "nobody"], expect_rc=1)
        b(["user", "passwd", "u2", "--interactive=false"], stdin="new2\n")
        b(["user", "revoke-role", "u1", "ur", "-w", "fields"])
        b(["user", "revoke-role", "u1", "ur"], expect_rc=1)
        b(["user", "grant-role", "u1", "ur"])
        b(["user", "delete", "u3"])
        b(["user", "delete", "u3"], expect_rc=1)
        # Authentication on.
        b(["user", "add", "root", "--new-user-password=rootpw"])
        b(["auth", "enable"])
        b(["auth", "enable"], expect_rc=1)  # now needs a user
        b(["put", "a/1", "v"], expect_rc=1)
        b(["--user=root:rootpw", "put", "a/1", "v"])
        b(["--user=root", "--password=rootpw", "get", "a/1"])
        b(["--user=u1:pw1", "get", "a/1"])
        b(["--user=u1:pw1", "put", "b/1", "v"], expect_rc=1)
        b(["--user=u1:wrong", "get", "a/1"], expect_rc=2)
        b(["--user=nobody:x", "get", "a/1"], expect_rc=2)
        b(["--user=u2:new2", "get", "a/1"], expect_rc=1)
        b(["--user=root:rootpw", "user", "list"])
        b(["--user=root:rootpw", "endpoint", "health"])
        b(["--user=root:rootpw", "auth", "disable"])
        b(["auth", "disable"])
        b(["get", "a/1"])


class AuthOnEtcd(Auth):
    SERVER = "etcd"


class Snapshot(lib.DetcdctlCase):
    """snapshot save, and status of the saved file: etcd's bolt files are
    read by detcdctl exactly as by etcdctl."""

    SERVER = "etcd"

    def test_save_and_status(self):
        for i in range(20):
            self.both(["put", "s/%d" % i, "v" * i])
        self.both(["del", "s/3"])
        paths = [os.path.join(s.cluster.dir, "snap.db")
                 for s in (self.ref, self.srv)]
        self.both(["snapshot", "save", "<p>"],
                  ref_args=["snapshot", "save", paths[0]],
                  srv_args=["snapshot", "save", paths[1]])
        for fmt in ("simple", "json", "table", "fields", "protobuf"):
            # Each tool reads the other side's file too (same bytes layout).
            ra = lib.run_argv([cluster.CONFIG["etcdctl"], "snapshot",
                               "status", paths[0], "-w", fmt])
            rb = lib.run_argv([lib.detcdctl_binary(), "snapshot", "status",
                               paths[0], "-w", fmt])
            self.assertEqual((ra.rc, ra.out, ra.err), (rb.rc, rb.out, rb.err),
                             "%s\n%s" % (ra.describe(), rb.describe()))
        self.both(["snapshot", "save", "<p>"], expect_rc=5,
                  ref_args=["snapshot", "save", "/nonexistent/x.db"],
                  srv_args=["snapshot", "save", "/nonexistent/x.db"])


class SnapshotOnDetcd(lib.DetcdctlCase):
    """detcd's snapshot file is etcd's backend database (a bolt file):
    etcdctl 3.4 and detcdctl report the same status for it in every format
    (etcdctl's runs bbolt's consistency check first), at the revision the
    member had."""

    def test_status_of_detcd_snapshot(self):
        if "detcd" not in os.path.basename(self.server_binary()):
            self.skipTest("the server is not detcd")
        for i in range(5):
            self.both(["put", "ds/%d" % i, "v%d" % i])
        self.both(["del", "ds/2"])
        path = os.path.join(self.srv.cluster.dir, "d.db")
        self.both(["snapshot", "save", "<p>"],
                  ref_args=["snapshot", "save",
                            os.path.join(self.ref.cluster.dir, "d.db")],
                  srv_args=["snapshot", "save", path])
        for fmt in ("simple", "json", "table", "fields", "protobuf"):
            ra = lib.run_argv([cluster.CONFIG["etcdctl"], "snapshot",
                               "status", path, "-w", fmt])
            rb = lib.run_argv([lib.detcdctl_binary(), "snapshot", "status",
                               path, "-w", fmt])
            # (etcdctl has no protobuf printer for it: both refuse alike.)
            self.assertEqual(ra.rc, 4 if fmt == "protobuf" else 0,
                             ra.describe())
            self.assertEqual((ra.rc, ra.out, ra.err), (rb.rc, rb.out, rb.err),
                             "%s\n%s" % (ra.describe(), rb.describe()))
        doc = lib.run_argv([cluster.CONFIG["etcdctl"], "snapshot", "status",
                            path, "-w", "json"]).json()
        get = self.srv.ctl(["get", "x", "-w", "json"]).json()
        self.assertEqual(doc["revision"], get["header"]["revision"])
        # 6 revisions in "key", and at least the member, the meta and auth
        # records around them.
        self.assertGreaterEqual(doc["totalKey"], 9)


class Failover(lib.DetcdctlCase):
    """A dead endpoint among the live one: reads and writes go to the live
    one; health and status report the dead one as etcdctl does."""

    def test_dead_endpoint(self):
        dead = "127.0.0.1:%d" % cluster.free_ports(1)[0]
        for side in (self.ref, self.srv):
            side.ident.add_port(int(dead.split(":")[1]), "<dead>")

        def eps(side):
            return [dead] + side.cluster.endpoints()
        for args, rc in ((["put", "f/k", "v"], 0), (["get", "f/k"], 0),
                         (["endpoint", "health"], 1),
                         (["endpoint", "health", "-w", "json"], 1),
                         (["endpoint", "status"], 1),
                         (["endpoint", "hashkv"], 1)):
            # Both sides at once: each waits out its dead endpoint.
            fa, fb = (compare._POOL.submit(side.ctl, args, endpoints=eps(side),
                                           command_timeout="2s")
                      for side in (self.ref, self.srv))
            ra, rb = fa.result(), fb.result()
            self.assertEqual(ra.rc, rc, ra.describe())
            self.assertSameOutput(args, ra, rb)
        fa, fb = (compare._POOL.submit(side.ctl, ["get", "f/k"],
                                       endpoints=[dead], command_timeout="1s")
                  for side in (self.ref, self.srv))
        self.assertSameOutput(["get", "f/k"], fa.result(), fb.result())


class MakeMirror(lib.DetcdctlCase):
    """make-mirror from a prefix to another prefix of the same cluster."""

    def test_mirror(self):
        self.both(["put", "src/a", "1"])
        self.both(["put", "src/b", "2"])
        procs = {}
        for side in (self.ref, self.srv):
            procs[side.name] = side.cluster.background(
                ["make-mirror", "--prefix=src/", "--dest-prefix=dst/",
                 side.cluster.endpoints()[0]])
        try:
            self.both(["put", "src/c", "3"])
            self.both(["del", "src/a"])
            self.both(["put", "src/end", "x"])
            deadline = time.time() + 15
            while time.time() < deadline:
                done = [s.ctl(["get", "dst/end"]).out for s in (self.ref,
                                                                 self.srv)]
                if all("dst/end" in d for d in done):
                    break
                time.sleep(0.2)
            self.both(["get", "dst/", "--prefix"])
        finally:
            outs = {n: p.stop() for n, p in procs.items()}
        self.assertEqual(outs["etcd"].out, outs["server"].out)
        self.both(["make-mirror", "--dest-prefix=x", "--no-dest-prefix",
                   "127.0.0.1:1"], expect_rc=128)


def openssl(*args, cwd):
    import subprocess
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_pki(d, name):
    """A CA, and a certificate for 127.0.0.1 usable by server and client."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", name + "-ca.key", "-out", name + "-ca.crt",
            "-subj", "/CN=" + name + "-ca", cwd=d)
    with open(os.path.join(d, name + "-ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                "extendedKeyUsage=serverAuth,clientAuth\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key",
            "-out", name + ".csr", "-subj", "/CN=" + name, cwd=d)
    openssl("x509", "-req", "-in", name + ".csr", "-CA", name + "-ca.crt",
            "-CAkey", name + "-ca.key", "-CAcreateserial", "-days", "2",
            "-out", name + ".crt", "-extfile", name + "-ext.cnf", cwd=d)
    return {k: os.path.join(d, name + ext) for k, ext in
            (("ca", "-ca.crt"), ("cert", ".crt"), ("key", ".key"))}


class Signals(lib.DetcdctlCase):
    """watch and lease keep-alive end on SIGINT as etcdctl does (killed by
    the signal: etcdctl does not catch it)."""

    def test_sigint(self):
        ids = self.grant(30)
        for args in (["watch", "sg/k"], ["lease", "keep-alive", "{lease}"]):
            a, b = self.lease_args(args, ids)
            procs = {"etcd": self.ref.cluster.background(a),
                     "server": self.srv.cluster.background(b)}
            if args[0] == "watch":
                self._sync_watch(procs, "sg/k", "simple", 10)
            else:
                for p in procs.values():
                    self.assertTrue(p.wait_for(lambda o: b"keepalived" in o,
                                               10), p.output())
            ra, rb = (stop_with(procs[n]) for n in ("etcd", "server"))
            self.assertEqual(ra.rc, rb.rc, "%s\n%s" % (ra.describe(),
                                                       rb.describe()))
            self.assertEqual(ra.err, rb.err)


class WatchFailover(lib.DetcdctlCase):
    """A watch given two members' endpoints keeps delivering, without loss
    or repeats, after the member it streams from is killed."""

    SIZE = 3

    def test_watch_survives_member_kill(self):
        # Leadership away from the member to kill, so the writes after the
        # kill need no election.
        for side in (self.ref, self.srv):
            ids = side.cluster.member_ids()
            deadline = time.time() + 15
            while side.cluster.leader().name != "m2":
                self.assertLess(time.time(), deadline, "cannot move leader")
                side.ctl(["move-leader", "%x" % ids["m2"]],
                         members=[side.cluster.leader()])
                time.sleep(0.1)
        procs = {}
        for side in (self.ref, self.srv):
            procs[side.name] = side.cluster.background(
                ["watch", "--prefix", "wf/"], members=side.cluster.members[:2])
        try:
            cuts = self._sync_watch(procs, "wf/sync", "simple", 15)
            for i in range(3):
                self.both(["put", "wf/a", "before-%d" % i])
            for side in (self.ref, self.srv):
                side.cluster.members[0].kill()
            m2 = {s.name: s.cluster.members[2:] for s in (self.ref, self.srv)}
            for i in range(3):
                ra = self.ref.ctl(["put", "wf/a", "after-%d" % i],
                                  members=m2["etcd"], command_timeout="10s")
                rb = self.srv.ctl(["put", "wf/a", "after-%d" % i],
                                  members=m2["server"], command_timeout="10s")
                self.assertEqual((ra.rc, rb.rc), (0, 0),
                                 ra.describe() + rb.describe())
            outs = {}
            for n, p in procs.items():
                ok = p.wait_for(lambda b: b"after-2" in b, 20)
                p.wait_quiet()
                outs[n] = p.stop()
                self.assertTrue(ok, outs[n].describe())
            expected = "".join("PUT\nwf/a\n%s\n" % v for v in
                               ["before-0", "before-1", "before-2", "after-0",
                                "after-1", "after-2"])
            for n, r in outs.items():
                self.assertEqual(r.out[cuts[n]:], expected, r.describe())
        finally:
            for side in (self.ref, self.srv):
                m = side.cluster.members[0]
                if not m.alive():
                    m.start()
            for p in procs.values():
                p.stop()


class Check(lib.DetcdctlCase):
    """check perf and check datascale: the same report, numbers aside (the
    progress bar is redrawn in time, so only its last state counts)."""

    @staticmethod
    def _report(r):
        text = r.out.split("\r")[-1]
        text = re.sub(r"\d+(\.\d+)?", "<n>", text)
        # etcdctl prints this line as its bar's goroutine may still redraw
        # (seen: the last redraw came after it and the split above lost
        # it), so it is compared apart (_compare).
        text = text.replace("Compacting with revision <n>\n", "")
        return r.rc, text, r.err

    def _compare(self, args, timeout):
        ra, rb = self.both(args, compare=False, timeout=timeout,
                           command_timeout="30s")
        self.assertEqual(self._report(ra), self._report(rb),
                         "%s\n%s" % (ra.describe(), rb.describe()))
        if "--auto-compact" in args:
            for r in (ra, rb):
                self.assertRegex(r.out, r"Compacting with revision \d+\n",
                                 r.describe())

    @unittest.skipUnless(cluster.LONG, "60 s of load: DETCD_IT_LONG=1 "
                         "(ctest -L long: integration_detcdctl_long)")
    def test_check_perf(self):
        self._compare(["check", "perf", "--load=s", "--auto-compact",
                       "--auto-defrag"], 180)

    def test_check_datascale(self):
        self._compare(["check", "datascale", "--load=s"], 300)


class Tls(lib.DetcdctlCase):
    """Client TLS: a server with https client URLs and client certificate
    authentication; --cacert/--cert/--key, --insecure-skip-tls-verify,
    --insecure-transport, and the configuration errors."""

    @classmethod
    def setUpClass(cls):
        import tempfile
        cls.pki_dir = tempfile.mkdtemp(prefix="detcd-it-pki-")
        cls.pki = make_pki(cls.pki_dir, "srv")
        cls.other = make_pki(cls.pki_dir, "other")
        cls.FLAGS = ("--cert-file=" + cls.pki["cert"],
                     "--key-file=" + cls.pki["key"],
                     "--trusted-ca-file=" + cls.pki["ca"],
                     "--client-cert-auth")
        cls.TLS = ["--cacert=" + cls.pki["ca"], "--cert=" + cls.pki["cert"],
                   "--key=" + cls.pki["key"]]
        orig_url = cluster.Member.client_url
        cluster.Member.client_url = property(
            lambda m: "https://127.0.0.1:%d" % m.client_port)
        orig_wait = cluster.Cluster.wait_healthy

        def wait_healthy(c, members=None, timeout=30.0):
            deadline = time.time() + timeout
            while time.time() < deadline:
                r = lib.run_ctl(cluster.CONFIG["etcdctl"], c.endpoints(),
                                cls.TLS + ["endpoint", "health"])
                if r.ok:
                    return
                time.sleep(0.2)
            raise cluster.ClusterError("TLS cluster not healthy:\n" +
                                       c.log_report())
        cluster.Cluster.wait_healthy = wait_healthy
        try:
            # Every etcdctl call of the framework carries the certificates.
            orig_init = cluster.Cluster.__init__

            def init(c, *a, **kw):
                orig_init(c, *a, **kw)
                c.ctl_flags = cls.TLS
            cluster.Cluster.__init__ = init
            try:
                super().setUpClass()
            finally:
                cluster.Cluster.__init__ = orig_init
        finally:
            cluster.Member.client_url = orig_url
            cluster.Cluster.wait_healthy = orig_wait

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        import shutil
        shutil.rmtree(cls.pki_dir, ignore_errors=True)

    def _both_flags(self, flags, args, expect_rc=None):
        """args with the given TLS flags instead of the framework's."""
        ra = lib.run_ctl(cluster.CONFIG["etcdctl"],
                         self.ref.cluster.endpoints(), flags + args,
                         command_timeout="2s")
        rb = lib.run_ctl(lib.detcdctl_binary(), self.srv.cluster.endpoints(),
                         flags + args, command_timeout="2s")
        if expect_rc is not None:
            self.assertEqual(ra.rc, expect_rc, ra.describe())
        self.assertSameOutput(flags + args, ra, rb)

    def test_tls(self):
        self.both(["put", "t/k", "v"])
        self.both(["get", "t/k", "-w", "json"])
        self.both(["endpoint", "health", "-w", "json"])
        self.both(["endpoint", "status", "-w", "table"])
        self.both(["member", "list"])
        self.watch_both(["t/", "--prefix"], [["put", "t/a", "1"]],
                        sync_key="t/s", end_key="t/e")
        p = self.pki
        self._both_flags(["--insecure-skip-tls-verify", "--cert=" + p["cert"],
                          "--key=" + p["key"], "--insecure-transport=false"],
                         ["get", "t/k"], expect_rc=0)
        self._both_flags(["--cert=" + p["cert"]], ["get", "t/k"],
                         expect_rc=128)
        self._both_flags(["--cacert=/nonexistent/ca.crt"], ["get", "t/k"],
                         expect_rc=128)
        self._both_flags(["--cert="], ["get", "t/k"], expect_rc=128)
        # Not trusted: the call waits for a connection that never comes.
        self._both_flags([], ["get", "t/k"], expect_rc=1)
        self._both_flags(["--cacert=" + self.other["ca"],
                          "--cert=" + p["cert"], "--key=" + p["key"]],
                         ["get", "t/k"], expect_rc=1)


if __name__ == "__main__":
    lib.main()
