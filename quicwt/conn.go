package quicwt

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicwt/quicwt/frames"
	"github.com/quicwt/quicwt/settings"
	"github.com/quicwt/quicwt/varint"
)

// conn is the HTTP/3 + WebTransport state machine of one QUIC connection,
// shared by the server and client sides. Per connection it runs three
// goroutines: the unidirectional and bidirectional stream acceptors and the
// reader of the peer's control stream (plus one per peer QPACK stream, if
// the peer opens them), and a fourth, the datagram receiver, at a server
// while the connection has no session, and on both sides from the first
// call of ReceiveDatagram on one of its sessions on (until then quic-go's
// own queue holds what arrives, as for any quic-go application). Each
// session adds one goroutine reading its CONNECT stream. A WebTransport
// stream whose header has arrived with it (nearly always) is handed to its
// session by the acceptor itself; only a request stream, or a stream whose
// header is late, gets a goroutine.
type conn struct {
	qc       qconn
	isServer bool
	limits   Limits
	logger   *slog.Logger
	server   *Server // nil on the client side

	local settings.Settings
	ctrl  sendStream // our control stream

	peer          settings.Settings
	settingsDone  chan struct{} // closed once the peer's SETTINGS are in peer
	draft         settings.Draft
	peerDatagrams bool // the peer enabled HTTP datagrams (RFC 9297, Section 2.1.1)
	// peerDatagramTP: the peer sent max_datagram_frame_size (RFC 9221),
	// read by start, before the goroutines (see start).
	peerDatagramTP bool

	closed   chan struct{}
	closeErr error // set before closed is closed

	mu           sync.Mutex
	sessions     map[uint64]*Session
	early        map[uint64]*earlyBuffer
	earlyStreams int
	earlyDgrams  int
	earlyBytes   int
	earlyTimer   *time.Timer
	gone         []uint64 // recently ended session IDs, a ring of goneRing, made on first use
	goneN        int
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

	closeOnce sync.Once
	onClosed  func() // server: called once when the connection ends

	tlsOnce  sync.Once
	tlsState *tls.ConnectionState // shared by the requests of the connection

	// The datagram receiver runs at a server while the connection has no
	// session (to buffer early datagrams and to police quarter stream IDs
	// at once) and from the first ReceiveDatagram of one of its sessions
	// on. dgramStop (under mu) is non-nil while it runs.
	dgramWanted atomic.Bool
	dgramStop   context.CancelFunc
	// prefix is scratch space for the stream acceptors (one each).
	bidiPrefix, uniPrefix [16]byte
	// dgram cache, touched only by the datagram goroutine
	lastDgramID   uint64
	lastDgramSess *Session

	unknownStreams atomic.Uint64 // unknown unidirectional stream types seen
}

// earlyBuffer holds what arrived for a session ID that has no session yet.
type earlyBuffer struct {
	created   time.Time
	streams   []earlyStream
	datagrams [][]byte
}

type earlyStream struct {
	bidi bidiStream    // set for bidirectional streams
	uni  receiveStream // set for unidirectional streams
}

func (e earlyStream) reject(code ErrorCode) {
	if e.bidi != nil {
		e.bidi.CancelRead(quic.StreamErrorCode(code))
		e.bidi.CancelWrite(quic.StreamErrorCode(code))
	} else {
		e.uni.CancelRead(quic.StreamErrorCode(code))
	}
}

func newConn(qc qconn, isServer bool, limits Limits, logger *slog.Logger, local *settings.Settings) *conn {
	c := &conn{
		qc:           qc,
		isServer:     isServer,
		limits:       limits.withDefaults(),
		logger:       loggerOr(logger),
		settingsDone: make(chan struct{}),
		closed:       make(chan struct{}),
		sessions:     make(map[uint64]*Session),
		maxPushID:    -1,
		maxRequestID: -1,
		draining:     make(chan struct{}),
	}
	c.local = *local
	c.local.Unknown = append([]settings.Setting(nil), local.Unknown...)
	c.local.Set(settings.MaxFieldSectionSize, uint64(c.limits.MaxFieldSectionSize))
	var seed [8]byte
	_, _ = rand.Read(seed[:])
	c.local.AddGrease(binary.LittleEndian.Uint64(seed[:]))
	return c
}

