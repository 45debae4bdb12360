package conformance

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicwt/quicwt/frames"
)

// grace is how long "ignored" cases wait before checking the connection
// is still open.
const grace = 300 * time.Millisecond

func codeNames(codes []frames.ErrorCode) string {
	s := make([]string, len(codes))
	for i, c := range codes {
		s[i] = c.String()
	}
	return strings.Join(s, " or ")
}

// closeCause waits for the connection to end (or ctx) and returns the
// server's CONNECTION_CLOSE, or a description of what happened instead.
func (p *Peer) closeCause(ctx context.Context) (*quic.ApplicationError, string) {
	select {
	case <-p.QC.Context().Done():
	case <-ctx.Done():
		return nil, "the connection is still open"
	}
	err := context.Cause(p.QC.Context())
	var ae *quic.ApplicationError
	if errors.As(err, &ae) && ae.Remote {
		return ae, ""
	}
	var te *quic.TransportError
	if errors.As(err, &te) {
		return nil, fmt.Sprintf("the connection ended with a transport error: %v", te)
	}
	return nil, fmt.Sprintf("the connection ended with %v", err)
}

// expectConnError waits for a connection error with one of the codes.
func expectConnError(ctx context.Context, p *Peer, want ...frames.ErrorCode) Result {
	ae, other := p.closeCause(ctx)
	if ae == nil {
		return fail("want connection error %s; %s", codeNames(want), other)
	}
	got := frames.ErrorCode(ae.ErrorCode)
	if slices.Contains(want, got) {
		return pass("connection error %s (%q)", got, ae.ErrorMessage)
	}
	return fail("want connection error %s, got %s (%q)", codeNames(want), got, ae.ErrorMessage)
}

// writeFailed reports whether a write error ends the case: it does not
// when the server already closed the connection, since the case then
// checks how.
func (p *Peer) writeFailed(err error) bool {
	return err != nil && context.Cause(p.QC.Context()) == nil
}

// stillOpen reports an error if the connection closed within grace.
func (p *Peer) stillOpen() error {
	select {
	case <-p.QC.Context().Done():
		return errors.New(describeErr(context.Cause(p.QC.Context())))
	case <-time.After(grace):
		return nil
	}
}

// alive checks the connection is still usable: open after a grace period,
// and a new extended CONNECT on the checked path gets a 2xx (the session
// is then closed cleanly).
func (p *Peer) alive(ctx context.Context) error {
	if err := p.stillOpen(); err != nil {
		return err
	}
	s, err := p.Connect(ctx, p.opts.Path)
	if err != nil {
		if cerr := context.Cause(p.QC.Context()); cerr != nil {
			return errors.New(describeErr(cerr))
		}
		return err
	}
	_ = s.Close(0, "")
	return nil
}

// expectIgnored checks that what the case sent was ignored: the
// connection stays open and a new session can be established.
func expectIgnored(ctx context.Context, p *Peer, what string) Result {
	if err := p.alive(ctx); err != nil {
		return fail("after %s: %v", what, err)
	}
	return pass("%s ignored: connection open and a new extended CONNECT got 2xx", what)
}

// outcome is what became of a request stream.
type outcome struct {
	resp *Response
	err  error             // from reading the response
	stop *quic.StreamError // STOP_SENDING seen on our write side
}

func (o outcome) String() string {
	var parts []string
	if o.resp != nil {
		parts = append(parts, fmt.Sprintf("status %d", o.resp.Status))
	}
	if o.err != nil {
		parts = append(parts, describeErr(o.err))
	}
	if o.stop != nil {
		parts = append(parts, fmt.Sprintf("STOP_SENDING with %s", frames.ErrorCode(o.stop.ErrorCode)))
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, ", ")
}

// resetCode returns the code of a reset of the stream's read side.
func (o outcome) resetCode() (frames.ErrorCode, bool) {
	var se *quic.StreamError
	if errors.As(o.err, &se) && se.Remote {
		return frames.ErrorCode(se.ErrorCode), true
	}
	return 0, false
}

// connCode returns the code of a connection error.
func (o outcome) connCode() (frames.ErrorCode, bool) {
	var ae *quic.ApplicationError
	if errors.As(o.err, &ae) && ae.Remote {
		return frames.ErrorCode(ae.ErrorCode), true
	}
	return 0, false
}

// stopSending returns the STOP_SENDING the server sent on s, if any.
func stopSending(s *quic.Stream) *quic.StreamError {
	select {
	case <-s.Context().Done():
		var se *quic.StreamError
		if errors.As(context.Cause(s.Context()), &se) && se.Remote {
			return se
		}
	default:
	}
	return nil
}

