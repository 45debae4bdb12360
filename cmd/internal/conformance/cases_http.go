package conformance

import (
	"context"
	"strings"
	"time"

	"github.com/quicwt/quicwt/frames"
	"github.com/quicwt/quicwt/settings"
)

// QPACK wire helpers (RFC 9204 §4.1.1 prefixed integers, §4.5 field
// lines), for field sections the qpack encoder would never produce.

func appendPrefixInt(b []byte, flags byte, n uint, v uint64) []byte {
	limit := uint64(1)<<n - 1
	if v < limit {
		return append(b, flags|byte(v))
	}
	b = append(b, flags|byte(limit))
	v -= limit
	for v >= 128 {
		b = append(b, byte(v%128)|0x80)
		v /= 128
	}
	return append(b, byte(v))
}

// qIndexedStatic is an indexed field line referring to the static table.
func qIndexedStatic(b []byte, idx uint64) []byte { return appendPrefixInt(b, 0xc0, 6, idx) }

// qLiteralStaticName is a literal field line with a static name reference
// and a raw (non-Huffman) value.
func qLiteralStaticName(b []byte, idx uint64, value string) []byte {
	b = appendPrefixInt(b, 0x50, 4, idx)
	b = appendPrefixInt(b, 0x00, 7, uint64(len(value)))
	return append(b, value...)
}

// qLiteral is a literal field line with a raw literal name and value.
func qLiteral(b []byte, name, value string) []byte {
	b = appendPrefixInt(b, 0x20, 3, uint64(len(name)))
	b = append(b, name...)
	b = appendPrefixInt(b, 0x00, 7, uint64(len(value)))
	return append(b, value...)
}

// Static table indices (RFC 9204 Appendix A).
const (
	staticAuthority     = 0
	staticPath          = 1
	staticMethodConnect = 15
	staticSchemeHTTPS   = 23
)

// rawConnectSection encodes our extended CONNECT with static indices and
// non-Huffman literals only.
func rawConnectSection(p *Peer) []byte {
	b := []byte{0, 0}
	b = qIndexedStatic(b, staticMethodConnect)
	b = qIndexedStatic(b, staticSchemeHTTPS)
	b = qLiteralStaticName(b, staticAuthority, p.authority)
	b = qLiteralStaticName(b, staticPath, p.opts.Path)
	for _, f := range p.ConnectFields(p.opts.Path)[4:] {
		b = qLiteral(b, f.Name, f.Value)
	}
	return b
}

// qpackViolation sends a request whose field section is built by sec and
// expects a connection error.
func qpackViolation(id, section, desc string, sec func(p *Peer) []byte, want frames.ErrorCode) Case {
	return requestViolation(id, section, desc, func(p *Peer) []byte { return frames.AppendHeaders(nil, sec(p)) }, want)
}

// uniViolation sets up the connection, opens a unidirectional stream with
// b and expects a connection error.
func uniViolation(id, section, desc string, b func(p *Peer) ([]byte, string), want frames.ErrorCode) Case {
	return Case{
		ID: id, Section: section, Description: desc, Expect: "connection error " + want.String(),
		Run: func(ctx context.Context, p *Peer) Result {
			data, why := b(p)
			if why != "" {
				return skip("%s", why)
			}
			if _, err := p.Setup(); p.writeFailed(err) {
				return fail("control stream: %v", err)
			}
			if _, err := p.Uni(data); p.writeFailed(err) {
				return fail("stream: %v", err)
			}
			return expectConnError(ctx, p, want)
		},
	}
}

