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
	timeout := fs.Duration("timeout", 10*time.Second, "handshake timeout")
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

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	dctx, cancel := context.WithTimeout(ctx, *timeout)
	rsp, sess, cc, err := dialSession(dctx, d, rawURL, hdr)
	cancel()
	if err != nil {
		var rej *quicwt.RejectedError
		if errors.As(err, &rej) && *verbose && rsp != nil {
			printResponse(stderr, rsp)
		}
		return fail(stderr, "client", err)
	}
	if *verbose {
		fmt.Fprintf(stderr, "draft: %s\n", sess.Draft())
		printResponse(stderr, rsp)
	}
	var code int
	switch {
	case *dgram:
		code = clientDatagrams(ctx, sess, stdin, stdout, stderr, *linger)
	case *uni:
		code = clientUni(ctx, sess, stdin, stdout, stderr)
	default:
		code = clientBidi(ctx, sess, stdin, stdout, stderr)
	}
	sess.CloseWithError(0, "")
	// Wait (briefly) for the close handshake, so that WT_CLOSE_SESSION
	// reaches the server before the connection goes; closing the
	// connection ends the session there in any case.
	select {
	case <-sess.Closed():
	case <-time.After(time.Second):
	}
	cc.Close()
	return code
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

func clientBidi(ctx context.Context, sess *quicwt.Session, stdin io.Reader, stdout, stderr io.Writer) int {
	str, err := sess.OpenStreamSync(ctx)
	if err != nil {
		return sessionGone(stderr, sess, err)
	}
	werr := make(chan error, 1)
	go func() {
		_, err := io.Copy(str, stdin)
		if err == nil {
			err = str.Close() // half-close: FIN
		} else {
			str.CancelWrite(0)
		}
		werr <- err
	}()
	if _, err := io.Copy(stdout, str); err != nil {
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

func clientUni(ctx context.Context, sess *quicwt.Session, stdin io.Reader, stdout, stderr io.Writer) int {
	out, err := sess.OpenUniStreamSync(ctx)
	if err != nil {
		return sessionGone(stderr, sess, err)
	}
	if _, err := io.Copy(out, stdin); err != nil {
		out.CancelWrite(0)
		return sessionGone(stderr, sess, err)
	}
	if err := out.Close(); err != nil {
		return sessionGone(stderr, sess, err)
	}
	in, err := sess.AcceptUniStream(ctx)
	if err != nil {
		return sessionGone(stderr, sess, err)
	}
	if _, err := io.Copy(stdout, in); err != nil {
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