// observe reads the response of a request stream.
func observe(ctx context.Context, r *Request) outcome {
	resp, err := r.ReadResponse(ctx)
	return outcome{resp: resp, err: err, stop: stopSending(r.Str)}
}

// streamCodeIs checks for a stream error with one of the codes, on either
// side of the stream, or a connection error with one of the codes (a
// stream error may be escalated, RFC 9114 §8).
func (o outcome) streamCodeIs(want ...frames.ErrorCode) (string, bool) {
	if c, ok := o.resetCode(); ok && slices.Contains(want, c) {
		return fmt.Sprintf("stream reset with %s", c), true
	}
	if o.stop != nil && slices.Contains(want, frames.ErrorCode(o.stop.ErrorCode)) {
		return fmt.Sprintf("STOP_SENDING with %s", frames.ErrorCode(o.stop.ErrorCode)), true
	}
	if c, ok := o.connCode(); ok && slices.Contains(want, c) {
		return fmt.Sprintf("connection error %s (a stream error escalated, RFC 9114 §8)", c), true
	}
	return "", false
}

// expectMalformed checks the answer to a malformed request: a stream error
// H3_MESSAGE_ERROR (RFC 9114 §4.1.2), possibly after a 4xx response, which
// a server MAY send first.
func expectMalformed(ctx context.Context, r *Request) Result {
	o := observe(ctx, r)
	if d, ok := o.streamCodeIs(frames.H3MessageError); ok {
		return pass("%s", d)
	}
	if o.resp != nil && o.resp.Status >= 400 && o.resp.Status < 500 {
		return pass("status %d (a server MAY answer a malformed request before closing the stream, RFC 9114 §4.1.2)", o.resp.Status)
	}
	return fail("want stream error H3_MESSAGE_ERROR; got %s", o)
}

// expectStatus2xx checks that a request got a 2xx.
func expectStatus2xx(ctx context.Context, r *Request) Result {
	o := observe(ctx, r)
	if o.resp != nil && o.resp.Status >= 200 && o.resp.Status < 300 {
		return pass("status %d", o.resp.Status)
	}
	return fail("want a 2xx response; got %s", o)
}

// expectRejected checks that a request got no 2xx: a final status >= 300,
// or a stream reset with one of okResets.
func expectRejected(ctx context.Context, p *Peer, r *Request, okResets ...frames.ErrorCode) Result {
	o := observe(ctx, r)
	if o.resp != nil && o.resp.Status >= 300 {
		return pass("status %d", o.resp.Status)
	}
	if d, ok := o.streamCodeIs(okResets...); ok {
		if _, conn := o.connCode(); !conn {
			return pass("%s", d)
		}
	}
	return fail("want a status >= 300 (or a stream reset with %s); got %s", codeNames(okResets), o)
}

// endOfSession is what became of a CONNECT stream's receive side.
func endOfSession(ctx context.Context, s *Session) outcome {
	err := s.ReadToEnd(ctx)
	return outcome{err: err, stop: stopSending(s.Str)}
}

// expectCleanEnd checks that, after we closed the session, the server ends
// the CONNECT stream without a protocol error: FIN, or a reset with
// WT_SESSION_GONE, H3_NO_ERROR or H3_REQUEST_CANCELLED (draft-ietf-webtrans-http3-16 §6).
func expectCleanEnd(ctx context.Context, s *Session, what string) Result {
	o := endOfSession(ctx, s)
	if d, ok := o.cleanEnd(); ok {
		return pass("%s: %s", what, d)
	}
	return fail("%s: want FIN on the CONNECT stream; got %s", what, o)
}

// cleanEnd reports whether the CONNECT stream's receive side ended without
// a protocol error: FIN, or a reset with WT_SESSION_GONE, H3_NO_ERROR or
// H3_REQUEST_CANCELLED.
func (o outcome) cleanEnd() (string, bool) {
	if o.err == nil {
		return "the server ended the CONNECT stream with FIN", true
	}
	if c, ok := o.resetCode(); ok && (c == frames.WTSessionGone || c == frames.H3NoError || c == frames.H3RequestCancelled) {
		return fmt.Sprintf("the server reset the CONNECT stream with %s", c), true
	}
	return "", false
}

// expectSessionError checks that the server reset the CONNECT stream (or,
// escalating, closed the connection) with one of the codes.
func expectSessionError(ctx context.Context, s *Session, want ...frames.ErrorCode) Result {
	o := endOfSession(ctx, s)
	if d, ok := o.streamCodeIs(want...); ok {
		return pass("CONNECT stream: %s", d)
	}
	if o.err == nil {
		return fail("want the CONNECT stream reset with %s; the server ended it with FIN", codeNames(want))
	}
	return fail("want the CONNECT stream reset with %s; got %s", codeNames(want), o)
}
