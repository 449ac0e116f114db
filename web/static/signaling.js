// The WebSocket to the node: JSON framing, the resume token, and
// reconnecting with ?resume=TOKEN after a drop the page did not ask for.

const STORE_KEY = 'duet.session';
const BACKOFF_MS = [250, 500, 1000, 2000, 4000];
const MAX_BACKOFF_MS = 5000;

function load() {
  try {
    const v = JSON.parse(sessionStorage.getItem(STORE_KEY) || 'null');
    return v && typeof v.token === 'string' && typeof v.session === 'string' ? v : null;
  } catch {
    return null;
  }
}

function wsURL(token) {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const q = token ? `?resume=${encodeURIComponent(token)}` : '';
  return `${scheme}//${location.host}/ws${q}`;
}

// Signaling events (all optional callbacks):
//   onWelcome(msg, {resumeTried, resumed})  a welcome frame arrived
//   onMessage(msg)                          any other frame
//   onDrop()                                the socket dropped; retrying
//   onRetrying(elapsedMs)                   before each retry
//   outgoing(msg) -> msg                    adds to every frame sent
export class Signaling {
  constructor(handlers = {}) {
    this.h = handlers;
    this.ws = null;
    this.stored = load(); // {session, token, state} from before a reload
    this.session = '';
    this.token = '';
    this.closedByPage = false;
    this.retryTimer = 0;
    this.attempt = 0;
    this.dropAt = 0;
    this.resumeTried = false;
  }

  get open() {
    return !!this.ws && this.ws.readyState === WebSocket.OPEN;
  }

  // connect opens the socket, resuming the stored session if there is one.
  connect() {
    clearTimeout(this.retryTimer);
    this.retryTimer = 0;
    const token = this.token || (this.stored && this.stored.token) || '';
    this.resumeTried = !!token;
    this.closedByPage = false;
    let ws;
    try {
      ws = new WebSocket(wsURL(token));
    } catch (err) {
      console.error('duet: cannot open WebSocket', err);
      this.scheduleRetry();
      return;
    }
    this.ws = ws;
    ws.onmessage = (ev) => this.onFrame(ws, ev);
    ws.onclose = (ev) => this.onClose(ws, ev);
    ws.onerror = () => {}; // onclose follows with the details
  }

  onFrame(ws, ev) {
    if (ws !== this.ws || typeof ev.data !== 'string') return;
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch {
      console.warn('duet: bad frame from server', ev.data);
      return;
    }
    if (!msg || typeof msg.type !== 'string') return;
    if (msg.type === 'welcome') {
      const old = this.session || (this.stored && this.stored.session) || '';
      const resumed = !!old && msg.session === old;
      const info = { resumeTried: this.resumeTried, resumed, previous: this.stored };
      this.session = String(msg.session || '');
      this.token = String(msg.token || '');
      this.stored = null;
      this.attempt = 0;
      this.dropAt = 0;
      this.save();
      if (this.h.onWelcome) this.h.onWelcome(msg, info);
      return;
    }
    if (this.h.onMessage) this.h.onMessage(msg);
  }

  onClose(ws, ev) {
    if (ws !== this.ws) return;
    this.ws = null;
    if (this.closedByPage) return;
    console.info('duet: socket closed', ev.code, ev.reason || '');
    if (ev.code === 1008) {
      // Policy violation (a ban): retrying would only be refused again.
      if (this.h.onRefused) this.h.onRefused(ev);
      return;
    }
    if (!this.dropAt) {
      this.dropAt = Date.now();
      if (this.h.onDrop) this.h.onDrop(ev);
    }
    this.scheduleRetry();
  }

  scheduleRetry() {
    clearTimeout(this.retryTimer);
    const delay = BACKOFF_MS[this.attempt] ?? MAX_BACKOFF_MS;
    this.attempt++;
    this.retryTimer = setTimeout(() => {
      if (this.h.onRetrying) this.h.onRetrying(Date.now() - (this.dropAt || Date.now()));
      this.connect();
    }, delay);
  }

  // send writes one message; it reports whether the socket took it.
  send(msg) {
    if (!this.open) {
      console.warn('duet: not connected, dropped', msg.type);
      return false;
    }
    this.ws.send(JSON.stringify(this.h.outgoing ? this.h.outgoing(msg) : msg));
    return true;
  }

  // remember stores what a reload needs to resume, plus the page's state.
  remember(state) {
    this.lastState = state;
    this.save();
  }

  save() {
    if (!this.token) return;
    try {
      sessionStorage.setItem(STORE_KEY, JSON.stringify({
        session: this.session, token: this.token, state: this.lastState || 'idle',
      }));
    } catch { /* private mode: resume after reload just won't happen */ }
  }

  // close ends the session on purpose (the stranger is told at once).
  close() {
    this.closedByPage = true;
    clearTimeout(this.retryTimer);
    if (this.ws) {
      try { this.ws.close(1000, 'bye'); } catch { /* already closing */ }
    }
  }
}
