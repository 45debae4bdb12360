// Package demo is the demo server of `quicwt serve`: the WebTransport
// endpoints of the four seed systems (counter, echo, clicker, chat) and the
// page server that hosts their browser pages. The clicker's scores live in
// a ScoreStore (memory, file or Redis), the chat room's members on other
// instances are reached through a Redis room (see redisroom.go).
package demo

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicwt/quicwt/cmd/quicwt/internal/certs"
	"github.com/quicwt/quicwt/quicwt"
)

// Config configures the demo server: the WebTransport endpoints of the
// four seed systems plus the page server that hosts their browser pages.
type Config struct {
	Addr     string // UDP host:port of the WebTransport server
	HTTPAddr string // TCP host:port of the page server; "" for none
	Cert     tls.Certificate
	Store    ScoreStore // clicker scores
	Logger   *slog.Logger
	QUIC     *quic.Config // nil for defaults
	Limits   quicwt.Limits
	Chat     ChatOptions
	// AllowOrigins are the page origins accepted besides the server's
	// own (the page server's and the WebTransport authority's), as
	// "scheme://host[:port]"; "*" accepts any origin.
	AllowOrigins []string
}

// Server is a running demo server.
type Server struct {
	cfg     Config
	log     *slog.Logger
	wt      *quicwt.Server
	ln      *quic.EarlyListener
	wtAddr  *net.UDPAddr
	wtURL   string // https://host:port as pages must dial it
	hashes  certs.Hashes
	pinned  bool // the certificate can be used with serverCertificateHashes
	room    *chatRoom
	clicker *clicker

	httpSrv   *http.Server
	httpLns   []net.Listener
	httpPort  int
	httpHosts []string        // host names of the page server's origins
	origins   map[string]bool // the page server's origins and AllowOrigins
	anyOrigin bool

	serveErr chan error
	stopLink context.CancelFunc // ends the chat link's Run
	linkDone chan struct{}
	wg       sync.WaitGroup
}

// Start binds both servers and starts serving.
func Start(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Store == nil {
		cfg.Store = NewMemoryStore()
	}
	if cfg.Cert.Leaf == nil {
		return nil, errors.New("demo: no certificate")
	}
	d := &Server{cfg: cfg, log: cfg.Logger, serveErr: make(chan error, 2)}
	d.hashes = certs.HashesOf(cfg.Cert.Leaf)
	d.pinned = certs.Pinnable(cfg.Cert.Leaf)
	d.room = newChatRoom(cfg.Logger, cfg.Chat)
	d.clicker = &clicker{store: cfg.Store, log: cfg.Logger}

	mux := http.NewServeMux()
	mux.HandleFunc("/counter", d.wtHandler("counter", serveCounter))
	mux.HandleFunc("/echo", d.wtHandler("echo", serveEcho))
	mux.HandleFunc("/clicker", d.wtHandler("clicker", d.clicker.serve))
	mux.HandleFunc("/chat", d.wtHandler("chat", d.room.serve))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodConnect {
			// Not upgraded: the library answers that the resource does
			// not support WebTransport (405 from draft-15 on, 404 before).
			return
		}
		http.NotFound(w, r)
	})
	d.wt = &quicwt.Server{
		Handler:     mux,
		TLSConfig:   &tls.Config{Certificates: []tls.Certificate{cfg.Cert}},
		CheckOrigin: d.checkOrigin,
		Limits:      cfg.Limits,
		Logger:      cfg.Logger.With("component", "quicwt"),
	}
	ln, err := quic.ListenAddrEarly(cfg.Addr, quicwt.ConfigureTLSConfig(d.wt.TLSConfig), quicwt.ConfigureQUICConfig(cfg.QUIC))
	if err != nil {
		return nil, fmt.Errorf("WebTransport server: %w", err)
	}
	d.ln = ln
	d.wtAddr = ln.Addr().(*net.UDPAddr)
	d.wtURL = "https://" + dialableHostPort(d.wtAddr)

	if cfg.HTTPAddr != "" {
		if err := d.listenHTTP(cfg.HTTPAddr); err != nil {
			ln.Close()
			return nil, fmt.Errorf("page server: %w", err)
		}
	}
	d.origins, d.anyOrigin = d.allowedOrigins()

	lctx, stop := context.WithCancel(context.Background())
	d.stopLink, d.linkDone = stop, make(chan struct{})
	go func() {
		defer close(d.linkDone)
		d.room.link.Run(lctx, d.room.remote)
	}()
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if err := d.wt.ServeListener(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.serveErr <- fmt.Errorf("WebTransport server: %w", err)
		}
	}()
	if d.httpSrv != nil {
		for _, l := range d.httpLns {
			d.wg.Add(1)
			go func() {
				defer d.wg.Done()
				if err := d.httpSrv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
					d.serveErr <- fmt.Errorf("page server: %w", err)
				}
			}()
		}
	}
	return d, nil
}

// dialableHostPort turns a bound address into one a browser on this
// machine can dial: unspecified addresses become the loopback of their
// family.
func dialableHostPort(a *net.UDPAddr) string {
	ip := a.IP
	switch {
	case ip == nil || ip.IsUnspecified() && ip.To4() != nil:
		ip = net.IPv4(127, 0, 0, 1)
	case ip.IsUnspecified():
		ip = net.IPv6loopback
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(a.Port))
}

