// The nudity shield: looks at the stranger's incoming video, one small
// frame every CHECK_EVERY_MS, with an nsfwjs model run by a Worker
// (shield-worker.js), so the page's main thread only hands it the frame.
// No frame, image or score leaves the browser: the node is only told
// counts ({type: "shield", room, event}) and, on a report, reason "nudity".
//
// Modes (moderation.shield, or the user's own choice):
//   off             nothing is loaded
//   blur-until-safe the stranger's video is blurred (CSS, see style.css)
//                   until SAFE_TO_SHOW frames in a row classify safe
//   blur-on-detect  shown at once, blurred as soon as a frame is flagged
// On a flagged frame the video blurs at once and the user is offered
// Next and Report (reason filled in), or to show it anyway.
// The CSS blur keys off body[data-shield], set by app.js before this
// module even loads, so blur-until-safe never shows an unchecked frame.

export const MODES = ['off', 'blur-until-safe', 'blur-on-detect'];

const CHECK_EVERY_MS = 1500;
const SIZE = 224;
const SAFE_TO_SHOW = 2;      // frames in a row that must classify safe
const NUDITY_AT = 0.5;       // P(porn) + P(hentai) at or above this flags a frame

// verdict reads nsfwjs's five probabilities: null when safe, else the
// class that flagged the frame (kept in stats for tests and debugging).
export function verdict(scores) {
  const porn = scores.porn || 0;
  const hentai = scores.hentai || 0;
  if (porn + hentai < NUDITY_AT) return null;
  return porn >= hentai ? 'porn' : 'hentai';
}

// grab takes the video's current frame for the worker. A VideoFrame
// (WebCodecs) only references the decoded frame: the worker scales and
// converts it, so the main thread does next to nothing. Without
// WebCodecs, createImageBitmap scales it here first.
async function grab(video) {
  if (typeof VideoFrame === 'function') {
    try {
      return new VideoFrame(video);
    } catch { /* not decodable as a frame yet: fall back */ }
  }
  return createImageBitmap(video, { resizeWidth: SIZE, resizeHeight: SIZE, resizeQuality: 'low' });
}

export class Shield {
  // video: the stranger's <video>; tile: its container; send(event)
  // tells the node a count; onNext/onReport(reason) act for the user.
  constructor({ video, tile, mode, send, onNext, onReport }) {
    this.video = video;
    this.tile = tile;
    this.mode = mode;
    this.sendEvent = send;
    this.onNext = onNext;
    this.onReport = onReport;
    this.worker = null;
    this.ready = null;
    this.timer = 0;
    this.seq = 0;
    this.busy = false;
    this.stats = { frames: 0, lastMs: 0, maxMs: 0, backend: '', scores: null, error: '' };
    this.prompt = this.buildPrompt();
    this.reset();
  }

  setMode(mode) {
    this.mode = mode;
    if (mode === 'off') {
      this.stop();
      return;
    }
    if (this.watching) this.schedule(0);
  }

  // watch starts looking at a new stranger's video.
  watch() {
    this.reset();
    if (this.mode === 'off') return;
    this.watching = true;
    if (this.mode === 'blur-until-safe') this.report('blurred');
    this.startWorker();
    this.schedule(0);
  }

  // stop: the stranger is gone.
  stop() {
    this.room = null;
    this.reset();
  }

  reset() {
    clearTimeout(this.timer);
    this.timer = 0;
    this.watching = false;
    this.safeRun = 0;
    this.hit = '';
    this.revealed = false;
    this.sent = new Set();
    this.tile.classList.remove('shield-clear', 'shield-hit');
    this.prompt.hidden = true;
  }

  startWorker() {
    if (this.worker) return;
    this.worker = new Worker('/shield-worker.js');
    const pending = new Map();
    this.pending = pending;
    this.worker.onmessage = (e) => {
      const m = e.data || {};
      const done = pending.get(m.id);
      pending.delete(m.id);
      if (done) done(m);
    };
    this.worker.onerror = (e) => {
      e.preventDefault();
      this.fail(e.message || 'worker failed');
      for (const done of pending.values()) done({ error: 'worker failed' });
      pending.clear();
    };
    this.ready = this.ask(null).then((m) => {
      if (m.error) throw new Error(m.error);
      this.stats.backend = m.backend;
      console.info('duet: shield ready on', m.backend);
    }).catch((err) => this.fail(err.message));
  }

