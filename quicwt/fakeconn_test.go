package quicwt

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/qlogwriter"
)

// fakeConn is an in-memory qconn for driving the connection state machine
// without QUIC: the peer's streams and datagrams are given up front.
type fakeConn struct {
	ctx    context.Context
	cancel context.CancelCauseFunc

	bidi  chan bidiStream
	uni   chan receiveStream
	dgram chan []byte

	mu      sync.Mutex
	codes   []quic.ApplicationErrorCode // CONNECTION_CLOSE codes sent
	resets  []quic.StreamErrorCode      // stream error codes sent
	nextID  quic.StreamID
	pending sync.WaitGroup // peer streams not yet finished by the engine
	peer    []*fakeStream
}

func newFakeConn() *fakeConn {
	f := &fakeConn{bidi: make(chan bidiStream, 64), uni: make(chan receiveStream, 64), dgram: make(chan []byte, 64), nextID: 1}
	f.ctx, f.cancel = context.WithCancelCause(context.Background())
	return f
}

func (f *fakeConn) addPeer(id quic.StreamID, data []byte) *fakeStream {
	s := &fakeStream{f: f, id: id, r: bytes.NewReader(data)}
	f.pending.Add(1)
	f.mu.Lock()
	f.peer = append(f.peer, s)
	f.mu.Unlock()
	return s
}

func (f *fakeConn) addBidi(id quic.StreamID, data []byte) { f.bidi <- f.addPeer(id, data) }
func (f *fakeConn) addUni(id quic.StreamID, data []byte)  { f.uni <- f.addPeer(id, data) }

// finishAll marks every peer stream finished, for the end of a run.
func (f *fakeConn) finishAll() {
	f.mu.Lock()
	peer := f.peer
	f.mu.Unlock()
	for _, s := range peer {
		s.finish()
	}
}

func (f *fakeConn) AcceptStream(ctx context.Context) (bidiStream, error) {
	select {
	case s := <-f.bidi:
		return s, nil
	case <-f.ctx.Done():
		return nil, context.Cause(f.ctx)
	}
}

func (f *fakeConn) AcceptUniStream(ctx context.Context) (receiveStream, error) {
	select {
	case s := <-f.uni:
		return s, nil
	case <-f.ctx.Done():
		return nil, context.Cause(f.ctx)
	}
}

func (f *fakeConn) newLocal() *fakeStream {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID += 4
	return &fakeStream{f: f, id: f.nextID, r: bytes.NewReader(nil), local: true}
}

func (f *fakeConn) OpenStream() (bidiStream, error) {
	if f.ctx.Err() != nil {
		return nil, context.Cause(f.ctx)
	}
	return f.newLocal(), nil
}
func (f *fakeConn) OpenStreamSync(context.Context) (bidiStream, error) { return f.OpenStream() }
func (f *fakeConn) OpenUniStream() (sendStream, error) {
	if f.ctx.Err() != nil {
		return nil, context.Cause(f.ctx)
	}
	return f.newLocal(), nil
}
func (f *fakeConn) OpenUniStreamSync(context.Context) (sendStream, error) { return f.OpenUniStream() }
func (f *fakeConn) SendDatagram(b []byte) error {
	if len(b) > 1200 {
		return &quic.DatagramTooLargeError{MaxDatagramPayloadSize: 1200}
	}
	return nil
}
func (f *fakeConn) ReceiveDatagram(ctx context.Context) ([]byte, error) {
	select {
	case d := <-f.dgram:
		return d, nil
	case <-f.ctx.Done():
		return nil, context.Cause(f.ctx)
	}
}
func (f *fakeConn) CloseWithError(code quic.ApplicationErrorCode, msg string) error {
	f.mu.Lock()
	f.codes = append(f.codes, code)
	f.mu.Unlock()
	f.cancel(&quic.ApplicationError{ErrorCode: code, ErrorMessage: msg})
	return nil
}
func (f *fakeConn) Context() context.Context              { return f.ctx }
func (f *fakeConn) PeerTransportParameters() (bool, bool) { return true, true }
func (f *fakeConn) QlogTrace() qlogwriter.Trace           { return nil }
func (f *fakeConn) TLS() *tls.ConnectionState             { return &tls.ConnectionState{} }
func (f *fakeConn) LocalAddr() net.Addr                   { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 443} }
func (f *fakeConn) RemoteAddr() net.Addr {
	return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000}
}
func (f *fakeConn) SmoothedRTT() time.Duration { return time.Millisecond }

func (f *fakeConn) peerClose(err error) { f.cancel(err) }

// HandshakeComplete: a fake connection's handshake is always complete.
func (f *fakeConn) HandshakeComplete() <-chan struct{} { return closedChan }

func (f *fakeConn) recordReset(c quic.StreamErrorCode) {
	f.mu.Lock()
	f.resets = append(f.resets, c)
	f.mu.Unlock()
}

// fakeStream reads the peer's bytes, then FIN; writes are discarded.
type fakeStream struct {
	f     *fakeConn
	id    quic.StreamID
	local bool

	mu       sync.Mutex
	r        *bytes.Reader
	finished bool
	canceled bool
}

func (s *fakeStream) finish() {
	s.mu.Lock()
	done := s.finished
	s.finished = true
	s.mu.Unlock()
	if !done && !s.local {
		s.f.pending.Done()
	}
}

func (s *fakeStream) StreamID() quic.StreamID { return s.id }
func (s *fakeStream) Read(p []byte) (int, error) {
	s.mu.Lock()
	if s.canceled {
		s.mu.Unlock()
		return 0, &quic.StreamError{StreamID: s.id, ErrorCode: 0, Remote: false}
	}
	n, err := s.r.Read(p)
	s.mu.Unlock()
	if err == io.EOF {
		if s.local {
			// Our own streams: the peer never answers; block until closed.
			<-s.f.ctx.Done()
			return 0, context.Cause(s.f.ctx)
		}
		s.finish()
	}
	return n, err
}
func (s *fakeStream) Peek(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.canceled {
		return 0, &quic.StreamError{StreamID: s.id, ErrorCode: 0, Remote: false}
	}
	return s.r.ReadAt(p, s.r.Size()-int64(s.r.Len()))
}
func (s *fakeStream) SetReceiveFinalSizeCallback(f func(int64)) {
	if f != nil && !s.local {
		f(s.r.Size()) // the peer's bytes are all there, FIN included
	}
}
func (s *fakeStream) Context() context.Context { return s.f.ctx }
func (s *fakeStream) CancelRead(c quic.StreamErrorCode) {
	s.f.recordReset(c)
	s.mu.Lock()
	s.canceled = true
	s.mu.Unlock()
	s.finish()
}
func (s *fakeStream) SetReadDeadline(time.Time) error  { return nil }
func (s *fakeStream) SetWriteDeadline(time.Time) error { return nil }
func (s *fakeStream) SetDeadline(time.Time) error      { return nil }
func (s *fakeStream) Write(p []byte) (int, error) {
	if s.f.ctx.Err() != nil {
		return 0, context.Cause(s.f.ctx)
	}
	return len(p), nil
}
func (s *fakeStream) TryWriteAll(p []byte) error         { _, err := s.Write(p); return err }
func (s *fakeStream) Close() error                       { return nil }
func (s *fakeStream) CancelWrite(c quic.StreamErrorCode) { s.f.recordReset(c) }
func (s *fakeStream) SetReliableBoundary()               {}
func (s *fakeStream) SetPriority(int8, bool)             {}

var errFakeDone = errors.New("fake peer done")
