package frames

import (
	"bytes"
	"testing"
)

var sinkU64 uint64

// BenchmarkParseHeader parses a control-stream-like run of 64 frame headers
// (1-, 2- and 4-byte types and lengths).
func BenchmarkParseHeader(b *testing.B) {
	var buf []byte
	for i := 0; i < 16; i++ {
		buf = AppendHeader(buf, TypeData, 1200)
		buf = AppendHeader(buf, TypeHeaders, 40)
		buf = AppendHeader(buf, TypePriorityUpdateRequest, 5)
		buf = AppendHeader(buf, Type(ReservedValue(uint64(i))), 0)
	}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	var sum uint64
	for b.Loop() {
		for p := buf; len(p) > 0; {
			h, n, err := ParseHeader(p, 1<<16)
			if err != nil {
				b.Fatal(err)
			}
			sum += h.Length
			p = p[n:]
		}
	}
	sinkU64 = sum
}

// BenchmarkReadHeader is ParseHeader's io.ByteReader counterpart.
func BenchmarkReadHeader(b *testing.B) {
	buf := AppendHeader(nil, TypeHeaders, 1000)
	r := bytes.NewReader(buf)
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(buf)
		h, err := ReadHeader(r, 1<<16)
		if err != nil {
			b.Fatal(err)
		}
		sinkU64 += h.Length
	}
}

// BenchmarkCheck queries the allowed-frame table.
func BenchmarkCheck(b *testing.B) {
	b.ReportAllocs()
	types := []Type{TypeData, TypeHeaders, TypeSettings, 0x21, TypeGoaway}
	for b.Loop() {
		for _, t := range types {
			if known, _ := Check(t, KindRequest, true); known {
				sinkU64++
			}
		}
	}
}

func capsuleBenchStream() []byte {
	var b []byte
	for i := 0; i < 8; i++ {
		b = AppendCapsule(b, CapsuleDatagram, make([]byte, 100))
		b = AppendVarintCapsule(b, CapsuleMaxData, 1<<20)
		b = AppendCapsule(b, CapsuleType(0x17+0x29*uint64(i)), make([]byte, 50))
		b = AppendVarintCapsule(b, CapsuleMaxStreamsBidi, 100)
	}
	return AppendCloseSession(b, 42, "bye")
}

// BenchmarkCapsuleParse feeds a stream of 33 capsules (DATAGRAM,
// WT_MAX_DATA, GREASE, WT_MAX_STREAMS, WT_CLOSE_SESSION) whole to a reused
// parser.
func BenchmarkCapsuleParse(b *testing.B) {
	stream := capsuleBenchStream()
	var p CapsuleParser
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		for data := stream; len(data) > 0; {
			c, n, ok, err := p.Next(data)
			if err != nil {
				b.Fatal(err)
			}
			if ok {
				sinkU64 += uint64(len(c.Value))
			}
			data = data[n:]
		}
	}
}

// BenchmarkCapsuleParseChunked feeds the same stream in 7-byte chunks, so
// capsule values straddle calls and go through the parser's buffer.
func BenchmarkCapsuleParseChunked(b *testing.B) {
	stream := capsuleBenchStream()
	var p CapsuleParser
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		for off := 0; off < len(stream); off += 7 {
			data := stream[off:min(off+7, len(stream))]
			for len(data) > 0 {
				c, n, ok, err := p.Next(data)
				if err != nil {
					b.Fatal(err)
				}
				if ok {
					sinkU64 += uint64(len(c.Value))
				}
				data = data[n:]
			}
		}
	}
}

// BenchmarkWTErrorMapping maps application codes to HTTP/3 and back.
func BenchmarkWTErrorMapping(b *testing.B) {
	b.ReportAllocs()
	n := uint32(0)
	for b.Loop() {
		c, _ := WTApplicationCode(WTErrorToH3(n))
		n = c + 12345
	}
	sinkU64 = uint64(n)
}
