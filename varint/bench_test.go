package varint

import (
	"fmt"
	"testing"

	"github.com/quic-go/quic-go/quicvarint"
)

var (
	sinkU64 uint64
	sinkInt int
)

// benchValues holds 256 values per encoded length; l = 0 mixes the four
// lengths (64 values each, interleaved), as frame types, lengths and IDs do.
func benchValues(l int) []uint64 {
	if l == 0 {
		vs := make([]uint64, 0, 256)
		a, b, c, d := benchValues(1), benchValues(2), benchValues(4), benchValues(8)
		for i := 0; i < 64; i++ {
			vs = append(vs, a[i], b[i], c[i], d[i])
		}
		return vs
	}
	lo := map[int]uint64{1: 0, 2: max1 + 1, 4: max2 + 1, 8: max4 + 1}[l]
	hi := map[int]uint64{1: max1, 2: max2, 4: max4, 8: Max}[l]
	vs := make([]uint64, 256)
	x := uint64(0x9e3779b97f4a7c15)
	for i := range vs {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		vs[i] = lo + x%(hi-lo+1)
	}
	return vs
}

// BenchmarkParse compares Parse with quicvarint.Parse on 256 encoded
// values of each length (ns/op is per value).
func BenchmarkParse(b *testing.B) {
	for _, l := range []int{1, 2, 4, 8, 0} {
		var enc []byte
		for _, v := range benchValues(l) {
			enc = MustAppend(enc, v)
		}
		b.Run(fmt.Sprintf("len=%s/impl=quicwt", lenName(l)), func(b *testing.B) {
			b.SetBytes(int64(len(enc)))
			b.ReportAllocs()
			var sum uint64
			for b.Loop() {
				for p := enc; len(p) > 0; {
					v, n, err := Parse(p)
					if err != nil {
						b.Fatal(err)
					}
					sum += v
					p = p[n:]
				}
			}
			sinkU64 = sum
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/256, "ns/value")
		})
		b.Run(fmt.Sprintf("len=%s/impl=quicvarint", lenName(l)), func(b *testing.B) {
			b.SetBytes(int64(len(enc)))
			b.ReportAllocs()
			var sum uint64
			for b.Loop() {
				for p := enc; len(p) > 0; {
					v, n, err := quicvarint.Parse(p)
					if err != nil {
						b.Fatal(err)
					}
					sum += v
					p = p[n:]
				}
			}
			sinkU64 = sum
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/256, "ns/value")
		})
	}
}

// BenchmarkAppend compares Append (which returns an error) and MustAppend
// (which, like quicvarint.Append, panics above 2^62-1) with
// quicvarint.Append, into a reused buffer (256 values per op).
func BenchmarkAppend(b *testing.B) {
	for _, l := range []int{1, 2, 4, 8, 0} {
		vs := benchValues(l)
		buf := make([]byte, 0, 8*len(vs))
		b.Run(fmt.Sprintf("len=%s/impl=quicwt", lenName(l)), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				out := buf[:0]
				for _, v := range vs {
					out, _ = Append(out, v)
				}
				sinkInt = len(out)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/256, "ns/value")
		})
		b.Run(fmt.Sprintf("len=%s/impl=quicwt-must", lenName(l)), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				out := buf[:0]
				for _, v := range vs {
					out = MustAppend(out, v)
				}
				sinkInt = len(out)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/256, "ns/value")
		})
		b.Run(fmt.Sprintf("len=%s/impl=quicvarint", lenName(l)), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				out := buf[:0]
				for _, v := range vs {
					out = quicvarint.Append(out, v)
				}
				sinkInt = len(out)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/256, "ns/value")
		})
	}
}

// BenchmarkLen compares Len with quicvarint.Len.
func BenchmarkLen(b *testing.B) {
	vs := append(append(append(benchValues(1), benchValues(2)...), benchValues(4)...), benchValues(8)...)
	b.Run("impl=quicwt", func(b *testing.B) {
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			for _, v := range vs {
				n += Len(v)
			}
		}
		sinkInt = n
	})
	b.Run("impl=quicvarint", func(b *testing.B) {
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			for _, v := range vs {
				n += quicvarint.Len(v)
			}
		}
		sinkInt = n
	})
}

func lenName(l int) string {
	if l == 0 {
		return "mixed"
	}
	return fmt.Sprint(l)
}
