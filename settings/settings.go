// Package settings implements HTTP/3 SETTINGS parameters (RFC 9114, Section
// 7.2.4): the value type, parsing and appending, the validation rules of RFC
// 9114 (Sections 7.2.4 and 7.2.4.1), RFC 9204 (Section 5), RFC 9220
// (Section 3), RFC 9297 (Section 2.1.1) and the WebTransport drafts, GREASE
// generation, and WebTransport draft negotiation (draft-ietf-webtrans-http3,
// Sections 3.1 and 7.1; draft-ietf-webtrans-http3-02 and -07).
//
// Like package frames it performs no I/O and does not allocate when parsing
// into a reused Settings value.
package settings

import (
	"fmt"

	"github.com/quicwt/quicwt/frames"
	"github.com/quicwt/quicwt/varint"
)

// ID is a SETTINGS identifier.
type ID uint64

// Setting identifiers.
const (
	QPACKMaxTableCapacity ID = 0x01 // SETTINGS_QPACK_MAX_TABLE_CAPACITY, RFC 9204 Section 5
	MaxFieldSectionSize   ID = 0x06 // SETTINGS_MAX_FIELD_SECTION_SIZE, RFC 9114 Section 7.2.4.1
	QPACKBlockedStreams   ID = 0x07 // SETTINGS_QPACK_BLOCKED_STREAMS, RFC 9204 Section 5
	EnableConnectProtocol ID = 0x08 // SETTINGS_ENABLE_CONNECT_PROTOCOL, RFC 9220 Section 3
	H3Datagram            ID = 0x33 // SETTINGS_H3_DATAGRAM, RFC 9297 Section 2.1.1
	// H3DatagramDraft04 is SETTINGS_H3_DATAGRAM of draft-ietf-masque-h3-datagram-04,
	// still sent by Chrome and Firefox.
	H3DatagramDraft04 ID = 0xffd277
	// EnableWebTransport is SETTINGS_ENABLE_WEBTRANSPORT of
	// draft-ietf-webtrans-http3-02 (to -06).
	EnableWebTransport ID = 0x2b603742
	// WebTransportMaxSessionsDraft07 is SETTINGS_WEBTRANSPORT_MAX_SESSIONS of
	// draft-ietf-webtrans-http3-07 to -12.
	WebTransportMaxSessionsDraft07 ID = 0xc671706a
	// WTMaxSessions is SETTINGS_WT_MAX_SESSIONS of drafts -13 and -14.
	WTMaxSessions ID = 0x14e9cd29
	// WTEnabled is SETTINGS_WT_ENABLED of drafts -15 and later.
	WTEnabled ID = 0x2c7cf000
	// Flow-control initial values (draft-ietf-webtrans-http3, Section 5.3).
	WTInitialMaxData        ID = 0x2b61
	WTInitialMaxStreamsUni  ID = 0x2b64
	WTInitialMaxStreamsBidi ID = 0x2b65
)

// The known identifiers, in the order Append writes them.
var knownIDs = [...]ID{
	QPACKMaxTableCapacity, MaxFieldSectionSize, QPACKBlockedStreams, EnableConnectProtocol,
	H3Datagram, H3DatagramDraft04, EnableWebTransport, WebTransportMaxSessionsDraft07,
	WTMaxSessions, WTEnabled, WTInitialMaxData, WTInitialMaxStreamsUni, WTInitialMaxStreamsBidi,
}

func knownIndex(id ID) int {
	switch id {
	case QPACKMaxTableCapacity:
		return 0
	case MaxFieldSectionSize:
		return 1
	case QPACKBlockedStreams:
		return 2
	case EnableConnectProtocol:
		return 3
	case H3Datagram:
		return 4
	case H3DatagramDraft04:
		return 5
	case EnableWebTransport:
		return 6
	case WebTransportMaxSessionsDraft07:
		return 7
	case WTMaxSessions:
		return 8
	case WTEnabled:
		return 9
	case WTInitialMaxData:
		return 10
	case WTInitialMaxStreamsUni:
		return 11
	case WTInitialMaxStreamsBidi:
		return 12
	}
	return -1
}

