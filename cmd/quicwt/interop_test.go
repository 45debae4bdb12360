package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicwt/quicwt/frames"
	"github.com/quicwt/quicwt/quicwt"
)

// syncBuffer is a goroutine-safe bytes.Buffer for a command's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

type interopEnv struct {
	dir, cert, key string
	port           int
}

func newInteropEnv(t *testing.T) *interopEnv {
	t.Helper()
	e := &interopEnv{dir: t.TempDir(), port: freeUDPPort(t)}
	c, err := genCert(nil, defaultValidity)
	if err != nil {
		t.Fatal(err)
	}
	kp, _ := keyPEM(c)
	e.cert, e.key = filepath.Join(e.dir, "cert.pem"), filepath.Join(e.dir, "priv.key")
	writeFile(t, e.cert, certPEM(c))
	writeFile(t, e.key, kp)
	return e
}

// files: endpoint -> name -> contents.
type fileSet map[string]map[string][]byte

func (f fileSet) write(t *testing.T, root string) {
	for ep, files := range f {
		os.MkdirAll(filepath.Join(root, ep), 0o755)
		for name, data := range files {
			writeFile(t, filepath.Join(root, ep, name), data)
		}
	}
}

func (f fileSet) check(t *testing.T, root string) {
	t.Helper()
	for ep, files := range f {
		for name, data := range files {
			got, err := os.ReadFile(filepath.Join(root, ep, name))
			if err != nil {
				t.Errorf("download %s/%s: %v", ep, name, err)
				continue
			}
			if !bytes.Equal(got, data) {
				t.Errorf("download %s/%s: %d bytes differ from the %d served", ep, name, len(got), len(data))
			}
		}
	}
}

