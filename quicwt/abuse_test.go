package quicwt

// Abuse tests (issue 6): each floods one resource, then checks that the
// server holds a bounded amount of it (engine state read directly, heap
// and goroutines measured), that the peer got the spec's answer, and that
// the server still serves a new client. Run them as a group with
//
//	go test -race -count=1 -run Abuse ./quicwt

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicwt/quicwt/frames"
)

// ---- measuring ----

// connSnap is the engine state of one server connection, or the sum over
// all of them.
type connSnap struct {
	conns        int
	sessions     int // sessions map (pending and open)
	early        int // session IDs with buffered streams or datagrams
	earlyStreams int
	earlyDgrams  int
	earlyBytes   int
	goneN        int // sessions ended since the connection started
	activeReqs   int
	bidiQ, uniQ  int // streams waiting in the sessions' accept queues
	dgramQueued  int // datagram bytes waiting in the sessions' queues
	tracked      int // streams the sessions track for reset
	dgramDrops   uint64
}

func (a connSnap) String() string {
	return fmt.Sprintf("conns=%d sessions=%d early=%d earlyStreams=%d earlyDgrams=%d earlyBytes=%d gone=%d activeReqs=%d bidiQ=%d uniQ=%d dgramQueued=%d tracked=%d dgramDrops=%d",
		a.conns, a.sessions, a.early, a.earlyStreams, a.earlyDgrams, a.earlyBytes, a.goneN, a.activeReqs, a.bidiQ, a.uniQ, a.dgramQueued, a.tracked, a.dgramDrops)
}

func snapConn(c *conn) connSnap {
	rs := c.reg.stats()
	sn := connSnap{
		conns:        1,
		sessions:     rs.Sessions,
		early:        rs.EarlyIDs,
		earlyStreams: rs.EarlyStreams,
		earlyDgrams:  rs.EarlyDgrams,
		earlyBytes:   rs.EarlyBytes,
		goneN:        rs.Ended,
	}
	c.mu.Lock()
	sn.activeReqs = c.activeReqs
	c.mu.Unlock()
	for _, s := range c.reg.list() {
		ss := s.stats()
		sn.bidiQ += ss.BidiQueued
		sn.uniQ += ss.UniQueued
		sn.dgramQueued += ss.DatagramBytes
		sn.tracked += ss.Tracked
		sn.dgramDrops += ss.DatagramsDropped
	}
	return sn
}

func (ts *testServer) serverConns() []*conn {
	ts.srv.mu.Lock()
	defer ts.srv.mu.Unlock()
	out := make([]*conn, 0, len(ts.srv.conns))
	for c := range ts.srv.conns {
		out = append(out, c)
	}
	return out
}

// snap sums the state of all the server's connections.
func (ts *testServer) snap() connSnap {
	var sum connSnap
	for _, c := range ts.serverConns() {
		s := snapConn(c)
		sum.conns++
		sum.sessions += s.sessions
		sum.early += s.early
		sum.earlyStreams += s.earlyStreams
		sum.earlyDgrams += s.earlyDgrams
		sum.earlyBytes += s.earlyBytes
		sum.goneN += s.goneN
		sum.activeReqs += s.activeReqs
		sum.bidiQ += s.bidiQ
		sum.uniQ += s.uniQ
		sum.dgramQueued += s.dgramQueued
		sum.tracked += s.tracked
		sum.dgramDrops += s.dgramDrops
	}
	return sum
}

func heapNow() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func mib(n uint64) string { return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20)) }

// heapDelta is after-before, 0 when the heap shrank.
func heapDelta(before, after uint64) uint64 {
	if after < before {
		return 0
	}
	return after - before
}

// peakSampler records the highest value of f while it runs.
type peakSampler struct {
	peak atomic.Int64
	stop chan struct{}
	done chan struct{}
}

