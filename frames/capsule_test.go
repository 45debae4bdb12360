package frames

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/quicwt/quicwt/varint"
)

var capsuleVectors = []struct {
	name  string
	enc   []byte
	wire  string
	typ   CapsuleType
	value string // hex
}{
	{"DATAGRAM", AppendCapsule(nil, CapsuleDatagram, []byte("abc")), "00 03 61 62 63", CapsuleDatagram, "61 62 63"},
	{"WT_CLOSE_SESSION", AppendCloseSession(nil, 0x1234, "bye"), "68 43 07 00 00 12 34 62 79 65", CapsuleCloseSession, "00 00 12 34 62 79 65"},
	{"WT_CLOSE_SESSION empty", AppendCloseSession(nil, 0xffffffff, ""), "68 43 04 ff ff ff ff", CapsuleCloseSession, "ff ff ff ff"},
	{"WT_DRAIN_SESSION", AppendDrainSession(nil), "80 00 78 ae 00", CapsuleDrainSession, ""},
	{"WT_MAX_DATA", AppendVarintCapsule(nil, CapsuleMaxData, 1000), "99 0b 4d 3d 02 43 e8", CapsuleMaxData, "43 e8"},
	{"WT_MAX_STREAMS bidi", AppendVarintCapsule(nil, CapsuleMaxStreamsBidi, 10), "99 0b 4d 3f 01 0a", CapsuleMaxStreamsBidi, "0a"},
	{"WT_MAX_STREAMS uni", AppendVarintCapsule(nil, CapsuleMaxStreamsUni, 1<<60), "99 0b 4d 40 08 d0 00 00 00 00 00 00 00", CapsuleMaxStreamsUni, "d0 00 00 00 00 00 00 00"},
	{"WT_DATA_BLOCKED", AppendVarintCapsule(nil, CapsuleDataBlocked, 0), "99 0b 4d 41 01 00", CapsuleDataBlocked, "00"},
	{"WT_STREAMS_BLOCKED bidi", AppendVarintCapsule(nil, CapsuleStreamsBlockedBidi, 100), "99 0b 4d 43 02 40 64", CapsuleStreamsBlockedBidi, "40 64"},
	{"WT_STREAMS_BLOCKED uni", AppendVarintCapsule(nil, CapsuleStreamsBlockedUni, 1), "99 0b 4d 44 01 01", CapsuleStreamsBlockedUni, "01"},
}

func TestCapsuleVectors(t *testing.T) {
	for _, c := range capsuleVectors {
		t.Run(c.name, func(t *testing.T) {
			want := unhex(t, c.wire)
			if !bytes.Equal(c.enc, want) {
				t.Fatalf("encoded % x, want % x", c.enc, want)
			}
			if !bytes.Equal(AppendCapsule(nil, c.typ, unhex(t, c.value)), want) {
				t.Fatalf("AppendCapsule does not reproduce it")
			}
			var p CapsuleParser
			got, n, ok, err := p.Next(want)
			if err != nil || !ok || n != len(want) || got.Type != c.typ || !bytes.Equal(got.Value, unhex(t, c.value)) {
				t.Fatalf("Next = %+v, %d, %v, %v", got, n, ok, err)
			}
			if err := p.End(); err != nil {
				t.Fatal(err)
			}
			switch c.typ {
			case CapsuleCloseSession:
				code, msg, err := ParseCloseSession(got.Value)
				if err != nil || uint64(code) != uint64(binaryBE32(got.Value)) || string(msg) != string(got.Value[4:]) {
					t.Fatalf("ParseCloseSession = %#x, %q, %v", code, msg, err)
				}
			case CapsuleDrainSession:
				if err := ParseDrainSession(got.Value); err != nil {
					t.Fatal(err)
				}
			case CapsuleDatagram:
			default:
				v, err := ParseVarintCapsule(c.typ, got.Value)
				if err != nil || !bytes.Equal(AppendVarintCapsule(nil, c.typ, v), want) {
					t.Fatalf("ParseVarintCapsule = %d, %v", v, err)
				}
			}
		})
	}
}

