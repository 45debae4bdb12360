package main

import (
	"bytes"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicwt/quicwt/quicwt"
)

func TestCheckParseTarget(t *testing.T) {
	for _, tt := range []struct{ in, addr, path string }{
		{"https://127.0.0.1:4433/echo", "127.0.0.1:4433", "/echo"},
		{"127.0.0.1:4433", "127.0.0.1:4433", ""},
		{"https://example.com/wt?x=1", "example.com:443", "/wt?x=1"},
		{"[::1]:4433/p", "[::1]:4433", "/p"},
	} {
		addr, path, err := parseTarget(tt.in)
		if err != nil || addr != tt.addr || path != tt.path {
			t.Errorf("parseTarget(%q) = %q, %q, %v; want %q, %q", tt.in, addr, path, err, tt.addr, tt.path)
		}
	}
	if _, _, err := parseTarget("http://127.0.0.1:4433/"); err == nil {
		t.Error("http URL accepted")
	}
}

func TestCheckUsage(t *testing.T) {
	for _, tt := range []struct {
		args []string
		code int
	}{
		{[]string{"-h"}, 0},
		{nil, 2},
		{[]string{"a:1", "b:2"}, 2},
		{[]string{"-run", "(", "a:1"}, 2},
		{[]string{"-certhash", "zz", "a:1"}, 2},
		{[]string{"-list"}, 0},
	} {
		var out, errb bytes.Buffer
		if got := run(append([]string{"check"}, tt.args...), &out, &errb); got != tt.code {
			t.Errorf("check %v: exit %d, want %d (stderr %q)", tt.args, got, tt.code, errb.String())
		}
	}
	var out bytes.Buffer
	run([]string{"check", "-h"}, &out, &out)
	if !strings.Contains(out.String(), "Examples:") || !strings.Contains(out.String(), "-certhash") {
		t.Errorf("help lacks examples or flags:\n%s", out.String())
	}
}

func checkTestServer(t *testing.T) (addr string, hash [32]byte) {
	cert, err := quicwt.SelfSignedCertificate(24 * time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	srv := &quicwt.Server{
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/echo" {
				http.NotFound(w, r)
				return
			}
			if sess, err := quicwt.Upgrade(w, r); err == nil {
				<-sess.Context().Done()
			}
		}),
	}
	ln, err := quic.ListenAddr("127.0.0.1:0", quicwt.ConfigureTLSConfig(srv.TLSConfig), quicwt.ConfigureQUICConfig(nil))
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String(), quicwt.CertificateHash(cert.Leaf)
}

func TestCheckAgainstQuicwt(t *testing.T) {
	addr, hash := checkTestServer(t)
	hexHash := hex.EncodeToString(hash[:])

	// Text output, flags after the URL, a passing subset: exit 0.
	var out, errb bytes.Buffer
	code := run([]string{"check", "https://" + addr + "/echo", "-certhash", hexHash, "-run", "^(connect|capsules)/", "-timeout", "5s"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "PASS  connect/valid") || !strings.Contains(out.String(), " passed, 0 failed") {
		t.Errorf("unexpected report:\n%s", out.String())
	}

	// JSON output.
	out.Reset()
	code = run([]string{"check", "-json", "-certhash", hexHash, "-run", "^connect/valid$", addr + "/echo"}, &out, &errb)
	var rep struct {
		Passed, Failed int
		Results        []struct{ ID, Status string }
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil || code != 0 || rep.Passed != 1 || rep.Failed != 0 || rep.Results[0].ID != "connect/valid" {
		t.Fatalf("exit %d, report %+v, err %v\n%s", code, rep, err, out.String())
	}

	// A path without WebTransport makes cases fail: exit 1.
	out.Reset()
	code = run([]string{"check", "-certhash", hexHash, "-run", "^connect/valid$", "https://" + addr + "/nothing"}, &out, &errb)
	if code != 1 || !strings.Contains(out.String(), "0 passed, 1 failed") {
		t.Fatalf("exit %d for a failing case\n%s", code, out.String())
	}

	// A wrong certificate hash: the server cannot be reached, exit 1.
	out.Reset()
	errb.Reset()
	code = run([]string{"check", "-certhash", strings.Repeat("00", 32), "-timeout", "3s", addr}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "matches no -certhash") {
		t.Fatalf("exit %d with a wrong hash; stderr %q", code, errb.String())
	}
}
