// golock exercises etcd's Lock and Election gRPC services (v3lockpb,
// v3electionpb, called through their generated Go clients) and clientv3's
// concurrency recipes (mutex, election, session) against one endpoint set.
//
// It prints a transcript, one "T: ..." line per fact that must be the same
// on every etcd-compatible server (no lease ids, no revisions, no timings),
// and exits non-zero with a FAIL line on the first broken invariant.
// test_lock_election.py runs it against real etcd 3.4 and detcd and
// compares the transcripts.
//
// Built in GOPATH mode against /usr/share/gocode (golang-etcd-server-dev):
//
//	GOPATH=/usr/share/gocode GO111MODULE=off go build -o golock main.go
//
// Usage: golock -endpoints 127.0.0.1:2379[,...] [-v] [-auth]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/clientv3/concurrency"
	"go.etcd.io/etcd/etcdserver/api/v3election/v3electionpb"
	"go.etcd.io/etcd/etcdserver/api/v3lock/v3lockpb"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var (
	endpoints = flag.String("endpoints", "127.0.0.1:2379", "comma-separated endpoints")
	verbose   = flag.Bool("v", false, "print each step")
	auth      = flag.Bool("auth", false, "instead: the services with auth enabled (turned off again at the end)")
)

type failure struct{ msg string }

func fail(format string, args ...interface{}) {
	panic(failure{fmt.Sprintf(format, args...)})
}

func must(err error, what string) {
	if err != nil {
		fail("%s: unexpected error: %v", what, err)
	}
}

// fact prints one transcript line.
func fact(format string, args ...interface{}) {
	fmt.Printf("T: "+format+"\n", args...)
}

func step(name string) {
	if *verbose {
		fmt.Fprintln(os.Stderr, "step:", name)
	}
}

// errText renders an error by its gRPC code and message.
func errText(err error) string {
	if err == nil {
		return "ok"
	}
	if s, ok := status.FromError(err); ok {
		return fmt.Sprintf("code=%s desc=%q", s.Code(), s.Message())
	}
	return fmt.Sprintf("error %q", err.Error())
}

func errCode(err error) string {
	if err == nil {
		return "OK"
	}
	return status.Code(err).String()
}

// deadlineCode is errCode for a call that ends at its own deadline. Two
// timers race there: the client's (DeadlineExceeded) and the server's copy
// of the grpc-timeout, whose expiry etcd reports as Unknown "context
// deadline exceeded". Either one means the deadline passed.
func deadlineCode(err error) string {
	if status.Code(err) == codes.Unknown && strings.Contains(status.Convert(err).Message(), "context deadline exceeded") {
		return codes.DeadlineExceeded.String()
	}
	return errCode(err)
}

func ctxT(d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	_ = cancel // released at the deadline; the program is short-lived
	return ctx
}

func ctx() context.Context { return ctxT(10 * time.Second) }

func newClient() *clientv3.Client { return newUserClient("", "") }

func newUserClient(user, password string) *clientv3.Client {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   strings.Split(*endpoints, ","),
		DialTimeout: 5 * time.Second,
		Username:    user,
		Password:    password,
		LogConfig: &zap.Config{
			Level:            zap.NewAtomicLevelAt(zap.ErrorLevel),
			Encoding:         "json",
			EncoderConfig:    zap.NewProductionEncoderConfig(),
			OutputPaths:      []string{"stderr"},
			ErrorOutputPaths: []string{"stderr"},
		},
	})
	must(err, "clientv3.New")
	return cli
}

func grant(cli *clientv3.Client, ttl int64) clientv3.LeaseID {
	r, err := cli.Grant(ctx(), ttl)
	must(err, "grant")
	return r.ID
}

