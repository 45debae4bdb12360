package quicwt

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quicwt/quicwt/frames"
)

// WebTransport flow control of one session (draft-ietf-webtrans-http3-16,
// Section 5), in effect when both endpoints sent a nonzero initial limit
// (Section 5.1; settings.FlowControl decides per draft).
//
// What counts (Section 5.4): the stream body bytes of every stream of the
// session, never the stream header (signal or type, and session ID) nor the
// CONNECT stream's capsules. Our writes count when quic-go accepts them: a
// stream we reset has sent exactly its written bytes, its final size. What
// the peer sends counts as the application reads it, and a stream that
// ends unread (reset, stopped, or abandoned by the reader) counts up to its
// final size, which quic-go reports (SetReceiveFinalSizeCallback), so both
// ends agree on the credit used. Stream limits count every stream the peer
// opened, closed ones included (Section 5.6.2); credit comes back as the
// application finishes streams, and data credit as it reads, in windows
// that grow like QUIC's when the application reads faster than a window
// per few round trips (RFC 9000, Section 4.2).

// Stream kinds, indexes of the per-kind arrays.
const (
	kindBidi = 0
	kindUni  = 1
)

// ErrFlowControl is matched (errors.Is) by the end of a session that broke
// WebTransport flow control, by either side (WT_FLOW_CONTROL_ERROR): a peer
// exceeding our stream or data limit, or sending a WT_MAX_DATA or
// WT_MAX_STREAMS that does not increase.
var ErrFlowControl = errors.New("quicwt: WebTransport flow control violated (WT_FLOW_CONTROL_ERROR)")

// ErrStreamLimit is returned by OpenStream and OpenUniStream when no stream
// may be opened now: the session's stream credit from the peer
// (WT_MAX_STREAMS) or the connection's QUIC stream limit is used up.
// OpenStreamSync and OpenUniStreamSync wait instead.
var ErrStreamLimit = errors.New("quicwt: stream limit reached")

// sessionFlow is the flow-control state of a session, allocated only when
// flow control is in effect.
type sessionFlow struct {
	// Send side: what the peer allows.
	sendMaxData    atomic.Uint64 // the peer's WT_MAX_DATA
	sentData       atomic.Uint64 // body bytes written, or reserved by a Write
	sendMaxStreams [2]atomic.Uint64
	opened         [2]atomic.Uint64

	// Receive side: what we allow.
	recvData       atomic.Uint64 // body bytes consumed (see the file comment)
	recvPending    atomic.Uint64 // body bytes sent by the peer (final sizes) but not yet consumed
	recvMaxData    atomic.Uint64 // the WT_MAX_DATA we advertise
	recvGrantBelow atomic.Uint64 // grant more when the credit left drops below this

	mu sync.Mutex
	// credit is closed and replaced when the peer grants credit or a
	// deadline changes; made on first wait.
	credit         chan struct{}
	dataWindow     uint64
	maxDataWindow  uint64
	epochStart     time.Time
	epochData      uint64
	recvStreams    [2]uint64 // streams the peer opened
	closedStreams  [2]uint64 // of those, finished
	recvMaxStreams [2]uint64 // the WT_MAX_STREAMS we advertise
	streamWindow   [2]uint64
	// Values already written on the CONNECT stream, and the limits at
	// which we were blocked, plus one (zero: never).
	sentMaxData        uint64
	sentMaxStreams     [2]uint64
	blockedData        uint64
	sentBlockedData    uint64
	blockedStreams     [2]uint64
	sentBlockedStreams [2]uint64

	flushing atomic.Bool // a flush of the capsules above runs
}

// flowLimits are one side's initial limits (SETTINGS_WT_INITIAL_*).
type flowLimits struct{ data, bidi, uni uint64 }

// newSessionFlow starts a session's flow control from the peer's initial
// limits and ours (Section 5.5).
func newSessionFlow(peer, local flowLimits, maxWindow uint64) *sessionFlow {
	f := &sessionFlow{dataWindow: local.data, maxDataWindow: max(maxWindow, local.data)}
	f.sendMaxData.Store(peer.data)
	f.sendMaxStreams[kindBidi].Store(peer.bidi)
	f.sendMaxStreams[kindUni].Store(peer.uni)
	f.recvMaxData.Store(local.data)
	f.recvGrantBelow.Store(local.data / 2)
	f.recvMaxStreams = [2]uint64{local.bidi, local.uni}
	f.streamWindow = f.recvMaxStreams
	f.sentMaxData, f.sentMaxStreams = local.data, f.recvMaxStreams
	return f
}

