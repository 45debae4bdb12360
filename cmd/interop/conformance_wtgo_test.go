package interop_test

// The conformance checker of `quicwt check` run against a webtransport-go
// server. Failures here are findings about webtransport-go, not test
// failures: the test only requires that every case ran to completion, and
// logs the per-case results and the PASS/FAIL counts for the README.

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	webtransport "github.com/quic-go/webtransport-go"

	"github.com/quicwt/quicwt/cmd/internal/conformance"
)

// startWTGoCheckTarget runs a webtransport-go server that accepts sessions
// on /echo only (404 elsewhere, 400 when Upgrade refuses) and echoes
// streams and datagrams. Flow control is configured so that the
// flow-control cases have limits to test.
func startWTGoCheckTarget(t *testing.T) (addr string, hash [32]byte) {
	cert := NewCert(t, 10*24*time.Hour)
	mux := http.NewServeMux()
	h3 := &http3.Server{
		TLSConfig: http3.ConfigureTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert.TLS}}),
		QUICConfig: &quic.Config{
			EnableDatagrams:                  true,
			EnableStreamResetPartialDelivery: true,
		},
		Handler: mux,
	}
	webtransport.ConfigureHTTP3Server(h3)
	srv := &webtransport.Server{
		H3:          h3,
		CheckOrigin: func(*http.Request) bool { return true },
		Config: &webtransport.Config{
			MaxIncomingStreams:    8,
			MaxIncomingUniStreams: 8,
			MaxIncomingData:       64 << 10,
		},
	}
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		sess, err := srv.Upgrade(w, r)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		wtgoEcho(sess)
	})
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(udp)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return udp.LocalAddr().String(), cert.Hash
}

func wtgoEcho(sess *webtransport.Session) {
	ctx := sess.Context()
	go func() {
		for {
			str, err := sess.AcceptStream(ctx)
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(str, str); _ = str.Close() }()
		}
	}()
	go func() {
		for {
			str, err := sess.AcceptUniStream(ctx)
			if err != nil {
				return
			}
			go func() {
				b, _ := io.ReadAll(str)
				if out, err := sess.OpenUniStream(); err == nil {
					_, _ = out.Write(b)
					_ = out.Close()
				}
			}()
		}
	}()
	for {
		d, err := sess.ReceiveDatagram(ctx)
		if err != nil {
			return
		}
		_ = sess.SendDatagram(d)
	}
}

func TestConformanceWebTransportGo(t *testing.T) {
	addr, hash := startWTGoCheckTarget(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	rep, err := conformance.Run(ctx, conformance.Options{
		Addr: addr, Path: "/echo", CertHashes: [][32]byte{hash}, Timeout: 8 * time.Second, Parallel: 16,
	})
	if err != nil {
		t.Fatalf("checker could not run: %v", err)
	}
	if n := len(conformance.Cases()); len(rep.Results) != n {
		t.Fatalf("%d of %d cases ran", len(rep.Results), n)
	}
	var b strings.Builder
	_ = rep.WriteText(&b, false)
	t.Logf("webtransport-go v0.13.0 conformance (%v):\n%s", time.Since(start).Round(time.Millisecond), b.String())
	for _, r := range rep.Results {
		if r.Status == "" {
			t.Errorf("case %s has no verdict", r.ID)
		}
	}
	if path := os.Getenv("QUICWT_CONFORMANCE_JSON"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := rep.WriteJSON(f); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("webtransport-go: %d passed, %d failed, %d skipped", rep.Passed, rep.Failed, rep.Skipped)
}
