package quicwt

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
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
	// Protocols are the application protocols the server speaks
	// (draft-ietf-webtrans-http3, Section 3.3). When set, Upgrade answers
	// with the client's most preferred offered one in WT-Protocol (none
	// when no offered protocol is supported); a handler can choose
	// otherwise with WithProtocol. Session.Protocol reports the choice.
	Protocols []string
	// Limits bound what a peer can make the server hold.
	Limits Limits
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// AdditionalSettings are added to the SETTINGS the server advertises
	// (DefaultServerSettings), replacing a default's value for the same
	// ID: for example the draft-07 setting 0xc671706a, or a WebTransport
	// enabling setting with value 0 to leave a draft out. Settings the
	// engine owns (QPACK, MAX_FIELD_SECTION_SIZE, which Limits sets) and
	// HTTP/2-only ones are refused (see ServeListener).
	AdditionalSettings []settings.Setting

	// settings, when set by a test, replaces the advertised SETTINGS whole.
	settings *settings.Settings

	mu        sync.Mutex
	requests  *requestServer
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
		srv.requests = &requestServer{handler: srv.Handler, checkOrigin: srv.CheckOrigin, logger: srv.logger(), protocols: srv.Protocols}
	}
	srv.mu.Unlock()
}

// localSettings returns the SETTINGS the server advertises.
func (srv *Server) localSettings() (settings.Settings, error) {
	if srv.settings != nil {
		return *srv.settings, nil
	}
	return withAdditional(defaultSettings(true), srv.AdditionalSettings)
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
	if _, err := srv.localSettings(); err != nil {
		return err
	}
	ln, err := quic.ListenAddrEarly(addr, ConfigureTLSConfig(srv.TLSConfig), ConfigureQUICConfig(srv.QUICConfig))
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
	if _, err := srv.localSettings(); err != nil {
		ln.Close()
		return err
	}
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
	local, err := srv.localSettings()
	if err != nil {
		_ = qc.CloseWithError(quic.ApplicationErrorCode(frames.H3InternalError), "")
		return nil, err
	}
	c := newConn(qc, true, srv.Limits, srv.Logger, &local)
	c.requests = srv.requests
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
// on every connection and session, and waits for sessions and requests to
// end. What is left when ctx is nearly done is closed with code 0 and the
// message "server shutting down", and the connections after it. With a
// deadline on ctx, Shutdown returns by it: the last quarter of the time
// left, at most closeReserve, goes to the close handshakes (a peer that
// never reads its CONNECT stream holds nothing past the deadline); a ctx
// canceled without a deadline leaves them shutdownLinger.
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
		c.goingAway()
	}
	// closeBy is when the sessions still open get closed, end when the
	// connections do.
	end, hasDeadline := ctx.Deadline()
	closeBy := end
	if hasDeadline {
		closeBy = end.Add(-min(closeReserve, time.Until(end)/4))
	}
	waitCtx, cancel := context.WithDeadline(ctx, closeBy)
	if !hasDeadline {
		waitCtx, cancel = context.WithCancel(ctx)
	}
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var err error
wait:
	for {
		busy := false
		for _, c := range conns {
			if c.busy() {
				busy = true
				break
			}
		}
		if !busy {
			break
		}
		select {
		case <-waitCtx.Done():
			err = context.DeadlineExceeded
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			break wait
		case <-tick.C:
		}
	}
	// Close what is left, each session on its own goroutine (a write to a
	// peer that does not read may wait), then give the peers until end to
	// answer the WT_CLOSE_SESSION capsules before CONNECTION_CLOSE.
	var closing []*Session
	for _, c := range conns {
		closing = append(closing, c.reg.list()...)
	}
	for _, s := range closing {
		go func() { _ = s.CloseWithError(0, "server shutting down") }()
	}
	if !hasDeadline || ctx.Err() != nil {
		end = time.Now().Add(shutdownLinger)
	}
	if len(closing) > 0 {
		answered := time.NewTimer(time.Until(end))
		defer answered.Stop()
	answers:
		for _, s := range closing {
			select {
			case <-s.Closed():
			case <-answered.C:
				break answers
			}
		}
		// A peer that has just answered WT_CLOSE_SESSION may still be
		// handing the close to its application (Chromium reports
		// "connection lost" instead of the close code when
		// CONNECTION_CLOSE arrives within the same moment). Let the peers
		// close their connections first, for at most shutdownLinger and
		// never past end.
		linger := time.NewTimer(min(shutdownLinger, max(0, time.Until(end))))
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

// closeReserve bounds the part of Shutdown's time that goes to the close
// handshakes of the sessions it closes.
const closeReserve = time.Second

// shutdownLinger bounds how long Shutdown waits, after the sessions it
// closed have ended, for the peers to close their connections themselves.
const shutdownLinger = 100 * time.Millisecond
