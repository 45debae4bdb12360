package quicwt

import (
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicwt/quicwt/frames"
)

// Streams are thin wrappers: after the WebTransport stream header, reads
// and writes go straight to the quic-go stream. The wrapper translates
// errors (application codes back from the HTTP/3 space, WT_SESSION_GONE),
// tells the session when both directions are finished so that it stops
// tracking the stream, and, with flow control, counts the bytes against the
// session's credit (flow.go).

const (
	doneRead  uint32 = 1
	doneWrite uint32 = 2
)

// streamState tracks which directions of a stream are finished.
type streamState struct {
	sess *Session
	id   quic.StreamID
	done atomic.Uint32
	all  uint32
	t    tracked // the wrapper, reset when the session ends

	// The session's list of open streams, guarded by sess.mu.
	prev, next *streamState
	linked     bool

	// Flow control (flow.go), for sessions that have it.
	incoming bool         // the peer opened it: its close gives stream credit back
	wdl      atomic.Int64 // write deadline (Unix nanoseconds), 0 for none
	rf       *recvFlow    // the receive side's accounting; nil for a stream that only sends
}

// recvFlow accounts for the peer's direction of a stream in a session with
// flow control, from the moment the stream reaches the session (accepted
// or not).
type recvFlow struct {
	sess    *Session
	peerHdr uint8 // header bytes in the peer's direction (not counted)

	mu       sync.Mutex
	final    int64  // the peer's final size, -1 while unknown
	readN    uint64 // body bytes read
	finished bool   // the read side is finished (EOF, error, CancelRead)
	// unread: body bytes the peer has sent (the final size says so) but
	// nobody read, counted in the session's pending bytes.
	unread    uint64
	accounted bool // the unread bytes were consumed at the read side's end
}

// initRecvFlow starts the accounting of rs, whose header in the peer's
// direction is peerHdr bytes long.
func (s *Session) initRecvFlow(rf *recvFlow, rs receiveStream, peerHdr uint8) {
	*rf = recvFlow{sess: s, peerHdr: peerHdr, final: -1}
	rs.SetReceiveFinalSizeCallback(rf.finalSize)
}

// flowStream and flowReceiveStream are the wrappers of streams in a session
// with flow control: the receive accounting in the same allocation.
type flowStream struct {
	Stream
	rf recvFlow
}

type flowReceiveStream struct {
	ReceiveStream
	rf recvFlow
}

// finalSize learns how much the peer sent on the stream, read or not: the
// unread part counts against the session's limit at once, so a peer that
// sent past it is caught without waiting for the application to read
// (draft-ietf-webtrans-http3-16, Section 5.4).
func (rf *recvFlow) finalSize(size int64) {
	f := rf.sess.flowState()
	rf.mu.Lock()
	rf.final = size
	if body := size - int64(rf.peerHdr); body > int64(rf.readN) {
		rf.unread = uint64(body) - rf.readN
		f.recvPending.Add(rf.unread)
	}
	finished := rf.finished
	rf.mu.Unlock()
	// Called from quic-go's event loop, which must not block: the rare
	// follow-up (a violation, or a stream finished unread) runs apart.
	if finished || f.overLimit() {
		go func() {
			if finished {
				rf.accountUnread()
			}
			rf.sess.checkPending()
		}()
	}
}

// read counts n bytes read.
func (rf *recvFlow) read(n int) {
	rf.mu.Lock()
	rf.readN += uint64(n)
	if rf.unread > 0 {
		d := min(uint64(n), rf.unread)
		rf.unread -= d
		rf.sess.flowState().recvPending.Add(^(d - 1))
	}
	rf.mu.Unlock()
	rf.sess.consumed(uint64(n))
}

// finish marks the read side finished and consumes what was never read.
func (rf *recvFlow) finish() {
	rf.mu.Lock()
	rf.finished = true
	rf.mu.Unlock()
	rf.accountUnread()
}

// accountUnread consumes the bytes of a finished receive side that were
// never read, once its final size is known.
func (rf *recvFlow) accountUnread() {
	rf.mu.Lock()
	if rf.final < 0 || rf.accounted || !rf.finished {
		rf.mu.Unlock()
		return
	}
	rf.accounted = true
	x := rf.unread
	rf.unread = 0
	rf.mu.Unlock()
	if x > 0 {
		rf.sess.flowState().recvPending.Add(^(x - 1))
		rf.sess.consumed(x)
	}
}

func (st *streamState) finish(bit uint32) {
	for {
		old := st.done.Load()
		if old&bit != 0 {
			return
		}
		if st.done.CompareAndSwap(old, old|bit) {
			flow := st.sess.flowOn
			if st.rf != nil && bit == doneRead {
				st.rf.finish()
			}
			if old|bit == st.all {
				st.sess.untrack(st)
				if flow && st.incoming {
					k := kindBidi
					if st.all == doneRead {
						k = kindUni
					}
					st.sess.streamClosed(k)
				}
			}
			return
		}
	}
}

