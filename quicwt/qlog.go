package quicwt

import (
	"strings"
	"sync"
	"time"

	"github.com/quic-go/quic-go/qlogwriter"
	"github.com/quic-go/quic-go/qlogwriter/jsontext"

	"github.com/quicwt/quicwt/frames"
	"github.com/quicwt/quicwt/settings"
)

// qlog events of HTTP/3 and WebTransport, written into the qlog trace
// quic-go keeps for the connection (quic.Config.Tracer): quic-go lets other
// layers add a producer to a connection's trace (qlogwriter.Trace's
// AddProducer, which quic-go's own http3 package uses), so the events land
// in the same file, in time order with the transport's.
//
// Events, named after draft-ietf-quic-qlog-h3-events where it has them:
//
//	http3:frame_created, http3:frame_parsed   SETTINGS and GOAWAY, on the control stream
//	webtransport:session_opened               the 2xx was sent (server) or read (client): session_id, protocol, path
//	webtransport:session_closed               session_id, initiator (local/remote), code, reason, cause
//	webtransport:session_draining             WT_DRAIN_SESSION or GOAWAY received
//	webtransport:capsule_created, webtransport:capsule_parsed
//	                                          session_id, capsule_type, length (WT_CLOSE_SESSION: code, reason)
//	webtransport:stream_associated            a WebTransport stream bound to its session: stream_id, session_id, initiator, stream_type
//	webtransport:datagrams_dropped            session_id, reason, count (at most one event per reason and session every 100 ms);
//	                                          reasons receive_queue_full, early_buffer_full, no_session (a
//	                                          client's unknown or a gone session), send_queue_full, max_age, send_failed
//
// Off (no trace, or a trace that supports neither schema) the connection
// holds a nil *qlogger and every hook is a nil check: nothing is built or
// allocated.

// Qlog event schemas. A connection records its events when its trace
// supports one of them (qlogwriter.Trace.SupportsSchemas): add both to the
// trace's schemas (see qlogwriter.NewConnectionFileSeq), as cmd/quicwt does.
const (
	// QlogSchemaHTTP3 is the schema of the http3: events (the one quic-go's
	// http3 package uses).
	QlogSchemaHTTP3 = "urn:ietf:params:qlog:events:http3-12"
	// QlogSchemaWebTransport is the schema of the webtransport: events,
	// which no IETF draft defines yet.
	QlogSchemaWebTransport = "urn:quicwt:qlog:events:webtransport-0"
)

// QlogSchemas are the event schemas quicwt writes.
var QlogSchemas = []string{QlogSchemaHTTP3, QlogSchemaWebTransport}

// qlogger is a connection's qlog producer; nil means qlog is off.
type qlogger struct {
	mu      sync.Mutex
	r       qlogwriter.Recorder
	closed  bool
	drops   map[dropKey]uint64
	flushed time.Time
}

type dropKey struct {
	session uint64
	reason  string
}

// newQlogger adds a producer to the connection's trace, or returns nil.
func newQlogger(qc qconn) *qlogger {
	tr := qc.QlogTrace()
	if tr == nil {
		return nil
	}
	// quic-go v0.64 lets a trace say which schemas it takes; v0.65
	// dropped the method (and takes every event).
	if sc, ok := tr.(interface{ SupportsSchemas(string) bool }); ok && !(sc.SupportsSchemas(QlogSchemaWebTransport) || sc.SupportsSchemas(QlogSchemaHTTP3)) {
		return nil
	}
	r := tr.AddProducer()
	if r == nil {
		return nil
	}
	return &qlogger{r: r}
}

func (q *qlogger) record(ev qlogwriter.Event) {
	q.mu.Lock()
	if !q.closed {
		q.r.RecordEvent(ev)
	}
	q.mu.Unlock()
}

