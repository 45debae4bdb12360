package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicwt/quicwt/quicwt"
)

func init() {
	register(command{name: "interop", summary: "the WebTransport interop runner endpoint (client and server roles)", run: runInterop})
}

const interopHelp = `
usage: quicwt interop [flags]

The endpoint of the WebTransport interop runner, speaking the protocol of
webtransport-go's interop/ endpoint byte for byte: HTTP/0.9-style requests
"GET <file>" (then FIN) and answers "PUSH <basename>\n<contents>" on
unidirectional streams and datagrams, the bare contents on bidirectional
streams. Driven by the environment, as in the runner's containers:
  ROLE       client or server
  TESTCASE   server: handshake, transfer, transfer-unidirectional-send,
             transfer-bidirectional-send, transfer-datagram-send;
             client: handshake, transfer, transfer-unidirectional-receive,
             transfer-bidirectional-receive, transfer-datagram-receive
             (exit code 127 for any other)
  REQUESTS   client: URLs https://host:port/<endpoint>/<file> (space-separated);
             server: paths /<endpoint>/<file> it requests from the client
  PROTOCOLS  application protocols offered/accepted (WT-Available-Protocols)
  QLOGDIR, SSLKEYLOGFILE  as usual
Files are served from <www>/<endpoint>/ and stored in <downloads>/<endpoint>/;
the negotiated protocol goes to <downloads>/negotiated_protocol.txt. The
server's endpoints are the directories in <www>. Every endpoint of the
client's REQUESTS on one host is a session on one QUIC connection, run in
parallel. Flags override the environment, for runs outside a container.
A server ends when the client's sessions are over (handshake, transfer), when
it has fetched its REQUESTS (*-send), or on SIGTERM as the runner stops it
(exit code 0 if every session so far went right).

examples:
  ROLE=server TESTCASE=transfer quicwt interop
  quicwt interop -role server -testcase transfer -addr 127.0.0.1:4443 -www ./www -cert cert.pem -key key.pem
  quicwt interop -role client -testcase transfer-bidirectional-receive -downloads ./dl \
      -requests 'https://127.0.0.1:4443/ep/a.txt https://127.0.0.1:4443/ep/b.txt'
`

const (
	getPrefix  = "GET "
	pushPrefix = "PUSH "
)

var (
	interopServerCases = []string{"handshake", "transfer", "transfer-unidirectional-send", "transfer-bidirectional-send", "transfer-datagram-send"}
	interopClientCases = []string{"handshake", "transfer", "transfer-unidirectional-receive", "transfer-bidirectional-receive", "transfer-datagram-receive"}
)

type interopConfig struct {
	role, testcase, requests, protocols string
	www, downloads, cert, key, addr     string
	qlogDir, keyLogFile, logFile        string
	timeout                             time.Duration
	log                                 *slog.Logger
}

