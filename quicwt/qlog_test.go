package quicwt

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/qlog"
	"github.com/quic-go/quic-go/qlogwriter"

	"github.com/quicwt/quicwt/frames"
)

// memTrace collects the qlog files of connections in memory.
type memTrace struct {
	mu    sync.Mutex
	files []*memFile
}

type memFile struct {
	bytes.Buffer
	mu     sync.Mutex
	closed chan struct{}
}

func (f *memFile) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.Buffer.Write(p)
}

func (f *memFile) Close() error { close(f.closed); return nil }

func (m *memTrace) tracer(schemas []string) func(context.Context, bool, quic.ConnectionID) qlogwriter.Trace {
	return func(_ context.Context, isClient bool, id quic.ConnectionID) qlogwriter.Trace {
		f := &memFile{closed: make(chan struct{})}
		m.mu.Lock()
		m.files = append(m.files, f)
		m.mu.Unlock()
		fs := newFileSeq(f, isClient, id, schemas)
		go fs.Run()
		return fs
	}
}

// events waits for the traces to be closed and returns their events.
func (m *memTrace) events(t *testing.T) []map[string]any {
	t.Helper()
	m.mu.Lock()
	files := m.files
	m.mu.Unlock()
	var out []map[string]any
	for _, f := range files {
		select {
		case <-f.closed:
		case <-time.After(10 * time.Second):
			t.Fatal("qlog trace not closed: a producer was left open")
		}
		for i, rec := range bytes.Split(f.Bytes(), []byte{qlogwriter.RecordSeparator}) {
			if len(bytes.TrimSpace(rec)) == 0 {
				continue
			}
			var ev map[string]any
			if err := json.Unmarshal(rec, &ev); err != nil {
				t.Fatalf("record %d is not JSON: %v: %s", i, err, rec)
			}
			out = append(out, ev)
		}
	}
	return out
}

func find(evs []map[string]any, name string, match func(data map[string]any) bool) map[string]any {
	for _, ev := range evs {
		if ev["name"] == name {
			d, _ := ev["data"].(map[string]any)
			if match == nil || match(d) {
				return d
			}
		}
	}
	return nil
}

