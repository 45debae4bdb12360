package conformance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicwt/quicwt/frames"
	"github.com/quicwt/quicwt/settings"
	"github.com/quicwt/quicwt/varint"
)

// unknownSession is a client-initiated bidirectional stream ID far above
// any the checker opens: no session can exist there.
const unknownSession = 400

// streamRejection waits until the server resets or stops one of our
// WebTransport streams, or ctx ends, and returns the error code.
func readRejection(ctx context.Context, s *quic.Stream) (frames.ErrorCode, error) {
	stop := deadline(ctx, s.SetReadDeadline)
	defer stop()
	_, err := io.Copy(io.Discard, s)
	if se := stopSending(s); se != nil {
		return frames.ErrorCode(se.ErrorCode), nil
	}
	var se *quic.StreamError
	if errors.As(err, &se) && se.Remote {
		return frames.ErrorCode(se.ErrorCode), nil
	}
	if err == nil {
		return 0, errors.New("the server ended the stream with FIN")
	}
	return 0, errors.New(describeErr(err))
}

// uniRejection waits for STOP_SENDING on a unidirectional stream.
func uniRejection(ctx context.Context, s *quic.SendStream) (frames.ErrorCode, error) {
	select {
	case <-s.Context().Done():
		var se *quic.StreamError
		if errors.As(context.Cause(s.Context()), &se) && se.Remote {
			return frames.ErrorCode(se.ErrorCode), nil
		}
		return 0, context.Cause(s.Context())
	case <-ctx.Done():
		return 0, errors.New("no STOP_SENDING")
	}
}

// closedSession opens a session, closes it cleanly and waits for the
// server to end its side.
func closedSession(ctx context.Context, p *Peer) (*Session, Result) {
	s, res := session(ctx, p)
	if s == nil {
		return nil, res
	}
	_ = s.Close(0, "")
	if err := s.ReadToEnd(ctx); err != nil {
		var se *quic.StreamError
		if !errors.As(err, &se) {
			return nil, fail("precondition: closing the session: %s", describeErr(err))
		}
	}
	return s, Result{}
}

