package interop_test

// WebTransport flow control (draft-ietf-webtrans-http3-16, Section 5) with
// webtransport-go v0.13.0, both roles, negotiated on both sides with small
// limits (2 streams of each kind, 64 KiB of data per session): streams and
// bulk data past the initial limits, so that credit updates must flow both
// ways, and a side that has to block and then continue.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	webtransport "github.com/quic-go/webtransport-go"

	"github.com/quicwt/quicwt/quicwt"
)

const (
	fcStreams = 2
	fcData    = 64 << 10
)

// fcPair is a flow-controlled session between quicwt and webtransport-go:
// server and client ends, and the quicwt end, to check its flow control.
type fcPair struct {
	server, client PeerSession
	quicwt         *quicwt.Session
}

func fcTopologies(t *testing.T) map[string]func(t *testing.T) fcPair {
	cert := NewCert(t, 24*time.Hour)
	limits := func(l *quicwt.Limits) {
		l.InitialSessionMaxData = fcData
		l.InitialSessionMaxStreamsBidi = fcStreams
		l.InitialSessionMaxStreamsUni = fcStreams
	}
	wtConfig := &webtransport.Config{MaxIncomingStreams: fcStreams, MaxIncomingUniStreams: fcStreams, MaxIncomingData: fcData}

	qSessions := make(chan *quicwt.Session, 16)
	qs := StartQuicwtServer(t, "127.0.0.1", cert, SessionHandler(t, func(s *quicwt.Session, _ *http.Request) { qSessions <- s }),
		func(s *quicwt.Server) { limits(&s.Limits) })
	wtClient := NewWTGoClient(t, cert, wtConfig)
	ws := StartWTGoServer(t, cert, wtConfig)

	return map[string]func(t *testing.T) fcPair{
		"quicwt-server/wtgo-client": func(t *testing.T) fcPair {
			ctx := Ctx(t, 10*time.Second)
			_, cs, err := wtClient.Dial(t, ctx, qs.URL("/fc"))
			if err != nil {
				t.Fatalf("webtransport-go Dial: %v", err)
			}
			t.Cleanup(func() { _ = cs.CloseWithError(0, "") })
			ss := <-qSessions
			t.Cleanup(func() { _ = ss.CloseWithError(0, "") })
			return fcPair{quicwtSession{ss}, wtgoSession{cs}, ss}
		},
		"wtgo-server/quicwt-client": func(t *testing.T) fcPair {
			ctx := Ctx(t, 10*time.Second)
			d := &quicwt.Dialer{CertificateHashes: [][32]byte{cert.Hash}}
			limits(&d.Limits)
			_, cs, err := d.Dial(ctx, "https://"+ws.Addr+"/fc", nil)
			if err != nil {
				t.Fatalf("quicwt Dial: %v", err)
			}
			t.Cleanup(func() { _ = cs.CloseWithError(0, "") })
			got := <-ws.Sessions
			t.Cleanup(func() { _ = got.Sess.CloseWithError(0, "") })
			return fcPair{wtgoSession{got.Sess}, quicwtSession{cs}, cs}
		},
	}
}

func TestWebTransportGoFlowControl(t *testing.T) {
	for name, pair := range fcTopologies(t) {
		t.Run(name, func(t *testing.T) {
			t.Run("negotiated", func(t *testing.T) {
				p := pair(t)
				matrix.Track(t, libWTGo, name, "flow control negotiated")
				// quicwt's end has flow control, with the peer's limits.
				if !p.quicwt.FlowControl() {
					t.Fatal("flow control not in effect on the quicwt end")
				}
			})
			for _, first := range []string{"server", "client"} {
				t.Run(first+"-sends/bidi-past-limits", func(t *testing.T) {
					p := pair(t)
					a, b := p.server, p.client
					if first == "client" {
						a, b = b, a
					}
					matrix.Track(t, libWTGo, first+" sends ("+name+")", "flow control: 8 bidi streams x 256 KiB echoed, limits 2 streams / 64 KiB")
					fcBidiEcho(t, a, b, 8, 256<<10)
				})
				t.Run(first+"-sends/uni-past-limits", func(t *testing.T) {
					p := pair(t)
					a, b := p.server, p.client
					if first == "client" {
						a, b = b, a
					}
					matrix.Track(t, libWTGo, first+" sends ("+name+")", "flow control: 8 uni streams x 128 KiB, limits 2 streams / 64 KiB")
					fcUni(t, a, b, 8, 128<<10)
				})
				t.Run(first+"-sends/blocks-then-continues", func(t *testing.T) {
					p := pair(t)
					a, b := p.server, p.client
					if first == "client" {
						a, b = b, a
					}
					matrix.Track(t, libWTGo, first+" sends ("+name+")", "flow control: the opener blocks at the stream limit and continues")
					fcBlockThenContinue(t, a, b)
				})
			}
		})
	}
}

