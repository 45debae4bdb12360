package interop_test

// quicwt server <-> real browsers (Chromium, Firefox ESR): bidi streams
// opened by each side, uni streams both ways, datagrams both ways, and the
// session close code and reason, checked on both sides.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quicwt/quicwt/quicwt"
	"github.com/quicwt/quicwt/settings"
)

// The close the server sends when the page asks for it: a code above 2^31
// (the JS closeCode is an unsigned 32-bit integer) and a non-ASCII reason.
const (
	browserCloseCode   = 0xBEEF1234
	browserCloseReason = "bye from quicwt ✓"
)

// echoPage runs the exchange against {{URL}} pinned to {{HASH}} and POSTs
// the outcome of every step to /result.
const echoPage = `<!doctype html>
<meta charset="utf-8">
<title>quicwt interop</title>
<pre id="out"></pre>
<script>
const WT_URL = "{{URL}}";
const HASH = {{HASH}};
const out = document.getElementById("out");
const result = {steps: {}, errors: [], userAgent: navigator.userAgent};
const enc = new TextEncoder(), dec = new TextDecoder();
function log(m) {
  out.textContent += m + "\n";
  fetch("/log", {method: "POST", body: m}).catch(() => {});
}
function withTimeout(p, ms, what) {
  return Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error("timeout: " + what)), ms))]);
}
async function readAll(readable) {
  const r = readable.getReader();
  const chunks = [];
  for (;;) {
    const {value, done} = await r.read();
    if (done) break;
    chunks.push(value);
  }
  let n = 0;
  for (const c of chunks) n += c.length;
  const b = new Uint8Array(n);
  let o = 0;
  for (const c of chunks) { b.set(c, o); o += c.length; }
  return dec.decode(b);
}
async function writeAll(writable, s) {
  const w = writable.getWriter();
  await w.write(enc.encode(s));
  await w.close();
}
async function step(name, f) {
  try {
    result.steps[name] = await withTimeout(f(), 10000, name);
    log(name + ": " + JSON.stringify(result.steps[name]));
  } catch (e) {
    result.errors.push(name + ": " + e);
    log(name + " FAILED: " + e);
  }
}
async function main() {
  const wt = new WebTransport(WT_URL, {serverCertificateHashes: [{algorithm: "sha-256", value: HASH}]});
  const closed = wt.closed.then(i => ({closeCode: i.closeCode, reason: i.reason}), e => ({error: String(e)}));
  await withTimeout(wt.ready, 10000, "ready");
  log("ready");
  result.steps.maxDatagramSize = wt.datagrams.maxDatagramSize;
  const uniIn = [];
  const uniReader = wt.incomingUnidirectionalStreams.getReader();
  const gotUni = (async () => {
    while (uniIn.length < 2) {
      const {value, done} = await uniReader.read();
      if (done) break;
      uniIn.push(await readAll(value));
    }
    return uniIn.slice().sort();
  })();
  await step("bidiPageOpened", async () => {
    const s = await wt.createBidirectionalStream();
    const [, text] = await Promise.all([writeAll(s.writable, "bidi from page"), readAll(s.readable)]);
    return text;
  });
  await step("bidiServerOpened", async () => {
    const r = wt.incomingBidirectionalStreams.getReader();
    const {value: s} = await r.read();
    r.releaseLock();
    const text = await readAll(s.readable);
    await writeAll(s.writable, "reply:" + text);
    return text;
  });
  await step("uniPageOpened", async () => {
    const s = await wt.createUnidirectionalStream();
    await writeAll(s, "uni from page");
    return "sent";
  });
  await step("uniReceived", () => gotUni);
  await step("datagram", async () => {
    const w = wt.datagrams.writable.getWriter();
    const r = wt.datagrams.readable.getReader();
    let got = null;
    const rd = r.read().then(({value}) => { got = dec.decode(value); });
    while (got === null) {
      await w.write(enc.encode("dgram from page"));
      await Promise.race([rd, new Promise(res => setTimeout(res, 100))]);
    }
    w.releaseLock();
    r.releaseLock();
    return got;
  });
  await step("close", async () => {
    const s = await wt.createBidirectionalStream();
    await writeAll(s.writable, "close");
    return await closed;
  });
}
main().catch(e => { result.errors.push("main: " + e); log("main FAILED: " + e); }).finally(() => {
  fetch("/result", {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(result)})
    .then(() => log("posted"), e => log("post failed: " + e));
});
</script>
`

