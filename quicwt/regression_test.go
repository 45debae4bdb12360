package quicwt

// Regression tests for faults found by review and by independent peers
// (issues 14 and 18). Each failed before its fix.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicwt/quicwt/frames"
	"github.com/quicwt/quicwt/settings"
)

// RFC 9114, Section 10.3 and RFC 9110, Section 5: field names are tokens,
// values carry no control characters, :authority is a host, :protocol a
// token, and Content-Length values agree.
func TestHeaderFieldValidation(t *testing.T) {
	ts := rawServer(t)
	good := connectFields(ts.addr, "/wt")
	get := func(extra ...string) []string {
		return append([]string{":method", "GET", ":scheme", "https", ":authority", ts.addr, ":path", "/"}, extra...)
	}
	with := func(extra ...string) []string { return append(append([]string{}, good...), extra...) }
	tests := []struct {
		name       string
		fields     []string
		wantStatus int
		wantReset  ErrorCode
	}{
		{"name with a quote", with(`x"y`, "1"), 0, frames.H3MessageError},
		{"name with parentheses", with("x(y)", "1"), 0, frames.H3MessageError},
		{"name with a comma", with("x,y", "1"), 0, frames.H3MessageError},
		{"name with a slash", with("x/y", "1"), 0, frames.H3MessageError},
		{"name with an at sign", with("x@y", "1"), 0, frames.H3MessageError},
		{"value with 0x01", with("x-v", "a\x01b"), 0, frames.H3MessageError},
		{"value with ESC", with("x-v", "a\x1bb"), 0, frames.H3MessageError},
		{"value with DEL", with("x-v", "a\x7fb"), 0, frames.H3MessageError},
		{"value with a tab", with("x-v", "a\tb"), 200, 0},
		{"authority with a space", []string{":method", "CONNECT", ":scheme", "https", ":authority", "exa mple:443", ":path", "/wt", ":protocol", "webtransport-h3"}, 0, frames.H3MessageError},
		{"authority with a slash", []string{":method", "CONNECT", ":scheme", "https", ":authority", "a/b:443", ":path", "/wt", ":protocol", "webtransport-h3"}, 0, frames.H3MessageError},
		{"protocol not a token", []string{":method", "CONNECT", ":scheme", "https", ":authority", ts.addr, ":path", "/wt", ":protocol", "web transport"}, 0, frames.H3MessageError},
		{"method not a token", []string{":method", "GE T", ":scheme", "https", ":authority", ts.addr, ":path", "/"}, 0, frames.H3MessageError},
		{"conflicting content-length lines", get("content-length", "1", "content-length", "2"), 0, frames.H3MessageError},
		{"conflicting content-length list", get("content-length", "1, 2"), 0, frames.H3MessageError},
		{"content-length with a sign", get("content-length", "+1"), 0, frames.H3MessageError},
		{"repeated equal content-length", get("content-length", "0, 0", "content-length", "0"), 400, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := dialRaw(t, ts)
			p.control(clientSettingsFrame())
			s := p.request(nil, tt.fields...)
			s.Close()
			status, code := readResponse(t, s)
			if status != tt.wantStatus || code != tt.wantReset {
				t.Fatalf("got status %d reset %s, want status %d reset %s", status, code, tt.wantStatus, tt.wantReset)
			}
			p.expectAlive()
		})
	}
}

// One size rule for HEADERS: an oversized header section gets 431 whether
// or not a reserved frame precedes it, and the connection stays.
func TestOversizedHeadersAfterReservedFrame(t *testing.T) {
	ts := rawServer(t)
	p := dialRaw(t, ts)
	p.control(clientSettingsFrame())
	s, err := p.qc.OpenStreamSync(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	big := encodeFields(append(connectFields(ts.addr, "/wt"), "x-big", strings.Repeat("a", 40000))...)
	b := frames.AppendFrame(nil, frames.Type(frames.ReservedValue(3)), []byte("grease"))
	b = frames.AppendHeaders(b, big)
	s.Write(b)
	s.Close()
	if status, code := readResponse(t, s); status != 431 || code != 0 {
		t.Fatalf("status %d reset %s, want 431", status, code)
	}
	p.expectAlive()
}

// A response header section above the client's MaxFieldSectionSize fails
// that dial only; the connection serves the next session.
func TestClientResponseFieldSectionLimit(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Big", strings.Repeat("a", 8000))
		w.WriteHeader(http.StatusForbidden)
	})
	mux.Handle("/wt", wtHandler(t, echoSession))
	ts := startServer(t, mux)
	d := ts.dialer()
	d.Limits.MaxFieldSectionSize = 4096
	cc, err := d.DialConn(testCtx(t), ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if _, _, err := cc.OpenSession(testCtx(t), ts.url("/big"), nil); !errors.Is(err, ErrMalformedResponse) {
		t.Fatalf("oversized response: %v, want ErrMalformedResponse", err)
	}
	_, sess, err := cc.OpenSession(testCtx(t), ts.url("/wt"), nil)
	if err != nil {
		t.Fatalf("next session on the connection: %v", err)
	}
	sess.Close()
}

