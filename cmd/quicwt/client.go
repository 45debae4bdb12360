package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicwt/quicwt/quicwt"
)

func init() {
	register(command{name: "client", summary: "open a WebTransport session and pipe stdin/stdout over it", run: func(args []string, stdout, stderr io.Writer) int {
		return runClient(args, os.Stdin, stdout, stderr)
	}})
}

const clientHelp = `
usage: quicwt client [flags] URL

Opens a WebTransport session to URL (https://host:port/path) and pipes:
  default     stdin to a bidirectional stream, FIN at stdin EOF; everything
              the server writes on it is printed until the server's FIN
  -uni        stdin to a unidirectional stream, FIN at EOF; then the first
              unidirectional stream the server opens is printed to its FIN
  -datagram   each stdin line is one datagram; received datagrams are
              printed one per line, until stdin ends and -linger passes
Then it closes the session (code 0). The exit code is 0 on success.

-timeout bounds each blocking step: the handshake, opening the stream,
each write, and once stdin has ended each wait for the server's data.
Ctrl-C (SIGINT) or SIGTERM closes the session with code 128+signal (130,
143) and the message "interrupted", and exits with that status; a second
signal exits at once.

The server certificate is verified normally, or pinned with -certhash
(SHA-256 of its DER, hex or base64, as 'quicwt serve' and 'quicwt cert'
print; repeatable), or not at all with -insecure.

examples:
  echo hello | quicwt client -certhash 5b1c...e0 https://127.0.0.1:4433/echo
  printf 'abc' | quicwt client -insecure https://127.0.0.1:4433/counter
  printf 'a\nbb\n' | quicwt client -insecure -datagram https://127.0.0.1:4433/counter
  quicwt client -insecure -v -H 'Origin: http://localhost:8080' https://127.0.0.1:4433/echo < file
`

func runClient(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("client", clientHelp)
	var hashes, headers multiFlag
	fs.Var(&hashes, "certhash", "pin the server certificate by SHA-256 of its DER, `hex` or base64 (repeatable)")
	insecure := fs.Bool("insecure", false, "do not verify the server certificate")
	dgram := fs.Bool("datagram", false, "datagram mode: one datagram per stdin line")
	uni := fs.Bool("uni", false, "unidirectional stream mode")
	verbose := fs.Bool("v", false, "print the negotiated draft and the response headers to stderr")
	fs.Var(&headers, "H", "extra request header `'Name: value'` (repeatable)")
	timeout := fs.Duration("timeout", 10*time.Second, "bound of each blocking step: the handshake, opening a stream, each write, and each wait for the server's data once stdin has ended")
	linger := fs.Duration("linger", time.Second, "datagram mode: how long to wait for replies after stdin ends")
	qlogDir := fs.String("qlog", "", "write a qlog file to `directory`")
	if code := parseFlags(fs, args, stdout, stderr); code >= 0 {
		return code
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(stderr, "quicwt client: want exactly one URL argument (run 'quicwt client -h')\n")
		return 2
	}
	if *dgram && *uni {
		fmt.Fprintf(stderr, "quicwt client: -datagram and -uni exclude each other\n")
		return 2
	}
	rawURL := fs.Arg(0)
	if err := checkWTURL(rawURL); err != nil {
		fmt.Fprintf(stderr, "quicwt client: %v\n", err)
		return 2
	}
	d := &quicwt.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: *insecure}}
	for _, h := range hashes {
		sum, err := parseCertHash(h)
		if err != nil {
			fmt.Fprintf(stderr, "quicwt client: %v\n", err)
			return 2
		}
		d.CertificateHashes = append(d.CertificateHashes, sum)
	}
	hdr := http.Header{}
	for _, h := range headers {
		name, value, ok := strings.Cut(h, ":")
		if !ok || strings.TrimSpace(name) == "" {
			fmt.Fprintf(stderr, "quicwt client: bad -H %q: want 'Name: value'\n", h)
			return 2
		}
		hdr.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	if *qlogDir != "" {
		log, _ := newLogger(stderr, "warn")
		tr, err := qlogTracer(*qlogDir, log)
		if err != nil {
			return fail(stderr, "client", err)
		}
		d.QUICConfig = &quic.Config{Tracer: tr}
	}

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	return clientRun(clientOptions{
		dialer: d, url: rawURL, header: hdr, verbose: *verbose, datagram: *dgram, uni: *uni,
		timeout: *timeout, linger: *linger,
	}, sigs, stdin, stdout, stderr)
}