func streamCases() []Case {
	const sec46 = "WT-H3 §4.6"
	return []Case{
		uniViolation("streams/uni-stream-invalid-session-id", "WT-H3 §4.2",
			"a WebTransport unidirectional stream (0x54) for session ID 2, which is not a client-initiated bidirectional stream",
			func(p *Peer) ([]byte, string) { return frames.AppendWebTransportUniHeader(nil, 2), "" },
			frames.H3IDError),
		{
			ID: "streams/bidi-stream-invalid-session-id", Section: "WT-H3 §4.3",
			Description: "a WebTransport bidirectional stream (0x41) for session ID 1",
			Expect:      "connection error H3_ID_ERROR",
			Run: func(ctx context.Context, p *Peer) Result {
				if _, err := p.Setup(); p.writeFailed(err) {
					return fail("control stream: %v", err)
				}
				if _, err := p.OpenWTBidi(ctx, 1, []byte("x")); p.writeFailed(err) {
					return fail("stream: %v", err)
				}
				return expectConnError(ctx, p, frames.H3IDError)
			},
		},
		datagramViolation("streams/datagram-quarter-id-too-large", "RFC 9297 §2.1",
			"an HTTP datagram whose quarter stream ID is 2^62-1 (> 2^60-1)",
			[]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 'x'}),
		datagramViolation("streams/datagram-truncated-quarter-id", "RFC 9297 §2.1",
			"an HTTP datagram too short to hold its quarter stream ID (one byte 0x40)",
			[]byte{0x40}),
		{
			ID: "streams/uni-stream-unknown-session", Section: sec46,
			Description: "a WebTransport unidirectional stream with data for session 400, which does not exist",
			Expect:      "no connection error (buffered, or rejected with WT_BUFFERED_STREAM_REJECTED)",
			Run: func(ctx context.Context, p *Peer) Result {
				if _, err := p.Setup(); p.writeFailed(err) {
					return fail("control stream: %v", err)
				}
				if _, err := p.OpenWTUni(ctx, unknownSession, []byte("early")); p.writeFailed(err) {
					return fail("stream: %v", err)
				}
				return expectIgnored(ctx, p, "a stream for an unknown session")
			},
		},
		{
			ID: "streams/bidi-stream-unknown-session", Section: sec46,
			Description: "a WebTransport bidirectional stream with data for session 400, which does not exist",
			Expect:      "no connection error (buffered, or rejected with WT_BUFFERED_STREAM_REJECTED)",
			Run: func(ctx context.Context, p *Peer) Result {
				if _, err := p.Setup(); p.writeFailed(err) {
					return fail("control stream: %v", err)
				}
				if _, err := p.OpenWTBidi(ctx, unknownSession, []byte("early")); p.writeFailed(err) {
					return fail("stream: %v", err)
				}
				return expectIgnored(ctx, p, "a stream for an unknown session")
			},
		},
		{
			ID: "streams/datagram-unknown-session", Section: sec46 + ", RFC 9297 §2.1",
			Description: "an HTTP datagram for session 400, which does not exist",
			Expect:      "no connection error (dropped or buffered)",
			Run: func(ctx context.Context, p *Peer) Result {
				if _, err := p.Setup(); p.writeFailed(err) {
					return fail("control stream: %v", err)
				}
				time.Sleep(50 * time.Millisecond)
				if err := p.QC.SendDatagram(frames.AppendDatagramHeader(nil, unknownSession)); err != nil {
					return fail("datagram: %v", err)
				}
				return expectIgnored(ctx, p, "a datagram for an unknown session")
			},
		},
		{
			ID: "streams/bidi-stream-before-connect", Section: sec46,
			Description: "a WebTransport bidirectional stream for session N sent 200 ms before the CONNECT on stream N",
			Expect:      "buffered and associated: not rejected once the session exists",
			Run: func(ctx context.Context, p *Peer) Result {
				if _, err := p.Setup(); p.writeFailed(err) {
					return fail("control stream: %v", err)
				}
				req, err := p.QC.OpenStreamSync(ctx) // the CONNECT stream, written later
				if err != nil {
					return fail("stream: %v", err)
				}
				sid := uint64(req.StreamID())
				ws, err := p.OpenWTBidi(ctx, sid, []byte("early"))
				if err != nil {
					return fail("stream: %v", err)
				}
				time.Sleep(200 * time.Millisecond)
				return pendingCheck(ctx, p, req, func(ctx context.Context) (frames.ErrorCode, error) { return readRejection(ctx, ws) })
			},
		},
		{
			ID: "streams/uni-stream-before-connect", Section: sec46,
			Description: "a WebTransport unidirectional stream for session N sent 200 ms before the CONNECT on stream N",
			Expect:      "buffered and associated: not rejected once the session exists",
			Run: func(ctx context.Context, p *Peer) Result {
				if _, err := p.Setup(); p.writeFailed(err) {
					return fail("control stream: %v", err)
				}
				req, err := p.QC.OpenStreamSync(ctx)
				if err != nil {
					return fail("stream: %v", err)
				}
				ws, err := p.OpenWTUni(ctx, uint64(req.StreamID()), []byte("early"))
				if err != nil {
					return fail("stream: %v", err)
				}
				time.Sleep(200 * time.Millisecond)
				return pendingCheck(ctx, p, req, func(ctx context.Context) (frames.ErrorCode, error) { return uniRejection(ctx, ws) })
			},
		},
		{
			ID: "streams/stream-for-closed-session", Section: "WT-H3 §6, §4.6",
			Description: "a WebTransport bidirectional stream for a session that was closed",
			Expect:      "the stream is rejected (WT_SESSION_GONE or WT_BUFFERED_STREAM_REJECTED); no connection error",
			Run: func(ctx context.Context, p *Peer) Result {
				s, res := closedSession(ctx, p)
				if s == nil {
					return res
				}
				ws, err := p.OpenWTBidi(ctx, s.ID(), []byte("late"))
				if err != nil {
					return fail("stream: %v", err)
				}
				wctx, cancel := context.WithTimeout(ctx, untilDeadline(ctx)-time.Second)
				defer cancel()
				code, err := readRejection(wctx, ws)
				if err != nil {
					return fail("want the stream rejected with WT_SESSION_GONE or WT_BUFFERED_STREAM_REJECTED; got %v", err)
				}
				if code != frames.WTSessionGone && code != frames.WTBufferedStreamRejected {
					return fail("stream rejected with %s, want WT_SESSION_GONE or WT_BUFFERED_STREAM_REJECTED", code)
				}
				if err := p.stillOpen(); err != nil {
					return fail("stream rejected with %s, but then %v", code, err)
				}
				return pass("stream rejected with %s", code)
			},
		},
		{
			ID: "streams/datagram-for-closed-session", Section: "WT-H3 §6, RFC 9297 §2.1",
			Description: "an HTTP datagram for a session that was closed",
			Expect:      "dropped: no connection error",
			Run: func(ctx context.Context, p *Peer) Result {
				s, res := closedSession(ctx, p)
				if s == nil {
					return res
				}
				if err := p.QC.SendDatagram(append(frames.AppendDatagramHeader(nil, s.ID()), "late"...)); err != nil {
					return fail("datagram: %v", err)
				}
				return expectIgnored(ctx, p, "a datagram for a closed session")
			},
		},
		{
			ID: "streams/buffered-stream-limit", Section: sec46,
			Description: "40 WebTransport unidirectional streams for session 400, which does not exist",
			Expect:      "the buffer is bounded: streams rejected with WT_BUFFERED_STREAM_REJECTED; no connection error",
			Run: func(ctx context.Context, p *Peer) Result {
				if _, err := p.Setup(); p.writeFailed(err) {
					return fail("control stream: %v", err)
				}
				var streams []*quic.SendStream
				for i := 0; i < 40; i++ {
					s, err := p.QC.OpenUniStream() // stops at the server's QUIC stream limit
					if err != nil {
						break
					}
					if _, err := s.Write(append(frames.AppendWebTransportUniHeader(nil, unknownSession), "early"...)); err != nil {
						break
					}
					streams = append(streams, s)
				}
				rejected := make(chan frames.ErrorCode, len(streams))
				wctx, cancel := context.WithTimeout(ctx, untilDeadline(ctx)-time.Second)
				defer cancel()
				for _, s := range streams {
					go func() {
						code, err := uniRejection(wctx, s)
						if err == nil {
							rejected <- code
						}
					}()
				}
				select {
				case code := <-rejected:
					if code != frames.WTBufferedStreamRejected {
						return fail("a buffered stream was stopped with %s, want WT_BUFFERED_STREAM_REJECTED", code)
					}
					if err := p.stillOpen(); err != nil {
						return fail("streams rejected, but then %v", err)
					}
					return pass("of %d streams for a missing session, the server rejected some with WT_BUFFERED_STREAM_REJECTED", len(streams))
				case <-wctx.Done():
					if err := context.Cause(p.QC.Context()); err != nil {
						return fail("%s", describeErr(err))
					}
					return fail("%d streams for a missing session held for %v without any being rejected", len(streams), untilDeadline(ctx))
				}
			},
		},
		{
			ID: "streams/session-streams-reset-on-close", Section: "WT-H3 §6",
			Description: "a WebTransport bidirectional stream left open when the client closes the session",
			Expect:      "the server resets the stream (or stops it) with WT_SESSION_GONE",
			Run: func(ctx context.Context, p *Peer) Result {
				s, res := session(ctx, p)
				if s == nil {
					return res
				}
				ws, err := p.OpenWTBidi(ctx, s.ID(), []byte("data"))
				if err != nil {
					return fail("stream: %v", err)
				}
				time.Sleep(200 * time.Millisecond)
				_ = s.Close(0, "")
				code, err := readRejection(ctx, ws)
				if err != nil {
					return fail("want the stream reset with WT_SESSION_GONE; %v", err)
				}
				if code != frames.WTSessionGone {
					return fail("stream reset with %s, want WT_SESSION_GONE", code)
				}
				return pass("stream reset with WT_SESSION_GONE")
			},
		},
		{
			ID: "streams/session-uni-streams-stopped-on-close", Section: "WT-H3 §6",
			Description: "a WebTransport unidirectional stream left open when the client closes the session",
			Expect:      "the server stops the stream with WT_SESSION_GONE",
			Run: func(ctx context.Context, p *Peer) Result {
				s, res := session(ctx, p)
				if s == nil {
					return res
				}
				ws, err := p.OpenWTUni(ctx, s.ID(), []byte("data"))
				if err != nil {
					return fail("stream: %v", err)
				}
				time.Sleep(200 * time.Millisecond)
				_ = s.Close(0, "")
				code, err := uniRejection(ctx, ws)
				if err != nil {
					return fail("want STOP_SENDING with WT_SESSION_GONE; %v", err)
				}
				if code != frames.WTSessionGone {
					return fail("stream stopped with %s, want WT_SESSION_GONE", code)
				}
				return pass("STOP_SENDING with WT_SESSION_GONE")
			},
		},
	}
}

