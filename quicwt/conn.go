package quicwt

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicwt/quicwt/frames"
	"github.com/quicwt/quicwt/settings"
	"github.com/quicwt/quicwt/varint"
)

// conn is the HTTP/3 + WebTransport state machine of one QUIC connection,
// shared by the server and client sides. This file owns its lifecycle, the
// two stream acceptors and the dispatch of each peer stream by its type;
// control.go the control and QPACK streams, registry.go the sessions,
// datagram.go the datagram receiver, request.go the serving of requests (at
// a server).
//
// Per connection it runs the unidirectional and bidirectional stream
// acceptors and the reader of the peer's control stream (plus one per peer
// QPACK stream, if the peer opens them), and the datagram receiver at a
// server while the connection has no session and on both sides once a
// session reads datagrams. Each session adds one goroutine reading its
// CONNECT stream. A WebTransport stream whose header has arrived with it
// (nearly always) is handed to its session by the acceptor itself; only a
// request stream, or a stream whose header is late, gets a goroutine.
type conn struct {
	qc       qconn
	isServer bool
	limits   Limits
	logger   *slog.Logger
	requests *requestServer // serves request streams; nil at a client

	local settings.Settings
	ctrl  sendStream // our control stream

	peer          settings.Settings
	settingsDone  chan struct{} // closed once the peer's SETTINGS are in peer
	draft         settings.Draft
	peerDatagrams bool // the peer enabled HTTP datagrams (RFC 9297, Section 2.1.1)
	// peerDatagramTP: the peer sent max_datagram_frame_size (RFC 9221),
	// read by start, before the goroutines (see start).
	peerDatagramTP    bool
	peerResetStreamAt bool // the peer sent reset_stream_at
	// flowControl: WebTransport flow control is in effect (set with
	// draft, before settingsDone is closed; see flow.go).
	flowControl bool

	closed    chan struct{}
	closeErr  error // set before closed is closed
	closeOnce sync.Once
	onClosed  func() // called once when the connection ends (a server forgets it)

	reg    registry
	dgrams datagramReceiver

	// mu guards the control state (control.go) and the request counters
	// (request.go).
	mu           sync.Mutex
	critical     [4]bool // peer's control, QPACK encoder, QPACK decoder streams seen (by stream type)
	goawaySent   bool
	goawayID     uint64 // server: first request stream ID we will not process
	peerGoaway   bool
	peerGoawayID uint64
	maxPushID    int64 // server: the client's MAX_PUSH_ID, -1 if none
	maxRequestID int64 // server: highest request stream ID seen, -1 if none
	activeReqs   int   // server: requests being handled (plain or pending CONNECT)
	// server: the previous request's authority and path (see internHead)
	lastAuthority, lastPath string
	draining                chan struct{} // closed on GOAWAY sent or received

	tlsOnce  sync.Once
	tlsState *tls.ConnectionState // shared by the requests of the connection

	// Scratch space for the stream acceptors (one each).
	bidiPrefix, uniPrefix [16]byte

	unknownStreams atomic.Uint64 // unknown unidirectional stream types seen

	ql            *qlogger // qlog events (qlog.go), nil when off
	peerControlID uint64   // the peer's control stream, for qlog; its reader's
}

func newConn(qc qconn, isServer bool, limits Limits, logger *slog.Logger, local *settings.Settings) *conn {
	c := &conn{
		qc:           qc,
		isServer:     isServer,
		limits:       limits.withDefaults(),
		logger:       loggerOr(logger),
		settingsDone: make(chan struct{}),
		closed:       make(chan struct{}),
		maxPushID:    -1,
		maxRequestID: -1,
		draining:     make(chan struct{}),
	}
	c.reg = registry{limits: &c.limits, isServer: isServer, sessions: make(map[uint64]*Session)}
	c.local = *local
	c.local.Unknown = append([]settings.Setting(nil), local.Unknown...)
	c.local.Set(settings.MaxFieldSectionSize, uint64(c.limits.MaxFieldSectionSize))
	setFlowLimits(&c.local, c.limits)
	var seed [8]byte
	_, _ = rand.Read(seed[:])
	c.local.AddGrease(binary.LittleEndian.Uint64(seed[:]))
	return c
}

