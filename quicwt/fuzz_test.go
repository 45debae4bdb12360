package quicwt

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicwt/quicwt/frames"
	"github.com/quicwt/quicwt/settings"
)

// fuzzInput splits fuzz data into peer streams and datagrams. Each record is
// kind (1 byte), length (2 bytes, big endian), data. Kinds, taken mod 7:
// 0 control stream (type byte added), 1 QPACK encoder, 2 QPACK decoder,
// 3 raw unidirectional stream, 4 request/CONNECT stream (bidi),
// 5 raw bidirectional stream, 6 datagram.
type fuzzRecord struct {
	kind byte
	data []byte
}

func parseFuzzInput(b []byte) []fuzzRecord {
	var recs []fuzzRecord
	for len(b) >= 3 && len(recs) < 32 {
		kind := b[0] % 7
		n := int(b[1])<<8 | int(b[2])
		b = b[3:]
		n = min(n, len(b))
		recs = append(recs, fuzzRecord{kind, b[:n]})
		b = b[n:]
	}
	return recs
}

func encodeFuzzInput(recs ...fuzzRecord) []byte {
	var b []byte
	for _, r := range recs {
		b = append(b, r.kind, byte(len(r.data)>>8), byte(len(r.data)))
		b = append(b, r.data...)
	}
	return b
}

// fuzzSeeds are valid and invalid connections built from the encoders.
func fuzzSeeds() [][]byte {
	cs := defaultSettings(false)
	ctrl := cs.AppendFrame(nil)
	connect := frames.AppendHeaders(nil, encodeFields(":method", "CONNECT", ":scheme", "https", ":authority", "example.com", ":path", "/wt", ":protocol", "webtransport-h3"))
	caps := frames.AppendCapsule(nil, 0x17, []byte("grease"))
	caps = frames.AppendDrainSession(caps)
	caps = frames.AppendVarintCapsule(caps, frames.CapsuleMaxData, 5)
	caps = frames.AppendCloseSession(caps, 9, "bye")
	connectWithCaps := frames.AppendFrame(append([]byte{}, connect...), frames.TypeData, caps)
	get := frames.AppendHeaders(nil, encodeFields(":method", "GET", ":scheme", "https", ":authority", "example.com", ":path", "/"))
	post := frames.AppendFrame(frames.AppendHeaders(nil, encodeFields(":method", "POST", ":scheme", "https", ":authority", "example.com", ":path", "/p")), frames.TypeData, []byte("body"))
	wtUni := append(frames.AppendWebTransportUniHeader(nil, 0), "uni data"...)
	wtBidi := append(frames.AppendWebTransportBidiHeader(nil, 0), "bidi data"...)
	dgram := append(frames.AppendDatagramHeader(nil, 0), "dgram"...)
	// Flow control: credit capsules, blocked signals, limits exceeded
	// (the fuzzed server allows 2 streams of each kind and 1 KiB).
	fcCaps := frames.AppendVarintCapsule(nil, frames.CapsuleMaxData, 1<<20)
	fcCaps = frames.AppendVarintCapsule(fcCaps, frames.CapsuleMaxStreamsBidi, 200)
	fcCaps = frames.AppendVarintCapsule(fcCaps, frames.CapsuleMaxStreamsUni, 200)
	fcCaps = frames.AppendVarintCapsule(fcCaps, frames.CapsuleDataBlocked, 10)
	fcCaps = frames.AppendVarintCapsule(fcCaps, frames.CapsuleStreamsBlockedBidi, 1<<60+1)
	connectFC := frames.AppendFrame(append([]byte{}, connect...), frames.TypeData, fcCaps)
	bigUni := append(frames.AppendWebTransportUniHeader(nil, 0), make([]byte, 3000)...)
	noFC := defaultSettings(false)
	setFlowLimits(&noFC, Limits{DisableFlowControl: true})
	ctrlNoFC := noFC.AppendFrame(nil)
	return [][]byte{
		encodeFuzzInput(fuzzRecord{0, ctrl}, fuzzRecord{4, connectFC}, fuzzRecord{3, bigUni}, fuzzRecord{5, wtBidi}, fuzzRecord{5, wtBidi}, fuzzRecord{5, wtBidi}),
		encodeFuzzInput(fuzzRecord{0, ctrlNoFC}, fuzzRecord{4, connectFC}, fuzzRecord{4, connect}, fuzzRecord{3, bigUni}),
		encodeFuzzInput(fuzzRecord{0, ctrl}, fuzzRecord{4, connectWithCaps}, fuzzRecord{3, wtUni}, fuzzRecord{5, wtBidi}, fuzzRecord{6, dgram}),
		encodeFuzzInput(fuzzRecord{0, ctrl}, fuzzRecord{4, get}, fuzzRecord{4, post}),
		encodeFuzzInput(fuzzRecord{3, wtUni}, fuzzRecord{6, dgram}, fuzzRecord{0, ctrl}, fuzzRecord{4, connect}),
		encodeFuzzInput(fuzzRecord{0, frames.AppendGoaway(nil, 0)}),
		encodeFuzzInput(fuzzRecord{0, ctrl}, fuzzRecord{1, []byte{0x20}}, fuzzRecord{2, []byte{0x41}}, fuzzRecord{0, ctrl}),
		encodeFuzzInput(fuzzRecord{0, append(append([]byte{}, ctrl...), frames.AppendFrame(nil, 0x21, []byte("x"))...)}, fuzzRecord{4, frames.AppendFrame(nil, frames.TypeData, []byte("x"))}),
		encodeFuzzInput(fuzzRecord{0, ctrl}, fuzzRecord{4, frames.AppendFrame(append([]byte{}, connect...), frames.TypeData, frames.AppendCloseSession(nil, 1, strings.Repeat("x", 2000)))}),
	}
}

