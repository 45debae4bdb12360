package quicwt

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicwt/quicwt/frames"
)

// delayProxy forwards UDP datagrams between clients and server, each
// delayed by oneWay, and returns its address.
func delayProxy(t *testing.T, server string, oneWay time.Duration) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sa, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	ups := map[string]*net.UDPConn{}
	t.Cleanup(func() {
		pc.Close()
		mu.Lock()
		for _, up := range ups {
			up.Close()
		}
		mu.Unlock()
	})
	go func() {
		buf := make([]byte, 1<<16)
		for {
			n, ca, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			b := append([]byte(nil), buf[:n]...)
			mu.Lock()
			up := ups[ca.String()]
			if up == nil {
				if up, err = net.DialUDP("udp", nil, sa); err != nil {
					mu.Unlock()
					continue
				}
				ups[ca.String()] = up
				go func() {
					rb := make([]byte, 1<<16)
					for {
						n, err := up.Read(rb)
						if err != nil {
							return
						}
						b := append([]byte(nil), rb[:n]...)
						time.AfterFunc(oneWay, func() { _, _ = pc.WriteTo(b, ca) })
					}
				}()
			}
			mu.Unlock()
			time.AfterFunc(oneWay, func() { _, _ = up.Write(b) })
		}
	}()
	return pc.LocalAddr().String()
}

// TestEarlyListenerSettingsHalfRTT: served on an early listener (as
// startServer and ListenAndServe do), the server's SETTINGS arrive with its
// handshake flight, so the client has them when its handshake completes
// and its CONNECT goes out at once: a session costs the handshake plus one
// round trip, not two.
func TestEarlyListenerSettingsHalfRTT(t *testing.T) {
	const oneWay = 50 * time.Millisecond
	ts := startServer(t, wtHandler(t, func(*Session) {}))
	addr := delayProxy(t, ts.addr, oneWay)
	ctx := testCtx(t)
	cc, err := ts.dialer().DialConn(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	// Without 0.5-RTT SETTINGS they would take a whole round trip more.
	sctx, cancel := context.WithTimeout(ctx, oneWay)
	defer cancel()
	if _, err := cc.PeerSettings(sctx); err != nil {
		t.Fatalf("server SETTINGS not there within half a round trip of the handshake: %v", err)
	}
	start := time.Now()
	_, sess, err := cc.OpenSession(ctx, "https://"+addr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	sess.Close()
	if d := time.Since(start); d > 3*oneWay {
		t.Logf("CONNECT took %v (one round trip is %v)", d, 2*oneWay)
	}
}

// TestZeroRTTRequestWaitsForHandshake: with 0-RTT allowed, a request the
// client sends in 0-RTT (which an attacker could replay) reaches the
// handler only after the handshake has completed.
func TestZeroRTTRequestWaitsForHandshake(t *testing.T) {
	type seen struct {
		complete bool
		proto    string
	}
	got := make(chan seen, 4)
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.TLS != nil && r.TLS.HandshakeComplete, r.Proto}
		if _, err := Upgrade(w, r); err != nil {
			t.Logf("upgrade: %v", err)
		}
	}), func(s *Server) { s.QUICConfig = &quic.Config{Allow0RTT: true} })
	// The delay makes the client's Finished arrive long after its 0-RTT
	// request.
	addr := delayProxy(t, ts.addr, 30*time.Millisecond)
	cache := &notifyingCache{ClientSessionCache: tls.NewLRUClientSessionCache(4), put: make(chan struct{}, 4)}
	tc := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{NextProtoH3}, ClientSessionCache: cache}
	ctx := testCtx(t)

	// First connection: get a session ticket.
	qc, err := quic.DialAddr(ctx, addr, tc, ConfigureQUICConfig(nil))
	if err != nil {
		t.Fatal(err)
	}
	p := &rawPeer{t: t, qc: qc}
	p.control(clientSettingsFrame())
	s := p.request(nil, connectFields(addr, "/")...)
	if st, code := readResponse(t, s); st != 200 {
		t.Fatalf("first CONNECT: status %d, reset %v", st, code)
	}
	<-got
	select {
	case <-cache.put:
	case <-ctx.Done():
		t.Fatal("no session ticket")
	}
	qc.CloseWithError(0, "")

	// Second connection: control stream and CONNECT in 0-RTT.
	qc, err = quic.DialAddrEarly(ctx, addr, tc, ConfigureQUICConfig(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer qc.CloseWithError(0, "")
	p = &rawPeer{t: t, qc: qc}
	p.control(clientSettingsFrame())
	s, err = qc.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write(frames.AppendHeaders(nil, encodeFields(connectFields(addr, "/")...))); err != nil {
		t.Fatal(err)
	}
	select {
	case <-qc.HandshakeComplete():
		t.Fatal("handshake completed before the 0-RTT request was written")
	default:
	}
	if st, code := readResponse(t, s); st != 200 {
		t.Fatalf("0-RTT CONNECT: status %d, reset %v", st, code)
	}
	if !qc.ConnectionState().Used0RTT {
		t.Skip("the server did not accept 0-RTT; nothing tested")
	}
	if r := <-got; !r.complete {
		t.Fatal("a request sent in 0-RTT reached the handler before the handshake completed")
	}
}

// notifyingCache signals each session ticket it stores.
type notifyingCache struct {
	tls.ClientSessionCache
	put chan struct{}
}

func (c *notifyingCache) Put(key string, cs *tls.ClientSessionState) {
	c.ClientSessionCache.Put(key, cs)
	if cs != nil {
		select {
		case c.put <- struct{}{}:
		default:
		}
	}
}