func binaryBE32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func TestCloseSession(t *testing.T) {
	long := strings.Repeat("a", MaxCloseMessage)
	v := append([]byte{0, 0, 0, 1}, long...)
	if _, msg, err := ParseCloseSession(v); err != nil || len(msg) != MaxCloseMessage {
		t.Fatalf("1024-byte message: %d, %v", len(msg), err)
	}
	_, _, err := ParseCloseSession(append(v, 'a'))
	wantErr(t, err, ErrCloseMessage)
	if CodeOf(err) != H3MessageError {
		t.Fatalf("code %v", CodeOf(err))
	}
	_, _, err = ParseCloseSession([]byte{0, 0, 0, 1, 0xff})
	wantErr(t, err, ErrCloseMessage)
	for i := 0; i < 4; i++ {
		_, _, err = ParseCloseSession(make([]byte, i))
		wantErr(t, err, ErrCapsuleMalformed)
	}

	// The sender truncates at a UTF-8 boundary: 1023 ASCII bytes and a
	// 3-byte rune do not fit, so the rune goes.
	msg := strings.Repeat("b", 1023) + "€" + "tail"
	b := AppendCloseSession(nil, 7, msg)
	var p CapsuleParser
	c, _, ok, err := p.Next(b)
	if err != nil || !ok {
		t.Fatal(err)
	}
	code, m, err := ParseCloseSession(c.Value)
	if err != nil || code != 7 || string(m) != strings.Repeat("b", 1023) {
		t.Fatalf("truncated close: %d %d %v", code, len(m), err)
	}
	for _, in := range []string{"", "ok", strings.Repeat("é", 600), strings.Repeat("x", 2000), "bad\xffutf8", strings.Repeat("\xff", 2000)} {
		out := TruncateCloseMessage(in)
		if len(out) > MaxCloseMessage || !utf8.ValidString(out) {
			t.Fatalf("TruncateCloseMessage(%q...) = %d bytes, valid=%v", in[:min(len(in), 8)], len(out), utf8.ValidString(out))
		}
		if utf8.ValidString(in) && len(in) <= MaxCloseMessage && out != in {
			t.Fatalf("valid short message changed")
		}
		if utf8.ValidString(in) && !strings.HasPrefix(in, out) {
			t.Fatalf("truncation is not a prefix")
		}
	}
	if got := TruncateCloseMessage("a\xffb"); got != "a\uFFFDb" {
		t.Fatalf("invalid UTF-8 replaced as %q", got)
	}
	if got := len(TruncateCloseMessage(strings.Repeat("é", 600))); got != 1024 {
		t.Fatalf("2-byte runes truncated to %d", got)
	}
}

func TestDrainSessionMalformed(t *testing.T) {
	wantErr(t, ParseDrainSession([]byte{0}), ErrCapsuleMalformed)
}

func TestVarintCapsuleErrors(t *testing.T) {
	for _, typ := range []CapsuleType{CapsuleMaxData, CapsuleMaxStreamsBidi, CapsuleMaxStreamsUni,
		CapsuleDataBlocked, CapsuleStreamsBlockedBidi, CapsuleStreamsBlockedUni} {
		for _, v := range []string{"", "40", "01 02", "c0 00"} {
			_, err := ParseVarintCapsule(typ, unhex(t, v))
			wantErr(t, err, ErrCapsuleMalformed)
			if CodeOf(err) != H3DatagramError {
				t.Fatalf("code %v", CodeOf(err))
			}
		}
		over := AppendVarintCapsule(nil, typ, MaxStreams+1)
		val := over[len(over)-8:]
		x, err := ParseVarintCapsule(typ, val)
		switch typ {
		case CapsuleMaxData, CapsuleDataBlocked:
			if err != nil || x != MaxStreams+1 {
				t.Fatalf("%v: %d %v", typ, x, err)
			}
			if x, err := ParseVarintCapsule(typ, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}); err != nil || x != 1<<62-1 {
				t.Fatalf("%v max: %d %v", typ, x, err)
			}
		default:
			wantErr(t, err, ErrFlowControlLimit)
			if CodeOf(err) != WTFlowControlError {
				t.Fatalf("code %v", CodeOf(err))
			}
		}
	}
}

