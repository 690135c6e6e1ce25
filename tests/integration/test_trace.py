#!/usr/bin/env python3
"""--trace-file (issue 15 part 5): a 3-member detcd writes each member's
raft / WAL / apply / request timeline as Chrome trace JSON, the simulator's
event shapes (harness/trace.h: pid, tid, ts and dur in microseconds, ph "X"
spans and "i" instants, args.detail, thread_name metadata):

- while the member runs, the file is the array form without its closing
  bracket (what Perfetto and chrome://tracing load), one event per line;
- after a clean stop (SIGTERM) it is complete JSON;
- it holds the leader election, applied-index steps, WAL fsync spans and a
  span per gRPC call (KV/Put with the key, KV/Range) on request tracks.

Run alone:  python3 test_trace.py --server build/detcd [-v]
"""

import json
import os
import time

import cluster
from cluster import CONFIG, ClusterTestCase


def events(doc):
    return [e for e in doc if e.get("ph") in ("X", "i")]


class TraceFileTest(ClusterTestCase):
    def test_timeline(self):
        c = self.new_cluster(CONFIG["server"], size=3, start=False,
                             label="detcd")
        paths = {}
        for m in c.members:
            paths[m.name] = os.path.join(c.dir, m.name + ".trace.json")
        for m in c.members:
            orig = m.argv
            m.argv = (lambda orig=orig, p=paths[m.name]:
                      orig() + ["--trace-file", p])
        c.start()
        for i in range(5):
            c.ctl_ok(["put", "trace-key-%d" % i, "v"])
        c.ctl_ok(["get", "trace-key", "--prefix"])
        m0 = c.members[0]

        # Readable while running: the array without its "]".
        deadline = time.monotonic() + 30
        while True:
            with open(paths[m0.name]) as f:
                text = f.read()
            if "KV/Put" in text or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertTrue(text.startswith("[\n"), text[:100])
        self.assertTrue(text.endswith(",\n"), text[-100:])
        running = json.loads(text + "{}]")
        for line in text.splitlines()[1:]:
            json.loads(line.rstrip(","))  # one event per line

        for m in c.members:
            self.assertIn(m.terminate(), (-15, 0), m.log_tail())
        all_events = []
        for name, p in paths.items():
            with open(p) as f:
                doc = json.load(f)  # complete after a clean stop
            self.assertGreaterEqual(len(doc), len(running) if name == m0.name
                                    else 1)
            evs = events(doc)
            all_events += evs
            for e in evs:
                self.assertEqual(e["pid"], 1)
                self.assertIsInstance(e["ts"], (int, float))
                if e["ph"] == "X":
                    self.assertGreaterEqual(e["dur"], 0)
                else:
                    self.assertEqual(e["s"], "t")
            names = {e["name"] for e in evs}
            self.assertIn("fsync", names, name)
            self.assertIn("applied", names, name)
            self.assertIn("leader", names, name)
            tracks = {e["args"]["name"]: e["tid"] for e in doc
                      if e.get("ph") == "M"}
            self.assertEqual(tracks["raft"], 1)
            self.assertEqual(tracks["wal"], 3)
            fsync = [e for e in evs if e["name"] == "fsync"]
            self.assertTrue(all(e["tid"] == 3 and e["ph"] == "X"
                                for e in fsync))
            self.assertTrue(any("member/wal/" in e["args"]["detail"]
                                for e in fsync), fsync[:3])
        puts = [e for e in all_events if e["name"] == "KV/Put"]
        self.assertEqual(len(puts), 5, puts)
        self.assertTrue(all(e["tid"] >= 100 for e in puts))
        self.assertEqual(
            sorted(e["args"]["detail"] for e in puts),
            ['put:<key:"trace-key-%d" value_size:1 >' % i for i in range(5)])
        self.assertTrue(any(e["name"] == "KV/Range" for e in all_events))


if __name__ == "__main__":
    cluster.main()