func runInterop(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("interop", interopHelp)
	var c interopConfig
	fs.StringVar(&c.role, "role", os.Getenv("ROLE"), "`client` or server (env ROLE)")
	fs.StringVar(&c.testcase, "testcase", os.Getenv("TESTCASE"), "test `case` (env TESTCASE)")
	fs.StringVar(&c.requests, "requests", os.Getenv("REQUESTS"), "`requests` (env REQUESTS)")
	fs.StringVar(&c.protocols, "protocols", os.Getenv("PROTOCOLS"), "application `protocols`, space-separated (env PROTOCOLS)")
	fs.StringVar(&c.www, "www", "/www", "`directory` of files to serve")
	fs.StringVar(&c.downloads, "downloads", "/downloads", "`directory` for received files")
	fs.StringVar(&c.cert, "cert", "/certs/cert.pem", "server certificate PEM `file`")
	fs.StringVar(&c.key, "key", "/certs/priv.key", "server key PEM `file`")
	fs.StringVar(&c.addr, "addr", ":443", "server UDP `host:port`")
	fs.StringVar(&c.qlogDir, "qlog", os.Getenv("QLOGDIR"), "qlog `directory` (env QLOGDIR)")
	fs.StringVar(&c.keyLogFile, "keylog", os.Getenv("SSLKEYLOGFILE"), "TLS key log `file` (env SSLKEYLOGFILE)")
	fs.StringVar(&c.logFile, "log", "/logs/log.txt", "also log to `file` if its directory exists")
	fs.DurationVar(&c.timeout, "timeout", 60*time.Second, "overall time limit of a test case")
	level := fs.String("log-level", "info", "log `level`")
	if code := parseFlags(fs, args, stdout, stderr); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "quicwt interop: unexpected argument %q (run 'quicwt interop -h')\n", fs.Arg(0))
		return 2
	}
	var cases []string
	switch c.role {
	case "server":
		cases = interopServerCases
	case "client":
		cases = interopClientCases
	default:
		fmt.Fprintf(stderr, "quicwt interop: bad role %q: want client or server (ROLE or -role)\n", c.role)
		return 2
	}
	if !contains(cases, c.testcase) {
		fmt.Fprintf(stderr, "quicwt interop: unsupported test case %q for the %s role\n", c.testcase, c.role)
		return 127
	}
	logOut := stderr
	if dir := filepath.Dir(c.logFile); c.logFile != "" {
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			if f, err := os.Create(c.logFile); err == nil {
				defer f.Close()
				logOut = io.MultiWriter(stderr, f)
			}
		}
	}
	log, err := newLogger(logOut, *level)
	if err != nil {
		fmt.Fprintf(stderr, "quicwt interop: %v\n", err)
		return 2
	}
	c.log = log
	if c.role == "server" {
		err = interopServer(c)
	} else {
		err = interopClient(c)
	}
	if err != nil {
		return fail(stderr, "interop", err)
	}
	return 0
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func splitProtocols(s string) []string {
	var out []string
	for _, p := range strings.Split(s, " ") {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

func (c *interopConfig) quicConfig() (*quic.Config, error) {
	qc := &quic.Config{}
	if c.qlogDir != "" {
		tr, err := qlogTracer(c.qlogDir, c.log)
		if err != nil {
			return nil, err
		}
		qc.Tracer = tr
	}
	return qc, nil
}

func (c *interopConfig) keyLog() (io.WriteCloser, error) {
	if c.keyLogFile == "" {
		return nil, nil
	}
	return os.Create(c.keyLogFile)
}

// readServed reads <www>/<endpoint>/<file>.
func (c *interopConfig) readServed(endpoint, file string) ([]byte, error) {
	return os.ReadFile(filepath.Join(c.www, endpoint, strings.TrimPrefix(file, "/")))
}

// save writes <downloads>/<endpoint>/<basename>.
func (c *interopConfig) save(endpoint, name string, data []byte) error {
	full := filepath.Join(c.downloads, endpoint, filepath.Base(name))
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return err
	}
	return os.WriteFile(full, data, 0o644)
}

func (c *interopConfig) writeProtocol(proto string) error {
	if err := os.MkdirAll(c.downloads, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(c.downloads, "negotiated_protocol.txt"), []byte(proto), 0o644)
}

// readGet reads a whole request stream and parses its GET.
func readGet(r io.Reader) (string, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return "", fmt.Errorf("failed to read request: %w", err)
	}
	name, err := parseGet(data)
	if err != nil {
		return "", fmt.Errorf("failed to parse request: %w", err)
	}
	return name, nil
}

func parseGet(data []byte) (string, error) {
	if !bytes.HasPrefix(data, []byte(getPrefix)) {
		return "", errors.New("unexpected data, missing GET prefix")
	}
	name := strings.TrimSpace(string(data[len(getPrefix):]))
	if name == "" {
		return "", errors.New("missing filename in GET")
	}
	return name, nil
}

