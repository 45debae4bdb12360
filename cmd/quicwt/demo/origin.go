package demo

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// allowedOrigins are the page server's origins (every loopback name with
// its port, and the configured host name) and Config.AllowOrigins; any
// says "*" was among them.
func (d *Server) allowedOrigins() (m map[string]bool, any bool) {
	m = map[string]bool{}
	for _, o := range d.cfg.AllowOrigins {
		if o == "*" {
			any = true
			continue
		}
		m[normalizeOrigin(o)] = true
	}
	if d.httpSrv == nil {
		return m, any
	}
	p := strconv.Itoa(d.httpPort)
	for _, h := range append([]string{"localhost", "127.0.0.1", "[::1]"}, d.httpHosts...) {
		if ip := net.ParseIP(h); ip != nil && ip.To4() == nil {
			h = "[" + h + "]"
		}
		m[normalizeOrigin("http://"+h+":"+p)] = true
	}
	return m, any
}

// normalizeOrigin lower-cases an origin and drops a default port, the
// form browsers send ("https://example.com", "http://localhost:8000").
func normalizeOrigin(o string) string {
	o = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(o), "/"))
	o = strings.TrimSuffix(o, "/")
	if strings.HasPrefix(o, "https://") {
		o = strings.TrimSuffix(o, ":443")
	} else if strings.HasPrefix(o, "http://") {
		o = strings.TrimSuffix(o, ":80")
	}
	return o
}

// ParseOrigins parses the -allow-origin list: comma-separated
// "scheme://host[:port]" origins (http or https, no path), or "*".
func ParseOrigins(list string) ([]string, error) {
	var out []string
	for _, o := range strings.Split(list, ",") {
		o = strings.TrimSpace(o)
		if o == "" {
			continue
		}
		if o == "*" {
			out = append(out, o)
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			return nil, fmt.Errorf("bad origin %q: want scheme://host[:port] (http or https, no path) or *", o)
		}
		out = append(out, normalizeOrigin(o))
	}
	return out, nil
}

// checkOrigin is the quicwt.Server's CheckOrigin hook. It accepts no
// Origin (non-browser clients), the page server's origins, the
// AllowOrigins, any origin with "*", and origins with the same authority
// as the request (a page served from the WebTransport server's own host
// and port). Others get 403 from quicwt.Upgrade: the browser sees a
// refused CONNECT (its ready promise rejects), and the QUIC connection
// stays up.
func (d *Server) checkOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" || d.anyOrigin {
		return true
	}
	if d.origins[normalizeOrigin(o)] {
		return true
	}
	u, err := url.Parse(o)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return false
	}
	ok := strings.EqualFold(withPort(u.Host, u.Scheme), withPort(r.Host, "https"))
	if !ok {
		d.log.Info("origin rejected", "origin", o, "authority", r.Host)
	}
	return ok
}

func withPort(h, scheme string) string {
	if _, _, err := net.SplitHostPort(h); err == nil {
		return h
	}
	if scheme == "http" {
		return net.JoinHostPort(strings.Trim(h, "[]"), "80")
	}
	return net.JoinHostPort(strings.Trim(h, "[]"), "443")
}
