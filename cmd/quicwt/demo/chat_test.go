package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/quicwt/quicwt/quicwt"
)

type chatClient struct {
	t    *testing.T
	name string
	sess *quicwt.Session
	cc   *quicwt.ClientConn
	in   chan chatMessage
}

// joinChat connects; with read, a goroutine collects every message the
// server sends (one unidirectional stream each).
func joinChat(t *testing.T, d *Server, name string, read bool) *chatClient {
	t.Helper()
	sess, cc := dialDemo(t, d, "/chat", nil)
	c := &chatClient{t: t, name: name, sess: sess, cc: cc, in: make(chan chatMessage, 1000)}
	if read {
		go func() {
			for {
				s, err := sess.AcceptUniStream(context.Background())
				if err != nil {
					return
				}
				b, err := io.ReadAll(s)
				if err != nil {
					continue
				}
				var m chatMessage
				if err := json.Unmarshal(b, &m); err != nil {
					t.Errorf("%s: bad message %q", name, b)
					continue
				}
				c.in <- m
			}
		}()
	}
	return c
}

func (c *chatClient) send(v any) {
	c.t.Helper()
	if err := c.trySend(v); err != nil {
		c.t.Fatal(err)
	}
}

func (c *chatClient) trySend(v any) error {
	b, _ := json.Marshal(v)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := c.sess.OpenUniStreamSync(ctx)
	if err != nil {
		return err
	}
	if _, err := s.Write(b); err != nil {
		return err
	}
	return s.Close()
}

func (c *chatClient) enter() {
	c.t.Helper()
	c.send(map[string]string{"command": "enter", "name": c.name})
	c.expect("server", "Hello, "+c.name)
}

func (c *chatClient) comment(text string) {
	c.send(map[string]string{"command": "comment", "comment": text})
}

// expect waits for the next message and checks it.
func (c *chatClient) expect(name, comment string) {
	c.t.Helper()
	select {
	case m := <-c.in:
		if m.Command != "comment" || m.Name != name || m.Comment != comment {
			c.t.Fatalf("%s got %+v, want {comment %s %q}", c.name, m, name, truncate([]byte(comment), 40))
		}
	case <-time.After(10 * time.Second):
		c.t.Fatalf("%s: no message, want %s: %q", c.name, name, comment)
	}
}

// quiet checks that nothing more arrives for a while.
func (c *chatClient) quiet(d time.Duration) {
	c.t.Helper()
	select {
	case m := <-c.in:
		c.t.Fatalf("%s got unexpected %+v", c.name, m)
	case <-time.After(d):
	}
}

func TestChat(t *testing.T) {
	d := newTestDemo(t, nil, ChatOptions{})
	a := joinChat(t, d, "alice", true)
	a.enter()
	b := joinChat(t, d, "bob", true)
	b.enter()
	a.expect("server", "bob has entered")
	c := joinChat(t, d, "carol", true)
	c.enter()
	a.expect("server", "carol has entered")
	b.expect("server", "carol has entered")

	a.comment("hello")
	for _, x := range []*chatClient{a, b, c} {
		x.expect("alice", "hello")
	}
	// A long message spans many packets; it is parsed only at FIN.
	long := strings.Repeat("日", 600)
	b.comment(long)
	for _, x := range []*chatClient{a, b, c} {
		x.expect("bob", long)
	}
	// Leaving by closing the session (WT_CLOSE_SESSION): announced once.
	b.sess.CloseWithError(0, "bye")
	a.expect("server", "bob has left")
	c.expect("server", "bob has left")
	// Leaving by losing the connection (CONNECTION_CLOSE, no capsule).
	c.cc.Close()
	a.expect("server", "carol has left")
	a.quiet(500 * time.Millisecond)
	// The room goes on.
	a.comment("anyone?")
	a.expect("alice", "anyone?")

	// Leaving by ending the CONNECT stream without a capsule is covered by
	// the same path: the session's Context ends. Here: a member that
	// never entered leaves silently.
	e := joinChat(t, d, "eve", true)
	e.sess.Close()
	a.quiet(300 * time.Millisecond)
	if n := roomSize(d.room); n != 1 {
		t.Fatalf("room has %d members, want 1", n)
	}
}

