package interop_test

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// Several `quicwt serve` instances on one Redis (issue 16), as an
// operator runs them: a real redis-server on a free loopback port (AOF
// with fsync always, in a temp dir), two instances of the real binary
// with -redis, and headless Chromium tabs on each.
//
//   - chat across instances: alice and carol on A, bob on B; joins and
//     messages reach all three;
//   - clicks from both instances on one user name make one sequence;
//   - Redis stopped: clicks answered 503, the chat goes on inside A, each
//     instance logs the outage once; Redis started again: both rejoin by
//     themselves, nobody is announced again, messages cross again and the
//     scores go on (AOF);
//   - carol's tab closed: her leave reaches alice and bob once;
//   - B killed with SIGKILL: bob's leave is announced once, by A, within
//     TTL + heartbeat; B started again announces nobody but its
//     newcomers.
func TestDemoRedis(t *testing.T) {
	rs := startRedis(t, true)
	bin := BuildQuicwt(t, t.TempDir())
	start := func() *DemoServer {
		s := StartDemoServerWith(t, bin, t.TempDir(), "-redis", rs.URL())
		waitLog(t, s, "chat subscribed", 1)
		return s
	}
	a, b := start(), start()
	br := LaunchChromiumDriver(t)

	pages := map[string]*Page{}
	closers := map[string]func(){}
	enter := func(name string, srv *DemoServer) {
		t.Helper()
		p, closeTab := br.OpenPage(t, "redis-chat-"+name, srv.Page("chat.html"))
		pages[name], closers[name] = p, closeTab
		p.Type("name", name)
		p.Connect()
		waitChat(t, p, "server", "Hello, "+name)
	}
	say := func(from, text string, to ...string) {
		t.Helper()
		pages[from].Type("message", text+"\r")
		for _, who := range to {
			waitChat(t, pages[who], from, text)
		}
	}
	enter("alice", a)
	enter("bob", b)
	waitChat(t, pages["alice"], "server", "bob has entered")
	enter("carol", a)
	waitChat(t, pages["alice"], "server", "carol has entered")
	waitChat(t, pages["bob"], "server", "carol has entered")
	say("alice", "hello from A ✓", "alice", "bob", "carol")
	say("bob", "hello from B", "alice", "bob", "carol")

	// One user clicking on both instances: one sequence of scores.
	const user = "Grace Hopper"
	clickA := openClicker(t, br, a, "redis-clicker-a", user)
	clickB := openClicker(t, br, b, "redis-clicker-b", user)
	var scores []string
	for i := range 6 {
		p := clickA
		if i%2 == 1 {
			p = clickB
		}
		scores = append(scores, p.click(t))
	}
	if got, want := strings.Join(scores, " "), "200:0 200:1 200:2 200:3 200:4 200:5"; got != want {
		t.Fatalf("scores from A, B, A, ...: %s, want %s", got, want)
	}

	// Redis goes away.
	rs.Stop()
	if got := clickA.click(t); got != "503" {
		t.Errorf("a click with Redis stopped: %s, want 503", got)
	}
	say("alice", "only A hears this", "alice", "carol")
	for _, s := range []*DemoServer{a, b} {
		waitLog(t, s, "redis unreachable", 1)
	}
	if got := clickB.click(t); got != "503" {
		t.Errorf("a click with Redis stopped: %s, want 503", got)
	}

	// Redis is back: both instances rejoin without a restart.
	rs.Restart()
	for _, s := range []*DemoServer{a, b} {
		waitLog(t, s, "redis reachable again", 1)
		waitLog(t, s, "chat subscribed", 2)
	}
	say("bob", "B is back", "alice", "bob", "carol")
	say("carol", "A hears B", "alice", "bob", "carol")
	if got := clickB.click(t); got != "200:6" {
		t.Errorf("the first click after Redis came back: %s, want 200:6 (AOF kept the scores)", got)
	}

	// carol closes her tab: alice (same instance) and bob (the other)
	// are told once.
	closers["carol"]()
	waitChat(t, pages["alice"], "server", "carol has left")
	waitChat(t, pages["bob"], "server", "carol has left")

	// B dies: A announces bob's leave, once, within TTL + heartbeat
	// (4 s + 1 s by default).
	killed := time.Now()
	b.Kill(t)
	waitChat(t, pages["alice"], "server", "bob has left")
	t.Logf("bob's leave announced %v after SIGKILL", time.Since(killed).Round(100*time.Millisecond))

	// B again: a new instance; it announces nobody but its newcomers.
	b2 := start()
	enter("dave", b2)
	waitChat(t, pages["alice"], "server", "dave has entered")
	say("dave", "new here", "alice", "dave")
	say("alice", "welcome", "alice", "dave")

	var st chatState
	pages["alice"].State(&st)
	checkNoPageErrors(t, "chat alice", st.Errors)
	for _, c := range []struct {
		name, comment string
		want          int
	}{
		{"server", "bob has entered", 1}, {"server", "carol has entered", 1}, {"server", "dave has entered", 1},
		{"server", "bob has left", 1}, {"server", "carol has left", 1}, {"server", "alice has entered", 0},
		{"server", "alice has left", 0}, {"alice", "only A hears this", 1}, {"bob", "B is back", 1},
	} {
		if n := st.count(c.name, c.comment); n != c.want {
			t.Errorf("alice got %s: %q %d times, want %d", c.name, c.comment, n, c.want)
		}
	}
	pages["dave"].State(&st)
	for _, c := range []string{"alice has entered", "bob has left", "carol has left", "bob has entered"} {
		if n := st.count("server", c); n != 0 {
			t.Errorf("dave, a newcomer, got %q %d times", c, n)
		}
	}
	if n := len(logLines(a.Stderr.String(), "dead instance")); n != 1 {
		t.Errorf("A announced %d leaves of dead instances, want 1 (bob)", n)
	}
	for _, s := range []*DemoServer{a, b2} {
		s.Stop(t, 15*time.Second)
	}
	pages["alice"].Screenshot("redis-chat-alice")
}

