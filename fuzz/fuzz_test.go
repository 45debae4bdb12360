package fuzz

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/quic-go/quic-go/quicvarint"

	"github.com/quicwt/quicwt/frames"
	"github.com/quicwt/quicwt/settings"
	"github.com/quicwt/quicwt/varint"
)

// mustBeFrameError checks that a parser error maps to a specific HTTP/3 code.
func mustBeFrameError(t *testing.T, err error, allowed ...frames.ErrorCode) {
	t.Helper()
	var fe *frames.Error
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not a *frames.Error", err, err)
	}
	for _, c := range allowed {
		if fe.Code == c {
			return
		}
	}
	t.Fatalf("error %v has code %v, want one of %v", err, fe.Code, allowed)
}

// FuzzVarint checks Parse, Read, Append, AppendWithLen and Len against
// each other and, differentially, against quic-go's quicvarint.
func FuzzVarint(f *testing.F) {
	addSeeds(f, "FuzzVarint")
	f.Fuzz(func(t *testing.T, data []byte, v uint64) {
		// Parsing.
		got, n, err := varint.Parse(data)
		qv, qn, qerr := quicvarint.Parse(data)
		if (err == nil) != (qerr == nil) {
			t.Fatalf("Parse(% x): err %v, quicvarint err %v", data, err, qerr)
		}
		if err == nil {
			if got != qv || n != qn {
				t.Fatalf("Parse(% x) = %d, %d; quicvarint %d, %d", data, got, n, qv, qn)
			}
			if got > varint.Max || n != varint.LenOfFirstByte(data[0]) {
				t.Fatalf("Parse(% x) = %d, %d", data, got, n)
			}
			re, err := varint.AppendWithLen(nil, got, n)
			if err != nil || !bytes.Equal(re, data[:n]) {
				t.Fatalf("AppendWithLen(%d, %d) = % x, %v; parsed from % x", got, n, re, err, data[:n])
			}
			if varint.Len(got) == n && !bytes.Equal(varint.MustAppend(nil, got), data[:n]) {
				t.Fatalf("minimal encoding of %d differs", got)
			}
		} else if !errors.Is(err, varint.ErrTruncated) {
			t.Fatalf("Parse error %v", err)
		}
		r, qr := bytes.NewReader(data), bytes.NewReader(data)
		rv, rerr := varint.Read(r)
		qrv, qrerr := quicvarint.Read(qr)
		if (rerr == nil) != (qrerr == nil) || rv != qrv || (rerr == nil && (rv != got || r.Len() != len(data)-n)) {
			t.Fatalf("Read(% x) = %d, %v; quicvarint %d, %v", data, rv, rerr, qrv, qrerr)
		}
		if rerr != nil && rerr != io.EOF && rerr != io.ErrUnexpectedEOF {
			t.Fatalf("Read error %v", rerr)
		}

		// Encoding.
		enc, err := varint.Append([]byte{0xaa}, v)
		if v > varint.Max {
			if !errors.Is(err, varint.ErrRange) || len(enc) != 1 || varint.Len(v) != 0 {
				t.Fatalf("Append(%#x) = % x, %v", v, enc, err)
			}
			return
		}
		if err != nil || !bytes.Equal(enc[1:], quicvarint.Append(nil, v)) {
			t.Fatalf("Append(%d) = % x, %v; quicvarint % x", v, enc, err, quicvarint.Append(nil, v))
		}
		if varint.Len(v) != quicvarint.Len(v) || varint.Len(v) != len(enc)-1 {
			t.Fatalf("Len(%d) = %d, quicvarint %d", v, varint.Len(v), quicvarint.Len(v))
		}
		back, bn, err := varint.Parse(enc[1:])
		if err != nil || back != v || bn != len(enc)-1 {
			t.Fatalf("round trip %d: %d, %d, %v", v, back, bn, err)
		}
		for _, l := range []int{1, 2, 4, 8} {
			w, err := varint.AppendWithLen(nil, v, l)
			if l < varint.Len(v) {
				if !errors.Is(err, varint.ErrLength) {
					t.Fatalf("AppendWithLen(%d, %d): %v", v, l, err)
				}
				continue
			}
			if err != nil || !bytes.Equal(w, quicvarint.AppendWithLen(nil, v, l)) {
				t.Fatalf("AppendWithLen(%d, %d) = % x, %v; quicvarint % x", v, l, w, err, quicvarint.AppendWithLen(nil, v, l))
			}
		}
	})
}

