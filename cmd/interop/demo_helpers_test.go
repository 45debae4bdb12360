package interop_test

// Helpers of the demo tests (demo_test.go): the real `quicwt serve`
// binary, built from ../quicwt and run on loopback with free ports, and
// Chromium driven over the DevTools protocol (chromedp) by attaching to a
// browser that LaunchChromium started.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/remote"
)

// BuildQuicwt builds the quicwt command (../quicwt) into dir and returns
// the binary's path.
func BuildQuicwt(t testing.TB, dir string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go not found: %v", err)
	}
	bin := filepath.Join(dir, "quicwt")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", bin, ".")
	cmd.Dir = filepath.Join("..", "quicwt")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ../quicwt: %v\n%s", err, out)
	}
	return bin
}

// DemoServer is a running `quicwt serve`.
type DemoServer struct {
	WTURL   string // https://127.0.0.1:port (WebTransport, UDP)
	PageURL string // http://127.0.0.1:port/ (the pages)
	Stdout  *lockedBuffer
	Stderr  *lockedBuffer // the server's log

	cmd     *exec.Cmd
	waitErr chan error
	stopped bool
}

var (
	bannerWT   = regexp.MustCompile(`WebTransport: (https://\S+)`)
	bannerPage = regexp.MustCompile(`Pages: +(http://\S+)`)
)

// StartDemoServer runs `bin serve` on 127.0.0.1 with free ports for both
// servers and the clicker's file store in dataDir, and waits for its
// banner. The server is stopped (SIGKILL if need be) in t.Cleanup.
func StartDemoServer(t testing.TB, bin, dataDir string) *DemoServer {
	t.Helper()
	return StartDemoServerWith(t, bin, dataDir, "-store", "file", "-data", dataDir)
}

// StartDemoServerWith runs `bin serve` as StartDemoServer does, with home
// as $HOME and args after the address, log and grace flags.
func StartDemoServerWith(t testing.TB, bin, home string, args ...string) *DemoServer {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve",
		"-addr", "127.0.0.1:0", "-http", "127.0.0.1:0",
		"-log-level", "debug", "-grace", "1s"}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+home)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	s := &DemoServer{Stdout: &lockedBuffer{}, Stderr: &lockedBuffer{}, cmd: cmd, waitErr: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = s.Stdout, s.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting quicwt serve: %v", err)
	}
	go func() { s.waitErr <- cmd.Wait() }()
	t.Cleanup(func() {
		if !s.stopped {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-s.waitErr
		}
		if t.Failed() {
			t.Logf("quicwt serve log (last lines):\n%s", tail(s.Stderr.String(), 80))
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		out := s.Stdout.String()
		wt, page := bannerWT.FindStringSubmatch(out), bannerPage.FindStringSubmatch(out)
		if wt != nil && page != nil && strings.Contains(out, "Press Ctrl-C") {
			s.WTURL, s.PageURL = wt[1], page[1]
			return s
		}
		select {
		case err := <-s.waitErr:
			s.stopped = true
			t.Fatalf("quicwt serve exited at startup: %v\nstdout:\n%s\nstderr:\n%s", err, out, s.Stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("quicwt serve printed no banner within 20s\nstdout:\n%s\nstderr:\n%s", out, s.Stderr.String())
		}
	}
}

// Stop asks the server to shut down gracefully (SIGTERM, as Ctrl-C does)
// and checks that it exits with status 0 within timeout.
func (s *DemoServer) Stop(t testing.TB, timeout time.Duration) {
	t.Helper()
	if s.stopped {
		return
	}
	s.stopped = true
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.waitErr:
		if err != nil {
			t.Errorf("quicwt serve exited with %v after SIGTERM\nlog:\n%s", err, tail(s.Stderr.String(), 40))
		}
	case <-time.After(timeout):
		_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-s.waitErr
		t.Errorf("quicwt serve did not stop within %v of SIGTERM", timeout)
	}
}

// Kill ends the server with SIGKILL, as a crash or an OOM kill would: no
// shutdown, no goodbye to anyone.
func (s *DemoServer) Kill(t testing.TB) {
	t.Helper()
	if s.stopped {
		return
	}
	s.stopped = true
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-s.waitErr:
	case <-time.After(10 * time.Second):
		t.Errorf("quicwt serve still running 10s after SIGKILL")
	}
}

// Page returns the URL of the page server's file name (e.g. "counter.html").
func (s *DemoServer) Page(name string) string { return strings.TrimSuffix(s.PageURL, "/") + "/" + name }

// ScreenshotDir is where the demo tests save screenshots for a person to
// look at: $QUICWT_SCREENSHOTS, or screenshots/ in this package's
// directory (git-ignored). It is created if needed.
func ScreenshotDir(t testing.TB) string {
	t.Helper()
	d := os.Getenv("QUICWT_SCREENSHOTS")
	if d == "" {
		d = "screenshots"
	}
	abs, err := filepath.Abs(d)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		t.Fatal(err)
	}
	return abs
}

