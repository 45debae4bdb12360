package settings

import (
	"encoding/hex"
	"strings"
	"testing"
)

var sinkDraft Draft

func benchPayload(b *testing.B, s string) []byte {
	p, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkParse parses Chrome's SETTINGS payload (7 parameters, one of
// them GREASE) into a reused Settings.
func BenchmarkParse(b *testing.B) {
	p := benchPayload(b, chromeSettings)
	var s Settings
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Parse(p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendFrame appends our server's SETTINGS frame into a reused
// buffer.
func BenchmarkAppendFrame(b *testing.B) {
	s := ourServer()
	s.AddGrease(12345)
	buf := make([]byte, 0, 128)
	b.ReportAllocs()
	for b.Loop() {
		buf = s.AppendFrame(buf[:0])
	}
}

// BenchmarkNegotiate negotiates a draft between two parsed SETTINGS.
func BenchmarkNegotiate(b *testing.B) {
	var client, server Settings
	if err := client.Parse(benchPayload(b, chromeSettings)); err != nil {
		b.Fatal(err)
	}
	if err := server.Parse(benchPayload(b, wtgoServerSettings)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		sinkDraft = Negotiate(&client, &server)
	}
}
