// agents-rs browser client: talks to an agents-transport server over the WebSocket protocol v1
// (docs/transports/websocket.md; the browser specifics in docs/transports/browser.md).
//
// ES module, no build step, no dependencies. Microphone: getUserMedia -> AudioWorklet (downmix,
// resample, PCM16 LE, 20 ms chunks) -> binary WebSocket messages. Playback: binary PCM16 frames ->
// AudioWorklet ring buffer; a `clear` event empties it within one render quantum.
//
// URL parameters: `autostart=1` connects without a click (needs the browser's autoplay policy to
// allow audio, e.g. `--autoplay-policy=no-user-gesture-required`); `report=1` also sends the page
// status as `client_report` messages; `ws=<url>` overrides the endpoint (default `/ws` on this host);
// `access_token=<token>` is passed on to the endpoint; `agent=<name>` goes into the hello.

export const PROTOCOL = 1;
export const INPUT_RATE = 16000;
export const OUTPUT_RATE = 24000;
export const CHUNK_MS = 20;
/** Stop sending microphone audio while this many bytes wait in the socket (about 2 s at 16 kHz). */
const MAX_BUFFERED_BYTES = 64 * 1024;
/** Minimum interval between two `playback` messages for the same speech. */
const PLAYBACK_REPORT_MS = 250;
const CLIENT_REPORT_MS = 500;

/** The machine-readable status of the page, also exposed as `window.__agentTest`. */
function newStatus() {
  return {
    phase: "idle", // idle | connecting | ready | closed | failed
    sessionId: null,
    input: null,
    output: null,
    contextRate: null,
    mic: { chunks: 0, bytes: 0, peak: 0, dropped: 0 },
    audio: { frames: 0, bytes: 0 },
    playback: { played: 0, buffered: 0, enqueued: 0, dropped: 0, playing: false, clears: 0 },
    clears: [], // one entry per `clear` event: what the player dropped and where it froze
    speeches: [], // `speech` events
    userTranscripts: [], // final user transcripts
    userInterim: "",
    agentTranscripts: {}, // speech_id -> text so far
    agentFinal: [], // speech ids whose transcript is final
    agentStates: [],
    userStates: [],
    metrics: [],
    tools: [],
    errors: [],
    close: null,
    events: 0,
  };
}

/** Converts samples at `rate` Hz to whole milliseconds. */
function ms(samples, rate) {
  return Math.round((samples * 1000) / rate);
}

export class AgentClient extends EventTarget {
  constructor(options = {}) {
    super();
    this.options = options;
    this.status = newStatus();
    this.ws = null;
    this.ctx = null;
    this.stream = null;
    this.capture = null;
    this.player = null;
    this.speech = null; // { id, segmentStart (played samples at its first frame), done, lastReport }
    this.reportTimer = null;
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
    this.dispatchEvent(new CustomEvent("status", { detail: this.status }));
  }

  endpoint() {
    const base = this.options.ws || "/ws";
    const url = new URL(base, window.location.href);
    if (url.protocol === "http:") url.protocol = "ws:";
    if (url.protocol === "https:") url.protocol = "wss:";
    if (this.options.accessToken) url.searchParams.set("access_token", this.options.accessToken);
    return url.toString();
  }