// listenHTTP binds the page server. "localhost" is bound on both
// loopbacks because Chromium resolves it to ::1 only and Firefox to
// 127.0.0.1 only; a failure on ::1 (no IPv6) is only logged.
func (d *Server) listenHTTP(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	d.httpSrv = &http.Server{Handler: d.pageHandler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelDebug)}
	if strings.EqualFold(host, "localhost") {
		l4, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", port))
		if err != nil {
			return err
		}
		d.httpLns = append(d.httpLns, l4)
		p := l4.Addr().(*net.TCPAddr).Port
		if l6, err := net.Listen("tcp", net.JoinHostPort("::1", strconv.Itoa(p))); err == nil {
			d.httpLns = append(d.httpLns, l6)
		} else {
			d.log.Warn("page server not reachable on [::1] (Chromium's localhost)", "err", err)
		}
		d.httpPort = p
		d.httpHosts = []string{"localhost"}
		return nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	d.httpLns = append(d.httpLns, l)
	ta := l.Addr().(*net.TCPAddr)
	d.httpPort = ta.Port
	if host != "" && !ta.IP.IsUnspecified() {
		d.httpHosts = []string{host}
		if ip := net.ParseIP(host); ip != nil {
			d.httpHosts = []string{ta.IP.String()}
		}
	} else {
		d.httpHosts = []string{"localhost"}
	}
	return nil
}

// pageURL is the index page's address.
func (d *Server) PageURL() string {
	if d.httpSrv == nil {
		return ""
	}
	h := d.httpHosts[0]
	if ip := net.ParseIP(h); ip != nil && ip.To4() == nil {
		h = "[" + h + "]"
	}
	return fmt.Sprintf("http://%s:%d/", h, d.httpPort)
}

// wtHandler upgrades a CONNECT to a session and runs serve for it. A
// request that is not a WebTransport CONNECT gets 400, a refused Origin
// 403 (both from Upgrade).
func (d *Server) wtHandler(name string, serve func(*quicwt.Session, *slog.Logger)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess, err := quicwt.Upgrade(w, r)
		if err != nil {
			d.log.Debug("upgrade failed", "endpoint", name, "remote", r.RemoteAddr, "err", err)
			return
		}
		log := d.log.With("endpoint", name, "session", sess.ID(), "remote", sess.RemoteAddr())
		log.Info("session open", "draft", sess.Draft().String(), "origin", r.Header.Get("Origin"))
		go func() {
			<-sess.Context().Done()
			log.Info("session closed", "cause", context.Cause(sess.Context()))
		}()
		go serve(sess, log)
	}
}

// WTURL is https://host:port of the WebTransport server, as a browser on
// this machine dials it.
func (d *Server) WTURL() string { return d.wtURL }

// WTAddr is the WebTransport server's bound UDP address.
func (d *Server) WTAddr() *net.UDPAddr { return d.wtAddr }

// Hashes are the fingerprints of the server's certificate.
func (d *Server) Hashes() certs.Hashes { return d.hashes }

// Pinned says whether the pages pin the certificate with
// serverCertificateHashes (ECDSA, at most 14 days).
func (d *Server) Pinned() bool { return d.pinned }

// linkCloseTimeout bounds how long stopping waits for the chat link to
// send the last leaves.
const linkCloseTimeout = 3 * time.Second

// Err reports a serving failure (nil channel read blocks while fine).
func (d *Server) Err() <-chan error { return d.serveErr }

// Shutdown stops both servers gracefully: GOAWAY and WT_DRAIN_SESSION to
// every session, a wait for them until ctx ends, then WT_CLOSE_SESSION
// (code 0, "server shutting down") to the rest.
func (d *Server) Shutdown(ctx context.Context) error {
	var herr error
	if d.httpSrv != nil {
		hctx, cancel := context.WithTimeout(ctx, time.Second)
		herr = d.httpSrv.Shutdown(hctx)
		cancel()
		if herr != nil {
			d.httpSrv.Close()
		}
	}
	err := d.wt.Shutdown(ctx)
	d.wg.Wait()
	// The sessions are gone and their leaves queued: send them, then
	// withdraw from the shared room.
	lctx, cancel := context.WithTimeout(context.Background(), linkCloseTimeout)
	if lerr := d.room.link.Close(lctx); err == nil {
		err = lerr
	}
	cancel()
	d.stopLink()
	<-d.linkDone
	if cerr := d.cfg.Store.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = herr
	}
	return err
}

// Close stops everything at once.
func (d *Server) Close() error {
	if d.httpSrv != nil {
		d.httpSrv.Close()
	}
	err := d.wt.Close()
	d.wg.Wait()
	lctx, cancel := context.WithTimeout(context.Background(), linkCloseTimeout)
	d.room.link.Close(lctx)
	cancel()
	d.stopLink()
	<-d.linkDone
	if cerr := d.cfg.Store.Close(); err == nil {
		err = cerr
	}
	return err
}