// SavePNG writes a screenshot into ScreenshotDir.
func SavePNG(t testing.TB, name string, png []byte) {
	t.Helper()
	if len(png) < 8 || string(png[1:4]) != "PNG" {
		t.Errorf("screenshot %s is not a PNG (%d bytes)", name, len(png))
		return
	}
	p := filepath.Join(ScreenshotDir(t), name)
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Errorf("saving screenshot: %v", err)
		return
	}
	t.Logf("screenshot: %s", p)
}

var devtoolsURL = regexp.MustCompile(`DevTools listening on (ws://\S+)`)

// ChromiumDriver is headless Chromium (started by LaunchChromium) with a
// DevTools connection: NewTab opens pages that chromedp drives.
type ChromiumDriver struct {
	Browser *Browser
	ctx     context.Context // chromedp context of the connection (its first tab)
}

// LaunchChromiumDriver starts Chromium with a DevTools port and attaches
// chromedp to it. Everything is closed in t.Cleanup.
func LaunchChromiumDriver(t testing.TB) *ChromiumDriver {
	t.Helper()
	b := LaunchChromium(t, "about:blank", "--remote-debugging-port=0", "--remote-allow-origins=*", "--window-size=1100,1000")
	var ws string
	deadline := time.Now().Add(20 * time.Second)
	for ws == "" {
		if m := devtoolsURL.FindStringSubmatch(b.Output.String()); m != nil {
			ws = m[1]
			break
		}
		if err, done := b.exited(); done {
			t.Fatalf("chromium exited before its DevTools port was up: %v\n%s", err, tail(b.Output.String(), 40))
		}
		if time.Now().After(deadline) {
			t.Fatalf("chromium printed no DevTools address within 20s\n%s", tail(b.Output.String(), 40))
		}
		time.Sleep(20 * time.Millisecond)
	}
	actx, acancel := remote.NewAllocator(context.Background(), ws, remote.NoModifyURL)
	// chromedp's goroutines may log while the test ends: t.Logf then
	// would panic, so the logger goes quiet when the cleanup starts.
	var quiet atomic.Bool
	logf := func(f string, a ...any) {
		if !quiet.Load() {
			t.Logf("chromedp: "+f, a...)
		}
	}
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(logf), chromedp.WithErrorf(logf))
	watchdog := time.AfterFunc(30*time.Second, cancel) // bounds the attach below
	err := chromedp.Do(ctx)                            // connect and attach the first tab
	if !watchdog.Stop() {
		err = fmt.Errorf("not attached within 30s (%v)", err)
	}
	if err != nil {
		cancel()
		acancel()
		t.Fatalf("attaching chromedp to chromium at %s: %v", ws, err)
	}
	t.Cleanup(func() {
		quiet.Store(true)
		cancel()
		acancel()
	})
	return &ChromiumDriver{Browser: b, ctx: ctx}
}

// NewTab opens a new tab; its context drives it. close closes the tab
// (as a person closing it would) and is also run in t.Cleanup.
func (d *ChromiumDriver) NewTab(t testing.TB) (ctx context.Context, close func()) {
	t.Helper()
	ctx, cancel := chromedp.NewContext(d.ctx)
	// Open the tab with the tab's own context: the tab's event handling
	// lives in the context of the first Run, so that must not be a
	// shorter-lived child (like those with timeouts in Page's methods).
	watchdog := time.AfterFunc(20*time.Second, cancel)
	err := chromedp.Do(ctx)
	if !watchdog.Stop() {
		err = fmt.Errorf("no tab within 20s (%v)", err)
	}
	if err != nil {
		cancel()
		t.Fatalf("opening a tab: %v", err)
	}
	closeTab := sync.OnceFunc(func() {
		if err := chromedp.Cancel(ctx); err != nil {
			t.Logf("closing tab: %v", err)
		}
		cancel()
	})
	t.Cleanup(closeTab)
	return ctx, closeTab
}

// Page is a demo page open in a Chromium tab.
type Page struct {
	t    testing.TB
	Name string // for messages and screenshot names
	ctx  context.Context
}

// OpenPage opens url in a new tab and waits until it has loaded and (for
// pages with app.js) read its config.
func (d *ChromiumDriver) OpenPage(t testing.TB, name, url string) (*Page, func()) {
	t.Helper()
	ctx, closeTab := d.NewTab(t)
	p := &Page{t: t, Name: name, ctx: ctx}
	p.Navigate(url)
	return p, closeTab
}

// Navigate loads url in the page's tab and waits as OpenPage does.
func (p *Page) Navigate(url string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		p.t.Fatalf("%s: navigating to %s: %v", p.Name, url, err)
	}
	// Pages with app.js have read their config once configLoaded is set.
	p.WaitJS(`document.readyState === "complete" && (typeof initState === "undefined" || window.quicwtState && window.quicwtState.configLoaded)`, "the page loaded")
}

// FollowLink clicks the link with id, waits for the new page to load and
// then as Navigate does.
func (p *Page) FollowLink(id string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	if _, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.ID(id), chromedp.NodeVisible)); err != nil {
		p.t.Fatalf("%s: following link #%s: %v", p.Name, id, err)
	}
	p.WaitJS(`document.readyState === "complete" && (typeof initState === "undefined" || window.quicwtState && window.quicwtState.configLoaded)`, "the page loaded")
}

