package frames

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
)

func TestErrorCodeValuesAndNames(t *testing.T) {
	cases := []struct {
		c    ErrorCode
		v    uint64
		name string
	}{
		{H3NoError, 0x100, "H3_NO_ERROR"},
		{H3GeneralProtocolError, 0x101, "H3_GENERAL_PROTOCOL_ERROR"},
		{H3InternalError, 0x102, "H3_INTERNAL_ERROR"},
		{H3StreamCreationError, 0x103, "H3_STREAM_CREATION_ERROR"},
		{H3ClosedCriticalStream, 0x104, "H3_CLOSED_CRITICAL_STREAM"},
		{H3FrameUnexpected, 0x105, "H3_FRAME_UNEXPECTED"},
		{H3FrameError, 0x106, "H3_FRAME_ERROR"},
		{H3ExcessiveLoad, 0x107, "H3_EXCESSIVE_LOAD"},
		{H3IDError, 0x108, "H3_ID_ERROR"},
		{H3SettingsError, 0x109, "H3_SETTINGS_ERROR"},
		{H3MissingSettings, 0x10a, "H3_MISSING_SETTINGS"},
		{H3RequestRejected, 0x10b, "H3_REQUEST_REJECTED"},
		{H3RequestCancelled, 0x10c, "H3_REQUEST_CANCELLED"},
		{H3RequestIncomplete, 0x10d, "H3_REQUEST_INCOMPLETE"},
		{H3MessageError, 0x10e, "H3_MESSAGE_ERROR"},
		{H3ConnectError, 0x10f, "H3_CONNECT_ERROR"},
		{H3VersionFallback, 0x110, "H3_VERSION_FALLBACK"},
		{QPACKDecompressionFailed, 0x200, "QPACK_DECOMPRESSION_FAILED"},
		{QPACKEncoderStreamError, 0x201, "QPACK_ENCODER_STREAM_ERROR"},
		{QPACKDecoderStreamError, 0x202, "QPACK_DECODER_STREAM_ERROR"},
		{H3DatagramError, 0x33, "H3_DATAGRAM_ERROR"},
		{WTBufferedStreamRejected, 0x3994bd84, "WT_BUFFERED_STREAM_REJECTED"},
		{WTSessionGone, 0x170d7b68, "WT_SESSION_GONE"},
		{WTFlowControlError, 0x045d4487, "WT_FLOW_CONTROL_ERROR"},
		{WTALPNError, 0x0817b3dd, "WT_ALPN_ERROR"},
		{WTRequirementsNotMet, 0x212c0d48, "WT_REQUIREMENTS_NOT_MET"},
		{WTApplicationErrorFirst, 0x52e4a40fa8db, "WT_APPLICATION_ERROR(0)"},
		{WTApplicationErrorLast, 0x52e5ac983162, "WT_APPLICATION_ERROR(4294967295)"},
		{0x21, 0x21, "H3_GREASE(0x21)"},
		{0x52e4a40fa8db + 30, 0x52e4a40fa8f9, "H3_GREASE(0x52e4a40fa8f9)"},
		{0x111, 0x111, "H3_ERROR(0x111)"},
	}
	for _, c := range cases {
		if uint64(c.c) != c.v || c.c.String() != c.name {
			t.Errorf("%#x: value %#x, String %q; want %#x %q", uint64(c.c), uint64(c.c), c.c.String(), c.v, c.name)
		}
	}
}

func TestReserved(t *testing.T) {
	for v := uint64(0); v < 2000; v++ {
		want := v >= 0x21 && (v-0x21)%0x1f == 0
		if IsReserved(v) != want {
			t.Fatalf("IsReserved(%#x) = %v", v, !want)
		}
	}
	for _, n := range []uint64{0, 1, 2, 1000, 1 << 40, 0x210842108421083, 0x210842108421084, ^uint64(0)} {
		v := ReservedValue(n)
		if !IsReserved(v) || v > 1<<62-1 {
			t.Fatalf("ReservedValue(%#x) = %#x", n, v)
		}
	}
	if ReservedValue(0) != 0x21 || ReservedValue(1) != 0x40 {
		t.Fatal("ReservedValue origin")
	}
	// The largest reserved varint value.
	if v := ReservedValue(0x210842108421083); v != 1<<62-2 {
		t.Fatalf("largest reserved = %#x", v)
	}
}

