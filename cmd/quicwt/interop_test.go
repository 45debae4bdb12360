package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
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

func TestSFStrings(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{`"a", "b"`, []string{"a", "b"}},
		{`"a";q=1,"b\"c"`, []string{"a", `b"c`}},
		{`"a",`, nil},
		{`a`, nil},
		{``, nil},
	} {
		got := parseSFStringList(tc.in)
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("parseSFStringList(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := sfStringList([]string{"a", `b"c`}); got != `"a", "b\"c"` {
		t.Errorf("sfStringList: %s", got)
	}
	if p, ok := parseSFString(`"x";a=1`); !ok || p != "x" {
		t.Errorf("parseSFString: %q %v", p, ok)
	}
}