func untilDeadline(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return time.Until(d)
	}
	return 10 * time.Second
}

// pendingCheck sends the CONNECT on req, requires a 2xx, then checks for
// half a second that the early stream is not rejected.
func pendingCheck(ctx context.Context, p *Peer, req *quic.Stream, rejection func(context.Context) (frames.ErrorCode, error)) Result {
	if _, err := req.Write(connectHeaders(p)); err != nil {
		return fail("CONNECT: %v", err)
	}
	r := &Request{Str: req, br: newReader(req)}
	resp, err := r.ReadResponse(ctx)
	if err != nil {
		return fail("precondition: CONNECT: %s", describeErr(err))
	}
	if resp.Status < 200 || resp.Status > 299 {
		return fail("precondition: CONNECT got status %d", resp.Status)
	}
	wctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if code, err := rejection(wctx); err == nil {
		return fail("the early stream was rejected with %s after the session was established", code)
	}
	s := &Session{Request: r, Response: resp}
	_ = s.Close(0, "")
	return pass("the early stream was not rejected once the session existed")
}

// datagramViolation sends one malformed HTTP datagram after our SETTINGS.
func datagramViolation(id, section, desc string, dgram []byte) Case {
	return Case{
		ID: id, Section: section, Description: desc, Expect: "connection error H3_DATAGRAM_ERROR",
		Run: func(ctx context.Context, p *Peer) Result {
			if _, err := p.Setup(); p.writeFailed(err) {
				return fail("control stream: %v", err)
			}
			if !p.server.Enabled(settings.H3Datagram) && !p.server.Enabled(settings.H3DatagramDraft04) {
				return skip("the server does not enable HTTP datagrams (SETTINGS_H3_DATAGRAM 0x33)")
			}
			time.Sleep(100 * time.Millisecond) // let our SETTINGS arrive first
			if err := p.QC.SendDatagram(dgram); err != nil {
				return fail("datagram: %v", err)
			}
			return expectConnError(ctx, p, frames.H3DatagramError)
		},
	}
}

// closeCapsule builds a WT_CLOSE_SESSION value without the sender-side
// truncation of frames.AppendCloseSession.
func closeCapsule(code uint32, msg []byte) []byte {
	v := append([]byte{byte(code >> 24), byte(code >> 16), byte(code >> 8), byte(code)}, msg...)
	return frames.AppendCapsule(nil, frames.CapsuleCloseSession, v)
}

