package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCertCommand(t *testing.T) {
	dir := t.TempDir()
	cf, kf := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	var out, errb bytes.Buffer
	if code := run([]string{"cert", "-cert", cf, "-key", kf, "-host", "example.test", "-host", "10.1.2.3"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	cb, _ := os.ReadFile(cf)
	blk, _ := pem.Decode(cb)
	if blk == nil || blk.Type != "CERTIFICATE" {
		t.Fatal("no certificate PEM")
	}
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Fatalf("key %T, want ECDSA P-256", leaf.PublicKey)
	}
	if v := leaf.NotAfter.Sub(leaf.NotBefore); v > 14*24*time.Hour || v < 12*24*time.Hour {
		t.Errorf("validity %v", v)
	}
	if now := time.Now(); now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		t.Error("certificate not valid now")
	}
	if err := leaf.VerifyHostname("localhost"); err != nil {
		t.Error(err)
	}
	for _, h := range []string{"127.0.0.1", "::1", "example.test", "10.1.2.3"} {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Error(err)
		}
	}
	if _, err := loadCert(cf, kf); err != nil {
		t.Fatalf("key does not match: %v", err)
	}
	der := sha256.Sum256(blk.Bytes)
	spki := sha256.Sum256(leaf.RawSubjectPublicKeyInfo)
	s := out.String()
	for _, want := range []string{hex.EncodeToString(der[:]), base64.StdEncoding.EncodeToString(der[:]), base64.StdEncoding.EncodeToString(spki[:])} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %s:\n%s", want, s)
		}
	}
	// No silent overwrite.
	errb.Reset()
	if code := run([]string{"cert", "-cert", cf, "-key", kf}, &out, &errb); code == 0 {
		t.Error("overwrote existing files without -force")
	}
	if code := run([]string{"cert", "-cert", cf, "-key", kf, "-force"}, &out, &errb); code != 0 {
		t.Error("-force failed")
	}
}

func TestClientCommand(t *testing.T) {
	d := newTestDemo(t, nil, chatOptions{})
	pin := d.hashes.Hex
	for _, tc := range []struct {
		args  []string
		stdin string
		want  string
	}{
		{[]string{"-certhash", pin, d.wtURL + "/echo"}, "hello\nworld\n", "hello\nworld\n"},
		{[]string{"-certhash", d.hashes.Base64, d.wtURL + "/counter"}, strings.Repeat("x", 100000), "100000"},
		{[]string{"-insecure", "-uni", d.wtURL + "/echo"}, "uni data", "uni data"},
		{[]string{"-insecure", "-datagram", "-linger", "2s", d.wtURL + "/counter"}, "a\nbbb\n", "1\n3\n"},
	} {
		var out, errb bytes.Buffer
		code := runClient(tc.args, strings.NewReader(tc.stdin), &out, &errb)
		got := out.String()
		if tc.args[1] == "-datagram" || tc.args[2] == "-datagram" {
			// Datagrams may be reordered (never on loopback in practice);
			// compare as sets.
			g, w := strings.Fields(got), strings.Fields(tc.want)
			if len(g) == len(w) && (g[0] == w[1] && g[1] == w[0]) {
				got = tc.want
			}
		}
		if code != 0 || got != tc.want {
			t.Errorf("client %v: exit %d, output %.40q, want %.40q; stderr %s", tc.args, code, got, tc.want, errb.String())
		}
	}
	// -v prints the draft and the response.
	var out, errb bytes.Buffer
	if code := runClient([]string{"-v", "-certhash", pin, d.wtURL + "/echo"}, strings.NewReader("v"), &out, &errb); code != 0 ||
		!strings.Contains(errb.String(), "draft: draft-") || !strings.Contains(errb.String(), "200") {
		t.Errorf("-v: exit %d, stderr %q", code, errb.String())
	}
	// A wrong pin fails with one line.
	errb.Reset()
	wrong := strings.Repeat("00", 32)
	if code := runClient([]string{"-certhash", wrong, d.wtURL + "/echo"}, strings.NewReader(""), &out, &errb); code == 0 || strings.Count(errb.String(), "\n") != 1 {
		t.Errorf("wrong pin: exit %d, stderr %q", code, errb.String())
	}
	// A path without an endpoint (405 for our draft-15/16 client) fails
	// with one line.
	errb.Reset()
	if code := runClient([]string{"-insecure", d.wtURL + "/nope"}, strings.NewReader(""), &out, &errb); code == 0 || !strings.Contains(errb.String(), "405") || strings.Count(errb.String(), "\n") != 1 {
		t.Errorf("405: exit %d, stderr %q", code, errb.String())
	}
}

// Bad flags, arguments and URLs: a non-zero exit and exactly one line on
// stderr, never a stack trace.
func TestBadInvocations(t *testing.T) {
	for _, args := range [][]string{
		{"nosuchcommand"},
		{"serve", "-bogus"},
		{"serve", "-log-level", "loud"},
		{"serve", "-store", "cloud"},
		{"serve", "-cert", "x.pem"},
		{"serve", "-addr", "not-an-address", "-http", "", "-store", "memory"},
		{"serve", "-cert", "/nonexistent.pem", "-key", "/nonexistent.key"},
		{"serve", "extra"},
		{"client"},
		{"client", "-bogus", "https://x"},
		{"client", "http://127.0.0.1:1/echo"},
		{"client", "https://"},
		{"client", "::"},
		{"client", "https://[::1"},
		{"client", "-certhash", "zz", "https://127.0.0.1:1/"},
		{"client", "-H", "novalue", "https://127.0.0.1:1/"},
		{"client", "-datagram", "-uni", "https://127.0.0.1:1/"},
		{"client", "-timeout", "300ms", "-insecure", "https://127.0.0.1:1/echo"},
		{"cert", "-days", "15"},
		{"cert", "-nope"},
		{"interop", "-role", "middle"},
		{"interop", "-x"},
	} {
		var out, errb bytes.Buffer
		var code int
		if args[0] == "client" {
			code = runClient(args[1:], strings.NewReader(""), &out, &errb)
		} else {
			code = run(args, &out, &errb)
		}
		e := errb.String()
		if args[0] == "nosuchcommand" {
			e = strings.SplitN(e, "\n", 2)[0] + "\n"
		}
		if code == 0 || strings.Count(e, "\n") != 1 || strings.Contains(e, "goroutine") || strings.Contains(e, "panic") {
			t.Errorf("%q: exit %d, stderr %q", args, code, errb.String())
		}
	}
}

func TestHelp(t *testing.T) {
	for _, c := range []string{"serve", "client", "cert", "interop"} {
		var out, errb bytes.Buffer
		if code := run([]string{c, "-h"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "examples:") || !strings.Contains(out.String(), "quicwt "+c) {
			t.Errorf("%s -h: exit %d, output %q", c, code, out.String())
		}
	}
	var out, errb bytes.Buffer
	if code := run([]string{"help"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "serve") {
		t.Errorf("help: %d %q", code, out.String())
	}
}