// defaultSettings returns what we advertise (spec section 4's synthesis):
// extended CONNECT (server), H3 datagrams under both codepoints, and the
// enabling settings of draft-02 (browsers), draft-13/14 (with one session,
// so no flow control is implied) and draft-15+.
func defaultSettings(server bool) settings.Settings {
	var s settings.Settings
	if server {
		s.Set(settings.EnableConnectProtocol, 1)
	}
	s.Set(settings.H3Datagram, 1)
	s.Set(settings.H3DatagramDraft04, 1)
	s.Set(settings.EnableWebTransport, 1)
	s.Set(settings.WTMaxSessions, 1)
	s.Set(settings.WTEnabled, 1)
	return s
}

// start opens our control stream with SETTINGS at once (never waiting for
// the peer's) and starts the connection goroutines. We open no QPACK
// streams: our decoder's table capacity is 0 and our encoder never uses the
// dynamic table (RFC 9204, Section 4.2).
func (c *conn) start() error {
	// quic-go builds its ConnectionState (hundreds of bytes, copied
	// twice) under the TLS handshake's lock: read here, on the caller's
	// goroutine (the accept loop or the dialer), so that the control
	// stream's reader keeps a small stack (growing it cost about 10 µs
	// of every setup).
	c.peerDatagramTP = c.qc.PeerDatagrams()
	ctrl, err := c.qc.OpenUniStream()
	if err != nil {
		return err
	}
	b := frames.AppendUniStreamType(make([]byte, 0, 64), frames.StreamTypeControl)
	b = c.local.AppendFrame(b)
	if _, err := ctrl.Write(b); err != nil {
		return err
	}
	c.ctrl = ctrl
	go c.acceptUniLoop()
	go c.acceptBidiLoop()
	if c.isServer {
		// A client has no use for the receiver before its first session
		// reads datagrams: it buffers nothing for unknown sessions (it
		// knows its own), so until then datagrams wait in quic-go's
		// queue and are checked when read.
		c.mu.Lock()
		c.startDatagramsLocked()
		c.mu.Unlock()
	}
	return nil
}

// wantDatagrams keeps the datagram receiver running from now on (a
// session reads datagrams).
func (c *conn) wantDatagrams() {
	if c.dgramWanted.Load() {
		return
	}
	c.mu.Lock()
	c.dgramWanted.Store(true)
	c.startDatagramsLocked()
	c.mu.Unlock()
}

func (c *conn) startDatagramsLocked() {
	if c.dgramStop != nil || c.closeErr != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.dgramStop = cancel
	go c.datagramLoop(ctx)
}

