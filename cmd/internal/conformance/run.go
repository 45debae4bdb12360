package conformance

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/quicwt/quicwt/settings"
)

// Status is a case's verdict.
type Status string

// Verdicts.
const (
	Pass Status = "PASS"
	Fail Status = "FAIL"
	Skip Status = "SKIP"
)

// Result is what a case observed.
type Result struct {
	Status Status
	Detail string
}

func pass(format string, a ...any) Result { return Result{Pass, fmt.Sprintf(format, a...)} }
func fail(format string, a ...any) Result { return Result{Fail, fmt.Sprintf(format, a...)} }
func skip(format string, a ...any) Result { return Result{Skip, fmt.Sprintf(format, a...)} }

// Case is one conformance check.
type Case struct {
	// ID names the case, "area/what", and is what -run matches.
	ID string
	// Section cites the requirement, e.g. "RFC 9114 §6.2.1".
	Section string
	// Description says what the checker sends.
	Description string
	// Expect says what the server must do, with the error code.
	Expect string
	// NoDatagrams dials without the QUIC datagram extension.
	NoDatagrams bool
	// FlowControl marks cases that need WebTransport flow control: our
	// SETTINGS enable it, and the case is skipped unless the server's do.
	FlowControl bool
	// ClientLimits, with FlowControl, are the initial limits our SETTINGS
	// advertise; nil means defaultClientLimits (1 MiB, 16 streams each).
	ClientLimits *FlowLimits
	// Run runs the case on a fresh connection whose server SETTINGS have
	// arrived; it opens our control stream itself.
	Run func(ctx context.Context, p *Peer) Result
}

// Options configure a run.
type Options struct {
	// Addr is the server's UDP address, host:port.
	Addr string
	// Authority is the :authority of requests; Addr if empty.
	Authority string
	// Path is a path on which the server accepts WebTransport sessions.
	Path string
	// NoWebTransportPath is a path on which the server does not serve
	// WebTransport; default Path + "-no-such-resource".
	NoWebTransportPath string
	// CertHashes pins the server certificate by the SHA-256 of its DER
	// encoding; Insecure skips verification. With neither, the system
	// roots verify it.
	CertHashes [][32]byte
	Insecure   bool
	// Timeout bounds each case (default 10 s).
	Timeout time.Duration
	// Filter selects cases by ID; nil runs all.
	Filter *regexp.Regexp
	// Parallel is the number of cases run at once (default 8).
	Parallel int
	// Progress, if set, is called after each case.
	Progress func(CaseResult)
}

// CaseResult is one case's outcome in a Report.
type CaseResult struct {
	ID          string        `json:"id"`
	Section     string        `json:"section"`
	Description string        `json:"description"`
	Expect      string        `json:"expect"`
	Status      Status        `json:"status"`
	Detail      string        `json:"detail"`
	Duration    time.Duration `json:"duration_ns"`
}

// Report is the result of a run.
type Report struct {
	Server         string       `json:"server"`
	Path           string       `json:"path"`
	ServerSettings string       `json:"server_settings"`
	Draft          string       `json:"draft"`
	Results        []CaseResult `json:"results"`
	Passed         int          `json:"passed"`
	Failed         int          `json:"failed"`
	Skipped        int          `json:"skipped"`
}

// OK reports whether no case failed.
func (r *Report) OK() bool { return r.Failed == 0 }

// Cases returns every registered case, sorted by ID.
func Cases() []Case {
	var all []Case
	for _, g := range [][]Case{controlCases(), frameCases(), qpackCases(), messageCases(), connectCases(),
		streamCases(), capsuleCases(), goawayCases(), flowControlCases(), sessionCases()} {
		all = append(all, g...)
	}
	return all
}

func (o *Options) withDefaults() Options {
	c := *o
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Second
	}
	if c.Path == "" {
		c.Path = "/"
	}
	if c.NoWebTransportPath == "" {
		c.NoWebTransportPath = c.Path + "-no-such-resource"
	}
	if c.Parallel <= 0 {
		c.Parallel = 8
	}
	return c
}

