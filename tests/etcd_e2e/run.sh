#!/bin/sh
# etcd 3.4's own end-to-end tests against detcd: the Go package
# go.etcd.io/etcd/tests/e2e from Debian's golang-etcd-server-dev, built
# offline in GOPATH mode, run with detcd installed as its "etcd" (and
# Debian's etcdctl as its "etcdctl"). Those tests start servers with etcd's
# flags, drive them with etcdctl and curl, and read etcd's log lines and
# outputs: what passes there passes as etcd 3.4 does.
#
# usage: run.sh DETCD [quick|all|REGEXP]
#   quick   a short list (default; integration_etcd_e2e in ctest)
#   all     every test but the known differences below (label long)
#   REGEXP  the tests whose names match it (go test -run syntax)
# Environment: GOCACHE (default ~/.cache/detcd-it-gocache), KEEP=1 keeps
# the work dir. Exit 77 (skipped) without go or the Go sources.
#
# Known differences, left out of "all" (docs/DESIGN.md, "etcd's e2e
# tests"):
#   TestV3Curl_MaxStreams_ReachLimit_*: etcd's JSON gateway reaches its
#     own gRPC server over one connection bounded by
#     --max-concurrent-streams, so a 4th call waits; detcd's gateway calls
#     its services directly.
#   TestEtcdCorruptHash: edits member/snap/db with bbolt (detcd keeps its
#     state in its own snapshot and WAL files, not in a bolt backend).
#   TestCtlV3Migrate and the v2 tests: etcd's v2 API.
#   TestEtcdExampleConfig: needs etcd.conf.yml.sample, not in the package.
#   TestGateway, TestGrpcproxy*, TestReleaseUpgrade*: `etcd gateway`,
#     `etcd grpc-proxy` and an etcd-last-release binary.
set -eu
detcd=$(readlink -f "$1")
what=${2:-quick}
src=/usr/share/gocode/src/go.etcd.io/etcd
go=$(command -v go || true)
if [ -z "$go" ] || [ ! -d "$src/tests/e2e" ]; then
  echo "etcd_e2e: go or $src/tests/e2e missing; skipped" >&2
  exit 77
fi
work=$(mktemp -d /tmp/detcd-etcd-e2e-XXXXXX)
if [ "${KEEP:-0}" != 1 ]; then trap 'rm -rf "$work"' EXIT; fi
# The tests name their fixtures relative to tests/e2e
# (../../integration/fixtures).
mkdir -p "$work/etcd/tests/e2e" "$work/bin"
ln -s "$src/integration" "$work/etcd/integration"
ln -s "$detcd" "$work/bin/etcd"
ln -s "$(command -v etcdctl)" "$work/bin/etcdctl"
env GOPATH=/usr/share/gocode GO111MODULE=off GOPROXY=off GOFLAGS= \
  CGO_ENABLED=0 GOCACHE="${GOCACHE:-$HOME/.cache/detcd-it-gocache}" \
  "$go" test -c -o "$work/e2e.test" go.etcd.io/etcd/tests/e2e

skip='^(TestV3Curl_MaxStreams_ReachLimit_.*|TestEtcdCorruptHash|TestCtlV3Migrate|TestEtcdExampleConfig|TestGateway|TestGrpcproxy.*|TestReleaseUpgrade.*|.*V2.*|.*v2.*)$'
case "$what" in
  quick)
    run='^(TestCtlV3Put|TestCtlV3PutClientTLS|TestCtlV3Get|TestCtlV3GetFormat|TestCtlV3Del|TestCtlV3Watch|TestCtlV3TxnInteractiveSuccess|TestCtlV3LeaseKeepAlive|TestCtlV3Lock|TestCtlV3Elect|TestCtlV3MemberAdd|TestCtlV3AuthEnable|TestCtlV3AuthSnapshot|TestCtlV3Snapshot|TestCtlV3SnapshotStatusBeforeRestore|TestCtlV3SnapshotCorrupt|TestIssue6361|TestCtlV3Compact|TestCtlV3Alarm|TestV3MetricsInsecure|TestCtlV3EndpointHealth|TestEtcdPeerCNAuth|TestV3CurlPutGetNoTLS|TestV3CurlTxn|TestV3CurlAuth)$' ;;
  all)
    run="^($("$work/e2e.test" -test.list '.*' | grep -Ev "$skip" |
             paste -sd'|' -))\$" ;;
  *) run=$what ;;
esac
cd "$work/etcd/tests/e2e"
# Each test starts its own servers on etcd's fixed ports (20000 and up);
# run alone (ctest: RUN_SERIAL).
"$work/e2e.test" -bin-dir "$work/bin" -cert-dir ../../integration/fixtures \
  -test.run "$run" -test.v -test.timeout 40m 2>&1 |
  tee "$work/e2e.log" | grep -E '^(--- |FAIL|ok|PASS)|\.go:[0-9]+: '
# tee hides the test binary's exit status: the verdict is its last line.
tail -n 1 "$work/e2e.log" | grep -q '^PASS$'
