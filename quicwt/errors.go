package quicwt

import (
	"errors"
	"fmt"

	"github.com/quic-go/quic-go"

	"github.com/quicwt/quicwt/frames"
)

// ErrorCode is an HTTP/3 error code; see package frames for the constants.
type ErrorCode = frames.ErrorCode

// SessionErrorCode is the 32-bit application error code of
// WT_CLOSE_SESSION (draft-ietf-webtrans-http3, Section 6).
type SessionErrorCode uint32

// StreamErrorCode is the 32-bit application error code of a WebTransport
// stream's reset or STOP_SENDING, carried in the HTTP/3 error space as
// WT_APPLICATION_ERROR (Section 4.4).
type StreamErrorCode uint32

// StreamID is a QUIC stream ID; a session's ID is its CONNECT stream's.
type StreamID uint64

// Sentinel errors.
var (
	// ErrSessionGone is matched (errors.Is) by stream errors caused by the
	// end of the stream's session (WT_SESSION_GONE) and by operations on a
	// closed session.
	ErrSessionGone = errors.New("quicwt: WebTransport session gone")
	// ErrConnectionClosed is matched by errors caused by the end of the
	// underlying connection.
	ErrConnectionClosed = errors.New("quicwt: connection closed")
	// ErrGoaway is returned when opening a session on a connection the peer
	// is shutting down (GOAWAY).
	ErrGoaway = errors.New("quicwt: connection is going away (GOAWAY)")
	// ErrNotSupported is returned when the peer's SETTINGS do not enable
	// any WebTransport draft we speak.
	ErrNotSupported = errors.New("quicwt: peer does not support WebTransport")
	// ErrSettingsTimeout is returned when the peer's SETTINGS did not arrive
	// in time.
	ErrSettingsTimeout = errors.New("quicwt: peer SETTINGS did not arrive")
	// ErrOriginRejected is returned by Upgrade when the origin check fails.
	ErrOriginRejected = errors.New("quicwt: origin not allowed")
	// ErrNotWebTransport is returned by Upgrade for a request that is not a
	// WebTransport extended CONNECT.
	ErrNotWebTransport = errors.New("quicwt: not a WebTransport request")
	// ErrAlreadyResponded is returned by Upgrade after a response was sent.
	ErrAlreadyResponded = errors.New("quicwt: response already sent")
	// ErrTooManySessions is the session limit of one connection
	// (Limits.MaxSessions): at a server, the reason a CONNECT was reset
	// with H3_REQUEST_REJECTED; at a client, returned by OpenSession when
	// that many of its own sessions are open on the connection.
	ErrTooManySessions = errors.New("quicwt: session limit reached")
	// ErrRequestRejected is matched (errors.Is) by the *StreamError of a
	// CONNECT the server reset with H3_REQUEST_REJECTED: it did not
	// process the request (its session limit, GOAWAY, a missing
	// SETTINGS), so it is safe to retry, on another connection (RFC 9114,
	// Section 4.1.1).
	ErrRequestRejected = errors.New("quicwt: request rejected by the server (H3_REQUEST_REJECTED)")
	// ErrIncompleteResponse is returned by Dial and OpenSession when the
	// server ended the request stream before sending a response; the
	// stream is reset with H3_REQUEST_INCOMPLETE and the connection's
	// other sessions go on.
	ErrIncompleteResponse = errors.New("quicwt: request stream ended without a response (H3_REQUEST_INCOMPLETE)")
	// ErrMalformedResponse is matched by errors for a response that breaks
	// HTTP/3's message rules (RFC 9114, Section 4.1.2) or exceeds
	// Limits.MaxFieldSectionSize; only that request fails.
	ErrMalformedResponse = errors.New("quicwt: malformed response")
	// ErrDatagramsDisabled is returned by SendDatagram when the peer did not
	// enable HTTP datagrams.
	ErrDatagramsDisabled = errors.New("quicwt: peer does not accept datagrams")
)

// ConnectionError is the end of a connection: a connection error we
// detected and sent (Remote false), or one the peer sent (Remote true).
type ConnectionError struct {
	Code   ErrorCode
	Remote bool
	Reason string
}

