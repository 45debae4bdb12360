package quicwt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicwt/quicwt/frames"
	"github.com/quicwt/quicwt/settings"
	"github.com/quicwt/quicwt/varint"
)

// The control plane of a connection: the peer's control stream with its
// SETTINGS and GOAWAY (RFC 9114, Sections 6.2.1, 7.2 and 5.2), our GOAWAY,
// and the peer's QPACK encoder and decoder streams (RFC 9204, Section 4.2).

// defaultSettings returns what we advertise (spec section 4's synthesis):
// extended CONNECT (server), H3 datagrams under both codepoints, and the
// enabling settings of draft-02 (browsers), draft-13/14 (with one session,
// so no flow control is implied) and draft-15+.
func defaultSettings(server bool) settings.Settings {
	var s settings.Settings
	if server {
		s.Set(settings.EnableConnectProtocol, 1)
	}
	s.Set(settings.H3Datagram, 1)
	s.Set(settings.H3DatagramDraft04, 1)
	s.Set(settings.EnableWebTransport, 1)
	if server {
		// Safari 26.4+ looks for a maximum session count from the
		// server, under the draft-13 codepoint or the draft-07 one
		// (reports differ: webtransport-go #261, hyperium/h3 #363); 1
		// implies no flow control by itself.
		s.Set(settings.WebTransportMaxSessionsDraft07, 1)
	}
	s.Set(settings.WTMaxSessions, 1)
	s.Set(settings.WTEnabled, 1)
	var l Limits
	setFlowLimits(&s, l.withDefaults())
	return s
}

// setFlowLimits puts the initial flow-control limits of l in s, or takes
// them out when flow control is disabled (Section 5.5).
func setFlowLimits(s *settings.Settings, l Limits) {
	if l.DisableFlowControl {
		s.Delete(settings.WTInitialMaxData)
		s.Delete(settings.WTInitialMaxStreamsBidi)
		s.Delete(settings.WTInitialMaxStreamsUni)
		return
	}
	s.Set(settings.WTInitialMaxData, uint64(l.InitialSessionMaxData))
	s.Set(settings.WTInitialMaxStreamsBidi, uint64(l.InitialSessionMaxStreamsBidi))
	s.Set(settings.WTInitialMaxStreamsUni, uint64(l.InitialSessionMaxStreamsUni))
}

// withAdditional returns base with extra added, each replacing base's value
// for its ID. Settings the engine owns are refused: QPACK's (our decoder
// has no dynamic table), MAX_FIELD_SECTION_SIZE (Limits), reserved and
// HTTP/2-only IDs.
func withAdditional(base settings.Settings, extra []settings.Setting) (settings.Settings, error) {
	for _, st := range extra {
		switch {
		case st.ID == settings.QPACKMaxTableCapacity, st.ID == settings.QPACKBlockedStreams:
			return base, fmt.Errorf("quicwt: additional setting %v: QPACK's settings are the engine's (no dynamic table)", st.ID)
		case st.ID == settings.MaxFieldSectionSize:
			return base, fmt.Errorf("quicwt: additional setting %v: set Limits.MaxFieldSectionSize instead", st.ID)
		case st.ID == settings.WTInitialMaxData, st.ID == settings.WTInitialMaxStreamsBidi, st.ID == settings.WTInitialMaxStreamsUni:
			return base, fmt.Errorf("quicwt: additional setting %v: set the flow-control fields of Limits instead", st.ID)
		case st.ID.IsHTTP2Only():
			return base, fmt.Errorf("quicwt: additional setting %v: reserved in HTTP/3", st.ID)
		case st.Value > varint.Max:
			return base, fmt.Errorf("quicwt: additional setting %v: value %d above 2^62-1", st.ID, st.Value)
		}
		base.Set(st.ID, st.Value)
	}
	return base, nil
}

// goingAway starts a graceful shutdown of the connection: GOAWAY, and
// WT_DRAIN_SESSION on every open session.
func (c *conn) goingAway() {
	c.sendGoaway()
	for _, s := range c.reg.list() {
		if s.isOpen() {
			_ = s.Drain()
		}
	}
}

// busy reports whether the connection still has sessions or requests.
func (c *conn) busy() bool { return c.reg.count() > 0 || c.requestsActive() }

// serveCriticalStream serves the peer's control or QPACK stream: one of
// each type is allowed (RFC 9114, Section 6.2.1; RFC 9204, Section 4.2).
func (c *conn) serveCriticalStream(s receiveStream, st frames.StreamType) {
	c.mu.Lock()
	dup := c.critical[st]
	c.critical[st] = true
	c.mu.Unlock()
	if dup {
		c.closeWithError(frames.H3StreamCreationError, "second "+st.String()+" stream")
		return
	}
	switch st {
	case frames.StreamTypeControl:
		c.readControlStream(s)
	case frames.StreamTypeQPACKEncoder:
		c.readQPACKEncoderStream(s)
	default:
		c.readQPACKDecoderStream(s)
	}
}