const (
	wtFirst = uint64(WTApplicationErrorFirst)
	wtLast  = uint64(WTApplicationErrorLast)
)

// TestWTMappingEdges checks the edges named in spec.md section 2.
func TestWTMappingEdges(t *testing.T) {
	cases := []struct {
		n uint32
		h uint64
	}{
		{0, 0x52e4a40fa8db}, {29, 0x52e4a40fa8f8}, {30, 0x52e4a40fa8fa}, {0xffffffff, 0x52e5ac983162},
	}
	for _, c := range cases {
		if got := WTErrorToH3(c.n); uint64(got) != c.h {
			t.Errorf("WTErrorToH3(%d) = %#x, want %#x", c.n, uint64(got), c.h)
		}
		if n, ok := WTApplicationCode(ErrorCode(c.h)); !ok || n != c.n {
			t.Errorf("WTApplicationCode(%#x) = %d, %v", c.h, n, ok)
		}
	}
	if !IsReserved(0x52e4a40fa8f9) {
		t.Fatal("0x52e4a40fa8f9 should be reserved")
	}
	for _, h := range []uint64{0, 0x100, wtFirst - 1, 0x52e4a40fa8f9, wtLast + 1, 1<<62 - 1} {
		if n, ok := WTApplicationCode(ErrorCode(h)); ok {
			t.Errorf("WTApplicationCode(%#x) = %d, want not a WT code", h, n)
		}
	}
	// Every named code is outside the application range.
	for _, c := range []ErrorCode{H3NoError, H3DatagramError, WTSessionGone, WTBufferedStreamRejected,
		WTFlowControlError, WTALPNError, WTRequirementsNotMet, QPACKDecoderStreamError} {
		if _, ok := WTApplicationCode(c); ok {
			t.Errorf("%v mapped to an application code", c)
		}
	}
	// The range holds exactly 2^32 usable codes.
	reserved := countReserved(wtFirst, wtLast)
	if wtLast-wtFirst+1-reserved != 1<<32 {
		t.Fatalf("range size %d minus %d reserved != 2^32", wtLast-wtFirst+1, reserved)
	}
}

func countReserved(lo, hi uint64) uint64 {
	// Reserved values v = 0x21 + 0x1f*k; count k with lo <= v <= hi.
	kmax := (hi - 0x21) / 0x1f
	kmin := (lo - 0x21 + 0x1e) / 0x1f
	return kmax - kmin + 1
}

// TestWTMappingEveryReservedPoint visits every reserved codepoint between
// WTApplicationErrorFirst and WTApplicationErrorLast (about 143,000): none
// decodes to an application code, and its neighbours decode to consecutive
// codes, which proves the mapping skips exactly those points.
func TestWTMappingEveryReservedPoint(t *testing.T) {
	k := (wtFirst - 0x21 + 0x1e) / 0x1f
	count := uint64(0)
	for h := 0x21 + 0x1f*k; h <= wtLast; h += 0x1f {
		if !IsReserved(h) {
			t.Fatalf("%#x not reserved", h)
		}
		if _, ok := WTApplicationCode(ErrorCode(h)); ok {
			t.Fatalf("reserved %#x maps to an application code", h)
		}
		lo, ok1 := WTApplicationCode(ErrorCode(h - 1))
		hi, ok2 := WTApplicationCode(ErrorCode(h + 1))
		if !ok1 || (h+1 <= wtLast && (!ok2 || hi != lo+1)) {
			t.Fatalf("around %#x: %d %v, %d %v", h, lo, ok1, hi, ok2)
		}
		if WTErrorToH3(lo) != ErrorCode(h-1) || (ok2 && WTErrorToH3(hi) != ErrorCode(h+1)) {
			t.Fatalf("forward mapping around %#x", h)
		}
		count++
	}
	if count != countReserved(wtFirst, wtLast) || count < 140000 {
		t.Fatalf("visited %d reserved points", count)
	}
}