// RFC 9204, Section 6: an integer overflow on the peer's encoder or decoder
// stream is QPACK_ENCODER_STREAM_ERROR or QPACK_DECODER_STREAM_ERROR, not
// QPACK_DECOMPRESSION_FAILED.
func TestQPACKStreamIntegerOverflow(t *testing.T) {
	overflow := append([]byte{}, []byte(strings.Repeat("\xff", 10))...)
	tests := []struct {
		name string
		b    []byte
		want ErrorCode
	}{
		// Set Dynamic Table Capacity, a 5-bit prefix filled, then more
		// continuation bytes than 64 bits hold.
		{"encoder", append([]byte{byte(frames.StreamTypeQPACKEncoder), 0x3f}, overflow...), frames.QPACKEncoderStreamError},
		// Insert Count Increment, a 6-bit prefix filled.
		{"decoder", append([]byte{byte(frames.StreamTypeQPACKDecoder), 0x3f}, overflow...), frames.QPACKDecoderStreamError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := rawServer(t)
			p := dialRaw(t, ts)
			p.control(clientSettingsFrame())
			p.uni(tt.b)
			p.expectConnectionError(tt.want)
		})
	}
}

// ClientConn.PeerSettings returns a copy: changing it changes nothing of
// the connection's.
func TestPeerSettingsIsACopy(t *testing.T) {
	ts := rawServer(t)
	cc, err := ts.dialer().DialConn(testCtx(t), ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	s1, err := cc.PeerSettings(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	want := s1.String()
	s1.Set(settings.WTEnabled, 0)
	s1.Set(0x1234, 5)
	s1.Unknown = nil
	s2, _ := cc.PeerSettings(testCtx(t))
	if s2.String() != want {
		t.Fatalf("connection's SETTINGS changed through the copy: %s, was %s", s2, want)
	}
}

// The client's :authority for a URL with a non-ASCII host is its Punycode
// form (httpguts.PunycodeHostPort).
func TestPunycodeAuthority(t *testing.T) {
	hosts := make(chan string, 1)
	ts := startServer(t, wtHandler(t, func(s *Session) {
		hosts <- s.Request().Host
		echoSession(s)
	}))
	cc, err := ts.dialer().DialConn(testCtx(t), ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	port := ts.addr[strings.LastIndexByte(ts.addr, ':')+1:]
	_, sess, err := cc.OpenSession(testCtx(t), "https://bücher.example:"+port+"/wt", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if got, want := <-hosts, "xn--bcher-kva.example:"+port; got != want {
		t.Fatalf("server saw :authority %q, want %q", got, want)
	}
}

// Issue 18.1: when the peer closes the QUIC connection, every session's
// error is Remote with the peer's code and reason, whichever goroutine of
// the connection sees the close first.
func TestPeerConnectionCloseIsRemote(t *testing.T) {
	const perConn, rounds = 32, 24
	ended := make(chan error, perConn*rounds)
	var opened sync.WaitGroup
	ts := startServer(t, wtHandler(t, func(s *Session) {
		opened.Done()
		<-s.Context().Done()
		ended <- s.Err()
	}))
	for r := 0; r < rounds; r++ {
		tc := ConfigureTLSConfig(&tls.Config{InsecureSkipVerify: true})
		qc, err := quic.DialAddr(testCtx(t), ts.addr, tc, ConfigureQUICConfig(nil))
		if err != nil {
			t.Fatal(err)
		}
		cc, err := (&Dialer{}).NewClientConn(qc)
		if err != nil {
			t.Fatal(err)
		}
		opened.Add(perConn)
		for i := 0; i < perConn; i++ {
			if _, _, err := cc.OpenSession(testCtx(t), ts.url("/wt"), nil); err != nil {
				t.Fatal(err)
			}
		}
		opened.Wait()
		// Close the QUIC connection itself, as quinn-based peers do,
		// without WT_CLOSE_SESSION.
		qc.CloseWithError(quic.ApplicationErrorCode(frames.H3NoError), fmt.Sprintf("bye %d", r))
	}
	for i := 0; i < perConn*rounds; i++ {
		var err error
		select {
		case err = <-ended:
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d sessions ended", i, perConn*rounds)
		}
		se, ok := errors.AsType[*SessionError](err)
		ce, cok := errors.AsType[*ConnectionError](err)
		if !ok || !se.Remote || !cok || !ce.Remote || ce.Code != frames.H3NoError || !strings.HasPrefix(ce.Reason, "bye ") {
			t.Fatalf("session %d ended with %v, want a remote end with the peer's code and reason", i, err)
		}
		if !strings.Contains(err.Error(), "by peer") {
			t.Fatalf("error %q does not say by peer", err)
		}
	}
}

// rawH3Server is a server written with raw bytes: it sends SETTINGS and
// answers each request stream with answer.
func rawH3Server(t *testing.T, answer func(n int, s *quic.Stream)) string {
	return rawH3ServerWith(t, ConfigureQUICConfig(nil), answer)
}

func rawH3ServerWith(t *testing.T, qconf *quic.Config, answer func(n int, s *quic.Stream)) string {
	t.Helper()
	cert, _ := testCert(t)
	ln, err := quic.ListenAddr("127.0.0.1:0", ConfigureTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}}), qconf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		qc, err := ln.Accept(context.Background())
		if err != nil {
			return
		}
		ctrl, err := qc.OpenUniStream()
		if err != nil {
			return
		}
		st := defaultSettings(true)
		ctrl.Write(st.AppendFrame(frames.AppendUniStreamType(nil, frames.StreamTypeControl)))
		go func() { // the client's control stream
			for {
				s, err := qc.AcceptUniStream(context.Background())
				if err != nil {
					return
				}
				go io.Copy(io.Discard, s)
			}
		}()
		for n := 0; ; n++ {
			s, err := qc.AcceptStream(context.Background())
			if err != nil {
				return
			}
			// Read the request's header section, then answer.
			fr := newFrameReader(s, 256)
			if _, err := readHeaderSection(fr, noType, true, &Limits{MaxFieldSectionSize: 1 << 16, MaxControlFrameSize: 1 << 16}); err != nil {
				t.Errorf("raw server: request %d: %v", n, err)
				return
			}
			answer(n, s)
		}
	}()
	return ln.Addr().String()
}

// Issue 18.2: a server that ends the response stream before any frame
// fails that session's dial with ErrIncompleteResponse, and the connection
// and its other sessions go on.
func TestEmptyConnectResponse(t *testing.T) {
	for _, stop := range []bool{false, true} {
		t.Run(fmt.Sprintf("stop_sending=%v", stop), func(t *testing.T) {
			addr := rawH3Server(t, func(n int, s *quic.Stream) {
				if n == 1 {
					if stop {
						s.CancelRead(quic.StreamErrorCode(frames.H3NoError))
					}
					s.Close() // FIN after 0 bytes
					return
				}
				s.Write(frames.AppendHeaders(nil, encodeFields(":status", "200")))
			})
			d := &Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
			cc, err := d.DialConn(testCtx(t), addr)
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			_, first, err := cc.OpenSession(testCtx(t), "https://"+addr+"/a", nil)
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = cc.OpenSession(testCtx(t), "https://"+addr+"/empty", nil)
			if !errors.Is(err, ErrIncompleteResponse) {
				t.Fatalf("empty response: %v, want ErrIncompleteResponse", err)
			}
			if cc.Err() != nil || first.Err() != nil {
				t.Fatalf("connection %v, first session %v: want both alive", cc.Err(), first.Err())
			}
			if _, _, err := cc.OpenSession(testCtx(t), "https://"+addr+"/c", nil); err != nil {
				t.Fatalf("next session: %v", err)
			}
		})
	}
}

// The mirror at a server: a request stream that ends cleanly before its
// header section (at once, or between frames) is an incomplete request of
// that stream (H3_REQUEST_INCOMPLETE), not a truncated frame.
func TestRequestStreamEndsBeforeHeaders(t *testing.T) {
	for _, tt := range []struct {
		name string
		b    []byte
	}{
		{"no bytes", nil},
		{"after a reserved frame", frames.AppendFrame(nil, frames.Type(frames.ReservedValue(5)), []byte("x"))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ts := rawServer(t)
			p := dialRaw(t, ts)
			p.control(clientSettingsFrame())
			s, err := p.qc.OpenStreamSync(testCtx(t))
			if err != nil {
				t.Fatal(err)
			}
			s.Write(tt.b)
			s.Close()
			if status, code := readResponse(t, s); status != 0 || code != frames.H3RequestIncomplete {
				t.Fatalf("status %d reset %s, want reset H3_REQUEST_INCOMPLETE", status, code)
			}
			p.expectAlive()
		})
	}
}

