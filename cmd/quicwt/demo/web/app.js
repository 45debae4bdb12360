// Shared code of the quicwt demo pages. No build step: plain browser JS.
//
// Every page keeps its observable state in window.quicwtState so that a
// browser test can drive the page through element ids and check results:
//   page         "counter" | "echo" | "clicker" | "chat"
//   configLoaded true once /config.json was read and #url prefilled
//   config       the JSON config (url, certHashHex, certHashBase64, useCertHash)
//   connecting   true while new WebTransport(...).ready is pending
//   connected    true while the session is up
//   closed       null, or {code, reason} / {error} once the session ended
//   errors       array of error strings (also shown in the log)
//   log          array of log lines (the #log element shows them)
// plus page-specific fields documented in each page.
"use strict";

const enc = new TextEncoder();
const dec = new TextDecoder();

function $(id) { return document.getElementById(id); }

function initState(page, extra) {
  window.quicwtState = Object.assign({
    page: page, configLoaded: false, config: null,
    connecting: false, connected: false, closed: null,
    errors: [], log: [],
  }, extra);
  return window.quicwtState;
}

function log(msg) {
  const line = new Date().toISOString().slice(11, 23) + " " + msg;
  window.quicwtState.log.push(line);
  const el = $("log");
  if (el) {
    el.textContent += line + "\n";
    el.scrollTop = el.scrollHeight;
  }
}

function error(e) {
  const s = String(e && e.message ? e.message : e);
  window.quicwtState.errors.push(s);
  log("ERROR: " + s);
}

function setStatus(s) {
  const el = $("status");
  if (el) el.textContent = s;
}

// loadConfig reads /config.json (the WebTransport address and the
// certificate hash) and prefills #url with it plus the page's path.
async function loadConfig(path) {
  try {
    const r = await fetch("/config.json", {cache: "no-store"});
    const cfg = await r.json();
    window.quicwtState.config = cfg;
    if (!$("url").value) $("url").value = cfg.url + path;
    window.quicwtState.configLoaded = true;
    log("config: " + cfg.url + (cfg.useCertHash ? " (certificate hash " + cfg.certHashHex.slice(0, 16) + "...)" : ""));
  } catch (e) {
    error("cannot load /config.json: " + e);
  }
}

function hexToBytes(hex) {
  const b = new Uint8Array(hex.length / 2);
  for (let i = 0; i < b.length; i++) b[i] = parseInt(hex.substr(2 * i, 2), 16);
  return b;
}

// connect opens a WebTransport session to #url, pinning the server's
// certificate with serverCertificateHashes when the config says so.
async function connect() {
  const st = window.quicwtState;
  if (st.connected || st.connecting) return null;
  const url = $("url").value;
  const opts = {};
  const cfg = st.config;
  if (cfg && cfg.useCertHash) {
    opts.serverCertificateHashes = [{algorithm: "sha-256", value: hexToBytes(cfg.certHashHex)}];
  }
  st.connecting = true;
  st.closed = null;
  setStatus("connecting");
  log("connecting to " + url);
  let wt;
  try {
    wt = new WebTransport(url, opts);
    await wt.ready;
  } catch (e) {
    st.connecting = false;
    setStatus("failed");
    error("connect failed: " + e);
    return null;
  }
  st.connecting = false;
  st.connected = true;
  setStatus("connected");
  log("connected");
  window.quicwtTransport = wt;
  wt.closed.then((info) => {
    st.connected = false;
    st.closed = {code: info.closeCode, reason: info.reason};
    setStatus("closed");
    log("session closed: code " + info.closeCode + " reason '" + info.reason + "'");
  }).catch((e) => {
    st.connected = false;
    st.closed = {error: String(e)};
    setStatus("closed");
    error("session ended: " + e);
  });
  return wt;
}

function disconnect() {
  const wt = window.quicwtTransport;
  if (wt && window.quicwtState.connected) {
    wt.close({closeCode: 0, reason: "bye"});
    log("closing");
  }
}

// readAll reads a ReadableStream of bytes until FIN and returns the text.
async function readAll(readable) {
  const reader = readable.getReader();
  const chunks = [];
  let n = 0;
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    chunks.push(value);
    n += value.length;
  }
  const all = new Uint8Array(n);
  let off = 0;
  for (const c of chunks) { all.set(c, off); off += c.length; }
  return dec.decode(all);
}

// readDatagrams calls onText for every datagram until the session ends.
async function readDatagrams(wt, onText) {
  const reader = wt.datagrams.readable.getReader();
  try {
    for (;;) {
      const {value, done} = await reader.read();
      if (done) return;
      onText(dec.decode(value));
    }
  } catch (e) { /* session ended */ }
}

// acceptUni calls onText with the content of every unidirectional stream
// the server opens, each read until FIN.
async function acceptUni(wt, onText) {
  const reader = wt.incomingUnidirectionalStreams.getReader();
  try {
    for (;;) {
      const {value, done} = await reader.read();
      if (done) return;
      readAll(value).then(onText, (e) => error("uni stream: " + e));
    }
  } catch (e) { /* session ended */ }
}

async function sendDatagram(wt, text) {
  const w = wt.datagrams.writable.getWriter();
  try { await w.write(enc.encode(text)); } finally { w.releaseLock(); }
}

async function sendUni(wt, text) {
  const s = await wt.createUnidirectionalStream();
  const w = s.getWriter();
  await w.write(enc.encode(text));
  await w.close();
}

// sendBidi writes text on a new bidirectional stream, FINs it, and returns
// everything the server writes back until its FIN.
async function sendBidi(wt, text) {
  const s = await wt.createBidirectionalStream();
  const reply = readAll(s.readable);
  const w = s.writable.getWriter();
  await w.write(enc.encode(text));
  await w.close();
  return reply;
}

function addItem(listId, text) {
  const li = document.createElement("li");
  li.textContent = text;
  $(listId).appendChild(li);
}

// guard runs an async click handler and logs its failure.
function guard(fn) {
  return () => fn().catch(error);
}

// autotest is a test hook for browsers that have no driver here
// (cmd/interop runs Firefox ESR this way). It acts only on a page opened
// with ?autotest=<report URL>: the page then connects by itself, clicks
// each button of steps ([id, check, retryMs] triples) in turn, waiting
// until check() is true (at most 10 s; a step with retryMs, such as a
// datagram that may be lost, is clicked again every retryMs, at most 3
// times more), and POSTs window.quicwtState as JSON to the report URL.
// Without the parameter it does nothing.
async function autotest(steps) {
  const report = new URLSearchParams(location.search).get("autotest");
  if (!report) return;
  const st = window.quicwtState;
  // until resolves true once check() holds, false after ms.
  const until = async (check, ms) => {
    for (const end = Date.now() + ms; !check();) {
      if (Date.now() > end) return false;
      await new Promise((r) => setTimeout(r, 20));
    }
    return true;
  };
  try {
    $("connect").click();
    if (!await until(() => st.connected || st.errors.length > 0, 10000)) throw new Error("autotest: timeout waiting to connect");
    if (!st.connected) throw new Error("autotest: not connected");
    for (const [id, check, retryMs] of steps) {
      for (let n = 0; ; n++) {
        $(id).click();
        const last = !retryMs || n === 3;
        if (await until(check, last ? 10000 : retryMs)) break;
        if (last) throw new Error("autotest: timeout waiting after clicking " + id);
        log("autotest: no answer yet, clicking " + id + " again");
      }
    }
  } catch (e) {
    error(e);
  }
  log("autotest: reporting to " + report);
  await fetch(report, {method: "POST", mode: "no-cors", body: JSON.stringify(st)}).catch(error);
}
