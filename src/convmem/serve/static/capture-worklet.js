// AudioWorklet that hands the page the microphone's samples in chunks (first channel only).
class Capture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.size = (options.processorOptions && options.processorOptions.chunk) || 4000;
    this.buf = new Float32Array(this.size);
    this.n = 0;
    this.port.onmessage = () => this.flush();
  }

  flush() {
    if (this.n > 0) this.port.postMessage(this.buf.slice(0, this.n));
    this.n = 0;
  }

  process(inputs) {
    const input = inputs[0] && inputs[0][0];
    if (input) {
      for (let i = 0; i < input.length; i++) {
        this.buf[this.n++] = input[i];
        if (this.n === this.size) this.flush();
      }
    }
    return true;
  }
}

registerProcessor("capture", Capture);
