package quicwt

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicwt/quicwt/frames"
	"github.com/quicwt/quicwt/settings"
)

// Server serves WebTransport sessions and plain HTTP/3 requests on QUIC
// connections. Every request, WebTransport CONNECTs included, goes to
// Handler; a handler accepts a WebTransport session by calling Upgrade.
// The zero value needs only TLSConfig and Handler.
type Server struct {
	// Addr is the UDP address for ListenAndServe, ":443" if empty.
	Addr string
	// Handler serves requests. CONNECT requests for WebTransport have
	// Method "CONNECT" and Proto "webtransport" or "webtransport-h3".
	// Nil means every request gets 404.
	Handler http.Handler
	// TLSConfig is used by ListenAndServe; ALPN is set to h3.
	TLSConfig *tls.Config
	// QUICConfig is used by ListenAndServe; datagrams and RESET_STREAM_AT
	// are enabled on a copy (see QUICConfig).
	QUICConfig *quic.Config
	// CheckOrigin decides whether Upgrade accepts a session's Origin. Nil
	// means the default: no Origin header, or an Origin whose host:port
	// equals the request's authority.
	CheckOrigin func(r *http.Request) bool
	// Limits bound what a peer can make the server hold.
	Limits Limits
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Settings, when set, replaces the SETTINGS the server advertises
	// (see DefaultServerSettings). MAX_FIELD_SECTION_SIZE and a GREASE
	// setting are always added.
	Settings *settings.Settings

	mu        sync.Mutex
	listeners map[QUICListener]struct{}
	conns     map[*conn]struct{}
	shutdown  bool
	done      chan struct{}
}

// DefaultServerSettings returns the SETTINGS a Server advertises by
// default: extended CONNECT, H3 datagrams (0x33 and the draft-04 0xffd277),
// and WebTransport draft-02 (Chrome, Firefox), draft-13/14 (Safari) and
// draft-15+ (webtransport-go, draft-16 peers).
func DefaultServerSettings() settings.Settings { return defaultSettings(true) }

// DefaultClientSettings returns the SETTINGS a client advertises by
// default.
func DefaultClientSettings() settings.Settings { return defaultSettings(false) }

func (srv *Server) logger() *slog.Logger { return loggerOr(srv.Logger) }

func (srv *Server) init() {
	srv.mu.Lock()
	if srv.conns == nil {
		srv.conns = make(map[*conn]struct{})
		srv.listeners = make(map[QUICListener]struct{})
		srv.done = make(chan struct{})
	}
	srv.mu.Unlock()
}

// ListenAndServe listens on srv.Addr (UDP) and serves until Close or
// Shutdown. It listens with quic.ListenAddrEarly, so that the server's
// SETTINGS go out with its handshake flight (0.5-RTT) and the client can
// send its CONNECT as soon as its handshake completes; requests are
// served only once the handshake has completed (see ServeListener).
func (srv *Server) ListenAndServe() error {
	addr := srv.Addr
	if addr == "" {
		addr = ":443"
	}
	if srv.TLSConfig == nil {
		return errors.New("quicwt: Server.TLSConfig is required")
	}
	ln, err := quic.ListenAddrEarly(addr, TLSConfig(srv.TLSConfig), QUICConfig(srv.QUICConfig))
	if err != nil {
		return err
	}
	return srv.ServeListener(ln)
}

// QUICListener is what ServeListener needs of a QUIC listener; both
// *quic.Listener and *quic.EarlyListener satisfy it.
type QUICListener interface {
	Accept(context.Context) (*quic.Conn, error)
	Addr() net.Addr
	Close() error
}

var (
	_ QUICListener = (*quic.Listener)(nil)
	_ QUICListener = (*quic.EarlyListener)(nil)
)

// Serve accepts connections from ln until it fails or the server is closed.
// The listener must use ALPN h3 and enable datagrams (see TLSConfig and
// QUICConfig). Serve closes ln when it returns.
func (srv *Server) Serve(ln *quic.Listener) error { return srv.ServeListener(ln) }

