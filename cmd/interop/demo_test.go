package interop_test

// The demo server (`quicwt serve`, ../quicwt) and its pages in real
// browsers, as a person would use them (issue 4): the test builds the
// real binary, runs it on loopback with free ports and a temp data dir,
// opens the embedded pages from its page server in headless Chromium
// (driven with chromedp: clicks, typing, screenshots) and in Firefox ESR
// (the page's ?autotest= hook clicks through the page and POSTs its
// state; WebDriver BiDi only opens the page and takes the screenshot),
// and checks what the pages show.
//
// Screenshots of every page go to ScreenshotDir (screenshots/ here, or
// $QUICWT_SCREENSHOTS); the test logs their paths.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// TestDemo builds quicwt once and runs one subtest per page and browser.
func TestDemo(t *testing.T) {
	bin := BuildQuicwt(t, t.TempDir())
	t.Logf("screenshots go to %s", ScreenshotDir(t))
	t.Run("ChromiumCounter", func(t *testing.T) { testChromiumCounter(t, bin) })
	t.Run("ChromiumEcho", func(t *testing.T) { testChromiumEcho(t, bin) })
	t.Run("ChromiumClicker", func(t *testing.T) { testChromiumClicker(t, bin) })
	t.Run("ChromiumChat", func(t *testing.T) { testChromiumChat(t, bin) })
	t.Run("FirefoxCounter", func(t *testing.T) { testFirefoxPage(t, bin, "counter") })
	t.Run("FirefoxEcho", func(t *testing.T) { testFirefoxPage(t, bin, "echo") })
	t.Run("ChromiumShutdown", func(t *testing.T) { testChromiumShutdown(t, bin) })
}

// pageReply is one entry of the counter page's replies or the echo
// page's echoes.
type pageReply struct {
	Via  string `json:"via"`
	Text string `json:"text"`
}

// checkReplies checks that the page got want via each of bidi, uni and
// datagram, once each for the streams (a datagram click may have been
// repeated), and nothing else.
func checkReplies(t *testing.T, page string, got []pageReply, want string) {
	t.Helper()
	n := map[string]int{}
	for _, r := range got {
		n[r.Via]++
		if r.Text != want {
			t.Errorf("%s: got %q via %s, want %q", page, r.Text, r.Via, want)
		}
	}
	if n["bidi"] != 1 || n["uni"] != 1 || n["datagram"] < 1 || len(n) != 3 {
		t.Errorf("%s: replies via %v, want one each of bidi, uni and datagram", page, n)
	}
}

// counterState is the counter page's window.quicwtState.
type counterState struct {
	Connected bool               `json:"connected"`
	Errors    []string           `json:"errors"`
	Log       []string           `json:"log"`
	Replies   []pageReply        `json:"replies"`
	LastReply map[string]*string `json:"lastReply"`
}

// echoState is the echo page's window.quicwtState.
type echoState struct {
	Connected bool               `json:"connected"`
	Errors    []string           `json:"errors"`
	Log       []string           `json:"log"`
	Echoes    []pageReply        `json:"echoes"`
	LastEcho  map[string]*string `json:"lastEcho"`
}

// retryIf is how long to wait before clicking again when the click sends
// a datagram (see Page.ClickUntil).
func retryIf(datagram bool) time.Duration {
	if datagram {
		return 3 * time.Second
	}
	return 0
}

// checkNoPageErrors fails on errors the page logged.
func checkNoPageErrors(t *testing.T, page string, errs []string) {
	t.Helper()
	for _, e := range errs {
		t.Errorf("%s page error: %s", page, e)
	}
}

