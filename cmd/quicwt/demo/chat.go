package demo

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/quicwt/quicwt/quicwt"
)

// The chat room (seed S3). One room shared by every session on every
// connection.
//
// Client to server: one unidirectional stream per message, JSON, read to
// FIN (never parsed early):
//
//	{"command":"enter","name":"alice"}
//	{"command":"comment","comment":"hello"}
//
// Server to client: one new unidirectional stream per message, JSON, FIN:
//
//	to the newcomer:   {"command":"comment","name":"server","comment":"Hello, alice"}
//	to the others:     {"command":"comment","name":"server","comment":"alice has entered"}
//	every comment:     {"command":"comment","name":"alice","comment":"hello"} (to everyone, sender included)
//	on leave, others:  {"command":"comment","name":"server","comment":"alice has left"}
//
// A member leaves when its session ends for any reason: WT_CLOSE_SESSION,
// the CONNECT stream ending, the QUIC connection going away (all of which
// end the session's Context), or eviction. The leave is announced exactly
// once: whoever removes the member from the room under the room's mutex
// announces it, here and, through the ChatLink, to the other instances
// (see redisroom.go for how exactly one instance announces each leave).
//
// A slow or dead member never stalls the room: each member has a bounded
// queue drained by its own sender goroutine; a broadcast only does
// non-blocking queue sends. A member whose queue is full, or whose stream
// cannot be opened and written within the send timeout, is evicted: it
// leaves the room and its session is closed with chatEvictCode.

const (
	chatEvictCode   = 0x51 // WT application error code of an eviction
	maxChatMessage  = 64 << 10
	maxChatName     = 64
	chatServerName  = "server"
	defaultChatQ    = 1024
	defaultChatSend = 10 * time.Second
)

// ChatOptions tune the chat room.
type ChatOptions struct {
	QueueLen    int           // per-member outgoing queue (default 1024)
	SendTimeout time.Duration // to open and write one message (default 10 s)
	// Link joins this room to the rooms of other instances (a Redis
	// chat link); nil keeps the room in this process.
	Link ChatLink
}

type chatRoom struct {
	log     *slog.Logger
	opts    ChatOptions
	link    ChatLink // never nil: localOnly without a Link
	mu      sync.Mutex
	members map[*member]struct{} // members that entered and did not leave
	nextID  uint64               // under mu
}

type member struct {
	sess *quicwt.Session
	log  *slog.Logger
	q    chan []byte
	id   string // unique in this process, set on enter
	name string // set on enter, under the room mutex
	gone bool   // left (or ended before entering), under the room mutex
}

type chatMessage struct {
	Command string `json:"command"`
	Name    string `json:"name,omitempty"`
	Comment string `json:"comment,omitempty"`
}

func newChatRoom(log *slog.Logger, opts ChatOptions) *chatRoom {
	if opts.QueueLen <= 0 {
		opts.QueueLen = defaultChatQ
	}
	if opts.SendTimeout <= 0 {
		opts.SendTimeout = defaultChatSend
	}
	r := &chatRoom{log: log, opts: opts, link: opts.Link, members: map[*member]struct{}{}}
	if r.link == nil {
		r.link = localOnly{}
	}
	return r
}

// remote delivers an event of a member on another instance to every
// member here. Events were validated by the link.
func (r *chatRoom) remote(ev ChatEvent) {
	var msg []byte
	switch ev.Kind {
	case EventEnter:
		msg = encodeChat(chatServerName, ev.Name+" has entered")
	case EventLeave:
		msg = encodeChat(chatServerName, ev.Name+" has left")
	case EventComment:
		msg = encodeChat(ev.Name, ev.Comment)
	default:
		return
	}
	r.mu.Lock()
	var evicted []*member
	r.broadcastLocked(msg, nil, &evicted)
	r.settleLocked(&evicted)
	r.mu.Unlock()
	r.closeEvicted(evicted)
}

func (r *chatRoom) serve(sess *quicwt.Session, log *slog.Logger) {
	ctx := sess.Context()
	m := &member{sess: sess, log: log, q: make(chan []byte, r.opts.QueueLen)}
	go r.sender(m)
	go func() {
		<-ctx.Done()
		r.leave(m, "session ended")
	}()
	go func() {
		// Bidirectional streams are not part of the protocol.
		for {
			s, err := sess.AcceptStream(ctx)
			if err != nil {
				return
			}
			s.CancelRead(0)
			s.CancelWrite(0)
		}
	}()
	for {
		s, err := sess.AcceptUniStream(ctx)
		if err != nil {
			return
		}
		go func() {
			p, err := io.ReadAll(io.LimitReader(s, maxChatMessage+1))
			if err != nil {
				log.Debug("chat stream ended without FIN", "err", err)
				return
			}
			if len(p) > maxChatMessage {
				s.CancelRead(0)
				log.Info("chat message too large", "limit", maxChatMessage)
				return
			}
			r.handle(m, p)
		}()
	}
}

func (r *chatRoom) handle(m *member, p []byte) {
	var msg chatMessage
	if err := json.Unmarshal(p, &msg); err != nil {
		m.log.Info("bad chat message", "err", err)
		return
	}
	switch msg.Command {
	case "enter":
		name := strings.TrimSpace(msg.Name)
		if name == "" || len(name) > maxChatName || name == chatServerName {
			m.log.Info("bad chat name", "name", truncate([]byte(name), 80))
			return
		}
		r.enter(m, name)
	case "comment":
		r.comment(m, msg.Comment)
	default:
		m.log.Info("unknown chat command", "command", truncate([]byte(msg.Command), 80))
	}
}

