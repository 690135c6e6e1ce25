#!/usr/bin/env python3
"""Authentication and role-based access with etcdctl 3.4, against reference
etcd and the server under test side by side (outputs compared after masking,
see compare.py): etcd's RBAC walk-through (root, a role with a prefix
permission, a read-only user, auth enable/disable, wrong passwords, admin-only
calls, refused watches), simple-token expiry with a short --auth-token-ttl,
a permission revoked while a token is held, and JWT tokens.

Run alone:  python3 test_auth.py --server build/detcd [-v] [-k name]
"""

import os
import shutil
import subprocess
import tempfile
import time
import unittest

import cluster
from compare import CompareCase

ROOT = ["--user", "root:rootpw"]
ALICE = ["--user", "alice:alicepw"]
READER = ["--user", "reader:readerpw"]
# Cheap hashes keep the test quick on both servers (etcd takes 4 too).
FAST_BCRYPT = ("--bcrypt-cost", "4")


class RbacWalkThrough(CompareCase):
    """etcd's role-based access control guide, step by step."""

    FLAGS = FAST_BCRYPT

    def test_walk_through(self):
        b = self.both
        # Auth cannot be enabled without a root user; with one, etcdctl
        # adds the root role and grants it when the server asks for it.
        b(["auth", "enable"], expect_rc=None)
        b(["user", "add", "root:rootpw"])
        b(["auth", "enable"])
        b(["role", "list"], expect_rc=None)
        b(ROOT + ["auth", "disable"])
        b(["role", "list"])
        b(["user", "grant-role", "root", "root"])
        b(["user", "get", "root"])
        b(["user", "add", "root:again"], expect_rc=None)
        b(["user", "add", "nopass", "--no-password"], expect_rc=None)
        # A role with a prefix, a key and a from-key permission.
        b(["role", "add", "myrole"])
        b(["role", "add", "myrole"], expect_rc=None)
        b(["role", "grant-permission", "myrole", "readwrite", "foo/",
           "--prefix=true"])
        b(["role", "grant-permission", "myrole", "read", "bar"])
        b(["role", "grant-permission", "myrole", "write", "zoo", "--from-key"])
        b(["role", "grant-permission", "nosuchrole", "read", "x"], expect_rc=None)
        b(["role", "get", "myrole"])
        b(["role", "get", "myrole", "-w", "json"], compare=False)
        b(["user", "add", "alice:alicepw"])
        b(["user", "grant-role", "alice", "myrole"])
        b(["user", "grant-role", "alice", "nosuchrole"], expect_rc=None)
        b(["user", "get", "alice", "--detail"])
        # A read-only user.
        b(["role", "add", "ro"])
        b(["role", "grant-permission", "ro", "read", "foo/", "--prefix=true"])
        b(["user", "add", "reader:readerpw"])
        b(["user", "grant-role", "reader", "ro"])
        b(["user", "list"])
        b(["role", "list"])
        b(["put", "bar", "written-before-auth"])
        b(["auth", "enable"])
        b(["auth", "enable"], expect_rc=None)
        # alice: her prefix, read-only bar, write-only from zoo on.
        b(ALICE + ["put", "foo/1", "v1"])
        b(ALICE + ["get", "foo/1"])
        b(ALICE + ["get", "foo/", "--prefix"])
        b(ALICE + ["put", "bar", "x"], expect_rc=None)
        b(ALICE + ["get", "bar"])
        b(ALICE + ["put", "zoo/a", "z"])
        b(ALICE + ["get", "zoo/a"], expect_rc=None)
        b(ALICE + ["del", "foo/1"])
        b(ALICE + ["put", "foo/1", "v2"])
        b(ALICE + ["get", "", "--from-key"], expect_rc=None)
        b(ALICE + ["txn"], stdin="value(\"foo/1\") = \"v2\"\n\nput foo/2 t\n\n"
                                 "put foo/f t\n\n")
        b(ALICE + ["txn"], stdin="value(\"bar\") = \"x\"\n\nput foo/3 t\n\n"
                                 "put other t\n\n", expect_rc=None)
        # The reader reads, never writes.
        b(READER + ["get", "foo/1"])
        b(READER + ["put", "foo/1", "no"], expect_rc=None)
        b(READER + ["del", "foo/1"], expect_rc=None)
        # No credentials, wrong ones, a user without a password.
        b(["get", "foo/1"], expect_rc=None)
        b(["put", "foo/1", "anon"], expect_rc=None)
        b(["--user", "alice:wrong", "get", "foo/1"], expect_rc=None)
        b(["--user", "nobody:pw", "get", "foo/1"], expect_rc=None)
        b(["--user", "nopass:pw", "get", "foo/1"], expect_rc=None)
        # Admin calls need root; one may read oneself and one's roles.
        b(ALICE + ["user", "list"], expect_rc=None)
        b(ALICE + ["role", "add", "x"], expect_rc=None)
        b(ALICE + ["user", "get", "alice"])
        b(ALICE + ["user", "get", "reader"], expect_rc=None)
        b(ALICE + ["role", "get", "myrole"])
        b(ALICE + ["role", "get", "ro"], expect_rc=None)
        b(ALICE + ["member", "list"], compare=False)
        b(ALICE + ["endpoint", "hashkv"], expect_rc=None)
        b(ROOT + ["user", "list"])
        b(ROOT + ["user", "delete", "root"], expect_rc=None)
        b(ROOT + ["user", "revoke-role", "root", "root"], expect_rc=None)
        b(ROOT + ["role", "delete", "root"], expect_rc=None)
        b(ROOT + ["user", "revoke-role", "alice", "ro"], expect_rc=None)
        b(ROOT + ["role", "revoke-permission", "myrole", "bar"])
        b(ROOT + ["role", "revoke-permission", "myrole", "bar"], expect_rc=None)
        b(ALICE + ["get", "bar"], expect_rc=None)
        b(ROOT + ["get", "", "--from-key", "--keys-only"])
        # A watch on a key one may not read is canceled by the server.
        b(READER + ["watch", "bar"], expect_rc=None, timeout=10.0)
        # Password change; user and role removal.
        b(ROOT + ["user", "passwd", "reader", "--interactive=false"],
          stdin="newpw\n")
        b(READER + ["get", "foo/1"], expect_rc=None)
        b(["--user", "reader:newpw", "get", "foo/1"])
        b(ROOT + ["role", "delete", "ro"])
        b(ROOT + ["user", "get", "reader"])
        b(ROOT + ["user", "delete", "reader"])
        b(ROOT + ["user", "list"])
        # Disabled again: everyone is in.
        b(ALICE + ["auth", "disable"], expect_rc=None)
        b(ROOT + ["auth", "disable"])
        b(["put", "bar", "anyone"])
        b(["get", "", "--from-key"])
        b(ALICE + ["get", "bar"])


