package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

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
