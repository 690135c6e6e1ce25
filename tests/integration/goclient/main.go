// goclient exercises an etcd v3 endpoint through Go clientv3 (etcd 3.4, as
// packaged by Debian) and exits non-zero on the first surprise.
//
// Built in GOPATH mode against /usr/share/gocode (golang-etcd-server-dev):
//
//	GOPATH=/usr/share/gocode GO111MODULE=off go build -o goclient main.go
//
// Modes:
//
//	goclient check -endpoints 127.0.0.1:2379[,...]
//	    puts, gets, txns, watches, leases, compaction, errors, recipes
//	goclient load -endpoints ... -n 100000 -prefix k/ -batch 100 -conc 8
//	    writes prefix%06d = loadValue(i) in txns of batch puts
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/clientv3/concurrency"
	"go.etcd.io/etcd/etcdserver/api/v3rpc/rpctypes"
	"go.etcd.io/etcd/mvcc/mvccpb"
	"go.uber.org/zap"
)

var (
	endpoints = flag.String("endpoints", "127.0.0.1:2379", "comma-separated endpoints")
	count     = flag.Int("n", 100000, "load: number of keys")
	prefix    = flag.String("prefix", "k/", "load: key prefix")
	batch     = flag.Int("batch", 100, "load: puts per txn")
	conc      = flag.Int("conc", 8, "load: concurrent txns")
	verbose   = flag.Bool("v", false, "print each step")
)

// failure aborts the run with a message naming the step.
type failure struct{ msg string }

func fail(format string, args ...interface{}) {
	panic(failure{fmt.Sprintf(format, args...)})
}

func must(err error, what string) {
	if err != nil {
		fail("%s: unexpected error: %v", what, err)
	}
}

func expectErr(err, want error, what string) {
	if err == nil {
		fail("%s: succeeded, want error %q", what, want)
	}
	if err != want {
		fail("%s: error %q (%T), want %q", what, err, err, want)
	}
}

func step(name string) {
	if *verbose {
		fmt.Println("step:", name)
	}
}

func newClient() *clientv3.Client {
	cfg := clientv3.Config{
		Endpoints:   strings.Split(*endpoints, ","),
		DialTimeout: 5 * time.Second,
		// clientv3 logs retries at warn level; only errors matter here.
		LogConfig: &zap.Config{
			Level:            zap.NewAtomicLevelAt(zap.ErrorLevel),
			Encoding:         "json",
			EncoderConfig:    zap.NewProductionEncoderConfig(),
			OutputPaths:      []string{"stderr"},
			ErrorOutputPaths: []string{"stderr"},
		},
	}
	cli, err := clientv3.New(cfg)
	must(err, "clientv3.New")
	return cli
}

func ctxT(d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	_ = cancel // released when the deadline passes; the program is short-lived
	return ctx
}

func ctx() context.Context { return ctxT(10 * time.Second) }

func main() {
	flag.CommandLine.Parse(os.Args[min(2, len(os.Args)):])
	mode := ""
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	defer func() {
		if r := recover(); r != nil {
			if f, ok := r.(failure); ok {
				fmt.Fprintln(os.Stderr, "FAIL:", f.msg)
				os.Exit(1)
			}
			panic(r)
		}
	}()
	switch mode {
	case "check":
		cli := newClient()
		defer cli.Close()
		start := time.Now()
		checkKV(cli)
		checkTxn(cli)
		checkWatch(cli)
		checkManyWatchers(cli)
		checkLease(cli)
		checkCompaction(cli)
		checkLimits(cli)
		checkMaintenance(cli)
		checkRecipes(cli)
		fmt.Printf("PASS: all checks in %.2fs\n", time.Since(start).Seconds())
	case "load":
		cli := newClient()
		defer cli.Close()
		load(cli)
	default:
		fmt.Fprintln(os.Stderr, "usage: goclient check|load [flags]")
		os.Exit(2)
	}
}

