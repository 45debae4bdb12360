package frames

import (
	"bytes"
	"errors"
	"testing"
)

func TestUniStreamPrefixes(t *testing.T) {
	cases := []struct {
		name string
		enc  []byte
		wire string
		typ  StreamType
		sid  uint64
	}{
		{"control", AppendUniStreamType(nil, StreamTypeControl), "00", StreamTypeControl, 0},
		{"push", AppendUniStreamType(nil, StreamTypePush), "01", StreamTypePush, 0},
		{"QPACK encoder", AppendUniStreamType(nil, StreamTypeQPACKEncoder), "02", StreamTypeQPACKEncoder, 0},
		{"QPACK decoder", AppendUniStreamType(nil, StreamTypeQPACKDecoder), "03", StreamTypeQPACKDecoder, 0},
		{"WebTransport session 0", AppendWebTransportUniHeader(nil, 0), "40 54 00", StreamTypeWebTransport, 0},
		{"WebTransport session 4", AppendWebTransportUniHeader(nil, 4), "40 54 04", StreamTypeWebTransport, 4},
		{"WebTransport session 0x2840", AppendWebTransportUniHeader(nil, 0x2840), "40 54 68 40", StreamTypeWebTransport, 0x2840},
		{"WebTransport via type", AppendUniStreamType(nil, StreamTypeWebTransport), "40 54", StreamTypeWebTransport, 0},
		{"GREASE 0x21", AppendUniStreamType(nil, StreamType(ReservedValue(0))), "21", 0x21, 0},
		{"GREASE 0x5f", AppendUniStreamType(nil, StreamType(ReservedValue(2))), "40 5f", 0x5f, 0},
		{"unknown", AppendUniStreamType(nil, 0x1234), "52 34", 0x1234, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := unhex(t, c.wire)
			if !bytes.Equal(c.enc, want) {
				t.Fatalf("encoded % x, want % x", c.enc, want)
			}
			if c.name == "WebTransport via type" {
				// Type alone: the session ID is still missing.
				_, _, _, err := ParseUniStreamHeader(want)
				wantErr(t, err, ErrTruncated)
				return
			}
			typ, sid, n, err := ParseUniStreamHeader(append(append([]byte{}, want...), 0xff, 0xff))
			if err != nil || typ != c.typ || sid != c.sid || n != len(want) {
				t.Fatalf("ParseUniStreamHeader = %v, %d, %d, %v", typ, sid, n, err)
			}
		})
	}
}

func TestUniStreamHeaderErrors(t *testing.T) {
	_, _, _, err := ParseUniStreamHeader(nil)
	wantErr(t, err, ErrTruncated)
	_, _, _, err = ParseUniStreamHeader([]byte{0x40})
	wantErr(t, err, ErrTruncated)
	_, _, _, err = ParseUniStreamHeader(unhex(t, "40 54 80 00"))
	wantErr(t, err, ErrTruncated)
	for _, sid := range []uint64{1, 2, 3, 5, 0x2843} {
		b := AppendWebTransportUniHeader(nil, sid)
		typ, got, n, err := ParseUniStreamHeader(b)
		wantErr(t, err, ErrSessionID)
		if typ != StreamTypeWebTransport || got != sid || n != len(b) || CodeOf(err) != H3IDError {
			t.Fatalf("sid %d: %v %d %d %v", sid, typ, got, n, CodeOf(err))
		}
	}
}

func TestBidiWebTransportHeader(t *testing.T) {
	cases := []struct {
		sid  uint64
		wire string
	}{
		{0, "40 41 00"}, {4, "40 41 04"}, {64, "40 41 40 40"}, {1 << 40, "40 41 c0 00 01 00 00 00 00 00"},
	}
	for _, c := range cases {
		b := AppendWebTransportBidiHeader(nil, c.sid)
		if !bytes.Equal(b, unhex(t, c.wire)) {
			t.Fatalf("sid %d: % x, want %s", c.sid, b, c.wire)
		}
		// A receiver reads the first varint as a frame type...
		h, n, err := ParseHeader(b, 0)
		if err != nil || h.Type != TypeWebTransportStream || n != len(b) || h.Length != c.sid {
			t.Fatalf("ParseHeader = %+v, %d, %v", h, n, err)
		}
		// ...then the session ID after it.
		sid, m, err := ParseWebTransportBidiHeader(b[2:])
		if err != nil || sid != c.sid || m != len(b)-2 {
			t.Fatalf("ParseWebTransportBidiHeader = %d, %d, %v", sid, m, err)
		}
	}
	_, _, err := ParseWebTransportBidiHeader(nil)
	wantErr(t, err, ErrTruncated)
	_, _, err = ParseWebTransportBidiHeader([]byte{0x80, 0})
	wantErr(t, err, ErrTruncated)
	sid, _, err := ParseWebTransportBidiHeader([]byte{0x06})
	wantErr(t, err, ErrSessionID)
	if sid != 6 {
		t.Fatalf("sid = %d", sid)
	}
}

