package frames

import (
	"errors"
	"fmt"
)

// ErrorCode is an HTTP/3 application error code as carried in
// CONNECTION_CLOSE, RESET_STREAM, RESET_STREAM_AT and STOP_SENDING.
type ErrorCode uint64

// HTTP/3 error codes (RFC 9114, Section 8.1).
const (
	H3NoError              ErrorCode = 0x100
	H3GeneralProtocolError ErrorCode = 0x101
	H3InternalError        ErrorCode = 0x102
	H3StreamCreationError  ErrorCode = 0x103
	H3ClosedCriticalStream ErrorCode = 0x104
	H3FrameUnexpected      ErrorCode = 0x105
	H3FrameError           ErrorCode = 0x106
	H3ExcessiveLoad        ErrorCode = 0x107
	H3IDError              ErrorCode = 0x108
	H3SettingsError        ErrorCode = 0x109
	H3MissingSettings      ErrorCode = 0x10a
	H3RequestRejected      ErrorCode = 0x10b
	H3RequestCancelled     ErrorCode = 0x10c
	H3RequestIncomplete    ErrorCode = 0x10d
	H3MessageError         ErrorCode = 0x10e
	H3ConnectError         ErrorCode = 0x10f
	H3VersionFallback      ErrorCode = 0x110
)

// QPACK error codes (RFC 9204, Section 6).
const (
	QPACKDecompressionFailed ErrorCode = 0x200
	QPACKEncoderStreamError  ErrorCode = 0x201
	QPACKDecoderStreamError  ErrorCode = 0x202
)

// H3DatagramError is H3_DATAGRAM_ERROR (RFC 9297, Section 5.2).
const H3DatagramError ErrorCode = 0x33

// WebTransport error codes (draft-ietf-webtrans-http3, Section 9.5).
const (
	WTBufferedStreamRejected ErrorCode = 0x3994bd84
	WTSessionGone            ErrorCode = 0x170d7b68
	WTFlowControlError       ErrorCode = 0x045d4487
	WTALPNError              ErrorCode = 0x0817b3dd
	WTRequirementsNotMet     ErrorCode = 0x212c0d48
)

// The WT_APPLICATION_ERROR range (draft-ietf-webtrans-http3, Section 4.4).
const (
	WTApplicationErrorFirst ErrorCode = 0x52e4a40fa8db
	WTApplicationErrorLast  ErrorCode = 0x52e5ac983162
)

var codeNames = map[ErrorCode]string{
	H3NoError:                "H3_NO_ERROR",
	H3GeneralProtocolError:   "H3_GENERAL_PROTOCOL_ERROR",
	H3InternalError:          "H3_INTERNAL_ERROR",
	H3StreamCreationError:    "H3_STREAM_CREATION_ERROR",
	H3ClosedCriticalStream:   "H3_CLOSED_CRITICAL_STREAM",
	H3FrameUnexpected:        "H3_FRAME_UNEXPECTED",
	H3FrameError:             "H3_FRAME_ERROR",
	H3ExcessiveLoad:          "H3_EXCESSIVE_LOAD",
	H3IDError:                "H3_ID_ERROR",
	H3SettingsError:          "H3_SETTINGS_ERROR",
	H3MissingSettings:        "H3_MISSING_SETTINGS",
	H3RequestRejected:        "H3_REQUEST_REJECTED",
	H3RequestCancelled:       "H3_REQUEST_CANCELLED",
	H3RequestIncomplete:      "H3_REQUEST_INCOMPLETE",
	H3MessageError:           "H3_MESSAGE_ERROR",
	H3ConnectError:           "H3_CONNECT_ERROR",
	H3VersionFallback:        "H3_VERSION_FALLBACK",
	QPACKDecompressionFailed: "QPACK_DECOMPRESSION_FAILED",
	QPACKEncoderStreamError:  "QPACK_ENCODER_STREAM_ERROR",
	QPACKDecoderStreamError:  "QPACK_DECODER_STREAM_ERROR",
	H3DatagramError:          "H3_DATAGRAM_ERROR",
	WTBufferedStreamRejected: "WT_BUFFERED_STREAM_REJECTED",
	WTSessionGone:            "WT_SESSION_GONE",
	WTFlowControlError:       "WT_FLOW_CONTROL_ERROR",
	WTALPNError:              "WT_ALPN_ERROR",
	WTRequirementsNotMet:     "WT_REQUIREMENTS_NOT_MET",
}

// String returns the code's name from the RFCs and drafts, WT_APPLICATION_ERROR(n)
// for a mapped application code, H3_GREASE(0x..) for a reserved code, or hex.
func (c ErrorCode) String() string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	if n, ok := WTApplicationCode(c); ok {
		return fmt.Sprintf("WT_APPLICATION_ERROR(%d)", n)
	}
	if IsReserved(uint64(c)) {
		return fmt.Sprintf("H3_GREASE(%#x)", uint64(c))
	}
	return fmt.Sprintf("H3_ERROR(%#x)", uint64(c))
}