// parseWhole runs a fresh parser over b in one call per capsule and
// returns the capsules (values copied) and the first error.
func parseWhole(t testing.TB, b []byte) ([]Capsule, int, error) {
	var p CapsuleParser
	return parseChunks(&p, [][]byte{b})
}

func parseChunks(p *CapsuleParser, chunks [][]byte) ([]Capsule, int, error) {
	var out []Capsule
	total := 0
	for _, ch := range chunks {
		for len(ch) > 0 {
			c, n, ok, err := p.Next(ch)
			total += n
			ch = ch[n:]
			if err != nil {
				return out, total, err
			}
			if ok {
				out = append(out, Capsule{Type: c.Type, Value: append([]byte{}, c.Value...)})
			} else if n == 0 {
				panic("no progress")
			}
		}
	}
	// Zero-length capsules completed exactly at the end are returned by a
	// call with no data.
	for {
		c, _, ok, err := p.Next(nil)
		if err != nil {
			return out, total, err
		}
		if !ok {
			break
		}
		out = append(out, Capsule{Type: c.Type, Value: append([]byte{}, c.Value...)})
	}
	return out, total, p.End()
}

func TestParserSkipsUnknownAndGrease(t *testing.T) {
	var b []byte
	b = AppendCapsule(b, CapsuleType(0x17), []byte("grease"))      // reserved 0x29*0+0x17
	b = AppendCapsule(b, CapsuleType(0x17+0x29*1000), nil)         // reserved, empty
	b = AppendCapsule(b, CapsuleType(0x12345), make([]byte, 5000)) // unknown, over MaxSize
	b = AppendDrainSession(b)
	b = AppendCapsule(b, CapsuleType(0x3fffffff), []byte{1})
	b = AppendCloseSession(b, 1, "x")
	p := CapsuleParser{MaxSize: 100}
	got, _, err := parseChunks(&p, [][]byte{b})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Type != CapsuleDrainSession || got[1].Type != CapsuleCloseSession {
		t.Fatalf("got %+v", got)
	}
	if p.Skipped() != 6+5000+1 {
		t.Fatalf("Skipped = %d", p.Skipped())
	}
	for _, v := range []uint64{0x17, 0x40, 0x17 + 0x29*7} {
		if !IsReservedCapsule(v) || CapsuleType(v).String() != "GREASE" {
			t.Fatalf("%#x not reserved", v)
		}
	}
	if IsReservedCapsule(0x16) || IsReservedCapsule(0x18) || IsReservedCapsule(0) {
		t.Fatal("IsReservedCapsule too wide")
	}
}