// run runs both roles; the server first, the client once it listens.
func (e *interopEnv) run(t *testing.T, server, client []string) (int, int, string, string) {
	t.Helper()
	var sout, serr, cout, cerr syncBuffer
	sargs := append([]string{"-role", "server", "-addr", fmt.Sprintf("127.0.0.1:%d", e.port), "-cert", e.cert, "-key", e.key,
		"-www", filepath.Join(e.dir, "server-www"), "-downloads", filepath.Join(e.dir, "server-dl"), "-log", "", "-timeout", "20s"}, server...)
	cargs := append([]string{"-role", "client", "-www", filepath.Join(e.dir, "client-www"), "-downloads", filepath.Join(e.dir, "client-dl"),
		"-log", "", "-timeout", "20s"}, client...)
	sdone := make(chan int, 1)
	go func() { sdone <- runInterop(sargs, &sout, &serr) }()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(serr.String(), "listening") {
		if time.Now().After(deadline) {
			t.Fatalf("server did not start: %s", serr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	ccode := runInterop(cargs, &cout, &cerr)
	var scode int
	select {
	case scode = <-sdone:
	case <-time.After(25 * time.Second):
		t.Fatalf("server did not finish; its log:\n%s", serr.String())
	}
	if scode != 0 || ccode != 0 {
		t.Logf("server log:\n%s\nclient log:\n%s", serr.String(), cerr.String())
	}
	return scode, ccode, serr.String(), cerr.String()
}

func (e *interopEnv) url(ep, file string) string {
	return fmt.Sprintf("https://127.0.0.1:%d/%s/%s", e.port, ep, file)
}

func TestInteropHandshake(t *testing.T) {
	e := newInteropEnv(t)
	fileSet{"ep": {"x": []byte("x")}}.write(t, filepath.Join(e.dir, "server-www"))
	s, c, _, _ := e.run(t, []string{"-testcase", "handshake", "-protocols", "alpha beta"},
		[]string{"-testcase", "handshake", "-protocols", "gamma beta alpha", "-requests", e.url("ep", "")})
	if s != 0 || c != 0 {
		t.Fatalf("exit codes server %d client %d", s, c)
	}
	for _, side := range []string{"server-dl", "client-dl"} {
		got, err := os.ReadFile(filepath.Join(e.dir, side, "negotiated_protocol.txt"))
		if err != nil || string(got) != "beta" {
			t.Errorf("%s negotiated_protocol.txt: %q, %v; want beta", side, got, err)
		}
	}
}

// The client requests files from the server, on several sessions of one
// connection at once.
func TestInteropClientReceives(t *testing.T) {
	for _, kind := range []string{"unidirectional", "bidirectional", "datagram"} {
		t.Run(kind, func(t *testing.T) {
			e := newInteropEnv(t)
			size := 300000
			if kind == "datagram" {
				size = 900
			}
			files := fileSet{
				"ep1": {"a.bin": randomBytes(size), "b.txt": []byte("hello b\n")},
				"ep2": {"c.bin": randomBytes(size / 3)},
			}
			files.write(t, filepath.Join(e.dir, "server-www"))
			reqs := strings.Join([]string{e.url("ep1", "a.bin"), e.url("ep1", "b.txt"), e.url("ep2", "c.bin")}, " ")
			s, c, slog, _ := e.run(t, []string{"-testcase", "transfer"},
				[]string{"-testcase", "transfer-" + kind + "-receive", "-requests", reqs})
			if s != 0 || c != 0 {
				t.Fatalf("exit codes server %d client %d", s, c)
			}
			files.check(t, filepath.Join(e.dir, "client-dl"))
			if n := strings.Count(slog, "msg=session "); n != 2 {
				t.Errorf("server saw %d sessions, want 2", n)
			}
		})
	}
}

// The server requests files from the client.
func TestInteropServerSends(t *testing.T) {
	for _, kind := range []string{"unidirectional", "bidirectional", "datagram"} {
		t.Run(kind, func(t *testing.T) {
			e := newInteropEnv(t)
			size := 200000
			if kind == "datagram" {
				size = 1000
			}
			files := fileSet{
				"ep1": {"a.bin": randomBytes(size), "b.txt": []byte("hello b\n")},
				"ep2": {"c.bin": randomBytes(size / 2)},
			}
			files.write(t, filepath.Join(e.dir, "client-www"))
			// The server discovers its endpoints from its www directory.
			fileSet{"ep1": {}, "ep2": {}}.write(t, filepath.Join(e.dir, "server-www"))
			s, c, _, _ := e.run(t, []string{"-testcase", "transfer-" + kind + "-send", "-requests", "/ep1/a.bin /ep1/b.txt /ep2/c.bin"},
				[]string{"-testcase", "transfer", "-requests", e.url("ep1", "") + " " + e.url("ep2", "")})
			if s != 0 || c != 0 {
				t.Fatalf("exit codes server %d client %d", s, c)
			}
			files.check(t, filepath.Join(e.dir, "server-dl"))
		})
	}
}

func TestInteropUnsupported(t *testing.T) {
	for _, args := range [][]string{
		{"-role", "server", "-testcase", "transfer-bidirectional-receive"},
		{"-role", "client", "-testcase", "transfer-bidirectional-send"},
		{"-role", "server", "-testcase", "zerortt"},
		{"-role", "client", "-testcase", ""},
	} {
		var out, errb syncBuffer
		if code := runInterop(args, &out, &errb); code != 127 {
			t.Errorf("%v: exit code %d, want 127", args, code)
		}
	}
}

// holdingServer is a quicwt server that accepts every session and then
// never answers: it reads no stream, opens none and sends no datagram, and
// keeps each session open until the test ends. Each accepted session is
// sent on the returned channel.
func holdingServer(t *testing.T) (string, <-chan *quicwt.Session) {
	t.Helper()
	cert, err := genCert(nil, defaultValidity)
	if err != nil {
		t.Fatal(err)
	}
	sessions := make(chan *quicwt.Session, 16)
	srv := &quicwt.Server{
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sess, err := quicwt.Upgrade(w, r)
			if err != nil {
				return
			}
			sessions <- sess
			<-sess.Context().Done()
		}),
	}
	ln, err := quic.ListenAddr("127.0.0.1:0", quicwt.ConfigureTLSConfig(srv.TLSConfig), quicwt.ConfigureQUICConfig(nil))
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.ServeListener(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String(), sessions
}

// Issue 18, item 3: against a server that accepts and never answers, the
// interop client ends within its -timeout (it used to wait for QUIC's
// 30 s idle timeout on the response streams).
func TestInteropClientTimeout(t *testing.T) {
	for _, tc := range []string{"transfer-bidirectional-receive", "transfer-unidirectional-receive", "transfer-datagram-receive", "transfer"} {
		t.Run(tc, func(t *testing.T) {
			t.Parallel()
			addr, sessions := holdingServer(t)
			dir := t.TempDir()
			var out, errb syncBuffer
			args := []string{"-role", "client", "-testcase", tc, "-timeout", "2s", "-log", "",
				"-www", filepath.Join(dir, "www"), "-downloads", filepath.Join(dir, "dl"),
				"-requests", fmt.Sprintf("https://%s/ep/a.txt https://%s/ep/b.txt", addr, addr)}
			done := make(chan int, 1)
			start := time.Now()
			go func() { done <- runInterop(args, &out, &errb) }()
			select {
			case <-sessions:
			case <-time.After(10 * time.Second):
				t.Fatalf("no session reached the server; client log:\n%s", errb.String())
			}
			select {
			case code := <-done:
				if code == 0 {
					t.Errorf("exit code 0 against a server that never answers; log:\n%s", errb.String())
				}
				if !strings.Contains(errb.String(), "timed out") {
					t.Errorf("the error does not say the test case timed out:\n%s", errb.String())
				}
				t.Logf("ended after %v with exit code %d", time.Since(start).Round(time.Millisecond), code)
			case <-time.After(10 * time.Second):
				t.Fatalf("-timeout 2s: still running after 10 s; log:\n%s", errb.String())
			}
		})
	}
}

// protocolServer is a quicwt server whose handler answers every session
// with the given WT-Protocol field lines, then holds the session until the
// client ends it; each session's end is sent on the returned channel.
func protocolServer(t *testing.T, wtProtocol []string) (string, <-chan error) {
	t.Helper()
	cert, err := genCert(nil, defaultValidity)
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 4)
	srv := &quicwt.Server{
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Wt-Protocol"] = wtProtocol
			sess, err := quicwt.Upgrade(w, r)
			if err != nil {
				return
			}
			<-sess.Context().Done()
			ended <- sess.Err()
		}),
	}
	ln, err := quic.ListenAddr("127.0.0.1:0", quicwt.ConfigureTLSConfig(srv.TLSConfig), quicwt.ConfigureQUICConfig(nil))
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.ServeListener(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String(), ended
}

