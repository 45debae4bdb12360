package main

// The chat load of issue 16: N WebTransport sessions per instance in the
// demo's chat room (cmd/quicwt/demo), every member sending M comments as
// fast as its streams go, each comment delivered to every member on its
// own unidirectional stream. Two setups with the same members:
//
//	local  one demo server, the room in its process (the default of
//	       quicwt serve);
//	redis  I demo servers in this process, each its own quicwt.Server
//	       and UDP port, the room joined through a redis-server that the
//	       run starts on a free loopback port (quicwt serve -redis).
//
// Reported: deliveries (comments x members), the fan-out rate
// (deliveries per second from the first send to the last delivery) and
// the delivery latency (send to receipt, read from a timestamp in the
// comment) at p50, p99 and max. Loopback only; every wait is bounded.
//
//	cd cmd/bench && go run . -chat                            # 2 instances x 25 sessions, 20 comments each, a burst
//	cd cmd/bench && go run . -chat -chat-interval 250ms       # paced: 4 comments/s per member
//	cd cmd/bench && go run . -chat -chat-sessions 50          # larger
//
// A burst measures the fan-out rate at saturation (its latencies are
// mostly queueing: every comment is sent at once); a paced run measures
// the delivery latency below saturation. The members' queues are sized
// for the whole run, so that no member is evicted as too slow.

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/quicwt/quicwt/cmd/quicwt/demo"
	"github.com/quicwt/quicwt/quicwt"
)

type chatSpec struct {
	instances int           // for the redis setup (local: one server, the same members)
	perInst   int           // sessions per instance
	messages  int           // comments per member
	interval  time.Duration // between a member's comments; 0: as fast as its streams go (a burst)
}

type chatResult struct {
	setup      string
	members    int
	comments   int
	deliveries int
	lost       int
	elapsed    time.Duration
	p50, p99   time.Duration
	max        time.Duration
}

// runChatLoad runs the local and the redis setup and prints a table.
// go-redis's own log (pool events at shutdown) is silenced for the run.
func runChatLoad(w io.Writer, spec chatSpec) error {
	redis.SetLogger(quietRedis{})
	var rows []chatResult
	for _, setup := range []string{"local", "redis"} {
		r, err := runChat(setup, spec)
		if err != nil {
			return fmt.Errorf("chat %s: %w", setup, err)
		}
		rows = append(rows, r)
	}
	fmt.Fprintf(w, "| setup | members | comments | deliveries | lost | time | fan-out (deliveries/s) | p50 | p99 | max |\n")
	fmt.Fprintf(w, "|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		name := "local (1 process room)"
		if r.setup == "redis" {
			name = fmt.Sprintf("redis (%d instances x %d)", spec.instances, spec.perInst)
		}
		if spec.interval > 0 {
			name += fmt.Sprintf(", 1 comment per %v per member", spec.interval)
		} else {
			name += ", burst"
		}
		fmt.Fprintf(w, "| %s | %d | %d | %d | %d | %.2f s | %.0f | %.1f ms | %.1f ms | %.1f ms |\n",
			name, r.members, r.comments, r.deliveries, r.lost, r.elapsed.Seconds(),
			float64(r.deliveries)/r.elapsed.Seconds(), ms(r.p50), ms(r.p99), ms(r.max))
	}
	return nil
}

