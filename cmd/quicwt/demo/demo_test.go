package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quicwt/quicwt/cmd/quicwt/internal/certs"
	"github.com/quicwt/quicwt/quicwt"
	"github.com/quicwt/quicwt/settings"
)

// testCert is shared by the tests: generating one is cheap, but sharing
// keeps the restart test on one pinned hash.
func newTestDemo(t *testing.T, store ScoreStore, chat ChatOptions) *Server {
	t.Helper()
	c, err := certs.Generate(nil, certs.DefaultValidity)
	if err != nil {
		t.Fatal(err)
	}
	return startTestDemoWith(t, Config{Cert: c, Store: store, Chat: chat})
}

func startTestDemoWith(t *testing.T, cfg Config) *Server {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	cfg.HTTPAddr = "127.0.0.1:0"
	d, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func testDialer(d *Server) *quicwt.Dialer {
	return &quicwt.Dialer{CertificateHashes: [][32]byte{d.hashes.DER}}
}

// dialDemo opens a session on its own connection.
func dialDemo(t *testing.T, d *Server, path string, hdr http.Header) (*quicwt.Session, *quicwt.ClientConn) {
	t.Helper()
	ctx := testCtx(t)
	cc, err := testDialer(d).DialConn(ctx, d.wtAddr.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	_, sess, err := cc.OpenSession(ctx, d.wtURL+path, hdr)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	return sess, cc
}

func roundTripDatagram(t *testing.T, ctx context.Context, sess *quicwt.Session, p []byte) []byte {
	t.Helper()
	// Datagrams may be lost, even on loopback: retry a few times.
	for i := 0; i < 5; i++ {
		if err := sess.SendDatagram(p); err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		r, err := sess.ReceiveDatagram(rctx)
		cancel()
		if err == nil {
			return r
		}
	}
	t.Fatalf("no datagram reply to %q", p)
	return nil
}

func bidiRoundTrip(t *testing.T, ctx context.Context, sess *quicwt.Session, chunks ...[]byte) string {
	t.Helper()
	s, err := sess.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chunks {
		if _, err := s.Write(c); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func uniRoundTrip(t *testing.T, ctx context.Context, sess *quicwt.Session, p []byte) string {
	t.Helper()
	s, err := sess.OpenUniStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(p); err != nil {
		t.Fatal(err)
	}
	s.Close()
	in, err := sess.AcceptUniStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	in.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(in)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCounter(t *testing.T) {
	d := newTestDemo(t, nil, ChatOptions{})
	sess, _ := dialDemo(t, d, "/counter", nil)
	ctx := testCtx(t)
	if got := roundTripDatagram(t, ctx, sess, []byte("hello")); string(got) != "5" {
		t.Errorf("datagram reply %q, want 5", got)
	}
	if got := uniRoundTrip(t, ctx, sess, []byte("abcdef")); got != "6" {
		t.Errorf("uni reply %q, want 6", got)
	}
	if got := bidiRoundTrip(t, ctx, sess, []byte("xyz")); got != "3" {
		t.Errorf("bidi reply %q, want 3", got)
	}
	// A stream in many writes (many STREAM frames) is counted whole.
	var chunks [][]byte
	for i := 0; i < 300; i++ {
		chunks = append(chunks, bytes.Repeat([]byte{'a' + byte(i%26)}, 1000+i))
	}
	want := 0
	for _, c := range chunks {
		want += len(c)
	}
	if got := bidiRoundTrip(t, ctx, sess, chunks...); got != strconv.Itoa(want) {
		t.Errorf("bidi reply %q for %d bytes in %d writes", got, want, len(chunks))
	}
	if got := uniRoundTrip(t, ctx, sess, bytes.Repeat([]byte("z"), 100000)); got != "100000" {
		t.Errorf("uni reply %q, want 100000", got)
	}
	// An empty stream counts 0.
	if got := bidiRoundTrip(t, ctx, sess); got != "0" {
		t.Errorf("empty bidi reply %q, want 0", got)
	}
}

// A path without an endpoint: 404 for a draft-02 client, as the seed's
// counter sample answered browsers (which speak draft-02), and 405 from
// draft-15 on (draft-ietf-webtrans-http3-16, Section 3.2).
func TestNotFoundAndNotConnect(t *testing.T) {
	d := newTestDemo(t, nil, ChatOptions{})
	draft02 := testDialer(d)
	draft02.AdditionalSettings = []settings.Setting{{ID: settings.WTEnabled}, {ID: settings.WTMaxSessions}}
	for _, tt := range []struct {
		dialer *quicwt.Dialer
		want   int
	}{{testDialer(d), 405}, {draft02, 404}} {
		cc, err := tt.dialer.DialConn(testCtx(t), d.wtAddr.String())
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		_, _, err = cc.OpenSession(testCtx(t), d.wtURL+"/nope", nil)
		var rej *quicwt.RejectedError
		if !errors.As(err, &rej) || rej.StatusCode != tt.want {
			t.Fatalf("unknown path: err %v, want %d", err, tt.want)
		}
	}
}

func TestEcho(t *testing.T) {
	d := newTestDemo(t, nil, ChatOptions{})
	sess, _ := dialDemo(t, d, "/echo", nil)
	ctx := testCtx(t)
	if got := roundTripDatagram(t, ctx, sess, []byte("dgram ü")); string(got) != "dgram ü" {
		t.Errorf("datagram echo %q", got)
	}
	if got := uniRoundTrip(t, ctx, sess, []byte("uni stream")); got != "uni stream" {
		t.Errorf("uni echo %q", got)
	}
	big := bytes.Repeat([]byte("0123456789"), 50000)
	if got := bidiRoundTrip(t, ctx, sess, []byte("bidi "), big); got != "bidi "+string(big) {
		t.Errorf("bidi echo: %d bytes, want %d", len(got), len(big)+5)
	}
}

func TestOrigins(t *testing.T) {
	d := newTestDemo(t, nil, ChatOptions{})
	p := strconv.Itoa(d.httpPort)
	checkOrigins(t, d, []originCase{
		{"", true},
		{"http://localhost:" + p, true},
		{"http://127.0.0.1:" + p, true},
		{"http://[::1]:" + p, true},
		{"https://" + d.wtAddr.String(), true}, // same authority
		{"http://localhost:1", false},
		{"http://evil.example:" + p, false},
		{"https://evil.example", false},
		{"null", false},
	})
}

// -allow-origin: listed origins (in any case, default port or not) are
// accepted besides the server's own, "*" accepts all.
func TestAllowOrigins(t *testing.T) {
	allow, err := ParseOrigins("https://Example.com:443, http://127.0.0.1:9000/")
	if err != nil {
		t.Fatal(err)
	}
	c, err := certs.Generate(nil, certs.DefaultValidity)
	if err != nil {
		t.Fatal(err)
	}
	d := startTestDemoWith(t, Config{Cert: c, AllowOrigins: allow})
	p := strconv.Itoa(d.httpPort)
	checkOrigins(t, d, []originCase{
		{"https://example.com", true},
		{"http://127.0.0.1:9000", true},
		{"http://localhost:" + p, true}, // still the page server's own
		{"http://127.0.0.1:9001", false},
		{"http://example.com", false},
		{"null", false},
	})
	d2 := startTestDemoWith(t, Config{Cert: c, AllowOrigins: []string{"*"}})
	checkOrigins(t, d2, []originCase{{"https://anything.example", true}, {"null", true}})

	for _, bad := range []string{"example.com", "ftp://x", "https://x/path", "https://", "https://u@x"} {
		if _, err := ParseOrigins(bad); err == nil {
			t.Errorf("ParseOrigins(%q) accepted", bad)
		}
	}
}

type originCase struct {
	origin string
	ok     bool
}

// checkOrigins opens one session per case on one QUIC connection: a
// refused origin is a 403 on its CONNECT only, so the connection still
// carries the next session (a last one without Origin proves it).
func checkOrigins(t *testing.T, d *Server, cases []originCase) {
	t.Helper()
	cc, err := testDialer(d).DialConn(testCtx(t), d.wtAddr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	for _, tc := range append(cases, originCase{"", true}) {
		hdr := http.Header{}
		if tc.origin != "" {
			hdr.Set("Origin", tc.origin)
		}
		_, sess, err := cc.OpenSession(testCtx(t), d.wtURL+"/echo", hdr)
		var rej *quicwt.RejectedError
		switch {
		case tc.ok && err != nil:
			t.Errorf("origin %q refused: %v", tc.origin, err)
		case !tc.ok && (!errors.As(err, &rej) || rej.StatusCode != 403):
			t.Errorf("origin %q: err %v, want 403", tc.origin, err)
		}
		if sess != nil {
			sess.Close()
		}
	}
}

func TestPagesAndConfig(t *testing.T) {
	d := newTestDemo(t, nil, ChatOptions{})
	base := fmt.Sprintf("http://127.0.0.1:%d", d.httpPort)
	get := func(path string) string {
		rsp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer rsp.Body.Close()
		b, _ := io.ReadAll(rsp.Body)
		if rsp.StatusCode != 200 {
			t.Fatalf("GET %s: %d", path, rsp.StatusCode)
		}
		return string(b)
	}
	var cfg pageConfig
	if err := json.Unmarshal([]byte(get("/config.json")), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.URL != "https://"+d.wtAddr.String() || cfg.CertHashHex != d.hashes.Hex || !cfg.UseCertHash || cfg.Endpoints["chat"] != cfg.URL+"/chat" {
		t.Errorf("config %+v", cfg)
	}
	index := get("/")
	for _, p := range []string{"counter", "echo", "clicker", "chat"} {
		if !strings.Contains(index, `href="`+p+`.html"`) {
			t.Errorf("index lacks a link to %s", p)
		}
	}
	ids := map[string][]string{
		"counter": {"url", "connect", "disconnect", "status", "log", "payload", "send-datagram", "send-uni", "send-bidi", "last-datagram", "last-uni", "last-bidi", "replies"},
		"echo":    {"url", "connect", "disconnect", "status", "log", "message", "send-datagram", "send-uni", "send-bidi", "last-datagram", "last-uni", "last-bidi", "echoes"},
		"clicker": {"url", "connect", "disconnect", "status", "log", "username", "click-datagram", "click-stream", "score"},
		"chat":    {"url", "connect", "disconnect", "status", "log", "name", "message", "send", "messages"},
	}
	for page, want := range ids {
		body := get("/" + page + ".html")
		for _, id := range want {
			if !strings.Contains(body, `id="`+id+`"`) {
				t.Errorf("%s.html lacks id %q", page, id)
			}
		}
		if !strings.Contains(body, `initState("`+page+`"`) {
			t.Errorf("%s.html does not set up quicwtState", page)
		}
	}
	if js := get("/app.js"); !strings.Contains(js, "serverCertificateHashes") || !strings.Contains(js, "window.quicwtState") {
		t.Error("app.js lacks certificate pinning or state")
	}
}
