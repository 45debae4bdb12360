package frames

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"math"
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

func wantErr(t testing.TB, got, want error) {
	t.Helper()
	if !errors.Is(got, want) {
		t.Fatalf("error = %v, want %v", got, want)
	}
}

// frameVectors are byte-exact frames: what the encoder must produce and
// what the parsers must read back.
var frameVectors = []struct {
	name  string
	enc   func() []byte
	wire  string
	check func(t *testing.T, f Frame)
}{
	{"DATA header", func() []byte { return AppendDataHeader(nil, 5) }, "00 05", nil},
	{"DATA header 2-byte length", func() []byte { return AppendDataHeader(nil, 300) }, "00 41 2c", nil},
	{"HEADERS", func() []byte { return AppendHeaders(nil, []byte{0, 0, 0xd1}) }, "01 03 00 00 d1",
		func(t *testing.T, f Frame) {
			if !bytes.Equal(f.Payload, []byte{0, 0, 0xd1}) {
				t.Fatalf("payload % x", f.Payload)
			}
		}},
	{"CANCEL_PUSH", func() []byte { return AppendCancelPush(nil, 3) }, "03 01 03",
		func(t *testing.T, f Frame) {
			if id, err := ParseCancelPush(f.Payload); err != nil || id != 3 {
				t.Fatalf("ParseCancelPush = %d, %v", id, err)
			}
		}},
	{"SETTINGS empty", func() []byte { return AppendFrame(nil, TypeSettings, nil) }, "04 00", nil},
	{"PUSH_PROMISE", func() []byte { return AppendPushPromise(nil, 64, []byte{0xab}) }, "05 03 40 40 ab",
		func(t *testing.T, f Frame) {
			id, fs, err := ParsePushPromise(f.Payload)
			if err != nil || id != 64 || !bytes.Equal(fs, []byte{0xab}) {
				t.Fatalf("ParsePushPromise = %d, % x, %v", id, fs, err)
			}
		}},
	{"GOAWAY", func() []byte { return AppendGoaway(nil, 4) }, "07 01 04",
		func(t *testing.T, f Frame) {
			if id, err := ParseGoaway(f.Payload); err != nil || id != 4 {
				t.Fatalf("ParseGoaway = %d, %v", id, err)
			}
		}},
	{"GOAWAY 0x2843", func() []byte { return AppendGoaway(nil, 0x2843) }, "07 02 68 43",
		func(t *testing.T, f Frame) {
			if id, err := ParseGoaway(f.Payload); err != nil || id != 0x2843 {
				t.Fatalf("ParseGoaway = %d, %v", id, err)
			}
		}},
	{"GOAWAY max", func() []byte { return AppendGoaway(nil, 1<<62-1) }, "07 08 ff ff ff ff ff ff ff ff",
		func(t *testing.T, f Frame) {
			if id, err := ParseGoaway(f.Payload); err != nil || id != 1<<62-1 {
				t.Fatalf("ParseGoaway = %d, %v", id, err)
			}
		}},
	{"MAX_PUSH_ID", func() []byte { return AppendMaxPushID(nil, 0x3fff) }, "0d 02 7f ff",
		func(t *testing.T, f Frame) {
			if id, err := ParseMaxPushID(f.Payload); err != nil || id != 0x3fff {
				t.Fatalf("ParseMaxPushID = %d, %v", id, err)
			}
		}},
	{"PRIORITY_UPDATE request", func() []byte {
		return AppendPriorityUpdate(nil, TypePriorityUpdateRequest, 4, []byte("u=1"))
	}, "80 0f 07 00 04 04 75 3d 31",
		func(t *testing.T, f Frame) {
			id, v, err := ParsePriorityUpdate(f.Payload)
			if err != nil || id != 4 || string(v) != "u=1" {
				t.Fatalf("ParsePriorityUpdate = %d, %q, %v", id, v, err)
			}
		}},
	{"PRIORITY_UPDATE push", func() []byte {
		return AppendPriorityUpdate(nil, TypePriorityUpdatePush, 7, nil)
	}, "80 0f 07 01 01 07",
		func(t *testing.T, f Frame) {
			id, v, err := ParsePriorityUpdate(f.Payload)
			if err != nil || id != 7 || len(v) != 0 {
				t.Fatalf("ParsePriorityUpdate = %d, %q, %v", id, v, err)
			}
		}},
	{"GREASE frame 0x21", func() []byte { return AppendFrame(nil, Type(ReservedValue(0)), []byte("x")) }, "21 01 78", nil},
	{"GREASE frame 0x40", func() []byte { return AppendFrame(nil, Type(ReservedValue(1)), nil) }, "40 40 00", nil},
	{"ORIGIN", func() []byte { return AppendFrame(nil, TypeOrigin, nil) }, "0c 00", nil},
}

