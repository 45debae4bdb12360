package quicwt

// Loss and reordering (issue 6): transfers with checksums through an
// impaired path must deliver every byte of every reliable stream intact.
//
// The kernel this was written on has no sch_netem ("Specified qdisc kind
// is unknown"), so the impairment is a userspace UDP relay: it drops 5% of
// the packets in each direction (seeded math/rand) and holds back about
// 10% for a few milliseconds, so that later packets overtake them.
// TestLossyRelay runs it on loopback. TestLossyNetns runs the same
// transfer across a veth pair into a network namespace of its own, with
// the server in a child process (the test binary re-executed inside the
// namespace); it uses netem there when the kernel has it and the relay
// otherwise, and is skipped only where namespaces cannot be created.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	mrand "math/rand"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// ---- the impairment relay ----

type relayDir struct {
	forwarded, dropped, delayed atomic.Int64
}

// lossyRelay forwards UDP between one client and a server, dropping and
// reordering packets.
type lossyRelay struct {
	front   *net.UDPConn // the client talks to this
	back    *net.UDPConn // connected to the server
	loss    float64
	reorder float64
	maxHold time.Duration

	mu     sync.Mutex
	rng    *mrand.Rand
	client *net.UDPAddr

	up, down relayDir // client->server, server->client
	wg       sync.WaitGroup
	timers   sync.WaitGroup
	closed   atomic.Bool
}

func newLossyRelay(t testing.TB, server string, loss, reorder float64, seed int64) *lossyRelay {
	t.Helper()
	front, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	saddr, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		t.Fatal(err)
	}
	back, err := net.DialUDP("udp", nil, saddr)
	if err != nil {
		t.Fatal(err)
	}
	r := &lossyRelay{front: front, back: back, loss: loss, reorder: reorder, maxHold: 8 * time.Millisecond, rng: mrand.New(mrand.NewSource(seed))}
	r.wg.Add(2)
	go r.run(true)
	go r.run(false)
	t.Cleanup(r.close)
	return r
}

func (r *lossyRelay) addr() string { return r.front.LocalAddr().String() }

func (r *lossyRelay) close() {
	if r.closed.Swap(true) {
		return
	}
	r.front.Close()
	r.back.Close()
	r.wg.Wait()
	r.timers.Wait()
}

// fate decides a packet's fate: drop, or deliver after hold (0: at once).
func (r *lossyRelay) fate() (drop bool, hold time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rng.Float64() < r.loss {
		return true, 0
	}
	if r.rng.Float64() < r.reorder {
		return false, time.Millisecond + time.Duration(r.rng.Int63n(int64(r.maxHold)))
	}
	return false, 0
}

func (r *lossyRelay) run(up bool) {
	defer r.wg.Done()
	buf := make([]byte, 65536)
	for {
		var n int
		var err error
		if up {
			var from *net.UDPAddr
			n, from, err = r.front.ReadFromUDP(buf)
			if err == nil {
				r.mu.Lock()
				r.client = from
				r.mu.Unlock()
			}
		} else {
			n, err = r.back.Read(buf)
		}
		if err != nil {
			return
		}
		dir := &r.down
		if up {
			dir = &r.up
		}
		drop, hold := r.fate()
		if drop {
			dir.dropped.Add(1)
			continue
		}
		pkt := append([]byte(nil), buf[:n]...)
		send := func() {
			if up {
				r.back.Write(pkt)
			} else {
				r.mu.Lock()
				c := r.client
				r.mu.Unlock()
				if c != nil {
					r.front.WriteToUDP(pkt, c)
				}
			}
		}
		dir.forwarded.Add(1)
		if hold == 0 {
			send()
			continue
		}
		dir.delayed.Add(1)
		r.timers.Add(1)
		time.AfterFunc(hold, func() {
			defer r.timers.Done()
			if !r.closed.Load() {
				send()
			}
		})
	}
}

func (r *lossyRelay) String() string {
	f := func(d *relayDir) string {
		all := d.forwarded.Load() + d.dropped.Load()
		return fmt.Sprintf("%d packets, %d dropped (%.1f%%), %d reordered", all, d.dropped.Load(), 100*float64(d.dropped.Load())/float64(max(all, 1)), d.delayed.Load())
	}
	return "client->server " + f(&r.up) + "; server->client " + f(&r.down)
}