// start opens our control stream with SETTINGS at once (never waiting for
// the peer's) and starts the connection goroutines. We open no QPACK
// streams: our decoder's table capacity is 0 and our encoder never uses the
// dynamic table (RFC 9204, Section 4.2).
func (c *conn) start() error {
	// quic-go builds its ConnectionState under the TLS handshake's lock:
	// read it here, on the caller's goroutine (the accept loop or the
	// dialer), so that the control stream's reader keeps a small stack.
	c.peerDatagramTP, c.peerResetStreamAt = c.qc.PeerTransportParameters()
	c.ql = newQlogger(c.qc)
	ctrl, err := c.qc.OpenUniStream()
	if err != nil {
		c.ql.close()
		return err
	}
	b := frames.AppendUniStreamType(make([]byte, 0, 64), frames.StreamTypeControl)
	b = c.local.AppendFrame(b)
	if _, err := ctrl.Write(b); err != nil {
		c.ql.close()
		return err
	}
	c.ql.settingsFrame(true, uint64(ctrl.StreamID()), &c.local)
	c.ctrl = ctrl
	go c.acceptUniLoop()
	go c.acceptBidiLoop()
	if c.isServer {
		// A client has no use for the receiver before its first session
		// reads datagrams: it buffers nothing for unknown sessions (it
		// knows its own), so until then datagrams wait in quic-go's
		// queue and are checked when read.
		c.startDatagrams()
	}
	return nil
}

// tls returns the connection's TLS state, read once (it does not change
// after the handshake) and shared by its requests, as net/http does.
func (c *conn) tls() *tls.ConnectionState {
	c.tlsOnce.Do(func() { c.tlsState = c.qc.TLS() })
	return c.tlsState
}

// closeWithError sends CONNECTION_CLOSE with an HTTP/3 error code.
func (c *conn) closeWithError(code ErrorCode, reason string) {
	c.logger.Debug("closing connection", "code", code, "reason", reason)
	_ = c.qc.CloseWithError(quic.ApplicationErrorCode(code), reason)
	c.shutdown(&ConnectionError{Code: code, Reason: reason})
}

// fail closes the connection for a protocol violation described by err (a
// *frames.Error), or, for any other error, records that the connection is
// gone (an I/O error meaning quic-go has closed it).
func (c *conn) fail(err error) {
	if fe, ok := errors.AsType[*frames.Error](err); ok {
		c.closeWithError(fe.Code, fe.Reason)
		return
	}
	c.connGone(err)
}

// shutdown records the end of the connection and ends every session, each
// with the connection's error as its cause (Remote when the peer closed the
// connection).
func (c *conn) shutdown(err error) {
	c.closeOnce.Do(func() {
		if err == nil {
			err = ErrConnectionClosed
		}
		c.mu.Lock()
		c.closeErr = err
		c.mu.Unlock()
		c.endDatagrams()
		sessions := c.reg.close()
		close(c.closed)
		if c.onClosed != nil {
			c.onClosed()
		}
		for _, s := range sessions {
			s.terminate(c.sessionEndFor(err), false)
		}
		c.ql.close()
	})
}

// sessionEndFor is the end of a session ended by the connection's end.
func (c *conn) sessionEndFor(err error) *SessionError {
	ce, ok := errors.AsType[*ConnectionError](err)
	return &SessionError{Cause: err, Remote: ok && ce.Remote}
}

// err waits for the connection's end and returns why it ended.
func (c *conn) err() error {
	<-c.closed
	return c.closeErr
}

// closeError returns why the connection ended, or nil while it is open.
func (c *conn) closeError() error {
	if !c.isClosed() {
		return nil
	}
	return c.closeErr
}

func (c *conn) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

// connGone ends the connection state when quic-go reports the close.
func (c *conn) connGone(err error) {
	if c.isClosed() {
		return // each goroutine of the connection gets here: translate once
	}
	if cause := context.Cause(c.qc.Context()); cause != nil {
		err = cause
	}
	c.shutdown(translateConnErr(err))
}

