package quicwt

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/net/http/httpguts"

	"github.com/quicwt/quicwt/frames"
	"github.com/quicwt/quicwt/settings"
)

// Dialer opens WebTransport sessions. The zero value is usable.
type Dialer struct {
	// TLSClientConfig is cloned for each connection; ALPN is set to h3 and
	// ServerName to the URL's host when empty.
	TLSClientConfig *tls.Config
	// CertificateHashes pins the server certificate by the SHA-256 of its
	// DER encoding, as the browser API's serverCertificateHashes does;
	// when set, chain verification is replaced by the pin.
	CertificateHashes [][32]byte
	// QUICConfig is used for new connections (see ConfigureQUICConfig).
	QUICConfig *quic.Config
	// Transport, when set, dials from the caller's QUIC transport (its
	// socket, connection ID generator, stateless reset key...) instead of
	// a new UDP socket per connection; the options above still apply.
	Transport *quic.Transport
	// Protocols are the application protocols offered in each CONNECT
	// (WT-Available-Protocols, draft-ietf-webtrans-http3, Section 3.3),
	// most preferred first, unless the request header passed to Dial or
	// OpenSession carries that field itself. A server answer outside the
	// offer closes the session with WT_ALPN_ERROR and fails the dial with
	// a *ProtocolError; Session.Protocol reports the server's choice.
	Protocols []string
	// RequireProtocol also fails the dial (WT_ALPN_ERROR, *ProtocolError)
	// when the server chooses no protocol.
	RequireProtocol bool
	// Limits bound what the server can make the client hold.
	Limits Limits
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// AdditionalSettings are added to the client's SETTINGS
	// (DefaultClientSettings), replacing a default's value for the same
	// ID, as for Server.AdditionalSettings.
	AdditionalSettings []settings.Setting

	// settings, when set by a test, replaces the SETTINGS whole.
	settings *settings.Settings
}

// ClientConn is a client's HTTP/3 connection, which can carry several
// WebTransport sessions.
type ClientConn struct {
	c     *conn
	owned bool // close the QUIC connection when the last Dial session ends

	protocols       []string // Dialer.Protocols
	requireProtocol bool
}

// Dial connects to a WebTransport URL (https://host:port/path), opens a
// session with the given request headers, and returns the server's
// response and the session. The connection is closed when the session
// ends. On a non-2xx answer the response is returned with a
// *RejectedError.
func (d *Dialer) Dial(ctx context.Context, rawURL string, h http.Header) (*http.Response, *Session, error) {
	u, err := parseWebTransportURL(rawURL)
	if err != nil {
		return nil, nil, err
	}
	cc, err := d.DialConn(ctx, u.Host)
	if err != nil {
		return nil, nil, err
	}
	cc.owned = true
	rsp, sess, err := cc.openSession(ctx, u, h)
	if err != nil {
		cc.Close()
		return rsp, nil, err
	}
	return rsp, sess, nil
}

func parseWebTransportURL(rawURL string) (*url.URL, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("quicwt: bad URL: %w", err)
	}
	if u.Scheme != "https" {
		return nil, fmt.Errorf("quicwt: bad URL %q: scheme must be https", rawURL)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("quicwt: bad URL %q: no host", rawURL)
	}
	if u.Port() == "" {
		u.Host = net.JoinHostPort(u.Hostname(), "443")
	}
	return u, nil
}

// DialConn opens an HTTP/3 connection to addr (host:port) for sessions
// opened with OpenSession.
func (d *Dialer) DialConn(ctx context.Context, addr string) (*ClientConn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("quicwt: bad address %q: %w", addr, err)
	}
	tlsConf := ConfigureTLSConfig(d.TLSClientConfig)
	if tlsConf.ServerName == "" {
		tlsConf.ServerName = host
	}
	if len(d.CertificateHashes) > 0 {
		pins := d.CertificateHashes
		tlsConf.InsecureSkipVerify = true
		tlsConf.VerifyConnection = func(cs tls.ConnectionState) error {
			return verifyPinned(cs.PeerCertificates, pins)
		}
	}
	var qc *quic.Conn
	if d.Transport != nil {
		udp, rerr := net.ResolveUDPAddr("udp", addr)
		if rerr != nil {
			return nil, fmt.Errorf("quicwt: resolving %q: %w", addr, rerr)
		}
		qc, err = d.Transport.Dial(ctx, udp, tlsConf, ConfigureQUICConfig(d.QUICConfig))
	} else {
		qc, err = quic.DialAddr(ctx, addr, tlsConf, ConfigureQUICConfig(d.QUICConfig))
	}
	if err != nil {
		return nil, err
	}
	cc, err := d.newClientConn(wrapConn(qc))
	if err != nil {
		_ = qc.CloseWithError(quic.ApplicationErrorCode(frames.H3InternalError), "")
		return nil, err
	}
	return cc, nil
}

