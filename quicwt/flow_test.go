package quicwt

// WebTransport flow control (draft-ietf-webtrans-http3-16, Section 5):
// negotiation, credit on both sides, the blocked signals, violations by a
// peer, and the isolation of sessions that share a connection.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicwt/quicwt/frames"
	"github.com/quicwt/quicwt/settings"
	"github.com/quicwt/quicwt/varint"
)

// serverSession runs a server whose handler hands each session to got and
// holds it open.
func serverSession(t *testing.T, got chan<- *Session, configure ...func(*Server)) *testServer {
	return startServer(t, holdSessions(t, got), configure...)
}

func TestFlowControlNegotiation(t *testing.T) {
	for _, tt := range []struct {
		name                 string
		serverOff, clientOff bool
		want                 bool
	}{
		{"both on", false, false, true},
		{"server off", true, false, false},
		{"client off", false, true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := make(chan *Session, 1)
			ts := serverSession(t, got, func(s *Server) { s.Limits.DisableFlowControl = tt.serverOff })
			d := ts.dialer()
			d.Limits.DisableFlowControl = tt.clientOff
			_, cs, err := d.Dial(testCtx(t), ts.url("/"), nil)
			if err != nil {
				t.Fatal(err)
			}
			defer cs.Close()
			ss := <-got
			if cs.FlowControl() != tt.want || ss.FlowControl() != tt.want {
				t.Fatalf("flow control client %v server %v, want %v", cs.FlowControl(), ss.FlowControl(), tt.want)
			}
			// Without flow control the SETTINGS carry no initial limits.
			cc, err := d.DialConn(testCtx(t), ts.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			ps, _ := cc.PeerSettings(testCtx(t))
			if ps.Has(settings.WTInitialMaxData) == tt.serverOff {
				t.Fatalf("server SETTINGS %v with flow control off=%v", ps, tt.serverOff)
			}
		})
	}
}