// capsuleCase opens a session, writes the DATA frames built by data and
// FIN (if fin), and applies check.
func capsuleCase(id, section, desc, expect string, data func(s *Session) []byte, fin bool, check func(ctx context.Context, s *Session) Result) Case {
	return Case{
		ID: id, Section: section, Description: desc, Expect: expect,
		Run: func(ctx context.Context, p *Peer) Result {
			s, res := session(ctx, p)
			if s == nil {
				return res
			}
			if _, err := s.Str.Write(data(s)); err != nil {
				return fail("write: %v", err)
			}
			if fin {
				_ = s.Str.Close()
			}
			return check(ctx, s)
		},
	}
}

func inData(capsules ...[]byte) func(*Session) []byte {
	return func(*Session) []byte { return frames.AppendFrame(nil, frames.TypeData, cat(capsules...)) }
}

func cleanEnd(what string) func(ctx context.Context, s *Session) Result {
	return func(ctx context.Context, s *Session) Result { return expectCleanEnd(ctx, s, what) }
}

func sessionError(codes ...frames.ErrorCode) func(ctx context.Context, s *Session) Result {
	return func(ctx context.Context, s *Session) Result { return expectSessionError(ctx, s, codes...) }
}

func capsuleCases() []Case {
	const sec6, rfc32 = "WT-H3 §6", "RFC 9297 §3.2"
	const clean = "the server ends the CONNECT stream cleanly (FIN)"
	long := []byte(strings.Repeat("a", 1025))
	return []Case{
		capsuleCase("capsules/close-with-code-and-message", sec6,
			"WT_CLOSE_SESSION with code 0x1234 and message \"bye\", then FIN", clean,
			inData(closeCapsule(0x1234, []byte("bye"))), true, cleanEnd("after WT_CLOSE_SESSION")),
		capsuleCase("capsules/close-message-1024-bytes", sec6,
			"WT_CLOSE_SESSION with a message of exactly 1024 bytes, then FIN", clean,
			inData(closeCapsule(7, long[:1024])), true, cleanEnd("after a 1024-byte close message")),
		capsuleCase("capsules/close-message-too-long", sec6,
			"WT_CLOSE_SESSION with a 1025-byte message, then FIN", "CONNECT stream reset with H3_MESSAGE_ERROR",
			inData(closeCapsule(7, long)), true, sessionError(frames.H3MessageError)),
		capsuleCase("capsules/close-message-invalid-utf8", sec6,
			"WT_CLOSE_SESSION whose message is the invalid UTF-8 bytes ff fe, then FIN", "CONNECT stream reset with H3_MESSAGE_ERROR",
			inData(closeCapsule(7, []byte{0xff, 0xfe})), true, sessionError(frames.H3MessageError)),
		capsuleCase("capsules/data-after-close", sec6,
			"WT_CLOSE_SESSION followed by WT_DRAIN_SESSION on the CONNECT stream", "CONNECT stream reset with H3_MESSAGE_ERROR",
			inData(closeCapsule(7, []byte("bye")), frames.AppendDrainSession(nil)), true, sessionError(frames.H3MessageError)),
		capsuleCase("capsules/fin-inside-capsule", "RFC 9297 §3.3",
			"a capsule header declaring 10 bytes, 3 bytes of value, then FIN", "CONNECT stream reset with H3_MESSAGE_ERROR",
			inData(frames.AppendCapsule(nil, 0x2843, make([]byte, 10))[:6]), true, sessionError(frames.H3MessageError)),
		capsuleCase("capsules/huge-declared-length", "RFC 9297 §3.3, WT-H3 §6",
			"WT_CLOSE_SESSION declaring a 2^40-byte value, 100 bytes of it, then FIN",
			"CONNECT stream reset with H3_MESSAGE_ERROR (or H3_EXCESSIVE_LOAD at the header)",
			func(*Session) []byte {
				c := varint.MustAppend(varint.MustAppend(nil, uint64(frames.CapsuleCloseSession)), 1<<40)
				return frames.AppendFrame(nil, frames.TypeData, append(c, make([]byte, 100)...))
			}, true, sessionError(frames.H3MessageError, frames.H3ExcessiveLoad)),
		capsuleCase("capsules/unknown-capsule-ignored", rfc32,
			"an unknown capsule type 0x123456 with 3000 bytes, then WT_CLOSE_SESSION and FIN", clean,
			inData(frames.AppendCapsule(nil, 0x123456, make([]byte, 3000)), closeCapsule(0, nil)), true,
			cleanEnd("after an unknown capsule")),
		capsuleCase("capsules/grease-capsule-ignored", "RFC 9297 §5.4",
			"a reserved capsule type 0x29*5+0x17, then WT_CLOSE_SESSION and FIN", clean,
			inData(frames.AppendCapsule(nil, frames.CapsuleType(0x29*5+0x17), []byte("grease")), closeCapsule(0, nil)), true,
			cleanEnd("after a GREASE capsule")),
		capsuleCase("capsules/large-unknown-capsule-skipped", rfc32,
			"an unknown capsule of 64 KiB spread over 16 DATA frames, then WT_CLOSE_SESSION and FIN", clean,
			func(*Session) []byte {
				c := frames.AppendCapsule(nil, 0x123456, make([]byte, 64<<10))
				var b []byte
				for len(c) > 0 {
					n := min(len(c), 4100)
					b = frames.AppendFrame(b, frames.TypeData, c[:n])
					c = c[n:]
				}
				return frames.AppendFrame(b, frames.TypeData, closeCapsule(0, nil))
			}, true, cleanEnd("after a 64 KiB unknown capsule")),
		capsuleCase("capsules/capsule-split-across-data-frames", rfc32,
			"a GREASE capsule and WT_CLOSE_SESSION cut into one-byte DATA frames, with empty DATA frames between, then FIN", clean,
			func(*Session) []byte {
				c := cat(frames.AppendCapsule(nil, 0x17, []byte("g")), closeCapsule(9, []byte("split")))
				var b []byte
				for i := range c {
					b = frames.AppendFrame(b, frames.TypeData, c[i:i+1])
					b = frames.AppendFrame(b, frames.TypeData, nil)
				}
				return b
			}, true, cleanEnd("after capsules split across DATA frames")),
		capsuleCase("capsules/datagram-capsule-accepted", "RFC 9297 §3.5",
			"a DATAGRAM capsule (type 0x00) on the CONNECT stream, then WT_CLOSE_SESSION and FIN", clean,
			inData(frames.AppendCapsule(nil, frames.CapsuleDatagram, []byte("dgram")), closeCapsule(0, nil)), true,
			cleanEnd("after a DATAGRAM capsule")),
		capsuleCase("capsules/fin-without-close-capsule", sec6,
			"FIN on the CONNECT stream without WT_CLOSE_SESSION (a clean close with code 0)", clean,
			func(*Session) []byte { return nil }, true, cleanEnd("after a bare FIN")),
	}
}

