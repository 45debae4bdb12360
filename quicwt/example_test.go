package quicwt_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"time"

	"github.com/quicwt/quicwt/quicwt"
)

// A WebTransport echo server beside a plain HTTP/3 page, on one port.
func ExampleServer() {
	cert, err := tls.LoadX509KeyPair("cert.pem", "key.pem")
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "hello over HTTP/3")
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		sess, err := quicwt.Upgrade(w, r) // 200, or the error status already sent
		if err != nil {
			return
		}
		for {
			str, err := sess.AcceptStream(sess.Context())
			if err != nil {
				return // the session ended: sess.Err() says how
			}
			go func() { io.Copy(str, str); str.Close() }()
		}
	})
	srv := &quicwt.Server{
		Addr:      "127.0.0.1:4433",
		Handler:   mux,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
	}
	log.Fatal(srv.ListenAndServe())
}

// A client that opens a session, sends a line on a bidirectional stream and
// reads the echo, then closes the session with a code and a message.
func ExampleDialer_Dial() {
	ctx := context.Background()
	d := quicwt.Dialer{ /* CertificateHashes: [][32]byte{hash} pins a self-signed certificate */ }
	rsp, sess, err := d.Dial(ctx, "https://127.0.0.1:4433/echo", nil)
	if err != nil {
		var rej *quicwt.RejectedError
		if errors.As(err, &rej) {
			log.Fatalf("refused: %v", rej)
		}
		log.Fatal(err)
	}
	fmt.Println(rsp.Status, sess.Draft())
	str, err := sess.OpenStreamSync(ctx)
	if err != nil {
		log.Fatal(err)
	}
	str.Write([]byte("hello\n"))
	str.Close() // FIN: the server's io.Copy ends
	reply, err := io.ReadAll(str)
	fmt.Printf("%q %v\n", reply, err)
	sess.CloseWithError(42, "bye")
	<-sess.Closed() // the close reached the server; the connection is closed
}

// Datagrams: the payload limit is known before sending, and too large is an
// error, never a silent drop.
func ExampleSession_SendDatagram() {
	var sess *quicwt.Session // from Upgrade or Dial
	msg := make([]byte, 2000)
	if len(msg) > sess.MaxDatagramSize() {
		msg = msg[:sess.MaxDatagramSize()]
	}
	if err := sess.SendDatagram(msg); err != nil {
		var tooLarge *quicwt.DatagramTooLargeError
		fmt.Println(errors.As(err, &tooLarge), err)
	}
	data, err := sess.ReceiveDatagram(context.Background())
	fmt.Println(len(data), err)
}

// Protocol negotiation: the server speaks two versions of its protocol;
// the client offers them, most preferred first.
func ExampleServer_protocols() {
	mux := http.NewServeMux()
	mux.HandleFunc("/moq", func(w http.ResponseWriter, r *http.Request) {
		if quicwt.SelectProtocol(r, []string{"moq-01", "moq-00"}) == "" {
			w.WriteHeader(http.StatusBadRequest) // this resource requires one
			return
		}
		sess, err := quicwt.Upgrade(w, r) // Server.Protocols picks the client's favourite
		if err != nil {
			return
		}
		fmt.Println("speaking", sess.Protocol())
	})
	srv := &quicwt.Server{Addr: ":4433", Handler: mux, Protocols: []string{"moq-01", "moq-00"}}
	log.Fatal(srv.ListenAndServe())
}

func ExampleDialer_protocols() {
	d := quicwt.Dialer{Protocols: []string{"moq-01", "moq-00"}, RequireProtocol: true}
	_, sess, err := d.Dial(context.Background(), "https://127.0.0.1:4433/moq", nil)
	var pe *quicwt.ProtocolError
	if errors.As(err, &pe) {
		log.Fatalf("no common protocol (the session was closed with WT_ALPN_ERROR): %v", pe)
	}
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(sess.Protocol())
}

// Game state by datagram: never block the game loop, never send a state
// older than 100 ms, prefer the newest.
func ExampleSession_SetDatagramSendPolicy() {
	var sess *quicwt.Session // from Upgrade or Dial
	sess.SetDatagramSendPolicy(&quicwt.DatagramSendPolicy{MaxAge: 100 * time.Millisecond, DropOldest: true})
	state := []byte("tick 1")
	if err := sess.SendDatagram(state); err != nil {
		log.Print(err) // only a too-large datagram or the session's end
	}
	st := sess.DatagramSendStats()
	fmt.Println(st.Sent, st.DroppedFull, st.DroppedMaxAge)
}

// A control stream before the media streams, the newest video frame first.
func ExampleStream_SetSendOrder() {
	var sess *quicwt.Session // from Upgrade or Dial
	ctx := context.Background()
	ctrl, _ := sess.OpenStreamSync(ctx)
	ctrl.SetSendOrder(1 << 40)
	video := sess.NewSendGroup()
	for frame := int64(0); frame < 3; frame++ {
		s, _ := sess.OpenUniStreamSync(ctx)
		s.SetSendGroup(video)
		s.SetSendOrder(frame)
		s.Write([]byte("frame"))
		s.Close()
	}
}

// Keying material bound to the session, equal on both ends.
func ExampleSession_ExportKeyingMaterial() {
	var sess *quicwt.Session // from Upgrade or Dial
	key, err := sess.ExportKeyingMaterial("my-app e2e key", nil, 32)
	fmt.Println(len(key), err)
}
