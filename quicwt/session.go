package quicwt

import (
	"context"
	"errors"
	"io"
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
type Session struct {
	c   *conn
	id  uint64
	str bidiStream // the CONNECT stream

	request *http.Request // server side (client side: rare.response)

	ctx    context.Context
	cancel context.CancelCauseFunc

	dgramHdr    [8]byte
	bidiHdr     [10]byte
	uniHdr      [10]byte
	dgramHdrLen uint8
	strHdrLen   uint8 // length of bidiHdr and uniHdr
	draft       uint8 // a settings.Draft
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

	// rd reads the CONNECT stream after the header section, in the
	// session's reader goroutine only. It keeps no buffer while idle.
	rd frameReader
}

// streamQueues holds a session's incoming streams until accepted.
type streamQueues struct {
	bidiQ    []earlyStream
	uniQ     []earlyStream
	bidiWait chan struct{}
	uniWait  chan struct{}
}

// queuesLocked returns s.sq, making it. Called with s.mu held.
func (s *Session) queuesLocked() *streamQueues {
	if s.sq == nil {
		s.sq = new(streamQueues)
	}
	return s.sq
}

// dgramRing is a session's queue of received datagrams, a ring buffer.
type dgramRing struct {
	wait        chan struct{} // a ReceiveDatagram waits
	buf         [][]byte
	head, n     int
	bytes       int
	drops       atomic.Uint64
	dropsBefore uint64 // drops of rings replaced at the session's end
}

// ringLocked returns s.dq, making it. Called with s.mu held.
func (s *Session) ringLocked() *dgramRing {
	if s.dq == nil {
		s.dq = new(dgramRing)
	}
	return s.dq
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

// tracked is a stream of the session to reset when the session ends.
type tracked interface{ cancel(code ErrorCode) }

func newSession(c *conn, str bidiStream, draft settings.Draft) *Session {
	id := uint64(str.StreamID())
	s := &Session{
		c:     c,
		id:    id,
		str:   str,
		draft: uint8(draft),
	}
	s.ctx, s.cancel = context.WithCancelCause(context.Background())
	s.dgramHdrLen = uint8(len(frames.AppendDatagramHeader(s.dgramHdr[:0], id)))
	s.strHdrLen = uint8(len(frames.AppendWebTransportBidiHeader(s.bidiHdr[:0], id)))
	frames.AppendWebTransportUniHeader(s.uniHdr[:0], id)
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

// adoptReader continues reading the CONNECT stream after the header
// section, which fr read, with what fr buffered past it.
func (s *Session) adoptReader(fr *frameReader) {
	s.rd = frameReader{r: fr.r, idleSize: capsuleBuffer}
	if fr.pos < fr.end {
		s.rd.buf = make([]byte, max(capsuleBuffer, int(fr.end-fr.pos)))
		s.rd.end = int32(copy(s.rd.buf, fr.buf[fr.pos:fr.end]))
	}
}

// capsuleBuffer is the CONNECT stream reader's buffer while capsules come.
const capsuleBuffer = 64

// ID returns the session ID: the stream ID of its CONNECT stream.
func (s *Session) ID() uint64 { return s.id }

// Draft returns the WebTransport draft negotiated on the connection.
func (s *Session) Draft() settings.Draft { return settings.Draft(s.draft) }

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

// Context is canceled when the session ends; context.Cause returns the
// *SessionError.
func (s *Session) Context() context.Context { return s.ctx }

// LocalAddr and RemoteAddr return the connection's addresses.
func (s *Session) LocalAddr() string  { return s.c.qc.LocalAddr() }
func (s *Session) RemoteAddr() string { return s.c.qc.RemoteAddr() }

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

// DatagramsDropped counts received datagrams dropped because the receive
// queue (Limits.DatagramQueueBytes) was full.
func (s *Session) DatagramsDropped() uint64 {
	s.mu.Lock()
	q := s.dq
	s.mu.Unlock()
	if q == nil {
		return 0
	}
	return q.dropsBefore + q.drops.Load()
}

func (s *Session) isDone() bool { return s.state.Load() == sessionClosed }

// readerRunning reports whether the CONNECT stream reader was started and
// has not exited.
func (s *Session) readerRunning() bool {
	if !s.readerStarted.Load() {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.readerExited
}

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

func (s *Session) markDraining() {
	s.mu.Lock()
	var ch *chan struct{}
	if s.rare != nil {
		ch = &s.rare.drainCh
	}
	closeLazy(ch, &s.drained)
	s.mu.Unlock()
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

// enqueue adds an incoming stream to its accept queue, or rejects it when
// the session is gone or the queue is full.
func (s *Session) enqueue(es earlyStream) {
	s.mu.Lock()
	if s.closeErr != nil {
		s.mu.Unlock()
		es.reject(frames.WTSessionGone)
		return
	}
	sq := s.queuesLocked()
	q, w := &sq.uniQ, sq.uniWait
	if es.bidi != nil {
		q, w = &sq.bidiQ, sq.bidiWait
	}
	if len(*q) >= s.c.limits.MaxIncomingStreamQueue {
		s.mu.Unlock()
		es.reject(frames.WTBufferedStreamRejected)
		return
	}
	*q = append(*q, es)
	s.mu.Unlock()
	wake(w)
}

// pop takes the first stream of a queue, creating the waiter channel when
// the queue is empty. Called with s.mu held.
func popQueue(q *[]earlyStream, w *chan struct{}) (earlyStream, bool) {
	if len(*q) > 0 {
		es := (*q)[0]
		n := copy(*q, (*q)[1:])
		(*q)[n] = earlyStream{}
		*q = (*q)[:n] // keeps the capacity: no allocation per stream
		return es, true
	}
	if *w == nil {
		*w = make(chan struct{}, 1)
	}
	return earlyStream{}, false
}

// accept takes the session's next incoming stream of one kind; without
// wait it returns errWouldBlock at once when none is queued.
func (s *Session) accept(ctx context.Context, bidi, wait bool) (earlyStream, error) {
	for {
		s.mu.Lock()
		if s.closeErr != nil {
			err := s.closeErr
			s.mu.Unlock()
			return earlyStream{}, err
		}
		var es earlyStream
		var ok bool
		var w chan struct{}
		sq := s.queuesLocked()
		if bidi {
			es, ok = popQueue(&sq.bidiQ, &sq.bidiWait)
			w = sq.bidiWait
			if ok && len(sq.bidiQ) > 0 {
				wake(w)
			}
		} else {
			es, ok = popQueue(&sq.uniQ, &sq.uniWait)
			w = sq.uniWait
			if ok && len(sq.uniQ) > 0 {
				wake(w)
			}
		}
		if ok {
			s.mu.Unlock()
			return es, nil
		}
		s.mu.Unlock()
		if !wait {
			return earlyStream{}, errWouldBlock
		}
		select {
		case <-w:
		case <-ctx.Done():
			return earlyStream{}, ctx.Err()
		case <-s.ctx.Done():
		}
	}
}

var errWouldBlock = errors.New("quicwt: no stream ready")

// AcceptStream waits for the peer's next bidirectional stream.
func (s *Session) AcceptStream(ctx context.Context) (*Stream, error) {
	es, err := s.accept(ctx, true, true)
	if err != nil {
		return nil, err
	}
	return s.newStream(es.bidi), nil
}

// TryAcceptStream returns the next bidirectional stream if one is waiting,
// without blocking; ok is false when none is.
func (s *Session) TryAcceptStream() (str *Stream, ok bool) {
	es, err := s.accept(context.Background(), true, false)
	if err != nil {
		return nil, false
	}
	return s.newStream(es.bidi), true
}

// AcceptUniStream waits for the peer's next unidirectional stream.
func (s *Session) AcceptUniStream(ctx context.Context) (*ReceiveStream, error) {
	es, err := s.accept(ctx, false, true)
	if err != nil {
		return nil, err
	}
	return s.newReceiveStream(es.uni), nil
}

// TryAcceptUniStream returns the next unidirectional stream if one is
// waiting, without blocking.
func (s *Session) TryAcceptUniStream() (str *ReceiveStream, ok bool) {
	es, err := s.accept(context.Background(), false, false)
	if err != nil {
		return nil, false
	}
	return s.newReceiveStream(es.uni), true
}

func (s *Session) openCheck() error {
	if s.state.Load() != sessionOpen {
		if err := s.Err(); err != nil {
			return err
		}
		return ErrSessionGone
	}
	return nil
}

// OpenStream opens a bidirectional stream without waiting; it fails if the
// peer's stream limit is reached.
func (s *Session) OpenStream() (*Stream, error) {
	if err := s.openCheck(); err != nil {
		return nil, err
	}
	qs, err := s.c.qc.OpenStream()
	if err != nil {
		return nil, translateStreamErr(err)
	}
	return s.initBidi(qs)
}

// OpenStreamSync opens a bidirectional stream, waiting for the peer's
// stream limit if needed.
func (s *Session) OpenStreamSync(ctx context.Context) (*Stream, error) {
	if err := s.openCheck(); err != nil {
		return nil, err
	}
	// Most of the time the peer's limit allows the stream at once: no
	// merged context then.
	if qs, err := s.c.qc.OpenStream(); err == nil {
		return s.initBidi(qs)
	} else if !isStreamLimit(err) {
		return nil, translateStreamErr(err)
	}
	ctx, stop := s.mergeCtx(ctx)
	defer stop()
	qs, err := s.c.qc.OpenStreamSync(ctx)
	if err != nil {
		if s.isDone() {
			return nil, s.Err()
		}
		return nil, translateStreamErr(err)
	}
	return s.initBidi(qs)
}

func isStreamLimit(err error) bool {
	_, ok := errors.AsType[*quic.StreamLimitReachedError](err)
	return ok
}

// mergeCtx returns a context also canceled when the session ends.
func (s *Session) mergeCtx(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

func (s *Session) initBidi(qs bidiStream) (*Stream, error) {
	if _, err := qs.Write(s.bidiHdr[:s.strHdrLen]); err != nil {
		qs.CancelRead(quic.StreamErrorCode(frames.WTSessionGone))
		return nil, translateStreamErr(err)
	}
	// RESET_STREAM_AT keeps the header reliable if the stream is reset.
	qs.SetReliableBoundary()
	return s.newStream(qs), nil
}

// OpenUniStream opens a unidirectional stream without waiting.
func (s *Session) OpenUniStream() (*SendStream, error) {
	if err := s.openCheck(); err != nil {
		return nil, err
	}
	qs, err := s.c.qc.OpenUniStream()
	if err != nil {
		return nil, translateStreamErr(err)
	}
	return s.initUni(qs)
}

// OpenUniStreamSync opens a unidirectional stream, waiting for the peer's
// stream limit if needed.
func (s *Session) OpenUniStreamSync(ctx context.Context) (*SendStream, error) {
	if err := s.openCheck(); err != nil {
		return nil, err
	}
	if qs, err := s.c.qc.OpenUniStream(); err == nil {
		return s.initUni(qs)
	} else if !isStreamLimit(err) {
		return nil, translateStreamErr(err)
	}
	ctx, stop := s.mergeCtx(ctx)
	defer stop()
	qs, err := s.c.qc.OpenUniStreamSync(ctx)
	if err != nil {
		if s.isDone() {
			return nil, s.Err()
		}
		return nil, translateStreamErr(err)
	}
	return s.initUni(qs)
}

func (s *Session) initUni(qs sendStream) (*SendStream, error) {
	if _, err := qs.Write(s.uniHdr[:s.strHdrLen]); err != nil {
		qs.CancelWrite(quic.StreamErrorCode(frames.WTSessionGone))
		return nil, translateStreamErr(err)
	}
	qs.SetReliableBoundary()
	return s.newSendStream(qs), nil
}

// track registers a stream to reset when the session ends. It returns false
// (and the caller resets the stream) if the session already ended.
func (s *Session) track(st *streamState) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closeErr != nil {
		return false
	}
	st.next = s.streams
	if st.next != nil {
		st.next.prev = st
	}
	s.streams = st
	st.linked = true
	s.nStreams++
	return true
}

func (s *Session) untrack(st *streamState) {
	s.mu.Lock()
	s.unlinkLocked(st)
	s.mu.Unlock()
}

func (s *Session) unlinkLocked(st *streamState) {
	if !st.linked {
		return
	}
	if st.prev != nil {
		st.prev.next = st.next
	} else {
		s.streams = st.next
	}
	if st.next != nil {
		st.next.prev = st.prev
	}
	st.prev, st.next, st.linked = nil, nil, false
	s.nStreams--
}

// takeStreamsLocked empties the list of tracked streams.
func (s *Session) takeStreamsLocked() []tracked {
	if s.nStreams == 0 {
		return nil
	}
	out := make([]tracked, 0, int(s.nStreams))
	for s.streams != nil {
		st := s.streams
		out = append(out, st.t)
		s.unlinkLocked(st)
	}
	return out
}

// SendDatagram sends an HTTP datagram on the session (RFC 9297, Section
// 2.1). Datagrams are unreliable; a payload that cannot fit one QUIC
// packet is a *DatagramTooLargeError, never a silent drop.
func (s *Session) SendDatagram(p []byte) error {
	if err := s.openCheck(); err != nil {
		return err
	}
	if !s.c.peerDatagrams {
		return ErrDatagramsDisabled
	}
	bp := dgramPool.Get().(*[]byte)
	b := append(append((*bp)[:0], s.dgramHdr[:s.dgramHdrLen]...), p...)
	err := s.c.qc.SendDatagram(b)
	*bp = b[:0]
	dgramPool.Put(bp)
	if err != nil {
		if tl, ok := errors.AsType[*quic.DatagramTooLargeError](err); ok {
			return &DatagramTooLargeError{Max: max(0, int(tl.MaxDatagramPayloadSize)-int(s.dgramHdrLen))}
		}
		if !s.c.peerDatagramTP {
			return ErrDatagramsDisabled
		}
		return translateConnErr(err)
	}
	return nil
}

var dgramPool = sync.Pool{New: func() any { b := make([]byte, 0, 1500); return &b }}

// probe is a payload larger than any QUIC packet, used to learn the current
// maximum datagram size from quic-go without sending anything.
var probe [1 << 16]byte

// MaxDatagramSize returns the largest payload SendDatagram accepts now: the
// peer's max_datagram_frame_size and the path MTU, less the DATAGRAM frame
// overhead and the quarter stream ID.
func (s *Session) MaxDatagramSize() int {
	err := s.c.qc.SendDatagram(probe[:])
	if tl, ok := errors.AsType[*quic.DatagramTooLargeError](err); ok {
		return max(0, int(tl.MaxDatagramPayloadSize)-int(s.dgramHdrLen))
	}
	return 0
}

// pushDatagram queues a received datagram payload, dropping it when the
// queue is full or the session is closed.
func (s *Session) pushDatagram(p []byte) {
	s.mu.Lock()
	if s.closeErr != nil {
		s.mu.Unlock()
		return
	}
	q := s.ringLocked()
	if q.bytes+len(p) > s.c.limits.DatagramQueueBytes {
		s.mu.Unlock()
		q.drops.Add(1)
		return
	}
	if q.n == len(q.buf) {
		grown := make([][]byte, max(16, 2*len(q.buf)))
		for i := 0; i < q.n; i++ {
			grown[i] = q.buf[(q.head+i)%len(q.buf)]
		}
		q.buf, q.head = grown, 0
	}
	q.buf[(q.head+q.n)%len(q.buf)] = p
	q.n++
	q.bytes += len(p)
	w := q.wait
	s.mu.Unlock()
	wake(w)
}

// ReceiveDatagram returns the next datagram received on the session. The
// connection reads datagrams from quic-go's queue from the first call of
// ReceiveDatagram on any of its sessions on; until then (once it has a
// session) they wait in that queue, which holds 128 and drops beyond, as
// for a quic-go application that does not read them.
func (s *Session) ReceiveDatagram(ctx context.Context) ([]byte, error) {
	s.c.wantDatagrams()
	for {
		s.mu.Lock()
		if q := s.dq; q != nil && q.n > 0 {
			p := q.buf[q.head]
			q.buf[q.head] = nil
			q.head = (q.head + 1) % len(q.buf)
			q.n--
			q.bytes -= len(p)
			if q.n > 0 {
				wake(q.wait)
			}
			s.mu.Unlock()
			return p, nil
		}
		if s.closeErr != nil {
			err := s.closeErr
			s.mu.Unlock()
			return nil, err
		}
		q := s.ringLocked()
		if q.wait == nil {
			q.wait = make(chan struct{}, 1)
		}
		w := q.wait
		s.mu.Unlock()
		select {
		case <-w:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.ctx.Done():
		}
	}
}

// Drain asks the peer to wind the session down (WT_DRAIN_SESSION,
// draft-ietf-webtrans-http3, Section 6).
func (s *Session) Drain() error {
	if err := s.openCheck(); err != nil {
		return err
	}
	return s.writeCapsules(frames.AppendDrainSession(nil), false)
}

// writeCapsules writes capsules in one DATA frame on the CONNECT stream
// (RFC 9297, Section 3.2), optionally followed by FIN.
func (s *Session) writeCapsules(capsules []byte, fin bool) error {
	b := frames.AppendDataHeader(make([]byte, 0, 8+len(capsules)), uint64(len(capsules)))
	b = append(b, capsules...)
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	_ = s.str.SetWriteDeadline(time.Now().Add(s.c.limits.CloseTimeout))
	_, err := s.str.Write(b)
	_ = s.str.SetWriteDeadline(time.Time{})
	if err == nil && fin {
		// Close fails only on a stream whose sending was already cut: by
		// the peer's STOP_SENDING, which may be its answer to the capsule
		// just written (webtransport-go answers that fast). What was
		// written stands; there is nothing more to report.
		_ = s.str.Close()
	}
	return err
}

// Close closes the session with code 0 and no message.
func (s *Session) Close() error { return s.CloseWithError(0, "") }

// CloseWithError closes the session: it sends WT_CLOSE_SESSION with the
// 32-bit code and message (truncated to 1024 bytes at a UTF-8 boundary),
// then FIN on the CONNECT stream, and only then resets the session's
// streams with WT_SESSION_GONE (draft-ietf-webtrans-http3, Section 6).
func (s *Session) CloseWithError(code uint32, msg string) error {
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
	werr := s.writeCapsules(frames.AppendCloseSession(nil, code, msg), true)
	// quic-go sends control frames (RESET_STREAM, STOP_SENDING) ahead of
	// stream data, so resetting the session's streams now would put the
	// resets before the capsule on the wire, and Chromium then reports
	// "Connection lost" instead of the code and message. The resets wait
	// for the peer's FIN on the CONNECT stream (its answer to the capsule)
	// or the close timeout: the reader goroutine does them when it exits.
	s.end(local, false, s.readerRunning())
	// Give the peer time to end its side, then stop reading.
	_ = s.str.SetReadDeadline(time.Now().Add(s.c.limits.CloseTimeout))
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
	if resetConnect {
		s.str.CancelRead(quic.StreamErrorCode(frames.WTSessionGone))
		s.str.CancelWrite(quic.StreamErrorCode(frames.WTSessionGone))
	}
	resetAll(streams, queued)
	s.c.removeSession(s)
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

// resetConnect resets the CONNECT stream for a violation on it and ends
// the session with that cause.
func (s *Session) resetConnect(code ErrorCode, cause error) {
	s.str.CancelRead(quic.StreamErrorCode(code))
	s.str.CancelWrite(quic.StreamErrorCode(code))
	s.terminate(&SessionError{Cause: cause}, false)
}

// readCapsules runs for the session's lifetime, reading the CONNECT
// stream's frames and the capsules inside its DATA frames (RFC 9297,
// Section 3; draft-ietf-webtrans-http3, Section 6).
func (s *Session) readCapsules() {
	defer func() {
		s.resetDeferred()
		s.mu.Lock()
		var done func()
		if s.rare != nil {
			done = s.rare.onReaderDone
		}
		s.mu.Unlock()
		if done != nil {
			done()
		}
		s.readerDone()
	}()
	fr := &s.rd
	p := frames.CapsuleParser{MaxSize: uint64(s.c.limits.MaxCapsuleSize)}
	limit := uint64(s.c.limits.MaxControlFrameSize)
	gotClose := false
	for {
		fr.release() // between frames, an idle session holds no buffer
		h, err := frames.ReadHeader(fr, limit)
		if err != nil {
			s.connectStreamEnded(err, &p, gotClose)
			return
		}
		known, err := frames.Check(h.Type, frames.KindConnect, s.c.isServer)
		if err != nil {
			s.c.fail(err)
			return
		}
		if !known || h.Type == frames.TypeHeaders {
			// Unknown frames are skipped whatever their length (RFC 9114,
			// Section 9), without buffering; trailers carry nothing for us
			// (ReadHeader bounded their length).
			if err := fr.skip(h.Length); err != nil {
				s.connectStreamEnded(eofAsTruncated(err), &p, gotClose)
				return
			}
			continue
		}
		// DATA: feed its payload to the capsule parser.
		for rem := h.Length; rem > 0; {
			chunk, err := fr.chunk(rem)
			if err != nil {
				s.connectStreamEnded(eofAsTruncated(err), &p, gotClose)
				return
			}
			rem -= uint64(len(chunk))
			if gotClose {
				s.resetConnect(frames.H3MessageError, errors.New("data after WT_CLOSE_SESSION"))
				return
			}
			for len(chunk) > 0 {
				cp, n, ok, err := p.Next(chunk)
				chunk = chunk[n:]
				if err != nil {
					s.resetConnect(frames.CodeOf(err), err)
					return
				}
				if !ok {
					continue
				}
				if s.handleCapsule(cp) {
					gotClose = true
					if len(chunk) > 0 || rem > 0 {
						s.resetConnect(frames.H3MessageError, errors.New("data after WT_CLOSE_SESSION"))
						return
					}
				}
			}
		}
	}
}

// handleCapsule acts on one capsule; it returns true for WT_CLOSE_SESSION.
func (s *Session) handleCapsule(cp frames.Capsule) bool {
	switch cp.Type {
	case frames.CapsuleCloseSession:
		code, msg, err := frames.ParseCloseSession(cp.Value)
		if err != nil {
			s.resetConnect(frames.CodeOf(err), err)
			return false
		}
		// Answer with FIN (draft-ietf-webtrans-http3, Section 6).
		s.endedByPeer(&SessionError{Code: code, Message: string(msg), Remote: true})
		_ = s.str.SetReadDeadline(time.Now().Add(s.c.limits.CloseTimeout))
		return true
	case frames.CapsuleDrainSession:
		if err := frames.ParseDrainSession(cp.Value); err != nil {
			s.resetConnect(frames.CodeOf(err), err)
			return false
		}
		s.markDraining()
	case frames.CapsuleDatagram:
		// HTTP datagrams may also travel as capsules (RFC 9297, Section 3.5).
		s.pushDatagram(append([]byte(nil), cp.Value...))
	default:
		// Flow-control capsules: WebTransport flow control is not enabled
		// on our connections (we send no initial limits), so they are
		// ignored (draft-ietf-webtrans-http3, Section 5). Validate them.
		if _, err := frames.ParseVarintCapsule(cp.Type, cp.Value); err != nil {
			s.resetConnect(frames.CodeOf(err), err)
		}
	}
	return false
}

// endedByPeer ends the session the peer closed and answers with FIN. A
// server session still waiting for its handler is answered by the handler
// path instead (the rejection, or Upgrade, which then finds the session
// ended), so that the FIN never races the response.
func (s *Session) endedByPeer(e *SessionError) {
	pending := s.state.CompareAndSwap(sessionPending, sessionClosed)
	s.terminate(e, false)
	if !pending {
		s.writeMu.Lock()
		_ = s.str.Close()
		s.writeMu.Unlock()
	}
}

// connectStreamEnded ends the session when the CONNECT stream's receive
// side ends: a clean FIN is a close with code 0 unless WT_CLOSE_SESSION
// came first; a FIN inside a capsule is malformed (RFC 9297, Section 3.3).
func (s *Session) connectStreamEnded(err error, p *frames.CapsuleParser, gotClose bool) {
	if gotClose {
		if err != nil && err != io.EOF {
			// We stop reading after the close timeout.
			s.str.CancelRead(quic.StreamErrorCode(frames.WTSessionGone))
		}
		return
	}
	switch {
	case err == io.EOF:
		if perr := p.End(); perr != nil {
			s.resetConnect(frames.CodeOf(perr), perr)
			return
		}
		// Clean end without a capsule: code 0, empty message. Reply with FIN.
		s.endedByPeer(&SessionError{Remote: true})
	default:
		if fe, ok := errors.AsType[*frames.Error](err); ok {
			if fe.Connection {
				s.c.fail(err)
				return
			}
			s.resetConnect(fe.Code, err)
			return
		}
		if s.isDone() {
			// Our own close: stop reading now the deadline passed.
			s.str.CancelRead(quic.StreamErrorCode(frames.WTSessionGone))
			return
		}
		terr := translateStreamErr(err)
		if _, ok := errors.AsType[*StreamError](terr); ok {
			// The peer reset the CONNECT stream: an abrupt end.
			s.terminate(&SessionError{Remote: true, Cause: terr}, true)
			return
		}
		if s.c.isClosed() {
			s.terminate(&SessionError{Cause: s.c.closeErr}, false)
			return
		}
		s.terminate(&SessionError{Cause: terr}, true)
	}
}