func flowControlCases() []Case {
	const sec5 = "WT-H3 §5"
	fcErr := frames.WTFlowControlError
	return []Case{
		capsuleCase("flow/capsules-ignored-when-disabled", sec5,
			"without flow control negotiated (our SETTINGS send no initial limits): WT_MAX_DATA 10, WT_MAX_STREAMS_BIDI 3 then 1, WT_DATA_BLOCKED, then WT_CLOSE_SESSION and FIN",
			"ignored: the server ends the CONNECT stream cleanly",
			inData(frames.AppendVarintCapsule(nil, frames.CapsuleMaxData, 10),
				frames.AppendVarintCapsule(nil, frames.CapsuleMaxStreamsBidi, 3),
				frames.AppendVarintCapsule(nil, frames.CapsuleMaxStreamsBidi, 1),
				frames.AppendVarintCapsule(nil, frames.CapsuleDataBlocked, 0),
				closeCapsule(0, nil)), true,
			cleanEnd("after flow-control capsules without flow control")),
		fcCase(capsuleCase("flow/max-streams-above-2^60", "WT-H3 §5.6.2",
			"WT_MAX_STREAMS_BIDI with the value 2^60+1", "session error WT_FLOW_CONTROL_ERROR",
			inData(frames.AppendVarintCapsule(nil, frames.CapsuleMaxStreamsBidi, 1<<60+1)), false, sessionError(fcErr))),
		fcCase(capsuleCase("flow/max-streams-bidi-not-increasing", "WT-H3 §5.6.2",
			"WT_MAX_STREAMS_BIDI 8, below the initial 16 our SETTINGS granted", "session error WT_FLOW_CONTROL_ERROR",
			inData(frames.AppendVarintCapsule(nil, frames.CapsuleMaxStreamsBidi, clientMaxStreams/2)), false, sessionError(fcErr))),
		fcCase(capsuleCase("flow/max-streams-uni-not-increasing", "WT-H3 §5.6.2",
			"WT_MAX_STREAMS_UNI 8, below the initial 16 our SETTINGS granted", "session error WT_FLOW_CONTROL_ERROR",
			inData(frames.AppendVarintCapsule(nil, frames.CapsuleMaxStreamsUni, clientMaxStreams/2)), false, sessionError(fcErr))),
		fcCase(capsuleCase("flow/max-data-not-increasing", "WT-H3 §5.6.4",
			"WT_MAX_DATA 1000, below the initial 1 MiB our SETTINGS granted", "session error WT_FLOW_CONTROL_ERROR",
			inData(frames.AppendVarintCapsule(nil, frames.CapsuleMaxData, 1000)), false, sessionError(fcErr))),
		fcCase(capsuleCase("flow/max-data-equal", "WT-H3 §5.6.4",
			"WT_MAX_DATA 1 MiB, equal to the initial limit our SETTINGS granted (it does not increase)", "session error WT_FLOW_CONTROL_ERROR",
			inData(frames.AppendVarintCapsule(nil, frames.CapsuleMaxData, clientMaxData)), false, sessionError(fcErr))),
		fcCase(capsuleCase("flow/max-streams-bidi-equal", "WT-H3 §5.6.2",
			"WT_MAX_STREAMS_BIDI 16, equal to the initial limit our SETTINGS granted (it does not increase)", "session error WT_FLOW_CONTROL_ERROR",
			inData(frames.AppendVarintCapsule(nil, frames.CapsuleMaxStreamsBidi, clientMaxStreams)), false, sessionError(fcErr))),
		fcCase(capsuleCase("flow/max-streams-uni-equal", "WT-H3 §5.6.2",
			"WT_MAX_STREAMS_UNI 16, equal to the initial limit our SETTINGS granted (it does not increase)", "session error WT_FLOW_CONTROL_ERROR",
			inData(frames.AppendVarintCapsule(nil, frames.CapsuleMaxStreamsUni, clientMaxStreams)), false, sessionError(fcErr))),
		fcCase(capsuleCase("flow/streams-blocked-bidi-above-2^60", "WT-H3 §5.6.3",
			"WT_STREAMS_BLOCKED (bidirectional) with the value 2^60+1", "session error WT_FLOW_CONTROL_ERROR",
			inData(frames.AppendVarintCapsule(nil, frames.CapsuleStreamsBlockedBidi, 1<<60+1)), false, sessionError(fcErr))),
		fcCase(capsuleCase("flow/streams-blocked-uni-above-2^60", "WT-H3 §5.6.3",
			"WT_STREAMS_BLOCKED (unidirectional) with the value 2^60+1", "session error WT_FLOW_CONTROL_ERROR",
			inData(frames.AppendVarintCapsule(nil, frames.CapsuleStreamsBlockedUni, 1<<60+1)), false, sessionError(fcErr))),
		{
			ID: "flow/blocked-capsules-no-answer", Section: "WT-H3 §5.6.3, §5.6.5",
			Description: "WT_DATA_BLOCKED and WT_STREAMS_BLOCKED (bidirectional and unidirectional) at the server's initial limits, then, after a pause, WT_CLOSE_SESSION and FIN",
			Expect:      "accepted: the session stays open, then the server ends the CONNECT stream cleanly", FlowControl: true,
			Run: blockedCapsules,
		},
		{
			ID: "flow/limit-of-zero", Section: "WT-H3 §5.1, §5.4, §5.6.5",
			Description: "our SETTINGS grant SETTINGS_WT_INITIAL_MAX_DATA 0 (stream limits 16: flow control is on); a bidirectional stream with 832 bytes and FIN to the checked (echoing) path; after 1 s, WT_MAX_DATA 65536",
			Expect:      "no body bytes back before WT_MAX_DATA (WT_DATA_BLOCKED SHOULD be sent); the echo after it", FlowControl: true,
			ClientLimits: &FlowLimits{MaxData: 0, MaxStreamsBidi: clientMaxStreams, MaxStreamsUni: clientMaxStreams},
			Run:          zeroDataLimit,
		},
		fcCase(capsuleCase("flow/http2-only-capsule", "WT-H3 §5, draft-ietf-webtrans-http2 §6",
			"WT_MAX_STREAM_DATA (0x190b4d3e), which HTTP/3 does not use", "session error (CONNECT stream reset)",
			inData(frames.AppendCapsule(nil, frames.CapsuleMaxStreamData, append(varint.MustAppend(nil, 4), 0x10))), false,
			sessionError(fcErr, frames.H3DatagramError, frames.H3MessageError))),
		{
			ID: "flow/bidi-stream-limit-exceeded", Section: "WT-H3 §5.3, §5.6.2",
			Description: "one WebTransport bidirectional stream more than the server's SETTINGS_WT_INITIAL_MAX_STREAMS_BIDI",
			Expect:      "session error WT_FLOW_CONTROL_ERROR", FlowControl: true,
			Run: func(ctx context.Context, p *Peer) Result {
				return exceedStreams(ctx, p, settings.WTInitialMaxStreamsBidi, true)
			},
		},
		{
			ID: "flow/uni-stream-limit-exceeded", Section: "WT-H3 §5.3, §5.6.2",
			Description: "one WebTransport unidirectional stream more than the server's SETTINGS_WT_INITIAL_MAX_STREAMS_UNI",
			Expect:      "session error WT_FLOW_CONTROL_ERROR", FlowControl: true,
			Run: func(ctx context.Context, p *Peer) Result {
				return exceedStreams(ctx, p, settings.WTInitialMaxStreamsUni, false)
			},
		},
		{
			ID: "flow/data-limit-exceeded", Section: "WT-H3 §5.4, §5.6.4",
			Description: "one byte more stream data than the server's SETTINGS_WT_INITIAL_MAX_DATA, over four bidirectional streams ended with FIN, whose answers we do not read",
			Expect:      "session error WT_FLOW_CONTROL_ERROR", FlowControl: true,
			Run: exceedData,
		},
	}
}

