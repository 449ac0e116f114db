// Face detection for the face check (face.js), off the page's main
// thread. The model is @vladmandic/face-api's tiny face detector on its
// bundled TensorFlow.js, vendored in vendor/face/ (scripts/vendor-face.sh)
// and fetched from this server only when a check first runs. Frames come
// in as small ImageBitmaps; only a yes/no (and timings) goes back. Nothing
// leaves the browser.
//
// Run as a module Worker it answers messages:
//   {type: 'init', backends: ['wasm', 'webgl', 'cpu']} -> {type: 'ready', backend, loadMs}
//   {type: 'detect', id, frame: VideoFrame|ImageBitmap} -> {type: 'result', id, face, score, ms}
//   any failure                               -> {type: 'error', id?, message}
// Where module workers are missing, face.js imports loadDetector itself.

const VENDOR = new URL('./vendor/face/', import.meta.url);
const INPUT_SIZE = 160;    // the model's square input; a multiple of 32
const MIN_SCORE = 0.5;

// loadDetector imports the runtime and model and returns detect(frame),
// frame an ImageBitmap, ImageData or canvas no bigger than a few hundred px.
export async function loadDetector(backends = ['wasm', 'webgl', 'cpu']) {
  const t0 = performance.now();
  const faceapi = await import('./vendor/face/face-api.esm.js');
  const tf = faceapi.tf;
  if (typeof document === 'undefined') patchWorkerEnv(faceapi);
  tf.setWasmPaths(VENDOR.href); // the SIMD build only: every current browser has wasm SIMD
  let backend = '';
  for (const name of backends) {
    try {
      if (await tf.setBackend(name)) {
        await tf.ready();
        backend = name;
        break;
      }
    } catch (err) {
      console.info('duet: face backend', name, 'unusable:', err && err.message);
    }
  }
  if (!backend) throw new Error(`no usable TensorFlow.js backend among ${backends.join(', ')}`);
  const [manifest, weights] = await Promise.all([
    fetchOK(new URL('tiny_face_detector_model-weights_manifest.json', VENDOR)).then((r) => r.json()),
    fetchOK(new URL('tiny_face_detector_model.bin', VENDOR)).then((r) => r.arrayBuffer()),
  ]);
  const specs = manifest.flatMap((group) => group.weights);
  const net = new faceapi.TinyFaceDetector();
  net.loadFromWeightMap(tf.io.decodeWeights(weights, specs));
  const options = new faceapi.TinyFaceDetectorOptions({ inputSize: INPUT_SIZE, scoreThreshold: MIN_SCORE });
  let canvas = null;
  let ctx = null;

  // detect takes an ImageData, an ImageBitmap or a VideoFrame (a camera
  // frame at full size: scaled down here, off the page's main thread).
  async function detect(frame) {
    const fw = frame.displayWidth || frame.width;
    const fh = frame.displayHeight || frame.height;
    if (!fw || !fh) return { face: false, score: 0 };
    const w = Math.min(fw, INPUT_SIZE);
    const h = Math.max(2, Math.round(w * fh / fw));
    let pixels = frame;
    if (!(typeof ImageData !== 'undefined' && frame instanceof ImageData)) {
      if (!canvas || canvas.width !== w || canvas.height !== h) {
        canvas = newCanvas(w, h);
        ctx = canvas.getContext('2d', { willReadFrequently: true });
      }
      ctx.drawImage(frame, 0, 0, w, h);
      pixels = ctx.getImageData(0, 0, w, h);
    }
    const input = tf.browser.fromPixels(pixels);
    try {
      const faces = await net.locateFaces(input, options);
      const score = faces.reduce((m, f) => Math.max(m, f.score), 0);
      return { face: faces.length > 0, score };
    } finally {
      input.dispose();
    }
  }
  // The first run compiles the backend's kernels: do it now, not during
  // the user's first check.
  await detect(new ImageData(INPUT_SIZE, INPUT_SIZE * 3 / 4));
  return { backend, loadMs: performance.now() - t0, detect };
}

// newCanvas: an OffscreenCanvas, or (on a page whose browser has none,
// where face.js runs this module itself) a detached canvas element.
function newCanvas(w, h) {
  if (typeof OffscreenCanvas === 'function') return new OffscreenCanvas(w, h);
  const c = document.createElement('canvas');
  c.width = w;
  c.height = h;
  return c;
}

async function fetchOK(url) {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url.pathname}: HTTP ${res.status}`);
  return res;
}

// face-api asks its environment what a canvas or an image is, even for a
// tensor input; a worker has neither DOM nor document, so say what it has.
function patchWorkerEnv(faceapi) {
  class None {}
  faceapi.env.setEnv({
    Canvas: OffscreenCanvas,
    CanvasRenderingContext2D: OffscreenCanvasRenderingContext2D,
    Image: None,
    ImageData,
    Video: None,
    createCanvasElement: () => new OffscreenCanvas(1, 1),
    createImageElement: () => { throw new Error('no images in a worker'); },
    fetch: (...args) => fetch(...args),
    readFile: () => { throw new Error('no files in a worker'); },
  });
}

if (typeof WorkerGlobalScope !== 'undefined' && self instanceof WorkerGlobalScope) {
  let detector = null;
  self.onmessage = async (e) => {
    const msg = e.data || {};
    try {
      if (msg.type === 'init') {
        detector = await loadDetector(msg.backends);
        self.postMessage({ type: 'ready', backend: detector.backend, loadMs: detector.loadMs });
      } else if (msg.type === 'detect') {
        if (!detector) throw new Error('detect before init');
        const t0 = performance.now();
        try {
          const res = await detector.detect(msg.frame);
          self.postMessage({ type: 'result', id: msg.id, face: res.face, score: res.score, ms: performance.now() - t0 });
        } finally {
          if (msg.frame && msg.frame.close) msg.frame.close();
        }
      } else {
        throw new Error(`unknown message ${JSON.stringify(msg.type)}`);
      }
    } catch (err) {
      self.postMessage({ type: 'error', id: msg.id, message: String(err && err.message || err) });
    }
  };
}
