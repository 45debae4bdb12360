package quicwt

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/quic-go/qpack"
	"golang.org/x/net/http/httpguts"

	"github.com/quicwt/quicwt/frames"
	"github.com/quicwt/quicwt/varint"
)

// Header validation follows RFC 9114, Section 4.2 (field names lowercase,
// no connection-specific fields), Section 4.3 (pseudo-header rules), and
// RFC 9220 / RFC 8441 Section 4 for extended CONNECT.

var (
	errMalformed = func(reason string) error {
		return &frames.Error{Code: frames.H3MessageError, Reason: reason}
	}
	errFieldSectionTooLarge = errors.New("quicwt: field section too large")
	// errIncompleteMessage is a request or response stream that ended
	// cleanly before its header section: not a truncated frame (RFC 9114,
	// Section 7.1), an incomplete message of that stream (Section 4.1).
	errIncompleteMessage = &frames.Error{Code: frames.H3RequestIncomplete, Reason: "stream ended before the header section"}
)

// decodeFields decodes a QPACK field section using only the static table
// (we advertise a dynamic table capacity of 0). A decoding failure is the
// connection error QPACK_DECOMPRESSION_FAILED (RFC 9204, Section 2.2). The
// decoded size is counted as RFC 9114, Section 4.2.2 says (name + value +
// 32 per field) and must not exceed max.
func decodeFields(p []byte, max int) ([]qpack.HeaderField, error) {
	dec := qpack.NewDecoder()
	next := dec.Decode(p)
	fields := make([]qpack.HeaderField, 0, 8)
	size := 0
	for {
		hf, err := next()
		if err != nil {
			if err == io.EOF {
				break
			}
			return nil, &frames.Error{Code: frames.QPACKDecompressionFailed, Connection: true, Reason: err.Error()}
		}
		size += len(hf.Name) + len(hf.Value) + 32
		if size > max {
			return nil, errFieldSectionTooLarge
		}
		fields = append(fields, hf)
	}
	return fields, nil
}

// connectionSpecific are the fields HTTP/3 forbids (RFC 9114, Section 4.2).
func connectionSpecific(name, value string) bool {
	switch name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		return true
	case "te":
		return value != "trailers"
	}
	return false
}

// validName reports whether a regular field name is a token (RFC 9110,
// Section 5.1) without uppercase letters (RFC 9114, Section 4.2).
func validName(name string) bool {
	if !httpguts.ValidHeaderFieldName(name) {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c >= 'A' && c <= 'Z' {
			return false
		}
	}
	return true
}

// validValue reports whether a field value has no control characters but
// horizontal tab (RFC 9110, Section 5.5; RFC 9114, Section 10.3).
func validValue(v string) bool { return httpguts.ValidHeaderFieldValue(v) }

// contentLength returns the message's Content-Length, -1 without one. Every
// field line and list member must name the same non-negative integer
// (RFC 9110, Section 8.6); anything else is malformed.
func contentLength(h http.Header) (int64, error) {
	vs := h["Content-Length"]
	if len(vs) == 0 {
		return -1, nil
	}
	n := int64(-1)
	for _, v := range vs {
		for part := range strings.SplitSeq(v, ",") {
			part = strings.TrimSpace(part)
			m, err := strconv.ParseInt(part, 10, 64)
			if err != nil || m < 0 || part[0] == '+' {
				return 0, errMalformed("invalid content-length")
			}
			if n >= 0 && m != n {
				return 0, errMalformed("conflicting content-length values")
			}
			n = m
		}
	}
	return n, nil
}

// requestHead is a validated request header section.
type requestHead struct {
	method, scheme, authority, path, protocol string
	header                                    http.Header
}

