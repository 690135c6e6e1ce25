"""Real-process clusters for integration tests (Python 3 standard library only).

Starts members of an etcd-compatible server binary (real etcd or detcd) on
127.0.0.1 with static bootstrap, runs Debian's etcdctl (ETCDCTL_API=3) against
them, injects process faults (SIGKILL, SIGTERM, SIGSTOP/SIGCONT, restart) and
always cleans up: every member is started with PR_SET_PDEATHSIG so it dies with
the test process even when ctest kills it on timeout, every cluster is
registered for atexit, and ClusterTestCase stops clusters through addCleanup.

Member logs live in the cluster's temp dir; when a test fails, ClusterTestCase
prints the tail of every member's log (captured before the dir is removed).
Set DETCD_IT_KEEP=1 to keep temp dirs for inspection.

Command-line arguments shared by all test files (env fallbacks in brackets):
  --server PATH     binary under test [DETCD_SERVER]; default /usr/bin/etcd
  --reference PATH  reference etcd [DETCD_REFERENCE]; default /usr/bin/etcd
  --etcdctl PATH    etcdctl [DETCD_ETCDCTL]; default /usr/bin/etcdctl
  --goclient PATH   prebuilt Go client (test_goclient.py) [DETCD_GOCLIENT]
Remaining arguments go to unittest (e.g. -v, -k pattern, Class.test).
"""

import argparse
import atexit
import base64
import ctypes
import fcntl
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

DEFAULT_ETCD = "/usr/bin/etcd"
DEFAULT_ETCDCTL = "/usr/bin/etcdctl"

# Filled by parse_args(); tests read CONFIG after calling main().
CONFIG = {
    "server": os.environ.get("DETCD_SERVER", DEFAULT_ETCD),
    "reference": os.environ.get("DETCD_REFERENCE", DEFAULT_ETCD),
    "etcdctl": os.environ.get("DETCD_ETCDCTL", DEFAULT_ETCDCTL),
    "goclient": os.environ.get("DETCD_GOCLIENT", ""),
}

LONG = os.environ.get("DETCD_IT_LONG", "") not in ("", "0")
# Flags every cluster of the server under test gets (not the reference's):
# ctest runs a suite again with DETCD_IT_SERVER_FLAGS=--native-grpc=false.
SERVER_FLAGS = os.environ.get("DETCD_IT_SERVER_FLAGS", "").split()
KEEP = os.environ.get("DETCD_IT_KEEP", "") not in ("", "0")
LOG_TAIL_LINES = 40


def main():
    """Parses our flags, then runs unittest with the rest."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--server")
    parser.add_argument("--reference")
    parser.add_argument("--etcdctl")
    parser.add_argument("--goclient")
    ours, rest = parser.parse_known_args(sys.argv[1:])
    for key in CONFIG:
        value = getattr(ours, key)
        if value:
            CONFIG[key] = value
    for key in ("server", "reference", "etcdctl"):
        CONFIG[key] = os.path.abspath(CONFIG[key]) if os.sep in CONFIG[key] \
            else (shutil.which(CONFIG[key]) or CONFIG[key])
        if not os.access(CONFIG[key], os.X_OK):
            sys.exit("integration: %s binary %r is not executable" %
                     (key, CONFIG[key]))
    sys.stderr.write("integration: server=%s reference=%s etcdctl=%s\n" %
                     (CONFIG["server"], CONFIG["reference"], CONFIG["etcdctl"]))
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


# ---------------------------------------------------------------- processes

_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    # Runs in the child between fork and exec. The signal fires when the
    # thread that forked exits, so members are started from the main thread.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


# Ports handed out by free_ports() come from below the kernel's ephemeral
# range (outgoing connections take their local ports from that range, so a
# port found free there can be taken by a client before the member binds it)
# and are reserved across the test processes ctest runs in parallel: a lock
# file per port, held with flock until this process exits. Seen before this:
# two tests given the same port a few ms apart, one member dying with
# "bind: address already in use".
_PORT_LOCK_DIR = os.path.join(tempfile.gettempdir(), "detcd-it-ports")
_PORT_LOW = 10000
_held_ports = {}
_port_rng = random.SystemRandom()


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _reserve_port(port):
    """Takes `port` for this process if no other test process holds it and
    nothing listens on it; returns whether it did."""
    if port in _held_ports:
        return False
    os.makedirs(_PORT_LOCK_DIR, exist_ok=True)
    f = open(os.path.join(_PORT_LOCK_DIR, "%d.lock" % port), "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return False
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        f.close()
        return False
    finally:
        s.close()
    _held_ports[port] = f
    return True


def _bound_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def free_ports(n):
    """Returns n distinct free TCP ports on 127.0.0.1, reserved for this
    process (see _PORT_LOCK_DIR)."""
    high = _ephemeral_low()
    ports = []
    for _ in range(200 * n):
        if len(ports) == n:
            break
        if high - _PORT_LOW >= 1000:
            port = _port_rng.randrange(_PORT_LOW, high)
        else:
            port = _bound_port()
        if _reserve_port(port):
            ports.append(port)
    if len(ports) != n:
        raise RuntimeError("free_ports: found %d of %d free ports" %
                           (len(ports), n))
    return ports


def proc_status(pid):
    """Returns /proc/<pid>/status as a dict of str (e.g. VmRSS, VmHWM)."""
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                k, _, v = line.partition(":")
                out[k.strip()] = v.strip()
    except OSError:
        pass
    return out


def rss_kib(pid):
    """Resident set size of pid in KiB, or None if it is gone."""
    v = proc_status(pid).get("VmRSS")
    return int(v.split()[0]) if v else None


def b64(s):
    """A str as the JSON gateway's base64 bytes field."""
    return base64.b64encode(s.encode()).decode()


