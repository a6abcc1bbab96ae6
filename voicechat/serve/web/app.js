// The voicechat web page: the browser's microphone and speaker on a live voice session (/v1/voice).
//
// Up: 16 kHz mono 16-bit PCM in 30 ms binary messages (mic-worklet.js makes them), and JSON messages
// (text, clear, interrupt, played). Down: the session's events as JSON, and reply audio as an "audio"
// header followed by one binary message of PCM, played back to back on one AudioContext. The page
// tells the server how much of each reply was really played ("played"), which is what the history keeps
// of an interrupted reply. window.voicechat exposes counters and the turns (tests read them).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const KEY_STORE = "voicechat.key";
  const LEAD_S = 0.05; // scheduling headroom for the first chunk of a reply
  const HOLD_MAX_MS = 5000; // a reply paused for speech over it goes on by itself if the server never says (as talk's)
  const RETRY_MAX_S = 10;
  const RETRY_TRIES = 30;
  const MAX_BACKLOG = 256 * 1024; // bytes of microphone audio waiting in the socket (~8 s): past it, blocks are dropped

  const el = {
    status: $("status"), log: $("log"), empty: $("empty"), scroller: $("scroller"),
    mic: $("mic"), stop: $("stop"), text: $("text"), send: $("send"), textForm: $("text-form"),
    clear: $("clear"), download: $("download"),
    key: $("key"), keyForm: $("key-form"), keyInput: $("key-input"), keyWhy: $("key-why"),
  };

  const stats = {
    audioMessages: 0, audioSamples: 0, audioSeconds: 0, // reply audio received
    playedSeconds: 0, playedReplies: 0, // reply audio confirmed played
    micBlocks: 0, micSamples: 0, // microphone audio sent
    partials: 0, // partial transcripts shown
    holds: 0, resumes: 0, // replies paused here for speech over them (audio_hold), and let go on
    connects: 0,
  };
  const turns = []; // {time, role, text, interrupted, latency, source}
  const shown = new WeakMap(); // turn -> its <li>

  let ws = null; // the socket in use
  let connected = false; // the server said "session"
  let sessionId = null;
  let status = "connecting";
  let retries = 0;
  let retryTimer = null;
  let memoryKey = ""; // the key when the browser keeps no local storage
  let closing = false; // the server said it is shutting down
  let refusal = ""; // an error before the session began: why the server is about to close (not shown as such)

  // --- the view ---------------------------------------------------------------------------------

  const nearBottom = () => el.scroller.scrollHeight - el.scroller.scrollTop - el.scroller.clientHeight < 80;

  function keepScrolled(fn) {
    const stick = nearBottom();
    fn();
    refreshEmpty();
    updateButtons();
    if (stick) el.scroller.scrollTop = el.scroller.scrollHeight;
  }

  function refreshEmpty() {
    el.empty.hidden = el.log.children.length > 0 || !el.key.hidden;
  }

  function clock(date) {
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function bubble(role, extra = "") {
    const li = document.createElement("li");
    li.className = `turn ${role} ${extra}`.trim();
    const b = document.createElement("div");
    b.className = "bubble";
    const p = document.createElement("p");
    p.className = "text";
    b.append(p);
    const meta = document.createElement("div");
    meta.className = "meta";
    li.append(b, meta);
    return li;
  }

  function line(kind, message, action) {
    keepScrolled(() => {
      const li = document.createElement("li");
      li.className = `line ${kind}`;
      li.setAttribute("role", kind === "error" ? "alert" : "note");
      const span = document.createElement("span");
      span.textContent = message.charAt(0).toUpperCase() + message.slice(1);
      li.append(span);
      if (action) {
        const b = document.createElement("button");
        b.type = "button";
        b.className = "link";
        b.textContent = action.label;
        b.addEventListener("click", () => { li.remove(); action.run(); });
        li.append(b);
      }
      el.log.append(li);
    });
  }

  const notice = (message, action) => line("notice", message, action);
  const error = (message, action) => line("error", message, action);

  const LABELS = {
    connecting: "connecting…", listening: "listening", hearing: "hearing you", thinking: "thinking…",
    speaking: "speaking", recording: "recording", idle: "idle", offline: "offline", key: "needs a key", ready: "ready",
  };

  function setStatus(state) {
    status = state;
    const shown = state === "listening" && !mic ? "ready" : state;
    el.status.dataset.state = shown;
    el.status.textContent = LABELS[shown] || shown;
    updateButtons();
  }

  function updateButtons() {
    const on = connected && ws && ws.readyState === WebSocket.OPEN;
    el.text.disabled = !on;
    el.send.disabled = !on || !el.text.value.trim();
    el.clear.disabled = !on || el.log.children.length === 0;
    el.mic.disabled = micBusy || !el.key.hidden;
    el.download.disabled = turns.length === 0;
    el.stop.disabled = !(on && (playing || status === "thinking" || status === "speaking"));
    el.mic.setAttribute("aria-pressed", mic ? "true" : "false");
    el.mic.setAttribute("aria-label", mic ? "Microphone on: turn it off" : "Microphone off: turn it on");
    el.mic.classList.toggle("live", !!mic);
  }

  // --- the transcript ------------------------------------------------------------------------------

  let partial = null; // the user's words while they speak
  let reply = null; // {li, text}: the reply being written
  let lastAssistant = null; // the turn record that turn_stats belongs to
  let stale = false; // after "clear": the rest of the turn under way is not shown (until the next user turn)

  function record(role, text, li, extra = {}) {
    const turn = { time: new Date().toISOString(), role, text, interrupted: false, latency: null, ...extra };
    turns.push(turn);
    shown.set(turn, li);
    li.title = new Date(turn.time).toLocaleString();
    return turn;
  }

  function onPartial(text) {
    stats.partials += 1;
    keepScrolled(() => {
      if (!partial) {
        partial = bubble("user", "partial");
        partial.setAttribute("aria-hidden", "true"); // read out once it is final
        el.log.append(partial);
      }
      partial.querySelector(".text").textContent = text;
    });
  }

  let language = null; // the last user turn's language (ISO 639-1): the reply is in it too

  function onUser(text, source, lang) {
    keepScrolled(() => {
      let li;
      if (source !== "typed" && partial) {
        li = partial;
        li.classList.remove("partial");
        li.removeAttribute("aria-hidden");
        partial = null;
      } else {
        li = bubble("user");
        el.log.insertBefore(li, partial); // a typed line goes before words still being spoken
      }
      li.querySelector(".text").textContent = text;
      language = lang || null;
      if (language) li.querySelector(".text").lang = language; // (a screen reader reads it in its language)
      stale = false;
      const turn = record("user", text, li, { source, language });
      li.querySelector(".meta").textContent =
        clock(new Date(turn.time)) + (source === "typed" ? " · typed" : "") + (language ? " · " + language : "");
    });
    updateButtons();
  }

  function onDropped() {
    if (partial) {
      partial.remove();
      partial = null;
      refreshEmpty();
    }
  }

  function onDelta(text) {
    if (stale) return;
    keepScrolled(() => {
      if (!reply) {
        const li = bubble("assistant", "streaming");
        if (language) li.querySelector(".text").lang = language;
        el.log.append(li);
        reply = { li, text: "" };
      }
      reply.text += text;
      reply.li.querySelector(".text").textContent = reply.text;
    });
  }

  function onReply(text, interrupted) {
    if (stale) return;
    keepScrolled(() => {
      if (!reply) {
        reply = { li: bubble("assistant"), text: "" };
        el.log.append(reply.li);
      }
      const { li } = reply;
      const written = reply.text;
      reply = null;
      li.classList.remove("streaming");
      const p = li.querySelector(".text");
      p.textContent = text || (interrupted ? "" : "(no reply)");
      if (interrupted) {
        li.classList.add("interrupted");
        const rest = written.startsWith(text) ? written.slice(text.length) : "";
        if (rest.trim()) {
          const unsaid = document.createElement("span");
          unsaid.className = "unsaid";
          unsaid.title = "not played, so not kept in the history";
          unsaid.textContent = rest.trimStart();
          p.append(rest.slice(0, rest.length - rest.trimStart().length), unsaid);
        }
      }
      lastAssistant = record("assistant", text, li, { interrupted: !!interrupted });
      renderMeta(lastAssistant);
    });
    updateButtons();
  }

  function onStats(latency) {
    // the turn is over; a listener that gets no audio (microphone off) does not say "listening" again
    if (status === "thinking" || status === "speaking") setStatus("listening");
    const turn = lastAssistant;
    if (stale || !turn || !latency) return;
    const v2v = latency.voice_to_voice;
    const first = latency.first_audio;
    if (typeof v2v === "number") turn.latency = { seconds: v2v, kind: "voice to voice" };
    else if (typeof first === "number") turn.latency = { seconds: first, kind: "to first audio" };
    turn.timing = latency;
    renderMeta(turn);
  }

  function renderMeta(turn) {
    const meta = shown.get(turn).querySelector(".meta");
    meta.replaceChildren(clock(new Date(turn.time)));
    if (turn.interrupted) {
      const tag = document.createElement("span");
      tag.className = "tag";
      tag.textContent = "interrupted";
      meta.append(" · ", tag);
    }
    if (turn.latency) {
      const lat = document.createElement("span");
      lat.className = "latency";
      lat.textContent = `${turn.latency.seconds.toFixed(2)} s ${turn.latency.kind}`;
      lat.title = Object.entries(turn.timing || {}).map(([k, v]) => `${k.replace(/_/g, " ")}: ${v.toFixed(3)} s`).join("\n");
      meta.append(" · ", lat);
    }
  }

  function clearView() {
    el.log.replaceChildren();
    partial = null;
    reply = null;
    lastAssistant = null;
    stale = true;
    turns.length = 0;
    refreshEmpty();
    updateButtons();
  }

  // --- CSV ------------------------------------------------------------------------------------------

  function csvCell(value, isText) {
    let s = value == null ? "" : String(value);
    // a spreadsheet would run it as a formula (full-width forms and leading blanks too)
    if (isText && /^\s*[=+\-@\t\r\uff1d\uff0b\uff0d\uff20\ufe62\ufe63\ufe66]/.test(s)) s = "'" + s;
    return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  }

  function toCsv() {
    const rows = [["time", "role", "text", "interrupted", "latency_s"]];
    for (const t of turns) {
      rows.push([t.time, t.role, t.text, t.role === "assistant" ? String(t.interrupted) : "",
                 t.latency ? t.latency.seconds.toFixed(3) : ""]);
    }
    return rows.map((r) => r.map((v, i) => csvCell(v, i === 2)).join(",")).join("\r\n") + "\r\n";
  }

  function download() {
    const blob = new Blob(["\ufeff" + toCsv()], { type: "text/csv;charset=utf-8" });
    const stamp = new Date().toISOString().slice(0, 16).replace(/[-:]/g, "").replace("T", "-");
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = `voicechat-${sessionId != null ? "session-" + sessionId + "-" : ""}${stamp}.csv`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }

  // --- audio: one context for the microphone and the replies ---------------------------------------

  let ctx = null;
  let warnedSilent = false;

  function audioContext() {
    if (!ctx) ctx = new AudioContext({ latencyHint: "interactive" });
    if (ctx.state === "suspended") ctx.resume().catch(() => {});
    return ctx;
  }

  // browsers start audio only after a gesture: any tap or key press unlocks it
  for (const kind of ["pointerdown", "keydown"]) {
    addEventListener(kind, () => { if (!ctx || ctx.state === "suspended") audioContext(); }, { capture: true });
  }

  // --- reply playback ---------------------------------------------------------------------------------

  let playing = null; // {reply, chunks: [{src, start, duration}], end, ended, done, timer}
  const stoppedAt = new Map(); // reply -> seconds played when it was stopped here

  function heardTime() { // the context time of the sound leaving the speaker now (behind currentTime by the output latency)
    if (!ctx) return 0;
    const t = ctx.getOutputTimestamp ? ctx.getOutputTimestamp().contextTime : undefined;
    return typeof t === "number" && t > 0 && t <= ctx.currentTime ? t : ctx.currentTime;
  }

  function played(p) {
    return p.frozen != null ? p.frozen : playedAt(p, heardTime());
  }

  function playedAt(p, now) { // seconds of the reply sounded by context time now
    let s = 0;
    for (const c of p.chunks) s += Math.min(Math.max(now - c.start, 0), c.duration);
    return s;
  }

  function send(doc) {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(doc));
  }

  function confirm(replyNo, seconds) {
    const s = Math.round(seconds * 1000) / 1000;
    send({ type: "played", reply: replyNo, seconds: s, done: true });
    stats.playedSeconds += s;
    stats.playedReplies += 1;
  }

  function onAudio(header, data) {
    const n = data.byteLength >> 1;
    stats.audioMessages += 1;
    stats.audioSamples += n;
    stats.audioSeconds += n / header.sample_rate;
    if (stoppedAt.has(header.reply) || n === 0) return; // stopped here: late chunks stay silent
    const c = audioContext();
    if (c.state !== "running" && !warnedSilent) {
      warnedSilent = true;
      notice("The browser holds the sound until you tap or press a key on the page.");
    }
    if (playing && playing.reply !== header.reply) finish(playing, played(playing));
    if (!playing) playing = { reply: header.reply, chunks: [], end: 0, ended: false, done: false, timer: null, heldAt: null };
    const view = new DataView(data);
    const buf = c.createBuffer(1, n, header.sample_rate);
    const out = buf.getChannelData(0);
    for (let i = 0; i < n; i++) out[i] = view.getInt16(2 * i, true) / 32768;
    const p = playing;
    if (p.heldAt != null) { // paused: it is queued, and sounds when the reply goes on
      const start = Math.max(p.end, p.heldAt);
      p.chunks.push({ src: null, buf, start, duration: buf.duration });
      p.end = start + buf.duration;
    } else {
      const start = Math.max(p.end, c.currentTime + LEAD_S);
      p.chunks.push({ src: schedule(p, buf, start, 0), buf, start, duration: buf.duration });
      p.end = start + buf.duration;
    }
    updateButtons();
  }

  function schedule(p, buf, when, offset) { // one chunk (from offset seconds into it) to sound at context time when
    const src = ctx.createBufferSource();
    src.buffer = buf;
    src.connect(ctx.destination);
    src.start(when, offset);
    src.onended = () => checkDone(p);
    return src;
  }

  // audio_hold: someone speaks over the reply. It pauses where it is heard now, and goes on from there (a
  // backchannel, a cough) or is stopped (audio_stop). What is played counts once: paused time is not playing time.
  function onAudioHold(replyNo, on) {
    const p = playing;
    if (!p || p.reply !== replyNo || p.done || !ctx || (p.frozen != null && p.heldAt == null)) return; // (stopped here)
    if (on && p.heldAt == null) {
      // what was rendered before now still leaves the speaker; it goes on from exactly here (nothing said twice)
      p.heldAt = ctx.currentTime;
      p.frozen = playedAt(p, p.heldAt);
      for (const c of p.chunks) {
        if (c.src) { c.src.onended = null; try { c.src.stop(); } catch (_) { /* not started yet */ } }
        c.src = null;
      }
      clearTimeout(p.timer);
      clearTimeout(p.holdTimer); // a hold nobody releases ends by itself, as on a sound card
      p.holdTimer = setTimeout(() => onAudioHold(p.reply, false), HOLD_MAX_MS);
      stats.holds += 1;
    } else if (!on && p.heldAt != null) {
      clearTimeout(p.holdTimer);
      const resumeAt = ctx.currentTime + LEAD_S;
      const shift = resumeAt - p.heldAt; // every chunk not yet heard sounds this much later than planned
      for (const c of p.chunks) {
        if (c.start + c.duration <= p.heldAt) continue; // heard before the pause
        const offset = Math.max(0, p.heldAt - c.start);
        c.start += shift;
        c.src = schedule(p, c.buf, c.start + offset, offset);
      }
      p.end += shift;
      p.heldAt = null;
      p.frozen = null;
      stats.resumes += 1;
      if (p.ended) onAudioEnd(p.reply);
    }
  }

  function checkDone(p) {
    if (p.done || p.frozen != null || !p.ended || !ctx) return;
    if (ctx.currentTime + 0.01 >= p.end) finish(p, p.chunks.reduce((sum, c) => sum + c.duration, 0));
  }

  function finish(p, seconds) {
    if (p.done) return;
    p.done = true;
    if (!stoppedAt.has(p.reply)) stoppedAt.set(p.reply, seconds); // (an audio_stop after the end is answered with it)
    clearTimeout(p.timer);
    clearTimeout(p.holdTimer);
    confirm(p.reply, seconds);
    if (playing === p) playing = null;
    updateButtons();
  }

  function onAudioEnd(replyNo) {
    if (playing && playing.reply === replyNo) {
      const p = playing;
      p.ended = true;
      checkDone(p);
      if (!p.done) { // the last chunk's onended is the signal; this timer is in case it never comes
        const wait = Math.max(0, p.end - ctx.currentTime) * 1000 + 250;
        p.timer = setTimeout(() => checkDone(p), wait);
      }
    } else {
      confirm(replyNo, stoppedAt.get(replyNo) || 0);
    }
  }

  function silence() { // stop local playback now; the seconds that were played
    if (!playing) return null;
    const p = playing;
    const seconds = played(p);
    p.frozen = seconds;
    clearTimeout(p.timer);
    clearTimeout(p.holdTimer);
    p.heldAt = null;
    for (const c of p.chunks) {
      if (!c.src) continue; // (paused: not scheduled)
      c.src.onended = null;
      try { c.src.stop(); } catch (_) { /* not started yet */ }
    }
    stoppedAt.set(p.reply, seconds);
    return p;
  }

  function onAudioStop(replyNo) {
    if (playing && playing.reply === replyNo) {
      const p = silence();
      finish(p, p.frozen);
    } else {
      confirm(replyNo, stoppedAt.get(replyNo) || 0);
    }
  }

  function stopReply() {
    const p = silence();
    if (p) {
      send({ type: "interrupt", played: Math.round(p.frozen * 1000) / 1000 });
      playing = null; // the server's audio_stop is answered with the same seconds
    } else {
      send({ type: "interrupt" });
    }
    updateButtons();
  }

  function dropPlayback() { // the socket is gone: nobody to tell
    if (playing) silence();
    playing = null;
  }

  // --- the microphone ---------------------------------------------------------------------------------

  let mic = null; // {stream, source, node}
  let micBusy = false;
  let workletReady = null;

  async function micOn() {
    if (!navigator.mediaDevices || !window.isSecureContext) {
      error("The browser gives the microphone only to secure pages: open this page over https, or as http://localhost on this machine.");
      return;
    }
    const c = audioContext();
    workletReady = workletReady || c.audioWorklet.addModule("static/mic-worklet.js");
    try {
      await workletReady;
    } catch (e) {
      workletReady = null;
      error(`The microphone processor did not load (${e && e.message ? e.message : e}); reload the page.`);
      return;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
    } catch (e) {
      const why = e && e.name === "NotAllowedError" ? "the browser was not allowed to use the microphone; allow it in the site settings"
        : e && e.name === "NotFoundError" ? "no microphone was found" : `the microphone did not start (${e && e.message ? e.message : e})`;
      error(`Microphone: ${why}.`);
      return;
    }
    await c.resume().catch(() => {});
    const source = c.createMediaStreamSource(stream);
    // one silent output, connected: every browser then runs the node (some skip nodes that lead nowhere)
    const node = new AudioWorkletNode(c, "mic-16k", { numberOfInputs: 1, numberOfOutputs: 1, outputChannelCount: [1] });
    node.port.onmessage = (e) => {
      const { pcm, level } = e.data;
      el.mic.style.setProperty("--level", Math.min(1, level * 6).toFixed(3));
      if (connected && ws && ws.readyState === WebSocket.OPEN && ws.bufferedAmount < MAX_BACKLOG) {
        ws.send(pcm);
        stats.micBlocks += 1;
        stats.micSamples += pcm.byteLength >> 1;
      }
    };
    source.connect(node);
    node.connect(c.destination);
    for (const track of stream.getAudioTracks()) track.addEventListener("ended", () => { if (mic && mic.stream === stream) micOff(); });
    mic = { stream, source, node };
  }

  function micOff() {
    if (!mic) return;
    mic.node.port.postMessage("stop");
    mic.node.port.onmessage = null;
    mic.source.disconnect();
    mic.node.disconnect();
    for (const t of mic.stream.getTracks()) t.stop();
    mic = null;
    el.mic.style.setProperty("--level", "0");
  }

  async function toggleMic() {
    if (micBusy) return;
    if (ws && ws.readyState === WebSocket.CLOSED && el.key.hidden) { // closed for good (idle): wanting to talk reconnects
      retries = 0;
      clearTimeout(retryTimer);
      start();
    }
    micBusy = true;
    updateButtons();
    try {
      if (mic) micOff();
      else await micOn();
    } finally {
      micBusy = false;
      setStatus(status);
    }
  }

  // --- the API key ------------------------------------------------------------------------------------

  function apiKey() {
    try { return localStorage.getItem(KEY_STORE) || ""; } catch (_) { return memoryKey; } // storage may be off
  }

  function keepKey(key) {
    memoryKey = key;
    try { localStorage.setItem(KEY_STORE, key); } catch (_) { /* kept for this page only */ }
  }

  function b64url(text) {
    let bin = "";
    for (const b of new TextEncoder().encode(text)) bin += String.fromCharCode(b);
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function askKey(why) {
    el.keyWhy.textContent = why || "Enter the key the server was started with (--api-key). It is kept in this browser.";
    el.key.hidden = false;
    el.key.classList.toggle("wrong", !!why);
    refreshEmpty();
    setStatus("key");
    el.keyInput.focus();
  }

  async function keyAccepted() { // true unless the server answers 401 with the key this page has
    const key = apiKey();
    try {
      const r = await fetch("v1/models", { headers: key ? { Authorization: `Bearer ${key}` } : {}, cache: "no-store" });
      return r.status !== 401;
    } catch (_) {
      return true; // unreachable: the socket will say so and retry
    }
  }

  async function start() {
    if (await keyAccepted()) {
      el.key.hidden = true;
      refreshEmpty();
      connect();
    } else {
      askKey(apiKey() ? "The server did not accept the stored key. Enter the right one." : null);
    }
  }

  // --- the socket -------------------------------------------------------------------------------------

  function connect() {
    clearTimeout(retryTimer);
    if (ws && ws.readyState <= WebSocket.OPEN) { // one socket at a time: the old one's events are ignored from now on
      const old = ws;
      ws = null;
      old.close(1000);
    }
    const url = new URL("v1/voice", location.href); // relative: the page may sit under a proxy's prefix
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    if (sessionId != null) url.searchParams.set("session", String(sessionId));
    url.searchParams.set("hold", "1"); // this page pauses a reply for speech over it (audio_hold)
    const protocols = ["voicechat"];
    const key = apiKey();
    if (key) protocols.push(`voicechat.key.${b64url(key)}`);
    const sock = new WebSocket(url, protocols);
    sock.binaryType = "arraybuffer";
    ws = sock;
    connected = false;
    refusal = "";
    setStatus("connecting");
    let header = null; // an "audio" header waits for its PCM
    sock.onmessage = (e) => {
      if (sock !== ws) return;
      if (typeof e.data !== "string") {
        if (header) onAudio(header, e.data);
        header = null;
        return;
      }
      let msg;
      try { msg = JSON.parse(e.data); } catch (_) { return; }
      if (msg.type === "audio") header = msg;
      else handle(msg);
    };
    sock.onclose = (e) => { if (sock === ws) onClose(e, url.searchParams.has("session")); };
  }

  function retry(message) {
    retries += 1;
    if (retries > RETRY_TRIES) {
      error(`${message}. Gave up reconnecting.`, { label: "Reconnect", run: () => { retries = 0; start(); } });
      return;
    }
    const wait = Math.min(RETRY_MAX_S, 0.5 * 2 ** Math.min(retries - 1, 5));
    if (retries === 1) notice(`${message}; reconnecting…`);
    retryTimer = setTimeout(start, wait * 1000);
  }

  function onClose(e, resuming) {
    const wasConnected = connected;
    const announced = closing;
    connected = false;
    closing = false;
    dropPlayback();
    onDropped();
    if (reply) { // cut off mid-reply: how much was heard is unknown, so no turn is recorded for it
      reply.li.classList.remove("streaming");
      reply.li.classList.add("interrupted");
      reply.li.querySelector(".meta").textContent = "cut off: the connection closed";
      reply = null;
    }
    setStatus("offline");
    const reason = e.reason || refusal;
    if (e.code === 1008 && /key/i.test(reason)) {
      askKey(apiKey() ? "The server did not accept this key. Enter the right one." : null);
    } else if (e.code === 1008 && resuming && !/bad query/i.test(reason)) { // an id the server does not know (or not ours)
      notice(`The conversation could not be resumed (${reason || "not found"}); starting a new one.`);
      sessionId = null;
      retryTimer = setTimeout(start, 300);
    } else if (e.code === 1012) {
      if (announced) retries = Math.max(retries, 1); // said already
      retry("The server is restarting");
    } else if (e.code === 1013) {
      retry(`The server cannot start a session now${reason ? ": " + reason.split(";")[0] : ""}`);
    } else if (e.code === 1006 || e.code === 1011) {
      retry(wasConnected ? "The connection was lost" : "The server cannot be reached");
    } else {
      notice(reason ? `Disconnected: ${reason}.` : "Disconnected.", { label: "Reconnect", run: () => { retries = 0; start(); } });
    }
  }

  function handle(msg) {
    switch (msg.type) {
      case "session":
        if (msg.id != null) sessionId = msg.id;
        if (msg.input) { // the first message of a connection
          connected = true;
          stats.connects += 1;
          if (retries > 0) notice(sessionId != null ? "Reconnected: the conversation goes on." : "Reconnected.");
          retries = 0;
          setStatus("listening");
        }
        break;
      case "status": setStatus(msg.state); break;
      case "partial": onPartial(msg.text); break;
      case "user": onUser(msg.text, msg.source, msg.language); break;
      case "dropped": onDropped(); break;
      case "reply_delta": onDelta(msg.text); break;
      case "reply": onReply(msg.text, msg.interrupted); break;
      case "turn_stats": onStats(msg.latency); break;
      case "audio_end": onAudioEnd(msg.reply); break;
      case "audio_stop": onAudioStop(msg.reply); break;
      case "audio_hold": onAudioHold(msg.reply, !!msg.on); break;
      case "notice": notice(msg.message); break;
      case "error":
        if (connected) error(msg.message);
        else refusal = msg.message; // the close that follows says what to do
        break;
      case "closing":
        if (msg.session != null) sessionId = msg.session;
        closing = true;
        notice("The server is shutting down; this page reconnects when it is back.");
        break;
      default: break; // summary and anything newer
    }
  }

  // --- controls ---------------------------------------------------------------------------------------

  el.mic.addEventListener("click", toggleMic);
  el.stop.addEventListener("click", stopReply);
  el.download.addEventListener("click", download);
  el.clear.addEventListener("click", () => {
    if (playing) {
      silence();
      playing = null;
    }
    send({ type: "clear" });
    clearView();
  });
  el.textForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = el.text.value.trim();
    if (!text || !connected) return;
    send({ type: "text", text });
    el.text.value = "";
    updateButtons();
  });
  el.text.addEventListener("input", updateButtons);
  el.keyForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const key = el.keyInput.value.trim();
    if (!key) return;
    keepKey(key);
    el.keyInput.value = "";
    start();
  });
  addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !el.stop.disabled) stopReply();
  });

  window.voicechat = {
    stats,
    turns,
    get sessionId() { return sessionId; },
    get status() { return status; },
    get connected() { return connected; },
    get micOn() { return !!mic; },
    csv: toCsv,
  };

  updateButtons();
  start();
})();
