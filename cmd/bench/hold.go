package main

// Memory and goroutine workloads. The server runs in this process; the
// clients run in a child process (this binary re-executed with
// QUICWT_BENCH_CHILD=1), so the server-side figures count only the
// server: each is a difference of runtime.NumGoroutine and of
// runtime.MemStats.HeapAlloc after runtime.GC, taken once the goroutine
// count is stable, between a snapshot before the child starts and one
// while the child holds its connections. The child reports the same
// differences for the client side.

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
)

const childEnv = "QUICWT_BENCH_CHILD"

type memSnap struct {
	heap  int64
	stack int64 // goroutine stacks (StackInuse), not part of the heap
	gor   int
}

// snapshot waits for the goroutine count to be stable (unchanged over
// 300 ms, at most 5 s), then collects garbage and reads the live heap.
func snapshot() memSnap {
	prev, stable := runtime.NumGoroutine(), 0
	for i := 0; i < 50 && stable < 3; i++ {
		time.Sleep(100 * time.Millisecond)
		n := runtime.NumGoroutine()
		if n == prev {
			stable++
		} else {
			prev, stable = n, 0
		}
	}
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSnap{heap: int64(ms.HeapAlloc), stack: int64(ms.StackInuse), gor: runtime.NumGoroutine()}
}

type holdSpec struct {
	name    string
	conns   int
	perConn int // sessions per connection; >1 adds a second stage
	multi   bool
}

type holdResult struct {
	base, s1, s2 memSnap       // server
	cli1, cli2   memSnap       // client deltas (from its own baseline)
	t1, t2       time.Duration // time the child took to establish stage 1, 2
}

var gdumpDir string // -gdump: write goroutine dumps of the held server

func dumpGoroutines(name string) {
	if gdumpDir == "" {
		return
	}
	f, err := os.Create(filepath.Join(gdumpDir, name+".txt"))
	if err != nil {
		return
	}
	defer f.Close()
	pprof.Lookup("goroutine").WriteTo(f, 1)
	// The heap profile (in-use) of the held server; -gdump also sets
	// runtime.MemProfileRate to 1 so that it records every allocation.
	if h, err := os.Create(filepath.Join(gdumpDir, name+".heap")); err == nil {
		runtime.GC()
		pprof.Lookup("heap").WriteTo(h, 0)
		h.Close()
	}
}