func samplePeak(t testing.TB, f func() int) *peakSampler {
	p := &peakSampler{stop: make(chan struct{}), done: make(chan struct{})}
	t.Cleanup(func() { p.Stop() })
	p.peak.Store(int64(f()))
	go func() {
		defer close(p.done)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			if v := int64(f()); v > p.peak.Load() {
				p.peak.Store(v)
			}
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return p
}

func (p *peakSampler) Stop() int {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
	return int(p.peak.Load())
}

// waitUntil polls cond until it holds or the timeout passes.
func waitUntil(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// goroutineBaseline is the goroutine count to come back to.
type goroutineBaseline int

func baseline() goroutineBaseline { return goroutineBaseline(runtime.NumGoroutine()) }

// settle waits until the goroutine count is at most base+slack and returns
// it; it fails the test if that does not happen within 10 s.
func (b goroutineBaseline) settle(t testing.TB, slack int) int {
	t.Helper()
	var n int
	deadline := time.Now().Add(10 * time.Second)
	for {
		n = runtime.NumGoroutine()
		if n <= int(b)+slack {
			return n
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("goroutines did not come back: %d, baseline %d (+%d allowed)\n%s", n, b, slack, buf)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ---- servers and peers ----

// abuseServer serves /echo with echoSession and everything else with h.
func abuseServer(t testing.TB, h http.Handler, configure ...func(*Server)) *testServer {
	mux := http.NewServeMux()
	mux.Handle("/echo", wtHandler(t, echoSession))
	mux.Handle("/", h)
	return startServer(t, mux, configure...)
}

// withQUIC sets the server's QUIC config, so that the engine's limits, not
// quic-go's stream limits, are what an attack runs into.
func withQUIC(streams, uniStreams int64) func(*Server) {
	return func(s *Server) {
		s.QUICConfig = &quic.Config{MaxIncomingStreams: streams, MaxIncomingUniStreams: uniStreams}
	}
}

// holdSessions upgrades every request and keeps the session (never
// accepting streams or reading datagrams) until it ends; the sessions are
// sent on got.
func holdSessions(t testing.TB, got chan<- *Session) http.Handler {
	return wtHandler(t, func(s *Session) {
		if got != nil {
			select {
			case got <- s:
			default:
			}
		}
		<-s.Context().Done()
	})
}

// checkServes dials a new client and completes a bidi, a uni and a
// datagram echo: proof the server still serves after an attack.
func checkServes(t testing.TB, ts *testServer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, sess, err := ts.dialer().Dial(ctx, ts.url("/echo"), nil)
	if err != nil {
		t.Fatalf("server does not serve a new client: %v", err)
	}
	defer sess.CloseWithError(0, "")
	str, err := sess.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	msg := bytes.Repeat([]byte("still serving "), 5000)
	go func() { str.Write(msg); str.Close() }()
	str.SetReadDeadline(time.Now().Add(10 * time.Second))
	back, err := io.ReadAll(str)
	if err != nil || !bytes.Equal(back, msg) {
		t.Fatalf("echo after the attack: %v, %d of %d bytes", err, len(back), len(msg))
	}
	us, err := sess.OpenUniStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	us.Write([]byte("uni after the attack"))
	us.Close()
	rs, err := sess.AcceptUniStream(ctx)
	if err != nil {
		t.Fatalf("uni echo after the attack: %v", err)
	}
	if b, err := io.ReadAll(rs); err != nil || string(b) != "uni after the attack" {
		t.Fatalf("uni echo after the attack: %v %q", err, b)
	}
	// Datagrams are unreliable: retry until one comes back.
	for i := 0; ; i++ {
		if err := sess.SendDatagram([]byte("dgram after the attack")); err != nil {
			t.Fatal(err)
		}
		dctx, dcancel := context.WithTimeout(ctx, 200*time.Millisecond)
		d, err := sess.ReceiveDatagram(dctx)
		dcancel()
		if err == nil {
			if string(d) != "dgram after the attack" {
				t.Fatalf("datagram echo %q", d)
			}
			break
		}
		if i == 20 {
			t.Fatalf("no datagram echo after the attack: %v", err)
		}
	}
}

// dialRawConfig is dialRaw with a QUIC config of the caller's.
func dialRawConfig(t testing.TB, ts *testServer, qconf *quic.Config) *rawPeer {
	t.Helper()
	tc := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h3"}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	qc, err := quic.DialAddr(ctx, ts.addr, tc, ConfigureQUICConfig(qconf))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { qc.CloseWithError(0, "") })
	return &rawPeer{t: t, qc: qc}
}

// session opens a WebTransport session from a raw peer (SETTINGS sent
// already) and returns its CONNECT stream once the 200 arrived.
func (p *rawPeer) session(ts *testServer, path string) *quic.Stream {
	p.t.Helper()
	s := p.request(nil, connectFields(ts.addr, path)...)
	if st, code := readResponse(p.t, s); st != 200 {
		p.t.Fatalf("CONNECT: status %d reset %s", st, code)
	}
	s.SetReadDeadline(time.Time{})
	return s
}

func (p *rawPeer) close() {
	p.qc.CloseWithError(0, "")
	<-p.qc.Context().Done()
}

// streamCode returns the code of a *quic.StreamError in err's chain.
func streamCode(err error) (ErrorCode, bool) {
	var se *quic.StreamError
	if errors.As(err, &se) {
		return ErrorCode(se.ErrorCode), true
	}
	return 0, false
}

// sendStopCode waits until the peer stopped a send stream (STOP_SENDING)
// or the deadline passes, and returns the code.
func sendStopCode(s *quic.SendStream, deadline time.Time) (ErrorCode, bool) {
	select {
	case <-s.Context().Done():
	case <-time.After(time.Until(deadline)):
		return 0, false
	}
	return streamCode(context.Cause(s.Context()))
}

// codeCounts tallies answers: a stream error code, or "none" (no answer by
// the deadline) as code 0.
type codeCounts map[ErrorCode]int

func (c codeCounts) String() string {
	var b bytes.Buffer
	for code, n := range c {
		if code == 0 {
			fmt.Fprintf(&b, "no-answer:%d ", n)
		} else {
			fmt.Fprintf(&b, "%s:%d ", code, n)
		}
	}
	return b.String()
}

// responseOf reads a response status or the reset code of a request
// stream, giving up at deadline (status and code both 0).
func responseOf(s *quic.Stream, deadline time.Time) (int, ErrorCode) {
	s.SetReadDeadline(deadline)
	fr := newFrameReader(s, 256)
	for {
		h, err := frames.ReadHeader(fr, 1<<16)
		if err != nil {
			code, _ := streamCode(err)
			return 0, code
		}
		p, err := fr.payload(h.Length)
		if err != nil {
			code, _ := streamCode(err)
			return 0, code
		}
		if h.Type != frames.TypeHeaders {
			continue
		}
		fields, err := decodeFields(p, 1<<16)
		if err != nil {
			return -1, 0
		}
		st, _, err := parseResponseFields(fields)
		if err != nil {
			return -1, 0
		}
		return st, 0
	}
}

// collectAnswers polls the streams until at most held of them are still
// unanswered (the server's reset or STOP_SENDING has not arrived), then
// waits a little for stragglers, and tallies the codes (0: no answer).
func collectAnswers(t testing.TB, bidis []*quic.Stream, unis []*quic.SendStream, held int) codeCounts {
	t.Helper()
	codes := codeCounts{}
	pendB, pendU := bidis, unis
	poll := func() {
		var nb []*quic.Stream
		for _, s := range pendB {
			s.SetReadDeadline(time.Now().Add(-time.Second))
			_, err := s.Read(make([]byte, 1))
			if code, ok := streamCode(err); ok {
				codes[code]++
			} else if err == io.EOF {
				codes[0xffffffff]++ // a FIN: never expected here
			} else {
				nb = append(nb, s)
			}
		}
		var nu []*quic.SendStream
		for _, s := range pendU {
			if s.Context().Err() != nil {
				code, _ := streamCode(context.Cause(s.Context()))
				codes[code]++
			} else {
				nu = append(nu, s)
			}
		}
		pendB, pendU = nb, nu
	}
	deadline := time.Now().Add(20 * time.Second)
	for poll(); len(pendB)+len(pendU) > held && time.Now().Before(deadline); poll() {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	poll()
	codes[0] += len(pendB) + len(pendU)
	return codes
}

// answerRequests reads the responses of request streams concurrently until
// all answered, or at least min answered and no more came for 300 ms. It
// returns the statuses (0: reset or no answer) and the reset codes (0: no
// answer).
func answerRequests(t testing.TB, streams []*quic.Stream, min int) (map[int]int, codeCounts) {
	t.Helper()
	type answer struct {
		status int
		code   ErrorCode
	}
	answers := make(chan answer, len(streams))
	var answered atomic.Int64
	deadline := time.Now().Add(20 * time.Second)
	for _, s := range streams {
		go func() {
			st, code := responseOf(s, deadline)
			if st != 0 || code != 0 {
				answered.Add(1)
			}
			answers <- answer{st, code}
		}()
	}
	last, lastChange := int64(-1), time.Now()
	for {
		a := answered.Load()
		if a == int64(len(streams)) || time.Now().After(deadline) {
			break
		}
		if a != last {
			last, lastChange = a, time.Now()
		} else if a >= int64(min) && time.Since(lastChange) > 300*time.Millisecond {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, s := range streams {
		s.SetReadDeadline(time.Now()) // unblock the readers still waiting
	}
	statuses, codes := map[int]int{}, codeCounts{}
	for range streams {
		a := <-answers
		statuses[a.status]++
		if a.status == 0 {
			codes[a.code]++
		}
	}
	return statuses, codes
}

// report logs the numbers of one attack.
func report(t testing.TB, name string, heapBase, heapAttack, heapAfter uint64, gBase goroutineBaseline, gPeak, gAfter int) {
	t.Helper()
	t.Logf("%s: heap base %s, under attack %s (+%s), after %s; goroutines base %d, peak %d, after %d",
		name, mib(heapBase), mib(heapAttack), mib(heapDelta(heapBase, heapAttack)), mib(heapAfter), int(gBase), gPeak, gAfter)
}

// ---- the attacks ----

// TestAbuseStreamFlood floods WebTransport streams: to a session whose
// application never accepts them (the accept queue is bounded by
// MaxIncomingStreamQueue, the rest get WT_BUFFERED_STREAM_REJECTED), to
// sessions that never come (early buffering, bounded by
// MaxBufferedStreams and BufferTimeout), and streams that stall inside
// their header (freed after HeaderTimeout with H3_REQUEST_INCOMPLETE or
// H3_STREAM_CREATION_ERROR).
func TestAbuseStreamFlood(t *testing.T) {
	const (
		n       = 2000
		queue   = 16
		payload = 8 << 10
	)
	data := bytes.Repeat([]byte{0xab}, payload)
	tests := []struct {
		name string
		uni  bool
		// sid returns the session ID for the i-th stream; nil means the
		// established session.
		sid func(i int) uint64
		// stall writes only a partial header.
		stall bool
		// wantQueued is the most streams the server may hold at the end.
		wantQueued int
		want       ErrorCode
	}{
		{name: "bidi to a session that never accepts", wantQueued: queue, want: frames.WTBufferedStreamRejected},
		{name: "uni to a session that never accepts", uni: true, wantQueued: queue, want: frames.WTBufferedStreamRejected},
		{name: "bidi for sessions that never come", sid: func(i int) uint64 { return uint64(4 * (1000 + i%97)) }, wantQueued: 32, want: frames.WTBufferedStreamRejected},
		{name: "uni for one session that never comes", uni: true, sid: func(int) uint64 { return 4000 }, wantQueued: 16, want: frames.WTBufferedStreamRejected},
		{name: "bidi stalled inside the header", stall: true, want: frames.H3RequestIncomplete},
		{name: "uni stalled inside the header", uni: true, stall: true, want: frames.H3StreamCreationError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := make(chan *Session, 1)
			ts := abuseServer(t, holdSessions(t, got), withQUIC(1000, 1000), func(s *Server) {
				s.Limits.MaxIncomingStreamQueue = queue
				s.Limits.BufferTimeout = 500 * time.Millisecond
				s.Limits.HeaderTimeout = 500 * time.Millisecond
			})
			checkServes(t, ts) // warm up the shared state (certificates, pools)
			g0 := baseline()
			h0 := heapNow()
			p := dialRaw(t, ts)
			p.control(clientSettingsFrame())
			connect := p.session(ts, "/abuse")
			sess := <-got
			sid := uint64(connect.StreamID())
			count := n
			if tt.stall {
				count = 500 // each holds a server goroutine for HeaderTimeout
			}
			peakG := samplePeak(t, runtime.NumGoroutine)
			peakQ := samplePeak(t, func() int { s := ts.snap(); return s.bidiQ + s.uniQ + s.earlyStreams })
			ctx := testCtx(t)
			var bidis []*quic.Stream
			var unis []*quic.SendStream
			for i := 0; i < count; i++ {
				id := sid
				if tt.sid != nil {
					id = tt.sid(i)
				}
				var hdr []byte
				switch {
				case tt.stall:
					hdr = []byte{0x40} // first byte of a two-byte varint
				case tt.uni:
					hdr = append(frames.AppendWebTransportUniHeader(nil, id), data...)
				default:
					hdr = append(frames.AppendWebTransportBidiHeader(nil, id), data...)
				}
				if tt.uni {
					s, err := p.qc.OpenUniStreamSync(ctx)
					if err != nil {
						t.Fatalf("stream %d: %v", i, err)
					}
					s.Write(hdr)
					unis = append(unis, s)
				} else {
					s, err := p.qc.OpenStreamSync(ctx)
					if err != nil {
						t.Fatalf("stream %d: %v", i, err)
					}
					s.Write(hdr)
					bidis = append(bidis, s)
				}
			}
			// Collect the answers; the streams the server still holds never
			// answer.
			codes := collectAnswers(t, bidis, unis, max(tt.wantQueued, 16))
			hAttack := heapNow()
			st := ts.snap()
			qPeak := peakQ.Stop()
			t.Logf("%d streams: answers %v; server %v; peak held %d", count, codes, st, qPeak)
			if codes[tt.want] < count-max(tt.wantQueued, 16) {
				t.Errorf("only %d of %d streams got %s", codes[tt.want], count, tt.want)
			}
			for code, k := range codes {
				if code != 0 && code != tt.want {
					t.Errorf("%d streams got %s, want %s", k, code, tt.want)
				}
			}
			if tt.wantQueued > 0 && qPeak > tt.wantQueued {
				t.Errorf("server held %d streams, limit %d", qPeak, tt.wantQueued)
			}
			if tt.sid != nil {
				// What was buffered for sessions that never came is
				// dropped after BufferTimeout.
				waitUntil(t, 5*time.Second, "early buffers to expire", func() bool {
					s := ts.snap()
					return s.early == 0 && s.earlyStreams == 0
				})
			}
			if got := sess.Err(); got != nil {
				t.Errorf("the session ended: %v", got)
			}
			// An unbounded server would hold every stream's data.
			if d := heapDelta(h0, hAttack); !tt.stall && d > uint64(count*payload)/3 {
				t.Errorf("heap grew by %s under attack (all the data is %s)", mib(d), mib(uint64(count*payload)))
			}
			p.close()
			gPeak := peakG.Stop()
			if tt.stall && gPeak > int(g0)+1000+50 {
				t.Errorf("goroutine peak %d, baseline %d", gPeak, g0)
			}
			waitUntil(t, 5*time.Second, "the connection to be forgotten", func() bool { return ts.snap().conns == 0 })
			gAfter := g0.settle(t, 10)
			report(t, tt.name, h0, hAttack, heapNow(), g0, gPeak, gAfter)
			checkServes(t, ts)
		})
	}
}

// TestAbuseSessionChurn opens and closes 10,000 sessions, one after the
// other, on one connection: every per-session structure must be released
// (the session maps empty, the gone ring bounded, goroutines and heap back
// near where they started) while the connection stays up.
func TestAbuseSessionChurn(t *testing.T) {
	const n = 10000
	ts := abuseServer(t, wtHandler(t, echoSession))
	checkServes(t, ts)
	g0 := baseline()
	h0 := heapNow()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cc, err := ts.dialer().DialConn(ctx, ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	// One session first, so the connection's own state is in the baseline.
	_, s0, err := cc.OpenSession(ctx, ts.url("/echo"), nil)
	if err != nil {
		t.Fatal(err)
	}
	s0.CloseWithError(0, "")
	waitUntil(t, 5*time.Second, "the first session to end", func() bool { return ts.snap().sessions == 0 })
	g1 := baseline()
	h1 := heapNow()
	peakG := samplePeak(t, runtime.NumGoroutine)
	peakS := samplePeak(t, func() int { return ts.snap().sessions })
	start := time.Now()
	for i := 1; i <= n; i++ {
		_, s, err := cc.OpenSession(ctx, ts.url("/echo"), nil)
		if err != nil {
			t.Fatalf("session %d: %v (server %v)", i, err, ts.snap())
		}
		if err := s.CloseWithError(SessionErrorCode(i), "churn"); err != nil {
			t.Fatalf("close %d: %v", i, err)
		}
	}
	elapsed := time.Since(start)
	waitUntil(t, 10*time.Second, "the server's sessions to end", func() bool { return ts.snap().sessions == 0 })
	waitUntil(t, 10*time.Second, "the client's sessions to end", func() bool { return snapConn(cc.c).sessions == 0 })
	gPeak := peakG.Stop()
	sPeak := peakS.Stop()
	st := ts.snap()
	cst := snapConn(cc.c)
	gAfter := g1.settle(t, 10)
	h2 := heapNow()
	t.Logf("%d sessions in %v (%.0f/s); peak concurrent server sessions %d; server %v; client %v", n, elapsed.Round(time.Millisecond), n/elapsed.Seconds(), sPeak, st, cst)
	report(t, "session churn (connection still open)", h1, h2, h2, g1, gPeak, gAfter)
	if st.conns != 1 || st.sessions != 0 || st.early != 0 || st.tracked != 0 || st.activeReqs != 0 {
		t.Errorf("server state after churn: %v", st)
	}
	if st.goneN != n+1 || cst.goneN != n+1 {
		t.Errorf("gone counters server %d client %d, want %d", st.goneN, cst.goneN, n+1)
	}
	for _, c := range []*conn{ts.serverConns()[0], cc.c} {
		if ringLen := c.reg.stats().GoneRing; ringLen > goneRing {
			t.Errorf("gone ring holds %d IDs", ringLen)
		}
	}
	// 10,000 leaked sessions (a context, a CONNECT stream, a frame reader,
	// channels) would hold tens of MiB.
	if d := heapDelta(h1, h2); d > 2<<20 {
		t.Errorf("heap grew by %s over %d sessions", mib(d), n)
	}
	if sPeak > 8 {
		t.Errorf("server held %d sessions at once during sequential churn", sPeak)
	}
	cc.Close()
	waitUntil(t, 5*time.Second, "the connection to be forgotten", func() bool { return ts.snap().conns == 0 })
	gEnd := g0.settle(t, 10)
	report(t, "session churn (connection closed)", h0, h2, heapNow(), g0, gPeak, gEnd)
	checkServes(t, ts)
}

// TestAbuseConnectFlood sends 500 CONNECTs on one connection: at most
// MaxSessions are held (upgraded, or pending in a handler that never
// answers), the rest are reset with H3_REQUEST_REJECTED.
func TestAbuseConnectFlood(t *testing.T) {
	const (
		n     = 500
		limit = 8
	)
	tests := []struct {
		name    string
		handler func(t *testing.T) http.Handler
		want200 int
	}{
		{"sessions held open", func(t *testing.T) http.Handler { return holdSessions(t, nil) }, limit},
		{"handler never answers", func(t *testing.T) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
		}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := abuseServer(t, tt.handler(t), func(s *Server) { s.Limits.MaxSessions = limit })
			checkServes(t, ts)
			g0 := baseline()
			h0 := heapNow()
			peakG := samplePeak(t, runtime.NumGoroutine)
			peakS := samplePeak(t, func() int { return ts.snap().sessions })
			p := dialRaw(t, ts)
			p.control(clientSettingsFrame())
			var streams []*quic.Stream
			for i := 0; i < n; i++ {
				streams = append(streams, p.request(nil, connectFields(ts.addr, fmt.Sprintf("/abuse/%d", i))...))
			}
			// The held ones answer 200 or nothing at all.
			statuses, codes := answerRequests(t, streams, n-limit)
			ok := statuses[200]
			for st, k := range statuses {
				if st != 200 && st != 0 {
					t.Errorf("%d answers with status %d", k, st)
				}
			}
			hAttack := heapNow()
			sPeak := peakS.Stop()
			st := ts.snap()
			t.Logf("%d CONNECTs: %d x 200, resets %v; peak sessions %d; server %v", n, ok, codes, sPeak, st)
			if ok != tt.want200 {
				t.Errorf("%d sessions accepted, want %d", ok, tt.want200)
			}
			if codes[frames.H3RequestRejected] != n-limit {
				t.Errorf("%d CONNECTs rejected with H3_REQUEST_REJECTED, want %d", codes[frames.H3RequestRejected], n-limit)
			}
			if sPeak > limit || st.sessions != limit {
				t.Errorf("server sessions: peak %d, now %d, limit %d", sPeak, st.sessions, limit)
			}
			// A held session is two goroutines (handler, capsule reader);
			// every rejected CONNECT's goroutine must be gone.
			if g := runtime.NumGoroutine(); g > int(g0)+4*limit+30 {
				t.Errorf("%d goroutines with %d sessions held, baseline %d", g, limit, g0)
			}
			p.expectAlive()
			checkServes(t, ts) // another connection is not affected
			p.close()
			waitUntil(t, 5*time.Second, "the connection to be forgotten", func() bool { return ts.snap().conns == 0 })
			gPeak := peakG.Stop()
			gAfter := g0.settle(t, 10)
			report(t, tt.name, h0, hAttack, heapNow(), g0, gPeak, gAfter)
		})
	}
}

// TestAbuseCapsuleFlood sends megabytes of capsules on a CONNECT stream:
// unknown capsules are skipped, DATAGRAM capsules for a session that never
// reads are dropped past DatagramQueueBytes, flow-control and drain
// capsules are absorbed, and a capsule over MaxCapsuleSize resets the
// CONNECT stream with H3_EXCESSIVE_LOAD.
func TestAbuseCapsuleFlood(t *testing.T) {
	const queueBytes = 64 << 10
	value := bytes.Repeat([]byte{'c'}, 1000)
	tests := []struct {
		name  string
		cap   func(i int) []byte
		count int
		reset ErrorCode // 0: the session survives and ends by our close
	}{
		{"unknown capsules", func(i int) []byte {
			return frames.AppendCapsule(nil, frames.CapsuleType(0x17+0x29*uint64(i%1000)), value)
		}, 10000, 0},
		{"DATAGRAM capsules to a session that never reads", func(i int) []byte { return frames.AppendCapsule(nil, frames.CapsuleDatagram, value) }, 10000, 0},
		{"flow-control capsules", func(i int) []byte { return frames.AppendVarintCapsule(nil, frames.CapsuleMaxData, uint64(i)) }, 200000, 0},
		{"drain capsules", func(i int) []byte { return frames.AppendDrainSession(nil) }, 200000, 0},
		{"capsule over MaxCapsuleSize", func(i int) []byte {
			return frames.AppendCapsule(nil, frames.CapsuleCloseSession, bytes.Repeat([]byte{'x'}, 4097))
		}, 1, frames.H3ExcessiveLoad},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := make(chan *Session, 1)
			ts := abuseServer(t, holdSessions(t, got), func(s *Server) {
				s.Limits.DatagramQueueBytes = queueBytes
				s.Limits.MaxCapsuleSize = 4096
			})
			checkServes(t, ts)
			g0 := baseline()
			p := dialRaw(t, ts)
			p.control(clientSettingsFrame())
			connect := p.session(ts, "/abuse")
			sess := <-got
			h0 := heapNow() // with the connection and session set up
			peakQ := samplePeak(t, func() int { return ts.snap().dgramQueued })
			// Big DATA frames of many capsules, as a flood would send them.
			var total int
			var buf []byte
			flush := func() {
				if len(buf) == 0 {
					return
				}
				frame := append(frames.AppendDataHeader(nil, uint64(len(buf))), buf...)
				connect.SetWriteDeadline(time.Now().Add(20 * time.Second))
				if _, err := connect.Write(frame); err != nil && tt.reset == 0 {
					t.Fatalf("write: %v", err)
				}
				total += len(buf)
				buf = buf[:0]
			}
			for i := 0; i < tt.count; i++ {
				buf = append(buf, tt.cap(i)...)
				if len(buf) > 256<<10 {
					flush()
				}
			}
			flush()
			if tt.reset != 0 {
				connect.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, err := io.ReadAll(connect)
				if code, ok := streamCode(err); !ok || code != tt.reset {
					t.Fatalf("CONNECT stream ended with %v, want reset %s", err, tt.reset)
				}
				waitUntil(t, 5*time.Second, "the session to end", func() bool { return sess.Err() != nil })
			} else {
				// Our close comes after the flood on the stream: when the
				// session ends with its code, every capsule was consumed.
				flushClose := frames.AppendCloseSession(nil, 4242, "flood over")
				connect.Write(append(frames.AppendDataHeader(nil, uint64(len(flushClose))), flushClose...))
				select {
				case <-sess.Context().Done():
				case <-time.After(20 * time.Second):
					t.Fatalf("session did not end after the flood (server %v)", ts.snap())
				}
				var se *SessionError
				if !errors.As(sess.Err(), &se) || se.Code != 4242 || !se.Remote {
					t.Fatalf("session ended with %v", sess.Err())
				}
				// Measured with the connection still open: what the flood
				// left behind (the bytes in flight are quic-go's, bounded by
				// its flow-control windows).
				hAttack := heapNow()
				qPeak := peakQ.Stop()
				t.Logf("%d capsules, %s: peak datagram queue %d bytes, drops %d", tt.count, mib(uint64(total)), qPeak, sess.DatagramsDropped())
				if qPeak > queueBytes {
					t.Errorf("datagram queue reached %d bytes, limit %d", qPeak, queueBytes)
				}
				if tt.name == "DATAGRAM capsules to a session that never reads" && sess.DatagramsDropped() < uint64(tt.count)-queueBytes/1000 {
					t.Errorf("only %d of %d datagram capsules dropped", sess.DatagramsDropped(), tt.count)
				}
				if d := heapDelta(h0, hAttack); d > 1<<20 {
					t.Errorf("heap grew by %s for %s of capsules", mib(d), mib(uint64(total)))
				}
				report(t, tt.name, h0, hAttack, hAttack, g0, 0, 0)
			}
			p.expectAlive()
			p.close()
			waitUntil(t, 5*time.Second, "the connection to be forgotten", func() bool { return ts.snap().conns == 0 })
			g0.settle(t, 10)
			checkServes(t, ts)
		})
	}
}

// TestAbuseDatagramFlood sends 100,000 datagrams of 1000 bytes to a session
// that never reads (at most DatagramQueueBytes stay queued, the rest are
// dropped and counted) and 20,000 to sessions that do not exist (early
// buffering bounded by MaxBufferedDatagrams/Bytes, expired after
// BufferTimeout).
func TestAbuseDatagramFlood(t *testing.T) {
	payload := bytes.Repeat([]byte{'d'}, 1000)
	t.Run("to a session that never reads", func(t *testing.T) {
		const n = 100000
		got := make(chan *Session, 1)
		ts := abuseServer(t, holdSessions(t, got))
		checkServes(t, ts)
		g0 := baseline()
		ctx := testCtx(t)
		_, cs, err := ts.dialer().Dial(ctx, ts.url("/abuse"), nil)
		if err != nil {
			t.Fatal(err)
		}
		sess := <-got
		// The connection's datagram receiver runs, as it does once any
		// session on it has called ReceiveDatagram; this one never reads.
		sess.c.wantDatagrams()
		h0 := heapNow()
		limit := sess.lim.DatagramQueueBytes
		peakQ := samplePeak(t, func() int { return ts.snap().dgramQueued })
		start := time.Now()
		for i := 0; i < n; i++ {
			if err := cs.SendDatagram(payload); err != nil {
				t.Fatalf("datagram %d: %v", i, err)
			}
		}
		elapsed := time.Since(start)
		time.Sleep(200 * time.Millisecond)
		hAttack := heapNow()
		qPeak := peakQ.Stop()
		st := ts.snap()
		queued := st.dgramQueued / len(payload)
		t.Logf("%d datagrams in %v: queued %d (%d bytes, peak %d, limit %d), dropped by the engine %d, lost before it %d",
			n, elapsed.Round(time.Millisecond), queued, st.dgramQueued, qPeak, limit, sess.DatagramsDropped(), n-queued-int(sess.DatagramsDropped()))
		if qPeak > limit {
			t.Errorf("datagram queue reached %d bytes, limit %d", qPeak, limit)
		}
		if sess.DatagramsDropped() == 0 {
			t.Error("no datagram counted as dropped")
		}
		// All of it would be ~95 MiB.
		if d := heapDelta(h0, hAttack); d > uint64(limit)+8<<20 {
			t.Errorf("heap grew by %s", mib(d))
		}
		cs.CloseWithError(0, "")
		waitUntil(t, 5*time.Second, "the connection to be forgotten", func() bool { return ts.snap().conns == 0 })
		gAfter := g0.settle(t, 10)
		report(t, "datagrams to a session that never reads", h0, hAttack, heapNow(), g0, 0, gAfter)
		checkServes(t, ts)
	})
	t.Run("to sessions that do not exist", func(t *testing.T) {
		const n = 20000
		ts := abuseServer(t, holdSessions(t, nil), func(s *Server) { s.Limits.BufferTimeout = 500 * time.Millisecond })
		checkServes(t, ts)
		g0 := baseline()
		p := dialRaw(t, ts)
		p.control(clientSettingsFrame())
		time.Sleep(50 * time.Millisecond)
		h0 := heapNow()
		peak := samplePeak(t, func() int { s := ts.snap(); return s.earlyBytes })
		peakN := samplePeak(t, func() int { s := ts.snap(); return s.earlyDgrams })
		peakIDs := samplePeak(t, func() int { s := ts.snap(); return s.early })
		for i := 0; i < n; i++ {
			d := append(frames.AppendDatagramHeader(nil, uint64(4*(2000+i%500))), payload...)
			if err := p.qc.SendDatagram(d); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(100 * time.Millisecond)
		hAttack := heapNow()
		pb, pn, pi := peak.Stop(), peakN.Stop(), peakIDs.Stop()
		t.Logf("%d early datagrams for 500 session IDs: peak buffered %d datagrams, %d bytes, %d IDs", n, pn, pb, pi)
		if pn > 64 || pb > 64<<10 || pi > 32 {
			t.Errorf("early buffers reached %d datagrams, %d bytes, %d IDs; limits 64, 65536, 32", pn, pb, pi)
		}
		waitUntil(t, 5*time.Second, "early datagrams to expire", func() bool {
			s := ts.snap()
			return s.early == 0 && s.earlyDgrams == 0 && s.earlyBytes == 0
		})
		if d := heapDelta(h0, hAttack); d > 4<<20 {
			t.Errorf("heap grew by %s", mib(d))
		}
		p.expectAlive()
		p.close()
		waitUntil(t, 5*time.Second, "the connection to be forgotten", func() bool { return ts.snap().conns == 0 })
		gAfter := g0.settle(t, 10)
		report(t, "datagrams to sessions that do not exist", h0, hAttack, heapNow(), g0, 0, gAfter)
		checkServes(t, ts)
	})
}

// TestAbuseDrip drips bytes: a WT_CLOSE_SESSION capsule one byte per DATA
// frame (reassembled exactly, within MaxCapsuleSize), and request headers
// and stream types slower than HeaderTimeout (reset with
// H3_REQUEST_INCOMPLETE / stopped with H3_STREAM_CREATION_ERROR).
func TestAbuseDrip(t *testing.T) {
	const headerTimeout = 400 * time.Millisecond
	got := make(chan *Session, 1)
	ts := abuseServer(t, holdSessions(t, got), func(s *Server) { s.Limits.HeaderTimeout = headerTimeout })
	checkServes(t, ts)
	g0 := baseline()
	h0 := heapNow()

	t.Run("close capsule one byte per DATA frame", func(t *testing.T) {
		p := dialRaw(t, ts)
		p.control(clientSettingsFrame())
		connect := p.session(ts, "/abuse")
		sess := <-got
		msg := string(bytes.Repeat([]byte("drip"), 256)) // 1024 bytes, the maximum
		caps := frames.AppendCloseSession(nil, 77, msg)
		for i := range caps {
			if _, err := connect.Write(frames.AppendFrame(nil, frames.TypeData, caps[i:i+1])); err != nil {
				t.Fatal(err)
			}
		}
		select {
		case <-sess.Context().Done():
		case <-time.After(10 * time.Second):
			t.Fatal("session did not end")
		}
		var se *SessionError
		if !errors.As(sess.Err(), &se) || se.Code != 77 || se.Message != msg {
			t.Fatalf("session ended with %v", sess.Err())
		}
		p.expectAlive()
		p.close()
	})

	t.Run("request headers slower than HeaderTimeout", func(t *testing.T) {
		const n = 50
		p := dialRaw(t, ts)
		p.control(clientSettingsFrame())
		hdr := frames.AppendHeaders(nil, encodeFields(connectFields(ts.addr, "/abuse")...))
		ctx := testCtx(t)
		var streams []*quic.Stream
		for i := 0; i < n; i++ {
			s, err := p.qc.OpenStreamSync(ctx)
			if err != nil {
				t.Fatal(err)
			}
			s.Write(hdr[:1])
			streams = append(streams, s)
		}
		start := time.Now()
		stop := make(chan struct{})
		dripDone := make(chan struct{})
		go func() { // one more byte per stream every 100 ms
			defer close(dripDone)
			for k := 1; k < len(hdr); k++ {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				for _, s := range streams {
					s.Write(hdr[k : k+1])
				}
			}
		}()
		statuses, codes := answerRequests(t, streams, n)
		elapsed := time.Since(start)
		close(stop)
		<-dripDone
		t.Logf("%d dripping requests: statuses %v, resets %v after %v", n, statuses, codes, elapsed.Round(time.Millisecond))
		if codes[frames.H3RequestIncomplete] != n {
			t.Errorf("%d of %d dripping requests reset with H3_REQUEST_INCOMPLETE", codes[frames.H3RequestIncomplete], n)
		}
		if elapsed > headerTimeout+3*time.Second {
			t.Errorf("resets came after %v, HeaderTimeout %v", elapsed, headerTimeout)
		}
		p.expectAlive()
		p.close()
	})

	t.Run("stream type slower than HeaderTimeout", func(t *testing.T) {
		p := dialRaw(t, ts)
		p.control(clientSettingsFrame())
		s := p.uni(frames.AppendUniStreamType(nil, frames.StreamTypeWebTransport)[:1])
		start := time.Now()
		code, ok := sendStopCode(s, time.Now().Add(headerTimeout+3*time.Second))
		if !ok || code != frames.H3StreamCreationError {
			t.Fatalf("stream stopped with %s (%v), want H3_STREAM_CREATION_ERROR", code, ok)
		}
		t.Logf("stalled stream type stopped after %v", time.Since(start).Round(time.Millisecond))
		p.expectAlive()
		p.close()
	})

	waitUntil(t, 5*time.Second, "the connections to be forgotten", func() bool { return ts.snap().conns == 0 })
	gAfter := g0.settle(t, 10)
	h1 := heapNow()
	report(t, "drips", h0, h1, h1, g0, 0, gAfter)
	checkServes(t, ts)
}

// TestAbuseSlowReader is a peer that never reads anything: the server's
// writers are held back by flow control (no unbounded buffering), other
// clients are served meanwhile, and closing the session (bounded by
// CloseTimeout even though the peer reads nothing) releases every writer.
func TestAbuseSlowReader(t *testing.T) {
	const (
		nUni      = 8
		nBidi     = 8
		perStream = 4 << 20
		connWin   = 256 << 10
	)
	chunk := bytes.Repeat([]byte{'s'}, 32<<10)
	var written atomic.Int64
	writers := &sync.WaitGroup{}
	got := make(chan *Session, 1)
	ts := abuseServer(t, wtHandler(t, func(s *Session) {
		for i := 0; i < nUni; i++ {
			us, err := s.OpenUniStream()
			if err != nil {
				t.Errorf("open: %v", err)
				return
			}
			writers.Add(1)
			go func() {
				defer writers.Done()
				for sent := 0; sent < perStream; sent += len(chunk) {
					n, err := us.Write(chunk)
					written.Add(int64(n))
					if err != nil {
						return
					}
				}
				us.Close()
			}()
		}
		got <- s
		for {
			str, err := s.AcceptStream(s.Context())
			if err != nil {
				return
			}
			writers.Add(1)
			go func() { // echo, counting what gets written back
				defer writers.Done()
				buf := make([]byte, 32<<10)
				for {
					n, err := str.Read(buf)
					if n > 0 {
						m, werr := str.Write(buf[:n])
						written.Add(int64(m))
						if werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}), func(s *Server) { s.Limits.CloseTimeout = time.Second })
	checkServes(t, ts)
	g0 := baseline()
	h0 := heapNow()
	p := dialRawConfig(t, ts, &quic.Config{
		InitialStreamReceiveWindow:     64 << 10,
		MaxStreamReceiveWindow:         64 << 10,
		InitialConnectionReceiveWindow: connWin,
		MaxConnectionReceiveWindow:     connWin,
	})
	p.control(clientSettingsFrame())
	connect := p.request(nil, connectFields(ts.addr, "/abuse")...) // its response is never read
	sess := <-got
	sid := uint64(connect.StreamID())
	big := bytes.Repeat([]byte{'b'}, perStream)
	var attackers sync.WaitGroup
	for i := 0; i < nBidi; i++ {
		s, err := p.qc.OpenStreamSync(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		attackers.Add(1)
		go func() {
			defer attackers.Done()
			s.Write(frames.AppendWebTransportBidiHeader(nil, sid))
			s.Write(big)
		}()
	}
	time.Sleep(2 * time.Second)
	w1 := written.Load()
	time.Sleep(500 * time.Millisecond)
	w2 := written.Load()
	hAttack := heapNow()
	attempted := int64((nUni + nBidi) * perStream)
	t.Logf("server wrote %d bytes to a peer that reads nothing (%d then %d; attempted %d; peer window %d)", w2, w1, w2, attempted, connWin)
	if w2 != w1 {
		t.Errorf("server writes still progressing (%d -> %d) to a peer that reads nothing", w1, w2)
	}
	if w2 > connWin+int64(len(chunk))*(nUni+nBidi) {
		t.Errorf("server wrote %d bytes, more than the peer's window allows", w2)
	}
	// The 4 MiB buffer is the test's own; the rest must be bounded by flow
	// control, not by what was attempted (64 MiB).
	if d := heapDelta(h0, hAttack); d > perStream+8<<20 {
		t.Errorf("heap grew by %s", mib(d))
	}
	checkServes(t, ts) // others are served meanwhile
	start := time.Now()
	sess.CloseWithError(9, "too slow")
	closeTime := time.Since(start)
	if closeTime > 3*time.Second {
		t.Errorf("CloseWithError took %v to a peer that reads nothing (CloseTimeout 1s)", closeTime)
	}
	done := make(chan struct{})
	go func() { writers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("server writers still blocked after the session closed")
	}
	st := ts.snap()
	t.Logf("close took %v; server %v", closeTime.Round(time.Millisecond), st)
	if st.sessions != 0 || st.tracked != 0 {
		t.Errorf("server state after close: %v", st)
	}
	p.close()
	attackers.Wait()
	waitUntil(t, 5*time.Second, "the connection to be forgotten", func() bool { return ts.snap().conns == 0 })
	gAfter := g0.settle(t, 10)
	report(t, "slow reader", h0, hAttack, heapNow(), g0, 0, gAfter)
	checkServes(t, ts)
}

// TestAbuseNeverSendsSettings is a peer that never opens its control
// stream: its CONNECTs wait SettingsTimeout and are then reset with
// H3_REQUEST_REJECTED; nothing stays behind.
func TestAbuseNeverSendsSettings(t *testing.T) {
	const (
		n       = 50
		timeout = 500 * time.Millisecond
	)
	ts := abuseServer(t, holdSessions(t, nil), func(s *Server) { s.Limits.SettingsTimeout = timeout })
	checkServes(t, ts)
	g0 := baseline()
	h0 := heapNow()
	p := dialRaw(t, ts) // no control stream, ever
	peakG := samplePeak(t, runtime.NumGoroutine)
	start := time.Now()
	var streams []*quic.Stream
	for i := 0; i < n; i++ {
		streams = append(streams, p.request(nil, connectFields(ts.addr, "/abuse")...))
	}
	statuses, codes := answerRequests(t, streams, n)
	elapsed := time.Since(start)
	hAttack := heapNow()
	st := ts.snap()
	t.Logf("%d CONNECTs without SETTINGS: statuses %v, resets %v after %v; server %v", n, statuses, codes, elapsed.Round(time.Millisecond), st)
	if codes[frames.H3RequestRejected] != n {
		t.Errorf("%d of %d CONNECTs reset with H3_REQUEST_REJECTED", codes[frames.H3RequestRejected], n)
	}
	if elapsed < timeout-50*time.Millisecond || elapsed > timeout+3*time.Second {
		t.Errorf("answers after %v, SettingsTimeout %v", elapsed, timeout)
	}
	if st.sessions != 0 || st.early != 0 {
		t.Errorf("server state: %v", st)
	}
	// The waiting requests are gone while the peer is still connected.
	waitUntil(t, 5*time.Second, "the requests to end", func() bool { return ts.snap().activeReqs == 0 })
	gWhile := g0.settle(t, 20)
	checkServes(t, ts)
	p.close()
	waitUntil(t, 5*time.Second, "the connection to be forgotten", func() bool { return ts.snap().conns == 0 })
	gPeak := peakG.Stop()
	gAfter := g0.settle(t, 10)
	t.Logf("goroutines with the peer still connected: %d", gWhile)
	report(t, "never sends SETTINGS", h0, hAttack, heapNow(), g0, gPeak, gAfter)
}

// TestAbuseRapidReset applies CVE-2023-44487's pattern: open a request (or
// a WebTransport stream), reset it at once, repeat. A reset stream frees
// its QUIC stream credit at once, so only the server can bound the work
// still running for streams the peer already abandoned: handlers of reset
// requests must end (or be bounded by the advertised stream limit),
// pending sessions stay within MaxSessions, and reset WebTransport streams
// leave nothing tracked.
func TestAbuseRapidReset(t *testing.T) {
	const (
		n     = 2000
		batch = 50
	)
	var active, handled, cancelled atomic.Int64
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		active.Add(1)
		defer active.Add(-1)
		handled.Add(1)
		select { // work that stops early if the request is cancelled
		case <-r.Context().Done():
			cancelled.Add(1)
		case <-time.After(2 * time.Second):
		}
	})
	slowUpgrade := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		active.Add(1)
		defer active.Add(-1)
		handled.Add(1)
		select { // e.g. an authorization check before Upgrade
		case <-r.Context().Done():
			cancelled.Add(1)
			return
		case <-time.After(time.Second):
		}
		if s, err := Upgrade(w, r); err == nil {
			s.CloseWithError(0, "")
		}
	})
	tests := []struct {
		name    string
		handler http.Handler
		fields  func(addr string) []string
	}{
		{"HTTP/3 requests", slow, func(addr string) []string {
			return []string{":method", "GET", ":scheme", "https", ":authority", addr, ":path", "/slow"}
		}},
		{"WebTransport CONNECTs", slowUpgrade, func(addr string) []string { return connectFields(addr, "/slow") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			active.Store(0)
			handled.Store(0)
			cancelled.Store(0)
			const maxStreams = 100 // the server's advertised MAX_STREAMS
			ts := abuseServer(t, tt.handler, withQUIC(maxStreams, 100), func(s *Server) { s.Limits.MaxSessions = 16 })
			checkServes(t, ts)
			g0 := baseline()
			h0 := heapNow()
			peakA := samplePeak(t, func() int { return int(active.Load()) })
			peakG := samplePeak(t, runtime.NumGoroutine)
			peakS := samplePeak(t, func() int { return ts.snap().sessions })
			p := dialRaw(t, ts)
			p.control(clientSettingsFrame())
			hdr := frames.AppendHeaders(nil, encodeFields(tt.fields(ts.addr)...))
			ctx := testCtx(t)
			// The attack runs until n requests or 1.5 s: a server that ties
			// stream credit to its handlers stops granting it, and the
			// attacker has to wait.
			start := time.Now()
			actx, acancel := context.WithTimeout(ctx, 1500*time.Millisecond)
			defer acancel()
			opened := 0
		attack:
			for opened < n {
				var streams []*quic.Stream
				for j := 0; j < batch; j++ {
					s, err := p.qc.OpenStreamSync(actx)
					if err != nil {
						if actx.Err() != nil {
							break
						}
						t.Fatalf("stream %d: %v", opened, err)
					}
					s.Write(hdr)
					streams = append(streams, s)
				}
				time.Sleep(2 * time.Millisecond) // let the HEADERS leave
				for i, s := range streams {
					// Half the streams are only reset (RESET_STREAM): the
					// server must see that too, not only STOP_SENDING.
					s.CancelWrite(quic.StreamErrorCode(frames.H3RequestCancelled))
					if i%2 == 1 {
						s.CancelRead(quic.StreamErrorCode(frames.H3RequestCancelled))
					}
				}
				opened += len(streams)
				if actx.Err() != nil {
					break attack
				}
			}
			elapsed := time.Since(start)
			time.Sleep(100 * time.Millisecond)
			hAttack := heapNow()
			aPeak := peakA.Stop()
			sPeak := peakS.Stop()
			t.Logf("%d requests opened and reset in %v: %d reached the handler (%d saw the cancellation), peak concurrent handlers %d, peak sessions %d, server %v",
				opened, elapsed.Round(time.Millisecond), handled.Load(), cancelled.Load(), aPeak, sPeak, ts.snap())
			if handled.Load() < 16 {
				t.Fatalf("only %d requests reached the handler: the attack did not happen", handled.Load())
			}
			waitUntil(t, 10*time.Second, "the handlers to end", func() bool { return active.Load() == 0 })
			// Every request was reset: every handler must have seen its
			// context canceled, none should have run its full 1-2 s.
			if c, h := cancelled.Load(), handled.Load(); c != h {
				t.Errorf("%d of %d handlers saw r.Context() canceled; the peer reset every request", c, h)
			}
			if aPeak > 2*maxStreams {
				t.Errorf("%d handlers ran at once for requests the peer had reset; the server advertised %d streams", aPeak, maxStreams)
			}
			if sPeak > 16 {
				t.Errorf("%d sessions pending, MaxSessions 16", sPeak)
			}
			waitUntil(t, 10*time.Second, "the handlers to end", func() bool { return active.Load() == 0 })
			waitUntil(t, 5*time.Second, "the requests to end", func() bool { s := ts.snap(); return s.activeReqs == 0 && s.sessions == 0 })
			p.expectAlive()
			p.close()
			waitUntil(t, 5*time.Second, "the connection to be forgotten", func() bool { return ts.snap().conns == 0 })
			gPeak := peakG.Stop()
			gAfter := g0.settle(t, 10)
			report(t, tt.name, h0, hAttack, heapNow(), g0, gPeak, gAfter)
			checkServes(t, ts)
		})
	}
	t.Run("WebTransport streams", func(t *testing.T) {
		const n = 5000
		got := make(chan *Session, 1)
		ts := abuseServer(t, wtHandler(t, func(s *Session) {
			got <- s
			for {
				str, err := s.AcceptStream(s.Context())
				if err != nil {
					return
				}
				go func() {
					// An echo that also finishes the read side when the
					// write fails: a stream whose read side is never
					// finished keeps its QUIC stream credit (see echoSession).
					if _, err := io.Copy(str, str); err != nil {
						str.CancelRead(0)
						str.CancelWrite(0)
						return
					}
					str.Close()
				}()
			}
		}), withQUIC(maxStreamsWT, 100))
		checkServes(t, ts)
		g0 := baseline()
		h0 := heapNow()
		peakG := samplePeak(t, runtime.NumGoroutine)
		peakT := samplePeak(t, func() int { s := ts.snap(); return s.tracked + s.bidiQ })
		p := dialRaw(t, ts)
		p.control(clientSettingsFrame())
		connect := p.session(ts, "/abuse")
		sess := <-got
		sid := uint64(connect.StreamID())
		ctx := testCtx(t)
		start := time.Now()
		for i := 0; i < n; i += batch {
			var streams []*quic.Stream
			for j := 0; j < batch; j++ {
				s, err := p.qc.OpenStreamSync(ctx)
				if err != nil {
					t.Fatalf("stream %d: %v (server %v)", i+j, err, ts.snap())
				}
				s.Write(append(frames.AppendWebTransportBidiHeader(nil, sid), "reset me"...))
				s.SetReliableBoundary() // the header arrives even though we reset
				streams = append(streams, s)
			}
			time.Sleep(time.Millisecond)
			for _, s := range streams {
				s.CancelWrite(quic.StreamErrorCode(wtCodeOnWire(1)))
				s.CancelRead(quic.StreamErrorCode(wtCodeOnWire(1)))
			}
		}
		elapsed := time.Since(start)
		waitUntil(t, 10*time.Second, "the reset streams to be released", func() bool {
			s := ts.snap()
			return s.tracked == 0 && s.bidiQ == 0
		})
		hAttack := heapNow()
		tPeak := peakT.Stop()
		t.Logf("%d WebTransport streams opened and reset in %v; peak tracked+queued %d; server %v", n, elapsed.Round(time.Millisecond), tPeak, ts.snap())
		if tPeak > maxStreamsWT+sess.lim.MaxIncomingStreamQueue {
			t.Errorf("server held %d streams at once", tPeak)
		}
		if sess.Err() != nil {
			t.Errorf("session ended: %v", sess.Err())
		}
		p.expectAlive()
		p.close()
		waitUntil(t, 5*time.Second, "the connection to be forgotten", func() bool { return ts.snap().conns == 0 })
		gPeak := peakG.Stop()
		gAfter := g0.settle(t, 10)
		report(t, "rapid reset of WebTransport streams", h0, hAttack, heapNow(), g0, gPeak, gAfter)
		checkServes(t, ts)
	})
}

const maxStreamsWT = 100

// wtCodeOnWire maps a WebTransport application error code to the
// HTTP/3 code on the wire.
func wtCodeOnWire(code uint32) ErrorCode { return frames.WTErrorToH3(code) }
