package quicwt

import (
	"slices"
	"sync"
)

// Send priorities: the W3C WebTransport API's sendOrder and sendGroup
// (https://www.w3.org/TR/webtransport/#dom-webtransportsendstreamoptions)
// on quic-go's stream scheduler.
//
// What quic-go v0.64 offers: SendStream.SetPriority(urgency, incremental),
// RFC 9218's parameters, connection-wide. There are 8 urgency levels (0
// first, 7 last) served in strict order: a packet carries data of the
// most urgent streams that have data to send; within a level, incremental
// streams take turns (round-robin per packet), non-incremental ones go in
// stream ID order. The default is urgency 3, incremental.
//
// How sendOrder maps onto it, per session and per send group: streams with
// sendOrder 0 (the default) keep urgency 3, like streams that never set
// one. The distinct positive sendOrders of a group's open streams are
// ranked, highest first: the highest gets urgency 0, the second 1, all the
// others 2. The distinct negative ones likewise get 4, 5, 6, and 7 for the
// rest. Every stream is incremental, so equal sendOrders share bandwidth,
// as the W3C API asks. The mapping is redone when a stream's sendOrder or
// group changes, for all streams of the group whose rank moves.
//
// Guaranteed: within a group, a stream is never sent after one with a
// lower sendOrder when both have data and their ranks are distinguished
// (the three highest positive orders, 0, and the three negative orders
// closest to 0); streams whose orders share a level take turns. Not
// guaranteed: the order among positive sendOrders below the third highest
// (they share urgency 2), among negative ones below the third (urgency
// 7); fairness between groups, which W3C asks for: each group's most
// urgent streams take turns with other groups' streams of the same level,
// but a group's less urgent streams wait for every group's more urgent
// ones (quic-go has one strict ladder per connection, not one per group).
// Priorities are connection-wide: on a connection shared by several
// sessions, a session's high sendOrder goes before other sessions'
// default streams. Data already sent, connection flow control and the
// peer's reading are outside the scheduler: priority orders what is
// written next, it cannot overtake bytes in flight, and a stream blocked
// on connection-level flow control waits for credit whatever its order.
// Likewise with WebTransport flow control (flow.go): streams blocked on
// the session's data credit share it as they come, not in send order, so
// a session whose peer's window is the bottleneck sees its priorities only
// within the data its credit lets through.

// SendGroup is a group of a session's send streams whose sendOrders are
// compared among themselves (the W3C WebTransportSendGroup). Streams not
// in a group form the session's default group.
type SendGroup struct {
	sess *Session
}

// NewSendGroup returns a new send group of the session.
func (s *Session) NewSendGroup() *SendGroup { return &SendGroup{sess: s} }

// prioState is a session's prioritized streams, made on first use.
type prioState struct {
	mu      sync.Mutex
	entries []*prioEntry
}

// prioEntry is a stream whose sendOrder or group was set.
type prioEntry struct {
	str     sendStream
	st      *streamState
	order   int64
	group   *SendGroup
	urgency int8 // what was set on the stream, defaultUrgency before
}

const defaultUrgency = 3 // quic-go's default

func (s *Session) prioLocked() *prioState {
	if s.prio == nil {
		s.prio = new(prioState)
	}
	return s.prio
}

// setSendPriority records a stream's order and group and reassigns the
// urgencies of the group's streams (and of the group it left).
func (s *Session) setSendPriority(str sendStream, st *streamState, order *int64, group **SendGroup) {
	s.mu.Lock()
	p := s.prioLocked()
	s.mu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	// Forget streams whose send side is done.
	p.entries = slices.DeleteFunc(p.entries, func(e *prioEntry) bool { return e.st.done.Load()&doneWrite != 0 })
	var e *prioEntry
	for _, x := range p.entries {
		if x.st == st {
			e = x
			break
		}
	}
	if e == nil {
		if st.done.Load()&doneWrite != 0 {
			return
		}
		e = &prioEntry{str: str, st: st, urgency: defaultUrgency}
		p.entries = append(p.entries, e)
	}
	old := e.group
	if order != nil {
		e.order = *order
	}
	if group != nil {
		e.group = *group
	}
	p.assignLocked(e.group)
	if old != e.group {
		p.assignLocked(old)
	}
}

// assignLocked sets the urgency of every stream of group g.
func (p *prioState) assignLocked(g *SendGroup) {
	var pos, neg []int64
	for _, e := range p.entries {
		if e.group != g {
			continue
		}
		switch {
		case e.order > 0 && !slices.Contains(pos, e.order):
			pos = append(pos, e.order)
		case e.order < 0 && !slices.Contains(neg, e.order):
			neg = append(neg, e.order)
		}
	}
	slices.SortFunc(pos, func(a, b int64) int { return cmpDesc(a, b) })
	slices.SortFunc(neg, func(a, b int64) int { return cmpDesc(a, b) })
	for _, e := range p.entries {
		if e.group != g {
			continue
		}
		u := urgencyFor(e.order, pos, neg)
		if u != e.urgency {
			e.urgency = u
			e.str.SetPriority(u, true)
		}
	}
}

func cmpDesc(a, b int64) int {
	switch {
	case a > b:
		return -1
	case a < b:
		return 1
	}
	return 0
}

// urgencyFor maps a sendOrder to a quic-go urgency given the group's
// distinct positive and negative orders, each sorted highest first.
func urgencyFor(order int64, pos, neg []int64) int8 {
	switch {
	case order > 0:
		return int8(min(slices.Index(pos, order), 2))
	case order < 0:
		return int8(4 + min(slices.Index(neg, order), 3))
	}
	return defaultUrgency
}

// SetSendOrder sets the stream's send order (the W3C sendOrder): among
// the streams of its send group, data of streams with a higher order is
// sent first; equal orders share bandwidth. The default is 0. See
// priority.go for what quic-go's scheduler guarantees.
func (s *Stream) SetSendOrder(order int64) {
	s.st.sess.setSendPriority(s.str, &s.st, &order, nil)
}

// SetSendGroup moves the stream into group g (nil: the session's default
// group). A group of another session is ignored.
func (s *Stream) SetSendGroup(g *SendGroup) {
	if g != nil && g.sess != s.st.sess {
		return
	}
	s.st.sess.setSendPriority(s.str, &s.st, nil, &g)
}

// SetSendOrder is Stream.SetSendOrder for a unidirectional stream.
func (s *SendStream) SetSendOrder(order int64) {
	s.st.sess.setSendPriority(s.str, &s.st, &order, nil)
}

// SetSendGroup is Stream.SetSendGroup for a unidirectional stream.
func (s *SendStream) SetSendGroup(g *SendGroup) {
	if g != nil && g.sess != s.st.sess {
		return
	}
	s.st.sess.setSendPriority(s.str, &s.st, nil, &g)
}
