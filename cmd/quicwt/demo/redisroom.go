package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// The Redis chat link: one chat room across every instance sharing a
// Redis server.
//
// Messages go over one pub/sub channel (at most once: an event published
// while an instance is cut off from Redis does not reach it). Membership
// lives in one hash, member -> {instance, name}, and each instance keeps
// a liveness key with a TTL, refreshed by its heartbeat:
//
//	quicwt:chat:events           pub/sub channel of ChatEvent JSON
//	quicwt:chat:members          hash: "<instance>/<id>" -> {"i":instance,"n":name}
//	quicwt:chat:alive:<instance> "1", expires after the TTL without a heartbeat
//	quicwt:chat:reaped:<instance> set when the survivors announced its members' leaves
//
// Exactly-once leaves: a leave is announced only by whoever deletes the
// member's field from the hash, and deleting and publishing are one Lua
// script (HDEL, then PUBLISH only if HDEL removed it), so exactly one
// instance announces each leave even when several try at once, and a
// crash cannot come between the two. A member leaving normally is
// deleted by its own instance. When an instance dies (SIGKILL, power
// loss), its liveness key expires; every survivor's heartbeat looks for
// members whose instance has no liveness key and runs the same script
// for them, so their leaves are announced once, by one survivor, within
// TTL + one heartbeat. A survivor reaps only after it has itself been
// back for one TTL, and an instance cut off from Redis retries at least
// every TTL/2, so that after an outage or a Redis restart the live
// instances have refreshed their keys before anyone judges them dead.
//
// Joins are one script too (HSET, PUBLISH only if the field is new). A
// restarted instance is a new instance (a new random ID): it announces
// nothing for members of other instances, and its own old members are
// reaped as above.
//
// Faults: while Redis is away, the room keeps working for the members of
// this instance, events for the others are dropped (comments) or kept as
// state (joins and leaves), and the heartbeat retries with backoff. When
// Redis is back the instance rejoins: leaves that happened meanwhile are
// announced (once, by the script), joins that happened meanwhile are
// announced, and members that were already announced are registered again
// silently when Redis lost them (a restart without persistence); if the
// survivors had meanwhile announced this instance's members as gone (it
// was cut off for more than the TTL while Redis stayed up), they are
// announced as entering again.
//
// Memory stays bounded whatever other publishers send: events larger
// than maxEventSize, with unknown kinds, empty or long names, are
// dropped, and the outgoing queue is bounded (see Publish).

// RedisRoomOptions tune the Redis chat link.
type RedisRoomOptions struct {
	// Heartbeat is how often the instance refreshes its liveness key and
	// looks for dead instances (default 1 s).
	Heartbeat time.Duration
	// TTL is how long the liveness key lives without a heartbeat: a dead
	// instance's members are announced as gone within TTL + Heartbeat
	// (default 4 s).
	TTL time.Duration
	// QueueLen bounds the events waiting to be sent to Redis (default
	// 4096).
	QueueLen int
}

const (
	chatChannel   = "quicwt:chat:events"
	membersKey    = "quicwt:chat:members"
	alivePrefix   = "quicwt:chat:alive:"
	reapedPrefix  = "quicwt:chat:reaped:"
	reapedTTL     = time.Hour
	maxEventSize  = maxChatMessage + 1024
	maxBackoff    = 8 * time.Second
	defaultChatHB = time.Second
)

// enterScript registers a member and, when the field is new and ARGV[4]
// is "1", publishes its join: one atomic step.
var enterScript = redis.NewScript(`
local new = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if new == 1 and ARGV[4] == '1' then redis.call('PUBLISH', KEYS[2], ARGV[3]) end
return new`)

// leaveScript deletes a member and, only if it was there, publishes its
// leave: whoever runs it first announces, nobody else.
var leaveScript = redis.NewScript(`
if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 then
  redis.call('PUBLISH', KEYS[2], ARGV[2])
  return 1
end
return 0`)

// redisRoom is the Redis ChatLink.
type redisRoom struct {
	r    *Redis
	log  *slog.Logger
	inst string // this instance's random ID
	opts RedisRoomOptions

	ops     chan ChatEvent // local events in order, to the worker
	closing chan struct{}  // closed by Close: flush and stop
	done    chan struct{}  // closed when the worker has stopped

	mu      sync.Mutex
	local   map[string]*presence // member ID -> its state in Redis
	resync  bool                 // an enter or leave did not fit in ops
	dropped int                  // comments dropped since the last report
	closed  bool
}

// presence is what the worker knows of a local member.
type presence struct {
	name       string
	left       bool // left locally
	registered bool // its field is in the hash and its join was announced
}