def gateway_post(conn, path, body):
    """One JSON gateway call on an http.client connection; the decoded
    answer, or AssertionError on a status other than 200."""
    conn.request("POST", path, json.dumps(body),
                 {"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 200:
        raise AssertionError("%s: HTTP %d %s" % (path, resp.status,
                                                 data[:300]))
    return json.loads(data)


class Result:
    """Outcome of one etcdctl run."""

    def __init__(self, argv, rc, raw_out, raw_err, elapsed, timed_out=False):
        self.argv = argv
        self.rc = rc
        self.raw_out = raw_out
        self.raw_err = raw_err
        self.out = raw_out.decode("utf-8", "replace")
        self.err = raw_err.decode("utf-8", "replace")
        self.elapsed = elapsed
        self.timed_out = timed_out

    @property
    def ok(self):
        return self.rc == 0

    def json(self):
        return json.loads(self.out)

    def __repr__(self):
        return "Result(rc=%r, out=%r, err=%r)" % (self.rc, self.out[-500:],
                                                  self.err[-500:])

    def describe(self):
        return "$ %s\nrc=%r%s\n--- stdout\n%s--- stderr\n%s" % (
            " ".join(self.argv), self.rc,
            " (timed out)" if self.timed_out else "", self.out, self.err)


def etcdctl_env(extra=None):
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("ETCDCTL_") or k.startswith("ETCD_"):
            del env[k]
    env["ETCDCTL_API"] = "3"
    if extra:
        env.update(extra)
    return env


def run_etcdctl(endpoints, args, stdin=None, timeout=20.0, env=None,
                dial_timeout="2s", command_timeout="5s"):
    """Runs etcdctl with the given endpoints; never raises on failure.

    stdin may be str or bytes. A run that exceeds timeout is killed and
    reported with rc=None and timed_out=True.
    """
    argv = [CONFIG["etcdctl"], "--endpoints=" + ",".join(endpoints),
            "--dial-timeout=" + dial_timeout,
            "--command-timeout=" + command_timeout] + list(args)
    if isinstance(stdin, str):
        stdin = stdin.encode()
    start = time.monotonic()
    try:
        p = subprocess.run(argv, input=stdin if stdin is not None else b"",
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=etcdctl_env(env), timeout=timeout,
                           preexec_fn=_die_with_parent)
        return Result(argv, p.returncode, p.stdout, p.stderr,
                      time.monotonic() - start)
    except subprocess.TimeoutExpired as e:
        return Result(argv, None, e.stdout or b"", e.stderr or b"",
                      time.monotonic() - start, timed_out=True)


class Background:
    """A long-running etcdctl (watch, lease keep-alive) whose output is
    collected by reader threads; wait_for() blocks (bounded) on output."""

    def __init__(self, endpoints, args, stdin_pipe=False, env=None):
        self.argv = [CONFIG["etcdctl"], "--endpoints=" + ",".join(endpoints),
                     "--dial-timeout=2s"] + list(args)
        self._out = bytearray()
        self._err = bytearray()
        self._cv = threading.Condition()
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=etcdctl_env(env), preexec_fn=_die_with_parent)
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self._out),
                             daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self._err),
                             daemon=True)]
        for t in self._threads:
            t.start()
        _LIVE_BACKGROUND.add(self)

    def _pump(self, pipe, buf):
        while True:
            chunk = pipe.read1(65536)
            if not chunk:
                break
            with self._cv:
                buf.extend(chunk)
                self._cv.notify_all()
        with self._cv:
            self._cv.notify_all()

    def write(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def output(self):
        with self._cv:
            return bytes(self._out)

    def wait_for(self, predicate, timeout=10.0):
        """Waits until predicate(stdout_bytes) is true; returns whether it
        became true before the timeout or the process ended."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while not predicate(bytes(self._out)):
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and
                                 not any(t.is_alive() for t in self._threads)):
                    return predicate(bytes(self._out))
                self._cv.wait(min(left, 0.2))
            return True

    def wait_quiet(self, quiet=0.25, timeout=5.0):
        """Waits until no new output arrived for `quiet` seconds (bounded):
        a watch prints an event in several writes, so seeing its key does
        not mean the event's last line is there yet."""
        deadline = time.monotonic() + timeout
        with self._cv:
            n = len(self._out)
            while time.monotonic() < deadline:
                self._cv.wait(quiet)
                if len(self._out) == n:
                    return True
                n = len(self._out)
        return False

    def stop(self):
        """Kills the process and returns its Result (rc is the exit status,
        or -SIGKILL when we had to kill it)."""
        if self.proc.poll() is None:
            self.proc.kill()
        rc = self.proc.wait()
        for t in self._threads:
            t.join(5)
        _LIVE_BACKGROUND.discard(self)
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f:
                try:
                    f.close()
                except OSError:
                    pass
        return Result(self.argv, rc, bytes(self._out), bytes(self._err), 0.0)


_LIVE_BACKGROUND = set()
_LIVE_CLUSTERS = set()


def _cleanup_all():
    for b in list(_LIVE_BACKGROUND):
        try:
            b.stop()
        except Exception:  # pylint: disable=broad-except
            pass
    for c in list(_LIVE_CLUSTERS):
        try:
            c.close()
        except Exception:  # pylint: disable=broad-except
            pass


atexit.register(_cleanup_all)


def _on_term(signum, _frame):
    _cleanup_all()
    os._exit(128 + signum)


signal.signal(signal.SIGTERM, _on_term)


# ---------------------------------------------------------------- cluster

class Member:
    def __init__(self, cluster, index, client_port, peer_port):
        self.cluster = cluster
        self.index = index
        self.name = "m%d" % index
        self.client_port = client_port
        self.peer_port = peer_port
        self.data_dir = os.path.join(cluster.dir, self.name + ".etcd")
        self.log_path = os.path.join(cluster.dir, self.name + ".log")
        self.proc = None
        self.starts = 0
        self.stopped = False  # SIGSTOPped
        # Started and not killed or terminated by the test since: a member
        # expected to be up, which wait_healthy() checks even if it exited.
        self.expect_up = False

    @property
    def client_url(self):
        return "http://127.0.0.1:%d" % self.client_port

    @property
    def peer_url(self):
        return "http://127.0.0.1:%d" % self.peer_port

    @property
    def endpoint(self):
        return "127.0.0.1:%d" % self.client_port

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def argv(self):
        c = self.cluster
        args = [
            c.binary,
            "--name", self.name,
            "--data-dir", self.data_dir,
            "--listen-client-urls", self.client_url,
            "--advertise-client-urls", self.client_url,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", c.initial_cluster(),
            "--initial-cluster-token", c.token,
            "--initial-cluster-state", "new",
            "--heartbeat-interval", str(c.heartbeat_ms),
            "--election-timeout", str(c.election_ms),
        ]
        return args + list(c.extra_flags)

    def start(self):
        assert not self.alive(), "%s already running" % self.name
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(("\n===== start #%d: %s\n" % (self.starts, " ".join(self.argv())))
                  .encode())
        log.flush()
        self.proc = subprocess.Popen(
            self.argv(), stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, cwd=self.cluster.dir,
            preexec_fn=_die_with_parent)
        log.close()
        self.stopped = False
        self.expect_up = True
        self.start_time = time.monotonic()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def kill(self):
        """kill -9 and reap."""
        if self.proc is None:
            return None
        self.expect_up = False
        if self.proc.poll() is None:
            self.proc.kill()
        rc = self.proc.wait()
        self.stopped = False
        return rc

    def terminate(self, timeout=10.0):
        """SIGTERM, wait (bounded), SIGKILL if it does not exit."""
        if self.proc is None:
            return None
        self.expect_up = False
        if self.stopped:
            self.cont()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()

    def stop(self):
        """SIGSTOP (freeze)."""
        self.signal(signal.SIGSTOP)
        self.stopped = True

    def cont(self):
        self.signal(signal.SIGCONT)
        self.stopped = False

    def restart(self, hard=True):
        if hard:
            self.kill()
        else:
            self.terminate()
        self.start()

    def rss_kib(self):
        return rss_kib(self.pid) if self.alive() else None

    def log_tail(self, n=LOG_TAIL_LINES):
        try:
            with open(self.log_path, "rb") as f:
                data = f.read()
        except OSError:
            return "(no log)"
        lines = data.decode("utf-8", "replace").splitlines()
        return "\n".join(lines[-n:])

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


class ClusterError(Exception):
    pass


class Cluster:
    """N members of one binary on 127.0.0.1 with a static --initial-cluster."""

    def __init__(self, binary, size=1, extra_flags=(), heartbeat_ms=50,
                 election_ms=500, label=None):
        self.binary = binary
        self.size = size
        self.extra_flags = list(extra_flags)
        if binary == CONFIG["server"] and binary != CONFIG["reference"]:
            self.extra_flags += SERVER_FLAGS
        self.heartbeat_ms = heartbeat_ms
        self.election_ms = election_ms
        self.label = label or os.path.basename(binary)
        self.dir = tempfile.mkdtemp(prefix="detcd-it-%s-" % self.label)
        self.token = "it-" + os.path.basename(self.dir)
        ports = free_ports(2 * size)
        self.members = [Member(self, i, ports[2 * i], ports[2 * i + 1])
                        for i in range(size)]
        self.closed = False
        self.saved_logs = None
        _LIVE_CLUSTERS.add(self)

    def initial_cluster(self):
        return ",".join("%s=%s" % (m.name, m.peer_url) for m in self.members)

    def endpoints(self, members=None):
        return [m.endpoint for m in (members or self.members)]

    def start(self, timeout=30.0):
        for m in self.members:
            m.start()
        self.wait_healthy(timeout=timeout)
        return self

    def wait_healthy(self, members=None, timeout=30.0):
        """Waits (bounded) until `endpoint health` succeeds on each member.

        By default, every member started and not stopped by the test since
        (a member that died on its own, e.g. on a port taken, is an error,
        not skipped). Raises ClusterError with the members' log tails when a
        member exits or the deadline passes."""
        members = members or [m for m in self.members
                              if m.alive() or m.expect_up]
        deadline = time.monotonic() + timeout
        pending = list(members)
        last = None
        while pending:
            for m in list(pending):
                if not m.alive():
                    raise ClusterError("%s (%s) exited with %r while waiting "
                                       "for health\n%s" % (
                                           m.name, self.label, m.proc.returncode,
                                           m.log_tail()))
                r = run_etcdctl([m.endpoint], ["endpoint", "health"],
                                timeout=5.0, dial_timeout="1s",
                                command_timeout="2s")
                last = r
                if r.ok:
                    pending.remove(m)
            if not pending:
                break
            if time.monotonic() > deadline:
                raise ClusterError(
                    "members %s of %s not healthy after %.0fs; last: %s\n%s" % (
                        [m.name for m in pending], self.label, timeout,
                        last and last.describe(),
                        "\n".join("--- %s\n%s" % (m.name, m.log_tail())
                                  for m in pending)))
            time.sleep(0.1)

    def etcdctl(self, args, stdin=None, members=None, endpoints=None, **kw):
        eps = endpoints or self.endpoints(members)
        return run_etcdctl(eps, args, stdin=stdin, **kw)

    def ctl_ok(self, args, **kw):
        """etcdctl that must succeed; returns the Result."""
        r = self.etcdctl(args, **kw)
        if not r.ok:
            raise ClusterError("etcdctl failed on %s:\n%s" % (self.label,
                                                             r.describe()))
        return r

    def background(self, args, members=None, stdin_pipe=False):
        return Background(self.endpoints(members), args, stdin_pipe=stdin_pipe)

    def status(self, members=None, timeout=10.0):
        """`endpoint status -w json` per live member: list of dicts with
        Endpoint and Status (as etcdctl prints them)."""
        members = members or [m for m in self.members
                              if m.alive() and not m.stopped]
        r = self.etcdctl(["endpoint", "status", "-w", "json"], members=members,
                         timeout=timeout)
        if not r.out.strip():
            return []
        return json.loads(r.out)

    def member_ids(self):
        """name -> member ID (int), from `member list -w json`."""
        r = self.ctl_ok(["member", "list", "-w", "json"],
                        members=[m for m in self.members if m.alive()
                                 and not m.stopped][:1])
        return {m.get("name", ""): int(m["ID"]) for m in r.json()["members"]}

    def cluster_id(self):
        r = self.ctl_ok(["member", "list", "-w", "json"],
                        members=[m for m in self.members if m.alive()
                                 and not m.stopped][:1])
        return int(r.json()["header"]["cluster_id"])

    def leader(self, timeout=15.0, exclude=()):
        """The member that live members agree is leader (bounded wait)."""
        deadline = time.monotonic() + timeout
        ids = None
        while True:
            try:
                if ids is None:
                    ids = {v: k for k, v in self.member_ids().items()}
                st = self.status()
                leaders = {int(s["Status"]["leader"]) for s in st}
                if len(leaders) == 1 and len(st) > 0:
                    lid = leaders.pop()
                    name = ids.get(lid)
                    for m in self.members:
                        if m.name == name and m.alive() and m not in exclude:
                            return m
            except (ClusterError, ValueError, KeyError):
                pass
            if time.monotonic() > deadline:
                raise ClusterError("no agreed leader in %s after %.0fs" %
                                   (self.label, timeout))
            time.sleep(0.1)

    def save_logs(self):
        self.saved_logs = [(m.name, m.log_tail()) for m in self.members]

    def log_report(self):
        logs = self.saved_logs
        if logs is None:
            logs = [(m.name, m.log_tail()) for m in self.members]
        return "\n".join("----- %s %s (%s) log tail:\n%s" % (
            self.label, name, self.binary, tail) for name, tail in logs)

    def close(self):
        if self.closed:
            return
        self.closed = True
        for m in self.members:
            try:
                if m.stopped:
                    m.cont()
                m.kill()
            except OSError:
                pass
        self.save_logs()
        if KEEP:
            sys.stderr.write("integration: kept %s\n" % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)
        _LIVE_CLUSTERS.discard(self)


class ClusterTestCase(unittest.TestCase):
    """TestCase that owns clusters: they are closed after each test (or
    class), and on failure the tail of each member's log is printed."""

    _class_clusters = []

    @classmethod
    def new_class_cluster(cls, binary, **kw):
        c = Cluster(binary, **kw)
        if "_class_clusters" not in cls.__dict__:
            cls._class_clusters = []
        cls._class_clusters.append(c)
        return c

    @classmethod
    def tearDownClass(cls):
        for c in cls._class_clusters:
            c.close()
        cls._class_clusters = []

    def new_cluster(self, binary, start=True, **kw):
        c = Cluster(binary, **kw)
        self._test_clusters.append(c)
        self.addCleanup(c.close)
        if start:
            c.start()
        return c

    def run(self, result=None):
        self._test_clusters = []
        before = (len(result.failures) + len(result.errors)) if result else 0
        out = super().run(result)
        res = result or out
        if res is not None and len(res.failures) + len(res.errors) > before:
            for c in self._test_clusters + list(type(self)._class_clusters):
                sys.stderr.write("\n" + c.log_report() + "\n")
        return out


# ---------------------------------------------------------------- load

class Writer(threading.Thread):
    """Puts prefix<n> = value<n> through etcdctl (given all endpoints), one
    process per put, up to max_puts or until stop(). Records which puts were
    acknowledged (rc 0) and which failed (outcome unknown: the put may or may
    not have been applied)."""

    def __init__(self, endpoints, prefix="load/", max_puts=5000,
                 command_timeout="3s", start_index=0):
        super().__init__(daemon=True)
        self.endpoints = list(endpoints)
        self.prefix = prefix
        self.max_puts = max_puts
        self.command_timeout = command_timeout
        self.next_index = start_index
        self.acked = {}
        self.failed = {}
        self.errors = []
        self._stop_event = threading.Event()
        self._lock = threading.Lock()

    @staticmethod
    def value(i):
        return "value-%d" % i

    def key(self, i):
        return "%s%06d" % (self.prefix, i)

    def run(self):
        n = 0
        while not self._stop_event.is_set() and n < self.max_puts:
            i = self.next_index
            self.next_index += 1
            n += 1
            k, v = self.key(i), self.value(i)
            r = run_etcdctl(self.endpoints, ["put", k, v], timeout=15.0,
                            dial_timeout="1s",
                            command_timeout=self.command_timeout)
            with self._lock:
                if r.ok:
                    self.acked[k] = v
                else:
                    self.failed[k] = v
                    if len(self.errors) < 20:
                        self.errors.append(r.err.strip()[-300:])

    def acked_count(self):
        with self._lock:
            return len(self.acked)

    def wait_acked(self, n, timeout):
        """Waits until at least n puts were acknowledged; returns whether."""
        deadline = time.monotonic() + timeout
        while self.acked_count() < n:
            if time.monotonic() > deadline or not self.is_alive():
                return self.acked_count() >= n
            time.sleep(0.05)
        return True

    def stop(self):
        self._stop_event.set()
        self.join(60)


def read_prefix(endpoints, prefix, serializable=False, timeout=60.0):
    """All keys under prefix as {key: value} (str), via `get -w json`;
    raises ClusterError if etcdctl fails."""
    import base64
    args = ["get", prefix, "--prefix", "-w", "json"]
    if serializable:
        args.append("--consistency=s")
    r = run_etcdctl(endpoints, args, timeout=timeout, command_timeout="30s")
    if not r.ok:
        raise ClusterError("read of %s failed:\n%s" % (prefix, r.describe()))
    doc = json.loads(r.out)
    return {base64.b64decode(kv["key"]).decode():
            base64.b64decode(kv.get("value", "")).decode()
            for kv in doc.get("kvs", [])}


# ---------------------------------------------------------------- Go client

GOCLIENT_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            "goclient", "main.go")


