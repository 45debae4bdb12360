package interop_test

// quicwt <-> webtransport-go: every feature in both topologies (which
// library is the server) and both roles (which library acts first).

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/quicwt/quicwt/frames"
	"github.com/quicwt/quicwt/quicwt"
	"github.com/quicwt/quicwt/settings"
)

// wtgoScenario runs one feature: a acts (opens, sends, closes, resets), b
// responds.
type wtgoScenario struct {
	name    string
	feature string // matrix column; name if empty
	run     func(t *testing.T, a, b PeerSession)
}

func shortLib(lib string) string {
	if lib == libWTGo {
		return "wtgo"
	}
	return lib
}

// streamCodes are application error codes around the edges of the
// WebTransport mapping (draft-ietf-webtrans-http3, Section 4.4): 29 and 30
// straddle the first reserved H3 codepoint.
var streamCodes = []uint32{0, 1, 29, 30, 0x12345678, 0xffffffff}

func wtgoScenarios() []wtgoScenario {
	var sc []wtgoScenario
	sc = append(sc,
		wtgoScenario{name: "bidi", feature: "bidi stream (open, echo both ways, FIN)", run: scenarioBidi},
		wtgoScenario{name: "uni", feature: "uni stream (open, send, FIN)", run: scenarioUni},
		wtgoScenario{name: "datagram", feature: "datagram", run: scenarioDatagram},
	)
	closes := []struct {
		name string
		code uint32
		msg  string
	}{
		{"zero", 0, ""},
		{"code+utf8", 0x1234abcd, "closed by the initiator ✓"},
		{"max+1024B", 0xffffffff, strings.Repeat("m", 1024)},
	}
	for _, c := range closes {
		sc = append(sc, wtgoScenario{
			name:    "close/" + c.name,
			feature: "session close code+message",
			run:     func(t *testing.T, a, b PeerSession) { scenarioClose(t, a, b, c.code, c.msg) },
		})
	}
	sc = append(sc, wtgoScenario{
		name:    "close/open-streams",
		feature: "session close code+message with streams open",
		run:     scenarioCloseOpenStreams,
	})
	for _, code := range streamCodes {
		sc = append(sc,
			wtgoScenario{
				name:    fmt.Sprintf("reset-bidi/%d", code),
				feature: "bidi RESET_STREAM code (opener resets)",
				run:     func(t *testing.T, a, b PeerSession) { scenarioResetBidi(t, a, b, code, false) },
			},
			wtgoScenario{
				name:    fmt.Sprintf("reset-bidi-accepted/%d", code),
				feature: "bidi RESET_STREAM code (accepter resets)",
				run:     func(t *testing.T, a, b PeerSession) { scenarioResetBidi(t, a, b, code, true) },
			},
			wtgoScenario{
				name:    fmt.Sprintf("reset-uni/%d", code),
				feature: "uni RESET_STREAM code",
				run:     func(t *testing.T, a, b PeerSession) { scenarioResetUni(t, a, b, code) },
			},
			wtgoScenario{
				name:    fmt.Sprintf("stop-sending-bidi/%d", code),
				feature: "bidi STOP_SENDING code",
				run:     func(t *testing.T, a, b PeerSession) { scenarioStopSending(t, a, b, code, true) },
			},
			wtgoScenario{
				name:    fmt.Sprintf("stop-sending-uni/%d", code),
				feature: "uni STOP_SENDING code",
				run:     func(t *testing.T, a, b PeerSession) { scenarioStopSending(t, a, b, code, false) },
			},
		)
	}
	return sc
}

func TestWebTransportGo(t *testing.T) {
	for _, topo := range Topologies(t) {
		t.Run(topo.Name, func(t *testing.T) {
			t.Run("draft", func(t *testing.T) {
				matrix.Track(t, libWTGo, topo.Server+" server / "+topo.Client+" client", "negotiated draft (draft-15+)")
				_, _, draft := topo.Pair(t)
				if draft != settings.Draft15 {
					t.Fatalf("negotiated %v, want %v", draft, settings.Draft15)
				}
			})
			for _, first := range []string{"server", "client"} {
				for _, sc := range wtgoScenarios() {
					t.Run(first+"-acts/"+sc.name, func(t *testing.T) {
						server, client, _ := topo.Pair(t)
						a, b := server, client
						if first == "client" {
							a, b = client, server
						}
						dir := fmt.Sprintf("%s → %s (%s server)", shortLib(a.Lib()), shortLib(b.Lib()), shortLib(topo.Server))
						matrix.Track(t, libWTGo, dir, sc.feature)
						sc.run(t, a, b)
					})
				}
			}
		})
	}
}

func randBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func scenarioBidi(t *testing.T, a, b PeerSession) {
	ctx := Ctx(t, 10*time.Second)
	msg := randBytes(t, 200<<10)
	echoErr := make(chan error, 1)
	go func() {
		str, err := b.AcceptStream(ctx)
		if err != nil {
			echoErr <- fmt.Errorf("%s AcceptStream: %w", b.Lib(), err)
			return
		}
		str.SetDeadline(time.Now().Add(8 * time.Second))
		if _, err := io.Copy(str, str); err != nil {
			echoErr <- fmt.Errorf("%s echo: %w", b.Lib(), err)
			return
		}
		echoErr <- str.Close()
	}()
	str, err := a.OpenStream(ctx)
	if err != nil {
		t.Fatalf("%s OpenStream: %v", a.Lib(), err)
	}
	str.SetDeadline(time.Now().Add(8 * time.Second))
	writeErr := make(chan error, 1)
	go func() {
		_, err := str.Write(msg)
		if err == nil {
			err = str.Close()
		}
		writeErr <- err
	}()
	got, err := io.ReadAll(str)
	if err != nil {
		t.Fatalf("%s read echo: %v", a.Lib(), err)
	}
	if err := <-writeErr; err != nil {
		t.Fatalf("%s write: %v", a.Lib(), err)
	}
	if err := <-echoErr; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo of %d bytes came back as %d different bytes", len(msg), len(got))
	}
}

func scenarioUni(t *testing.T, a, b PeerSession) {
	ctx := Ctx(t, 10*time.Second)
	msg := randBytes(t, 100<<10)
	go func() {
		str, err := a.OpenUniStream(ctx)
		if err != nil {
			t.Errorf("%s OpenUniStream: %v", a.Lib(), err)
			return
		}
		if _, err := str.Write(msg); err != nil {
			t.Errorf("%s uni write: %v", a.Lib(), err)
		}
		str.Close()
	}()
	rs, err := b.AcceptUniStream(ctx)
	if err != nil {
		t.Fatalf("%s AcceptUniStream: %v", b.Lib(), err)
	}
	rs.SetReadDeadline(time.Now().Add(8 * time.Second))
	got, err := io.ReadAll(rs)
	if err != nil {
		t.Fatalf("%s uni read: %v", b.Lib(), err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("uni stream of %d bytes arrived as %d different bytes", len(msg), len(got))
	}
}

func scenarioDatagram(t *testing.T, a, b PeerSession) {
	ctx := Ctx(t, 10*time.Second)
	// Datagrams are unreliable: resend until one arrives (on loopback the
	// first one does).
	payload := []byte("datagram from " + a.Lib() + " \x00\xff")
	stop := make(chan struct{})
	sent := make(chan error, 1)
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			if err := a.SendDatagram(payload); err != nil {
				sent <- err
				return
			}
			select {
			case <-stop:
				sent <- nil
				return
			case <-tick.C:
			}
		}
	}()
	got, err := b.ReceiveDatagram(ctx)
	close(stop)
	if serr := <-sent; serr != nil {
		t.Fatalf("%s SendDatagram: %v", a.Lib(), serr)
	}
	if err != nil {
		t.Fatalf("%s ReceiveDatagram: %v", b.Lib(), err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("datagram %q, want %q", got, payload)
	}
}

func waitDone(t *testing.T, s PeerSession, what string) {
	t.Helper()
	select {
	case <-s.Done():
	case <-time.After(5 * time.Second):
		t.Fatalf("%s session did not end after %s", s.Lib(), what)
	}
}

func scenarioClose(t *testing.T, a, b PeerSession, code uint32, msg string) {
	if err := a.CloseWithError(code, msg); err != nil {
		t.Fatalf("%s CloseWithError: %v", a.Lib(), err)
	}
	waitDone(t, b, "the peer closed it")
	got, err := b.Closed()
	if err != nil {
		t.Fatal(err)
	}
	want := CloseInfo{Code: code, Message: msg, Remote: true}
	if got != want {
		t.Fatalf("%s saw close %+v, want %+v", b.Lib(), trimInfo(got), trimInfo(want))
	}
	waitDone(t, a, "closing it")
	got, err = a.Closed()
	if err != nil {
		t.Fatal(err)
	}
	want.Remote = false
	if got != want {
		t.Fatalf("%s (the closer) saw close %+v, want %+v", a.Lib(), trimInfo(got), trimInfo(want))
	}
}