  async connect() {
    if (this.ws) return;
    this.status = newStatus();
    this.status.phase = "connecting";
    this.emit("phase", "connecting");
    try {
      this.ctx = new AudioContext({ latencyHint: "interactive" });
      this.status.contextRate = this.ctx.sampleRate;
      const base = new URL(".", import.meta.url);
      await this.ctx.audioWorklet.addModule(new URL("capture-worklet.js", base));
      await this.ctx.audioWorklet.addModule(new URL("playback-worklet.js", base));
      this.stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      });
      if (this.ctx.state !== "running") await this.ctx.resume();
    } catch (err) {
      this.fail("audio_setup", `microphone or audio setup failed: ${err && err.message ? err.message : err}`);
      return;
    }
    const ws = new WebSocket(this.endpoint());
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    ws.onopen = () => {
      const hello = {
        type: "hello",
        protocol: PROTOCOL,
        input: { sample_rate: INPUT_RATE, channels: 1 },
        output: { sample_rate: OUTPUT_RATE, channels: 1 },
        metadata: { client: "agents-rs-browser", user_agent: navigator.userAgent },
      };
      if (this.options.agent) hello.agent = this.options.agent;
      ws.send(JSON.stringify(hello));
    };
    ws.onmessage = (e) => {
      if (typeof e.data === "string") this.onJson(e.data);
      else this.onAudio(e.data);
    };
    ws.onerror = () => this.pushError({ code: "socket", message: "WebSocket error", fatal: false });
    ws.onclose = (e) => this.onClosed(e);
  }

  startAudio(ready) {
    const outRate = (ready.output && ready.output.sample_rate) || OUTPUT_RATE;
    const inRate = (ready.input && ready.input.sample_rate) || INPUT_RATE;
    this.player = new AudioWorkletNode(this.ctx, "agents-playback", {
      numberOfInputs: 0,
      outputChannelCount: [1],
      processorOptions: { sourceRate: outRate },
    });
    this.player.port.onmessage = (e) => this.onPlayerPosition(e.data);
    this.player.connect(this.ctx.destination);
    const source = this.ctx.createMediaStreamSource(this.stream);
    this.capture = new AudioWorkletNode(this.ctx, "agents-capture", {
      numberOfOutputs: 0,
      processorOptions: { targetRate: inRate, chunkMs: ready.frame_ms || CHUNK_MS },
    });
    this.capture.port.onmessage = (e) => this.onMicChunk(e.data);
    source.connect(this.capture);
    this.source = source;
    if (this.options.report) {
      this.reportTimer = setInterval(() => this.sendReport("tick"), CLIENT_REPORT_MS);
    }
  }

  onMicChunk(buf) {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || this.status.phase !== "ready") return;
    if (ws.bufferedAmount > MAX_BUFFERED_BYTES) {
      this.status.mic.dropped += 1;
      return;
    }
    const pcm = new Int16Array(buf);
    let peak = this.status.mic.peak;
    for (let i = 0; i < pcm.length; i++) {
      const a = Math.abs(pcm[i]);
      if (a > peak) peak = a;
    }
    this.status.mic.peak = peak;
    this.status.mic.chunks += 1;
    this.status.mic.bytes += buf.byteLength;
    ws.send(buf);
  }

  onAudio(buf) {
    if (!this.player) return;
    if (buf.byteLength % 2 !== 0) {
      this.pushError({ code: "bad_audio", message: "odd-length audio frame from the server", fatal: false });
      return;
    }
    this.status.audio.frames += 1;
    this.status.audio.bytes += buf.byteLength;
    if (this.speech && this.speech.segmentStart === null) {
      // The first frame of this speech starts playing once everything queued before it has played.
      this.speech.segmentStart = this.status.playback.enqueued;
    }
    this.status.playback.enqueued += buf.byteLength >> 1;
    this.player.port.postMessage({ type: "audio", pcm: buf }, [buf]);
  }

  onPlayerPosition(p) {
    const pb = this.status.playback;
    pb.played = p.played;
    pb.buffered = p.buffered;
    pb.dropped = p.dropped;
    pb.playing = p.playing;
    pb.clears = p.clears;
    if (p.reason === "cleared") {
      const last = this.status.clears[this.status.clears.length - 1];
      if (last && last.droppedSamples === null) {
        last.droppedSamples = p.droppedNow;
        last.playedAtClear = p.played;
        last.bufferedAfter = p.buffered;
      }
      this.sendPlayback(true);
      this.sendReport("clear");
    } else if (p.reason === "drained") {
      if (this.speech && this.speech.done) this.sendPlayback(true);
      this.sendReport("drained");
    } else {
      this.sendPlayback(false);
    }
    this.emit("playback", pb);
  }

  /** Sends what was really played of the current speech (`playback` message of the protocol). */
  sendPlayback(finished) {
    const s = this.speech;
    if (!s || s.finishedSent || s.segmentStart === null || !this.status.output) return;
    const now = performance.now();
    if (!finished && now - s.lastReport < PLAYBACK_REPORT_MS) return;
    s.lastReport = now;
    const played = Math.max(0, this.status.playback.played - s.segmentStart);
    const positionMs = ms(played, this.status.output.sample_rate || OUTPUT_RATE);
    s.positionMs = positionMs;
    if (finished) s.finishedSent = true;
    this.send({ type: "playback", speech_id: s.id, position_ms: positionMs, finished });
  }

  onJson(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch (_) {
      this.pushError({ code: "bad_json", message: "unparsable message from the server", fatal: false });
      return;
    }
    this.status.events += 1;
    switch (msg.type) {
      case "ready":
        this.status.phase = "ready";
        this.status.sessionId = msg.session_id;
        this.status.input = msg.input;
        this.status.output = msg.output;
        this.startAudio(msg);
        this.emit("phase", "ready");
        break;
      case "user_transcript":
        if (msg.final) {
          this.status.userTranscripts.push(msg.text);
          this.status.userInterim = "";
        } else {
          this.status.userInterim = msg.text;
        }
        this.emit("user_transcript", msg);
        break;
      case "agent_transcript": {
        const id = msg.speech_id || "";
        this.status.agentTranscripts[id] = (this.status.agentTranscripts[id] || "") + (msg.text || "");
        if (msg.final && !this.status.agentFinal.includes(id)) this.status.agentFinal.push(id);
        this.emit("agent_transcript", msg);
        break;
      }
      case "agent_state":
        this.status.agentStates.push(msg.state);
        this.emit("agent_state", msg.state);
        break;
      case "user_state":
        this.status.userStates.push(msg.state);
        this.emit("user_state", msg.state);
        break;
      case "speech":
        this.status.speeches.push({ speech_id: msg.speech_id, event: msg.event, interrupted: !!msg.interrupted });
        if (msg.event === "started") {
          if (this.speech && !this.speech.finishedSent && this.speech.segmentStart !== null) this.sendPlayback(true);
          this.speech = { id: msg.speech_id, segmentStart: null, done: false, lastReport: 0, finishedSent: false };
        } else if (msg.event === "done" && this.speech && this.speech.id === msg.speech_id) {
          this.speech.done = true;
          if (this.status.playback.buffered === 0 && this.speech.segmentStart !== null) this.sendPlayback(true);
        }
        this.emit("speech", msg);
        break;
      case "clear":
        this.clearPlayback(msg.speech_id || null);
        break;
      case "tool":
        this.status.tools.push({ name: msg.name, arguments: msg.arguments, output: msg.output, is_error: !!msg.is_error });
        this.emit("tool", msg);
        break;
      case "metrics":
        if (msg.turn) {
          this.status.metrics.push(msg.turn);
          this.emit("metrics", msg.turn);
        }
        break;
      case "error":
        if (msg.code === "unknown_type" && this.options.report && this.reportsSent > 0) {
          // A server without the client_report extension: stop sending it (errors count towards its abuse limit).
          this.options.report = false;
          if (this.reportTimer) clearInterval(this.reportTimer);
          this.reportTimer = null;
        }
        this.pushError({ code: msg.code, message: msg.message, fatal: !!msg.fatal });
        break;
      case "pong":
        this.emit("pong", msg);
        break;
      case "close":
        this.status.close = msg.reason || "closed";
        this.emit("close", msg);
        break;
      default:
        // Unknown events are ignored: the server may be newer than the page.
        break;
    }
  }

  /** Stops playback now and drops everything queued (on the server's `clear` event). */
  clearPlayback(speechId) {
    this.status.clears.push({
      speech_id: speechId,
      at: performance.now(),
      bufferedBefore: this.status.playback.buffered,
      playedBefore: this.status.playback.played,
      droppedSamples: null,
      playedAtClear: null,
      bufferedAfter: null,
    });
    if (this.player) this.player.port.postMessage({ type: "clear" });
    if (this.speech) this.speech.done = true;
    this.emit("clear", speechId);
  }

  pushError(err) {
    this.status.errors.push(err);
    this.emit("error_event", err);
  }

  fail(code, message) {
    this.pushError({ code, message, fatal: true });
    this.status.phase = "failed";
    this.emit("phase", "failed");
    this.teardown();
  }

  send(obj) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(obj));
  }

  sendReport(reason) {
    if (!this.options.report) return;
    this.reportsSent = (this.reportsSent || 0) + 1;
    this.send({ type: "client_report", reason, report: this.status });
  }

  interrupt() {
    this.send({ type: "interrupt" });
  }

  sendText(text) {
    if (text) this.send({ type: "text", text });
  }

  setMuted(muted) {
    if (this.capture) this.capture.port.postMessage({ type: "mute", muted });
  }

  disconnect() {
    this.send({ type: "bye" });
    if (this.ws) this.ws.close(1000, "bye");
    this.teardown();
  }

  onClosed(e) {
    this.status.phase = this.status.phase === "failed" ? "failed" : "closed";
    if (!this.status.close) this.status.close = e.reason || `socket closed (${e.code})`;
    this.ws = null;
    this.teardown();
    this.emit("phase", this.status.phase);
  }

  teardown() {
    if (this.reportTimer) clearInterval(this.reportTimer);
    this.reportTimer = null;
    if (this.stream) this.stream.getTracks().forEach((t) => t.stop());
    this.stream = null;
    if (this.ctx) this.ctx.close().catch(() => {});
    this.ctx = null;
    this.capture = null;
    this.player = null;
    this.source = null;
  }
}