// memberRecord is a members hash value.
type memberRecord struct {
	Instance string `json:"i"`
	Name     string `json:"n"`
}

// NewRedisRoom returns a chat link on r with a fresh instance ID. Its
// worker runs from Run; Close withdraws the instance.
func NewRedisRoom(r *Redis, opts RedisRoomOptions) ChatLink {
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = defaultChatHB
	}
	if opts.TTL <= opts.Heartbeat {
		opts.TTL = 4 * opts.Heartbeat
	}
	if opts.QueueLen <= 0 {
		opts.QueueLen = 4096
	}
	var id [6]byte
	rand.Read(id[:])
	inst := hex.EncodeToString(id[:])
	return &redisRoom{
		r: r, log: r.log.With("instance", inst), inst: inst, opts: opts,
		ops: make(chan ChatEvent, opts.QueueLen), closing: make(chan struct{}), done: make(chan struct{}),
		local: map[string]*presence{},
	}
}

func (l *redisRoom) Describe() string {
	return fmt.Sprintf("Redis %s, channel %s, instance %s (heartbeat %v, TTL %v)", l.r.Addr(), chatChannel, l.inst, l.opts.Heartbeat, l.opts.TTL)
}

// Publish queues a local event without blocking. Joins and leaves are
// also recorded in l.local, so that one that does not fit in the queue
// is not lost: the worker reconciles. A comment that does not fit is
// dropped (counted, reported at the next heartbeat).
func (l *redisRoom) Publish(ev ChatEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	switch ev.Kind {
	case EventEnter:
		l.local[ev.Member] = &presence{name: ev.Name}
	case EventLeave:
		if p := l.local[ev.Member]; p != nil {
			p.left = true
		}
	}
	select {
	case l.ops <- ev:
	default:
		if ev.Kind == EventComment {
			l.dropped++
		} else {
			l.resync = true
		}
	}
}

// Run is the link's worker: it subscribes to the channel and delivers
// other instances' events, sends the local ones, and beats.
func (l *redisRoom) Run(ctx context.Context, deliver func(ChatEvent)) {
	defer close(l.done)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		l.subscribe(ctx, deliver)
	}()
	defer wg.Wait()

	w := worker{l: l}
	w.beat(ctx)
	t := time.NewTimer(l.opts.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.closing:
			w.flush(ctx)
			return
		case ev := <-l.ops:
			w.send(ctx, ev)
		case <-t.C:
			w.beat(ctx)
			t.Reset(w.wait())
		}
	}
}

// Close flushes the queue (until ctx ends), deletes this instance's
// liveness key so that the survivors announce any member still
// registered at once, and stops the worker.
func (l *redisRoom) Close(ctx context.Context) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	close(l.closing)
	select {
	case <-l.done:
	case <-ctx.Done():
	}
	dctx, cancel := context.WithTimeout(context.Background(), redisIOTimeout)
	defer cancel()
	if err := l.r.client.Del(dctx, alivePrefix+l.inst).Err(); err != nil {
		return fmt.Errorf("chat link: withdrawing instance %s: %w", l.inst, err)
	}
	return nil
}

// worker is the state of Run's loop (its goroutine only).
type worker struct {
	l           *redisRoom
	up          bool
	connectedAt time.Time
	failures    int
}

// wait is the time to the next beat: the heartbeat while up, an
// exponential backoff while Redis is away.
func (w *worker) wait() time.Duration {
	if w.up || w.failures == 0 {
		return w.l.opts.Heartbeat
	}
	return w.l.backoff(w.failures)
}

// backoff is the wait after n failures in a row: doubling from the
// heartbeat, at most half the TTL (and maxBackoff), so that every
// instance is back within TTL/2 of Redis: the reapers' grace after their
// own return is one TTL.
func (l *redisRoom) backoff(n int) time.Duration {
	limit := max(min(maxBackoff, l.opts.TTL/2), l.opts.Heartbeat)
	return min(l.opts.Heartbeat<<min(n, 6), limit)
}

// fail records a failed command: the link goes down until a beat
// succeeds.
func (w *worker) fail(err error) {
	w.l.r.observe(err)
	if w.up {
		w.l.log.Debug("chat link down", "err", err)
	}
	w.up = false
	w.failures++
}

func (w *worker) cmdCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 2*redisIOTimeout)
}