// requirementsMet reports whether the peer sent the transport parameters
// its draft requires: from draft-15 on, max_datagram_frame_size and
// reset_stream_at (draft-ietf-webtrans-http3-16, Section 3.1). Earlier
// drafts' peers (Chromium and Firefox speak draft-02) do not send the
// latter.
func (c *conn) requirementsMet() bool {
	return c.draft < settings.Draft15 || c.peerDatagramTP && c.peerResetStreamAt
}

// addSession registers a session (see registry.add) and, at the first one,
// pauses the datagram receiver until a session reads datagrams. Without
// flow control a connection carries one session at a time
// (draft-ietf-webtrans-http3-16, Section 5.1), otherwise MaxSessions.
func (c *conn) addSession(s *Session) error {
	limit := 1
	if c.flowControl {
		limit = c.limits.MaxSessions
	}
	if err := c.reg.add(s, limit, c.closeError); err != nil {
		return err
	}
	c.pauseDatagrams()
	return nil
}

// waitHandshake, at a server, waits until the QUIC handshake has completed
// before a client stream is served. A connection from an early listener is
// served (our control stream and SETTINGS go out as 0.5-RTT data) before
// the client is verified, and nothing the client sent in 0-RTT (which
// could be a replay) may be acted on until then. quic-go reports the
// handshake complete before it processes any 1-RTT packet, so a stream
// accepted before that came in 0-RTT; for every other stream this does not
// block. A client's connection is dialed with its handshake complete.
func (c *conn) waitHandshake() error {
	if !c.isServer {
		return nil
	}
	select {
	case <-c.qc.HandshakeComplete():
		return nil
	case <-c.qc.Context().Done():
		return context.Cause(c.qc.Context())
	}
}

// awaitVerified runs waitHandshake for an acceptor's first stream (err is
// AcceptStream's), until it has once seen the handshake complete.
func (c *conn) awaitVerified(err error, done *bool) error {
	if err == nil && !*done {
		err = c.waitHandshake()
		*done = err == nil
	}
	return err
}

func (c *conn) acceptUniLoop() {
	verified := !c.isServer // the handshake is complete (see waitHandshake)
	for {
		s, err := c.qc.AcceptUniStream(context.Background())
		if err = c.awaitVerified(err, &verified); err != nil {
			c.connGone(err)
			return
		}
		if c.deliverInline(s, c.uniPrefix[:], false) {
			continue
		}
		go c.handleUniStream(s)
	}
}

func (c *conn) acceptBidiLoop() {
	verified := !c.isServer // the handshake is complete (see waitHandshake)
	for {
		s, err := c.qc.AcceptStream(context.Background())
		if err = c.awaitVerified(err, &verified); err != nil {
			c.connGone(err)
			return
		}
		if c.deliverInline(s, c.bidiPrefix[:], true) {
			continue
		}
		go c.handleBidiStream(s)
	}
}

// inlineWait bounds how long an acceptor waits for a WebTransport stream
// header that has not fully arrived with the stream (quic-go has no
// non-blocking read: a deadline in the past fails even with data buffered).
const inlineWait = time.Millisecond

// parseWebTransportPrefix parses, with frames' parsers, the start of b as
// the header of a WebTransport stream (the WEBTRANSPORT_STREAM signal on a
// bidirectional stream, stream type 0x54 on a unidirectional one). isWT
// reports that the type is WebTransport's; then n is the header's length
// (or, with frames.ErrTruncated, at least the length needed) and sid the
// session ID.
func parseWebTransportPrefix(b []byte, bidi bool) (isWT bool, sid uint64, n int, err error) {
	if len(b) == 0 {
		return false, 0, 1, frames.ErrTruncated
	}
	if bidi {
		var t frames.Type
		t, sid, n, err = frames.ParseBidiStreamHeader(b)
		isWT = t == frames.TypeWebTransportStream
	} else {
		var t frames.StreamType
		t, sid, n, err = frames.ParseUniStreamHeader(b)
		isWT = t == frames.StreamTypeWebTransport
	}
	if err == frames.ErrTruncated {
		// Only the type's varint, or also the first byte of the session
		// ID's, is known.
		n1 := varint.LenOfFirstByte(b[0])
		if len(b) <= n1 {
			return false, 0, n1 + 1, err
		}
		v, _, _ := varint.Parse(b[:n1])
		isWT = bidi && frames.Type(v) == frames.TypeWebTransportStream || !bidi && frames.StreamType(v) == frames.StreamTypeWebTransport
		n = n1 + varint.LenOfFirstByte(b[n1])
	}
	return isWT, sid, n, err
}