func (e *ConnectionError) Error() string {
	who := "local"
	if e.Remote {
		who = "remote"
	}
	if e.Reason == "" {
		return fmt.Sprintf("quicwt: connection closed (%s): %s", who, e.Code)
	}
	return fmt.Sprintf("quicwt: connection closed (%s): %s: %s", who, e.Code, e.Reason)
}

// Is makes every ConnectionError match ErrConnectionClosed.
func (e *ConnectionError) Is(target error) bool { return target == ErrConnectionClosed }

// SessionError is the end of a WebTransport session: the 32-bit
// application code and message of WT_CLOSE_SESSION (code 0 and an empty
// message for a clean end without it), and who closed it.
type SessionError struct {
	Code    SessionErrorCode
	Message string
	Remote  bool
	// Cause is set when the session ended abruptly: the CONNECT stream was
	// reset, a protocol error occurred, or the connection ended.
	Cause error
}

func (e *SessionError) Error() string {
	who := "locally"
	if e.Remote {
		who = "by peer"
	}
	if e.Cause != nil {
		return fmt.Sprintf("quicwt: session closed %s: %v", who, e.Cause)
	}
	return fmt.Sprintf("quicwt: session closed %s with code %d: %q", who, e.Code, e.Message)
}

// Is makes every SessionError match ErrSessionGone.
func (e *SessionError) Is(target error) bool { return target == ErrSessionGone }

// Unwrap returns the cause of an abrupt end.
func (e *SessionError) Unwrap() error { return e.Cause }

// StreamError is a stream reset or stopped by either side.
type StreamError struct {
	StreamID StreamID
	// Code is the WebTransport application error code, valid when
	// Application is true.
	Code        StreamErrorCode
	Application bool
	// H3Code is the code on the wire (for application codes, the mapped
	// value in the WT_APPLICATION_ERROR range).
	H3Code ErrorCode
	Remote bool
}

func (e *StreamError) Error() string {
	who := "local"
	if e.Remote {
		who = "remote"
	}
	if e.Application {
		return fmt.Sprintf("quicwt: stream %d canceled (%s) with code %d", e.StreamID, who, e.Code)
	}
	return fmt.Sprintf("quicwt: stream %d canceled (%s): %s", e.StreamID, who, e.H3Code)
}

// Is matches ErrSessionGone for streams ended by WT_SESSION_GONE, and
// ErrRequestRejected for streams reset with H3_REQUEST_REJECTED.
func (e *StreamError) Is(target error) bool {
	switch target {
	case ErrSessionGone:
		return e.H3Code == frames.WTSessionGone
	case ErrRequestRejected:
		return e.H3Code == frames.H3RequestRejected
	}
	return false
}

// DatagramTooLargeError is returned by SendDatagram for a payload that
// cannot fit one QUIC packet; Max is the largest payload that fits now.
type DatagramTooLargeError struct{ Max int }

func (e *DatagramTooLargeError) Error() string {
	return fmt.Sprintf("quicwt: datagram too large (maximum payload now %d bytes)", e.Max)
}

// RejectedError is returned by Dial when the server answered the CONNECT
// with a non-2xx status.
type RejectedError struct{ StatusCode int }

func (e *RejectedError) Error() string {
	return fmt.Sprintf("quicwt: server rejected the session with status %d", e.StatusCode)
}

// translateStreamErr turns quic-go's stream errors into StreamError and
// connection errors into ConnectionError; other errors pass unchanged.
func translateStreamErr(err error) error {
	if se, ok := errors.AsType[*quic.StreamError](err); ok {
		c := ErrorCode(se.ErrorCode)
		n, app := frames.WTApplicationCode(c)
		return &StreamError{StreamID: StreamID(se.StreamID), Code: StreamErrorCode(n), Application: app, H3Code: c, Remote: se.Remote}
	}
	return translateConnErr(err)
}

func translateConnErr(err error) error {
	if ae, ok := errors.AsType[*quic.ApplicationError](err); ok {
		return &ConnectionError{Code: ErrorCode(ae.ErrorCode), Remote: ae.Remote, Reason: ae.ErrorMessage}
	}
	if _, ok := errors.AsType[*quic.TransportError](err); ok {
		return fmt.Errorf("%w: %w", ErrConnectionClosed, err)
	}
	if _, ok := errors.AsType[*quic.IdleTimeoutError](err); ok {
		return fmt.Errorf("%w: %w", ErrConnectionClosed, err)
	}
	return err
}
