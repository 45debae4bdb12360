package varint

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// vectors are byte-exact encodings: RFC 9000 Appendix A.1 and every varint
// listed in spec.md section 2 ("Varint encoding"), plus the length boundaries.
var vectors = []struct {
	name string
	v    uint64
	enc  string
	// minimal is false for the RFC 9000 example of a non-minimal encoding.
	minimal bool
}{
	// RFC 9000, Appendix A.1.
	{"rfc9000 8-byte", 151288809941952652, "c2 19 7c 5e ff 14 e8 8c", true},
	{"rfc9000 4-byte", 494878333, "9d 7f 3e 7d", true},
	{"rfc9000 2-byte", 15293, "7b bd", true},
	{"rfc9000 1-byte", 37, "25", true},
	{"rfc9000 2-byte 37", 37, "40 25", false},
	// spec.md section 2.
	{"WEBTRANSPORT_STREAM 0x41", 0x41, "40 41", true},
	{"WT uni stream 0x54", 0x54, "40 54", true},
	{"WT_CLOSE_SESSION 0x2843", 0x2843, "68 43", true},
	{"WT_DRAIN_SESSION 0x78ae", 0x78ae, "80 00 78 ae", true},
	{"WT_MAX_DATA 0x190B4D3D", 0x190B4D3D, "99 0b 4d 3d", true},
	{"WT_ENABLED 0x2c7cf000", 0x2c7cf000, "ac 7c f0 00", true},
	{"ENABLE_WEBTRANSPORT 0x2b603742", 0x2b603742, "ab 60 37 42", true},
	{"WT_MAX_SESSIONS 0x14e9cd29", 0x14e9cd29, "94 e9 cd 29", true},
	{"WEBTRANSPORT_MAX_SESSIONS 0xc671706a", 0xc671706a, "c0 00 00 00 c6 71 70 6a", true},
	{"H3_DATAGRAM draft-04 0xffd277", 0xffd277, "80 ff d2 77", true},
	{"H3_DATAGRAM 0x33", 0x33, "33", true},
	// Boundaries of each length.
	{"zero", 0, "00", true},
	{"max1", 63, "3f", true},
	{"min2", 64, "40 40", true},
	{"max2", 16383, "7f ff", true},
	{"min4", 16384, "80 00 40 00", true},
	{"max4", 1<<30 - 1, "bf ff ff ff", true},
	{"min8", 1 << 30, "c0 00 00 00 40 00 00 00", true},
	{"max8", Max, "ff ff ff ff ff ff ff ff", true},
}

func TestVectors(t *testing.T) {
	for _, tc := range vectors {
		t.Run(tc.name, func(t *testing.T) {
			enc := unhex(t, tc.enc)
			// Parse, with trailing bytes that must not be consumed.
			v, n, err := Parse(append(append([]byte{}, enc...), 0xff, 0xee))
			if err != nil || v != tc.v || n != len(enc) {
				t.Fatalf("Parse(% x) = %d, %d, %v; want %d, %d", enc, v, n, err, tc.v, len(enc))
			}
			if got := LenOfFirstByte(enc[0]); got != len(enc) {
				t.Fatalf("LenOfFirstByte(%#x) = %d, want %d", enc[0], got, len(enc))
			}
			// Read.
			r := bytes.NewReader(enc)
			v, err = Read(r)
			if err != nil || v != tc.v || r.Len() != 0 {
				t.Fatalf("Read = %d, %v (left %d); want %d", v, err, r.Len(), tc.v)
			}
			// AppendWithLen reproduces the exact bytes, minimal or not.
			got, err := AppendWithLen([]byte{0xaa}, tc.v, len(enc))
			if err != nil || !bytes.Equal(got[1:], enc) || got[0] != 0xaa {
				t.Fatalf("AppendWithLen = % x, %v; want aa % x", got, err, enc)
			}
			pw := make([]byte, len(enc))
			if err := PutWithLen(pw, tc.v); err != nil || !bytes.Equal(pw, enc) {
				t.Fatalf("PutWithLen = % x, %v; want % x", pw, err, enc)
			}
			if !tc.minimal {
				if Len(tc.v) >= len(enc) {
					t.Fatalf("Len(%d) = %d for a non-minimal vector", tc.v, Len(tc.v))
				}
				return
			}
			got, err = Append([]byte{0xaa}, tc.v)
			if err != nil || !bytes.Equal(got[1:], enc) {
				t.Fatalf("Append(%d) = % x, %v; want aa % x", tc.v, got, err, enc)
			}
			if got := MustAppend(nil, tc.v); !bytes.Equal(got, enc) {
				t.Fatalf("MustAppend(%d) = % x; want % x", tc.v, got, enc)
			}
			if Len(tc.v) != len(enc) {
				t.Fatalf("Len(%d) = %d, want %d", tc.v, Len(tc.v), len(enc))
			}
		})
	}
}

func TestTruncated(t *testing.T) {
	for _, tc := range vectors {
		enc := unhex(t, tc.enc)
		for cut := 0; cut < len(enc); cut++ {
			v, n, err := Parse(enc[:cut])
			if !errors.Is(err, ErrTruncated) || v != 0 || n != 0 {
				t.Errorf("Parse(% x) = %d, %d, %v; want ErrTruncated", enc[:cut], v, n, err)
			}
			_, err = Read(bytes.NewReader(enc[:cut]))
			want := io.ErrUnexpectedEOF
			if cut == 0 {
				want = io.EOF
			}
			if err != want {
				t.Errorf("Read(% x) error = %v, want %v", enc[:cut], err, want)
			}
		}
	}
}

