package quicwt

import (
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/quicwt/quicwt/frames"
)

// registry owns the WebTransport sessions of one connection and what
// arrives for session IDs that have no session yet: streams and datagrams
// are buffered, within bounds and for a bounded time, until the session
// exists (draft-ietf-webtrans-http3, Section 4.6). It also remembers the
// IDs of recently ended sessions, whose late streams are rejected without
// buffering. It has its own lock and calls nothing of the connection.
type registry struct {
	limits   *Limits
	isServer bool

	mu           sync.Mutex
	closed       bool
	sessions     map[uint64]*Session
	early        map[uint64]*earlyBuffer
	earlyStreams int
	earlyDgrams  int
	earlyBytes   int
	earlyTimer   *time.Timer
	gone         []uint64 // recently ended session IDs, a ring of goneRing, made on first use
	goneN        int
}

// goneRing is how many ended session IDs a connection remembers.
const goneRing = 64

// earlyBuffer holds what arrived for a session ID that has no session yet.
type earlyBuffer struct {
	created   time.Time
	streams   []earlyStream
	datagrams [][]byte
}

// earlyStream is a peer's WebTransport stream whose header has been read:
// exactly one of bidi and uni is set.
type earlyStream struct {
	bidi bidiStream
	uni  receiveStream
	hdr  uint8 // length of the stream header (type or signal, session ID)
	// In a session with flow control: the stream's accounting from its
	// arrival on, and the wrapper made with it.
	rf *recvFlow
	sw *Stream
	rw *ReceiveStream
}

// reject resets a stream that will not be delivered.
func (e earlyStream) reject(code ErrorCode) {
	if e.bidi != nil {
		e.bidi.CancelRead(quic.StreamErrorCode(code))
		e.bidi.CancelWrite(quic.StreamErrorCode(code))
	} else {
		e.uni.CancelRead(quic.StreamErrorCode(code))
	}
}

func newRegistry(limits *Limits, isServer bool) *registry {
	return &registry{limits: limits, isServer: isServer, sessions: make(map[uint64]*Session)}
}

// add registers a session and hands it what was buffered for its ID. It
// fails with ErrTooManySessions when limit sessions are registered, and
// with closeErr once the registry is closed.
func (r *registry) add(s *Session, limit int, closeErr func() error) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return closeErr()
	}
	if len(r.sessions) >= limit {
		r.mu.Unlock()
		return ErrTooManySessions
	}
	r.sessions[s.id] = s
	e := r.early[s.id]
	if e != nil {
		r.dropEarlyLocked(s.id, e)
	}
	r.mu.Unlock()
	if e != nil {
		for _, es := range e.streams {
			s.enqueue(es)
		}
		for _, d := range e.datagrams {
			s.pushDatagram(d)
		}
	}
	return nil
}

// remove forgets an ended session, remembering its ID so that late streams
// for it are rejected without buffering.
func (r *registry) remove(s *Session) {
	r.mu.Lock()
	if r.sessions[s.id] == s {
		delete(r.sessions, s.id)
		if r.gone == nil {
			r.gone = make([]uint64, 0, goneRing)
		}
		if len(r.gone) < goneRing {
			r.gone = append(r.gone, s.id)
		} else {
			r.gone[r.goneN%goneRing] = s.id
		}
		r.goneN++
	}
	r.mu.Unlock()
}

// get returns the session with ID sid, or nil.
func (r *registry) get(sid uint64) *Session {
	r.mu.Lock()
	s := r.sessions[sid]
	r.mu.Unlock()
	return s
}

// list returns the sessions registered now.
func (r *registry) list() []*Session {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Session, 0, len(r.sessions))
	for _, s := range r.sessions {
		out = append(out, s)
	}
	return out
}

// count returns the number of sessions registered now.
func (r *registry) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sessions)
}

// close marks the registry closed, rejects every buffered stream with
// WT_SESSION_GONE and returns the sessions, which the connection ends.
func (r *registry) close() []*Session {
	r.mu.Lock()
	r.closed = true
	sessions := make([]*Session, 0, len(r.sessions))
	for _, s := range r.sessions {
		sessions = append(sessions, s)
	}
	early := r.early
	r.early = nil
	r.earlyStreams, r.earlyDgrams, r.earlyBytes = 0, 0, 0
	if r.earlyTimer != nil {
		r.earlyTimer.Stop()
	}
	r.mu.Unlock()
	for _, e := range early {
		for _, s := range e.streams {
			s.reject(frames.WTSessionGone)
		}
	}
	return sessions
}

