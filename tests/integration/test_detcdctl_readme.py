#!/usr/bin/env python3
"""The README's detcdctl tour, run verbatim: every `$ command` line of the
block between <!-- detcdctl tour begin/end --> runs in one bash session
(PATH finds detcdctl, ETCDCTL_ENDPOINTS points at a fresh single member),
and its output must be what the README shows after it. Lease IDs and
remaining TTLs differ from run to run and are masked.

The same lines run a second time with etcdctl against etcd 3.4, so the
README also documents etcd's behaviour. Both clusters advertise etcd's
default peer URL (http://localhost:2380) with the default token, so their
cluster and member IDs are etcd's defaults, as in the README.

Run alone:
  python3 test_detcdctl_readme.py --server build/detcd \\
      --detcdctl build/detcdctl
"""

import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest

import cluster
import test_detcdctl_lib as lib

README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                      "README.md")


def tour():
    """[(command, expected output)] from the README."""
    text = open(README).read()
    m = re.search(r"<!-- detcdctl tour begin -->\n```console\n(.*?)```\n"
                  r"<!-- detcdctl tour end -->", text, re.S)
    if not m:
        raise AssertionError("README.md has no detcdctl tour block")
    steps = []
    for line in m.group(1).splitlines(keepends=True):
        if line.startswith("$ "):
            steps.append([line[2:].rstrip("\n"), ""])
        elif steps:
            steps[-1][1] += line
    return steps


def mask(text):
    # etcdctl's clientv3 logs retried calls; detcdctl does not (the issue
    # exempts those lines).
    text = "".join(l for l in text.splitlines(keepends=True)
                   if not lib._RETRY_WARN.match(l.strip()))
    text = re.sub(r"\b[0-9a-f]{16}\b", "<lease>", text)
    return re.sub(r"remaining\(\d+s\)", "remaining(<n>s)", text)


class ReadmeTour(unittest.TestCase):

    def run_tour(self, server, tool_dir, tool_name):
        d = tempfile.mkdtemp(prefix="detcd-it-readme-")
        self.addCleanup(shutil.rmtree, d, True)
        client, peer = cluster.free_ports(2)
        log = open(os.path.join(d, "server.log"), "wb")
        self.addCleanup(log.close)
        proc = subprocess.Popen(
            [server, "--data-dir", os.path.join(d, "default.etcd"),
             "--listen-client-urls", "http://127.0.0.1:%d" % client,
             "--advertise-client-urls", "http://127.0.0.1:%d" % client,
             "--listen-peer-urls", "http://127.0.0.1:%d" % peer,
             "--initial-advertise-peer-urls", "http://localhost:2380"],
            stdout=log, stderr=subprocess.STDOUT, cwd=d,
            preexec_fn=cluster._die_with_parent)
        self.addCleanup(proc.wait)
        self.addCleanup(proc.kill)
        endpoint = "127.0.0.1:%d" % client
        deadline = time.time() + 30
        while time.time() < deadline:
            r = cluster.run_etcdctl([endpoint], ["endpoint", "health"],
                                    timeout=5, dial_timeout="1s")
            if r.ok:
                break
            time.sleep(0.1)
        steps = tour()
        script = "set +e\n"
        for i, (cmd, _) in enumerate(steps):
            cmd = cmd.replace("detcdctl", tool_name)
            script += "echo '\x01%d'\n%s 2>&1\n" % (i, cmd)
        env = cluster.etcdctl_env({"ETCDCTL_ENDPOINTS": endpoint})
        env["PATH"] = tool_dir + os.pathsep + env.get("PATH", "")
        del env["ETCDCTL_API"]
        p = subprocess.run(["bash", "-c", script], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, env=env, timeout=300,
                           cwd=d)
        outs = p.stdout.decode("utf-8", "replace").split("\x01")[1:]
        self.assertEqual(len(outs), len(steps), p.stdout)
        for (cmd, want), got in zip(steps, outs):
            got = got.split("\n", 1)[1] if "\n" in got else ""
            self.assertEqual(mask(got), mask(want),
                             "%s (%s): $ %s" % (tool_name, server, cmd))

    def test_detcdctl_on_detcd(self):
        binary = lib.detcdctl_binary()
        if not os.access(binary, os.X_OK):
            self.skipTest("detcdctl not built")
        self.run_tour(cluster.CONFIG["server"], os.path.dirname(binary),
                      "detcdctl")

    def test_etcdctl_on_etcd(self):
        etcdctl = cluster.CONFIG["etcdctl"]
        self.run_tour(cluster.CONFIG["reference"], os.path.dirname(etcdctl),
                      os.path.basename(etcdctl))


if __name__ == "__main__":
    lib.main()