var allKinds = []frames.StreamKind{frames.KindControl, frames.KindRequest, frames.KindConnect, frames.KindPush}

// FuzzFrameSequence parses a byte string as a sequence of HTTP/3 frames,
// as a receiver would: header, Check on every stream kind, payload parsers,
// and re-encoding of every frame it accepts.
func FuzzFrameSequence(f *testing.F) {
	addSeeds(f, "FuzzFrameSequence")
	const limit = 1 << 12
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		for p := data; ; {
			h, hn, herr := frames.ParseHeader(p, limit)
			rh, rerr := frames.ReadHeader(r, limit)
			if len(p) == 0 {
				if rerr != io.EOF || !errors.Is(herr, frames.ErrTruncated) {
					t.Fatalf("at end: %v, %v", herr, rerr)
				}
				return
			}
			if (herr == nil) != (rerr == nil) || (herr != nil && !errors.Is(rerr, herr)) || h != rh {
				t.Fatalf("ParseHeader %+v %v, ReadHeader %+v %v", h, herr, rh, rerr)
			}
			fr, n, err := frames.ParseFrame(p, limit)
			if err != nil {
				mustBeFrameError(t, err, frames.H3FrameError, frames.H3ExcessiveLoad)
				if herr == nil && h.Length <= limit && uint64(len(p)-hn) >= h.Length {
					t.Fatalf("ParseFrame failed (%v) on a complete frame", err)
				}
				return
			}
			if herr != nil || fr.Type != h.Type || uint64(len(fr.Payload)) != h.Length || n != hn+len(fr.Payload) {
				t.Fatalf("ParseFrame %+v %d disagrees with header %+v %d %v", fr, n, h, hn, herr)
			}
			// Skip the payload in the reader too.
			if _, err := r.Seek(int64(len(fr.Payload)), io.SeekCurrent); err != nil {
				t.Fatal(err)
			}
			for _, k := range allKinds {
				for _, atServer := range []bool{false, true} {
					known, err := frames.Check(fr.Type, k, atServer)
					if err != nil {
						mustBeFrameError(t, err, frames.H3FrameUnexpected, frames.H3FrameError)
						if !known {
							t.Fatal("error for an unknown type")
						}
					}
				}
			}
			checkPayload(t, fr)
			// Re-encoding gives a frame that parses the same.
			again, an, err := frames.ParseFrame(frames.AppendFrame(nil, fr.Type, fr.Payload), limit)
			if err != nil || again.Type != fr.Type || !bytes.Equal(again.Payload, fr.Payload) || an != frames.HeaderLen(fr.Type, uint64(len(fr.Payload)))+len(fr.Payload) {
				t.Fatalf("re-encoded frame: %+v %v", again, err)
			}
			p = p[n:]
		}
	})
}