// ServeListener is Serve for any QUICListener, in particular a
// *quic.EarlyListener, which returns connections before their handshake
// completes: the server then sends its SETTINGS in 0.5-RTT data, but
// accepts no stream of the client (no request, no control stream) before
// the handshake has completed, so that nothing a client sent in 0-RTT
// (which could be replayed) is acted on before the client is verified.
func (srv *Server) ServeListener(ln QUICListener) error {
	srv.init()
	srv.mu.Lock()
	if srv.shutdown {
		srv.mu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	srv.listeners[ln] = struct{}{}
	srv.mu.Unlock()
	defer func() {
		srv.mu.Lock()
		delete(srv.listeners, ln)
		srv.mu.Unlock()
		ln.Close()
	}()
	for {
		qc, err := ln.Accept(context.Background())
		if err != nil {
			srv.mu.Lock()
			closed := srv.shutdown
			srv.mu.Unlock()
			if closed {
				return http.ErrServerClosed
			}
			return err
		}
		if _, err := srv.serveConn(wrapConn(qc)); err != nil {
			srv.logger().Debug("connection setup failed", "remote", qc.RemoteAddr(), "err", err)
		}
	}
}

// ServeQUICConn serves one QUIC connection the caller accepted itself and
// returns when it ends. The connection may come from an early listener
// (see ServeListener).
func (srv *Server) ServeQUICConn(qc *quic.Conn) error {
	c, err := srv.serveConn(wrapConn(qc))
	if err != nil {
		return err
	}
	return c.err()
}

func (srv *Server) serveConn(qc qconn) (*conn, error) {
	srv.init()
	local := defaultSettings(true)
	if srv.Settings != nil {
		local = *srv.Settings
	}
	c := newConn(qc, true, srv.Limits, srv.Logger, &local)
	c.server = srv
	// Forgotten when it ends, from the connection's shutdown (no
	// goroutine waiting for it).
	c.onClosed = func() { srv.forget(c) }
	srv.mu.Lock()
	if srv.shutdown {
		srv.mu.Unlock()
		_ = qc.CloseWithError(quic.ApplicationErrorCode(frames.H3NoError), "server shutting down")
		return nil, http.ErrServerClosed
	}
	srv.conns[c] = struct{}{}
	srv.mu.Unlock()
	if err := c.start(); err != nil {
		c.closeWithError(frames.H3InternalError, "cannot open control stream")
		srv.forget(c)
		return nil, err
	}
	return c, nil
}

func (srv *Server) forget(c *conn) {
	srv.mu.Lock()
	delete(srv.conns, c)
	srv.mu.Unlock()
}

// Close closes all listeners and connections at once.
func (srv *Server) Close() error {
	srv.init()
	srv.mu.Lock()
	srv.shutdown = true
	for ln := range srv.listeners {
		ln.Close()
	}
	conns := make([]*conn, 0, len(srv.conns))
	for c := range srv.conns {
		conns = append(conns, c)
	}
	srv.mu.Unlock()
	for _, c := range conns {
		c.closeWithError(frames.H3NoError, "server closed")
	}
	return nil
}

// Shutdown stops accepting connections, sends GOAWAY and WT_DRAIN_SESSION
// on every connection and session, waits for sessions and requests to end
// until ctx is done, then closes the remaining sessions with code 0 and
// the message "server shutting down", and the connections.
func (srv *Server) Shutdown(ctx context.Context) error {
	srv.init()
	srv.mu.Lock()
	srv.shutdown = true
	for ln := range srv.listeners {
		ln.Close()
	}
	conns := make([]*conn, 0, len(srv.conns))
	for c := range srv.conns {
		conns = append(conns, c)
	}
	srv.mu.Unlock()
	for _, c := range conns {
		c.sendGoaway()
		c.mu.Lock()
		sessions := make([]*Session, 0, len(c.sessions))
		for _, s := range c.sessions {
			sessions = append(sessions, s)
		}
		c.mu.Unlock()
		for _, s := range sessions {
			if s.state.Load() == sessionOpen {
				_ = s.Drain()
			}
		}
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var err error
wait:
	for {
		busy := false
		for _, c := range conns {
			c.mu.Lock()
			if len(c.sessions) > 0 || c.activeReqs > 0 {
				busy = true
			}
			c.mu.Unlock()
		}
		if !busy {
			break
		}
		select {
		case <-ctx.Done():
			err = ctx.Err()
			break wait
		case <-tick.C:
		}
	}
	// Close what is left, then give the peers a moment to answer the
	// WT_CLOSE_SESSION capsules before CONNECTION_CLOSE.
	var closing []*Session
	for _, c := range conns {
		c.mu.Lock()
		for _, s := range c.sessions {
			closing = append(closing, s)
		}
		c.mu.Unlock()
	}
	for _, s := range closing {
		_ = s.CloseWithError(0, "server shutting down")
	}
	grace := time.NewTimer(time.Second)
	defer grace.Stop()
	for _, s := range closing {
		select {
		case <-s.Closed():
		case <-grace.C:
		}
	}
	// A peer that has just answered WT_CLOSE_SESSION may still be handing
	// the close to its application (Chromium reports "connection lost"
	// instead of the close code when CONNECTION_CLOSE arrives within the
	// same moment). Let the peers close their connections first, for at
	// most shutdownLinger (even when ctx has expired: that is how a
	// shutdown with sessions still open gets here).
	if len(closing) > 0 {
		linger := time.NewTimer(shutdownLinger)
		defer linger.Stop()
	lingering:
		for _, c := range conns {
			select {
			case <-c.closed:
			case <-linger.C:
				break lingering
			}
		}
	}
	for _, c := range conns {
		c.closeWithError(frames.H3NoError, "server shutting down")
	}
	return err
}

// shutdownLinger bounds how long Shutdown waits, after the sessions it
// closed have ended, for the peers to close their connections themselves.
const shutdownLinger = 100 * time.Millisecond

// handleRequestStream serves a client-initiated bidirectional stream whose
// first varint, t, is a frame type: an HTTP/3 request (RFC 9114, Section 4).
func (srv *Server) handleRequestStream(c *conn, s bidiStream, t frames.Type) {
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
	fields, err := c.readHeaderSection(fr, t)
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
	isWT := head.method == http.MethodConnect && (head.protocol == "webtransport" || head.protocol == "webtransport-h3")
	if isWT {
		// The request's context is the session's: it ends with the
		// session, and so when the peer resets the CONNECT stream, which
		// the session's reader watches from now on (before Upgrade too).
		sess := srv.prepareSession(c, s, fr)
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
		watchReset(s, cancel)
	}
	req.RemoteAddr = c.qc.RemoteAddr()
	req.TLS = c.tls()
	rw.req = req
	if rw.sess != nil {
		rw.sess.readerStarted.Store(true)
		go rw.sess.readCapsules()
	}
	srv.runHandler(rw, req)
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
func (srv *Server) prepareSession(c *conn, s bidiStream, fr *frameReader) *Session {
	if err := c.waitSettings(context.Background()); err != nil {
		s.CancelRead(quic.StreamErrorCode(frames.H3RequestRejected))
		s.CancelWrite(quic.StreamErrorCode(frames.H3RequestRejected))
		return nil
	}
	if c.draft == settings.DraftNone {
		// The client's SETTINGS enable no draft we speak: the request is
		// malformed (draft-ietf-webtrans-http3, Section 3.1).
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

func (srv *Server) runHandler(rw *responseWriter, req *http.Request) {
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				rw.abort()
				return
			}
			srv.logger().Error("handler panic", "path", req.URL.Path, "panic", p)
			if !rw.wroteHeader {
				rw.WriteHeader(http.StatusInternalServerError)
			}
		}
	}()
	h := srv.Handler
	if h == nil {
		h = http.NotFoundHandler()
	}
	h.ServeHTTP(rw, req)
}

// readHeaderSection reads frames up to the first HEADERS frame of a request
// or response, skipping unknown frames, and decodes it. t is the already
// read type of the first frame, or a negative value to read it here.
func (c *conn) readHeaderSection(fr *frameReader, t frames.Type) ([]qpackField, error) {
	limit := uint64(c.limits.MaxControlFrameSize)
	first := true
	for {
		var h frames.Header
		var err error
		if first && t != noType {
			l, lerr := readVarintFrom(fr)
			if lerr != nil {
				return nil, eofAsTruncated(lerr)
			}
			h = frames.Header{Type: t, Length: l}
		} else {
			h, err = frames.ReadHeader(fr, limit)
			if err != nil {
				return nil, eofAsTruncated(err)
			}
		}
		first = false
		known, err := frames.Check(h.Type, frames.KindRequest, c.isServer)
		if err != nil {
			return nil, err
		}
		if !known {
			// Skipped without buffering, whatever the length (RFC 9114, Section 9).
			if err := fr.skip(h.Length); err != nil {
				return nil, eofAsTruncated(err)
			}
			continue
		}
		if h.Type != frames.TypeHeaders {
			return nil, &frames.Error{Code: frames.H3FrameUnexpected, Connection: true, Reason: h.Type.String() + " before HEADERS"}
		}
		if h.Length > uint64(c.limits.MaxFieldSectionSize) {
			// The encoded size never exceeds the counted decoded size.
			return nil, errFieldSectionTooLarge
		}
		p, err := fr.payload(h.Length)
		if err != nil {
			return nil, eofAsTruncated(err)
		}
		return decodeFields(p, c.limits.MaxFieldSectionSize)
	}
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
// a refused Origin. The handler may return while the session goes on.
func Upgrade(w http.ResponseWriter, r *http.Request) (*Session, error) {
	rw := unwrapResponseWriter(w)
	if rw == nil || rw.sess == nil {
		w.WriteHeader(http.StatusBadRequest)
		return nil, ErrNotWebTransport
	}
	if rw.wroteHeader {
		return nil, ErrAlreadyResponded
	}
	check := rw.c.server.CheckOrigin
	if check == nil {
		check = defaultCheckOrigin
	}
	if !check(r) {
		rw.WriteHeader(http.StatusForbidden)
		return nil, ErrOriginRejected
	}
	sess := rw.sess
	if sess.Draft() == settings.Draft02 && rw.header.Get("Sec-Webtransport-Http3-Draft") == "" {
		rw.header.Set("Sec-Webtransport-Http3-Draft", "draft02")
	}
	rw.upgrading = true
	rw.WriteHeader(http.StatusOK)
	if rw.writeErr != nil {
		return nil, rw.writeErr
	}
	rw.upgraded = true
	if !sess.state.CompareAndSwap(sessionPending, sessionOpen) {
		// Ended while the handler ran (the peer closed or reset it, or the
		// connection ended): the handler path ends our side.
		sess.writeMu.Lock()
		_ = sess.str.Close()
		sess.writeMu.Unlock()
		return nil, sess.Err()
	}
	return sess, nil
}

// watchReset cancels a request's context when the peer resets the request
// stream (RESET_STREAM), without a goroutine: quic-go calls back when it
// learns the stream's final size, from a FIN or a RESET_STREAM; only then
// is a zero-length read (which never blocks on data and returns the reset
// error if there was one) needed to tell them apart.
func watchReset(s bidiStream, cancel context.CancelFunc) {
	var state atomic.Uint32 // 0 registering, 1 known while registering, 2 armed
	check := func() {
		if _, err := s.Read(nil); err != nil && err != io.EOF {
			cancel()
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
