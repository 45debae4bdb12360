package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/quicwt/quicwt/cmd/internal/conformance"
)

func init() {
	register(command{name: "check", summary: "check a WebTransport server's protocol conformance", run: runCheck})
}

const checkUsage = `usage: quicwt check [flags] URL

Connects to a WebTransport-over-HTTP/3 server with a raw HTTP/3 peer and
runs the conformance cases: control stream and SETTINGS rules, frame
errors, QPACK, message rules, extended CONNECT, WebTransport streams and
datagrams, capsules, GOAWAY/drain and flow control. Each case uses a fresh
QUIC connection and prints PASS, FAIL or SKIP with the RFC or draft section
and the expected error code, then the summary line "N passed, M failed".

URL is https://host:port/path or host:port; the path (or -path) must be
one on which the server accepts WebTransport sessions.

Exit status: 0 if no case failed, 1 if any failed or the server could not
be reached, 2 for a usage error.

Examples:
  quicwt check https://127.0.0.1:4433/echo -certhash 3b1f...e9
  quicwt check -insecure -run '^capsules/' localhost:4433
  quicwt check -json -timeout 5s https://example.com/wt > report.json
  quicwt check -list

Flags:
`

// hashList collects repeated -certhash flags.
type hashList [][32]byte

func (h *hashList) String() string { return fmt.Sprint(len(*h), " hashes") }

func (h *hashList) Set(s string) error {
	b, err := hex.DecodeString(strings.ReplaceAll(strings.ReplaceAll(s, ":", ""), " ", ""))
	if err != nil || len(b) != 32 {
		return errors.New("want the hex SHA-256 of the server's DER certificate (64 hex digits)")
	}
	*h = append(*h, [32]byte(b))
	return nil
}

// parseTarget turns a URL or host:port into an address and a path.
func parseTarget(s string) (addr, path string, err error) {
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", "", err
	}
	if u.Scheme != "https" {
		return "", "", fmt.Errorf("scheme %q: WebTransport over HTTP/3 needs https", u.Scheme)
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "443")
	}
	if u.Hostname() == "" {
		return "", "", errors.New("no host in " + s)
	}
	path = u.EscapedPath()
	if u.RawQuery != "" {
		path += "?" + u.RawQuery
	}
	return host, path, nil
}

func runCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var hashes hashList
	path := fs.String("path", "", "path on which the server accepts WebTransport (default: the URL's path, else /)")
	noWTPath := fs.String("no-wt-path", "", "a `path` on which the server does not serve WebTransport (default: -path with \"-no-such-resource\" appended)")
	fs.Var(&hashes, "certhash", "accept the server certificate whose DER SHA-256 is this hex `HASH` (repeatable)")
	insecure := fs.Bool("insecure", false, "do not verify the server certificate")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	runRE := fs.String("run", "", "run only the cases whose ID matches this `REGEXP`")
	timeout := fs.Duration("timeout", 10*time.Second, "time limit per case")
	parallel := fs.Int("parallel", 8, "cases run at once")
	verbose := fs.Bool("v", false, "print the detail of passing cases too")
	list := fs.Bool("list", false, "list the cases and exit")
	fs.Usage = func() {
		fmt.Fprint(stderr, checkUsage)
		fs.PrintDefaults()
	}
	// Flags may come before or after the URL.
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	var filter *regexp.Regexp
	if *runRE != "" {
		var err error
		if filter, err = regexp.Compile(*runRE); err != nil {
			fmt.Fprintf(stderr, "quicwt check: -run: %v\n", err)
			return 2
		}
	}
	if *list {
		for _, c := range conformance.Cases() {
			if filter == nil || filter.MatchString(c.ID) {
				fmt.Fprintf(stdout, "%-50s %-28s %s\n", c.ID, c.Section, c.Expect)
			}
		}
		return 0
	}
	if len(positional) != 1 {
		fs.Usage()
		return 2
	}
	addr, urlPath, err := parseTarget(positional[0])
	if err != nil {
		fmt.Fprintf(stderr, "quicwt check: %v\n", err)
		return 2
	}
	if *path == "" {
		*path = urlPath
	}
	if *timeout <= 0 || *parallel <= 0 {
		fmt.Fprintln(stderr, "quicwt check: -timeout and -parallel must be positive")
		return 2
	}
	opts := conformance.Options{
		Addr: addr, Path: *path, NoWebTransportPath: *noWTPath, CertHashes: hashes, Insecure: *insecure,
		Timeout: *timeout, Filter: filter, Parallel: *parallel,
	}
	rep, err := conformance.Run(context.Background(), opts)
	if err != nil {
		fmt.Fprintf(stderr, "quicwt check: %v\n", err)
		return 1
	}
	if *asJSON {
		err = rep.WriteJSON(stdout)
	} else {
		err = rep.WriteText(stdout, *verbose)
	}
	if err != nil {
		fmt.Fprintf(stderr, "quicwt check: %v\n", err)
		return 1
	}
	if !rep.OK() {
		return 1
	}
	return 0
}