func runHold(im impl, spec holdSpec) (*holdResult, error) {
	ln, err := listen()
	if err != nil {
		return nil, err
	}
	var (
		count  atomic.Int64
		heldMu sync.Mutex
		held   []any
	)
	hold := func(x any) {
		heldMu.Lock()
		held = append(held, x)
		heldMu.Unlock()
	}
	h := func(s session) {
		if im.RawHold() {
			// raw: a "session" is a stream with one byte on it.
			for j := 0; j < spec.perConn; j++ {
				str, err := s.AcceptStream(context.Background())
				if err != nil {
					return
				}
				var b [1]byte
				if _, err := io.ReadFull(str, b[:]); err != nil {
					return
				}
				hold(str)
				count.Add(1)
			}
			hold(s)
			return
		}
		hold(s)
		count.Add(1)
	}
	stop := im.Serve(ln, h, serverOpts{multi: spec.multi})
	defer func() {
		stop()
		heldMu.Lock()
		held = nil
		heldMu.Unlock()
	}()

	res := &holdResult{}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(),
		childEnv+"=1",
		"QUICWT_BENCH_IMPL="+im.Name(),
		"QUICWT_BENCH_ADDR="+ln.Addr().String(),
		"QUICWT_BENCH_CONNS="+strconv.Itoa(spec.conns),
		"QUICWT_BENCH_PER="+strconv.Itoa(spec.perConn),
		"QUICWT_BENCH_MULTI="+strconv.FormatBool(spec.multi),
		"QUICWT_BENCH_PIN="+hex.EncodeToString(clientPin[:]),
		"GOMAXPROCS="+strconv.Itoa(runtime.GOMAXPROCS(0)),
	)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	// The reader of the child's output starts before the base snapshot:
	// it is the bench's goroutine, not the server's (it blocks on the pipe
	// until the child writes).
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	res.base = snapshot()
	if err := cmd.Start(); err != nil {
		stdout.Close()
		return nil, err
	}
	defer func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}()
	timeout := 120*time.Second + time.Duration(spec.conns*spec.perConn)*10*time.Millisecond
	stage := func(want string, sessions int64) (memSnap, time.Duration, error) {
		var line string
		select {
		case l, ok := <-lines:
			if !ok {
				return memSnap{}, 0, errors.New("client process ended early")
			}
			line = l
		case <-time.After(timeout):
			return memSnap{}, 0, fmt.Errorf("timeout waiting for client %s", want)
		}
		f := strings.Fields(line)
		if len(f) != 4 || f[0] != want {
			return memSnap{}, 0, fmt.Errorf("client: %s", line)
		}
		heap, _ := strconv.ParseInt(f[1], 10, 64)
		gor, _ := strconv.Atoi(f[2])
		ns, _ := strconv.ParseInt(f[3], 10, 64)
		for deadline := time.Now().Add(timeout); count.Load() < sessions; {
			if time.Now().After(deadline) {
				return memSnap{}, 0, fmt.Errorf("server saw %d of %d sessions", count.Load(), sessions)
			}
			time.Sleep(10 * time.Millisecond)
		}
		return memSnap{heap: heap, gor: gor}, time.Duration(ns), nil
	}
	if res.cli1, res.t1, err = stage("stage1", int64(spec.conns)); err != nil {
		return nil, err
	}
	res.s1 = snapshot()
	dumpGoroutines(spec.name + "-" + im.Name() + "-stage1")
	if spec.perConn > 1 {
		if _, err := io.WriteString(stdin, "next\n"); err != nil {
			return nil, err
		}
		if res.cli2, res.t2, err = stage("stage2", int64(spec.conns*spec.perConn)); err != nil {
			return nil, err
		}
		res.s2 = snapshot()
		dumpGoroutines(spec.name + "-" + im.Name() + "-stage2")
	}
	io.WriteString(stdin, "quit\n")
	return res, nil
}

// childMain is the client process: it dials the connections and sessions,
// reports its own heap and goroutine growth, and holds them until told.
func childMain() {
	fail := func(err error) {
		fmt.Printf("error %v\n", err)
		os.Exit(1)
	}
	im := implByName(os.Getenv("QUICWT_BENCH_IMPL"))
	addr := os.Getenv("QUICWT_BENCH_ADDR")
	conns, _ := strconv.Atoi(os.Getenv("QUICWT_BENCH_CONNS"))
	per, _ := strconv.Atoi(os.Getenv("QUICWT_BENCH_PER"))
	multi, _ := strconv.ParseBool(os.Getenv("QUICWT_BENCH_MULTI"))
	pin, err := hex.DecodeString(os.Getenv("QUICWT_BENCH_PIN"))
	if im == nil || conns <= 0 || per <= 0 || err != nil || len(pin) != 32 {
		fail(errors.New("bad child environment"))
	}
	copy(clientPin[:], pin)
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		fail(err)
	}
	tr := &quic.Transport{Conn: udp}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	o := serverOpts{multi: multi}
	in := bufio.NewScanner(os.Stdin)
	go func() {
		// The parent going away ends the child.
		<-ctx.Done()
		os.Exit(2)
	}()

	base := snapshot()
	ccs := make([]clientConn, conns)
	var mu sync.Mutex
	var held []any
	var firstErr error
	run := func(n int, f func(i int) error) {
		var wg sync.WaitGroup
		sem := make(chan struct{}, 32)
		for i := 0; i < n; i++ {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				if err := f(i); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if firstErr != nil {
			fail(firstErr)
		}
	}
	t0 := time.Now()
	run(conns, func(i int) error {
		cc, err := im.DialOn(ctx, tr, addr, o)
		if err != nil {
			return fmt.Errorf("dial %d: %w", i, err)
		}
		ccs[i] = cc
		s, err := cc.OpenSession(ctx)
		if err != nil {
			return fmt.Errorf("session on conn %d: %w", i, err)
		}
		mu.Lock()
		held = append(held, s)
		mu.Unlock()
		return nil
	})
	el := time.Since(t0)
	s := snapshot()
	fmt.Printf("stage1 %d %d %d\n", s.heap-base.heap, s.gor-base.gor, el.Nanoseconds())
	if !in.Scan() {
		return
	}
	if in.Text() == "next" {
		t0 = time.Now()
		// Extra sessions: 32 at a time over all connections.
		run(conns*(per-1), func(k int) error {
			cc := ccs[k%conns]
			s, err := cc.OpenSession(ctx)
			if err != nil {
				return fmt.Errorf("extra session %d: %w", k, err)
			}
			mu.Lock()
			held = append(held, s)
			mu.Unlock()
			return nil
		})
		el = time.Since(t0)
		s = snapshot()
		fmt.Printf("stage2 %d %d %d\n", s.heap-base.heap, s.gor-base.gor, el.Nanoseconds())
		in.Scan()
	}
	for _, cc := range ccs {
		cc.Close()
	}
	runtime.KeepAlive(held)
}

