package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicwt/quicwt/cmd/internal/conformance"
	"github.com/quicwt/quicwt/frames"
	"github.com/quicwt/quicwt/quicwt"
)

// Issue 18, item 3: against a server that accepts the session and never
// answers, 'quicwt client' ends within its -timeout once stdin is done
// (it used to wait for QUIC's 30 s idle timeout).
func TestClientTimeout(t *testing.T) {
	for _, mode := range []string{"bidi", "uni"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			addr, sessions := holdingServer(t)
			args := []string{"-insecure", "-timeout", "1s", "https://" + addr + "/hold"}
			if mode == "uni" {
				args = append([]string{"-uni"}, args...)
			}
			var out, errb syncBuffer
			done := make(chan int, 1)
			go func() { done <- runClient(args, strings.NewReader("hello"), &out, &errb) }()
			select {
			case <-sessions:
			case <-time.After(10 * time.Second):
				t.Fatalf("no session reached the server; stderr %q", errb.String())
			}
			select {
			case code := <-done:
				if code == 0 {
					t.Errorf("exit code 0 from a server that never answered; stderr %q", errb.String())
				}
				if e := errb.String(); strings.Count(e, "\n") != 1 || !strings.Contains(e, "1s") {
					t.Errorf("stderr %q: want one line that names the 1s timeout", e)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("-timeout 1s: still running after 10 s; stderr %q", errb.String())
			}
		})
	}
}

// buildQuicwt builds this command into a temporary directory, for the
// tests that need a real process (signals).
func buildQuicwt(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go tool to build the binary: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "quicwt")
	out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// Issue 18, item 4: 'quicwt client' honours Ctrl-C while a stream is open:
// it closes the session with a code and a message, which the server sees,
// and exits promptly (it used to exit only when the connection idled out,
// about 30 s later).
func TestClientInterrupt(t *testing.T) {
	bin := buildQuicwt(t)
	cert, err := genCert(nil, defaultValidity)
	if err != nil {
		t.Fatal(err)
	}
	opened := make(chan struct{}, 1)
	ended := make(chan error, 1)
	srv := &quicwt.Server{
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sess, err := quicwt.Upgrade(w, r)
			if err != nil {
				return
			}
			// Hold the client's stream open: never write, never FIN.
			if _, err := sess.AcceptStream(sess.Context()); err == nil {
				opened <- struct{}{}
			}
			<-sess.Context().Done()
			ended <- sess.Err()
		}),
	}
	ln, err := quic.ListenAddr("127.0.0.1:0", quicwt.ConfigureTLSConfig(srv.TLSConfig), quicwt.ConfigureQUICConfig(nil))
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.ServeListener(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	cmd := exec.Command(bin, "client", "-insecure", "https://"+ln.Addr().String()+"/hold")
	stdin, err := cmd.StdinPipe() // kept open: the stream stays open
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer cmd.Process.Kill()
	if _, err := stdin.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-opened:
	case <-time.After(10 * time.Second):
		t.Fatalf("the client's stream did not reach the server; stderr %q", stderr.String())
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 128+int(syscall.SIGINT) {
			t.Errorf("exit: %v, want exit status %d; stderr %q", err, 128+int(syscall.SIGINT), stderr.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("still running 5 s after SIGINT; stderr %q", stderr.String())
	}
	select {
	case err := <-ended:
		var se *quicwt.SessionError
		if !errors.As(err, &se) || !se.Remote || se.Code != interruptCode(syscall.SIGINT) || se.Message != "interrupted" {
			t.Errorf("server saw the session end with %v; want a close by the peer with code %d and message \"interrupted\"", err, interruptCode(syscall.SIGINT))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the session did not end at the server")
	}
}

// silentServer is a raw HTTP/3 server over quic-go that accepts one
// WebTransport session (a 200 response to the CONNECT) and then never
// reads the CONNECT stream again nor ends it: a WT_CLOSE_SESSION from the
// client is never answered. The channel reports each stream the client
// opens in a session, which it holds open, unread.
func silentServer(t *testing.T) (string, <-chan struct{}) {
	t.Helper()
	cert, err := genCert(nil, defaultValidity)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := quic.ListenAddr("127.0.0.1:0", quicwt.ConfigureTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}}), quicwt.ConfigureQUICConfig(nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	streams := make(chan struct{}, 4)
	go func() {
		for {
			qc, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = qc.CloseWithError(0, "") })
			go func() {
				ctl, err := qc.OpenUniStream()
				if err != nil {
					return
				}
				st := quicwt.DefaultServerSettings()
				if _, err := ctl.Write(st.AppendFrame(frames.AppendUniStreamType(nil, frames.StreamTypeControl))); err != nil {
					return
				}
				req, err := qc.AcceptStream(ctx)
				if err != nil {
					return
				}
				if _, err := req.Read(make([]byte, 1024)); err != nil { // the CONNECT request
					return
				}
				rsp := frames.AppendHeaders(nil, conformance.Encode([]conformance.Field{{Name: ":status", Value: "200"}}))
				if _, err := req.Write(rsp); err != nil {
					return
				}
				for {
					if _, err := qc.AcceptStream(ctx); err != nil {
						return
					}
					streams <- struct{}{}
				}
			}()
		}
	}()
	return ln.Addr().String(), streams
}

// Against a server that never answers WT_CLOSE_SESSION, one Ctrl-C still
// exits promptly (the wait for the close handshake is bounded), with the
// interrupt's exit status; a second Ctrl-C during that wait exits at once,
// with status 1.
func TestClientInterruptUnansweredClose(t *testing.T) {
	bin := buildQuicwt(t)
	for _, signals := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d signals", signals), func(t *testing.T) {
			addr, streams := silentServer(t)
			cmd := exec.Command(bin, "client", "-insecure", "https://"+addr+"/silent")
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			defer stdin.Close()
			var stderr syncBuffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			defer cmd.Process.Kill()
			if _, err := stdin.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			select {
			case <-streams:
			case <-time.After(10 * time.Second):
				t.Fatalf("the client's stream did not reach the server; stderr %q", stderr.String())
			}
			if err := cmd.Process.Signal(os.Interrupt); err != nil {
				t.Fatal(err)
			}
			want := 128 + int(syscall.SIGINT)
			if signals == 2 {
				deadline := time.Now().Add(5 * time.Second)
				for !strings.Contains(stderr.String(), "closing the session") {
					if time.Now().After(deadline) {
						t.Fatalf("no word of closing the session after SIGINT; stderr %q", stderr.String())
					}
					time.Sleep(5 * time.Millisecond)
				}
				if err := cmd.Process.Signal(os.Interrupt); err != nil {
					t.Fatal(err)
				}
				want = 1
			}
			select {
			case err := <-exited:
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != want {
					t.Errorf("exit: %v, want exit status %d; stderr %q", err, want, stderr.String())
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("still running 5 s after SIGINT; stderr %q", stderr.String())
			}
			if signals == 2 && !strings.Contains(stderr.String(), "second signal") {
				t.Errorf("stderr %q does not mention the second signal", stderr.String())
			}
			if strings.Contains(stderr.String(), "session closed locally") {
				t.Errorf("stderr %q reports the session's end as an error of its own", stderr.String())
			}
		})
	}
}