def go_env(gocache):
    """Environment for an offline GOPATH-mode build against Debian's
    /usr/share/gocode (golang-etcd-server-dev and its dependencies)."""
    env = dict(os.environ)
    env.update({"GOPATH": "/usr/share/gocode", "GO111MODULE": "off",
                "GOCACHE": gocache, "GOPROXY": "off", "GOFLAGS": "",
                "CGO_ENABLED": "0"})
    return env


def build_goclient(out_path, gocache=None, timeout=600):
    """Builds goclient/main.go to out_path; returns (ok, combined output)."""
    go = shutil.which("go") or ("/usr/bin/go" if os.path.exists("/usr/bin/go")
                                else None)
    if go is None:
        return False, "go not found (apt-get install golang-go)"
    gocache = gocache or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
        "detcd-it-gocache")  # shared with ctest's build (CMakeLists.txt)
    os.makedirs(gocache, exist_ok=True)
    p = subprocess.run([go, "build", "-o", out_path, GOCLIENT_SRC],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       env=go_env(gocache), timeout=timeout,
                       cwd=os.path.dirname(GOCLIENT_SRC))
    return p.returncode == 0, p.stdout.decode("utf-8", "replace")


def goclient_binary():
    """CONFIG['goclient'] if given, else a build cached under
    $XDG_CACHE_HOME (or ~/.cache)/detcd-it-goclient. Raises ClusterError
    with the compiler output when the build fails."""
    if CONFIG["goclient"]:
        # ctest builds it in a fixture test (integration_goclient_build).
        if not os.access(CONFIG["goclient"], os.X_OK):
            raise ClusterError("Go client %s was not built (see the "
                               "integration_goclient_build test)" %
                               CONFIG["goclient"])
        return CONFIG["goclient"]
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME") or
                         os.path.expanduser("~/.cache"), "detcd-it-goclient")
    out = os.path.join(cache, "goclient")
    if not (os.path.exists(out) and
            os.path.getmtime(out) >= os.path.getmtime(GOCLIENT_SRC)):
        ok, text = build_goclient(out)
        if not ok:
            raise ClusterError("building the Go client failed:\n" + text)
    CONFIG["goclient"] = out
    return out


def run_goclient(args, timeout=180):
    argv = [goclient_binary()] + list(args)
    start = time.monotonic()
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=timeout, preexec_fn=_die_with_parent)
        return Result(argv, p.returncode, p.stdout, p.stderr,
                      time.monotonic() - start)
    except subprocess.TimeoutExpired as e:
        return Result(argv, None, e.stdout or b"", e.stderr or b"",
                      time.monotonic() - start, timed_out=True)
