package demo

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quicwt/quicwt/cmd/quicwt/internal/certs"
)

func TestDialRedisUnreachable(t *testing.T) {
	port := freeTCPPort(t) // nothing listens there
	start := time.Now()
	_, err := DialRedis(context.Background(), "redis://127.0.0.1:"+itoa(port)+"/0", nil)
	if err == nil || !strings.Contains(err.Error(), "unreachable") || !strings.Contains(err.Error(), "127.0.0.1:"+itoa(port)) {
		t.Fatalf("err %v, want a clear unreachable error", err)
	}
	if d := time.Since(start); d > redisStartPing+2*time.Second {
		t.Errorf("took %v", d)
	}
	if _, err := DialRedis(context.Background(), "http://x", nil); err == nil || !strings.Contains(err.Error(), "bad Redis URL") {
		t.Errorf("bad URL: %v", err)
	}
}

// Two stores on one Redis are two instances: their clicks on one user
// make one sequence. Redis stopped: 503-class errors, logged once; Redis
// back: clicks go on without a restart.
func TestRedisStore(t *testing.T) {
	rs := startRedis(t, true)
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	r1, err := DialRedis(context.Background(), rs.URL(), log)
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()
	r2, err := DialRedis(context.Background(), rs.URL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	s1, s2 := NewRedisStore(r1), NewRedisStore(r2)
	for i := range 10 {
		s := s1
		if i%2 == 1 {
			s = s2
		}
		n, err := s.Increment("John Doe")
		if err != nil || n != int64(i) {
			t.Fatalf("click %d: score %d, err %v", i, n, err)
		}
	}
	if n, err := s2.Score("John Doe"); n != 10 || err != nil {
		t.Fatalf("score %d, %v", n, err)
	}
	if n, err := s1.Score("nobody"); n != 0 || err != nil {
		t.Fatalf("unknown user: %d, %v", n, err)
	}

	rs.Stop()
	for range 5 {
		start := time.Now()
		_, err := s1.Increment("John Doe")
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("with Redis stopped: %v, want ErrUnavailable", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("a failing click took %v", d)
		}
	}
	if _, err := s1.Score("John Doe"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Score with Redis stopped: %v", err)
	}
	rs.Restart() // AOF with fsync always: the ten clicks are still there
	var n int64
	for i := 0; ; i++ {
		n, err = s1.Increment("John Doe")
		if err == nil || i == 50 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil || n != 10 {
		t.Fatalf("after the restart: score %d, err %v", n, err)
	}
	out := logs.String()
	if c := strings.Count(out, "redis unreachable"); c != 1 {
		t.Errorf("%d 'unreachable' lines, want 1:\n%s", c, out)
	}
	if c := strings.Count(out, "redis reachable again"); c != 1 {
		t.Errorf("%d 'reachable again' lines, want 1:\n%s", c, out)
	}
}

// testRoomOpts are short, so that the tests wait little for a dead
// instance's leaves.
var testRoomOpts = RedisRoomOptions{Heartbeat: 100 * time.Millisecond, TTL: 500 * time.Millisecond}

type redisInstance struct {
	*Server
	logs *syncBuffer
}

// startRedisInstance starts a demo server whose scores and chat room are
// in rs.
func startRedisInstance(t *testing.T, rs *redisServer) *redisInstance {
	t.Helper()
	return startRedisInstanceAt(t, rs.URL())
}

// startRedisInstanceAt starts a demo server on the Redis at url.
func startRedisInstanceAt(t *testing.T, url string) *redisInstance {
	t.Helper()
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rdb, err := DialRedis(context.Background(), url, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	c, err := certs.Generate(nil, certs.DefaultValidity)
	if err != nil {
		t.Fatal(err)
	}
	d := startTestDemoWith(t, Config{Cert: c, Logger: log, Store: NewRedisStore(rdb),
		Chat: ChatOptions{Link: NewRedisRoom(rdb, testRoomOpts)}})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("instance %s log:\n%s", d.wtURL, logs.String())
		}
	})
	return &redisInstance{Server: d, logs: logs}
}

// kill stops the instance's chat link as a SIGKILL would: no leave is
// sent, the liveness key is left to expire.
func (i *redisInstance) kill() {
	i.stopLink()
	<-i.linkDone
}

// waitSubscribers waits until n links listen on the chat channel.
func waitSubscribers(t *testing.T, rs *redisServer, n int64) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + itoa(rs.port)})
	defer c.Close()
	for range 200 {
		m, err := c.PubSubNumSub(context.Background(), chatChannel).Result()
		if err == nil && m[chatChannel] == n {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%d chat subscribers never showed up", n)
}

// seen consumes messages until name: comment comes (other messages are
// skipped): for watchers, whose view of cross-instance order is racy.
func (c *chatClient) seen(name, comment string) {
	c.t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m := <-c.in:
			if m.Name == name && m.Comment == comment {
				return
			}
		case <-timeout:
			c.t.Fatalf("%s never saw %s: %q", c.name, name, comment)
		}
	}
}