func qpackCases() []Case {
	return []Case{
		{
			ID: "qpack/static-table-and-raw-literals", Section: "RFC 9204 §4.5",
			Description: "an extended CONNECT encoded with static-table indexed lines and non-Huffman literals",
			Expect:      "decoded: 2xx",
			Run: func(ctx context.Context, p *Peer) Result {
				if _, err := p.Setup(); p.writeFailed(err) {
					return fail("control stream: %v", err)
				}
				r, err := p.OpenRaw(ctx, frames.AppendHeaders(nil, rawConnectSection(p)))
				if err != nil {
					return fail("request stream: %v", err)
				}
				return expectStatus2xx(ctx, r)
			},
		},
		qpackViolation("qpack/invalid-static-index", "RFC 9204 §3.1",
			"a field line referring to static table index 99 (the table ends at 98)",
			func(p *Peer) []byte { return qIndexedStatic(rawConnectSection(p), 99) },
			frames.QPACKDecompressionFailed),
		{
			ID: "qpack/dynamic-reference-with-zero-capacity", Section: "RFC 9204 §4.5.1.1, §2.2.3",
			Description: "a field section with Required Insert Count 1 referring to dynamic entry 0, when no entry was ever inserted",
			Expect:      "connection error QPACK_DECOMPRESSION_FAILED",
			Run: func(ctx context.Context, p *Peer) Result {
				if c := p.server.Value(settings.QPACKMaxTableCapacity, 0); c != 0 {
					return skip("the server allows a dynamic table (SETTINGS_QPACK_MAX_TABLE_CAPACITY = %d): a reference would block instead", c)
				}
				if _, err := p.Setup(); p.writeFailed(err) {
					return fail("control stream: %v", err)
				}
				sec := []byte{0x01, 0x00, 0x80} // RIC 1, Base 0, indexed dynamic relative 0
				if _, err := p.OpenRaw(ctx, frames.AppendHeaders(nil, sec)); err != nil {
					return fail("request stream: %v", err)
				}
				return expectConnError(ctx, p, frames.QPACKDecompressionFailed)
			},
		},
		qpackViolation("qpack/invalid-huffman-padding", "RFC 9204 §4.1.2, RFC 7541 §5.2",
			"a Huffman-coded :path value (0x00) whose padding is not the EOS prefix",
			func(p *Peer) []byte {
				b := []byte{0, 0}
				b = qIndexedStatic(b, staticMethodConnect)
				b = appendPrefixInt(b, 0x50, 4, staticPath)
				return append(b, 0x81, 0x00)
			},
			frames.QPACKDecompressionFailed),
		qpackViolation("qpack/truncated-field-line", "RFC 9204 §4.5.6, §6",
			"a field section ending inside a literal name (length 10, 3 bytes present)",
			func(p *Peer) []byte {
				return append(qIndexedStatic([]byte{0, 0}, staticMethodConnect), 0x27, 0x03, 'a', 'b', 'c')
			},
			frames.QPACKDecompressionFailed),
		uniViolation("qpack/encoder-insert-beyond-capacity", "RFC 9204 §3.2.2, §4.3.2",
			"an encoder stream inserting an entry while the dynamic table capacity is 0",
			func(p *Peer) ([]byte, string) { return []byte{0x02, 0x41, 'x', 0x01, 'y'}, "" },
			frames.QPACKEncoderStreamError),
		uniViolation("qpack/encoder-capacity-above-maximum", "RFC 9204 §4.3.1",
			"Set Dynamic Table Capacity one above the server's SETTINGS_QPACK_MAX_TABLE_CAPACITY",
			func(p *Peer) ([]byte, string) {
				return appendPrefixInt([]byte{0x02}, 0x20, 5, p.server.Value(settings.QPACKMaxTableCapacity, 0)+1), ""
			},
			frames.QPACKEncoderStreamError),
		uniViolation("qpack/decoder-ack-unknown-section", "RFC 9204 §4.4.1",
			"a Section Acknowledgment for stream 0, on which the server sent no field section with a dynamic reference",
			func(p *Peer) ([]byte, string) { return []byte{0x03, 0x80}, "" },
			frames.QPACKDecoderStreamError),
		uniViolation("qpack/decoder-zero-increment", "RFC 9204 §4.4.3",
			"an Insert Count Increment of 0",
			func(p *Peer) ([]byte, string) { return []byte{0x03, 0x00}, "" },
			frames.QPACKDecoderStreamError),
		{
			ID: "qpack/encoder-and-decoder-streams-accepted", Section: "RFC 9204 §4.2",
			Description: "a QPACK encoder stream with Set Dynamic Table Capacity 0 and a decoder stream with Stream Cancellation",
			Expect:      "accepted: the connection stays usable",
			Run: func(ctx context.Context, p *Peer) Result {
				if _, err := p.Setup(); p.writeFailed(err) {
					return fail("control stream: %v", err)
				}
				if _, err := p.Uni([]byte{0x02, 0x20}); p.writeFailed(err) {
					return fail("stream: %v", err)
				}
				if _, err := p.Uni([]byte{0x03, 0x40}); p.writeFailed(err) {
					return fail("stream: %v", err)
				}
				return expectIgnored(ctx, p, "QPACK encoder and decoder instructions")
			},
		},
	}
}