// ---- The page: wires an AgentClient to the DOM in index.html ----

function el(id) {
  return document.getElementById(id);
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    const td = document.createElement("td");
    td.textContent = c === undefined || c === null ? "–" : String(c);
    tr.appendChild(td);
  }
  return tr;
}

function fmtMs(v) {
  return typeof v === "number" ? `${Math.round(v)} ms` : null;
}

export function mountPage() {
  const params = new URLSearchParams(window.location.search);
  const client = new AgentClient({
    ws: params.get("ws") || undefined,
    accessToken: params.get("access_token") || undefined,
    agent: params.get("agent") || undefined,
    report: params.get("report") === "1",
  });
  window.__agentClient = client;
  const publish = () => {
    window.__agentTest = client.status;
  };
  publish();

  const connectBtn = el("connect");
  const agentLines = new Map(); // speech_id -> element

  const addLine = (who, text) => {
    const p = document.createElement("p");
    p.className = who;
    p.textContent = text;
    el("transcript").appendChild(p);
    el("transcript").scrollTop = el("transcript").scrollHeight;
    return p;
  };

  client.addEventListener("status", publish);
  client.addEventListener("phase", (e) => {
    el("phase").textContent = e.detail;
    connectBtn.textContent = e.detail === "ready" || e.detail === "connecting" ? "Disconnect" : "Connect";
    el("session").textContent = client.status.sessionId || "";
  });
  client.addEventListener("agent_state", (e) => (el("agent-state").textContent = e.detail));
  client.addEventListener("user_state", (e) => (el("user-state").textContent = e.detail));
  client.addEventListener("user_transcript", (e) => {
    if (e.detail.final) {
      addLine("user", e.detail.text);
      el("interim").textContent = "";
    } else {
      el("interim").textContent = e.detail.text;
    }
  });
  client.addEventListener("agent_transcript", (e) => {
    const id = e.detail.speech_id || "";
    let line = agentLines.get(id);
    if (!line) {
      line = addLine("agent", "");
      agentLines.set(id, line);
    }
    line.textContent = client.status.agentTranscripts[id];
  });
  client.addEventListener("clear", (e) => {
    const line = agentLines.get(e.detail || (client.speech && client.speech.id) || "");
    if (line) line.classList.add("interrupted");
  });
  client.addEventListener("metrics", (e) => {
    const t = e.detail;
    el("metrics").appendChild(
      row([
        t.speech_id,
        fmtMs(t.end_of_utterance_ms),
        fmtMs(t.transcription_ms),
        fmtMs(t.llm_ttft_ms),
        fmtMs(t.tts_ttfb_ms),
        fmtMs(t.e2e_ms),
      ]),
    );
  });
  client.addEventListener("tool", (e) => {
    const t = e.detail;
    const args = typeof t.arguments === "string" ? t.arguments : JSON.stringify(t.arguments);
    const out = typeof t.output === "string" ? t.output : JSON.stringify(t.output);
    el("tools").appendChild(row([t.name, args, out, t.is_error ? "error" : "ok"]));
  });
  client.addEventListener("error_event", (e) => {
    const li = document.createElement("li");
    li.textContent = `${e.detail.code}: ${e.detail.message}${e.detail.fatal ? " (fatal)" : ""}`;
    el("errors").appendChild(li);
  });
  client.addEventListener("playback", (e) => {
    el("playing").textContent = e.detail.playing ? "playing" : "silent";
  });

  connectBtn.addEventListener("click", () => {
    if (client.ws) client.disconnect();
    else client.connect();
  });
  el("interrupt").addEventListener("click", () => client.interrupt());
  el("mute").addEventListener("change", (e) => client.setMuted(e.target.checked));
  el("text-form").addEventListener("submit", (e) => {
    e.preventDefault();
    client.sendText(el("text").value.trim());
    el("text").value = "";
  });

  if (params.get("autostart") === "1") client.connect();
  return client;
}