func min(a, b int) int {
	if a < b {
		return a
	}
	return b
}

// ------------------------------------------------------------------ KV

func checkKV(cli *clientv3.Client) {
	step("kv")
	p1, err := cli.Put(ctx(), "kv/a", "1")
	must(err, "put kv/a")
	if p1.Header == nil || p1.Header.Revision < 2 || p1.Header.ClusterId == 0 || p1.Header.MemberId == 0 {
		fail("put header: %+v", p1.Header)
	}
	p2, err := cli.Put(ctx(), "kv/a", "2", clientv3.WithPrevKV())
	must(err, "put kv/a prev")
	if p2.PrevKv == nil || string(p2.PrevKv.Value) != "1" || p2.Header.Revision != p1.Header.Revision+1 {
		fail("put prev_kv: %+v header %+v", p2.PrevKv, p2.Header)
	}
	for _, k := range []string{"kv/b", "kv/c", "kv/d"} {
		_, err = cli.Put(ctx(), k, "v-"+k)
		must(err, "put "+k)
	}
	g, err := cli.Get(ctx(), "kv/a")
	must(err, "get kv/a")
	if len(g.Kvs) != 1 || string(g.Kvs[0].Value) != "2" || g.Kvs[0].Version != 2 ||
		g.Kvs[0].CreateRevision != p1.Header.Revision || g.Kvs[0].ModRevision != p2.Header.Revision {
		fail("get kv/a: %+v", g.Kvs)
	}
	old, err := cli.Get(ctx(), "kv/a", clientv3.WithRev(p1.Header.Revision))
	must(err, "get kv/a at old rev")
	if len(old.Kvs) != 1 || string(old.Kvs[0].Value) != "1" {
		fail("get kv/a at rev %d: %+v", p1.Header.Revision, old.Kvs)
	}
	all, err := cli.Get(ctx(), "kv/", clientv3.WithPrefix())
	must(err, "get prefix")
	if all.Count != 4 || len(all.Kvs) != 4 || all.More {
		fail("get prefix: count %d kvs %d more %v", all.Count, len(all.Kvs), all.More)
	}
	lim, err := cli.Get(ctx(), "kv/", clientv3.WithPrefix(), clientv3.WithLimit(2),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend))
	must(err, "get prefix limit sort")
	if lim.Count != 4 || !lim.More || len(lim.Kvs) != 2 || string(lim.Kvs[0].Key) != "kv/d" || string(lim.Kvs[1].Key) != "kv/c" {
		fail("get limit/sort: count %d more %v kvs %v", lim.Count, lim.More, keys(lim.Kvs))
	}
	rng, err := cli.Get(ctx(), "kv/b", clientv3.WithRange("kv/d"), clientv3.WithKeysOnly())
	must(err, "get range")
	if fmt.Sprint(keys(rng.Kvs)) != "[kv/b kv/c]" || len(rng.Kvs[0].Value) != 0 {
		fail("get range keys-only: %v", rng.Kvs)
	}
	from, err := cli.Get(ctx(), "kv/c", clientv3.WithFromKey(), clientv3.WithCountOnly())
	must(err, "get from-key count-only")
	if from.Count < 2 || len(from.Kvs) != 0 {
		fail("get from-key count-only: %d %v", from.Count, from.Kvs)
	}
	ser, err := cli.Get(ctx(), "kv/a", clientv3.WithSerializable())
	must(err, "serializable get")
	if len(ser.Kvs) != 1 {
		fail("serializable get: %v", ser.Kvs)
	}
	_, err = cli.Put(ctx(), "kv/a", "", clientv3.WithIgnoreValue())
	must(err, "put ignore-value")
	g, _ = cli.Get(ctx(), "kv/a")
	if string(g.Kvs[0].Value) != "2" || g.Kvs[0].Version != 3 {
		fail("ignore-value changed the value: %+v", g.Kvs[0])
	}
	_, err = cli.Put(ctx(), "kv/none", "", clientv3.WithIgnoreValue())
	expectErr(err, rpctypes.ErrKeyNotFound, "put ignore-value on missing key")
	_, err = cli.Put(ctx(), "", "v")
	expectErr(err, rpctypes.ErrEmptyKey, "put empty key")
	d, err := cli.Delete(ctx(), "kv/b", clientv3.WithRange("kv/d"), clientv3.WithPrevKV())
	must(err, "delete range")
	if d.Deleted != 2 || len(d.PrevKvs) != 2 {
		fail("delete range: deleted %d prev %v", d.Deleted, d.PrevKvs)
	}
	d, err = cli.Delete(ctx(), "kv/", clientv3.WithPrefix())
	must(err, "delete prefix")
	if d.Deleted != 2 {
		fail("delete prefix: deleted %d", d.Deleted)
	}
	d, err = cli.Delete(ctx(), "kv/zzz")
	must(err, "delete missing")
	if d.Deleted != 0 {
		fail("delete missing: %d", d.Deleted)
	}
	_, err = cli.Get(ctx(), "kv/a", clientv3.WithRev(d.Header.Revision+1000))
	expectErr(err, rpctypes.ErrFutureRev, "get future revision")
}

