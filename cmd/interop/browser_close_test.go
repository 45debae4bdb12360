package interop_test

// Closing a session while one of its streams is open, seen by browsers.
// The server's close must reach the page as closeCode and reason, not as
// "Connection lost" (spec.md section 7: close codes lost in browsers).

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quicwt/quicwt/quicwt"
)

// closeOpenPage opens {{N}} sessions one after the other; in each it opens
// a bidi stream, writes "close" and keeps the stream open, and records how
// the session closed.
const closeOpenPage = `<!doctype html>
<meta charset="utf-8">
<title>quicwt close with an open stream</title>
<pre id="out"></pre>
<script>
const WT_URL = "{{URL}}", N = {{N}};
const HASH = {{HASH}};
const out = document.getElementById("out");
const enc = new TextEncoder();
function log(m) { out.textContent += m + "\n"; fetch("/log", {method: "POST", body: m}).catch(() => {}); }
function withTimeout(p, ms, what) {
  return Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error("timeout: " + what)), ms))]);
}
async function one(i) {
  const wt = new WebTransport(WT_URL + "?i=" + i, {serverCertificateHashes: [{algorithm: "sha-256", value: HASH}]});
  const closed = wt.closed.then(c => ({closeCode: c.closeCode, reason: c.reason}), e => ({error: String(e)}));
  await withTimeout(wt.ready, 10000, "ready");
  const s = await wt.createBidirectionalStream();
  const w = s.writable.getWriter();
  await w.write(enc.encode("close"));
  const r = s.readable.getReader();
  r.read().catch(() => {});
  return await withTimeout(closed, 10000, "closed");
}
(async () => {
  const sessions = [];
  for (let i = 0; i < N; i++) {
    try { sessions.push(await one(i)); } catch (e) { sessions.push({error: "setup: " + e}); }
    log("session " + i + ": " + JSON.stringify(sessions[i]));
  }
  await fetch("/result", {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify({sessions})});
})();
</script>
`

const closeOpenSessions = 16

func runBrowserCloseOpen(t *testing.T, name string, launch func(t *testing.T, url string) *Browser) {
	matrix.Track(t, name, "quicwt → page", "session close code+reason with a stream open")
	cert := BrowserCert(t)
	var mu sync.Mutex
	var serverErrs []string
	qs := StartQuicwtServer(t, "127.0.0.1", cert, SessionHandler(t, func(sess *quicwt.Session, r *http.Request) {
		go func() {
			ctx := sess.Context()
			s, err := sess.AcceptStream(ctx)
			if err != nil {
				return
			}
			buf := make([]byte, 5)
			s.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "close" {
				mu.Lock()
				serverErrs = append(serverErrs, fmt.Sprintf("read %q: %v", buf, err))
				mu.Unlock()
			}
			// The stream stays open in both directions.
			if err := sess.CloseWithError(browserCloseCode, browserCloseReason); err != nil {
				mu.Lock()
				serverErrs = append(serverErrs, fmt.Sprintf("CloseWithError: %v", err))
				mu.Unlock()
			}
		}()
	}))
	ps := NewPageServer(t)
	page := strings.NewReplacer("{{URL}}", qs.URL("/close"), "{{HASH}}", hexBytesJS(cert.Hash[:]), "{{N}}", fmt.Sprint(closeOpenSessions)).Replace(closeOpenPage)
	b := launch(t, ps.Add("/close.html", page))
	raw := ps.WaitResult(t, b, 45*time.Second)
	b.Stop(5 * time.Second)
	var res struct {
		Sessions []struct {
			CloseCode *uint32 `json:"closeCode"`
			Reason    string  `json:"reason"`
			Error     string  `json:"error"`
		} `json:"sessions"`
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Fatalf("bad result %q: %v", raw, err)
	}
	mu.Lock()
	for _, e := range serverErrs {
		t.Errorf("quicwt server: %s", e)
	}
	mu.Unlock()
	if len(res.Sessions) != closeOpenSessions {
		t.Fatalf("page reported %d sessions, want %d", len(res.Sessions), closeOpenSessions)
	}
	lost := 0
	for i, s := range res.Sessions {
		if s.Error != "" || s.CloseCode == nil || *s.CloseCode != browserCloseCode || s.Reason != browserCloseReason {
			lost++
			t.Errorf("session %d: page saw closeCode %v reason %q error %q, want %d %q", i, derefCode(s.CloseCode), s.Reason, s.Error, browserCloseCode, browserCloseReason)
		}
	}
	t.Logf("%s: %d of %d closes with an open stream lost their code and reason", name, lost, closeOpenSessions)
}

func TestChromiumCloseWithOpenStream(t *testing.T) {
	runBrowserCloseOpen(t, "chromium", func(t *testing.T, url string) *Browser { return LaunchChromium(t, url) })
}

func TestFirefoxCloseWithOpenStream(t *testing.T) {
	runBrowserCloseOpen(t, "firefox-esr", func(t *testing.T, url string) *Browser { return LaunchFirefox(t, url) })
}