// fcBidiEcho has a open n streams one after another, each echoed by b.
func fcBidiEcho(t *testing.T, a, b PeerSession, n, size int) {
	ctx := Ctx(t, 30*time.Second)
	go func() {
		for {
			s, err := b.AcceptStream(ctx)
			if err != nil {
				return
			}
			go func() {
				if _, err := io.Copy(s, s); err == nil {
					s.Close()
				}
			}()
		}
	}()
	for i := 0; i < n; i++ {
		s, err := a.OpenStream(ctx)
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		payload := randBytes(t, size)
		var got []byte
		var rerr error
		done := make(chan struct{})
		go func() { got, rerr = io.ReadAll(s); close(done) }()
		if _, err := s.Write(payload); err != nil {
			t.Fatalf("stream %d write: %v", i, err)
		}
		s.Close()
		<-done
		if rerr != nil || !bytes.Equal(got, payload) {
			t.Fatalf("stream %d: echo of %d bytes: %d bytes, %v", i, size, len(got), rerr)
		}
	}
}

// fcUni has a send n unidirectional streams at once; b reads them all.
func fcUni(t *testing.T, a, b PeerSession, n, size int) {
	ctx := Ctx(t, 30*time.Second)
	sums := make(chan [32]byte, n)
	go func() {
		for i := 0; i < n; i++ {
			s, err := b.AcceptUniStream(ctx)
			if err != nil {
				return
			}
			go func() {
				p, _ := io.ReadAll(s)
				sums <- sha256.Sum256(p)
			}()
		}
	}()
	want := map[[32]byte]int{}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i := 0; i < n; i++ {
		payload := randBytes(t, size)
		want[sha256.Sum256(payload)]++
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := a.OpenUniStream(ctx)
			if err != nil {
				mu.Lock()
				t.Errorf("uni stream: %v", err)
				mu.Unlock()
				return
			}
			if _, err := s.Write(payload); err != nil {
				mu.Lock()
				t.Errorf("uni write: %v", err)
				mu.Unlock()
			}
			s.Close()
		}()
	}
	wg.Wait()
	for i := 0; i < n; i++ {
		select {
		case sum := <-sums:
			if want[sum] == 0 {
				t.Fatalf("uni stream %d arrived changed", i)
			}
			want[sum]--
		case <-ctx.Done():
			t.Fatalf("%d of %d uni streams arrived", i, n)
		}
	}
}

// fcBlockThenContinue has a open the 2 streams its credit allows, then a
// third, which must wait until b finishes one.
func fcBlockThenContinue(t *testing.T, a, b PeerSession) {
	ctx := Ctx(t, 20*time.Second)
	var held []PeerStream
	for i := 0; i < fcStreams; i++ {
		s, err := a.OpenStream(ctx)
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		s.Write([]byte{byte('0' + i)})
		held = append(held, s)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	_, err := a.OpenStream(short)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("third stream at a limit of %d: %v, want to wait", fcStreams, err)
	}
	// b finishes the stream it accepts first (which may be either: the
	// peer may deliver them in any order); its credit comes back.
	bs, err := b.AcceptStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	which := make([]byte, 1)
	if _, err := io.ReadFull(bs, which); err != nil || which[0] < '0' || int(which[0]-'0') >= len(held) {
		t.Fatalf("first byte %q, %v", which, err)
	}
	h := held[which[0]-'0']
	h.Close()
	io.ReadAll(bs)
	bs.Close()
	io.ReadAll(h)
	s, err := a.OpenStream(ctx)
	if err != nil {
		t.Fatalf("stream after the credit came back: %v", err)
	}
	s.Close()
}
