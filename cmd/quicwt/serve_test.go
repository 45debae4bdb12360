package main

import (
	"testing"

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
