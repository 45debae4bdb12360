package conformance

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/quic-go/qpack"
	"github.com/quic-go/quic-go"

	"github.com/quicwt/quicwt/frames"
	"github.com/quicwt/quicwt/settings"
	"github.com/quicwt/quicwt/varint"
)

// Peer is one raw HTTP/3 client connection to the server under test. It
// reads the server's control stream (SETTINGS, GOAWAY) and drains every
// other stream the server opens; everything the client sends is written by
// the case itself.
type Peer struct {
	// QC is the QUIC connection.
	QC *quic.Conn

	opts      *Options
	authority string
	limits    *FlowLimits // the flow-control limits our SETTINGS advertise; nil: none

	settingsReady chan struct{}
	server        settings.Settings // the server's SETTINGS, once settingsReady is closed
	serverRaw     []byte            // the SETTINGS payload as received
	serverErr     error             // the server's SETTINGS did not parse

	mu     sync.Mutex
	goaway []uint64
}

// clientTLS returns the TLS configuration for opts: certificate hashes
// (SHA-256 of the DER leaf, as serverCertificateHashes), no verification,
// or the system roots.
func clientTLS(o *Options, host string) *tls.Config {
	tc := &tls.Config{NextProtos: []string{"h3"}, ServerName: host, MinVersion: tls.VersionTLS13}
	switch {
	case len(o.CertHashes) > 0:
		tc.InsecureSkipVerify = true
		hashes := o.CertHashes
		tc.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("no server certificate")
			}
			sum := sha256.Sum256(raw[0])
			for _, h := range hashes {
				if h == sum {
					return nil
				}
			}
			return fmt.Errorf("server certificate hash %s matches no -certhash", hex.EncodeToString(sum[:]))
		}
	case o.Insecure:
		tc.InsecureSkipVerify = true
	}
	return tc
}

// dialPeer opens a fresh QUIC connection with ALPN h3, datagrams (unless
// noDatagrams) and RESET_STREAM_AT, and starts reading the server's
// streams. It opens no stream of its own. With limits, our SETTINGS will
// enable WebTransport flow control with them.
func dialPeer(ctx context.Context, o *Options, noDatagrams bool, limits *FlowLimits) (*Peer, error) {
	host, _, err := net.SplitHostPort(o.Addr)
	if err != nil {
		return nil, err
	}
	qconf := &quic.Config{
		EnableDatagrams:                  !noDatagrams,
		EnableStreamResetPartialDelivery: true,
		MaxIncomingStreams:               100,
		MaxIncomingUniStreams:            100,
		HandshakeIdleTimeout:             o.Timeout,
		MaxIdleTimeout:                   30 * time.Second,
	}
	if limits != nil {
		// The flow-control cases read little of what the server sends:
		// small stream windows keep an echoing server from reading (and
		// granting credit for) much of what we send.
		qconf.InitialStreamReceiveWindow = 4 << 10
		qconf.MaxStreamReceiveWindow = 4 << 10
	}
	qc, err := quic.DialAddr(ctx, o.Addr, clientTLS(o, host), qconf)
	if err != nil {
		return nil, err
	}
	authority := o.Authority
	if authority == "" {
		authority = o.Addr
	}
	p := &Peer{QC: qc, opts: o, authority: authority, limits: limits, settingsReady: make(chan struct{})}
	go p.acceptUni()
	go p.acceptBidi()
	return p, nil
}

// Close closes the connection with H3_NO_ERROR.
func (p *Peer) Close() { _ = p.QC.CloseWithError(quic.ApplicationErrorCode(frames.H3NoError), "") }

func (p *Peer) acceptUni() {
	for {
		s, err := p.QC.AcceptUniStream(context.Background())
		if err != nil {
			return
		}
		go p.serverUni(s)
	}
}

func (p *Peer) acceptBidi() {
	for {
		s, err := p.QC.AcceptStream(context.Background())
		if err != nil {
			return
		}
		go func() { _, _ = io.Copy(io.Discard, s) }()
	}
}

