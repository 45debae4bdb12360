package quicwt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicwt/quicwt/frames"
	"github.com/quicwt/quicwt/settings"
)

// Serving requests at a server (RFC 9114, Section 4; RFC 9220): a request
// stream's header section is read and validated, the request goes to the
// Handler, and a WebTransport CONNECT becomes a pending session that
// Upgrade accepts.

// requestServer is what a server's connections need to serve requests.
// The Server hands it down to each connection it serves.
type requestServer struct {
	handler     http.Handler
	checkOrigin func(*http.Request) bool
	logger      *slog.Logger
	protocols   []string // Server.Protocols
}

// serveRequest serves a client-initiated bidirectional stream whose first
// varint, t, is a frame type: an HTTP/3 request.
func (c *conn) serveRequest(s bidiStream, t frames.Type) {
	id := int64(s.StreamID())
	c.mu.Lock()
	if id > c.maxRequestID {
		c.maxRequestID = id
	}
	rejected := c.goawaySent && uint64(id) >= c.goawayID
	if !rejected {
		c.activeReqs++
	}
	c.mu.Unlock()
	if rejected {
		s.CancelRead(quic.StreamErrorCode(frames.H3RequestRejected))
		s.CancelWrite(quic.StreamErrorCode(frames.H3RequestRejected))
		return
	}
	defer func() {
		c.mu.Lock()
		c.activeReqs--
		c.mu.Unlock()
	}()
	fr := newFrameReader(s, 1024)
	fields, err := readHeaderSection(fr, t, true, &c.limits)
	if err != nil {
		c.requestStreamError(s, err)
		return
	}
	_ = s.SetReadDeadline(time.Time{})
	head, err := parseRequestFields(fields)
	if err != nil {
		c.requestStreamError(s, err)
		return
	}
	c.internHead(head)
	rw := &responseWriter{c: c, str: s, header: make(http.Header)}
	var req *http.Request
	if head.isWebTransport() {
		// The request's context is the session's: it ends with the
		// session, and so when the peer resets the CONNECT stream.
		sess := c.prepareSession(s, fr)
		if sess == nil {
			return
		}
		if req, err = head.toRequest(sess.ctx); err != nil {
			sess.terminate(&SessionError{Cause: err}, false)
			c.requestStreamError(s, err)
			return
		}
		req.Body = http.NoBody
		sess.request = req
		rw.sess = sess
	} else {
		// Canceled when the handler returns, when the peer stops or
		// resets the stream, and when the connection ends.
		ctx, cancel := context.WithCancel(s.Context())
		defer cancel()
		if req, err = head.toRequest(ctx); err != nil {
			c.requestStreamError(s, err)
			return
		}
		body := &requestBody{c: c, str: s, fr: fr, cancel: cancel}
		req.Body = body
		watchReset(s, func(error) { cancel() })
	}
	req.RemoteAddr = c.qc.RemoteAddr().String()
	req.TLS = c.tls()
	rw.req = req
	if rw.sess != nil {
		// Capsules wait for the 2xx (draft-ietf-webtrans-http3-16,
		// Section 3.2): until Upgrade sends it only a reset of the
		// CONNECT stream is watched for.
		watchReset(s, rw.sess.connectReset)
	}
	c.runHandler(rw, req)
	if rw.sess != nil && !rw.upgraded {
		// Rejected (or ignored) session: discard what was buffered for it.
		rw.sess.terminate(&SessionError{Cause: fmt.Errorf("quicwt: session rejected with status %d", rw.status)}, false)
	}
	if rw.upgraded {
		return
	}
	rw.finish()
	if body, ok := req.Body.(*requestBody); ok && !body.done {
		s.CancelRead(quic.StreamErrorCode(frames.H3NoError))
	} else if !ok {
		s.CancelRead(quic.StreamErrorCode(frames.H3NoError))
	}
}

// requestsActive reports whether requests are being handled (plain ones,
// or CONNECTs waiting for their handler).
func (c *conn) requestsActive() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.activeReqs > 0
}

// internHead makes a request's authority and path share the strings of
// the connection's previous request when they are equal (they nearly
// always are), so that sessions do not each keep a copy.
func (c *conn) internHead(h *requestHead) {
	c.mu.Lock()
	if h.authority == c.lastAuthority {
		h.authority = c.lastAuthority
	} else {
		c.lastAuthority = h.authority
	}
	if h.path == c.lastPath {
		h.path = c.lastPath
	} else {
		c.lastPath = h.path
	}
	c.mu.Unlock()
}

// prepareSession waits for the client's SETTINGS (drafts forbid handling a
// WebTransport request before them), checks that a draft was negotiated,
// and registers a pending session so that early streams reach it.
func (c *conn) prepareSession(s bidiStream, fr *frameReader) *Session {
	if err := c.waitSettings(context.Background()); err != nil {
		s.CancelRead(quic.StreamErrorCode(frames.H3RequestRejected))
		s.CancelWrite(quic.StreamErrorCode(frames.H3RequestRejected))
		return nil
	}
	if c.draft == settings.DraftNone || !c.requirementsMet() {
		// The client's SETTINGS enable no draft we speak, or it lacks a
		// transport parameter its draft requires: the request is
		// malformed (draft-ietf-webtrans-http3-16, Section 3.1).
		s.CancelRead(quic.StreamErrorCode(frames.H3MessageError))
		s.CancelWrite(quic.StreamErrorCode(frames.H3MessageError))
		return nil
	}
	sess := newSession(c, s, c.draft)
	sess.adoptReader(fr)
	if err := c.addSession(sess); err != nil {
		s.CancelRead(quic.StreamErrorCode(frames.H3RequestRejected))
		s.CancelWrite(quic.StreamErrorCode(frames.H3RequestRejected))
		return nil
	}
	return sess
}

