package quicwt

// The draft-16 rules (draft-ietf-webtrans-http3-16) beyond flow control:
// capsules wait for the 2xx, 405 for a resource without WebTransport, the
// upgrade tokens, and the transport parameters a session requires.

import (
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicwt/quicwt/frames"
	"github.com/quicwt/quicwt/settings"
)

// Section 3.2: the server does not process capsules sent before its 2xx;
// on a rejection they are discarded, on acceptance processed after it.
func TestCapsulesWaitForTheResponse(t *testing.T) {
	seen := make(chan error, 2)
	ended := make(chan error, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("/reject", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(200 * time.Millisecond) // the capsule has arrived by now
		seen <- r.Context().Err()
		w.WriteHeader(http.StatusForbidden)
	})
	mux.HandleFunc("/accept", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(200 * time.Millisecond)
		seen <- r.Context().Err()
		sess, err := Upgrade(w, r)
		if err != nil {
			ended <- err
			return
		}
		<-sess.Context().Done()
		ended <- sess.Err()
	})
	ts := startServer(t, mux)
	early := frames.AppendFrame(nil, frames.TypeData, frames.AppendCloseSession(nil, 5, "early"))
	for _, path := range []string{"/reject", "/accept"} {
		p := dialRaw(t, ts)
		p.control(clientSettingsFrame())
		s := p.request(early, connectFields(ts.addr, path)...)
		if err := <-seen; err != nil {
			t.Fatalf("%s: the request's context ended before the response (%v): the early WT_CLOSE_SESSION was processed", path, err)
		}
		status, _ := readResponse(t, s)
		switch path {
		case "/reject":
			if status != http.StatusForbidden {
				t.Fatalf("status %d", status)
			}
		case "/accept":
			if status != 200 {
				t.Fatalf("status %d", status)
			}
			select {
			case err := <-ended:
				se, ok := errors.AsType[*SessionError](err)
				if !ok || se.Code != 5 || se.Message != "early" || !se.Remote {
					t.Fatalf("session ended with %v, want the early close, processed after the 2xx", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the early WT_CLOSE_SESSION was never processed")
			}
		}
	}
}

// Section 3.2: a CONNECT to a resource that does not support WebTransport
// gets 405 from draft-15 on (404 in earlier drafts).
func TestNoUpgradeStatus(t *testing.T) {
	ts := startServer(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	_, _, err := ts.dialer().Dial(testCtx(t), ts.url("/none"), nil)
	if re, ok := errors.AsType[*RejectedError](err); !ok || re.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("draft-15 CONNECT not upgraded: %v, want 405", err)
	}
	d := ts.dialer()
	d.AdditionalSettings = []settings.Setting{{ID: settings.WTEnabled}, {ID: settings.WTMaxSessions}}
	_, _, err = d.Dial(testCtx(t), ts.url("/none"), nil)
	if re, ok := errors.AsType[*RejectedError](err); !ok || re.StatusCode != http.StatusNotFound {
		t.Fatalf("draft-02 CONNECT not upgraded: %v, want 404", err)
	}
}

// The "webtransport" token under draft-15/16, which the draft gives to the
// capsule protocol of draft-ietf-webtrans-http2 (Section 2.1.2), is served
// as native WebTransport over HTTP/3: Safari 26 sends it with the newer
// SETTINGS. Streams work; the HTTP/2-only capsules are refused.
func TestLegacyTokenUnderDraft15(t *testing.T) {
	ts := rawServer(t)
	p := dialRaw(t, ts)
	p.control(clientSettingsFrame())
	fields := []string{":method", "CONNECT", ":scheme", "https", ":authority", ts.addr, ":path", "/wt", ":protocol", "webtransport"}
	connect := p.request(nil, fields...)
	if st, _ := readResponse(t, connect); st != 200 {
		t.Fatalf("status %d", st)
	}
	s, err := p.qc.OpenStreamSync(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	s.Write(append(frames.AppendWebTransportBidiHeader(nil, uint64(connect.StreamID())), "ping"...))
	s.Close()
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	if b, err := io.ReadAll(s); err != nil || string(b) != "ping" {
		t.Fatalf("echo %q %v", b, err)
	}
	connect.Write(frames.AppendFrame(nil, frames.TypeData, frames.AppendCapsule(nil, frames.CapsuleStream, []byte{0, 'x'})))
	connect.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(connect); err == nil {
		t.Fatal("a WT_STREAM capsule was accepted")
	} else if code, _ := streamCode(err); code != frames.H3DatagramError {
		t.Fatalf("WT_STREAM capsule: %v, want H3_DATAGRAM_ERROR", err)
	}
}

// Section 3.1: without the reset_stream_at transport parameter a draft-15
// client's CONNECT is malformed, and our client does not open a session
// with such a server (WT_REQUIREMENTS_NOT_MET); draft-02 peers, as the
// browsers are, need no such parameter.
func TestRequirementsNotMet(t *testing.T) {
	noReset := ConfigureQUICConfig(nil)
	noReset.EnableStreamResetPartialDelivery = false
	ts := rawServer(t)
	for _, tt := range []struct {
		name     string
		settings []byte
		want     int
		code     ErrorCode
	}{
		{"draft-15 client", clientSettingsFrame(), 0, frames.H3MessageError},
		{"draft-02 client", func() []byte {
			s := defaultSettings(false)
			s.Set(settings.WTEnabled, 0)
			s.Set(settings.WTMaxSessions, 0)
			setFlowLimits(&s, Limits{DisableFlowControl: true})
			return s.AppendFrame(nil)
		}(), 200, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tc := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h3"}}
			qc, err := quic.DialAddr(testCtx(t), ts.addr, tc, noReset)
			if err != nil {
				t.Fatal(err)
			}
			defer qc.CloseWithError(0, "")
			p := &rawPeer{t: t, qc: qc}
			p.control(tt.settings)
			fields := connectFields(ts.addr, "/wt")
			if tt.want == 200 {
				fields[len(fields)-1] = "webtransport"
			}
			s := p.request(nil, fields...)
			if st, code := readResponse(t, s); st != tt.want || code != tt.code {
				t.Fatalf("status %d reset %s, want %d %s", st, code, tt.want, tt.code)
			}
		})
	}
	t.Run("our client", func(t *testing.T) {
		addr := rawH3ServerWith(t, noReset, func(int, *quic.Stream) { t.Error("the client sent a CONNECT") })
		d := &Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
		cc, err := d.DialConn(testCtx(t), addr)
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = cc.OpenSession(testCtx(t), "https://"+addr+"/wt", nil)
		if !errors.Is(err, ErrRequirementsNotMet) {
			t.Fatalf("OpenSession: %v, want ErrRequirementsNotMet", err)
		}
		<-cc.Done()
		if ce, ok := errors.AsType[*ConnectionError](cc.Err()); !ok || ce.Code != frames.WTRequirementsNotMet {
			t.Fatalf("connection ended with %v, want WT_REQUIREMENTS_NOT_MET", cc.Err())
		}
	})
}