class TokenExpiry(CompareCase):
    """A simple token unused for longer than --auth-token-ttl stops working
    (the client then signs in again), and a token held while its user's
    permission is revoked cannot use the revoked permission."""

    FLAGS = FAST_BCRYPT + ("--auth-token-ttl", "2")

    def setUp(self):
        super().setUp()
        b = self.both
        b(["user", "add", "root:rootpw"])
        b(["user", "grant-role", "root", "root"])
        b(["role", "add", "myrole"])
        b(["role", "grant-permission", "myrole", "readwrite", "foo/",
           "--prefix=true"])
        b(["user", "add", "alice:alicepw"])
        b(["user", "grant-role", "alice", "myrole"])
        b(["auth", "enable"])

    def tearDown(self):
        self.both(ROOT + ["auth", "disable"], expect_rc=None)
        for who in ("alice", "root"):
            self.both(["user", "delete", who], expect_rc=None)
        self.both(["role", "delete", "myrole"], expect_rc=None)
        super().tearDown()

    def held_txn(self, user, txn_stdin, between, wait_s):
        """Starts `etcdctl txn -i` as `user` on both sides (it signs in at
        once), waits, runs between() (etcdctl arg lists, compared), then
        sends the txn and returns (ref Result, server Result)."""
        procs = {}
        for side in (self.ref, self.srv):
            procs[side.name] = side.cluster.background(
                user + ["txn", "-i"], stdin_pipe=True)
        try:
            for side in (self.ref, self.srv):
                self.assertTrue(procs[side.name].wait_for(
                    lambda out: b"compares:" in out, timeout=10.0), side.name)
            time.sleep(wait_s)
            for args in between:
                self.both(args)
            for side in (self.ref, self.srv):
                procs[side.name].write(txn_stdin)
                procs[side.name].proc.stdin.close()
            for side in (self.ref, self.srv):
                procs[side.name].proc.wait(timeout=20)
        finally:
            results = {name: p.stop() for name, p in procs.items()}
        return results["etcd"], results["server"]

    def test_token_expires_and_client_signs_in_again(self):
        ra, rb = self.held_txn(ALICE, "\nput foo/late v\n\n\n", [], wait_s=4.5)
        self.assertSameOutput(["txn", "-i"], ra, rb)
        self.assertEqual(ra.rc, 0, ra.describe())
        # The first attempt failed on the expired token on both sides.
        for r in (ra, rb):
            self.assertIn("invalid auth token", r.err, r.describe())
        self.both(ALICE + ["get", "foo/late"])

    def test_permission_revoked_while_token_is_held(self):
        ra, rb = self.held_txn(
            ALICE, "\nput foo/after v\n\n\n",
            [ROOT + ["role", "revoke-permission", "myrole", "foo/",
                     "--prefix=true"]], wait_s=0.2)
        self.assertSameOutput(["txn", "-i"], ra, rb)
        self.assertNotEqual(ra.rc, 0)
        self.assertIn("permission denied", ra.err)
        self.both(ROOT + ["get", "foo/after"])