// beat refreshes the liveness key (SET ... GET). When the key was not
// there (first beat, Redis back after a failure or restarted between two
// beats, or this instance judged dead), the instance rejoins: it
// reconciles its members, announcing them again only if the survivors
// announced them gone. Then it reaps dead instances.
func (w *worker) beat(ctx context.Context) {
	l := w.l
	cctx, cancel := w.cmdCtx(ctx)
	defer cancel()
	var reaped *redis.IntCmd
	var prev *redis.StatusCmd
	_, err := l.r.client.Pipelined(cctx, func(p redis.Pipeliner) error {
		reaped = p.Exists(cctx, reapedPrefix+l.inst)
		prev = p.SetArgs(cctx, alivePrefix+l.inst, "1", redis.SetArgs{TTL: l.opts.TTL, Get: true})
		return nil
	})
	if errors.Is(err, redis.Nil) {
		err = nil // the GET of a key that was not there
	}
	if err != nil {
		w.fail(err)
		return
	}
	l.r.observe(nil)
	if rejoin := errors.Is(prev.Err(), redis.Nil); rejoin || !w.up {
		wasReaped := reaped.Val() == 1
		if err := w.reconcile(ctx, wasReaped); err != nil {
			w.fail(err)
			return
		}
		switch {
		case w.connectedAt.IsZero():
			l.log.Info("chat link joined", "channel", chatChannel)
		case rejoin:
			l.log.Info("chat link rejoined", "reannounced", wasReaped)
		}
		// Back from an outage (or Redis restarted): the others may not
		// have refreshed their liveness keys yet; reap only after a TTL.
		w.connectedAt = time.Now()
		w.up, w.failures = true, 0
	}
	l.mu.Lock()
	resync, dropped := l.resync, l.dropped
	l.resync, l.dropped = false, 0
	l.mu.Unlock()
	if dropped > 0 {
		l.log.Warn("chat link: outgoing queue full, comments not sent to other instances", "dropped", dropped)
	}
	if resync {
		if err := w.reconcile(ctx, false); err != nil {
			w.fail(err)
			return
		}
	}
	if time.Since(w.connectedAt) >= l.opts.TTL {
		if err := w.reap(ctx); err != nil {
			w.fail(err)
		}
	}
}

// send handles one local event in order.
func (w *worker) send(ctx context.Context, ev ChatEvent) {
	l := w.l
	if !w.up {
		return // comments are dropped; joins and leaves wait in l.local
	}
	ev.Owner = l.inst
	var err error
	switch ev.Kind {
	case EventComment:
		cctx, cancel := w.cmdCtx(ctx)
		err = l.r.client.Publish(cctx, chatChannel, mustJSON(ev)).Err()
		cancel()
	case EventEnter, EventLeave:
		err = w.sync(ctx, ev.Member, false)
	}
	if err != nil {
		w.fail(err)
	}
}

// flush sends what is queued, as Close asks.
func (w *worker) flush(ctx context.Context) {
	for {
		select {
		case ev := <-w.l.ops:
			w.send(ctx, ev)
		default:
			return
		}
	}
}

// sync brings member id's state in Redis in line with l.local: register
// and announce a member that entered, announce (once) a member that left,
// and with silent, register again without announcing a member that Redis
// lost.
func (w *worker) sync(ctx context.Context, id string, reannounce bool) error {
	l := w.l
	l.mu.Lock()
	p := l.local[id]
	var name string
	var left, registered bool
	if p != nil {
		name, left, registered = p.name, p.left, p.registered
	}
	l.mu.Unlock()
	if p == nil {
		return nil
	}
	field := l.inst + "/" + id
	cctx, cancel := w.cmdCtx(ctx)
	defer cancel()
	switch {
	case left && !registered:
		// Never announced elsewhere: nothing to take back.
	case left:
		ev := mustJSON(ChatEvent{Kind: EventLeave, Owner: l.inst, Name: name})
		if err := leaveScript.Run(cctx, l.r.client, []string{membersKey, chatChannel}, field, ev).Err(); err != nil {
			return err
		}
	default:
		rec := mustJSON(memberRecord{Instance: l.inst, Name: name})
		ev := mustJSON(ChatEvent{Kind: EventEnter, Owner: l.inst, Name: name})
		announce := "1"
		if registered && !reannounce {
			announce = "0" // already announced: Redis lost it, no news for anyone
		}
		if err := enterScript.Run(cctx, l.r.client, []string{membersKey, chatChannel}, field, rec, ev, announce).Err(); err != nil {
			return err
		}
	}
	l.mu.Lock()
	if left {
		delete(l.local, id)
	} else if q := l.local[id]; q == p {
		p.registered = true
	}
	l.mu.Unlock()
	return nil
}

