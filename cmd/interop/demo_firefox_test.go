package interop_test

// Firefox ESR for the demo tests: started like LaunchFirefox (same
// profile prefs, environment and process-group handling) but with its
// remote agent on, so that the test can open pages and take screenshots
// over WebDriver BiDi. The pages drive themselves with their ?autotest=
// hook; BiDi only navigates and captures.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"regexp"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

var bidiURL = regexp.MustCompile(`WebDriver BiDi listening on (ws://\S+)`)

// FirefoxBiDi is Firefox ESR with a WebDriver BiDi session on its first
// browsing context.
type FirefoxBiDi struct {
	Browser *Browser
	ws      *websocket.Conn
	context string // the browsing context (tab) id

	mu      sync.Mutex
	next    int64
	waiting map[int64]chan bidiMessage
	readErr error
	done    chan struct{}
}

// bidiMessage is a WebDriver BiDi command, response or event.
type bidiMessage struct {
	Type    string          `json:"type,omitempty"` // "success", "error" or "event" from the browser
	ID      int64           `json:"id,omitempty"`
	Method  string          `json:"method,omitempty"`
	Params  json.RawMessage `json:"params,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   string          `json:"error,omitempty"`
	Message string          `json:"message,omitempty"`
}

// LaunchFirefoxBiDi starts headless Firefox ESR on about:blank with its
// remote agent on a free port and opens a BiDi session. Everything is
// stopped in t.Cleanup.
func LaunchFirefoxBiDi(t testing.TB) *FirefoxBiDi {
	t.Helper()
	home, profile := newFirefoxProfile(t)
	env := browserEnv(t, home, "MOZ_REMOTE_SETTINGS_DEVTOOLS=1", "MOZ_CRASHREPORTER_DISABLE=1")
	args := []string{"--headless", "--no-remote", "--profile", profile, "--remote-debugging-port=0", "--remote-allow-origins=http://127.0.0.1", "about:blank"}
	b := startBrowser(t, "firefox", FirefoxBinary, args, env)

	var addr string
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := bidiURL.FindStringSubmatch(b.Output.String()); m != nil {
			addr = m[1]
			break
		}
		if err, done := b.exited(); done {
			t.Fatalf("firefox exited before its remote agent was up: %v\n%s", err, tail(b.Output.String(), 40))
		}
		if time.Now().After(deadline) {
			t.Fatalf("firefox printed no WebDriver BiDi address within 30s\n%s", tail(b.Output.String(), 40))
		}
		time.Sleep(20 * time.Millisecond)
	}
	cfg, err := websocket.NewConfig(addr+"/session", "http://127.0.0.1") // x/net/websocket always sends Origin: allowed by --remote-allow-origins
	if err != nil {
		t.Fatal(err)
	}
	cfg.Dialer = &net.Dialer{Timeout: 10 * time.Second}
	ws, err := websocket.DialConfig(cfg)
	if err != nil {
		t.Fatalf("dialing firefox's WebDriver BiDi at %s: %v", addr, err)
	}
	ws.MaxPayloadBytes = 64 << 20 // screenshots
	f := &FirefoxBiDi{Browser: b, ws: ws, waiting: map[int64]chan bidiMessage{}, done: make(chan struct{})}
	go f.readLoop()
	t.Cleanup(func() {
		ws.Close()
		<-f.done
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := f.Call(ctx, "session.new", map[string]any{"capabilities": map[string]any{}}, nil); err != nil {
		t.Fatalf("BiDi session.new: %v", err)
	}
	var tree struct {
		Contexts []struct {
			Context string `json:"context"`
		} `json:"contexts"`
	}
	if err := f.Call(ctx, "browsingContext.getTree", map[string]any{}, &tree); err != nil || len(tree.Contexts) == 0 {
		t.Fatalf("BiDi browsingContext.getTree: %v (%d contexts)", err, len(tree.Contexts))
	}
	f.context = tree.Contexts[0].Context
	vp := map[string]any{"context": f.context, "viewport": map[string]any{"width": 1100, "height": 1000}}
	if err := f.Call(ctx, "browsingContext.setViewport", vp, nil); err != nil {
		t.Logf("BiDi browsingContext.setViewport: %v (screenshots keep the default size)", err)
	}
	return f
}

// readLoop hands responses to their callers; events are dropped.
func (f *FirefoxBiDi) readLoop() {
	defer close(f.done)
	for {
		var msg bidiMessage
		err := websocket.JSON.Receive(f.ws, &msg)
		f.mu.Lock()
		if err != nil {
			f.readErr = err
			for id, ch := range f.waiting {
				close(ch)
				delete(f.waiting, id)
			}
			f.mu.Unlock()
			return
		}
		if ch, ok := f.waiting[msg.ID]; ok && msg.Type != "event" {
			ch <- msg
			delete(f.waiting, msg.ID)
		}
		f.mu.Unlock()
	}
}

// Call sends a BiDi command and decodes its result into res (if not nil).
func (f *FirefoxBiDi) Call(ctx context.Context, method string, params, res any) error {
	p, err := json.Marshal(params)
	if err != nil {
		return err
	}
	ch := make(chan bidiMessage, 1)
	f.mu.Lock()
	if f.readErr != nil {
		f.mu.Unlock()
		return fmt.Errorf("BiDi connection: %w", f.readErr)
	}
	f.next++
	id := f.next
	f.waiting[id] = ch
	f.mu.Unlock()
	if err := websocket.JSON.Send(f.ws, bidiMessage{ID: id, Method: method, Params: p}); err != nil {
		return fmt.Errorf("BiDi %s: %w", method, err)
	}
	select {
	case msg, ok := <-ch:
		if !ok {
			f.mu.Lock()
			defer f.mu.Unlock()
			return fmt.Errorf("BiDi %s: connection ended: %v", method, f.readErr)
		}
		if msg.Type == "error" {
			return fmt.Errorf("BiDi %s: %s: %s", method, msg.Error, msg.Message)
		}
		if res != nil {
			return json.Unmarshal(msg.Result, res)
		}
		return nil
	case <-ctx.Done():
		f.mu.Lock()
		delete(f.waiting, id)
		f.mu.Unlock()
		return fmt.Errorf("BiDi %s: %w", method, ctx.Err())
	}
}

// Navigate loads url in the tab (not waiting for its load event).
func (f *FirefoxBiDi) Navigate(t testing.TB, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := f.Call(ctx, "browsingContext.navigate", map[string]any{"context": f.context, "url": url, "wait": "none"}, nil); err != nil {
		t.Fatalf("firefox: navigating to %s: %v", url, err)
	}
}

// Screenshot saves a PNG of the whole page as name in ScreenshotDir.
func (f *FirefoxBiDi) Screenshot(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var res struct {
		Data string `json:"data"`
	}
	err := f.Call(ctx, "browsingContext.captureScreenshot", map[string]any{"context": f.context, "origin": "document"}, &res)
	if err == nil && res.Data == "" {
		err = errors.New("no image data")
	}
	if err != nil {
		t.Errorf("firefox screenshot: %v", err)
		return
	}
	png, err := base64.StdEncoding.DecodeString(res.Data)
	if err != nil {
		t.Errorf("firefox screenshot: %v", err)
		return
	}
	SavePNG(t, name, png)
}
