package interop_test

// Shared helpers of the interop tests: certificates, a quicwt server on
// loopback, and the pass/fail matrix. Browser launchers are in
// browser_helpers_test.go, the webtransport-go peer in wtgo_helpers_test.go.

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/qlog"

	"github.com/quicwt/quicwt/quicwt"
)

// Cert is a self-signed certificate usable with serverCertificateHashes:
// ECDSA P-256, for 127.0.0.1, ::1 and localhost.
type Cert struct {
	TLS  tls.Certificate
	DER  []byte
	Hash [32]byte // SHA-256 of DER
	Leaf *x509.Certificate
}

// NewCert makes a certificate valid from one hour ago for validity in
// total (quicwt.SelfSignedCertificate). Browsers accept at most 14 days for
// serverCertificateHashes.
func NewCert(t testing.TB, validity time.Duration) *Cert {
	t.Helper()
	c, err := quicwt.SelfSignedCertificate(validity)
	if err != nil {
		t.Fatal(err)
	}
	return &Cert{TLS: c, DER: c.Certificate[0], Hash: quicwt.CertificateHash(c.Leaf), Leaf: c.Leaf}
}

// BrowserCert is the certificate the browser tests use: 13 days, one day
// under the 14-day ceiling of serverCertificateHashes.
func BrowserCert(t testing.TB) *Cert {
	t.Helper()
	c := NewCert(t, 13*24*time.Hour)
	if d := c.Leaf.NotAfter.Sub(c.Leaf.NotBefore); d > 14*24*time.Hour {
		t.Fatalf("certificate validity %v exceeds 14 days", d)
	}
	if _, ok := c.Leaf.PublicKey.(*ecdsa.PublicKey); !ok {
		t.Fatalf("certificate key is %T, want ECDSA", c.Leaf.PublicKey)
	}
	return c
}

// QuicwtServer is a quicwt.Server on a loopback UDP port.
type QuicwtServer struct {
	Srv  *quicwt.Server
	Addr string // host:port
	Cert *Cert
}

// URL returns https://addr/path.
func (s *QuicwtServer) URL(path string) string { return "https://" + s.Addr + path }

// Dialer returns a quicwt.Dialer pinned to the server's certificate.
func (s *QuicwtServer) Dialer() *quicwt.Dialer {
	return &quicwt.Dialer{CertificateHashes: [][32]byte{s.Cert.Hash}}
}

// StartQuicwtServer serves h on host:0 (host "127.0.0.1" or "::1") with
// cert, accepting every Origin unless configure overrides CheckOrigin. It
// is closed in t.Cleanup.
func StartQuicwtServer(t testing.TB, host string, cert *Cert, h http.Handler, configure ...func(*quicwt.Server)) *QuicwtServer {
	t.Helper()
	srv := &quicwt.Server{
		Handler:     h,
		TLSConfig:   &tls.Config{Certificates: []tls.Certificate{cert.TLS}},
		CheckOrigin: func(*http.Request) bool { return true },
	}
	if os.Getenv("QLOGDIR") != "" {
		// Debugging: qlog traces of the server's connections in $QLOGDIR.
		srv.QUICConfig = &quic.Config{Tracer: qlog.DefaultConnectionTracer}
	}
	for _, f := range configure {
		f(srv)
	}
	ln, err := quic.ListenAddrEarly(net.JoinHostPort(host, "0"), quicwt.ConfigureTLSConfig(srv.TLSConfig), quicwt.ConfigureQUICConfig(srv.QUICConfig))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.ServeListener(ln)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return &QuicwtServer{Srv: srv, Addr: ln.Addr().String(), Cert: cert}
}

// SessionHandler upgrades every request and hands the session and request
// to f (on the handler's goroutine; f may return while the session lives).
func SessionHandler(t testing.TB, f func(*quicwt.Session, *http.Request)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, err := quicwt.Upgrade(w, r)
		if err != nil {
			t.Errorf("quicwt.Upgrade: %v", err)
			return
		}
		f(sess, r)
	})
}

// Ctx returns a context canceled after d or at the end of the test.
func Ctx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Matrix records which (peer, direction, feature) combinations passed.
type Matrix struct {
	mu   sync.Mutex
	rows map[[3]string]string
}

// Global matrix of the whole run, printed by TestMain (matrix_test.go).
var matrix = &Matrix{rows: map[[3]string]string{}}

// Record marks one combination as passed or failed. A combination that
// was recorded as failing stays failed.
func (m *Matrix) Record(peer, direction, feature string, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	k := [3]string{peer, direction, feature}
	if prev, seen := m.rows[k]; seen && prev == "FAIL" {
		return
	}
	if ok {
		m.rows[k] = "pass"
	} else {
		m.rows[k] = "FAIL"
	}
}

// Track records the combination as passed when the (sub)test t ends
// without failing, and as failed otherwise.
func (m *Matrix) Track(t testing.TB, peer, direction, feature string) {
	t.Cleanup(func() { m.Record(peer, direction, feature, !t.Failed()) })
}

// Table renders the rows as a markdown table, sorted, optionally only
// those whose peer starts with prefix.
func (m *Matrix) Table(prefix string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	keys := make([][3]string, 0, len(m.rows))
	for k := range m.rows {
		if strings.HasPrefix(k[0], prefix) {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		for x := range a {
			if a[x] != b[x] {
				return a[x] < b[x]
			}
		}
		return false
	})
	var b strings.Builder
	b.WriteString("| peer | direction | feature | result |\n|---|---|---|---|\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", k[0], k[1], k[2], m.rows[k])
	}
	return b.String()
}

// Len returns the number of recorded rows.
func (m *Matrix) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.rows)
}
