// convmem live page: streams a file or the microphone to /ws (protocol: GET /api/protocol) and
// draws each utterance's emotion as soon as the server sends it. Plain JS, no build step.
"use strict";

const TARGET_RATE = 16000;       // the model's rate: files are resampled to it here
const CHUNK_SECONDS = 0.25;      // audio per binary frame
const MAX_BUFFERED = 1 << 20;    // pause sending while this many bytes wait in the socket
const COLORS = { neu: "#9e9e9e", hap: "#f2b705", sad: "#3b6fd8", ang: "#d7263d" };

const $ = (id) => document.getElementById(id);
const state = { protocol: null, session: null, duration: 0, utterances: [], mic: null };

function setStatus(text, kind = "busy") {
  $("status").textContent = text;
  $("status").dataset.state = kind;
}

function colorOf(label) {
  if (COLORS[label]) return COLORS[label];
  let h = 0;
  for (const c of label) h = (h * 31 + c.charCodeAt(0)) % 360;
  return `hsl(${h}, 60%, 50%)`;
}

// Little-endian float32 whatever the platform's byte order (the wire format is f32le).
function f32le(samples) {
  const view = new DataView(new ArrayBuffer(samples.length * 4));
  for (let i = 0; i < samples.length; i++) view.setFloat32(i * 4, samples[i], true);
  return view.buffer;
}

// ---- one WebSocket session -------------------------------------------------------------------

class LiveSession {
  constructor(sampleRate) {
    const url = new URL("/ws", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    const token = $("token").value.trim();
    if (token) url.searchParams.set("token", token);
    this.sampleRate = sampleRate;
    this.ws = new WebSocket(url);
    this.ws.binaryType = "arraybuffer";
    this.failed = null;
    this.ready = new Promise((resolve, reject) => { this._ready = resolve; this._fail = reject; });
    this.ended = new Promise((resolve) => { this._ended = resolve; });
    this.ws.onopen = () => this.ws.send(JSON.stringify(
      { type: "start", sample_rate: sampleRate, format: "f32le", mode: "stream" }));
    this.ws.onmessage = (ev) => this.onMessage(JSON.parse(ev.data));
    this.ws.onclose = (ev) => {
      const why = this.failed || (ev.code === 1000 ? null : `connection closed (${ev.code}${ev.reason ? ": " + ev.reason : ""})`);
      if (why) { setStatus(why, "error"); this._fail(new Error(why)); }
      this._ended(why);
    };
  }

  onMessage(msg) {
    if (msg.type === "ready") {
      this.id = msg.session;
      setStatus(`session ${msg.session} (${msg.memory})`);
      drawLegend(msg.labels);
      this._ready(msg);
    } else if (msg.type === "utterance") {
      addUtterance(msg);
    } else if (msg.type === "end") {
      setStatus(`done: ${msg.utterances} utterance(s), ${msg.audio_seconds.toFixed(1)} s`, "done");
    } else if (msg.type === "error") {
      this.failed = `error ${msg.code}: ${msg.message}`;
      setStatus(this.failed, "error");
    }
  }

  async send(samples) {
    while (this.ws.readyState === WebSocket.OPEN && this.ws.bufferedAmount > MAX_BUFFERED) {
      await new Promise((r) => setTimeout(r, 20));
    }
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(f32le(samples));
  }

  finish() {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ type: "end" }));
    return this.ended;
  }
}

// ---- the timeline ----------------------------------------------------------------------------

function drawLegend(labels) {
  $("legend").innerHTML = "";
  for (const l of labels || []) {
    const s = document.createElement("span");
    s.innerHTML = `<i style="background:${colorOf(l)}"></i>${l}`;
    $("legend").appendChild(s);
  }
}

function resetTimeline(duration) {
  state.utterances = [];
  state.duration = duration || 0;
  $("utterances").innerHTML = "";
  drawBar();
}

function addUtterance(u) {
  state.utterances.push(u);
  state.duration = Math.max(state.duration, u.end);
  const li = document.createElement("li");
  li.className = "utt";
  li.dataset.emotion = u.emotion;
  const probs = Object.entries(u.probs).map(([k, p]) => `${k} ${(100 * p).toFixed(0)}%`).join(" · ");
  li.innerHTML = `<span class="time">${u.start.toFixed(2)}–${u.end.toFixed(2)} s</span>` +
    `<i style="background:${colorOf(u.emotion)}"></i><b class="emotion"></b>` +
    (u.speaker ? ` <span class="speaker"></span>` : "") + `<span class="probs">${probs}</span>`;
  li.querySelector(".emotion").textContent = u.emotion;   // server strings go in as text, never HTML
  if (u.speaker) li.querySelector(".speaker").textContent = `(${u.speaker})`;
  $("utterances").appendChild(li);
  drawBar();
}

