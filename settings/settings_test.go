package settings

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/quicwt/quicwt/frames"
	"github.com/quicwt/quicwt/varint"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// chromeGrease is a reserved identifier 0x1f*N+0x21 (N = 0x2a6b3c4d5).
const chromeGrease ID = 0x522fc4d5ec

// chromeSettings is the SETTINGS payload Chromium 156 sends, in its order
// (browser.md "What Chromium 156 sends"), with one GREASE setting.
const chromeSettings = "" +
	"06 80 00 40 00" + // MAX_FIELD_SECTION_SIZE = 16384
	"33 01" + // H3_DATAGRAM = 1
	"01 80 01 00 00" + // QPACK_MAX_TABLE_CAPACITY = 65536
	"07 40 64" + // QPACK_BLOCKED_STREAMS = 100
	"80 ff d2 77 01" + // H3_DATAGRAM draft-04 = 1
	"ab 60 37 42 01" + // ENABLE_WEBTRANSPORT = 1
	"c0 00 00 52 2f c4 d5 ec 40 5f" // GREASE = 95

// firefoxSettings is what Firefox sends (browser.md; spec.md section 4).
const firefoxSettings = "" +
	"01 80 01 00 00" + // QPACK_MAX_TABLE_CAPACITY = 65536
	"07 14" + // QPACK_BLOCKED_STREAMS = 20
	"ab 60 37 42 01" + // ENABLE_WEBTRANSPORT = 1
	"80 ff d2 77 01" + // H3_DATAGRAM draft-04 = 1
	"33 01" + // H3_DATAGRAM = 1
	"08 01" // ENABLE_CONNECT_PROTOCOL = 1

// wtgoServerSettings is webtransport-go's server (spec.md section 4),
// without the optional flow-control settings.
const wtgoServerSettings = "" +
	"06 80 00 40 00" + // MAX_FIELD_SECTION_SIZE = 16384
	"08 01" + // ENABLE_CONNECT_PROTOCOL = 1
	"33 01" + // H3_DATAGRAM = 1
	"ab 60 37 42 01" + // ENABLE_WEBTRANSPORT = 1
	"ac 7c f0 00 01" + // WT_ENABLED = 1
	"94 e9 cd 29 ff ff ff ff ff ff ff ff" // WT_MAX_SESSIONS = 2^62-1

// wtgoClientSettings is webtransport-go's client.
const wtgoClientSettings = "" +
	"33 01" + // H3_DATAGRAM = 1
	"ac 7c f0 00 01" // WT_ENABLED = 1

func mustParse(t testing.TB, payload string) *Settings {
	t.Helper()
	var s Settings
	if err := s.Parse(unhex(t, payload)); err != nil {
		t.Fatalf("Parse(%s): %v", payload, err)
	}
	return &s
}

func build(kv ...uint64) *Settings {
	var s Settings
	for i := 0; i < len(kv); i += 2 {
		s.Set(ID(kv[i]), kv[i+1])
	}
	return &s
}

