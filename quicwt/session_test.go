package quicwt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicwt/quicwt/frames"
	"github.com/quicwt/quicwt/settings"
)

// TestMain fails the package if goroutines of quicwt or quic-go outlive
// the tests (goroutines of the test framework itself are not counted).
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(10 * time.Second)
		leaked := ourGoroutines()
		for len(leaked) > 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
			leaked = ourGoroutines()
		}
		if len(leaked) > 0 {
			fmt.Fprintf(os.Stderr, "goroutine leak: %d goroutines\n%s\n", len(leaked), strings.Join(leaked, "\n\n"))
			code = 1
		}
	}
	os.Exit(code)
}

// ourGoroutines returns the stacks of goroutines running quicwt or quic-go
// code, other than the one calling it.
func ourGoroutines() []string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "ourGoroutines") {
			continue
		}
		if strings.Contains(g, "github.com/quic-go/") || strings.Contains(g, "github.com/quicwt/") {
			out = append(out, g)
		}
	}
	return out
}

func dial(t *testing.T, ts *testServer, path string) *Session {
	t.Helper()
	_, sess, err := ts.dialer().Dial(testCtx(t), ts.url(path), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	return sess
}

func TestSeveralSessionsOnOneConnection(t *testing.T) {
	ts := startServer(t, wtHandler(t, echoSession))
	ctx := testCtx(t)
	cc, err := ts.dialer().DialConn(ctx, ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	var sessions []*Session
	for i := 0; i < 5; i++ {
		_, s, err := cc.OpenSession(ctx, ts.url(fmt.Sprintf("/s%d", i)), nil)
		if err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, s)
	}
	var wg sync.WaitGroup
	for i, s := range sessions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			str, err := s.OpenStreamSync(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			msg := []byte(fmt.Sprintf("session %d", i))
			str.Write(msg)
			str.Close()
			got, err := io.ReadAll(str)
			if err != nil || !bytes.Equal(got, msg) {
				t.Errorf("session %d: %v %q", i, err, got)
			}
			s.SendDatagram(msg)
			d, err := s.ReceiveDatagram(ctx)
			if err != nil || !bytes.Equal(d, msg) {
				t.Errorf("session %d datagram: %v %q", i, err, d)
			}
		}()
	}
	wg.Wait()
	// Closing one session leaves the others working.
	sessions[0].CloseWithError(1, "one")
	str, err := sessions[1].OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	str.Write([]byte("still"))
	str.Close()
	if got, _ := io.ReadAll(str); string(got) != "still" {
		t.Fatalf("got %q", got)
	}
	for _, s := range sessions[1:] {
		s.Close()
	}
}

func TestPlainRequestAndSessionOnOneConnection(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/page", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "%s %s %q", r.Method, r.URL.Path, body)
	})
	mux.Handle("/wt", wtHandler(t, echoSession))
	ts := startServer(t, mux)
	p := dialRaw(t, ts)
	p.control(clientSettingsFrame())
	wt := p.request(nil, connectFields(ts.addr, "/wt")...)
	if st, _ := readResponse(t, wt); st != 200 {
		t.Fatalf("CONNECT status %d", st)
	}
	get := p.request(frames.AppendFrame(nil, frames.TypeData, []byte("req body")),
		":method", "POST", ":scheme", "https", ":authority", ts.addr, ":path", "/page")
	get.Close()
	get.SetReadDeadline(time.Now().Add(5 * time.Second))
	fr := newFrameReader(get, 256)
	var body []byte
	status := 0
	for {
		h, err := frames.ReadHeader(fr, 1<<16)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		pl, err := fr.payload(h.Length)
		if err != nil {
			t.Fatal(err)
		}
		switch h.Type {
		case frames.TypeHeaders:
			fields, _ := decodeFields(pl, 1<<16)
			status, _, _ = parseResponseFields(fields)
		case frames.TypeData:
			body = append(body, pl...)
		}
	}
	if status != 200 || string(body) != `POST /page "req body"` {
		t.Fatalf("status %d body %q", status, body)
	}
}

