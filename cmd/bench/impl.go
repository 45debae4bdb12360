package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	webtransport "github.com/quic-go/webtransport-go"

	"github.com/quicwt/quicwt/quicwt"
)

// The three implementations under test share one QUIC configuration, one
// certificate and one way of verifying it (a SHA-256 pin), so that what
// differs is only the layer above quic-go.

// quicConfig is the QUIC configuration of every server and client. The
// windows are quic-go's defaults written out; the stream limits are raised
// so that 1,000 sessions fit on one connection.
func quicConfig() *quic.Config {
	return &quic.Config{
		EnableDatagrams:                  true,
		EnableStreamResetPartialDelivery: true,
		MaxIncomingStreams:               2000,
		MaxIncomingUniStreams:            1000,
		InitialStreamReceiveWindow:       512 << 10,
		MaxStreamReceiveWindow:           6 << 20,
		InitialConnectionReceiveWindow:   768 << 10,
		MaxConnectionReceiveWindow:       15 << 20,
		MaxIdleTimeout:                   90 * time.Second,
		HandshakeIdleTimeout:             20 * time.Second,
	}
}

// stream is what the workloads need of a bidirectional stream; Close ends
// the sending side (FIN) in all three.
type stream = io.ReadWriteCloser

// session is a WebTransport session, or for raw quic-go the connection
// itself.
type session interface {
	OpenStream(ctx context.Context) (stream, error)
	AcceptStream(ctx context.Context) (stream, error)
	SendDatagram(b []byte) error
	ReceiveDatagram(ctx context.Context) ([]byte, error)
	// Dropped counts received datagrams the layer above quic-go dropped
	// (quicwt's DatagramsDropped); 0 where there is no such counter.
	Dropped() uint64
	Close() error
}

// clientConn is a connection dialed on a shared quic.Transport, on which
// sessions are opened (raw: a stream with one byte written).
type clientConn interface {
	OpenSession(ctx context.Context) (any, error)
	Close()
}

// serverOpts are per-run server settings.
type serverOpts struct {
	// multi: several sessions per connection (webtransport-go needs its
	// WebTransport flow control enabled for that).
	multi bool
}

type impl interface {
	Name() string
	// Serve runs a server on ln; h runs for each session (raw: each
	// connection) and may return at once.
	Serve(ln listener, h func(session), o serverOpts) (stop func())
	// Dial makes a new connection and a session with the library's own
	// dial path (a new UDP socket per dial for all three).
	Dial(ctx context.Context, addr string) (session, error)
	// DialOn makes a connection on a shared transport.
	DialOn(ctx context.Context, tr *quic.Transport, addr string, o serverOpts) (clientConn, error)
	// HoldStream is what the raw server must accept per session to hold it.
	RawHold() bool
}

var impls = []impl{rawImpl{}, quicwtImpl{}, wtgoImpl{}}

// ---- certificate ----

type certInfo struct {
	cert tls.Certificate
	hash [32]byte
}

var (
	certOnce sync.Once
	theCert  certInfo
)

func serverCert() certInfo {
	certOnce.Do(func() {
		c, err := quicwt.SelfSignedCertificate(10 * 24 * time.Hour)
		if err != nil {
			panic(err)
		}
		theCert = certInfo{c, quicwt.CertificateHash(c.Leaf)}
	})
	return theCert
}

func serverTLS() *tls.Config {
	return quicwt.ConfigureTLSConfig(&tls.Config{Certificates: []tls.Certificate{serverCert().cert}})
}

// clientTLS pins the server certificate by hash, as quicwt's
// Dialer.CertificateHashes does; all three clients use it.
func clientTLS(pin [32]byte) *tls.Config {
	return &tls.Config{
		NextProtos:         []string{http3.NextProtoH3},
		MinVersion:         tls.VersionTLS13,
		ServerName:         "127.0.0.1",
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || sha256.Sum256(cs.PeerCertificates[0].Raw) != pin {
				return errors.New("bench: certificate pin mismatch")
			}
			return nil
		},
	}
}

// listener is a *quic.EarlyListener or a *quic.Listener.
type listener = quicwt.QUICListener

// earlyListen: the servers of all three listen with quic.ListenAddrEarly
// (connections returned before the handshake completes, so that the
// servers' SETTINGS go out as 0.5-RTT data; quicwt's ListenAndServe and
// http3's do the same), or with quic.ListenAddr when false (-early=false,
// or QUICWT_BENCH_EARLY=0 for go test -bench).
var earlyListen = os.Getenv("QUICWT_BENCH_EARLY") != "0"

