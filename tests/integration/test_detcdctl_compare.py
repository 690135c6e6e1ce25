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

import unittest

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


class Maintenance(lib.DetcdctlCase, tec.Maintenance):
    pass


class Alarm(lib.DetcdctlCase, tec.Alarm):
    pass


class Limits(lib.DetcdctlCase, tec.Limits):
    pass


class SmallLimits(lib.DetcdctlCase, tec.SmallLimits):
    pass


class Tour(lib.DetcdctlCase, tec.Tour):
    pass


class MoveLeader(lib.DetcdctlCase, tec.MoveLeader):
    pass


if __name__ == "__main__":
    lib.main()
