package frames

import (
	"io"

	"github.com/quicwt/quicwt/varint"
)

// Type is an HTTP/3 frame type (RFC 9114, Section 7.2; IANA "HTTP/3 Frame Types").
type Type uint64

// Frame types.
const (
	TypeData        Type = 0x00 // RFC 9114, Section 7.2.1
	TypeHeaders     Type = 0x01 // RFC 9114, Section 7.2.2
	TypeCancelPush  Type = 0x03 // RFC 9114, Section 7.2.3
	TypeSettings    Type = 0x04 // RFC 9114, Section 7.2.4
	TypePushPromise Type = 0x05 // RFC 9114, Section 7.2.5
	TypeGoaway      Type = 0x07 // RFC 9114, Section 7.2.6
	TypeOrigin      Type = 0x0c // RFC 9412, Section 2
	TypeMaxPushID   Type = 0x0d // RFC 9114, Section 7.2.7
	// PRIORITY_UPDATE for request and push streams (RFC 9218, Section 7.2).
	TypePriorityUpdateRequest Type = 0xf0700
	TypePriorityUpdatePush    Type = 0xf0701
	// TypeWebTransportStream is WEBTRANSPORT_STREAM (WT_STREAM), the
	// length-less signal that opens a WebTransport bidirectional stream
	// (draft-ietf-webtrans-http3, Section 4.3).
	TypeWebTransportStream Type = 0x41
)

// IsHTTP2Only reports the frame types reserved in HTTP/3 because they exist
// only in HTTP/2: PRIORITY 0x02, PING 0x06, WINDOW_UPDATE 0x08 and
// CONTINUATION 0x09 (RFC 9114, Section 7.2.8).
func (t Type) IsHTTP2Only() bool { return t == 0x02 || t == 0x06 || t == 0x08 || t == 0x09 }

var typeNames = map[Type]string{
	TypeData: "DATA", TypeHeaders: "HEADERS", TypeCancelPush: "CANCEL_PUSH",
	TypeSettings: "SETTINGS", TypePushPromise: "PUSH_PROMISE", TypeGoaway: "GOAWAY",
	TypeOrigin: "ORIGIN", TypeMaxPushID: "MAX_PUSH_ID",
	TypePriorityUpdateRequest: "PRIORITY_UPDATE(request)", TypePriorityUpdatePush: "PRIORITY_UPDATE(push)",
	TypeWebTransportStream: "WEBTRANSPORT_STREAM",
	0x02:                   "PRIORITY(HTTP/2)", 0x06: "PING(HTTP/2)", 0x08: "WINDOW_UPDATE(HTTP/2)", 0x09: "CONTINUATION(HTTP/2)",
}

func (t Type) String() string {
	if s, ok := typeNames[t]; ok {
		return s
	}
	if IsReserved(uint64(t)) {
		return "GREASE"
	}
	return "UNKNOWN"
}

// LengthLimited reports whether ParseHeader and ReadHeader apply the
// caller's length limit to frames of type t: the defined frame types whose
// payload a receiver buffers whole. DATA payloads are streamed; unknown and
// reserved types are skipped without buffering and must be ignored whatever
// their length (RFC 9114, Section 9); the HTTP/2-only types and
// WEBTRANSPORT_STREAM are rejected by Check, which must win over a length
// error (for 0x41 the "length" is really a session ID).
func (t Type) LengthLimited() bool {
	switch t {
	case TypeHeaders, TypeCancelPush, TypeSettings, TypePushPromise, TypeGoaway,
		TypeOrigin, TypeMaxPushID, TypePriorityUpdateRequest, TypePriorityUpdatePush:
		return true
	}
	return false
}

// Header is a frame's Type and Length fields (RFC 9114, Section 7.1).
type Header struct {
	Type   Type
	Length uint64
}

// MaxHeaderLen is the longest encoding of a frame header.
const MaxHeaderLen = 16

// ParseHeader parses a frame header at the start of b. It returns ErrTruncated
// if b ends inside the header, and ErrFrameTooLarge, before any payload is
// read, if the type is LengthLimited and the length exceeds limit. The
// header is returned with ErrFrameTooLarge.
func ParseHeader(b []byte, limit uint64) (h Header, n int, err error) {
	t, n1, err := varint.Parse(b)
	if err != nil {
		return Header{}, 0, ErrTruncated
	}
	l, n2, err := varint.Parse(b[n1:])
	if err != nil {
		return Header{}, 0, ErrTruncated
	}
	h = Header{Type: Type(t), Length: l}
	if l > limit && h.Type.LengthLimited() {
		return h, n1 + n2, ErrFrameTooLarge
	}
	return h, n1 + n2, nil
}

// ReadHeader reads a frame header from r, with the same limit rule as
// ParseHeader (the header is returned with ErrFrameTooLarge). An EOF before the first byte is io.EOF (a clean end between
// frames); an EOF inside the header is ErrTruncated.
func ReadHeader(r io.ByteReader, limit uint64) (Header, error) {
	t, err := varint.Read(r)
	if err != nil {
		if err == io.ErrUnexpectedEOF {
			return Header{}, ErrTruncated
		}
		return Header{}, err
	}
	l, err := varint.Read(r)
	if err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return Header{}, ErrTruncated
		}
		return Header{}, err
	}
	h := Header{Type: Type(t), Length: l}
	if l > limit && h.Type.LengthLimited() {
		return h, ErrFrameTooLarge
	}
	return h, nil
}

