package interop_test

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// Cross-origin pages (issue 16): a page served from another origin (the
// test's page server, another port) opens a session to `quicwt serve`.
// By default the server refuses it with HTTP 403 on the CONNECT: the
// page's ready promise rejects, and Chromium's net log shows the CONNECT
// stream answered and the QUIC connection without error (the 403 itself
// is checked at the protocol level by cmd/quicwt/demo's TestAllowOrigins:
// the browser's log does not carry the status). With -allow-origin naming that origin (or *)
// the same page gets its session and an echo.
func TestDemoAllowOrigin(t *testing.T) {
	bin := BuildQuicwt(t, t.TempDir())
	ps := NewPageServer(t)

	refused := StartDemoServerWith(t, bin, t.TempDir(), "-store", "memory")
	res, netlog := runOriginPage(t, ps, refused, "/refused.html")
	if res.Ready || !strings.Contains(res.Error, "WebTransportError") {
		t.Fatalf("without -allow-origin: %+v, want a rejected ready promise", res)
	}
	// Chromium's net log: the WebTransport client failed on its CONNECT
	// stream (which the server answered, then stopped reading with
	// H3_NO_ERROR) with no QUIC error, and no CONNECTION_CLOSE went either
	// way: the connection itself was fine.
	checkNoQUICError(t, netlog, "FAILED")
	if n := len(netlog.find("QUIC_SESSION_STOP_SENDING_FRAME_RECEIVED", func(p map[string]any) bool {
		return p["stream_id"] == 0.0 && p["ietf_error_code"] == 256.0 // H3_NO_ERROR on the CONNECT stream
	})); n != 1 {
		t.Errorf("the CONNECT stream was stopped %d times with H3_NO_ERROR, want once", n)
	}
	if n := len(logLines(refused.Stderr.String(), "origin rejected", "origin="+ps.URL)); n != 1 {
		t.Errorf("the server logged %d rejections of %s, want 1", n, ps.URL)
	}
	refused.Stop(t, 10*time.Second)

	for _, allow := range []string{ps.URL, "https://other.example," + ps.URL + "/", "*"} {
		srv := StartDemoServerWith(t, bin, t.TempDir(), "-store", "memory", "-allow-origin", allow)
		res, netlog := runOriginPage(t, ps, srv, "/allowed.html")
		if !res.Ready || res.Echo != "cross-origin ✓" {
			t.Errorf("-allow-origin %s: %+v, want a session and its echo", allow, res)
		}
		checkNoQUICError(t, netlog, "CONNECTED")
		srv.Stop(t, 10*time.Second)
	}
}

// checkNoQUICError checks that the page's WebTransport client reached
// state (CONNECTED or FAILED) with no QUIC error and that no QUIC
// CONNECTION_CLOSE frame was sent or received.
func checkNoQUICError(t *testing.T, nl netLog, state string) {
	t.Helper()
	st := nl.find("QUIC_SESSION_WEBTRANSPORT_CLIENT_STATE_CHANGED", func(p map[string]any) bool { return p["next_state"] == state })
	if len(st) != 1 {
		t.Errorf("net log: %d WebTransport client changes to %s, want 1", len(st), state)
	}
	for _, p := range st {
		if e, ok := p["error"].(map[string]any); ok && e["quic_error"] != 0.0 {
			t.Errorf("net log: the WebTransport client reached %s with QUIC error %v (%v)", state, e["quic_error"], e["details"])
		}
	}
	for _, ev := range []string{"QUIC_SESSION_CONNECTION_CLOSE_FRAME_RECEIVED", "QUIC_SESSION_CONNECTION_CLOSE_FRAME_SENT"} {
		for _, p := range nl.find(ev, nil) {
			t.Errorf("net log: %s %v", ev, p)
		}
	}
}

// netLog is a Chromium net log (--log-net-log): a JSON object whose
// "constants" name the event types and whose "events" come one per line.
// A log cut short by the browser's exit is read up to its last whole
// event.
type netLog struct {
	types  map[float64]string
	events []struct {
		Type   float64        `json:"type"`
		Params map[string]any `json:"params"`
	}
}