// malformedRequest sends the fields built by f as a request and expects
// H3_MESSAGE_ERROR (or a 4xx).
func malformedRequest(id, section, desc string, f func(p *Peer) []Field) Case {
	return Case{
		ID: id, Section: section, Description: desc,
		Expect: "stream error H3_MESSAGE_ERROR",
		Run: func(ctx context.Context, p *Peer) Result {
			if _, err := p.Setup(); p.writeFailed(err) {
				return fail("control stream: %v", err)
			}
			r, err := p.OpenRequest(ctx, f(p), nil)
			if err != nil {
				return fail("request stream: %v", err)
			}
			return expectMalformed(ctx, r)
		},
	}
}

func withFields(p *Peer, before, after []Field) []Field {
	return append(append(append([]Field(nil), before...), p.ConnectFields(p.opts.Path)...), after...)
}

func without(fs []Field, name string) []Field {
	var out []Field
	for _, f := range fs {
		if f.Name != name {
			out = append(out, f)
		}
	}
	return out
}

func messageCases() []Case {
	return []Case{
		malformedRequest("message/uppercase-field-name", "RFC 9114 §4.2",
			"an extended CONNECT with a field named X-Upper",
			func(p *Peer) []Field { return withFields(p, nil, []Field{{"X-Upper", "1"}}) }),
		malformedRequest("message/connection-specific-field", "RFC 9114 §4.2",
			"an extended CONNECT with connection: close",
			func(p *Peer) []Field { return withFields(p, nil, []Field{{"connection", "close"}}) }),
		malformedRequest("message/te-not-trailers", "RFC 9114 §4.2",
			"an extended CONNECT with te: gzip",
			func(p *Peer) []Field { return withFields(p, nil, []Field{{"te", "gzip"}}) }),
		malformedRequest("message/pseudo-header-after-regular", "RFC 9114 §4.3",
			"a regular field before the pseudo-header fields",
			func(p *Peer) []Field { return withFields(p, []Field{{"x-first", "1"}}, nil) }),
		malformedRequest("message/repeated-pseudo-header", "RFC 9114 §4.3",
			"two :path pseudo-header fields",
			func(p *Peer) []Field {
				fs := p.ConnectFields(p.opts.Path)
				return append(fs[:4:4], append([]Field{{":path", "/other"}}, fs[4:]...)...)
			}),
		malformedRequest("message/unknown-pseudo-header", "RFC 9114 §4.3",
			"an undefined pseudo-header :foo",
			func(p *Peer) []Field { return withFields(p, []Field{{":foo", "bar"}}, nil) }),
		malformedRequest("message/response-pseudo-header-in-request", "RFC 9114 §4.3",
			"a request carrying :status",
			func(p *Peer) []Field { return withFields(p, []Field{{":status", "200"}}, nil) }),
		malformedRequest("message/missing-method", "RFC 9114 §4.3.1",
			"an extended CONNECT without :method",
			func(p *Peer) []Field { return without(p.ConnectFields(p.opts.Path), ":method") }),
		{
			ID: "message/field-section-too-large", Section: "RFC 9114 §4.2.2, RFC 6585 §5",
			Description: "an extended CONNECT whose field section exceeds the server's SETTINGS_MAX_FIELD_SECTION_SIZE",
			Expect:      "431 (or another 4xx, or a stream error); never 2xx",
			Run: func(ctx context.Context, p *Peer) Result {
				limit, ok := p.server.Get(settings.MaxFieldSectionSize)
				if !ok {
					return skip("the server sends no SETTINGS_MAX_FIELD_SECTION_SIZE (0x06): its limit is unbounded")
				}
				if limit > 1<<20 {
					return skip("the server's SETTINGS_MAX_FIELD_SECTION_SIZE is %d, too large to exceed here", limit)
				}
				if _, err := p.Setup(); p.writeFailed(err) {
					return fail("control stream: %v", err)
				}
				r, err := p.OpenRequest(ctx, withFields(p, nil, []Field{{"x-padding", strings.Repeat("a", int(limit))}}), nil)
				if err != nil {
					return fail("request stream: %v", err)
				}
				o := observe(ctx, r)
				switch {
				case o.resp != nil && o.resp.Status == 431:
					return pass("status 431")
				case o.resp != nil && o.resp.Status >= 400 && o.resp.Status < 500:
					return pass("status %d (431 is the suggested status)", o.resp.Status)
				}
				if c, ok := o.resetCode(); ok && c != frames.H3NoError {
					return pass("stream reset with %s", c)
				}
				return fail("want 431; got %s (limit %d)", o, limit)
			},
		},
	}
}

