package interop_test

import (
	"bufio"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// redisServer (a copy of cmd/quicwt/demo's test helper: another
// module) is a real redis-server (Debian's package) run by a test on
// a free loopback port with a temporary directory, stopped in t.Cleanup.
// No persistence unless the test asks for AOF.
type redisServer struct {
	t    testing.TB
	bin  string
	port int
	dir  string
	aof  bool
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan error
}

// startRedis starts redis-server. A machine without it fails the test
// with what to install: this test is not skipped.
func startRedis(t testing.TB, aof bool) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found (%v): install Debian's redis-server package (apt-get install redis-server; .ci/run installs it)", err)
	}
	s := &redisServer{t: t, bin: bin, dir: t.TempDir(), aof: aof}
	for attempt := 0; ; attempt++ {
		s.port = freeTCPPort(t)
		if err := s.start(); err == nil {
			break
		} else if attempt == 2 {
			t.Fatalf("redis-server would not start: %v\n%s", err, s.out)
		}
	}
	t.Cleanup(s.stop)
	return s
}

func freeTCPPort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (s *redisServer) URL() string { return fmt.Sprintf("redis://127.0.0.1:%d/0", s.port) }

func (s *redisServer) start() error {
	aof := "no"
	if s.aof {
		aof = "yes"
	}
	s.cmd = exec.Command(s.bin, "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--dir", s.dir, "--save", "", "--appendonly", aof, "--appendfsync", "always",
		"--daemonize", "no", "--protected-mode", "yes", "--logfile", "")
	if s.out == nil {
		s.out = &lockedBuffer{}
	}
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		return err
	}
	s.done = make(chan error, 1)
	go func() { s.done <- s.cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-s.done:
			s.cmd = nil
			return fmt.Errorf("exited: %v", err)
		default:
		}
		if redisPing(s.port) == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.kill()
	return fmt.Errorf("no PONG within 10s")
}

// redisPing sends PING in the inline protocol and waits for +PONG.
func redisPing(port int) error {
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// Stop stops the server (SIGTERM, then SIGKILL after 5 s).
func (s *redisServer) Stop() {
	s.t.Helper()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		s.kill()
	}
	s.cmd = nil
}

func (s *redisServer) kill() {
	if s.cmd != nil {
		s.cmd.Process.Kill()
		<-s.done
		s.cmd = nil
	}
}

// Restart starts the server again on the same port and directory.
func (s *redisServer) Restart() {
	s.t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		s.t.Fatalf("restarting redis-server: %v\n%s", err, s.out)
	}
}

func (s *redisServer) stop() {
	s.Stop()
	if s.t.Failed() {
		s.t.Logf("redis-server output:\n%s", s.out)
	}
}