func parseNetLog(t *testing.T, b []byte) netLog {
	t.Helper()
	s := string(b)
	i := strings.Index(s, `"events"`)
	if i < 0 {
		t.Fatalf("net log without events (%d bytes)", len(b))
	}
	var head struct {
		Constants struct {
			LogEventTypes map[string]float64 `json:"logEventTypes"`
		} `json:"constants"`
	}
	if err := json.Unmarshal([]byte(strings.TrimRight(strings.TrimSpace(s[:i]), ",")+"}"), &head); err != nil {
		t.Fatalf("net log constants: %v", err)
	}
	nl := netLog{types: map[float64]string{}}
	for name, v := range head.Constants.LogEventTypes {
		nl.types[v] = name
	}
	for _, line := range strings.Split(s[i:], "\n")[1:] {
		var ev struct {
			Type   float64        `json:"type"`
			Params map[string]any `json:"params"`
		}
		if json.Unmarshal([]byte(strings.TrimSuffix(strings.TrimSpace(line), ",")), &ev) == nil {
			nl.events = append(nl.events, ev)
		}
	}
	if len(nl.events) == 0 {
		t.Fatal("net log: no events")
	}
	return nl
}

// find returns the params of the events named name that match (all if
// match is nil).
func (nl netLog) find(name string, match func(map[string]any) bool) []map[string]any {
	var out []map[string]any
	for _, ev := range nl.events {
		if nl.types[ev.Type] == name && (match == nil || match(ev.Params)) {
			out = append(out, ev.Params)
		}
	}
	return out
}

type originResult struct {
	Ready bool   `json:"ready"`
	Error string `json:"error"`
	Echo  string `json:"echo"`
}

// runOriginPage serves a page at path on ps that opens srv's /echo,
// pinning its certificate, sends one bidirectional echo and posts the
// outcome; it returns the outcome and Chromium's net log.
func runOriginPage(t *testing.T, ps *PageServer, srv *DemoServer, path string) (originResult, netLog) {
	t.Helper()
	m := regexp.MustCompile(`SHA-256 \(hex\): +([0-9a-f]{64})`).FindStringSubmatch(srv.Stdout.String())
	if m == nil {
		t.Fatalf("no certificate hash in the banner:\n%s", srv.Stdout.String())
	}
	hash, _ := hex.DecodeString(m[1])
	page := `<!doctype html><meta charset="utf-8"><title>cross-origin</title><script>
(async () => {
  const res = {ready: false};
  try {
    const wt = new WebTransport(` + jsString(srv.WTURL+"/echo") + `, {serverCertificateHashes: [{algorithm: "sha-256", value: ` + hexBytesJS(hash) + `}]});
    await wt.ready;
    res.ready = true;
    const s = await wt.createBidirectionalStream();
    const w = s.writable.getWriter();
    await w.write(new TextEncoder().encode("cross-origin ✓"));
    await w.close();
    const r = s.readable.getReader();
    let got = "";
    const dec = new TextDecoder();
    for (;;) { const {value, done} = await r.read(); if (done) break; got += dec.decode(value, {stream: true}); }
    res.echo = got;
    wt.close();
  } catch (e) { res.error = String(e); }
  await fetch("/result", {method: "POST", body: JSON.stringify(res)});
})();
</script>`
	url := ps.Add(path, page)
	logFile := filepath.Join(t.TempDir(), "netlog.json")
	b := LaunchChromium(t, url, "--log-net-log="+logFile, "--net-log-capture-mode=Everything")
	raw := ps.WaitResult(t, b, 30*time.Second)
	b.Stop(5 * time.Second)
	var res originResult
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Fatalf("result %s: %v", raw, err)
	}
	nl, err := os.ReadFile(logFile)
	if err != nil {
		t.Fatalf("net log: %v", err)
	}
	return res, parseNetLog(t, nl)
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
