package main

import (
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/quic-go/quic-go"
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
-timeout bounds a test case as a whole: a client still waiting when it
passes (on a dial, a session, a stream, a datagram) closes its connections
and exits with an error that says it timed out.

examples:
  ROLE=server TESTCASE=transfer quicwt interop
  quicwt interop -role server -testcase transfer -addr 127.0.0.1:4443 -www ./www -cert cert.pem -key key.pem
  quicwt interop -role client -testcase transfer-bidirectional-receive -downloads ./dl \
      -requests 'https://127.0.0.1:4443/ep/a.txt https://127.0.0.1:4443/ep/b.txt'
`

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
