package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/redis/go-redis/v9"

	"github.com/quicwt/quicwt/cmd/quicwt/demo"
)

func init() {
	register(command{name: "serve", summary: "run the demo server (counter, echo, clicker, chat) and its pages", run: runServe})
}

const serveHelp = `
usage: quicwt serve [flags]

Runs the WebTransport demo server on UDP 127.0.0.1:4433 with four
endpoints, and a page server on http://localhost:8080 with one page per
endpoint (http://localhost is a secure context, so the pages may use
WebTransport):
  /counter  datagram -> its length; stream -> its byte count (Chrome's sample)
  /echo     bidi, uni and datagram echo
  /clicker  per-user click scores, kept in a file under -data (or -store memory, or Redis)
  /chat     a chat room, one unidirectional stream per message

With -redis redis://HOST:PORT/DB the clicker scores live in Redis (HINCRBY
per user) and the chat room spans every instance using that Redis (pub/sub,
presence with a TTL): run several instances behind a UDP load balancer (see
the README, "Running several instances"). While Redis is away, clicks are
answered {"status":503} and the chat room is local to each instance; the
instance rejoins by itself when Redis is back. A Redis that cannot be
reached at startup is an error (exit status 1).

Pages from other origins (another port, a file server, the original
sample pages) may connect with -allow-origin; by default only the page
server's own origins and the WebTransport server's own are accepted, the
rest get HTTP 403 on their CONNECT.

Without -cert/-key it generates an ECDSA P-256 certificate valid for 13
days, in memory, prints its SHA-256 and gives it to the pages, which pass
it as serverCertificateHashes: a stock Chrome or Firefox connects with no
flags. Stop with Ctrl-C (graceful: GOAWAY, drain, close); a second Ctrl-C
exits at once.

examples:
  quicwt serve
  quicwt serve -addr [::1]:4433 -http 127.0.0.1:8000
  quicwt serve -cert cert.pem -key key.pem -store memory -log-level debug
  quicwt serve -qlog /tmp/qlog
  quicwt serve -redis redis://127.0.0.1:6379/0 -addr :4433 -http :8080
  quicwt serve -allow-origin http://localhost:8000,https://example.com
  quicwt client -certhash <hex printed at startup> https://127.0.0.1:4433/echo
`

func runServe(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("serve", serveHelp)
	addr := fs.String("addr", "127.0.0.1:4433", "WebTransport UDP `host:port`")
	httpAddr := fs.String("http", "localhost:8080", "page server `host:port` (\"localhost\" binds 127.0.0.1 and ::1; \"\" disables it)")
	certFile := fs.String("cert", "", "certificate PEM `file` (default: generate one in memory)")
	keyFile := fs.String("key", "", "private key PEM `file`")
	storeKind := fs.String("store", "file", "clicker score store: `file` or memory (with -redis: Redis)")
	redisURL := fs.String("redis", "", "keep scores and the chat room in Redis at `URL` (redis://host:port/db), shared by every instance using it")
	allowOrigin := fs.String("allow-origin", "", "also accept pages from these `origins` (comma-separated scheme://host[:port], or * for any)")
	dataDir := fs.String("data", defaultDataDir(), "`directory` of the file store")
	level := fs.String("log-level", "info", "log `level`: debug, info, warn or error")
	qlogDir := fs.String("qlog", "", "write quic-go qlog files to `directory`")
	grace := fs.Duration("grace", 5*time.Second, "how long shutdown waits for sessions to end")
	if code := parseFlags(fs, args, stdout, stderr); code >= 0 {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "quicwt serve: unexpected argument %q (run 'quicwt serve -h')\n", fs.Arg(0))
		return 2
	}
	log, err := newLogger(stderr, *level)
	if err != nil {
		fmt.Fprintf(stderr, "quicwt serve: %v\n", err)
		return 2
	}
	if (*certFile == "") != (*keyFile == "") {
		fmt.Fprintf(stderr, "quicwt serve: -cert and -key go together\n")
		return 2
	}
	allow, err := demo.ParseOrigins(*allowOrigin)
	if err != nil {
		fmt.Fprintf(stderr, "quicwt serve: -allow-origin: %v\n", err)
		return 2
	}
	storeSet := false
	fs.Visit(func(f *flag.Flag) { storeSet = storeSet || f.Name == "store" })
	if *redisURL != "" && storeSet {
		fmt.Fprintf(stderr, "quicwt serve: -store and -redis are exclusive (-redis keeps the scores in Redis)\n")
		return 2
	}
	cfg := demo.Config{Addr: *addr, HTTPAddr: *httpAddr, Logger: log, AllowOrigins: allow}
	generated := *certFile == ""
	if generated {
		cfg.Cert, err = genCert(nil, defaultValidity)
	} else {
		cfg.Cert, err = loadCert(*certFile, *keyFile)
	}
	if err != nil {
		return fail(stderr, "serve", err)
	}
	var rdb *demo.Redis
	switch {
	case *redisURL != "":
		redis.SetLogger(redisLogger{log}) // go-redis's own retries: debug only
		rdb, err = demo.DialRedis(context.Background(), *redisURL, log)
		if err != nil {
			return fail(stderr, "serve", err)
		}
		defer rdb.Close()
		cfg.Store = demo.NewRedisStore(rdb)
		cfg.Chat.Link = demo.NewRedisRoom(rdb, demo.RedisRoomOptions{})
	case *storeKind == "memory":
		cfg.Store = demo.NewMemoryStore()
	case *storeKind == "file":
		st, err := demo.OpenFileStore(*dataDir)
		if err != nil {
			return fail(stderr, "serve", fmt.Errorf("score store: %w", err))
		}
		cfg.Store = st
	default:
		fmt.Fprintf(stderr, "quicwt serve: bad -store %q (want file or memory)\n", *storeKind)
		return 2
	}
	if *qlogDir != "" {
		tr, err := qlogTracer(*qlogDir, log)
		if err != nil {
			cfg.Store.Close()
			return fail(stderr, "serve", fmt.Errorf("qlog: %w", err))
		}
		cfg.QUIC = &quic.Config{Tracer: tr}
	}
	d, err := demo.Start(cfg)
	if err != nil {
		cfg.Store.Close()
		return fail(stderr, "serve", err)
	}
	printBanner(stdout, d, cfg, generated, *qlogDir)

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	select {
	case err := <-d.Err():
		d.Close()
		return fail(stderr, "serve", err)
	case s := <-sigs:
		log.Info("shutting down (signal again to exit at once)", "signal", s.String(), "grace", grace.String())
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), *grace)
		defer cancel()
		done <- d.Shutdown(ctx)
	}()
	select {
	case err := <-done:
		if err != nil && err != context.DeadlineExceeded {
			log.Warn("shutdown", "err", err)
		}
		log.Info("stopped")
		return 0
	case s := <-sigs:
		log.Warn("second signal: exiting now", "signal", s.String())
		return 1
	}
}