// Without flow control a connection carries one session: the server
// rejects a second CONNECT with H3_REQUEST_REJECTED and our client does
// not send one (Section 5.1).
func TestOneSessionWithoutFlowControl(t *testing.T) {
	ts := serverSession(t, nil, func(s *Server) { s.Limits.DisableFlowControl = true })
	cc, err := ts.dialer().DialConn(testCtx(t), ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	_, first, err := cc.OpenSession(testCtx(t), ts.url("/a"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := cc.OpenSession(testCtx(t), ts.url("/b"), nil); !errors.Is(err, ErrTooManySessions) {
		t.Fatalf("second session from our client: %v, want ErrTooManySessions", err)
	}
	// A raw client that sends the second CONNECT anyway.
	p := dialRaw(t, ts)
	p.control(clientSettingsFrame())
	p.session(ts, "/a")
	s2 := p.request(nil, connectFields(ts.addr, "/b")...)
	if st, code := readResponse(t, s2); st != 0 || code != frames.H3RequestRejected {
		t.Fatalf("second CONNECT: status %d reset %s, want H3_REQUEST_REJECTED", st, code)
	}
	p.expectAlive()
	// Once the first session ends, another may come.
	first.Close()
	<-first.Closed()
	if _, s, err := cc.OpenSession(testCtx(t), ts.url("/c"), nil); err != nil {
		t.Fatalf("session after the first ended: %v", err)
	} else {
		s.Close()
	}
}

// Small limits: the opener blocks at the stream limit and the writer at
// the data limit, and both continue as the server's application finishes
// streams and reads.
func TestFlowControlCredit(t *testing.T) {
	got := make(chan *Session, 1)
	ts := serverSession(t, got, func(s *Server) {
		s.Limits.InitialSessionMaxData = 64 << 10
		s.Limits.InitialSessionMaxStreamsBidi = 2
		s.Limits.InitialSessionMaxStreamsUni = 2
	})
	_, cs, err := ts.dialer().Dial(testCtx(t), ts.url("/"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	ss := <-got
	ctx := testCtx(t)

	// Streams: two open at once, the third waits for a finished one.
	var held []*Stream
	for i := 0; i < 2; i++ {
		s, err := cs.OpenStream()
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		s.Write([]byte("x"))
		held = append(held, s)
	}
	if _, err := cs.OpenStream(); !errors.Is(err, ErrStreamLimit) {
		t.Fatalf("third stream: %v, want ErrStreamLimit", err)
	}
	opened := make(chan error, 1)
	go func() {
		s, err := cs.OpenStreamSync(ctx)
		if err == nil {
			s.Close()
		}
		opened <- err
	}()
	select {
	case err := <-opened:
		t.Fatalf("OpenStreamSync returned %v before any credit", err)
	case <-time.After(100 * time.Millisecond):
	}
	// The server finishes the first stream: both directions.
	ss1, err := ss.AcceptStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	held[0].Close()
	io.ReadAll(ss1)
	ss1.Close()
	io.ReadAll(held[0])
	select {
	case err := <-opened:
		if err != nil {
			t.Fatalf("OpenStreamSync: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("OpenStreamSync still blocked after the server finished a stream")
	}

	// Unidirectional streams likewise; OpenUniStreamSync honours ctx.
	for i := 0; i < 2; i++ {
		if _, err := cs.OpenUniStream(); err != nil {
			t.Fatalf("uni stream %d: %v", i, err)
		}
	}
	if _, err := cs.OpenUniStream(); !errors.Is(err, ErrStreamLimit) {
		t.Fatalf("third uni stream: %v, want ErrStreamLimit", err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err = cs.OpenUniStreamSync(short)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("OpenUniStreamSync without credit: %v, want the context's deadline", err)
	}

	// Data, on a session of its own: 4 MiB through a 64 KiB initial
	// window arrive whole.
	_, cs, err = ts.dialer().Dial(ctx, ts.url("/"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	ss = <-got
	payload := bytes.Repeat([]byte("0123456789abcdef"), 4<<20/16)
	sums := make(chan [32]byte, 1)
	go func() {
		s, err := ss.AcceptStream(ctx)
		if err != nil {
			sums <- [32]byte{}
			return
		}
		b, _ := io.ReadAll(s)
		sums <- sha256.Sum256(b)
	}()
	ws, err := cs.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := ws.Write(payload); err != nil || n != len(payload) {
		t.Fatalf("write %d of %d: %v", n, len(payload), err)
	}
	ws.Close()
	if sum := <-sums; sum != sha256.Sum256(payload) {
		t.Fatal("payload differs")
	}
	if m := cs.flowState().sendMaxData.Load(); m <= 64<<10 {
		t.Fatalf("client's data credit %d: no WT_MAX_DATA arrived", m)
	}
}

// A Write waiting for session credit honours its deadline, and TryWrite
// never waits.
func TestFlowControlWriteDeadline(t *testing.T) {
	got := make(chan *Session, 1)
	ts := serverSession(t, got, func(s *Server) { s.Limits.InitialSessionMaxData = 16 << 10 })
	_, cs, err := ts.dialer().Dial(testCtx(t), ts.url("/"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	<-got // the server's application reads nothing
	s, err := cs.OpenStreamSync(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	s.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	n, err := s.Write(make([]byte, 64<<10))
	if !errors.Is(err, os.ErrDeadlineExceeded) || n != 16<<10 {
		t.Fatalf("Write = %d, %v; want 16384 bytes and a deadline error", n, err)
	}
	if ok, err := s.TryWrite([]byte("x")); ok || err != nil {
		t.Fatalf("TryWrite without credit = %v, %v", ok, err)
	}
	// A later deadline set while a Write waits wakes it to look.
	s.SetWriteDeadline(time.Time{})
	done := make(chan error, 1)
	go func() { _, err := s.Write([]byte("y")); done <- err }()
	time.Sleep(50 * time.Millisecond)
	s.SetWriteDeadline(time.Now())
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Write after SetWriteDeadline: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("SetWriteDeadline did not wake a waiting Write")
	}
}

// rawSettings is a raw client's SETTINGS with the given initial limits
// (flow control on).
func rawSettings(data, bidi, uni uint64) []byte {
	s := defaultSettings(false)
	s.Set(settings.WTInitialMaxData, data)
	s.Set(settings.WTInitialMaxStreamsBidi, bidi)
	s.Set(settings.WTInitialMaxStreamsUni, uni)
	return s.AppendFrame(nil)
}

// rawConnect opens a session from a raw peer and returns its CONNECT stream
// and the reader that read the response, to go on with.
func rawConnect(t *testing.T, p *rawPeer, ts *testServer) (*quic.Stream, *frameReader) {
	t.Helper()
	s := p.request(nil, connectFields(ts.addr, "/")...)
	fr := newFrameReader(s, 256)
	fields, err := readHeaderSection(fr, noType, false, &Limits{MaxFieldSectionSize: 1 << 16, MaxControlFrameSize: 1 << 16})
	if err != nil {
		t.Fatal(err)
	}
	if st, _, err := parseResponseFields(fields); err != nil || st != 200 {
		t.Fatalf("CONNECT: %d %v", st, err)
	}
	return s, fr
}

// readRawCapsules reads the server's side of a raw CONNECT stream and sends
// each capsule on out until the stream ends.
func readRawCapsules(fr *frameReader, out chan<- frames.Capsule) {
	var p frames.CapsuleParser
	defer close(out)
	for {
		h, err := frames.ReadHeader(fr, 1<<16)
		if err != nil {
			return
		}
		b, err := fr.payload(h.Length)
		if err != nil || h.Type != frames.TypeData {
			continue
		}
		for len(b) > 0 {
			c, n, ok, err := p.Next(b)
			b = b[n:]
			if err != nil {
				return
			}
			if ok {
				out <- frames.Capsule{Type: c.Type, Value: append([]byte(nil), c.Value...)}
			}
		}
	}
}

func waitCapsule(t *testing.T, in <-chan frames.Capsule, typ frames.CapsuleType) uint64 {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case c, ok := <-in:
			if !ok {
				t.Fatalf("CONNECT stream ended before %v", typ)
			}
			if c.Type == typ {
				v, _, _ := varint.Parse(c.Value)
				return v
			}
		case <-timeout:
			t.Fatalf("no %v", typ)
		}
	}
}

// A blocked sender says so (WT_DATA_BLOCKED, WT_STREAMS_BLOCKED, Sections
// 5.6.3 and 5.6.5) and continues when the peer grants credit.
func TestFlowControlBlockedCapsules(t *testing.T) {
	payload := bytes.Repeat([]byte{'z'}, 5000)
	opened := make(chan error, 2)
	ts := startServer(t, wtHandler(t, func(s *Session) {
		w, err := s.OpenUniStreamSync(s.Context())
		if err != nil {
			opened <- err
			return
		}
		opened <- nil
		if _, err := w.Write(payload); err == nil {
			w.Close()
		}
		_, err = s.OpenUniStreamSync(s.Context()) // beyond the 1 allowed: waits
		opened <- err
	}))
	p := dialRaw(t, ts)
	p.control(rawSettings(1000, 1, 1))
	connect, fr := rawConnect(t, p, ts)
	caps := make(chan frames.Capsule, 64)
	go readRawCapsules(fr, caps)
	if err := <-opened; err != nil {
		t.Fatal(err)
	}
	if v := waitCapsule(t, caps, frames.CapsuleDataBlocked); v != 1000 {
		t.Fatalf("WT_DATA_BLOCKED %d, want 1000", v)
	}
	// Grant data: the write completes; the next stream waits.
	connect.Write(frames.AppendFrame(nil, frames.TypeData, frames.AppendVarintCapsule(nil, frames.CapsuleMaxData, 1<<20)))
	if v := waitCapsule(t, caps, frames.CapsuleStreamsBlockedUni); v != 1 {
		t.Fatalf("WT_STREAMS_BLOCKED (uni) %d, want 1", v)
	}
	connect.Write(frames.AppendFrame(nil, frames.TypeData, frames.AppendVarintCapsule(nil, frames.CapsuleMaxStreamsUni, 2)))
	hdr := frames.AppendWebTransportUniHeader(nil, uint64(connect.StreamID()))
	for {
		us, err := p.qc.AcceptUniStream(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		first := make([]byte, 1)
		if _, err := io.ReadFull(us, first); err != nil || first[0] != hdr[0] {
			continue // the server's control stream
		}
		us.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(us)
		if err != nil || !bytes.Equal(append(first, b...), append(hdr, payload...)) {
			t.Fatalf("uni stream: %d bytes, %v", len(b)+1, err)
		}
		break
	}
	select {
	case err := <-opened:
		if err != nil {
			t.Fatalf("second uni stream: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("second uni stream did not open after WT_MAX_STREAMS")
	}
}

// Violations by a peer end the session with WT_FLOW_CONTROL_ERROR on the
// CONNECT stream (Sections 5.4, 5.6.2 to 5.6.4); the connection goes on.
func TestFlowControlViolations(t *testing.T) {
	big := uint64(1) << 60
	tests := []struct {
		name string
		run  func(p *rawPeer, connect *quic.Stream)
	}{
		{"bidi streams over the limit", func(p *rawPeer, c *quic.Stream) {
			for i := 0; i < 3; i++ {
				s, _ := p.qc.OpenStreamSync(testCtx(p.t))
				s.Write(frames.AppendWebTransportBidiHeader(nil, uint64(c.StreamID())))
			}
		}},
		{"uni stream with a limit of 0", func(p *rawPeer, c *quic.Stream) {
			p.uni(frames.AppendWebTransportUniHeader(nil, uint64(c.StreamID())))
		}},
		{"data over the limit, unread", func(p *rawPeer, c *quic.Stream) {
			// 40 KiB on each of two streams, ended: 80 KiB against 64 KiB.
			for i := 0; i < 2; i++ {
				s, _ := p.qc.OpenStreamSync(testCtx(p.t))
				s.Write(append(frames.AppendWebTransportBidiHeader(nil, uint64(c.StreamID())), make([]byte, 40<<10)...))
				s.Close()
			}
		}},
		{"WT_MAX_DATA equal to the initial limit", func(p *rawPeer, c *quic.Stream) {
			c.Write(frames.AppendFrame(nil, frames.TypeData, frames.AppendVarintCapsule(nil, frames.CapsuleMaxData, 1000)))
		}},
		{"WT_MAX_DATA decreasing", func(p *rawPeer, c *quic.Stream) {
			b := frames.AppendVarintCapsule(nil, frames.CapsuleMaxData, 5000)
			b = frames.AppendVarintCapsule(b, frames.CapsuleMaxData, 4000)
			c.Write(frames.AppendFrame(nil, frames.TypeData, b))
		}},
		{"WT_MAX_STREAMS not increasing", func(p *rawPeer, c *quic.Stream) {
			c.Write(frames.AppendFrame(nil, frames.TypeData, frames.AppendVarintCapsule(nil, frames.CapsuleMaxStreamsBidi, 2)))
		}},
		{"WT_MAX_STREAMS above 2^60", func(p *rawPeer, c *quic.Stream) {
			c.Write(frames.AppendFrame(nil, frames.TypeData, frames.AppendVarintCapsule(nil, frames.CapsuleMaxStreamsUni, big+1)))
		}},
		{"WT_STREAMS_BLOCKED above 2^60", func(p *rawPeer, c *quic.Stream) {
			c.Write(frames.AppendFrame(nil, frames.TypeData, frames.AppendVarintCapsule(nil, frames.CapsuleStreamsBlockedBidi, big+1)))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := make(chan *Session, 1)
			ts := serverSession(t, got, func(s *Server) {
				s.Limits.InitialSessionMaxData = 64 << 10
				s.Limits.InitialSessionMaxStreamsBidi = 2
				s.Limits.InitialSessionMaxStreamsUni = -1 // none
			})
			p := dialRaw(t, ts)
			p.control(rawSettings(1000, 2, 2))
			connect := p.session(ts, "/")
			sess := <-got
			tt.run(p, connect)
			connect.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err := io.ReadAll(connect)
			if code, ok := streamCode(err); !ok || code != frames.WTFlowControlError {
				t.Fatalf("CONNECT stream ended with %v, want a reset with WT_FLOW_CONTROL_ERROR", err)
			}
			<-sess.Context().Done()
			if err := sess.Err(); !errors.Is(err, ErrFlowControl) {
				t.Fatalf("server session ended with %v, want ErrFlowControl", err)
			}
			p.expectAlive()
		})
	}
}

// Sessions that share a connection are isolated: one whose application
// never accepts or reads cannot take the connection's streams or its
// window from another (Section 5.1).
func TestFlowControlIsolation(t *testing.T) {
	sums := make(chan [32]byte, 1)
	mux := http.NewServeMux()
	mux.Handle("/stalled", holdSessions(t, nil)) // never accepts a stream
	mux.Handle("/bulk", wtHandler(t, func(s *Session) {
		str, err := s.AcceptStream(s.Context())
		if err != nil {
			return
		}
		b, _ := io.ReadAll(str)
		sums <- sha256.Sum256(b)
		str.Close()
	}))
	ts := startServer(t, mux)
	cc, err := ts.dialer().DialConn(testCtx(t), ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx := testCtx(t)
	_, stalled, err := cc.OpenSession(ctx, ts.url("/stalled"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	// The stalled session takes all the stream and data credit it gets:
	// 100 streams, writing 1 MiB each, until its 512 KiB of credit is out.
	var wg sync.WaitGroup
	for i := 0; ; i++ {
		s, err := stalled.OpenStream()
		if errors.Is(err, ErrStreamLimit) {
			if i != 100 {
				t.Fatalf("stalled session opened %d streams, want its credit of 100", i)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.Write(make([]byte, 1<<20)) // blocks on the session's credit
		}()
	}
	defer wg.Wait()
	defer stalled.CloseWithError(0, "")
	// Another session on the same connection moves 16 MiB.
	_, bulk, err := cc.OpenSession(ctx, ts.url("/bulk"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bulk.Close()
	payload := bytes.Repeat([]byte("isolation!"), 16<<20/10)
	s, err := bulk.OpenStreamSync(ctx)
	if err != nil {
		t.Fatalf("bulk session's stream (the stalled one holds 100): %v", err)
	}
	if _, err := s.Write(payload); err != nil {
		t.Fatal(err)
	}
	s.Close()
	select {
	case sum := <-sums:
		if sum != sha256.Sum256(payload) {
			t.Fatal("bulk payload differs")
		}
	case <-ctx.Done():
		t.Fatal("the bulk session stalled behind the stalled one")
	}
	if used := stalled.flowState().sentData.Load(); used > 512<<10 {
		t.Fatalf("stalled session sent %d bytes, above its credit", used)
	}
}

// Credit granted while a session awaits its handler (streams rejected from
// a full queue give theirs back) waits for the response: nothing precedes
// the HEADERS on the CONNECT stream, and the grant follows them.
func TestFlowControlNothingBeforeResponse(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		if sess, err := Upgrade(w, r); err == nil {
			<-sess.Context().Done()
		}
	})
	ts := startServer(t, mux, func(s *Server) { s.Limits.MaxIncomingStreamQueue = 2 })
	p := dialRaw(t, ts)
	p.control(rawSettings(1<<20, 100, 100))
	connect := p.request(nil, connectFields(ts.addr, "/slow")...)
	for i := 0; i < 20; i++ { // 18 rejected from the full queue
		s, err := p.qc.OpenStreamSync(testCtx(t))
		if err != nil {
			t.Fatal(err)
		}
		s.Write(frames.AppendWebTransportBidiHeader(nil, uint64(connect.StreamID())))
	}
	fr := newFrameReader(connect, 256)
	connect.SetReadDeadline(time.Now().Add(5 * time.Second))
	h, err := frames.ReadHeader(fr, 1<<16)
	if err != nil || h.Type != frames.TypeHeaders {
		t.Fatalf("first frame on the CONNECT stream: %v %v, want HEADERS", h.Type, err)
	}
	if _, err := fr.payload(h.Length); err != nil {
		t.Fatal(err)
	}
	caps := make(chan frames.Capsule, 16)
	go readRawCapsules(fr, caps)
	if v := waitCapsule(t, caps, frames.CapsuleMaxStreamsBidi); v <= 100 {
		t.Fatalf("WT_MAX_STREAMS %d after the response, want a grant above 100", v)
	}
}