// Location returns the page's URL.
func (p *Page) Location() string {
	p.t.Helper()
	var s string
	p.Eval("location.href", &s)
	return s
}

// Do runs chromedp actions on the page, failing the test on error.
func (p *Page) Do(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("%s: %s: %v\npage state: %s", p.Name, what, err, p.stateForError())
	}
}

// Click clicks the element with id, as a person would (mouse events at
// the element's position).
func (p *Page) Click(id string) {
	p.t.Helper()
	p.Do("click #"+id, chromedp.Click(chromedp.ID(id), chromedp.NodeVisible))
}

// Type replaces the text of input id by typing text into it.
func (p *Page) Type(id, text string) {
	p.t.Helper()
	p.Do("type into #"+id,
		chromedp.Evaluate[chromedp.Void](fmt.Sprintf("document.getElementById(%q).value = ''", id)),
		chromedp.SendKeys(chromedp.ID(id), text, chromedp.NodeVisible))
}

// WaitJS polls the JavaScript expression until it is truthy (at most 15 s).
func (p *Page) WaitJS(expr, what string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 15*time.Second)
	defer cancel()
	if err := pollJS(ctx, expr); err != nil {
		p.t.Fatalf("%s: waiting until %s (%s): %v\npage state: %s", p.Name, what, expr, err, p.stateForError())
	}
}

// pollJS polls expr until it is truthy or ctx ends. A navigation to
// another origin moves the tab to a new renderer process and destroys the
// JavaScript context a poll started in ("Cannot find context with
// specified id", "Execution context was destroyed"); the poll then starts
// again in the new one.
func pollJS(ctx context.Context, expr string) error {
	for {
		_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(20*time.Millisecond)))
		if err == nil || ctx.Err() != nil || !contextGone(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// contextGone reports whether err says the page's JavaScript context went
// away under a running evaluation (a navigation), which a retry survives.
func contextGone(err error) bool {
	s := err.Error()
	return strings.Contains(s, "Cannot find context with specified id") ||
		strings.Contains(s, "Execution context was destroyed")
}

// ClickUntil clicks the element with id and waits until expr is truthy.
// For a click that sends a datagram (unreliable: it or its reply may be
// lost), pass retry > 0: the click is repeated every retry, up to 4
// times, while expr stays false. It returns the number of clicks.
func (p *Page) ClickUntil(id, expr, what string, retry time.Duration) int {
	p.t.Helper()
	for attempt := 0; retry > 0 && attempt < 4; attempt++ {
		p.Click(id)
		ctx, cancel := context.WithTimeout(p.ctx, retry)
		err := pollJS(ctx, expr)
		cancel()
		if err == nil {
			return attempt + 1
		}
		p.t.Logf("%s: not yet %s %v after clicking #%s; clicking again", p.Name, what, retry, id)
	}
	p.Click(id)
	p.WaitJS(expr, what)
	if retry > 0 {
		return 5
	}
	return 1
}

// Eval evaluates expr and decodes its JSON value into v.
func (p *Page) Eval(expr string, v any) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](expr))
	if err != nil {
		p.t.Fatalf("%s: evaluating %s: %v", p.Name, expr, err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		p.t.Fatalf("%s: decoding %s = %s: %v", p.Name, expr, raw, err)
	}
}

// Text returns the text content of the element with id.
func (p *Page) Text(id string) string {
	p.t.Helper()
	var s string
	p.Eval(fmt.Sprintf("document.getElementById(%q).textContent", id), &s)
	return s
}

// State returns window.quicwtState decoded into v.
func (p *Page) State(v any) { p.t.Helper(); p.Eval("window.quicwtState", v) }

// Errors returns the errors the page shows in its log.
func (p *Page) Errors() []string {
	p.t.Helper()
	var e []string
	p.Eval("window.quicwtState.errors", &e)
	return e
}

// Connect clicks Connect and waits until the session is up.
func (p *Page) Connect() {
	p.t.Helper()
	p.Click("connect")
	p.WaitJS("window.quicwtState.connected || window.quicwtState.errors.length > 0", "connected")
	if errs := p.Errors(); len(errs) > 0 {
		p.t.Fatalf("%s: connect failed: %q", p.Name, errs)
	}
}

// Screenshot saves a full-page PNG as chromium-<name>.png.
func (p *Page) Screenshot(name string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Errorf("%s: screenshot: %v", p.Name, err)
		return
	}
	SavePNG(p.t, "chromium-"+name+".png", png)
}

// stateForError is the page's state for a failure message (best effort).
func (p *Page) stateForError() string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(p.ctx), 3*time.Second)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte]("JSON.stringify(window.quicwtState || null)"))
	if err != nil {
		return "(unavailable: " + err.Error() + ")"
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(raw)
}

// logLines returns the lines of the server log that contain all of subs.
func logLines(log string, subs ...string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
next:
	for sc.Scan() {
		for _, s := range subs {
			if !strings.Contains(sc.Text(), s) {
				continue next
			}
		}
		out = append(out, sc.Text())
	}
	return out
}
