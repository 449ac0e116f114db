// Optional face presence check (signal.face_check): the browser looks for
// a face in its own camera before a video queue and, if the node asks,
// again every few seconds during a call. The model (face-api's tiny face
// detector on TensorFlow.js, vendored under vendor/face/) runs in a module
// Worker on a downscaled frame; app.js imports this file only when the
// check is on, so a page without it loads nothing extra. No image, frame
// or score leaves the page: only the yes/no is sent (queue.face).

const FRAME_WIDTH = 160;   // frames go to the model this wide (its input size; face-worker.js)
const LOOK_MS = 3000;      // how long the check before a queue looks for a face
const EVERY_MS = 250;      // and how often it grabs a frame meanwhile
const RECHECK_FRAMES = 3;  // a re-check misses only when this many frames in a row do
const RECHECK_GAP_MS = 400;
// wasm (SIMD) first: measured in headless Chromium in a worker, 22 ms a
// frame (median), against > 600 ms for plain JS ('cpu'); WebGL is often
// missing in workers and compiles its shaders for seconds where it is not.
const BACKENDS = ['wasm', 'webgl', 'cpu'];

// FaceCheck owns one detector (a Worker, or the page's own thread where
// module workers are missing) and a hidden video element on the camera.
export class FaceCheck {
  constructor({ now = () => performance.now(), sleep = (ms) => new Promise((r) => setTimeout(r, ms)) } = {}) {
    this.now = now;
    this.sleep = sleep;
    this.detector = null;  // Promise of {backend, detect(frame) -> {face, score, ms}}
    this.video = null;
    this.watch = null;     // the running re-check loop, if any
    this.stats = { frames: 0, detectMs: 0, mainMs: 0, backend: '', where: '', loadMs: 0 };
    this.videoFrames = undefined; // false once this browser cannot hand VideoFrames on
  }

  // check looks for a face for up to LOOK_MS. It resolves to
  // {available: false, why} when no detector could be loaded, else
  // {available: true, face}.
  async check(stream) {
    let det;
    try {
      det = await this.load();
    } catch (err) {
      console.warn('duet: face detector unavailable', err);
      return { available: false, why: String(err && err.message || err) };
    }
    const until = this.now() + LOOK_MS;
    do {
      const seen = await this.looks(det, stream).catch((err) => {
        console.info('duet: face check frame failed:', err && err.message);
        return false;
      });
      if (seen) return { available: true, face: true };
      await this.sleep(EVERY_MS);
    } while (this.now() < until);
    return { available: true, face: false };
  }

  // startWatching re-checks every intervalMs while in a call. onChange
  // (true: the face is back, false: it is gone) is called on each change.
  startWatching(stream, { intervalMs, onChange }) {
    this.stopWatching();
    const w = { stopped: false, present: true };
    this.watch = w;
    (async () => {
      let det;
      try {
        det = await this.load();
      } catch {
        return;
      }
      while (!w.stopped) {
        await this.sleep(w.present ? intervalMs : RECHECK_GAP_MS);
        if (w.stopped) return;
        let seen = false;
        for (let i = 0; i < RECHECK_FRAMES && !seen && !w.stopped; i++) {
          if (i > 0) await this.sleep(RECHECK_GAP_MS);
          seen = await this.looks(det, stream).catch(() => true); // a broken frame is no evidence
        }
        if (w.stopped) return;
        if (seen !== w.present) {
          w.present = seen;
          onChange(seen);
        }
      }
    })();
  }

  stopWatching() {
    if (this.watch) this.watch.stopped = true;
    this.watch = null;
  }

  // looks grabs one downscaled frame of the stream's video and asks the
  // detector whether it shows a face.
  async looks(det, stream) {
    const video = this.videoFor(stream);
    if (!video) return false;
    if (video.paused) await video.play().catch(() => {});
    if (video.readyState < 2 || !video.videoWidth) return false;
    const track = stream.getVideoTracks()[0];
    if (!track || !track.enabled || track.readyState !== 'live') return false;
    const res = await det.detect(await this.grab(video));
    this.stats.frames++;
    this.stats.detectMs += res.ms || 0;
    return res.face;
  }