func TestFrameVectors(t *testing.T) {
	for _, tc := range frameVectors {
		t.Run(tc.name, func(t *testing.T) {
			want := unhex(t, tc.wire)
			got := tc.enc()
			if !bytes.Equal(got, want) {
				t.Fatalf("encoded % x, want % x", got, want)
			}
			h, n, err := ParseHeader(want, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			if HeaderLen(h.Type, h.Length) != n {
				t.Fatalf("HeaderLen = %d, parsed %d", HeaderLen(h.Type, h.Length), n)
			}
			if !bytes.Equal(AppendHeader(nil, h.Type, h.Length), want[:n]) {
				t.Fatalf("AppendHeader does not reproduce the header")
			}
			rh, err := ReadHeader(bytes.NewReader(want), 1<<20)
			if err != nil || rh != h {
				t.Fatalf("ReadHeader = %+v, %v; ParseHeader %+v", rh, err, h)
			}
			if h.Type == TypeData && tc.check == nil {
				return // a DATA header without its payload
			}
			f, fn, err := ParseFrame(append(append([]byte{}, want...), 0xee), 1<<20)
			if err != nil || fn != len(want) || f.Type != h.Type || uint64(len(f.Payload)) != h.Length {
				t.Fatalf("ParseFrame = %+v, %d, %v", f, fn, err)
			}
			if cap(f.Payload) != len(f.Payload) {
				t.Fatalf("payload capacity leaks the following bytes")
			}
			if !bytes.Equal(AppendFrame(nil, f.Type, f.Payload), want) {
				t.Fatalf("AppendFrame does not reproduce the frame")
			}
			if tc.check != nil {
				tc.check(t, f)
			}
		})
	}
}

func TestSingleVarintPayloadErrors(t *testing.T) {
	parsers := map[string]func([]byte) (uint64, error){
		"GOAWAY": ParseGoaway, "CANCEL_PUSH": ParseCancelPush, "MAX_PUSH_ID": ParseMaxPushID,
	}
	for name, parse := range parsers {
		for _, p := range []string{"", "40", "04 00", "80 00 01", "c0 00 00 00 00 00 00 00 00"} {
			_, err := parse(unhex(t, p))
			wantErr(t, err, ErrFramePayload)
			if CodeOf(err) != H3FrameError {
				t.Fatalf("%s(% s): code %v", name, p, CodeOf(err))
			}
		}
	}
	for _, p := range []string{"", "40", "80 00"} {
		if _, _, err := ParsePushPromise(unhex(t, p)); !errors.Is(err, ErrFramePayload) {
			t.Fatalf("ParsePushPromise(%s): %v", p, err)
		}
		if _, _, err := ParsePriorityUpdate(unhex(t, p)); !errors.Is(err, ErrFramePayload) {
			t.Fatalf("ParsePriorityUpdate(%s): %v", p, err)
		}
	}
}

func TestHeaderTruncated(t *testing.T) {
	full := unhex(t, "80 0f 07 00 c0 00 00 00 00 00 00 10")
	for cut := 0; cut < len(full); cut++ {
		_, n, err := ParseHeader(full[:cut], math.MaxUint64)
		wantErr(t, err, ErrTruncated)
		if n != 0 || CodeOf(err) != H3FrameError {
			t.Fatalf("cut %d: n=%d code=%v", cut, n, CodeOf(err))
		}
		_, err = ReadHeader(bytes.NewReader(full[:cut]), math.MaxUint64)
		if cut == 0 {
			if err != io.EOF {
				t.Fatalf("ReadHeader on empty input: %v, want io.EOF", err)
			}
			continue
		}
		wantErr(t, err, ErrTruncated)
	}
}

type failReader struct{ err error }

func (r failReader) ReadByte() (byte, error) { return 0, r.err }

func TestReadHeaderPassesReadErrors(t *testing.T) {
	boom := errors.New("boom")
	if _, err := ReadHeader(failReader{boom}, 10); err != boom {
		t.Fatalf("got %v", err)
	}
	r := io.MultiReader(bytes.NewReader([]byte{0x04}), iotestErrReader{boom})
	if _, err := ReadHeader(byteReader{r}, 10); err != boom {
		t.Fatalf("got %v", err)
	}
}

type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }

type byteReader struct{ r io.Reader }

func (b byteReader) ReadByte() (byte, error) {
	var c [1]byte
	_, err := io.ReadFull(b.r, c[:])
	return c[0], err
}