type clientOptions struct {
	dialer          *quicwt.Dialer
	url             string
	header          http.Header
	verbose         bool
	datagram, uni   bool
	timeout, linger time.Duration
}

// closeWait bounds how long the client waits for the server to answer its
// WT_CLOSE_SESSION before it closes the connection, which ends the session
// at the server in any case.
const closeWait = time.Second

// interruptCode is the session close code for an interrupt by signal s:
// 128+s, the exit status a shell reports for it (130 for SIGINT, 143 for
// SIGTERM), which is also the client's exit status then.
func interruptCode(s syscall.Signal) quicwt.SessionErrorCode { return 128 + quicwt.SessionErrorCode(s) }

// clientRun dials, pipes stdin/stdout in the chosen mode and closes the
// session. The first signal on sigs closes the session with
// interruptCode and the message "interrupted" and exits; a second one
// exits at once.
func clientRun(o clientOptions, sigs <-chan os.Signal, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	interrupted := make(chan syscall.Signal, 1)
	go func() {
		select {
		case s := <-sigs:
			sig, ok := s.(syscall.Signal)
			if !ok {
				sig = syscall.SIGINT
			}
			interrupted <- sig
			cancel(fmt.Errorf("interrupted by %v", s))
		case <-ctx.Done():
		}
	}()
	interruptedBy := func() (syscall.Signal, bool) {
		select {
		case s := <-interrupted:
			return s, true
		default:
			return 0, false
		}
	}

	dctx, dcancel := context.WithTimeout(ctx, o.timeout)
	rsp, sess, cc, err := dialSession(dctx, o.dialer, o.url, o.header)
	dcancel()
	if err != nil {
		if s, ok := interruptedBy(); ok {
			fail(stderr, "client", context.Cause(ctx))
			return int(interruptCode(s))
		}
		var rej *quicwt.RejectedError
		if errors.As(err, &rej) && o.verbose && rsp != nil {
			printResponse(stderr, rsp)
		}
		if dctx.Err() == context.DeadlineExceeded {
			err = fmt.Errorf("no session within -timeout %v: %w", o.timeout, err)
		}
		return fail(stderr, "client", err)
	}
	if o.verbose {
		fmt.Fprintf(stderr, "draft: %s\n", sess.Draft())
		printResponse(stderr, rsp)
	}
	// The mode's errors are muted once interrupted: the session then ends
	// because we close it, which is no error to report.
	modeErr := &gatedWriter{w: stderr}
	result := make(chan int, 1)
	go func() {
		switch {
		case o.datagram:
			result <- clientDatagrams(ctx, sess, stdin, stdout, modeErr, o.linger)
		case o.uni:
			result <- clientUni(ctx, sess, stdin, stdout, modeErr, o.timeout)
		default:
			result <- clientBidi(ctx, sess, stdin, stdout, modeErr, o.timeout)
		}
	}()
	interrupt := func(sig syscall.Signal) int {
		// The mode's goroutine may be blocked on stdin, which cannot be
		// interrupted; it ends with the process.
		modeErr.close()
		fmt.Fprintf(stderr, "quicwt client: %v: closing the session (signal again to exit at once)\n", sig)
		if !closeSession(sess, cc, interruptCode(sig), "interrupted", sigs) {
			fmt.Fprintf(stderr, "quicwt client: second signal: exiting now\n")
			return 1
		}
		return int(interruptCode(sig))
	}
	select {
	case code := <-result:
		// A mode that ended because of the signal's cancel is an
		// interrupt too.
		if sig, ok := interruptedBy(); ok {
			return interrupt(sig)
		}
		closeSession(sess, cc, 0, "", nil)
		return code
	case sig := <-interrupted:
		return interrupt(sig)
	}
}