// ---- the workloads ----

func runIdle(im impl, sz sizes) (map[string]float64, error) {
	n := sz.idleConns
	r, err := runHold(im, holdSpec{name: "idle", conns: n, perConn: 1})
	if err != nil {
		return nil, err
	}
	return map[string]float64{
		"srv heap B/conn":     float64(r.s1.heap-r.base.heap) / float64(n),
		"srv goroutines/conn": float64(r.s1.gor-r.base.gor) / float64(n),
		"srv stack B/conn":    float64(r.s1.stack-r.base.stack) / float64(n),
		"cli heap B/conn":     float64(r.cli1.heap) / float64(n),
		"cli goroutines/conn": float64(r.cli1.gor) / float64(n),
	}, nil
}

func runMany(im impl, sz sizes) (map[string]float64, error) {
	k := sz.manySessions
	r, err := runHold(im, holdSpec{name: "many", conns: 1, perConn: 1 + k, multi: true})
	if err != nil {
		return nil, err
	}
	return map[string]float64{
		"srv heap B/extra":     float64(r.s2.heap-r.s1.heap) / float64(k),
		"srv goroutines/extra": float64(r.s2.gor-r.s1.gor) / float64(k),
		"srv stack B/extra":    float64(r.s2.stack-r.s1.stack) / float64(k),
		"cli heap B/extra":     float64(r.cli2.heap-r.cli1.heap) / float64(k),
		"cli goroutines/extra": float64(r.cli2.gor-r.cli1.gor) / float64(k),
	}, nil
}

func scaleResult(sessions int, s, base memSnap, el time.Duration) map[string]float64 {
	return map[string]float64{
		"sessions":           float64(sessions),
		"srv heap MiB":       float64(s.heap-base.heap) / (1 << 20),
		"srv heap B/session": float64(s.heap-base.heap) / float64(sessions),
		"srv goroutines":     float64(s.gor - base.gor),
		"established/s":      float64(sessions) / el.Seconds(),
	}
}

func runScaleConns(im impl, sz sizes) (map[string]float64, error) {
	n := sz.scaleConns
	r, err := runHold(im, holdSpec{name: "scale-conns", conns: n, perConn: 1})
	if err != nil {
		return nil, err
	}
	return scaleResult(n, r.s1, r.base, r.t1), nil
}

func runScaleMulti(im impl, sz sizes) (map[string]float64, error) {
	c, s := sz.scaleMultiC, sz.scaleMultiS
	r, err := runHold(im, holdSpec{name: "scale-multi", conns: c, perConn: s, multi: true})
	if err != nil {
		return nil, err
	}
	return scaleResult(c*s, r.s2, r.base, r.t1+r.t2), nil
}