// listen opens a server listener on a fresh loopback port.
func listen() (listener, error) {
	if earlyListen {
		return quic.ListenAddrEarly("127.0.0.1:0", serverTLS(), quicConfig())
	}
	return quic.ListenAddr("127.0.0.1:0", serverTLS(), quicConfig())
}

var clientPin [32]byte // set by the parent (its own cert) or the child (env)

// ---- raw quic-go ----

type rawImpl struct{}

type rawSession struct{ c *quic.Conn }

func (s rawSession) OpenStream(ctx context.Context) (stream, error) {
	str, err := s.c.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	return str, nil
}
func (s rawSession) AcceptStream(ctx context.Context) (stream, error) {
	str, err := s.c.AcceptStream(ctx)
	if err != nil {
		return nil, err
	}
	return str, nil
}
func (s rawSession) SendDatagram(b []byte) error { return s.c.SendDatagram(b) }
func (s rawSession) ReceiveDatagram(ctx context.Context) ([]byte, error) {
	return s.c.ReceiveDatagram(ctx)
}
func (s rawSession) Dropped() uint64 { return 0 }
func (s rawSession) Close() error    { return s.c.CloseWithError(0, "") }

func (rawImpl) Name() string  { return "raw" }
func (rawImpl) RawHold() bool { return true }

func (rawImpl) Serve(ln listener, h func(session), _ serverOpts) func() {
	go func() {
		for {
			c, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			go h(rawSession{c})
		}
	}()
	return func() { ln.Close() }
}

func (rawImpl) Dial(ctx context.Context, addr string) (session, error) {
	c, err := quic.DialAddr(ctx, addr, clientTLS(clientPin), quicConfig())
	if err != nil {
		return nil, err
	}
	return rawSession{c}, nil
}

type rawClientConn struct{ c *quic.Conn }

// OpenSession opens a stream and writes one byte so that the server sees
// it: the raw counterpart of holding a session is holding a stream.
func (c rawClientConn) OpenSession(ctx context.Context) (any, error) {
	str, err := c.c.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := str.Write([]byte{1}); err != nil {
		return nil, err
	}
	return str, nil
}
func (c rawClientConn) Close() { c.c.CloseWithError(0, "") }

func (rawImpl) DialOn(ctx context.Context, tr *quic.Transport, addr string, _ serverOpts) (clientConn, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	c, err := tr.Dial(ctx, ua, clientTLS(clientPin), quicConfig())
	if err != nil {
		return nil, err
	}
	return rawClientConn{c}, nil
}

// ---- quicwt ----

type quicwtImpl struct{}

type quicwtSession struct{ s *quicwt.Session }

func (s quicwtSession) OpenStream(ctx context.Context) (stream, error) {
	str, err := s.s.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	return str, nil
}
func (s quicwtSession) AcceptStream(ctx context.Context) (stream, error) {
	str, err := s.s.AcceptStream(ctx)
	if err != nil {
		return nil, err
	}
	return str, nil
}
func (s quicwtSession) SendDatagram(b []byte) error { return s.s.SendDatagram(b) }
func (s quicwtSession) ReceiveDatagram(ctx context.Context) ([]byte, error) {
	return s.s.ReceiveDatagram(ctx)
}
func (s quicwtSession) Dropped() uint64 { return s.s.DatagramsDropped() }
func (s quicwtSession) Close() error    { return s.s.Close() }

func (quicwtImpl) Name() string  { return "quicwt" }
func (quicwtImpl) RawHold() bool { return false }

func quicwtLimits() quicwt.Limits { return quicwt.Limits{MaxSessions: 2000} }

func (quicwtImpl) Serve(ln listener, h func(session), _ serverOpts) func() {
	srv := &quicwt.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sess, err := quicwt.Upgrade(w, r)
			if err != nil {
				return
			}
			h(quicwtSession{sess})
		}),
		QUICConfig:  quicConfig(),
		CheckOrigin: func(*http.Request) bool { return true },
		Limits:      quicwtLimits(),
	}
	go srv.ServeListener(ln)
	return func() { srv.Close(); ln.Close() }
}

func benchURL(addr string) string { return "https://" + addr + "/bench" }

func (quicwtImpl) Dial(ctx context.Context, addr string) (session, error) {
	d := quicwt.Dialer{CertificateHashes: [][32]byte{clientPin}, QUICConfig: quicConfig(), Limits: quicwtLimits()}
	_, sess, err := d.Dial(ctx, benchURL(addr), nil)
	if err != nil {
		return nil, err
	}
	return quicwtSession{sess}, nil
}

type quicwtClientConn struct {
	cc   *quicwt.ClientConn
	addr string
}

