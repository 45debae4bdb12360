package quicwt

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/quicwt/quicwt/frames"
	"github.com/quicwt/quicwt/frames/sfv"
)

// Application protocol negotiation (draft-ietf-webtrans-http3-16, Section
// 3.3): the client offers protocols in preference order in the
// WT-Available-Protocols request header (a Structured Field List of
// Strings), the server may choose one of them and name it in the
// WT-Protocol header (a String Item) of its 2xx response. A field that
// is not a valid List or Item of Strings (drafts -10 to -12 sent Tokens)
// is ignored as a whole; parameters are ignored. Every field line of the
// header counts (RFC 9651, Section 4.2). Package sfv does the parsing.

const (
	headerAvailableProtocols = "WT-Available-Protocols"
	headerProtocol           = "WT-Protocol"
)

// ErrProtocolNotOffered is returned by Upgrade when the handler chose
// (WithProtocol) a protocol the client did not offer; the request is then
// answered with 500, as a server must only choose from the client's list.
var ErrProtocolNotOffered = errors.New("quicwt: protocol not offered by the client")

// ProtocolError is the error of a Dial or OpenSession whose protocol
// negotiation failed at the client: the server's WT-Protocol is not one of
// the offered protocols, or the Dialer requires a protocol
// (RequireProtocol) and the response has none (or one that is ignored as
// malformed). The client closes the session with WT_ALPN_ERROR, as the
// draft requires, and the dial returns this error with the response.
type ProtocolError struct {
	// Protocol is the server's choice, "" when it sent none.
	Protocol string
	// Offered are the protocols the client offered.
	Offered []string
	// Malformed is set when the response's WT-Protocol field was present
	// but ignored (not a String Item).
	Malformed bool
}

func (e *ProtocolError) Error() string {
	switch {
	case e.Malformed:
		return "quicwt: protocol negotiation failed: the server's WT-Protocol is not a String and is ignored (WT_ALPN_ERROR)"
	case e.Protocol == "":
		return fmt.Sprintf("quicwt: protocol negotiation failed: the server chose none of %q (WT_ALPN_ERROR)", e.Offered)
	}
	return fmt.Sprintf("quicwt: protocol negotiation failed: the server chose %q, not offered in %q (WT_ALPN_ERROR)", e.Protocol, e.Offered)
}

// Code returns WT_ALPN_ERROR, the session error code the client closes
// with.
func (e *ProtocolError) Code() SessionErrorCode { return SessionErrorCode(frames.WTALPNError) }

// OfferedProtocols returns the protocols a WebTransport CONNECT request
// offers (WT-Available-Protocols), most preferred first; nil when the
// field is absent or ignored as malformed.
func OfferedProtocols(r *http.Request) []string {
	lines := r.Header.Values(headerAvailableProtocols)
	if len(lines) == 0 {
		return nil
	}
	list, err := sfv.ParseStringList(lines)
	if err != nil {
		return nil
	}
	return list
}

// SelectProtocol returns the client's most preferred offered protocol that
// is in supported, or "" when there is none.
func SelectProtocol(r *http.Request, supported []string) string {
	for _, p := range OfferedProtocols(r) {
		if slices.Contains(supported, p) {
			return p
		}
	}
	return ""
}

// UpgradeOption changes what Upgrade answers.
type UpgradeOption func(*upgradeOptions)

type upgradeOptions struct {
	protocol    string
	setProtocol bool
}

// WithProtocol makes Upgrade answer with protocol p in WT-Protocol,
// overriding Server.Protocols; "" answers with no protocol. p must be one
// the client offered (see OfferedProtocols), otherwise Upgrade fails with
// ErrProtocolNotOffered.
func WithProtocol(p string) UpgradeOption {
	return func(o *upgradeOptions) { o.protocol, o.setProtocol = p, true }
}

// chooseProtocol decides the session's protocol before Upgrade answers,
// and sets WT-Protocol on the response header.
func (rw *responseWriter) chooseProtocol(r *http.Request, opts []UpgradeOption) error {
	var o upgradeOptions
	for _, f := range opts {
		f(&o)
	}
	p := ""
	switch {
	case o.setProtocol:
		if o.protocol != "" && !slices.Contains(OfferedProtocols(r), o.protocol) {
			return fmt.Errorf("%w: %q", ErrProtocolNotOffered, o.protocol)
		}
		p = o.protocol
	case len(rw.c.requests.protocols) > 0:
		p = SelectProtocol(r, rw.c.requests.protocols)
	default:
		// A handler may also set WT-Protocol itself.
		if lines := rw.header.Values(headerProtocol); len(lines) > 0 {
			if v, err := sfv.ParseStringItem(lines); err == nil {
				rw.sess.protocol = v
			}
		}
		return nil
	}
	rw.header.Del(headerProtocol)
	if p != "" {
		v, err := sfv.FormatString(p)
		if err != nil {
			return fmt.Errorf("quicwt: protocol %q cannot be a Structured Field String: %w", p, err)
		}
		rw.header.Set(headerProtocol, v)
	}
	rw.sess.protocol = p
	return nil
}

// Protocol returns the application protocol negotiated for the session
// (WT-Protocol), or "" when none was.
func (s *Session) Protocol() string { return s.protocol }

// offerProtocols adds the Dialer's protocols to a CONNECT request's
// fields (unless the caller's header has WT-Available-Protocols already)
// and returns the offer: what the request carries.
func (cc *ClientConn) offerProtocols(e *fieldEncoder, h http.Header) ([]string, error) {
	if lines := h.Values(headerAvailableProtocols); len(lines) > 0 {
		list, err := sfv.ParseStringList(lines)
		if err != nil {
			return nil, nil // the server ignores it too
		}
		return list, nil
	}
	if len(cc.protocols) == 0 {
		return nil, nil
	}
	v, err := sfv.FormatStringList(cc.protocols)
	if err != nil {
		return nil, fmt.Errorf("quicwt: Dialer.Protocols: %w (protocols must be printable ASCII)", err)
	}
	e.add(strings.ToLower(headerAvailableProtocols), v)
	return cc.protocols, nil
}

// checkProtocol validates the server's WT-Protocol against the offer; a
// non-nil *ProtocolError means the session must close with WT_ALPN_ERROR.
func (cc *ClientConn) checkProtocol(hdr http.Header, offered []string) (string, *ProtocolError) {
	lines := hdr.Values(headerProtocol)
	if len(lines) == 0 {
		if cc.requireProtocol {
			return "", &ProtocolError{Offered: offered}
		}
		return "", nil
	}
	p, err := sfv.ParseStringItem(lines)
	if err != nil {
		if cc.requireProtocol {
			return "", &ProtocolError{Offered: offered, Malformed: true}
		}
		return "", nil // ignored
	}
	if !slices.Contains(offered, p) {
		return "", &ProtocolError{Protocol: p, Offered: offered}
	}
	return p, nil
}