// close flushes pending drop counts and closes the producer (the trace's
// file closes when quic-go's producer is closed too).
func (q *qlogger) close() {
	if q == nil {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	q.flushDropsLocked()
	q.closed = true
	_ = q.r.Close()
}

// The hooks, each a no-op on a nil *qlogger.

func (q *qlogger) settingsFrame(created bool, streamID uint64, s *settings.Settings) {
	if q == nil {
		return
	}
	var list []settings.Setting
	s.All(func(st settings.Setting) bool { list = append(list, st); return true })
	q.record(&h3FrameEvent{created: created, streamID: streamID, settings: list, isSettings: true})
}

func (q *qlogger) goawayFrame(created bool, streamID, id uint64) {
	if q == nil {
		return
	}
	q.record(&h3FrameEvent{created: created, streamID: streamID, goawayID: id})
}

func (q *qlogger) sessionOpened(s *Session, path string) {
	if q == nil {
		return
	}
	q.record(&wtEvent{name: "webtransport:session_opened", sessionID: s.id, streamID: -1, length: -1,
		protocol: s.protocol, path: path, draft: s.Draft().String()})
}

func (q *qlogger) sessionClosed(s *Session, e *SessionError) {
	if q == nil {
		return
	}
	ev := &wtEvent{name: "webtransport:session_closed", sessionID: s.id, streamID: -1, length: -1,
		initiator: initiator(e.Remote), code: uint64(e.Code), hasCode: true, message: e.Message, hasMessage: true}
	if e.Cause != nil {
		ev.cause = e.Cause.Error()
	}
	q.record(ev)
}

func (q *qlogger) sessionDraining(s *Session) {
	if q == nil {
		return
	}
	q.record(&wtEvent{name: "webtransport:session_draining", sessionID: s.id, streamID: -1, length: -1, initiator: "remote"})
}

// capsulesCreated records the capsules of one DATA frame's payload.
func (q *qlogger) capsulesCreated(s *Session, b []byte) {
	if q == nil {
		return
	}
	p := frames.CapsuleParser{MaxSize: uint64(len(b))}
	for len(b) > 0 {
		cp, n, ok, err := p.Next(b)
		if err != nil || n == 0 {
			return
		}
		b = b[n:]
		if ok {
			q.capsule(s, "webtransport:capsule_created", cp)
		}
	}
}

func (q *qlogger) capsuleParsed(s *Session, cp frames.Capsule) {
	if q == nil {
		return
	}
	q.capsule(s, "webtransport:capsule_parsed", cp)
}

func (q *qlogger) capsule(s *Session, name string, cp frames.Capsule) {
	ev := &wtEvent{name: name, sessionID: s.id, streamID: -1, kind: capsuleName(cp.Type), length: int64(len(cp.Value))}
	if cp.Type == frames.CapsuleCloseSession {
		if code, msg, err := frames.ParseCloseSession(cp.Value); err == nil {
			ev.code, ev.hasCode, ev.message, ev.hasMessage = uint64(code), true, string(msg), true
		}
	}
	q.record(ev)
}

func (q *qlogger) streamAssociated(s *Session, id uint64) {
	if q == nil {
		return
	}
	kind := "bidirectional"
	if id&2 != 0 {
		kind = "unidirectional"
	}
	clientStream := id&1 == 0
	q.record(&wtEvent{name: "webtransport:stream_associated", sessionID: s.id, streamID: int64(id), length: -1,
		initiator: initiator(clientStream == s.isServer), kind: kind})
}

// datagramDropped counts a dropped datagram; the counts go out at most
// every 100 ms (and when the connection ends), one event per session and
// reason: never one event per datagram.
func (q *qlogger) datagramDropped(s *Session, reason string) {
	if q == nil {
		return
	}
	q.datagramDroppedID(s.id, reason)
}

// datagramDroppedID is datagramDropped for a session ID that has no
// session (early datagrams).
func (q *qlogger) datagramDroppedID(sid uint64, reason string) {
	if q == nil {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	if q.drops == nil {
		q.drops = make(map[dropKey]uint64)
	}
	q.drops[dropKey{sid, reason}]++
	if now := time.Now(); now.Sub(q.flushed) >= 100*time.Millisecond {
		q.flushed = now
		q.flushDropsLocked()
	}
}

func (q *qlogger) flushDropsLocked() {
	for k, n := range q.drops {
		q.r.RecordEvent(&wtEvent{name: "webtransport:datagrams_dropped", sessionID: k.session, streamID: -1, length: -1, kind: k.reason, count: n})
		delete(q.drops, k)
	}
}

func initiator(remote bool) string {
	if remote {
		return "remote"
	}
	return "local"
}

func capsuleName(t frames.CapsuleType) string {
	n := t.String()
	if n == "UNKNOWN" || n == "GREASE" {
		return strings.ToLower(n)
	}
	return n
}

// h3FrameEvent is http3:frame_created or http3:frame_parsed for a
// SETTINGS or GOAWAY frame (draft-ietf-quic-qlog-h3-events).
type h3FrameEvent struct {
	created    bool
	streamID   uint64
	isSettings bool
	settings   []settings.Setting
	goawayID   uint64
}

func (e *h3FrameEvent) Name() string {
	if e.created {
		return "http3:frame_created"
	}
	return "http3:frame_parsed"
}

func (e *h3FrameEvent) Encode(enc *jsontext.Encoder, _ time.Time) error {
	w := tokenWriter{enc: enc}
	w.tok(jsontext.BeginObject)
	w.key("stream_id", jsontext.Uint(e.streamID))
	w.tok(jsontext.String("frame"))
	w.tok(jsontext.BeginObject)
	if e.isSettings {
		w.key("frame_type", jsontext.String("settings"))
		w.tok(jsontext.String("settings"))
		w.tok(jsontext.BeginArray)
		for _, s := range e.settings {
			w.tok(jsontext.BeginObject)
			if name := s.ID.String(); strings.HasPrefix(name, "SETTINGS_") {
				w.key("name", jsontext.String(strings.ToLower(name)))
			} else {
				w.key("name", jsontext.String("unknown"))
				w.key("name_bytes", jsontext.Uint(uint64(s.ID)))
			}
			w.key("value", jsontext.Uint(s.Value))
			w.tok(jsontext.EndObject)
		}
		w.tok(jsontext.EndArray)
	} else {
		w.key("frame_type", jsontext.String("goaway"))
		w.key("id", jsontext.Uint(e.goawayID))
	}
	w.tok(jsontext.EndObject)
	w.tok(jsontext.EndObject)
	return w.err
}

// wtEvent is a webtransport: event; fields are written when set.
type wtEvent struct {
	name       string
	sessionID  uint64
	streamID   int64 // -1: none
	initiator  string
	kind       string // stream_type, capsule_type or reason, by event
	length     int64  // -1: none
	code       uint64
	hasCode    bool
	message    string
	hasMessage bool
	cause      string
	protocol   string
	path       string
	draft      string
	count      uint64
}

func (e *wtEvent) Name() string { return e.name }

func (e *wtEvent) Encode(enc *jsontext.Encoder, _ time.Time) error {
	w := tokenWriter{enc: enc}
	w.tok(jsontext.BeginObject)
	w.key("session_id", jsontext.Uint(e.sessionID))
	if e.streamID >= 0 {
		w.key("stream_id", jsontext.Uint(uint64(e.streamID)))
	}
	if e.initiator != "" {
		w.key("initiator", jsontext.String(e.initiator))
	}
	if e.kind != "" {
		key := "reason"
		switch e.name {
		case "webtransport:stream_associated":
			key = "stream_type"
		case "webtransport:capsule_created", "webtransport:capsule_parsed":
			key = "capsule_type"
		}
		w.key(key, jsontext.String(e.kind))
	}
	if e.length >= 0 {
		w.key("length", jsontext.Uint(uint64(e.length)))
	}
	if e.hasCode {
		w.key("code", jsontext.Uint(e.code))
	}
	if e.hasMessage {
		w.key("reason", jsontext.String(e.message))
	}
	if e.cause != "" {
		w.key("cause", jsontext.String(e.cause))
	}
	if e.name == "webtransport:session_opened" {
		w.key("protocol", jsontext.String(e.protocol))
		w.key("path", jsontext.String(e.path))
		w.key("draft", jsontext.String(e.draft))
	}
	if e.count > 0 {
		w.key("count", jsontext.Uint(e.count))
	}
	w.tok(jsontext.EndObject)
	return w.err
}

type tokenWriter struct {
	enc *jsontext.Encoder
	err error
}

func (w *tokenWriter) tok(t jsontext.Token) {
	if w.err == nil {
		w.err = w.enc.WriteToken(t)
	}
}

func (w *tokenWriter) key(k string, v jsontext.Token) {
	w.tok(jsontext.String(k))
	w.tok(v)
}