// The counter: a datagram, a uni stream and a bidi stream, each answered
// with the byte count of what the page sent (UTF-8 bytes, not characters).
func testChromiumCounter(t *testing.T, bin string) {
	srv := StartDemoServer(t, bin, t.TempDir())
	br := LaunchChromiumDriver(t)
	// The index page (the address the server prints) shows where the
	// pages connect and the certificate hash; its link leads to the page.
	p, _ := br.OpenPage(t, "index", srv.PageURL)
	p.WaitJS(`document.getElementById("cert-hash").textContent.length === 64`, "the index shows the certificate hash")
	if got := p.Text("wt-url"); got != srv.WTURL {
		t.Errorf("index shows WebTransport URL %q, want %q", got, srv.WTURL)
	}
	if hash := p.Text("cert-hash"); !strings.Contains(srv.Stdout.String(), "SHA-256 (hex):    "+hash) {
		t.Errorf("index shows certificate hash %q, not the one the server printed:\n%s", hash, srv.Stdout.String())
	}
	p.Screenshot("index")
	p.Name = "counter"
	p.FollowLink("link-counter")
	if !strings.HasSuffix(p.Location(), "/counter.html") {
		t.Fatalf("the Counter link led to %s", p.Location())
	}
	var urlValue string
	p.Eval(`document.getElementById("url").value`, &urlValue)
	if urlValue != srv.WTURL+"/counter" {
		t.Errorf("URL field prefilled with %q, want %q", urlValue, srv.WTURL+"/counter")
	}
	p.Connect()
	p.Type("payload", "hello, wörld ✓")
	var payload string
	p.Eval(`document.getElementById("payload").value`, &payload)
	want := fmt.Sprint(len(payload)) // bytes of its UTF-8 encoding
	if payload != "hello, wörld ✓" || want != "17" {
		t.Errorf("typed payload %q (%s bytes), want %q (17 bytes)", payload, want, "hello, wörld ✓")
	}
	for _, via := range []string{"datagram", "uni", "bidi"} {
		p.ClickUntil("send-"+via, fmt.Sprintf("window.quicwtState.lastReply[%q] !== null", via), "the "+via+" reply arrived", retryIf(via == "datagram"))
		if got := p.Text("last-" + via); got != want {
			t.Errorf("counter %s: page shows %q, want %q", via, got, want)
		}
	}
	var st counterState
	p.State(&st)
	checkNoPageErrors(t, "counter", st.Errors)
	checkReplies(t, "counter", st.Replies, want)
	p.Screenshot("counter")
}

// The echo page: a bidi stream, a uni stream and a datagram, each echoed
// on the same kind of channel.
func testChromiumEcho(t *testing.T, bin string) {
	srv := StartDemoServer(t, bin, t.TempDir())
	br := LaunchChromiumDriver(t)
	p, _ := br.OpenPage(t, "echo", srv.Page("echo.html"))
	p.Connect()
	// (chromedp's SendKeys drops some letters, such as "ą" and "č", so
	// the message is checked as typed before it is sent.)
	const msg = "echo ✓ wörld quicwt"
	p.Type("message", msg)
	var typed string
	p.Eval(`document.getElementById("message").value`, &typed)
	if typed != msg {
		t.Fatalf("typed %q into the message field, it holds %q", msg, typed)
	}
	for _, via := range []string{"bidi", "uni", "datagram"} {
		p.ClickUntil("send-"+via, fmt.Sprintf("window.quicwtState.lastEcho[%q] !== null", via), "the "+via+" echo arrived", retryIf(via == "datagram"))
		if got := p.Text("last-" + via); got != msg {
			t.Errorf("echo %s: page shows %q, want %q", via, got, msg)
		}
	}
	var st echoState
	p.State(&st)
	checkNoPageErrors(t, "echo", st.Errors)
	checkReplies(t, "echo", st.Echoes, msg)
	p.Screenshot("echo")
}

// clickerState is the clicker page's window.quicwtState.
type clickerState struct {
	Connected   bool     `json:"connected"`
	StreamReady bool     `json:"streamReady"`
	Errors      []string `json:"errors"`
	Score       *int64   `json:"score"`
	Replies     []struct {
		Via   string `json:"via"`
		Reply struct {
			Status int    `json:"status"`
			Score  *int64 `json:"score"`
		} `json:"reply"`
	} `json:"replies"`
}