func encodeChat(name, comment string) []byte {
	b, _ := json.Marshal(chatMessage{Command: "comment", Name: name, Comment: comment})
	return b
}

func (r *chatRoom) enter(m *member, name string) {
	r.mu.Lock()
	if m.gone || m.name != "" {
		r.mu.Unlock()
		return
	}
	m.name = name
	r.nextID++
	m.id = strconv.FormatUint(r.nextID, 10)
	r.members[m] = struct{}{}
	r.link.Publish(ChatEvent{Kind: EventEnter, Member: m.id, Name: name})
	var evicted []*member
	r.sendLocked(m, encodeChat(chatServerName, "Hello, "+name), &evicted)
	r.broadcastLocked(encodeChat(chatServerName, name+" has entered"), m, &evicted)
	r.settleLocked(&evicted)
	n := len(r.members)
	r.mu.Unlock()
	r.closeEvicted(evicted)
	m.log.Info("chat enter", "name", name, "members", n)
}

func (r *chatRoom) comment(m *member, text string) {
	r.mu.Lock()
	if _, ok := r.members[m]; !ok {
		r.mu.Unlock()
		m.log.Debug("comment before enter ignored")
		return
	}
	var evicted []*member
	r.broadcastLocked(encodeChat(m.name, text), nil, &evicted)
	r.link.Publish(ChatEvent{Kind: EventComment, Member: m.id, Name: m.name, Comment: text})
	r.settleLocked(&evicted)
	r.mu.Unlock()
	r.closeEvicted(evicted)
}

// leave removes m and announces it, once.
func (r *chatRoom) leave(m *member, why string) {
	r.mu.Lock()
	if m.gone {
		r.mu.Unlock()
		return
	}
	m.gone = true
	if _, ok := r.members[m]; !ok {
		r.mu.Unlock()
		return
	}
	delete(r.members, m)
	var evicted []*member
	r.broadcastLocked(encodeChat(chatServerName, m.name+" has left"), nil, &evicted)
	r.link.Publish(ChatEvent{Kind: EventLeave, Member: m.id, Name: m.name})
	r.settleLocked(&evicted)
	r.mu.Unlock()
	r.closeEvicted(evicted)
	m.log.Info("chat leave", "name", m.name, "why", why)
}

// evict removes a member that cannot keep up and closes its session.
func (r *chatRoom) evict(m *member, why string) {
	r.mu.Lock()
	if m.gone {
		r.mu.Unlock()
		return
	}
	var evicted []*member
	r.removeLocked(m, &evicted)
	r.settleLocked(&evicted)
	r.mu.Unlock()
	m.log.Info("chat member evicted", "name", m.name, "why", why)
	r.closeEvicted(evicted)
}

// sendLocked queues msg for m without blocking; a full queue evicts m.
func (r *chatRoom) sendLocked(m *member, msg []byte, evicted *[]*member) {
	if m.gone {
		return
	}
	select {
	case m.q <- msg:
	default:
		r.removeLocked(m, evicted)
	}
}

func (r *chatRoom) broadcastLocked(msg []byte, except *member, evicted *[]*member) {
	for o := range r.members {
		if o != except {
			r.sendLocked(o, msg, evicted)
		}
	}
}

// removeLocked takes m out of the room; its leave is announced by
// settleLocked.
func (r *chatRoom) removeLocked(m *member, evicted *[]*member) {
	m.gone = true
	if _, ok := r.members[m]; ok {
		delete(r.members, m)
		*evicted = append(*evicted, m)
	}
}

// settleLocked announces the leaves of evicted members; announcing can
// evict more members, whose leaves are announced in turn.
func (r *chatRoom) settleLocked(evicted *[]*member) {
	for i := 0; i < len(*evicted); i++ {
		m := (*evicted)[i]
		r.broadcastLocked(encodeChat(chatServerName, m.name+" has left"), nil, evicted)
		r.link.Publish(ChatEvent{Kind: EventLeave, Member: m.id, Name: m.name})
	}
}

func (r *chatRoom) closeEvicted(evicted []*member) {
	for _, m := range evicted {
		go m.sess.CloseWithError(chatEvictCode, "chat: too slow, evicted")
	}
}

// sender delivers m's queue, one unidirectional stream per message.
func (r *chatRoom) sender(m *member) {
	ctx := m.sess.Context()
	for {
		select {
		case <-ctx.Done():
			return
		case msg := <-m.q:
			if err := r.deliver(m, msg); err != nil {
				if ctx.Err() == nil {
					r.evict(m, err.Error())
				}
				return
			}
		}
	}
}

func (r *chatRoom) deliver(m *member, msg []byte) error {
	ctx, cancel := context.WithTimeout(m.sess.Context(), r.opts.SendTimeout)
	defer cancel()
	s, err := m.sess.OpenUniStreamSync(ctx)
	if err != nil {
		return err
	}
	_ = s.SetWriteDeadline(time.Now().Add(r.opts.SendTimeout))
	if _, err := s.Write(msg); err != nil {
		s.CancelWrite(0)
		return err
	}
	return s.Close()
}