// AppendHeader appends a frame header. Type and length must be at most 2^62-1.
func AppendHeader(b []byte, t Type, length uint64) []byte {
	b = varint.MustAppend(b, uint64(t))
	return varint.MustAppend(b, length)
}

// HeaderLen returns the encoded size of a frame header.
func HeaderLen(t Type, length uint64) int { return varint.Len(uint64(t)) + varint.Len(length) }

// Frame is one parsed frame: its type and its whole payload.
type Frame struct {
	Type    Type
	Payload []byte
}

// ParseFrame parses one whole frame at the start of b, for callers holding
// frames in memory (SETTINGS, GOAWAY, fuzzing). Payload aliases b. It returns
// ErrTruncated if the frame is not complete in b, and ErrFrameTooLarge if its
// length exceeds limit (whatever the type, unlike ParseHeader, because the
// whole frame is held in b).
func ParseFrame(b []byte, limit uint64) (f Frame, n int, err error) {
	h, hn, err := ParseHeader(b, limit)
	if err != nil {
		return Frame{}, 0, err
	}
	if h.Length > limit {
		return Frame{}, 0, ErrFrameTooLarge
	}
	if uint64(len(b)-hn) < h.Length {
		return Frame{}, 0, ErrTruncated
	}
	end := hn + int(h.Length)
	return Frame{Type: h.Type, Payload: b[hn:end:end]}, end, nil
}

// AppendFrame appends a frame with the given payload.
func AppendFrame(b []byte, t Type, payload []byte) []byte {
	b = AppendHeader(b, t, uint64(len(payload)))
	return append(b, payload...)
}

// parseSingleVarint parses a payload that holds exactly one varint.
func parseSingleVarint(p []byte) (uint64, error) {
	v, n, err := varint.Parse(p)
	if err != nil || n != len(p) {
		return 0, ErrFramePayload
	}
	return v, nil
}

// ParseGoaway parses a GOAWAY payload: a stream ID (sent by a server) or a
// push ID (sent by a client) (RFC 9114, Section 7.2.6).
func ParseGoaway(p []byte) (id uint64, err error) { return parseSingleVarint(p) }

// AppendGoaway appends a GOAWAY frame.
func AppendGoaway(b []byte, id uint64) []byte {
	b = AppendHeader(b, TypeGoaway, uint64(varint.Len(id)))
	return varint.MustAppend(b, id)
}

// ParseCancelPush parses a CANCEL_PUSH payload (RFC 9114, Section 7.2.3).
func ParseCancelPush(p []byte) (pushID uint64, err error) { return parseSingleVarint(p) }

// AppendCancelPush appends a CANCEL_PUSH frame.
func AppendCancelPush(b []byte, pushID uint64) []byte {
	b = AppendHeader(b, TypeCancelPush, uint64(varint.Len(pushID)))
	return varint.MustAppend(b, pushID)
}

// ParseMaxPushID parses a MAX_PUSH_ID payload (RFC 9114, Section 7.2.7).
func ParseMaxPushID(p []byte) (pushID uint64, err error) { return parseSingleVarint(p) }

// AppendMaxPushID appends a MAX_PUSH_ID frame.
func AppendMaxPushID(b []byte, pushID uint64) []byte {
	b = AppendHeader(b, TypeMaxPushID, uint64(varint.Len(pushID)))
	return varint.MustAppend(b, pushID)
}

// ParsePushPromise parses a PUSH_PROMISE payload: a push ID and an encoded
// field section, which aliases p (RFC 9114, Section 7.2.5).
func ParsePushPromise(p []byte) (pushID uint64, fieldSection []byte, err error) {
	v, n, err := varint.Parse(p)
	if err != nil {
		return 0, nil, ErrFramePayload
	}
	return v, p[n:], nil
}

// AppendPushPromise appends a PUSH_PROMISE frame.
func AppendPushPromise(b []byte, pushID uint64, fieldSection []byte) []byte {
	b = AppendHeader(b, TypePushPromise, uint64(varint.Len(pushID)+len(fieldSection)))
	b = varint.MustAppend(b, pushID)
	return append(b, fieldSection...)
}

// ParsePriorityUpdate parses a PRIORITY_UPDATE payload: the prioritized
// element ID and the Priority Field Value, which aliases p (RFC 9218,
// Section 7.2).
func ParsePriorityUpdate(p []byte) (elementID uint64, fieldValue []byte, err error) {
	v, n, err := varint.Parse(p)
	if err != nil {
		return 0, nil, ErrFramePayload
	}
	return v, p[n:], nil
}

// AppendPriorityUpdate appends a PRIORITY_UPDATE frame of type t
// (TypePriorityUpdateRequest or TypePriorityUpdatePush).
func AppendPriorityUpdate(b []byte, t Type, elementID uint64, fieldValue []byte) []byte {
	b = AppendHeader(b, t, uint64(varint.Len(elementID)+len(fieldValue)))
	b = varint.MustAppend(b, elementID)
	return append(b, fieldValue...)
}

// AppendHeaders appends a HEADERS frame carrying an encoded field section.
func AppendHeaders(b []byte, fieldSection []byte) []byte {
	return AppendFrame(b, TypeHeaders, fieldSection)
}

// AppendDataHeader appends the header of a DATA frame whose payload of n
// bytes the caller writes next (RFC 9114, Section 7.2.1).
func AppendDataHeader(b []byte, n uint64) []byte { return AppendHeader(b, TypeData, n) }