// pageResult is what echoPage posts.
type pageResult struct {
	Steps struct {
		MaxDatagramSize  int      `json:"maxDatagramSize"`
		BidiPageOpened   string   `json:"bidiPageOpened"`
		BidiServerOpened string   `json:"bidiServerOpened"`
		UniReceived      []string `json:"uniReceived"`
		Datagram         string   `json:"datagram"`
		Close            struct {
			CloseCode *uint32 `json:"closeCode"`
			Reason    string  `json:"reason"`
			Error     string  `json:"error"`
		} `json:"close"`
	} `json:"steps"`
	Errors    []string `json:"errors"`
	UserAgent string   `json:"userAgent"`
}

// echoServerSide records what the quicwt server saw of the browser.
type echoServerSide struct {
	mu        sync.Mutex
	req       *http.Request
	sess      *quicwt.Session
	uni       []string // page's uni streams
	dgrams    []string
	bidiEcho  []string // page-opened bidi streams echoed
	bidiReply string   // reply on the server-opened bidi stream
	errs      []string
	closeErr  error // CloseWithError's result
	closed    chan struct{}
}

func (e *echoServerSide) errf(format string, args ...any) {
	e.mu.Lock()
	e.errs = append(e.errs, fmt.Sprintf(format, args...))
	e.mu.Unlock()
}

// handle serves one browser session: it opens a uni and a bidi stream
// towards the page, echoes the page's bidi streams ("echo:"), uni streams
// (on a new uni stream, "uni-echo:") and datagrams ("echo:"), and closes
// the session with browserCloseCode when a bidi stream says "close".
func (e *echoServerSide) handle(sess *quicwt.Session, r *http.Request) {
	e.mu.Lock()
	if e.req != nil {
		e.mu.Unlock()
		e.errf("a second session from the browser")
		sess.CloseWithError(1, "one session only")
		return
	}
	e.req, e.sess = r, sess
	e.mu.Unlock()
	ctx := sess.Context()
	go func() {
		s, err := sess.OpenUniStreamSync(ctx)
		if err != nil {
			e.errf("open uni: %v", err)
			return
		}
		s.Write([]byte("uni from server"))
		s.Close()
	}()
	go func() {
		s, err := sess.OpenStreamSync(ctx)
		if err != nil {
			e.errf("open bidi: %v", err)
			return
		}
		s.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := s.Write([]byte("bidi from server")); err != nil {
			e.errf("write bidi: %v", err)
			return
		}
		s.Close()
		b, err := io.ReadAll(s)
		if err != nil {
			e.errf("read bidi reply: %v", err)
			return
		}
		e.mu.Lock()
		e.bidiReply = string(b)
		e.mu.Unlock()
	}()
	go func() {
		for {
			s, err := sess.AcceptStream(ctx)
			if err != nil {
				return
			}
			go func() {
				s.SetDeadline(time.Now().Add(20 * time.Second))
				b, err := io.ReadAll(s)
				if err != nil {
					e.errf("read page bidi: %v", err)
					return
				}
				if string(b) == "close" {
					// End this stream first so that no stream of the
					// session is open at the close: quicwt resets open
					// streams in the same packet as (and, in quic-go's
					// packing, ahead of) WT_CLOSE_SESSION, which Chromium
					// sometimes reports as "Connection lost". That case is
					// TestChromiumCloseWithOpenStream.
					s.Close()
					err := sess.CloseWithError(browserCloseCode, browserCloseReason)
					e.mu.Lock()
					e.closeErr = err
					e.mu.Unlock()
					close(e.closed)
					return
				}
				e.mu.Lock()
				e.bidiEcho = append(e.bidiEcho, string(b))
				e.mu.Unlock()
				s.Write(append([]byte("echo:"), b...))
				s.Close()
			}()
		}
	}()
	go func() {
		for {
			s, err := sess.AcceptUniStream(ctx)
			if err != nil {
				return
			}
			go func() {
				s.SetReadDeadline(time.Now().Add(20 * time.Second))
				b, err := io.ReadAll(s)
				if err != nil {
					e.errf("read page uni: %v", err)
					return
				}
				e.mu.Lock()
				e.uni = append(e.uni, string(b))
				e.mu.Unlock()
				out, err := sess.OpenUniStreamSync(ctx)
				if err != nil {
					e.errf("open uni echo: %v", err)
					return
				}
				out.Write(append([]byte("uni-echo:"), b...))
				out.Close()
			}()
		}
	}()
	go func() {
		for {
			d, err := sess.ReceiveDatagram(ctx)
			if err != nil {
				return
			}
			e.mu.Lock()
			e.dgrams = append(e.dgrams, string(d))
			e.mu.Unlock()
			if err := sess.SendDatagram(append([]byte("echo:"), d...)); err != nil {
				e.errf("send datagram: %v", err)
			}
		}
	}()
}

