//go:build !quicgo_latest

package quicwt

import (
	"io"
	"strings"
	"testing"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/qlog"
	"github.com/quic-go/quic-go/qlogwriter"
)

// newFileSeq is qlogwriter.NewConnectionFileSeq of quic-go v0.64, which
// takes the trace's schemas (make unit-quic-go-latest builds with the tag
// quicgo_latest for v0.65, which does not).
func newFileSeq(w io.WriteCloser, isClient bool, id quic.ConnectionID, schemas []string) *qlogwriter.FileSeq {
	return qlogwriter.NewConnectionFileSeq(w, isClient, id, schemas)
}

// quic-go v0.64's traces say which schemas they take; v0.65 dropped that.
// TestQlogNotSupported: a trace without the schemas gets no producer and
// no events, and still closes.
func TestQlogNotSupported(t *testing.T) {
	var tr memTrace
	ts := startServer(t, wtHandler(t, func(sess *Session) { <-sess.Context().Done() }))
	d := ts.dialer()
	d.QUICConfig = &quic.Config{Tracer: tr.tracer([]string{qlog.EventSchema})}
	_, sess, err := d.Dial(testCtx(t), ts.url("/q"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if sess.ql != nil {
		t.Fatal("qlog on without the schemas")
	}
	sess.Close()
	<-sess.Closed()
	for _, ev := range tr.events(t) {
		if n, _ := ev["name"].(string); strings.HasPrefix(n, "webtransport:") || strings.HasPrefix(n, "http3:") {
			t.Fatalf("event %s without the schema", n)
		}
	}
}