  // grab takes the video's current frame: as a VideoFrame where the
  // browser has them (a handle on the camera's frame; the detector scales
  // it, off this thread), else as an ImageBitmap scaled here.
  // stats.mainMs adds up the time this thread spends on it.
  async grab(video) {
    const t0 = performance.now();
    if (this.videoFrames !== false && typeof VideoFrame === 'function') {
      try {
        const f = new VideoFrame(video);
        this.stats.mainMs += performance.now() - t0;
        return f;
      } catch {
        this.videoFrames = false;
      }
    }
    const h = Math.max(2, Math.round(FRAME_WIDTH * video.videoHeight / video.videoWidth));
    const p = createImageBitmap(video, { resizeWidth: FRAME_WIDTH, resizeHeight: h, resizeQuality: 'low' });
    this.stats.mainMs += performance.now() - t0;
    return p;
  }

  videoFor(stream) {
    if (!stream || stream.getVideoTracks().length === 0) return null;
    if (!this.video) {
      this.video = document.createElement('video');
      this.video.muted = true;
      this.video.playsInline = true;
    }
    if (this.video.srcObject !== stream) this.video.srcObject = stream;
    return this.video;
  }

  // load starts the detector once: in a module Worker where the browser
  // has one with OffscreenCanvas, else on this thread.
  load() {
    if (!this.detector) {
      this.detector = this.loadWorker().catch((err) => {
        console.info('duet: face check in a worker unavailable, using the page:', err && err.message);
        return this.loadHere();
      });
      this.detector.catch(() => { this.detector = null; }); // a later Start may try again
    }
    return this.detector;
  }

  async loadWorker() {
    if (typeof Worker !== 'function' || typeof OffscreenCanvas !== 'function') throw new Error('no OffscreenCanvas');
    const worker = new Worker(new URL('./face-worker.js', import.meta.url), { type: 'module' });
    const waiting = new Map();
    let nextID = 1;
    let ready;
    const readyP = new Promise((resolve, reject) => { ready = { resolve, reject }; });
    const fail = (message) => {
      ready.reject(new Error(message));
      for (const p of waiting.values()) p.reject(new Error(message));
      waiting.clear();
    };
    worker.onmessage = (e) => {
      const m = e.data;
      if (m.type === 'ready') ready.resolve(m);
      else if (m.type === 'result' && waiting.has(m.id)) {
        waiting.get(m.id).resolve(m);
        waiting.delete(m.id);
      } else if (m.type === 'error') {
        if (m.id && waiting.has(m.id)) {
          waiting.get(m.id).reject(new Error(m.message));
          waiting.delete(m.id);
        } else fail(m.message);
      }
    };
    worker.onerror = (e) => fail(e.message || 'face worker failed to start');
    worker.postMessage({ type: 'init', backends: BACKENDS });
    let info;
    try {
      info = await readyP;
    } catch (err) {
      worker.terminate();
      throw err;
    }
    Object.assign(this.stats, { backend: info.backend, where: 'worker', loadMs: info.loadMs });
    console.info('duet: face check ready in a worker on', info.backend, `(${Math.round(info.loadMs)} ms)`);
    return {
      backend: info.backend,
      detect: (frame) => new Promise((resolve, reject) => {
        const id = nextID++;
        const t0 = performance.now();
        try {
          worker.postMessage({ type: 'detect', id, frame }, [frame]);
        } catch (err) {
          // A browser with VideoFrame that cannot transfer one: bitmaps from now on.
          frame.close();
          this.videoFrames = false;
          reject(err);
          return;
        }
        this.stats.mainMs += performance.now() - t0;
        waiting.set(id, { resolve, reject });
      }),
    };
  }

  async loadHere() {
    const { loadDetector } = await import('./face-worker.js');
    const det = await loadDetector(BACKENDS);
    Object.assign(this.stats, { backend: det.backend, where: 'page', loadMs: det.loadMs });
    return {
      backend: det.backend,
      detect: async (frame) => {
        const t0 = performance.now();
        try {
          return { ...(await det.detect(frame)), ms: performance.now() - t0 };
        } finally {
          frame.close();
        }
      },
    };
  }
}