// The clicker: clicks via datagram and via the long-lived stream raise the
// score by one each (the server answers the clicks before this one, so
// the first is 0), the big score shows it, and after the server is
// stopped (SIGTERM) and started again on the same data dir a new click
// continues from the stored score.
func testChromiumClicker(t *testing.T, bin string) {
	dataDir := t.TempDir()
	srv := StartDemoServer(t, bin, dataDir)
	br := LaunchChromiumDriver(t)
	p, _ := br.OpenPage(t, "clicker", srv.Page("clicker.html"))
	const user = "Ada Lovelace ✓"
	p.Type("username", user)
	p.Connect()
	p.WaitJS("window.quicwtState.streamReady", "the click stream is open")

	var st clickerState
	// click clicks via datagram or stream and waits for the reply. A
	// datagram (or its reply) may be lost, so a datagram click is
	// repeated if no reply comes within 3 s. It returns the score of the
	// last reply on that channel and the number of clicks made.
	click := func(via string) (score int64, clicks int) {
		t.Helper()
		p.State(&st)
		n := len(st.Replies)
		clicks = p.ClickUntil("click-"+via, fmt.Sprintf(`window.quicwtState.replies.slice(%d).some(r => r.via === %q)`, n, via),
			"a reply via "+via, retryIf(via == "datagram"))
		p.State(&st)
		var last *int64
		for _, r := range st.Replies[n:] {
			if r.Via != via {
				continue
			}
			if r.Reply.Status != 200 || r.Reply.Score == nil {
				t.Fatalf("click via %s: reply %+v", via, r.Reply)
			}
			last = r.Reply.Score
		}
		if st.Score == nil || *st.Score != *last {
			t.Fatalf("click via %s: quicwtState.score %v, want %d", via, st.Score, *last)
		}
		if got := p.Text("score"); got != fmt.Sprint(*last) {
			t.Errorf("score shows %q, want %d", got, *last)
		}
		return *last, clicks
	}

	var scores []int64
	for i, via := range []string{"datagram", "stream", "datagram", "stream", "stream"} {
		score, clicks := click(via)
		scores = append(scores, score)
		// Each click raises the score by one; a repeated datagram click
		// by up to one per click (the lost one may not have arrived).
		if i == 0 && (score < 0 || score > int64(clicks)-1) {
			t.Errorf("first click (%d clicks) scored %d, want 0 (fresh data dir)", clicks, score)
		}
		if i > 0 && (score-scores[i-1] < 1 || score-scores[i-1] > int64(clicks)) {
			t.Errorf("click %d via %s (%d clicks) scored %d after %d", i, via, clicks, score, scores[i-1])
		}
	}
	t.Logf("scores before restart: %v", scores)
	last := scores[len(scores)-1] // a stream click: reliable, so nothing after it was counted
	p.Screenshot("clicker")

	// Restart the server on the same data dir.
	stopped := time.Now()
	srv.Stop(t, 15*time.Second)
	t.Logf("server stopped in %v", time.Since(stopped).Round(time.Millisecond))
	p.WaitJS("!window.quicwtState.connected && window.quicwtState.closed !== null", "the page saw the server go away")
	var closed struct {
		Closed map[string]any `json:"closed"`
	}
	p.Eval("window.quicwtState", &closed)
	t.Logf("the page saw the session end with %v", closed.Closed)
	srv2 := StartDemoServer(t, bin, dataDir)
	p.Navigate(srv2.Page("clicker.html"))
	p.Type("username", user)
	p.Connect()
	p.WaitJS("window.quicwtState.streamReady", "the click stream is open after the restart")
	if got, _ := click("stream"); got != last+1 {
		t.Errorf("after a restart the first click scored %d, want %d (the score before the restart was lost)", got, last+1)
	}
	if got, clicks := click("datagram"); got < last+2 || got > last+1+int64(clicks) {
		t.Errorf("after a restart a datagram click (%d clicks) scored %d, want %d", clicks, got, last+2)
	}
	p.State(&st)
	checkNoPageErrors(t, "clicker", st.Errors)
	p.Screenshot("clicker-after-restart")
}

// chatState is the chat page's window.quicwtState.
type chatState struct {
	Connected bool     `json:"connected"`
	Entered   bool     `json:"entered"`
	Errors    []string `json:"errors"`
	Chat      []struct {
		Name    string `json:"name"`
		Comment string `json:"comment"`
	} `json:"chat"`
}

func (s *chatState) count(name, comment string) int {
	n := 0
	for _, m := range s.Chat {
		if m.Name == name && m.Comment == comment {
			n++
		}
	}
	return n
}