// IsReserved reports whether v is a reserved ("GREASE") codepoint of the form
// 0x1f*N+0x21, used for HTTP/3 frame types, stream types, settings and error
// codes (RFC 9114, Sections 6.2.3, 7.2.8, 7.2.4.1 and 8.1).
func IsReserved(v uint64) bool { return v >= 0x21 && (v-0x21)%0x1f == 0 }

// ReservedValue returns the n-th reserved codepoint 0x1f*n+0x21. n is reduced
// so that the result stays a valid varint.
func ReservedValue(n uint64) uint64 { return 0x1f*(n%0x210842108421084) + 0x21 }

// WTErrorToH3 maps a 32-bit WebTransport application error code into the
// HTTP/3 error code space, skipping reserved codepoints
// (draft-ietf-webtrans-http3, Section 4.4).
func WTErrorToH3(n uint32) ErrorCode {
	v := uint64(n)
	return WTApplicationErrorFirst + ErrorCode(v+v/0x1e)
}

// WTApplicationCode maps an HTTP/3 error code back to a WebTransport
// application error code. ok is false for codes outside the
// WT_APPLICATION_ERROR range and for the reserved codepoints inside it.
func WTApplicationCode(c ErrorCode) (n uint32, ok bool) {
	if c < WTApplicationErrorFirst || c > WTApplicationErrorLast || IsReserved(uint64(c)) {
		return 0, false
	}
	s := uint64(c - WTApplicationErrorFirst)
	return uint32(s - s/0x1f), true
}

// Error is a protocol violation found while parsing, with the HTTP/3 error
// code the specifications name for it. Connection reports whether the code
// is to be used in a connection error (true) or may be confined to the
// stream it occurred on (false); the connection layer may still escalate.
type Error struct {
	Code       ErrorCode
	Connection bool
	Reason     string
}

func (e *Error) Error() string { return e.Code.String() + ": " + e.Reason }

// Is lets errors.Is match two *Error values with the same code and reason,
// so the sentinel errors below survive wrapping.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && t.Reason == e.Reason
}

// CodeOf returns the error code carried by err (an *Error anywhere in its
// chain), or H3GeneralProtocolError if there is none.
func CodeOf(err error) ErrorCode {
	if fe, ok := errors.AsType[*Error](err); ok {
		return fe.Code
	}
	return H3GeneralProtocolError
}

func connErr(code ErrorCode, reason string) *Error {
	return &Error{Code: code, Connection: true, Reason: reason}
}

func streamErr(code ErrorCode, reason string) *Error {
	return &Error{Code: code, Reason: reason}
}

// Parse errors. ErrTruncated is not a protocol violation by itself: it says
// more bytes are needed. It becomes one (H3_FRAME_ERROR) only when the
// stream ends there, which the caller knows.
var (
	ErrTruncated         = connErr(H3FrameError, "truncated")
	ErrFrameTooLarge     = connErr(H3ExcessiveLoad, "frame length exceeds limit")
	ErrFramePayload      = connErr(H3FrameError, "frame payload does not match its type")
	ErrHTTP2Frame        = connErr(H3FrameUnexpected, "HTTP/2-only frame type")
	ErrFrameUnexpected   = connErr(H3FrameUnexpected, "frame not allowed on this stream")
	ErrMissingSettings   = connErr(H3MissingSettings, "first frame on control stream is not SETTINGS")
	ErrCapsuleTooLarge   = streamErr(H3ExcessiveLoad, "capsule length exceeds limit")
	ErrCapsuleMalformed  = streamErr(H3DatagramError, "malformed capsule")
	ErrCapsuleIncomplete = streamErr(H3MessageError, "stream ended inside a capsule")
	ErrCapsuleHTTP2Only  = streamErr(H3DatagramError, "HTTP/2-only WebTransport capsule on HTTP/3")
	ErrCloseMessage      = streamErr(H3MessageError, "WT_CLOSE_SESSION message too long or not UTF-8")
	ErrSessionID         = connErr(H3IDError, "session ID is not a client-initiated bidirectional stream ID")
	ErrDatagram          = connErr(H3DatagramError, "malformed HTTP datagram")
	// ErrMisplacedWebTransportStream is WEBTRANSPORT_STREAM (0x41) seen
	// anywhere but the first bytes of a bidirectional stream.
	ErrMisplacedWebTransportStream = connErr(H3FrameError, "WEBTRANSPORT_STREAM not at the start of a bidirectional stream")
)