// FuzzConnection drives a server connection with arbitrary bytes on
// control, QPACK, request, CONNECT and WebTransport streams and in
// datagrams, without real QUIC. It must never panic, and it may only close
// the connection or reset streams with error codes the specifications
// define.
//
//	go test -fuzz=FuzzConnection ./quicwt
func FuzzConnection(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		runFuzzConnection(t, data)
	})
}

func runFuzzConnection(t *testing.T, data []byte) {
	fc := newFakeConn()
	srv := &Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodConnect {
				io.Copy(io.Discard, r.Body)
				io.WriteString(w, "ok")
				return
			}
			sess, err := Upgrade(w, r)
			if err != nil {
				return
			}
			go func() {
				for {
					s, ok := sess.TryAcceptStream()
					if !ok {
						break
					}
					io.Copy(io.Discard, s)
				}
				for {
					s, ok := sess.TryAcceptUniStream()
					if !ok {
						break
					}
					io.Copy(io.Discard, s)
				}
			}()
		}),
		CheckOrigin: func(*http.Request) bool { return true },
		Limits: Limits{SettingsTimeout: 20 * time.Millisecond, CloseTimeout: 20 * time.Millisecond, BufferTimeout: 20 * time.Millisecond,
			InitialSessionMaxData: 1024, InitialSessionMaxStreamsBidi: 2, InitialSessionMaxStreamsUni: 2},
	}
	c, err := srv.serveConn(fc)
	if err != nil {
		t.Fatal(err)
	}
	c.wantDatagrams() // as if a session read datagrams: they are fuzzed too
	var uniID, bidiID quic.StreamID = 2, 0
	for _, r := range parseFuzzInput(data) {
		switch r.kind {
		case 0, 1, 2:
			fc.addUni(uniID, append([]byte{r.kind}, r.data...))
			uniID += 4
		case 3:
			fc.addUni(uniID, r.data)
			uniID += 4
		case 4:
			fc.addBidi(bidiID, r.data)
			bidiID += 4
		case 5:
			fc.addBidi(bidiID, r.data)
			bidiID += 4
		case 6:
			fc.dgram <- append([]byte(nil), r.data...)
		}
	}
	// Wait until the engine has finished with every peer stream, or the
	// connection was closed, within a bound.
	done := make(chan struct{})
	go func() { fc.pending.Wait(); close(done) }()
	select {
	case <-done:
	case <-c.closed:
	case <-time.After(200 * time.Millisecond):
	}
	fc.peerClose(errFakeDone)
	<-c.closed
	fc.finishAll()
	<-done
	srv.Close()
	fc.mu.Lock()
	defer fc.mu.Unlock()
	for _, code := range fc.codes {
		if !definedCode(ErrorCode(code)) {
			t.Fatalf("connection closed with undefined code %#x", uint64(code))
		}
	}
	for _, code := range fc.resets {
		if !definedCode(ErrorCode(code)) {
			t.Fatalf("stream reset with undefined code %#x", uint64(code))
		}
	}
	_ = settings.Draft02
}

func definedCode(c ErrorCode) bool {
	return !strings.HasPrefix(c.String(), "H3_ERROR(") && !strings.HasPrefix(c.String(), "H3_GREASE(")
}

func TestFuzzSeedsRun(t *testing.T) {
	for _, s := range fuzzSeeds() {
		runFuzzConnection(t, s)
	}
}
