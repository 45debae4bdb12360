package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicwt/quicwt/frames/sfv"
	"github.com/quicwt/quicwt/quicwt"
)

// offeredProtocols returns the protocols a client offers in
// WT-Available-Protocols, a list of sf-strings (RFC 9651) that may span
// several field lines (RFC 9110, Section 5.3); a malformed list offers none.
func offeredProtocols(h http.Header) []string {
	l, err := sfv.ParseStringList(h.Values("Wt-Available-Protocols"))
	if err != nil {
		return nil
	}
	return l
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
			proto := selectProtocol(offeredProtocols(r.Header), protocols)
			if v, err := sfv.FormatString(proto); proto != "" && err == nil {
				w.Header().Set("WT-Protocol", v)
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
