package quicwt

import (
	"io"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicwt/quicwt/frames"
)

// Streams are thin wrappers: after the WebTransport stream header, reads
// and writes go straight to the quic-go stream. The wrapper translates
// errors (application codes back from the HTTP/3 space, WT_SESSION_GONE)
// and tells the session when both directions are finished so that it stops
// tracking the stream.

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
}

func (st *streamState) finish(bit uint32) {
	for {
		old := st.done.Load()
		if old&bit != 0 {
			return
		}
		if st.done.CompareAndSwap(old, old|bit) {
			if old|bit == st.all {
				st.sess.untrack(st)
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

func (s *Session) newStream(qs bidiStream) *Stream {
	str := &Stream{str: qs}
	str.st = streamState{sess: s, id: qs.StreamID(), all: doneRead | doneWrite, t: str}
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

// Write writes stream data (io.Writer).
func (s *Stream) Write(p []byte) (int, error) { return s.st.writeDone(s.str.Write(p)) }

// TryWrite queues all of p if the stream's flow control and buffers allow
// it at once, without blocking; otherwise it writes nothing and returns
// false. Useful for broadcasts that must never wait for one slow peer.
func (s *Stream) TryWrite(p []byte) (bool, error) { return s.st.tryWriteDone(s.str.TryWriteAll(p)) }

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
func (s *Stream) SetDeadline(t time.Time) error      { return s.str.SetDeadline(t) }
func (s *Stream) SetReadDeadline(t time.Time) error  { return s.str.SetReadDeadline(t) }
func (s *Stream) SetWriteDeadline(t time.Time) error { return s.str.SetWriteDeadline(t) }

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
func (s *SendStream) Write(p []byte) (int, error) { return s.st.writeDone(s.str.Write(p)) }

// TryWrite is Stream.TryWrite for a unidirectional stream.
func (s *SendStream) TryWrite(p []byte) (bool, error) { return s.st.tryWriteDone(s.str.TryWriteAll(p)) }

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
func (s *SendStream) SetWriteDeadline(t time.Time) error { return s.str.SetWriteDeadline(t) }

// Session returns the stream's session.
func (s *SendStream) Session() *Session { return s.st.sess }

// ReceiveStream is a unidirectional WebTransport stream the peer opened.
type ReceiveStream struct {
	str receiveStream
	st  streamState
}

func (s *Session) newReceiveStream(qs receiveStream) *ReceiveStream {
	str := &ReceiveStream{str: qs}
	str.st = streamState{sess: s, id: qs.StreamID(), all: doneRead, t: str}
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
