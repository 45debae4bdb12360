package fuzz

// The seed corpora under testdata/fuzz/<target>/ are generated from the
// encoders of the framing core by the seeds function below. To regenerate
// them after changing an encoder or a seed:
//
//	QUICWT_GEN_CORPUS=1 go test -run=TestGenerateCorpus ./fuzz
//
// TestCorpusUpToDate fails if the committed files differ from the output of
// the generator, so stale or hand-edited seeds are caught.

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/quicwt/quicwt/frames"
	"github.com/quicwt/quicwt/settings"
	"github.com/quicwt/quicwt/varint"
)

type seed struct {
	name string
	args []any // []byte, uint64, uint16 or bool, in the target's order
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func settingsPayload(kv ...uint64) []byte {
	var s settings.Settings
	for i := 0; i < len(kv); i += 2 {
		s.Set(settings.ID(kv[i]), kv[i+1])
	}
	return s.AppendPayload(nil)
}

// rawParams encodes id/value pairs as given, duplicates and forbidden
// identifiers included, for seeds of rejected SETTINGS.
func rawParams(kv ...uint64) []byte {
	var b []byte
	for _, v := range kv {
		b = varint.MustAppend(b, v)
	}
	return b
}

func chrome() []byte {
	return settingsPayload(uint64(settings.MaxFieldSectionSize), 16384, uint64(settings.H3Datagram), 1,
		uint64(settings.QPACKMaxTableCapacity), 65536, uint64(settings.QPACKBlockedStreams), 100,
		uint64(settings.H3DatagramDraft04), 1, uint64(settings.EnableWebTransport), 1,
		frames.ReservedValue(0x2a6b3c4d5), 95)
}

func firefox() []byte {
	return settingsPayload(uint64(settings.QPACKMaxTableCapacity), 65536, uint64(settings.QPACKBlockedStreams), 20,
		uint64(settings.EnableWebTransport), 1, uint64(settings.H3DatagramDraft04), 1,
		uint64(settings.H3Datagram), 1, uint64(settings.EnableConnectProtocol), 1)
}

func wtgoServer() []byte {
	return settingsPayload(uint64(settings.MaxFieldSectionSize), 16384, uint64(settings.EnableConnectProtocol), 1,
		uint64(settings.H3Datagram), 1, uint64(settings.EnableWebTransport), 1, uint64(settings.WTEnabled), 1,
		uint64(settings.WTMaxSessions), varint.Max, uint64(settings.WTInitialMaxData), 1<<60)
}

func capsules() []byte {
	var b []byte
	b = frames.AppendCapsule(b, frames.CapsuleDatagram, []byte("datagram"))
	b = frames.AppendVarintCapsule(b, frames.CapsuleMaxData, 1<<20)
	b = frames.AppendVarintCapsule(b, frames.CapsuleMaxStreamsBidi, 100)
	b = frames.AppendVarintCapsule(b, frames.CapsuleMaxStreamsUni, frames.MaxStreams)
	b = frames.AppendVarintCapsule(b, frames.CapsuleDataBlocked, 1<<20)
	b = frames.AppendVarintCapsule(b, frames.CapsuleStreamsBlockedBidi, 100)
	b = frames.AppendVarintCapsule(b, frames.CapsuleStreamsBlockedUni, 7)
	b = frames.AppendCapsule(b, frames.CapsuleType(0x17+0x29*5), []byte("grease"))
	b = frames.AppendDrainSession(b)
	return frames.AppendCloseSession(b, 0x1234, "going away")
}

func seeds() map[string][]seed {
	m := map[string][]seed{}

	// FuzzVarint(data []byte, v uint64): every spec.md and RFC 9000 vector,
	// length boundaries, truncations and values above 2^62-1.
	for _, v := range []uint64{0, 37, 63, 64, 0x41, 0x54, 15293, 16383, 16384, 0x2843, 0x78ae, 0xffd277,
		0x14e9cd29, 0x190b4d3d, 0x2b603742, 0x2c7cf000, 1<<30 - 1, 1 << 30, 0xc671706a, 494878333,
		151288809941952652, varint.Max} {
		enc := varint.MustAppend(nil, v)
		m["FuzzVarint"] = append(m["FuzzVarint"],
			seed{fmt.Sprintf("value-%#x", v), []any{enc, v}},
			seed{fmt.Sprintf("truncated-%#x", v), []any{enc[:len(enc)-1], v + 1}})
	}
	long, _ := varint.AppendWithLen(nil, 37, 8)
	m["FuzzVarint"] = append(m["FuzzVarint"],
		seed{"non-minimal-37", []any{long, uint64(37)}},
		seed{"over-max", []any{varint.MustAppend(nil, varint.Max), uint64(varint.Max + 1)}},
		seed{"all-ones", []any{varint.MustAppend(nil, 0), ^uint64(0)}})

	// FuzzFrameSequence(data []byte).
	m["FuzzFrameSequence"] = []seed{
		{"control-stream", []any{cat(
			frames.AppendFrame(nil, frames.TypeSettings, chrome()),
			frames.AppendFrame(nil, frames.Type(frames.ReservedValue(7)), []byte("grease")),
			frames.AppendGoaway(nil, 8),
			frames.AppendCancelPush(nil, 3),
			frames.AppendMaxPushID(nil, 16),
			frames.AppendPriorityUpdate(nil, frames.TypePriorityUpdateRequest, 4, []byte("u=1, i")),
			frames.AppendPriorityUpdate(nil, frames.TypePriorityUpdatePush, 1, nil),
			frames.AppendFrame(nil, frames.TypeOrigin, []byte{0, 5, 'h', 't', 't', 'p', 's'}),
		)}},
		{"request-stream", []any{cat(
			frames.AppendHeaders(nil, []byte{0, 0, 0xd1, 0xd7}),
			frames.AppendDataHeader(nil, 5), []byte("hello"),
			frames.AppendPushPromise(nil, 2, []byte{0, 0, 0xd1}),
			frames.AppendHeaders(nil, []byte{0, 0}),
		)}},
		{"connect-stream", []any{cat(
			frames.AppendHeaders(nil, []byte{0, 0, 0xd9}),
			frames.AppendDataHeader(nil, uint64(len(capsules()))), capsules(),
		)}},
		{"http2-types", []any{cat(
			frames.AppendFrame(nil, 0x02, []byte{1}), frames.AppendFrame(nil, 0x06, nil),
			frames.AppendFrame(nil, 0x08, nil), frames.AppendFrame(nil, 0x09, nil))}},
		{"webtransport-stream", []any{frames.AppendWebTransportBidiHeader(nil, 4)}},
		{"settings-rejected", []any{frames.AppendFrame(nil, frames.TypeSettings, rawParams(0x33, 2))}},
		{"goaway-trailing", []any{frames.AppendFrame(nil, frames.TypeGoaway, []byte{4, 0})}},
		{"too-large", []any{frames.AppendHeader(nil, frames.TypeHeaders, 1<<20)}},
		{"unknown-huge", []any{frames.AppendHeader(nil, 0x1234, varint.Max)}},
		{"truncated", []any{frames.AppendGoaway(nil, 1<<40)[:5]}},
	}

	// FuzzSettings(data []byte).
	m["FuzzSettings"] = []seed{
		{"chrome-156", []any{chrome()}},
		{"firefox", []any{firefox()}},
		{"webtransport-go-server", []any{wtgoServer()}},
		{"webtransport-go-client", []any{settingsPayload(uint64(settings.H3Datagram), 1, uint64(settings.WTEnabled), 1)}},
		{"chrome-draft07", []any{cat(chrome(), settingsPayload(uint64(settings.WebTransportMaxSessionsDraft07), 16))}},
		{"flow-control", []any{settingsPayload(uint64(settings.WTInitialMaxData), 1<<20,
			uint64(settings.WTInitialMaxStreamsUni), 100, uint64(settings.WTInitialMaxStreamsBidi), 100)}},
		{"empty", []any{[]byte{}}},
		{"duplicate", []any{rawParams(0x33, 1, 0x33, 1)}},
		{"duplicate-unknown", []any{rawParams(0x21, 0, 0x21, 1)}},
		{"http2-id", []any{rawParams(0x04, 100)}},
		{"boolean-2", []any{rawParams(uint64(settings.WTEnabled), 2)}},
		{"truncated", []any{chrome()[:len(chrome())-1]}},
	}

	// FuzzCapsuleStream(data, cuts []byte, maxSize uint16).
	all := capsules()
	// A GREASE capsule declaring 2^62-1 bytes followed by some of them.
	huge := cat(varint.MustAppend(nil, 0x17+0x29*2), varint.MustAppend(nil, varint.Max), make([]byte, 32))
	m["FuzzCapsuleStream"] = []seed{
		{"all-capsules-whole", []any{all, []byte{}, uint16(0)}},
		{"all-capsules-bytewise", []any{all, []byte{1}, uint16(0)}},
		{"all-capsules-mixed-cuts", []any{all, []byte{3, 0, 7, 1, 250}, uint16(0)}},
		{"small-limit", []any{all, []byte{5}, uint16(8)}},
		{"oversized-datagram", []any{frames.AppendCapsule(nil, frames.CapsuleDatagram, make([]byte, 40)), []byte{9}, uint16(16)}},
		{"http2-only", []any{frames.AppendCapsule(nil, frames.CapsuleMaxStreamData, []byte{4, 1}), []byte{2}, uint16(0)}},
		{"grease-huge", []any{huge, []byte{7}, uint16(0)}},
		{"truncated-close", []any{frames.AppendCloseSession(nil, 1, "bye")[:6], []byte{2}, uint16(0)}},
		{"close-max-message", []any{frames.AppendCloseSession(nil, 0xffffffff, strings.Repeat("é", 512)), []byte{100}, uint16(2000)}},
		{"max-streams-over", []any{frames.AppendVarintCapsule(nil, frames.CapsuleMaxStreamsBidi, frames.MaxStreams+1), []byte{4}, uint16(0)}},
	}

	// FuzzStreamPrefix(data []byte).
	m["FuzzStreamPrefix"] = []seed{
		{"control", []any{frames.AppendUniStreamType(nil, frames.StreamTypeControl)}},
		{"push", []any{cat(frames.AppendUniStreamType(nil, frames.StreamTypePush), varint.MustAppend(nil, 3))}},
		{"qpack-encoder", []any{frames.AppendUniStreamType(nil, frames.StreamTypeQPACKEncoder)}},
		{"qpack-decoder", []any{frames.AppendUniStreamType(nil, frames.StreamTypeQPACKDecoder)}},
		{"webtransport-uni", []any{cat(frames.AppendWebTransportUniHeader(nil, 4), []byte("data"))}},
		{"webtransport-uni-bad-session", []any{frames.AppendWebTransportUniHeader(nil, 6)}},
		{"webtransport-bidi", []any{cat(frames.AppendWebTransportBidiHeader(nil, 0x2840), []byte("data"))}},
		{"webtransport-bidi-bad-session", []any{frames.AppendWebTransportBidiHeader(nil, 1)}},
		{"grease", []any{frames.AppendUniStreamType(nil, frames.StreamType(frames.ReservedValue(1234)))}},
		{"datagram", []any{cat(frames.AppendDatagramHeader(nil, 4*frames.MaxQuarterStreamID), []byte("x"))}},
		{"truncated-webtransport", []any{frames.AppendWebTransportUniHeader(nil, 1<<40)[:4]}},
	}
	return m
}

// marshal writes a corpus file in the "go test fuzz v1" format.
func marshal(args []any) string {
	var b strings.Builder
	b.WriteString("go test fuzz v1\n")
	for _, a := range args {
		switch v := a.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%q)\n", v)
		case uint64:
			fmt.Fprintf(&b, "uint64(%d)\n", v)
		case uint16:
			fmt.Fprintf(&b, "uint16(%d)\n", v)
		case bool:
			fmt.Fprintf(&b, "bool(%v)\n", v)
		default:
			panic(fmt.Sprintf("unsupported seed type %T", a))
		}
	}
	return b.String()
}

