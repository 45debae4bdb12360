package interop_test

// The webtransport-go peer: a server on loopback and a client, and the two
// topologies (which library is the server) the interop tests run in.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	neturl "net/url"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	webtransport "github.com/quic-go/webtransport-go"

	"github.com/quicwt/quicwt/quicwt"
	"github.com/quicwt/quicwt/settings"
)

// WTGoServer is a webtransport-go server on a loopback port whose sessions
// (on any path) arrive on Sessions.
type WTGoServer struct {
	Srv      *webtransport.Server
	Addr     string
	Cert     *Cert
	Sessions chan WTGoSession
}

// WTGoSession is a session the webtransport-go server accepted, with its
// CONNECT request.
type WTGoSession struct {
	Sess *webtransport.Session
	Req  *http.Request
}

// StartWTGoServer runs a webtransport-go server on 127.0.0.1, closed in
// t.Cleanup, with the configuration conf (at most one; none: defaults).
func StartWTGoServer(t testing.TB, cert *Cert, conf ...*webtransport.Config) *WTGoServer {
	t.Helper()
	ws := &WTGoServer{
		Cert:     cert,
		Sessions: make(chan WTGoSession, 16),
	}
	mux := http.NewServeMux()
	h3 := &http3.Server{
		TLSConfig: http3.ConfigureTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert.TLS}}),
		QUICConfig: &quic.Config{
			EnableDatagrams:                  true,
			EnableStreamResetPartialDelivery: true,
		},
		Handler: mux,
	}
	webtransport.ConfigureHTTP3Server(h3)
	ws.Srv = &webtransport.Server{H3: h3, CheckOrigin: func(*http.Request) bool { return true }}
	if len(conf) > 0 {
		ws.Srv.Config = conf[0]
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		sess, err := ws.Srv.Upgrade(w, r)
		if err != nil {
			t.Errorf("webtransport-go Upgrade: %v", err)
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		ws.Sessions <- WTGoSession{sess, r}
	})
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ws.Addr = udp.LocalAddr().String()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = ws.Srv.Serve(udp)
	}()
	t.Cleanup(func() {
		_ = ws.Srv.Close()
		<-done
		_ = udp.Close()
	})
	return ws
}

// WTGoClient dials webtransport-go sessions, each on its own QUIC
// connection that the test owns (see DialWTGo).
type WTGoClient struct {
	Transport *webtransport.Transport
	TLS       *tls.Config
	QUIC      *quic.Config
}

// NewWTGoClient returns a webtransport-go client trusting cert, closed in
// t.Cleanup, with the configuration conf (at most one; none: defaults).
func NewWTGoClient(t testing.TB, cert *Cert, conf ...*webtransport.Config) *WTGoClient {
	pool := x509.NewCertPool()
	pool.AddCert(cert.Leaf)
	c := &WTGoClient{
		TLS: &tls.Config{RootCAs: pool, NextProtos: []string{http3.NextProtoH3}},
		QUIC: &quic.Config{
			EnableDatagrams:                  true,
			EnableStreamResetPartialDelivery: true,
		},
	}
	c.Transport = &webtransport.Transport{TLSClientConfig: c.TLS, QUICConfig: c.QUIC}
	if len(conf) > 0 {
		c.Transport.Config = conf[0]
	}
	t.Cleanup(func() { _ = c.Transport.Close() })
	return c
}

// Dial opens a session on a new QUIC connection owned by the test and
// closed in t.Cleanup. Unlike webtransport.Transport.Dial, closing the
// session does not close the connection at once, which would discard the
// WT_CLOSE_SESSION capsule before it is sent (see
// TestWebTransportGoDialCloseRace).
func (c *WTGoClient) Dial(t testing.TB, ctx context.Context, url string) (*http.Response, *webtransport.Session, error) {
	u, err := neturl.Parse(url)
	if err != nil {
		return nil, nil, err
	}
	qc, err := quic.DialAddr(ctx, u.Host, c.TLS, c.QUIC)
	if err != nil {
		return nil, nil, err
	}
	t.Cleanup(func() { _ = qc.CloseWithError(0x100, "") })
	cc, err := c.Transport.NewClientConn(qc)
	if err != nil {
		return nil, nil, err
	}
	return cc.Dial(ctx, url, nil)
}

// Topology says which library is the server.
type Topology struct {
	Name   string // e.g. "quicwt server <- webtransport-go client"
	Server string // library of the server
	Client string
	// Pair opens one session and returns both ends and the draft the
	// quicwt end negotiated.
	Pair func(t *testing.T) (server, client PeerSession, draft settings.Draft)
}

// Topologies returns the two quicwt/webtransport-go topologies, each with
// its server started for t.
func Topologies(t *testing.T) []Topology {
	cert := NewCert(t, 24*time.Hour)

	// quicwt server, webtransport-go client.
	qSessions := make(chan *quicwt.Session, 16)
	qs := StartQuicwtServer(t, "127.0.0.1", cert, SessionHandler(t, func(s *quicwt.Session, _ *http.Request) {
		qSessions <- s
	}))
	wtClient := NewWTGoClient(t, cert)

	// webtransport-go server, quicwt client.
	ws := StartWTGoServer(t, cert)

	return []Topology{
		{
			Name:   "quicwt-server/wtgo-client",
			Server: libQuicwt,
			Client: libWTGo,
			Pair: func(t *testing.T) (PeerSession, PeerSession, settings.Draft) {
				t.Helper()
				ctx := Ctx(t, 10*time.Second)
				rsp, cs, err := wtClient.Dial(t, ctx, qs.URL("/interop"))
				if err != nil {
					t.Fatalf("webtransport-go Dial to quicwt: %v", err)
				}
				t.Cleanup(func() { _ = cs.CloseWithError(0, "") })
				if rsp.StatusCode != http.StatusOK {
					t.Fatalf("status %d", rsp.StatusCode)
				}
				var ss *quicwt.Session
				select {
				case ss = <-qSessions:
				case <-ctx.Done():
					t.Fatal("quicwt server got no session")
				}
				t.Cleanup(func() { _ = ss.CloseWithError(0, "") })
				if ss.Request().Proto != "webtransport-h3" {
					t.Errorf("webtransport-go sent :protocol %q, want webtransport-h3", ss.Request().Proto)
				}
				return quicwtSession{ss}, wtgoSession{cs}, ss.Draft()
			},
		},
		{
			Name:   "wtgo-server/quicwt-client",
			Server: libWTGo,
			Client: libQuicwt,
			Pair: func(t *testing.T) (PeerSession, PeerSession, settings.Draft) {
				t.Helper()
				ctx := Ctx(t, 10*time.Second)
				d := &quicwt.Dialer{CertificateHashes: [][32]byte{cert.Hash}}
				rsp, cs, err := d.Dial(ctx, "https://"+ws.Addr+"/interop", nil)
				if err != nil {
					t.Fatalf("quicwt Dial to webtransport-go: %v", err)
				}
				t.Cleanup(func() { _ = cs.CloseWithError(0, "") })
				if rsp.StatusCode != http.StatusOK {
					t.Fatalf("status %d", rsp.StatusCode)
				}
				var ss *webtransport.Session
				select {
				case got := <-ws.Sessions:
					ss = got.Sess
				case <-ctx.Done():
					t.Fatal("webtransport-go server got no session")
				}
				t.Cleanup(func() { _ = ss.CloseWithError(0, "") })
				return wtgoSession{ss}, quicwtSession{cs}, cs.Draft()
			},
		},
	}
}