// The chat with three pages: each enters (greeted; the others told), a
// message typed in one page reaches all three, and closing one tab
// announces its leave exactly once to the two others. Then another page
// is reloaded (it leaves once and enters again) and its renderer crashed
// (it leaves once more).
func testChromiumChat(t *testing.T, bin string) {
	srv := StartDemoServer(t, bin, t.TempDir())
	br := LaunchChromiumDriver(t)
	names := []string{"alice", "bob", "carol"}
	pages := map[string]*Page{}
	closers := map[string]func(){}
	for _, name := range names {
		p, closeTab := br.OpenPage(t, "chat-"+name, srv.Page("chat.html"))
		pages[name], closers[name] = p, closeTab
		p.Type("name", name)
		p.Connect()
		p.WaitJS(fmt.Sprintf(`window.quicwtState.chat.some(m => m.name === "server" && m.comment === %q)`, "Hello, "+name), name+" was greeted")
	}
	// Everyone already in the room hears of each later arrival.
	waitChat := func(who, name, comment string) {
		t.Helper()
		pages[who].WaitJS(fmt.Sprintf(`window.quicwtState.chat.some(m => m.name === %q && m.comment === %q)`, name, comment),
			fmt.Sprintf("%s got %s: %s", who, name, comment))
	}
	waitChat("alice", "server", "bob has entered")
	waitChat("alice", "server", "carol has entered")
	waitChat("bob", "server", "carol has entered")

	// alice types a message and presses Enter; all three get it.
	const msg = "hello everyone ✓"
	pages["alice"].Type("message", msg+"\r")
	for _, who := range names {
		waitChat(who, "alice", msg)
	}
	for _, who := range names {
		pages[who].Screenshot("chat-" + who)
	}

	// carol closes her tab: alice and bob are told once.
	closers["carol"]()
	waitChat("alice", "server", "carol has left")
	waitChat("bob", "server", "carol has left")
	// A second announcement, had the server sent one, would come before
	// a message sent after the first: sync through the room, then count.
	syncRoom := func(from, text string, to ...string) {
		t.Helper()
		pages[from].Type("message", text+"\r")
		for _, who := range to {
			waitChat(who, from, text)
		}
	}
	syncRoom("bob", "still here", "alice", "bob")
	for _, who := range []string{"alice", "bob"} {
		var st chatState
		pages[who].State(&st)
		checkNoPageErrors(t, "chat "+who, st.Errors)
		if n := st.count("server", "carol has left"); n != 1 {
			t.Errorf("%s got carol's leave %d times, want once: %+v", who, n, st.Chat)
		}
		for _, other := range []string{"alice", "bob"} {
			if n := st.count("server", other+" has left"); n != 0 {
				t.Errorf("%s was told %s left", who, other)
			}
		}
		if n := st.count("alice", msg); n != 1 {
			t.Errorf("%s got alice's message %d times, want once", who, n)
		}
	}
	pages["alice"].Screenshot("chat-alice-after-leave")

	// bob reloads his page: he leaves (once) and enters again.
	pages["bob"].Do("reload", chromedp.Reload())
	pages["bob"].WaitJS(`window.quicwtState && window.quicwtState.configLoaded && !window.quicwtState.connected`, "the reloaded page loaded")
	waitChat("alice", "server", "bob has left")
	pages["bob"].Type("name", "bob")
	pages["bob"].Connect()
	waitChat("bob", "server", "Hello, bob")
	waitChat("alice", "server", "bob has entered") // seen before: now look at the count
	pages["alice"].WaitJS(`window.quicwtState.chat.filter(m => m.name === "server" && m.comment === "bob has entered").length === 2`, "alice heard bob enter again")
	syncRoom("bob", "back again", "alice", "bob")

	// bob's page crashes (renderer gone, as when a tab is killed): he
	// leaves once more.
	crashed := make(chan struct{})
	go func() {
		defer close(crashed)
		// Page.crash gets no answer (the renderer is gone): the call
		// ends when bob's tab is closed below (or after 20 s).
		ctx, cancel := context.WithTimeout(pages["bob"].ctx, 20*time.Second)
		defer cancel()
		_, _ = chromedp.Call(ctx, page.Crash, cdp.Empty{})
	}()
	pages["alice"].WaitJS(`window.quicwtState.chat.filter(m => m.name === "server" && m.comment === "bob has left").length >= 2`, "alice heard bob leave again")
	closers["bob"]()
	<-crashed
	syncRoom("alice", "alone now", "alice")
	var st chatState
	pages["alice"].State(&st)
	checkNoPageErrors(t, "chat alice", st.Errors)
	for _, c := range []struct {
		comment string
		want    int
	}{{"bob has entered", 2}, {"bob has left", 2}, {"carol has entered", 1}, {"carol has left", 1}, {"alice has left", 0}} {
		if n := st.count("server", c.comment); n != c.want {
			t.Errorf("alice got %q %d times, want %d", c.comment, n, c.want)
		}
	}
	leaves := logLines(srv.Stderr.String(), "chat leave")
	if len(leaves) != 3 {
		t.Errorf("the server logged %d leaves, want 3 (carol closed, bob reloaded, bob crashed):\n%s", len(leaves), strings.Join(leaves, "\n"))
	}
	for _, l := range logLines(srv.Stderr.String(), "endpoint=chat", "session closed") {
		t.Logf("server: %s", l)
	}
	pages["alice"].Screenshot("chat-alice-at-end")
}

