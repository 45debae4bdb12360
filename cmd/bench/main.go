// Command bench is the benchmark suite of issue 5: it runs the same
// workloads over raw quic-go, quicwt and webtransport-go in one process
// run, several rounds, and prints one table of medians, spreads and
// ratios to raw quic-go.
//
//	cd cmd/bench && go run . -rounds 5
//
// It is a nested module so that webtransport-go never enters the build of
// a quicwt user. See README.md for the method and RESULTS.md for a run.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"sort"
	"strings"
	"time"
)

type config struct {
	rounds      int
	scaleRounds int
	only        map[string]bool
	impls       []impl
	sz          sizes
	progress    io.Writer
}

// record is every value of one (workload, metric, implementation).
type record struct {
	Workload string    `json:"workload"`
	Metric   string    `json:"metric"`
	Impl     string    `json:"impl"`
	Values   []float64 `json:"values"`
	Median   float64   `json:"median"`
	Min      float64   `json:"min"`
	Max      float64   `json:"max"`
}

type results struct {
	Machine string    `json:"machine"`
	Sizes   string    `json:"sizes"`
	Records []*record `json:"records"`
	Errors  []string  `json:"errors,omitempty"`
	byKey   map[string]*record
}

func (r *results) add(w, m, im string, v float64) {
	if r.byKey == nil {
		r.byKey = map[string]*record{}
	}
	k := w + "\x00" + m + "\x00" + im
	rec := r.byKey[k]
	if rec == nil {
		rec = &record{Workload: w, Metric: m, Impl: im}
		r.byKey[k] = rec
		r.Records = append(r.Records, rec)
	}
	rec.Values = append(rec.Values, v)
}

func (r *results) get(w, m, im string) *record { return r.byKey[w+"\x00"+m+"\x00"+im] }

func (r *results) finish() {
	for _, rec := range r.Records {
		var vs []float64
		for _, v := range rec.Values {
			if !math.IsNaN(v) {
				vs = append(vs, v)
			}
		}
		if len(vs) == 0 {
			rec.Median, rec.Min, rec.Max = math.NaN(), math.NaN(), math.NaN()
			continue
		}
		sort.Float64s(vs)
		rec.Min, rec.Max = vs[0], vs[len(vs)-1]
		if n := len(vs); n%2 == 1 {
			rec.Median = vs[n/2]
		} else {
			rec.Median = (vs[n/2-1] + vs[n/2]) / 2
		}
	}
}

// run executes every selected workload for every implementation, rounds
// times; the implementations take turns in a rotating order.
func run(cfg config) *results {
	res := &results{Machine: machineLine(), Sizes: fmt.Sprintf("%+v", cfg.sz)}
	for round := 0; round < cfg.rounds; round++ {
		for _, w := range workloads() {
			if len(cfg.only) > 0 && !cfg.only[w.name] {
				continue
			}
			if w.scale && round >= cfg.scaleRounds {
				continue
			}
			reps := 1
			if w.reps > 0 {
				reps = w.reps
			}
			for k := 0; k < reps*len(cfg.impls); k++ {
				im := cfg.impls[(k+round)%len(cfg.impls)]
				runtime.GC()
				time.Sleep(100 * time.Millisecond)
				t0 := time.Now()
				m, err := w.run(im, cfg.sz)
				if err != nil {
					msg := fmt.Sprintf("round %d %s %s: %v", round+1, w.name, im.Name(), err)
					res.Errors = append(res.Errors, msg)
					fmt.Fprintln(cfg.progress, "ERROR", msg)
					continue
				}
				var parts []string
				for _, mt := range w.metrics {
					v, ok := m[mt.name]
					if !ok {
						continue
					}
					res.add(w.name, mt.name, im.Name(), v)
					parts = append(parts, fmt.Sprintf("%s=%s", mt.name, fmtNum(v)))
				}
				fmt.Fprintf(cfg.progress, "round %d/%d %-11s %-6s %s (%.1fs)\n", round+1, cfg.rounds, w.name, im.Name(),
					strings.Join(parts, " "), time.Since(t0).Seconds())
			}
		}
	}
	res.finish()
	return res
}