func (c *conn) runHandler(rw *responseWriter, req *http.Request) {
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				rw.abort()
				return
			}
			c.requests.logger.Error("handler panic", "path", req.URL.Path, "panic", p)
			if !rw.wroteHeader {
				rw.WriteHeader(http.StatusInternalServerError)
			}
		}
	}()
	h := c.requests.handler
	if h == nil {
		h = http.NotFoundHandler()
	}
	h.ServeHTTP(rw, req)
}

// requestStreamError answers a failed request: 431 for a field section
// that is too large, a stream error for a malformed message, a connection
// error for frame and QPACK errors.
func (c *conn) requestStreamError(s bidiStream, err error) {
	if errors.Is(err, errFieldSectionTooLarge) {
		rw := &responseWriter{c: c, str: s, header: make(http.Header)}
		rw.WriteHeader(http.StatusRequestHeaderFieldsTooLarge)
		rw.finish()
		s.CancelRead(quic.StreamErrorCode(frames.H3NoError))
		return
	}
	if fe, ok := errors.AsType[*frames.Error](err); ok {
		if fe.Connection {
			c.fail(err)
			return
		}
		s.CancelRead(quic.StreamErrorCode(fe.Code))
		s.CancelWrite(quic.StreamErrorCode(fe.Code))
		return
	}
	// The stream was reset or the connection closed.
	s.CancelRead(quic.StreamErrorCode(frames.H3RequestIncomplete))
	s.CancelWrite(quic.StreamErrorCode(frames.H3RequestIncomplete))
}

// defaultCheckOrigin accepts requests without Origin and those whose
// Origin host:port equals the authority (with the scheme's default port).
func defaultCheckOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	return strings.EqualFold(hostPort(u.Host, u.Scheme), hostPort(r.Host, "https"))
}

func hostPort(h, scheme string) string {
	if _, _, err := net.SplitHostPort(h); err == nil {
		return h
	}
	if scheme == "http" {
		return net.JoinHostPort(strings.Trim(h, "[]"), "80")
	}
	return net.JoinHostPort(strings.Trim(h, "[]"), "443")
}

// Upgrade accepts the WebTransport session a CONNECT request asks for: it
// checks the Origin, sends a 200 response with the headers set on
// w.Header(), and returns the session. On error a response has already
// been sent: 400 for a request that is not a WebTransport CONNECT, 403 for
// a refused Origin, 500 for a protocol choice the client did not offer
// (ErrProtocolNotOffered). The handler may return while the session goes
// on. Options choose the application protocol (WithProtocol); without
// them Server.Protocols does.
func Upgrade(w http.ResponseWriter, r *http.Request, opts ...UpgradeOption) (*Session, error) {
	rw := unwrapResponseWriter(w)
	if rw == nil || rw.sess == nil {
		w.WriteHeader(http.StatusBadRequest)
		return nil, ErrNotWebTransport
	}
	if rw.wroteHeader {
		return nil, ErrAlreadyResponded
	}
	check := rw.c.requests.checkOrigin
	if check == nil {
		check = defaultCheckOrigin
	}
	if !check(r) {
		rw.WriteHeader(http.StatusForbidden)
		return nil, ErrOriginRejected
	}
	sess := rw.sess
	if err := rw.chooseProtocol(r, opts); err != nil {
		rw.WriteHeader(http.StatusInternalServerError)
		return nil, err
	}
	if sess.Draft() == settings.Draft02 && rw.header.Get("Sec-Webtransport-Http3-Draft") == "" {
		rw.header.Set("Sec-Webtransport-Http3-Draft", "draft02")
	}
	rw.upgrading = true
	rw.WriteHeader(http.StatusOK)
	if rw.writeErr != nil {
		return nil, rw.writeErr
	}
	rw.upgraded = true
	// From the 2xx on the session's capsules are processed.
	rw.str.SetReceiveFinalSizeCallback(nil)
	sess.startReader()
	if sess.markOpen() {
		sess.flushOnOpen()
	} else {
		// Ended while the handler ran (the peer closed or reset it, or the
		// connection ended): the handler path ends our side.
		sess.finishConnect()
		return nil, sess.Err()
	}
	sess.ql.sessionOpened(sess, r.URL.Path)
	return sess, nil
}

// watchReset calls onReset when the peer resets the request stream
// (RESET_STREAM), without a goroutine: quic-go calls back when it learns the
// stream's final size, from a FIN or a RESET_STREAM; only then is a
// zero-length read (which never blocks on data and returns the reset error
// if there was one) needed to tell them apart.
func watchReset(s bidiStream, onReset func(error)) {
	var state atomic.Uint32 // 0 registering, 1 known while registering, 2 armed
	check := func() {
		if _, err := s.Read(nil); err != nil && err != io.EOF {
			onReset(err)
		}
	}
	s.SetReceiveFinalSizeCallback(func(int64) {
		if state.CompareAndSwap(0, 1) {
			return // called from SetReceiveFinalSizeCallback itself
		}
		// From quic-go's connection loop, which must not block: Read may
		// wait for the handler's own Read to return.
		go check()
	})
	if !state.CompareAndSwap(0, 2) {
		check()
	}
}

func unwrapResponseWriter(w http.ResponseWriter) *responseWriter {
	for {
		switch x := w.(type) {
		case *responseWriter:
			return x
		case interface{ Unwrap() http.ResponseWriter }:
			w = x.Unwrap()
		default:
			return nil
		}
	}
}