// waitChat waits until the chat page shows name: comment.
func waitChat(t *testing.T, p *Page, name, comment string) {
	t.Helper()
	p.WaitJS(fmt.Sprintf(`window.quicwtState.chat.some(m => m.name === %q && m.comment === %q)`, name, comment),
		fmt.Sprintf("%s got %s: %s", p.Name, name, comment))
}

// waitLog waits (up to 30 s) until the server's log has n lines with sub.
func waitLog(t *testing.T, s *DemoServer, sub string, n int) {
	t.Helper()
	for i := 0; ; i++ {
		got := len(logLines(s.Stderr.String(), sub))
		if got == n {
			return
		}
		if got > n || i == 300 {
			t.Fatalf("the server logged %q %d times, want %d:\n%s", sub, got, n, tail(s.Stderr.String(), 40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// clickerPage is the clicker page connected with a user name.
type clickerPage struct{ *Page }

func openClicker(t *testing.T, br *ChromiumDriver, srv *DemoServer, name, user string) clickerPage {
	t.Helper()
	p, _ := br.OpenPage(t, name, srv.Page("clicker.html"))
	p.Type("username", user)
	p.Connect()
	p.WaitJS("window.quicwtState.streamReady", "the click stream is open")
	return clickerPage{p}
}

// click clicks via the stream (reliable: one click, one reply) and
// returns the reply as "200:score" or the status.
func (p clickerPage) click(t *testing.T) string {
	t.Helper()
	var st clickerState
	p.State(&st)
	n := len(st.Replies)
	p.Click("click-stream")
	p.WaitJS(fmt.Sprintf(`window.quicwtState.replies.length > %d`, n), "a reply via the stream")
	p.State(&st)
	r := st.Replies[n].Reply
	if r.Status == 200 && r.Score != nil {
		return fmt.Sprintf("200:%d", *r.Score)
	}
	return fmt.Sprint(r.Status)
}