// gatedWriter passes writes on until it is closed, then drops them.
type gatedWriter struct {
	mu     sync.Mutex
	w      io.Writer
	closed bool
}

func (g *gatedWriter) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return len(p), nil
	}
	return g.w.Write(p)
}

func (g *gatedWriter) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

// closeSession closes the session with code and msg and waits (at most
// closeWait) for the close handshake, so that WT_CLOSE_SESSION reaches
// the server before the connection goes, then closes the connection. A
// signal on sigs cuts the wait short; closeSession then reports false.
func closeSession(sess *quicwt.Session, cc *quicwt.ClientConn, code quicwt.SessionErrorCode, msg string, sigs <-chan os.Signal) bool {
	defer cc.Close()
	done := make(chan struct{})
	go func() {
		// CloseWithError can block writing to a server that does not
		// read its CONNECT stream; closing the connection ends it.
		sess.CloseWithError(code, msg)
		<-sess.Closed()
		close(done)
	}()
	wait := time.NewTimer(closeWait)
	defer wait.Stop()
	select {
	case <-done:
	case <-wait.C:
	case <-sigs:
		return false
	}
	return true
}

// dialSession opens a connection and one session on it, keeping the
// connection so that it can be closed before the process exits.
func dialSession(ctx context.Context, d *quicwt.Dialer, rawURL string, hdr http.Header) (*http.Response, *quicwt.Session, *quicwt.ClientConn, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, nil, nil, err
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "443")
	}
	cc, err := d.DialConn(ctx, host)
	if err != nil {
		return nil, nil, nil, err
	}
	rsp, sess, err := cc.OpenSession(ctx, rawURL, hdr)
	if err != nil {
		cc.Close()
		return rsp, nil, nil, err
	}
	return rsp, sess, cc, nil
}

// checkWTURL validates a WebTransport URL up front, for a clear one-line
// error.
func checkWTURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("bad URL %q: %v", raw, errors.Unwrap(err))
	}
	if u.Scheme != "https" {
		return fmt.Errorf("bad URL %q: scheme must be https", raw)
	}
	if u.Hostname() == "" {
		return fmt.Errorf("bad URL %q: no host", raw)
	}
	return nil
}

func printResponse(w io.Writer, rsp *http.Response) {
	fmt.Fprintf(w, "%s %s\n", rsp.Proto, rsp.Status)
	names := make([]string, 0, len(rsp.Header))
	for n := range rsp.Header {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		for _, v := range rsp.Header[n] {
			fmt.Fprintf(w, "%s: %s\n", n, v)
		}
	}
}

// sessionGone reports why a session ended, as one line.
func sessionGone(stderr io.Writer, sess *quicwt.Session, err error) int {
	if serr := sess.Err(); serr != nil {
		err = serr
	}
	return fail(stderr, "client", err)
}

// idleBound puts a deadline of d from now on a stream before each call:
// no single read or write may wait longer than d. While armed is false
// (reads before stdin ends), reads wait without a bound.
type idleBound struct {
	d     time.Duration
	armed atomic.Bool
}

func (b *idleBound) arm(setDeadline func(time.Time) error) {
	b.armed.Store(true)
	_ = setDeadline(time.Now().Add(b.d))
}

// reader bounds each Read by d once armed.
func (b *idleBound) reader(r io.Reader, setDeadline func(time.Time) error) io.Reader {
	return readerFunc(func(p []byte) (int, error) {
		if b.armed.Load() {
			_ = setDeadline(time.Now().Add(b.d))
		}
		n, err := r.Read(p)
		return n, b.explain(err, "no data from the server")
	})
}

// writer bounds each Write by d.
func (b *idleBound) writer(w io.Writer, setDeadline func(time.Time) error) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		_ = setDeadline(time.Now().Add(b.d))
		n, err := w.Write(p)
		return n, b.explain(err, "the server took no data")
	})
}