// readErr finishes the read side on any error and translates it.
func (st *streamState) readErr(err error) error {
	st.finish(doneRead)
	if err == io.EOF {
		return err
	}
	return st.translate(err)
}

func (st *streamState) writeErr(err error) error {
	st.finish(doneWrite)
	return st.translate(err)
}

// readDone and writeDone pass a quic-go Read's or Write's result through,
// translating an error (so that each wrapper's Read and Write is one call).
func (st *streamState) readDone(n int, err error) (int, error) {
	if st.rf != nil && n > 0 {
		st.rf.read(n)
	}
	if err != nil {
		err = st.readErr(err)
	}
	return n, err
}

func (st *streamState) writeDone(n int, err error) (int, error) {
	if err != nil {
		err = st.writeErr(err)
	}
	return n, err
}

// write writes p, within the session's data credit when it has flow
// control: each piece waits for credit (WT_DATA_BLOCKED is sent), honouring
// the write deadline.
func (st *streamState) write(w io.Writer, p []byte) (int, error) {
	if !st.sess.flowOn {
		return st.writeDone(w.Write(p))
	}
	total := 0
	for len(p) > 0 {
		k, err := st.sess.reserveData(len(p), st)
		if err != nil {
			if err == errDeadline {
				return total, err
			}
			return total, st.writeErr(err)
		}
		n, err := w.Write(p[:k])
		total += n
		st.sess.unreserveData(k - n)
		if err != nil {
			return total, st.writeErr(err)
		}
		p = p[k:]
	}
	return total, nil
}

// tryWrite is TryWrite: all of p within the credit, or nothing.
func (st *streamState) tryWrite(w sendStream, p []byte) (bool, error) {
	if st.sess.flowOn {
		if !st.sess.tryReserveData(len(p)) {
			return false, nil
		}
		ok, err := st.tryWriteDone(w.TryWriteAll(p))
		if !ok {
			st.sess.unreserveData(len(p))
		}
		return ok, err
	}
	return st.tryWriteDone(w.TryWriteAll(p))
}

