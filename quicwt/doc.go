// Package quicwt is a WebTransport over HTTP/3 implementation written
// directly on quic-go's QUIC streams and datagrams.
//
// It hand-implements the part of HTTP/3 (RFC 9114) that WebTransport needs:
// control streams and SETTINGS, QPACK-coded HEADERS with a static-table-only
// QPACK (RFC 9204), extended CONNECT (RFC 9220), GOAWAY, HTTP Datagrams and
// the Capsule Protocol (RFC 9297), and WebTransport itself
// (draft-ietf-webtrans-http3, drafts 02 to 16): sessions, the stream-type
// prefixes, the quarter-stream-ID datagram format, WT_CLOSE_SESSION,
// WT_DRAIN_SESSION, the mapping of application error codes, and
// WebTransport flow control (draft-16, Section 5), which keeps the sessions
// that share a connection from taking each other's streams and window.
// Plain HTTP/3 requests on the same connection are served by an
// http.Handler.
//
// The wire format lives in packages varint, frames and settings, which do no
// I/O; this package is the state machine over them. quic-go's connection
// and streams are reached only through the small interfaces of quicgo.go
// (which tests fake); quic-go's error and code types are used throughout.
//
// Files by owner: server.go (Server: listeners, connections, shutdown) and
// client.go (Dialer, ClientConn) create connections; conn.go (a
// connection's lifecycle, accept loops and stream dispatch), control.go
// (control and QPACK streams, SETTINGS, GOAWAY), registry.go (its sessions
// and early buffers), datagram.go (datagram routing and queues), request.go
// and response.go (serving requests, Upgrade) run them; session.go
// (lifecycle), session_streams.go, connect.go (the CONNECT stream and its
// capsules), flow.go (flow control) and stream.go make the sessions. Calls go down that list;
// a session sees its connection through the narrow sessionConn interface.
// Features with a file of their own, hooked in with a line or two
// elsewhere: protocols.go (WT-Available-Protocols / WT-Protocol, with
// package frames/sfv), priority.go (send order and groups), datagram_send.go
// (the datagram send policy), exporter.go (the session exporter) and
// qlog.go (qlog events); certificate.go makes certificates for
// serverCertificateHashes.
//
// Server:
//
//	mux := http.NewServeMux()
//	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
//		sess, err := quicwt.Upgrade(w, r)
//		if err != nil {
//			return // the response was already sent
//		}
//		go echo(sess)
//	})
//	srv := &quicwt.Server{Addr: ":4433", Handler: mux, TLSConfig: tlsConf}
//	err := srv.ListenAndServe()
//
// Client:
//
//	var d quicwt.Dialer
//	rsp, sess, err := d.Dial(ctx, "https://example.com:4433/echo", nil)
//	str, err := sess.OpenStreamSync(ctx)
package quicwt
