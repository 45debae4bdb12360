package quicwt

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicwt/quicwt/frames"
)

// A session's CONNECT stream after the header section: the capsules inside
// its DATA frames (RFC 9297, Section 3; draft-ietf-webtrans-http3,
// Section 6), read by one goroutine per session for its lifetime, and the
// capsules the session writes.

// capsuleBuffer is the CONNECT stream reader's buffer while capsules come.
const capsuleBuffer = 64

// adoptReader continues reading the CONNECT stream after the header
// section, which fr read, with what fr buffered past it.
func (s *Session) adoptReader(fr *frameReader) {
	s.rd = frameReader{r: fr.r, idleSize: capsuleBuffer}
	if fr.pos < fr.end {
		s.rd.buf = make([]byte, max(capsuleBuffer, int(fr.end-fr.pos)))
		s.rd.end = int32(copy(s.rd.buf, fr.buf[fr.pos:fr.end]))
	}
}

// startReader starts the session's CONNECT stream reader.
func (s *Session) startReader() {
	s.readerStarted.Store(true)
	go s.readCapsules()
}

// connectReset ends a session awaiting its handler when the peer reset the
// CONNECT stream (err is the reset).
func (s *Session) connectReset(err error) {
	s.terminate(&SessionError{Remote: true, Cause: translateStreamErr(err)}, true)
}

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

// Drain asks the peer to wind the session down (WT_DRAIN_SESSION,
// draft-ietf-webtrans-http3, Section 4.7).
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
	s.ql.capsulesCreated(s, capsules)
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	_ = s.str.SetWriteDeadline(time.Now().Add(s.lim.CloseTimeout))
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

// tryWriteCapsules writes capsules in one DATA frame if the CONNECT stream
// takes them at once; false when it would block (or another write is
// under way). A stream already cut takes nothing more: true.
func (s *Session) tryWriteCapsules(capsules []byte) bool {
	if !s.writeMu.TryLock() {
		return false
	}
	defer s.writeMu.Unlock()
	b := frames.AppendDataHeader(make([]byte, 0, 8+len(capsules)), uint64(len(capsules)))
	b = append(b, capsules...)
	return s.str.TryWriteAll(b) != quic.ErrWouldBlock
}

// finishConnect ends our side of the CONNECT stream (FIN).
func (s *Session) finishConnect() {
	s.writeMu.Lock()
	_ = s.str.Close()
	s.writeMu.Unlock()
}

// resetConnect ends the session for a violation on its CONNECT stream and
// resets the stream with code. The session ends first: the reader, woken by
// the reset, then finds it ended and neither mistakes our reset for the
// peer's nor resets the stream again with another code.
func (s *Session) resetConnect(code ErrorCode, cause error) {
	s.terminate(&SessionError{Cause: cause}, false)
	s.str.CancelWrite(quic.StreamErrorCode(code))
	s.str.CancelRead(quic.StreamErrorCode(code))
}

// readCapsules runs for the session's lifetime, reading the CONNECT
// stream's frames and the capsules inside its DATA frames.
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
	p := frames.CapsuleParser{MaxSize: uint64(s.lim.MaxCapsuleSize)}
	gotClose := false
	for {
		fr.release() // between frames, an idle session holds no buffer
		h, err := readMessageFrameHeader(fr, s.lim)
		if err != nil {
			s.connectStreamEnded(err, &p, gotClose)
			return
		}
		known, err := frames.Check(h.Type, frames.KindConnect, s.isServer)
		if err != nil {
			s.c.fail(err)
			return
		}
		if !known || h.Type == frames.TypeHeaders {
			// Unknown frames are skipped whatever their length (RFC 9114,
			// Section 9), without buffering; trailers carry nothing for us.
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
				if cp.Type == frames.CapsuleCloseSession && (len(chunk) > 0 || rem > 0) {
					// Nothing may follow WT_CLOSE_SESSION (Section 6): reset
					// before the close would be answered with FIN.
					s.resetConnect(frames.H3MessageError, errors.New("data after WT_CLOSE_SESSION"))
					return
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
	s.ql.capsuleParsed(s, cp)
	switch cp.Type {
	case frames.CapsuleCloseSession:
		code, msg, err := frames.ParseCloseSession(cp.Value)
		if err != nil {
			s.resetConnect(frames.CodeOf(err), err)
			return false
		}
		// Answer with FIN (draft-ietf-webtrans-http3, Section 6).
		s.endedByPeer(&SessionError{Code: SessionErrorCode(code), Message: string(msg), Remote: true})
		_ = s.str.SetReadDeadline(time.Now().Add(s.lim.CloseTimeout))
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
		// The flow-control capsules. Without flow control they are
		// ignored, whatever they hold: the peer may have sent them before
		// it had our SETTINGS (draft-ietf-webtrans-http3-16, Section 5.1).
		if !s.flowOn {
			return false
		}
		v, err := frames.ParseVarintCapsule(cp.Type, cp.Value)
		if err != nil {
			if errors.Is(err, frames.ErrFlowControlLimit) {
				s.flowViolation(fmt.Sprintf("%v above 2^60", cp.Type))
				return false
			}
			s.resetConnect(frames.CodeOf(err), err)
			return false
		}
		s.handleFlowCapsule(cp.Type, v)
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
		s.finishConnect()
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
	if err == io.EOF {
		if perr := p.End(); perr != nil {
			s.resetConnect(frames.CodeOf(perr), perr)
			return
		}
		// Clean end without a capsule: code 0, empty message. Reply with FIN.
		s.endedByPeer(&SessionError{Remote: true})
		return
	}
	if errors.Is(err, errFieldSectionTooLarge) {
		s.resetConnect(frames.H3ExcessiveLoad, err) // trailers too large
		return
	}
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
	if errors.Is(terr, ErrConnectionClosed) || s.c.closeError() != nil {
		// The connection ended: every session gets the same end, with the
		// peer's code and Remote when the peer closed it, whichever of
		// the connection's goroutines saw it first.
		s.terminate(s.c.connectionEnded(err), false)
		return
	}
	s.terminate(&SessionError{Cause: terr}, true)
}
