package main

// quicwt-only feature workloads (issue 13), run with -features:
//
//	prio:      latency of small messages on one stream while 4 bulk streams
//	           saturate the connection, with and without a send order, and
//	           on an idle connection;
//	dgram-age: age at delivery of datagrams paced above a rate-limited
//	           path's capacity, with quic-go's blocking send and with a
//	           DatagramSendPolicy (MaxAge).

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quicwt/quicwt/quicwt"
)

// featureServer runs a quicwt server whose sessions go to h.
func featureServer(h func(*quicwt.Session)) (addr string, stop func(), err error) {
	ln, err := listen()
	if err != nil {
		return "", nil, err
	}
	srv := &quicwt.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if sess, err := quicwt.Upgrade(w, r); err == nil {
				h(sess)
			}
		}),
		QUICConfig:  quicConfig(),
		CheckOrigin: func(*http.Request) bool { return true },
	}
	go srv.ServeListener(ln)
	return ln.Addr().String(), func() { srv.Close(); ln.Close() }, nil
}

func featureDial(ctx context.Context, addr string) (*quicwt.Session, error) {
	d := quicwt.Dialer{CertificateHashes: [][32]byte{serverCert().hash}, QUICConfig: quicConfig()}
	_, sess, err := d.Dial(ctx, benchURL(addr), nil)
	return sess, err
}

func pct(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[int(q*float64(len(d)-1))]
}

func msStr(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

// ---- prio ----

type prioResult struct {
	lat         []time.Duration
	bulkMiBps   float64
	sent, recvd int
}

// runPrio: the client opens nBulk unidirectional streams writing as fast
// as they can and one message stream that writes a 64-byte timestamped
// message every 2 ms for dur; the server reads everything and records
// each message's one-way latency (same process, same clock).
func runPrio(order bool, nBulk int, linkMbps float64, qlen int, dur time.Duration) (*prioResult, error) {
	res := &prioResult{}
	var bulkBytes atomic.Int64
	var mu sync.Mutex
	msgDone := make(chan struct{})
	addr, stop, err := featureServer(func(sess *quicwt.Session) {
		for {
			str, err := sess.AcceptUniStream(sess.Context())
			if err != nil {
				return
			}
			go func() {
				var kind [1]byte
				if _, err := io.ReadFull(str, kind[:]); err != nil {
					return
				}
				if kind[0] == 'B' {
					bp := bufPool.Get().(*[]byte)
					defer bufPool.Put(bp)
					for {
						n, err := str.Read(*bp)
						bulkBytes.Add(int64(n))
						if err != nil {
							return
						}
					}
				}
				defer close(msgDone)
				var m [64]byte
				for {
					if _, err := io.ReadFull(str, m[:]); err != nil {
						return
					}
					l := time.Since(time.Unix(0, int64(binary.BigEndian.Uint64(m[:]))))
					mu.Lock()
					res.lat = append(res.lat, l)
					mu.Unlock()
				}
			}()
		}
	})
	if err != nil {
		return nil, err
	}
	defer stop()
	if linkMbps > 0 {
		px, err := newRateProxy(addr, linkMbps*1e6, qlen)
		if err != nil {
			return nil, err
		}
		defer px.close()
		addr = px.addr()
	}
	ctx, cancel := context.WithTimeout(context.Background(), dur+20*time.Second)
	defer cancel()
	sess, err := featureDial(ctx, addr)
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	var bulks []*quicwt.SendStream
	for i := 0; i < nBulk; i++ {
		s, err := sess.OpenUniStreamSync(ctx)
		if err != nil {
			return nil, err
		}
		bulks = append(bulks, s)
	}
	msg, err := sess.OpenUniStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	if order {
		msg.SetSendOrder(1) // above the bulk streams' default 0
	}
	stopBulk := make(chan struct{})
	var wg sync.WaitGroup
	for _, s := range bulks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.Write([]byte{'B'})
			for {
				select {
				case <-stopBulk:
					s.CancelWrite(0)
					return
				default:
				}
				if _, err := s.Write(bulkData); err != nil {
					return
				}
			}
		}()
	}
	time.Sleep(300 * time.Millisecond) // let the bulk streams fill the path
	startBulk := bulkBytes.Load()
	t0 := time.Now()
	msg.Write([]byte{'M'})
	var m [64]byte
	tick := time.NewTicker(2 * time.Millisecond)
	for time.Since(t0) < dur {
		<-tick.C
		binary.BigEndian.PutUint64(m[:], uint64(time.Now().UnixNano()))
		if _, err := msg.Write(m[:]); err != nil {
			break
		}
		res.sent++
	}
	tick.Stop()
	el := time.Since(t0)
	res.bulkMiBps = float64(bulkBytes.Load()-startBulk) / el.Seconds() / (1 << 20)
	msg.Close()
	select {
	case <-msgDone:
	case <-time.After(10 * time.Second):
	}
	close(stopBulk)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	res.recvd = len(res.lat)
	slices.Sort(res.lat)
	return res, nil
}

