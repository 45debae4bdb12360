package frames

import "github.com/quicwt/quicwt/varint"

// StreamType is the type prefix of a unidirectional stream (RFC 9114,
// Section 6.2; IANA "HTTP/3 Stream Types").
type StreamType uint64

// Unidirectional stream types.
const (
	StreamTypeControl      StreamType = 0x00 // RFC 9114, Section 6.2.1
	StreamTypePush         StreamType = 0x01 // RFC 9114, Section 6.2.2
	StreamTypeQPACKEncoder StreamType = 0x02 // RFC 9204, Section 4.2
	StreamTypeQPACKDecoder StreamType = 0x03 // RFC 9204, Section 4.2
	// StreamTypeWebTransport is WEBTRANSPORT_STREAM for unidirectional
	// streams, followed by the session ID (draft-ietf-webtrans-http3, Section 4.2).
	StreamTypeWebTransport StreamType = 0x54
)

func (t StreamType) String() string {
	switch t {
	case StreamTypeControl:
		return "control"
	case StreamTypePush:
		return "push"
	case StreamTypeQPACKEncoder:
		return "QPACK encoder"
	case StreamTypeQPACKDecoder:
		return "QPACK decoder"
	case StreamTypeWebTransport:
		return "WebTransport"
	}
	if IsReserved(uint64(t)) {
		return "GREASE"
	}
	return "unknown"
}

// IsCritical reports the stream types of which each side may open only one
// and must never close (RFC 9114, Section 6.2.1; RFC 9204, Section 4.2).
func (t StreamType) IsCritical() bool {
	return t == StreamTypeControl || t == StreamTypeQPACKEncoder || t == StreamTypeQPACKDecoder
}

// ParseUniStreamHeader parses the prefix of a unidirectional stream: the
// stream type and, for WebTransport streams, the session ID. n is the number
// of bytes the prefix occupies. It returns ErrTruncated when b ends inside
// the prefix, and ErrSessionID for a session ID that is not a
// client-initiated bidirectional stream ID.
func ParseUniStreamHeader(b []byte) (t StreamType, sessionID uint64, n int, err error) {
	v, n1, err := varint.Parse(b)
	if err != nil {
		return 0, 0, 0, ErrTruncated
	}
	t = StreamType(v)
	if t != StreamTypeWebTransport {
		return t, 0, n1, nil
	}
	sid, n2, err := varint.Parse(b[n1:])
	if err != nil {
		return t, 0, 0, ErrTruncated
	}
	if !IsSessionID(sid) {
		return t, sid, n1 + n2, ErrSessionID
	}
	return t, sid, n1 + n2, nil
}

// AppendUniStreamType appends a unidirectional stream type.
func AppendUniStreamType(b []byte, t StreamType) []byte { return varint.MustAppend(b, uint64(t)) }

// AppendWebTransportUniHeader appends the prefix of a WebTransport
// unidirectional stream: 0x54 and the session ID.
func AppendWebTransportUniHeader(b []byte, sessionID uint64) []byte {
	b = append(b, 0x40, 0x54)
	return varint.MustAppend(b, sessionID)
}

// AppendWebTransportBidiHeader appends the WEBTRANSPORT_STREAM signal that
// opens a WebTransport bidirectional stream: 0x41 and the session ID.
func AppendWebTransportBidiHeader(b []byte, sessionID uint64) []byte {
	b = append(b, 0x40, 0x41)
	return varint.MustAppend(b, sessionID)
}

// ParseWebTransportBidiHeader parses the session ID that follows a
// WEBTRANSPORT_STREAM signal; b starts after the 0x41 varint.
func ParseWebTransportBidiHeader(b []byte) (sessionID uint64, n int, err error) {
	sid, n, err := varint.Parse(b)
	if err != nil {
		return 0, 0, ErrTruncated
	}
	if !IsSessionID(sid) {
		return sid, n, ErrSessionID
	}
	return sid, n, nil
}

// ParseBidiStreamHeader parses the prefix of a peer's bidirectional
// stream: its first varint, a frame type (RFC 9114, Section 6.1), and, when
// that is the WEBTRANSPORT_STREAM signal (draft-ietf-webtrans-http3,
// Section 4.3), the session ID after it. n is the number of bytes the
// prefix occupies: for another type, only the type's varint (the frame's
// length follows). Errors are those of ParseUniStreamHeader.
func ParseBidiStreamHeader(b []byte) (t Type, sessionID uint64, n int, err error) {
	v, n1, err := varint.Parse(b)
	if err != nil {
		return 0, 0, 0, ErrTruncated
	}
	t = Type(v)
	if t != TypeWebTransportStream {
		return t, 0, n1, nil
	}
	sid, n2, err := ParseWebTransportBidiHeader(b[n1:])
	if err == ErrTruncated {
		return t, 0, 0, err
	}
	return t, sid, n1 + n2, err
}