func TestChromeSettings(t *testing.T) {
	s := mustParse(t, chromeSettings)
	want := map[ID]uint64{
		MaxFieldSectionSize: 16384, H3Datagram: 1, QPACKMaxTableCapacity: 65536, QPACKBlockedStreams: 100,
		H3DatagramDraft04: 1, EnableWebTransport: 1, chromeGrease: 95,
	}
	if s.Len() != len(want) {
		t.Fatalf("Len = %d, want %d: %v", s.Len(), len(want), s)
	}
	for id, v := range want {
		if got, ok := s.Get(id); !ok || got != v {
			t.Errorf("%v = %d, %v; want %d", id, got, ok, v)
		}
	}
	if len(s.Unknown) != 1 || s.Unknown[0] != (Setting{chromeGrease, 95}) {
		t.Fatalf("Unknown = %v", s.Unknown)
	}
	for _, id := range []ID{EnableConnectProtocol, WebTransportMaxSessionsDraft07, WTMaxSessions, WTEnabled,
		WTInitialMaxData, WTInitialMaxStreamsUni, WTInitialMaxStreamsBidi} {
		if s.Has(id) {
			t.Errorf("Chrome does not send %v", id)
		}
	}
	if err := s.Validate(true); err != nil {
		t.Fatal(err)
	}
	// Chrome's datagram settings need our max_datagram_frame_size TP.
	if err := s.Validate(false); !errors.Is(err, ErrDatagramNoTP) || frames.CodeOf(err) != frames.H3SettingsError {
		t.Fatalf("Validate(false) = %v", err)
	}
	if s.offers() != 1<<Draft02 {
		t.Fatalf("Offers = %b", s.offers())
	}
	// Against a multi-draft server (ours, or webtransport-go's): draft-02.
	if d := Negotiate(s, ourServer()); d != Draft02 {
		t.Fatalf("Chrome vs our server: %v", d)
	}
	if d := Negotiate(s, mustParse(t, wtgoServerSettings)); d != Draft02 {
		t.Fatalf("Chrome vs webtransport-go server: %v", d)
	}
	if FlowControl(Draft02, s, ourServer()) {
		t.Fatal("draft-02 has no flow control")
	}
	// Parse-append-parse.
	roundTrip(t, s)
}

func TestFirefoxSettings(t *testing.T) {
	s := mustParse(t, firefoxSettings)
	if s.Len() != 6 || len(s.Unknown) != 0 || s.Value(QPACKBlockedStreams, 0) != 20 || !s.Enabled(EnableConnectProtocol) {
		t.Fatalf("parsed %v", s)
	}
	if d := Negotiate(s, ourServer()); d != Draft02 {
		t.Fatalf("Firefox vs our server: %v", d)
	}
	// Firefox needs only ENABLE_WEBTRANSPORT from a server (browser.md):
	// draft-02 needs no ENABLE_CONNECT_PROTOCOL.
	minimal := build(uint64(EnableWebTransport), 1, uint64(H3Datagram), 1)
	if d := Negotiate(s, minimal); d != Draft02 {
		t.Fatalf("Firefox vs minimal draft-02 server: %v", d)
	}
	// A server offering only the new drafts is unreachable (spec.md pitfall 2).
	if d := Negotiate(s, build(0x08, 1, 0x33, 1, uint64(WTEnabled), 1, uint64(WTMaxSessions), 1)); d != DraftNone {
		t.Fatalf("Firefox vs draft-15-only server: %v", d)
	}
	roundTrip(t, s)
}

func TestWebTransportGoSettings(t *testing.T) {
	client := mustParse(t, wtgoClientSettings)
	server := mustParse(t, wtgoServerSettings)
	if server.Value(WTMaxSessions, 0) != varint.Max {
		t.Fatalf("WT_MAX_SESSIONS = %d", server.Value(WTMaxSessions, 0))
	}
	if server.offers() != 1<<Draft02|1<<Draft13|1<<Draft15 {
		t.Fatalf("server offers %b", server.offers())
	}
	if d := Negotiate(client, server); d != Draft15 || d.Protocol() != "webtransport-h3" {
		t.Fatalf("webtransport-go client vs server: %v", d)
	}
	if d := Negotiate(client, ourServer()); d != Draft15 {
		t.Fatalf("webtransport-go client vs our server: %v", d)
	}
	// The webtransport-go client cannot reach a draft-02/07-only server.
	if d := Negotiate(client, build(0x08, 1, 0x33, 1, uint64(EnableWebTransport), 1, uint64(WebTransportMaxSessionsDraft07), 1)); d != DraftNone {
		t.Fatalf("vs draft-02/07 server: %v", d)
	}
	// No flow control unless both sides send initial limits.
	if FlowControl(Draft15, client, server) {
		t.Fatal("flow control without FC settings")
	}
	fcClient := mustParse(t, wtgoClientSettings+"80 00 2b 61 44 00") // + WT_INITIAL_MAX_DATA = 1024
	fcServer := mustParse(t, wtgoServerSettings+"80 00 2b 65 10")    // + WT_INITIAL_MAX_STREAMS_BIDI = 16
	if !FlowControl(Draft15, fcClient, fcServer) || FlowControl(Draft15, fcClient, server) || FlowControl(Draft15, client, fcServer) {
		t.Fatal("flow control needs both sides")
	}
	roundTrip(t, client)
	roundTrip(t, server)
}

