package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Per-operation benchmarks for profiling: go test -bench . -benchmem
// (the allocation and CPU figures include client and server, both in this
// process).

func benchSession(b *testing.B, im impl, h func(session)) session {
	clientPin = serverCert().hash
	r, err := connect(im, h, 60*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(r.close)
	return r.sess
}

func BenchmarkStreamEcho(b *testing.B) {
	for _, im := range impls {
		b.Run("impl="+im.Name(), func(b *testing.B) {
			sess := benchSession(b, im, func(s session) { acceptLoop(s, echoStream) })
			ctx := context.Background()
			msg := echoData[:echoSize]
			got := make([]byte, echoSize)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				str, err := sess.OpenStream(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := str.Write(msg); err != nil {
					b.Fatal(err)
				}
				str.Close()
				if _, err := io.ReadFull(str, got); err != nil {
					b.Fatal(err)
				}
				if n, err := str.Read(got[:1]); n != 0 || err != io.EOF {
					b.Fatal("no FIN")
				}
			}
			b.StopTimer()
			if !bytes.Equal(got, msg) {
				b.Fatal("payload mismatch")
			}
		})
	}
}

func BenchmarkDatagramPingPong(b *testing.B) {
	for _, im := range impls {
		b.Run("impl="+im.Name(), func(b *testing.B) {
			sess := benchSession(b, im, func(s session) {
				for {
					d, err := s.ReceiveDatagram(context.Background())
					if err != nil {
						return
					}
					s.SendDatagram(d)
				}
			})
			msg := echoData[:1000]
			b.ReportAllocs()
			b.ResetTimer()
			lost := 0
			for i := 0; i < b.N; i++ {
				if err := sess.SendDatagram(msg); err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				d, err := sess.ReceiveDatagram(ctx)
				cancel()
				if err != nil {
					lost++
					if lost > 100 {
						b.Fatal(err)
					}
					continue
				}
				if !bytes.Equal(d, msg) {
					b.Fatal("payload mismatch")
				}
			}
			b.ReportMetric(float64(lost), "lost")
		})
	}
}

func BenchmarkSetup(b *testing.B) {
	type setupCase struct {
		name string
		im   impl
		req  bool // raw only: answer one 1-byte stream echo
	}
	var cases []setupCase
	for _, im := range impls {
		cases = append(cases, setupCase{im.Name(), im, false})
	}
	// The floor for any protocol that answers a request after the
	// handshake, as WebTransport's CONNECT is: raw quic-go's handshake
	// plus one 1-byte stream echo (the setup-req workload).
	cases = append(cases, setupCase{"raw+echo", rawImpl{}, true})
	for _, c := range cases {
		b.Run("impl="+c.name, func(b *testing.B) {
			clientPin = serverCert().hash
			ln, err := listen()
			if err != nil {
				b.Fatal(err)
			}
			h := func(session) {}
			if c.req {
				h = echoOneServer
			}
			stop := c.im.Serve(ln, h, serverOpts{})
			defer stop()
			addr := ln.Addr().String()
			b.ReportAllocs()
			b.ResetTimer()
			if d0, ok := udpDatagramsSent(); ok {
				defer func() {
					if d1, ok := udpDatagramsSent(); ok {
						b.ReportMetric(float64(d1-d0)/float64(b.N), "datagrams/op")
					}
				}()
			}
			for i := 0; i < b.N; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				sess, err := c.im.Dial(ctx, addr)
				if err == nil && c.req {
					err = echoOne(ctx, sess, byte(i))
				}
				cancel()
				if err != nil {
					b.Fatal(err)
				}
				sess.Close()
			}
		})
	}
}

// udpDatagramsSent reads the kernel's count of UDP datagrams sent (Linux:
// OutDatagrams in /proc/net/snmp). Over loopback each datagram of the
// client and the server is counted once; the count is the whole machine's,
// so the figure is meaningful on an otherwise quiet machine.
func udpDatagramsSent() (uint64, bool) {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return 0, false
	}
	var names []string
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "OutDatagrams" && i < len(f) {
				v, err := strconv.ParseUint(f[i], 10, 64)
				return v, err == nil
			}
		}
	}
	return 0, false
}