// ---- the transfer ----

// lossyTransfer runs, through addr, 8 concurrent bidi echoes of 2 MiB of
// random data, 4 uni streams of 1 MiB each way, and 2000 datagrams,
// checking every stream by SHA-256. It returns the fraction of datagrams
// that did not come back.
func lossyTransfer(t *testing.T, addr string, hash [32]byte) float64 {
	t.Helper()
	const (
		nBidi   = 8
		bidiLen = 2 << 20
		uniLen  = 1 << 20
	)
	const (
		nUni   = 4
		nDgram = 2000
	)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	d := &Dialer{CertificateHashes: [][32]byte{hash}}
	start := time.Now()
	_, sess, err := d.Dial(ctx, "https://"+addr+"/echo", nil)
	if err != nil {
		t.Fatalf("dial through the lossy path: %v", err)
	}
	defer sess.CloseWithError(0, "")

	var wg sync.WaitGroup
	errs := make(chan error, nBidi+2*nUni+1)
	for i := 0; i < nBidi; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data := make([]byte, bidiLen)
			rand.Read(data)
			want := sha256.Sum256(data)
			str, err := sess.OpenStreamSync(ctx)
			if err != nil {
				errs <- fmt.Errorf("bidi %d: open: %w", i, err)
				return
			}
			go func() {
				str.Write(data)
				str.Close()
			}()
			h := sha256.New()
			n, err := io.Copy(h, str)
			if err != nil {
				errs <- fmt.Errorf("bidi %d: after %d bytes: %w", i, n, err)
				return
			}
			if n != bidiLen || !bytes.Equal(h.Sum(nil), want[:]) {
				errs <- fmt.Errorf("bidi %d: %d bytes back, checksum mismatch", i, n)
			}
		}()
	}
	// Uni streams both ways: the server echoes each on a new uni stream.
	wantUni := map[[32]byte]bool{}
	var uniMu sync.Mutex
	for i := 0; i < nUni; i++ {
		data := make([]byte, uniLen)
		rand.Read(data)
		sum := sha256.Sum256(data)
		wantUni[sum] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			us, err := sess.OpenUniStreamSync(ctx)
			if err != nil {
				errs <- fmt.Errorf("uni %d: open: %w", i, err)
				return
			}
			if _, err := us.Write(data); err != nil {
				errs <- fmt.Errorf("uni %d: write: %w", i, err)
				return
			}
			us.Close()
		}()
	}
	// The echoes are read concurrently: a stream accepted but left unread
	// holds connection flow-control credit, and three of them can stall
	// the whole connection.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < nUni; i++ {
			rs, err := sess.AcceptUniStream(ctx)
			if err != nil {
				errs <- fmt.Errorf("accept uni %d: %w", i, err)
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				h := sha256.New()
				n, err := io.Copy(h, rs)
				if err != nil {
					errs <- fmt.Errorf("uni back %d: after %d bytes: %w", i, n, err)
					return
				}
				var sum [32]byte
				copy(sum[:], h.Sum(nil))
				uniMu.Lock()
				ok := wantUni[sum]
				delete(wantUni, sum)
				uniMu.Unlock()
				if n != uniLen || !ok {
					errs <- fmt.Errorf("uni back %d: %d bytes, checksum matches none sent", i, n)
				}
			}()
		}
	}()
	// Datagrams, paced, echoed back.
	var back atomic.Int64
	dgramCtx, dgramStop := context.WithCancel(ctx)
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		for {
			if _, err := sess.ReceiveDatagram(dgramCtx); err != nil {
				return
			}
			back.Add(1)
		}
	}()
	payload := bytes.Repeat([]byte{'x'}, 200)
	for i := 0; i < nDgram; i++ {
		if err := sess.SendDatagram(payload); err != nil {
			t.Errorf("datagram %d: %v", i, err)
			break
		}
		if i%20 == 19 {
			time.Sleep(time.Millisecond)
		}
	}
	wg.Wait()
	time.Sleep(300 * time.Millisecond) // the last datagram echoes
	dgramStop()
	<-recvDone
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	uniMu.Lock()
	if len(wantUni) != 0 {
		t.Errorf("%d uni streams never came back", len(wantUni))
	}
	uniMu.Unlock()
	total := nBidi*bidiLen*2 + nUni*uniLen*2
	el := time.Since(start)
	lost := 1 - float64(back.Load())/nDgram
	if t.Failed() {
		t.Fatalf("transfer failed after %v", time.Since(start).Round(time.Millisecond))
	}
	t.Logf("%d MiB of stream data intact in %v (%.1f MiB/s); datagrams: %d of %d came back (%.1f%% lost)",
		total>>20, el.Round(time.Millisecond), float64(total)/(1<<20)/el.Seconds(), back.Load(), nDgram, 100*lost)
	return lost
}

