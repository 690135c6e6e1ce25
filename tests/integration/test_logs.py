#!/usr/bin/env python3
"""Logs (issue 15 part 4), detcd next to etcd 3.4 (--logger zap):

- --log-format console (etcd 3.5) writes zap's console lines (ts, level,
  caller, message separated by tabs, the fields as JSON), and an unknown
  format is refused with etcd 3.5's text;
- --log-outputs with a file and stdout writes every line to both;
- a leader frozen (SIGSTOP) for longer than two heartbeat intervals logs
  etcd's "leader failed to send out heartbeat on time" warning once it runs
  again, with etcd's fields, on both servers;
- a linearizable read served by a follower while the leader is frozen takes
  longer than 100 ms and logs etcd's "apply request took too long" warning
  with the "read-only range " prefix and the request, on both servers; the
  slow-apply counter counts it on detcd;
- a put that waits 300 ms for its frozen followers is not a slow apply: no
  such warning for it on either server (etcd times a write's apply only);
- the initial election tick advance (etcd's adjustTicks): a single member
  fast-forwards 9 of 10 election ticks at start even with
  --initial-election-tick-advance=false; three members fast-forward 8 once
  both peers are connected, or log that they skip it with the flag off, on
  both servers (detcd also after all three restart together).

Run alone:  python3 test_logs.py --server build/detcd [-v]
"""

import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.request

import cluster
from cluster import CONFIG, ClusterTestCase


def zap_lines(text):
    """The JSON log lines of a member's log, parsed."""
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = predicate()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError("timed out waiting for " + what)


class LogFormats(ClusterTestCase):
    def test_console_format_and_outputs(self):
        c = self.new_cluster(CONFIG["server"], size=1, start=False,
                             label="detcd")
        path = os.path.join(c.dir, "member.log")
        c.extra_flags += ["--log-format", "console",
                          "--log-outputs", "stdout," + path]
        c.start()
        c.ctl_ok(["put", "a", "b"])
        def read():
            with open(path) as f:
                text = f.read()
            return "ready to serve client requests" in text and text
        file_text = wait_for(read, 30, "the log file")
        ready = [l for l in file_text.splitlines()
                 if "ready to serve client requests" in l]
        self.assertEqual(len(ready), 1, file_text)
        self.assertRegex(
            ready[0], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d{4})"
                      r"\tinfo\t[a-z_]+/[a-z_]+\.cc:\d+\t"
                      r"ready to serve client requests$")
        started = [l for l in file_text.splitlines()
                   if "\tstarting detcd\t" in l]
        self.assertEqual(len(started), 1, file_text)
        fields = json.loads(started[0].split("\t")[4])
        self.assertEqual(fields["name"], "m0")
        # stdout went to the member's log (the harness captures it).
        self.assertIn("ready to serve client requests",
                      c.members[0].log_text())

    def test_unknown_format_is_refused(self):
        r = subprocess.run([CONFIG["server"], "--log-format", "text"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=30)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"unknown log format: text, supported values json, "
                      b"console", r.stdout)