// ourServer is the configuration spec.md section 4 suggests.
func ourServer() *Settings {
	return build(uint64(EnableConnectProtocol), 1, uint64(H3Datagram), 1, uint64(EnableWebTransport), 1,
		uint64(WTEnabled), 1, uint64(WTMaxSessions), 1)
}

func TestNegotiateTable(t *testing.T) {
	chrome07 := mustParse(t, chromeSettings+"c0 00 00 00 c6 71 70 6a 10") // + 0xc671706a = 16
	d13 := build(0x33, 1, uint64(WTMaxSessions), 1)
	cases := []struct {
		name           string
		client, server *Settings
		want           Draft
	}{
		{"chrome draft-07 vs draft-07 server", chrome07, build(0x08, 1, 0x33, 1, uint64(EnableWebTransport), 1, uint64(WebTransportMaxSessionsDraft07), 1), Draft07},
		{"chrome draft-07 vs draft-07 server without 0x08", chrome07, build(0x33, 1, uint64(EnableWebTransport), 1, uint64(WebTransportMaxSessionsDraft07), 1), Draft02},
		{"draft-07 needs 0x33, not 0xffd277", chrome07, build(0x08, 1, uint64(H3DatagramDraft04), 1, uint64(WebTransportMaxSessionsDraft07), 1), DraftNone},
		{"draft-02 accepts 0xffd277 alone", build(uint64(H3DatagramDraft04), 1, uint64(EnableWebTransport), 1), build(uint64(H3DatagramDraft04), 1, uint64(EnableWebTransport), 1), Draft02},
		{"draft-02 needs a datagram setting", build(uint64(EnableWebTransport), 1), build(0x33, 1, uint64(EnableWebTransport), 1), DraftNone},
		{"draft-13", d13, build(0x08, 1, 0x33, 1, uint64(WTMaxSessions), 4), Draft13},
		{"draft-13 max sessions 0 is off", d13, build(0x08, 1, 0x33, 1, uint64(WTMaxSessions), 0), DraftNone},
		{"draft-15 WT_ENABLED = 0 is off", build(0x33, 1, uint64(WTEnabled), 0), build(0x08, 1, 0x33, 1, uint64(WTEnabled), 1), DraftNone},
		{"H3_DATAGRAM = 0", build(0x33, 0, uint64(WTEnabled), 1), build(0x08, 1, 0x33, 1, uint64(WTEnabled), 1), DraftNone},
		{"highest common wins", build(0x33, 1, uint64(EnableWebTransport), 1, uint64(WTMaxSessions), 1, uint64(WTEnabled), 1), ourServer(), Draft15},
		{"empty", &Settings{}, &Settings{}, DraftNone},
	}
	for _, c := range cases {
		if got := Negotiate(c.client, c.server); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestFlowControlByDraft(t *testing.T) {
	ms07 := build(uint64(WebTransportMaxSessionsDraft07), 16)
	ms07one := build(uint64(WebTransportMaxSessionsDraft07), 1)
	ms13 := build(uint64(WTMaxSessions), 2)
	fc := build(uint64(WTInitialMaxStreamsUni), 1)
	cases := []struct {
		d    Draft
		a, b *Settings
		want bool
	}{
		{Draft07, ms07, ms07, true},
		{Draft07, ms07, ms07one, false},
		{Draft07, fc, fc, true},
		{Draft13, ms13, ms13, true},
		{Draft13, ms07, ms07, false},
		{Draft15, ms13, ms13, false}, // from -15 only the initial limits count
		{Draft15, fc, fc, true},
		{Draft02, fc, fc, false},
		{DraftNone, fc, fc, false},
		{Draft15, build(uint64(WTInitialMaxData), 0), fc, false},
	}
	for i, c := range cases {
		if got := FlowControl(c.d, c.a, c.b); got != c.want {
			t.Errorf("case %d (%v): %v, want %v", i, c.d, got, c.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		name    string
		payload string
		want    error
	}{
		{"duplicate known", "33 01 06 10 33 01", ErrDuplicate},
		{"duplicate unknown", "21 00 40 40 00 21 05", ErrDuplicate},
		{"duplicate via long encoding", "06 10 40 06 10", ErrDuplicate},
		{"reserved 0x00", "00 00", ErrHTTP2Setting},
		{"HTTP/2 0x02", "02 00", ErrHTTP2Setting},
		{"HTTP/2 0x03", "03 24", ErrHTTP2Setting},
		{"HTTP/2 0x04", "04 80 00 ff ff", ErrHTTP2Setting},
		{"HTTP/2 0x05", "05 40 00", ErrHTTP2Setting},
		{"HTTP/2 0x02 non-minimal", "40 02 00", ErrHTTP2Setting},
		{"ENABLE_CONNECT_PROTOCOL 2", "08 02", ErrBooleanValue},
		{"H3_DATAGRAM 2", "33 02", ErrBooleanValue},
		{"H3_DATAGRAM draft-04 2", "80 ff d2 77 02", ErrBooleanValue},
		{"ENABLE_WEBTRANSPORT 2", "ab 60 37 42 02", ErrBooleanValue},
		{"WT_ENABLED 2", "ac 7c f0 00 02", ErrBooleanValue},
		{"WT_ENABLED huge", "ac 7c f0 00 ff ff ff ff ff ff ff ff", ErrBooleanValue},
		{"truncated id", "33 01 40", ErrTruncated},
		{"missing value", "33", ErrTruncated},
		{"truncated value", "06 80 00 40", ErrTruncated},
	}
	for _, c := range cases {
		var s Settings
		err := s.Parse(unhex(t, c.payload))
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
			continue
		}
		var fe *frames.Error
		if !errors.As(err, &fe) || fe.Code != frames.H3SettingsError || !fe.Connection {
			t.Errorf("%s: %v is not a connection H3_SETTINGS_ERROR", c.name, err)
		}
	}
	// Values 0 and 1 of the boolean settings, large values of the others.
	ok := "08 00 33 01 80 ff d2 77 00 ab 60 37 42 01 ac 7c f0 00 01 c0 00 00 00 c6 71 70 6a ff ff ff ff ff ff ff ff"
	if s := mustParse(t, ok); s.Len() != 6 {
		t.Fatalf("Len = %d", s.Len())
	}
	// Unknown identifiers up to 2^62-1 are kept.
	s := mustParse(t, "ff ff ff ff ff ff ff ff 07 7f ff 00")
	if v, ok := s.Get(varint.Max); !ok || v != 7 || s.Value(0x3fff, 9) != 0 {
		t.Fatalf("unknown ids: %v", s)
	}
}

// TestTruncatedEverywhere cuts a valid payload inside each parameter.
func TestTruncatedEverywhere(t *testing.T) {
	full := unhex(t, chromeSettings)
	boundaries := map[int]bool{0: true}
	for p := full; len(p) > 0; {
		_, n1, _ := varint.Parse(p)
		_, n2, _ := varint.Parse(p[n1:])
		p = p[n1+n2:]
		boundaries[len(full)-len(p)] = true
	}
	for cut := 0; cut <= len(full); cut++ {
		var s Settings
		err := s.Parse(full[:cut])
		if boundaries[cut] != (err == nil) {
			t.Fatalf("cut %d: %v", cut, err)
		}
		if err != nil && !errors.Is(err, ErrTruncated) {
			t.Fatalf("cut %d: %v", cut, err)
		}
	}
}

func TestTooManySettings(t *testing.T) {
	var b []byte
	for i := uint64(0); i < MaxSettings; i++ {
		b = varint.MustAppend(b, 0x100+i)
		b = varint.MustAppend(b, i)
	}
	var s Settings
	if err := s.Parse(b); err != nil || s.Len() != MaxSettings {
		t.Fatalf("%d settings: %v", MaxSettings, err)
	}
	b = append(b, 0x21, 0x00)
	err := s.Parse(b)
	if !errors.Is(err, ErrTooManySettings) || frames.CodeOf(err) != frames.H3ExcessiveLoad {
		t.Fatalf("%d settings: %v", MaxSettings+1, err)
	}
}

func roundTrip(t *testing.T, s *Settings) {
	t.Helper()
	p := s.AppendPayload(nil)
	if len(p) != s.PayloadLen() {
		t.Fatalf("PayloadLen = %d, appended %d", s.PayloadLen(), len(p))
	}
	var s2 Settings
	if err := s2.Parse(p); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(s2.AppendPayload(nil), p) || s2.String() != s.String() || s2.Len() != s.Len() {
		t.Fatalf("round trip: %v -> %v", s, &s2)
	}
	f := s.AppendFrame(nil)
	fr, n, err := frames.ParseFrame(f, 1<<16)
	if err != nil || n != len(f) || fr.Type != frames.TypeSettings || !bytes.Equal(fr.Payload, p) {
		t.Fatalf("AppendFrame: %+v %d %v", fr, n, err)
	}
}

// TestAppendExact checks the byte-exact SETTINGS frame of the suggested
// server configuration: known settings in a fixed order, unknown ones in
// order of insertion.
func TestAppendExact(t *testing.T) {
	s := ourServer()
	s.Set(MaxFieldSectionSize, 16384)
	s.Set(0x21, 1)
	want := unhex(t, "04 1a"+
		"06 80 00 40 00"+
		"08 01"+
		"33 01"+
		"ab 60 37 42 01"+
		"94 e9 cd 29 01"+
		"ac 7c f0 00 01"+
		"21 01")
	if got := s.AppendFrame(nil); !bytes.Equal(got, want) {
		t.Fatalf("AppendFrame\n got % x\nwant % x", got, want)
	}
	if s.String() != "{SETTINGS_MAX_FIELD_SECTION_SIZE=16384, SETTINGS_ENABLE_CONNECT_PROTOCOL=1, SETTINGS_H3_DATAGRAM=1, "+
		"SETTINGS_ENABLE_WEBTRANSPORT=1, SETTINGS_WT_MAX_SESSIONS=1, SETTINGS_WT_ENABLED=1, GREASE(0x21)=1}" {
		t.Fatalf("String = %s", s)
	}
}

func TestAccessors(t *testing.T) {
	var s Settings
	if s.Has(H3Datagram) || s.Enabled(H3Datagram) || s.Value(H3Datagram, 7) != 7 || s.Len() != 0 {
		t.Fatal("empty")
	}
	s.Set(H3Datagram, 0)
	if !s.Has(H3Datagram) || s.Enabled(H3Datagram) || s.Value(H3Datagram, 7) != 0 {
		t.Fatal("zero value")
	}
	s.Set(H3Datagram, 1)
	s.Set(0x1234, 5)
	s.Set(0x1234, 6)
	s.Set(0x21, 0)
	if s.Len() != 3 || s.Value(0x1234, 0) != 6 || !s.Has(0x21) || len(s.Unknown) != 2 {
		t.Fatalf("set: %v", &s)
	}
	s.Delete(0x1234)
	s.Delete(H3Datagram)
	s.Delete(0x9999)
	if s.Len() != 1 || s.Has(0x1234) || s.Has(H3Datagram) {
		t.Fatalf("delete: %v", &s)
	}
	n := 0
	s.Set(H3Datagram, 1)
	s.Set(EnableConnectProtocol, 1)
	s.All(func(Setting) bool { n++; return n < 2 })
	if n != 2 {
		t.Fatalf("All did not stop: %d", n)
	}
	n = 0
	s.All(func(st Setting) bool { n++; return st.ID != 0x21 })
	if n != 3 {
		t.Fatalf("All over unknown did not stop: %d", n)
	}
	s.Reset()
	if s.Len() != 0 || s.Has(0x21) {
		t.Fatal("reset")
	}
}

func TestGrease(t *testing.T) {
	for _, seed := range []uint64{0, 1, 0xdeadbeef, ^uint64(0), 1 << 63} {
		var s Settings
		s.AddGrease(seed)
		if len(s.Unknown) != 1 || !frames.IsReserved(uint64(s.Unknown[0].ID)) || s.Unknown[0].Value >= 1<<30 {
			t.Fatalf("seed %#x: %v", seed, &s)
		}
		if !strings.HasPrefix(s.Unknown[0].ID.String(), "GREASE(") {
			t.Fatalf("name %s", s.Unknown[0].ID)
		}
		roundTrip(t, &s)
		// A receiver ignores it.
		if Negotiate(&s, ourServer()) != DraftNone {
			t.Fatal("GREASE negotiated something")
		}
	}
}

func TestNames(t *testing.T) {
	cases := map[ID]string{
		QPACKMaxTableCapacity: "SETTINGS_QPACK_MAX_TABLE_CAPACITY", MaxFieldSectionSize: "SETTINGS_MAX_FIELD_SECTION_SIZE",
		QPACKBlockedStreams: "SETTINGS_QPACK_BLOCKED_STREAMS", EnableConnectProtocol: "SETTINGS_ENABLE_CONNECT_PROTOCOL",
		H3Datagram: "SETTINGS_H3_DATAGRAM", H3DatagramDraft04: "SETTINGS_H3_DATAGRAM(draft-04)",
		EnableWebTransport: "SETTINGS_ENABLE_WEBTRANSPORT", WebTransportMaxSessionsDraft07: "SETTINGS_WEBTRANSPORT_MAX_SESSIONS(draft-07)",
		WTMaxSessions: "SETTINGS_WT_MAX_SESSIONS", WTEnabled: "SETTINGS_WT_ENABLED",
		WTInitialMaxData: "SETTINGS_WT_INITIAL_MAX_DATA", WTInitialMaxStreamsUni: "SETTINGS_WT_INITIAL_MAX_STREAMS_UNI",
		WTInitialMaxStreamsBidi: "SETTINGS_WT_INITIAL_MAX_STREAMS_BIDI", 0x40: "GREASE(0x40)", 0x41: "UNKNOWN(0x41)",
	}
	for id, want := range cases {
		if id.String() != want {
			t.Errorf("%#x: %q, want %q", uint64(id), id.String(), want)
		}
	}
	// Identifier values as spec.md section 2 lists them.
	values := map[ID]uint64{
		QPACKMaxTableCapacity: 0x01, MaxFieldSectionSize: 0x06, QPACKBlockedStreams: 0x07, EnableConnectProtocol: 0x08,
		H3Datagram: 0x33, H3DatagramDraft04: 0xffd277, EnableWebTransport: 0x2b603742,
		WebTransportMaxSessionsDraft07: 0xc671706a, WTMaxSessions: 0x14e9cd29, WTEnabled: 0x2c7cf000,
		WTInitialMaxData: 0x2b61, WTInitialMaxStreamsUni: 0x2b64, WTInitialMaxStreamsBidi: 0x2b65,
	}
	for id, v := range values {
		if uint64(id) != v {
			t.Errorf("%v = %#x, want %#x", id, uint64(id), v)
		}
	}
	for id := ID(0); id < 0x40; id++ {
		want := id == 0 || (id >= 2 && id <= 5)
		if id.IsHTTP2Only() != want {
			t.Errorf("%#x IsHTTP2Only = %v", uint64(id), !want)
		}
	}
	drafts := map[Draft][2]string{
		DraftNone: {"none", "webtransport"}, Draft02: {"draft-02", "webtransport"}, Draft07: {"draft-07", "webtransport"},
		Draft13: {"draft-13", "webtransport"}, Draft15: {"draft-15", "webtransport-h3"},
	}
	for d, w := range drafts {
		if d.String() != w[0] || d.Protocol() != w[1] {
			t.Errorf("%d: %s %s", int(d), d, d.Protocol())
		}
	}
}

// TestParseNoAlloc: parsing into a reused Settings does not allocate.
func TestParseNoAlloc(t *testing.T) {
	p := unhex(t, chromeSettings)
	var s Settings
	if err := s.Parse(p); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if err := s.Parse(p); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("allocs = %v", allocs)
	}
}
