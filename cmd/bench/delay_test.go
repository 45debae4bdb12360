package main

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quicwt/quicwt/quicwt"
)

// delayProxy forwards UDP between clients and server with a one-way delay.
func delayProxy(t *testing.T, server string, delay time.Duration) string {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sa, _ := net.ResolveUDPAddr("udp", server)
	var mu sync.Mutex
	ups := map[string]*net.UDPConn{}
	go func() {
		buf := make([]byte, 65536)
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
				go func(up *net.UDPConn, ca net.Addr) {
					rb := make([]byte, 65536)
					for {
						n, err := up.Read(rb)
						if err != nil {
							return
						}
						b := append([]byte(nil), rb[:n]...)
						time.AfterFunc(delay, func() { _, _ = pc.WriteTo(b, ca) })
					}
				}(up, ca)
			}
			mu.Unlock()
			time.AfterFunc(delay, func() { _, _ = up.Write(b) })
		}
	}()
	t.Cleanup(func() {
		pc.Close()
		mu.Lock()
		for _, up := range ups {
			up.Close()
		}
		mu.Unlock()
	})
	return pc.LocalAddr().String()
}

// TestSetupOverDelay (QUICWT_BENCH_DELAY=1) times quicwt's session setup
// through a proxy adding 5 ms each way, with a plain and an early listener:
// handshake, wait for the server's SETTINGS, CONNECT exchange.
func TestSetupOverDelay(t *testing.T) {
	if os.Getenv("QUICWT_BENCH_DELAY") != "1" {
		t.Skip("QUICWT_BENCH_DELAY=1 runs it")
	}
	clientPin = serverCert().hash
	defer func(e bool) { earlyListen = e }(earlyListen)
	for _, early := range []bool{false, true} {
		earlyListen = early
		ln, err := listen()
		if err != nil {
			t.Fatal(err)
		}
		stop := quicwtImpl{}.Serve(ln, func(session) {}, serverOpts{})
		addr := delayProxy(t, ln.Addr().String(), 5*time.Millisecond)
		var hs, st, cn, tot []time.Duration
		for i := 0; i < 30; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			d := quicwt.Dialer{CertificateHashes: [][32]byte{clientPin}, QUICConfig: quicConfig()}
			t0 := time.Now()
			cc, err := d.DialConn(ctx, addr)
			if err != nil {
				t.Fatal(err)
			}
			t1 := time.Now()
			if _, err := cc.PeerSettings(ctx); err != nil {
				t.Fatal(err)
			}
			t2 := time.Now()
			_, sess, err := cc.OpenSession(ctx, benchURL(addr), nil)
			if err != nil {
				t.Fatal(err)
			}
			t3 := time.Now()
			cancel()
			sess.Close()
			cc.Close()
			hs = append(hs, t1.Sub(t0))
			st = append(st, t2.Sub(t1))
			cn = append(cn, t3.Sub(t2))
			tot = append(tot, t3.Sub(t0))
		}
		stop()
		med := func(d []time.Duration) time.Duration {
			sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
			return d[len(d)/2]
		}
		t.Logf("RTT 10 ms, early=%v: handshake p50 %v settings-wait p50 %v connect p50 %v total p50 %v", early, med(hs), med(st), med(cn), med(tot))
	}
}

// TestEarlyDialOverDelay (QUICWT_BENCH_DELAY=1) measures what dialing with
// quic.DialAddrEarly (0-RTT with a session ticket) would save a
// WebTransport client over quic.DialAddr, through the 10 ms RTT proxy: the
// time from dial to open session, with and without a ticket. The client's
// CONNECT may not travel in 0-RTT (draft-ietf-webtrans-http3-16,
// Section 3.2) and waits for the server's SETTINGS, which come with the
// server's first flight either way (RESULTS.md has the figures and the
// decision).
func TestEarlyDialOverDelay(t *testing.T) {
	if os.Getenv("QUICWT_BENCH_DELAY") != "1" {
		t.Skip("QUICWT_BENCH_DELAY=1 runs it")
	}
	clientPin = serverCert().hash
	qconf := quicConfig()
	qconf.Allow0RTT = true
	ln, err := quic.ListenAddrEarly("127.0.0.1:0", serverTLS(), qconf)
	if err != nil {
		t.Fatal(err)
	}
	stop := quicwtImpl{}.Serve(ln, func(session) {}, serverOpts{})
	defer stop()
	addr := delayProxy(t, ln.Addr().String(), 5*time.Millisecond)
	for _, mode := range []struct {
		name          string
		early, ticket bool
	}{{"DialAddr, no ticket", false, false}, {"DialAddr, ticket", false, true}, {"DialAddrEarly, no ticket", true, false}, {"DialAddrEarly, ticket (0-RTT)", true, true}} {
		var total []time.Duration
		zeroRTT := 0
		tc := clientTLS(clientPin)
		if mode.ticket {
			tc.ClientSessionCache = tls.NewLRUClientSessionCache(4)
		}
		for i := 0; i < 21; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			t0 := time.Now()
			var qc *quic.Conn
			if mode.early {
				qc, err = quic.DialAddrEarly(ctx, addr, tc, quicwt.ConfigureQUICConfig(quicConfig()))
			} else {
				qc, err = quic.DialAddr(ctx, addr, tc, quicwt.ConfigureQUICConfig(quicConfig()))
			}
			if err != nil {
				t.Fatal(err)
			}
			cc, err := (&quicwt.Dialer{}).NewClientConn(qc)
			if err != nil {
				t.Fatal(err)
			}
			_, sess, err := cc.OpenSession(ctx, benchURL(addr), nil)
			if err != nil {
				t.Fatal(err)
			}
			if i > 0 { // the first dial gets the ticket
				total = append(total, time.Since(t0))
			}
			if qc.ConnectionState().Used0RTT {
				zeroRTT++
			}
			sess.Close()
			<-sess.Closed()
			cc.Close()
			cancel()
		}
		sort.Slice(total, func(i, j int) bool { return total[i] < total[j] })
		t.Logf("RTT 10 ms, %s: dial to open session p50 %v (min %v, max %v), 0-RTT used %d of 21", mode.name,
			total[len(total)/2].Round(100*time.Microsecond), total[0].Round(100*time.Microsecond), total[len(total)-1].Round(100*time.Microsecond), zeroRTT)
	}
}
