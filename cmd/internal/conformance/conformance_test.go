package conformance

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicwt/quicwt/quicwt"
	"github.com/quicwt/quicwt/settings"
)

// testCert makes a certificate for 127.0.0.1, valid 10 days, and its hash.
func testCert(t testing.TB) (tls.Certificate, [32]byte) {
	t.Helper()
	c, err := quicwt.SelfSignedCertificate(10 * 24 * time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return c, quicwt.CertificateHash(c.Leaf)
}

// echo serves a session: bidirectional streams are echoed, unidirectional
// ones answered on a new stream, datagrams returned.
func echo(sess *quicwt.Session) {
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

// startQuicwt runs a quicwt server that upgrades on /echo. Elsewhere it
// leaves an extended CONNECT un-upgraded, so that the library answers it
// (405 from draft-15 on), and answers other requests 404.
func startQuicwt(t *testing.T) (addr string, hash [32]byte, srv *quicwt.Server) {
	cert, hash := testCert(t)
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		sess, err := quicwt.Upgrade(w, r)
		if err != nil {
			return
		}
		echo(sess)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.NotFound(w, r)
		}
	})
	srv = &quicwt.Server{Handler: mux, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
	ln, err := quic.ListenAddr("127.0.0.1:0", quicwt.ConfigureTLSConfig(srv.TLSConfig), quicwt.ConfigureQUICConfig(nil))
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String(), hash, srv
}

// TestQuicwtConformance runs every case against quicwt's own server; all
// must pass. Only the flow-control cases may be skipped, and only because
// quicwt does not enable WebTransport flow control.
func TestQuicwtConformance(t *testing.T) {
	addr, hash, _ := startQuicwt(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	start := time.Now()
	rep, err := Run(ctx, Options{Addr: addr, Path: "/echo", CertHashes: [][32]byte{hash}, Timeout: 8 * time.Second, Parallel: 16})
	if err != nil {
		t.Fatal(err)
	}
	if testing.Verbose() {
		_ = rep.WriteText(os.Stdout, true)
	}
	t.Logf("%d cases in %v: %d passed, %d failed, %d skipped", len(rep.Results), time.Since(start).Round(time.Millisecond), rep.Passed, rep.Failed, rep.Skipped)
	if len(rep.Results) < 60 {
		t.Errorf("only %d cases registered, want at least 60", len(rep.Results))
	}
	def := quicwt.DefaultServerSettings()
	fcOff := !def.Enabled(settings.WTInitialMaxData) && !def.Enabled(settings.WTInitialMaxStreamsUni) && !def.Enabled(settings.WTInitialMaxStreamsBidi)
	for _, r := range rep.Results {
		switch {
		case r.Status == Fail:
			t.Errorf("FAIL %s (%s): expect %s: %s", r.ID, r.Section, r.Expect, r.Detail)
		case r.Status == Skip && !(fcOff && strings.HasPrefix(r.ID, "flow/") && strings.Contains(r.Detail, "enable no WebTransport flow control")):
			t.Errorf("SKIP %s: %s", r.ID, r.Detail)
		}
	}
}

// TestCaseRegistry checks the registry: unique IDs, and every case cites
// a section and an expectation.
func TestCaseRegistry(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range Cases() {
		if seen[c.ID] {
			t.Errorf("duplicate case ID %s", c.ID)
		}
		seen[c.ID] = true
		if c.Section == "" || c.Expect == "" || c.Description == "" || c.Run == nil || !strings.Contains(c.ID, "/") {
			t.Errorf("case %q is incomplete", c.ID)
		}
	}
	if len(seen) < 60 {
		t.Errorf("%d cases, want at least 60", len(seen))
	}
}