// lossyEchoServer is the server both tests use.
func lossyEchoServer(t testing.TB) *testServer {
	return startServer(t, wtHandler(t, echoSession))
}

func TestLossyRelay(t *testing.T) {
	ts := lossyEchoServer(t)
	relay := newLossyRelay(t, ts.addr, 0.05, 0.10, 1)
	lost := lossyTransfer(t, relay.addr(), ts.hash)
	t.Logf("relay: %v", relay)
	// Round trip through 5% loss each way: about 9.75% of datagrams lost;
	// informational, but a path that loses nothing was not impaired.
	if relay.up.dropped.Load() == 0 || relay.down.dropped.Load() == 0 || relay.up.delayed.Load() == 0 {
		t.Errorf("the relay did not impair the path: %v", relay)
	}
	if lost == 0 {
		t.Errorf("no datagram lost through a 5%% lossy path")
	}
	relay.close()
}

// ---- across network namespaces ----

const lossyHelperEnv = "QUICWT_LOSSY_HELPER_ADDR"

// TestHelperLossyServer is not a test: TestLossyNetns runs the test binary
// inside its network namespace with this test selected and the listen
// address in QUICWT_LOSSY_HELPER_ADDR. It serves echo sessions and prints
// "READY <address> <certificate hash>", until its stdin closes.
func TestHelperLossyServer(t *testing.T) {
	addr := os.Getenv(lossyHelperEnv)
	if addr == "" {
		return // only meaningful when re-executed by TestLossyNetns
	}
	ts := startServerOn(t, addr, wtHandler(t, echoSession))
	fmt.Printf("READY %s %s\n", ts.addr, hex.EncodeToString(ts.hash[:]))
	io.Copy(io.Discard, os.Stdin)
}