// parsePush splits "PUSH <name>\n<payload>".
func parsePush(data []byte) (string, []byte, error) {
	if !bytes.HasPrefix(data, []byte(pushPrefix)) {
		return "", nil, errors.New("unexpected data, missing PUSH prefix")
	}
	name, payload, ok := bytes.Cut(data[len(pushPrefix):], []byte("\n"))
	if !ok {
		return "", nil, errors.New("missing newline in PUSH")
	}
	n := strings.TrimSpace(string(name))
	if n == "" {
		return "", nil, errors.New("missing filename in PUSH")
	}
	return n, payload, nil
}

func pushMessage(file string, payload []byte) []byte {
	return append([]byte(pushPrefix+filepath.Base(file)+"\n"), payload...)
}

// sendFile writes the served file name to w: its bytes, or with push
// the PUSH message carrying them.
func (c *interopConfig) sendFile(log *slog.Logger, w io.Writer, endpoint, name string, push bool) {
	payload, err := c.readServed(endpoint, name)
	if err != nil {
		log.Error("failed to read file", "err", err)
		return
	}
	log.Info("sending file", "filename", name, "bytes", len(payload))
	if push {
		payload = pushMessage(name, payload)
	}
	if _, err := w.Write(payload); err != nil {
		log.Error("failed to send file", "err", err)
	}
}

// serveFiles answers GET requests on a session until it ends (test case
// "transfer"): a bidirectional stream gets the file's bytes then FIN, a
// unidirectional stream a new unidirectional stream with PUSH, a datagram
// a PUSH datagram.
func (c *interopConfig) serveFiles(sess *quicwt.Session, endpoint string) {
	ctx := sess.Context()
	log := c.log.With("endpoint", endpoint)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			s, err := sess.AcceptStream(ctx)
			if err != nil {
				return
			}
			wg.Go(func() {
				name, err := readGet(s)
				if err != nil {
					s.CancelRead(1234)
					log.Error(err.Error())
					return
				}
				defer s.Close()
				c.sendFile(log, s, endpoint, name, false)
			})
		}
	})
	wg.Go(func() {
		for {
			s, err := sess.AcceptUniStream(ctx)
			if err != nil {
				return
			}
			wg.Go(func() {
				name, err := readGet(s)
				if err != nil {
					log.Error(err.Error())
					return
				}
				out, err := sess.OpenUniStreamSync(ctx)
				if err != nil {
					log.Error("failed to open unidirectional stream", "err", err)
					return
				}
				defer out.Close()
				c.sendFile(log, out, endpoint, name, true)
			})
		}
	})
	wg.Go(func() {
		for {
			data, err := sess.ReceiveDatagram(ctx)
			if err != nil {
				return
			}
			name, err := parseGet(data)
			if err != nil {
				log.Error("failed to parse datagram request", "err", err)
				continue
			}
			payload, err := c.readServed(endpoint, name)
			if err != nil {
				log.Error("failed to read file for datagram response", "filename", name, "err", err)
				continue
			}
			msg := pushMessage(name, payload)
			log.Info("sending datagram response", "filename", name, "bytes", len(msg))
			if err := sess.SendDatagram(msg); err != nil {
				log.Error("failed to send datagram response", "err", err)
				var tl *quicwt.DatagramTooLargeError
				if !errors.As(err, &tl) {
					return
				}
			}
		}
	})
	wg.Wait()
}

