package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
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
	d := startTestDemoWith(t, demoConfig{Cert: c, QUIC: &quic.Config{Tracer: tr}})
	_, sess, err := testDialer(d).Dial(testCtx(t), d.wtURL+"/echo", nil)
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
