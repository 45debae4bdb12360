package quicwt

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// testCert makes an ECDSA P-256 certificate for 127.0.0.1, valid 10 days.
func testCert(t testing.TB) (tls.Certificate, [32]byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "quicwt test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(10 * 24 * time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, sha256.Sum256(der)
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
