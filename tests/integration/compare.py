"""Side-by-side helpers: the same etcdctl command against a reference etcd
cluster and a cluster of the server under test, outputs compared after
masking (etcdctl_mask.py).

DETCD_IT_STRICT_REVISIONS=1 compares revisions too (both clusters are fresh
and receive the same commands in the same order, so etcd semantics make them
equal); by default they are masked.
"""

import base64
import concurrent.futures
import difflib
import os
import re
import sys
import time

import cluster
import etcdctl_mask as em

STRICT_REVISIONS = os.environ.get("DETCD_IT_STRICT_REVISIONS", "") not in ("",
                                                                           "0")

# DETCD_IT_VERBOSE=1 prints every compared command with its masked output.
VERBOSE = os.environ.get("DETCD_IT_VERBOSE", "") not in ("", "0")

FIRST_DIFF_ONLY = os.environ.get("DETCD_IT_FIRST_DIFF_ONLY", "") not in ("",
                                                                        "0")

_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=2)


class Side:
    """One cluster plus the identities its outputs are masked with."""

    def __init__(self, name, c):
        self.name = name
        self.cluster = c
        self.ident = em.Identities()
        self.strict = STRICT_REVISIONS

    def register(self):
        """Learns member IDs, the cluster ID, ports and the temp dir."""
        for name, mid in self.cluster.member_ids().items():
            self.ident.add_id(mid, "<member:%s>" % name)
        self.ident.add_id(self.cluster.cluster_id(), "<cluster>")
        for m in self.cluster.members:
            self.ident.add_port(m.client_port, "<client:%s>" % m.name)
            self.ident.add_port(m.peer_port, "<peer:%s>" % m.name)
        self.ident.add_path(self.cluster.dir, "<dir>")

    def ctl(self, args, stdin=None, all_members=False, **kw):
        """etcdctl against this side. By default only the first member is
        given as endpoint, so headers name a predictable member."""
        if "members" not in kw and "endpoints" not in kw and not all_members:
            kw["members"] = self.cluster.members[:1]
        r = self.cluster.etcdctl(args, stdin=stdin, **kw)
        self._learn_leases(args, r)
        return r

    def _learn_leases(self, args, r):
        """Registers lease IDs that `lease grant` printed, so every grant
        gets the next label on its side."""
        if r.rc != 0 or em._command(args)[:2] != ["lease", "grant"]:
            return
        fmt = em.output_format(args)
        m = None
        if fmt == "simple":
            m = re.search(r"^lease ([0-9a-f]{16}) granted", r.out, re.M)
            if m:
                self.ident.add_lease(int(m.group(1), 16))
        elif fmt == "json":
            self.ident.add_lease(int(r.json()["ID"]))
        elif fmt == "fields":
            m = re.search(r'^"ID" : (\d+)$', r.out, re.M)
            if m:
                self.ident.add_lease(int(m.group(1)))

    def mask(self, args, r):
        return (r.rc,
                em.mask_stdout(r.raw_out, args, self.ident, self.strict),
                em.mask_stderr(r.raw_err, args, self.ident, self.strict))

    def member(self, name):
        for m in self.cluster.members:
            if m.name == name:
                return m
        raise KeyError(name)


def _indent(text):
    return "".join("  | " + line + "\n" for line in text.splitlines())


def first_difference(a, b, label_a, label_b, context=3, limit=24):
    """Unified diff of two texts, at most `limit` lines."""
    diff = list(difflib.unified_diff(a.splitlines(), b.splitlines(), label_a,
                                     label_b, n=context, lineterm=""))
    if len(diff) > limit:
        diff = diff[:limit] + ["... (%d more diff lines)" % (len(diff) - limit)]
    return "\n".join(diff)