  // ask hands the worker a frame (VideoFrame or ImageBitmap, transferred:
  // never copied) to classify; null asks whether the model is loaded.
  ask(frame) {
    const id = ++this.seq;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.worker.postMessage({ id, frame }, frame ? [frame] : []);
    });
  }

  // fail: the model cannot run here. Blurred video stays blurred (the
  // user chose that) and they are told why, with a way to see it.
  fail(why) {
    if (this.stats.error) return;
    this.stats.error = String(why);
    console.warn('duet: shield unavailable:', why);
    this.report('unavailable');
    if (this.watching && this.mode === 'blur-until-safe') this.showPrompt(
      'The nudity shield could not start in this browser, so the video stays blurred.', false);
  }

  schedule(ms) {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.check(), ms);
  }

  async check() {
    this.timer = 0;
    if (!this.watching || this.revealed || this.stats.error) return;
    const v = this.video;
    if (this.busy || v.readyState < 2 || !v.videoWidth) {
      this.schedule(250);
      return;
    }
    this.busy = true;
    try {
      await this.ready;
      if (this.stats.error || !this.watching) return;
      this.stats.phase = 'grab';
      const frame = await grab(v);
      this.stats.phase = 'classify';
      const m = await this.ask(frame);
      if (m.error) throw new Error(m.error);
      this.stats.frames++;
      this.stats.lastMs = m.ms;
      this.stats.maxMs = Math.max(this.stats.maxMs, m.ms);
      this.stats.scores = m.scores;
      this.classified(verdict(m.scores));
    } catch (err) {
      // A frame that could not be grabbed (the stream changed under us):
      // try the next one.
      console.debug('duet: shield frame skipped', err && err.message);
      this.stats.skipped = (this.stats.skipped || 0) + 1;
    } finally {
      this.busy = false;
      this.stats.phase = 'wait';
    }
    if (this.watching && !this.revealed) this.schedule(CHECK_EVERY_MS);
  }

  // classified acts on one frame's verdict (null: safe).
  classified(reason) {
    if (!this.watching || this.revealed) return;
    if (reason) {
      this.safeRun = 0;
      if (this.hit) return;
      this.hit = reason;
      this.tile.classList.remove('shield-clear');
      this.tile.classList.add('shield-hit');
      this.report('detected');
      this.showPrompt('This video may show nudity, so it is blurred.', true);
      return;
    }
    if (this.hit) return; // flagged: stays blurred until the user decides
    this.safeRun++;
    if (this.mode === 'blur-until-safe' && this.safeRun >= SAFE_TO_SHOW && !this.tile.classList.contains('shield-clear')) {
      this.tile.classList.add('shield-clear');
      this.report('unblurred');
    }
  }

  // report sends one count per event and stranger.
  report(event) {
    if (this.sent.has(event)) return;
    this.sent.add(event);
    this.sendEvent(event);
  }

  showPrompt(text, offerReport) {
    this.prompt.querySelector('.shield-text').textContent = text;
    this.prompt.querySelector('.shield-report').hidden = !offerReport;
    this.prompt.hidden = false;
    this.prompt.querySelector('.shield-next').focus();
  }

  buildPrompt() {
    const box = document.createElement('div');
    box.className = 'shield-prompt';
    box.id = 'shield-prompt';
    box.setAttribute('role', 'alertdialog');
    box.setAttribute('aria-label', 'Nudity shield');
    box.hidden = true;
    const text = document.createElement('p');
    text.className = 'shield-text';
    const row = document.createElement('div');
    row.className = 'shield-actions';
    const button = (cls, label, kind) => {
      const b = document.createElement('button');
      b.type = 'button';
      b.className = `${cls} ${kind || ''}`.trim();
      b.textContent = label;
      row.append(b);
      return b;
    };
    button('shield-next', 'Next', 'primary').addEventListener('click', () => {
      this.report('skipped');
      this.onNext();
    });
    // The report's reason is the classification's: nudity. The node
    // knows this page's shield flagged the room (it sent `detected`).
    button('shield-report', 'Report nudity', 'danger').addEventListener('click', () => {
      this.onReport('nudity');
    });
    button('shield-show', 'Show anyway').addEventListener('click', () => {
      this.revealed = true;
      this.prompt.hidden = true;
      this.tile.classList.remove('shield-hit');
      this.tile.classList.add('shield-clear');
      this.report('revealed');
    });
    box.append(text, row);
    this.tile.append(box);
    return box;
  }
}

// installTestHook: with ?shieldtest in the page's URL, tests (which ship
// no explicit material) drive the detection path with a made-up verdict:
// window.__duetShieldTest.inject('porn'). It acts only on this page's own
// view and counts, exactly what anyone could do from the console; the
// node trusts no shield event more than a plain message.
export function installTestHook(shield) {
  if (!new URLSearchParams(location.search).has('shieldtest')) return;
  window.__duetShieldTest = Object.freeze({
    inject: (label) => shield.classified(label === 'safe' ? null : String(label)),
    get stats() { return { ...shield.stats, watching: shield.watching, hit: shield.hit }; },
  });
}