func printBanner(w io.Writer, d *demo.Server, cfg demo.Config, generated bool, qlogDir string) {
	leaf := cfg.Cert.Leaf
	fmt.Fprintf(w, "quicwt demo server\n")
	fmt.Fprintf(w, "  WebTransport: %s  (UDP; endpoints /counter /echo /clicker /chat)\n", d.WTURL())
	if u := d.PageURL(); u != "" {
		fmt.Fprintf(w, "  Pages:        %s  <- open this in Chrome or Firefox\n", u)
	}
	kind := "from files"
	if generated {
		kind = "self-signed ECDSA P-256, in memory"
	}
	fmt.Fprintf(w, "  Certificate:  %s, valid until %s\n", kind, leaf.NotAfter.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "    SHA-256 (hex):    %s\n", d.Hashes().Hex)
	fmt.Fprintf(w, "    SHA-256 (base64): %s\n", d.Hashes().Base64)
	fmt.Fprintf(w, "    SPKI SHA-256 (base64, for --ignore-certificate-errors-spki-list): %s\n", d.Hashes().SPKIB64)
	if !d.Pinned() {
		fmt.Fprintf(w, "    (not usable with serverCertificateHashes: needs ECDSA and at most 14 days; pages will rely on normal verification)\n")
	}
	fmt.Fprintf(w, "  Clicker scores: %s\n", cfg.Store.Describe())
	if cfg.Chat.Link != nil {
		fmt.Fprintf(w, "  Chat room:    %s\n", cfg.Chat.Link.Describe())
	}
	if len(cfg.AllowOrigins) > 0 {
		fmt.Fprintf(w, "  Also allowed: %s\n", strings.Join(cfg.AllowOrigins, ", "))
	}
	if qlogDir != "" {
		fmt.Fprintf(w, "  qlog:         %s\n", qlogDir)
	}
	fmt.Fprintf(w, "  Try:          quicwt client -certhash %s %s/echo\n", d.Hashes().Hex, d.WTURL())
	fmt.Fprintf(w, "Press Ctrl-C to stop.\n")
}

// defaultDataDir is $XDG_STATE_HOME/quicwt, else ~/.local/state/quicwt.
func defaultDataDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "quicwt")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "state", "quicwt")
	}
	return filepath.Join(os.TempDir(), "quicwt-state")
}

// redisLogger sends go-redis's own log lines (dial retries, pool events)
// to the debug level: the demo logs Redis state changes itself, once each.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}
