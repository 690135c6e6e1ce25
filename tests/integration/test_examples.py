#!/usr/bin/env python3
"""The client library's example programs (examples/, built as example_*)
against a single-member server started here: each must exit 0 (its own
checks held) and print "OK" last. They run on the server under test and,
to check the examples themselves, on the reference etcd 3.4.

Run alone:
  python3 test_examples.py --server build/detcd --examples build/examples [-v]
"""

import os
import subprocess
import sys

import cluster
from cluster import CONFIG, ClusterTestCase

EXAMPLES_DIR = None
# Every example in examples/CMakeLists.txt; a missing binary fails.
EXAMPLES = ["kv_txn", "lock_fencing", "election", "registry", "queue",
            "barrier", "stm", "config_watcher"]


class ExamplesTest(ClusterTestCase):
    def run_all(self, binary):
        c = self.new_cluster(binary, size=1)
        for name in EXAMPLES:
            with self.subTest(example=name):
                path = os.path.join(EXAMPLES_DIR, "example_" + name)
                self.assertTrue(os.access(path, os.X_OK), path)
                p = subprocess.run(
                    [path, "--endpoints=" + ",".join(c.endpoints())],
                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                    timeout=120)
                out = p.stdout.decode(errors="replace")
                self.assertEqual(p.returncode, 0,
                                 "%s failed:\n%s" % (name, out))
                self.assertEqual(out.strip().splitlines()[-1], "OK", out)

    def test_examples_on_server(self):
        self.run_all(CONFIG["server"])

    def test_examples_on_reference_etcd(self):
        self.run_all(CONFIG["reference"])


if __name__ == "__main__":
    for i, arg in enumerate(list(sys.argv)):
        if arg.startswith("--examples="):
            EXAMPLES_DIR = arg.split("=", 1)[1]
            del sys.argv[i]
            break
        if arg == "--examples" and i + 1 < len(sys.argv):
            EXAMPLES_DIR = sys.argv[i + 1]
            del sys.argv[i:i + 2]
            break
    if not EXAMPLES_DIR:
        sys.exit("test_examples: --examples DIR (the build's examples/) "
                 "is required")
    EXAMPLES_DIR = os.path.abspath(EXAMPLES_DIR)
    cluster.main()
