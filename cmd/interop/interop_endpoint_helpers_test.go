package interop_test

// Helpers of interop_endpoint_test.go: building the two interop runner
// endpoints (quicwt's `quicwt interop` and webtransport-go's interop/server
// and interop/client programs), and running one as a runner container
// would: in its own network namespace (loopback only, so both servers can
// listen on 127.0.0.1:443 or :443 as they do in the runner) and, for
// webtransport-go's programs, which hard-code /www, /downloads, /logs and
// /certs, chrooted into a temp dir holding those directories.

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	// The interop endpoint's package: imported only so that this module's
	// go.mod and go.sum keep its requirements (golang.org/x/sync), which
	// `go build github.com/quic-go/webtransport-go/interop/...` from this
	// module needs. Nothing of it is called from the tests.
	_ "github.com/quic-go/webtransport-go/interop"
)

const (
	implQuicwt = "quicwt"
	implWTGo   = "wtgo"

	wtgoServerPkg = "github.com/quic-go/webtransport-go/interop/server"
	wtgoClientPkg = "github.com/quic-go/webtransport-go/interop/client"
	quicwtDir     = "../quicwt" // its own module: built from its directory
)

// ieBinaries are the built endpoints.
type ieBinaries struct {
	quicwt, wtgoServer, wtgoClient string
}

var (
	ieBuildOnce sync.Once
	ieBuilt     *ieBinaries
	ieBuildErr  error
	ieBuildTime time.Duration
)

// buildInteropEndpoints builds quicwt and webtransport-go's interop server
// and client, statically (CGO_ENABLED=0: the webtransport-go programs run
// chrooted in a directory holding nothing but them and their files), once
// per test binary.
func buildInteropEndpoints(t *testing.T) *ieBinaries {
	t.Helper()
	ieBuildOnce.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			ieBuildErr = fmt.Errorf("go command not found: %w", err)
			return
		}
		dir, err := os.MkdirTemp("", "quicwt-interop-endpoints-")
		if err != nil {
			ieBuildErr = err
			return
		}
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		b := &ieBinaries{
			quicwt:     filepath.Join(dir, "quicwt"),
			wtgoServer: filepath.Join(dir, "server"),
			wtgoClient: filepath.Join(dir, "client"),
		}
		for _, build := range []struct {
			dir  string
			args []string
		}{
			{quicwtDir, []string{"build", "-o", b.quicwt, "."}},
			{"", []string{"build", "-o", dir + string(filepath.Separator), wtgoServerPkg, wtgoClientPkg}},
		} {
			args := build.args
			cmd := exec.CommandContext(ctx, goBin, args...)
			cmd.Dir = build.dir
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				ieBuildErr = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
				return
			}
		}
		ieBuildTime = time.Since(start)
		ieBuilt = b
	})
	if ieBuildErr != nil {
		t.Fatalf("building the interop endpoints: %v", ieBuildErr)
	}
	return ieBuilt
}

// ieNetns is a network namespace with only loopback up, held by a sleeping
// process.
type ieNetns struct {
	holder *exec.Cmd
	path   string // /proc/<pid>/ns/net
	pid    int
}

// ieCannot ends a test that cannot run here: a failure under CI, a skip on a
// developer's machine.
func ieCannot(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("CI: "+format, args...)
	}
	t.Skipf(format, args...)
}

// ieNewNetns creates a network namespace, removed in t.Cleanup. Where
// namespaces or nsenter/ip are unavailable (not root) it skips the test, or
// fails it under CI (which runs as root: a skip there would hide a loss).
func ieNewNetns(t *testing.T) *ieNetns {
	t.Helper()
	for _, tool := range []string{"nsenter", "ip", "sleep"} {
		if _, err := exec.LookPath(tool); err != nil {
			ieCannot(t, "%s not found: %v", tool, err)
		}
	}
	holder := exec.Command("sleep", "300")
	holder.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	if err := holder.Start(); err != nil {
		ieCannot(t, "cannot create a network namespace (needs root/CAP_SYS_ADMIN): %v", err)
	}
	t.Cleanup(func() {
		_ = holder.Process.Kill()
		_ = holder.Wait()
	})
	n := &ieNetns{holder: holder, pid: holder.Process.Pid, path: fmt.Sprintf("/proc/%d/ns/net", holder.Process.Pid)}
	if out, err := exec.Command("nsenter", "--net="+n.path, "ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("bringing lo up in the namespace: %v\n%s", err, out)
	}
	return n
}

// udpListening reports whether some socket in the namespace is bound to
// UDP port (any address, IPv4 or IPv6).
func (n *ieNetns) udpListening(port int) bool {
	needle := fmt.Sprintf(":%04X ", port)
	for _, f := range []string{"udp", "udp6"} {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", n.pid, f))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			fields := strings.Fields(line)
			if len(fields) > 2 && strings.HasSuffix(fields[1]+" ", needle) {
				return true
			}
		}
	}
	return false
}

