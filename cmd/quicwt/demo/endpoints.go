package demo

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"time"

	"github.com/quicwt/quicwt/quicwt"
)

// maxEchoStream bounds what the echo endpoint buffers for one
// unidirectional stream before answering it.
const maxEchoStream = 1 << 20

// streamTimeout bounds opening and writing a server stream, so that a peer
// that stops reading cannot pin a goroutine forever.
const streamTimeout = 30 * time.Second

// serveCounter is seed S1, the Chrome WebTransport sample server:
//   - a datagram is answered by a datagram holding its length in decimal;
//   - a unidirectional stream is counted to its FIN, and the count is sent
//     on a new unidirectional stream, then FIN;
//   - a bidirectional stream is counted to its FIN, and the count is
//     written back on the same stream, then FIN.
//
// Counters are per stream and vanish with it; a stream that arrives in many
// frames is counted whole (io.Copy reads to FIN).
func serveCounter(sess *quicwt.Session, log *slog.Logger) {
	ctx := sess.Context()
	go func() {
		for {
			d, err := sess.ReceiveDatagram(ctx)
			if err != nil {
				return
			}
			if err := sess.SendDatagram([]byte(strconv.Itoa(len(d)))); err != nil {
				log.Debug("datagram reply failed", "err", err)
			}
		}
	}()
	go func() {
		for {
			s, err := sess.AcceptUniStream(ctx)
			if err != nil {
				return
			}
			go func() {
				n, err := io.Copy(io.Discard, s)
				if err != nil {
					log.Debug("uni stream ended without FIN", "err", err)
					return
				}
				replyUni(sess, []byte(strconv.FormatInt(n, 10)), log)
			}()
		}
	}()
	for {
		s, err := sess.AcceptStream(ctx)
		if err != nil {
			return
		}
		go func() {
			n, err := io.Copy(io.Discard, s)
			if err != nil {
				log.Debug("bidi stream ended without FIN", "err", err)
				s.CancelWrite(0)
				return
			}
			_ = s.SetWriteDeadline(time.Now().Add(streamTimeout))
			if _, err := s.Write([]byte(strconv.FormatInt(n, 10))); err != nil {
				log.Debug("bidi reply failed", "err", err)
				return
			}
			s.Close()
		}()
	}
}

// replyUni sends p on a new unidirectional stream and FINs it.
func replyUni(sess *quicwt.Session, p []byte, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(sess.Context(), streamTimeout)
	defer cancel()
	out, err := sess.OpenUniStreamSync(ctx)
	if err != nil {
		log.Debug("cannot open reply stream", "err", err)
		return
	}
	_ = out.SetWriteDeadline(time.Now().Add(streamTimeout))
	if _, err := out.Write(p); err != nil {
		log.Debug("uni reply failed", "err", err)
		out.CancelWrite(0)
		return
	}
	out.Close()
}

// serveEcho is seed S4 in today's form: bidirectional streams are echoed
// on themselves (until FIN, then FIN), unidirectional streams are answered
// with the same bytes on a new unidirectional stream, datagrams are echoed.
func serveEcho(sess *quicwt.Session, log *slog.Logger) {
	ctx := sess.Context()
	go func() {
		for {
			d, err := sess.ReceiveDatagram(ctx)
			if err != nil {
				return
			}
			if err := sess.SendDatagram(d); err != nil {
				log.Debug("datagram echo failed", "err", err)
			}
		}
	}()
	go func() {
		for {
			s, err := sess.AcceptUniStream(ctx)
			if err != nil {
				return
			}
			go func() {
				p, err := io.ReadAll(io.LimitReader(s, maxEchoStream+1))
				if err != nil {
					return
				}
				if len(p) > maxEchoStream {
					s.CancelRead(0)
					log.Info("uni stream too large to echo", "limit", maxEchoStream)
					return
				}
				replyUni(sess, p, log)
			}()
		}
	}()
	for {
		s, err := sess.AcceptStream(ctx)
		if err != nil {
			return
		}
		go func() {
			if _, err := io.Copy(s, s); err != nil {
				log.Debug("bidi echo failed", "err", err)
				s.CancelWrite(0)
				s.CancelRead(0)
				return
			}
			s.Close()
		}()
	}
}