// Issue 18.7: a CONNECT the server refuses at its session limit is
// ErrRequestRejected at the client; the client's own limit is
// ErrTooManySessions.
func TestSessionLimitErrors(t *testing.T) {
	ts := startServer(t, wtHandler(t, echoSession), func(s *Server) { s.Limits.MaxSessions = 1 })
	cc, err := ts.dialer().DialConn(testCtx(t), ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if _, _, err := cc.OpenSession(testCtx(t), ts.url("/wt"), nil); err != nil {
		t.Fatal(err)
	}
	_, _, err = cc.OpenSession(testCtx(t), ts.url("/wt"), nil)
	if !errors.Is(err, ErrRequestRejected) {
		t.Fatalf("second session at a server limit of 1: %v, want ErrRequestRejected", err)
	}
	d := ts.dialer()
	d.Limits.MaxSessions = 1
	cc2, err := d.DialConn(testCtx(t), ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cc2.Close()
	if _, _, err := cc2.OpenSession(testCtx(t), ts.url("/wt"), nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := cc2.OpenSession(testCtx(t), ts.url("/wt"), nil); !errors.Is(err, ErrTooManySessions) {
		t.Fatalf("second session at a client limit of 1: %v, want ErrTooManySessions", err)
	}
}

// AdditionalSettings refuses settings the engine owns.
func TestAdditionalSettingsRefused(t *testing.T) {
	for _, id := range []settings.ID{settings.QPACKMaxTableCapacity, settings.QPACKBlockedStreams, settings.MaxFieldSectionSize, 0x02} {
		srv := &Server{TLSConfig: &tls.Config{}, AdditionalSettings: []settings.Setting{{ID: id, Value: 1}}, Addr: "127.0.0.1:0"}
		if err := srv.ListenAndServe(); err == nil || !strings.Contains(err.Error(), "additional setting") {
			t.Errorf("setting %v: ListenAndServe = %v, want a refusal", id, err)
		}
	}
}

// Chromium opens its QPACK streams only implicitly (by opening a later
// unidirectional stream) and never sends on them; it closes the connection
// when one is stopped. A unidirectional stream without a byte is left
// alone, past HeaderTimeout; one that started its type and stalled is still
// stopped.
func TestImplicitlyOpenedUniStreams(t *testing.T) {
	ts := startServer(t, wtHandler(t, echoSession), func(s *Server) { s.Limits.HeaderTimeout = 200 * time.Millisecond })
	p := dialRaw(t, ts)
	p.control(clientSettingsFrame())
	connect := p.session(ts, "/wt")
	var idle []*quic.SendStream
	for i := 0; i < 2; i++ { // opened, never written: implicit at the server
		s, err := p.qc.OpenUniStream()
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, s)
	}
	stalled := p.uni([]byte{0x40}) // half a two-byte stream type
	p.uni(append(frames.AppendWebTransportUniHeader(nil, uint64(connect.StreamID())), "hello"...))
	deadline := time.Now().Add(time.Second)
	if code, ok := sendStopCode(stalled, deadline); !ok || code != frames.H3StreamCreationError {
		t.Fatalf("stalled stream: stopped %v with %s, want H3_STREAM_CREATION_ERROR", ok, code)
	}
	for i, s := range idle {
		if code, ok := sendStopCode(s, deadline); ok {
			t.Fatalf("implicitly opened stream %d stopped with %s", i, code)
		}
	}
	p.expectAlive()
}

// Issue 18.5 and 18.6: a client session shows what TLS negotiated (in
// Session.ConnectionState and Response().TLS), and a Dialer dials from the
// caller's quic.Transport with its own options (the pin) applied.
func TestDialerTransportAndTLSState(t *testing.T) {
	ts := startServer(t, wtHandler(t, echoSession))
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tr := &quic.Transport{Conn: udp}
	defer tr.Close()
	d := ts.dialer()
	d.Transport = tr
	rsp, sess, err := d.Dial(testCtx(t), ts.url("/wt"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if sess.LocalAddr().String() != udp.LocalAddr().String() {
		t.Fatalf("session on %v, want the transport's socket %v", sess.LocalAddr(), udp.LocalAddr())
	}
	cs := sess.ConnectionState()
	if cs.NegotiatedProtocol != NextProtoH3 || len(cs.PeerCertificates) == 0 || CertificateHash(cs.PeerCertificates[0]) != ts.hash {
		t.Fatalf("TLS state: ALPN %q, %d certificates", cs.NegotiatedProtocol, len(cs.PeerCertificates))
	}
	if rsp.TLS == nil || rsp.TLS.NegotiatedProtocol != NextProtoH3 {
		t.Fatalf("Response().TLS = %v", rsp.TLS)
	}
	// The pin applies on the caller's transport too.
	bad := ts.dialer()
	bad.CertificateHashes = [][32]byte{{1}}
	bad.Transport = tr
	if _, _, err := bad.Dial(testCtx(t), ts.url("/wt"), nil); err == nil {
		t.Fatal("a wrong pin was accepted on the caller's transport")
	}
}