type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// runChat starts the servers of one setup, runs the members and stops
// everything.
func runChat(setup string, spec chatSpec) (chatResult, error) {
	res := chatResult{setup: setup, members: spec.instances * spec.perInst}
	cert := serverCert()
	leaf, err := x509.ParseCertificate(cert.cert.Certificate[0])
	if err != nil {
		return res, err
	}
	tc := tls.Certificate{Certificate: cert.cert.Certificate, PrivateKey: cert.cert.PrivateKey, Leaf: leaf}
	var servers []*demo.Server
	defer func() {
		for _, s := range servers {
			s.Close()
		}
	}()
	start := func(link demo.ChatLink) error {
		s, err := demo.Start(demo.Config{Addr: "127.0.0.1:0", Cert: tc, Store: demo.NewMemoryStore(),
			Chat: demo.ChatOptions{Link: link, QueueLen: 4 * spec.instances * spec.perInst * (spec.messages + 2)}})
		if err != nil {
			return err
		}
		servers = append(servers, s)
		return nil
	}
	if setup == "local" {
		if err := start(nil); err != nil {
			return res, err
		}
	} else {
		rs, err := startRedisServer()
		if err != nil {
			return res, err
		}
		defer rs.stop()
		for range spec.instances {
			r, err := demo.DialRedis(context.Background(), rs.url, slog.New(slog.DiscardHandler))
			if err != nil {
				return res, err
			}
			defer r.Close()
			if err := start(demo.NewRedisRoom(r, demo.RedisRoomOptions{})); err != nil {
				return res, err
			}
		}
		if err := rs.waitSubscribers(spec.instances, 10*time.Second); err != nil {
			return res, err
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	members := make([]*chatMember, res.members)
	for i := range members {
		srv := servers[i%len(servers)]
		m, err := dialChatMember(ctx, srv, fmt.Sprintf("m%d", i), res.members)
		if err != nil {
			return res, err
		}
		defer m.close()
		members[i] = m
	}
	for _, m := range members {
		if err := m.send(ctx, map[string]string{"command": "enter", "name": m.name}); err != nil {
			return res, err
		}
		if err := m.waitFor(ctx, func() bool { return m.greeted.Load() }); err != nil {
			return res, fmt.Errorf("%s not greeted: %w", m.name, err)
		}
	}
	// Warm-up barrier: one comment from everyone, received by everyone,
	// so that every member is in every instance's view of the room.
	for _, m := range members {
		if err := m.send(ctx, map[string]string{"command": "comment", "comment": "warmup"}); err != nil {
			return res, err
		}
	}
	for _, m := range members {
		if err := m.waitFor(ctx, func() bool { return m.warmups.Load() >= int64(res.members) }); err != nil {
			return res, fmt.Errorf("%s got %d of %d warm-ups: %w", m.name, m.warmups.Load(), res.members, err)
		}
	}

	res.comments = res.members * spec.messages
	want := int64(res.comments * res.members)
	var delivered atomic.Int64
	for _, m := range members {
		m.delivered = &delivered
		m.measure.Store(true)
	}
	t0 := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, len(members))
	for i, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := t0.Add(time.Duration(i) * spec.interval / time.Duration(len(members))) // spread the members
			for seq := range spec.messages {
				if spec.interval > 0 {
					time.Sleep(time.Until(next))
					next = next.Add(spec.interval)
				}
				c := fmt.Sprintf("%d|%d", seq, time.Now().UnixNano())
				if err := m.send(ctx, map[string]string{"command": "comment", "comment": c}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return res, err
	}
	// Wait for every delivery, or 30 s without progress.
	last, lastAt := delivered.Load(), time.Now()
	for delivered.Load() < want && time.Since(lastAt) < 30*time.Second && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
		if n := delivered.Load(); n != last {
			last, lastAt = n, time.Now()
		}
	}
	var lat []time.Duration
	var end time.Time
	for _, m := range members {
		m.mu.Lock()
		lat = append(lat, m.lat...)
		if m.lastAt.After(end) {
			end = m.lastAt
		}
		m.mu.Unlock()
	}
	res.deliveries = len(lat)
	res.lost = int(want) - res.deliveries
	res.elapsed = end.Sub(t0)
	if len(lat) == 0 {
		return res, errors.New("no comment delivered")
	}
	slices.Sort(lat)
	res.p50, res.p99, res.max = lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1]
	return res, nil
}

// chatMember is one session in the room, reading every message.
type chatMember struct {
	name    string
	sess    *quicwt.Session
	cc      *quicwt.ClientConn
	greeted atomic.Bool
	warmups atomic.Int64
	measure atomic.Bool

	delivered *atomic.Int64
	mu        sync.Mutex
	lat       []time.Duration
	lastAt    time.Time
	kick      chan struct{}
}