// exceedData sends one byte more than the server's initial data limit over
// four bidirectional streams, each below QUIC's usual initial stream window
// and ended with FIN, so that the server learns every final size (RFC 9000,
// Section 4.5) whether or not its application reads. We read nothing back,
// with small receive windows, so that an echoing server stops reading, and
// granting credit, early.
func exceedData(ctx context.Context, p *Peer) Result {
	const streams = 4
	limit := p.server.Value(settings.WTInitialMaxData, 0)
	if limit == 0 || limit > 1<<20 {
		return skip("the server's SETTINGS_WT_INITIAL_MAX_DATA is %d: not a limit this check can exceed (needs 1..1 MiB)", limit)
	}
	s, res := session(ctx, p)
	if s == nil {
		return res
	}
	// The server may grant credit as its application reads (WT_MAX_DATA):
	// watch its capsules while sending.
	raised := make(chan uint64, 1)
	ended := make(chan error, 1)
	go watchMaxData(s, raised, ended)
	total := limit + 1
	for i := uint64(0); i < streams; i++ {
		n := total / streams
		if i == streams-1 {
			n = total - n*(streams-1)
		}
		ws, err := p.OpenWTBidi(ctx, s.ID(), make([]byte, n))
		if err != nil && ws == nil {
			return fail("stream %d: %v", i+1, err)
		}
		_ = ws.Close()
	}
	select {
	case err := <-ended:
		o := outcome{err: err, stop: stopSending(s.Str)}
		if d, ok := o.streamCodeIs(frames.WTFlowControlError); ok {
			return pass("CONNECT stream: %s", d)
		}
		return fail("want the CONNECT stream reset with WT_FLOW_CONTROL_ERROR; got %s", o)
	case <-ctx.Done():
		select {
		case v := <-raised:
			return skip("the server raised WT_MAX_DATA to %d while the %d bytes were in flight (it grants credit as its application reads), so they did not exceed its limit", v, total)
		default:
		}
		return fail("sent %d bytes of stream data against SETTINGS_WT_INITIAL_MAX_DATA %d without a WT_MAX_DATA increase: no WT_FLOW_CONTROL_ERROR", total, limit)
	}
}

