package interop_test

// The session exporter (draft-ietf-webtrans-http3-16, Section 4.8) against
// a webtransport-go peer. webtransport-go v0.13.0 has no exporter API, so
// its end derives the draft's exporter by hand from its own TLS state
// (crypto/tls ExportKeyingMaterial with the WebTransport Exporter Context
// built byte by byte); both ends must agree. (Debian's Chromium 156 has no
// WebTransport.exportKeyingMaterial yet: typeof is "undefined".)

import (
	"bytes"
	"encoding/binary"
	"net/http"
	"testing"
	"time"

	"github.com/quicwt/quicwt/quicwt"
)

func handExporterContext(sessionID uint64, label string, context []byte) []byte {
	b := binary.BigEndian.AppendUint64(nil, sessionID)
	b = append(b, byte(len(label)))
	b = append(b, label...)
	b = append(b, byte(len(context)))
	return append(b, context...)
}

func TestWTGoExporter(t *testing.T) {
	cert := NewCert(t, 24*time.Hour)
	sessions := make(chan *quicwt.Session, 1)
	qs := StartQuicwtServer(t, "127.0.0.1", cert, SessionHandler(t, func(s *quicwt.Session, _ *http.Request) { sessions <- s }))
	_, ws, err := NewWTGoClient(t, cert).Dial(t, Ctx(t, 10*time.Second), qs.URL("/x"))
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseWithError(0, "")
	qsess := <-sessions
	for _, c := range []struct {
		label string
		ctx   []byte
		n     int
	}{{"app", []byte("context"), 32}, {"", nil, 16}, {"x", make([]byte, 255), 64}} {
		ours, err := qsess.ExportKeyingMaterial(c.label, c.ctx, c.n)
		if err != nil {
			t.Fatal(err)
		}
		tlsState := ws.SessionState().ConnectionState.TLS
		theirs, err := tlsState.ExportKeyingMaterial("EXPORTER-WebTransport", handExporterContext(uint64(qsess.ID()), c.label, c.ctx), c.n)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ours, theirs) {
			t.Errorf("label %q: quicwt server %x, webtransport-go client's TLS state %x", c.label, ours, theirs)
		}
	}
}