var idNames = map[ID]string{
	QPACKMaxTableCapacity: "SETTINGS_QPACK_MAX_TABLE_CAPACITY", MaxFieldSectionSize: "SETTINGS_MAX_FIELD_SECTION_SIZE",
	QPACKBlockedStreams: "SETTINGS_QPACK_BLOCKED_STREAMS", EnableConnectProtocol: "SETTINGS_ENABLE_CONNECT_PROTOCOL",
	H3Datagram: "SETTINGS_H3_DATAGRAM", H3DatagramDraft04: "SETTINGS_H3_DATAGRAM(draft-04)",
	EnableWebTransport: "SETTINGS_ENABLE_WEBTRANSPORT", WebTransportMaxSessionsDraft07: "SETTINGS_WEBTRANSPORT_MAX_SESSIONS(draft-07)",
	WTMaxSessions: "SETTINGS_WT_MAX_SESSIONS", WTEnabled: "SETTINGS_WT_ENABLED",
	WTInitialMaxData: "SETTINGS_WT_INITIAL_MAX_DATA", WTInitialMaxStreamsUni: "SETTINGS_WT_INITIAL_MAX_STREAMS_UNI",
	WTInitialMaxStreamsBidi: "SETTINGS_WT_INITIAL_MAX_STREAMS_BIDI",
}

func (id ID) String() string {
	if s, ok := idNames[id]; ok {
		return s
	}
	if frames.IsReserved(uint64(id)) {
		return fmt.Sprintf("GREASE(%#x)", uint64(id))
	}
	return fmt.Sprintf("UNKNOWN(%#x)", uint64(id))
}

// IsHTTP2Only reports the identifiers reserved because they are HTTP/2
// settings with no HTTP/3 meaning: 0x00 and 0x02 to 0x05 (RFC 9114, Section
// 7.2.4.1; 0x00 is reserved by IANA and rejected by several peers).
func (id ID) IsHTTP2Only() bool { return id == 0x00 || (id >= 0x02 && id <= 0x05) }

// isBoolean reports settings whose only valid values are 0 and 1.
func (id ID) isBoolean() bool {
	switch id {
	case EnableConnectProtocol, H3Datagram, H3DatagramDraft04, EnableWebTransport, WTEnabled:
		return true
	}
	return false
}

// Setting is one identifier and value.
type Setting struct {
	ID    ID
	Value uint64
}

// Settings is the content of one SETTINGS frame: the known parameters, and
// unknown (including reserved) ones kept in order of arrival.
type Settings struct {
	values  [len(knownIDs)]uint64
	present uint32
	// Unknown holds the parameters this package does not interpret.
	Unknown []Setting
}

// Get returns a setting's value and whether it was present.
func (s *Settings) Get(id ID) (uint64, bool) {
	if i := knownIndex(id); i >= 0 {
		return s.values[i], s.present&(1<<i) != 0
	}
	for _, u := range s.Unknown {
		if u.ID == id {
			return u.Value, true
		}
	}
	return 0, false
}

// Value returns a setting's value, or def when it is absent.
func (s *Settings) Value(id ID, def uint64) uint64 {
	if v, ok := s.Get(id); ok {
		return v
	}
	return def
}

// Has reports whether id was present.
func (s *Settings) Has(id ID) bool { _, ok := s.Get(id); return ok }

// Enabled reports whether a setting is present with a nonzero value.
func (s *Settings) Enabled(id ID) bool { v, ok := s.Get(id); return ok && v != 0 }

// Set sets id to v, replacing an earlier value. v must be at most 2^62-1.
func (s *Settings) Set(id ID, v uint64) {
	if i := knownIndex(id); i >= 0 {
		s.values[i] = v
		s.present |= 1 << i
		return
	}
	for k := range s.Unknown {
		if s.Unknown[k].ID == id {
			s.Unknown[k].Value = v
			return
		}
	}
	s.Unknown = append(s.Unknown, Setting{ID: id, Value: v})
}

// Delete removes id.
func (s *Settings) Delete(id ID) {
	if i := knownIndex(id); i >= 0 {
		s.values[i] = 0
		s.present &^= 1 << i
		return
	}
	for k := range s.Unknown {
		if s.Unknown[k].ID == id {
			s.Unknown = append(s.Unknown[:k], s.Unknown[k+1:]...)
			return
		}
	}
}

// Reset empties s, keeping the Unknown slice's capacity.
func (s *Settings) Reset() {
	s.values = [len(knownIDs)]uint64{}
	s.present = 0
	s.Unknown = s.Unknown[:0]
}

// All calls f for every setting present, known ones first in a fixed order.
func (s *Settings) All(f func(Setting) bool) {
	for i, id := range knownIDs {
		if s.present&(1<<i) != 0 && !f(Setting{ID: id, Value: s.values[i]}) {
			return
		}
	}
	for _, u := range s.Unknown {
		if !f(u) {
			return
		}
	}
}

// Len returns the number of settings present.
func (s *Settings) Len() int {
	n := len(s.Unknown)
	for i := range knownIDs {
		if s.present&(1<<i) != 0 {
			n++
		}
	}
	return n
}

