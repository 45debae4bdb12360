package quicwt

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicwt/quicwt/frames"
	"github.com/quicwt/quicwt/settings"
)

// Session is a WebTransport session (draft-ietf-webtrans-http3, Section 3):
// the CONNECT stream that established it, and the streams and datagrams
// associated with it. All methods are safe for concurrent use.
//
// This file owns the session's lifecycle (open, drain, close, end);
// session_streams.go its streams, datagram.go its datagrams, connect.go
// the CONNECT stream and its capsules.
type Session struct {
	c   sessionConn
	lim *Limits // the connection's
	id  uint64
	str bidiStream // the CONNECT stream

	request  *http.Request // server side (client side: rare.response)
	protocol string        // negotiated WT-Protocol (protocols.go)
	// flow is the flow-control state, made on first use (flowState): an
	// idle session costs nothing for it.
	flow atomic.Pointer[sessionFlow]

	ctx    context.Context
	cancel context.CancelCauseFunc

	draft    uint8 // a settings.Draft
	isServer bool
	flowOn   bool // flow control is in effect (its state: flowState)
	// Under mu: CloseWithError started; Draining and Closed are (or will
	// be made) closed.
	closing, drained, readerExited bool

	state         atomic.Uint32 // sessionPending, sessionOpen, sessionClosed
	readerStarted atomic.Bool

	writeMu sync.Mutex // serializes writes to the CONNECT stream

	mu       sync.Mutex
	nStreams int32 // length of streams
	closeErr *SessionError
	sq       *streamQueues // incoming streams, made on first use
	dq       *dgramRing    // received datagrams, made on first use
	streams  *streamState  // open streams to reset when the session ends, a list
	rare     *sessionRare  // what few sessions need, made on demand
	prio     *prioState    // streams with a send order or group (priority.go)
	// The datagram send policy's queue (datagram_send.go), nil without
	// one.
	dsend atomic.Pointer[dgramSender]
	ql    *qlogger // the connection's (qlog.go), nil when off

	// rd reads the CONNECT stream after the header section, in the
	// session's reader goroutine only. It keeps no buffer while idle.
	rd frameReader
}

// sessionConn is a session's view of its connection: what it may ask of
// it, and nothing of the connection's own state.
type sessionConn interface {
	openStream() (bidiStream, error)
	openStreamSync(context.Context) (bidiStream, error)
	openUniStream() (sendStream, error)
	openUniStreamSync(context.Context) (sendStream, error)
	sendDatagram([]byte) error
	// newFlow makes a session's flow-control state from the initial
	// limits of both sides' SETTINGS.
	newFlow() *sessionFlow
	smoothedRTT() time.Duration
	// datagramSupport: the peer enabled HTTP datagrams in SETTINGS (h3),
	// and sent the max_datagram_frame_size transport parameter (tp).
	datagramSupport() (h3, tp bool)
	// wantDatagrams starts the connection's datagram receiver.
	wantDatagrams()
	// fail closes the connection for a protocol violation (a
	// *frames.Error), or records its end (an I/O error).
	fail(error)
	// closeError is why the connection ended, nil while it is open.
	closeError() error
	// connectionEnded records the connection's end seen as err on one of
	// the session's streams, and returns the end of its sessions.
	connectionEnded(err error) *SessionError
	// forget removes the ended session from the connection's registry.
	forget(*Session)
	localAddr() net.Addr
	remoteAddr() net.Addr
	tlsConnectionState() *tls.ConnectionState
}

// connectionEnded is sessionConn's: the end every session of the
// connection gets, whichever of its goroutines sees the close first.
func (c *conn) connectionEnded(err error) *SessionError {
	c.connGone(err)
	return c.sessionEndFor(c.closeErr)
}

// sessionRare holds a session's rarely used state.
type sessionRare struct {
	response *http.Response // client side
	drainCh  chan struct{}
	doneCh   chan struct{}
	// Streams to reset once the peer has seen WT_CLOSE_SESSION.
	deferredStreams []tracked
	deferredQueue   []earlyStream
	onReaderDone    func() // called when the CONNECT stream reader exits
	// The close CloseWithError is sending: the session's end, even when
	// the peer's answer (FIN, or a reset) is seen before CloseWithError
	// records it.
	localClose *SessionError
}

// rareLocked returns s.rare, making it. Called with s.mu held.
func (s *Session) rareLocked() *sessionRare {
	if s.rare == nil {
		s.rare = new(sessionRare)
	}
	return s.rare
}

const (
	sessionPending uint32 = iota
	sessionOpen
	sessionClosed
)

func newSession(c *conn, str bidiStream, draft settings.Draft) *Session {
	id := uint64(str.StreamID())
	s := &Session{
		c:        c,
		lim:      &c.limits,
		id:       id,
		str:      str,
		draft:    uint8(draft),
		isServer: c.isServer,
		ql:       c.ql,
	}
	s.flowOn = c.flowControl
	s.ctx, s.cancel = context.WithCancelCause(context.Background())
	return s
}

