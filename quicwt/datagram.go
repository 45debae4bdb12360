package quicwt

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/quic-go/quic-go"

	"github.com/quicwt/quicwt/frames"
	"github.com/quicwt/quicwt/varint"
)

// HTTP datagrams (RFC 9297, Section 2): the connection's receiver routes
// each QUIC datagram to its session by quarter stream ID; a session queues
// what it received (bounded by Limits.DatagramQueueBytes) until the
// application reads it.

// datagramReceiver is a connection's datagram-reading goroutine. It runs at
// a server while the connection has no session (to buffer early datagrams
// and to police quarter stream IDs at once) and, on both sides, from the
// first ReceiveDatagram of one of its sessions on; until then datagrams wait
// in quic-go's own queue, as for any quic-go application.
type datagramReceiver struct {
	wanted atomic.Bool // a session reads datagrams: keep the receiver running

	mu    sync.Mutex
	stop  context.CancelFunc // non-nil while the receiver runs
	ended bool               // the connection ended: never start again

	// The last session a datagram went to, touched only by the receiver.
	lastID   uint64
	lastSess *Session
}

// wantDatagrams keeps the datagram receiver running from now on (a session
// reads datagrams).
func (c *conn) wantDatagrams() {
	d := &c.dgrams
	if d.wanted.Load() {
		return
	}
	d.mu.Lock()
	d.wanted.Store(true)
	c.startDatagramsLocked()
	d.mu.Unlock()
}

func (c *conn) startDatagrams() {
	c.dgrams.mu.Lock()
	c.startDatagramsLocked()
	c.dgrams.mu.Unlock()
}

