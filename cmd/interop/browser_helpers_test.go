package interop_test

// Real browsers as WebTransport peers (see /work/shared/browser.md):
// Chromium and Firefox ESR run headless as subprocesses in their own
// process groups, with fresh profiles and HOME in temp dirs, on a page
// served over plain HTTP from 127.0.0.1 by PageServer. The page reports
// back by POSTing JSON. Other tests (conformance, demos) can reuse
// LaunchChromium, LaunchFirefox and PageServer.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	ChromiumBinary = "/usr/bin/chromium"
	FirefoxBinary  = "/usr/bin/firefox-esr"
)

// ArtifactsDir is where browser runs leave logs and results: $QUICWT_ARTIFACTS
// (created if needed) or a temp dir of the test.
func ArtifactsDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("QUICWT_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// lockedBuffer collects a process's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 4<<20 { // keep memory bounded
		return len(p), nil
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Browser is a running browser subprocess.
type Browser struct {
	Name    string
	Cmd     *exec.Cmd
	Output  *lockedBuffer // stdout and stderr
	Started time.Time

	stopOnce sync.Once
	waitErr  chan error
}

// Stop ends the browser's whole process group: SIGTERM, then SIGKILL
// after grace. Safe to call more than once.
func (b *Browser) Stop(grace time.Duration) {
	b.stopOnce.Do(func() {
		pgid := b.Cmd.Process.Pid // Setpgid: the group id is the leader's pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-b.waitErr:
		case <-time.After(grace):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-b.waitErr
		}
		// Children that outlived the leader.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	})
}

// exited reports, without blocking, whether the process has exited.
func (b *Browser) exited() (error, bool) {
	select {
	case err := <-b.waitErr:
		b.waitErr <- err
		return err, true
	default:
		return nil, false
	}
}

// SaveOutput writes the browser's output to dir/name.
func (b *Browser) SaveOutput(t testing.TB, dir, name string) {
	if err := os.WriteFile(filepath.Join(dir, name), []byte(b.Output.String()), 0o644); err != nil {
		t.Errorf("saving browser output: %v", err)
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// startBrowser runs bin with args and env in its own process group; the
// group is killed in t.Cleanup (registered after the caller's temp dirs,
// so it runs before they are removed).
func startBrowser(t testing.TB, name, bin string, args, env []string) *Browser {
	t.Helper()
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s is not installed (%v); install it with apt-get install -y %s", name, err, filepath.Base(bin))
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	b := &Browser{Name: name, Cmd: cmd, Output: out, Started: time.Now(), waitErr: make(chan error, 1)}
	go func() { b.waitErr <- cmd.Wait() }()
	t.Cleanup(func() {
		b.Stop(3 * time.Second)
		if t.Failed() {
			t.Logf("%s output (last lines):\n%s", name, tail(out.String(), 60))
		}
	})
	return b
}

// browserEnv is the environment for a browser whose HOME and XDG dirs are
// inside home.
func browserEnv(t testing.TB, home string, extra ...string) []string {
	t.Helper()
	env := []string{
		"HOME=" + home,
		"XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"XDG_CACHE_HOME=" + filepath.Join(home, ".cache"),
		"XDG_DATA_HOME=" + filepath.Join(home, ".local", "share"),
		"XDG_RUNTIME_DIR=" + filepath.Join(home, "run"),
		"TMPDIR=" + filepath.Join(home, "tmp"),
		"PATH=" + os.Getenv("PATH"),
		"LANG=C.UTF-8",
	}
	for _, d := range []string{".config", ".cache", ".local/share", "run", "tmp"} {
		if err := os.MkdirAll(filepath.Join(home, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return append(env, extra...)
}

// LaunchChromium opens url in headless Chromium with a fresh profile.
// extraArgs are added before the URL (for example --log-net-log=FILE).
func LaunchChromium(t testing.TB, url string, extraArgs ...string) *Browser {
	t.Helper()
	home := t.TempDir()
	args := []string{
		"--headless=new",
		"--no-sandbox",
		"--user-data-dir=" + filepath.Join(home, "profile"),
		"--no-first-run",
		"--no-default-browser-check",
		"--disable-background-networking",
		"--disable-component-update",
		"--disable-sync",
		"--disable-gpu",
		"--disable-extensions",
		"--disable-default-apps",
		"--disable-breakpad",
		"--disable-crash-reporter",
		"--metrics-recording-only",
		"--password-store=basic",
		"--use-mock-keychain",
		"--mute-audio",
		"--enable-logging=stderr",
		"--log-level=0",
	}
	args = append(append(args, extraArgs...), url)
	return startBrowser(t, "chromium", ChromiumBinary, args, browserEnv(t, home))
}

// firefoxPrefs keep Firefox quiet and on loopback: no first-run pages,
// telemetry, updates, captive-portal or connectivity checks, GMP fetches
// or Remote Settings (the last honoured with MOZ_REMOTE_SETTINGS_DEVTOOLS).
const firefoxPrefs = `
user_pref("app.normandy.enabled", false);
user_pref("app.update.auto", false);
user_pref("app.update.checkInstallTime", false);
user_pref("app.update.disabledForTesting", true);
user_pref("browser.aboutwelcome.enabled", false);
user_pref("browser.newtabpage.enabled", false);
user_pref("browser.ping-centre.telemetry", false);
user_pref("browser.region.network.url", "");
user_pref("browser.region.update.enabled", false);
user_pref("browser.safebrowsing.downloads.enabled", false);
user_pref("browser.safebrowsing.malware.enabled", false);
user_pref("browser.safebrowsing.phishing.enabled", false);
user_pref("browser.safebrowsing.provider.google4.updateURL", "");
user_pref("browser.safebrowsing.provider.mozilla.updateURL", "");
user_pref("browser.search.update", false);
user_pref("browser.shell.checkDefaultBrowser", false);
user_pref("browser.startup.homepage_override.mstone", "ignore");
user_pref("browser.startup.page", 0);
user_pref("browser.tabs.warnOnClose", false);
user_pref("datareporting.healthreport.uploadEnabled", false);
user_pref("datareporting.policy.dataSubmissionEnabled", false);
user_pref("extensions.getAddons.cache.enabled", false);
user_pref("extensions.update.enabled", false);
user_pref("media.gmp-gmpopenh264.enabled", false);
user_pref("media.gmp-manager.url", "http://127.0.0.1:1/");
user_pref("media.gmp-widevinecdm.enabled", false);
user_pref("network.captive-portal-service.enabled", false);
user_pref("network.connectivity-service.enabled", false);
user_pref("network.dns.disablePrefetch", true);
user_pref("network.prefetch-next", false);
user_pref("services.settings.server", "http://127.0.0.1:1/");
user_pref("toolkit.telemetry.enabled", false);
user_pref("toolkit.telemetry.server", "");
user_pref("toolkit.telemetry.unified", false);
`

// newFirefoxProfile makes a home directory with a fresh Firefox profile
// (firefoxPrefs) in it, removed after the test.
func newFirefoxProfile(t testing.TB) (home, profile string) {
	t.Helper()
	home = t.TempDir()
	profile = filepath.Join(home, "profile")
	if err := os.MkdirAll(profile, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(profile, "user.js"), []byte(firefoxPrefs), 0o600); err != nil {
		t.Fatal(err)
	}
	return home, profile
}

// LaunchFirefox opens url in headless Firefox ESR with a fresh profile.
// extraEnv is added to the environment (for example MOZ_LOG=...).
func LaunchFirefox(t testing.TB, url string, extraEnv ...string) *Browser {
	t.Helper()
	home, profile := newFirefoxProfile(t)
	env := browserEnv(t, home, append([]string{"MOZ_REMOTE_SETTINGS_DEVTOOLS=1", "MOZ_CRASHREPORTER_DISABLE=1"}, extraEnv...)...)
	args := []string{"--headless", "--no-remote", "--profile", profile, url}
	return startBrowser(t, "firefox", FirefoxBinary, args, env)
}

// PageServer serves test pages over plain HTTP on 127.0.0.1 and collects
// what they POST: JSON results on /result and progress lines on /log.
type PageServer struct {
	URL     string // http://127.0.0.1:port
	Results chan json.RawMessage

	t     testing.TB
	mu    sync.Mutex
	pages map[string]string
	logs  []string
}

// NewPageServer starts a page server, closed in t.Cleanup.
func NewPageServer(t testing.TB) *PageServer {
	ps := &PageServer{t: t, Results: make(chan json.RawMessage, 4), pages: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /result", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		select {
		case ps.Results <- json.RawMessage(b):
		default:
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /log", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		ps.mu.Lock()
		ps.logs = append(ps.logs, string(b))
		ps.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		ps.mu.Lock()
		page, ok := ps.pages[r.URL.Path]
		ps.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		io.WriteString(w, page)
	})
	srv := httptest.NewServer(mux) // binds 127.0.0.1
	t.Cleanup(srv.Close)
	ps.URL = srv.URL
	return ps
}

// Add serves html at path and returns its URL.
func (ps *PageServer) Add(path, html string) string {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.pages[path] = html
	return ps.URL + path
}

// Logs returns the lines the pages posted to /log.
func (ps *PageServer) Logs() []string {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return append([]string(nil), ps.logs...)
}

// WaitResult waits for the page's JSON result, failing the test if the
// browser exits first or timeout passes.
func (ps *PageServer) WaitResult(t testing.TB, b *Browser, timeout time.Duration) json.RawMessage {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case r := <-ps.Results:
			return r
		case <-deadline.C:
			t.Fatalf("%s: no result within %v; page log:\n%s", b.Name, timeout, strings.Join(ps.Logs(), "\n"))
		case <-tick.C:
			if err, done := b.exited(); done {
				select {
				case r := <-ps.Results:
					return r
				default:
				}
				t.Fatalf("%s exited before the page posted a result: %v; page log:\n%s", b.Name, err, strings.Join(ps.Logs(), "\n"))
			}
		}
	}
}

// hexBytesJS renders b as a JavaScript Uint8Array literal.
func hexBytesJS(b []byte) string {
	var s strings.Builder
	s.WriteString("new Uint8Array([")
	for i, c := range b {
		if i > 0 {
			s.WriteByte(',')
		}
		fmt.Fprintf(&s, "%d", c)
	}
	s.WriteString("])")
	return s.String()
}
