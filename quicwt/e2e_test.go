package quicwt

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/quicwt/quicwt/settings"
)

func echoSession(sess *Session) {
	ctx := sess.Context()
	go func() {
		for {
			str, err := sess.AcceptStream(ctx)
			if err != nil {
				return
			}
			go func() {
				io.Copy(str, str)
				str.Close()
			}()
		}
	}()
	go func() {
		for {
			str, err := sess.AcceptUniStream(ctx)
			if err != nil {
				return
			}
			go func() {
				b, _ := io.ReadAll(str)
				out, err := sess.OpenUniStream()
				if err != nil {
					return
				}
				out.Write(b)
				out.Close()
			}()
		}
	}()
	for {
		d, err := sess.ReceiveDatagram(ctx)
		if err != nil {
			return
		}
		sess.SendDatagram(d)
	}
}

func TestEchoBidiUniDatagram(t *testing.T) {
	ts := startServer(t, wtHandler(t, echoSession))
	ctx := testCtx(t)
	rsp, sess, err := ts.dialer().Dial(ctx, ts.url("/echo"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if rsp.StatusCode != 200 {
		t.Fatalf("status %d", rsp.StatusCode)
	}
	if sess.Draft() != settings.Draft15 {
		t.Fatalf("draft %v", sess.Draft())
	}
	// bidi
	str, err := sess.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	msg := bytes.Repeat([]byte("hello quicwt "), 1000)
	go func() { str.Write(msg); str.Close() }()
	got, err := io.ReadAll(str)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("bidi echo: %v, %d bytes", err, len(got))
	}
	// uni
	us, err := sess.OpenUniStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	us.Write([]byte("uni data"))
	us.Close()
	rs, err := sess.AcceptUniStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got, err = io.ReadAll(rs)
	if err != nil || string(got) != "uni data" {
		t.Fatalf("uni echo: %v %q", err, got)
	}
	// datagram
	if err := sess.SendDatagram([]byte("dgram")); err != nil {
		t.Fatal(err)
	}
	d, err := sess.ReceiveDatagram(ctx)
	if err != nil || string(d) != "dgram" {
		t.Fatalf("datagram echo: %v %q", err, d)
	}
	if err := sess.CloseWithError(42, "bye"); err != nil {
		t.Fatal(err)
	}
	var se *SessionError
	if !errors.As(sess.Err(), &se) || se.Code != 42 || se.Remote {
		t.Fatalf("close err %v", sess.Err())
	}
	select {
	case <-sess.Closed():
	case <-time.After(5 * time.Second):
		t.Fatal("close handshake did not complete")
	}
}

func TestPlainHTTPBesideSessions(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/page", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "page body") })
	mux.Handle("/wt", wtHandler(t, echoSession))
	ts := startServer(t, mux)
	ctx := testCtx(t)
	_, sess, err := ts.dialer().Dial(ctx, ts.url("/wt"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	rsp, _, err := ts.dialer().Dial(ctx, ts.url("/nothing"), nil)
	var re *RejectedError
	if !errors.As(err, &re) || re.StatusCode != 404 || rsp.StatusCode != 404 {
		t.Fatalf("want 404 rejection, got %v", err)
	}
}