// addSeeds adds the generated seeds of target to f (the committed files
// are loaded by the testing package as well).
func addSeeds(f *testing.F, target string) {
	for _, s := range seeds()[target] {
		f.Add(s.args...)
	}
}

func corpusDir(target string) string { return filepath.Join("testdata", "fuzz", target) }

// TestGenerateCorpus writes the seed corpora. It runs only with
// QUICWT_GEN_CORPUS=1; otherwise it checks that generation works.
func TestGenerateCorpus(t *testing.T) {
	m := seeds()
	if len(m) != 5 {
		t.Fatalf("%d targets", len(m))
	}
	if os.Getenv("QUICWT_GEN_CORPUS") != "1" {
		return
	}
	for target, ss := range m {
		dir := corpusDir(target)
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, s := range ss {
			if err := os.WriteFile(filepath.Join(dir, s.name), []byte(marshal(s.args)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("%s: %d seeds", target, len(ss))
	}
}

// TestCorpusUpToDate compares the committed corpus with the generator.
func TestCorpusUpToDate(t *testing.T) {
	if os.Getenv("QUICWT_GEN_CORPUS") == "1" {
		return // being regenerated
	}
	for target, ss := range seeds() {
		want := map[string]string{}
		for _, s := range ss {
			if _, dup := want[s.name]; dup {
				t.Fatalf("%s: duplicate seed name %s", target, s.name)
			}
			want[s.name] = marshal(s.args)
		}
		entries, err := os.ReadDir(corpusDir(target))
		if err != nil {
			t.Fatalf("%v (regenerate: QUICWT_GEN_CORPUS=1 go test -run=TestGenerateCorpus ./fuzz)", err)
		}
		var got []string
		for _, e := range entries {
			got = append(got, e.Name())
			b, err := os.ReadFile(filepath.Join(corpusDir(target), e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if w, ok := want[e.Name()]; !ok || w != string(b) {
				t.Errorf("%s/%s is stale or not generated", target, e.Name())
			}
		}
		sort.Strings(got)
		if len(got) != len(want) {
			t.Errorf("%s: %d files, generator has %d seeds", target, len(got), len(want))
		}
	}
}