// testFirefoxPage opens the counter or echo page in Firefox ESR with
// ?autotest=<report URL>: the page connects, clicks its three send
// buttons one after the other, waiting for each reply, and POSTs its
// state to the test.
func testFirefoxPage(t *testing.T, bin, page string) {
	srv := StartDemoServer(t, bin, t.TempDir())
	ps := NewPageServer(t)
	pageURL := srv.Page(page+".html") + "?autotest=" + url.QueryEscape(ps.URL+"/result")
	ff := LaunchFirefoxBiDi(t)
	ff.Navigate(t, pageURL)
	raw := ps.WaitResult(t, ff.Browser, 45*time.Second)
	t.Logf("firefox %s: launch to result %v", page, time.Since(ff.Browser.Started).Round(time.Millisecond))
	ff.Screenshot(t, "firefox-"+page+".png")

	switch page {
	case "counter":
		var st counterState
		if err := json.Unmarshal(raw, &st); err != nil {
			t.Fatalf("bad result %s: %v", raw, err)
		}
		checkNoPageErrors(t, "firefox counter", st.Errors)
		want := fmt.Sprint(len("hello")) // the page's default payload
		for _, via := range []string{"datagram", "uni", "bidi"} {
			if got := st.LastReply[via]; got == nil || *got != want {
				t.Errorf("firefox counter %s: reply %v, want %q", via, deref(got), want)
			}
		}
		checkReplies(t, "firefox counter", st.Replies, want)
	case "echo":
		var st echoState
		if err := json.Unmarshal(raw, &st); err != nil {
			t.Fatalf("bad result %s: %v", raw, err)
		}
		checkNoPageErrors(t, "firefox echo", st.Errors)
		for _, via := range []string{"bidi", "uni", "datagram"} {
			if got := st.LastEcho[via]; got == nil || *got != "hello, WebTransport" { // the page's default text
				t.Errorf("firefox echo %s: echo %v, want %q", via, deref(got), "hello, WebTransport")
			}
		}
		checkReplies(t, "firefox echo", st.Echoes, "hello, WebTransport")
	}
}

func deref(p *string) any {
	if p == nil {
		return nil
	}
	return *p
}

// testChromiumShutdown stops the server (SIGTERM: GOAWAY, drain, then the
// sessions still open are closed) with a page connected, several times:
// each time the page must see the close code and reason, not a lost
// connection (Chromium reports the latter when CONNECTION_CLOSE follows the
// session's close too closely).
func testChromiumShutdown(t *testing.T, bin string) {
	br := LaunchChromiumDriver(t)
	const rounds = 5
	for i := range rounds {
		srv := StartDemoServer(t, bin, t.TempDir())
		p, closeTab := br.OpenPage(t, "echo", srv.Page("echo.html"))
		p.Connect()
		srv.Stop(t, 15*time.Second)
		p.WaitJS("window.quicwtState.closed !== null", "the page saw the session end")
		var st struct {
			Closed map[string]any `json:"closed"`
		}
		p.State(&st)
		if st.Closed["code"] != float64(0) || st.Closed["reason"] != "server shutting down" {
			t.Errorf("round %d of %d: the page saw the session end with %v, want code 0 and reason \"server shutting down\"", i+1, rounds, st.Closed)
		}
		closeTab()
	}
}
