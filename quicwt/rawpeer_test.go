package quicwt

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/quic-go/qpack"
	"github.com/quic-go/quic-go"

	"github.com/quicwt/quicwt/frames"
	"github.com/quicwt/quicwt/settings"
)

// rawPeer is a client that writes raw HTTP/3 bytes, for testing how the
// server answers protocol violations.
type rawPeer struct {
	t  testing.TB
	qc *quic.Conn
}

func dialRaw(t testing.TB, ts *testServer) *rawPeer {
	t.Helper()
	tc := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h3"}}
	qc, err := quic.DialAddr(testCtx(t), ts.addr, tc, ConfigureQUICConfig(nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { qc.CloseWithError(0, "") })
	return &rawPeer{t: t, qc: qc}
}

// clientSettings are Chrome-like SETTINGS enabling draft-02 and draft-15.
func clientSettingsFrame() []byte {
	s := defaultSettings(false)
	return s.AppendFrame(nil)
}

// control opens the control stream and writes b after the type byte.
func (p *rawPeer) control(b []byte) *quic.SendStream {
	s, err := p.qc.OpenUniStream()
	if err != nil {
		p.t.Fatal(err)
	}
	if _, err := s.Write(append([]byte{0x00}, b...)); err != nil {
		p.t.Fatal(err)
	}
	return s
}

func (p *rawPeer) uni(b []byte) *quic.SendStream {
	s, err := p.qc.OpenUniStream()
	if err != nil {
		p.t.Fatal(err)
	}
	if _, err := s.Write(b); err != nil {
		p.t.Fatal(err)
	}
	return s
}

// connectionError waits for the server to close the connection and
// returns the HTTP/3 error code it used.
func (p *rawPeer) connectionError() ErrorCode {
	p.t.Helper()
	select {
	case <-p.qc.Context().Done():
	case <-time.After(5 * time.Second):
		p.t.Fatal("server did not close the connection")
	}
	var ae *quic.ApplicationError
	if err := context.Cause(p.qc.Context()); !errors.As(err, &ae) || !ae.Remote {
		p.t.Fatalf("connection ended with %v, want a remote application error", context.Cause(p.qc.Context()))
	}
	return ErrorCode(ae.ErrorCode)
}

func (p *rawPeer) expectConnectionError(want ErrorCode) {
	p.t.Helper()
	if got := p.connectionError(); got != want {
		p.t.Fatalf("connection error %s, want %s", got, want)
	}
}

// expectAlive checks the connection is still open a little later.
func (p *rawPeer) expectAlive() {
	p.t.Helper()
	select {
	case <-p.qc.Context().Done():
		p.t.Fatalf("connection closed: %v", context.Cause(p.qc.Context()))
	case <-time.After(300 * time.Millisecond):
	}
}

func encodeFields(fields ...string) []byte {
	var b []byte
	w := &sliceWriter{&b}
	enc := qpack.NewEncoder(w)
	for i := 0; i+1 < len(fields); i += 2 {
		enc.WriteField(qpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return b
}

type sliceWriter struct{ b *[]byte }

func (w *sliceWriter) Write(p []byte) (int, error) { *w.b = append(*w.b, p...); return len(p), nil }

func connectFields(addr, path string) []string {
	return []string{":method", "CONNECT", ":scheme", "https", ":authority", addr, ":path", path, ":protocol", "webtransport-h3"}
}

// request opens a bidi stream, writes a HEADERS frame with fields, and
// returns the stream.
func (p *rawPeer) request(extra []byte, fields ...string) *quic.Stream {
	s, err := p.qc.OpenStreamSync(testCtx(p.t))
	if err != nil {
		p.t.Fatal(err)
	}
	b := frames.AppendHeaders(nil, encodeFields(fields...))
	if _, err := s.Write(append(b, extra...)); err != nil {
		// The server may answer and stop our sending before we are done
		// (STOP_SENDING, RFC 9114 Section 4.1); the response tells.
		var se *quic.StreamError
		if !errors.As(err, &se) {
			p.t.Fatal(err)
		}
	}
	return s
}

// response reads the response status of a request stream, or the stream
// error code if the server reset it.
func readResponse(t testing.TB, s *quic.Stream) (status int, resetCode ErrorCode) {
	t.Helper()
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	fr := newFrameReader(s, 256)
	for {
		h, err := frames.ReadHeader(fr, 1<<16)
		if err != nil {
			var se *quic.StreamError
			if errors.As(err, &se) {
				return 0, ErrorCode(se.ErrorCode)
			}
			t.Fatalf("reading response: %v", err)
		}
		p, err := fr.payload(h.Length)
		if err != nil {
			t.Fatal(err)
		}
		if h.Type != frames.TypeHeaders {
			continue
		}
		fields, err := decodeFields(p, 1<<16)
		if err != nil {
			t.Fatal(err)
		}
		st, _, err := parseResponseFields(fields)
		if err != nil {
			t.Fatal(err)
		}
		return st, 0
	}
}

func rawServer(t *testing.T) *testServer {
	return startServer(t, wtHandler(t, echoSession))
}

func TestControlStreamViolations(t *testing.T) {
	var settingsPayload settings.Settings
	settingsPayload.Set(settings.H3Datagram, 1)
	goodSettings := settingsPayload.AppendFrame(nil)
	dupSettings := frames.AppendFrame(nil, frames.TypeSettings, []byte{0x33, 0x01, 0x33, 0x01})
	tests := []struct {
		name string
		ctrl []byte
		want ErrorCode
	}{
		{"first frame not SETTINGS", frames.AppendGoaway(nil, 0), frames.H3MissingSettings},
		{"second SETTINGS", append(append([]byte{}, goodSettings...), goodSettings...), frames.H3FrameUnexpected},
		{"duplicate setting", dupSettings, frames.H3SettingsError},
		{"HTTP/2 setting 0x02", frames.AppendFrame(nil, frames.TypeSettings, []byte{0x02, 0x01}), frames.H3SettingsError},
		{"boolean setting 2", frames.AppendFrame(nil, frames.TypeSettings, []byte{0x08, 0x02}), frames.H3SettingsError},
		{"truncated SETTINGS payload", frames.AppendFrame(nil, frames.TypeSettings, []byte{0x40}), frames.H3SettingsError},
		{"DATA on control stream", append(append([]byte{}, goodSettings...), frames.AppendFrame(nil, frames.TypeData, []byte("x"))...), frames.H3FrameUnexpected},
		{"HEADERS on control stream", append(append([]byte{}, goodSettings...), frames.AppendFrame(nil, frames.TypeHeaders, []byte{0, 0})...), frames.H3FrameUnexpected},
		{"HTTP/2 frame 0x06", append(append([]byte{}, goodSettings...), frames.AppendFrame(nil, 0x06, nil)...), frames.H3FrameUnexpected},
		{"GOAWAY with trailing bytes", append(append([]byte{}, goodSettings...), frames.AppendFrame(nil, frames.TypeGoaway, []byte{0, 0})...), frames.H3FrameError},
		{"MAX_PUSH_ID decreasing", append(append(append([]byte{}, goodSettings...), frames.AppendMaxPushID(nil, 5)...), frames.AppendMaxPushID(nil, 2)...), frames.H3IDError},
		{"oversized SETTINGS", frames.AppendHeader(nil, frames.TypeSettings, 1<<20), frames.H3ExcessiveLoad},
	}
	ts := rawServer(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := dialRaw(t, ts)
			p.control(tt.ctrl)
			p.expectConnectionError(tt.want)
		})
	}
}

func TestCriticalStreamRules(t *testing.T) {
	ts := rawServer(t)
	t.Run("second control stream", func(t *testing.T) {
		p := dialRaw(t, ts)
		p.control(clientSettingsFrame())
		p.control(clientSettingsFrame())
		p.expectConnectionError(frames.H3StreamCreationError)
	})
	t.Run("control stream closed", func(t *testing.T) {
		p := dialRaw(t, ts)
		s := p.control(clientSettingsFrame())
		s.Close()
		p.expectConnectionError(frames.H3ClosedCriticalStream)
	})
	t.Run("control stream reset", func(t *testing.T) {
		p := dialRaw(t, ts)
		s := p.control(clientSettingsFrame())
		time.Sleep(50 * time.Millisecond)
		s.CancelWrite(0x100)
		p.expectConnectionError(frames.H3ClosedCriticalStream)
	})
	t.Run("second QPACK encoder stream", func(t *testing.T) {
		p := dialRaw(t, ts)
		p.control(clientSettingsFrame())
		p.uni([]byte{0x02})
		p.uni([]byte{0x02})
		p.expectConnectionError(frames.H3StreamCreationError)
	})
	t.Run("QPACK encoder insert with capacity 0", func(t *testing.T) {
		p := dialRaw(t, ts)
		p.control(clientSettingsFrame())
		p.uni([]byte{0x02, 0x80 | 0x40 | 1, 0x01, 'x'})
		p.expectConnectionError(frames.QPACKEncoderStreamError)
	})
	t.Run("QPACK encoder set capacity 0 is fine", func(t *testing.T) {
		p := dialRaw(t, ts)
		p.control(clientSettingsFrame())
		p.uni([]byte{0x02, 0x20})
		p.uni([]byte{0x03, 0x41}) // decoder: Stream Cancellation of stream 1
		p.expectAlive()
	})
	t.Run("QPACK decoder section acknowledgment", func(t *testing.T) {
		p := dialRaw(t, ts)
		p.control(clientSettingsFrame())
		p.uni([]byte{0x03, 0x80})
		p.expectConnectionError(frames.QPACKDecoderStreamError)
	})
	t.Run("push stream from client", func(t *testing.T) {
		p := dialRaw(t, ts)
		p.control(clientSettingsFrame())
		p.uni([]byte{0x01, 0x00})
		p.expectConnectionError(frames.H3StreamCreationError)
	})
	t.Run("unknown and GREASE stream types ignored", func(t *testing.T) {
		p := dialRaw(t, ts)
		p.control(append(clientSettingsFrame(), frames.AppendFrame(nil, 0x21, []byte("grease"))...))
		p.uni([]byte{0x40, 0x21, 1, 2, 3})
		p.uni([]byte{0x3f})
		s, _ := p.qc.OpenUniStream()
		s.Close() // FIN before the type: tolerated
		p.expectAlive()
	})
	t.Run("WebTransport stream with bad session ID", func(t *testing.T) {
		p := dialRaw(t, ts)
		p.control(clientSettingsFrame())
		p.uni([]byte{0x40, 0x54, 0x02})
		p.expectConnectionError(frames.H3IDError)
	})
	t.Run("datagram with a quarter stream ID above 2^60-1", func(t *testing.T) {
		p := dialRaw(t, ts)
		p.control(clientSettingsFrame())
		time.Sleep(50 * time.Millisecond)
		p.qc.SendDatagram([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
		p.expectConnectionError(frames.H3DatagramError)
	})
}

func TestRequestViolations(t *testing.T) {
	ts := rawServer(t)
	good := connectFields(ts.addr, "/wt")
	tests := []struct {
		name       string
		fields     []string
		extra      []byte
		wantStatus int
		wantReset  ErrorCode
		wantConn   ErrorCode
	}{
		{name: "valid extended CONNECT", fields: good, wantStatus: 200},
		{name: "legacy protocol token", fields: []string{":method", "CONNECT", ":scheme", "https", ":authority", ts.addr, ":path", "/wt", ":protocol", "webtransport"}, wantStatus: 200},
		{name: "uppercase field name", fields: append(append([]string{}, good...), "X-Upper", "1"), wantReset: frames.H3MessageError},
		{name: "connection-specific field", fields: append(append([]string{}, good...), "connection", "close"), wantReset: frames.H3MessageError},
		{name: "pseudo-header after regular", fields: append([]string{"origin", "x"}, good...), wantReset: frames.H3MessageError},
		{name: "repeated :path", fields: append(append([]string{}, good...), ":path", "/x"), wantReset: frames.H3MessageError},
		{name: "unknown pseudo-header", fields: append([]string{":foo", "bar"}, good...), wantReset: frames.H3MessageError},
		{name: "extended CONNECT without :path", fields: []string{":method", "CONNECT", ":scheme", "https", ":authority", ts.addr, ":protocol", "webtransport-h3"}, wantReset: frames.H3MessageError},
		{name: "missing :method", fields: []string{":scheme", "https", ":authority", ts.addr, ":path", "/"}, wantReset: frames.H3MessageError},
		{name: "DATA before HEADERS", fields: nil, wantConn: frames.H3FrameUnexpected},
		{name: "field section too large", fields: append(append([]string{}, good...), "x-big", string(make([]byte, 20000))), wantStatus: 431},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := dialRaw(t, ts)
			p.control(clientSettingsFrame())
			var s *quic.Stream
			if tt.fields == nil {
				var err error
				s, err = p.qc.OpenStreamSync(testCtx(t))
				if err != nil {
					t.Fatal(err)
				}
				s.Write(frames.AppendFrame(nil, frames.TypeData, []byte("x")))
			} else {
				s = p.request(tt.extra, tt.fields...)
			}
			if tt.wantConn != 0 {
				p.expectConnectionError(tt.wantConn)
				return
			}
			status, code := readResponse(t, s)
			if status != tt.wantStatus || code != tt.wantReset {
				t.Fatalf("got status %d reset %s, want status %d reset %s", status, code, tt.wantStatus, tt.wantReset)
			}
		})
	}
}

func TestCapsuleViolations(t *testing.T) {
	ts := rawServer(t)
	long := make([]byte, 1025)
	for i := range long {
		long[i] = 'a'
	}
	closeCap := func(msg []byte) []byte {
		v := append([]byte{0, 0, 0, 7}, msg...)
		return frames.AppendCapsule(nil, frames.CapsuleCloseSession, v)
	}
	tests := []struct {
		name     string
		capsules []byte
		want     ErrorCode // expected reset code of the CONNECT stream
	}{
		{"close message too long", closeCap(long), frames.H3MessageError},
		{"close message invalid UTF-8", closeCap([]byte{0xff, 0xfe}), frames.H3MessageError},
		{"data after close", append(closeCap([]byte("bye")), frames.AppendDrainSession(nil)...), frames.H3MessageError},
		{"HTTP/2-only capsule", frames.AppendVarintCapsule(nil, frames.CapsuleMaxStreamData, 5), frames.H3DatagramError},
		{"huge declared capsule length", append(frames.AppendHeader(nil, frames.Type(frames.CapsuleCloseSession), 1<<40)[:0:0], 0x68, 0x43, 0xc0, 0, 0, 0x10, 0, 0, 0, 0), frames.H3ExcessiveLoad},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := dialRaw(t, ts)
			p.control(clientSettingsFrame())
			s := p.request(nil, connectFields(ts.addr, "/wt")...)
			if st, _ := readResponse(t, s); st != 200 {
				t.Fatalf("status %d", st)
			}
			s.Write(frames.AppendFrame(nil, frames.TypeData, tt.capsules))
			s.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err := io.ReadAll(s)
			var se *quic.StreamError
			if !errors.As(err, &se) || ErrorCode(se.ErrorCode) != tt.want {
				t.Fatalf("CONNECT stream ended with %v, want reset %s", err, tt.want)
			}
			p.expectAlive()
		})
	}
}

