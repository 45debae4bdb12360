package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// sizes are the counts of one run; quick mode shrinks them.
type sizes struct {
	bulkBytes    int64
	echoStreams  int
	echoParallel int
	dgrams       int
	dgramSize    int
	setups       int
	idleConns    int
	manySessions int // extra sessions on one connection
	scaleConns   int // connections with one session each
	scaleMultiC  int // connections ...
	scaleMultiS  int // ... with this many sessions each
}

func fullSizes() sizes {
	return sizes{
		bulkBytes: 256 << 20, echoStreams: 10000, echoParallel: 64,
		dgrams: 100000, dgramSize: 1000, setups: 500,
		idleConns: 200, manySessions: 1000,
		scaleConns: 10000, scaleMultiC: 10, scaleMultiS: 1000,
	}
}

func quickSizes() sizes {
	return sizes{
		bulkBytes: 4 << 20, echoStreams: 200, echoParallel: 64,
		dgrams: 2000, dgramSize: 1000, setups: 10,
		idleConns: 10, manySessions: 20,
		scaleConns: 20, scaleMultiC: 2, scaleMultiS: 20,
	}
}

// metric describes one reported number.
type metric struct {
	name   string
	higher bool   // higher is better
	goal   string // the goal for quicwt, if any
	// check returns whether quicwt meets the goal, given the medians.
	check func(raw, qwt float64) bool
	// points: report the difference to raw in points, not a ratio.
	points bool
}

type workload struct {
	name    string
	desc    string
	metrics []metric
	scale   bool // long; runs -scale-rounds times
	// reps: runs per implementation and round (default 1), for the short
	// workloads whose single runs one busy moment of another process
	// moves by 10 %; each run is a sample.
	reps int
	run  func(im impl, sz sizes) (map[string]float64, error)
}

func ratioAtLeast(r float64) func(raw, q float64) bool {
	return func(raw, q float64) bool { return raw > 0 && q/raw >= r }
}
func ratioAtMost(r float64) func(raw, q float64) bool {
	return func(raw, q float64) bool { return raw > 0 && q/raw <= r }
}
func atMost(v float64) func(raw, q float64) bool {
	return func(_, q float64) bool { return q <= v }
}
func pointsAtMost(p float64) func(raw, q float64) bool {
	return func(raw, q float64) bool { return q-raw <= p }
}

func workloads() []workload {
	dgMetrics := func() []metric {
		return []metric{
			{name: "delivered/s", higher: true, goal: ">= 0.95x", check: ratioAtLeast(0.95)},
			{name: "loss %", goal: "<= raw + 1 pt", check: pointsAtMost(1), points: true},
			{name: "layer drops"},
		}
	}
	return []workload{
		{name: "bulk", desc: "one stream, client to server, CRC-32C checked",
			metrics: []metric{{name: "MiB/s", higher: true, goal: ">= 0.98x", check: ratioAtLeast(0.98)}},
			reps:    3,
			run:     runBulk},
		{name: "echo-seq", desc: "bidi streams of 1 KiB echo, one at a time, bytes compared",
			metrics: []metric{{name: "streams/s", higher: true, goal: ">= 0.95x", check: ratioAtLeast(0.95)}},
			reps:    5,
			run:     func(im impl, sz sizes) (map[string]float64, error) { return runEcho(im, sz, 1) }},
		{name: "echo-64", desc: "bidi streams of 1 KiB echo, 64 in flight, bytes compared",
			metrics: []metric{{name: "streams/s", higher: true, goal: ">= 0.95x", check: ratioAtLeast(0.95)}},
			reps:    5,
			run:     func(im impl, sz sizes) (map[string]float64, error) { return runEcho(im, sz, sz.echoParallel) }},
		{name: "dgram-b2b", desc: "datagrams back-to-back, client to server, payload checked",
			metrics: dgMetrics(),
			run:     func(im impl, sz sizes) (map[string]float64, error) { return runDatagrams(im, sz, 0) }},
		{name: "dgram-25k", desc: "datagrams paced at 25,000/s",
			metrics: dgMetrics(),
			run:     func(im impl, sz sizes) (map[string]float64, error) { return runDatagrams(im, sz, 25000) }},
		{name: "dgram-50k", desc: "datagrams paced at 50,000/s",
			metrics: dgMetrics(),
			run:     func(im impl, sz sizes) (map[string]float64, error) { return runDatagrams(im, sz, 50000) }},
		{name: "setup", desc: "new connection + one session (raw: handshake), sequential",
			metrics: []metric{
				{name: "setups/s", higher: true, goal: ">= 0.90x", check: ratioAtLeast(0.90)},
				{name: "mean ms"},
				{name: "p50 ms"},
				{name: "p99 ms"},
			},
			reps: 3,
			run:  func(im impl, sz sizes) (map[string]float64, error) { return runSetup(im, sz, false) }},
		{name: "setup-req", desc: "as setup, but raw answers one request: handshake + a 1-byte stream echo (the floor for any protocol that needs a request after the handshake, as the CONNECT is)",
			metrics: []metric{
				{name: "setups/s", higher: true},
				{name: "p50 ms"},
			},
			reps: 3,
			run:  func(im impl, sz sizes) (map[string]float64, error) { return runSetup(im, sz, true) }},
		{name: "idle", desc: "connections with one idle session each (raw: one open stream), clients in a child process",
			metrics: []metric{
				{name: "srv heap B/conn", goal: "<= 1.25x", check: ratioAtMost(1.25)},
				{name: "srv goroutines/conn", goal: "<= 6", check: atMost(6)},
				{name: "srv stack B/conn"},
				{name: "cli heap B/conn"},
				{name: "cli goroutines/conn"},
			},
			run: runIdle},
		{name: "many", desc: "extra sessions on one connection (raw: extra open streams), clients in a child process",
			metrics: []metric{
				{name: "srv heap B/extra", goal: "<= 3072", check: atMost(3072)},
				{name: "srv goroutines/extra", goal: "<= 1", check: atMost(1)},
				{name: "srv stack B/extra"},
				{name: "cli heap B/extra"},
				{name: "cli goroutines/extra"},
			},
			run: runMany},
		{name: "scale-conns", desc: "sessions held, one per connection, clients in a child process", scale: true,
			metrics: []metric{
				{name: "sessions"},
				{name: "srv heap MiB"},
				{name: "srv heap B/session"},
				{name: "srv goroutines"},
				{name: "established/s", higher: true},
			},
			run: runScaleConns},
		{name: "scale-multi", desc: "sessions held, 1,000 per connection, clients in a child process", scale: true,
			metrics: []metric{
				{name: "sessions"},
				{name: "srv heap MiB"},
				{name: "srv heap B/session"},
				{name: "srv goroutines"},
				{name: "established/s", higher: true},
			},
			run: runScaleMulti},
	}
}

