"""Helpers shared by the discovery tests (test_discovery_*.py): members
started without --initial-cluster, log line parsing, waiting for a process
to exit. Not a test file itself."""

import json
import os
import subprocess
import time

import cluster as it


def is_detcd(binary):
    return "detcd" in os.path.basename(binary)


class DiscoveryMember(it.Member):
    """A member that bootstraps by discovery: cluster.py's argv without
    --initial-cluster / --initial-cluster-token, plus `flags`."""

    def __init__(self, cluster, index, client_port, peer_port, flags,
                 name=None):
        super().__init__(cluster, index, client_port, peer_port)
        self.flags = list(flags)
        if name:
            self.name = name
            self.data_dir = os.path.join(cluster.dir, "%s-%d.etcd" %
                                         (name, index))
            self.log_path = os.path.join(cluster.dir, "%s-%d.log" %
                                         (name, index))

    def argv(self):
        a = super().argv()
        for flag in ("--initial-cluster", "--initial-cluster-token"):
            i = a.index(flag)
            del a[i:i + 2]
        # JSON log lines on both servers (etcd 3.4 defaults to capnslog).
        return a + ["--logger", "zap"] + self.flags


def discovery_cluster(test, binary, size, flags, names=None):
    """An unstarted it.Cluster of `size` DiscoveryMembers (closed after the
    test). names: optional per-member names (default m0, m1, ...)."""
    c = it.Cluster(binary, size=size)
    test._test_clusters.append(c)
    test.addCleanup(c.close)
    c.members = [
        DiscoveryMember(c, m.index, m.client_port, m.peer_port, flags,
                        name=names[m.index] if names else None)
        for m in c.members]
    return c


def start_all(c, timeout=30.0):
    """Starts every member at once (discovery makes each wait for the
    others), then waits until all are healthy."""
    for m in c.members:
        m.start()
    c.wait_healthy(timeout=timeout)


def wait_exit(member, timeout=30.0):
    """Waits (bounded) for a member that must fail to exit; returns its exit
    status (None if it is still running: then it is killed)."""
    try:
        return member.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        member.kill()
        return None


def log_records(text):
    """The JSON log lines of a member's output, as dicts."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def find_record(records, msg):
    for r in records:
        if r.get("msg") == msg:
            return r
    return None


def check_cluster_serves(test, c, want_names):
    """member list names the members; every member reports the same cluster
    and leader; a put through each member is read back through each."""
    r = c.ctl_ok(["member", "list", "-w", "json"])
    got = r.json()
    test.assertEqual(sorted(m.get("name", "") for m in got["members"]),
                     sorted(want_names))
    st = c.status()
    test.assertEqual(len(st), len(c.members))
    test.assertEqual(len({s["Status"]["header"]["cluster_id"] for s in st}), 1)
    test.assertEqual(len({s["Status"]["leader"] for s in st}), 1)
    for i, m in enumerate(c.members):
        c.ctl_ok(["put", "disc/k%d" % i, "v%d" % i], members=[m])
    for m in c.members:
        r = c.ctl_ok(["get", "disc/", "--prefix", "--print-value-only"],
                     members=[m])
        test.assertEqual(r.out.split(), ["v%d" % i
                                         for i in range(len(c.members))])
    return got


def wait_for(predicate, timeout, interval=0.1):
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(interval)