func keys(kvs []*mvccpb.KeyValue) []string {
	out := []string{}
	for _, kv := range kvs {
		out = append(out, string(kv.Key))
	}
	return out
}

// ------------------------------------------------------------------ Txn

func checkTxn(cli *clientv3.Client) {
	step("txn")
	_, err := cli.Put(ctx(), "tx/a", "1")
	must(err, "put tx/a")
	r, err := cli.Txn(ctx()).
		If(clientv3.Compare(clientv3.Value("tx/a"), "=", "1"),
			clientv3.Compare(clientv3.Version("tx/a"), "=", 1),
			clientv3.Compare(clientv3.CreateRevision("tx/none"), "=", 0)).
		Then(clientv3.OpPut("tx/a", "2"), clientv3.OpGet("tx/a"), clientv3.OpDelete("tx/none"),
			clientv3.OpTxn(nil, []clientv3.Op{clientv3.OpPut("tx/nested", "n")}, nil)).
		Else(clientv3.OpGet("tx/a")).Commit()
	must(err, "txn success")
	if !r.Succeeded || len(r.Responses) != 4 {
		fail("txn: succeeded %v responses %d", r.Succeeded, len(r.Responses))
	}
	if g := r.Responses[1].GetResponseRange(); g == nil || string(g.Kvs[0].Value) != "2" {
		fail("txn get inside success: %+v", r.Responses[1])
	}
	if n := r.Responses[3].GetResponseTxn(); n == nil || !n.Succeeded || len(n.Responses) != 1 {
		fail("nested txn: %+v", r.Responses[3])
	}
	r, err = cli.Txn(ctx()).
		If(clientv3.Compare(clientv3.ModRevision("tx/a"), "<", 2)).
		Then(clientv3.OpPut("tx/x", "no")).
		Else(clientv3.OpGet("tx/", clientv3.WithPrefix()), clientv3.OpPut("tx/else", "yes")).Commit()
	must(err, "txn failure")
	if r.Succeeded || len(r.Responses) != 2 || len(r.Responses[0].GetResponseRange().Kvs) != 2 {
		fail("txn else branch: %+v", r)
	}
	g, _ := cli.Get(ctx(), "tx/x")
	if len(g.Kvs) != 0 {
		fail("txn then-branch applied on failure")
	}
	_, err = cli.Txn(ctx()).Then(clientv3.OpPut("tx/d", "1"), clientv3.OpPut("tx/d", "2")).Commit()
	expectErr(err, rpctypes.ErrDuplicateKey, "txn duplicate put")
	ops := []clientv3.Op{}
	for i := 0; i < 129; i++ {
		ops = append(ops, clientv3.OpPut(fmt.Sprintf("tx/many/%d", i), "v"))
	}
	_, err = cli.Txn(ctx()).Then(ops...).Commit()
	expectErr(err, rpctypes.ErrTooManyOps, "txn with 129 ops")
	_, err = cli.Txn(ctx()).Then(ops[:128]...).Commit()
	must(err, "txn with 128 ops")
	// compare-and-swap loop from 10 goroutines: each increment applies once
	_, err = cli.Put(ctx(), "tx/counter", "0")
	must(err, "put counter")
	var wg sync.WaitGroup
	errc := make(chan error, 10)
	for w := 0; w < 10; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < 5; n++ {
				for {
					g, err := cli.Get(ctx(), "tx/counter")
					if err != nil {
						errc <- err
						return
					}
					var v int
					fmt.Sscan(string(g.Kvs[0].Value), &v)
					t, err := cli.Txn(ctx()).
						If(clientv3.Compare(clientv3.ModRevision("tx/counter"), "=", g.Kvs[0].ModRevision)).
						Then(clientv3.OpPut("tx/counter", fmt.Sprint(v+1))).Commit()
					if err != nil {
						errc <- err
						return
					}
					if t.Succeeded {
						break
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		must(err, "cas loop")
	}
	g, _ = cli.Get(ctx(), "tx/counter")
	if string(g.Kvs[0].Value) != "50" {
		fail("cas counter = %s, want 50", g.Kvs[0].Value)
	}
}

// ------------------------------------------------------------------ Watch

func nextResp(ch clientv3.WatchChan, what string) clientv3.WatchResponse {
	select {
	case r, ok := <-ch:
		if !ok {
			fail("%s: watch channel closed", what)
		}
		return r
	case <-time.After(10 * time.Second):
		fail("%s: no watch response in 10s", what)
	}
	panic("unreachable")
}

// events collects n events from ch.
func events(ch clientv3.WatchChan, n int, what string) []*clientv3.Event {
	var out []*clientv3.Event
	for len(out) < n {
		r := nextResp(ch, what)
		if err := r.Err(); err != nil {
			fail("%s: watch error %v", what, err)
		}
		out = append(out, r.Events...)
	}
	if len(out) != n {
		fail("%s: %d events, want %d", what, len(out), n)
	}
	return out
}

func checkWatch(cli *clientv3.Client) {
	step("watch")
	wctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := cli.Watch(wctx, "wa/", clientv3.WithPrefix(), clientv3.WithPrevKV(), clientv3.WithCreatedNotify())
	if r := nextResp(ch, "created notify"); !r.Created {
		fail("first watch response not 'created': %+v", r)
	}
	other := cli.Watch(wctx, "wa/b", clientv3.WithCreatedNotify()) // same stream
	if r := nextResp(other, "created notify 2"); !r.Created {
		fail("second watcher: first response not 'created': %+v", r)
	}
	p1, err := cli.Put(ctx(), "wa/a", "1")
	must(err, "put wa/a")
	p2, err := cli.Put(ctx(), "wa/a", "2")
	must(err, "put wa/a 2")
	_, err = cli.Put(ctx(), "wb/x", "outside")
	must(err, "put outside")
	_, err = cli.Put(ctx(), "wa/b", "b")
	must(err, "put wa/b")
	d, err := cli.Delete(ctx(), "wa/a")
	must(err, "delete wa/a")
	evs := events(ch, 4, "prefix watch")
	want := []struct {
		typ        mvccpb.Event_EventType
		key, value string
		prev       string
		rev        int64
	}{
		{clientv3.EventTypePut, "wa/a", "1", "", p1.Header.Revision},
		{clientv3.EventTypePut, "wa/a", "2", "1", p2.Header.Revision},
		{clientv3.EventTypePut, "wa/b", "b", "", p2.Header.Revision + 2},
		{clientv3.EventTypeDelete, "wa/a", "", "2", d.Header.Revision},
	}
	for i, w := range want {
		e := evs[i]
		prev := ""
		if e.PrevKv != nil {
			prev = string(e.PrevKv.Value)
		}
		if e.Type != w.typ || string(e.Kv.Key) != w.key || string(e.Kv.Value) != w.value ||
			prev != w.prev || e.Kv.ModRevision != w.rev {
			fail("watch event %d: got %v %s=%q prev %q rev %d, want %+v", i, e.Type, e.Kv.Key,
				e.Kv.Value, prev, e.Kv.ModRevision, w)
		}
	}
	if i := indexCreate(evs); i != 0 {
		fail("first event should be a create")
	}
	oe := events(other, 1, "key watch")
	if string(oe[0].Kv.Key) != "wa/b" {
		fail("key watch got %s", oe[0].Kv.Key)
	}
	// history replay from a revision, with a filter
	hist := cli.Watch(wctx, "wa/a", clientv3.WithRev(p1.Header.Revision), clientv3.WithFilterDelete())
	he := events(hist, 2, "history watch")
	if string(he[0].Kv.Value) != "1" || string(he[1].Kv.Value) != "2" {
		fail("history watch: %v", he)
	}
	// progress notification on request
	must(cli.RequestProgress(wctx), "request progress")
	for {
		r := nextResp(ch, "progress notify")
		if r.IsProgressNotify() {
			if r.Header.Revision < d.Header.Revision {
				fail("progress notify revision %d < %d", r.Header.Revision, d.Header.Revision)
			}
			break
		}
		if len(r.Events) > 0 {
			fail("unexpected events while waiting for progress: %v", r.Events)
		}
	}
	// cancel one watcher; the other keeps working
	cctx, ccancel := context.WithCancel(context.Background())
	cch := cli.Watch(cctx, "wa/c")
	ccancel()
	select {
	case _, ok := <-cch:
		for ok {
			_, ok = <-cch
		}
	case <-time.After(10 * time.Second):
		fail("canceled watch channel not closed")
	}
	_, err = cli.Put(ctx(), "wa/z", "after-cancel")
	must(err, "put wa/z")
	if e := events(ch, 1, "after cancel"); string(e[0].Kv.Key) != "wa/z" {
		fail("after cancel: %v", e)
	}
}

// checkManyWatchers: clientv3 multiplexes every watch made under one
// context onto one gRPC stream, and etcd sets no limit on the watchers a
// stream holds: 12000 of them (past any small per-stream cap) are all
// created, and one put reaches each.
func checkManyWatchers(cli *clientv3.Client) {
	step("many watchers on one stream")
	const n = 12000
	wctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	chans := make([]clientv3.WatchChan, n)
	for i := range chans {
		chans[i] = cli.Watch(wctx, "wm/", clientv3.WithPrefix(),
			clientv3.WithCreatedNotify())
	}
	for i, ch := range chans {
		r := nextResp(ch, fmt.Sprintf("watcher %d created", i))
		if !r.Created || r.Canceled {
			fail("watcher %d of %d on one stream: %+v (err %v)", i, n, r,
				r.Err())
		}
	}
	p, err := cli.Put(ctx(), "wm/k", "v")
	must(err, "put wm/k")
	for i, ch := range chans {
		e := events(ch, 1, fmt.Sprintf("watcher %d", i))
		if string(e[0].Kv.Key) != "wm/k" || e[0].Kv.ModRevision != p.Header.Revision {
			fail("watcher %d: event %v, want wm/k at %d", i, e[0],
				p.Header.Revision)
		}
	}
}

func indexCreate(evs []*clientv3.Event) int {
	for i, e := range evs {
		if e.IsCreate() {
			return i
		}
	}
	return -1
}

// ------------------------------------------------------------------ Lease

func checkLease(cli *clientv3.Client) {
	step("lease")
	g, err := cli.Grant(ctx(), 30)
	must(err, "grant")
	if g.ID == 0 || g.TTL != 30 {
		fail("grant: id %x ttl %d", g.ID, g.TTL)
	}
	_, err = cli.Put(ctx(), "ls/a", "1", clientv3.WithLease(g.ID))
	must(err, "put with lease")
	_, err = cli.Put(ctx(), "ls/b", "2", clientv3.WithLease(g.ID))
	must(err, "put with lease 2")
	kv, _ := cli.Get(ctx(), "ls/a")
	if kv.Kvs[0].Lease != int64(g.ID) {
		fail("key lease %x, want %x", kv.Kvs[0].Lease, g.ID)
	}
	t, err := cli.TimeToLive(ctx(), g.ID, clientv3.WithAttachedKeys())
	must(err, "timetolive")
	ks := []string{}
	for _, k := range t.Keys {
		ks = append(ks, string(k))
	}
	sort.Strings(ks)
	if t.GrantedTTL != 30 || t.TTL <= 0 || t.TTL > 30 || fmt.Sprint(ks) != "[ls/a ls/b]" {
		fail("timetolive: granted %d ttl %d keys %v", t.GrantedTTL, t.TTL, ks)
	}
	ka, err := cli.KeepAliveOnce(ctx(), g.ID)
	must(err, "keepalive once")
	if ka.ID != g.ID || ka.TTL != 30 {
		fail("keepalive once: %+v", ka)
	}
	ls, err := cli.Leases(ctx())
	must(err, "leases")
	found := false
	for _, l := range ls.Leases {
		found = found || l.ID == g.ID
	}
	if !found {
		fail("leases list lacks %x", g.ID)
	}
	// keep-alive stream: at least two responses
	kctx, kcancel := context.WithCancel(context.Background())
	g3, err := cli.Grant(ctx(), 3)
	must(err, "grant 3")
	kch, err := cli.KeepAlive(kctx, g3.ID)
	must(err, "keepalive")
	for i := 0; i < 2; i++ {
		select {
		case r, ok := <-kch:
			if !ok || r.ID != g3.ID {
				fail("keepalive stream response %d: %+v ok %v", i, r, ok)
			}
		case <-time.After(10 * time.Second):
			fail("keepalive stream: no response %d", i)
		}
	}
	kcancel()
	_, err = cli.Revoke(ctx(), g.ID)
	must(err, "revoke")
	kv, _ = cli.Get(ctx(), "ls/", clientv3.WithPrefix())
	if len(kv.Kvs) != 0 {
		fail("keys survive revoke: %v", keys(kv.Kvs))
	}
	t, err = cli.TimeToLive(ctx(), g.ID)
	must(err, "timetolive revoked")
	if t.TTL != -1 {
		fail("timetolive of revoked lease: ttl %d", t.TTL)
	}
	_, err = cli.Revoke(ctx(), g.ID)
	expectErr(err, rpctypes.ErrLeaseNotFound, "revoke twice")
	_, err = cli.KeepAliveOnce(ctx(), g.ID)
	expectErr(err, rpctypes.ErrLeaseNotFound, "keepalive revoked")
	_, err = cli.Put(ctx(), "ls/c", "v", clientv3.WithLease(g.ID))
	expectErr(err, rpctypes.ErrLeaseNotFound, "put with revoked lease")
	// expiry: a short lease's key disappears and a watcher sees the delete
	short, err := cli.Grant(ctx(), 2)
	must(err, "grant 2")
	p, err := cli.Put(ctx(), "ls/short", "v", clientv3.WithLease(short.ID))
	must(err, "put short")
	wch := cli.Watch(context.Background(), "ls/short", clientv3.WithRev(p.Header.Revision+1))
	e := events(wch, 1, "lease expiry delete")
	if e[0].Type != clientv3.EventTypeDelete {
		fail("expiry event: %v", e[0])
	}
	// a TTL over etcd's maximum
	_, err = cli.Grant(ctx(), 9000000001)
	expectErr(err, rpctypes.ErrLeaseTTLTooLarge, "grant too large ttl")
}

// ------------------------------------------------------------------ Compaction

func checkCompaction(cli *clientv3.Client) {
	step("compaction")
	p1, err := cli.Put(ctx(), "cp/a", "1")
	must(err, "put")
	p2, err := cli.Put(ctx(), "cp/a", "2")
	must(err, "put")
	_, err = cli.Compact(ctx(), p2.Header.Revision, clientv3.WithCompactPhysical())
	must(err, "compact physical")
	_, err = cli.Get(ctx(), "cp/a", clientv3.WithRev(p1.Header.Revision))
	expectErr(err, rpctypes.ErrCompacted, "get compacted revision")
	_, err = cli.Compact(ctx(), p2.Header.Revision)
	expectErr(err, rpctypes.ErrCompacted, "compact twice")
	_, err = cli.Compact(ctx(), p2.Header.Revision+1000)
	expectErr(err, rpctypes.ErrFutureRev, "compact future revision")
	g, err := cli.Get(ctx(), "cp/a", clientv3.WithRev(p2.Header.Revision))
	must(err, "get at compaction revision")
	if string(g.Kvs[0].Value) != "2" {
		fail("value at compaction revision: %v", g.Kvs)
	}
	ch := cli.Watch(context.Background(), "cp/a", clientv3.WithRev(p1.Header.Revision))
	r := nextResp(ch, "watch compacted")
	if r.CompactRevision != p2.Header.Revision || r.Err() != rpctypes.ErrCompacted || !r.Canceled {
		fail("watch from compacted revision: compact_revision %d err %v canceled %v",
			r.CompactRevision, r.Err(), r.Canceled)
	}
}

// ------------------------------------------------------------------ Limits

func checkLimits(cli *clientv3.Client) {
	step("limits")
	big := strings.Repeat("x", 1536*1024+100)
	_, err := cli.Put(ctx(), "lim/big", big)
	expectErr(err, rpctypes.ErrRequestTooLarge, "put 1.5 MiB + 100 bytes")
	okv := strings.Repeat("y", 1024*1024)
	_, err = cli.Put(ctx(), "lim/ok", okv)
	must(err, "put 1 MiB")
	g, err := cli.Get(ctx(), "lim/ok")
	must(err, "get 1 MiB")
	if len(g.Kvs[0].Value) != len(okv) {
		fail("1 MiB value read back with %d bytes", len(g.Kvs[0].Value))
	}
	_, err = cli.Delete(ctx(), "lim/ok")
	must(err, "delete 1 MiB")
}

// ------------------------------------------------------------------ Maintenance

func checkMaintenance(cli *clientv3.Client) {
	step("maintenance")
	for _, ep := range cli.Endpoints() {
		s, err := cli.Status(ctx(), ep)
		must(err, "status "+ep)
		if s.Version == "" || s.Leader == 0 || s.RaftTerm == 0 || s.Header.MemberId == 0 {
			fail("status %s: %+v", ep, s)
		}
		h, err := cli.HashKV(ctx(), ep, 0)
		must(err, "hashkv "+ep)
		if h.Header == nil {
			fail("hashkv: no header")
		}
	}
	ml, err := cli.MemberList(ctx())
	must(err, "member list")
	if len(ml.Members) == 0 || len(ml.Members[0].ClientURLs) == 0 {
		fail("member list: %+v", ml.Members)
	}
	al, err := cli.AlarmList(ctx())
	must(err, "alarm list")
	if len(al.Alarms) != 0 {
		fail("unexpected alarms: %v", al.Alarms)
	}
}

// ------------------------------------------------------------------ Recipes

func checkRecipes(cli *clientv3.Client) {
	step("recipes")
	s1, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
	must(err, "session 1")
	defer s1.Close()
	s2, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
	must(err, "session 2")
	defer s2.Close()
	m1 := concurrency.NewMutex(s1, "/rc/lock")
	m2 := concurrency.NewMutex(s2, "/rc/lock")
	must(m1.Lock(ctx()), "lock 1")
	locked := make(chan error, 1)
	go func() { locked <- m2.Lock(ctxT(20 * time.Second)) }()
	select {
	case err := <-locked:
		fail("second lock acquired while held: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	must(m1.Unlock(ctx()), "unlock 1")
	select {
	case err := <-locked:
		must(err, "lock 2 after unlock")
	case <-time.After(10 * time.Second):
		fail("second lock not acquired after unlock")
	}
	must(m2.Unlock(ctx()), "unlock 2")

	e1 := concurrency.NewElection(s1, "/rc/election")
	must(e1.Campaign(ctx(), "one"), "campaign 1")
	l, err := e1.Leader(ctx())
	must(err, "leader")
	if string(l.Kvs[0].Value) != "one" {
		fail("election leader %q", l.Kvs[0].Value)
	}
	e2 := concurrency.NewElection(s2, "/rc/election")
	won := make(chan error, 1)
	go func() { won <- e2.Campaign(ctxT(20*time.Second), "two") }()
	must(e1.Resign(ctx()), "resign")
	select {
	case err := <-won:
		must(err, "campaign 2")
	case <-time.After(10 * time.Second):
		fail("second candidate not elected after resign")
	}
	// STM: transfer between two accounts from several goroutines
	_, err = cli.Put(ctx(), "rc/acct/a", "100")
	must(err, "put acct a")
	_, err = cli.Put(ctx(), "rc/acct/b", "0")
	must(err, "put acct b")
	var wg sync.WaitGroup
	errc := make(chan error, 5)
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := concurrency.NewSTM(cli, func(stm concurrency.STM) error {
				var a, b int
				fmt.Sscan(stm.Get("rc/acct/a"), &a)
				fmt.Sscan(stm.Get("rc/acct/b"), &b)
				stm.Put("rc/acct/a", fmt.Sprint(a-10))
				stm.Put("rc/acct/b", fmt.Sprint(b+10))
				return nil
			}, concurrency.WithIsolation(concurrency.RepeatableReads))
			// (The default, SerializableSnapshot, reads at a fixed revision
			// from any endpoint and fails with "future revision" when that
			// member lags; RepeatableReads re-validates in the commit txn.)
			errc <- err
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		must(err, "stm")
	}
	ga, _ := cli.Get(ctx(), "rc/acct/a")
	gb, _ := cli.Get(ctx(), "rc/acct/b")
	if string(ga.Kvs[0].Value) != "50" || string(gb.Kvs[0].Value) != "50" {
		fail("stm transfers: a=%s b=%s", ga.Kvs[0].Value, gb.Kvs[0].Value)
	}
}

// ------------------------------------------------------------------ load

func loadValue(i int) string { return fmt.Sprintf("v%06d-0123456789abcdef", i) }

func load(cli *clientv3.Client) {
	start := time.Now()
	starts := make(chan int)
	errc := make(chan error, *conc)
	var wg sync.WaitGroup
	for w := 0; w < *conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range starts {
				ops := []clientv3.Op{}
				for i := s; i < s+*batch && i < *count; i++ {
					ops = append(ops, clientv3.OpPut(fmt.Sprintf("%s%06d", *prefix, i), loadValue(i)))
				}
				r, err := cli.Txn(ctxT(60 * time.Second)).Then(ops...).Commit()
				if err == nil && !r.Succeeded {
					err = errors.New("txn without compares did not succeed")
				}
				if err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	go func() {
		for s := 0; s < *count; s += *batch {
			starts <- s
		}
		close(starts)
	}()
	wg.Wait()
	close(errc)
	for err := range errc {
		must(err, "load txn")
	}
	fmt.Printf("loaded %d keys in %.2fs\n", *count, time.Since(start).Seconds())
}
