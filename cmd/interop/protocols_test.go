package interop_test

// Application protocol negotiation (draft-ietf-webtrans-http3-16, Section
// 3.3) between quicwt and webtransport-go v0.13.0, in both topologies, and
// with Chromium's WebTransport `protocols` option.

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	webtransport "github.com/quic-go/webtransport-go"

	"github.com/quicwt/quicwt/quicwt"
)

// startWTGoProtoServer is a webtransport-go server speaking protocols.
func startWTGoProtoServer(t *testing.T, cert *Cert, protocols []string) (addr string, sessions chan *webtransport.Session) {
	sessions = make(chan *webtransport.Session, 4)
	mux := http.NewServeMux()
	h3 := &http3.Server{
		TLSConfig:  http3.ConfigureTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert.TLS}}),
		QUICConfig: &quic.Config{EnableDatagrams: true, EnableStreamResetPartialDelivery: true},
		Handler:    mux,
	}
	webtransport.ConfigureHTTP3Server(h3)
	srv := &webtransport.Server{H3: h3, CheckOrigin: func(*http.Request) bool { return true }, ApplicationProtocols: protocols}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		sess, err := srv.Upgrade(w, r)
		if err != nil {
			t.Errorf("webtransport-go Upgrade: %v", err)
			return
		}
		sessions <- sess
	})
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(udp) }()
	t.Cleanup(func() { _ = srv.Close(); <-done; _ = udp.Close() })
	return udp.LocalAddr().String(), sessions
}

func wtgoProtoClient(t *testing.T, cert *Cert, protocols []string) *WTGoClient {
	c := NewWTGoClient(t, cert)
	c.Transport.ApplicationProtocols = protocols
	return c
}

func sessionCloseCode(t *testing.T, ctx context.Context) (uint32, bool) {
	t.Helper()
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("session did not end")
	}
	var se *quicwt.SessionError
	if errors.As(context.Cause(ctx), &se) {
		return uint32(se.Code), se.Remote
	}
	t.Fatalf("session ended with %v", context.Cause(ctx))
	return 0, false
}

// TestWTGoProtocols: the client's most preferred protocol that the server
// speaks is chosen, and both ends report it, in both topologies.
func TestWTGoProtocols(t *testing.T) {
	cert := NewCert(t, 24*time.Hour)
	offer := []string{"moq-00", "chat", "echo"}
	supported := []string{"echo", "chat"}

	t.Run("quicwt-server/wtgo-client", func(t *testing.T) {
		got := make(chan string, 1)
		qs := StartQuicwtServer(t, "127.0.0.1", cert, SessionHandler(t, func(s *quicwt.Session, r *http.Request) {
			if o := quicwt.OfferedProtocols(r); !slices.Equal(o, offer) {
				t.Errorf("quicwt server saw the offer %q, want %q", o, offer)
			}
			got <- s.Protocol()
		}), func(s *quicwt.Server) { s.Protocols = supported })
		rsp, sess, err := wtgoProtoClient(t, cert, offer).Dial(t, Ctx(t, 10*time.Second), qs.URL("/p"))
		if err != nil {
			t.Fatal(err)
		}
		defer sess.CloseWithError(0, "")
		if p := sess.SessionState().ApplicationProtocol; p != "chat" {
			t.Errorf("webtransport-go client: protocol %q, want chat (WT-Protocol %q)", p, rsp.Header.Values("WT-Protocol"))
		}
		if p := <-got; p != "chat" {
			t.Errorf("quicwt server: protocol %q, want chat", p)
		}
	})

	t.Run("wtgo-server/quicwt-client", func(t *testing.T) {
		addr, sessions := startWTGoProtoServer(t, cert, supported)
		d := &quicwt.Dialer{CertificateHashes: [][32]byte{cert.Hash}, Protocols: offer}
		_, sess, err := d.Dial(Ctx(t, 10*time.Second), "https://"+addr+"/p", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer sess.Close()
		if sess.Protocol() != "chat" {
			t.Errorf("quicwt client: protocol %q, want chat", sess.Protocol())
		}
		if p := (<-sessions).SessionState().ApplicationProtocol; p != "chat" {
			t.Errorf("webtransport-go server: protocol %q, want chat", p)
		}
	})

	t.Run("wtgo-server/quicwt-client/every-field-line", func(t *testing.T) {
		// The offer split over two field lines: webtransport-go combines
		// them (httpsfv.UnmarshalList over all lines) and picks from the
		// second.
		addr, sessions := startWTGoProtoServer(t, cert, []string{"echo"})
		h := http.Header{}
		h.Add("WT-Available-Protocols", `"moq-00"`)
		h.Add("WT-Available-Protocols", `"echo";v=1`)
		d := &quicwt.Dialer{CertificateHashes: [][32]byte{cert.Hash}}
		_, sess, err := d.Dial(Ctx(t, 10*time.Second), "https://"+addr+"/p", h)
		if err != nil {
			t.Fatal(err)
		}
		defer sess.Close()
		if sess.Protocol() != "echo" {
			t.Errorf("quicwt client: protocol %q, want echo", sess.Protocol())
		}
		<-sessions
	})
}

// TestWTGoProtocolErrors: WT_ALPN_ERROR between the two libraries.
func TestWTGoProtocolErrors(t *testing.T) {
	cert := NewCert(t, 24*time.Hour)

	t.Run("quicwt-server-answers-unoffered/wtgo-client", func(t *testing.T) {
		// quicwt's handler answers a protocol outside the offer;
		// webtransport-go's client must close with WT_ALPN_ERROR.
		ended := make(chan *quicwt.Session, 1)
		qs := StartQuicwtServer(t, "127.0.0.1", cert, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("WT-Protocol", `"evil"`)
			sess, err := quicwt.Upgrade(w, r)
			if err != nil {
				t.Errorf("Upgrade: %v", err)
				return
			}
			ended <- sess
		}))
		_, _, err := wtgoProtoClient(t, cert, []string{"a"}).Dial(t, Ctx(t, 10*time.Second), qs.URL("/p"))
		if err == nil {
			t.Fatal("webtransport-go accepted an unoffered protocol")
		}
		code, remote := sessionCloseCode(t, (<-ended).Context())
		if code != 0x0817b3dd || !remote {
			t.Errorf("quicwt server session ended with code %#x (remote %v), want WT_ALPN_ERROR from the client", code, remote)
		}
	})

	t.Run("wtgo-server-chooses-none/quicwt-client-requires", func(t *testing.T) {
		addr, sessions := startWTGoProtoServer(t, cert, []string{"other"})
		d := &quicwt.Dialer{CertificateHashes: [][32]byte{cert.Hash}, Protocols: []string{"a"}, RequireProtocol: true}
		_, _, err := d.Dial(Ctx(t, 10*time.Second), "https://"+addr+"/p", nil)
		var pe *quicwt.ProtocolError
		if !errors.As(err, &pe) || pe.Protocol != "" {
			t.Fatalf("quicwt dial: %v, want a *ProtocolError", err)
		}
		ws := <-sessions
		_, aerr := ws.AcceptStream(Ctx(t, 10*time.Second))
		var we *webtransport.SessionError
		if !errors.As(aerr, &we) || we.ErrorCode != webtransport.WTALPNErrorCode || !we.Remote {
			t.Errorf("webtransport-go server session ended with %v, want WT_ALPN_ERROR from the client", aerr)
		}
	})
}