// deliverStream hands a WebTransport stream to its session, buffers it
// when the session does not exist yet, or rejects it.
func (r *registry) deliverStream(sid uint64, es earlyStream) {
	r.mu.Lock()
	if sess := r.sessions[sid]; sess != nil {
		r.mu.Unlock()
		sess.enqueue(es)
		return
	}
	if r.isGoneLocked(sid) || !r.isServer || r.closed {
		// A client knows all its sessions: an unknown ID is a closed one.
		r.mu.Unlock()
		es.reject(frames.WTSessionGone)
		return
	}
	e := r.early[sid]
	if r.earlyStreams >= r.limits.MaxBufferedStreams || (e != nil && len(e.streams) >= r.limits.MaxBufferedStreamsPerSession) || r.limits.MaxBufferedStreamsPerSession == 0 {
		r.mu.Unlock()
		es.reject(frames.WTBufferedStreamRejected)
		return
	}
	e = r.earlyLocked(sid)
	e.streams = append(e.streams, es)
	r.earlyStreams++
	r.mu.Unlock()
}

// bufferDatagram holds a datagram for a session that does not exist yet,
// or drops it past the limits (the draft allows dropping).
func (r *registry) bufferDatagram(sid uint64, payload []byte) (dropped string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.isServer || r.isGoneLocked(sid) || r.closed {
		return "no_session" // a client knows its sessions; gone sessions get nothing
	}
	if r.earlyDgrams >= r.limits.MaxBufferedDatagrams || r.earlyBytes+len(payload) > r.limits.MaxBufferedDatagramBytes {
		return "early_buffer_full"
	}
	if e := r.early[sid]; e == nil && r.earlyStreams+len(r.early) >= r.limits.MaxBufferedStreams {
		return "early_buffer_full" // bound the number of session IDs held, too
	} else if e != nil && len(e.datagrams) >= r.limits.MaxBufferedDatagramsPerSession {
		return "early_buffer_full"
	}
	e := r.earlyLocked(sid)
	e.datagrams = append(e.datagrams, payload)
	r.earlyDgrams++
	r.earlyBytes += len(payload)
	return ""
}

func (r *registry) earlyLocked(sid uint64) *earlyBuffer {
	if r.early == nil {
		r.early = make(map[uint64]*earlyBuffer)
	}
	e := r.early[sid]
	if e == nil {
		e = &earlyBuffer{created: time.Now()}
		r.early[sid] = e
		if r.earlyTimer == nil {
			r.earlyTimer = time.AfterFunc(r.limits.BufferTimeout, r.expireEarly)
		} else if len(r.early) == 1 {
			r.earlyTimer.Reset(r.limits.BufferTimeout)
		}
	}
	return e
}

// expireEarly rejects what was buffered for sessions that did not come in
// time, so nothing is kept for a session that never comes.
func (r *registry) expireEarly() {
	now := time.Now()
	var expired []*earlyBuffer
	r.mu.Lock()
	next := time.Duration(-1)
	for sid, e := range r.early {
		age := now.Sub(e.created)
		if age >= r.limits.BufferTimeout {
			expired = append(expired, e)
			r.dropEarlyLocked(sid, e)
		} else if rem := r.limits.BufferTimeout - age; next < 0 || rem < next {
			next = rem
		}
	}
	if next >= 0 && !r.closed {
		r.earlyTimer.Reset(next)
	}
	r.mu.Unlock()
	for _, e := range expired {
		for _, s := range e.streams {
			s.reject(frames.WTBufferedStreamRejected)
		}
	}
}

func (r *registry) dropEarlyLocked(sid uint64, e *earlyBuffer) {
	delete(r.early, sid)
	r.earlyStreams -= len(e.streams)
	r.earlyDgrams -= len(e.datagrams)
	for _, d := range e.datagrams {
		r.earlyBytes -= len(d)
	}
}

func (r *registry) isGoneLocked(sid uint64) bool {
	for i := range r.gone {
		if r.gone[i] == sid {
			return true
		}
	}
	return false
}

// registryStats is a snapshot of what a registry holds, for tests and
// diagnostics.
type registryStats struct {
	Sessions     int // registered sessions (pending and open)
	EarlyIDs     int // session IDs with buffered streams or datagrams
	EarlyStreams int
	EarlyDgrams  int
	EarlyBytes   int
	Ended        int // sessions ended since the connection started
	GoneRing     int // ended IDs remembered
}

func (r *registry) stats() registryStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return registryStats{
		Sessions:     len(r.sessions),
		EarlyIDs:     len(r.early),
		EarlyStreams: r.earlyStreams,
		EarlyDgrams:  r.earlyDgrams,
		EarlyBytes:   r.earlyBytes,
		Ended:        r.goneN,
		GoneRing:     len(r.gone),
	}
}
