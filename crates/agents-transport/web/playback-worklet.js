// Agent audio playback for the agents-rs browser client (AudioWorklet, no dependencies).
//
// The main thread posts PCM16 mono chunks at the negotiated output rate (`{type: "audio", pcm}` with an
// ArrayBuffer). They go into a ring buffer that the render callback drains, resampled linearly to the
// AudioContext rate. `{type: "clear"}` empties the buffer at once (the next render quantum is silent).
// The processor reports what it really played, counted in source samples, with `{type: "position"}`
// messages every ~50 ms while audio plays, when the buffer drains, and right after a clear.
//
// Jitter buffer: when playback starts from an empty queue it waits until PREROLL_MS are queued (or
// MAX_WAIT_MS passed since the first sample arrived, so a short last chunk still plays). The server
// sends up to 200 ms ahead, so at the start of a speech the pre-roll is there at once; it matters when
// the network stalls mid-speech, where it trades a little latency for fewer clicks.

const RING_SECONDS = 30;
const PREROLL_MS = 60;
const MAX_WAIT_MS = 100;

class PlaybackProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.sourceRate = opts.sourceRate || 24000;
    this.step = this.sourceRate / sampleRate; // source samples per output sample
    this.ring = new Float32Array(this.sourceRate * RING_SECONDS);
    this.read = 0; // ring index of the next source sample
    this.size = 0; // buffered source samples
    this.frac = 0; // fractional source position between ring[read-1] and ring[read]
    this.last = 0; // the last source sample consumed
    this.played = 0; // source samples played since the start
    this.enqueued = 0; // source samples received since the start
    this.dropped = 0; // source samples dropped by clears and overflow
    this.clears = 0;
    this.wasPlaying = false;
    this.started = false; // past the pre-roll of the current run
    this.waited = 0; // output samples waited for the pre-roll
    this.preroll = Math.round((this.sourceRate * PREROLL_MS) / 1000);
    this.maxWait = Math.round((sampleRate * MAX_WAIT_MS) / 1000);
    this.sinceReport = 0;
    this.reportEvery = Math.round(sampleRate / 20);
    this.port.onmessage = (e) => this.onMessage(e.data);
  }

  onMessage(msg) {
    if (!msg) return;
    if (msg.type === "audio") {
      const view = new DataView(msg.pcm);
      const n = view.byteLength >> 1;
      for (let i = 0; i < n; i++) {
        if (this.size === this.ring.length) {
          // Full (30 s queued): drop the oldest sample so playback stays close to live.
          this.read = (this.read + 1) % this.ring.length;
          this.size -= 1;
          this.dropped += 1;
        }
        this.ring[(this.read + this.size) % this.ring.length] = view.getInt16(i * 2, true) / 0x8000;
        this.size += 1;
      }
      this.enqueued += n;
    } else if (msg.type === "clear") {
      const dropped = this.size;
      this.dropped += dropped;
      this.read = 0;
      this.size = 0;
      this.frac = 0;
      this.last = 0;
      this.clears += 1;
      this.started = false;
      this.waited = 0;
      this.report("cleared", dropped);
    }
  }

  report(reason, droppedNow) {
    this.sinceReport = 0;
    this.port.postMessage({
      type: "position",
      reason,
      played: this.played,
      buffered: this.size,
      enqueued: this.enqueued,
      dropped: this.dropped,
      droppedNow: droppedNow || 0,
      clears: this.clears,
      playing: this.size > 0,
    });
  }

  process(_inputs, outputs) {
    const out = outputs[0];
    const frames = out[0].length;
    const ch0 = out[0];
    let produced = false;
    if (!this.started && this.size > 0) {
      this.waited += frames;
      if (this.size >= this.preroll || this.waited >= this.maxWait) {
        this.started = true;
        this.waited = 0;
      }
    }
    for (let i = 0; i < frames; i++) {
      if (!this.started) {
        ch0[i] = 0;
        continue;
      }
      // Advance the source position; consume whole source samples.
      let sample = 0;
      if (this.size > 0 || this.frac > 0) {
        this.frac += this.step;
        while (this.frac >= 1 && this.size > 0) {
          this.last = this.ring[this.read];
          this.read = (this.read + 1) % this.ring.length;
          this.size -= 1;
          this.played += 1;
          this.frac -= 1;
        }
        if (this.frac >= 1) this.frac = 0; // ran dry mid-sample
        const next = this.size > 0 ? this.ring[this.read] : this.last;
        sample = this.last + (next - this.last) * this.frac;
        produced = true;
      }
      ch0[i] = sample;
    }
    for (let c = 1; c < out.length; c++) out[c].set(ch0);
    this.sinceReport += frames;
    const playing = this.size > 0;
    if (this.started && !playing && this.frac === 0) this.started = false; // next run pre-rolls again
    if (this.wasPlaying && !playing) this.report("drained");
    else if (playing && this.sinceReport >= this.reportEvery) this.report("tick");
    else if (!playing && produced && this.sinceReport >= this.reportEvery) this.report("tick");
    this.wasPlaying = playing;
    return true;
  }
}

registerProcessor("agents-playback", PlaybackProcessor);