func (st *streamState) writeDeadline() time.Time {
	if ns := st.wdl.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// setWriteDeadline records the deadline for writes waiting for session
// credit, and wakes them to look at it.
func (st *streamState) setWriteDeadline(t time.Time) {
	if !st.sess.flowOn {
		return
	}
	var ns int64
	if !t.IsZero() {
		ns = t.UnixNano()
	}
	st.wdl.Store(ns)
	st.sess.flowState().wake()
}

// tryWriteDone turns TryWriteAll's result into TryWrite's.
func (st *streamState) tryWriteDone(err error) (bool, error) {
	if err == quic.ErrWouldBlock {
		return false, nil
	}
	if err != nil {
		return false, st.writeErr(err)
	}
	return true, nil
}

// translate returns the session's end for streams reset because of it,
// and a *StreamError otherwise.
func (st *streamState) translate(err error) error {
	terr := translateStreamErr(err)
	if se, ok := terr.(*StreamError); ok && !se.Remote && se.H3Code == frames.WTSessionGone {
		if serr := st.sess.Err(); serr != nil {
			return serr
		}
	}
	return terr
}

func h3Code(code StreamErrorCode) quic.StreamErrorCode {
	return quic.StreamErrorCode(frames.WTErrorToH3(uint32(code)))
}

// Stream is a bidirectional WebTransport stream.
type Stream struct {
	str bidiStream
	st  streamState
}

// newStream wraps a bidirectional stream: one we opened, or one the peer
// opened (incoming), whose wrapper and accounting the session made when it
// arrived (pre, rf) if the session has flow control.
func (s *Session) newStream(qs bidiStream, incoming bool, pre *Stream, rf *recvFlow) *Stream {
	str := pre
	switch {
	case str != nil:
	case s.flowOn:
		fs := &flowStream{}
		s.initRecvFlow(&fs.rf, qs, 0) // the peer's direction has no header
		str, rf = &fs.Stream, &fs.rf
	default:
		str = &Stream{}
	}
	str.str = qs
	str.st = streamState{sess: s, id: qs.StreamID(), all: doneRead | doneWrite, t: str, incoming: incoming, rf: rf}
	if !s.track(&str.st) {
		str.cancel(frames.WTSessionGone)
	}
	return str
}

func (s *Stream) cancel(code ErrorCode) {
	s.str.CancelRead(quic.StreamErrorCode(code))
	s.str.CancelWrite(quic.StreamErrorCode(code))
}

// StreamID returns the QUIC stream ID.
func (s *Stream) StreamID() StreamID { return StreamID(s.st.id) }

// Read reads stream data (io.Reader).
func (s *Stream) Read(p []byte) (int, error) { return s.st.readDone(s.str.Read(p)) }

// Write writes stream data (io.Writer). With flow control, it waits for the
// session's data credit as well as the stream's.
func (s *Stream) Write(p []byte) (int, error) { return s.st.write(s.str, p) }

// TryWrite queues all of p if the stream's flow control (and the session's)
// and buffers allow it at once, without blocking; otherwise it writes
// nothing and returns false. Useful for broadcasts that must never wait for
// one slow peer.
func (s *Stream) TryWrite(p []byte) (bool, error) { return s.st.tryWrite(s.str, p) }

// Close ends the write side cleanly (FIN).
func (s *Stream) Close() error {
	s.st.finish(doneWrite)
	return s.str.Close()
}

// CancelRead asks the peer to stop sending (STOP_SENDING) with a 32-bit
// application error code.
func (s *Stream) CancelRead(code StreamErrorCode) {
	s.str.CancelRead(h3Code(code))
	s.st.finish(doneRead)
}

// CancelWrite resets the write side with a 32-bit application error code,
// using RESET_STREAM_AT so that the stream header stays delivered.
func (s *Stream) CancelWrite(code StreamErrorCode) {
	s.str.CancelWrite(h3Code(code))
	s.st.finish(doneWrite)
}

// SetDeadline, SetReadDeadline and SetWriteDeadline set I/O deadlines.
func (s *Stream) SetDeadline(t time.Time) error {
	s.st.setWriteDeadline(t)
	return s.str.SetDeadline(t)
}
func (s *Stream) SetReadDeadline(t time.Time) error { return s.str.SetReadDeadline(t) }
func (s *Stream) SetWriteDeadline(t time.Time) error {
	s.st.setWriteDeadline(t)
	return s.str.SetWriteDeadline(t)
}

// Session returns the stream's session.
func (s *Stream) Session() *Session { return s.st.sess }

// SendStream is a unidirectional WebTransport stream we opened.
type SendStream struct {
	str sendStream
	st  streamState
}

func (s *Session) newSendStream(qs sendStream) *SendStream {
	str := &SendStream{str: qs}
	str.st = streamState{sess: s, id: qs.StreamID(), all: doneWrite, t: str}
	if !s.track(&str.st) {
		str.cancel(frames.WTSessionGone)
	}
	return str
}

func (s *SendStream) cancel(code ErrorCode) { s.str.CancelWrite(quic.StreamErrorCode(code)) }

// StreamID returns the QUIC stream ID.
func (s *SendStream) StreamID() StreamID { return StreamID(s.st.id) }

// Write writes stream data.
func (s *SendStream) Write(p []byte) (int, error) { return s.st.write(s.str, p) }

// TryWrite is Stream.TryWrite for a unidirectional stream.
func (s *SendStream) TryWrite(p []byte) (bool, error) { return s.st.tryWrite(s.str, p) }

// Close ends the stream cleanly (FIN).
func (s *SendStream) Close() error {
	s.st.finish(doneWrite)
	return s.str.Close()
}

// CancelWrite resets the stream with a 32-bit application error code.
func (s *SendStream) CancelWrite(code StreamErrorCode) {
	s.str.CancelWrite(h3Code(code))
	s.st.finish(doneWrite)
}

// SetWriteDeadline sets the write deadline.
func (s *SendStream) SetWriteDeadline(t time.Time) error {
	s.st.setWriteDeadline(t)
	return s.str.SetWriteDeadline(t)
}

// Session returns the stream's session.
func (s *SendStream) Session() *Session { return s.st.sess }

// ReceiveStream is a unidirectional WebTransport stream the peer opened.
type ReceiveStream struct {
	str receiveStream
	st  streamState
}

func (s *Session) newReceiveStream(qs receiveStream, pre *ReceiveStream, rf *recvFlow) *ReceiveStream {
	str := pre
	if str == nil {
		str = &ReceiveStream{}
	}
	str.str = qs
	str.st = streamState{sess: s, id: qs.StreamID(), all: doneRead, t: str, incoming: true, rf: rf}
	if !s.track(&str.st) {
		str.cancel(frames.WTSessionGone)
	}
	return str
}

func (s *ReceiveStream) cancel(code ErrorCode) { s.str.CancelRead(quic.StreamErrorCode(code)) }

// StreamID returns the QUIC stream ID.
func (s *ReceiveStream) StreamID() StreamID { return StreamID(s.st.id) }

// Read reads stream data.
func (s *ReceiveStream) Read(p []byte) (int, error) { return s.st.readDone(s.str.Read(p)) }

// CancelRead asks the peer to stop sending with a 32-bit application code.
func (s *ReceiveStream) CancelRead(code StreamErrorCode) {
	s.str.CancelRead(h3Code(code))
	s.st.finish(doneRead)
}

// SetReadDeadline sets the read deadline.
func (s *ReceiveStream) SetReadDeadline(t time.Time) error { return s.str.SetReadDeadline(t) }

// Session returns the stream's session.
func (s *ReceiveStream) Session() *Session { return s.st.sess }