class ThreeMembers(CompareCase):
    """Auth in a 3-member cluster: changes made through one member hold on
    every member, and a token signed in on one member works on the others
    (a member that has not applied the token's entry yet waits for it)."""

    SIZE = 3
    FLAGS = FAST_BCRYPT

    def test_across_members(self):
        b = self.both
        b(["user", "add", "root:rootpw"])
        b(["user", "grant-role", "root", "root"])
        b(["role", "add", "w"])
        b(["role", "grant-permission", "w", "readwrite", "w/", "--prefix=true"])
        b(["user", "add", "alice:alicepw"])
        b(["user", "grant-role", "alice", "w"])
        b(["auth", "enable"])
        for i in range(6):
            b(ALICE + ["put", "w/%d" % i, "v"], all_members=True)
            b(ALICE + ["get", "w/", "--prefix", "--keys-only"],
              all_members=True)
            b(ALICE + ["put", "x/%d" % i, "v"], all_members=True,
              expect_rc=None)
        for side in (self.ref, self.srv):
            for m in side.cluster.members:
                r = side.cluster.etcdctl(ALICE + ["get", "w/5"], members=[m])
                self.assertEqual(r.rc, 0, r.describe())
        b(ROOT + ["auth", "disable"], all_members=True)


def _openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class JwtTokens(CompareCase):
    """--auth-token jwt with an RSA key pair (RS256) and an EC one (ES256
    is checked on the server only: etcd's flags take one method)."""

    @classmethod
    def setUpClass(cls):
        cls.keydir = tempfile.mkdtemp(prefix="detcd-it-jwt-")
        priv = os.path.join(cls.keydir, "rsa.key")
        pub = os.path.join(cls.keydir, "rsa.pub")
        _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt",
                 "rsa_keygen_bits:2048", "-out", priv)
        _openssl("pkey", "-in", priv, "-pubout", "-out", pub)
        cls.FLAGS = FAST_BCRYPT + (
            "--auth-token",
            "jwt,pub-key=%s,priv-key=%s,sign-method=RS256,ttl=10m" % (pub, priv))
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        shutil.rmtree(cls.keydir, ignore_errors=True)

    def test_jwt_walk(self):
        b = self.both
        b(["user", "add", "root:rootpw"])
        b(["user", "grant-role", "root", "root"])
        b(["role", "add", "r"])
        b(["role", "grant-permission", "r", "readwrite", "k/", "--prefix=true"])
        b(["user", "add", "u:upw"])
        b(["user", "grant-role", "u", "r"])
        b(["auth", "enable"])
        b(["--user", "u:upw", "put", "k/1", "v"])
        b(["--user", "u:upw", "get", "k/1"])
        b(["--user", "u:upw", "put", "other", "v"], expect_rc=None)
        b(["--user", "u:bad", "get", "k/1"], expect_rc=None)
        b(ROOT + ["role", "revoke-permission", "r", "k/", "--prefix=true"])
        b(["--user", "u:upw", "get", "k/1"], expect_rc=None)
        b(ROOT + ["auth", "disable"])


if __name__ == "__main__":
    cluster.main()