// TestWTMappingRoundTrip: a large random sample of 32-bit codes, plus every
// code near the ends, round-trips, never lands on a reserved point, and the
// mapping is strictly increasing.
func TestWTMappingRoundTrip(t *testing.T) {
	check := func(n uint32) {
		h := WTErrorToH3(n)
		if uint64(h) < wtFirst || uint64(h) > wtLast || IsReserved(uint64(h)) {
			t.Fatalf("WTErrorToH3(%d) = %#x", n, uint64(h))
		}
		if back, ok := WTApplicationCode(h); !ok || back != n {
			t.Fatalf("round trip %d -> %#x -> %d, %v", n, uint64(h), back, ok)
		}
		if n > 0 && WTErrorToH3(n-1) >= h {
			t.Fatalf("not increasing at %d", n)
		}
	}
	for n := uint32(0); n < 100000; n++ {
		check(n)
		check(^uint32(0) - n)
	}
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 1000000; i++ {
		check(r.Uint32())
	}
	// And in the other direction: random H3 codes in the range decode to a
	// code that maps back to them, unless reserved.
	for i := 0; i < 1000000; i++ {
		h := wtFirst + r.Uint64N(wtLast-wtFirst+1)
		n, ok := WTApplicationCode(ErrorCode(h))
		if ok == IsReserved(h) || (ok && uint64(WTErrorToH3(n)) != h) {
			t.Fatalf("%#x: %d %v", h, n, ok)
		}
	}
}

func TestErrorType(t *testing.T) {
	e := &Error{Code: H3FrameError, Connection: true, Reason: "bad"}
	if e.Error() != "H3_FRAME_ERROR: bad" {
		t.Fatalf("Error() = %q", e.Error())
	}
	wrapped := fmt.Errorf("reading control stream: %w", ErrTruncated)
	if !errors.Is(wrapped, ErrTruncated) || errors.Is(wrapped, ErrFramePayload) {
		t.Fatal("errors.Is through wrapping")
	}
	if CodeOf(wrapped) != H3FrameError || CodeOf(errors.New("x")) != H3GeneralProtocolError || CodeOf(nil) != H3GeneralProtocolError {
		t.Fatal("CodeOf")
	}
	// A copy with the same code and reason matches the sentinel.
	cp := *ErrSessionID
	if !errors.Is(&cp, ErrSessionID) {
		t.Fatal("copy does not match")
	}
	// Each sentinel carries the code its specification names.
	sentinels := []struct {
		err  *Error
		code ErrorCode
		conn bool
	}{
		{ErrTruncated, H3FrameError, true},
		{ErrFrameTooLarge, H3ExcessiveLoad, true},
		{ErrFramePayload, H3FrameError, true},
		{ErrHTTP2Frame, H3FrameUnexpected, true},
		{ErrFrameUnexpected, H3FrameUnexpected, true},
		{ErrMissingSettings, H3MissingSettings, true},
		{ErrCapsuleTooLarge, H3ExcessiveLoad, false},
		{ErrCapsuleMalformed, H3DatagramError, false},
		{ErrCapsuleIncomplete, H3MessageError, false},
		{ErrCapsuleHTTP2Only, H3DatagramError, false},
		{ErrCloseMessage, H3MessageError, false},
		{ErrSessionID, H3IDError, true},
		{ErrDatagram, H3DatagramError, true},
		{ErrMisplacedWebTransportStream, H3FrameError, true},
		{ErrFlowControlLimit, WTFlowControlError, false},
	}
	for _, s := range sentinels {
		if s.err.Code != s.code || s.err.Connection != s.conn || s.err.Reason == "" {
			t.Errorf("%v: code %v conn %v", s.err, s.err.Code, s.err.Connection)
		}
	}
}
