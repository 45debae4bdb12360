package demo

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisServer is a real redis-server (Debian's package) run by a test on
// a free loopback port with a temporary directory, stopped in t.Cleanup.
// No persistence unless the test asks for AOF.
type redisServer struct {
	t    *testing.T
	bin  string
	port int
	dir  string
	aof  bool
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan error
}

// TestMain quiets go-redis's own log of failed dials (the tests stop
// Redis on purpose); the demo's state-change lines go to the tests'
// loggers.
func TestMain(m *testing.M) {
	redis.SetLogger(discardRedisLog{})
	os.Exit(m.Run())
}

type discardRedisLog struct{}

func (discardRedisLog) Printf(context.Context, string, ...any) {}

// startRedis starts redis-server. A machine without it fails the test
// with what to install: this test is not skipped.
func startRedis(t *testing.T, aof bool) *redisServer {
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

func freeTCPPort(t *testing.T) int {
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
		s.out = &syncBuffer{}
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

// syncBuffer is a bytes.Buffer for concurrent writers and readers (a
// process's output, a logger's).
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// tcpProxy forwards a loopback port to Redis; cut drops every connection
// and refuses new ones (Redis stays up: a network partition of one
// instance), restore listens again on the same port.
type tcpProxy struct {
	t      *testing.T
	addr   string
	target string
	mu     sync.Mutex
	ln     net.Listener
	conns  []net.Conn
}

func startTCPProxy(t *testing.T, port int) *tcpProxy {
	p := &tcpProxy{t: t, target: "127.0.0.1:" + strconv.Itoa(port)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.cut)
	return p
}

func (p *tcpProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
}

func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *tcpProxy) restore() {
	p.t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("proxy: listening again on %s: %v", p.addr, err)
	}
	p.serve(ln)
}