func checkPayload(t *testing.T, fr frames.Frame) {
	oneVarint := func(parse func([]byte) (uint64, error), app func([]byte, uint64) []byte) {
		id, err := parse(fr.Payload)
		if err != nil {
			mustBeFrameError(t, err, frames.H3FrameError)
			return
		}
		back, _, err := frames.ParseFrame(app(nil, id), 64)
		if err != nil || back.Type != fr.Type {
			t.Fatalf("re-encoded %v: %v", fr.Type, err)
		}
		if id2, err := parse(back.Payload); err != nil || id2 != id {
			t.Fatalf("%v round trip %d -> %d %v", fr.Type, id, id2, err)
		}
	}
	switch fr.Type {
	case frames.TypeGoaway:
		oneVarint(frames.ParseGoaway, frames.AppendGoaway)
	case frames.TypeCancelPush:
		oneVarint(frames.ParseCancelPush, frames.AppendCancelPush)
	case frames.TypeMaxPushID:
		oneVarint(frames.ParseMaxPushID, frames.AppendMaxPushID)
	case frames.TypePushPromise:
		id, fs, err := frames.ParsePushPromise(fr.Payload)
		if err != nil {
			mustBeFrameError(t, err, frames.H3FrameError)
			return
		}
		back, _, _ := frames.ParseFrame(frames.AppendPushPromise(nil, id, fs), 1<<20)
		if id2, fs2, err := frames.ParsePushPromise(back.Payload); err != nil || id2 != id || !bytes.Equal(fs, fs2) {
			t.Fatalf("PUSH_PROMISE round trip")
		}
	case frames.TypePriorityUpdateRequest, frames.TypePriorityUpdatePush:
		id, v, err := frames.ParsePriorityUpdate(fr.Payload)
		if err != nil {
			mustBeFrameError(t, err, frames.H3FrameError)
			return
		}
		back, _, _ := frames.ParseFrame(frames.AppendPriorityUpdate(nil, fr.Type, id, v), 1<<20)
		if id2, v2, err := frames.ParsePriorityUpdate(back.Payload); err != nil || id2 != id || !bytes.Equal(v, v2) || back.Type != fr.Type {
			t.Fatalf("PRIORITY_UPDATE round trip")
		}
	case frames.TypeSettings:
		var s settings.Settings
		if err := s.Parse(fr.Payload); err != nil {
			mustBeFrameError(t, err, frames.H3SettingsError, frames.H3ExcessiveLoad)
		}
	}
}

// FuzzSettings checks that every accepted SETTINGS payload survives
// parse-append-parse unchanged, and that every rejected one fails with
// H3_SETTINGS_ERROR (or H3_EXCESSIVE_LOAD for too many parameters).
func FuzzSettings(f *testing.F) {
	addSeeds(f, "FuzzSettings")
	f.Fuzz(func(t *testing.T, data []byte) {
		var s settings.Settings
		if err := s.Parse(data); err != nil {
			mustBeFrameError(t, err, frames.H3SettingsError, frames.H3ExcessiveLoad)
			return
		}
		p := s.AppendPayload(nil)
		if len(p) != s.PayloadLen() {
			t.Fatalf("PayloadLen %d, appended %d", s.PayloadLen(), len(p))
		}
		var s2 settings.Settings
		if err := s2.Parse(p); err != nil {
			t.Fatalf("re-parse of % x: %v", p, err)
		}
		if p2 := s2.AppendPayload(nil); !bytes.Equal(p, p2) || s.String() != s2.String() || s.Len() != s2.Len() {
			t.Fatalf("not an identity: % x -> % x", p, p2)
		}
		// Every parameter read from the input is in s with its value.
		count := 0
		for q := data; len(q) > 0; count++ {
			id, n1, _ := varint.Parse(q)
			v, n2, _ := varint.Parse(q[n1:])
			q = q[n1+n2:]
			if got, ok := s.Get(settings.ID(id)); !ok || got != v {
				t.Fatalf("%v = %d, %v; input had %d", settings.ID(id), got, ok, v)
			}
		}
		if count != s.Len() {
			t.Fatalf("%d parameters in, %d kept", count, s.Len())
		}
		_ = s.Validate(false)
		for _, d := range []settings.Draft{settings.Draft02, settings.Draft07, settings.Draft13, settings.Draft15} {
			_ = settings.FlowControl(d, &s, &s2)
		}
		// A negotiated draft is one whose enabling setting both sides
		// sent, against our server's defaults too.
		enabling := map[settings.Draft]settings.ID{
			settings.Draft02: settings.EnableWebTransport, settings.Draft07: settings.WebTransportMaxSessionsDraft07,
			settings.Draft13: settings.WTMaxSessions, settings.Draft15: settings.WTEnabled,
		}
		var srv settings.Settings
		for _, id := range []settings.ID{settings.EnableConnectProtocol, settings.H3Datagram, settings.EnableWebTransport, settings.WTMaxSessions, settings.WTEnabled} {
			srv.Set(id, 1)
		}
		for _, pair := range [][2]*settings.Settings{{&s, &s2}, {&s, &srv}} {
			d := settings.Negotiate(pair[0], pair[1])
			if id, ok := enabling[d]; ok && (!pair[0].Enabled(id) || !pair[1].Enabled(id)) {
				t.Fatalf("negotiated %v without %v on both sides", d, id)
			}
		}
	})
}

