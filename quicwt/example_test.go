package quicwt_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"

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
