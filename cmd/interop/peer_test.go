package interop_test

// A common view of a WebTransport session over quicwt and webtransport-go,
// so that each scenario runs with either library on either side.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	webtransport "github.com/quic-go/webtransport-go"

	"github.com/quicwt/quicwt/quicwt"
)

// PeerStream is a bidirectional stream of either library.
type PeerStream interface {
	io.ReadWriteCloser
	CancelWrite(code uint32)
	CancelRead(code uint32)
	SetDeadline(time.Time) error
}

// PeerSendStream is a unidirectional stream we opened.
type PeerSendStream interface {
	io.WriteCloser
	CancelWrite(code uint32)
	SetWriteDeadline(time.Time) error
}

// PeerRecvStream is a unidirectional stream the peer opened.
type PeerRecvStream interface {
	io.Reader
	CancelRead(code uint32)
	SetReadDeadline(time.Time) error
}

// CloseInfo is how a session ended as seen by one side.
type CloseInfo struct {
	Code    uint32
	Message string
	Remote  bool
}

// PeerSession is a session of either library.
type PeerSession interface {
	Lib() string
	OpenStream(ctx context.Context) (PeerStream, error)
	AcceptStream(ctx context.Context) (PeerStream, error)
	OpenUniStream(ctx context.Context) (PeerSendStream, error)
	AcceptUniStream(ctx context.Context) (PeerRecvStream, error)
	SendDatagram(p []byte) error
	ReceiveDatagram(ctx context.Context) ([]byte, error)
	CloseWithError(code uint32, msg string) error
	Done() <-chan struct{}
	// Closed returns how the session ended; call after Done.
	Closed() (CloseInfo, error)
	// StreamCode extracts the application code of a stream reset or
	// STOP_SENDING from an error of this library's streams.
	StreamCode(err error) (code uint32, remote bool, ok bool)
}

const (
	libQuicwt = "quicwt"
	libWTGo   = "webtransport-go"
)

// ---- quicwt ----

type quicwtSession struct{ s *quicwt.Session }

func (q quicwtSession) Lib() string { return libQuicwt }

func (q quicwtSession) OpenStream(ctx context.Context) (PeerStream, error) {
	s, err := q.s.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	return quicwtStream{s}, nil
}

func (q quicwtSession) AcceptStream(ctx context.Context) (PeerStream, error) {
	s, err := q.s.AcceptStream(ctx)
	if err != nil {
		return nil, err
	}
	return quicwtStream{s}, nil
}

func (q quicwtSession) OpenUniStream(ctx context.Context) (PeerSendStream, error) {
	s, err := q.s.OpenUniStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	return quicwtSendStream{s}, nil
}

func (q quicwtSession) AcceptUniStream(ctx context.Context) (PeerRecvStream, error) {
	s, err := q.s.AcceptUniStream(ctx)
	if err != nil {
		return nil, err
	}
	return quicwtRecvStream{s}, nil
}

func (q quicwtSession) SendDatagram(p []byte) error { return q.s.SendDatagram(p) }

func (q quicwtSession) ReceiveDatagram(ctx context.Context) ([]byte, error) {
	return q.s.ReceiveDatagram(ctx)
}

func (q quicwtSession) CloseWithError(code uint32, msg string) error {
	return q.s.CloseWithError(quicwt.SessionErrorCode(code), msg)
}

func (q quicwtSession) Done() <-chan struct{} { return q.s.Context().Done() }

func (q quicwtSession) Closed() (CloseInfo, error) {
	var se *quicwt.SessionError
	if !errors.As(q.s.Err(), &se) {
		return CloseInfo{}, fmt.Errorf("quicwt Session.Err() = %v (%T), want *quicwt.SessionError", q.s.Err(), q.s.Err())
	}
	if se.Cause != nil {
		return CloseInfo{}, fmt.Errorf("quicwt session ended abruptly: %w", se)
	}
	return CloseInfo{Code: uint32(se.Code), Message: se.Message, Remote: se.Remote}, nil
}

