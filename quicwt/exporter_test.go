package quicwt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
)

// handExporterContext builds the WebTransport Exporter Context of
// draft-ietf-webtrans-http3-16, Section 4.8, byte by byte, independently
// of exporterContext.
func handExporterContext(sessionID uint64, label string, context []byte) []byte {
	var b bytes.Buffer
	var id [8]byte
	binary.BigEndian.PutUint64(id[:], sessionID)
	b.Write(id[:])
	b.WriteByte(byte(len(label)))
	b.WriteString(label)
	b.WriteByte(byte(len(context)))
	b.Write(context)
	return b.Bytes()
}

func TestExporterContextEncoding(t *testing.T) {
	got := exporterContext(nil, 0x0102030405060708, "label", []byte{0xaa, 0xbb})
	want := []byte{1, 2, 3, 4, 5, 6, 7, 8, 5, 'l', 'a', 'b', 'e', 'l', 2, 0xaa, 0xbb}
	if !bytes.Equal(got, want) {
		t.Fatalf("context %x, want %x", got, want)
	}
	if got := exporterContext(nil, 4, "", nil); !bytes.Equal(got, []byte{0, 0, 0, 0, 0, 0, 0, 4, 0, 0}) {
		t.Fatalf("empty label and context: %x", got)
	}
}

// TestExportKeyingMaterial checks the exporter on both ends of a loopback
// session against crypto/tls's exporter with the draft's context built by
// hand, and that two sessions on one connection get different keys.
func TestExportKeyingMaterial(t *testing.T) {
	type result struct {
		key []byte
		err error
		id  StreamID
	}
	srvKeys := make(chan result, 2)
	ts := startServer(t, wtHandler(t, func(sess *Session) {
		k, err := sess.ExportKeyingMaterial("app label", []byte("app context"), 48)
		if err == nil {
			st := sess.ConnectionState()
			ref, rerr := st.ExportKeyingMaterial("EXPORTER-WebTransport", handExporterContext(uint64(sess.ID()), "app label", []byte("app context")), 48)
			if rerr != nil || !bytes.Equal(ref, k) {
				err = errors.New("server key differs from crypto/tls's with the hand-built context")
			}
		}
		srvKeys <- result{k, err, sess.ID()}
		<-sess.Context().Done()
	}))
	ctx := testCtx(t)
	cc, err := ts.dialer().DialConn(ctx, ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	var clientKeys [][]byte
	for i := 0; i < 2; i++ {
		_, sess, err := cc.OpenSession(ctx, ts.url("/x"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer sess.Close()
		k, err := sess.ExportKeyingMaterial("app label", []byte("app context"), 48)
		if err != nil {
			t.Fatal(err)
		}
		st := sess.ConnectionState()
		ref, err := st.ExportKeyingMaterial("EXPORTER-WebTransport", handExporterContext(uint64(sess.ID()), "app label", []byte("app context")), 48)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(k, ref) {
			t.Fatalf("client key %x, crypto/tls with the hand-built context %x", k, ref)
		}
		r := <-srvKeys
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.id != sess.ID() {
			t.Fatalf("server session %d, client %d", r.id, sess.ID())
		}
		if !bytes.Equal(r.key, k) {
			t.Fatalf("server key %x, client key %x", r.key, k)
		}
		// The omitted context is the empty one.
		k1, err1 := sess.ExportKeyingMaterial("l", nil, 16)
		k2, err2 := sess.ExportKeyingMaterial("l", []byte{}, 16)
		if err1 != nil || err2 != nil || !bytes.Equal(k1, k2) {
			t.Fatalf("nil and empty context: %x %v, %x %v", k1, err1, k2, err2)
		}
		// A different label or context gives a different key.
		if k3, _ := sess.ExportKeyingMaterial("app label", []byte("other"), 48); bytes.Equal(k3, k) {
			t.Fatal("context does not change the key")
		}
		clientKeys = append(clientKeys, k)
	}
	if bytes.Equal(clientKeys[0], clientKeys[1]) {
		t.Fatal("two sessions on one connection export the same key")
	}
}

func TestExportKeyingMaterialInput(t *testing.T) {
	ts := startServer(t, wtHandler(t, func(sess *Session) { <-sess.Context().Done() }))
	_, sess, err := ts.dialer().Dial(testCtx(t), ts.url("/x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	long := strings.Repeat("x", 256)
	for _, c := range []struct {
		label   string
		context []byte
		n       int
	}{
		{long, nil, 16},
		{"l", []byte(long), 16},
		{"l", nil, 0},
		{"l", nil, -1},
		{"l", nil, MaxExportLength + 1},
	} {
		if _, err := sess.ExportKeyingMaterial(c.label, c.context, c.n); !errors.Is(err, ErrExporterInput) {
			t.Errorf("label %d bytes, context %d bytes, length %d: err %v", len(c.label), len(c.context), c.n, err)
		}
	}
	if k, err := sess.ExportKeyingMaterial(long[:255], []byte(long[:255]), 32); err != nil || len(k) != 32 {
		t.Fatalf("255-byte label and context: %d bytes, %v", len(k), err)
	}
}
