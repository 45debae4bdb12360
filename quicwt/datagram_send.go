package quicwt

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// The datagram send policy. Without one, SendDatagram hands each datagram
// to quic-go, whose send queue holds 32 DATAGRAM frames per connection and
// blocks the caller while it is full (quic-go v0.64, datagram_queue.go:
// datagramQueue.Add waits for a frame to be dequeued), so a sender that
// outpaces the path is slowed down and its datagrams grow old in the
// queue. With a policy, SendDatagram never blocks: it queues the datagram
// in the session's own bounded queue, and one goroutine per session (only
// while the queue is not empty) feeds quic-go from it, dropping what has
// waited longer than MaxAge. What is dropped is counted.

// ErrDatagramDropped is returned by SendDatagram under a send policy that
// drops the newest datagram (DropOldest false) when the queue is full.
var ErrDatagramDropped = errors.New("quicwt: datagram dropped: send queue full")

// DatagramSendPolicy makes SendDatagram non-blocking (see
// Session.SetDatagramSendPolicy).
type DatagramSendPolicy struct {
	// MaxQueued bounds the datagrams waiting in the session's queue, and
	// MaxQueuedBytes their payload bytes. Defaults 64 and 64 KiB.
	MaxQueued      int
	MaxQueuedBytes int
	// MaxAge drops a queued datagram that has waited longer (the W3C
	// API's outgoingMaxAge). Zero means no limit. The age is checked when
	// the datagram leaves this queue for quic-go's, which holds up to 32
	// more per connection; so a datagram is sent at most MaxAge plus the
	// time quic-go takes to send what is ahead of it in its own queue
	// after it was queued.
	MaxAge time.Duration
	// DropOldest makes a full queue drop its oldest datagram to take the
	// new one (fresh data wins, as media and game state want), and
	// SendDatagram then succeeds. Otherwise the new datagram is dropped
	// and SendDatagram returns ErrDatagramDropped.
	DropOldest bool
}

// DatagramSendStats counts what happened to the datagrams SendDatagram
// took under a send policy.
type DatagramSendStats struct {
	Sent          uint64 // handed to quic-go
	DroppedFull   uint64 // dropped because the queue was full
	DroppedMaxAge uint64 // dropped because older than MaxAge
	// Failed counts datagrams quic-go refused when their turn came: the
	// connection had ended, or the path's datagram size had shrunk below
	// theirs.
	Failed uint64
	Queued int // waiting now
}

// dgramSender is a session's send queue under a policy.
type dgramSender struct {
	on      atomic.Bool  // a policy is set
	maxSize atomic.Int64 // the largest datagram quic-go took (header included), a cache
	mu      sync.Mutex
	pol     DatagramSendPolicy
	buf     []queuedDgram // ring of capacity pol.MaxQueued
	head, n int
	bytes   int
	running bool // the feeding goroutine runs

	sent, dropFull, dropAge, failed atomic.Uint64
}

type queuedDgram struct {
	b  *[]byte // header and payload, from dgramPool
	at time.Time
}

// SetDatagramSendPolicy sets how SendDatagram behaves when datagrams come
// faster than the connection sends them. nil restores the default
// (blocking while quic-go's queue is full); datagrams already queued under
// the previous policy are still sent. Safe to call at any time.
func (s *Session) SetDatagramSendPolicy(p *DatagramSendPolicy) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p == nil {
		if d := s.dsend.Load(); d != nil {
			d.on.Store(false)
		}
		return
	}
	pol := *p
	if pol.MaxQueued <= 0 {
		pol.MaxQueued = 64
	}
	if pol.MaxQueuedBytes <= 0 {
		pol.MaxQueuedBytes = 64 << 10
	}
	d := s.dsend.Load()
	if d == nil {
		d = new(dgramSender)
		s.dsend.Store(d)
	}
	d.mu.Lock()
	d.pol = pol
	if len(d.buf) < pol.MaxQueued {
		grown := make([]queuedDgram, pol.MaxQueued)
		for i := 0; i < d.n; i++ {
			grown[i] = d.buf[(d.head+i)%len(d.buf)]
		}
		d.buf, d.head = grown, 0
	}
	// A smaller bound applies to new datagrams; what is queued stays.
	d.mu.Unlock()
	d.on.Store(true)
}