// pauseDatagramsLocked stops the receiver when the first session comes
// and nobody has asked for datagrams yet: until a session calls
// ReceiveDatagram they wait in quic-go's queue (and are checked when read),
// as for any quic-go application, and the connection needs no goroutine
// for them.
func (c *conn) pauseDatagramsLocked() {
	if c.dgramStop != nil && !c.dgramWanted.Load() {
		c.dgramStop()
	}
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
// *frames.Error, or an I/O error meaning the connection is already gone).
func (c *conn) fail(err error) {
	if fe, ok := errors.AsType[*frames.Error](err); ok {
		c.closeWithError(fe.Code, fe.Reason)
		return
	}
	c.shutdown(translateConnErr(err))
}

// shutdown records the end of the connection and ends every session.
func (c *conn) shutdown(err error) {
	c.closeOnce.Do(func() {
		if err == nil {
			err = ErrConnectionClosed
		}
		c.mu.Lock()
		c.closeErr = err
		sessions := make([]*Session, 0, len(c.sessions))
		for _, s := range c.sessions {
			sessions = append(sessions, s)
		}
		early := c.early
		c.early = nil
		if c.earlyTimer != nil {
			c.earlyTimer.Stop()
		}
		c.mu.Unlock()
		close(c.closed)
		if c.onClosed != nil {
			c.onClosed()
		}
		ce, ok := errors.AsType[*ConnectionError](err)
		remote := ok && ce.Remote
		for _, s := range sessions {
			s.terminate(&SessionError{Cause: err, Remote: remote}, false)
		}
		for _, e := range early {
			for _, s := range e.streams {
				s.reject(frames.WTSessionGone)
			}
		}
	})
}

// err returns why the connection ended.
func (c *conn) err() error {
	<-c.closed
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
		if c.deliverInline(s, c.uniPrefix[:], 0x54, false) {
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
		if c.deliverInline(s, c.bidiPrefix[:], 0x41, true) {
			continue
		}
		go c.handleBidiStream(s)
	}
}

// inlineWait bounds how long an acceptor waits for a WebTransport stream
// header that has not fully arrived with the stream (quic-go has no
// non-blocking read: a deadline in the past fails even with data buffered).
const inlineWait = time.Millisecond

// deliverInline reads a WebTransport stream header (signal or stream type
// wt, two bytes on the wire, then the session ID) that is already there,
// and hands the stream to its session without a goroutine. It consumes
// nothing and returns false for anything else (a request, a control
// stream, a header still on its way), which a goroutine then serves.
func (c *conn) deliverInline(s receiveStream, b []byte, wt byte, bidi bool) bool {
	_ = s.SetReadDeadline(time.Now().Add(inlineWait))
	// On false the goroutine sets its own deadline (HeaderTimeout).
	n, _ := s.Peek(b[:3])
	if n < 3 || b[0] != 0x40 || b[1] != wt {
		return false
	}
	l := 2 + varint.LenOfFirstByte(b[2])
	if l > 3 {
		if n, _ = s.Peek(b[:l]); n < l {
			return false
		}
	}
	sid, _, _ := varint.Parse(b[2:l])
	// The header is there: consume it (a passed deadline would fail even
	// with the data buffered).
	_ = s.SetReadDeadline(time.Time{})
	if n, err := io.ReadFull(s, b[:l]); n < l || err != nil {
		// Reset between the peek and the read: nothing to deliver.
		if bidi {
			s.CancelRead(quic.StreamErrorCode(frames.H3RequestIncomplete))
			s.(bidiStream).CancelWrite(quic.StreamErrorCode(frames.H3RequestIncomplete))
		} else {
			s.CancelRead(quic.StreamErrorCode(frames.H3StreamCreationError))
		}
		return true
	}
	if !frames.IsSessionID(sid) {
		c.fail(frames.ErrSessionID)
		return true
	}
	if bidi {
		c.deliverStream(sid, earlyStream{bidi: s.(bidiStream)})
	} else {
		c.deliverStream(sid, earlyStream{uni: s})
	}
	return true
}

// handleUniStream reads a peer unidirectional stream's type (RFC 9114,
// Section 6.2) and serves it. A stream that ends before its type is simply
// dropped.
func (c *conn) handleUniStream(s receiveStream) {
	_ = s.SetReadDeadline(time.Now().Add(c.limits.HeaderTimeout))
	t, err := readVarintExact(s)
	if err != nil {
		s.CancelRead(quic.StreamErrorCode(frames.H3StreamCreationError))
		return
	}
	st := frames.StreamType(t)
	switch st {
	case frames.StreamTypeControl, frames.StreamTypeQPACKEncoder, frames.StreamTypeQPACKDecoder:
		_ = s.SetReadDeadline(time.Time{})
		c.mu.Lock()
		dup := c.critical[st]
		c.critical[st] = true
		c.mu.Unlock()
		if dup {
			c.closeWithError(frames.H3StreamCreationError, "second "+st.String()+" stream")
			return
		}
		switch st {
		case frames.StreamTypeControl:
			c.readControlStream(s)
		case frames.StreamTypeQPACKEncoder:
			c.readQPACKEncoderStream(s)
		default:
			c.readQPACKDecoderStream(s)
		}
	case frames.StreamTypePush:
		if c.isServer {
			c.closeWithError(frames.H3StreamCreationError, "push stream sent by client")
		} else {
			// We never send MAX_PUSH_ID, so any push ID is too large.
			c.closeWithError(frames.H3IDError, "push stream without MAX_PUSH_ID")
		}
	case frames.StreamTypeWebTransport:
		sid, err := readVarintExact(s)
		if err != nil {
			s.CancelRead(quic.StreamErrorCode(frames.H3StreamCreationError))
			return
		}
		_ = s.SetReadDeadline(time.Time{})
		if !frames.IsSessionID(sid) {
			c.fail(frames.ErrSessionID)
			return
		}
		c.deliverStream(sid, earlyStream{uni: s})
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
	t, err := readVarintExact(s)
	if err != nil {
		s.CancelRead(quic.StreamErrorCode(frames.H3RequestIncomplete))
		s.CancelWrite(quic.StreamErrorCode(frames.H3RequestIncomplete))
		return
	}
	if frames.Type(t) == frames.TypeWebTransportStream {
		sid, err := readVarintExact(s)
		if err != nil {
			s.CancelRead(quic.StreamErrorCode(frames.H3RequestIncomplete))
			s.CancelWrite(quic.StreamErrorCode(frames.H3RequestIncomplete))
			return
		}
		_ = s.SetReadDeadline(time.Time{})
		if !frames.IsSessionID(sid) {
			c.fail(frames.ErrSessionID)
			return
		}
		c.deliverStream(sid, earlyStream{bidi: s})
		return
	}
	if !c.isServer {
		// RFC 9114, Section 6.1: a server-initiated bidirectional stream is
		// only allowed by an extension, here WebTransport's signal.
		c.closeWithError(frames.H3StreamCreationError, "server-initiated bidirectional stream")
		return
	}
	// The deadline stays until the header section is read.
	c.server.handleRequestStream(c, s, frames.Type(t))
}

// deliverStream hands a WebTransport stream to its session, buffers it
// when the session does not exist yet, or rejects it.
func (c *conn) deliverStream(sid uint64, es earlyStream) {
	c.mu.Lock()
	if sess := c.sessions[sid]; sess != nil {
		c.mu.Unlock()
		sess.enqueue(es)
		return
	}
	if c.isGoneLocked(sid) || !c.isServer || c.closeErr != nil {
		// A client knows all its sessions: an unknown ID is a closed one.
		c.mu.Unlock()
		es.reject(frames.WTSessionGone)
		return
	}
	e := c.early[sid]
	if c.earlyStreams >= c.limits.MaxBufferedStreams || (e != nil && len(e.streams) >= c.limits.MaxBufferedStreamsPerSession) || c.limits.MaxBufferedStreamsPerSession == 0 {
		c.mu.Unlock()
		es.reject(frames.WTBufferedStreamRejected)
		return
	}
	e = c.earlyLocked(sid)
	e.streams = append(e.streams, es)
	c.earlyStreams++
	c.mu.Unlock()
}

func (c *conn) earlyLocked(sid uint64) *earlyBuffer {
	if c.early == nil {
		c.early = make(map[uint64]*earlyBuffer)
	}
	e := c.early[sid]
	if e == nil {
		e = &earlyBuffer{created: time.Now()}
		c.early[sid] = e
		if c.earlyTimer == nil {
			c.earlyTimer = time.AfterFunc(c.limits.BufferTimeout, c.expireEarly)
		} else if len(c.early) == 1 {
			c.earlyTimer.Reset(c.limits.BufferTimeout)
		}
	}
	return e
}

// expireEarly rejects what was buffered for sessions that did not come in
// time, so nothing is kept for a session that never comes.
func (c *conn) expireEarly() {
	now := time.Now()
	var expired []*earlyBuffer
	c.mu.Lock()
	next := time.Duration(-1)
	for sid, e := range c.early {
		age := now.Sub(e.created)
		if age >= c.limits.BufferTimeout {
			expired = append(expired, e)
			c.dropEarlyLocked(sid, e)
		} else if rem := c.limits.BufferTimeout - age; next < 0 || rem < next {
			next = rem
		}
	}
	if next >= 0 && c.closeErr == nil {
		c.earlyTimer.Reset(next)
	}
	c.mu.Unlock()
	for _, e := range expired {
		for _, s := range e.streams {
			s.reject(frames.WTBufferedStreamRejected)
		}
	}
}

func (c *conn) dropEarlyLocked(sid uint64, e *earlyBuffer) {
	delete(c.early, sid)
	c.earlyStreams -= len(e.streams)
	c.earlyDgrams -= len(e.datagrams)
	for _, d := range e.datagrams {
		c.earlyBytes -= len(d)
	}
}

func (c *conn) isGoneLocked(sid uint64) bool {
	for i := range c.gone {
		if c.gone[i] == sid {
			return true
		}
	}
	return false
}

// addSession registers a session and moves what was buffered for it into
// it. It fails when the connection is closed or at the session limit.
func (c *conn) addSession(s *Session) error {
	c.mu.Lock()
	if c.closeErr != nil {
		err := c.closeErr
		c.mu.Unlock()
		return err
	}
	if len(c.sessions) >= c.limits.MaxSessions {
		c.mu.Unlock()
		return ErrTooManySessions
	}
	c.sessions[s.id] = s
	c.pauseDatagramsLocked()
	e := c.early[s.id]
	if e != nil {
		c.dropEarlyLocked(s.id, e)
	}
	c.mu.Unlock()
	if e != nil {
		for _, es := range e.streams {
			s.enqueue(es)
		}
		for _, d := range e.datagrams {
			s.pushDatagram(d)
		}
	}
	return nil
}

// goneRing is how many ended session IDs a connection remembers.
const goneRing = 64

// removeSession forgets an ended session, remembering its ID so that late
// streams for it are rejected without buffering.
func (c *conn) removeSession(s *Session) {
	c.mu.Lock()
	if c.sessions[s.id] == s {
		delete(c.sessions, s.id)
		if c.gone == nil {
			c.gone = make([]uint64, 0, goneRing)
		}
		if len(c.gone) < goneRing {
			c.gone = append(c.gone, s.id)
		} else {
			c.gone[c.goneN%goneRing] = s.id
		}
		c.goneN++
	}
	c.mu.Unlock()
}

func (c *conn) session(sid uint64) *Session {
	c.mu.Lock()
	s := c.sessions[sid]
	c.mu.Unlock()
	return s
}

// datagramLoop receives QUIC datagrams and routes each HTTP datagram to its
// session by quarter stream ID (RFC 9297, Section 2.1).
func (c *conn) datagramLoop(ctx context.Context) {
	for {
		b, err := c.qc.ReceiveDatagram(ctx)
		if err != nil {
			c.mu.Lock()
			if ctx.Err() != nil && c.dgramWanted.Load() && c.closeErr == nil {
				// Paused, but a session asked for datagrams meanwhile.
				ctx, c.dgramStop = context.WithCancel(context.Background())
				c.mu.Unlock()
				continue
			}
			c.dgramStop = nil
			c.mu.Unlock()
			return
		}
		sid, payload, err := frames.ParseDatagram(b)
		if err != nil {
			c.fail(err)
			return
		}
		sess := c.lastDgramSess
		if sess == nil || c.lastDgramID != sid || sess.isDone() {
			sess = c.session(sid)
			c.lastDgramID, c.lastDgramSess = sid, sess
		}
		if sess != nil {
			sess.pushDatagram(payload)
			continue
		}
		c.bufferDatagram(sid, payload)
	}
}

func (c *conn) bufferDatagram(sid uint64, payload []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.isServer || c.isGoneLocked(sid) || c.closeErr != nil {
		return // dropped: a client knows its sessions; gone sessions get nothing
	}
	if c.earlyDgrams >= c.limits.MaxBufferedDatagrams || c.earlyBytes+len(payload) > c.limits.MaxBufferedDatagramBytes {
		return // dropped, as the draft allows
	}
	if e := c.early[sid]; e == nil && c.earlyStreams+len(c.early) >= c.limits.MaxBufferedStreams {
		return // bound the number of session IDs held, too
	} else if e != nil && len(e.datagrams) >= c.limits.MaxBufferedDatagramsPerSession {
		return
	}
	e := c.earlyLocked(sid)
	e.datagrams = append(e.datagrams, payload)
	c.earlyDgrams++
	c.earlyBytes += len(payload)
}

// waitSettings waits for the peer's SETTINGS.
func (c *conn) waitSettings(ctx context.Context) error {
	select {
	case <-c.settingsDone:
		return nil
	default:
	}
	t := time.NewTimer(c.limits.SettingsTimeout)
	defer t.Stop()
	select {
	case <-c.settingsDone:
		return nil
	case <-c.closed:
		return c.closeErr
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return ErrSettingsTimeout
	}
}

// readControlStream enforces RFC 9114, Sections 6.2.1 and 7.2, on the
// peer's control stream.
func (c *conn) readControlStream(s receiveStream) {
	fr := newFrameReader(s, 256)
	limit := uint64(c.limits.MaxControlFrameSize)
	first := true
	for {
		h, err := frames.ReadHeader(fr, limit)
		if err != nil {
			c.controlStreamEnded(err)
			return
		}
		if first && h.Type != frames.TypeSettings {
			c.fail(frames.ErrMissingSettings)
			return
		}
		known, err := frames.Check(h.Type, frames.KindControl, c.isServer)
		if err != nil {
			c.fail(err)
			return
		}
		if !known {
			if err := fr.skip(h.Length); err != nil {
				c.controlStreamEnded(err)
				return
			}
			continue
		}
		if h.Length > limit {
			c.fail(frames.ErrFrameTooLarge)
			return
		}
		p, err := fr.payload(h.Length)
		if err != nil {
			c.controlStreamEnded(err)
			return
		}
		if err := c.handleControlFrame(h.Type, p, first); err != nil {
			c.fail(err)
			return
		}
		first = false
	}
}

// controlStreamEnded handles a read error on a critical stream: the
// connection is already gone, or the peer closed or reset the stream, which
// is H3_CLOSED_CRITICAL_STREAM (RFC 9114, Section 6.2.1).
func (c *conn) controlStreamEnded(err error) {
	if c.isClosed() {
		return
	}
	if _, ok := errors.AsType[*quic.StreamError](err); ok || err == io.EOF {
		c.closeWithError(frames.H3ClosedCriticalStream, "critical stream closed")
		return
	}
	if _, ok := errors.AsType[*frames.Error](err); ok {
		c.fail(err)
		return
	}
	c.connGone(err)
}

func (c *conn) handleControlFrame(t frames.Type, p []byte, first bool) error {
	switch t {
	case frames.TypeSettings:
		if !first {
			return &frames.Error{Code: frames.H3FrameUnexpected, Connection: true, Reason: "second SETTINGS frame"}
		}
		if err := c.peer.Parse(p); err != nil {
			return err
		}
		if err := c.peer.Validate(c.peerDatagramTP); err != nil {
			return err
		}
		if c.isServer {
			c.draft = settings.Negotiate(&c.peer, &c.local)
		} else {
			c.draft = settings.Negotiate(&c.local, &c.peer)
		}
		c.peerDatagrams = c.peer.Enabled(settings.H3Datagram) || c.peer.Enabled(settings.H3DatagramDraft04)
		if c.logger.Enabled(context.Background(), slog.LevelDebug) {
			c.logger.Debug("peer SETTINGS", "settings", c.peer.String(), "draft", c.draft)
		}
		close(c.settingsDone)
	case frames.TypeGoaway:
		id, err := frames.ParseGoaway(p)
		if err != nil {
			return err
		}
		return c.handleGoaway(id)
	case frames.TypeCancelPush:
		if _, err := frames.ParseCancelPush(p); err != nil {
			return err
		}
		// We never send PUSH_PROMISE (server) nor MAX_PUSH_ID (client), so
		// every push ID is one never promised or allowed (RFC 9114,
		// Section 7.2.3).
		return &frames.Error{Code: frames.H3IDError, Connection: true, Reason: "CANCEL_PUSH for a push never promised"}
	case frames.TypeMaxPushID:
		id, err := frames.ParseMaxPushID(p)
		if err != nil {
			return err
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if int64(id) < c.maxPushID {
			return &frames.Error{Code: frames.H3IDError, Connection: true, Reason: "MAX_PUSH_ID decreased"}
		}
		c.maxPushID = int64(id)
	case frames.TypePriorityUpdateRequest, frames.TypePriorityUpdatePush:
		id, _, err := frames.ParsePriorityUpdate(p)
		if err != nil {
			return err
		}
		if t == frames.TypePriorityUpdateRequest && !frames.IsSessionID(id) {
			return &frames.Error{Code: frames.H3IDError, Connection: true, Reason: "PRIORITY_UPDATE for a non-request stream"}
		}
	}
	return nil
}

// handleGoaway applies a peer's GOAWAY (RFC 9114, Section 5.2): a server
// sends a client-initiated bidirectional stream ID, and the ID never
// increases.
func (c *conn) handleGoaway(id uint64) error {
	c.mu.Lock()
	if !c.isServer && !frames.IsSessionID(id) {
		c.mu.Unlock()
		return &frames.Error{Code: frames.H3IDError, Connection: true, Reason: "GOAWAY with a stream ID that is not client-initiated bidirectional"}
	}
	if c.peerGoaway && id > c.peerGoawayID {
		c.mu.Unlock()
		return &frames.Error{Code: frames.H3IDError, Connection: true, Reason: "GOAWAY ID increased"}
	}
	first := !c.peerGoaway
	c.peerGoaway, c.peerGoawayID = true, id
	sessions := make([]*Session, 0, len(c.sessions))
	for _, s := range c.sessions {
		sessions = append(sessions, s)
	}
	c.mu.Unlock()
	if first {
		c.logger.Debug("peer sent GOAWAY", "id", id)
		c.markDraining()
		for _, s := range sessions {
			s.markDraining()
		}
	}
	return nil
}

func (c *conn) markDraining() {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.draining:
	default:
		close(c.draining)
	}
}

// sendGoaway sends GOAWAY on our control stream. A server names the first
// request stream it will not process; a client sends push ID 0 (it allows
// no pushes).
func (c *conn) sendGoaway() {
	c.mu.Lock()
	if c.goawaySent {
		c.mu.Unlock()
		return
	}
	c.goawaySent = true
	var id uint64
	if c.isServer && c.maxRequestID >= 0 {
		id = uint64(c.maxRequestID + 4)
	}
	c.goawayID = id
	c.mu.Unlock()
	c.markDraining()
	if c.ctrl != nil {
		_, _ = c.ctrl.Write(frames.AppendGoaway(nil, id))
	}
}

// readQPACKEncoderStream checks the peer's QPACK encoder stream (RFC 9204,
// Section 4.3). With our dynamic table capacity of 0 the only valid
// instruction is Set Dynamic Table Capacity with value 0.
func (c *conn) readQPACKEncoderStream(s receiveStream) {
	fr := newFrameReader(s, 64)
	for {
		b, err := fr.ReadByte()
		if err != nil {
			c.controlStreamEnded(err)
			return
		}
		if b&0xe0 != 0x20 {
			c.closeWithError(frames.QPACKEncoderStreamError, "dynamic table instruction with capacity 0")
			return
		}
		v, err := readPrefixInt(fr, b, 5)
		if err != nil {
			c.controlStreamEnded(err)
			return
		}
		if v > 0 {
			c.closeWithError(frames.QPACKEncoderStreamError, "dynamic table capacity above SETTINGS_QPACK_MAX_TABLE_CAPACITY")
			return
		}
	}
}

// readQPACKDecoderStream checks the peer's QPACK decoder stream (RFC 9204,
// Section 4.4). We never reference the dynamic table, so only Stream
// Cancellation is valid.
func (c *conn) readQPACKDecoderStream(s receiveStream) {
	fr := newFrameReader(s, 64)
	for {
		b, err := fr.ReadByte()
		if err != nil {
			c.controlStreamEnded(err)
			return
		}
		var n uint = 6
		if b&0x80 != 0 {
			n = 7
		}
		if _, err := readPrefixInt(fr, b, n); err != nil {
			c.controlStreamEnded(err)
			return
		}
		if b&0xc0 != 0x40 {
			c.closeWithError(frames.QPACKDecoderStreamError, "acknowledgment or increment for a dynamic table never used")
			return
		}
	}
}