// NewClientConn runs the client side of HTTP/3 on a QUIC connection the
// caller dialed (ALPN h3, datagrams enabled: see ConfigureTLSConfig and
// ConfigureQUICConfig). The Dialer's TLSClientConfig and QUICConfig do not
// apply (the connection exists); its CertificateHashes, when set, are
// checked against the connection's certificate, which fails the call when
// none matches. The caller owns the connection: to deliver a session's
// close to the server, wait for Session.Closed after CloseWithError before
// closing the QUIC connection.
func (d *Dialer) NewClientConn(qc *quic.Conn) (*ClientConn, error) {
	if len(d.CertificateHashes) > 0 {
		if err := verifyPinned(qc.ConnectionState().TLS.PeerCertificates, d.CertificateHashes); err != nil {
			return nil, err
		}
	}
	return d.newClientConn(wrapConn(qc))
}

func (d *Dialer) newClientConn(qc qconn) (*ClientConn, error) {
	local := defaultSettings(false)
	if d.settings != nil {
		local = *d.settings
	} else {
		var err error
		if local, err = withAdditional(local, d.AdditionalSettings); err != nil {
			return nil, err
		}
	}
	c := newConn(qc, false, d.Limits, d.Logger, &local)
	if err := c.start(); err != nil {
		return nil, err
	}
	return &ClientConn{c: c, protocols: d.Protocols, requireProtocol: d.RequireProtocol}, nil
}

// verifyPinned accepts a leaf certificate whose DER SHA-256 is pinned and
// that is currently valid, as serverCertificateHashes does.
func verifyPinned(certs []*x509.Certificate, pins [][32]byte) error {
	if len(certs) == 0 {
		return errors.New("quicwt: server sent no certificate")
	}
	leaf := certs[0]
	sum := sha256.Sum256(leaf.Raw)
	for _, p := range pins {
		if bytes.Equal(sum[:], p[:]) {
			now := time.Now()
			if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
				return errors.New("quicwt: pinned certificate is not valid now")
			}
			return nil
		}
	}
	return fmt.Errorf("quicwt: server certificate hash %x is not pinned", sum)
}

// Draft waits for the server's SETTINGS and returns the negotiated draft.
func (cc *ClientConn) Draft(ctx context.Context) (settings.Draft, error) {
	if err := cc.c.waitSettings(ctx); err != nil {
		return settings.DraftNone, err
	}
	return cc.c.draft, nil
}

// PeerSettings waits for the server's SETTINGS and returns a copy.
func (cc *ClientConn) PeerSettings(ctx context.Context) (*settings.Settings, error) {
	if err := cc.c.waitSettings(ctx); err != nil {
		return nil, err
	}
	return cc.c.peerSettings(), nil
}

// Close closes the connection with H3_NO_ERROR.
func (cc *ClientConn) Close() error {
	cc.c.closeWithError(frames.H3NoError, "")
	return nil
}

// CloseWithGoaway sends GOAWAY, then closes the connection.
func (cc *ClientConn) CloseWithGoaway() error {
	cc.c.sendGoaway()
	return cc.Close()
}

// Done is closed when the connection ends; Err then says why.
func (cc *ClientConn) Done() <-chan struct{} { return cc.c.closed }

// Err returns why the connection ended, or nil while it is open.
func (cc *ClientConn) Err() error { return cc.c.closeError() }

// Draining is closed when the server sent GOAWAY.
func (cc *ClientConn) Draining() <-chan struct{} { return cc.c.draining }

// OpenSession sends an extended CONNECT for rawURL (after the server's
// SETTINGS, as the drafts require) and waits for the response.
func (cc *ClientConn) OpenSession(ctx context.Context, rawURL string, h http.Header) (*http.Response, *Session, error) {
	u, err := parseWebTransportURL(rawURL)
	if err != nil {
		return nil, nil, err
	}
	return cc.openSession(ctx, u, h)
}