// ---- dgram-age ----

// rateProxy forwards UDP client -> server through a bottleneck of rate
// bits/s with a drop-tail queue of qlen packets; server -> client goes
// straight through.
type rateProxy struct {
	pc       net.PacketConn
	up       *net.UDPConn
	mu       sync.Mutex
	client   net.Addr
	queue    chan []byte
	dropped  atomic.Int64
	rate     float64
	done     chan struct{}
	stopOnce sync.Once
}

func newRateProxy(server string, rate float64, qlen int) (*rateProxy, error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	sa, _ := net.ResolveUDPAddr("udp", server)
	up, err := net.DialUDP("udp", nil, sa)
	if err != nil {
		pc.Close()
		return nil, err
	}
	p := &rateProxy{pc: pc, up: up, queue: make(chan []byte, qlen), rate: rate, done: make(chan struct{})}
	go func() { // client -> queue
		buf := make([]byte, 65536)
		for {
			n, ca, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			p.mu.Lock()
			p.client = ca
			p.mu.Unlock()
			select {
			case p.queue <- append([]byte(nil), buf[:n]...):
			default:
				p.dropped.Add(1)
			}
		}
	}()
	go func() { // queue -> server, paced
		next := time.Now()
		for {
			select {
			case <-p.done:
				return
			case b := <-p.queue:
				// A token bucket: sleep only when more than 1 ms ahead of
				// the rate (timer granularity on a loaded machine would
				// otherwise slow the link down), catching up in bursts.
				if d := time.Until(next); d > time.Millisecond {
					time.Sleep(d - 500*time.Microsecond)
				}
				up.Write(b)
				next = maxTime(next, time.Now().Add(-2*time.Millisecond)).Add(time.Duration(float64(len(b)+28) * 8 / p.rate * float64(time.Second)))
			}
		}
	}()
	go func() { // server -> client
		buf := make([]byte, 65536)
		for {
			n, err := up.Read(buf)
			if err != nil {
				return
			}
			p.mu.Lock()
			ca := p.client
			p.mu.Unlock()
			if ca != nil {
				pc.WriteTo(buf[:n], ca)
			}
		}
	}()
	return p, nil
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func (p *rateProxy) addr() string { return p.pc.LocalAddr().String() }
func (p *rateProxy) close() {
	p.stopOnce.Do(func() { close(p.done); p.pc.Close(); p.up.Close() })
}

type ageResult struct {
	mode                  string
	offered, delivered    int
	ages                  []time.Duration
	stats                 quicwt.DatagramSendStats
	behind                time.Duration // how far the sender fell behind its schedule
	proxyDrops            int64
	rateMbps, offeredMbps float64
}

// runDgramAge paces 1,000-byte datagrams at rate per second for dur
// through a bottleneck of linkMbps; each carries its scheduled send time,
// and the server records its age on arrival.
func runDgramAge(mode string, policy *quicwt.DatagramSendPolicy, rate int, linkMbps float64, dur time.Duration) (*ageResult, error) {
	res := &ageResult{mode: mode, rateMbps: linkMbps, offeredMbps: float64(rate) * 1000 * 8 / 1e6}
	var mu sync.Mutex
	addr, stop, err := featureServer(func(sess *quicwt.Session) {
		for {
			b, err := sess.ReceiveDatagram(sess.Context())
			if err != nil {
				return
			}
			if len(b) >= 8 {
				age := time.Since(time.Unix(0, int64(binary.BigEndian.Uint64(b))))
				mu.Lock()
				res.ages = append(res.ages, age)
				mu.Unlock()
			}
		}
	})
	if err != nil {
		return nil, err
	}
	defer stop()
	px, err := newRateProxy(addr, linkMbps*1e6, 32)
	if err != nil {
		return nil, err
	}
	defer px.close()
	ctx, cancel := context.WithTimeout(context.Background(), dur+30*time.Second)
	defer cancel()
	sess, err := featureDial(ctx, px.addr())
	if err != nil {
		return nil, err
	}
	defer sess.Close()
	sess.SetDatagramSendPolicy(policy)
	payload := make([]byte, 1000)
	interval := time.Second / time.Duration(rate)
	n := int(dur / interval)
	t0 := time.Now()
	for i := 0; i < n; i++ {
		at := t0.Add(time.Duration(i) * interval)
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		}
		binary.BigEndian.PutUint64(payload, uint64(at.UnixNano()))
		err := sess.SendDatagram(payload)
		if err != nil && !errors.Is(err, quicwt.ErrDatagramDropped) {
			return nil, err
		}
		res.offered++
	}
	res.behind = time.Since(t0) - dur
	time.Sleep(500 * time.Millisecond) // what is queued drains or expires
	res.stats = sess.DatagramSendStats()
	res.proxyDrops = px.dropped.Load()
	mu.Lock()
	defer mu.Unlock()
	res.delivered = len(res.ages)
	slices.Sort(res.ages)
	return res, nil
}