// watchMaxData reads the server's side of the CONNECT stream, reporting
// each WT_MAX_DATA increase on raised and the stream's end on ended.
func watchMaxData(s *Session, raised chan uint64, ended chan error) {
	var top uint64
	ended <- readCapsules(s, func(c frames.Capsule) {
		if c.Type != frames.CapsuleMaxData {
			return
		}
		if v, err := frames.ParseVarintCapsule(c.Type, c.Value); err == nil && v > top {
			top = v
			select {
			case <-raised:
			default:
			}
			raised <- v
		}
	})
}

// readCapsules reads the server's side of the CONNECT stream until it
// ends, calling each for every capsule its DATA frames carry (other frames
// are skipped), and returns how the stream ended: nil for FIN. It stops
// parsing, but keeps reading, after a malformed capsule.
func readCapsules(s *Session, each func(frames.Capsule)) error {
	var cp frames.CapsuleParser
	for {
		h, err := frames.ReadHeader(s.br, 1<<20)
		if err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		b := make([]byte, h.Length)
		if _, err := io.ReadFull(s.br, b); err != nil {
			return err
		}
		for h.Type == frames.TypeData && len(b) > 0 {
			c, n, ok, err := cp.Next(b)
			b = b[n:]
			if err != nil || !ok {
				break
			}
			each(c)
		}
	}
}

func fcCase(c Case) Case { c.FlowControl = true; return c }

// blockedCapsules sends valid WT_DATA_BLOCKED and WT_STREAMS_BLOCKED
// capsules, which need no answer (the server MAY grant credit), and checks
// that the session survives them and then ends cleanly.
func blockedCapsules(ctx context.Context, p *Peer) Result {
	s, res := session(ctx, p)
	if s == nil {
		return res
	}
	// The values at which we would be blocked: the server's initial limits.
	data := p.server.Value(settings.WTInitialMaxData, 0)
	bidi := min(p.server.Value(settings.WTInitialMaxStreamsBidi, 0), 1<<60)
	uni := min(p.server.Value(settings.WTInitialMaxStreamsUni, 0), 1<<60)
	stop := deadline(ctx, s.Str.SetReadDeadline)
	defer stop()
	ended := make(chan error, 1)
	go func() { ended <- readCapsules(s, func(frames.Capsule) {}) }()
	if err := s.WriteCapsules(cat(frames.AppendVarintCapsule(nil, frames.CapsuleDataBlocked, data),
		frames.AppendVarintCapsule(nil, frames.CapsuleStreamsBlockedBidi, bidi),
		frames.AppendVarintCapsule(nil, frames.CapsuleStreamsBlockedUni, uni)), false); err != nil {
		return fail("write: %v", err)
	}
	select {
	case err := <-ended:
		return fail("the server ended the session after WT_DATA_BLOCKED %d, WT_STREAMS_BLOCKED %d/%d: %s", data, bidi, uni, outcome{err: err, stop: stopSending(s.Str)})
	case <-time.After(grace):
	}
	if se := stopSending(s.Str); se != nil {
		return fail("the server stopped the CONNECT stream with %s after the blocked capsules", frames.ErrorCode(se.ErrorCode))
	}
	if err := s.Close(0, ""); err != nil {
		return fail("closing the session: %v", err)
	}
	select {
	case err := <-ended:
		o := outcome{err: err, stop: stopSending(s.Str)}
		if d, ok := o.cleanEnd(); ok {
			return pass("WT_DATA_BLOCKED %d and WT_STREAMS_BLOCKED %d/%d accepted; after our WT_CLOSE_SESSION %s", data, bidi, uni, d)
		}
		return fail("after the blocked capsules and our WT_CLOSE_SESSION: want FIN on the CONNECT stream; got %s", o)
	case <-ctx.Done():
		return fail("the server did not end the CONNECT stream after our WT_CLOSE_SESSION")
	}
}

