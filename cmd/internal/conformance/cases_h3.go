package conformance

import (
	"context"
	"fmt"
	"time"

	"github.com/quicwt/quicwt/frames"
	"github.com/quicwt/quicwt/settings"
	"github.com/quicwt/quicwt/varint"
)

// settingsFrame returns a SETTINGS frame with the raw id/value pairs.
func settingsFrame(pairs ...uint64) []byte {
	var p []byte
	for _, v := range pairs {
		p = varint.MustAppend(p, v)
	}
	return frames.AppendFrame(nil, frames.TypeSettings, p)
}

// clientSettingsWith returns our SETTINGS frame with extra raw pairs
// appended to the payload.
func clientSettingsWith(p *Peer, pairs ...uint64) []byte {
	s := p.ClientSettings()
	payload := s.AppendPayload(nil)
	for _, v := range pairs {
		payload = varint.MustAppend(payload, v)
	}
	return frames.AppendFrame(nil, frames.TypeSettings, payload)
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// controlViolation is a case that writes ctrl(p) on our control stream
// (after the stream type) and expects a connection error.
func controlViolation(id, section, desc string, ctrl func(p *Peer) []byte, want ...frames.ErrorCode) Case {
	return Case{
		ID: id, Section: section, Description: desc,
		Expect: "connection error " + codeNames(want),
		Run: func(ctx context.Context, p *Peer) Result {
			if _, err := p.OpenControl(ctrl(p)); p.writeFailed(err) {
				return fail("writing the control stream: %v", err)
			}
			return expectConnError(ctx, p, want...)
		},
	}
}

// afterSettings returns a control-stream writer: our SETTINGS then b.
func afterSettings(b []byte) func(p *Peer) []byte {
	return func(p *Peer) []byte {
		s := p.ClientSettings()
		return append(s.AppendFrame(nil), b...)
	}
}

// requestViolation is a case that opens a request stream, writes b and
// expects a connection error.
func requestViolation(id, section, desc string, b func(p *Peer) []byte, want ...frames.ErrorCode) Case {
	return Case{
		ID: id, Section: section, Description: desc,
		Expect: "connection error " + codeNames(want),
		Run: func(ctx context.Context, p *Peer) Result {
			if _, err := p.Setup(); p.writeFailed(err) {
				return fail("control stream: %v", err)
			}
			if _, err := p.OpenRaw(ctx, b(p)); p.writeFailed(err) {
				return fail("request stream: %v", err)
			}
			return expectConnError(ctx, p, want...)
		},
	}
}

func connectHeaders(p *Peer) []byte {
	return frames.AppendHeaders(nil, Encode(p.ConnectFields(p.opts.Path)))
}

func controlCases() []Case {
	const sec621, sec724, sec7241 = "RFC 9114 §6.2.1", "RFC 9114 §7.2.4", "RFC 9114 §7.2.4.1"
	cs := []Case{
		controlViolation("control/settings-not-first", sec621,
			"control stream starting with MAX_PUSH_ID instead of SETTINGS",
			func(p *Peer) []byte {
				s := p.ClientSettings()
				return cat(frames.AppendMaxPushID(nil, 0), s.AppendFrame(nil))
			},
			frames.H3MissingSettings),
		controlViolation("control/reserved-frame-before-settings", sec621,
			"control stream starting with a reserved (GREASE) frame type 0x21: the first frame must still be SETTINGS",
			func(p *Peer) []byte {
				s := p.ClientSettings()
				return cat(frames.AppendFrame(nil, 0x21, []byte("x")), s.AppendFrame(nil))
			},
			frames.H3MissingSettings),
		controlViolation("control/second-settings", sec724,
			"two SETTINGS frames on the control stream",
			func(p *Peer) []byte { s := p.ClientSettings(); return cat(s.AppendFrame(nil), s.AppendFrame(nil)) },
			frames.H3FrameUnexpected),
		controlViolation("control/h3-datagram-value-2", "RFC 9297 §2.1.1",
			"SETTINGS_H3_DATAGRAM (0x33) = 2",
			func(p *Peer) []byte { return settingsFrame(0x33, 2, 0x2c7cf000, 1) },
			frames.H3SettingsError),
		{
			ID: "control/wt-enabled-2", Section: "WT-H3 §3.1",
			Description: "our SETTINGS carry SETTINGS_WT_ENABLED (0x2c7cf000) = 2 (only 0 and 1 are defined), then an extended CONNECT with webtransport-h3",
			Expect:      "connection error H3_SETTINGS_ERROR (or, as §3.1 lets a server do with incorrect settings, the WebTransport CONNECT treated as malformed: H3_MESSAGE_ERROR)",
			Run:         wtEnabledTwo,
		},
		{
			ID: "control/h3-datagram-without-transport-parameter", Section: "RFC 9297 §2.1.1",
			Description: "SETTINGS_H3_DATAGRAM = 1 on a connection where we did not send max_datagram_frame_size",
			Expect:      "connection error H3_SETTINGS_ERROR", NoDatagrams: true,
			Run: func(ctx context.Context, p *Peer) Result {
				if _, err := p.OpenControl(settingsFrame(0x33, 1)); p.writeFailed(err) {
					return fail("control stream: %v", err)
				}
				return expectConnError(ctx, p, frames.H3SettingsError)
			},
		},
		{
			ID: "control/duplicate-setting", Section: sec724,
			Description: "SETTINGS carrying SETTINGS_H3_DATAGRAM twice",
			Expect:      "connection error H3_SETTINGS_ERROR, or ignored (MAY)",
			Run: func(ctx context.Context, p *Peer) Result {
				if _, err := p.OpenControl(clientSettingsWith(p, 0x33, 1)); p.writeFailed(err) {
					return fail("control stream: %v", err)
				}
				err := p.alive(ctx)
				if err == nil {
					return pass("duplicate ignored (allowed: the RFC says MAY): a new extended CONNECT got 2xx")
				}
				if ae, _ := p.closeCause(ctx); ae != nil && frames.ErrorCode(ae.ErrorCode) == frames.H3SettingsError {
					return pass("connection error H3_SETTINGS_ERROR")
				}
				return fail("want H3_SETTINGS_ERROR or a usable connection; got %v", err)
			},
		},
		{
			ID: "control/unknown-and-grease-settings-ignored", Section: sec7241 + ", §9",
			Description: "SETTINGS with a reserved identifier 0x1f*7+0x21 and an unknown identifier 0x4242",
			Expect:      "ignored: the connection stays usable",
			Run: func(ctx context.Context, p *Peer) Result {
				if _, err := p.OpenControl(clientSettingsWith(p, frames.ReservedValue(7), 5, 0x4242, 1)); p.writeFailed(err) {
					return fail("control stream: %v", err)
				}
				return expectIgnored(ctx, p, "reserved and unknown settings")
			},
		},
		controlViolation("control/second-control-stream", sec621,
			"a second control stream (type 0x00) carrying SETTINGS",
			func(p *Peer) []byte {
				s := p.ClientSettings()
				if _, err := p.OpenControl(s.AppendFrame(nil)); p.writeFailed(err) {
					return nil
				}
				time.Sleep(50 * time.Millisecond)
				return s.AppendFrame(nil)
			},
			frames.H3StreamCreationError),
		{
			ID: "control/control-stream-closed", Section: sec621,
			Description: "our control stream ended with FIN after SETTINGS",
			Expect:      "connection error H3_CLOSED_CRITICAL_STREAM",
			Run: func(ctx context.Context, p *Peer) Result {
				s, err := p.Setup()
				if err != nil {
					return fail("control stream: %v", err)
				}
				_ = s.Close()
				return expectConnError(ctx, p, frames.H3ClosedCriticalStream)
			},
		},
		{
			ID: "control/control-stream-reset", Section: sec621,
			Description: "our control stream reset (RESET_STREAM_AT keeping the type and SETTINGS reliable)",
			Expect:      "connection error H3_CLOSED_CRITICAL_STREAM",
			Run: func(ctx context.Context, p *Peer) Result {
				s, err := p.Setup()
				if err != nil {
					return fail("control stream: %v", err)
				}
				s.SetReliableBoundary()
				s.CancelWrite(0x10c)
				return expectConnError(ctx, p, frames.H3ClosedCriticalStream)
			},
		},
		{
			ID: "control/push-stream-from-client", Section: "RFC 9114 §6.2.2",
			Description: "a push stream (type 0x01) opened by the client",
			Expect:      "connection error H3_STREAM_CREATION_ERROR",
			Run: func(ctx context.Context, p *Peer) Result {
				if _, err := p.Setup(); p.writeFailed(err) {
					return fail("control stream: %v", err)
				}
				if _, err := p.Uni([]byte{0x01, 0x00}); p.writeFailed(err) {
					return fail("push stream: %v", err)
				}
				return expectConnError(ctx, p, frames.H3StreamCreationError)
			},
		},
		{
			ID: "control/unknown-stream-types-ignored", Section: "RFC 9114 §6.2, §6.2.3",
			Description: "unidirectional streams of reserved type 0x1f*3+0x21 and unknown type 0x3f, with data",
			Expect:      "ignored (stream discarded or stopped, no connection error)",
			Run: func(ctx context.Context, p *Peer) Result {
				if _, err := p.Setup(); p.writeFailed(err) {
					return fail("control stream: %v", err)
				}
				if _, err := p.Uni(varint.MustAppend(nil, frames.ReservedValue(3))); p.writeFailed(err) {
					return fail("stream: %v", err)
				}
				if _, err := p.Uni([]byte{0x3f, 1, 2, 3}); p.writeFailed(err) {
					return fail("stream: %v", err)
				}
				return expectIgnored(ctx, p, "unknown stream types")
			},
		},
		{
			ID: "control/uni-stream-fin-before-type", Section: "RFC 9114 §6.2",
			Description: "a unidirectional stream closed (FIN) before its type",
			Expect:      "tolerated: no connection error",
			Run: func(ctx context.Context, p *Peer) Result {
				if _, err := p.Setup(); p.writeFailed(err) {
					return fail("control stream: %v", err)
				}
				s, err := p.QC.OpenUniStream()
				if err != nil {
					return fail("stream: %v", err)
				}
				_ = s.Close()
				return expectIgnored(ctx, p, "empty unidirectional stream")
			},
		},
		{
			ID: "control/uni-stream-reset-before-type", Section: "RFC 9114 §6.2",
			Description: "a unidirectional stream reset before its type",
			Expect:      "tolerated: no connection error",
			Run: func(ctx context.Context, p *Peer) Result {
				if _, err := p.Setup(); p.writeFailed(err) {
					return fail("control stream: %v", err)
				}
				s, err := p.QC.OpenUniStream()
				if err != nil {
					return fail("stream: %v", err)
				}
				s.CancelWrite(0x10c)
				return expectIgnored(ctx, p, "unidirectional stream reset before its type")
			},
		},
		controlViolation("control/max-push-id-decreasing", "RFC 9114 §7.2.7",
			"MAX_PUSH_ID 5 then MAX_PUSH_ID 2",
			afterSettings(cat(frames.AppendMaxPushID(nil, 5), frames.AppendMaxPushID(nil, 2))),
			frames.H3IDError),
		controlViolation("control/cancel-push-never-promised", "RFC 9114 §7.2.3",
			"MAX_PUSH_ID 10 then CANCEL_PUSH 3 for a push the server never promised",
			afterSettings(cat(frames.AppendMaxPushID(nil, 10), frames.AppendCancelPush(nil, 3))),
			frames.H3IDError),
	}
	for _, id := range []uint64{0x02, 0x03, 0x04, 0x05} {
		cs = append(cs, controlViolation(fmt.Sprintf("control/http2-setting-%#02x", id), sec7241,
			fmt.Sprintf("SETTINGS carrying the reserved HTTP/2 setting identifier %#x", id),
			func(p *Peer) []byte { return clientSettingsWith(p, id, 1) },
			frames.H3SettingsError))
	}
	// QPACK critical streams (RFC 9204 §4.2).
	for _, st := range []struct {
		name string
		typ  byte
	}{{"encoder", 0x02}, {"decoder", 0x03}} {
		cs = append(cs, Case{
			ID: "control/second-qpack-" + st.name + "-stream", Section: "RFC 9204 §4.2",
			Description: fmt.Sprintf("two QPACK %s streams (type %#x)", st.name, st.typ),
			Expect:      "connection error H3_STREAM_CREATION_ERROR",
			Run: func(ctx context.Context, p *Peer) Result {
				if _, err := p.Setup(); p.writeFailed(err) {
					return fail("control stream: %v", err)
				}
				if _, err := p.Uni([]byte{st.typ}); p.writeFailed(err) {
					return fail("stream: %v", err)
				}
				time.Sleep(50 * time.Millisecond)
				if _, err := p.Uni([]byte{st.typ}); p.writeFailed(err) {
					return fail("stream: %v", err)
				}
				return expectConnError(ctx, p, frames.H3StreamCreationError)
			},
		})
	}
	cs = append(cs,
		Case{
			ID: "control/qpack-encoder-stream-closed", Section: "RFC 9204 §4.2",
			Description: "our QPACK encoder stream ended with FIN",
			Expect:      "connection error H3_CLOSED_CRITICAL_STREAM",
			Run: func(ctx context.Context, p *Peer) Result {
				if _, err := p.Setup(); p.writeFailed(err) {
					return fail("control stream: %v", err)
				}
				s, err := p.Uni([]byte{0x02})
				if err != nil {
					return fail("stream: %v", err)
				}
				_ = s.Close()
				return expectConnError(ctx, p, frames.H3ClosedCriticalStream)
			},
		},
		Case{
			ID: "control/qpack-decoder-stream-reset", Section: "RFC 9204 §4.2",
			Description: "our QPACK decoder stream reset (RESET_STREAM_AT keeping the type reliable)",
			Expect:      "connection error H3_CLOSED_CRITICAL_STREAM",
			Run: func(ctx context.Context, p *Peer) Result {
				if _, err := p.Setup(); p.writeFailed(err) {
					return fail("control stream: %v", err)
				}
				s, err := p.Uni([]byte{0x03})
				if err != nil {
					return fail("stream: %v", err)
				}
				s.SetReliableBoundary()
				s.CancelWrite(0x10c)
				return expectConnError(ctx, p, frames.H3ClosedCriticalStream)
			},
		},
	)
	return cs
}

func frameCases() []Case {
	const sec71, sec728 = "RFC 9114 §7.1", "RFC 9114 §7.2.8"
	cs := []Case{
		controlViolation("frames/data-on-control-stream", "RFC 9114 §7.2.1",
			"a DATA frame on the control stream", afterSettings(frames.AppendFrame(nil, frames.TypeData, []byte("x"))),
			frames.H3FrameUnexpected),
		controlViolation("frames/headers-on-control-stream", "RFC 9114 §7.2.2",
			"a HEADERS frame on the control stream", afterSettings(frames.AppendHeaders(nil, []byte{0, 0})),
			frames.H3FrameUnexpected),
		requestViolation("frames/push-promise-from-client", "RFC 9114 §7.2.5",
			"a PUSH_PROMISE frame on a request stream, sent by the client",
			func(p *Peer) []byte { return frames.AppendPushPromise(nil, 0, []byte{0, 0}) },
			frames.H3FrameUnexpected),
		requestViolation("frames/settings-on-request-stream", "RFC 9114 §7.2.4",
			"a SETTINGS frame on a request stream",
			func(p *Peer) []byte { s := p.ClientSettings(); return s.AppendFrame(nil) },
			frames.H3FrameUnexpected),
		requestViolation("frames/goaway-on-request-stream", "RFC 9114 §7.2.6",
			"a GOAWAY frame on a request stream",
			func(p *Peer) []byte { return frames.AppendGoaway(nil, 0) },
			frames.H3FrameUnexpected),
		requestViolation("frames/max-push-id-on-request-stream", "RFC 9114 §7.2.7",
			"a MAX_PUSH_ID frame on a request stream",
			func(p *Peer) []byte { return frames.AppendMaxPushID(nil, 0) },
			frames.H3FrameUnexpected),
		requestViolation("frames/cancel-push-on-request-stream", "RFC 9114 §7.2.3",
			"a CANCEL_PUSH frame on a request stream",
			func(p *Peer) []byte { return frames.AppendCancelPush(nil, 0) },
			frames.H3FrameUnexpected),
		requestViolation("frames/data-before-headers", "RFC 9114 §4.1",
			"a request stream starting with DATA",
			func(p *Peer) []byte { return frames.AppendFrame(nil, frames.TypeData, []byte("x")) },
			frames.H3FrameUnexpected),
		requestViolation("frames/http2-frame-on-request-stream", sec728,
			"an HTTP/2 WINDOW_UPDATE frame type (0x08) on a request stream",
			func(p *Peer) []byte { return frames.AppendFrame(nil, 0x08, []byte{0, 0, 0, 1}) },
			frames.H3FrameUnexpected),
		{
			ID: "frames/truncated-frame-at-fin", Section: sec71,
			Description: "a request stream ending (FIN) inside a HEADERS frame whose length is 100 with 10 bytes present",
			Expect:      "connection error H3_FRAME_ERROR",
			Run: func(ctx context.Context, p *Peer) Result {
				if _, err := p.Setup(); p.writeFailed(err) {
					return fail("control stream: %v", err)
				}
				b := append(frames.AppendHeader(nil, frames.TypeHeaders, 100), Encode(p.ConnectFields(p.opts.Path))[:10]...)
				r, err := p.OpenRaw(ctx, b)
				if err != nil {
					return fail("request stream: %v", err)
				}
				_ = r.Str.Close()
				return expectConnError(ctx, p, frames.H3FrameError)
			},
		},
		controlViolation("frames/settings-payload-truncated", sec71+", §8.1",
			"a SETTINGS frame whose payload ends inside a parameter (length 1, payload 0x40)",
			func(p *Peer) []byte { return frames.AppendFrame(nil, frames.TypeSettings, []byte{0x40}) },
			frames.H3FrameError, frames.H3SettingsError),
		controlViolation("frames/goaway-trailing-bytes", sec71,
			"a GOAWAY frame with a payload of two varints",
			afterSettings(frames.AppendFrame(nil, frames.TypeGoaway, []byte{0, 0})),
			frames.H3FrameError),
		controlViolation("frames/oversized-control-frame", sec71+", §10.5",
			"a GOAWAY frame with a 64 KiB payload",
			afterSettings(frames.AppendFrame(nil, frames.TypeGoaway, make([]byte, 64<<10))),
			frames.H3FrameError, frames.H3ExcessiveLoad),
		controlViolation("frames/wt-signal-on-control-stream", "WT-H3 §4.3",
			"the WT_STREAM signal (0x41) as a frame type on the control stream",
			afterSettings(frames.AppendWebTransportBidiHeader(nil, 0)),
			frames.H3FrameError),
		{
			ID: "frames/reserved-frames-on-control-ignored", Section: sec728 + ", §9",
			Description: "reserved frame types 0x21 (empty) and 0x1f*1000+0x21 (8 KiB payload) and unknown type 0x2f on the control stream",
			Expect:      "ignored: the connection stays usable",
			Run: func(ctx context.Context, p *Peer) Result {
				extra := cat(frames.AppendFrame(nil, 0x21, nil),
					frames.AppendFrame(nil, frames.Type(frames.ReservedValue(1000)), make([]byte, 8<<10)),
					frames.AppendFrame(nil, 0x2f, []byte("unknown")))
				if _, err := p.Setup(extra); p.writeFailed(err) {
					return fail("control stream: %v", err)
				}
				return expectIgnored(ctx, p, "reserved frames")
			},
		},
		{
			ID: "frames/reserved-frame-before-headers-ignored", Section: sec728 + ", §9",
			Description: "a reserved frame type before the HEADERS of an extended CONNECT",
			Expect:      "ignored: the CONNECT gets 2xx",
			Run: func(ctx context.Context, p *Peer) Result {
				if _, err := p.Setup(); p.writeFailed(err) {
					return fail("control stream: %v", err)
				}
				r, err := p.OpenRaw(ctx, cat(frames.AppendFrame(nil, frames.Type(frames.ReservedValue(9)), []byte("grease")), connectHeaders(p)))
				if err != nil {
					return fail("request stream: %v", err)
				}
				res := expectStatus2xx(ctx, r)
				if res.Status == Pass {
					res.Detail = "reserved frame ignored; " + res.Detail
				}
				return res
			},
		},
		{
			ID: "frames/reserved-frame-on-connect-stream-ignored", Section: sec728 + ", §9",
			Description: "a reserved frame type on an established session's CONNECT stream, then WT_CLOSE_SESSION and FIN",
			Expect:      "ignored: the server ends the CONNECT stream cleanly",
			Run: func(ctx context.Context, p *Peer) Result {
				s, res := session(ctx, p)
				if s == nil {
					return res
				}
				if _, err := s.Str.Write(frames.AppendFrame(nil, 0x21, []byte("grease"))); err != nil {
					return fail("write: %v", err)
				}
				_ = s.Close(0, "")
				return expectCleanEnd(ctx, s, "reserved frame on the CONNECT stream")
			},
		},
		{
			ID: "frames/wt-signal-after-headers", Section: "WT-H3 §4.3",
			Description: "the WT_STREAM signal (0x41) after the HEADERS of an established session's CONNECT stream",
			Expect:      "connection error H3_FRAME_ERROR",
			Run: func(ctx context.Context, p *Peer) Result {
				s, res := session(ctx, p)
				if s == nil {
					return res
				}
				if _, err := s.Str.Write(frames.AppendWebTransportBidiHeader(nil, s.ID())); err != nil {
					return fail("write: %v", err)
				}
				return expectConnError(ctx, p, frames.H3FrameError)
			},
		},
	}
	for _, t := range []frames.Type{0x02, 0x06, 0x08, 0x09} {
		cs = append(cs, controlViolation(fmt.Sprintf("frames/http2-frame-%#02x-on-control-stream", uint64(t)), sec728,
			fmt.Sprintf("the HTTP/2-only frame type %#x (%s) on the control stream", uint64(t), t),
			afterSettings(frames.AppendFrame(nil, t, make([]byte, 8))),
			frames.H3FrameUnexpected))
	}
	return cs
}

// wtEnabledTwo sends SETTINGS_WT_ENABLED = 2. Section 3.1 makes a value
// above 1 a connection error H3_SETTINGS_ERROR at a client, and has a
// server that receives SETTINGS without correct values for every required
// setting treat all WebTransport sessions as malformed; the checker accepts
// either, and fails a server that accepts a session.
func wtEnabledTwo(ctx context.Context, p *Peer) Result {
	s := p.ClientSettings()
	s.Set(settings.WTEnabled, 2)
	if _, err := p.OpenControl(s.AppendFrame(nil)); p.writeFailed(err) {
		return fail("control stream: %v", err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Second)
	ae, _ := p.closeCause(wctx)
	cancel()
	if ae != nil {
		if got := frames.ErrorCode(ae.ErrorCode); got != frames.H3SettingsError {
			return fail("want connection error H3_SETTINGS_ERROR, got %s (%q)", got, ae.ErrorMessage)
		}
		return pass("connection error H3_SETTINGS_ERROR (%q)", ae.ErrorMessage)
	}
	fields := append(without(p.ConnectFields(p.opts.Path), ":protocol"), Field{":protocol", "webtransport-h3"})
	r, err := p.OpenRequest(ctx, fields, nil)
	if p.writeFailed(err) {
		return fail("CONNECT: %v", err)
	}
	if r == nil {
		return expectConnError(ctx, p, frames.H3SettingsError)
	}
	o := observe(ctx, r)
	if c, ok := o.connCode(); ok {
		if c == frames.H3SettingsError {
			return pass("connection error H3_SETTINGS_ERROR")
		}
		return fail("want connection error H3_SETTINGS_ERROR or the CONNECT treated as malformed; got connection error %s", c)
	}
	if d, ok := o.streamCodeIs(frames.H3MessageError); ok {
		return pass("the connection stayed open and the WebTransport CONNECT was treated as malformed: %s", d)
	}
	if o.resp != nil && o.resp.Status >= 400 && o.resp.Status < 500 {
		return pass("the connection stayed open and the WebTransport CONNECT was refused as malformed with status %d (RFC 9114 §4.1.2 allows a response first)", o.resp.Status)
	}
	return fail("want connection error H3_SETTINGS_ERROR, or the WebTransport CONNECT treated as malformed; the connection stayed open 1 s and the CONNECT got %s", o)
}

// session sets up the connection and opens a WebTransport session on the
// checked path.
func session(ctx context.Context, p *Peer) (*Session, Result) {
	if _, err := p.Setup(); p.writeFailed(err) {
		return nil, fail("control stream: %v", err)
	}
	s, err := p.Connect(ctx, p.opts.Path)
	if err != nil {
		return nil, fail("precondition: %v", err)
	}
	return s, Result{}
}

func goawayCases() []Case {
	return []Case{
		{
			ID: "goaway/client-goaway-accepted", Section: "RFC 9114 §5.2",
			Description: "GOAWAY with push ID 0 from the client",
			Expect:      "no connection error",
			Run: func(ctx context.Context, p *Peer) Result {
				if _, err := p.Setup(frames.AppendGoaway(nil, 0)); p.writeFailed(err) {
					return fail("control stream: %v", err)
				}
				if err := p.stillOpen(); err != nil {
					return fail("after the client's GOAWAY: %v", err)
				}
				return pass("connection still open")
			},
		},
		controlViolation("goaway/client-goaway-increasing", "RFC 9114 §5.2",
			"GOAWAY with push ID 4 then 8", afterSettings(cat(frames.AppendGoaway(nil, 4), frames.AppendGoaway(nil, 8))),
			frames.H3IDError),
		{
			ID: "goaway/client-goaway-decreasing-accepted", Section: "RFC 9114 §5.2",
			Description: "GOAWAY with push ID 8 then 4",
			Expect:      "no connection error",
			Run: func(ctx context.Context, p *Peer) Result {
				if _, err := p.Setup(frames.AppendGoaway(nil, 8), frames.AppendGoaway(nil, 4)); p.writeFailed(err) {
					return fail("control stream: %v", err)
				}
				if err := p.stillOpen(); err != nil {
					return fail("after the client's GOAWAYs: %v", err)
				}
				return pass("connection still open")
			},
		},
		{
			ID: "goaway/drain-session-accepted", Section: "WT-H3 §6",
			Description: "WT_DRAIN_SESSION from the client on an established session, then (after a pause) WT_CLOSE_SESSION and FIN",
			Expect:      "the session stays up until closed; the server ends the CONNECT stream cleanly",
			Run: func(ctx context.Context, p *Peer) Result {
				s, res := session(ctx, p)
				if s == nil {
					return res
				}
				if err := s.WriteCapsules(frames.AppendDrainSession(nil), false); err != nil {
					return fail("write: %v", err)
				}
				time.Sleep(grace)
				if o := stopSending(s.Str); o != nil {
					return fail("the server stopped the CONNECT stream after WT_DRAIN_SESSION: %s", frames.ErrorCode(o.ErrorCode))
				}
				_ = s.Close(0, "")
				return expectCleanEnd(ctx, s, "after WT_DRAIN_SESSION")
			},
		},
	}
}