func parseRequestFields(fields []qpack.HeaderField) (*requestHead, error) {
	h := &requestHead{header: make(http.Header, len(fields))}
	seen := 0 // bit set of pseudo-headers
	regular := false
	for _, f := range fields {
		if !validValue(f.Value) || !f.IsPseudo() && !validName(f.Name) {
			return nil, errMalformed("invalid field name or value")
		}
		if f.IsPseudo() {
			if regular {
				return nil, errMalformed("pseudo-header after regular field")
			}
			var bit int
			var dst *string
			switch f.Name {
			case ":method":
				bit, dst = 1, &h.method
			case ":scheme":
				bit, dst = 2, &h.scheme
			case ":authority":
				bit, dst = 4, &h.authority
			case ":path":
				bit, dst = 8, &h.path
			case ":protocol":
				bit, dst = 16, &h.protocol
			default:
				return nil, errMalformed("unknown pseudo-header " + f.Name)
			}
			if seen&bit != 0 {
				return nil, errMalformed("repeated pseudo-header " + f.Name)
			}
			seen |= bit
			*dst = f.Value
			continue
		}
		regular = true
		if connectionSpecific(f.Name, f.Value) {
			return nil, errMalformed("connection-specific field " + f.Name)
		}
		h.header.Add(f.Name, f.Value)
	}
	if h.method == "" {
		return nil, errMalformed("missing :method")
	}
	// RFC 9110: a method is a token (Section 9.1), the authority a host
	// and optional port (Section 7.2); RFC 8441, Section 4: :protocol
	// carries an upgrade token (Section 7.8).
	if !httpguts.ValidHeaderFieldName(h.method) {
		return nil, errMalformed("invalid :method")
	}
	if h.authority != "" && !httpguts.ValidHostHeader(h.authority) {
		return nil, errMalformed("invalid :authority")
	}
	if seen&16 != 0 && !httpguts.ValidHeaderFieldName(h.protocol) {
		return nil, errMalformed("invalid :protocol")
	}
	if _, err := contentLength(h.header); err != nil {
		return nil, err
	}
	switch {
	case h.method == http.MethodConnect && seen&16 != 0:
		// Extended CONNECT (RFC 9220; RFC 8441, Section 4).
		if h.scheme == "" || h.path == "" || h.authority == "" {
			return nil, errMalformed("extended CONNECT without :scheme, :path or :authority")
		}
	case h.method == http.MethodConnect:
		// Classic CONNECT (RFC 9114, Section 4.4).
		if seen&(2|8) != 0 || h.authority == "" {
			return nil, errMalformed("CONNECT must carry only :method and :authority")
		}
	default:
		if seen&16 != 0 {
			return nil, errMalformed(":protocol on a non-CONNECT request")
		}
		if h.scheme == "" || h.path == "" {
			return nil, errMalformed("missing :scheme or :path")
		}
		if h.authority == "" && h.header.Get("host") == "" && (h.scheme == "http" || h.scheme == "https") {
			return nil, errMalformed("missing :authority and host")
		}
	}
	return h, nil
}

// isWebTransport reports an extended CONNECT for WebTransport: :protocol
// webtransport-h3 (draft-15 on) or webtransport (earlier drafts), both
// accepted whatever the draft.
func (h *requestHead) isWebTransport() bool {
	return h.method == http.MethodConnect && (h.protocol == "webtransport" || h.protocol == "webtransport-h3")
}

// toRequest builds the request with its context (one allocation of the
// request: WithContext copies a template that stays on the stack).
func (h *requestHead) toRequest(ctx context.Context) (*http.Request, error) {
	u := &url.URL{Scheme: h.scheme, Host: h.authority}
	if h.path != "" {
		pu, err := url.ParseRequestURI(h.path)
		if err != nil && h.path != "*" {
			return nil, errMalformed("invalid :path")
		}
		if pu != nil {
			u.Path, u.RawPath, u.RawQuery = pu.Path, pu.RawPath, pu.RawQuery
		}
	}
	host := h.authority
	if host == "" {
		host = h.header.Get("host")
	}
	r := http.Request{
		Method:     h.method,
		URL:        u,
		Proto:      "HTTP/3.0",
		ProtoMajor: 3,
		Header:     h.header,
		Host:       host,
		RequestURI: h.path,
	}
	switch h.protocol {
	case "":
	case "webtransport-h3": // constants: not the decoder's copy, kept per session
		r.Proto = "webtransport-h3"
	case "webtransport":
		r.Proto = "webtransport"
	default:
		r.Proto = h.protocol
	}
	if n, _ := contentLength(h.header); n >= 0 { // validated by parseRequestFields
		r.ContentLength = n
	} else if h.method != http.MethodGet && h.method != http.MethodHead && h.method != http.MethodConnect {
		r.ContentLength = -1
	}
	return r.WithContext(ctx), nil
}

// parseResponseFields validates a response header section and returns the
// status and the regular fields.
func parseResponseFields(fields []qpack.HeaderField) (int, http.Header, error) {
	status := -1
	hdr := make(http.Header, len(fields))
	regular := false
	for _, f := range fields {
		if !validValue(f.Value) || !f.IsPseudo() && !validName(f.Name) {
			return 0, nil, errMalformed("invalid field name or value")
		}
		if f.IsPseudo() {
			if regular || f.Name != ":status" || status != -1 {
				return 0, nil, errMalformed("invalid or repeated response pseudo-header")
			}
			n, err := strconv.Atoi(f.Value)
			if err != nil || n < 100 || n > 999 || len(f.Value) != 3 {
				return 0, nil, errMalformed("invalid :status")
			}
			status = n
			continue
		}
		regular = true
		if connectionSpecific(f.Name, f.Value) {
			return 0, nil, errMalformed("connection-specific field " + f.Name)
		}
		hdr.Add(f.Name, f.Value)
	}
	if status == -1 {
		return 0, nil, errMalformed("missing :status")
	}
	if _, err := contentLength(hdr); err != nil {
		return 0, nil, err
	}
	return status, hdr, nil
}