// scenarioCloseOpenStreams closes while a bidi and a uni stream of the
// session are open in both directions: the close code must still arrive,
// and the streams must end.
func scenarioCloseOpenStreams(t *testing.T, a, b PeerSession) {
	ctx := Ctx(t, 10*time.Second)
	as, err := a.OpenStream(ctx)
	if err != nil {
		t.Fatalf("%s OpenStream: %v", a.Lib(), err)
	}
	if _, err := as.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	bs, err := b.AcceptStream(ctx)
	if err != nil {
		t.Fatalf("%s AcceptStream: %v", b.Lib(), err)
	}
	bs.SetDeadline(time.Now().Add(5 * time.Second))
	readHello(t, b, bs)
	bu, err := b.OpenUniStream(ctx)
	if err != nil {
		t.Fatalf("%s OpenUniStream: %v", b.Lib(), err)
	}
	if _, err := bu.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	au, err := a.AcceptUniStream(ctx)
	if err != nil {
		t.Fatalf("%s AcceptUniStream: %v", a.Lib(), err)
	}
	readHello(t, a, au)
	scenarioClose(t, a, b, 0xc105ed, "closed with streams open")
	if err := readUntilErr(bs); err == io.EOF {
		t.Errorf("%s: the open bidi stream ended cleanly after the session closed, want an error", b.Lib())
	}
}

func trimInfo(c CloseInfo) CloseInfo {
	if len(c.Message) > 40 {
		c.Message = fmt.Sprintf("%s... (%d bytes)", c.Message[:20], len(c.Message))
	}
	return c
}

// readUntilErr reads r to its end and returns the error that ended it.
func readUntilErr(r io.Reader) error {
	_, err := io.Copy(io.Discard, r)
	if err == nil {
		return io.EOF
	}
	return err
}

func checkCode(t *testing.T, s PeerSession, err error, code uint32, what string) {
	t.Helper()
	got, remote, ok := s.StreamCode(err)
	if !ok {
		t.Fatalf("%s %s: error %v (%T) carries no application code, want %d", s.Lib(), what, err, err, code)
	}
	if got != code || !remote {
		t.Fatalf("%s %s: code %d (remote %v), want %d from the peer", s.Lib(), what, got, remote, code)
	}
}

// scenarioResetBidi: a opens a bidi stream and sends "hello"; once b has
// read it, the opener (a) or the accepter (b) resets its write side with
// code, and the other side's Read must return that code.
func scenarioResetBidi(t *testing.T, a, b PeerSession, code uint32, accepterResets bool) {
	ctx := Ctx(t, 10*time.Second)
	as, err := a.OpenStream(ctx)
	if err != nil {
		t.Fatalf("%s OpenStream: %v", a.Lib(), err)
	}
	if _, err := as.Write([]byte("hello")); err != nil {
		t.Fatalf("%s write: %v", a.Lib(), err)
	}
	bs, err := b.AcceptStream(ctx)
	if err != nil {
		t.Fatalf("%s AcceptStream: %v", b.Lib(), err)
	}
	as.SetDeadline(time.Now().Add(5 * time.Second))
	bs.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 5)
	if _, err := io.ReadFull(bs, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("%s read %q: %v", b.Lib(), buf, err)
	}
	if accepterResets {
		// The accepter answers first, so its side of the stream exists at
		// the opener, then resets.
		if _, err := bs.Write([]byte("hi")); err != nil {
			t.Fatalf("%s write: %v", b.Lib(), err)
		}
		if _, err := io.ReadFull(as, buf[:2]); err != nil {
			t.Fatalf("%s read: %v", a.Lib(), err)
		}
		bs.CancelWrite(code)
		checkCode(t, a, readUntilErr(as), code, "read after the accepter's reset")
		return
	}
	as.CancelWrite(code)
	checkCode(t, b, readUntilErr(bs), code, "read after the opener's reset")
}

func scenarioResetUni(t *testing.T, a, b PeerSession, code uint32) {
	ctx := Ctx(t, 10*time.Second)
	as, err := a.OpenUniStream(ctx)
	if err != nil {
		t.Fatalf("%s OpenUniStream: %v", a.Lib(), err)
	}
	if _, err := as.Write([]byte("hello")); err != nil {
		t.Fatalf("%s write: %v", a.Lib(), err)
	}
	bs, err := b.AcceptUniStream(ctx)
	if err != nil {
		t.Fatalf("%s AcceptUniStream: %v", b.Lib(), err)
	}
	bs.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 5)
	if _, err := io.ReadFull(bs, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("%s read %q: %v", b.Lib(), buf, err)
	}
	as.CancelWrite(code)
	checkCode(t, b, readUntilErr(bs), code, "read after reset")
}