func (p *Peer) serverUni(s *quic.ReceiveStream) {
	br := bufio.NewReader(s)
	t, err := varint.Read(br)
	if err != nil {
		return
	}
	if frames.StreamType(t) != frames.StreamTypeControl {
		_, _ = io.Copy(io.Discard, br)
		return
	}
	first := true
	for {
		h, err := frames.ReadHeader(br, 1<<20)
		if err != nil {
			if first {
				p.serverErr = fmt.Errorf("server control stream: %v", err)
				close(p.settingsReady)
			}
			return
		}
		payload := make([]byte, h.Length)
		if _, err := io.ReadFull(br, payload); err != nil {
			if first {
				p.serverErr = fmt.Errorf("server control stream: %v", err)
				close(p.settingsReady)
			}
			return
		}
		if first {
			first = false
			if h.Type != frames.TypeSettings {
				p.serverErr = fmt.Errorf("server's first control frame is %s, not SETTINGS", h.Type)
			} else {
				p.serverRaw = payload
				if err := p.server.Parse(payload); err != nil {
					p.serverErr = fmt.Errorf("server SETTINGS: %v", err)
				}
			}
			close(p.settingsReady)
			continue
		}
		if h.Type == frames.TypeGoaway {
			if id, err := frames.ParseGoaway(payload); err == nil {
				p.mu.Lock()
				p.goaway = append(p.goaway, id)
				p.mu.Unlock()
			}
		}
	}
}

// WaitSettings waits for the server's SETTINGS.
func (p *Peer) WaitSettings(ctx context.Context) error {
	select {
	case <-p.settingsReady:
		return p.serverErr
	case <-p.QC.Context().Done():
		return fmt.Errorf("connection closed before the server's SETTINGS: %v", context.Cause(p.QC.Context()))
	case <-ctx.Done():
		return errors.New("no SETTINGS from the server")
	}
}

// ServerSettings returns the server's SETTINGS (valid after WaitSettings).
func (p *Peer) ServerSettings() *settings.Settings { return &p.server }

// ClientSettings returns what a multi-draft client advertises: H3
// datagrams under both codepoints and the enabling settings of draft-02,
// draft-13/14 and draft-15+, plus, in the flow-control cases, the
// initial flow-control limits the case chose (each sent, zeros included).
func (p *Peer) ClientSettings() settings.Settings {
	var s settings.Settings
	s.Set(settings.H3Datagram, 1)
	s.Set(settings.H3DatagramDraft04, 1)
	s.Set(settings.EnableWebTransport, 1)
	s.Set(settings.WTEnabled, 1)
	s.Set(settings.WTMaxSessions, 1)
	if l := p.limits; l != nil {
		s.Set(settings.WTInitialMaxData, l.MaxData)
		s.Set(settings.WTInitialMaxStreamsUni, l.MaxStreamsUni)
		s.Set(settings.WTInitialMaxStreamsBidi, l.MaxStreamsBidi)
	}
	return s
}

// FlowLimits are the initial WebTransport flow-control limits a peer
// advertises (draft-ietf-webtrans-http3-16, Section 5.5). Flow control is
// enabled by any nonzero one (Section 5.1).
type FlowLimits struct {
	MaxData        uint64 // SETTINGS_WT_INITIAL_MAX_DATA
	MaxStreamsBidi uint64 // SETTINGS_WT_INITIAL_MAX_STREAMS_BIDI
	MaxStreamsUni  uint64 // SETTINGS_WT_INITIAL_MAX_STREAMS_UNI
}

// Flow-control limits the checker grants the server in the flow-control
// cases unless a case chooses its own.
const (
	clientMaxData    = 1 << 20
	clientMaxStreams = 16
)

var defaultClientLimits = FlowLimits{MaxData: clientMaxData, MaxStreamsBidi: clientMaxStreams, MaxStreamsUni: clientMaxStreams}

// Draft is the WebTransport draft the server's SETTINGS and ours select.
func (p *Peer) Draft() settings.Draft {
	c := p.ClientSettings()
	return settings.Negotiate(&c, &p.server)
}

// ModernToken reports whether the server offers SETTINGS_WT_ENABLED, so
// that the checker uses :protocol webtransport-h3 (draft-15+) rather than
// the legacy token with the draft-02 version header.
func (p *Peer) ModernToken() bool { return p.server.Enabled(settings.WTEnabled) }

// OpenControl opens our control stream and writes the stream type
// followed by b.
func (p *Peer) OpenControl(b []byte) (*quic.SendStream, error) {
	return p.Uni(append([]byte{byte(frames.StreamTypeControl)}, b...))
}