// wakeLocked wakes everything waiting for credit.
func (f *sessionFlow) wakeLocked() {
	if f.credit != nil {
		close(f.credit)
		f.credit = nil
	}
}

func (f *sessionFlow) wake() {
	f.mu.Lock()
	f.wakeLocked()
	f.mu.Unlock()
}

// waitChanLocked returns the channel closed at the next grant.
func (f *sessionFlow) waitChanLocked() chan struct{} {
	if f.credit == nil {
		f.credit = make(chan struct{})
	}
	return f.credit
}

// flowViolation ends the session for a flow-control violation by the peer:
// the CONNECT stream is reset with WT_FLOW_CONTROL_ERROR (Sections 5.4,
// 5.6.2, 5.6.4).
func (s *Session) flowViolation(reason string) {
	s.resetConnect(frames.WTFlowControlError, fmt.Errorf("%w: %s", ErrFlowControl, reason))
}

// ---- sending ----

// reserveData takes up to n bytes of the peer's session data credit,
// waiting for credit until the deadline (zero: none) or the session's end.
// A blocked writer has WT_DATA_BLOCKED sent (Section 5.6.5).
func (s *Session) reserveData(n int, st *streamState) (int, error) {
	f := s.flowState()
	for {
		used, limit := f.sentData.Load(), f.sendMaxData.Load()
		if used < limit {
			k := min(uint64(n), limit-used)
			if f.sentData.CompareAndSwap(used, used+k) {
				return int(k), nil
			}
			continue
		}
		f.mu.Lock()
		if f.sendMaxData.Load() != limit || f.sentData.Load() != used {
			f.mu.Unlock()
			continue
		}
		if f.blockedData < limit+1 {
			f.blockedData = limit + 1
		}
		ch := f.waitChanLocked()
		f.mu.Unlock()
		s.flushFlow()
		if err := s.waitCredit(nil, ch, st); err != nil {
			return 0, err
		}
	}
}

// tryReserveData takes n bytes of credit at once, or nothing.
func (s *Session) tryReserveData(n int) bool {
	f := s.flowState()
	for {
		used, limit := f.sentData.Load(), f.sendMaxData.Load()
		if limit-used < uint64(n) || used > limit {
			f.mu.Lock()
			if f.blockedData < limit+1 {
				f.blockedData = limit + 1
			}
			f.mu.Unlock()
			s.flushFlow()
			return false
		}
		if f.sentData.CompareAndSwap(used, used+uint64(n)) {
			return true
		}
	}
}

// unreserveData returns credit a Write reserved but did not write.
func (s *Session) unreserveData(n int) {
	if n <= 0 {
		return
	}
	f := s.flowState()
	f.sentData.Add(^uint64(n - 1))
	f.wake()
}

// takeStream takes one stream of the peer's stream credit (Section 5.6.2).
// Without wait it fails with ErrStreamLimit when none is left; with wait it
// waits for WT_MAX_STREAMS, ctx or the session's end. A blocked opener has
// WT_STREAMS_BLOCKED sent (Section 5.6.3).
func (s *Session) takeStream(ctx context.Context, k int, wait bool) error {
	f := s.flowState()
	for {
		n, limit := f.opened[k].Load(), f.sendMaxStreams[k].Load()
		if n < limit {
			if f.opened[k].CompareAndSwap(n, n+1) {
				return nil
			}
			continue
		}
		f.mu.Lock()
		if f.sendMaxStreams[k].Load() != limit || f.opened[k].Load() != n {
			f.mu.Unlock()
			continue
		}
		if f.blockedStreams[k] < limit+1 {
			f.blockedStreams[k] = limit + 1
		}
		ch := f.waitChanLocked()
		f.mu.Unlock()
		s.flushFlow()
		if !wait {
			return ErrStreamLimit
		}
		if err := s.waitCredit(ctx, ch, nil); err != nil {
			return err
		}
	}
}

// untakeStream returns the credit of a stream that could not be opened
// (the peer never saw it).
func (s *Session) untakeStream(k int) {
	s.flowState().opened[k].Add(^uint64(0))
	s.flowState().wake()
}

// waitCredit waits for ch, the session's end, ctx (nil: none) or the write
// deadline of st (nil, or no deadline: none).
func (s *Session) waitCredit(ctx context.Context, ch chan struct{}, st *streamState) error {
	var done <-chan struct{}
	if ctx != nil {
		done = ctx.Done()
	}
	var timer <-chan time.Time
	if st != nil {
		if d := st.writeDeadline(); !d.IsZero() {
			wait := time.Until(d)
			if wait <= 0 {
				return errDeadline
			}
			t := time.NewTimer(wait)
			defer t.Stop()
			timer = t.C
		}
	}
	select {
	case <-ch:
		return nil
	case <-done:
		return ctx.Err()
	case <-timer:
		return errDeadline
	case <-s.ctx.Done():
		return s.Err()
	}
}