const protocolsPage = `<!doctype html>
<meta charset="utf-8">
<title>quicwt protocols</title>
<script>
(async () => {
  const res = {};
  try {
    const wt = new WebTransport("{{URL}}", {
      serverCertificateHashes: [{algorithm: "sha-256", value: {{HASH}}}],
      protocols: ["moq-00", "chat"],
    });
    await wt.ready;
    res.protocol = wt.protocol;
    wt.close({closeCode: 0, reason: ""});
  } catch (e) {
    res.error = String(e);
  }
  await fetch("/result", {method: "POST", body: JSON.stringify(res)});
})();
</script>`

// TestChromiumProtocols: Debian's Chromium sends WT-Available-Protocols
// (sf-Strings) for the page's `protocols` and reads the server's choice
// into transport.protocol.
func TestChromiumProtocols(t *testing.T) {
	runBrowserProtocols(t, "chromium", func(t *testing.T, url string) *Browser { return LaunchChromium(t, url) })
}

// TestFirefoxProtocols: Firefox ESR 153 ignores the `protocols` option
// (it sends no WT-Available-Protocols, and transport.protocol stays
// empty); the session opens without a protocol. When Firefox starts
// sending them this test fails: then expect what Chromium does.
func TestFirefoxProtocols(t *testing.T) {
	runBrowserProtocols(t, "firefox-esr", func(t *testing.T, url string) *Browser { return LaunchFirefox(t, url) })
}

func runBrowserProtocols(t *testing.T, name string, launch func(*testing.T, string) *Browser) {
	wantOffer, wantProtocol := []string{"moq-00", "chat"}, "chat"
	if name == "firefox-esr" {
		wantOffer, wantProtocol = nil, ""
	}
	cert := BrowserCert(t)
	offered := make(chan []string, 1)
	qs := StartQuicwtServer(t, "127.0.0.1", cert, SessionHandler(t, func(s *quicwt.Session, r *http.Request) {
		offered <- quicwt.OfferedProtocols(r)
		select {
		case <-s.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}), func(s *quicwt.Server) { s.Protocols = []string{"chat"} })
	ps := NewPageServer(t)
	page := strings.NewReplacer("{{URL}}", qs.URL("/p"), "{{HASH}}", hexBytesJS(cert.Hash[:])).Replace(protocolsPage)
	b := launch(t, ps.Add("/p.html", page))
	raw := ps.WaitResult(t, b, 45*time.Second)
	b.Stop(5 * time.Second)
	var res struct{ Protocol, Error string }
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Fatalf("bad result %s: %v", raw, err)
	}
	if res.Error != "" {
		t.Fatalf("page: %s", res.Error)
	}
	select {
	case o := <-offered:
		if wantOffer != nil {
			matrix.Record(name, "handshake", "wt-available-protocols (page protocols)", slices.Equal(o, wantOffer))
		}
		if !slices.Equal(o, wantOffer) {
			t.Errorf("%s offered %q, want %q", name, o, wantOffer)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the session never reached the handler")
	}
	if wantProtocol != "" {
		matrix.Record(name, "handshake", "transport.protocol from WT-Protocol", res.Protocol == wantProtocol)
	}
	if res.Protocol != wantProtocol {
		t.Errorf("page: transport.protocol = %q, want %q", res.Protocol, wantProtocol)
	}
}