// runFeatures runs both feature workloads and prints markdown tables.
func runFeatures(w io.Writer, quick bool) error {
	dur := 3 * time.Second
	if quick {
		dur = 500 * time.Millisecond
	}
	const prioLink = 50.0
	fmt.Fprintf(w, "### prio: 64-byte messages every 2 ms on one stream while bulk streams saturate the connection (%v each)\n\n", dur)
	fmt.Fprintf(w, "Path: a %.0f Mbit/s bottleneck with a 16- or 4-packet drop-tail queue (client to server), or plain loopback.\n\n", prioLink)
	fmt.Fprintln(w, "| path | mode | messages | p50 ms | p90 ms | p99 ms | max ms | bulk MiB/s |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|")
	for _, p := range []struct {
		link float64
		qlen int
	}{{prioLink, 16}, {prioLink, 4}, {0, 0}} {
		link := p.link
		path := fmt.Sprintf("%.0f Mbit/s, queue %d", link, p.qlen)
		if link == 0 {
			path = "loopback"
		}
		for _, c := range []struct {
			mode  string
			nBulk int
			order bool
		}{{"idle", 0, false}, {"4 bulk, no priority", 4, false}, {"4 bulk, message stream SetSendOrder(1)", 4, true},
			{"16 bulk, no priority", 16, false}, {"16 bulk, message stream SetSendOrder(1)", 16, true}} {
			r, err := runPrio(c.order, c.nBulk, link, p.qlen, dur)
			if err != nil {
				return fmt.Errorf("prio %s: %w", c.mode, err)
			}
			fmt.Fprintf(w, "| %s | %s | %d/%d | %s | %s | %s | %s | %.1f |\n", path, c.mode, r.recvd, r.sent,
				msStr(pct(r.lat, 0.5)), msStr(pct(r.lat, 0.9)), msStr(pct(r.lat, 0.99)), msStr(pct(r.lat, 1)), r.bulkMiBps)
		}
	}
	const rate, link = 4000, 20.0
	fmt.Fprintf(w, "\n### dgram-age: 1,000-byte datagrams paced at %d/s (%.0f Mbit/s) into a %.0f Mbit/s path with a 32-packet drop-tail queue (%v)\n\n", rate, float64(rate)*8000/1e6, link, dur)
	fmt.Fprintln(w, "| send mode | offered | delivered | age p50 ms | p99 ms | max ms | sender behind schedule | dropped: queue full / max age | path drops |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, c := range []struct {
		mode string
		pol  *quicwt.DatagramSendPolicy
	}{
		{"blocking (no policy)", nil},
		{"MaxAge 50 ms, drop oldest", &quicwt.DatagramSendPolicy{MaxAge: 50 * time.Millisecond, DropOldest: true}},
		{"MaxAge 50 ms, drop newest", &quicwt.DatagramSendPolicy{MaxAge: 50 * time.Millisecond}},
	} {
		r, err := runDgramAge(c.mode, c.pol, rate, link, dur)
		if err != nil {
			return fmt.Errorf("dgram-age %s: %w", c.mode, err)
		}
		fmt.Fprintf(w, "| %s | %d | %d | %s | %s | %s | %s | %d / %d | %d |\n", c.mode, r.offered, r.delivered,
			msStr(pct(r.ages, 0.5)), msStr(pct(r.ages, 0.99)), msStr(pct(r.ages, 1)), r.behind.Round(time.Millisecond),
			r.stats.DroppedFull, r.stats.DroppedMaxAge, r.proxyDrops)
	}
	return nil
}