// Errors, all H3_SETTINGS_ERROR (connection errors).
var (
	ErrTruncated       = &frames.Error{Code: frames.H3SettingsError, Connection: true, Reason: "SETTINGS payload ends inside a parameter"}
	ErrDuplicate       = &frames.Error{Code: frames.H3SettingsError, Connection: true, Reason: "duplicate setting identifier"}
	ErrHTTP2Setting    = &frames.Error{Code: frames.H3SettingsError, Connection: true, Reason: "HTTP/2-only setting identifier"}
	ErrBooleanValue    = &frames.Error{Code: frames.H3SettingsError, Connection: true, Reason: "boolean setting with a value other than 0 or 1"}
	ErrDatagramNoTP    = &frames.Error{Code: frames.H3SettingsError, Connection: true, Reason: "SETTINGS_H3_DATAGRAM without the max_datagram_frame_size transport parameter"}
	ErrTooManySettings = &frames.Error{Code: frames.H3ExcessiveLoad, Connection: true, Reason: "too many settings"}
)

// MaxSettings bounds the number of parameters one SETTINGS frame may carry.
const MaxSettings = 256

// Parse parses a SETTINGS frame payload into s, replacing its content. It
// applies the syntactic rules: truncation, duplicates, HTTP/2-only
// identifiers and boolean values (RFC 9114, Section 7.2.4; RFC 9220, Section
// 3; RFC 9297, Section 2.1.1; draft-ietf-webtrans-http3-02 and -16). Rules
// that need the transport parameters are in Validate. Parsing into a reused
// Settings does not allocate unless more unknown settings arrive than fit in
// its Unknown capacity.
func (s *Settings) Parse(p []byte) error {
	s.Reset()
	count := 0
	for len(p) > 0 {
		id, n, err := varint.Parse(p)
		if err != nil {
			return ErrTruncated
		}
		p = p[n:]
		v, n, err := varint.Parse(p)
		if err != nil {
			return ErrTruncated
		}
		p = p[n:]
		count++
		if count > MaxSettings {
			return ErrTooManySettings
		}
		sid := ID(id)
		if sid.IsHTTP2Only() {
			return ErrHTTP2Setting
		}
		if sid.isBoolean() && v > 1 {
			return ErrBooleanValue
		}
		if i := knownIndex(sid); i >= 0 {
			if s.present&(1<<i) != 0 {
				return ErrDuplicate
			}
			s.values[i] = v
			s.present |= 1 << i
			continue
		}
		for _, u := range s.Unknown {
			if u.ID == sid {
				return ErrDuplicate
			}
		}
		s.Unknown = append(s.Unknown, Setting{ID: sid, Value: v})
	}
	return nil
}

// Validate applies the rules that depend on the peer's QUIC transport
// parameters: SETTINGS_H3_DATAGRAM = 1 requires max_datagram_frame_size
// (RFC 9297, Section 2.1.1).
func (s *Settings) Validate(peerDatagramTP bool) error {
	if !peerDatagramTP && (s.Enabled(H3Datagram) || s.Enabled(H3DatagramDraft04)) {
		return ErrDatagramNoTP
	}
	return nil
}

// AppendPayload appends the SETTINGS payload: known settings in a fixed
// order, then the unknown ones.
func (s *Settings) AppendPayload(b []byte) []byte {
	s.All(func(st Setting) bool {
		b = varint.MustAppend(b, uint64(st.ID))
		b = varint.MustAppend(b, st.Value)
		return true
	})
	return b
}

// PayloadLen returns the size of the SETTINGS payload.
func (s *Settings) PayloadLen() int {
	n := 0
	s.All(func(st Setting) bool {
		n += varint.Len(uint64(st.ID)) + varint.Len(st.Value)
		return true
	})
	return n
}

// AppendFrame appends a whole SETTINGS frame.
func (s *Settings) AppendFrame(b []byte) []byte {
	b = frames.AppendHeader(b, frames.TypeSettings, uint64(s.PayloadLen()))
	return s.AppendPayload(b)
}

// AddGrease adds a reserved setting 0x1f*N+0x21 with a value, both derived
// from seed (RFC 9114, Section 7.2.4.1), so that peers are kept tolerant of
// unknown settings. Callers pass a random seed per connection.
func (s *Settings) AddGrease(seed uint64) {
	id := ID(frames.ReservedValue(seed % (1 << 20)))
	s.Set(id, (seed>>20)%(1<<30))
}

func (s *Settings) String() string {
	b := []byte("{")
	first := true
	s.All(func(st Setting) bool {
		if !first {
			b = append(b, ", "...)
		}
		first = false
		b = fmt.Appendf(b, "%s=%d", st.ID, st.Value)
		return true
	})
	return string(append(b, '}'))
}
