package frames

import (
	"unicode/utf8"

	"github.com/quicwt/quicwt/varint"
)

// CapsuleType is a capsule type (RFC 9297, Section 3.2; IANA "HTTP Capsule Types").
type CapsuleType uint64

// Capsule types used with WebTransport over HTTP/3 (RFC 9297, Section 3.5;
// draft-ietf-webtrans-http3, Sections 5.6 and 6; draft-ietf-webtrans-http2,
// Section 6 for the HTTP/2-only ones).
const (
	CapsuleDatagram           CapsuleType = 0x00
	CapsuleCloseSession       CapsuleType = 0x2843     // WT_CLOSE_SESSION (CLOSE_WEBTRANSPORT_SESSION)
	CapsuleDrainSession       CapsuleType = 0x78ae     // WT_DRAIN_SESSION (DRAIN_WEBTRANSPORT_SESSION)
	CapsulePadding            CapsuleType = 0x190b4d38 // HTTP/2 only
	CapsuleResetStream        CapsuleType = 0x190b4d39 // HTTP/2 only
	CapsuleStopSending        CapsuleType = 0x190b4d3a // HTTP/2 only
	CapsuleStream             CapsuleType = 0x190b4d3b // HTTP/2 only
	CapsuleStreamFin          CapsuleType = 0x190b4d3c // HTTP/2 only
	CapsuleMaxData            CapsuleType = 0x190b4d3d // WT_MAX_DATA
	CapsuleMaxStreamData      CapsuleType = 0x190b4d3e // HTTP/2 only
	CapsuleMaxStreamsBidi     CapsuleType = 0x190b4d3f // WT_MAX_STREAMS (bidirectional)
	CapsuleMaxStreamsUni      CapsuleType = 0x190b4d40 // WT_MAX_STREAMS (unidirectional)
	CapsuleDataBlocked        CapsuleType = 0x190b4d41 // WT_DATA_BLOCKED
	CapsuleStreamDataBlocked  CapsuleType = 0x190b4d42 // HTTP/2 only
	CapsuleStreamsBlockedBidi CapsuleType = 0x190b4d43 // WT_STREAMS_BLOCKED (bidirectional)
	CapsuleStreamsBlockedUni  CapsuleType = 0x190b4d44 // WT_STREAMS_BLOCKED (unidirectional)
)

var capsuleNames = map[CapsuleType]string{
	CapsuleDatagram: "DATAGRAM", CapsuleCloseSession: "WT_CLOSE_SESSION", CapsuleDrainSession: "WT_DRAIN_SESSION",
	CapsulePadding: "PADDING", CapsuleResetStream: "WT_RESET_STREAM", CapsuleStopSending: "WT_STOP_SENDING",
	CapsuleStream: "WT_STREAM", CapsuleStreamFin: "WT_STREAM_WITH_FIN", CapsuleMaxData: "WT_MAX_DATA",
	CapsuleMaxStreamData: "WT_MAX_STREAM_DATA", CapsuleMaxStreamsBidi: "WT_MAX_STREAMS_BIDI",
	CapsuleMaxStreamsUni: "WT_MAX_STREAMS_UNI", CapsuleDataBlocked: "WT_DATA_BLOCKED",
	CapsuleStreamDataBlocked: "WT_STREAM_DATA_BLOCKED", CapsuleStreamsBlockedBidi: "WT_STREAMS_BLOCKED_BIDI",
	CapsuleStreamsBlockedUni: "WT_STREAMS_BLOCKED_UNI",
}

func (t CapsuleType) String() string {
	if s, ok := capsuleNames[t]; ok {
		return s
	}
	if IsReservedCapsule(uint64(t)) {
		return "GREASE"
	}
	return "UNKNOWN"
}

// IsReservedCapsule reports the reserved capsule types 0x29*N+0x17 (RFC 9297,
// Section 5.4).
func IsReservedCapsule(v uint64) bool { return v >= 0x17 && (v-0x17)%0x29 == 0 }

// IsHTTP2Only reports the capsules that draft-ietf-webtrans-http2 defines and
// that must not be used on HTTP/3, where QUIC provides their function.
func (t CapsuleType) IsHTTP2Only() bool {
	switch t {
	case CapsulePadding, CapsuleResetStream, CapsuleStopSending, CapsuleStream, CapsuleStreamFin,
		CapsuleMaxStreamData, CapsuleStreamDataBlocked:
		return true
	}
	return false
}

// known reports whether the parser buffers and returns this capsule type.
func (t CapsuleType) known() bool {
	switch t {
	case CapsuleDatagram, CapsuleCloseSession, CapsuleDrainSession, CapsuleMaxData,
		CapsuleMaxStreamsBidi, CapsuleMaxStreamsUni, CapsuleDataBlocked,
		CapsuleStreamsBlockedBidi, CapsuleStreamsBlockedUni:
		return true
	}
	return t.IsHTTP2Only()
}

