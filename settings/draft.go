package settings

// Draft is a version of draft-ietf-webtrans-http3 as negotiated through
// SETTINGS (draft-ietf-webtrans-http3, Section 7.1). Drafts that share a
// codepoint are one Draft value, named after the first.
type Draft int

// Drafts, in increasing order.
const (
	// DraftNone: no WebTransport draft in common.
	DraftNone Draft = 0
	// Draft02 is draft-02 to -06, enabled by SETTINGS_ENABLE_WEBTRANSPORT
	// 0x2b603742 = 1 and an H3 datagram setting (0x33 or 0xffd277). This is
	// what Chrome and Firefox speak.
	Draft02 Draft = 2
	// Draft07 is draft-07 to -12, enabled by
	// SETTINGS_WEBTRANSPORT_MAX_SESSIONS 0xc671706a > 0 and 0x33 = 1.
	Draft07 Draft = 7
	// Draft13 is draft-13 and -14, enabled by SETTINGS_WT_MAX_SESSIONS
	// 0x14e9cd29 > 0 and 0x33 = 1.
	Draft13 Draft = 13
	// Draft15 is draft-15 and later, enabled by SETTINGS_WT_ENABLED
	// 0x2c7cf000 = 1 and 0x33 = 1; its :protocol token is webtransport-h3.
	Draft15 Draft = 15
)

func (d Draft) String() string {
	switch d {
	case Draft02:
		return "draft-02"
	case Draft07:
		return "draft-07"
	case Draft13:
		return "draft-13"
	case Draft15:
		return "draft-15"
	}
	return "none"
}

// Protocol is the :protocol token the draft's client sends; servers accept
// both tokens regardless of the draft.
func (d Draft) Protocol() string {
	if d >= Draft15 {
		return "webtransport-h3"
	}
	return "webtransport"
}

// offers returns the drafts a SETTINGS frame enables, as a bit set indexed
// by Draft, checking for each the settings that draft requires of everyone
// (H3 datagrams). Requirements that apply only to a server's SETTINGS
// (extended CONNECT) are checked by Negotiate.
func (s *Settings) offers() uint32 {
	var set uint32
	dgram := s.Enabled(H3Datagram)
	if s.Enabled(EnableWebTransport) && (dgram || s.Enabled(H3DatagramDraft04)) {
		set |= 1 << Draft02
	}
	if dgram {
		if s.Enabled(WebTransportMaxSessionsDraft07) {
			set |= 1 << Draft07
		}
		if s.Enabled(WTMaxSessions) {
			set |= 1 << Draft13
		}
		if s.Enabled(WTEnabled) {
			set |= 1 << Draft15
		}
	}
	return set
}

// Negotiate returns the highest draft both the client's and the server's
// SETTINGS enable (draft-ietf-webtrans-http3, Section 7.1), or DraftNone.
// From draft-07 on the server must also enable extended CONNECT (RFC 9220);
// in draft-02, SETTINGS_ENABLE_WEBTRANSPORT implied it.
func Negotiate(client, server *Settings) Draft {
	common := client.offers() & server.offers()
	if !server.Enabled(EnableConnectProtocol) {
		common &= 1 << Draft02
	}
	for _, d := range [...]Draft{Draft15, Draft13, Draft07, Draft02} {
		if common&(1<<d) != 0 {
			return d
		}
	}
	return DraftNone
}

// FlowControl reports whether WebTransport flow control is in effect for a
// connection speaking draft d: both sides sent a nonzero initial
// WT_MAX_DATA or WT_MAX_STREAMS setting, or, in drafts -07 to -14, a
// maximum session count above 1 (draft-ietf-webtrans-http3, Section 5).
// Draft-02 has no flow control.
func FlowControl(d Draft, a, b *Settings) bool {
	switch d {
	case Draft02, DraftNone:
		return false
	}
	on := func(s *Settings) bool {
		if s.Enabled(WTInitialMaxData) || s.Enabled(WTInitialMaxStreamsUni) || s.Enabled(WTInitialMaxStreamsBidi) {
			return true
		}
		switch d {
		case Draft07:
			return s.Value(WebTransportMaxSessionsDraft07, 0) > 1
		case Draft13:
			return s.Value(WTMaxSessions, 0) > 1
		}
		return false
	}
	return on(a) && on(b)
}