// Setup opens our control stream with our SETTINGS, followed by extra.
func (p *Peer) Setup(extra ...[]byte) (*quic.SendStream, error) {
	s := p.ClientSettings()
	b := s.AppendFrame(nil)
	for _, e := range extra {
		b = append(b, e...)
	}
	return p.OpenControl(b)
}

// Uni opens a unidirectional stream and writes b.
func (p *Peer) Uni(b []byte) (*quic.SendStream, error) {
	s, err := p.QC.OpenUniStream()
	if err != nil {
		return nil, err
	}
	if _, err := s.Write(b); err != nil {
		return s, err
	}
	return s, nil
}

// Field is one header field.
type Field struct{ Name, Value string }

// ConnectFields returns a valid extended CONNECT for path: :protocol
// webtransport-h3 when the server offers draft-15+, else webtransport
// with sec-webtransport-http3-draft02: 1.
func (p *Peer) ConnectFields(path string) []Field {
	f := []Field{{":method", "CONNECT"}, {":scheme", "https"}, {":authority", p.authority}, {":path", path}}
	if p.ModernToken() {
		return append(f, Field{":protocol", "webtransport-h3"})
	}
	return append(f, Field{":protocol", "webtransport"}, Field{"sec-webtransport-http3-draft02", "1"})
}

// Encode builds a QPACK field section with the static table and
// literals only (prefix 00 00), as qpack's encoder does.
func Encode(fields []Field) []byte {
	var b []byte
	enc := qpack.NewEncoder(writerFunc(func(p []byte) (int, error) { b = append(b, p...); return len(p), nil }))
	for _, f := range fields {
		_ = enc.WriteField(qpack.HeaderField{Name: f.Name, Value: f.Value})
	}
	if len(b) == 0 {
		b = []byte{0, 0}
	}
	return b
}

type writerFunc func([]byte) (int, error)

func (w writerFunc) Write(p []byte) (int, error) { return w(p) }

// Request is a client-initiated bidirectional stream.
type Request struct {
	Str *quic.Stream
	br  *bufio.Reader
}

// ID returns the stream ID (the session ID once a CONNECT succeeded).
func (r *Request) ID() uint64 { return uint64(r.Str.StreamID()) }

// OpenRaw opens a bidirectional stream and writes b.
func (p *Peer) OpenRaw(ctx context.Context, b []byte) (*Request, error) {
	s, err := p.QC.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	r := &Request{Str: s, br: bufio.NewReader(s)}
	if len(b) > 0 {
		if _, err := s.Write(b); err != nil {
			// The server may already have stopped our sending (RFC 9114,
			// Section 4.1.1); the read side tells the rest.
			var se *quic.StreamError
			if !errors.As(err, &se) {
				return r, err
			}
		}
	}
	return r, nil
}

// OpenRequest opens a request stream with a HEADERS frame carrying fields,
// followed by extra bytes.
func (p *Peer) OpenRequest(ctx context.Context, fields []Field, extra []byte) (*Request, error) {
	return p.OpenRaw(ctx, append(frames.AppendHeaders(nil, Encode(fields)), extra...))
}

// Response is a decoded response header section.
type Response struct {
	Status int
	Fields []Field
}

// errNoResponse is returned by ReadResponse when the stream ends cleanly
// without a final response.
var errNoResponse = errors.New("stream ended without a response")

// ReadResponse reads frames up to the final response's HEADERS (skipping
// unknown frames and 1xx responses) and decodes it. Errors are the quic-go
// errors of the stream (*quic.StreamError, *quic.ApplicationError) or a
// description of a malformed response.
func (r *Request) ReadResponse(ctx context.Context) (*Response, error) {
	stop := deadline(ctx, r.Str.SetReadDeadline)
	defer stop()
	for {
		h, err := frames.ReadHeader(r.br, 1<<20)
		if err != nil {
			if err == io.EOF {
				return nil, errNoResponse
			}
			return nil, err
		}
		payload := make([]byte, h.Length)
		if _, err := io.ReadFull(r.br, payload); err != nil {
			return nil, err
		}
		if h.Type != frames.TypeHeaders {
			continue
		}
		dec := qpack.NewDecoder()
		next := dec.Decode(payload)
		resp := &Response{Status: -1}
		for {
			hf, err := next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("undecodable response field section: %v", err)
			}
			if hf.Name == ":status" {
				n, err := strconv.Atoi(hf.Value)
				if err != nil {
					return nil, fmt.Errorf("bad :status %q", hf.Value)
				}
				resp.Status = n
			}
			resp.Fields = append(resp.Fields, Field{hf.Name, hf.Value})
		}
		if resp.Status < 0 {
			return nil, errors.New("response without :status")
		}
		if resp.Status >= 200 {
			return resp, nil
		}
	}
}