// Capsule is one parsed capsule. Value aliases the parser's input or its
// internal buffer and is valid until the next call to the parser.
type Capsule struct {
	Type  CapsuleType
	Value []byte
}

// AppendCapsule appends a capsule.
func AppendCapsule(b []byte, t CapsuleType, value []byte) []byte {
	b = varint.MustAppend(b, uint64(t))
	b = varint.MustAppend(b, uint64(len(value)))
	return append(b, value...)
}

// MaxCloseMessage is the longest WT_CLOSE_SESSION message in bytes
// (draft-ietf-webtrans-http3, Section 6).
const MaxCloseMessage = 1024

// AppendCloseSession appends a WT_CLOSE_SESSION capsule. A message longer
// than MaxCloseMessage is truncated at a UTF-8 boundary, as the draft asks of
// the sender; invalid UTF-8 is replaced so the capsule stays valid.
func AppendCloseSession(b []byte, code uint32, msg string) []byte {
	msg = TruncateCloseMessage(msg)
	b = varint.MustAppend(b, uint64(CapsuleCloseSession))
	b = varint.MustAppend(b, uint64(4+len(msg)))
	b = append(b, byte(code>>24), byte(code>>16), byte(code>>8), byte(code))
	return append(b, msg...)
}

// TruncateCloseMessage makes msg valid UTF-8 of at most MaxCloseMessage bytes.
func TruncateCloseMessage(msg string) string {
	if !utf8.ValidString(msg) {
		msg = toValidUTF8(msg)
	}
	if len(msg) <= MaxCloseMessage {
		return msg
	}
	cut := MaxCloseMessage
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut]
}

func toValidUTF8(s string) string {
	out := make([]byte, 0, len(s))
	for len(s) > 0 {
		r, size := utf8.DecodeRuneInString(s)
		if r == utf8.RuneError && size == 1 {
			out = utf8.AppendRune(out, utf8.RuneError)
		} else {
			out = append(out, s[:size]...)
		}
		s = s[size:]
	}
	return string(out)
}

// ParseCloseSession parses a WT_CLOSE_SESSION value: a 32-bit error code and
// a UTF-8 message of at most 1024 bytes. A short value is ErrCapsuleMalformed;
// an over-long or invalid message is ErrCloseMessage (H3_MESSAGE_ERROR).
func ParseCloseSession(v []byte) (code uint32, msg []byte, err error) {
	if len(v) < 4 {
		return 0, nil, ErrCapsuleMalformed
	}
	code = uint32(v[0])<<24 | uint32(v[1])<<16 | uint32(v[2])<<8 | uint32(v[3])
	msg = v[4:]
	if len(msg) > MaxCloseMessage || !utf8.Valid(msg) {
		return code, nil, ErrCloseMessage
	}
	return code, msg, nil
}

// AppendDrainSession appends a WT_DRAIN_SESSION capsule (empty value).
func AppendDrainSession(b []byte) []byte { return AppendCapsule(b, CapsuleDrainSession, nil) }

// ParseDrainSession checks a WT_DRAIN_SESSION value, which must be empty.
func ParseDrainSession(v []byte) error {
	if len(v) != 0 {
		return ErrCapsuleMalformed
	}
	return nil
}

// AppendVarintCapsule appends a capsule whose value is one varint:
// WT_MAX_DATA, WT_MAX_STREAMS, WT_DATA_BLOCKED and WT_STREAMS_BLOCKED.
func AppendVarintCapsule(b []byte, t CapsuleType, v uint64) []byte {
	b = varint.MustAppend(b, uint64(t))
	b = varint.MustAppend(b, uint64(varint.Len(v)))
	return varint.MustAppend(b, v)
}

// MaxStreams is the largest value of WT_MAX_STREAMS and WT_STREAMS_BLOCKED
// (draft-ietf-webtrans-http3, Section 5.6.2).
const MaxStreams = 1 << 60

// ParseVarintCapsule parses a value holding exactly one varint. For the
// stream-count capsules a value above 2^60 is a WT_FLOW_CONTROL_ERROR.
func ParseVarintCapsule(t CapsuleType, v []byte) (uint64, error) {
	x, n, err := varint.Parse(v)
	if err != nil || n != len(v) {
		return 0, ErrCapsuleMalformed
	}
	switch t {
	case CapsuleMaxStreamsBidi, CapsuleMaxStreamsUni, CapsuleStreamsBlockedBidi, CapsuleStreamsBlockedUni:
		if x > MaxStreams {
			return 0, ErrFlowControlLimit
		}
	}
	return x, nil
}

// ErrFlowControlLimit is a WT_MAX_STREAMS or WT_STREAMS_BLOCKED above 2^60.
var ErrFlowControlLimit = &Error{Code: WTFlowControlError, Reason: "stream limit above 2^60"}

