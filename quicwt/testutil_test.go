package quicwt

import (
	"context"
	"crypto/tls"
	"net/http"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// testCert makes a certificate for 127.0.0.1, valid 10 days, and its hash.
func testCert(t testing.TB) (tls.Certificate, [32]byte) {
	t.Helper()
	c, err := SelfSignedCertificate(10 * 24 * time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return c, CertificateHash(c.Leaf)
}

type testServer struct {
	srv  *Server
	addr string
	hash [32]byte
}

func (ts *testServer) url(path string) string { return "https://" + ts.addr + path }

func (ts *testServer) dialer() *Dialer {
	return &Dialer{CertificateHashes: [][32]byte{ts.hash}}
}

// startServer runs a Server with handler on a loopback port.
func startServer(t testing.TB, h http.Handler, configure ...func(*Server)) *testServer {
	t.Helper()
	cert, hash := testCert(t)
	srv := &Server{Handler: h, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
	srv.CheckOrigin = func(*http.Request) bool { return true }
	for _, f := range configure {
		f(srv)
	}
	// An early listener, as ListenAndServe uses (lossy_test.go serves a
	// plain one).
	ln, err := quic.ListenAddrEarly("127.0.0.1:0", ConfigureTLSConfig(srv.TLSConfig), ConfigureQUICConfig(srv.QUICConfig))
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeListener(ln)
	t.Cleanup(func() { srv.Close() })
	return &testServer{srv: srv, addr: ln.Addr().String(), hash: hash}
}

// wtHandler upgrades every request and runs f on the session.
func wtHandler(t testing.TB, f func(*Session)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, err := Upgrade(w, r)
		if err != nil {
			t.Logf("upgrade: %v", err)
			return
		}
		f(sess)
	})
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