// deadlineError is a passed write deadline, as quic-go reports one.
type deadlineError struct{}

func (deadlineError) Error() string   { return "deadline exceeded" }
func (deadlineError) Timeout() bool   { return true }
func (deadlineError) Temporary() bool { return true }
func (deadlineError) Unwrap() error   { return errDeadlineExceeded }

var (
	errDeadline         error = deadlineError{}
	errDeadlineExceeded       = os.ErrDeadlineExceeded
)

// handleFlowCapsule applies a flow-control capsule of the peer. It returns
// false when the session ended for a violation.
func (s *Session) handleFlowCapsule(t frames.CapsuleType, v uint64) bool {
	f := s.flowState()
	switch t {
	case frames.CapsuleMaxData:
		f.mu.Lock()
		if v <= f.sendMaxData.Load() {
			f.mu.Unlock()
			s.flowViolation(fmt.Sprintf("WT_MAX_DATA %d does not increase the limit", v))
			return false
		}
		f.sendMaxData.Store(v)
		f.wakeLocked()
		f.mu.Unlock()
	case frames.CapsuleMaxStreamsBidi, frames.CapsuleMaxStreamsUni:
		k := kindBidi
		if t == frames.CapsuleMaxStreamsUni {
			k = kindUni
		}
		f.mu.Lock()
		if v <= f.sendMaxStreams[k].Load() {
			f.mu.Unlock()
			s.flowViolation(fmt.Sprintf("%v %d does not increase the limit", t, v))
			return false
		}
		f.sendMaxStreams[k].Store(v)
		f.wakeLocked()
		f.mu.Unlock()
	}
	// WT_DATA_BLOCKED and WT_STREAMS_BLOCKED need no answer: credit is
	// granted as the application consumes, not on request (Section 5.6).
	return true
}

// ---- receiving ----

// overLimit reports that the peer has sent more than the WT_MAX_DATA we
// advertised: what was consumed plus what final sizes show unread.
func (f *sessionFlow) overLimit() bool {
	return f.recvData.Load()+f.recvPending.Load() > f.recvMaxData.Load()
}

// checkPending ends the session when the peer sent past our data limit.
func (s *Session) checkPending() {
	f := s.flowState()
	if f.overLimit() {
		got, limit := f.recvData.Load()+f.recvPending.Load(), f.recvMaxData.Load()
		s.flowViolation(fmt.Sprintf("peer sent %d bytes past WT_MAX_DATA %d", got-limit, limit))
	}
}

// consumed counts n body bytes of the peer's as consumed, and grants more
// credit when half the window is used.
func (s *Session) consumed(n uint64) {
	f := s.flowState()
	got := f.recvData.Add(n)
	limit := f.recvMaxData.Load()
	if got+f.recvPending.Load() > limit {
		s.checkPending()
		return
	}
	if limit-got >= f.recvGrantBelow.Load() {
		return
	}
	f.mu.Lock()
	got, limit = f.recvData.Load(), f.recvMaxData.Load()
	grant := f.dataWindow > 0 && limit-got < f.dataWindow/2
	if grant {
		now := time.Now()
		if !f.epochStart.IsZero() {
			// RFC 9000, Section 4.2 (as quic-go tunes its windows): a
			// window consumed within a few round trips is too small.
			inEpoch := got - f.epochData
			if rtt := s.c.smoothedRTT(); rtt > 0 && inEpoch > f.dataWindow/2 {
				frac := float64(inEpoch) / float64(f.dataWindow)
				if now.Sub(f.epochStart) < time.Duration(4*frac*float64(rtt)) {
					f.dataWindow = min(2*f.dataWindow, f.maxDataWindow)
				}
			}
		}
		f.epochStart, f.epochData = now, got
		f.recvMaxData.Store(min(got+f.dataWindow, maxVarint))
		f.recvGrantBelow.Store(f.dataWindow / 2)
	}
	f.mu.Unlock()
	if grant {
		s.flushFlow()
	}
}

const maxVarint = 1<<62 - 1

// streamArrived counts a stream the peer opened. Beyond the limit we
// advertised it ends the session (Section 5.6.2) and returns false.
func (s *Session) streamArrived(k int) bool {
	f := s.flowState()
	f.mu.Lock()
	f.recvStreams[k]++
	over := f.recvStreams[k] > f.recvMaxStreams[k]
	n, limit := f.recvStreams[k], f.recvMaxStreams[k]
	f.mu.Unlock()
	if over {
		s.flowViolation(fmt.Sprintf("peer opened stream %d of a limit of %d (%s)", n, limit, kindName(k)))
	}
	return !over
}