// waitSettings waits for the peer's SETTINGS.
func (c *conn) waitSettings(ctx context.Context) error {
	select {
	case <-c.settingsDone:
		return nil
	default:
	}
	t := time.NewTimer(c.limits.SettingsTimeout)
	defer t.Stop()
	select {
	case <-c.settingsDone:
		return nil
	case <-c.closed:
		return c.closeErr
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return ErrSettingsTimeout
	}
}

// peerSettings returns a copy of the peer's SETTINGS, which must have
// arrived (see waitSettings).
func (c *conn) peerSettings() *settings.Settings {
	p := c.peer
	p.Unknown = append([]settings.Setting(nil), c.peer.Unknown...)
	return &p
}

// readControlStream enforces RFC 9114, Sections 6.2.1 and 7.2, on the
// peer's control stream.
func (c *conn) readControlStream(s receiveStream) {
	c.peerControlID = uint64(s.StreamID())
	fr := newFrameReader(s, 256)
	limit := uint64(c.limits.MaxControlFrameSize)
	first := true
	for {
		h, err := frames.ReadHeader(fr, limit)
		if err != nil {
			c.controlStreamEnded(err)
			return
		}
		if first && h.Type != frames.TypeSettings {
			c.fail(frames.ErrMissingSettings)
			return
		}
		known, err := frames.Check(h.Type, frames.KindControl, c.isServer)
		if err != nil {
			c.fail(err)
			return
		}
		if !known {
			if err := fr.skip(h.Length); err != nil {
				c.controlStreamEnded(err)
				return
			}
			continue
		}
		if h.Length > limit {
			c.fail(frames.ErrFrameTooLarge)
			return
		}
		p, err := fr.payload(h.Length)
		if err != nil {
			c.controlStreamEnded(err)
			return
		}
		if err := c.handleControlFrame(h.Type, p, first); err != nil {
			c.fail(err)
			return
		}
		first = false
	}
}

// controlStreamEnded handles a read error on a critical stream: the
// connection is already gone, or the peer closed or reset the stream, which
// is H3_CLOSED_CRITICAL_STREAM (RFC 9114, Section 6.2.1).
func (c *conn) controlStreamEnded(err error) {
	if c.isClosed() {
		return
	}
	if _, ok := errors.AsType[*quic.StreamError](err); ok || err == io.EOF {
		c.closeWithError(frames.H3ClosedCriticalStream, "critical stream closed")
		return
	}
	c.fail(err)
}

func (c *conn) handleControlFrame(t frames.Type, p []byte, first bool) error {
	switch t {
	case frames.TypeSettings:
		if !first {
			return &frames.Error{Code: frames.H3FrameUnexpected, Connection: true, Reason: "second SETTINGS frame"}
		}
		if err := c.peer.Parse(p); err != nil {
			return err
		}
		if err := c.peer.Validate(c.peerDatagramTP); err != nil {
			return err
		}
		c.ql.settingsFrame(false, c.peerControlID, &c.peer)
		if c.isServer {
			c.draft = settings.Negotiate(&c.peer, &c.local)
		} else {
			c.draft = settings.Negotiate(&c.local, &c.peer)
		}
		c.peerDatagrams = c.peer.Enabled(settings.H3Datagram) || c.peer.Enabled(settings.H3DatagramDraft04)
		c.flowControl = settings.FlowControl(c.draft, &c.local, &c.peer)
		if c.logger.Enabled(context.Background(), slog.LevelDebug) {
			c.logger.Debug("peer SETTINGS", "settings", c.peer.String(), "draft", c.draft, "flow_control", c.flowControl)
		}
		close(c.settingsDone)
	case frames.TypeGoaway:
		id, err := frames.ParseGoaway(p)
		if err != nil {
			return err
		}
		c.ql.goawayFrame(false, c.peerControlID, id)
		return c.handleGoaway(id)
	case frames.TypeCancelPush:
		if _, err := frames.ParseCancelPush(p); err != nil {
			return err
		}
		// We never send PUSH_PROMISE (server) nor MAX_PUSH_ID (client), so
		// every push ID is one never promised or allowed (RFC 9114,
		// Section 7.2.3).
		return &frames.Error{Code: frames.H3IDError, Connection: true, Reason: "CANCEL_PUSH for a push never promised"}
	case frames.TypeMaxPushID:
		id, err := frames.ParseMaxPushID(p)
		if err != nil {
			return err
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if int64(id) < c.maxPushID {
			return &frames.Error{Code: frames.H3IDError, Connection: true, Reason: "MAX_PUSH_ID decreased"}
		}
		c.maxPushID = int64(id)
	case frames.TypePriorityUpdateRequest, frames.TypePriorityUpdatePush:
		id, _, err := frames.ParsePriorityUpdate(p)
		if err != nil {
			return err
		}
		if t == frames.TypePriorityUpdateRequest && !frames.IsSessionID(id) {
			return &frames.Error{Code: frames.H3IDError, Connection: true, Reason: "PRIORITY_UPDATE for a non-request stream"}
		}
	}
	return nil
}

// handleGoaway applies a peer's GOAWAY (RFC 9114, Section 5.2): a server
// sends a client-initiated bidirectional stream ID, and the ID never
// increases.
func (c *conn) handleGoaway(id uint64) error {
	c.mu.Lock()
	if !c.isServer && !frames.IsSessionID(id) {
		c.mu.Unlock()
		return &frames.Error{Code: frames.H3IDError, Connection: true, Reason: "GOAWAY with a stream ID that is not client-initiated bidirectional"}
	}
	if c.peerGoaway && id > c.peerGoawayID {
		c.mu.Unlock()
		return &frames.Error{Code: frames.H3IDError, Connection: true, Reason: "GOAWAY ID increased"}
	}
	first := !c.peerGoaway
	c.peerGoaway, c.peerGoawayID = true, id
	c.mu.Unlock()
	if first {
		c.logger.Debug("peer sent GOAWAY", "id", id)
		c.markDraining()
		for _, s := range c.reg.list() {
			s.markDraining()
		}
	}
	return nil
}

func (c *conn) markDraining() {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.draining:
	default:
		close(c.draining)
	}
}