func (cc *ClientConn) openSession(ctx context.Context, u *url.URL, h http.Header) (*http.Response, *Session, error) {
	c := cc.c
	if err := c.waitSettings(ctx); err != nil {
		return nil, nil, err
	}
	draft := c.draft
	if draft == settings.DraftNone {
		return nil, nil, ErrNotSupported
	}
	if !c.requirementsMet() {
		// A client MUST NOT establish sessions then, and MAY close the
		// connection with WT_REQUIREMENTS_NOT_MET (draft-ietf-webtrans-http3-16,
		// Section 3.1): a ClientConn is for WebTransport, so it does.
		c.closeWithError(frames.WTRequirementsNotMet, "server lacks max_datagram_frame_size or reset_stream_at")
		return nil, nil, ErrRequirementsNotMet
	}
	select {
	case <-c.draining:
		return nil, nil, ErrGoaway
	default:
	}
	str, err := c.qc.OpenStreamSync(ctx)
	if err != nil {
		return nil, nil, translateConnErr(err)
	}
	sess := newSession(c, str, draft)
	if err := c.addSession(sess); err != nil {
		str.CancelWrite(quic.StreamErrorCode(frames.H3RequestCancelled))
		str.CancelRead(quic.StreamErrorCode(frames.H3RequestCancelled))
		if err == ErrTooManySessions {
			err = fmt.Errorf("%w: %d sessions are open on this connection (Limits.MaxSessions)", err, c.limits.MaxSessions)
		}
		return nil, nil, err
	}
	fail := func(err error) (*http.Response, *Session, error) {
		sess.terminate(&SessionError{Cause: err}, true)
		if cc.owned {
			cc.Close()
		}
		return nil, nil, err
	}
	authority, err := httpguts.PunycodeHostPort(u.Host)
	if err != nil {
		return fail(fmt.Errorf("quicwt: bad host %q: %w", u.Host, err))
	}
	e := newFieldEncoder()
	e.add(":method", http.MethodConnect)
	e.add(":scheme", "https")
	e.add(":authority", authority)
	path := u.RequestURI()
	e.add(":path", path)
	e.add(":protocol", draft.Protocol())
	if draft == settings.Draft02 {
		e.add("sec-webtransport-http3-draft02", "1")
	}
	offered, err := cc.offerProtocols(e, h)
	if err != nil {
		return fail(err)
	}
	e.addHeader(h)
	if _, err := str.Write(e.headersFrame()); err != nil {
		return fail(translateStreamErr(err))
	}
	// Read the response, honouring ctx through the read deadline.
	stop := context.AfterFunc(ctx, func() { _ = str.SetReadDeadline(time.Unix(1, 0)) })
	fr := newFrameReader(str, 256)
	var status int
	var hdr http.Header
	for {
		fields, err := readHeaderSection(fr, noType, false, &c.limits)
		if err != nil {
			stop()
			if ctx.Err() != nil {
				return fail(ctx.Err())
			}
			return fail(c.responseStreamError(str, err))
		}
		status, hdr, err = parseResponseFields(fields)
		if err != nil {
			stop()
			return fail(c.responseStreamError(str, err))
		}
		if status >= 200 {
			break
		}
	}
	if !stop() {
		_ = str.SetReadDeadline(time.Time{})
	}
	rsp := &http.Response{
		Status:     strconv.Itoa(status) + " " + http.StatusText(status),
		StatusCode: status,
		Proto:      "HTTP/3.0",
		ProtoMajor: 3,
		Header:     hdr,
		Body:       http.NoBody,
		Request:    &http.Request{Method: http.MethodConnect, URL: u, Header: h, Host: u.Host},
		TLS:        c.tls(),
	}
	if status < 200 || status > 299 {
		str.CancelRead(quic.StreamErrorCode(frames.H3NoError))
		_ = str.Close()
		sess.terminate(&SessionError{Cause: &RejectedError{StatusCode: status}}, false)
		if cc.owned {
			cc.Close()
		}
		return rsp, nil, &RejectedError{StatusCode: status}
	}
	protocol, perr := cc.checkProtocol(hdr, offered)
	sess.protocol = protocol
	sess.mu.Lock()
	sess.rareLocked().response = rsp
	sess.mu.Unlock()
	sess.adoptReader(fr)
	sess.markOpen()
	sess.flushOnOpen()
	if cc.owned {
		// A Dial connection lives as long as its session. It is closed only
		// after the peer ended the CONNECT stream, so that our
		// WT_CLOSE_SESSION and FIN are delivered first.
		sess.mu.Lock()
		sess.rareLocked().onReaderDone = func() { cc.Close() }
		sess.mu.Unlock()
	}
	sess.startReader()
	sess.ql.sessionOpened(sess, u.Path)
	if perr != nil {
		// draft-ietf-webtrans-http3, Section 3.3: close the session with
		// WT_ALPN_ERROR (a Dial connection closes when the close is done).
		_ = sess.CloseWithError(perr.Code(), "application protocol negotiation failed")
		if cc.owned {
			// Dial closes the connection on error: first let the close
			// reach the server (bounded by Limits.CloseTimeout).
			select {
			case <-sess.Closed():
			case <-ctx.Done():
			}
		}
		return rsp, nil, perr
	}
	return rsp, sess, nil
}

// responseStreamError turns a failure to read a CONNECT response into the
// dial's error: a frame or QPACK violation closes the connection; an
// incomplete, oversized or malformed response fails this request only
// (RFC 9114, Section 4.1), its stream reset with the matching code.
func (c *conn) responseStreamError(str bidiStream, err error) error {
	reset := func(code ErrorCode) {
		str.CancelRead(quic.StreamErrorCode(code))
		str.CancelWrite(quic.StreamErrorCode(code))
	}
	if errors.Is(err, errFieldSectionTooLarge) {
		reset(frames.H3ExcessiveLoad)
		return fmt.Errorf("%w: response header section above Limits.MaxFieldSectionSize (%d)", ErrMalformedResponse, c.limits.MaxFieldSectionSize)
	}
	if fe, ok := errors.AsType[*frames.Error](err); ok {
		if fe.Connection {
			c.fail(err)
			return c.closeErr
		}
		reset(fe.Code)
		if fe.Code == frames.H3RequestIncomplete {
			return ErrIncompleteResponse
		}
		return fmt.Errorf("%w: %s", ErrMalformedResponse, fe.Reason)
	}
	return translateStreamErr(err)
}