func roomSize(r *chatRoom) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.members)
}

// A member that stops reading must not stall the room: the others get
// every message promptly, and the stalled member is evicted (its leave
// announced once), either because its stream cannot be opened or written
// within the send timeout (burst: the queue is large) or because its queue
// is full (paced: the others keep up, its queue grows).
func TestChatStalledMember(t *testing.T) {
	t.Run("burst-timeout", func(t *testing.T) {
		testStalled(t, ChatOptions{SendTimeout: 2 * time.Second}, 300, false)
	})
	t.Run("paced-queue-full", func(t *testing.T) {
		testStalled(t, ChatOptions{QueueLen: 8, SendTimeout: time.Minute}, 150, true)
	})
}

func testStalled(t *testing.T, opts ChatOptions, n int, paced bool) {
	d := newTestDemo(t, nil, opts)
	a := joinChat(t, d, "alice", true)
	a.enter()
	s := joinChat(t, d, "stuck", false) // never accepts a stream
	s.send(map[string]string{"command": "enter", "name": "stuck"})
	a.expect("server", "stuck has entered")
	b := joinChat(t, d, "bob", true) // reads; paced, the sender waits for its copy of each comment
	b.send(map[string]string{"command": "enter", "name": "bob"})
	a.expect("server", "bob has entered")

	start := time.Now()
	next := make(chan struct{}, 1)
	stop, stopped := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() { close(stop); <-stopped })
	// bobGot waits until bob has received his own comment i: paced, both
	// readers keep up, so only the stuck member's queue can fill.
	bobGot := func(i int) bool {
		for {
			select {
			case m := <-b.in:
				if m.Name == "bob" && m.Comment == fmt.Sprintf("m%d", i) {
					return true
				}
			case <-stop:
				return false
			case <-time.After(15 * time.Second):
				t.Errorf("bob did not receive his comment m%d", i)
				return false
			}
		}
	}
	go func() {
		defer close(stopped)
		for i := 0; i < n; i++ {
			if paced && i > 0 {
				select {
				case <-next:
				case <-stop:
					return
				case <-time.After(15 * time.Second):
					return
				}
				if !bobGot(i - 1) {
					return
				}
			}
			if err := b.trySend(map[string]string{"command": "comment", "comment": fmt.Sprintf("m%d", i)}); err != nil {
				t.Errorf("bob's comment %d: %v", i, err)
				return
			}
		}
	}()
	seen, left := 0, 0
	deadline := time.After(15 * time.Second)
	for seen < n {
		select {
		case m := <-a.in:
			switch {
			case m.Name == "bob" && m.Comment == fmt.Sprintf("m%d", seen) || m.Name == "bob" && !paced:
				seen++
				if paced {
					next <- struct{}{}
				}
			case m.Name == "server" && m.Comment == "stuck has left":
				left++
			default:
				t.Fatalf("unexpected %+v", m)
			}
		case <-deadline:
			t.Fatalf("alice got %d of %d messages: the room stalled", seen, n)
		}
	}
	t.Logf("%d messages in %v", n, time.Since(start))
	// The stalled member was evicted and its session closed with the
	// eviction code.
	select {
	case <-s.sess.Context().Done():
	case <-time.After(10 * time.Second):
		t.Fatal("stalled member not evicted")
	}
	var se *quicwt.SessionError
	if err := s.sess.Err(); !errors.As(err, &se) || se.Code != chatEvictCode {
		t.Errorf("stalled member's session ended with %v, want code %#x", err, chatEvictCode)
	}
	// Its leave is announced exactly once.
	for left == 0 {
		select {
		case m := <-a.in:
			if m.Name == "server" && m.Comment == "stuck has left" {
				left++
			} else {
				t.Fatalf("unexpected %+v", m)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no leave announcement for the stalled member")
		}
	}
	a.quiet(500 * time.Millisecond)
	if left != 1 {
		t.Fatalf("leave announced %d times", left)
	}
	if n := roomSize(d.room); n != 2 {
		t.Fatalf("room has %d members, want 2", n)
	}
}