func fmtNum(v float64) string {
	switch a := math.Abs(v); {
	case math.IsNaN(v):
		return "n/a"
	case a >= 1000:
		return groupThousands(fmt.Sprintf("%.0f", v))
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func groupThousands(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func cell(rec *record) string {
	if rec == nil {
		return "–"
	}
	s := fmtNum(rec.Median)
	if len(rec.Values) > 1 && !math.IsNaN(rec.Median) {
		s += fmt.Sprintf(" [%s..%s]", fmtNum(rec.Min), fmtNum(rec.Max))
	}
	return s
}

func compare(mt metric, raw, other *record) string {
	if raw == nil || other == nil || math.IsNaN(raw.Median) || math.IsNaN(other.Median) {
		return "–"
	}
	if mt.points {
		return fmt.Sprintf("%+.2f pt", other.Median-raw.Median)
	}
	if math.Abs(raw.Median) < 0.05 {
		return "–" // no meaningful ratio to (almost) nothing
	}
	return fmt.Sprintf("%.2fx", other.Median/raw.Median)
}

// table renders the results as one markdown table.
func (r *results) table(cfg config) string {
	var b strings.Builder
	fmt.Fprintf(&b, "| workload | metric | raw quic-go | quicwt | quicwt/raw | webtransport-go | wtgo/raw | goal (quicwt) | n |\n")
	fmt.Fprintf(&b, "|---|---|---:|---:|---:|---:|---:|---|---:|\n")
	for _, w := range workloads() {
		for _, mt := range w.metrics {
			raw, q, g := r.get(w.name, mt.name, "raw"), r.get(w.name, mt.name, "quicwt"), r.get(w.name, mt.name, "wtgo")
			if raw == nil && q == nil && g == nil {
				continue
			}
			goal := mt.goal
			if goal != "" && mt.check != nil && raw != nil && q != nil {
				if mt.check(raw.Median, q.Median) {
					goal += " ✓"
				} else {
					goal += " ✗"
				}
			}
			n := 0
			for _, x := range []*record{raw, q, g} {
				if x != nil {
					n = max(n, len(x.Values))
				}
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %d |\n",
				w.name, mt.name, cell(raw), cell(q), compare(mt, raw, q), cell(g), compare(mt, raw, g), goal, n)
		}
	}
	return b.String()
}

func machineLine() string {
	cpu := "unknown CPU"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	vers := map[string]string{}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			v := d.Version
			if d.Replace != nil {
				v = d.Replace.Path
				if d.Replace.Version != "" {
					v = d.Replace.Version
				}
			}
			vers[d.Path] = v
		}
	}
	qwt := vers["github.com/quicwt/quicwt"]
	// The library is built from this checkout (replace ../..): name its
	// commit, and whether the library's files differ from it.
	if out, err := exec.Command("git", "-C", "../..", "rev-parse", "--short", "HEAD").Output(); err == nil {
		qwt = "checkout " + strings.TrimSpace(string(out))
		if st, err := exec.Command("git", "-C", "../..", "status", "--porcelain", "--untracked-files=no", "--", "quicwt", "frames", "varint", "settings").Output(); err == nil && len(st) > 0 {
			qwt += " with uncommitted library changes"
		}
	}
	return fmt.Sprintf("%s, %d cores (GOMAXPROCS %d), %s %s/%s, quic-go %s, webtransport-go %s, quicwt %s",
		cpu, runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version(), runtime.GOOS, runtime.GOARCH,
		vers["github.com/quic-go/quic-go"], vers["github.com/quic-go/webtransport-go"], qwt)
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func main() {
	if os.Getenv(childEnv) != "" {
		childMain()
		return
	}
	rounds := flag.Int("rounds", 5, "rounds of every workload")
	scaleRounds := flag.Int("scale-rounds", 1, "rounds of the long scale workloads (at most -rounds)")
	quick := flag.Bool("quick", false, "tiny counts and 1 round: checks that the suite works")
	only := flag.String("only", "", "comma-separated workloads to run (default all): "+workloadNames())
	implsFlag := flag.String("impls", "raw,quicwt,wtgo", "comma-separated implementations to run")
	asJSON := flag.Bool("json", false, "print JSON instead of the table")
	out := flag.String("out", "", "also write the markdown report to this file")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run")
	memprofile := flag.String("memprofile", "", "write an allocation profile at the end")
	flag.StringVar(&gdumpDir, "gdump", "", "write goroutine dumps and in-use heap profiles of held servers (idle, many, scale) to this directory (sets MemProfileRate=1)")
	flag.BoolVar(&earlyListen, "early", earlyListen, "servers listen with quic.ListenAddrEarly (0.5-RTT SETTINGS); false: quic.ListenAddr")
	chat := flag.Bool("chat", false, "run the chat load of issue 16 (local room vs. instances on Redis; needs redis-server) instead of the suite")
	chatSessions := flag.Int("chat-sessions", 25, "chat load: sessions per instance")
	chatInstances := flag.Int("chat-instances", 2, "chat load: instances on Redis (the local room gets the same members)")
	chatMessages := flag.Int("chat-messages", 20, "chat load: comments per member")
	chatInterval := flag.Duration("chat-interval", 0, "chat load: time between a member's comments (0: a burst)")
	features := flag.Bool("features", false, "run the quicwt-only feature workloads (send priorities, datagram send policy) instead")
	flag.Parse()
	if *features {
		if err := runFeatures(os.Stdout, *quick); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if *chat {
		if err := runChatLoad(os.Stdout, chatSpec{instances: *chatInstances, perInst: *chatSessions, messages: *chatMessages, interval: *chatInterval}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}

	cfg := config{rounds: *rounds, scaleRounds: min(*scaleRounds, *rounds), sz: fullSizes(), progress: os.Stderr}
	if *quick {
		cfg.rounds, cfg.scaleRounds, cfg.sz = 1, 1, quickSizes()
	}
	if *only != "" {
		cfg.only = map[string]bool{}
		for _, n := range strings.Split(*only, ",") {
			if !slices.Contains(strings.Split(workloadNames(), ","), n) {
				fmt.Fprintf(os.Stderr, "unknown workload %q (have %s)\n", n, workloadNames())
				os.Exit(2)
			}
			cfg.only[n] = true
		}
	}
	for _, n := range strings.Split(*implsFlag, ",") {
		im := implByName(n)
		if im == nil {
			fmt.Fprintf(os.Stderr, "unknown implementation %q\n", n)
			os.Exit(2)
		}
		cfg.impls = append(cfg.impls, im)
	}
	clientPin = serverCert().hash
	if gdumpDir != "" {
		runtime.MemProfileRate = 1
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
	}
	load0 := loadavg()
	t0 := time.Now()
	res := run(cfg)
	if *cpuprofile != "" {
		pprof.StopCPUProfile()
	}
	if *memprofile != "" {
		if f, err := os.Create(*memprofile); err == nil {
			pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		}
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(res)
	} else {
		report := fmt.Sprintf("Command: `cd cmd/bench && go run . %s`\n\nMachine: %s\n\nLoad average (1/5/15 min) at start: %s, at end: %s; run took %s.\n\n%s\n%s",
			strings.Join(os.Args[1:], " "), res.Machine, load0, loadavg(), time.Since(t0).Round(time.Second),
			res.table(cfg), methodNote(cfg))
		fmt.Print(report)
		if *out != "" {
			os.WriteFile(*out, []byte(report), 0o644)
		}
	}
	if len(res.Errors) > 0 {
		fmt.Fprintf(os.Stderr, "%d runs failed\n", len(res.Errors))
		os.Exit(1)
	}
}

func workloadNames() string {
	var n []string
	for _, w := range workloads() {
		n = append(n, w.name)
	}
	return strings.Join(n, ",")
}

func methodNote(cfg config) string {
	sz := cfg.sz
	return fmt.Sprintf(`Cells: median [min..max] over the runs (n): one per round, several per round for the short workloads (bulk and setup 3, echo 5; the implementations alternating); ratios are of medians. Sizes: bulk %d MiB; echo %d streams of 1 KiB; %d datagrams of %d B; %d setups; idle %d connections; many 1+%d sessions on one connection; scale-conns %d connections; scale-multi %d x %d sessions.
Memory: server-side differences of runtime.MemStats.HeapAlloc (after two runtime.GC), of StackInuse (goroutine stacks, not in the heap: stack rows) and of runtime.NumGoroutine, between a snapshot before the client process starts and one while it holds its sessions; the clients run in a child process (this binary re-executed) that reports its own differences the same way (cli rows). raw holds one open stream per connection (many: per extra stream). Setup for raw is the QUIC handshake alone (setup-req: the handshake and a 1-byte stream echo, what any protocol pays that answers a request after the handshake); setups/s is 500 / the whole loop, each setup followed by the implementation's close (raw: CONNECTION_CLOSE at once; quicwt and webtransport-go: the session's close, whose handshake overlaps the next setup), while mean/p50/p99 ms time the setups alone; scale-multi established/s for raw counts stream opens (not comparable).
Datagrams: client to server; delivered/s = datagrams received and verified by the server application / time from the first send to the last receipt; loss = 1 - received/sent; layer drops = quicwt's Session.DatagramsDropped (n/a for webtransport-go).
`, sz.bulkBytes>>20, sz.echoStreams, sz.dgrams, sz.dgramSize, sz.setups, sz.idleConns, sz.manySessions, sz.scaleConns, sz.scaleMultiC, sz.scaleMultiS)
}