// FuzzCapsuleStream feeds the same bytes to a CapsuleParser whole and in
// chunks whose sizes come from the fuzz input (cuts; each byte is a chunk
// length, 0 meaning an empty chunk), and requires identical capsules,
// consumed counts and errors. Every capsule's value parser also runs.
func FuzzCapsuleStream(f *testing.F) {
	addSeeds(f, "FuzzCapsuleStream")
	f.Fuzz(func(t *testing.T, data, cuts []byte, maxSize uint16) {
		whole, wn, werr := feed(t, frames.CapsuleParser{MaxSize: uint64(maxSize)}, [][]byte{data})
		var chunks [][]byte
		rest := data
		for i := 0; len(rest) > 0; i++ {
			n := len(rest)
			if len(cuts) > 0 {
				n = min(int(cuts[i%len(cuts)]), len(rest))
			}
			chunks = append(chunks, rest[:n])
			rest = rest[n:]
			if i > 4*len(data)+16 {
				chunks = append(chunks, rest) // only zero-size cuts: finish
				break
			}
		}
		parts, pn, perr := feed(t, frames.CapsuleParser{MaxSize: uint64(maxSize)}, chunks)
		if werr != perr || wn != pn || len(whole) != len(parts) {
			t.Fatalf("whole: %d capsules, n=%d, %v; chunked: %d, n=%d, %v", len(whole), wn, werr, len(parts), pn, perr)
		}
		for i := range whole {
			if whole[i].Type != parts[i].Type || !bytes.Equal(whole[i].Value, parts[i].Value) {
				t.Fatalf("capsule %d differs", i)
			}
			checkCapsule(t, whole[i])
		}
	})
}

func feed(t *testing.T, p frames.CapsuleParser, chunks [][]byte) ([]frames.Capsule, int, error) {
	var out []frames.Capsule
	total := 0
	limit := p.MaxSize
	if limit == 0 {
		limit = frames.DefaultMaxCapsuleSize
	}
	collect := func(c frames.Capsule) {
		if uint64(len(c.Value)) > limit {
			t.Fatalf("capsule of %d bytes over the %d limit", len(c.Value), limit)
		}
		if c.Type.IsHTTP2Only() || frames.IsReservedCapsule(uint64(c.Type)) || c.Type.String() == "UNKNOWN" {
			t.Fatalf("returned capsule type %v", c.Type)
		}
		out = append(out, frames.Capsule{Type: c.Type, Value: append([]byte{}, c.Value...)})
	}
	for _, ch := range chunks {
		for {
			c, n, ok, err := p.Next(ch)
			total += n
			ch = ch[n:]
			if err != nil {
				mustBeFrameError(t, err, frames.H3DatagramError, frames.H3ExcessiveLoad)
				return out, total, err
			}
			if ok {
				collect(c)
				continue
			}
			if len(ch) != 0 {
				t.Fatalf("Next stopped with %d bytes left and no capsule", len(ch))
			}
			break
		}
	}
	if err := p.End(); err != nil {
		mustBeFrameError(t, err, frames.H3MessageError)
		return out, total, err
	}
	return out, total, nil
}