// TestLengthLimit: the caller's limit rejects frames that are buffered
// whole, before their payload; DATA, unknown and GREASE frames pass, as
// they are streamed or skipped.
func TestLengthLimit(t *testing.T) {
	const limit = 100
	cases := []struct {
		t       Type
		limited bool
	}{
		{TypeData, false}, {TypeHeaders, true}, {TypeCancelPush, true}, {TypeSettings, true},
		{TypePushPromise, true}, {TypeGoaway, true}, {TypeOrigin, true}, {TypeMaxPushID, true},
		{TypePriorityUpdateRequest, true}, {TypePriorityUpdatePush, true},
		{0x21, false}, {Type(ReservedValue(12345)), false}, {0x0e, false}, {0x3fff, false},
		{0x02, false}, {0x06, false}, {0x08, false}, {0x09, false}, {TypeWebTransportStream, false},
	}
	for _, c := range cases {
		if c.t.LengthLimited() != c.limited {
			t.Errorf("%v.LengthLimited() = %v", c.t, !c.limited)
		}
		// Only the header is present: the declared payload is never sent.
		for _, l := range []uint64{limit, limit + 1, 1<<62 - 1} {
			b := AppendHeader(nil, c.t, l)
			h, n, err := ParseHeader(b, limit)
			rh, rerr := ReadHeader(bytes.NewReader(b), limit)
			if h != (Header{c.t, l}) || n != len(b) || rh != h {
				t.Errorf("%v len %d: header %+v/%+v n=%d", c.t, l, h, rh, n)
			}
			if c.limited && l > limit {
				if !errors.Is(err, ErrFrameTooLarge) || !errors.Is(rerr, ErrFrameTooLarge) {
					t.Errorf("%v len %d: err %v / %v, want ErrFrameTooLarge", c.t, l, err, rerr)
				}
				continue
			}
			if err != nil || rerr != nil {
				t.Errorf("%v len %d: err %v / %v", c.t, l, err, rerr)
			}
			// ParseFrame holds whole frames and limits every type.
			_, _, err = ParseFrame(b, limit)
			if l > limit {
				wantErr(t, err, ErrFrameTooLarge)
			} else {
				wantErr(t, err, ErrTruncated)
			}
		}
	}
}

// TestNoAllocForDeclaredLength: a frame declaring 2^62-1 bytes costs nothing.
func TestNoAllocForDeclaredLength(t *testing.T) {
	b := AppendHeader(nil, TypeHeaders, 1<<62-1)
	b = append(b, "some bytes"...)
	allocs := testing.AllocsPerRun(100, func() {
		if _, _, err := ParseFrame(b, math.MaxUint64); !errors.Is(err, ErrTruncated) {
			t.Fatal(err)
		}
		if _, _, err := ParseHeader(b, math.MaxUint64); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("allocs = %v", allocs)
	}
}

// TestFrameSequenceSkipsUnknown walks a control stream holding SETTINGS,
// GREASE and unknown frames and the frames that matter, the way a receiver
// does: Check decides, unknown ones are skipped.
func TestFrameSequenceSkipsUnknown(t *testing.T) {
	var b []byte
	b = AppendFrame(b, TypeSettings, []byte{0x06, 0x44, 0x00})
	b = AppendFrame(b, Type(ReservedValue(3)), bytes.Repeat([]byte{0xaa}, 200))
	b = AppendFrame(b, 0x1234, nil)
	b = AppendGoaway(b, 8)
	b = AppendFrame(b, Type(ReservedValue(1<<40)), []byte("grease"))
	b = AppendPriorityUpdate(b, TypePriorityUpdateRequest, 0, []byte("u=3"))
	var seen []Type
	for len(b) > 0 {
		f, n, err := ParseFrame(b, 1<<16)
		if err != nil {
			t.Fatal(err)
		}
		b = b[n:]
		known, err := Check(f.Type, KindControl, true)
		if err != nil {
			t.Fatalf("%v: %v", f.Type, err)
		}
		if known {
			seen = append(seen, f.Type)
		}
	}
	want := []Type{TypeSettings, TypeGoaway, TypePriorityUpdateRequest}
	if len(seen) != len(want) {
		t.Fatalf("seen %v, want %v", seen, want)
	}
	for i := range want {
		if seen[i] != want[i] {
			t.Fatalf("seen %v, want %v", seen, want)
		}
	}
}

func TestTypeString(t *testing.T) {
	cases := map[Type]string{
		TypeData: "DATA", TypeHeaders: "HEADERS", TypeCancelPush: "CANCEL_PUSH", TypeSettings: "SETTINGS",
		TypePushPromise: "PUSH_PROMISE", TypeGoaway: "GOAWAY", TypeOrigin: "ORIGIN", TypeMaxPushID: "MAX_PUSH_ID",
		TypePriorityUpdateRequest: "PRIORITY_UPDATE(request)", TypePriorityUpdatePush: "PRIORITY_UPDATE(push)",
		TypeWebTransportStream: "WEBTRANSPORT_STREAM", 0x02: "PRIORITY(HTTP/2)", 0x06: "PING(HTTP/2)",
		0x08: "WINDOW_UPDATE(HTTP/2)", 0x09: "CONTINUATION(HTTP/2)", 0x21: "GREASE", 0x40: "GREASE",
		0x22: "UNKNOWN", 0x0a: "UNKNOWN",
	}
	for ty, want := range cases {
		if ty.String() != want {
			t.Errorf("Type(%#x).String() = %q, want %q", uint64(ty), ty.String(), want)
		}
	}
	for ty := Type(0); ty < 0x100; ty++ {
		want := ty == 2 || ty == 6 || ty == 8 || ty == 9
		if ty.IsHTTP2Only() != want {
			t.Errorf("Type(%#x).IsHTTP2Only() = %v", uint64(ty), !want)
		}
	}
}
