package main

import (
	"bytes"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/quicwt/quicwt/cmd/quicwt/demo"
)

// The demo's own tests are in ./demo; the command's tests (cli_test.go)
// need a running demo server to talk to.

type chatOptions = demo.ChatOptions

// testDemo is what the command's tests use of a running demo server.
type testDemo struct {
	wtURL  string
	hashes certHashes
}

// newTestDemo starts a demo server on loopback with free ports (a memory
// store when store is nil), closed in t.Cleanup.
func newTestDemo(t *testing.T, store demo.ScoreStore, chat chatOptions) *testDemo {
	t.Helper()
	c, err := genCert(nil, defaultValidity)
	if err != nil {
		t.Fatal(err)
	}
	if store == nil {
		store = demo.NewMemoryStore()
	}
	d, err := demo.Start(demo.Config{Addr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", Cert: c, Store: store, Chat: chat})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return &testDemo{wtURL: d.WTURL(), hashes: d.Hashes()}
}

// Flags of serve added with Redis and cross-origin pages: bad values and
// an unreachable Redis exit non-zero with one line, within bounded time.
func TestServeRedisAndOriginFlags(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "redis://" + l.Addr().String() + "/0"
	l.Close() // nothing listens there now
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"-allow-origin", "example.com"}, 2, "-allow-origin: bad origin"},
		{[]string{"-allow-origin", "https://x/path"}, 2, "-allow-origin: bad origin"},
		{[]string{"-redis", closed, "-store", "memory"}, 2, "exclusive"},
		{[]string{"-redis", "mysql://x", "-http", ""}, 1, "bad Redis URL"},
		{[]string{"-redis", closed, "-addr", "127.0.0.1:0", "-http", ""}, 1, "unreachable"},
	} {
		var out, errb bytes.Buffer
		start := time.Now()
		code := run(append([]string{"serve"}, tc.args...), &out, &errb)
		e := errb.String()
		if code != tc.code || strings.Count(e, "\n") != 1 || !strings.Contains(e, tc.want) {
			t.Errorf("serve %q: exit %d, stderr %q; want exit %d and %q", tc.args, code, e, tc.code, tc.want)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("serve %q took %v", tc.args, d)
		}
	}
}