func TestEarlyStreamsAndDatagramsAreBuffered(t *testing.T) {
	got := make(chan string, 3)
	ts := startServer(t, wtHandler(t, func(s *Session) {
		ctx := s.Context()
		u, err := s.AcceptUniStream(ctx)
		if err == nil {
			b, _ := io.ReadAll(u)
			got <- "uni:" + string(b)
		}
		b, err := s.AcceptStream(ctx)
		if err == nil {
			d, _ := io.ReadAll(b)
			got <- "bidi:" + string(d)
		}
		d, err := s.ReceiveDatagram(ctx)
		if err == nil {
			got <- "dgram:" + string(d)
		}
	}))
	p := dialRaw(t, ts)
	p.control(clientSettingsFrame())
	ctx := testCtx(t)
	connect, err := p.qc.OpenStreamSync(ctx) // stream 0, HEADERS sent later
	if err != nil {
		t.Fatal(err)
	}
	sid := uint64(connect.StreamID())
	u := p.uni(append(frames.AppendWebTransportUniHeader(nil, sid), "early uni"...))
	u.Close()
	b, _ := p.qc.OpenStreamSync(ctx)
	b.Write(append(frames.AppendWebTransportBidiHeader(nil, sid), "early bidi"...))
	b.Close()
	time.Sleep(100 * time.Millisecond)
	p.qc.SendDatagram(append(frames.AppendDatagramHeader(nil, sid), "early dgram"...))
	time.Sleep(100 * time.Millisecond)
	connect.Write(frames.AppendHeaders(nil, encodeFields(connectFields(ts.addr, "/wt")...)))
	if st, _ := readResponse(t, connect); st != 200 {
		t.Fatalf("status %d", st)
	}
	want := []string{"uni:early uni", "bidi:early bidi", "dgram:early dgram"}
	for _, w := range want {
		select {
		case g := <-got:
			if g != w {
				t.Fatalf("got %q want %q", g, w)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("missing %q", w)
		}
	}
}

func TestBufferLimitsRejectStreams(t *testing.T) {
	ts := startServer(t, wtHandler(t, echoSession), func(s *Server) {
		s.Limits.MaxBufferedStreamsPerSession = 2
		s.Limits.BufferTimeout = 300 * time.Millisecond
	})
	p := dialRaw(t, ts)
	p.control(clientSettingsFrame())
	const sid = 400 // a session that never comes
	var streams []*quic.SendStream
	for i := 0; i < 3; i++ {
		streams = append(streams, p.uni(frames.AppendWebTransportUniHeader(nil, sid)))
		time.Sleep(30 * time.Millisecond)
	}
	codeOf := func(s *quic.SendStream) ErrorCode {
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			_, err := s.Write([]byte("x"))
			var se *quic.StreamError
			if errors.As(err, &se) {
				return ErrorCode(se.ErrorCode)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return 0
	}
	// The third exceeds the per-session limit at once.
	if c := codeOf(streams[2]); c != frames.WTBufferedStreamRejected {
		t.Fatalf("third stream: %s", c)
	}
	// The first two are rejected when the session does not come in time.
	for i := 0; i < 2; i++ {
		if c := codeOf(streams[i]); c != frames.WTBufferedStreamRejected {
			t.Fatalf("stream %d: %s", i, c)
		}
	}
	p.expectAlive()
}

func TestSessionEndResetsStreams(t *testing.T) {
	serverStream := make(chan *Stream, 1)
	closeNow := make(chan struct{})
	ts := startServer(t, wtHandler(t, func(s *Session) {
		str, err := s.AcceptStream(s.Context())
		if err != nil {
			return
		}
		serverStream <- str
		<-closeNow
		s.CloseWithError(3, "closing")
	}))
	// A connection that outlives the session, so the server's resets are
	// observable after the close handshake.
	ctx := testCtx(t)
	cc, err := ts.dialer().DialConn(ctx, ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	_, sess, err := cc.OpenSession(ctx, ts.url("/"), nil)
	if err != nil {
		t.Fatal(err)
	}
	str, err := sess.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	str.Write([]byte("hi"))
	ss := <-serverStream
	close(closeNow)
	// The client stream's read ends with the session.
	_, err = io.ReadAll(str)
	if !errors.Is(err, ErrSessionGone) {
		t.Fatalf("client read: %v", err)
	}
	<-sess.Context().Done()
	var se *SessionError
	if err := sess.Err(); !errors.As(err, &se) || se.Code != 3 || se.Message != "closing" || !se.Remote {
		t.Fatalf("session err %v", err)
	}
	// The server's own stream was reset locally.
	// (The resets wait for the peer's answer to WT_CLOSE_SESSION, so that
	// they do not overtake the capsule on the wire.)
	<-ss.Session().Context().Done()
	var werr error
	for i := 0; i < 200 && werr == nil; i++ {
		_, werr = ss.Write([]byte("x"))
		time.Sleep(10 * time.Millisecond)
	}
	if !errors.Is(werr, ErrSessionGone) {
		t.Fatalf("server write after close: %v", werr)
	}
	select {
	case <-sess.Context().Done():
	default:
		t.Fatal("session context not done")
	}
	if _, err := sess.OpenStream(); !errors.Is(err, ErrSessionGone) {
		t.Fatalf("open after close: %v", err)
	}
	if err := sess.SendDatagram([]byte("x")); !errors.Is(err, ErrSessionGone) {
		t.Fatalf("datagram after close: %v", err)
	}
}

func TestConnectionEndEndsSessions(t *testing.T) {
	ts := startServer(t, wtHandler(t, func(s *Session) { <-s.Context().Done() }))
	sess := dial(t, ts, "/")
	ts.srv.Close()
	select {
	case <-sess.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("session did not end")
	}
	err := sess.Err()
	var ce *ConnectionError
	if !errors.Is(err, ErrConnectionClosed) || !errors.As(err, &ce) || !ce.Remote || ce.Code != frames.H3NoError {
		t.Fatalf("session err %v", err)
	}
	if _, err := sess.AcceptStream(testCtx(t)); !errors.Is(err, ErrSessionGone) {
		t.Fatalf("accept: %v", err)
	}
}

func TestStreamCancelCodes(t *testing.T) {
	type result struct {
		readErr, writeErr error
	}
	res := make(chan result, 1)
	ts := startServer(t, wtHandler(t, func(s *Session) {
		str, err := s.AcceptStream(s.Context())
		if err != nil {
			return
		}
		_, rerr := io.ReadAll(str)
		str.CancelRead(0xffffffff) // also stops nothing: the read side is done
		var werr error
		for i := 0; i < 100 && werr == nil; i++ {
			_, werr = str.Write([]byte("data"))
			time.Sleep(10 * time.Millisecond)
		}
		res <- result{rerr, werr}
		<-s.Context().Done()
	}))
	sess := dial(t, ts, "/")
	str, err := sess.OpenStreamSync(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	str.Write([]byte("partial"))
	time.Sleep(50 * time.Millisecond)
	str.CancelWrite(1234)
	str.CancelRead(29)
	r := <-res
	var se *StreamError
	if !errors.As(r.readErr, &se) || !se.Application || se.Code != 1234 || !se.Remote {
		t.Fatalf("server read err %v", r.readErr)
	}
	if !errors.As(r.writeErr, &se) || !se.Application || se.Code != 29 || !se.Remote || se.H3Code != frames.WTErrorToH3(29) {
		t.Fatalf("server write err %v", r.writeErr)
	}
}

func TestResetBeforeFlushStillDeliversHeader(t *testing.T) {
	accepted := make(chan error, 1)
	ts := startServer(t, wtHandler(t, func(s *Session) {
		str, err := s.AcceptUniStream(s.Context())
		if err != nil {
			accepted <- err
			return
		}
		_, err = io.ReadAll(str)
		accepted <- err
		<-s.Context().Done()
	}))
	sess := dial(t, ts, "/")
	us, err := sess.OpenUniStream()
	if err != nil {
		t.Fatal(err)
	}
	us.CancelWrite(77) // RESET_STREAM_AT keeps the header reliable
	select {
	case err := <-accepted:
		var se *StreamError
		if !errors.As(err, &se) || se.Code != 77 {
			t.Fatalf("got %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("reset stream never reached the session")
	}
}

func TestDrainAndGoaway(t *testing.T) {
	drained := make(chan struct{})
	ts := startServer(t, wtHandler(t, func(s *Session) {
		s.Drain()
		<-s.Context().Done()
		close(drained)
	}))
	sess := dial(t, ts, "/")
	select {
	case <-sess.Draining():
	case <-time.After(5 * time.Second):
		t.Fatal("WT_DRAIN_SESSION not surfaced")
	}
	// Server shutdown: GOAWAY (draining), then sessions closed with code 0.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	sess2 := dial(t, ts, "/")
	done := make(chan error, 1)
	go func() { done <- ts.srv.Shutdown(ctx) }()
	select {
	case <-sess2.Draining():
	case <-time.After(5 * time.Second):
		t.Fatal("GOAWAY not surfaced")
	}
	<-done
	select {
	case <-sess2.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("session not closed by shutdown")
	}
	var se *SessionError
	if err := sess2.Err(); !errors.As(err, &se) || se.Code != 0 || se.Message != "server shutting down" {
		t.Fatalf("session err %v", err)
	}
	<-drained
}

func TestDatagramSize(t *testing.T) {
	ts := startServer(t, wtHandler(t, echoSession))
	sess := dial(t, ts, "/")
	max := sess.MaxDatagramSize()
	if max < 1000 || max > 1500 {
		t.Fatalf("MaxDatagramSize %d", max)
	}
	err := sess.SendDatagram(make([]byte, max+1))
	var tl *DatagramTooLargeError
	if !errors.As(err, &tl) || tl.Max != max {
		t.Fatalf("oversized datagram: %v (max %d)", err, max)
	}
	if err := sess.SendDatagram(bytes.Repeat([]byte{7}, max)); err != nil {
		t.Fatal(err)
	}
	d, err := sess.ReceiveDatagram(testCtx(t))
	if err != nil || len(d) != max {
		t.Fatalf("echo of max-size datagram: %v %d", err, len(d))
	}
}

func TestDraftNegotiation(t *testing.T) {
	chrome := settings.Settings{}
	for _, s := range []settings.Setting{{ID: 0x06, Value: 16384}, {ID: 0x33, Value: 1}, {ID: 0x01, Value: 65536}, {ID: 0x07, Value: 100}, {ID: 0xffd277, Value: 1}, {ID: 0x2b603742, Value: 1}} {
		chrome.Set(s.ID, s.Value)
	}
	reqHeaders := make(chan http.Header, 1)
	ts := startServer(t, wtHandler(t, func(s *Session) {
		reqHeaders <- s.Request().Header
		echoSession(s)
	}))
	d := ts.dialer()
	d.settings = &chrome
	rsp, sess, err := d.Dial(testCtx(t), ts.url("/"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if sess.Draft() != settings.Draft02 {
		t.Fatalf("draft %v", sess.Draft())
	}
	if rsp.Header.Get("sec-webtransport-http3-draft") != "draft02" {
		t.Fatalf("response headers %v", rsp.Header)
	}
	if h := <-reqHeaders; h.Get("sec-webtransport-http3-draft02") != "1" {
		t.Fatalf("request headers %v", h)
	}
	// A draft-02-only server (as aioquic or wtransport) and our client.
	// The newer drafts' enabling settings sent as 0 leave them out.
	legacy := []settings.Setting{{ID: settings.WTMaxSessions}, {ID: settings.WTEnabled}, {ID: settings.H3DatagramDraft04}}
	ts2 := startServer(t, wtHandler(t, echoSession), func(s *Server) { s.AdditionalSettings = legacy })
	sess2 := dial(t, ts2, "/")
	if sess2.Draft() != settings.Draft02 {
		t.Fatalf("legacy server draft %v", sess2.Draft())
	}
	str, _ := sess2.OpenStreamSync(testCtx(t))
	str.Write([]byte("x"))
	str.Close()
	if b, _ := io.ReadAll(str); string(b) != "x" {
		t.Fatalf("echo %q", b)
	}
	// A server without WebTransport: the client refuses to send CONNECT.
	none := []settings.Setting{{ID: settings.EnableWebTransport}, {ID: settings.WTMaxSessions}, {ID: settings.WTEnabled}}
	ts3 := startServer(t, wtHandler(t, echoSession), func(s *Server) { s.AdditionalSettings = none })
	if _, _, err := ts3.dialer().Dial(testCtx(t), ts3.url("/"), nil); !errors.Is(err, ErrNotSupported) {
		t.Fatalf("dial to non-WT server: %v", err)
	}
}

func TestRejectionAndOrigin(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/forbidden", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusForbidden) })
	mux.Handle("/wt", wtHandler(t, echoSession))
	ts := startServer(t, mux, func(s *Server) { s.CheckOrigin = nil })
	d := ts.dialer()
	ctx := testCtx(t)
	for _, tc := range []struct {
		path, origin string
		want         int
	}{
		{"/forbidden", "", 403},
		{"/missing", "", 404},
		{"/wt", "https://evil.example", 403},
		{"/wt", "https://" + ts.addr, 200},
		{"/wt", "", 200},
	} {
		h := http.Header{}
		if tc.origin != "" {
			h.Set("Origin", tc.origin)
		}
		rsp, sess, err := d.Dial(ctx, ts.url(tc.path), h)
		if tc.want == 200 {
			if err != nil {
				t.Fatalf("%s %s: %v", tc.path, tc.origin, err)
			}
			sess.Close()
			continue
		}
		var re *RejectedError
		if !errors.As(err, &re) || re.StatusCode != tc.want || rsp.StatusCode != tc.want {
			t.Fatalf("%s %s: %v, want %d", tc.path, tc.origin, err, tc.want)
		}
	}
}

func TestSessionLimit(t *testing.T) {
	ts := startServer(t, wtHandler(t, func(s *Session) { <-s.Context().Done() }), func(s *Server) { s.Limits.MaxSessions = 2 })
	ctx := testCtx(t)
	cc, err := ts.dialer().DialConn(ctx, ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	for i := 0; i < 2; i++ {
		if _, _, err := cc.OpenSession(ctx, ts.url("/"), nil); err != nil {
			t.Fatal(err)
		}
	}
	_, _, err = cc.OpenSession(ctx, ts.url("/"), nil)
	var se *StreamError
	if !errors.As(err, &se) || se.H3Code != frames.H3RequestRejected {
		t.Fatalf("third session: %v", err)
	}
}

func TestCloseMessageTruncatedAtUTF8Boundary(t *testing.T) {
	got := make(chan *SessionError, 1)
	ts := startServer(t, wtHandler(t, func(s *Session) {
		<-s.Context().Done()
		var se *SessionError
		errors.As(s.Err(), &se)
		got <- se
	}))
	sess := dial(t, ts, "/")
	msg := strings.Repeat("é", 600) // 1200 bytes
	sess.CloseWithError(0xffffffff, msg)
	se := <-got
	if se.Code != 0xffffffff || len(se.Message) != 1024 || se.Message != msg[:1024] {
		t.Fatalf("got code %d message of %d bytes", se.Code, len(se.Message))
	}
}