func (c *conn) startDatagramsLocked() {
	d := &c.dgrams
	if d.stop != nil || d.ended {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	d.stop = cancel
	go c.datagramLoop(ctx)
}

// pauseDatagrams stops the receiver when the first session comes and
// nobody has asked for datagrams yet: until a session calls ReceiveDatagram
// they wait in quic-go's queue (and are checked when read), and the
// connection needs no goroutine for them.
func (c *conn) pauseDatagrams() {
	d := &c.dgrams
	d.mu.Lock()
	if d.stop != nil && !d.wanted.Load() {
		d.stop()
	}
	d.mu.Unlock()
}

// endDatagrams keeps the receiver from starting again once the connection
// has ended (the running one sees the connection's end).
func (c *conn) endDatagrams() {
	c.dgrams.mu.Lock()
	c.dgrams.ended = true
	c.dgrams.mu.Unlock()
}

// datagramLoop receives QUIC datagrams and routes each HTTP datagram to its
// session by quarter stream ID (RFC 9297, Section 2.1).
func (c *conn) datagramLoop(ctx context.Context) {
	d := &c.dgrams
	for {
		b, err := c.qc.ReceiveDatagram(ctx)
		if err != nil {
			d.mu.Lock()
			if ctx.Err() != nil && d.wanted.Load() && !d.ended {
				// Paused, but a session asked for datagrams meanwhile.
				ctx, d.stop = context.WithCancel(context.Background())
				d.mu.Unlock()
				continue
			}
			d.stop = nil
			d.mu.Unlock()
			return
		}
		sid, payload, err := frames.ParseDatagram(b)
		if err != nil {
			c.fail(err)
			return
		}
		sess := d.lastSess
		if sess == nil || d.lastID != sid || sess.isDone() {
			sess = c.reg.get(sid)
			d.lastID, d.lastSess = sid, sess
		}
		if sess != nil {
			sess.pushDatagram(payload)
			continue
		}
		if reason := c.reg.bufferDatagram(sid, payload); reason != "" {
			c.ql.datagramDroppedID(sid, reason)
		}
	}
}

// dgramRing is a session's queue of received datagrams, a ring buffer.
type dgramRing struct {
	wait        chan struct{} // a ReceiveDatagram waits
	buf         [][]byte
	head, n     int
	bytes       int
	drops       atomic.Uint64
	dropsBefore uint64 // drops of rings replaced at the session's end
}

// ringLocked returns s.dq, making it. Called with s.mu held.
func (s *Session) ringLocked() *dgramRing {
	if s.dq == nil {
		s.dq = new(dgramRing)
	}
	return s.dq
}

// SendDatagram sends an HTTP datagram on the session (RFC 9297, Section
// 2.1). Datagrams are unreliable; a payload that cannot fit one QUIC
// packet is a *DatagramTooLargeError, never a silent drop. By default it
// blocks while quic-go's send queue (32 datagrams per connection) is
// full; with a DatagramSendPolicy (SetDatagramSendPolicy) it never
// blocks and drops by the policy instead.
func (s *Session) SendDatagram(p []byte) error {
	if err := s.openCheck(); err != nil {
		return err
	}
	h3, tp := s.c.datagramSupport()
	if !h3 {
		return ErrDatagramsDisabled
	}
	bp := dgramPool.Get().(*[]byte)
	b := append(frames.AppendDatagramHeader((*bp)[:0], s.id), p...)
	if d := s.sender(); d != nil {
		*bp = b
		if !tp {
			dgramPool.Put(bp)
			return ErrDatagramsDisabled
		}
		return s.queueDatagram(d, bp) // datagram_send.go
	}
	err := s.c.sendDatagram(b)
	*bp = b[:0]
	dgramPool.Put(bp)
	if err != nil {
		if tl, ok := errors.AsType[*quic.DatagramTooLargeError](err); ok {
			return &DatagramTooLargeError{Max: max(0, int(tl.MaxDatagramPayloadSize)-s.datagramHeaderLen())}
		}
		if !tp {
			return ErrDatagramsDisabled
		}
		return translateConnErr(err)
	}
	return nil
}

var dgramPool = sync.Pool{New: func() any { b := make([]byte, 0, 1500); return &b }}

// probe is a payload larger than any QUIC packet, used to learn the current
// maximum datagram size from quic-go without sending anything.
var probe [1 << 16]byte

// MaxDatagramSize returns the largest payload SendDatagram accepts now: the
// peer's max_datagram_frame_size and the path MTU, less the DATAGRAM frame
// overhead and the quarter stream ID.
func (s *Session) MaxDatagramSize() int {
	err := s.c.sendDatagram(probe[:])
	if tl, ok := errors.AsType[*quic.DatagramTooLargeError](err); ok {
		return max(0, int(tl.MaxDatagramPayloadSize)-s.datagramHeaderLen())
	}
	return 0
}

// datagramHeaderLen is the length of the session's quarter stream ID.
func (s *Session) datagramHeaderLen() int { return varint.Len(s.id / 4) }

// pushDatagram queues a received datagram payload, dropping it when the
// queue is full or the session is closed.
func (s *Session) pushDatagram(p []byte) {
	s.mu.Lock()
	if s.closeErr != nil {
		s.mu.Unlock()
		return
	}
	q := s.ringLocked()
	if q.bytes+len(p) > s.lim.DatagramQueueBytes {
		s.mu.Unlock()
		q.drops.Add(1)
		s.ql.datagramDropped(s, "receive_queue_full")
		return
	}
	if q.n == len(q.buf) {
		grown := make([][]byte, max(16, 2*len(q.buf)))
		for i := 0; i < q.n; i++ {
			grown[i] = q.buf[(q.head+i)%len(q.buf)]
		}
		q.buf, q.head = grown, 0
	}
	q.buf[(q.head+q.n)%len(q.buf)] = p
	q.n++
	q.bytes += len(p)
	w := q.wait
	s.mu.Unlock()
	wake(w)
}

// ReceiveDatagram returns the next datagram received on the session. The
// connection reads datagrams from quic-go's queue from the first call of
// ReceiveDatagram on any of its sessions on; until then (once it has a
// session) they wait in that queue, which holds 128 and drops beyond, as
// for a quic-go application that does not read them.
func (s *Session) ReceiveDatagram(ctx context.Context) ([]byte, error) {
	s.c.wantDatagrams()
	for {
		s.mu.Lock()
		if q := s.dq; q != nil && q.n > 0 {
			p := q.buf[q.head]
			q.buf[q.head] = nil
			q.head = (q.head + 1) % len(q.buf)
			q.n--
			q.bytes -= len(p)
			if q.n > 0 {
				wake(q.wait)
			}
			s.mu.Unlock()
			return p, nil
		}
		if s.closeErr != nil {
			err := s.closeErr
			s.mu.Unlock()
			return nil, err
		}
		q := s.ringLocked()
		if q.wait == nil {
			q.wait = make(chan struct{}, 1)
		}
		w := q.wait
		s.mu.Unlock()
		select {
		case <-w:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.ctx.Done():
		}
	}
}

// DatagramsDropped counts received datagrams dropped because the receive
// queue (Limits.DatagramQueueBytes) was full.
func (s *Session) DatagramsDropped() uint64 {
	s.mu.Lock()
	q := s.dq
	s.mu.Unlock()
	if q == nil {
		return 0
	}
	return q.dropsBefore + q.drops.Load()
}