// DatagramSendStats returns the counters of the session's send policy.
func (s *Session) DatagramSendStats() DatagramSendStats {
	d := s.dsend.Load()
	if d == nil {
		return DatagramSendStats{}
	}
	d.mu.Lock()
	n := d.n
	d.mu.Unlock()
	return DatagramSendStats{Sent: d.sent.Load(), DroppedFull: d.dropFull.Load(), DroppedMaxAge: d.dropAge.Load(), Failed: d.failed.Load(), Queued: n}
}

// sender returns the session's policy queue when a policy is set: one
// atomic load on the default path.
func (s *Session) sender() *dgramSender {
	if d := s.dsend.Load(); d != nil && d.on.Load() {
		return d
	}
	return nil
}

// checkSize returns a *DatagramTooLargeError for a datagram (header
// included) that quic-go would refuse now, learning the limit from quic-go
// (without sending anything) only when b is larger than the largest size
// seen to fit.
func (s *Session) checkSize(d *dgramSender, b []byte) error {
	if int64(len(b)) <= d.maxSize.Load() {
		return nil
	}
	max := s.MaxDatagramSize() + s.datagramHeaderLen()
	if len(b) > max {
		return &DatagramTooLargeError{Max: max - s.datagramHeaderLen()}
	}
	d.maxSize.Store(int64(max))
	return nil
}

// queueDatagram queues b (header and payload) under the policy; it owns
// bp from now on.
func (s *Session) queueDatagram(d *dgramSender, bp *[]byte) error {
	if err := s.checkSize(d, *bp); err != nil {
		dgramPool.Put(bp)
		return err
	}
	now := time.Now()
	d.mu.Lock()
	d.expireLocked(s, now)
	size := len(*bp)
	for d.n > 0 && (d.n >= d.pol.MaxQueued || d.bytes+size > d.pol.MaxQueuedBytes) {
		if !d.pol.DropOldest {
			break
		}
		old := d.popLocked()
		dgramPool.Put(old.b)
		d.dropFull.Add(1)
		s.ql.datagramDropped(s, "send_queue_full")
	}
	if d.n >= d.pol.MaxQueued || d.n >= len(d.buf) || d.bytes+size > d.pol.MaxQueuedBytes {
		d.mu.Unlock()
		dgramPool.Put(bp)
		d.dropFull.Add(1)
		s.ql.datagramDropped(s, "send_queue_full")
		if d.pol.DropOldest {
			return nil // larger than the whole queue: dropped, and counted
		}
		return ErrDatagramDropped
	}
	d.buf[(d.head+d.n)%len(d.buf)] = queuedDgram{b: bp, at: now}
	d.n++
	d.bytes += size
	start := !d.running
	d.running = true
	d.mu.Unlock()
	if start {
		go s.feedDatagrams(d)
	}
	return nil
}

func (d *dgramSender) popLocked() queuedDgram {
	q := d.buf[d.head]
	d.buf[d.head] = queuedDgram{}
	d.head = (d.head + 1) % len(d.buf)
	d.n--
	d.bytes -= len(*q.b)
	return q
}

// expireLocked drops the queued datagrams older than MaxAge.
func (d *dgramSender) expireLocked(s *Session, now time.Time) {
	if d.pol.MaxAge <= 0 {
		return
	}
	for d.n > 0 && now.Sub(d.buf[d.head].at) > d.pol.MaxAge {
		q := d.popLocked()
		dgramPool.Put(q.b)
		d.dropAge.Add(1)
		s.ql.datagramDropped(s, "max_age")
	}
}

// feedDatagrams hands the queue to quic-go, one datagram at a time (each
// SendDatagram may wait for room in quic-go's queue), and exits when the
// queue is empty or the session has ended.
func (s *Session) feedDatagrams(d *dgramSender) {
	for {
		d.mu.Lock()
		if s.isDone() {
			for d.n > 0 {
				q := d.popLocked()
				dgramPool.Put(q.b)
			}
		}
		d.expireLocked(s, time.Now())
		if d.n == 0 {
			d.running = false
			d.mu.Unlock()
			return
		}
		q := d.popLocked()
		d.mu.Unlock()
		err := s.c.sendDatagram(*q.b) // quic-go copies it
		dgramPool.Put(q.b)
		if err != nil {
			d.failed.Add(1)
			s.ql.datagramDropped(s, "send_failed")
			continue
		}
		d.sent.Add(1)
	}
}