func (q quicwtSession) StreamCode(err error) (uint32, bool, bool) {
	var se *quicwt.StreamError
	if errors.As(err, &se) && se.Application {
		return uint32(se.Code), se.Remote, true
	}
	return 0, false, false
}

type quicwtStream struct{ *quicwt.Stream }

func (s quicwtStream) CancelWrite(code uint32) { s.Stream.CancelWrite(quicwt.StreamErrorCode(code)) }
func (s quicwtStream) CancelRead(code uint32)  { s.Stream.CancelRead(quicwt.StreamErrorCode(code)) }

type quicwtSendStream struct{ *quicwt.SendStream }

func (s quicwtSendStream) CancelWrite(code uint32) {
	s.SendStream.CancelWrite(quicwt.StreamErrorCode(code))
}

type quicwtRecvStream struct{ *quicwt.ReceiveStream }

func (s quicwtRecvStream) CancelRead(code uint32) {
	s.ReceiveStream.CancelRead(quicwt.StreamErrorCode(code))
}

// ---- webtransport-go ----

type wtgoSession struct{ s *webtransport.Session }

func (w wtgoSession) Lib() string { return libWTGo }

func (w wtgoSession) OpenStream(ctx context.Context) (PeerStream, error) {
	s, err := w.s.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	return wtgoStream{s}, nil
}

func (w wtgoSession) AcceptStream(ctx context.Context) (PeerStream, error) {
	s, err := w.s.AcceptStream(ctx)
	if err != nil {
		return nil, err
	}
	return wtgoStream{s}, nil
}

func (w wtgoSession) OpenUniStream(ctx context.Context) (PeerSendStream, error) {
	s, err := w.s.OpenUniStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	return wtgoSendStream{s}, nil
}

func (w wtgoSession) AcceptUniStream(ctx context.Context) (PeerRecvStream, error) {
	s, err := w.s.AcceptUniStream(ctx)
	if err != nil {
		return nil, err
	}
	return wtgoRecvStream{s}, nil
}

func (w wtgoSession) SendDatagram(p []byte) error { return w.s.SendDatagram(p) }

func (w wtgoSession) ReceiveDatagram(ctx context.Context) ([]byte, error) {
	return w.s.ReceiveDatagram(ctx)
}

func (w wtgoSession) CloseWithError(code uint32, msg string) error {
	return w.s.CloseWithError(webtransport.SessionErrorCode(code), msg)
}

func (w wtgoSession) Done() <-chan struct{} { return w.s.Context().Done() }

func (w wtgoSession) Closed() (CloseInfo, error) {
	// webtransport-go reports the end of a session through the errors of
	// its operations.
	_, err := w.s.AcceptStream(context.Background())
	var se *webtransport.SessionError
	if !errors.As(err, &se) {
		return CloseInfo{}, fmt.Errorf("webtransport-go AcceptStream after close = %v (%T), want *webtransport.SessionError", err, err)
	}
	return CloseInfo{Code: uint32(se.ErrorCode), Message: se.Message, Remote: se.Remote}, nil
}

func (w wtgoSession) StreamCode(err error) (uint32, bool, bool) {
	var se *webtransport.StreamError
	if errors.As(err, &se) {
		return uint32(se.ErrorCode), se.Remote, true
	}
	return 0, false, false
}

type wtgoStream struct{ *webtransport.Stream }

func (s wtgoStream) CancelWrite(code uint32) {
	s.Stream.CancelWrite(webtransport.StreamErrorCode(code))
}

func (s wtgoStream) CancelRead(code uint32) {
	s.Stream.CancelRead(webtransport.StreamErrorCode(code))
}

type wtgoSendStream struct{ *webtransport.SendStream }

func (s wtgoSendStream) CancelWrite(code uint32) {
	s.SendStream.CancelWrite(webtransport.StreamErrorCode(code))
}

type wtgoRecvStream struct{ *webtransport.ReceiveStream }

func (s wtgoRecvStream) CancelRead(code uint32) {
	s.ReceiveStream.CancelRead(webtransport.StreamErrorCode(code))
}
