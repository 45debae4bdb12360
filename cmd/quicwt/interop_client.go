package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/quicwt/quicwt/frames"
	"github.com/quicwt/quicwt/frames/sfv"
	"github.com/quicwt/quicwt/quicwt"
)

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
	// Every blocking step below is bound by the test case's timeout: the
	// dials and session opens by ctx, and the rest (stream reads and writes,
	// accepts, datagram waits) also by closing the connections when ctx
	// ends, which unblocks whatever still waits on their sessions.
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	conns := newClientConns()
	defer conns.closeAll()
	stopWatch := context.AfterFunc(ctx, conns.closeAll)
	defer stopWatch()
	timedOut := func(err error) error {
		if ctx.Err() == nil {
			return err
		}
		return fmt.Errorf("test case %s timed out after %v: %w", c.testcase, c.timeout, err)
	}

	type opened struct {
		t        *clientTarget
		sess     *quicwt.Session
		protocol string
	}
	hdr := http.Header{}
	if len(protocols) > 0 {
		v, err := sfv.FormatStringList(protocols)
		if err != nil {
			return fmt.Errorf("PROTOCOLS: %w", err)
		}
		hdr.Set("WT-Available-Protocols", v)
	}
	// One QUIC connection per host; one session per endpoint on it.
	for _, t := range targets {
		if conns.get(t.host) != nil {
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
			return timedOut(fmt.Errorf("failed to dial %s: %w", t.host, err))
		}
		if !conns.add(t.host, cc) {
			return timedOut(fmt.Errorf("failed to dial %s: %w", t.host, ctx.Err()))
		}
	}
	// Open the sessions in parallel.
	sessions := make([]opened, len(targets))
	var wg sync.WaitGroup
	errs := make([]error, len(targets))
	for i, t := range targets {
		wg.Go(func() {
			octx, ocancel := context.WithTimeout(ctx, 5*time.Second)
			defer ocancel()
			rsp, sess, err := conns.get(t.host).OpenSession(octx, "https://"+t.host+"/"+t.endpoint, hdr)
			if err != nil {
				errs[i] = fmt.Errorf("failed to dial %s/%s: %w", t.host, t.endpoint, err)
				return
			}
			proto, err := chosenProtocol(rsp.Header, protocols)
			sessions[i] = opened{t, sess, proto} // closed on return, whatever happens
			if err != nil {
				sess.CloseWithError(quicwt.SessionErrorCode(frames.WTALPNError), "invalid WT-Protocol")
				errs[i] = err
				return
			}
			c.log.Info("session", "endpoint", t.endpoint, "draft", sess.Draft().String(), "protocol", proto)
		})
	}
	wg.Wait()
	defer func() {
		// Let the closes reach the server before the connections go, for
		// at most a second and never past the timeout. CloseWithError
		// itself can block on a server that does not read its CONNECT
		// stream, so the closes run in parallel, and closing the
		// connections afterwards ends any still waiting.
		var closes sync.WaitGroup
		for _, o := range sessions {
			if o.sess != nil {
				closes.Go(func() {
					o.sess.CloseWithError(0, "")
					<-o.sess.Closed()
				})
			}
		}
		closed := make(chan struct{})
		go func() { closes.Wait(); close(closed) }()
		select {
		case <-closed:
		case <-time.After(time.Second):
		case <-ctx.Done():
		}
		conns.closeAll()
	}()
	if err := errors.Join(errs...); err != nil {
		return timedOut(err)
	}

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
	if ctx.Err() != nil {
		// The server never ended the sessions (transfer) or never sent
		// every file: the watchdog closed the connections.
		return timedOut(errors.Join(append(errs, ctx.Err())...))
	}
	return errors.Join(errs...)
}

// chosenProtocol returns the application protocol the server chose in
// WT-Protocol (an sf-string, RFC 9651; every field line counts), or ""
// when it chose none. A choice that is not an sf-string or that the
// client did not offer is an error: the client must then close the
// session with WT_ALPN_ERROR (draft-ietf-webtrans-http3, Section 3.3).
func chosenProtocol(h http.Header, offered []string) (string, error) {
	v := h.Values("Wt-Protocol")
	if len(v) == 0 {
		return "", nil
	}
	p, err := sfv.ParseStringItem(v)
	if err != nil || !contains(offered, p) {
		return "", fmt.Errorf("server selected protocol %q that wasn't offered", strings.Join(v, ","))
	}
	return p, nil
}

// clientConns holds the interop client's connections, one per host.
// closeAll may run at any time (when the timeout fires); a connection
// added after it is closed at once.
type clientConns struct {
	mu     sync.Mutex
	conns  map[string]*quicwt.ClientConn
	closed bool
}

func newClientConns() *clientConns {
	return &clientConns{conns: map[string]*quicwt.ClientConn{}}
}

// add records the connection to host; it reports false, having closed
// cc, if closeAll already ran.
func (s *clientConns) add(host string, cc *quicwt.ClientConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		cc.Close()
		return false
	}
	s.conns[host] = cc
	return true
}

func (s *clientConns) get(host string) *quicwt.ClientConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns[host]
}

func (s *clientConns) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for _, cc := range s.conns {
		cc.Close()
	}
}