// sendGoaway sends GOAWAY on our control stream. A server names the first
// request stream it will not process; a client sends push ID 0 (it allows
// no pushes).
func (c *conn) sendGoaway() {
	c.mu.Lock()
	if c.goawaySent {
		c.mu.Unlock()
		return
	}
	c.goawaySent = true
	var id uint64
	if c.isServer && c.maxRequestID >= 0 {
		id = uint64(c.maxRequestID + 4)
	}
	c.goawayID = id
	c.mu.Unlock()
	c.markDraining()
	if c.ctrl != nil {
		_, _ = c.ctrl.Write(frames.AppendGoaway(nil, id))
		c.ql.goawayFrame(true, uint64(c.ctrl.StreamID()), id)
	}
}

// readQPACKEncoderStream checks the peer's QPACK encoder stream (RFC 9204,
// Section 4.3). With our dynamic table capacity of 0 the only valid
// instruction is Set Dynamic Table Capacity with value 0.
func (c *conn) readQPACKEncoderStream(s receiveStream) {
	fr := newFrameReader(s, 64)
	for {
		b, err := fr.ReadByte()
		if err != nil {
			c.controlStreamEnded(err)
			return
		}
		if b&0xe0 != 0x20 {
			c.closeWithError(frames.QPACKEncoderStreamError, "dynamic table instruction with capacity 0")
			return
		}
		v, err := readPrefixInt(fr, b, 5)
		if err == errIntegerOverflow {
			// An instruction the stream cannot carry is an error of that
			// stream (RFC 9204, Section 6).
			c.closeWithError(frames.QPACKEncoderStreamError, err.Error())
			return
		}
		if err != nil {
			c.controlStreamEnded(err)
			return
		}
		if v > 0 {
			c.closeWithError(frames.QPACKEncoderStreamError, "dynamic table capacity above SETTINGS_QPACK_MAX_TABLE_CAPACITY")
			return
		}
	}
}

// readQPACKDecoderStream checks the peer's QPACK decoder stream (RFC 9204,
// Section 4.4). We never reference the dynamic table, so only Stream
// Cancellation is valid.
func (c *conn) readQPACKDecoderStream(s receiveStream) {
	fr := newFrameReader(s, 64)
	for {
		b, err := fr.ReadByte()
		if err != nil {
			c.controlStreamEnded(err)
			return
		}
		var n uint = 6
		if b&0x80 != 0 {
			n = 7
		}
		_, err = readPrefixInt(fr, b, n)
		if err == errIntegerOverflow {
			c.closeWithError(frames.QPACKDecoderStreamError, err.Error())
			return
		}
		if err != nil {
			c.controlStreamEnded(err)
			return
		}
		if b&0xc0 != 0x40 {
			c.closeWithError(frames.QPACKDecoderStreamError, "acknowledgment or increment for a dynamic table never used")
			return
		}
	}
}