// browserRun is one browser's run of echoPage against a quicwt server.
type browserRun struct {
	name   string // matrix peer, e.g. "chromium"
	launch func(t *testing.T, pageURL string) *Browser
}

func runBrowserEcho(t *testing.T, br browserRun) {
	start := time.Now()
	artifacts := ArtifactsDir(t)
	cert := BrowserCert(t)
	side := &echoServerSide{closed: make(chan struct{})}
	qs := StartQuicwtServer(t, "127.0.0.1", cert, SessionHandler(t, side.handle), func(s *quicwt.Server) {
		// The page's origin is http://127.0.0.1:<page port>, another port
		// than the WebTransport authority; it is checked below instead.
		s.CheckOrigin = func(*http.Request) bool { return true }
	})
	ps := NewPageServer(t)
	page := strings.NewReplacer("{{URL}}", qs.URL("/echo"), "{{HASH}}", hexBytesJS(cert.Hash[:])).Replace(echoPage)
	pageURL := ps.Add("/echo.html", page)

	b := br.launch(t, pageURL)
	raw := ps.WaitResult(t, b, 45*time.Second)
	elapsed := time.Since(b.Started)
	b.Stop(5 * time.Second)
	b.SaveOutput(t, artifacts, br.name+"-output.log")
	_ = os.WriteFile(filepath.Join(artifacts, br.name+"-result.json"), raw, 0o644)
	t.Logf("%s: launch to result %v, total %v; artifacts in %s", br.name, elapsed.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), artifacts)

	var res pageResult
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Fatalf("bad result %q: %v", raw, err)
	}
	t.Logf("%s: user agent %q, maxDatagramSize %d", br.name, res.UserAgent, res.Steps.MaxDatagramSize)
	for _, e := range res.Errors {
		t.Errorf("%s page: %s", br.name, e)
	}

	select {
	case <-side.closed:
	case <-time.After(5 * time.Second):
		t.Errorf("the server never got the page's close request")
	}
	side.mu.Lock()
	defer side.mu.Unlock()
	for _, e := range side.errs {
		t.Errorf("quicwt server: %s", e)
	}

	check := func(direction, feature string, ok bool, format string, args ...any) {
		t.Helper()
		matrix.Record(br.name, direction, feature, ok)
		if !ok {
			t.Errorf("%s %s %s: %s", br.name, direction, feature, fmt.Sprintf(format, args...))
		}
	}
	const toServer, toPage = "page → quicwt", "quicwt → page"

	// What the browser negotiated and sent.
	if side.req == nil {
		t.Fatalf("%s never reached the quicwt handler", br.name)
	}
	r := side.req
	check("handshake", "draft (want draft-02)", side.sess.Draft() == settings.Draft02, "negotiated %v", side.sess.Draft())
	check("handshake", ":protocol webtransport", r.Proto == "webtransport", "got %q", r.Proto)
	check("handshake", "sec-webtransport-http3-draft02: 1", r.Header.Get("Sec-Webtransport-Http3-Draft02") == "1", "got %q", r.Header.Get("Sec-Webtransport-Http3-Draft02"))
	check("handshake", "Origin = page origin", r.Header.Get("Origin") == ps.URL, "got %q, want %q", r.Header.Get("Origin"), ps.URL)
	check("handshake", "serverCertificateHashes (ECDSA P-256, 13 days)", res.Steps.BidiPageOpened != "" || res.Steps.UniReceived != nil, "the page got no data through the session")

	check(toServer, "bidi stream (page opens, echo)", res.Steps.BidiPageOpened == "echo:bidi from page" && slices.Equal(side.bidiEcho, []string{"bidi from page"}),
		"page got %q, server saw %q", res.Steps.BidiPageOpened, side.bidiEcho)
	check(toPage, "bidi stream (server opens, reply)", res.Steps.BidiServerOpened == "bidi from server" && side.bidiReply == "reply:bidi from server",
		"page got %q, server got reply %q", res.Steps.BidiServerOpened, side.bidiReply)
	check(toServer, "uni stream", slices.Equal(side.uni, []string{"uni from page"}) && slices.Contains(res.Steps.UniReceived, "uni-echo:uni from page"),
		"server got %q, page got %q", side.uni, res.Steps.UniReceived)
	check(toPage, "uni stream", slices.Contains(res.Steps.UniReceived, "uni from server"), "page got %q", res.Steps.UniReceived)
	check(toServer, "datagram", slices.Contains(side.dgrams, "dgram from page"), "server got %q", side.dgrams)
	check(toPage, "datagram", res.Steps.Datagram == "echo:dgram from page", "page got %q", res.Steps.Datagram)
	cl := res.Steps.Close
	check(toPage, "session close code+reason", cl.Error == "" && cl.CloseCode != nil && *cl.CloseCode == browserCloseCode && cl.Reason == browserCloseReason,
		"page saw closeCode %v reason %q error %q, want %d %q", derefCode(cl.CloseCode), cl.Reason, cl.Error, browserCloseCode, browserCloseReason)
	var se *quicwt.SessionError
	if side.closeErr != nil {
		t.Errorf("CloseWithError: %v", side.closeErr)
	}
	if err := side.sess.Err(); !asSessionError(err, &se) || se.Code != browserCloseCode || se.Message != browserCloseReason || se.Remote || se.Cause != nil {
		t.Errorf("server Session.Err() = %v, want the local close with code %d", err, browserCloseCode)
	}
	t.Logf("matrix for %s:\n%s", br.name, matrix.Table(br.name))
}

func derefCode(p *uint32) any {
	if p == nil {
		return nil
	}
	return *p
}

func asSessionError(err error, se **quicwt.SessionError) bool {
	e, ok := err.(*quicwt.SessionError)
	if ok {
		*se = e
	}
	return ok
}

func TestChromium(t *testing.T) {
	runBrowserEcho(t, browserRun{
		name: "chromium",
		launch: func(t *testing.T, pageURL string) *Browser {
			return LaunchChromium(t, pageURL)
		},
	})
}

func TestFirefox(t *testing.T) {
	runBrowserEcho(t, browserRun{
		name: "firefox-esr",
		launch: func(t *testing.T, pageURL string) *Browser {
			return LaunchFirefox(t, pageURL)
		},
	})
}