// fieldEncoder builds QPACK field sections with the static table and
// literals only (RFC 9204, Section 4.5), so no encoder stream is needed.
type fieldEncoder struct {
	buf bytes.Buffer
	enc *qpack.Encoder
}

func newFieldEncoder() *fieldEncoder {
	e := &fieldEncoder{}
	e.enc = qpack.NewEncoder(&e.buf)
	return e
}

func (e *fieldEncoder) add(name, value string) {
	_ = e.enc.WriteField(qpack.HeaderField{Name: name, Value: value})
}

// addHeader adds regular fields with lowercased names, dropping the
// connection-specific ones HTTP/3 forbids.
func (e *fieldEncoder) addHeader(h http.Header) {
	for k, vs := range h {
		name := strings.ToLower(k)
		for _, v := range vs {
			if connectionSpecific(name, v) || !validName(name) || !validValue(v) {
				continue
			}
			e.add(name, v)
		}
	}
}

// headersFrame returns the encoded field section wrapped in a HEADERS frame.
func (e *fieldEncoder) headersFrame() []byte {
	return frames.AppendHeaders(nil, e.buf.Bytes())
}

// noType tells readHeaderSection to read the first frame type itself.
const noType = ^frames.Type(0)

// readHeaderSection reads frames up to the first HEADERS frame of a request
// (atServer) or response, skipping unknown frames, and decodes it. t is the
// already read type of the first frame, or noType to read it here. Frame
// sizes follow readMessageFrameHeader.
func readHeaderSection(fr *frameReader, t frames.Type, atServer bool, l *Limits) ([]qpack.HeaderField, error) {
	first := true
	for {
		var h frames.Header
		var err error
		if first && t != noType {
			n, lerr := varint.Read(fr)
			if lerr != nil {
				return nil, eofAsTruncated(lerr)
			}
			h, err = checkMessageFrameSize(frames.Header{Type: t, Length: n}, l)
		} else {
			h, err = readMessageFrameHeader(fr, l)
			if err == io.EOF {
				return nil, errIncompleteMessage
			}
		}
		if err != nil {
			return nil, eofAsTruncated(err)
		}
		first = false
		known, err := frames.Check(h.Type, frames.KindRequest, atServer)
		if err != nil {
			return nil, err
		}
		if !known {
			// Skipped without buffering, whatever the length (RFC 9114, Section 9).
			if err := fr.skip(h.Length); err != nil {
				return nil, eofAsTruncated(err)
			}
			continue
		}
		if h.Type != frames.TypeHeaders {
			return nil, &frames.Error{Code: frames.H3FrameUnexpected, Connection: true, Reason: h.Type.String() + " before HEADERS"}
		}
		p, err := fr.payload(h.Length)
		if err != nil {
			return nil, eofAsTruncated(err)
		}
		return decodeFields(p, l.MaxFieldSectionSize)
	}
}

// readMessageFrameHeader reads the header of a frame on a request, response
// or CONNECT stream. One size rule holds wherever HEADERS appears (request,
// response, trailers): a HEADERS frame longer than MaxFieldSectionSize is
// errFieldSectionTooLarge (the encoded size never exceeds the counted
// decoded size), answered with 431 on a request and as a stream error
// elsewhere. Other frames buffered whole are bounded by MaxControlFrameSize
// (frames.ErrFrameTooLarge); DATA is streamed.
func readMessageFrameHeader(fr *frameReader, l *Limits) (frames.Header, error) {
	h, err := frames.ReadHeader(fr, ^uint64(0))
	if err != nil {
		return h, err
	}
	return checkMessageFrameSize(h, l)
}

func checkMessageFrameSize(h frames.Header, l *Limits) (frames.Header, error) {
	switch {
	case h.Type == frames.TypeHeaders:
		if h.Length > uint64(l.MaxFieldSectionSize) {
			return h, errFieldSectionTooLarge
		}
	case h.Type.LengthLimited() && h.Length > uint64(l.MaxControlFrameSize):
		return h, frames.ErrFrameTooLarge
	}
	return h, nil
}