// reconcile syncs every local member; reannounce says the survivors
// announced this instance's members as gone.
func (w *worker) reconcile(ctx context.Context, reannounce bool) error {
	l := w.l
	l.mu.Lock()
	ids := make([]string, 0, len(l.local))
	for id := range l.local {
		ids = append(ids, id)
	}
	l.mu.Unlock()
	for _, id := range ids {
		if err := w.sync(ctx, id, reannounce); err != nil {
			return err
		}
	}
	if reannounce {
		cctx, cancel := w.cmdCtx(ctx)
		defer cancel()
		return l.r.client.Del(cctx, reapedPrefix+l.inst).Err()
	}
	return nil
}

// reap announces the leaves of members whose instance has no liveness
// key. Several survivors may reap at once: the leave script lets exactly
// one announce each member.
func (w *worker) reap(ctx context.Context) error {
	l := w.l
	alive := map[string]bool{l.inst: true}
	var cursor uint64
	for range 10000 { // bounded: each scan step returns at least one field or ends
		cctx, cancel := w.cmdCtx(ctx)
		kv, next, err := l.r.client.HScan(cctx, membersKey, cursor, "*", 256).Result()
		cancel()
		if err != nil {
			return err
		}
		for i := 0; i+1 < len(kv); i += 2 {
			field, val := kv[i], kv[i+1]
			var rec memberRecord
			if json.Unmarshal([]byte(val), &rec) != nil || rec.Instance == "" || len(rec.Name) > maxChatName {
				rec = memberRecord{Instance: strings.SplitN(field, "/", 2)[0]}
			}
			live, known := alive[rec.Instance]
			if !known {
				cctx, cancel := w.cmdCtx(ctx)
				n, err := l.r.client.Exists(cctx, alivePrefix+rec.Instance).Result()
				cancel()
				if err != nil {
					return err
				}
				live = n == 1
				if len(alive) < 1024 {
					alive[rec.Instance] = live
				}
			}
			if live {
				continue
			}
			cctx, cancel := w.cmdCtx(ctx)
			ev := mustJSON(ChatEvent{Kind: EventLeave, Owner: rec.Instance, Name: rec.Name})
			won, err := leaveScript.Run(cctx, l.r.client, []string{membersKey, chatChannel}, field, ev).Int()
			if err == nil {
				err = l.r.client.Set(cctx, reapedPrefix+rec.Instance, "1", reapedTTL).Err()
			}
			cancel()
			if err != nil {
				return err
			}
			if won == 1 {
				l.log.Info("chat: announced the leave of a member of a dead instance", "name", rec.Name, "dead", rec.Instance)
			}
		}
		cursor = next
		if cursor == 0 {
			return nil
		}
	}
	return nil
}

// subscribe delivers the channel's events of other instances until ctx
// ends, resubscribing with backoff after a failure.
func (l *redisRoom) subscribe(ctx context.Context, deliver func(ChatEvent)) {
	failures := 0
	for ctx.Err() == nil {
		err := l.subscribeOnce(ctx, deliver, &failures)
		if ctx.Err() != nil {
			return
		}
		failures++
		d := l.backoff(failures)
		l.log.Debug("chat subscription lost, retrying", "err", err, "in", d.String())
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
	}
}

func (l *redisRoom) subscribeOnce(ctx context.Context, deliver func(ChatEvent), failures *int) error {
	ps := l.r.client.Subscribe(ctx, chatChannel)
	defer ps.Close()
	cctx, cancel := context.WithTimeout(ctx, 2*redisIOTimeout)
	_, err := ps.Receive(cctx) // the subscription's confirmation
	cancel()
	if err != nil {
		return err
	}
	*failures = 0
	l.log.Debug("chat subscribed", "channel", chatChannel)
	for {
		msg, err := ps.ReceiveTimeout(ctx, 2*l.opts.Heartbeat)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil {
				// Quiet channel: check the connection is still there.
				if err := ps.Ping(ctx); err != nil {
					return err
				}
				continue
			}
			return err
		}
		m, ok := msg.(*redis.Message)
		if !ok {
			continue
		}
		if ev, ok := l.decode(m.Payload); ok {
			deliver(ev)
		}
	}
}

// decode validates an event from the channel; events of this instance
// were delivered here already.
func (l *redisRoom) decode(payload string) (ChatEvent, bool) {
	var ev ChatEvent
	if len(payload) > maxEventSize || json.Unmarshal([]byte(payload), &ev) != nil {
		return ev, false
	}
	if ev.Owner == l.inst || ev.Name == "" || len(ev.Name) > maxChatName || len(ev.Comment) > maxChatMessage {
		return ev, false
	}
	switch ev.Kind {
	case EventEnter, EventLeave, EventComment:
		return ev, true
	}
	return ev, false
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // plain structs of strings
	}
	return string(b)
}