// streamClosed gives back the credit of a finished stream of the peer's,
// in batches of an eighth of the window.
func (s *Session) streamClosed(k int) {
	f := s.flowState()
	f.mu.Lock()
	f.closedStreams[k]++
	target := min(f.closedStreams[k]+f.streamWindow[k], frames.MaxStreams)
	grant := f.streamWindow[k] > 0 && target >= f.recvMaxStreams[k]+max(1, f.streamWindow[k]/8)
	if grant {
		f.recvMaxStreams[k] = target
	}
	f.mu.Unlock()
	if grant {
		s.flushFlow()
	}
}

func kindName(k int) string {
	if k == kindUni {
		return "unidirectional"
	}
	return "bidirectional"
}

// ---- capsules ----

// hasPendingLocked reports whether a flow-control capsule waits to be
// written.
func (f *sessionFlow) hasPendingLocked() bool {
	return f.recvMaxData.Load() > f.sentMaxData || f.blockedData > f.sentBlockedData ||
		f.recvMaxStreams[0] > f.sentMaxStreams[0] || f.recvMaxStreams[1] > f.sentMaxStreams[1] ||
		f.blockedStreams[0] > f.sentBlockedStreams[0] || f.blockedStreams[1] > f.sentBlockedStreams[1]
}

// pendingCapsulesLocked appends the flow-control capsules whose values
// changed since they were last written, and marks them written.
func (f *sessionFlow) pendingCapsulesLocked(b []byte) []byte {
	if m := f.recvMaxData.Load(); m > f.sentMaxData {
		b = frames.AppendVarintCapsule(b, frames.CapsuleMaxData, m)
		f.sentMaxData = m
	}
	types := [2]frames.CapsuleType{frames.CapsuleMaxStreamsBidi, frames.CapsuleMaxStreamsUni}
	blockedTypes := [2]frames.CapsuleType{frames.CapsuleStreamsBlockedBidi, frames.CapsuleStreamsBlockedUni}
	for k := range 2 {
		if m := f.recvMaxStreams[k]; m > f.sentMaxStreams[k] {
			b = frames.AppendVarintCapsule(b, types[k], m)
			f.sentMaxStreams[k] = m
		}
		if m := f.blockedStreams[k]; m > f.sentBlockedStreams[k] {
			b = frames.AppendVarintCapsule(b, blockedTypes[k], m-1)
			f.sentBlockedStreams[k] = m
		}
	}
	if m := f.blockedData; m > f.sentBlockedData {
		b = frames.AppendVarintCapsule(b, frames.CapsuleDataBlocked, m-1)
		f.sentBlockedData = m
	}
	return b
}

// flushFlow writes the pending flow-control capsules on the CONNECT stream
// without blocking the caller (an application's Read or Write): when the
// stream cannot take them at once, a goroutine writes them. One flush runs
// at a time, so the values on the wire only increase.
func (s *Session) flushFlow() {
	f := s.flowState()
	if s.state.Load() == sessionPending {
		// Nothing goes on the CONNECT stream before the response's
		// HEADERS: the session flushes when it opens (flushOnOpen).
		return
	}
	if !f.flushing.CompareAndSwap(false, true) {
		return // the running flush sees what the caller changed
	}
	for {
		f.mu.Lock()
		b := f.pendingCapsulesLocked(make([]byte, 0, 32))
		f.mu.Unlock()
		if len(b) == 0 {
			f.flushing.Store(false)
			// A change made between the look and the Store is flushed by
			// whoever takes the flag next; take it if nobody did.
			f.mu.Lock()
			again := f.hasPendingLocked()
			f.mu.Unlock()
			if !again || !f.flushing.CompareAndSwap(false, true) {
				return
			}
			continue
		}
		if s.closingOrDone() {
			f.flushing.Store(false)
			return
		}
		if !s.tryWriteCapsules(b) {
			go s.flushFlowBlocking(b)
			return
		}
	}
}

// flushOnOpen writes what flow control had to say while the session was
// pending (a server's before its 2xx, a client's before the response).
func (s *Session) flushOnOpen() {
	if s.flowOn && s.flow.Load() != nil {
		s.flushFlow()
	}
}

// flushFlowBlocking writes b, waiting for the CONNECT stream (at most
// CloseTimeout), then goes on flushing.
func (s *Session) flushFlowBlocking(b []byte) {
	if err := s.writeCapsules(b, false); err != nil {
		s.flowState().flushing.Store(false)
		return
	}
	s.flowState().flushing.Store(false)
	s.flushFlow()
}
