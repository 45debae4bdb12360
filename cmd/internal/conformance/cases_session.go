package conformance

import (
	"context"
	"errors"

	"github.com/quicwt/quicwt/frames"
	"github.com/quicwt/quicwt/settings"
)

// sessionCases check the draft-16 rules on establishing sessions.
func sessionCases() []Case {
	return []Case{
		{
			ID: "session/second-without-flow-control", Section: "WT-H3 §5.1, §5.2",
			Description: "without flow control negotiated (our SETTINGS send no initial limits), a second extended CONNECT on the connection while the first session is open",
			Expect:      "the server resets the second CONNECT stream with H3_REQUEST_REJECTED (MUST); the first session stays up",
			Run:         secondSession,
		},
		{
			ID: "session/capsules-before-2xx", Section: "WT-H3 §3.2",
			Description: "the extended CONNECT and, in the same flight before any response, a DATA frame carrying WT_CLOSE_SESSION (code 0)",
			Expect:      "a 2xx first (capsules are processed only after it), then the CONNECT stream ended cleanly (FIN, or a reset §6 allows)",
			Run:         capsulesBefore2xx,
		},
		{
			ID: "session/no-webtransport-resource-405", Section: "WT-H3 §3.2",
			Description: "a WebTransport extended CONNECT to a path on which the server does not serve WebTransport (Options.NoWebTransportPath)",
			Expect:      "405 (SHOULD; 404 if the server negotiates only drafts before -15)",
			Run:         noWebTransportResource,
		},
	}
}

// secondSession opens a session without flow control and then a second
// CONNECT on the same connection.
func secondSession(ctx context.Context, p *Peer) Result {
	switch d := p.Draft(); d {
	case settings.DraftNone, settings.Draft02:
		// Draft-02 predates the session limit (draft-07 introduced it).
		return skip("negotiated WebTransport draft is %s, which sets no limit on sessions without flow control", d)
	}
	first, res := session(ctx, p)
	if first == nil {
		return res
	}
	r, err := p.OpenRequest(ctx, p.ConnectFields(p.opts.Path), nil)
	if err != nil {
		return fail("second CONNECT: %v", err)
	}
	o := observe(ctx, r)
	if c, ok := o.connCode(); ok {
		return fail("want the second CONNECT stream reset with H3_REQUEST_REJECTED, not a connection error; got connection error %s", c)
	}
	d, ok := o.streamCodeIs(frames.H3RequestRejected)
	if !ok {
		return fail("want the second CONNECT stream reset with H3_REQUEST_REJECTED; got %s", o)
	}
	if err := p.stillOpen(); err != nil {
		return fail("second CONNECT: %s, but then %v", d, err)
	}
	if se := stopSending(first.Str); se != nil {
		return fail("second CONNECT: %s, but the first session's CONNECT stream was stopped with %s", d, frames.ErrorCode(se.ErrorCode))
	}
	_ = first.Close(0, "")
	if res := expectCleanEnd(ctx, first, "the first session"); res.Status != Pass {
		return fail("second CONNECT: %s, but %s", d, res.Detail)
	}
	return pass("second CONNECT: %s; the first session then closed cleanly", d)
}

// capsulesBefore2xx sends the CONNECT with WT_CLOSE_SESSION right behind
// it. A server that processes capsules only after its 2xx (Section 3.2)
// answers 2xx, then sees the close and ends the CONNECT stream: FIN, or a
// reset, which Section 6 also allows in response to WT_CLOSE_SESSION.
func capsulesBefore2xx(ctx context.Context, p *Peer) Result {
	if _, err := p.Setup(); p.writeFailed(err) {
		return fail("control stream: %v", err)
	}
	r, err := p.OpenRequest(ctx, p.ConnectFields(p.opts.Path), frames.AppendFrame(nil, frames.TypeData, closeCapsule(0, nil)))
	if err != nil {
		return fail("CONNECT: %v", err)
	}
	_ = r.Str.Close()
	o := observe(ctx, r)
	if o.resp == nil {
		if c, ok := o.resetCode(); ok && (c == frames.WTSessionGone || c == frames.H3NoError || c == frames.H3RequestCancelled) {
			// A RESET_STREAM discards what we have not read yet, so a
			// 2xx sent just before it may never reach us.
			return skip("the server reset the CONNECT stream with %s (a clean end after WT_CLOSE_SESSION, §6) before a response could be read: "+
				"whether it answered 2xx before processing the capsule is not observable (a FIN, or RESET_STREAM_AT covering the response, would show it)", c)
		}
		return fail("want a 2xx, then the end of the CONNECT stream; got %s", o)
	}
	if o.resp.Status < 200 || o.resp.Status > 299 {
		return fail("want a 2xx (capsules sent before it must not be processed until it is sent), then the end of the CONNECT stream; got status %d", o.resp.Status)
	}
	e := endOfSession(ctx, &Session{Request: r, Response: o.resp})
	if d, ok := e.cleanEnd(); ok {
		return pass("status %d, then, for our WT_CLOSE_SESSION, %s", o.resp.Status, d)
	}
	var ne interface{ Timeout() bool }
	if errors.As(e.err, &ne) && ne.Timeout() {
		return fail("status %d, but the server did not end the CONNECT stream after the WT_CLOSE_SESSION that came with the request", o.resp.Status)
	}
	return fail("status %d, then want FIN on the CONNECT stream; got %s", o.resp.Status, e)
}

// noWebTransportResource sends a WebTransport CONNECT to a path without
// WebTransport.
func noWebTransportResource(ctx context.Context, p *Peer) Result {
	if _, err := p.Setup(); p.writeFailed(err) {
		return fail("control stream: %v", err)
	}
	path := p.opts.NoWebTransportPath
	r, err := p.OpenRequest(ctx, p.ConnectFields(path), nil)
	if err != nil {
		return fail("CONNECT: %v", err)
	}
	o := observe(ctx, r)
	if o.resp == nil {
		return fail("want status 405 for %s; got %s", path, o)
	}
	switch st := o.resp.Status; {
	case st == 405:
		return pass("status 405 for %s", path)
	case st == 404 && !p.ModernToken():
		return pass("status 404 for %s: the server negotiates only drafts before -15, which answered 404", path)
	case st == 404:
		return fail("status 404 for %s; draft-15 and later (:protocol webtransport-h3, offered by the server) SHOULD answer 405", path)
	default:
		return fail("want status 405 for %s; got %d", path, st)
	}
}
