package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quicwt/quicwt/cmd/quicwt/demo"
	"github.com/quicwt/quicwt/quicwt"
)

// TestServeQlogHasWebTransportEvents: the qlog files of `quicwt serve
// -qlog DIR` (qlogTracer) carry quicwt's HTTP/3 and WebTransport events
// next to quic-go's.
func TestServeQlogHasWebTransportEvents(t *testing.T) {
	dir := t.TempDir()
	tr, err := qlogTracer(dir, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	c, err := genCert(nil, defaultValidity)
	if err != nil {
		t.Fatal(err)
	}
	d, err := demo.Start(demo.Config{Addr: "127.0.0.1:0", HTTPAddr: "", Cert: c, Store: demo.NewMemoryStore(), QUIC: &quic.Config{Tracer: tr}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dialer := &quicwt.Dialer{CertificateHashes: [][32]byte{quicwt.CertificateHash(c.Leaf)}}
	_, sess, err := dialer.Dial(ctx, d.WTURL()+"/echo", nil)
	if err != nil {
		t.Fatal(err)
	}
	sess.CloseWithError(7, "done")
	<-sess.Closed()
	d.Close()
	var server string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		files, _ := filepath.Glob(filepath.Join(dir, "*_server.sqlog"))
		if len(files) == 1 {
			b, _ := os.ReadFile(files[0])
			server = string(b)
			if strings.Contains(server, "webtransport:session_closed") {
				break
			}
		}
	}
	for _, want := range []string{"transport:packet_received", `"http3:frame_parsed"`, `"frame_type":"settings"`, "webtransport:session_opened", "webtransport:capsule_parsed", "webtransport:session_closed", `"reason":"done"`} {
		if !strings.Contains(server, want) {
			t.Errorf("server qlog lacks %s", want)
		}
	}
}
