// Microphone capture for the agents-rs browser client (AudioWorklet, no dependencies).
//
// Downmixes every input channel to mono, resamples from the AudioContext rate (`sampleRate`, a worklet
// global) to the negotiated input rate, converts to PCM16 little-endian and posts one 20 ms chunk
// (an ArrayBuffer, transferred) at a time to the main thread, which sends it over the WebSocket.
//
// Resampling: downsampling averages the input samples that fall in each output period (a box filter
// that removes most of the aliasing energy for speech), upsampling interpolates linearly. Equal rates
// pass through.

class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.targetRate = opts.targetRate || 16000;
    this.chunkMs = opts.chunkMs || 20;
    this.step = sampleRate / this.targetRate; // input samples per output sample
    this.chunkSamples = Math.round((this.targetRate * this.chunkMs) / 1000);
    this.chunk = new Int16Array(this.chunkSamples);
    this.fill = 0;
    // Resampler state: position of the next output sample in input-sample units, relative to
    // the start of the current block; the last input sample of the previous block; a running sum.
    this.pos = 0;
    this.prev = 0;
    this.acc = 0;
    this.accN = 0;
    this.muted = false;
    this.port.onmessage = (e) => {
      if (e.data && e.data.type === "mute") this.muted = !!e.data.muted;
    };
  }

  push(sample) {
    const s = Math.max(-1, Math.min(1, this.muted ? 0 : sample));
    this.chunk[this.fill++] = s < 0 ? Math.round(s * 0x8000) : Math.round(s * 0x7fff);
    if (this.fill === this.chunkSamples) {
      const out = new ArrayBuffer(this.chunkSamples * 2);
      const view = new DataView(out);
      for (let i = 0; i < this.chunkSamples; i++) view.setInt16(i * 2, this.chunk[i], true);
      this.port.postMessage(out, [out]);
      this.fill = 0;
    }
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0 || input[0].length === 0) return true;
    const n = input[0].length;
    const channels = input.length;
    for (let i = 0; i < n; i++) {
      let x = 0;
      for (let c = 0; c < channels; c++) x += input[c][i];
      x /= channels;
      if (this.step === 1) {
        this.push(x);
      } else if (this.step > 1) {
        // Downsample: average the inputs of each output period.
        this.acc += x;
        this.accN += 1;
        this.pos += 1;
        if (this.pos >= this.step) {
          this.push(this.acc / this.accN);
          this.pos -= this.step;
          this.acc = 0;
          this.accN = 0;
        }
      } else {
        // Upsample: emit every output sample that falls between prev (t = -1) and x (t = 0).
        while (this.pos < 1) {
          this.push(this.prev + (x - this.prev) * this.pos);
          this.pos += this.step;
        }
        this.pos -= 1;
        this.prev = x;
      }
    }
    return true;
  }
}

registerProcessor("agents-capture", CaptureProcessor);
