package quicwt

import (
	"context"
	"errors"

	"github.com/quic-go/quic-go"

	"github.com/quicwt/quicwt/frames"
)

// A session's streams (draft-ietf-webtrans-http3, Section 4): the queues of
// streams the peer opened until the application accepts them, the streams
// the application opens (with their stream header), and the list of open
// streams that the session resets when it ends.

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

// tracked is a stream of the session to reset when the session ends.
type tracked interface{ cancel(code ErrorCode) }

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
	q, w, k := &sq.uniQ, sq.uniWait, kindUni
	if es.bidi != nil {
		q, w, k = &sq.bidiQ, sq.bidiWait, kindBidi
	}
	full := len(*q) >= s.lim.MaxIncomingStreamQueue
	if s.flowOn {
		// Counted against our stream limit (Section 5.6.2), in or out of
		// the queue.
		s.mu.Unlock()
		if !s.streamArrived(k) {
			es.reject(frames.WTSessionGone)
			return
		}
		if es.bidi != nil {
			fs := &flowStream{}
			s.initRecvFlow(&fs.rf, es.bidi, es.hdr)
			es.rf, es.sw = &fs.rf, &fs.Stream
		} else {
			fs := &flowReceiveStream{}
			s.initRecvFlow(&fs.rf, es.uni, es.hdr)
			es.rf, es.rw = &fs.rf, &fs.ReceiveStream
		}
		s.mu.Lock()
		if s.closeErr != nil {
			s.mu.Unlock()
			es.reject(frames.WTSessionGone)
			return
		}
		full = len(*q) >= s.lim.MaxIncomingStreamQueue
	}
	if full {
		s.mu.Unlock()
		es.reject(frames.WTBufferedStreamRejected)
		if s.flowOn {
			es.rf.finish() // what the peer sent on it is consumed
			s.streamClosed(k)
		}
		return
	}
	*q = append(*q, es)
	s.mu.Unlock()
	wake(w)
}

// popQueue takes the first stream of a queue, creating the waiter channel
// when the queue is empty. Called with s.mu held.
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
		sq := s.queuesLocked()
		q, wp := &sq.uniQ, &sq.uniWait
		if bidi {
			q, wp = &sq.bidiQ, &sq.bidiWait
		}
		es, ok := popQueue(q, wp)
		w := *wp
		if ok && len(*q) > 0 {
			wake(w)
		}
		s.mu.Unlock()
		if ok {
			return es, nil
		}
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
	return s.newStream(es.bidi, true, es.sw, es.rf), nil
}

// TryAcceptStream returns the next bidirectional stream if one is waiting,
// without blocking; ok is false when none is.
func (s *Session) TryAcceptStream() (str *Stream, ok bool) {
	es, err := s.accept(context.Background(), true, false)
	if err != nil {
		return nil, false
	}
	return s.newStream(es.bidi, true, es.sw, es.rf), true
}

// AcceptUniStream waits for the peer's next unidirectional stream.
func (s *Session) AcceptUniStream(ctx context.Context) (*ReceiveStream, error) {
	es, err := s.accept(ctx, false, true)
	if err != nil {
		return nil, err
	}
	return s.newReceiveStream(es.uni, es.rw, es.rf), nil
}

// TryAcceptUniStream returns the next unidirectional stream if one is
// waiting, without blocking.
func (s *Session) TryAcceptUniStream() (str *ReceiveStream, ok bool) {
	es, err := s.accept(context.Background(), false, false)
	if err != nil {
		return nil, false
	}
	return s.newReceiveStream(es.uni, es.rw, es.rf), true
}

// OpenStream opens a bidirectional stream without waiting. It fails with
// ErrStreamLimit when the session's stream credit (WT_MAX_STREAMS, with flow
// control) or the connection's QUIC stream limit is used up.
func (s *Session) OpenStream() (*Stream, error) {
	qs, err := s.openStreamOf(context.Background(), kindBidi, false)
	if err != nil {
		return nil, err
	}
	return s.initBidi(qs.(bidiStream))
}

// OpenStreamSync opens a bidirectional stream, waiting for the session's
// stream credit and the connection's stream limit if needed, until ctx ends
// or the session does.
func (s *Session) OpenStreamSync(ctx context.Context) (*Stream, error) {
	qs, err := s.openStreamOf(ctx, kindBidi, true)
	if err != nil {
		return nil, err
	}
	return s.initBidi(qs.(bidiStream))
}

// OpenUniStream opens a unidirectional stream without waiting (see
// OpenStream).
func (s *Session) OpenUniStream() (*SendStream, error) {
	qs, err := s.openStreamOf(context.Background(), kindUni, false)
	if err != nil {
		return nil, err
	}
	return s.initUni(qs)
}

// OpenUniStreamSync opens a unidirectional stream, waiting for credit and
// the stream limit if needed (see OpenStreamSync).
func (s *Session) OpenUniStreamSync(ctx context.Context) (*SendStream, error) {
	qs, err := s.openStreamOf(ctx, kindUni, true)
	if err != nil {
		return nil, err
	}
	return s.initUni(qs)
}

// openStreamOf opens a QUIC stream of kind k for the session: first the session's
// stream credit (flow.go), then the connection's stream. Most of the time
// the QUIC limit allows the stream at once: no merged context then.
func (s *Session) openStreamOf(ctx context.Context, k int, wait bool) (sendStream, error) {
	if err := s.openCheck(); err != nil {
		return nil, err
	}
	if s.flowOn {
		if err := s.takeStream(ctx, k, wait); err != nil {
			return nil, err
		}
	}
	qs, err := s.openQUIC(k)
	if err == nil {
		return qs, nil
	}
	if isStreamLimit(err) && wait {
		ctx, stop := s.mergeCtx(ctx)
		qs, err = s.openQUICSync(ctx, k)
		stop()
		if err == nil {
			return qs, nil
		}
	}
	if s.flowOn {
		s.untakeStream(k)
	}
	switch {
	case s.isDone():
		return nil, s.Err()
	case isStreamLimit(err):
		return nil, ErrStreamLimit
	}
	return nil, translateStreamErr(err)
}

func (s *Session) openQUIC(k int) (sendStream, error) {
	if k == kindUni {
		return s.c.openUniStream()
	}
	qs, err := s.c.openStream()
	if err != nil {
		return nil, err
	}
	return qs, nil
}

func (s *Session) openQUICSync(ctx context.Context, k int) (sendStream, error) {
	if k == kindUni {
		return s.c.openUniStreamSync(ctx)
	}
	qs, err := s.c.openStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	return qs, nil
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

// initBidi writes the WEBTRANSPORT_STREAM signal and session ID that open
// a bidirectional stream (Section 4.3).
func (s *Session) initBidi(qs bidiStream) (*Stream, error) {
	var hdr [10]byte
	if _, err := qs.Write(frames.AppendWebTransportBidiHeader(hdr[:0], s.id)); err != nil {
		qs.CancelRead(quic.StreamErrorCode(frames.WTSessionGone))
		return nil, translateStreamErr(err)
	}
	// RESET_STREAM_AT keeps the header reliable if the stream is reset.
	qs.SetReliableBoundary()
	return s.newStream(qs, false, nil, nil), nil
}

// initUni writes the stream type and session ID that open a
// unidirectional stream (Section 4.2).
func (s *Session) initUni(qs sendStream) (*SendStream, error) {
	var hdr [10]byte
	if _, err := qs.Write(frames.AppendWebTransportUniHeader(hdr[:0], s.id)); err != nil {
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
	s.ql.streamAssociated(s, uint64(st.id))
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