// zeroDataLimit runs flow/limit-of-zero: with SETTINGS_WT_INITIAL_MAX_DATA 0
// the server has no credit for stream data (draft-ietf-webtrans-http3-16,
// Section 5.4) and SHOULD say so with WT_DATA_BLOCKED (Section 5.6.5);
// WT_MAX_DATA then lets the echo through.
func zeroDataLimit(ctx context.Context, p *Peer) Result {
	const credit = 64 << 10
	s, res := session(ctx, p)
	if s == nil {
		return res
	}
	stop := deadline(ctx, s.Str.SetReadDeadline)
	defer stop()
	blocked := make(chan uint64, 1)
	ended := make(chan error, 1)
	go func() {
		ended <- readCapsules(s, func(c frames.Capsule) {
			if c.Type != frames.CapsuleDataBlocked {
				return
			}
			if v, err := frames.ParseVarintCapsule(c.Type, c.Value); err == nil {
				select {
				case blocked <- v:
				default:
				}
			}
		})
	}()
	msg := []byte(strings.Repeat("quicwt-check ", 64))
	ws, err := p.OpenWTBidi(ctx, s.ID(), msg)
	if err != nil {
		return fail("stream: %v", err)
	}
	_ = ws.Close()
	// Phase 1: no credit, so no body bytes may come back.
	_ = ws.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, len(msg)+1)
	n, err := ws.Read(buf)
	var ne interface{ Timeout() bool }
	switch {
	case n > 0:
		return fail("the server sent %d bytes of stream body with SETTINGS_WT_INITIAL_MAX_DATA 0 and no WT_MAX_DATA from us", n)
	case !errors.As(err, &ne) || !ne.Timeout():
		select {
		case e := <-ended:
			return fail("the server ended the session with no data credit: %s", outcome{err: e, stop: stopSending(s.Str)})
		default:
		}
		return skip("the server ended our stream without echoing (%s): this case needs a path that echoes bidirectional streams, like quicwt serve's /echo", describeEnd(err))
	}
	select {
	case e := <-ended:
		return fail("the server ended the session while it had no data credit: %s", outcome{err: e, stop: stopSending(s.Str)})
	default:
	}
	sawBlocked := "no WT_DATA_BLOCKED came (SHOULD, §5.6.5)"
	var gotBlocked bool
	select {
	case v := <-blocked:
		gotBlocked = true
		sawBlocked = fmt.Sprintf("WT_DATA_BLOCKED %d came", v)
	default:
	}
	// Phase 2: credit.
	if err := s.WriteCapsules(frames.AppendVarintCapsule(nil, frames.CapsuleMaxData, credit), false); err != nil {
		return fail("WT_MAX_DATA: %v", err)
	}
	_ = ws.SetReadDeadline(time.Time{})
	rstop := deadline(ctx, ws.SetReadDeadline)
	defer rstop()
	got, err := io.ReadAll(io.LimitReader(ws, int64(len(buf))))
	switch {
	case err == nil && string(got) == string(msg):
		_ = s.Close(0, "")
		return pass("no body bytes in 1 s without data credit; %s; after WT_MAX_DATA %d the %d bytes were echoed", sawBlocked, credit, len(msg))
	case err == nil && len(got) > 0:
		return fail("after WT_MAX_DATA %d the server sent %d bytes that are not the %d we sent", credit, len(got), len(msg))
	case !gotBlocked:
		return skip("nothing came back after WT_MAX_DATA %d (%s) and the server never sent WT_DATA_BLOCKED: the checked path may not echo (this case needs a path that echoes bidirectional streams, like quicwt serve's /echo)", credit, describeEnd(err))
	}
	return fail("the server signalled WT_DATA_BLOCKED but sent %d of %d bytes after WT_MAX_DATA %d: %s", len(got), len(msg), credit, describeEnd(err))
}

// describeEnd describes how a stream read ended: FIN for nil or io.EOF.
func describeEnd(err error) string {
	if err == nil || err == io.EOF {
		return "FIN"
	}
	return describeErr(err)
}

// exceedStreams opens one stream more than the server's initial limit
// allows in a session.
func exceedStreams(ctx context.Context, p *Peer, id settings.ID, bidi bool) Result {
	limit := p.server.Value(id, 0)
	if limit == 0 || limit > 1000 {
		return skip("the server's %s is %d: not a limit this check can exceed (needs 1..1000)", id, limit)
	}
	s, res := session(ctx, p)
	if s == nil {
		return res
	}
	for i := uint64(0); i <= limit; i++ {
		var err error
		if bidi {
			_, err = p.OpenWTBidi(ctx, s.ID(), []byte("x"))
		} else {
			_, err = p.OpenWTUni(ctx, s.ID(), []byte("x"))
		}
		if err != nil {
			return fail("opening stream %d of %d: %s (the server's QUIC stream limit may be below its WebTransport limit)", i+1, limit+1, describeErr(err))
		}
	}
	return expectSessionError(ctx, s, frames.WTFlowControlError)
}