// scenarioStopSending: a opens a stream and sends; b reads the first
// bytes and sends STOP_SENDING with code; a's writes must fail with it.
func scenarioStopSending(t *testing.T, a, b PeerSession, code uint32, bidi bool) {
	ctx := Ctx(t, 10*time.Second)
	var w io.Writer
	var r io.Reader
	if bidi {
		as, err := a.OpenStream(ctx)
		if err != nil {
			t.Fatalf("%s OpenStream: %v", a.Lib(), err)
		}
		as.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := as.Write([]byte("hello")); err != nil {
			t.Fatalf("%s write: %v", a.Lib(), err)
		}
		bs, err := b.AcceptStream(ctx)
		if err != nil {
			t.Fatalf("%s AcceptStream: %v", b.Lib(), err)
		}
		bs.SetDeadline(time.Now().Add(5 * time.Second))
		w, r = as, bs
		defer bs.CancelRead(code)
		readHello(t, b, r)
		bs.CancelRead(code)
	} else {
		as, err := a.OpenUniStream(ctx)
		if err != nil {
			t.Fatalf("%s OpenUniStream: %v", a.Lib(), err)
		}
		as.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if _, err := as.Write([]byte("hello")); err != nil {
			t.Fatalf("%s write: %v", a.Lib(), err)
		}
		bs, err := b.AcceptUniStream(ctx)
		if err != nil {
			t.Fatalf("%s AcceptUniStream: %v", b.Lib(), err)
		}
		bs.SetReadDeadline(time.Now().Add(5 * time.Second))
		w, r = as, bs
		readHello(t, b, r)
		bs.CancelRead(code)
	}
	chunk := make([]byte, 1024)
	var err error
	for err == nil {
		_, err = w.Write(chunk)
		if err == nil {
			time.Sleep(time.Millisecond)
		}
	}
	checkCode(t, a, err, code, "write after STOP_SENDING")
}

func readHello(t *testing.T, s PeerSession, r io.Reader) {
	t.Helper()
	buf := make([]byte, 5)
	if _, err := io.ReadFull(r, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("%s read %q: %v", s.Lib(), buf, err)
	}
}

// TestWebTransportGoDialCloseRace uses webtransport-go's stock
// Transport.Dial, which closes the QUIC connection as soon as the session
// is closed: webtransport-go v0.13.0 queues WT_CLOSE_SESSION with
// TryWriteAll and its session context ends at once, and the AfterFunc in
// Transport.Dial then calls CloseWithError on the connection, which drops
// the not yet sent STREAM frame. quicwt must still end the session
// promptly, reporting either the close code (if the capsule made it) or
// the peer's CONNECTION_CLOSE as the cause.
func TestWebTransportGoDialCloseRace(t *testing.T) {
	matrix.Track(t, libWTGo, "wtgo → quicwt (quicwt server)", "session end when wtgo Transport.Dial closes the connection at once")
	cert := NewCert(t, 24*time.Hour)
	sessions := make(chan *quicwt.Session, 1)
	qs := StartQuicwtServer(t, "127.0.0.1", cert, SessionHandler(t, func(s *quicwt.Session, _ *http.Request) { sessions <- s }))
	c := NewWTGoClient(t, cert)
	ctx := Ctx(t, 10*time.Second)
	_, cs, err := c.Transport.Dial(ctx, qs.URL("/race"), nil)
	if err != nil {
		t.Fatal(err)
	}
	ss := <-sessions
	if err := cs.CloseWithError(77, "bye"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ss.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("quicwt session did not end after the peer closed session and connection")
	}
	var se *quicwt.SessionError
	if !errors.As(ss.Err(), &se) {
		t.Fatalf("Err() = %v, want *quicwt.SessionError", ss.Err())
	}
	var ce *quicwt.ConnectionError
	switch {
	case se.Cause == nil && se.Code == 77 && se.Message == "bye" && se.Remote:
		t.Logf("the close capsule arrived before CONNECTION_CLOSE: %v", se)
	case errors.As(se.Cause, &ce) && ce.Remote && ce.Code == frames.H3NoError:
		t.Logf("webtransport-go closed the connection before sending WT_CLOSE_SESSION: %v", se)
	default:
		t.Fatalf("session ended with %#v, want the close code or the peer's H3_NO_ERROR connection close", se)
	}
}