// ReadToEnd reads the rest of the stream, parsing frames, until FIN
// (nil), a reset or connection error, or ctx's end.
func (r *Request) ReadToEnd(ctx context.Context) error {
	stop := deadline(ctx, r.Str.SetReadDeadline)
	defer stop()
	_, err := io.Copy(io.Discard, r.br)
	return err
}

// deadline applies ctx's deadline with set and returns a function that
// clears it.
func deadline(ctx context.Context, set func(time.Time) error) func() {
	if d, ok := ctx.Deadline(); ok {
		_ = set(d)
	}
	return func() { _ = set(time.Time{}) }
}

// Session is an established WebTransport session seen from the client.
type Session struct {
	*Request
	Response *Response
}

// Connect opens a WebTransport session on path and requires a 2xx.
func (p *Peer) Connect(ctx context.Context, path string) (*Session, error) {
	r, err := p.OpenRequest(ctx, p.ConnectFields(path), nil)
	if err != nil {
		return nil, err
	}
	resp, err := r.ReadResponse(ctx)
	if err != nil {
		return nil, fmt.Errorf("extended CONNECT %s: %s", path, describeErr(err))
	}
	if resp.Status < 200 || resp.Status > 299 {
		return nil, fmt.Errorf("extended CONNECT %s: status %d", path, resp.Status)
	}
	return &Session{Request: r, Response: resp}, nil
}

// WriteCapsules writes capsules inside one DATA frame on the CONNECT
// stream (RFC 9297, Section 3.2), with FIN if fin.
func (s *Session) WriteCapsules(capsules []byte, fin bool) error {
	b := frames.AppendFrame(nil, frames.TypeData, capsules)
	if _, err := s.Str.Write(b); err != nil {
		return err
	}
	if fin {
		return s.Str.Close()
	}
	return nil
}

// Close sends WT_CLOSE_SESSION and FIN.
func (s *Session) Close(code uint32, msg string) error {
	return s.WriteCapsules(frames.AppendCloseSession(nil, code, msg), true)
}

// OpenWTBidi opens a WebTransport bidirectional stream for session sid
// and writes data after the header.
func (p *Peer) OpenWTBidi(ctx context.Context, sid uint64, data []byte) (*quic.Stream, error) {
	s, err := p.QC.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	_, err = s.Write(append(frames.AppendWebTransportBidiHeader(nil, sid), data...))
	return s, err
}

// OpenWTUni opens a WebTransport unidirectional stream for session sid.
func (p *Peer) OpenWTUni(ctx context.Context, sid uint64, data []byte) (*quic.SendStream, error) {
	s, err := p.QC.OpenUniStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	_, err = s.Write(append(frames.AppendWebTransportUniHeader(nil, sid), data...))
	return s, err
}

// Goaways returns the GOAWAY IDs the server sent.
func (p *Peer) Goaways() []uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]uint64(nil), p.goaway...)
}

// describeErr names quic-go's stream and connection errors by their
// HTTP/3 code.
func describeErr(err error) string {
	var se *quic.StreamError
	var ae *quic.ApplicationError
	switch {
	case err == nil:
		return "no error"
	case errors.As(err, &se):
		who := "server"
		if !se.Remote {
			who = "we"
		}
		return fmt.Sprintf("stream %d reset by %s with %s", se.StreamID, who, frames.ErrorCode(se.ErrorCode))
	case errors.As(err, &ae):
		who := "server"
		if !ae.Remote {
			who = "we"
		}
		return fmt.Sprintf("connection closed by %s with %s", who, frames.ErrorCode(ae.ErrorCode))
	case errors.Is(err, errNoResponse):
		return "stream ended (FIN) without a response"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return err.Error()
}

func newReader(s *quic.Stream) *bufio.Reader { return bufio.NewReader(s) }