func checkCapsule(t *testing.T, c frames.Capsule) {
	switch c.Type {
	case frames.CapsuleCloseSession:
		code, msg, err := frames.ParseCloseSession(c.Value)
		if err != nil {
			mustBeFrameError(t, err, frames.H3DatagramError, frames.H3MessageError)
			return
		}
		var p frames.CapsuleParser
		back, _, ok, err := p.Next(frames.AppendCloseSession(nil, code, string(msg)))
		if !ok || err != nil || !bytes.Equal(back.Value, c.Value) {
			t.Fatalf("WT_CLOSE_SESSION round trip: %v", err)
		}
	case frames.CapsuleDrainSession:
		if err := frames.ParseDrainSession(c.Value); err != nil {
			mustBeFrameError(t, err, frames.H3DatagramError)
		}
	case frames.CapsuleDatagram:
	default:
		v, err := frames.ParseVarintCapsule(c.Type, c.Value)
		if err != nil {
			mustBeFrameError(t, err, frames.H3DatagramError, frames.WTFlowControlError)
			return
		}
		var p frames.CapsuleParser
		back, _, ok, err := p.Next(frames.AppendVarintCapsule(nil, c.Type, v))
		if !ok || err != nil {
			t.Fatalf("re-encoded %v: %v", c.Type, err)
		}
		if v2, err := frames.ParseVarintCapsule(c.Type, back.Value); err != nil || v2 != v {
			t.Fatalf("%v round trip %d -> %d", c.Type, v, v2)
		}
	}
}

// FuzzStreamPrefix parses the first bytes of a stream: as a unidirectional
// stream header, as a WEBTRANSPORT_STREAM bidirectional header, and as an
// HTTP datagram, re-encoding what is accepted.
func FuzzStreamPrefix(f *testing.F) {
	addSeeds(f, "FuzzStreamPrefix")
	f.Fuzz(func(t *testing.T, data []byte) {
		typ, sid, n, err := frames.ParseUniStreamHeader(data)
		switch {
		case err == nil:
			var enc []byte
			if typ == frames.StreamTypeWebTransport {
				enc = frames.AppendWebTransportUniHeader(nil, sid)
			} else {
				enc = frames.AppendUniStreamType(nil, typ)
			}
			t2, s2, n2, err := frames.ParseUniStreamHeader(enc)
			if err != nil || t2 != typ || s2 != sid || n2 != len(enc) || n > len(data) {
				t.Fatalf("uni round trip %v %d: %v %d %v", typ, sid, t2, s2, err)
			}
			_ = typ.String()
			_ = typ.IsCritical()
		case errors.Is(err, frames.ErrSessionID):
			if typ != frames.StreamTypeWebTransport || frames.IsSessionID(sid) {
				t.Fatalf("ErrSessionID for %v %d", typ, sid)
			}
		default:
			if !errors.Is(err, frames.ErrTruncated) {
				t.Fatalf("uni: %v", err)
			}
		}

		// Bidirectional: a frame-type varint, then the session ID if 0x41.
		if v, vn, err := varint.Parse(data); err == nil && frames.Type(v) == frames.TypeWebTransportStream {
			sid, sn, err := frames.ParseWebTransportBidiHeader(data[vn:])
			switch {
			case err == nil:
				enc := frames.AppendWebTransportBidiHeader(nil, sid)
				if got, _, err := frames.ParseWebTransportBidiHeader(enc[2:]); err != nil || got != sid || sn > len(data)-vn {
					t.Fatalf("bidi round trip %d", sid)
				}
			case errors.Is(err, frames.ErrSessionID), errors.Is(err, frames.ErrTruncated):
				mustBeFrameError(t, err, frames.H3IDError, frames.H3FrameError)
			default:
				t.Fatalf("bidi: %v", err)
			}
		}

		// HTTP datagram.
		stream, payload, err := frames.ParseDatagram(data)
		if err != nil {
			mustBeFrameError(t, err, frames.H3DatagramError)
			return
		}
		if !frames.IsSessionID(stream) || stream/4 > frames.MaxQuarterStreamID {
			t.Fatalf("datagram stream %d", stream)
		}
		enc := append(frames.AppendDatagramHeader(nil, stream), payload...)
		if s2, p2, err := frames.ParseDatagram(enc); err != nil || s2 != stream || !bytes.Equal(p2, payload) {
			t.Fatalf("datagram round trip")
		}
	})
}