// deliverInline reads a WebTransport stream header that is already there
// and hands the stream to its session without a goroutine. It consumes
// nothing and returns false for anything else (a request, a control
// stream, a header still on its way), which a goroutine then serves.
func (c *conn) deliverInline(s receiveStream, b []byte, bidi bool) bool {
	_ = s.SetReadDeadline(time.Now().Add(inlineWait))
	// On false the goroutine sets its own deadline (HeaderTimeout).
	// Three bytes hold the shortest header: the type in two, one for the
	// session ID.
	n, _ := s.Peek(b[:3])
	isWT, sid, l, err := parseWebTransportPrefix(b[:n], bidi)
	if isWT && err == frames.ErrTruncated && l <= len(b) {
		if n, _ = s.Peek(b[:l]); n == l {
			isWT, sid, l, err = parseWebTransportPrefix(b[:n], bidi)
		}
	}
	if !isWT || err == frames.ErrTruncated {
		return false
	}
	// The header is there: consume it (a passed deadline would fail even
	// with the data buffered).
	_ = s.SetReadDeadline(time.Time{})
	if n, rerr := io.ReadFull(s, b[:l]); n < l || rerr != nil {
		// Reset between the peek and the read: nothing to deliver.
		if bidi {
			s.CancelRead(quic.StreamErrorCode(frames.H3RequestIncomplete))
			s.(bidiStream).CancelWrite(quic.StreamErrorCode(frames.H3RequestIncomplete))
		} else {
			s.CancelRead(quic.StreamErrorCode(frames.H3StreamCreationError))
		}
		return true
	}
	if err != nil {
		c.fail(err) // frames.ErrSessionID
		return true
	}
	if bidi {
		c.reg.deliverStream(sid, earlyStream{bidi: s.(bidiStream), hdr: uint8(l)})
	} else {
		c.reg.deliverStream(sid, earlyStream{uni: s, hdr: uint8(l)})
	}
	return true
}

// readStreamPrefix reads a stream's prefix without reading past it: the
// type's varint and, when it is wt (a WebTransport stream), the session
// ID's. The caller parses the bytes with frames' parsers. On an error,
// empty reports that not a byte had arrived.
func readStreamPrefix(r io.Reader, buf *[16]byte, wt uint64) (b []byte, empty bool, err error) {
	n, err := readVarintBytes(r, buf[:8])
	if err != nil {
		return nil, n == 0, err
	}
	if v, _, _ := varint.Parse(buf[:n]); v != wt {
		return buf[:n], false, nil
	}
	m, err := readVarintBytes(r, buf[n:n+8])
	if err != nil {
		return nil, false, err
	}
	return buf[:n+m], false, nil
}

// isTimeout reports a passed read deadline.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// handleUniStream reads a peer unidirectional stream's type (RFC 9114,
// Section 6.2) and serves it. A stream that ends before its type is simply
// dropped.
func (c *conn) handleUniStream(s receiveStream) {
	_ = s.SetReadDeadline(time.Now().Add(c.limits.HeaderTimeout))
	var buf [16]byte
	b, empty, err := readStreamPrefix(s, &buf, uint64(frames.StreamTypeWebTransport))
	if err != nil {
		if empty && isTimeout(err) {
			// A stream the peer opened only implicitly, by opening a
			// higher-numbered one (RFC 9000, Section 2.1): Chromium
			// reserves its QPACK encoder and decoder streams so and never
			// sends on them, and answers STOP_SENDING on them by closing
			// the connection (H3_CLOSED_CRITICAL_STREAM). Leave such a
			// stream idle and open; QUIC's stream limit bounds them, and
			// a type arriving later is not read.
			_ = s.SetReadDeadline(time.Time{})
			return
		}
		s.CancelRead(quic.StreamErrorCode(frames.H3StreamCreationError))
		return
	}
	st, sid, _, err := frames.ParseUniStreamHeader(b)
	if err != nil {
		c.fail(err)
		return
	}
	switch st {
	case frames.StreamTypeControl, frames.StreamTypeQPACKEncoder, frames.StreamTypeQPACKDecoder:
		_ = s.SetReadDeadline(time.Time{})
		c.serveCriticalStream(s, st)
	case frames.StreamTypePush:
		if c.isServer {
			c.closeWithError(frames.H3StreamCreationError, "push stream sent by client")
		} else {
			// We never send MAX_PUSH_ID, so any push ID is too large.
			c.closeWithError(frames.H3IDError, "push stream without MAX_PUSH_ID")
		}
	case frames.StreamTypeWebTransport:
		_ = s.SetReadDeadline(time.Time{})
		c.reg.deliverStream(sid, earlyStream{uni: s, hdr: uint8(len(b))})
	default:
		// Unknown and reserved stream types are not errors (RFC 9114,
		// Section 6.2): ask the peer to stop.
		c.unknownStreams.Add(1)
		s.CancelRead(quic.StreamErrorCode(frames.H3StreamCreationError))
	}
}