class CompareCase(cluster.ClusterTestCase):
    """Base class: one reference cluster and one server cluster per class."""

    SIZE = 1
    FLAGS = ()
    # False when the two sides legitimately diverge in revisions (e.g. a
    # different number of puts fits under a quota).
    REVISIONS_COMPARABLE = True

    @classmethod
    def setUpClass(cls):
        ref = cls.new_class_cluster(cluster.CONFIG["reference"], size=cls.SIZE,
                                    extra_flags=cls.FLAGS, label="etcd")
        srv = cls.new_class_cluster(cluster.CONFIG["server"], size=cls.SIZE,
                                    extra_flags=cls.FLAGS, label="server")
        try:
            # Start both before waiting so their start-ups overlap.
            for m in ref.members + srv.members:
                m.start()
            ref.wait_healthy()
            srv.wait_healthy()
            cls.ref = Side("etcd", ref)
            cls.srv = Side("server", srv)
            cls.ref.register()
            cls.srv.register()
            for side in (cls.ref, cls.srv):
                side.strict = STRICT_REVISIONS and cls.REVISIONS_COMPARABLE
        except BaseException:
            import sys
            for c in (ref, srv):
                sys.stderr.write("\n" + c.log_report() + "\n")
            cls.tearDownClass()
            raise

    # -- differences

    def setUp(self):
        super().setUp()
        self._mismatches = []
        self.addCleanup(self._report_mismatches)

    def mismatch(self, message):
        """Records a difference between the sides. By default the test goes
        on (later commands still run on both sides, so every difference is
        reported) and fails at the end; DETCD_IT_FIRST_DIFF_ONLY=1 stops at
        the first."""
        if FIRST_DIFF_ONLY:
            self.fail(message)
        self._mismatches.append(message)

    def _report_mismatches(self):
        if self._mismatches:
            n = len(self._mismatches)
            self.fail("%d difference%s:\n\n%s" % (
                n, "" if n == 1 else "s",
                "\n\n".join("[%d] %s" % (i + 1, m)
                            for i, m in enumerate(self._mismatches))))

    # -- running

    def both(self, args, stdin=None, expect_rc=0, compare=True, ref_args=None,
             srv_args=None, ref_stdin=None, srv_stdin=None, **kw):
        """Runs etcdctl args on both sides (concurrently); checks the
        reference exit code (a test-writing error otherwise) and compares
        masked rc/stdout/stderr. ref_args/srv_args override args per side
        (for side-specific values such as lease IDs or paths)."""
        a_args = ref_args or args
        b_args = srv_args or args
        fa = _POOL.submit(self.ref.ctl, a_args,
                          ref_stdin if ref_stdin is not None else stdin, **kw)
        fb = _POOL.submit(self.srv.ctl, b_args,
                          srv_stdin if srv_stdin is not None else stdin, **kw)
        ra, rb = fa.result(), fb.result()
        if expect_rc is not None and ra.rc != expect_rc:
            self.fail("reference etcd gave rc=%r (expected %r): test bug or "
                      "environment problem\n%s" % (ra.rc, expect_rc,
                                                   ra.describe()))
        if compare:
            self.assertSameOutput(a_args, ra, rb, b_args)
        return ra, rb

    def assertSameOutput(self, args, ra, rb, b_args=None):
        ma = self.ref.mask(args, ra)
        mb = self.srv.mask(b_args or args, rb)
        if VERBOSE:
            sys.stderr.write("\n$ etcdctl %s\n  rc=%r\n%s%s" % (
                " ".join(args), ma[0], _indent(ma[1]), _indent(ma[2])))
        if ma == mb:
            return
        mb = (mb[0], _align_remaining_ttl(ma[1], mb[1]), mb[2])
        if ma == mb:
            return
        parts = ["etcdctl %s: outputs differ (etcd vs server)" % " ".join(args)]
        if ma[0] != mb[0]:
            parts.append("exit code: etcd %r, server %r" % (ma[0], mb[0]))
        if ma[1] != mb[1]:
            parts.append("stdout (masked):\n" + first_difference(
                ma[1], mb[1], "etcd", "server"))
        if ma[2] != mb[2]:
            parts.append("stderr (masked):\n" + first_difference(
                ma[2], mb[2], "etcd", "server"))
        parts.append("raw server result:\n" + rb.describe()[:1500])
        self.mismatch("\n".join(parts))

    def assertSameText(self, what, a, b):
        if a != b:
            self.mismatch("%s differs (etcd vs server):\n%s" % (
                what, first_difference(a, b, "etcd", "server")))

    def each(self, fn):
        """Runs fn(side) for both sides; returns (ref_value, srv_value)."""
        return fn(self.ref), fn(self.srv)

    # -- leases

    def grant(self, ttl, fmt="simple"):
        """lease grant on both sides, compared; registers the lease IDs in
        order so they mask to the same label. Returns (ref_id, srv_id)."""
        args = ["lease", "grant", str(ttl), "-w", fmt]
        self.both(args)
        return self.ref.ident.leases[-1], self.srv.ident.leases[-1]

    def lease_args(self, template, ids):
        """Per-side argument lists with {lease} replaced by the side's lease
        ID in hex (as etcdctl takes it)."""
        return ([a.replace("{lease}", "%x" % ids[0]) for a in template],
                [a.replace("{lease}", "%x" % ids[1]) for a in template])

    # -- watches

    def watch_both(self, watch_args, ops, sync_key=None, end_key=None,
                   fmt="simple", stdin_lines=None, expect_events=None,
                   wait_text=None, after_lines=None, after_text="",
                   timeout=10.0):
        """Starts `etcdctl watch ...` on both sides, makes sure the watch is
        established (by putting sync_key until its event shows, unless the
        watch replays history with --rev), runs ops (etcdctl arg lists,
        compared) on both sides, puts end_key and waits for its event, then
        compares what each watch printed after the sync event.
        after_lines are written to an interactive watch's stdin after the
        ops; then after_text is awaited on each side."""
        procs = {}
        cuts = {}
        for side in (self.ref, self.srv):
            procs[side.name] = side.cluster.background(
                ["watch"] + list(watch_args), stdin_pipe=stdin_lines is not None)
        try:
            for side in (self.ref, self.srv):
                cuts[side.name] = 0
                for line in stdin_lines or []:
                    procs[side.name].write(line + "\n")
            keys = [sync_key] if isinstance(sync_key, str) else sync_key
            for key in keys or []:
                cuts = self._sync_watch(procs, key, fmt, timeout)
            for op in ops:
                self.both(op)
            if after_lines:
                for side in (self.ref, self.srv):
                    p = procs[side.name]
                    for line in after_lines:
                        p.write(line + "\n")
                    ok = p.wait_for(lambda b: after_text.encode() in b[
                        cuts[side.name]:], timeout)
                    if not ok and side is self.ref:
                        self.fail("reference watch did not print %r:\n%s" % (
                            after_text, p.stop().describe()))
            markers = []
            if end_key is not None:
                self.both(["put", end_key, "watch-end-marker"])
                markers.append("watch-end-marker")
            if wait_text is not None:
                markers.append(wait_text)
            outs = {}
            for side in (self.ref, self.srv):
                p = procs[side.name]
                ok = p.wait_for(lambda b: all(_has_marker(b, m, fmt) >= 0
                                              for m in markers), timeout)
                if expect_events is not None:
                    ok = p.wait_for(lambda b: expect_events(b[cuts[side.name]:]),
                                    timeout) and ok
                p.wait_quiet()
                r = p.stop()
                if not ok and side is self.ref:
                    self.fail("reference watch did not show the expected "
                              "output:\n" + r.describe())
                outs[side.name] = r
        finally:
            for p in procs.values():
                p.stop()
        ra, rb = outs["etcd"], outs["server"]
        args = ["watch"] + list(watch_args)
        ma = em.mask_stdout(ra.raw_out[cuts["etcd"]:], args, self.ref.ident,
                            self.ref.strict)
        mb = em.mask_stdout(rb.raw_out[cuts["server"]:], args, self.srv.ident,
                            self.srv.strict)
        if VERBOSE:
            sys.stderr.write("\n$ etcdctl watch %s\n%s" % (
                " ".join(watch_args), _indent(ma)))
        if ma != mb:
            self.mismatch("etcdctl watch %s: events differ\n%s\nraw server:\n%s" % (
                " ".join(watch_args), first_difference(ma, mb, "etcd", "server"),
                rb.describe()[:3000]))
        ea = em.mask_stderr(ra.raw_err, args, self.ref.ident, self.ref.strict)
        eb = em.mask_stderr(rb.raw_err, args, self.srv.ident, self.srv.strict)
        self.assertSameText("watch stderr", ea, eb)
        return ra, rb

    def _sync_watch(self, procs, sync_key, fmt, timeout):
        """Puts sync_key = watch-sync-<n> on both sides in lockstep until
        both watches show it; returns each side's output offset just after
        that event. Both sides get the same number of sync puts, so their
        revisions stay in step (DETCD_IT_STRICT_REVISIONS)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._sync_count = getattr(self, "_sync_count", 0) + 1
            marker = "watch-sync-%d" % self._sync_count
            self.both(["put", sync_key, marker])
            # The whole sync event, not only its marker: etcdctl prints an
            # event in several writes, and a cut before its last line left
            # that line at the start of what is compared.
            seen = [procs[s.name].wait_for(
                lambda b: _sync_event_end(b, marker, fmt) >= 0, 0.5)
                for s in (self.ref, self.srv)]
            if not all(seen):
                continue
            return {side.name: _sync_event_end(procs[side.name].output(),
                                               marker, fmt)
                    for side in (self.ref, self.srv)}
        self.fail("watch not established on both sides within %.0fs:\n%s" % (
            timeout, "\n".join(p.stop().describe() for p in procs.values())))


def _has_marker(buf, marker, fmt):
    """Offset of marker's value in a watch output buffer, or -1."""
    if fmt == "json":
        return buf.find(base64.b64encode(marker.encode()))
    return buf.find(marker.encode())