// TestParserNoAllocForDeclaredLength feeds capsules that declare huge
// lengths: unknown ones are skipped with no allocation at all, and a known
// one over the limit fails at its header.
func TestParserNoAllocForDeclaredLength(t *testing.T) {
	hdr := varint.MustAppend(nil, 0x29*3+0x17)                        // reserved type 0x92
	hdr = append(hdr, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff) // length 2^62-1
	chunk := make([]byte, 64<<10)
	var p CapsuleParser
	if _, n, ok, err := p.Next(hdr); err != nil || ok || n != len(hdr) {
		t.Fatal(n, ok, err)
	}
	allocs := testing.AllocsPerRun(200, func() {
		if _, n, ok, err := p.Next(chunk); err != nil || ok || n != len(chunk) {
			t.Fatal(n, ok, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("allocs = %v", allocs)
	}
	if err := p.End(); !errors.Is(err, ErrCapsuleIncomplete) {
		t.Fatalf("End = %v", err)
	}

	// Known capsule declaring more than MaxSize: error at the header.
	big := AppendCapsule(nil, CapsuleCloseSession, nil)[:2]
	big = append(big, 0xbf, 0xff, 0xff, 0xff)
	q := CapsuleParser{}
	_, _, _, err := q.Next(big)
	wantErr(t, err, ErrCapsuleTooLarge)
	if CodeOf(err) != H3ExcessiveLoad {
		t.Fatalf("code %v", CodeOf(err))
	}
	// The error is sticky.
	if _, n, _, err2 := q.Next([]byte{1, 2, 3}); err2 != err || n != 0 {
		t.Fatalf("after error: %d %v", n, err2)
	}
	if q.End() != err {
		t.Fatalf("End after error = %v", q.End())
	}

	// An oversized DATAGRAM capsule is dropped, not an error.
	d := CapsuleParser{MaxSize: 4}
	dg := AppendCapsule(nil, CapsuleDatagram, []byte("hello"))
	dg = AppendCapsule(dg, CapsuleDatagram, []byte("hey"))
	got, _, err := parseChunks(&d, [][]byte{dg})
	if err != nil || len(got) != 1 || string(got[0].Value) != "hey" || d.Skipped() != 5 {
		t.Fatalf("got %+v, %v, skipped %d", got, err, d.Skipped())
	}
}

func TestParserLimits(t *testing.T) {
	for _, max := range []uint64{0, 10, DefaultMaxCapsuleSize} {
		limit := max
		if limit == 0 {
			limit = DefaultMaxCapsuleSize
		}
		ok := AppendCapsule(nil, CapsuleCloseSession, make([]byte, limit))
		bad := AppendCapsule(nil, CapsuleCloseSession, make([]byte, limit+1))
		p := CapsuleParser{MaxSize: max}
		if got, _, err := parseChunks(&p, [][]byte{ok}); err != nil || len(got) != 1 || uint64(len(got[0].Value)) != limit {
			t.Fatalf("limit %d: %v", limit, err)
		}
		p = CapsuleParser{MaxSize: max}
		if _, _, err := parseChunks(&p, [][]byte{bad}); !errors.Is(err, ErrCapsuleTooLarge) {
			t.Fatalf("limit %d: %v", limit, err)
		}
	}
}

func TestHTTP2OnlyCapsules(t *testing.T) {
	h2 := map[CapsuleType]string{
		CapsulePadding: "PADDING", CapsuleResetStream: "WT_RESET_STREAM", CapsuleStopSending: "WT_STOP_SENDING",
		CapsuleStream: "WT_STREAM", CapsuleStreamFin: "WT_STREAM_WITH_FIN",
		CapsuleMaxStreamData: "WT_MAX_STREAM_DATA", CapsuleStreamDataBlocked: "WT_STREAM_DATA_BLOCKED",
	}
	for typ, name := range h2 {
		if !typ.IsHTTP2Only() || typ.String() != name {
			t.Errorf("%#x: IsHTTP2Only=%v String=%q", uint64(typ), typ.IsHTTP2Only(), typ.String())
		}
		// Rejected even when larger than the limit: the type decides first.
		for _, size := range []int{0, 3, DefaultMaxCapsuleSize + 1} {
			var p CapsuleParser
			_, _, err := parseChunks(&p, [][]byte{AppendCapsule(nil, typ, make([]byte, size))})
			wantErr(t, err, ErrCapsuleHTTP2Only)
			if CodeOf(err) != H3DatagramError {
				t.Errorf("code %v", CodeOf(err))
			}
		}
	}
	h3 := map[CapsuleType]string{
		CapsuleDatagram: "DATAGRAM", CapsuleCloseSession: "WT_CLOSE_SESSION", CapsuleDrainSession: "WT_DRAIN_SESSION",
		CapsuleMaxData: "WT_MAX_DATA", CapsuleMaxStreamsBidi: "WT_MAX_STREAMS_BIDI", CapsuleMaxStreamsUni: "WT_MAX_STREAMS_UNI",
		CapsuleDataBlocked: "WT_DATA_BLOCKED", CapsuleStreamsBlockedBidi: "WT_STREAMS_BLOCKED_BIDI",
		CapsuleStreamsBlockedUni: "WT_STREAMS_BLOCKED_UNI",
	}
	for typ, name := range h3 {
		if typ.IsHTTP2Only() || typ.String() != name {
			t.Errorf("%#x: IsHTTP2Only=%v String=%q", uint64(typ), typ.IsHTTP2Only(), typ.String())
		}
	}
	if CapsuleType(0x1234).String() != "UNKNOWN" {
		t.Error("unknown name")
	}
}

func TestParserEnd(t *testing.T) {
	b := AppendCloseSession(nil, 5, "closing")
	for cut := 0; cut <= len(b); cut++ {
		var p CapsuleParser
		_, _, err := parseChunks(&p, [][]byte{b[:cut]})
		if cut == 0 || cut == len(b) {
			if err != nil {
				t.Fatalf("cut %d: %v", cut, err)
			}
			continue
		}
		wantErr(t, err, ErrCapsuleIncomplete)
		if CodeOf(err) != H3MessageError {
			t.Fatalf("code %v", CodeOf(err))
		}
	}
}

// randomCapsuleStream builds a valid stream of known, unknown and GREASE
// capsules, including empty ones.
func randomCapsuleStream(r *rand.Rand) []byte {
	var b []byte
	for i := r.IntN(12); i > 0; i-- {
		switch r.IntN(7) {
		case 0:
			b = AppendCapsule(b, CapsuleDatagram, make([]byte, r.IntN(300)))
		case 1:
			b = AppendCloseSession(b, r.Uint32(), strings.Repeat("é", r.IntN(20)))
		case 2:
			b = AppendDrainSession(b)
		case 3:
			b = AppendVarintCapsule(b, CapsuleMaxData, r.Uint64()>>2)
		case 4:
			b = AppendVarintCapsule(b, CapsuleStreamsBlockedUni, r.Uint64N(MaxStreams))
		case 5:
			b = AppendCapsule(b, CapsuleType(0x29*r.Uint64N(1<<40)+0x17), make([]byte, r.IntN(2000)))
		case 6:
			b = AppendCapsule(b, CapsuleType(0x1000+r.Uint64N(1000)), make([]byte, r.IntN(10)))
		}
	}
	return b
}

// TestChunkedEqualsWhole: any split of the input gives the same capsules
// and the same error as the whole input, including byte-by-byte feeding.
func TestChunkedEqualsWhole(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for iter := 0; iter < 300; iter++ {
		b := randomCapsuleStream(r)
		if iter%3 == 0 && len(b) > 0 {
			b = b[:r.IntN(len(b))] // also truncated streams
		}
		if iter%5 == 0 {
			b = append(b, AppendCapsule(nil, CapsulePadding, []byte{0})...) // and failing ones
		}
		want, wn, werr := parseWhole(t, b)
		splits := [][][]byte{bytewise(b)}
		for k := 0; k < 5; k++ {
			splits = append(splits, randomSplit(r, b))
		}
		for _, chunks := range splits {
			var p CapsuleParser
			got, gn, gerr := parseChunks(&p, chunks)
			if gerr != werr || gn != wn || !sameCapsules(got, want) {
				t.Fatalf("iter %d: chunked %d capsules, n=%d, %v; whole %d, n=%d, %v", iter, len(got), gn, gerr, len(want), wn, werr)
			}
		}
	}
}

func bytewise(b []byte) [][]byte {
	out := make([][]byte, len(b))
	for i := range b {
		out[i] = b[i : i+1]
	}
	return out
}

func randomSplit(r *rand.Rand, b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		n := 1 + r.IntN(min(len(b), 64))
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

func sameCapsules(a, b []Capsule) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Type != b[i].Type || !bytes.Equal(a[i].Value, b[i].Value) {
			return false
		}
	}
	return true
}
