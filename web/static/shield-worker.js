// The nudity shield's classifier, in a (classic) Worker so the page's main
// thread never runs the model. It receives frames of the stranger's video
// (VideoFrames, or ImageBitmaps already scaled to 224x224), scales them
// here and answers with nsfwjs's five class probabilities.
// Nothing leaves this worker but that answer to the page.
//
// Runtime: TensorFlow.js with its WebAssembly (SIMD) backend; where that
// cannot start, its plain JavaScript CPU backend. Neither needs a GPU.
// Model: nsfwjs's MobileNetV2 (uint8-quantized), shipped by nsfwjs as two
// scripts that set the globals `model` (topology and weight specs) and
// `group1_shard1of1` (the weights, base64).

/* global tf */
const V = '/vendor/shield/';
importScripts(V + 'tf.min.js', V + 'tf-backend-wasm.min.js',
  V + 'nsfwjs-mobilenet_v2-model.min.js', V + 'nsfwjs-mobilenet_v2-group1-shard1of1.min.js');

const SIZE = 224;
const CLASSES = ['drawing', 'hentai', 'neutral', 'porn', 'sexy']; // nsfwjs's order

let net = null;
let canvas = null;
let ctx = null;

// weightsHandler turns nsfwjs's bundled model into tfjs model artifacts.
function weightsHandler() {
  const json = self.model;
  const b64 = self.group1_shard1of1;
  if (!json || typeof b64 !== 'string') throw new Error('nsfwjs model scripts did not load');
  return {
    async load() {
      const bin = atob(b64);
      const bytes = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
      const specs = [];
      for (const group of json.weightsManifest) specs.push(...group.weights);
      return {
        modelTopology: json.modelTopology,
        format: json.format,
        generatedBy: json.generatedBy,
        convertedBy: json.convertedBy,
        weightSpecs: specs,
        weightData: bytes.buffer,
      };
    },
  };
}

async function pickBackend() {
  try {
    // Only the SIMD build is shipped (every current browser has SIMD);
    // without it the backend fails to start and the CPU one takes over.
    tf.wasm.setWasmPaths(V);
    // Threads need cross-origin isolation, which the page does not ask for.
    tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', false);
    if (await tf.setBackend('wasm')) return 'wasm';
  } catch (err) {
    console.info('duet shield: wasm backend unavailable', err && err.message);
  }
  await tf.setBackend('cpu');
  return 'cpu';
}

async function load() {
  const backend = await pickBackend();
  await tf.ready();
  net = await tf.loadLayersModel(weightsHandler());
  // Free the base64 copy: the model holds its own weights now.
  self.group1_shard1of1 = null;
  tf.tidy(() => net.predict(tf.zeros([1, SIZE, SIZE, 3]))).dispose(); // warm up
  canvas = new OffscreenCanvas(SIZE, SIZE);
  ctx = canvas.getContext('2d', { willReadFrequently: true });
  return backend;
}

async function classify(frame) {
  try {
    ctx.drawImage(frame, 0, 0, SIZE, SIZE);
  } finally {
    frame.close();
  }
  const rgba = ctx.getImageData(0, 0, SIZE, SIZE).data;
  const rgb = new Float32Array(SIZE * SIZE * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4) {
    rgb[j++] = rgba[i] / 255;
    rgb[j++] = rgba[i + 1] / 255;
    rgb[j++] = rgba[i + 2] / 255;
  }
  const out = tf.tidy(() => net.predict(tf.tensor4d(rgb, [1, SIZE, SIZE, 3])));
  const p = await out.data();
  out.dispose();
  const scores = {};
  CLASSES.forEach((c, i) => { scores[c] = p[i]; });
  return scores;
}

const loading = load();

self.onmessage = async (e) => {
  const { id, frame } = e.data || {};
  try {
    const backend = await loading;
    if (!frame) {
      self.postMessage({ id, ready: true, backend });
      return;
    }
    const t0 = performance.now();
    const scores = await classify(frame);
    self.postMessage({ id, scores, ms: performance.now() - t0, backend });
  } catch (err) {
    if (frame && frame.close) frame.close();
    self.postMessage({ id, error: String((err && err.message) || err) });
  }
};