def _sync_event_end(buf, marker, fmt):
    """Offset just after the watch output of the event whose value is
    marker (its line; in the fields format also the Lease line after the
    Value line), or -1 while that is not all printed yet."""
    pos = _has_marker(buf, marker, fmt)
    if pos < 0:
        return -1
    end = buf.find(b"\n", pos)
    if end >= 0 and fmt == "fields":
        end = buf.find(b"\n", end + 1)
    return -1 if end < 0 else end + 1


# A lease's remaining TTL, as timetolive prints it in each format. The two
# sides were granted their leases a moment apart and are asked concurrently,
# so on a loaded machine their whole seconds may differ by one or two.
_REMAINING_TTL = re.compile(
    r'("ttl":|remaining\(|"TTL" : )(-?\d+)')


def _align_remaining_ttl(ref, srv, slack=2):
    """srv with each remaining TTL replaced by ref's when they are within
    `slack` seconds (and the texts are otherwise the same shape)."""
    a = _REMAINING_TTL.findall(ref)
    b = _REMAINING_TTL.findall(srv)
    if not a or len(a) != len(b):
        return srv
    it = iter(a)

    def sub(m):
        prefix, ref_value = next(it)
        if prefix == m.group(1) and abs(int(ref_value) - int(m.group(2))) <= slack:
            return prefix + ref_value
        return m.group(0)
    return _REMAINING_TTL.sub(sub, srv)