// Run checks the server: a preflight connection reads its SETTINGS, then
// every selected case runs on its own connection. The error is for a
// server that cannot be reached at all.
func Run(ctx context.Context, opts Options) (*Report, error) {
	o := opts.withDefaults()
	rep := &Report{Server: o.Addr, Path: o.Path}
	// Preflight: the server must speak HTTP/3 and send SETTINGS.
	pctx, cancel := context.WithTimeout(ctx, o.Timeout)
	p, err := dialPeer(pctx, &o, false, nil)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("connecting to %s: %w", o.Addr, err)
	}
	err = p.WaitSettings(pctx)
	cancel()
	p.Close()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.Addr, err)
	}
	rep.ServerSettings = p.server.String()
	rep.Draft = p.Draft().String()

	var cases []Case
	for _, c := range Cases() {
		if o.Filter == nil || o.Filter.MatchString(c.ID) {
			cases = append(cases, c)
		}
	}
	rep.Results = make([]CaseResult, len(cases))
	var wg sync.WaitGroup
	var progress sync.Mutex
	sem := make(chan struct{}, o.Parallel)
	for i, c := range cases {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			start := time.Now()
			res := runCase(ctx, &o, c)
			cr := CaseResult{ID: c.ID, Section: c.Section, Description: c.Description, Expect: c.Expect,
				Status: res.Status, Detail: res.Detail, Duration: time.Since(start)}
			rep.Results[i] = cr
			if o.Progress != nil {
				progress.Lock()
				o.Progress(cr)
				progress.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, r := range rep.Results {
		switch r.Status {
		case Pass:
			rep.Passed++
		case Fail:
			rep.Failed++
		default:
			rep.Skipped++
		}
	}
	return rep, nil
}

// flowControlOff returns why the server's SETTINGS do not enable
// WebTransport flow control, or "" if they do.
func flowControlOff(s *settings.Settings, d settings.Draft) string {
	if d == settings.DraftNone || d == settings.Draft02 {
		return fmt.Sprintf("negotiated WebTransport draft is %s, which has no flow control", d)
	}
	if !s.Enabled(settings.WTInitialMaxData) && !s.Enabled(settings.WTInitialMaxStreamsUni) && !s.Enabled(settings.WTInitialMaxStreamsBidi) {
		return "the server's SETTINGS enable no WebTransport flow control: none of SETTINGS_WT_INITIAL_MAX_DATA (0x2b61), " +
			"SETTINGS_WT_INITIAL_MAX_STREAMS_UNI (0x2b64) or SETTINGS_WT_INITIAL_MAX_STREAMS_BIDI (0x2b65) is nonzero"
	}
	return ""
}

func runCase(parent context.Context, o *Options, c Case) (res Result) {
	ctx, cancel := context.WithTimeout(parent, o.Timeout)
	defer cancel()
	var limits *FlowLimits
	if c.FlowControl {
		limits = c.ClientLimits
		if limits == nil {
			limits = &defaultClientLimits
		}
	}
	p, err := dialPeer(ctx, o, c.NoDatagrams, limits)
	if err != nil {
		return fail("cannot connect: %v", err)
	}
	defer p.Close()
	if err := p.WaitSettings(ctx); err != nil {
		return fail("%v", err)
	}
	if c.FlowControl {
		if why := flowControlOff(&p.server, p.Draft()); why != "" {
			return skip("%s", why)
		}
	}
	done := make(chan Result, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				done <- fail("case panicked: %v", r)
			}
		}()
		done <- c.Run(ctx, p)
	}()
	select {
	case res = <-done:
	case <-time.After(o.Timeout + 5*time.Second):
		// Closing the connection unblocks the case.
		res = fail("case did not finish within %v", o.Timeout)
	}
	if res.Status == "" {
		res.Status = Fail
	}
	return res
}

// WriteText renders the report for people: one line per case, the detail
// indented below failures and skips, and the summary line.
func (r *Report) WriteText(w io.Writer, verbose bool) error {
	var b strings.Builder
	fmt.Fprintf(&b, "server %s path %s\nserver SETTINGS %s\nnegotiated %s\n\n", r.Server, r.Path, r.ServerSettings, r.Draft)
	idw := 0
	for _, c := range r.Results {
		idw = max(idw, len(c.ID))
	}
	res := append([]CaseResult(nil), r.Results...)
	sort.SliceStable(res, func(i, j int) bool { return res[i].ID < res[j].ID })
	for _, c := range res {
		fmt.Fprintf(&b, "%s  %-*s  %-22s %s\n", c.Status, idw, c.ID, c.Section, c.Expect)
		if verbose || c.Status != Pass {
			fmt.Fprintf(&b, "      %s\n", c.Detail)
		}
	}
	fmt.Fprintf(&b, "\n%d passed, %d failed, %d skipped\n", r.Passed, r.Failed, r.Skipped)
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON renders the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