// startServerOn is startServer listening on addr instead of loopback.
func startServerOn(t testing.TB, addr string, h http.Handler) *testServer {
	t.Helper()
	cert, hash := testCert(t)
	srv := &Server{Handler: h, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
	srv.CheckOrigin = func(*http.Request) bool { return true }
	ln, err := quic.ListenAddr(addr, ConfigureTLSConfig(srv.TLSConfig), ConfigureQUICConfig(nil))
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return &testServer{srv: srv, addr: ln.Addr().String(), hash: hash}
}

type netnsEnv struct {
	ns       string
	hostVeth string
	hostIP   string
	nsIP     string
	netem    bool
}

func runCmd(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// cannotNetns ends a test that needs namespaces where there are none.
func cannotNetns(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("CI: "+format, args...)
	}
	t.Skipf(format, args...)
}

// setupNetns creates a namespace joined to the host by a veth pair with a
// /30 in 10.213.0.0/16, and registers their removal. Where namespaces
// cannot be created it skips the test, or fails it under CI (which runs as
// root: a skip there would hide a regression).
func setupNetns(t *testing.T) *netnsEnv {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		cannotNetns(t, "cannot create network namespaces: the ip command is missing")
	}
	var rb [2]byte
	rand.Read(rb[:])
	id := fmt.Sprintf("%d%02x", os.Getpid()%100000, rb[0])
	e := &netnsEnv{
		ns:       "qwtns" + id,
		hostVeth: "qwth" + id,
		hostIP:   fmt.Sprintf("10.213.%d.%d", rb[1], 1+4*(int(rb[0])%64)),
	}
	e.nsIP = fmt.Sprintf("10.213.%d.%d", rb[1], 2+4*(int(rb[0])%64))
	nsVeth := "qwtn" + id
	if err := runCmd("ip", "netns", "add", e.ns); err != nil {
		cannotNetns(t, "cannot create network namespaces: %v", err)
	}
	t.Cleanup(func() {
		exec.Command("ip", "link", "del", e.hostVeth).Run()
		if err := runCmd("ip", "netns", "del", e.ns); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if err := runCmd("ip", "link", "add", e.hostVeth, "type", "veth", "peer", "name", nsVeth); err != nil {
		cannotNetns(t, "cannot create a veth pair: %v", err)
	}
	steps := [][]string{
		{"ip", "link", "set", nsVeth, "netns", e.ns},
		{"ip", "addr", "add", e.hostIP + "/30", "dev", e.hostVeth},
		{"ip", "link", "set", e.hostVeth, "up"},
		{"ip", "netns", "exec", e.ns, "ip", "addr", "add", e.nsIP + "/30", "dev", nsVeth},
		{"ip", "netns", "exec", e.ns, "ip", "link", "set", nsVeth, "up"},
		{"ip", "netns", "exec", e.ns, "ip", "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if err := runCmd(s...); err != nil {
			t.Fatalf("namespace setup: %v", err)
		}
	}
	// netem on both ends if the kernel has it: 5% loss, reordering.
	if runCmd("tc", "qdisc", "add", "dev", e.hostVeth, "root", "netem", "loss", "5%", "delay", "2ms", "reorder", "90%", "50%") == nil {
		if err := runCmd("ip", "netns", "exec", e.ns, "tc", "qdisc", "add", "dev", nsVeth, "root", "netem", "loss", "5%", "delay", "2ms", "reorder", "90%", "50%"); err != nil {
			t.Fatalf("netem in the namespace: %v", err)
		}
		e.netem = true
	}
	return e
}

func TestLossyNetns(t *testing.T) {
	e := setupNetns(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", e.ns, exe, "-test.run=^TestHelperLossyServer$", "-test.count=1")
	cmd.Env = append(os.Environ(), lossyHelperEnv+"="+net.JoinHostPort(e.nsIP, "0"))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	readyLine := make(chan string, 1)
	go func() {
		// Drain the helper's output after READY so that it never blocks.
		sc := bufio.NewScanner(stdout)
		ready := false
		for sc.Scan() {
			line := sc.Text()
			if !ready && strings.HasPrefix(line, "READY ") {
				ready = true
				readyLine <- line
			}
		}
		waited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		stdin.Close()
		select {
		case err := <-waited:
			if err != nil && !t.Failed() {
				t.Errorf("helper server: %v\n%s", err, stderr.String())
			}
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-waited
			t.Errorf("helper server did not exit")
		}
	})
	var line string
	select {
	case line = <-readyLine:
	case err := <-waited:
		t.Fatalf("helper server exited: %v\n%s", err, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("helper server not ready\n%s", stderr.String())
	}
	f := strings.Fields(line)
	hb, err := hex.DecodeString(f[2])
	if err != nil || len(hb) != 32 {
		t.Fatalf("bad READY line %q", line)
	}
	var hash [32]byte
	copy(hash[:], hb)
	serverAddr := f[1]
	if e.netem {
		t.Logf("netem available: impairing the veth pair itself; server %s in namespace %s", serverAddr, e.ns)
		lossyTransfer(t, serverAddr, hash)
		return
	}
	t.Logf("netem unavailable: userspace relay on the host in front of the veth pair; server %s in namespace %s", serverAddr, e.ns)
	relay := newLossyRelay(t, serverAddr, 0.05, 0.10, 2)
	lost := lossyTransfer(t, relay.addr(), hash)
	t.Logf("relay: %v", relay)
	if relay.up.dropped.Load() == 0 || relay.down.dropped.Load() == 0 || lost == 0 {
		t.Errorf("the path was not impaired: %v, %.1f%% datagrams lost", relay, 100*lost)
	}
	relay.close()
}