type errReader struct {
	b   []byte
	err error
}

func (r *errReader) ReadByte() (byte, error) {
	if len(r.b) == 0 {
		return 0, r.err
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c, nil
}

func TestReadPropagatesErrors(t *testing.T) {
	boom := errors.New("boom")
	if _, err := Read(&errReader{err: boom}); err != boom {
		t.Fatalf("first byte: %v", err)
	}
	if _, err := Read(&errReader{b: []byte{0x80, 1}, err: boom}); err != boom {
		t.Fatalf("inside varint: %v", err)
	}
}

func TestRange(t *testing.T) {
	for _, v := range []uint64{Max + 1, 1 << 63, ^uint64(0)} {
		b := []byte{1, 2}
		got, err := Append(b, v)
		if !errors.Is(err, ErrRange) || !bytes.Equal(got, b) {
			t.Errorf("Append(%#x) = % x, %v; want unchanged, ErrRange", v, got, err)
		}
		if Len(v) != 0 {
			t.Errorf("Len(%#x) = %d, want 0", v, Len(v))
		}
		for _, n := range []int{1, 2, 4, 8} {
			if got, err := AppendWithLen(b, v, n); !errors.Is(err, ErrRange) || !bytes.Equal(got, b) {
				t.Errorf("AppendWithLen(%#x, %d) = % x, %v; want ErrRange", v, n, got, err)
			}
		}
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("MustAppend(%#x) did not panic", v)
				}
			}()
			MustAppend(nil, v)
		}()
	}
}

func TestAppendWithLenErrors(t *testing.T) {
	cases := []struct {
		v uint64
		n int
	}{
		{64, 1}, {16384, 2}, {1 << 30, 4}, {0, 0}, {0, 3}, {0, 5}, {0, 16}, {0, -1},
	}
	for _, c := range cases {
		b := []byte{9}
		got, err := AppendWithLen(b, c.v, c.n)
		if !errors.Is(err, ErrLength) || !bytes.Equal(got, b) {
			t.Errorf("AppendWithLen(%d, %d) = % x, %v; want ErrLength", c.v, c.n, got, err)
		}
	}
	if err := PutWithLen(make([]byte, 3), 1); !errors.Is(err, ErrLength) {
		t.Errorf("PutWithLen into 3 bytes: %v", err)
	}
	if err := PutWithLen(make([]byte, 1), 64); !errors.Is(err, ErrLength) {
		t.Errorf("PutWithLen(64) into 1 byte: %v", err)
	}
}

// TestPutWithLenInPlace checks the patching use: reserve, then overwrite.
func TestPutWithLenInPlace(t *testing.T) {
	b, _ := AppendWithLen([]byte("x"), 0, 4)
	b = append(b, "payload"...)
	if err := PutWithLen(b[1:5], 7); err != nil {
		t.Fatal(err)
	}
	if want := unhex(t, "78 80 00 00 07 7061796c6f6164"); !bytes.Equal(b, want) {
		t.Fatalf("got % x, want % x", b, want)
	}
}

// TestFirstBytes checks every possible first byte against the length rule.
func TestFirstBytes(t *testing.T) {
	for i := 0; i < 256; i++ {
		b0 := byte(i)
		want := []int{1, 2, 4, 8}[i>>6]
		if LenOfFirstByte(b0) != want {
			t.Fatalf("LenOfFirstByte(%#x) = %d", b0, LenOfFirstByte(b0))
		}
		buf := make([]byte, 8)
		buf[0] = b0
		v, n, err := Parse(buf)
		if err != nil || n != want || v != uint64(b0&0x3f)<<(8*(want-1)) {
			t.Fatalf("Parse(%#x 00...) = %d, %d, %v", b0, v, n, err)
		}
	}
}

// TestRoundTripRandom round-trips random values of every length, minimal
// and forced encodings.
func TestRoundTripRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200000; i++ {
		v := r.Uint64() >> (2 + r.UintN(62))
		b, err := Append(nil, v)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != Len(v) {
			t.Fatalf("len(Append(%d)) = %d, Len = %d", v, len(b), Len(v))
		}
		got, n, err := Parse(b)
		if err != nil || got != v || n != len(b) {
			t.Fatalf("Parse(Append(%d)) = %d, %d, %v", v, got, n, err)
		}
		for _, l := range []int{1, 2, 4, 8} {
			fb, err := AppendWithLen(nil, v, l)
			if l < Len(v) {
				if err == nil {
					t.Fatalf("AppendWithLen(%d, %d) accepted", v, l)
				}
				continue
			}
			if err != nil || len(fb) != l {
				t.Fatalf("AppendWithLen(%d, %d) = % x, %v", v, l, fb, err)
			}
			got, n, err := Parse(fb)
			if err != nil || got != v || n != l {
				t.Fatalf("Parse(AppendWithLen(%d, %d)) = %d, %d, %v", v, l, got, n, err)
			}
		}
	}
}

func TestAppendDoesNotAllocateWithCapacity(t *testing.T) {
	buf := make([]byte, 0, 64)
	allocs := testing.AllocsPerRun(100, func() {
		b := buf[:0]
		for _, v := range []uint64{1, 300, 70000, 1 << 40} {
			b, _ = Append(b, v)
			_, _, _ = Parse(b)
		}
	})
	if allocs != 0 {
		t.Fatalf("allocs = %v", allocs)
	}
}
