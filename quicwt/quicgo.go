package quicwt

import (
	"context"
	"crypto/tls"
	"net"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/qlogwriter"
)

// This file is the one place that holds quic-go's connection and stream
// types: the rest of the package works on the small interfaces below, which
// quic-go's streams satisfy directly and a test harness can fake to drive
// the connection state machine without real QUIC (it still uses quic-go's
// error and code types).

type receiveStream interface {
	StreamID() quic.StreamID
	Read(p []byte) (int, error)
	Peek(p []byte) (int, error)
	CancelRead(quic.StreamErrorCode)
	SetReceiveFinalSizeCallback(func(int64))
	SetReadDeadline(time.Time) error
}

type sendStream interface {
	StreamID() quic.StreamID
	Write(p []byte) (int, error)
	TryWriteAll(p []byte) error
	Close() error
	CancelWrite(quic.StreamErrorCode)
	SetReliableBoundary()
	// SetPriority is quic-go's RFC 9218 urgency (0-7) and incremental.
	SetPriority(urgency int8, incremental bool)
	SetWriteDeadline(time.Time) error
	// Context is canceled when the send side ends: our Close or
	// CancelWrite, the peer's STOP_SENDING, or the connection's end.
	Context() context.Context
}

type bidiStream interface {
	receiveStream
	sendStream
	SetDeadline(time.Time) error
}

// qconn is what the state machine needs of a QUIC connection.
type qconn interface {
	AcceptStream(context.Context) (bidiStream, error)
	AcceptUniStream(context.Context) (receiveStream, error)
	OpenStream() (bidiStream, error)
	OpenStreamSync(context.Context) (bidiStream, error)
	OpenUniStream() (sendStream, error)
	OpenUniStreamSync(context.Context) (sendStream, error)
	SendDatagram([]byte) error
	ReceiveDatagram(context.Context) ([]byte, error)
	CloseWithError(quic.ApplicationErrorCode, string) error
	Context() context.Context
	// HandshakeComplete is closed when the QUIC handshake has completed
	// (at once for a connection from a non-early listener or a dial).
	HandshakeComplete() <-chan struct{}
	// PeerTransportParameters reports the peer's max_datagram_frame_size
	// (RFC 9221) and reset_stream_at (draft-ietf-quic-reliable-stream-reset)
	// transport parameters, known once the connection is accepted or
	// dialed.
	PeerTransportParameters() (datagrams, resetStreamAt bool)
	// TLS returns the TLS state (complete after the handshake).
	TLS() *tls.ConnectionState
	// QlogTrace returns the connection's qlog trace (quic.Config.Tracer),
	// or nil.
	QlogTrace() qlogwriter.Trace
	LocalAddr() net.Addr
	RemoteAddr() net.Addr
	// SmoothedRTT is the connection's RTT estimate (RFC 9002, Section 5.3).
	SmoothedRTT() time.Duration
}

type quicGoConn struct{ c *quic.Conn }

func wrapConn(c *quic.Conn) qconn { return quicGoConn{c} }

func (q quicGoConn) AcceptStream(ctx context.Context) (bidiStream, error) {
	s, err := q.c.AcceptStream(ctx)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (q quicGoConn) AcceptUniStream(ctx context.Context) (receiveStream, error) {
	s, err := q.c.AcceptUniStream(ctx)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (q quicGoConn) OpenStream() (bidiStream, error) {
	s, err := q.c.OpenStream()
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (q quicGoConn) OpenStreamSync(ctx context.Context) (bidiStream, error) {
	s, err := q.c.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (q quicGoConn) OpenUniStream() (sendStream, error) {
	s, err := q.c.OpenUniStream()
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (q quicGoConn) OpenUniStreamSync(ctx context.Context) (sendStream, error) {
	s, err := q.c.OpenUniStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (q quicGoConn) SendDatagram(b []byte) error { return q.c.SendDatagram(b) }
func (q quicGoConn) ReceiveDatagram(ctx context.Context) ([]byte, error) {
	return q.c.ReceiveDatagram(ctx)
}
func (q quicGoConn) CloseWithError(code quic.ApplicationErrorCode, msg string) error {
	return q.c.CloseWithError(code, msg)
}
func (q quicGoConn) Context() context.Context { return q.c.Context() }
func (q quicGoConn) HandshakeComplete() <-chan struct{} {
	return q.c.HandshakeComplete()
}
func (q quicGoConn) PeerTransportParameters() (datagrams, resetStreamAt bool) {
	st := q.c.ConnectionState()
	return st.SupportsDatagrams.Remote, st.SupportsStreamResetPartialDelivery.Remote
}
func (q quicGoConn) TLS() *tls.ConnectionState {
	st := q.c.ConnectionState().TLS
	return &st
}
func (q quicGoConn) QlogTrace() qlogwriter.Trace { return q.c.QlogTrace() }
func (q quicGoConn) LocalAddr() net.Addr         { return q.c.LocalAddr() }
func (q quicGoConn) RemoteAddr() net.Addr        { return q.c.RemoteAddr() }
func (q quicGoConn) SmoothedRTT() time.Duration {
	return q.c.ConnectionStats().SmoothedRTT
}

// ConfigureQUICConfig returns a copy of base (or a new config if nil) with what
// WebTransport needs: datagrams (RFC 9221) and RESET_STREAM_AT
// (draft-ietf-quic-reliable-stream-reset), and, unless base sets them, 200
// incoming streams of each kind: room for the HTTP/3 critical streams and
// for more than one session's WebTransport stream credit
// (Limits.InitialSessionMaxStreamsBidi and Uni, 100 each by default), so
// that no session can hold all of the connection's streams.
func ConfigureQUICConfig(base *quic.Config) *quic.Config {
	var c *quic.Config
	if base != nil {
		c = base.Clone()
	} else {
		c = &quic.Config{}
	}
	c.EnableDatagrams = true
	c.EnableStreamResetPartialDelivery = true
	if c.MaxIncomingUniStreams == 0 {
		c.MaxIncomingUniStreams = 200
	}
	if c.MaxIncomingStreams == 0 {
		c.MaxIncomingStreams = 200
	}
	return c
}

// NextProtoH3 is the ALPN token of HTTP/3 (RFC 9114, Section 3.1).
const NextProtoH3 = "h3"

// ConfigureTLSConfig returns a copy of base with ALPN set to h3 only, as HTTP/3
// requires.
func ConfigureTLSConfig(base *tls.Config) *tls.Config {
	var c *tls.Config
	if base != nil {
		c = base.Clone()
	} else {
		c = &tls.Config{}
	}
	c.NextProtos = []string{NextProtoH3}
	if c.MinVersion < tls.VersionTLS13 {
		c.MinVersion = tls.VersionTLS13
	}
	return c
}