func TestUnknownCapsulesAndFramesIgnored(t *testing.T) {
	closed := make(chan *SessionError, 1)
	ts := startServer(t, wtHandler(t, func(s *Session) {
		<-s.Context().Done()
		var se *SessionError
		errors.As(s.Err(), &se)
		closed <- se
	}))
	p := dialRaw(t, ts)
	p.control(clientSettingsFrame())
	s := p.request(nil, connectFields(ts.addr, "/wt")...)
	if st, _ := readResponse(t, s); st != 200 {
		t.Fatalf("status %d", st)
	}
	var b []byte
	b = frames.AppendFrame(b, 0x21, []byte("reserved frame"))
	caps := frames.AppendCapsule(nil, 0x17, []byte("grease capsule"))
	caps = frames.AppendCapsule(caps, 0x123456, make([]byte, 3000))
	caps = frames.AppendVarintCapsule(caps, frames.CapsuleMaxData, 1000)
	caps = frames.AppendCloseSession(caps, 77, "done")
	// Split the capsules over two DATA frames, cutting one capsule in half.
	b = frames.AppendFrame(b, frames.TypeData, caps[:20])
	b = frames.AppendFrame(b, frames.TypeData, caps[20:])
	s.Write(b)
	s.Close()
	select {
	case se := <-closed:
		if se == nil || se.Code != 77 || se.Message != "done" || !se.Remote {
			t.Fatalf("session error %+v", se)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("session did not end")
	}
	// The server answers the close with FIN.
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(s); err != nil {
		t.Fatalf("CONNECT stream: %v", err)
	}
	p.expectAlive()
}

func TestSettingsBeforeConnect(t *testing.T) {
	// A CONNECT before the client's SETTINGS waits for them.
	ts := rawServer(t)
	p := dialRaw(t, ts)
	s := p.request(nil, connectFields(ts.addr, "/wt")...)
	time.Sleep(100 * time.Millisecond)
	p.control(clientSettingsFrame())
	if st, code := readResponse(t, s); st != 200 {
		t.Fatalf("status %d reset %s", st, code)
	}
	// A client whose SETTINGS enable no draft gets H3_MESSAGE_ERROR.
	p2 := dialRaw(t, ts)
	var plain settings.Settings
	plain.Set(settings.H3Datagram, 1)
	p2.control(plain.AppendFrame(nil))
	s2 := p2.request(nil, connectFields(ts.addr, "/wt")...)
	if _, code := readResponse(t, s2); code != frames.H3MessageError {
		t.Fatalf("reset %s, want H3_MESSAGE_ERROR", code)
	}
}

var _ = http.StatusOK