// ieRoot is the file system of one endpoint, laid out as in a runner
// container: www/, downloads/, logs/, certs/.
type ieRoot struct{ dir string }

func ieNewRoot(t *testing.T, parent, name string) ieRoot {
	t.Helper()
	r := ieRoot{filepath.Join(parent, name)}
	for _, d := range []string{"www", "downloads", "logs", "certs", "bin"} {
		if err := os.MkdirAll(filepath.Join(r.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

func (r ieRoot) path(p ...string) string { return filepath.Join(append([]string{r.dir}, p...)...) }

// ieSpec is how the runner starts one endpoint.
type ieSpec struct {
	impl, role                    string
	testcase, requests, protocols string
}

func (s ieSpec) env() []string {
	return []string{"ROLE=" + s.role, "TESTCASE=" + s.testcase, "REQUESTS=" + s.requests, "PROTOCOLS=" + s.protocols,
		"QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING=true"}
}

// ieProc is a running endpoint.
type ieProc struct {
	name   string
	cmd    *exec.Cmd
	out    *ieBuffer
	done   chan struct{}
	code   int // exit code; -1 if killed
	waitEr error
}

type ieBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *ieBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *ieBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// ieStart starts one endpoint in the namespace (none: the test's
// own, for runs that exit before networking) with its root r, killed when
// ctx ends and in t.Cleanup. quicwt gets the directories as flags;
// webtransport-go's programs are chrooted into r.
func ieStart(t *testing.T, ctx context.Context, bins *ieBinaries, ns *ieNetns, r ieRoot, s ieSpec) *ieProc {
	t.Helper()
	var argv []string
	if ns != nil {
		argv = append(argv, "nsenter", "--net="+ns.path)
	}
	switch s.impl {
	case implQuicwt:
		if ns != nil {
			argv = append(argv, "--")
		}
		argv = append(argv, bins.quicwt, "interop",
			"-www", r.path("www"), "-downloads", r.path("downloads"),
			"-cert", r.path("certs", "cert.pem"), "-key", r.path("certs", "priv.key"),
			"-addr", "127.0.0.1:443", "-log", r.path("logs", "log.txt"), "-timeout", "25s")
	case implWTGo:
		src := bins.wtgoClient
		if s.role == "server" {
			src = bins.wtgoServer
		}
		dst := r.path("bin", s.role)
		if err := os.Link(src, dst); err != nil {
			data, rerr := os.ReadFile(src)
			if rerr != nil {
				t.Fatal(rerr)
			}
			if err := os.WriteFile(dst, data, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if ns == nil {
			// chroot(8) is enough without a namespace.
			argv = append(argv, "chroot", r.dir, "/bin/"+s.role)
		} else {
			argv = append(argv, "--root="+r.dir, "--wd="+r.dir, "--", "/bin/"+s.role)
		}
	default:
		t.Fatalf("unknown implementation %q", s.impl)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, s.env()...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 2 * time.Second
	p := &ieProc{name: s.impl + " " + s.role, cmd: cmd, out: &ieBuffer{}, done: make(chan struct{}), code: -1}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", p.name, err)
	}
	go func() {
		defer close(p.done)
		err := cmd.Wait()
		p.waitEr = err
		var ee *exec.ExitError
		switch {
		case err == nil:
			p.code = 0
		case errors.As(err, &ee) && ee.Exited():
			p.code = ee.ExitCode()
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	return p
}

// wait waits for the endpoint to exit (or ctx to end, which kills it) and
// returns its exit code, -1 if it was killed.
func (p *ieProc) wait() int {
	<-p.done
	return p.code
}

func (p *ieProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ieRandName is a random lower-case name as the runner gives files and
// endpoints.
func ieRandName(n int) string {
	const letters = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = letters[int(b[i])%len(letters)]
	}
	return string(b)
}

func ieRandBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// ieFile is one file served at <www>/<endpoint>/<name>.
type ieFile struct {
	name string
	data []byte
}

func ieWriteFiles(t *testing.T, r ieRoot, endpoint string, files []ieFile) {
	t.Helper()
	if err := os.MkdirAll(r.path("www", endpoint), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if err := os.WriteFile(r.path("www", endpoint, f.name), f.data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// ieCheckDownloads compares <downloads>/<endpoint>/<name> to every file.
func ieCheckDownloads(t *testing.T, r ieRoot, who, endpoint string, files []ieFile) {
	t.Helper()
	for _, f := range files {
		got, err := os.ReadFile(r.path("downloads", endpoint, f.name))
		if err != nil {
			t.Errorf("%s: download %s/%s: %v", who, endpoint, f.name, err)
			continue
		}
		if !bytes.Equal(got, f.data) {
			t.Errorf("%s: download %s/%s: %d bytes differ from the %d served", who, endpoint, f.name, len(got), len(f.data))
		}
	}
}

func ieExecOutput(ctx context.Context, name string, args ...string) ([]byte, error) {
	return exec.CommandContext(ctx, name, args...).CombinedOutput()
}
