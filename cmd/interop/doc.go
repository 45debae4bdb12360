// Package interop holds the interoperability tests of quicwt against
// github.com/quic-go/webtransport-go and real browsers (Chromium and
// Firefox ESR). Everything lives in the _test.go files; run them with
// `go test ./...` in this directory.
package interop
