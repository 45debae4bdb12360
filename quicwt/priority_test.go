package quicwt

import (
	"io"
	"sync"
	"testing"
	"time"
)

// prioRecorder is a sendStream that records SetPriority.
type prioRecorder struct {
	sendStream
	urgency int8
	calls   int
}

func (r *prioRecorder) SetPriority(u int8, inc bool) {
	if !inc {
		panic("not incremental")
	}
	r.urgency, r.calls = u, r.calls+1
}

func TestSendOrderMapping(t *testing.T) {
	s := &Session{}
	mk := func() (*prioRecorder, *streamState) {
		return &prioRecorder{urgency: defaultUrgency}, &streamState{sess: s, all: doneWrite}
	}
	set := func(r *prioRecorder, st *streamState, order int64) { s.setSendPriority(r, st, &order, nil) }
	a, sa := mk()
	b, sb := mk()
	c, sc := mk()
	d, sd := mk()
	e, se := mk()
	set(a, sa, 10)
	if a.urgency != 0 {
		t.Fatalf("the only positive order: urgency %d", a.urgency)
	}
	set(b, sb, 20) // b is now the highest: a moves down
	if b.urgency != 0 || a.urgency != 1 {
		t.Fatalf("b %d a %d", b.urgency, a.urgency)
	}
	set(c, sc, 5)
	set(d, sd, 1) // below the third: shares urgency 2 with c
	if c.urgency != 2 || d.urgency != 2 {
		t.Fatalf("c %d d %d", c.urgency, d.urgency)
	}
	set(e, se, -1)
	if e.urgency != 4 {
		t.Fatalf("negative: %d", e.urgency)
	}
	set(e, se, 0) // back to the default
	if e.urgency != defaultUrgency {
		t.Fatalf("order 0: %d", e.urgency)
	}
	// Equal orders share a level.
	set(d, sd, 20)
	if d.urgency != 0 || b.urgency != 0 || a.urgency != 1 || c.urgency != 2 {
		t.Fatalf("equal: d %d b %d a %d c %d", d.urgency, b.urgency, a.urgency, c.urgency)
	}
	// A finished stream leaves the ranking at the next change.
	sb.finish(doneWrite)
	sd.finish(doneWrite)
	set(c, sc, 5)
	if a.urgency != 0 || c.urgency != 1 {
		t.Fatalf("after b and d ended: a %d c %d", a.urgency, c.urgency)
	}
	// Groups rank separately: the group's only positive order is its top.
	g := s.NewSendGroup()
	f, sf := mk()
	set(f, sf, 1)
	s.setSendPriority(f, sf, nil, &g)
	if f.urgency != 0 {
		t.Fatalf("alone in its group: urgency %d", f.urgency)
	}
	if a.urgency != 0 || c.urgency != 1 {
		t.Fatalf("default group after f left: a %d c %d", a.urgency, c.urgency)
	}
	// Negative orders: 4, 5, 6, then 7 for the rest.
	var negs []*prioRecorder
	for i := int64(1); i <= 5; i++ {
		r, st := mk()
		set(r, st, -i)
		negs = append(negs, r)
	}
	for i, want := range []int8{4, 5, 6, 7, 7} {
		if negs[i].urgency != want {
			t.Fatalf("order %d: urgency %d, want %d", -(i + 1), negs[i].urgency, want)
		}
	}
}

// TestSendOrderLoopback: two streams write 4 MiB each, the low-order one
// starting 5 ms earlier; the one with the higher send order completes
// first. The server grants session data credit for both at once, so that
// quic-go's scheduler, not the session's credit (which waiting writers
// share as they come), decides the order.
func TestSendOrderLoopback(t *testing.T) {
	const size = 4 << 20
	done := make(chan string, 2)
	ts := startServer(t, wtHandler(t, func(sess *Session) {
		for i := 0; i < 2; i++ {
			str, err := sess.AcceptUniStream(sess.Context())
			if err != nil {
				return
			}
			go func() {
				var tag [1]byte
				io.ReadFull(str, tag[:])
				n, _ := io.Copy(io.Discard, str)
				if n == size-1 {
					done <- string(tag[:])
				}
			}()
		}
		<-sess.Context().Done()
	}), func(s *Server) { s.Limits.InitialSessionMaxData = 4 * size })
	ctx := testCtx(t)
	_, sess, err := ts.dialer().Dial(ctx, ts.url("/p"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	low, err := sess.OpenUniStream()
	if err != nil {
		t.Fatal(err)
	}
	high, err := sess.OpenUniStream()
	if err != nil {
		t.Fatal(err)
	}
	low.SetSendOrder(-5)
	high.SetSendOrder(100)
	buf := make([]byte, size)
	var wg sync.WaitGroup
	// The low stream starts first: without priorities it would finish
	// first (round-robin from a head start); with them the high one
	// overtakes it.
	for _, c := range []struct {
		s   *SendStream
		tag byte
	}{{low, 'L'}, {high, 'H'}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := append([]byte{c.tag}, buf[1:]...)
			c.s.Write(b)
			c.s.Close()
		}()
		time.Sleep(5 * time.Millisecond)
	}
	first := <-done
	second := <-done
	wg.Wait()
	if first != "H" || second != "L" {
		t.Fatalf("completed %s then %s; want H (send order 100) before L (-5)", first, second)
	}
}
