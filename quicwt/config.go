package quicwt

import (
	"log/slog"
	"time"
)

// Limits bound what a peer can make an endpoint hold. The zero value of
// each field means its default; a negative value means "none allowed"
// where that makes sense.
type Limits struct {
	// MaxSessions bounds the concurrent WebTransport sessions on one
	// connection (established or awaiting the handler). At a server,
	// further CONNECTs are reset with H3_REQUEST_REJECTED (the client sees
	// ErrRequestRejected); at a client, it bounds the sessions OpenSession
	// may open on one connection (ErrTooManySessions). Default 256.
	MaxSessions int
	// MaxFieldSectionSize bounds a header section (RFC 9114, Section
	// 4.2.2) wherever HEADERS appears, decoded (name + value + 32 per
	// field) and encoded (the HEADERS frame's length), and is advertised
	// in SETTINGS. Past it a request gets 431, a response fails its dial
	// (ErrMalformedResponse) and trailers on a CONNECT stream reset it with
	// H3_EXCESSIVE_LOAD; the connection goes on. Default 16 KiB.
	MaxFieldSectionSize int
	// MaxControlFrameSize bounds frames other than DATA and HEADERS that
	// are buffered whole (SETTINGS, GOAWAY, ...). Larger ones close the
	// connection with H3_EXCESSIVE_LOAD. Default 16 KiB.
	MaxControlFrameSize int
	// MaxCapsuleSize bounds a buffered capsule (RFC 9297, Section 3.2).
	// Default 16 KiB.
	MaxCapsuleSize int
	// MaxIncomingStreamQueue bounds the streams of one session that arrived
	// but were not yet accepted by the application. Further streams are
	// reset with WT_BUFFERED_STREAM_REJECTED. Default 256.
	MaxIncomingStreamQueue int
	// MaxBufferedStreams bounds, per connection, the streams held for
	// sessions that do not exist yet (draft-ietf-webtrans-http3, Section
	// 4.6); MaxBufferedStreamsPerSession bounds them per session ID.
	// Past either, streams are reset with WT_BUFFERED_STREAM_REJECTED.
	// Defaults 32 and 16.
	MaxBufferedStreams           int
	MaxBufferedStreamsPerSession int
	// MaxBufferedDatagrams and MaxBufferedDatagramBytes bound, per
	// connection, datagrams held for sessions that do not exist yet, and
	// MaxBufferedDatagramsPerSession per session ID. Past them datagrams
	// are dropped. Defaults 64, 64 KiB and 32. (The bytes of a buffered
	// stream are bounded by QUIC flow control: the stream receive window.)
	MaxBufferedDatagrams           int
	MaxBufferedDatagramBytes       int
	MaxBufferedDatagramsPerSession int
	// BufferTimeout is how long streams and datagrams are held for a
	// session that does not exist yet. Default 5 s.
	BufferTimeout time.Duration
	// DatagramQueueBytes bounds a session's queue of received datagrams
	// the application has not read yet. Past it datagrams are dropped and
	// counted. Default 1 MiB.
	DatagramQueueBytes int
	// SettingsTimeout bounds the wait for the peer's SETTINGS before a
	// WebTransport request can be processed or sent. Default 10 s.
	SettingsTimeout time.Duration
	// HeaderTimeout bounds the wait for a stream's type prefix or a
	// request's header section; a stream that takes longer is reset.
	// Default 10 s.
	HeaderTimeout time.Duration
	// CloseTimeout bounds how long a closing session waits for the peer to
	// end its side of the CONNECT stream. Default 5 s.
	CloseTimeout time.Duration
}

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		} else if *v < 0 {
			*v = 0
		}
	}
	def(&l.MaxSessions, 256)
	def(&l.MaxFieldSectionSize, 16<<10)
	def(&l.MaxControlFrameSize, 16<<10)
	def(&l.MaxCapsuleSize, 16<<10)
	def(&l.MaxIncomingStreamQueue, 256)
	def(&l.MaxBufferedStreams, 32)
	def(&l.MaxBufferedStreamsPerSession, 16)
	def(&l.MaxBufferedDatagrams, 64)
	def(&l.MaxBufferedDatagramBytes, 64<<10)
	def(&l.MaxBufferedDatagramsPerSession, 32)
	def(&l.DatagramQueueBytes, 1<<20)
	if l.BufferTimeout <= 0 {
		l.BufferTimeout = 5 * time.Second
	}
	if l.SettingsTimeout <= 0 {
		l.SettingsTimeout = 10 * time.Second
	}
	if l.HeaderTimeout <= 0 {
		l.HeaderTimeout = 10 * time.Second
	}
	if l.CloseTimeout <= 0 {
		l.CloseTimeout = 5 * time.Second
	}
	return l
}

// loggerOr returns l, or a logger that discards everything when l is nil.
func loggerOr(l *slog.Logger) *slog.Logger {
	if l != nil {
		return l
	}
	return slog.New(slog.DiscardHandler)
}