// connectRequest sends fields (after our SETTINGS, or custom settings)
// and applies check to the request.
func connectRequest(id, section, desc, expect string, fields func(p *Peer) []Field, check func(ctx context.Context, p *Peer, r *Request) Result) Case {
	return Case{
		ID: id, Section: section, Description: desc, Expect: expect,
		Run: func(ctx context.Context, p *Peer) Result {
			if _, err := p.Setup(); p.writeFailed(err) {
				return fail("control stream: %v", err)
			}
			r, err := p.OpenRequest(ctx, fields(p), nil)
			if err != nil {
				return fail("request stream: %v", err)
			}
			return check(ctx, p, r)
		},
	}
}

func malformed(ctx context.Context, _ *Peer, r *Request) Result { return expectMalformed(ctx, r) }

// draftCase negotiates one legacy draft by sending only its settings.
func draftCase(id, section, desc string, need func(s *settings.Settings) string, client []uint64, fields func(p *Peer) []Field) Case {
	return Case{
		ID: id, Section: section, Description: desc, Expect: "2xx",
		Run: func(ctx context.Context, p *Peer) Result {
			if why := need(&p.server); why != "" {
				return skip("%s", why)
			}
			if _, err := p.OpenControl(settingsFrame(client...)); p.writeFailed(err) {
				return fail("control stream: %v", err)
			}
			r, err := p.OpenRequest(ctx, fields(p), nil)
			if err != nil {
				return fail("request stream: %v", err)
			}
			return expectStatus2xx(ctx, r)
		},
	}
}