// fetchFiles requests files on a session with the stream type of the test
// case, and stores them under <downloads>/<endpoint>/.
func (c *interopConfig) fetchFiles(ctx context.Context, sess *quicwt.Session, endpoint string, files []string, kind string) error {
	log := c.log.With("endpoint", endpoint)
	errs := make(chan error, 2*len(files)+1)
	var wg sync.WaitGroup
	switch kind {
	case "unidirectional":
		for _, f := range files {
			log.Info("requesting file", "file", f)
			wg.Go(func() {
				s, err := sess.OpenUniStreamSync(ctx)
				if err == nil {
					_, err = s.Write([]byte(getPrefix + f))
					if cerr := s.Close(); err == nil {
						err = cerr
					}
				}
				if err != nil {
					errs <- fmt.Errorf("failed to request file %s: %w", f, err)
				}
			})
		}
		for range files {
			wg.Go(func() {
				s, err := sess.AcceptUniStream(ctx)
				if err != nil {
					errs <- err
					return
				}
				data, err := io.ReadAll(s)
				if err != nil {
					errs <- err
					return
				}
				name, payload, err := parsePush(data)
				if err != nil {
					errs <- err
					return
				}
				log.Info("received PUSH", "filename", name, "bytes", len(payload))
				if err := c.save(endpoint, name, payload); err != nil {
					errs <- err
				}
			})
		}
	case "bidirectional":
		for _, f := range files {
			log.Info("requesting file", "file", f)
			wg.Go(func() {
				s, err := sess.OpenStreamSync(ctx)
				if err != nil {
					errs <- err
					return
				}
				_, err = s.Write([]byte(getPrefix + f))
				if cerr := s.Close(); err == nil {
					err = cerr
				}
				if err != nil {
					errs <- fmt.Errorf("failed to request file %s: %w", f, err)
					return
				}
				data, err := io.ReadAll(s)
				if err != nil {
					errs <- fmt.Errorf("failed to read response: %w", err)
					return
				}
				if err := c.save(endpoint, f, data); err != nil {
					errs <- err
				}
			})
		}
	case "datagram":
		wg.Go(func() {
			for _, f := range files {
				log.Info("requesting file (datagram)", "file", f)
				if err := sess.SendDatagram([]byte(getPrefix + f)); err != nil {
					errs <- fmt.Errorf("failed to send GET datagram for %s: %w", f, err)
					return
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
		wg.Go(func() {
			for i := range len(files) {
				data, err := sess.ReceiveDatagram(ctx)
				if err != nil {
					errs <- fmt.Errorf("receiving PUSH datagram %d/%d: %w", i+1, len(files), err)
					return
				}
				name, payload, err := parsePush(data)
				if err != nil {
					errs <- err
					return
				}
				log.Info("received PUSH datagram", "filename", name, "bytes", len(payload))
				if err := c.save(endpoint, name, payload); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// kindOf maps a transfer test case to its stream type.
func kindOf(testcase string) string {
	switch {
	case strings.HasPrefix(testcase, "transfer-unidirectional-"):
		return "unidirectional"
	case strings.HasPrefix(testcase, "transfer-bidirectional-"):
		return "bidirectional"
	case strings.HasPrefix(testcase, "transfer-datagram-"):
		return "datagram"
	}
	return ""
}

// parseServerRequests groups "/<endpoint>/<file>" paths by endpoint.
func parseServerRequests(s string) map[string][]string {
	m := map[string][]string{}
	for _, p := range strings.Fields(s) {
		p = strings.TrimPrefix(p, "/")
		if p == "" {
			continue
		}
		ep, rest, ok := strings.Cut(p, "/")
		if !ok {
			if _, seen := m[p]; !seen {
				m[p] = []string{}
			}
			continue
		}
		m[ep] = append(m[ep], rest)
	}
	return m
}

// clientTarget is one session of the client: host:port and endpoint, and
// the files to request on it.
type clientTarget struct {
	host, endpoint string
	files          []string
}

// parseClientRequests groups URLs https://host[:port]/<endpoint>/<file> by
// host and endpoint, in order of first appearance.
func parseClientRequests(s string) ([]*clientTarget, error) {
	var out []*clientTarget
	idx := map[string]*clientTarget{}
	for _, raw := range strings.Split(s, " ") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		u, err := url.Parse(raw)
		if err != nil {
			return nil, err
		}
		if u.Host == "" {
			return nil, fmt.Errorf("request %q has no host", raw)
		}
		var ep, file string
		if strings.Count(u.Path, "/") < 2 {
			ep = strings.TrimPrefix(u.Path, "/")
		} else {
			ep, file, _ = strings.Cut(u.Path[1:], "/")
		}
		k := u.Host + "/" + ep
		t := idx[k]
		if t == nil {
			t = &clientTarget{host: u.Host, endpoint: ep}
			idx[k] = t
			out = append(out, t)
		}
		if file != "" {
			t.files = append(t.files, file)
		}
	}
	return out, nil
}

// selectProtocol picks the first protocol the client offers that we
// accept.
func selectProtocol(offered, ours []string) string {
	for _, p := range offered {
		if contains(ours, p) {
			return p
		}
	}
	return ""
}

func interopServer(c interopConfig) error {
	requests := parseServerRequests(c.requests)
	protocols := splitProtocols(c.protocols)
	cert, err := tls.LoadX509KeyPair(c.cert, c.key)
	if err != nil {
		return fmt.Errorf("failed to load certificate: %w", err)
	}
	entries, err := os.ReadDir(c.www)
	if err != nil {
		return fmt.Errorf("failed to read %s: %w", c.www, err)
	}
	var endpoints []string
	for _, e := range entries {
		if e.IsDir() {
			endpoints = append(endpoints, e.Name())
		}
	}
	if len(endpoints) == 0 {
		return fmt.Errorf("no endpoints discovered in %s", c.www)
	}
	kl, err := c.keyLog()
	if err != nil {
		return err
	}
	if kl != nil {
		defer kl.Close()
	}
	qc, err := c.quicConfig()
	if err != nil {
		return err
	}

	type arrival struct {
		endpoint string
		sess     *quicwt.Session
		protocol string
	}
	arrivals := make(chan arrival, 64)
	mux := http.NewServeMux()
	for _, ep := range endpoints {
		h := func(w http.ResponseWriter, r *http.Request) {
			proto := selectProtocol(parseSFStringList(r.Header.Get("Wt-Available-Protocols")), protocols)
			if proto != "" {
				w.Header().Set("WT-Protocol", sfString(proto))
			}
			sess, err := quicwt.Upgrade(w, r)
			if err != nil {
				c.log.Error("upgrading failed", "endpoint", ep, "err", err)
				return
			}
			c.log.Info("session", "endpoint", ep, "draft", sess.Draft().String(), "protocol", proto)
			arrivals <- arrival{ep, sess, proto}
		}
		mux.HandleFunc("/"+ep, h)
		mux.HandleFunc("/"+ep+"/", h)
		c.log.Info("registered WebTransport endpoint", "endpoint", ep)
	}
	srv := &quicwt.Server{
		Handler:     mux,
		TLSConfig:   &tls.Config{Certificates: []tls.Certificate{cert}, KeyLogWriter: kl},
		CheckOrigin: func(*http.Request) bool { return true },
		Logger:      c.log.With("component", "quicwt"),
	}
	ln, err := quic.ListenAddrEarly(c.addr, quicwt.ConfigureTLSConfig(srv.TLSConfig), quicwt.ConfigureQUICConfig(qc))
	if err != nil {
		return err
	}
	c.log.Info("listening", "addr", ln.Addr().String(), "testcase", c.testcase)
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.ServeListener(ln) }()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()

	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	// The runner ends a server by stopping its container (SIGTERM) once the
	// client is done: for handshake and transfer that is the normal end,
	// whether or not the client's close reached us first.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, os.Interrupt)
	defer signal.Stop(stop)
	kind := kindOf(c.testcase)
	var mu sync.Mutex
	var firstErr error
	wroteProto := false
	var wg sync.WaitGroup
	active := 0
	ended := make(chan struct{}, 64)
	pending := map[string]bool{} // endpoints still to fetch from (*-send)
	for ep := range requests {
		pending[ep] = true
	}
	seen := false
	for {
		if kind != "" && seen && len(pending) == 0 && active == 0 {
			break
		}
		select {
		case a := <-arrivals:
			if !wroteProto {
				wroteProto = true
				if c.testcase == "handshake" {
					if err := c.writeProtocol(a.protocol); err != nil {
						return fmt.Errorf("failed to write negotiated_protocol.txt: %w", err)
					}
				}
			}
			active++
			seen = true
			delete(pending, a.endpoint)
			wg.Go(func() {
				defer func() { ended <- struct{}{} }()
				var err error
				switch {
				case kind == "":
					if c.testcase == "transfer" {
						c.serveFiles(a.sess, a.endpoint)
					} else {
						<-a.sess.Context().Done()
					}
				default:
					err = c.fetchFiles(ctx, a.sess, a.endpoint, requests[a.endpoint], kind)
					a.sess.CloseWithError(0, "")
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("endpoint %s: %w", a.endpoint, err)
					}
					mu.Unlock()
				}
			})
		case <-ended:
			active--
			if kind == "" && active == 0 {
				// handshake and transfer: done when the client's
				// sessions are over.
				wg.Wait()
				return firstErr
			}
		case err := <-serveErr:
			return err
		case sig := <-stop:
			if kind != "" {
				return fmt.Errorf("test case %s: stopped by %v before the files were fetched", c.testcase, sig)
			}
			c.log.Info("stopping", "signal", sig.String(), "sessions", active)
			if !seen {
				return fmt.Errorf("test case %s: stopped by %v before any session", c.testcase, sig)
			}
			mu.Lock()
			err := firstErr
			mu.Unlock()
			return err
		case <-ctx.Done():
			return fmt.Errorf("test case %s timed out: %w", c.testcase, ctx.Err())
		}
	}
	wg.Wait()
	return firstErr
}

func interopClient(c interopConfig) error {
	targets, err := parseClientRequests(c.requests)
	if err != nil {
		return err
	}
	if len(targets) == 0 {
		return errors.New("no REQUESTS")
	}
	protocols := splitProtocols(c.protocols)
	kl, err := c.keyLog()
	if err != nil {
		return err
	}
	if kl != nil {
		defer kl.Close()
	}
	qc, err := c.quicConfig()
	if err != nil {
		return err
	}
	d := &quicwt.Dialer{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, KeyLogWriter: kl},
		QUICConfig:      qc,
		Logger:          c.log.With("component", "quicwt"),
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()

	// One QUIC connection per host; one session per endpoint on it.
	conns := map[string]*quicwt.ClientConn{}
	defer func() {
		for _, cc := range conns {
			cc.Close()
		}
	}()
	type opened struct {
		t        *clientTarget
		sess     *quicwt.Session
		protocol string
	}
	hdr := http.Header{}
	if len(protocols) > 0 {
		hdr.Set("WT-Available-Protocols", sfStringList(protocols))
	}
	sessions := make([]opened, len(targets))
	var hosts []string
	for _, t := range targets {
		if _, ok := conns[t.host]; ok {
			continue
		}
		addr := t.host
		if _, _, err := net.SplitHostPort(addr); err != nil {
			addr = net.JoinHostPort(strings.Trim(addr, "[]"), "443")
		}
		dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
		cc, err := d.DialConn(dctx, addr)
		dcancel()
		if err != nil {
			return fmt.Errorf("failed to dial %s: %w", t.host, err)
		}
		conns[t.host] = cc
		hosts = append(hosts, t.host)
	}
	sort.Strings(hosts)
	// Open the sessions in parallel.
	var wg sync.WaitGroup
	errs := make([]error, len(targets))
	for i, t := range targets {
		wg.Go(func() {
			octx, ocancel := context.WithTimeout(ctx, 5*time.Second)
			defer ocancel()
			rsp, sess, err := conns[t.host].OpenSession(octx, "https://"+t.host+"/"+t.endpoint, hdr)
			if err != nil {
				errs[i] = fmt.Errorf("failed to dial %s/%s: %w", t.host, t.endpoint, err)
				return
			}
			proto := ""
			if v := rsp.Header.Values("Wt-Protocol"); len(v) > 0 {
				p, ok := parseSFString(strings.Join(v, ","))
				if !ok || !contains(protocols, p) {
					sess.CloseWithError(0x3994bd84, "invalid WT-Protocol") // WT_ALPN_ERROR
					errs[i] = fmt.Errorf("server selected protocol %q that wasn't offered", strings.Join(v, ","))
					return
				}
				proto = p
			}
			c.log.Info("session", "endpoint", t.endpoint, "draft", sess.Draft().String(), "protocol", proto)
			sessions[i] = opened{t, sess, proto}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	defer func() {
		for _, o := range sessions {
			o.sess.CloseWithError(0, "")
		}
		// Let the closes reach the server before the connections go.
		limit := time.After(time.Second)
		for _, o := range sessions {
			select {
			case <-o.sess.Closed():
			case <-limit:
				return
			}
		}
	}()

	if c.testcase == "handshake" {
		return c.writeProtocol(sessions[0].protocol)
	}
	kind := kindOf(c.testcase)
	for i, o := range sessions {
		wg.Go(func() {
			if kind == "" { // transfer: serve files until the server ends the session
				c.serveFiles(o.sess, o.t.endpoint)
				return
			}
			errs[i] = c.fetchFiles(ctx, o.sess, o.t.endpoint, o.t.files, kind)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// sfString and sfStringList encode Structured Field strings (RFC 9651,
// Section 3.3.3) and lists of them, as WT-Protocol and
// WT-Available-Protocols carry.
func sfString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

func sfStringList(l []string) string {
	parts := make([]string, len(l))
	for i, s := range l {
		parts[i] = sfString(s)
	}
	return strings.Join(parts, ", ")
}

// parseSFStringList parses a list of sf-strings, skipping parameters; a
// malformed list yields nil.
func parseSFStringList(v string) []string {
	var out []string
	rest := strings.TrimSpace(v)
	for rest != "" {
		s, n, ok := scanSFString(rest)
		if !ok {
			return nil
		}
		out = append(out, s)
		rest = rest[n:]
		// Parameters: ;key[=value]
		for strings.HasPrefix(rest, ";") {
			i := strings.IndexAny(rest, ",")
			if i < 0 {
				rest = ""
			} else {
				rest = rest[i:]
			}
		}
		rest = strings.TrimLeft(rest, " \t")
		if rest == "" {
			break
		}
		if rest[0] != ',' {
			return nil
		}
		rest = strings.TrimLeft(rest[1:], " \t")
		if rest == "" {
			return nil
		}
	}
	return out
}

// parseSFString parses one sf-string item (parameters ignored).
func parseSFString(v string) (string, bool) {
	v = strings.TrimSpace(v)
	s, n, ok := scanSFString(v)
	if !ok {
		return "", false
	}
	rest := v[n:]
	if rest != "" && rest[0] != ';' {
		return "", false
	}
	return s, true
}

func scanSFString(v string) (string, int, bool) {
	if v == "" || v[0] != '"' {
		return "", 0, false
	}
	var b strings.Builder
	for i := 1; i < len(v); i++ {
		switch ch := v[i]; {
		case ch == '\\':
			if i+1 >= len(v) || v[i+1] != '"' && v[i+1] != '\\' {
				return "", 0, false
			}
			i++
			b.WriteByte(v[i])
		case ch == '"':
			return b.String(), i + 1, true
		case ch < 0x20 || ch > 0x7e:
			return "", 0, false
		default:
			b.WriteByte(ch)
		}
	}
	return "", 0, false
}