func (b *idleBound) explain(err error, what string) error {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%s for -timeout %v: %w", what, b.d, err)
	}
	return err
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// opened wraps an error of opening or accepting a stream within -timeout.
func opened(ctx context.Context, timeout time.Duration, what string, err error) error {
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("%s: not within -timeout %v: %w", what, timeout, err)
	}
	return err
}

// clientBidi sends stdin on a bidirectional stream, FIN at its end, and
// prints what the server sends to its FIN. Each write, and each read
// after stdin ended, waits at most timeout.
func clientBidi(ctx context.Context, sess *quicwt.Session, stdin io.Reader, stdout, stderr io.Writer, timeout time.Duration) int {
	octx, cancel := context.WithTimeout(ctx, timeout)
	str, err := sess.OpenStreamSync(octx)
	if err != nil {
		err = opened(octx, timeout, "opening a stream", err)
		cancel()
		return sessionGone(stderr, sess, err)
	}
	cancel()
	bound := &idleBound{d: timeout}
	werr := make(chan error, 1)
	go func() {
		_, err := io.Copy(bound.writer(str, str.SetWriteDeadline), stdin)
		if err == nil {
			err = str.Close() // half-close: FIN
		} else {
			str.CancelWrite(0)
		}
		// From now on the server's answer is due.
		bound.arm(str.SetReadDeadline)
		werr <- err
	}()
	if _, err := io.Copy(stdout, bound.reader(str, str.SetReadDeadline)); err != nil {
		return sessionGone(stderr, sess, err)
	}
	// The server FINed. If stdin is still open (a server that answers
	// before reading everything), stop sending.
	select {
	case err := <-werr:
		if err != nil {
			return sessionGone(stderr, sess, err)
		}
	default:
		str.CancelWrite(0)
	}
	return 0
}

// clientUni sends stdin on a unidirectional stream, then prints the first
// unidirectional stream the server opens. Opening, each write, accepting
// and each read wait at most timeout.
func clientUni(ctx context.Context, sess *quicwt.Session, stdin io.Reader, stdout, stderr io.Writer, timeout time.Duration) int {
	octx, cancel := context.WithTimeout(ctx, timeout)
	out, err := sess.OpenUniStreamSync(octx)
	if err != nil {
		err = opened(octx, timeout, "opening a stream", err)
		cancel()
		return sessionGone(stderr, sess, err)
	}
	cancel()
	bound := &idleBound{d: timeout}
	if _, err := io.Copy(bound.writer(out, out.SetWriteDeadline), stdin); err != nil {
		out.CancelWrite(0)
		return sessionGone(stderr, sess, err)
	}
	if err := out.Close(); err != nil {
		return sessionGone(stderr, sess, err)
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	in, err := sess.AcceptUniStream(actx)
	if err != nil {
		return sessionGone(stderr, sess, opened(actx, timeout, "waiting for the server's stream", err))
	}
	bound.armed.Store(true)
	if _, err := io.Copy(stdout, bound.reader(in, in.SetReadDeadline)); err != nil {
		return sessionGone(stderr, sess, err)
	}
	return 0
}

func clientDatagrams(ctx context.Context, sess *quicwt.Session, stdin io.Reader, stdout, stderr io.Writer, linger time.Duration) int {
	var mu sync.Mutex // stdout
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		for {
			p, err := sess.ReceiveDatagram(rctx)
			if err != nil {
				return
			}
			mu.Lock()
			stdout.Write(append(p, '\n'))
			mu.Unlock()
		}
	}()
	sc := bufio.NewScanner(stdin)
	sc.Buffer(make([]byte, 0, 64<<10), 64<<10)
	for sc.Scan() {
		if err := sess.SendDatagram(sc.Bytes()); err != nil {
			var tl *quicwt.DatagramTooLargeError
			if errors.As(err, &tl) {
				fmt.Fprintf(stderr, "quicwt client: line of %d bytes not sent: %v\n", len(sc.Bytes()), err)
				continue
			}
			return sessionGone(stderr, sess, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fail(stderr, "client", fmt.Errorf("stdin: %w", err))
	}
	select {
	case <-time.After(linger):
	case <-sess.Context().Done():
	case <-ctx.Done():
	}
	cancel()
	<-recvDone
	return 0
}