func connectCases() []Case {
	const wt32 = "WT-H3 §3.2, RFC 9220 §3"
	return []Case{
		connectRequest("connect/valid", wt32,
			"a valid extended CONNECT on the checked path", "2xx",
			func(p *Peer) []Field { return p.ConnectFields(p.opts.Path) },
			func(ctx context.Context, _ *Peer, r *Request) Result { return expectStatus2xx(ctx, r) }),
		connectRequest("connect/missing-protocol", "RFC 9114 §4.4",
			"a CONNECT with :scheme and :path but no :protocol", "stream error H3_MESSAGE_ERROR",
			func(p *Peer) []Field { return without(p.ConnectFields(p.opts.Path), ":protocol") }, malformed),
		connectRequest("connect/missing-path", "RFC 8441 §4, RFC 9220 §3",
			"an extended CONNECT without :path", "stream error H3_MESSAGE_ERROR",
			func(p *Peer) []Field { return without(p.ConnectFields(p.opts.Path), ":path") }, malformed),
		connectRequest("connect/missing-scheme", "RFC 8441 §4, RFC 9220 §3",
			"an extended CONNECT without :scheme", "stream error H3_MESSAGE_ERROR",
			func(p *Peer) []Field { return without(p.ConnectFields(p.opts.Path), ":scheme") }, malformed),
		connectRequest("connect/missing-authority", "RFC 9114 §4.3.1, WT-H3 §3.2",
			"an extended CONNECT without :authority or host", "stream error H3_MESSAGE_ERROR",
			func(p *Peer) []Field { return without(p.ConnectFields(p.opts.Path), ":authority") }, malformed),
		connectRequest("connect/unsupported-protocol", "RFC 9220 §3, RFC 8441 §4",
			"an extended CONNECT with :protocol quicwt-check-unknown", "no 2xx: a status >= 300 or H3_REQUEST_REJECTED",
			func(p *Peer) []Field {
				return append(without(p.ConnectFields(p.opts.Path), ":protocol"), Field{":protocol", "quicwt-check-unknown"})
			},
			func(ctx context.Context, p *Peer, r *Request) Result {
				return expectRejected(ctx, p, r, frames.H3RequestRejected, frames.H3ConnectError)
			}),
		connectRequest("connect/unknown-path", "WT-H3 §3.2",
			"an extended CONNECT on a path the server does not serve", "no 2xx: 404 or 405 (any status >= 300)",
			func(p *Peer) []Field { return p.ConnectFields("/.quicwt-check/no-such-resource") },
			func(ctx context.Context, p *Peer, r *Request) Result {
				return expectRejected(ctx, p, r, frames.H3RequestRejected)
			}),
		{
			ID: "connect/request-before-client-settings", Section: "WT-H3 §3.1",
			Description: "an extended CONNECT sent 200 ms before our SETTINGS",
			Expect:      "the server waits for the SETTINGS, then 2xx",
			Run: func(ctx context.Context, p *Peer) Result {
				r, err := p.OpenRequest(ctx, p.ConnectFields(p.opts.Path), nil)
				if err != nil {
					return fail("request stream: %v", err)
				}
				time.Sleep(200 * time.Millisecond)
				if _, err := p.Setup(); p.writeFailed(err) {
					return fail("control stream: %v", err)
				}
				return expectStatus2xx(ctx, r)
			},
		},
		{
			ID: "connect/client-without-webtransport-settings", Section: "WT-H3 §3.1",
			Description: "an extended CONNECT from a client whose SETTINGS enable no WebTransport draft (only SETTINGS_H3_DATAGRAM = 1)",
			Expect:      "the session is malformed: stream error H3_MESSAGE_ERROR (or a 4xx)",
			Run: func(ctx context.Context, p *Peer) Result {
				if _, err := p.OpenControl(settingsFrame(0x33, 1)); p.writeFailed(err) {
					return fail("control stream: %v", err)
				}
				r, err := p.OpenRequest(ctx, p.ConnectFields(p.opts.Path), nil)
				if err != nil {
					return fail("request stream: %v", err)
				}
				return expectMalformed(ctx, r)
			},
		},
		draftCase("connect/draft-02-client", "draft-ietf-webtrans-http3-02 §3",
			"a draft-02 client (SETTINGS 0x2b603742 = 1, 0x33 = 1, 0xffd277 = 1) sending :protocol webtransport and sec-webtransport-http3-draft02: 1",
			func(s *settings.Settings) string {
				if !s.Enabled(settings.EnableWebTransport) {
					return "the server does not offer draft-02 (SETTINGS_ENABLE_WEBTRANSPORT 0x2b603742)"
				}
				return ""
			},
			[]uint64{0x33, 1, 0xffd277, 1, 0x2b603742, 1},
			func(p *Peer) []Field {
				return []Field{{":method", "CONNECT"}, {":scheme", "https"}, {":authority", p.authority}, {":path", p.opts.Path},
					{":protocol", "webtransport"}, {"sec-webtransport-http3-draft02", "1"}}
			}),
		draftCase("connect/draft-13-client", "draft-ietf-webtrans-http3-13 §3",
			"a draft-13 client (SETTINGS 0x14e9cd29 = 1, 0x33 = 1) sending :protocol webtransport",
			func(s *settings.Settings) string {
				if !s.Enabled(settings.WTMaxSessions) || !s.Enabled(settings.EnableConnectProtocol) || !s.Enabled(settings.H3Datagram) {
					return "the server does not offer draft-13 (SETTINGS_WT_MAX_SESSIONS 0x14e9cd29 with 0x08 and 0x33)"
				}
				return ""
			},
			[]uint64{0x33, 1, 0x14e9cd29, 1},
			func(p *Peer) []Field {
				return []Field{{":method", "CONNECT"}, {":scheme", "https"}, {":authority", p.authority}, {":path", p.opts.Path},
					{":protocol", "webtransport"}}
			}),
	}
}