class SlowWarnings(ClusterTestCase):
    def clusters(self):
        flags = ("--logger", "zap")
        return {"etcd": self.new_cluster(CONFIG["reference"], size=3,
                                         label="etcd", extra_flags=flags),
                "detcd": self.new_cluster(CONFIG["server"], size=3,
                                          label="detcd", extra_flags=flags)}

    def test_late_heartbeat_and_slow_read(self):
        for name, c in self.clusters().items():
            c.ctl_ok(["put", "k", "v"])
            leader = c.leader()
            follower = next(m for m in c.members if m is not leader)
            # Freeze the leader for 300 ms (6 heartbeats, below the 500 ms
            # election timeout) while a follower serves a linearizable
            # read, which waits for the leader's ReadIndex.
            result = {}

            def read():
                result["r"] = cluster.run_etcdctl(
                    [follower.endpoint], ["get", "k"],
                    command_timeout="10s", timeout=30)

            leader.stop()
            t = threading.Thread(target=read)
            t.start()
            time.sleep(0.3)
            leader.cont()
            t.join(60)
            self.assertTrue(result["r"].ok, (name, result["r"].describe()))

            def warned(member, msg):
                return [l for l in zap_lines(member.log_text())
                        if l.get("msg", "").startswith(msg)]
            hb = wait_for(lambda: warned(
                leader, "leader failed to send out heartbeat on time"),
                30, "%s heartbeat warning" % name)[0]
            self.assertEqual(hb["level"], "warn")
            for key in ("to", "heartbeat-interval", "expected-duration",
                        "exceeded-duration"):
                self.assertIn(key, hb, (name, hb))
            self.assertEqual(hb["heartbeat-interval"], "50ms", name)
            self.assertEqual(hb["expected-duration"], "100ms", name)
            slow = wait_for(lambda: [
                l for l in warned(follower, "apply request took too long")
                if l.get("prefix") == "read-only range "],
                30, "%s slow read warning" % name)[0]
            self.assertEqual(slow["expected-duration"], "100ms", name)
            self.assertIn('key:"k"', slow["request"], (name, slow))
            self.assertIn("range_response_count:1", slow.get("response", ""),
                          (name, slow))
            if name == "detcd":
                with urllib.request.urlopen(follower.client_url + "/metrics",
                                            timeout=20) as f:
                    text = f.read().decode()
                m = re.search(r"^etcd_server_slow_apply_total (\S+)$", text,
                              re.M)
                self.assertGreaterEqual(float(m.group(1)), 1)
                with urllib.request.urlopen(leader.client_url + "/metrics",
                                            timeout=20) as f:
                    text = f.read().decode()
                m = re.search(r"^etcd_server_heartbeat_send_failures_total "
                              r"(\S+)$", text, re.M)
                self.assertGreaterEqual(float(m.group(1)), 1)


    def test_slow_commit_is_not_a_slow_apply(self):
        # etcd times a write's apply, not its wait for the commit: a put
        # whose followers are frozen for 300 ms answers late, and neither
        # server warns of it (detcd timed it from arrival to answer once).
        for name, c in self.clusters().items():
            c.ctl_ok(["put", "k", "v"])
            leader = c.leader()
            followers = [m for m in c.members if m is not leader]
            result = {}

            def put():
                result["r"] = cluster.run_etcdctl(
                    [leader.endpoint], ["put", "slowcommit", "v"],
                    command_timeout="10s", timeout=30)

            for f in followers:
                f.stop()
            start = time.monotonic()
            t = threading.Thread(target=put)
            t.start()
            time.sleep(0.3)
            for f in followers:
                f.cont()
            t.join(60)
            took = time.monotonic() - start
            self.assertTrue(result["r"].ok, (name, result["r"].describe()))
            self.assertGreater(took, 0.25, name)
            # A read through the same member after it: its own slow-read
            # warning, if any, is logged before this answer, as a put's
            # would have been.
            c.ctl_ok(["get", "slowcommit"], endpoints=[leader.endpoint])
            slow = [l for l in zap_lines(leader.log_text())
                    if l.get("msg", "").startswith(
                        "apply request took too long")
                    and "slowcommit" in l.get("request", "")
                    and "range" not in l.get("prefix", "")]
            self.assertEqual(slow, [], name)


class TickAdvance(ClusterTestCase):
    def starts(self, member):
        """The zap lines of each start of a member, in order."""
        return [zap_lines(part) for part in
                member.log_text().split("\n===== start #")[1:]]

    def advance_lines(self, member, start_no):
        starts = self.starts(member)
        if len(starts) < start_no:
            return []
        return [l for l in starts[start_no - 1]
                if "tick advance" in l.get("msg", "")
                or "fast-forwarding" in l.get("msg", "")]

    def test_single_member_always_advances(self):
        flags = ("--logger", "zap", "--initial-election-tick-advance=false")
        for name, binary in (("etcd", CONFIG["reference"]),
                             ("detcd", CONFIG["server"])):
            c = self.new_cluster(binary, size=1, label=name,
                                 extra_flags=flags)
            got = wait_for(lambda: self.advance_lines(c.members[0], 1), 30,
                           "%s tick advance line" % name)
            self.assertEqual(got[0]["msg"], "started as single-node; "
                             "fast-forwarding election ticks", (name, got))
            self.assertEqual(got[0]["forward-ticks"], 9, (name, got))
            self.assertEqual(got[0]["forward-duration"], "450ms", (name, got))
            self.assertEqual(got[0]["election-timeout"], "500ms", (name, got))

    def test_three_members(self):
        # etcd 3.4 decides from the members it knows when the check runs: on
        # a restart without a snapshot it may not have replayed them yet and
        # take itself for a single node, so its restarts are not compared.
        for advance in ("true", "false"):
            flags = ("--logger", "zap",
                     "--initial-election-tick-advance=" + advance)
            for name, binary in (("etcd", CONFIG["reference"]),
                                 ("detcd", CONFIG["server"])):
                c = self.new_cluster(binary, size=3, label=name,
                                     extra_flags=flags)
                c.ctl_ok(["put", "k", "v"])
                starts = [1]
                if name == "detcd":
                    for m in c.members:
                        m.terminate()
                    for m in c.members:
                        m.start()
                    c.wait_healthy()
                    starts.append(2)
                for start_no in starts:
                    for m in c.members:
                        what = (name, m.name, advance, start_no)
                        if advance == "false":
                            got = wait_for(
                                lambda: self.advance_lines(m, start_no), 30,
                                "skip line %s" % (what,))
                            self.assertEqual(
                                [l["msg"] for l in got],
                                ["skipping initial election tick advance"],
                                (what, got))
                            continue
                        got = wait_for(
                            lambda: [l for l in self.advance_lines(m, start_no)
                                     if l["msg"].startswith("initialized")],
                            30, "fast-forward line %s" % (what,))
                        self.assertEqual(
                            got[0]["msg"], "initialized peer connections; "
                            "fast-forwarding election ticks", (what, got))
                        self.assertEqual(got[0]["forward-ticks"], 8,
                                         (what, got))
                        self.assertEqual(got[0]["active-remote-members"], 2,
                                         (what, got))
                c.close()

if __name__ == "__main__":
    cluster.main()