// A server's choice outside the client's list closes the session with
// WT_ALPN_ERROR (draft-ietf-webtrans-http3, Section 3.3), not
// WT_BUFFERED_STREAM_REJECTED; and every WT-Protocol field line counts: two
// lines are a list, not the one sf-string the header must be.
func TestInteropClientRejectsUnofferedProtocol(t *testing.T) {
	for name, lines := range map[string][]string{
		"not offered":     {`"zeta"`},
		"two field lines": {`"alpha"`, `"beta"`},
	} {
		t.Run(name, func(t *testing.T) {
			addr, ended := protocolServer(t, lines)
			dir := t.TempDir()
			var out, errb syncBuffer
			code := runInterop([]string{"-role", "client", "-testcase", "handshake", "-timeout", "10s", "-log", "",
				"-protocols", "alpha beta", "-downloads", dir, "-requests", "https://" + addr + "/ep"}, &out, &errb)
			if code == 0 {
				t.Errorf("exit code 0 for WT-Protocol %q; log:\n%s", lines, errb.String())
			}
			select {
			case err := <-ended:
				var se *quicwt.SessionError
				if !errors.As(err, &se) || !se.Remote || se.Code != quicwt.SessionErrorCode(frames.WTALPNError) {
					t.Errorf("server saw the session end with %v; want a close by the peer with WT_ALPN_ERROR (%#x)", err, quicwt.SessionErrorCode(frames.WTALPNError))
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the session did not end at the server")
			}
		})
	}
}

// The interop server reads every field line of WT-Available-Protocols:
// offered as two lines, "gamma" then "beta", it picks beta.
func TestInteropServerReadsEveryProtocolLine(t *testing.T) {
	e := newInteropEnv(t)
	fileSet{"ep": {"x": []byte("x")}}.write(t, filepath.Join(e.dir, "server-www"))
	var sout, serr syncBuffer
	sdone := make(chan int, 1)
	go func() {
		sdone <- runInterop([]string{"-role", "server", "-testcase", "handshake", "-protocols", "alpha beta",
			"-addr", fmt.Sprintf("127.0.0.1:%d", e.port), "-cert", e.cert, "-key", e.key, "-www", filepath.Join(e.dir, "server-www"),
			"-downloads", filepath.Join(e.dir, "server-dl"), "-log", "", "-timeout", "20s"}, &sout, &serr)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(serr.String(), "listening") {
		if time.Now().After(deadline) {
			t.Fatalf("server did not start: %s", serr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := &quicwt.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	hdr := http.Header{}
	hdr.Add("WT-Available-Protocols", `"gamma"`)
	hdr.Add("WT-Available-Protocols", `"beta"`)
	rsp, sess, err := d.Dial(ctx, e.url("ep", ""), hdr)
	if err != nil {
		t.Fatal(err)
	}
	if got := rsp.Header.Values("Wt-Protocol"); len(got) != 1 || got[0] != `"beta"` {
		t.Errorf("WT-Protocol %q, want [\"beta\"]", got)
	}
	sess.CloseWithError(0, "")
	select {
	case code := <-sdone:
		if code != 0 {
			t.Errorf("server exit code %d; log:\n%s", code, serr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("server did not finish; log:\n%s", serr.String())
	}
	if got, err := os.ReadFile(filepath.Join(e.dir, "server-dl", "negotiated_protocol.txt")); err != nil || string(got) != "beta" {
		t.Errorf("negotiated_protocol.txt: %q, %v; want beta", got, err)
	}
}