func TestStreamTypeNames(t *testing.T) {
	cases := map[StreamType]string{
		StreamTypeControl: "control", StreamTypePush: "push", StreamTypeQPACKEncoder: "QPACK encoder",
		StreamTypeQPACKDecoder: "QPACK decoder", StreamTypeWebTransport: "WebTransport",
		0x21: "GREASE", 0x40: "GREASE", 0x04: "unknown",
	}
	for st, want := range cases {
		if st.String() != want {
			t.Errorf("%#x: %q, want %q", uint64(st), st.String(), want)
		}
	}
	for st := StreamType(0); st < 0x100; st++ {
		want := st == 0 || st == 2 || st == 3
		if st.IsCritical() != want {
			t.Errorf("%#x IsCritical = %v", uint64(st), !want)
		}
	}
}

func TestIsSessionID(t *testing.T) {
	for id := uint64(0); id < 64; id++ {
		if IsSessionID(id) != (id%4 == 0) {
			t.Fatalf("IsSessionID(%d)", id)
		}
	}
}

func TestDatagram(t *testing.T) {
	cases := []struct {
		wire    string
		stream  uint64
		payload string
	}{
		{"00 68 69", 0, "hi"},
		{"01", 4, ""},
		{"40 40 ff", 256, "\xff"},
		{"cf ff ff ff ff ff ff ff 00", 4 * MaxQuarterStreamID, "\x00"},
	}
	for _, c := range cases {
		b := unhex(t, c.wire)
		sid, p, err := ParseDatagram(b)
		if err != nil || sid != c.stream || string(p) != c.payload {
			t.Fatalf("ParseDatagram(%s) = %d, %q, %v", c.wire, sid, p, err)
		}
		if got := append(AppendDatagramHeader(nil, c.stream), p...); !bytes.Equal(got, b) {
			t.Fatalf("AppendDatagramHeader(%d) = % x", c.stream, got)
		}
	}
	for _, w := range []string{"", "40", "80 00 00", "d0 00 00 00 00 00 00 00", "ff ff ff ff ff ff ff ff 00"} {
		_, _, err := ParseDatagram(unhex(t, w))
		wantErr(t, err, ErrDatagram)
		if CodeOf(err) != H3DatagramError {
			t.Fatalf("%s: %v", w, CodeOf(err))
		}
	}
}

// TestCheckTable states the allowed-frame table in full: for each frame
// type, the stream kinds and receiving sides where it is allowed (RFC 9114,
// Sections 6.2.1, 6.2.2, 4.1 and 7.2; RFC 9218, Section 7.2; RFC 9412,
// Section 2; draft-ietf-webtrans-http3 for CONNECT streams).
func TestCheckTable(t *testing.T) {
	type where struct {
		kind     StreamKind
		atServer bool
	}
	all := []where{}
	for _, k := range []StreamKind{KindControl, KindRequest, KindConnect, KindPush} {
		for _, s := range []bool{false, true} {
			all = append(all, where{k, s})
		}
	}
	allowed := map[Type][]where{
		TypeData:                  {{KindRequest, false}, {KindRequest, true}, {KindConnect, false}, {KindConnect, true}, {KindPush, false}},
		TypeHeaders:               {{KindRequest, false}, {KindRequest, true}, {KindConnect, false}, {KindConnect, true}, {KindPush, false}},
		TypePushPromise:           {{KindRequest, false}},
		TypeSettings:              {{KindControl, false}, {KindControl, true}},
		TypeGoaway:                {{KindControl, false}, {KindControl, true}},
		TypeCancelPush:            {{KindControl, false}, {KindControl, true}},
		TypeMaxPushID:             {{KindControl, true}},
		TypeOrigin:                {{KindControl, false}},
		TypePriorityUpdateRequest: {{KindControl, true}},
		TypePriorityUpdatePush:    {{KindControl, true}},
	}
	for ty, ok := range allowed {
		for _, w := range all {
			want := false
			for _, o := range ok {
				want = want || o == w
			}
			known, err := Check(ty, w.kind, w.atServer)
			if !known {
				t.Errorf("%v: not known", ty)
			}
			if want && err != nil {
				t.Errorf("%v on kind %d atServer=%v: %v, want allowed", ty, w.kind, w.atServer, err)
			}
			if !want && !errors.Is(err, ErrFrameUnexpected) {
				t.Errorf("%v on kind %d atServer=%v: %v, want ErrFrameUnexpected", ty, w.kind, w.atServer, err)
			}
			if err != nil && CodeOf(err) != H3FrameUnexpected {
				t.Errorf("%v: code %v", ty, CodeOf(err))
			}
		}
	}
	for _, w := range all {
		for _, ty := range []Type{0x02, 0x06, 0x08, 0x09} {
			known, err := Check(ty, w.kind, w.atServer)
			if !known || !errors.Is(err, ErrHTTP2Frame) || CodeOf(err) != H3FrameUnexpected {
				t.Errorf("HTTP/2 type %#x: %v %v", uint64(ty), known, err)
			}
		}
		known, err := Check(TypeWebTransportStream, w.kind, w.atServer)
		if !known || !errors.Is(err, ErrMisplacedWebTransportStream) || CodeOf(err) != H3FrameError {
			t.Errorf("0x41: %v %v", known, err)
		}
		for _, ty := range []Type{0x21, 0x40, Type(ReservedValue(1 << 50)), 0x0a, 0x0b, 0x0e, 0x42, 0xf0702, 1<<62 - 1} {
			if known, err := Check(ty, w.kind, w.atServer); known || err != nil {
				t.Errorf("unknown %#x: %v %v, want skipped", uint64(ty), known, err)
			}
		}
	}
}