// CapsuleParser is a streaming capsule parser (RFC 9297, Section 3.2) for
// the bytes of a CONNECT stream's DATA frames. Input may be cut anywhere:
// feeding the stream in any chunks yields exactly the capsules of feeding it
// whole. Known capsules are returned whole; unknown and reserved ones are
// skipped without buffering their value. A known capsule longer than
// MaxSize is ErrCapsuleTooLarge; a DATAGRAM capsule longer than MaxSize is
// skipped like an unknown one, since datagrams may be dropped.
//
// The zero value is ready to use with no size limit except the default.
type CapsuleParser struct {
	// MaxSize bounds the value of a known capsule; 0 means DefaultMaxCapsuleSize.
	MaxSize uint64

	hdr       [16]byte // partial type+length bytes
	hdrLen    int
	typ       CapsuleType
	remaining uint64 // value bytes still to come for the current capsule
	inValue   bool
	skip      bool
	buf       []byte // value of a known capsule straddling Next calls
	skipped   uint64 // bytes skipped in unknown capsules (statistics)
	err       error  // sticky: once Next fails, it keeps failing
}

// DefaultMaxCapsuleSize bounds a buffered capsule value by default. It holds
// the largest WT_CLOSE_SESSION (4+1024 bytes) and a typical HTTP datagram.
const DefaultMaxCapsuleSize = 1 << 16

func (p *CapsuleParser) limit() uint64 {
	if p.MaxSize == 0 {
		return DefaultMaxCapsuleSize
	}
	return p.MaxSize
}

// Next consumes bytes from data until it completes one known capsule or runs
// out of input. It returns the bytes consumed and ok=true with the capsule
// when one was completed; the caller calls Next again with data[n:]. The
// returned Value is valid until the next call. After an error the parser
// is stuck: every later call returns the same error and consumes nothing.
func (p *CapsuleParser) Next(data []byte) (c Capsule, n int, ok bool, err error) {
	if p.err != nil {
		return Capsule{}, 0, false, p.err
	}
	for n < len(data) || (p.inValue && p.remaining == 0) {
		if !p.inValue {
			// Accumulate the header: type and length varints.
			for n < len(data) {
				p.hdr[p.hdrLen] = data[n]
				p.hdrLen++
				n++
				if done, err := p.tryHeader(); err != nil {
					p.err = err
					return Capsule{}, n, false, err
				} else if done {
					break
				}
			}
			if !p.inValue {
				return Capsule{}, n, false, nil
			}
			continue
		}
		avail := uint64(len(data) - n)
		take := min(avail, p.remaining)
		if p.skip {
			p.remaining -= take
			p.skipped += take
			n += int(take)
			if p.remaining == 0 {
				p.inValue = false
			}
			continue
		}
		if len(p.buf) == 0 && take == p.remaining {
			// Whole value available in this chunk: no copy.
			v := data[n : n+int(take) : n+int(take)]
			n += int(take)
			p.inValue = false
			p.remaining = 0
			return Capsule{Type: p.typ, Value: v}, n, true, nil
		}
		p.buf = append(p.buf, data[n:n+int(take)]...)
		n += int(take)
		p.remaining -= take
		if p.remaining == 0 {
			v := p.buf
			if cap(p.buf) > 4096 {
				p.buf = nil // do not pin large buffers between capsules
			} else {
				p.buf = p.buf[:0]
			}
			p.inValue = false
			return Capsule{Type: p.typ, Value: v}, n, true, nil
		}
	}
	return Capsule{}, n, false, nil
}

// tryHeader parses the accumulated header bytes once complete.
func (p *CapsuleParser) tryHeader() (done bool, err error) {
	h := p.hdr[:p.hdrLen]
	tl := varint.LenOfFirstByte(h[0])
	if len(h) < tl+1 {
		return false, nil
	}
	ll := varint.LenOfFirstByte(h[tl])
	if len(h) < tl+ll {
		return false, nil
	}
	t, _, _ := varint.Parse(h)
	l, _, _ := varint.Parse(h[tl:])
	p.hdrLen = 0
	p.typ = CapsuleType(t)
	p.remaining = l
	p.inValue = true
	p.skip = false
	if !p.typ.known() {
		p.skip = true
		return true, nil
	}
	if p.typ.IsHTTP2Only() {
		return false, ErrCapsuleHTTP2Only
	}
	if l > p.limit() {
		if p.typ == CapsuleDatagram {
			p.skip = true
			return true, nil
		}
		return false, ErrCapsuleTooLarge
	}
	return true, nil
}

// End reports whether the stream may end here: ErrCapsuleIncomplete
// (H3_MESSAGE_ERROR, RFC 9297, Section 3.3) if it ends inside a capsule.
func (p *CapsuleParser) End() error {
	if p.err != nil {
		return p.err
	}
	if p.inValue || p.hdrLen > 0 {
		return ErrCapsuleIncomplete
	}
	return nil
}

// Skipped returns the number of value bytes skipped in unknown, reserved and
// oversized DATAGRAM capsules.
func (p *CapsuleParser) Skipped() uint64 { return p.skipped }