// watchers enters one watcher per instance, one after the other, each
// seen by those before it. Events cross instances asynchronously (alice
// entering on A reaches B a moment later, maybe after bob entered on B),
// so the tests settle each step on the watchers: once every watcher has
// seen an event, every instance has delivered it.
func watchers(t *testing.T, insts ...*redisInstance) []*chatClient {
	t.Helper()
	var ws []*chatClient
	for i, in := range insts {
		w := joinChat(t, in.Server, "w"+itoa(i), true)
		w.enter()
		for _, o := range ws {
			o.seen("server", w.name+" has entered")
		}
		ws = append(ws, w)
	}
	return ws
}

// settle waits until every watcher has seen name: comment.
func settle(t *testing.T, ws []*chatClient, name, comment string) {
	t.Helper()
	for _, w := range ws {
		w.seen(name, comment)
	}
}

// expectSet waits for len(want) messages in any order.
func (c *chatClient) expectSet(want ...string) {
	c.t.Helper()
	left := map[string]int{}
	for _, w := range want {
		left[w]++
	}
	for range want {
		select {
		case m := <-c.in:
			k := m.Name + ": " + m.Comment
			if left[k] == 0 {
				c.t.Fatalf("%s got %q, want one of %v", c.name, k, left)
			}
			left[k]--
		case <-time.After(10 * time.Second):
			c.t.Fatalf("%s: still waiting for %v", c.name, left)
		}
	}
}

// One room across three instances: joins, comments and leaves reach every
// member once, whichever instance they are on; when an instance dies, its
// members' leaves are announced once to each survivor's members although
// both survivors reap.
func TestRedisRoomAcrossInstances(t *testing.T) {
	rs := startRedis(t, false)
	a, b, c := startRedisInstance(t, rs), startRedisInstance(t, rs), startRedisInstance(t, rs)
	waitSubscribers(t, rs, 3)
	ws := watchers(t, a, b, c)
	enter := func(in *redisInstance, name string) *chatClient {
		t.Helper()
		x := joinChat(t, in.Server, name, true)
		x.enter()
		settle(t, ws, "server", name+" has entered")
		return x
	}

	alice := enter(a, "alice")
	bob := enter(b, "bob")
	alice.expect("server", "bob has entered")
	carol := enter(a, "carol")
	alice.expect("server", "carol has entered")
	bob.expect("server", "carol has entered")
	erin := enter(c, "erin")
	for _, x := range []*chatClient{alice, bob, carol} {
		x.expect("server", "erin has entered")
	}

	alice.comment("hello")
	long := strings.Repeat("日", 600)
	bob.comment(long)
	for _, x := range []*chatClient{alice, bob, carol, erin} {
		// The order of two senders' comments is not fixed across
		// instances; each one's order is.
		x.expectSet("alice: hello", "bob: "+long)
	}

	// A tab closed: its leave, once, everywhere.
	bob.sess.CloseWithError(0, "bye")
	for _, x := range []*chatClient{alice, carol, erin} {
		x.expect("server", "bob has left")
	}

	// A dies with alice and carol: B and C both reap, each leave reaches
	// dave (B) and erin (C) once.
	dave := enter(b, "dave")
	for _, x := range []*chatClient{alice, carol, erin} {
		x.expect("server", "dave has entered")
	}
	a.kill()
	for _, x := range []*chatClient{dave, erin} {
		x.expectSet("server: alice has left", "server: carol has left", "server: w0 has left")
	}
	for _, x := range []*chatClient{dave, erin} {
		x.quiet(4 * testRoomOpts.TTL)
	}
	won := strings.Count(b.logs.String(), "dead instance") + strings.Count(c.logs.String(), "dead instance")
	if won != 3 {
		t.Errorf("%d leaves of the dead instance announced, want 3 (alice, carol, w0)", won)
	}

	// A restart is a new instance: it announces nobody but its newcomers.
	a2 := startRedisInstance(t, rs)
	waitSubscribers(t, rs, 3)
	frank := joinChat(t, a2.Server, "frank", true)
	frank.enter()
	settle(t, ws[1:], "server", "frank has entered")
	for _, x := range []*chatClient{dave, erin} {
		x.expect("server", "frank has entered")
		x.quiet(3 * testRoomOpts.Heartbeat)
	}
	frank.quiet(3 * testRoomOpts.Heartbeat)
}