func (c quicwtClientConn) OpenSession(ctx context.Context) (any, error) {
	_, sess, err := c.cc.OpenSession(ctx, benchURL(c.addr), nil)
	if err != nil {
		return nil, err
	}
	return sess, nil
}
func (c quicwtClientConn) Close() { c.cc.Close() }

func (quicwtImpl) DialOn(ctx context.Context, tr *quic.Transport, addr string, _ serverOpts) (clientConn, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	qc, err := tr.Dial(ctx, ua, clientTLS(clientPin), quicwt.ConfigureQUICConfig(quicConfig()))
	if err != nil {
		return nil, err
	}
	d := quicwt.Dialer{Limits: quicwtLimits()}
	cc, err := d.NewClientConn(qc)
	if err != nil {
		qc.CloseWithError(0, "")
		return nil, err
	}
	return quicwtClientConn{cc, addr}, nil
}

// ---- webtransport-go ----

type wtgoImpl struct{}

type wtgoSession struct{ s *webtransport.Session }

func (s wtgoSession) OpenStream(ctx context.Context) (stream, error) {
	str, err := s.s.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	return str, nil
}
func (s wtgoSession) AcceptStream(ctx context.Context) (stream, error) {
	str, err := s.s.AcceptStream(ctx)
	if err != nil {
		return nil, err
	}
	return str, nil
}
func (s wtgoSession) SendDatagram(b []byte) error { return s.s.SendDatagram(b) }
func (s wtgoSession) ReceiveDatagram(ctx context.Context) ([]byte, error) {
	return s.s.ReceiveDatagram(ctx)
}
func (s wtgoSession) Dropped() uint64 { return 0 }
func (s wtgoSession) Close() error    { return s.s.CloseWithError(0, "") }

func (wtgoImpl) Name() string  { return "wtgo" }
func (wtgoImpl) RawHold() bool { return false }

// wtgoConfig: webtransport-go refuses a second session on a connection
// unless its WebTransport flow control is on, so the multi-session runs
// enable it with limits that never bind.
func wtgoConfig(o serverOpts) *webtransport.Config {
	if !o.multi {
		return nil
	}
	return &webtransport.Config{MaxIncomingStreams: 1 << 20, MaxIncomingUniStreams: 1 << 20, MaxIncomingData: 1 << 40}
}

func (wtgoImpl) Serve(ln listener, h func(session), o serverOpts) func() {
	h3 := &http3.Server{TLSConfig: serverTLS(), QUICConfig: quicConfig()}
	webtransport.ConfigureHTTP3Server(h3)
	wts := &webtransport.Server{H3: h3, CheckOrigin: func(*http.Request) bool { return true }, Config: wtgoConfig(o)}
	h3.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sess, err := wts.Upgrade(w, r)
		if err != nil {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		h(wtgoSession{sess})
	})
	go func() {
		for {
			c, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			go wts.ServeQUICConn(c)
		}
	}()
	return func() { wts.Close(); ln.Close() }
}

func (wtgoImpl) Dial(ctx context.Context, addr string) (session, error) {
	tr := &webtransport.Transport{TLSClientConfig: clientTLS(clientPin), QUICConfig: quicConfig(), DialAddr: quic.DialAddr}
	_, sess, err := tr.Dial(ctx, benchURL(addr), nil)
	if err != nil {
		return nil, err
	}
	return wtgoSession{sess}, nil
}

type wtgoClientConn struct {
	qc   *quic.Conn
	cc   *webtransport.ClientConn
	addr string
}

func (c wtgoClientConn) OpenSession(ctx context.Context) (any, error) {
	rsp, sess, err := c.cc.Dial(ctx, benchURL(c.addr), nil)
	if err != nil {
		return nil, err
	}
	if rsp.StatusCode != 200 {
		return nil, fmt.Errorf("status %d", rsp.StatusCode)
	}
	return sess, nil
}
func (c wtgoClientConn) Close() { c.qc.CloseWithError(0, "") }

func (wtgoImpl) DialOn(ctx context.Context, tr *quic.Transport, addr string, o serverOpts) (clientConn, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	qc, err := tr.Dial(ctx, ua, clientTLS(clientPin), quicConfig())
	if err != nil {
		return nil, err
	}
	wt := &webtransport.Transport{Config: wtgoConfig(o)}
	cc, err := wt.NewClientConn(qc)
	if err != nil {
		qc.CloseWithError(0, "")
		return nil, err
	}
	return wtgoClientConn{qc, cc, addr}, nil
}

func implByName(name string) impl {
	for _, im := range impls {
		if im.Name() == name {
			return im
		}
	}
	return nil
}
