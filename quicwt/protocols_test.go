package quicwt

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"testing"

	"github.com/quicwt/quicwt/frames"
)

// protoServer upgrades with opts and reports what the handler saw.
type protoSeen struct {
	offered  []string
	protocol string
	err      error
	sess     *Session
}

func protoServer(t *testing.T, configure func(*Server), handler func(w http.ResponseWriter, r *http.Request) (*Session, error)) (*testServer, chan protoSeen) {
	seen := make(chan protoSeen, 4)
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := protoSeen{offered: OfferedProtocols(r)}
		sess, err := handler(w, r)
		s.err, s.sess = err, sess
		if sess != nil {
			s.protocol = sess.Protocol()
		}
		seen <- s
	}), func(s *Server) {
		if configure != nil {
			configure(s)
		}
	})
	return ts, seen
}

func upgradeWith(opts ...UpgradeOption) func(w http.ResponseWriter, r *http.Request) (*Session, error) {
	return func(w http.ResponseWriter, r *http.Request) (*Session, error) { return Upgrade(w, r, opts...) }
}

func TestProtocolNegotiation(t *testing.T) {
	ts, seen := protoServer(t, func(s *Server) { s.Protocols = []string{"b", "c"} }, upgradeWith())
	d := ts.dialer()
	d.Protocols = []string{"a", "c", "b"}
	rsp, sess, err := d.Dial(testCtx(t), ts.url("/p"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	s := <-seen
	if !slices.Equal(s.offered, []string{"a", "c", "b"}) {
		t.Fatalf("server saw offer %q", s.offered)
	}
	// The client's preference among the supported ones.
	if s.protocol != "c" || sess.Protocol() != "c" {
		t.Fatalf("server chose %q, client sees %q; want c", s.protocol, sess.Protocol())
	}
	if got := rsp.Header.Values("WT-Protocol"); !slices.Equal(got, []string{`"c"`}) {
		t.Fatalf("WT-Protocol field %q", got)
	}
}

func TestProtocolHandlerChooses(t *testing.T) {
	ts, seen := protoServer(t, func(s *Server) { s.Protocols = []string{"a"} }, upgradeWith(WithProtocol("b")))
	d := ts.dialer()
	d.Protocols = []string{"a", "b"}
	_, sess, err := d.Dial(testCtx(t), ts.url("/p"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if s := <-seen; s.protocol != "b" || sess.Protocol() != "b" {
		t.Fatalf("server %q, client %q; want b", s.protocol, sess.Protocol())
	}
}

func TestProtocolNone(t *testing.T) {
	// Nothing supported in common: no WT-Protocol, the session opens.
	ts, seen := protoServer(t, func(s *Server) { s.Protocols = []string{"x"} }, upgradeWith())
	d := ts.dialer()
	d.Protocols = []string{"a"}
	rsp, sess, err := d.Dial(testCtx(t), ts.url("/p"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	<-seen
	if sess.Protocol() != "" || rsp.Header.Get("WT-Protocol") != "" {
		t.Fatalf("protocol %q, field %q", sess.Protocol(), rsp.Header.Get("WT-Protocol"))
	}
}

func TestProtocolNotOfferedByHandler(t *testing.T) {
	ts, seen := protoServer(t, nil, upgradeWith(WithProtocol("zzz")))
	d := ts.dialer()
	d.Protocols = []string{"a"}
	_, _, err := d.Dial(testCtx(t), ts.url("/p"), nil)
	var rej *RejectedError
	if !errors.As(err, &rej) || rej.StatusCode != http.StatusInternalServerError {
		t.Fatalf("dial: %v", err)
	}
	if s := <-seen; !errors.Is(s.err, ErrProtocolNotOffered) {
		t.Fatalf("Upgrade: %v", s.err)
	}
}

// waitEnd returns the server session's end.
func waitEnd(t *testing.T, sess *Session) *SessionError {
	t.Helper()
	select {
	case <-sess.Context().Done():
	case <-testCtx(t).Done():
		t.Fatal("server session did not end")
	}
	var se *SessionError
	if !errors.As(context.Cause(sess.Context()), &se) {
		t.Fatalf("end %v", context.Cause(sess.Context()))
	}
	return se
}

func TestProtocolServerAnswersUnoffered(t *testing.T) {
	// A server choosing outside the offer: the client closes the session
	// with WT_ALPN_ERROR and the dial fails with a *ProtocolError.
	ts, seen := protoServer(t, nil, func(w http.ResponseWriter, r *http.Request) (*Session, error) {
		w.Header().Set("WT-Protocol", `"evil"`)
		return Upgrade(w, r)
	})
	d := ts.dialer()
	d.Protocols = []string{"a", "b"}
	rsp, sess, err := d.Dial(testCtx(t), ts.url("/p"), nil)
	var pe *ProtocolError
	if !errors.As(err, &pe) || pe.Protocol != "evil" || !slices.Equal(pe.Offered, []string{"a", "b"}) || sess != nil {
		t.Fatalf("dial: %v, session %v", err, sess)
	}
	if rsp == nil || rsp.StatusCode != 200 {
		t.Fatalf("response %v", rsp)
	}
	s := <-seen
	if s.err != nil {
		t.Fatal(s.err)
	}
	if se := waitEnd(t, s.sess); se.Code != SessionErrorCode(frames.WTALPNError) || !se.Remote {
		t.Fatalf("server session ended with %v, want WT_ALPN_ERROR from the client", se)
	}
}

func TestProtocolRequired(t *testing.T) {
	ts, seen := protoServer(t, nil, upgradeWith())
	d := ts.dialer()
	d.Protocols = []string{"a"}
	d.RequireProtocol = true
	_, _, err := d.Dial(testCtx(t), ts.url("/p"), nil)
	var pe *ProtocolError
	if !errors.As(err, &pe) || pe.Protocol != "" || pe.Code() != 0x0817b3dd {
		t.Fatalf("dial: %v", err)
	}
	if se := waitEnd(t, (<-seen).sess); se.Code != 0x0817b3dd {
		t.Fatalf("server session ended with %v", se)
	}
}

func TestProtocolMalformedIgnored(t *testing.T) {
	// A Token WT-Protocol (drafts -10 to -12) is ignored: no protocol, the
	// session stands (unless RequireProtocol).
	for _, require := range []bool{false, true} {
		ts, seen := protoServer(t, nil, func(w http.ResponseWriter, r *http.Request) (*Session, error) {
			w.Header().Set("WT-Protocol", `a`)
			return Upgrade(w, r)
		})
		d := ts.dialer()
		d.Protocols = []string{"a"}
		d.RequireProtocol = require
		_, sess, err := d.Dial(testCtx(t), ts.url("/p"), nil)
		s := <-seen
		if s.protocol != "" {
			t.Errorf("server protocol %q from a Token", s.protocol)
		}
		if !require {
			if err != nil || sess.Protocol() != "" {
				t.Fatalf("dial: %v", err)
			}
			sess.Close()
			continue
		}
		var pe *ProtocolError
		if !errors.As(err, &pe) || !pe.Malformed {
			t.Fatalf("required, malformed: %v", err)
		}
	}
}

func TestProtocolOfferEveryFieldLine(t *testing.T) {
	ts, seen := protoServer(t, func(s *Server) { s.Protocols = []string{"b"} }, upgradeWith())
	h := http.Header{}
	h.Add("WT-Available-Protocols", `"a"`)
	h.Add("WT-Available-Protocols", `"b";v=2`)
	_, sess, err := ts.dialer().Dial(testCtx(t), ts.url("/p"), h)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	if s := <-seen; !slices.Equal(s.offered, []string{"a", "b"}) || s.protocol != "b" || sess.Protocol() != "b" {
		t.Fatalf("offer %q, server %q, client %q", s.offered, s.protocol, sess.Protocol())
	}
	// A Token list (drafts -10 to -12) is ignored whole.
	h = http.Header{"Wt-Available-Protocols": {`a, b`}}
	_, sess2, err := ts.dialer().Dial(testCtx(t), ts.url("/p"), h)
	if err != nil {
		t.Fatal(err)
	}
	defer sess2.Close()
	if s := <-seen; s.offered != nil || s.protocol != "" {
		t.Fatalf("token offer seen as %q, chose %q", s.offered, s.protocol)
	}
}

func TestProtocolBadOffer(t *testing.T) {
	ts, _ := protoServer(t, nil, upgradeWith())
	d := ts.dialer()
	d.Protocols = []string{"caf\u00e9"}
	if _, _, err := d.Dial(testCtx(t), ts.url("/p"), nil); err == nil {
		t.Fatal("a non-ASCII protocol was offered")
	}
}