// ---- helpers ----

// watchdog closes the session when ctx ends, which unblocks every read and
// write on it: the bound on each run.
func watchdog(ctx context.Context, s session) func() bool {
	return context.AfterFunc(ctx, func() { s.Close() })
}

// pair is one session to a fresh server, for a workload's run.
type pair struct {
	ctx    context.Context // bounds the run; its end closes the session
	cancel context.CancelFunc
	sess   session
	close  func() // tears down the session, the context and the server
}

// connect starts a server running h for each session and dials one
// session to it, the whole run bounded by timeout.
func connect(im impl, h func(session), timeout time.Duration) (*pair, error) {
	ln, err := listen()
	if err != nil {
		return nil, err
	}
	stop := im.Serve(ln, h, serverOpts{})
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	sess, err := im.Dial(ctx, ln.Addr().String())
	if err != nil {
		cancel()
		stop()
		return nil, fmt.Errorf("dial: %w", err)
	}
	stopWD := watchdog(ctx, sess)
	return &pair{ctx: ctx, cancel: cancel, sess: sess, close: func() { stopWD(); sess.Close(); cancel(); stop() }}, nil
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// pattern returns n deterministic pseudo-random bytes.
func pattern(n int, seed uint64) []byte {
	b := make([]byte, n)
	x := seed | 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

// ---- bulk ----

const bulkChunk = 1 << 20

var bulkData = pattern(bulkChunk, 42)

// bulkSink reads a stream to its end and answers with the byte count and
// the CRC-32C of what it read.
func bulkSink(str stream) {
	defer str.Close()
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var n uint64
	var crc uint32
	for {
		k, err := str.Read(buf)
		n += uint64(k)
		crc = crc32.Update(crc, castagnoli, buf[:k])
		if err == io.EOF {
			break
		}
		if err != nil {
			return
		}
	}
	var out [12]byte
	binary.LittleEndian.PutUint64(out[:8], n)
	binary.LittleEndian.PutUint32(out[8:], crc)
	str.Write(out[:])
}

func acceptLoop(s session, f func(stream)) {
	for {
		str, err := s.AcceptStream(context.Background())
		if err != nil {
			return
		}
		go f(str)
	}
}

func runBulk(im impl, sz sizes) (map[string]float64, error) {
	r, err := connect(im, func(s session) { acceptLoop(s, bulkSink) }, 180*time.Second)
	if err != nil {
		return nil, err
	}
	defer r.close()
	ctx, sess := r.ctx, r.sess
	var want uint32
	for left := sz.bulkBytes; left > 0; left -= bulkChunk {
		want = crc32.Update(want, castagnoli, bulkData[:min(left, bulkChunk)])
	}
	start := time.Now()
	str, err := sess.OpenStream(ctx)
	if err != nil {
		return nil, err
	}
	for left := sz.bulkBytes; left > 0; left -= bulkChunk {
		if _, err := str.Write(bulkData[:min(left, bulkChunk)]); err != nil {
			return nil, fmt.Errorf("write: %w", err)
		}
	}
	str.Close()
	var out [12]byte
	if _, err := io.ReadFull(str, out[:]); err != nil {
		return nil, fmt.Errorf("read answer: %w", err)
	}
	el := time.Since(start)
	n, crc := binary.LittleEndian.Uint64(out[:8]), binary.LittleEndian.Uint32(out[8:])
	if n != uint64(sz.bulkBytes) || crc != want {
		return nil, fmt.Errorf("bulk: server got %d bytes crc %08x, sent %d crc %08x", n, crc, sz.bulkBytes, want)
	}
	return map[string]float64{"MiB/s": float64(sz.bulkBytes) / (1 << 20) / el.Seconds()}, nil
}

// ---- stream echo ----

func echoStream(str stream) {
	bp := bufPool.Get().(*[]byte)
	io.CopyBuffer(str, struct{ io.Reader }{str}, *bp)
	bufPool.Put(bp)
	str.Close()
}

const echoSize = 1024

var echoData = pattern(echoSize+4096, 7)

func runEcho(im impl, sz sizes, parallel int) (map[string]float64, error) {
	r, err := connect(im, func(s session) { acceptLoop(s, echoStream) }, 120*time.Second)
	if err != nil {
		return nil, err
	}
	defer r.close()
	ctx, sess := r.ctx, r.sess

	one := func(i int, got []byte) error {
		msg := echoData[i%4096 : i%4096+echoSize]
		str, err := sess.OpenStream(ctx)
		if err != nil {
			return fmt.Errorf("open: %w", err)
		}
		if _, err := str.Write(msg); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		str.Close()
		if _, err := io.ReadFull(str, got); err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if n, err := str.Read(got[:1]); n != 0 || err != io.EOF {
			return fmt.Errorf("echo: no FIN after %d bytes (%d, %v)", echoSize, n, err)
		}
		if !bytes.Equal(got, msg) {
			return errors.New("echo: payload mismatch")
		}
		return nil
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, parallel)
	start := time.Now()
	for w := 0; w < parallel; w++ {
		wg.Go(func() {
			got := make([]byte, echoSize)
			for {
				i := int(next.Add(1)) - 1
				if i >= sz.echoStreams {
					return
				}
				if err := one(i, got); err != nil {
					errs <- fmt.Errorf("stream %d: %w", i, err)
					r.cancel()
					return
				}
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	select {
	case err := <-errs:
		return nil, err
	default:
	}
	return map[string]float64{"streams/s": float64(sz.echoStreams) / el.Seconds()}, nil
}

// ---- datagrams ----

const dgPatMod = 251

// dgSink counts and checks the datagrams a server session receives.
type dgSink struct {
	n, size  int
	pat      []byte
	base     time.Time
	recv     atomic.Int64
	bad      atomic.Int64
	dup      atomic.Int64
	lastNs   atomic.Int64
	seen     []uint64
	sessMu   sync.Mutex
	sess     session
	finished chan struct{}
}

func (d *dgSink) serve(s session) {
	d.sessMu.Lock()
	d.sess = s
	d.sessMu.Unlock()
	defer close(d.finished)
	for {
		b, err := s.ReceiveDatagram(context.Background())
		if err != nil {
			return
		}
		now := time.Since(d.base)
		if len(b) != d.size {
			d.bad.Add(1)
			continue
		}
		seq := binary.LittleEndian.Uint64(b)
		if seq >= uint64(d.n) || !bytes.Equal(b[8:], d.pat[seq%dgPatMod:seq%dgPatMod+uint64(d.size-8)]) {
			d.bad.Add(1)
			continue
		}
		if d.seen[seq/64]&(1<<(seq%64)) != 0 {
			d.dup.Add(1)
			continue
		}
		d.seen[seq/64] |= 1 << (seq % 64)
		d.recv.Add(1)
		d.lastNs.Store(int64(now))
	}
}

func runDatagrams(im impl, sz sizes, rate int) (map[string]float64, error) {
	sink := &dgSink{n: sz.dgrams, size: sz.dgramSize, pat: pattern(dgPatMod+sz.dgramSize, 3),
		seen: make([]uint64, (sz.dgrams+63)/64), finished: make(chan struct{}), base: time.Now()}
	r, err := connect(im, sink.serve, 120*time.Second)
	if err != nil {
		return nil, err
	}
	defer r.close()
	sess := r.sess

	buf := make([]byte, sz.dgramSize)
	var interval time.Duration
	if rate > 0 {
		interval = time.Second / time.Duration(rate)
	}
	start := time.Now()
	startNs := int64(start.Sub(sink.base))
	for i := 0; i < sz.dgrams; i++ {
		if rate > 0 {
			// Schedule-based pacer: datagram i is due at start+i*interval;
			// sleep until it is due, and send at once those already due
			// (after a late wake-up), so the average rate is exact.
			if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
				time.Sleep(d)
			}
		}
		binary.LittleEndian.PutUint64(buf, uint64(i))
		copy(buf[8:], sink.pat[i%dgPatMod:])
		if err := sess.SendDatagram(buf); err != nil {
			return nil, fmt.Errorf("send datagram %d: %w", i, err)
		}
	}
	// Wait for the stragglers: until all arrived or nothing arrived for
	// 300 ms (bounded at 10 s).
	last, lastChange := sink.recv.Load(), time.Now()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
		r := sink.recv.Load()
		if r == int64(sz.dgrams) {
			break
		}
		if r != last {
			last, lastChange = r, time.Now()
		} else if time.Since(lastChange) > 300*time.Millisecond {
			break
		}
	}
	if b := sink.bad.Load() + sink.dup.Load(); b > 0 {
		return nil, fmt.Errorf("datagrams: %d corrupt or duplicated", b)
	}
	recv := sink.recv.Load()
	if recv == 0 {
		return nil, errors.New("datagrams: none delivered")
	}
	el := time.Duration(sink.lastNs.Load() - startNs)
	var drops float64
	sink.sessMu.Lock()
	if sink.sess != nil {
		drops = float64(sink.sess.Dropped())
	}
	sink.sessMu.Unlock()
	if im.Name() == "wtgo" {
		drops = math.NaN() // no such counter
	}
	return map[string]float64{
		"delivered/s": float64(recv) / el.Seconds(),
		"loss %":      100 * float64(int64(sz.dgrams)-recv) / float64(sz.dgrams),
		"layer drops": drops,
	}, nil
}

// ---- setup ----

// echoOneServer answers echoOne on a session's first stream.
func echoOneServer(s session) {
	str, err := s.AcceptStream(context.Background())
	if err != nil {
		return
	}
	var one [1]byte
	if _, err := io.ReadFull(str, one[:]); err == nil {
		_, _ = str.Write(one[:])
	}
}

// echoOne sends one byte on a new stream and checks that it comes back.
func echoOne(ctx context.Context, sess session, b byte) error {
	str, err := sess.OpenStream(ctx)
	if err != nil {
		return err
	}
	one := []byte{b}
	if _, err := str.Write(one); err != nil {
		return err
	}
	if _, err := io.ReadFull(str, one); err != nil {
		return err
	}
	if one[0] != b {
		return fmt.Errorf("echo: got %d, want %d", one[0], b)
	}
	return nil
}

// runSetup times new connections with one session each. With req, raw
// quic-go's setup also answers one request (a 1-byte stream echo).
func runSetup(im impl, sz sizes, req bool) (map[string]float64, error) {
	ln, err := listen()
	if err != nil {
		return nil, err
	}
	rawReq := req && im.RawHold()
	h := func(session) {}
	if rawReq {
		h = echoOneServer
	}
	stop := im.Serve(ln, h, serverOpts{})
	defer stop()
	lat := make([]time.Duration, 0, sz.setups)
	addr := ln.Addr().String()
	start := time.Now()
	for i := 0; i < sz.setups; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		t0 := time.Now()
		sess, err := im.Dial(ctx, addr)
		if err == nil && rawReq {
			err = echoOne(ctx, sess, byte(i))
		}
		cancel()
		if err != nil {
			return nil, fmt.Errorf("setup %d: %w", i, err)
		}
		lat = append(lat, time.Since(t0))
		sess.Close()
	}
	el := time.Since(start)
	var sum time.Duration
	for _, l := range lat {
		sum += l
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(lat)))) - 1
		return float64(lat[max(0, i)]) / 1e6
	}
	return map[string]float64{
		"setups/s": float64(sz.setups) / el.Seconds(),
		"mean ms":  float64(sum) / float64(len(lat)) / 1e6, // the setups alone, without the closes
		"p50 ms":   pct(0.50),
		"p99 ms":   pct(0.99),
	}, nil
}
