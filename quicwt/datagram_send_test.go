package quicwt

import (
	"encoding/binary"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// gatedConn is a sessionConn whose sendDatagram waits for the gate, as
// quic-go's does while its queue is full, and records what it sent.
type gatedConn struct {
	sessionConn // nil: only the methods below are called
	gate        chan struct{}
	mu          sync.Mutex
	sent        [][]byte
}

func (g *gatedConn) datagramSupport() (bool, bool) { return true, true }
func (g *gatedConn) sendDatagram(b []byte) error {
	if len(b) > 1200 {
		return &quic.DatagramTooLargeError{MaxDatagramPayloadSize: 1200}
	}
	<-g.gate
	g.mu.Lock()
	g.sent = append(g.sent, append([]byte(nil), b...))
	g.mu.Unlock()
	return nil
}

func (g *gatedConn) payloads() []uint32 {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []uint32
	for _, b := range g.sent {
		out = append(out, binary.BigEndian.Uint32(b[1:])) // after the 1-byte quarter stream ID
	}
	return out
}

func gatedSession() (*Session, *gatedConn) {
	g := &gatedConn{gate: make(chan struct{})}
	s := &Session{c: g} // session 0: a 1-byte quarter stream ID
	s.state.Store(sessionOpen)
	return s, g
}

func num(i uint32) []byte { return binary.BigEndian.AppendUint32(nil, i) }

// waitQueued waits until the feeder holds one datagram in sendDatagram
// and n wait in the queue.
func waitQueued(t *testing.T, s *Session, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); s.DatagramSendStats().Queued != n; {
		if time.Now().After(deadline) {
			t.Fatalf("queued %d, want %d", s.DatagramSendStats().Queued, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func (g *gatedConn) open(t *testing.T, s *Session, sent int) {
	t.Helper()
	close(g.gate)
	for deadline := time.Now().Add(5 * time.Second); s.DatagramSendStats().Sent != uint64(sent); {
		if time.Now().After(deadline) {
			t.Fatalf("sent %d, want %d", s.DatagramSendStats().Sent, sent)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestDatagramPolicyDropNewest(t *testing.T) {
	s, g := gatedSession()
	s.SetDatagramSendPolicy(&DatagramSendPolicy{MaxQueued: 3})
	// 0 goes to the (blocked) sendDatagram, 1-3 queue, 4 and 5 are dropped.
	if err := s.SendDatagram(num(0)); err != nil {
		t.Fatal(err)
	}
	waitQueued(t, s, 0)
	for i := uint32(1); i <= 5; i++ {
		err := s.SendDatagram(num(i))
		if want := i > 3; want != errors.Is(err, ErrDatagramDropped) {
			t.Fatalf("datagram %d: %v", i, err)
		}
	}
	if st := s.DatagramSendStats(); st.DroppedFull != 2 || st.Queued != 3 {
		t.Fatalf("stats %+v", st)
	}
	g.open(t, s, 4)
	if got := g.payloads(); len(got) != 4 || got[0] != 0 || got[1] != 1 || got[3] != 3 {
		t.Fatalf("sent %v", got)
	}
}

func TestDatagramPolicyDropOldest(t *testing.T) {
	s, g := gatedSession()
	s.SetDatagramSendPolicy(&DatagramSendPolicy{MaxQueued: 3, DropOldest: true})
	s.SendDatagram(num(0))
	waitQueued(t, s, 0)
	for i := uint32(1); i <= 5; i++ {
		if err := s.SendDatagram(num(i)); err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
	}
	if st := s.DatagramSendStats(); st.DroppedFull != 2 || st.Queued != 3 {
		t.Fatalf("stats %+v", st)
	}
	g.open(t, s, 4)
	if got := g.payloads(); len(got) != 4 || got[0] != 0 || got[1] != 3 || got[2] != 4 || got[3] != 5 {
		t.Fatalf("sent %v; want 0 (in flight) then the newest 3, 4, 5", got)
	}
}

func TestDatagramPolicyMaxAge(t *testing.T) {
	s, g := gatedSession()
	s.SetDatagramSendPolicy(&DatagramSendPolicy{MaxAge: 20 * time.Millisecond})
	s.SendDatagram(num(0))
	waitQueued(t, s, 0)
	s.SendDatagram(num(1))
	s.SendDatagram(num(2))
	time.Sleep(40 * time.Millisecond) // 1 and 2 are now too old
	s.SendDatagram(num(3))
	if st := s.DatagramSendStats(); st.DroppedMaxAge != 2 || st.Queued != 1 {
		t.Fatalf("stats %+v", st)
	}
	g.open(t, s, 2)
	if got := g.payloads(); len(got) != 2 || got[1] != 3 {
		t.Fatalf("sent %v", got)
	}
}

func TestDatagramPolicyBytesAndSize(t *testing.T) {
	s, g := gatedSession()
	s.SetDatagramSendPolicy(&DatagramSendPolicy{MaxQueuedBytes: 2500})
	s.SendDatagram(num(0))
	waitQueued(t, s, 0)
	big := make([]byte, 1000)
	if err := s.SendDatagram(big); err != nil {
		t.Fatal(err)
	}
	if err := s.SendDatagram(big); err != nil {
		t.Fatal(err)
	}
	if err := s.SendDatagram(big); !errors.Is(err, ErrDatagramDropped) {
		t.Fatalf("third 1000-byte datagram over 2500 bytes: %v", err)
	}
	var tl *DatagramTooLargeError
	if err := s.SendDatagram(make([]byte, 1500)); !errors.As(err, &tl) || tl.Max != 1199 {
		t.Fatalf("too large: %v", err)
	}
	// Back to the default: blocking, straight to quic-go.
	s.SetDatagramSendPolicy(nil)
	done := make(chan error)
	go func() { done <- s.SendDatagram(num(9)) }()
	g.open(t, s, 3)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := g.payloads(); len(got) != 4 {
		t.Fatalf("sent %d datagrams", len(got))
	}
}

// TestDatagramPolicyEnd: the feeder exits and drops the queue when the
// session ends.
func TestDatagramPolicyEnd(t *testing.T) {
	s, g := gatedSession()
	s.SetDatagramSendPolicy(&DatagramSendPolicy{})
	for i := uint32(0); i < 10; i++ {
		s.SendDatagram(num(i))
	}
	s.state.Store(sessionClosed)
	close(g.gate)
	for deadline := time.Now().Add(5 * time.Second); ; {
		st := s.DatagramSendStats()
		s.dsend.Load().mu.Lock()
		running := s.dsend.Load().running
		s.dsend.Load().mu.Unlock()
		if !running && st.Queued == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("feeder still running, %+v", st)
		}
		time.Sleep(time.Millisecond)
	}
	if n := len(g.payloads()); n > 1 {
		t.Fatalf("%d datagrams sent after the end (only the one in flight may be)", n)
	}
}

// TestDatagramPolicyAgeLoopback overloads a loopback session with
// datagrams sent in a tight loop (no pacing can keep up with it: the
// sender never blocks) and checks that no delivered datagram is older
// than MaxAge plus a generous slack for quic-go's own queue, the receiver
// and a loaded machine. The figures are logged.
func TestDatagramPolicyAgeLoopback(t *testing.T) {
	const maxAge = 20 * time.Millisecond
	ages := make(chan []time.Duration, 1)
	ts := startServer(t, wtHandler(t, func(sess *Session) {
		var got []time.Duration
		for {
			b, err := sess.ReceiveDatagram(sess.Context())
			if err != nil {
				ages <- got
				return
			}
			if len(b) >= 8 {
				got = append(got, time.Duration(time.Now().UnixNano()-int64(binary.BigEndian.Uint64(b))))
			}
		}
	}))
	ctx := testCtx(t)
	_, sess, err := ts.dialer().Dial(ctx, ts.url("/d"), nil)
	if err != nil {
		t.Fatal(err)
	}
	sess.SetDatagramSendPolicy(&DatagramSendPolicy{MaxAge: maxAge, DropOldest: true, MaxQueued: 256})
	payload := make([]byte, 1000)
	var n int
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); n++ {
		binary.BigEndian.PutUint64(payload, uint64(time.Now().UnixNano()))
		if err := sess.SendDatagram(payload); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond) // let the queue drain
	st := sess.DatagramSendStats()
	sess.Close()
	got := <-ages
	if len(got) == 0 {
		t.Fatal("nothing delivered")
	}
	slices.Sort(got)
	p := func(q float64) time.Duration { return got[int(q*float64(len(got)-1))] }
	t.Logf("offered %d, sent %d, dropped full %d / old %d, delivered %d; age p50 %v p99 %v max %v (MaxAge %v)",
		n, st.Sent, st.DroppedFull, st.DroppedMaxAge, len(got), p(0.5), p(0.99), got[len(got)-1], maxAge)
	if st.Sent+st.DroppedFull+st.DroppedMaxAge+st.Failed != uint64(n) {
		t.Errorf("counters %+v do not add up to %d", st, n)
	}
	if max := got[len(got)-1]; max > maxAge+time.Second {
		t.Errorf("a datagram was delivered %v after it was sent (MaxAge %v)", max, maxAge)
	}
}