// closedChan is a closed channel, returned for events already past.
var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// lazyChan returns *ch, making it (closed if done) on first use. Called
// with the session's mutex held.
func lazyChan(ch *chan struct{}, done bool) chan struct{} {
	if *ch == nil {
		if done {
			return closedChan
		}
		*ch = make(chan struct{})
	}
	return *ch
}

// closeLazy marks a lazy channel done and closes it if it was made (ch may
// be nil). Called with the session's mutex held.
func closeLazy(ch *chan struct{}, done *bool) {
	if *done {
		return
	}
	*done = true
	if ch != nil && *ch != nil {
		close(*ch)
	}
}

// wake signals a waiter channel without blocking.
func wake(ch chan struct{}) {
	if ch != nil {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// ID returns the session ID: the stream ID of its CONNECT stream.
func (s *Session) ID() StreamID { return StreamID(s.id) }

// Draft returns the WebTransport draft negotiated on the connection.
func (s *Session) Draft() settings.Draft { return settings.Draft(s.draft) }

// FlowControl reports whether WebTransport flow control is in effect for
// the session: both endpoints sent nonzero initial limits (see Limits).
func (s *Session) FlowControl() bool { return s.flowOn }

// flowState returns the session's flow-control state, making it on first
// use; nil without flow control.
func (s *Session) flowState() *sessionFlow {
	if !s.flowOn {
		return nil
	}
	if f := s.flow.Load(); f != nil {
		return f
	}
	s.flow.CompareAndSwap(nil, s.c.newFlow())
	return s.flow.Load()
}

// Request returns the CONNECT request (server side), or nil.
func (s *Session) Request() *http.Request { return s.request }

// Response returns the CONNECT response (client side), or nil.
func (s *Session) Response() *http.Response {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.rare == nil {
		return nil
	}
	return s.rare.response
}

// ConnectionState returns the TLS state of the session's connection: what
// was negotiated, and the peer's certificates.
func (s *Session) ConnectionState() tls.ConnectionState { return *s.c.tlsConnectionState() }

// Context is canceled when the session ends; context.Cause returns the
// *SessionError.
func (s *Session) Context() context.Context { return s.ctx }

// LocalAddr and RemoteAddr return the connection's addresses.
func (s *Session) LocalAddr() net.Addr  { return s.c.localAddr() }
func (s *Session) RemoteAddr() net.Addr { return s.c.remoteAddr() }

// Closed is closed when the session has ended and its close handshake is
// over: the peer answered WT_CLOSE_SESSION by ending the CONNECT stream (or
// CloseTimeout passed, or the connection ended), the session's streams were
// reset, and, for a session opened with Dialer.Dial, its connection was
// closed. A program about to exit waits on it after CloseWithError so that
// the close reaches the peer.
func (s *Session) Closed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return lazyChan(&s.rareLocked().doneCh, s.readerExited)
}

// readerDone marks the session Closed.
func (s *Session) readerDone() {
	s.mu.Lock()
	var ch *chan struct{}
	if s.rare != nil {
		ch = &s.rare.doneCh
	}
	closeLazy(ch, &s.readerExited)
	s.mu.Unlock()
}

// Draining is closed when the peer asks the session to wind down: a
// WT_DRAIN_SESSION capsule for this session, or GOAWAY on the connection.
// Streams and datagrams keep working.
func (s *Session) Draining() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return lazyChan(&s.rareLocked().drainCh, s.drained)
}

func (s *Session) markDraining() {
	s.ql.sessionDraining(s)
	s.mu.Lock()
	var ch *chan struct{}
	if s.rare != nil {
		ch = &s.rare.drainCh
	}
	closeLazy(ch, &s.drained)
	s.mu.Unlock()
}

// markOpen moves a pending session to open (Upgrade's 2xx is out, or the
// client read it); false if it ended meanwhile.
func (s *Session) markOpen() bool { return s.state.CompareAndSwap(sessionPending, sessionOpen) }

func (s *Session) isOpen() bool { return s.state.Load() == sessionOpen }

// closingOrDone reports that the session writes nothing more on its CONNECT
// stream but its close.
func (s *Session) closingOrDone() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing || s.closeErr != nil
}
func (s *Session) isDone() bool { return s.state.Load() == sessionClosed }

// Err returns the *SessionError the session ended with, or nil while it is
// open.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closeErr == nil {
		return nil
	}
	return s.closeErr
}

// openCheck returns the reason the session cannot open streams or send
// datagrams now, or nil.
func (s *Session) openCheck() error {
	if s.state.Load() != sessionOpen {
		if err := s.Err(); err != nil {
			return err
		}
		return ErrSessionGone
	}
	return nil
}

// Close closes the session with code 0 and no message.
func (s *Session) Close() error { return s.CloseWithError(0, "") }