func TestQlogEvents(t *testing.T) {
	var srvTrace, cliTrace memTrace
	schemas := append([]string{qlog.EventSchema}, QlogSchemas...)
	got := make(chan struct{})
	ts := startServer(t, wtHandler(t, func(sess *Session) {
		if sess.Request().URL.Path != "/q" {
			<-sess.Context().Done()
			return
		}
		str, err := sess.AcceptUniStream(sess.Context())
		if err != nil {
			return
		}
		str.Read(make([]byte, 1))
		sess.ReceiveDatagram(sess.Context()) // starts the receiver; the rest queue up
		close(got)
		<-sess.Context().Done()
	}), func(s *Server) {
		s.QUICConfig = &quic.Config{Tracer: srvTrace.tracer(schemas)}
		s.Limits.DatagramQueueBytes = 1000
	})
	d := ts.dialer()
	d.QUICConfig = &quic.Config{Tracer: cliTrace.tracer(schemas)}
	ctx := testCtx(t)
	cc, err := d.DialConn(ctx, ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	_, sess, err := cc.OpenSession(ctx, ts.url("/q"), nil)
	if err != nil {
		t.Fatal(err)
	}
	us, err := sess.OpenUniStream()
	if err != nil {
		t.Fatal(err)
	}
	us.Write([]byte("x"))
	us.Close()
	for i := 0; i < 30; i++ {
		sess.SendDatagram(make([]byte, 600))
	}
	<-got
	time.Sleep(50 * time.Millisecond) // the datagrams arrive and are dropped
	sess.CloseWithError(42, "bye")
	<-sess.Closed()
	// The server's GOAWAY (Shutdown, which waits for the open session),
	// then the client's.
	_, sess2, err := cc.OpenSession(ctx, ts.url("/other"), nil)
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- ts.srv.Shutdown(sctx) }()
	select {
	case <-sess2.Draining():
	case <-ctx.Done():
		t.Fatal("no GOAWAY")
	}
	sess2.Close()
	<-sess2.Closed()
	cc.CloseWithGoaway()
	<-cc.Done()
	<-shut
	ts.srv.Close()

	cli, srv := cliTrace.events(t), srvTrace.events(t)
	if find(cli, "transport:packet_sent", nil) == nil {
		t.Fatal("the client trace has no quic-go events: not the same file?")
	}
	for _, c := range []struct {
		who  string
		evs  []map[string]any
		name string
		ok   func(map[string]any) bool
	}{
		{"client", cli, "http3:frame_created", func(d map[string]any) bool {
			f, _ := d["frame"].(map[string]any)
			return f["frame_type"] == "settings" && strings.Contains(toJSON(f), "settings_wt_enabled")
		}},
		{"client", cli, "http3:frame_parsed", func(d map[string]any) bool {
			f, _ := d["frame"].(map[string]any)
			return f["frame_type"] == "settings"
		}},
		{"server", srv, "http3:frame_created", func(d map[string]any) bool {
			f, _ := d["frame"].(map[string]any)
			return f["frame_type"] == "goaway" && d["stream_id"] == 3.0
		}},
		{"client", cli, "http3:frame_parsed", func(d map[string]any) bool {
			f, _ := d["frame"].(map[string]any)
			return f["frame_type"] == "goaway" && d["stream_id"] == 3.0
		}},
		{"client", cli, "http3:frame_created", func(d map[string]any) bool {
			f, _ := d["frame"].(map[string]any)
			return f["frame_type"] == "goaway"
		}},
		{"client", cli, "webtransport:session_draining", nil},
		{"client", cli, "webtransport:session_opened", func(d map[string]any) bool { return d["path"] == "/q" && d["session_id"] == 0.0 }},
		{"server", srv, "webtransport:session_opened", nil},
		{"client", cli, "webtransport:stream_associated", func(d map[string]any) bool {
			return d["stream_id"] == 6.0 && d["stream_type"] == "unidirectional" && d["initiator"] == "local"
		}},
		{"server", srv, "webtransport:stream_associated", func(d map[string]any) bool {
			return d["stream_id"] == 6.0 && d["initiator"] == "remote"
		}},
		{"client", cli, "webtransport:capsule_created", func(d map[string]any) bool {
			return d["capsule_type"] == "WT_CLOSE_SESSION" && d["code"] == 42.0 && d["reason"] == "bye"
		}},
		{"server", srv, "webtransport:capsule_parsed", func(d map[string]any) bool {
			return d["capsule_type"] == "WT_CLOSE_SESSION" && d["code"] == 42.0
		}},
		{"client", cli, "webtransport:session_closed", func(d map[string]any) bool {
			return d["initiator"] == "local" && d["code"] == 42.0 && d["reason"] == "bye"
		}},
		{"server", srv, "webtransport:session_closed", func(d map[string]any) bool {
			return d["initiator"] == "remote" && d["code"] == 42.0
		}},
		{"server", srv, "webtransport:datagrams_dropped", func(d map[string]any) bool {
			n, _ := d["count"].(float64)
			return d["reason"] == "receive_queue_full" && n >= 1
		}},
	} {
		if find(c.evs, c.name, c.ok) == nil {
			t.Errorf("%s trace: no matching %s event", c.who, c.name)
		}
	}
	if t.Failed() {
		for _, ev := range srv {
			if n, _ := ev["name"].(string); !strings.HasPrefix(n, "transport:") {
				t.Log("server:", toJSON(ev))
			}
		}
	}
}

func toJSON(v any) string { b, _ := json.Marshal(v); return string(b) }

// The hooks cost nothing when qlog is off: no allocation.
func TestQlogOffAllocs(t *testing.T) {
	s := &Session{}
	cp := frames.Capsule{Type: frames.CapsuleDrainSession}
	e := &SessionError{Code: 1}
	if n := testing.AllocsPerRun(1000, func() { qlogHooksOff(s, cp, e) }); n != 0 {
		t.Fatalf("%v allocations with qlog off", n)
	}
}

func qlogHooksOff(s *Session, cp frames.Capsule, e *SessionError) {
	s.ql.streamAssociated(s, 4)
	s.ql.capsuleParsed(s, cp)
	s.ql.capsulesCreated(s, nil)
	s.ql.datagramDropped(s, "receive_queue_full")
	s.ql.sessionClosed(s, e)
	s.ql.sessionOpened(s, "/")
}

// BenchmarkQlogHooksOff: six hooks with qlog off (compare
// BenchmarkQlogHooksOn).
func BenchmarkQlogHooksOff(b *testing.B) {
	s := &Session{}
	cp := frames.Capsule{Type: frames.CapsuleDrainSession}
	e := &SessionError{Code: 1}
	b.ReportAllocs()
	for b.Loop() {
		qlogHooksOff(s, cp, e)
	}
}

type discardRecorder struct{}

func (discardRecorder) RecordEvent(qlogwriter.Event) {}
func (discardRecorder) Close() error                 { return nil }

func BenchmarkQlogHooksOn(b *testing.B) {
	s := &Session{ql: &qlogger{r: discardRecorder{}}}
	cp := frames.Capsule{Type: frames.CapsuleDrainSession}
	e := &SessionError{Code: 1}
	b.ReportAllocs()
	for b.Loop() {
		qlogHooksOff(s, cp, e)
	}
}