// within polls cond every 50 ms for up to d; returns whether it held.
func within(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func countPrefix(cli *clientv3.Client, pfx string) int {
	r, err := cli.Get(ctx(), pfx, clientv3.WithPrefix(), clientv3.WithCountOnly())
	must(err, "count "+pfx)
	return int(r.Count)
}

type lockResult struct {
	resp *v3lockpb.LockResponse
	err  error
}

func lockAsync(lc v3lockpb.LockClient, c context.Context, name string, lease clientv3.LeaseID) chan lockResult {
	ch := make(chan lockResult, 1)
	go func() {
		r, err := lc.Lock(c, &v3lockpb.LockRequest{Name: []byte(name), Lease: int64(lease)})
		ch <- lockResult{r, err}
	}()
	return ch
}

// waitsOn checks that a blocking call has not returned after 500 ms.
func waitsOn(ch chan lockResult, what string) {
	select {
	case r := <-ch:
		fail("%s returned while the lock is held: %s", what, errText(r.err))
	case <-time.After(500 * time.Millisecond):
	}
}

func got(ch chan lockResult, what string) *v3lockpb.LockResponse {
	select {
	case r := <-ch:
		must(r.err, what)
		return r.resp
	case <-time.After(15 * time.Second):
		fail("%s: still waiting after 15 s", what)
	}
	return nil
}

func checkLockService(cli *clientv3.Client) {
	lc := v3lockpb.NewLockClient(cli.ActiveConnection())
	const name = "gl/lock"

	step("lock: first holder")
	l1, l2 := grant(cli, 30), grant(cli, 30)
	r1, err := lc.Lock(ctx(), &v3lockpb.LockRequest{Name: []byte(name), Lease: int64(l1)})
	must(err, "Lock")
	if want := fmt.Sprintf("%s/%x", name, int64(l1)); string(r1.Key) != want {
		fail("Lock key %q, want %q", r1.Key, want)
	}
	g, err := cli.Get(ctx(), string(r1.Key))
	must(err, "get lock key")
	if len(g.Kvs) != 1 || g.Kvs[0].Lease != int64(l1) ||
		g.Kvs[0].CreateRevision != r1.Header.Revision || len(g.Kvs[0].Value) != 0 {
		fail("lock key %v does not match the response header %v", g.Kvs, r1.Header)
	}
	fact("lock: key is <name>/<lease hex>, empty, on the lease, created at the header's revision")

	step("lock: second waits for unlock")
	w2 := lockAsync(lc, ctxT(30*time.Second), name, l2)
	waitsOn(w2, "second Lock")
	u, err := lc.Unlock(ctx(), &v3lockpb.UnlockRequest{Key: r1.Key})
	must(err, "Unlock")
	r2 := got(w2, "second Lock")
	if want := fmt.Sprintf("%s/%x", name, int64(l2)); string(r2.Key) != want {
		fail("second Lock key %q, want %q", r2.Key, want)
	}
	if r2.Header.Revision < u.Header.Revision {
		fail("second Lock's header revision %d before the unlock's %d",
			r2.Header.Revision, u.Header.Revision)
	}
	fact("lock: a waiter acquires after Unlock, at or after the unlock's revision")

	step("lock: holder's lease revoked")
	l3 := grant(cli, 30)
	w3 := lockAsync(lc, ctxT(30*time.Second), name, l3)
	waitsOn(w3, "third Lock")
	_, err = cli.Revoke(ctx(), l2)
	must(err, "revoke")
	got(w3, "third Lock")
	fact("lock: revoking the holder's lease releases the lock")

	step("lock: holder's lease expires")
	_, err = lc.Unlock(ctx(), &v3lockpb.UnlockRequest{Key: []byte(fmt.Sprintf("%s/%x", name, int64(l3)))})
	must(err, "Unlock third")
	l4, l5 := grant(cli, 2), grant(cli, 30)
	got(lockAsync(lc, ctx(), name, l4), "Lock on a 2 s lease")
	w5 := lockAsync(lc, ctxT(30*time.Second), name, l5)
	waitsOn(w5, "Lock behind a 2 s lease")
	got(w5, "Lock behind a 2 s lease")
	fact("lock: the holder's lease expiring (not kept alive) releases the lock")
	_, err = cli.Revoke(ctx(), l5)
	must(err, "revoke l5")

	step("lock: errors")
	_, err = lc.Lock(ctx(), &v3lockpb.LockRequest{Name: []byte(name), Lease: 0x7eadbeef})
	fact("lock: unknown lease: %s", errText(err))
	_, err = lc.Unlock(ctx(), &v3lockpb.UnlockRequest{Key: []byte("gl/nosuchlock/1")})
	fact("unlock: key that does not exist: %s", errText(err))
	_, err = lc.Unlock(ctx(), &v3lockpb.UnlockRequest{})
	fact("unlock: empty key: %s", errText(err))

	step("lock: lease 0")
	r0, err := lc.Lock(ctx(), &v3lockpb.LockRequest{Name: []byte("gl/lock0")})
	must(err, "Lock without lease")
	g, err = cli.Get(ctx(), string(r0.Key))
	must(err, "get lease-0 lock key")
	if len(g.Kvs) != 1 || g.Kvs[0].Lease == 0 {
		fail("lease-0 lock key %q: %v", r0.Key, g.Kvs)
	}
	ttl, err := cli.TimeToLive(ctx(), clientv3.LeaseID(g.Kvs[0].Lease))
	must(err, "timetolive")
	fact("lock: lease 0 gets a new lease: granted TTL %d s, key named after it: %v",
		ttl.GrantedTTL, string(r0.Key) == fmt.Sprintf("gl/lock0/%x", g.Kvs[0].Lease))
	_, err = cli.Revoke(ctx(), clientv3.LeaseID(g.Kvs[0].Lease))
	must(err, "revoke lease-0 lock's lease")

	step("lock: a waiter that gives up leaves no key")
	l6, l7 := grant(cli, 30), grant(cli, 30)
	got(lockAsync(lc, ctx(), "gl/lockc", l6), "holder of gl/lockc")
	// The deadline must fall while the call waits, after its key was put:
	// on a loaded machine 700 ms could expire during the put itself, and
	// then neither etcd nor detcd knows the key is the caller's to remove.
	_, err = lc.Lock(ctxT(3*time.Second), &v3lockpb.LockRequest{Name: []byte("gl/lockc"), Lease: int64(l7)})
	// Up to 10 s: the server removes it from a clean-up call of its own after
	// the deadline, which a loaded machine may delay (a full ctest run saw 5 s pass once).
	gone := within(10*time.Second, func() bool { return countPrefix(cli, "gl/lockc/") == 1 })
	if !gone {
		// Not part of the transcript: what stayed, for the log.
		g, gerr := cli.Get(ctx(), "gl/lockc/", clientv3.WithPrefix())
		if gerr == nil {
			for _, kv := range g.Kvs {
				fmt.Fprintf(os.Stderr, "golock: left %s create %d mod %d lease %x (header %d, waiter lease %x)\n",
					kv.Key, kv.CreateRevision, kv.ModRevision, kv.Lease, g.Header.Revision, int64(l7))
			}
		}
	}
	fact("lock: waiter past its deadline: %s; its key removed by the server: %v", deadlineCode(err), gone)
	for _, l := range []clientv3.LeaseID{l6, l7} {
		_, err = cli.Revoke(ctx(), l)
		must(err, "revoke")
	}
}

type campaignResult struct {
	resp *v3electionpb.CampaignResponse
	err  error
}

func campaignAsync(ec v3electionpb.ElectionClient, c context.Context, name string, lease clientv3.LeaseID, val string) chan campaignResult {
	ch := make(chan campaignResult, 1)
	go func() {
		r, err := ec.Campaign(c, &v3electionpb.CampaignRequest{Name: []byte(name), Lease: int64(lease), Value: []byte(val)})
		ch <- campaignResult{r, err}
	}()
	return ch
}

func observed(obs v3electionpb.Election_ObserveClient, what string) string {
	type rec struct {
		r   *v3electionpb.LeaderResponse
		err error
	}
	ch := make(chan rec, 1)
	go func() {
		r, err := obs.Recv()
		ch <- rec{r, err}
	}()
	select {
	case x := <-ch:
		must(x.err, what)
		return string(x.r.Kv.Value)
	case <-time.After(15 * time.Second):
		fail("%s: nothing observed after 15 s", what)
	}
	return ""
}

func checkElectionService(cli *clientv3.Client) {
	ec := v3electionpb.NewElectionClient(cli.ActiveConnection())
	const name = "gl/elect"

	step("election: no leader yet")
	_, err := ec.Leader(ctx(), &v3electionpb.LeaderRequest{Name: []byte(name)})
	fact("leader: nobody campaigning: %s", errText(err))

	step("election: first campaign")
	l1, l2 := grant(cli, 30), grant(cli, 30)
	c1, err := ec.Campaign(ctx(), &v3electionpb.CampaignRequest{Name: []byte(name), Lease: int64(l1), Value: []byte("v1")})
	must(err, "Campaign")
	lk := c1.Leader
	if string(lk.Name) != name || string(lk.Key) != fmt.Sprintf("%s/%x", name, int64(l1)) ||
		lk.Lease != int64(l1) || lk.Rev != c1.Header.Revision {
		fail("Campaign leader key %v (header %v)", lk, c1.Header)
	}
	fact("campaign: LeaderKey has the name, <name>/<lease hex>, the lease and the key's create revision")
	ld, err := ec.Leader(ctx(), &v3electionpb.LeaderRequest{Name: []byte(name)})
	must(err, "Leader")
	fact("leader: %s (key matches: %v)", ld.Kv.Value, string(ld.Kv.Key) == string(lk.Key))

	octx, ocancel := context.WithCancel(context.Background())
	defer ocancel()
	obs, err := ec.Observe(octx, &v3electionpb.LeaderRequest{Name: []byte(name)})
	must(err, "Observe")
	fact("observe: %s", observed(obs, "first Observe"))

	step("election: second campaign waits")
	w2 := campaignAsync(ec, ctxT(30*time.Second), name, l2, "v2")
	select {
	case r := <-w2:
		fail("second Campaign returned while a leader exists: %s", errText(r.err))
	case <-time.After(500 * time.Millisecond):
	}

	step("election: proclaim")
	_, err = ec.Proclaim(ctx(), &v3electionpb.ProclaimRequest{Leader: lk, Value: []byte("v1b")})
	must(err, "Proclaim")
	fact("observe after proclaim: %s", observed(obs, "Observe after Proclaim"))
	bad := *lk
	bad.Rev++
	_, err = ec.Proclaim(ctx(), &v3electionpb.ProclaimRequest{Leader: &bad, Value: []byte("x")})
	fact("proclaim: wrong revision: %s", errText(err))
	_, err = ec.Proclaim(ctx(), &v3electionpb.ProclaimRequest{Value: []byte("x")})
	fact("proclaim: no leader key: %s", errText(err))
	_, err = ec.Resign(ctx(), &v3electionpb.ResignRequest{})
	fact("resign: no leader key: %s", errText(err))
	_, err = ec.Resign(ctx(), &v3electionpb.ResignRequest{Leader: &bad})
	ld, lerr := ec.Leader(ctx(), &v3electionpb.LeaderRequest{Name: []byte(name)})
	must(lerr, "Leader after a wrong resign")
	fact("resign: wrong revision: %s; leader still %s", errText(err), ld.Kv.Value)

	step("election: resign hands over")
	_, err = ec.Resign(ctx(), &v3electionpb.ResignRequest{Leader: lk})
	must(err, "Resign")
	var c2 *v3electionpb.CampaignResponse
	select {
	case r := <-w2:
		must(r.err, "second Campaign")
		c2 = r.resp
	case <-time.After(15 * time.Second):
		fail("second Campaign still waiting after the leader resigned")
	}
	fact("observe after resign: %s (second campaigner's key: %v)", observed(obs, "Observe after Resign"),
		string(c2.Leader.Key) == fmt.Sprintf("%s/%x", name, int64(l2)))

	step("election: campaign again on the same lease")
	c2b, err := ec.Campaign(ctx(), &v3electionpb.CampaignRequest{Name: []byte(name), Lease: int64(l2), Value: []byte("v2b")})
	must(err, "Campaign again")
	fact("campaign again on the same lease: same key %v, same rev %v; observe: %s",
		string(c2b.Leader.Key) == string(c2.Leader.Key), c2b.Leader.Rev == c2.Leader.Rev,
		observed(obs, "Observe after a second Campaign"))

	step("election: leader's lease expires")
	_, err = ec.Resign(ctx(), &v3electionpb.ResignRequest{Leader: c2b.Leader})
	must(err, "Resign second")
	l3 := grant(cli, 2)
	_, err = ec.Campaign(ctx(), &v3electionpb.CampaignRequest{Name: []byte(name), Lease: int64(l3), Value: []byte("v3")})
	must(err, "Campaign on a 2 s lease")
	fact("observe: %s", observed(obs, "Observe of a leader on a 2 s lease"))
	var lastErr error
	noLeader := within(15*time.Second, func() bool {
		_, lastErr = ec.Leader(ctx(), &v3electionpb.LeaderRequest{Name: []byte(name)})
		return lastErr != nil
	})
	fact("leader after the leader's lease expired: %v %s", noLeader, errText(lastErr))

	step("election: errors")
	_, err = ec.Campaign(ctx(), &v3electionpb.CampaignRequest{Name: []byte(name), Lease: 0x7eadbeef, Value: []byte("x")})
	fact("campaign: unknown lease: %s", errText(err))

	step("election: a campaigner that gives up leaves no key")
	l4, l5 := grant(cli, 30), grant(cli, 30)
	_, err = ec.Campaign(ctx(), &v3electionpb.CampaignRequest{Name: []byte("gl/electc"), Lease: int64(l4), Value: []byte("a")})
	must(err, "Campaign gl/electc")
	// As for the lock waiter: the deadline falls while the call waits.
	_, err = ec.Campaign(ctxT(3*time.Second), &v3electionpb.CampaignRequest{Name: []byte("gl/electc"), Lease: int64(l5), Value: []byte("b")})
	// Up to 10 s as for the lock waiter (5 s passed once with four
	// integration tests running side by side on two cores).
	gone := within(10*time.Second, func() bool { return countPrefix(cli, "gl/electc/") == 1 })
	fact("campaign past its deadline: %s; its key removed by the server: %v", deadlineCode(err), gone)

	ocancel()
	for _, l := range []clientv3.LeaseID{l1, l2, l4, l5} {
		_, err = cli.Revoke(ctx(), l)
		must(err, "revoke")
	}
}

// checkRecipes runs clientv3's concurrency package itself (client-side
// recipes over KV, Watch and Lease).
func checkRecipes(cli *clientv3.Client) {
	step("recipes: mutex contention with fenced writes")
	const workers, rounds = 5, 10
	_, err := cli.Put(ctx(), "gl/counter", "0")
	must(err, "put counter")
	var inside int32
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
			if err != nil {
				errs <- err
				return
			}
			defer s.Close()
			m := concurrency.NewMutex(s, "gl/mutex")
			for i := 0; i < rounds; i++ {
				if err := m.Lock(ctxT(60 * time.Second)); err != nil {
					errs <- err
					return
				}
				if !atomic.CompareAndSwapInt32(&inside, 0, 1) {
					errs <- fmt.Errorf("two holders of gl/mutex at once")
					return
				}
				g, err := cli.Get(ctx(), "gl/counter")
				if err != nil {
					errs <- err
					return
				}
				var n int
				fmt.Sscanf(string(g.Kvs[0].Value), "%d", &n)
				// Fenced by the lock: only the owner's write applies.
				t, err := cli.Txn(ctx()).If(m.IsOwner()).
					Then(clientv3.OpPut("gl/counter", fmt.Sprint(n+1))).Commit()
				if err != nil || !t.Succeeded {
					errs <- fmt.Errorf("fenced write failed: %v", err)
					return
				}
				atomic.StoreInt32(&inside, 0)
				if err := m.Unlock(ctx()); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		must(err, "mutex worker")
	}
	g, err := cli.Get(ctx(), "gl/counter")
	must(err, "get counter")
	fact("mutex: %d sessions x %d rounds, counter %s", workers, rounds, g.Kvs[0].Value)

	step("recipes: an orphaned session's lock is released by expiry")
	s1, err := concurrency.NewSession(cli, concurrency.WithTTL(2))
	must(err, "session ttl 2")
	s2, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
	must(err, "session ttl 10")
	defer s2.Close()
	m1, m2 := concurrency.NewMutex(s1, "gl/mutex2"), concurrency.NewMutex(s2, "gl/mutex2")
	must(m1.Lock(ctx()), "m1.Lock")
	s1.Orphan()
	start := time.Now()
	must(m2.Lock(ctxT(20*time.Second)), "m2.Lock")
	fact("mutex: acquired after the holder's session expired: %v", time.Since(start) > time.Second)
	must(m2.Unlock(ctx()), "m2.Unlock")

	step("recipes: election with observation")
	e1, e2 := concurrency.NewElection(s2, "gl/relect"), (*concurrency.Election)(nil)
	s3, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
	must(err, "session 3")
	defer s3.Close()
	e2 = concurrency.NewElection(s3, "gl/relect")
	octx, ocancel := context.WithCancel(context.Background())
	defer ocancel()
	och := concurrency.NewElection(s3, "gl/relect").Observe(octx)
	must(e1.Campaign(ctx(), "r1"), "e1.Campaign")
	next := func() string {
		select {
		case r, ok := <-och:
			if !ok {
				fail("observer closed")
			}
			return string(r.Kvs[0].Value)
		case <-time.After(15 * time.Second):
			fail("observer: nothing after 15 s")
		}
		return ""
	}
	v1 := next()
	done := make(chan error, 1)
	go func() { done <- e2.Campaign(ctxT(30*time.Second), "r2") }()
	must(e1.Proclaim(ctx(), "r1b"), "e1.Proclaim")
	v2 := next()
	must(e1.Resign(ctx()), "e1.Resign")
	must(<-done, "e2.Campaign")
	v3 := next()
	l, err := e2.Leader(ctx())
	must(err, "e2.Leader")
	fact("election recipe: observed %s, %s, %s; leader %s", v1, v2, v3, l.Kvs[0].Value)
	must(e2.Resign(ctx()), "e2.Resign")
	_, err = e2.Leader(ctx())
	fact("election recipe: leader after resign: %v", err)
}

// checkAuth: the services act as their caller (its token reaches the inner
// KV and Lease calls), with etcd's errors for a caller without a token or
// without permission.
func checkAuth(cli *clientv3.Client) {
	step("auth: enable")
	for _, err := range []error{
		func() error { _, err := cli.UserAdd(ctx(), "root", "rootpw"); return err }(),
		func() error { _, err := cli.UserGrantRole(ctx(), "root", "root"); return err }(),
		func() error { _, err := cli.RoleAdd(ctx(), "locker"); return err }(),
		func() error {
			_, err := cli.RoleGrantPermission(ctx(), "locker", "ga/", clientv3.GetPrefixRangeEnd("ga/"),
				clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		}(),
		func() error { _, err := cli.UserAdd(ctx(), "alice", "alicepw"); return err }(),
		func() error { _, err := cli.UserGrantRole(ctx(), "alice", "locker"); return err }(),
	} {
		must(err, "auth setup")
	}
	_, err := cli.AuthEnable(ctx())
	must(err, "AuthEnable")
	root := newUserClient("root", "rootpw")
	defer root.Close()
	defer func() {
		_, err := root.AuthDisable(ctx())
		must(err, "AuthDisable")
	}()
	alice := newUserClient("alice", "alicepw")
	defer alice.Close()
	l := grant(root, 30)

	step("auth: lock")
	anon := v3lockpb.NewLockClient(cli.ActiveConnection())
	_, err = anon.Lock(ctx(), &v3lockpb.LockRequest{Name: []byte("ga/lock"), Lease: int64(l)})
	fact("auth: lock without a token: %s", errText(err))
	al := v3lockpb.NewLockClient(alice.ActiveConnection())
	_, err = al.Lock(ctx(), &v3lockpb.LockRequest{Name: []byte("gb/lock"), Lease: int64(l)})
	fact("auth: lock outside the user's keys: %s", errText(err))
	r, err := al.Lock(ctx(), &v3lockpb.LockRequest{Name: []byte("ga/lock"), Lease: int64(l)})
	fact("auth: lock inside the user's keys: %s", errText(err))
	if err == nil {
		_, err = al.Unlock(ctx(), &v3lockpb.UnlockRequest{Key: r.Key})
		fact("auth: unlock: %s", errText(err))
	}

	step("auth: election")
	ec := v3electionpb.NewElectionClient(alice.ActiveConnection())
	c, err := ec.Campaign(ctx(), &v3electionpb.CampaignRequest{Name: []byte("ga/elect"), Lease: int64(l), Value: []byte("a")})
	fact("auth: campaign: %s", errText(err))
	_, err = v3electionpb.NewElectionClient(cli.ActiveConnection()).Leader(ctx(), &v3electionpb.LeaderRequest{Name: []byte("ga/elect")})
	fact("auth: leader without a token: %s", errText(err))
	ld, err := ec.Leader(ctx(), &v3electionpb.LeaderRequest{Name: []byte("ga/elect")})
	if err == nil {
		fact("auth: leader: %s", ld.Kv.Value)
	} else {
		fact("auth: leader: %s", errText(err))
	}
	octx, ocancel := context.WithCancel(context.Background())
	defer ocancel()
	obs, err := ec.Observe(octx, &v3electionpb.LeaderRequest{Name: []byte("ga/elect")})
	must(err, "Observe")
	fact("auth: observe: %s", observed(obs, "Observe with auth"))
	if c != nil {
		_, err = ec.Resign(ctx(), &v3electionpb.ResignRequest{Leader: c.Leader})
		fact("auth: resign: %s", errText(err))
	}
	_, err = root.Revoke(ctx(), l)
	must(err, "revoke")
}

func main() {
	flag.Parse()
	defer func() {
		if r := recover(); r != nil {
			if f, ok := r.(failure); ok {
				fmt.Fprintln(os.Stderr, "FAIL:", f.msg)
				os.Exit(1)
			}
			panic(r)
		}
	}()
	cli := newClient()
	defer cli.Close()
	start := time.Now()
	if *auth {
		checkAuth(cli)
	} else {
		checkLockService(cli)
		checkElectionService(cli)
		checkRecipes(cli)
	}
	fmt.Fprintf(os.Stderr, "PASS: all checks in %.2fs\n", time.Since(start).Seconds())
	fmt.Println("PASS")
}