// IsSessionID reports whether id can name a WebTransport session: the ID of
// a client-initiated bidirectional stream, that is, divisible by 4
// (draft-ietf-webtrans-http3, Section 4.2; RFC 9000, Section 2.1).
func IsSessionID(id uint64) bool { return id&3 == 0 }

// MaxQuarterStreamID is the largest quarter stream ID an HTTP datagram may
// carry (RFC 9297, Section 2.1).
const MaxQuarterStreamID = 1<<60 - 1

// ParseDatagram splits an HTTP/3 datagram (the payload of a QUIC DATAGRAM
// frame) into the session's stream ID and the payload, which aliases b
// (RFC 9297, Section 2.1). It returns ErrDatagram (H3_DATAGRAM_ERROR) when b
// cannot hold a quarter stream ID or the ID exceeds 2^60-1.
func ParseDatagram(b []byte) (streamID uint64, payload []byte, err error) {
	q, n, err := varint.Parse(b)
	if err != nil || q > MaxQuarterStreamID {
		return 0, nil, ErrDatagram
	}
	return q * 4, b[n:], nil
}

// AppendDatagramHeader appends the quarter stream ID that prefixes every
// HTTP datagram of the request stream streamID.
func AppendDatagramHeader(b []byte, streamID uint64) []byte {
	return varint.MustAppend(b, streamID/4)
}

// StreamKind names the kinds of HTTP/3 stream that carry frames, for Check.
type StreamKind uint8

const (
	// KindControl is a control stream (RFC 9114, Section 6.2.1).
	KindControl StreamKind = iota
	// KindRequest is a request stream carrying an ordinary HTTP message
	// (RFC 9114, Section 4.1).
	KindRequest
	// KindConnect is the request stream of an extended CONNECT that
	// established a WebTransport session (RFC 9220; draft-ietf-webtrans-http3,
	// Section 3): no server push, capsules inside DATA frames.
	KindConnect
	// KindPush is a push stream (RFC 9114, Section 6.2.2).
	KindPush
)

// Check tells the connection layer what to do with a frame of type t
// received on a stream of the given kind, by an endpoint that is the server
// when atServer is true. It returns known=false and a nil error for
// unknown and reserved types, which must be skipped (RFC 9114, Section 9),
// and ErrHTTP2Frame or ErrFrameUnexpected (H3_FRAME_UNEXPECTED) for frames
// that may not appear there (RFC 9114, Sections 6.2.1, 7.2, 4.1). Ordering
// rules (SETTINGS first and once, DATA after HEADERS) depend on the
// stream's history and are the caller's.
func Check(t Type, kind StreamKind, atServer bool) (known bool, err error) {
	if t.IsHTTP2Only() {
		return true, ErrHTTP2Frame
	}
	switch t {
	case TypeData, TypeHeaders:
		if kind == KindControl || (kind == KindPush && atServer) {
			return true, ErrFrameUnexpected
		}
		return true, nil
	case TypePushPromise:
		// Only a client receives PUSH_PROMISE, on a request stream.
		if kind != KindRequest || atServer {
			return true, ErrFrameUnexpected
		}
		return true, nil
	case TypeSettings, TypeGoaway, TypeCancelPush:
		if kind != KindControl {
			return true, ErrFrameUnexpected
		}
		return true, nil
	case TypePriorityUpdateRequest, TypePriorityUpdatePush:
		// Only on the client's control stream (RFC 9218, Section 7.2).
		if kind != KindControl || !atServer {
			return true, ErrFrameUnexpected
		}
		return true, nil
	case TypeMaxPushID:
		// Sent by clients only (RFC 9114, Section 7.2.7).
		if kind != KindControl || !atServer {
			return true, ErrFrameUnexpected
		}
		return true, nil
	case TypeOrigin:
		// Sent by servers on the control stream (RFC 9412, Section 2).
		if kind != KindControl || atServer {
			return true, ErrFrameUnexpected
		}
		return true, nil
	case TypeWebTransportStream:
		// Valid only as the first bytes of a bidirectional stream, which the
		// caller handles before frame parsing begins.
		return true, ErrMisplacedWebTransportStream
	}
	return false, nil
}