function drawBar() {
  const bar = $("bar");
  bar.innerHTML = "";
  const total = Math.max(state.duration, 1e-6);
  for (const u of state.utterances) {
    const seg = document.createElement("div");
    seg.className = "seg";
    seg.style.left = `${(100 * u.start) / total}%`;
    seg.style.width = `${(100 * (u.end - u.start)) / total}%`;
    seg.style.background = colorOf(u.emotion);
    seg.title = `${u.emotion} ${u.start.toFixed(2)}–${u.end.toFixed(2)} s`;
    bar.appendChild(seg);
  }
  $("axis-end").textContent = `${state.duration.toFixed(1)} s`;
}

// ---- sources: a file, or the microphone ------------------------------------------------------

async function decodeTo16k(file) {
  // An OfflineAudioContext decodes without needing a user gesture, and rendering the decoded
  // buffer into a 1-channel 16 kHz context both mixes it down and resamples it.
  const bytes = await file.arrayBuffer();
  const decoded = await new OfflineAudioContext(1, 1, TARGET_RATE).decodeAudioData(bytes);
  const out = new OfflineAudioContext(1, Math.max(1, Math.ceil(decoded.duration * TARGET_RATE)), TARGET_RATE);
  const src = out.createBufferSource();
  src.buffer = decoded;
  src.connect(out.destination);
  src.start();
  return (await out.startRendering()).getChannelData(0);
}

async function streamFile(file) {
  setBusy(true);
  try {
    setStatus(`decoding ${file.name}…`);
    const samples = await decodeTo16k(file);
    resetTimeline(samples.length / TARGET_RATE);
    const session = (state.session = new LiveSession(TARGET_RATE));
    await session.ready;
    const chunk = Math.round(CHUNK_SECONDS * TARGET_RATE);
    for (let i = 0; i < samples.length && !session.failed; i += chunk) {
      await session.send(samples.subarray(i, i + chunk));
    }
    await session.finish();
  } catch (err) {
    setStatus(String(err.message || err), "error");
  } finally {
    setBusy(false);
    $("file").value = "";
  }
}

async function startMic() {
  if (!navigator.mediaDevices || !window.AudioWorkletNode) {
    setStatus("microphone needs a secure page (https or localhost) and a recent browser", "error");
    return;
  }
  setBusy(true);
  try {
    const stream = await navigator.mediaDevices.getUserMedia(
      { audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
    let ctx;
    try { ctx = new AudioContext({ sampleRate: TARGET_RATE }); } catch (_) { ctx = new AudioContext(); }
    await ctx.audioWorklet.addModule("/static/capture-worklet.js");
    resetTimeline(0);
    const session = (state.session = new LiveSession(ctx.sampleRate));
    await session.ready;
    const node = new AudioWorkletNode(ctx, "capture", { processorOptions: { chunk: Math.round(CHUNK_SECONDS * ctx.sampleRate) } });
    node.port.onmessage = (ev) => session.send(ev.data);
    const mute = ctx.createGain();
    mute.gain.value = 0;  // keeps the node pulled by the graph without playing the mic back
    ctx.createMediaStreamSource(stream).connect(node).connect(mute).connect(ctx.destination);
    state.mic = { stream, ctx, node, session };
    session.ended.then(() => stopMic());
    $("stop").disabled = false;
  } catch (err) {
    setStatus(`microphone: ${err.message || err}`, "error");
    setBusy(false);
  }
}

async function stopMic() {
  const mic = state.mic;
  if (!mic) return;
  state.mic = null;
  mic.node.port.postMessage("flush");
  await new Promise((r) => setTimeout(r, 50));
  mic.stream.getTracks().forEach((t) => t.stop());
  await mic.ctx.close();
  await mic.session.finish();
  setBusy(false);
}

function setBusy(busy) {
  $("file").disabled = busy;
  $("mic").disabled = busy;
  $("stop").disabled = !busy || !state.mic;
}

async function init() {
  $("file").addEventListener("change", (ev) => ev.target.files[0] && streamFile(ev.target.files[0]));
  $("mic").addEventListener("click", startMic);
  $("stop").addEventListener("click", stopMic);
  try {
    const p = (state.protocol = await (await fetch("/api/protocol")).json());
    $("token-row").hidden = !p.auth;
    drawLegend(p.labels);
    $("model").textContent = `memory: ${p.memory} · max ${p.limits.max_session_seconds} s of audio per session`;
    setStatus("idle", "idle");
  } catch (err) {
    setStatus(`cannot reach the server: ${err}`, "error");
  }
}

init();