func dialChatMember(ctx context.Context, srv *demo.Server, name string, members int) (*chatMember, error) {
	d := &quicwt.Dialer{CertificateHashes: [][32]byte{srv.Hashes().DER}}
	cc, err := d.DialConn(ctx, srv.WTAddr().String())
	if err != nil {
		return nil, err
	}
	_, sess, err := cc.OpenSession(ctx, srv.WTURL()+"/chat", nil)
	if err != nil {
		cc.Close()
		return nil, err
	}
	m := &chatMember{name: name, sess: sess, cc: cc, kick: make(chan struct{}, 1)}
	go m.read()
	return m, nil
}

func (m *chatMember) close() { m.cc.Close() }

func (m *chatMember) send(ctx context.Context, v map[string]string) error {
	b, _ := json.Marshal(v)
	s, err := m.sess.OpenUniStreamSync(ctx)
	if err != nil {
		return err
	}
	if _, err := s.Write(b); err != nil {
		return err
	}
	return s.Close()
}

// read takes every server stream: greeting, warm-ups, measured comments.
func (m *chatMember) read() {
	for {
		s, err := m.sess.AcceptUniStream(context.Background())
		if err != nil {
			return
		}
		go func() {
			b, err := io.ReadAll(io.LimitReader(s, 64<<10))
			if err != nil {
				return
			}
			now := time.Now()
			var msg struct{ Command, Name, Comment string }
			if json.Unmarshal(b, &msg) != nil {
				return
			}
			switch {
			case msg.Name == "server" && msg.Comment == "Hello, "+m.name:
				m.greeted.Store(true)
			case msg.Name != "server" && msg.Comment == "warmup":
				m.warmups.Add(1)
			case msg.Name != "server" && m.measure.Load():
				_, ts, ok := strings.Cut(msg.Comment, "|")
				n, err := strconv.ParseInt(ts, 10, 64)
				if !ok || err != nil {
					return
				}
				m.mu.Lock()
				m.lat = append(m.lat, now.Sub(time.Unix(0, n)))
				if now.After(m.lastAt) {
					m.lastAt = now
				}
				m.mu.Unlock()
				m.delivered.Add(1)
			}
			select {
			case m.kick <- struct{}{}:
			default:
			}
		}()
	}
}

// waitFor waits (at most 30 s) until cond holds.
func (m *chatMember) waitFor(ctx context.Context, cond func() bool) error {
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-m.kick:
		case <-time.After(10 * time.Millisecond):
		case <-deadline.C:
			return errors.New("timed out")
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// redisServer is Debian's redis-server on a free loopback port, no
// persistence, in a temporary directory.
type redisServer struct {
	url  string
	port int
	dir  string
	cmd  *exec.Cmd
	done chan error
}

func startRedisServer() (*redisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not found (%v): apt-get install redis-server", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir, err := os.MkdirTemp("", "quicwt-bench-redis-")
	if err != nil {
		return nil, err
	}
	rs := &redisServer{url: fmt.Sprintf("redis://127.0.0.1:%d/0", port), port: port, dir: dir, done: make(chan error, 1)}
	rs.cmd = exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", "")
	if err := rs.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	go func() { rs.done <- rs.cmd.Wait() }()
	for range 500 {
		if _, err := rs.command("PING"); err == nil {
			return rs, nil
		}
		select {
		case err := <-rs.done:
			os.RemoveAll(dir)
			return nil, fmt.Errorf("redis-server exited: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	rs.stop()
	return nil, errors.New("redis-server did not answer PING within 10 s")
}

// command sends one inline command and returns the reply's lines.
func (rs *redisServer) command(cmd string) ([]string, error) {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", rs.port), time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, cmd+"\r\nQUIT\r\n"); err != nil {
		return nil, err
	}
	var lines []string
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) == 0 {
		return nil, errors.New("no reply")
	}
	return lines, nil
}

// waitSubscribers waits until n clients listen on the chat channel.
func (rs *redisServer) waitSubscribers(n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		// *2 $19 quicwt:chat:events :N
		lines, err := rs.command("PUBSUB NUMSUB quicwt:chat:events")
		if err == nil && len(lines) >= 4 && lines[3] == ":"+strconv.Itoa(n) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%d chat subscribers never showed up", n)
}

func (rs *redisServer) stop() {
	rs.cmd.Process.Kill()
	<-rs.done
	os.RemoveAll(rs.dir)
}