// handleBidiStream serves a peer bidirectional stream: a WebTransport
// stream (WEBTRANSPORT_STREAM signal) or, at a server, a request stream.
func (c *conn) handleBidiStream(s bidiStream) {
	_ = s.SetReadDeadline(time.Now().Add(c.limits.HeaderTimeout))
	var buf [16]byte
	b, _, err := readStreamPrefix(s, &buf, uint64(frames.TypeWebTransportStream))
	if err != nil {
		s.CancelRead(quic.StreamErrorCode(frames.H3RequestIncomplete))
		s.CancelWrite(quic.StreamErrorCode(frames.H3RequestIncomplete))
		return
	}
	t, sid, _, err := frames.ParseBidiStreamHeader(b)
	if err != nil {
		c.fail(err)
		return
	}
	if t == frames.TypeWebTransportStream {
		_ = s.SetReadDeadline(time.Time{})
		c.reg.deliverStream(sid, earlyStream{bidi: s, hdr: uint8(len(b))})
		return
	}
	if c.requests == nil {
		// RFC 9114, Section 6.1: a server-initiated bidirectional stream is
		// only allowed by an extension, here WebTransport's signal.
		c.closeWithError(frames.H3StreamCreationError, "server-initiated bidirectional stream")
		return
	}
	// The deadline stays until the header section is read.
	c.serveRequest(s, t)
}

// The session's view of its connection (sessionConn).

func (c *conn) openStream() (bidiStream, error) { return c.qc.OpenStream() }
func (c *conn) openStreamSync(ctx context.Context) (bidiStream, error) {
	return c.qc.OpenStreamSync(ctx)
}
func (c *conn) openUniStream() (sendStream, error) { return c.qc.OpenUniStream() }
func (c *conn) openUniStreamSync(ctx context.Context) (sendStream, error) {
	return c.qc.OpenUniStreamSync(ctx)
}
func (c *conn) sendDatagram(b []byte) error { return c.qc.SendDatagram(b) }
func (c *conn) smoothedRTT() time.Duration  { return c.qc.SmoothedRTT() }
func (c *conn) newFlow() *sessionFlow {
	limits := func(s *settings.Settings) flowLimits {
		return flowLimits{
			data: s.Value(settings.WTInitialMaxData, 0),
			bidi: s.Value(settings.WTInitialMaxStreamsBidi, 0),
			uni:  s.Value(settings.WTInitialMaxStreamsUni, 0),
		}
	}
	return newSessionFlow(limits(&c.peer), limits(&c.local), uint64(c.limits.MaxSessionDataWindow))
}
func (c *conn) datagramSupport() (h3, tp bool) { return c.peerDatagrams, c.peerDatagramTP }
func (c *conn) forget(s *Session)              { c.reg.remove(s) }
func (c *conn) localAddr() net.Addr            { return c.qc.LocalAddr() }
func (c *conn) remoteAddr() net.Addr           { return c.qc.RemoteAddr() }
func (c *conn) tlsConnectionState() *tls.ConnectionState {
	return c.tls()
}