// Redis stopped while serving: clicks get 503, the room goes on inside
// each instance, each instance logs the outage once; Redis back (empty:
// no persistence): the instances rejoin by themselves, members already
// announced are not announced again, and a later leave is announced once.
func TestRedisRoomOutage(t *testing.T) {
	rs := startRedis(t, false)
	a, b := startRedisInstance(t, rs), startRedisInstance(t, rs)
	waitSubscribers(t, rs, 2)
	ws := watchers(t, a, b)
	alice := joinChat(t, a.Server, "alice", true)
	alice.enter()
	settle(t, ws, "server", "alice has entered")
	carol := joinChat(t, a.Server, "carol", true)
	carol.enter()
	alice.expect("server", "carol has entered")
	settle(t, ws, "server", "carol has entered")
	bob := joinChat(t, b.Server, "bob", true)
	bob.enter()
	alice.expect("server", "bob has entered")
	carol.expect("server", "bob has entered")
	click := func(i *redisInstance) string {
		sess, _ := dialDemo(t, i.Server, "/clicker", nil)
		return string(roundTripDatagram(t, testCtx(t), sess, []byte(`{"type":"increment","username":"u"}`)))
	}
	if got := click(a); got != `{"status":200,"score":0}` {
		t.Fatalf("click: %s", got)
	}

	rs.Stop()
	for range 3 {
		if got := click(b); got != `{"status":503}` {
			t.Fatalf("click with Redis down: %s", got)
		}
	}
	alice.comment("still here?")
	alice.expect("alice", "still here?")
	carol.expect("alice", "still here?")
	bob.quiet(300 * time.Millisecond)
	time.Sleep(10 * testRoomOpts.Heartbeat) // several failed heartbeats

	rs.Restart()
	waitSubscribers(t, rs, 2)
	for _, i := range []*redisInstance{a, b} {
		for n := 0; !strings.Contains(i.logs.String(), "chat link rejoined"); n++ {
			if n == 100 {
				t.Fatal("no rejoin within 10s")
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for _, x := range []*chatClient{alice, bob, carol} {
		x.quiet(3 * testRoomOpts.Heartbeat) // nobody announced again
	}
	if got := click(a); got != `{"status":200,"score":0}` { // Redis came back empty
		t.Fatalf("click after the restart: %s", got)
	}
	bob.comment("back")
	for _, x := range []*chatClient{alice, bob, carol} {
		x.expect("bob", "back")
	}
	carol.sess.CloseWithError(0, "bye")
	alice.expect("server", "carol has left")
	bob.expect("server", "carol has left")
	bob.quiet(4 * testRoomOpts.TTL)
	for _, i := range []*redisInstance{a, b} {
		out := i.logs.String()
		if n := strings.Count(out, "redis unreachable"); n != 1 {
			t.Errorf("%s: %d 'unreachable' lines, want 1", i.wtURL, n)
		}
		if n := strings.Count(out, "chat link rejoined"); n != 1 {
			t.Errorf("%s: %d 'rejoined' lines, want 1", i.wtURL, n)
		}
	}
}

// Whatever is published on the channel, only well-formed events of other
// instances are delivered; oversized or malformed ones are dropped.
func TestRedisRoomBadEvents(t *testing.T) {
	rs := startRedis(t, false)
	a := startRedisInstance(t, rs)
	waitSubscribers(t, rs, 1)
	alice := joinChat(t, a.Server, "alice", true)
	alice.enter()
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + itoa(rs.port)})
	defer c.Close()
	for _, p := range []string{
		strings.Repeat("x", maxEventSize+1),
		`{"k":"comment","o":"x","n":"zed","c":"` + strings.Repeat("y", maxEventSize) + `"}`,
		`not json`,
		`{"k":"shout","o":"x","n":"zed","c":"hi"}`,
		`{"k":"comment","o":"x","n":"","c":"hi"}`,
		`{"k":"comment","o":"x","n":"` + strings.Repeat("n", maxChatName+1) + `","c":"hi"}`,
		`{"k":"comment","o":"x","n":"zed","c":"hi"}`, // the only good one
	} {
		if err := c.Publish(context.Background(), chatChannel, p).Err(); err != nil {
			t.Fatal(err)
		}
	}
	alice.expect("zed", "hi")
	alice.quiet(5 * testRoomOpts.Heartbeat)
}

// An instance cut off from Redis for longer than the TTL while Redis
// stays up is judged dead: the survivors announce its members' leaves.
// When it is back, it announces them as entering again (they are still
// there), once.
func TestRedisRoomReapedRejoin(t *testing.T) {
	rs := startRedis(t, false)
	px := startTCPProxy(t, rs.port)
	b := startRedisInstance(t, rs)
	a := startRedisInstanceAt(t, "redis://"+px.addr+"/0")
	waitSubscribers(t, rs, 2)
	ws := watchers(t, a, b)
	alice := joinChat(t, a.Server, "alice", true)
	alice.enter()
	settle(t, ws, "server", "alice has entered")
	bob := joinChat(t, b.Server, "bob", true)
	bob.enter()
	alice.expect("server", "bob has entered")

	px.cut()
	bob.expectSet("server: alice has left", "server: w0 has left") // reaped by B
	px.restore()
	bob.expectSet("server: alice has entered", "server: w0 has entered") // A is back
	bob.quiet(4 * testRoomOpts.TTL)
	if n := strings.Count(a.logs.String(), "chat link rejoined"); n != 1 || !strings.Contains(a.logs.String(), "reannounced=true") {
		t.Errorf("A's log: %d rejoins, want 1 with reannounced=true", n)
	}
	bob.comment("hi alice")
	alice.expect("bob", "hi alice")
}