// CloseWithError closes the session: it sends WT_CLOSE_SESSION with the
// code and message (truncated to 1024 bytes at a UTF-8 boundary), then FIN
// on the CONNECT stream, and only then resets the session's streams with
// WT_SESSION_GONE (draft-ietf-webtrans-http3, Section 6).
func (s *Session) CloseWithError(code SessionErrorCode, msg string) error {
	s.mu.Lock()
	if s.closing || s.closeErr != nil {
		s.mu.Unlock()
		return nil
	}
	s.closing = true
	msg = frames.TruncateCloseMessage(msg)
	local := &SessionError{Code: code, Message: msg}
	s.rareLocked().localClose = local
	s.mu.Unlock()
	werr := s.writeCapsules(frames.AppendCloseSession(nil, uint32(code), msg), true)
	// quic-go sends control frames (RESET_STREAM, STOP_SENDING) ahead of
	// stream data, so resetting the session's streams now would put the
	// resets before the capsule on the wire, and Chromium then reports
	// "Connection lost" instead of the code and message. The resets wait
	// for the peer's FIN on the CONNECT stream (its answer to the capsule)
	// or the close timeout: the reader goroutine does them when it exits.
	s.end(local, false, s.readerRunning())
	// Give the peer time to end its side, then stop reading.
	_ = s.str.SetReadDeadline(time.Now().Add(s.lim.CloseTimeout))
	if werr != nil && !errors.Is(werr, io.EOF) {
		return translateStreamErr(werr)
	}
	return nil
}

// terminate ends the session once: records why, cancels its context,
// resets every stream with WT_SESSION_GONE and forgets it on the
// connection. With resetConnect it also resets the CONNECT stream.
func (s *Session) terminate(e *SessionError, resetConnect bool) { s.end(e, resetConnect, false) }

// end is terminate, optionally holding the streams' resets back until the
// CONNECT stream reader exits (see CloseWithError).
func (s *Session) end(e *SessionError, resetConnect, deferResets bool) {
	s.mu.Lock()
	if s.closeErr != nil {
		s.mu.Unlock()
		return
	}
	if e.Remote && s.closing && s.rare != nil && s.rare.localClose != nil {
		// The peer's answer to our WT_CLOSE_SESSION overtook
		// CloseWithError: the session ended with our close.
		e = s.rare.localClose
	}
	s.closeErr = e
	s.state.Store(sessionClosed)
	s.ql.sessionClosed(s, e)
	streams := s.takeStreamsLocked()
	var queued []earlyStream
	if sq := s.sq; sq != nil {
		queued = append(sq.bidiQ, sq.uniQ...)
		sq.bidiQ, sq.uniQ = nil, nil
	}
	if q := s.dq; q != nil {
		// Keep the drop count, free the queue.
		s.dq = &dgramRing{wait: q.wait, dropsBefore: q.dropsBefore + q.drops.Load()}
	}
	if deferResets && (len(streams) > 0 || len(queued) > 0) {
		r := s.rareLocked()
		r.deferredStreams, r.deferredQueue = streams, queued
		streams, queued = nil, nil
	}
	s.mu.Unlock()
	s.cancel(e)
	if f := s.flow.Load(); f != nil {
		f.wake()
	}
	if resetConnect {
		s.str.CancelRead(quic.StreamErrorCode(frames.WTSessionGone))
		s.str.CancelWrite(quic.StreamErrorCode(frames.WTSessionGone))
	}
	resetAll(streams, queued)
	s.c.forget(s)
	if !s.readerStarted.Load() {
		s.readerDone() // no reader will: the session never opened
	}
}

func resetAll(streams []tracked, queued []earlyStream) {
	for _, t := range streams {
		t.cancel(frames.WTSessionGone)
	}
	for _, es := range queued {
		es.reject(frames.WTSessionGone)
	}
}

// resetDeferred resets the streams whose resets CloseWithError held back.
func (s *Session) resetDeferred() {
	s.mu.Lock()
	var streams []tracked
	var queued []earlyStream
	if r := s.rare; r != nil {
		streams, queued = r.deferredStreams, r.deferredQueue
		r.deferredStreams, r.deferredQueue = nil, nil
	}
	s.mu.Unlock()
	resetAll(streams, queued)
}

// sessionStats is a snapshot of what a session holds, for tests and
// diagnostics.
type sessionStats struct {
	BidiQueued, UniQueued int // streams waiting to be accepted
	DatagramBytes         int // received datagram bytes not read yet
	Tracked               int // open streams the session resets when it ends
	DatagramsDropped      uint64
}

func (s *Session) stats() sessionStats {
	s.mu.Lock()
	var st sessionStats
	if s.sq != nil {
		st.BidiQueued, st.UniQueued = len(s.sq.bidiQ), len(s.sq.uniQ)
	}
	if s.dq != nil {
		st.DatagramBytes = s.dq.bytes
	}
	st.Tracked = int(s.nStreams)
	s.mu.Unlock()
	st.DatagramsDropped = s.DatagramsDropped()
	return st
}
