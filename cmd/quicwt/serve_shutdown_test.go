package main

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicwt/quicwt/cmd/internal/conformance"
	"github.com/quicwt/quicwt/frames"
	"github.com/quicwt/quicwt/quicwt"
)

// deafPeer is a raw HTTP/3 client over quic-go that opens one WebTransport
// session and then never reads its CONNECT stream, so it never sees
// WT_DRAIN_SESSION or WT_CLOSE_SESSION. Its stream receive window is tiny,
// so that the server's writes on that stream block once the response has
// used it up. It reads the server's unidirectional streams (control,
// QPACK), which a real peer of this kind does.
func deafPeer(t *testing.T, addr string, window uint64) *quic.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	qc, err := quic.DialAddr(ctx, addr,
		&tls.Config{InsecureSkipVerify: true, NextProtos: []string{quicwt.NextProtoH3}},
		&quic.Config{
			EnableDatagrams:                  true,
			EnableStreamResetPartialDelivery: true,
			InitialStreamReceiveWindow:       window,
			MaxStreamReceiveWindow:           window,
			MaxIncomingUniStreams:            100,
			MaxIdleTimeout:                   30 * time.Second,
		})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = qc.CloseWithError(0, "") })
	go func() {
		for {
			s, err := qc.AcceptUniStream(context.Background())
			if err != nil {
				return
			}
			go io.Copy(io.Discard, s)
		}
	}()
	ctl, err := qc.OpenUniStream()
	if err != nil {
		t.Fatal(err)
	}
	st := quicwt.DefaultClientSettings()
	if _, err := ctl.Write(st.AppendFrame(frames.AppendUniStreamType(nil, frames.StreamTypeControl))); err != nil {
		t.Fatal(err)
	}
	req, err := qc.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var fields []conformance.Field
	for _, f := range [][2]string{{":method", "CONNECT"}, {":scheme", "https"}, {":authority", addr}, {":path", "/deaf"}, {":protocol", "webtransport-h3"}} {
		fields = append(fields, conformance.Field{Name: f[0], Value: f[1]})
	}
	if _, err := req.Write(frames.AppendHeaders(nil, conformance.Encode(fields))); err != nil {
		t.Fatal(err)
	}
	// From here on the CONNECT stream is never read.
	return qc
}

// Issue 18: a peer that never reads its CONNECT stream must not hold a
// graceful shutdown (Server.Shutdown, as 'quicwt serve' calls it with its
// -grace) past the grace period.
func TestShutdownDeafPeer(t *testing.T) {
	cert, err := genCert(nil, defaultValidity)
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan *quicwt.Session, 1)
	srv := &quicwt.Server{
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sess, err := quicwt.Upgrade(w, r)
			if err != nil {
				t.Errorf("upgrade: %v", err)
				return
			}
			accepted <- sess
			<-sess.Context().Done()
		}),
	}
	ln, err := quic.ListenAddr("127.0.0.1:0", quicwt.ConfigureTLSConfig(srv.TLSConfig), quicwt.ConfigureQUICConfig(nil))
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.ServeListener(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	// 5 bytes: room for the 200 response's HEADERS frame (01 03 00 00 d9)
	// and nothing more, so WT_DRAIN_SESSION and WT_CLOSE_SESSION stay
	// unsent. (quic-go's Write buffers up to about a packet's worth of
	// stream data without flow-control credit, so these small writes
	// return; what must not wait for the peer is Shutdown.)
	deafPeer(t, ln.Addr().String(), 5)
	var sess *quicwt.Session
	select {
	case sess = <-accepted:
	case <-time.After(10 * time.Second):
		t.Fatal("the session was not accepted")
	}

	const grace = time.Second
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(ctx) }()
	// The bound leaves Shutdown its documented extras after the grace
	// period (up to a second for the peers to answer WT_CLOSE_SESSION,
	// and a short linger), plus slack for a loaded machine.
	const bound = grace + 3*time.Second
	select {
	case err := <-done:
		t.Logf("Shutdown returned %v after %v", err, time.Since(start).Round(time.Millisecond))
	case <-time.After(bound):
		t.Fatalf("Shutdown with a %v grace still running after %v", grace, bound)
	}
	select {
	case <-sess.Context().Done():
	case <-time.After(5 * time.Second):
		t.Error("the session is still open after Shutdown")
	}
}
