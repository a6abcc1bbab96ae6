// The microphone, on the audio thread: any input rate -> 16 kHz mono 16-bit PCM in 30 ms blocks.
//
// Each block goes to the page as {pcm: ArrayBuffer (Int16, little-endian), level: RMS 0..1}.
// Resampling: a windowed-sinc low-pass (cut below 8 kHz, the new Nyquist) at the input rate,
// then linear interpolation at the output instants; the input is oversampled enough for that.

const OUT_RATE = 16000;
const BLOCK = 480; // 30 ms at 16 kHz
const TAPS = 31;

function lowPass(cutoff) {
  // cutoff: a fraction of the input rate (0..0.5); Blackman-windowed sinc, unit gain at DC.
  const h = new Float32Array(TAPS);
  const mid = (TAPS - 1) / 2;
  let sum = 0;
  for (let i = 0; i < TAPS; i++) {
    const x = i - mid;
    const sinc = x === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * x) / (Math.PI * x);
    const w = 0.42 - 0.5 * Math.cos((2 * Math.PI * i) / (TAPS - 1)) + 0.08 * Math.cos((4 * Math.PI * i) / (TAPS - 1));
    h[i] = sinc * w;
    sum += h[i];
  }
  for (let i = 0; i < TAPS; i++) h[i] /= sum;
  return h;
}

class MicProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / OUT_RATE; // input samples per output sample
    this.filter = this.step > 1 ? lowPass((0.45 * OUT_RATE) / sampleRate) : null;
    this.history = new Float32Array(TAPS); // the last TAPS input samples, a ring
    this.at = 0; // ring write position
    this.prev = 0; // the previous filtered sample
    this.phase = 0; // where the next output falls, in input samples after `prev`
    this.block = new Int16Array(BLOCK);
    this.filled = 0;
    this.energy = 0;
    this.running = true;
    this.port.onmessage = (e) => {
      if (e.data === "stop") this.running = false;
    };
  }

  filtered(x) {
    if (!this.filter) return x;
    this.history[this.at] = x;
    this.at = (this.at + 1) % TAPS;
    let y = 0;
    for (let i = 0, j = this.at; i < TAPS; i++, j = (j + 1) % TAPS) y += this.filter[i] * this.history[j];
    return y;
  }

  emit(sample) {
    const s = Math.max(-1, Math.min(1, sample));
    this.energy += s * s;
    this.block[this.filled++] = s < 0 ? s * 32768 : s * 32767;
    if (this.filled === BLOCK) {
      const pcm = this.block.buffer;
      this.port.postMessage({ pcm, level: Math.sqrt(this.energy / BLOCK) }, [pcm]);
      this.block = new Int16Array(BLOCK);
      this.filled = 0;
      this.energy = 0;
    }
  }

  process(inputs) { // the output stays silent: the node only listens
    const input = inputs[0];
    if (!this.running) return false;
    if (!input || input.length === 0) return true;
    const n = input[0].length;
    const channels = input.length;
    for (let i = 0; i < n; i++) {
      let x = 0;
      for (let c = 0; c < channels; c++) x += input[c][i];
      const cur = this.filtered(x / channels);
      // outputs between prev (t = 0) and cur (t = 1)
      while (this.phase <= 1) {
        this.emit(this.prev + (cur - this.prev) * this.phase);
        this.phase += this.step;
      }
      this.phase -= 1;
      this.prev = cur;
    }
    return true;
  }
}

registerProcessor("mic-16k", MicProcessor);
