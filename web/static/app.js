// duet browser client: the page's state machine. It wires the socket
// (signaling.js), the P2P call (call.js) and the DOM (ui.js) together.
// Wire contract: docs/PROTOCOL.md.

import { Signaling } from './signaling.js';
import { Call } from './call.js';
import { Chat } from './chat.js';
import { initSafety, withPrefs, matched as safetyMatched, askReport, rulesAccepted } from './safety.js';
import { PowGate } from './pow.js';
import { localStream, openCamera, cameraProblem, toggle, stopCamera } from './media.js';
import {
  el, STATUS, setStatus, getStatus, setControls, setMode, setCommon, setPath,
  setOnline, clearChat, addLine, showRemote, clearRemote, attention, parseInterests,
  userErrorText,
} from './ui.js';

const RESUME_GIVE_UP_MS = 15000;

const app = {
  state: 'idle',      // idle | waiting | room | reconnecting
  room: null,
  role: null,
  mode: 'video',
  call: null,
  canNext: false,     // idle after a stranger left: Next queues again
  pendingStart: null, // a Start pressed while the socket was down
  early: [],          // room signals that came while the call was being built
  beforeDrop: null,   // {state, status} when our own socket dropped
  giveUp: 0,
  leaving: false,
  starting: false,    // waiting for the camera after Start video
  expectQueued: '',   // "next"/"report" sent, shown as waiting before `queued`
  faceCheck: false,   // the node asks for a face check before video (welcome.features)
  face: null,         // face.js's FaceCheck, imported only once a check runs
  faceRecheck: null,  // {intervalMs, leave, graceMs} during calls (welcome.features)
  faceGone: 0,        // the timer that leaves a room whose face stayed away
  shield: null,       // the nudity shield (shield.js), loaded only once it is on
  shieldDefault: 'off', // the operator's moderation.shield (welcome.features)
};

// withPrefs adds the language, block token and block list (safety.js)
// to queue and next.
const sig = new Signaling({ onWelcome, onMessage, onDrop, onRefused, outgoing: withPrefs });
const chat = new Chat({ room: () => (app.state === 'room' ? app.room : null), send: (m) => sig.send(m) });

function setState(state) {
  if (state !== 'waiting') app.expectQueued = '';
  app.state = state;
  sig.remember(state);
  refresh();
}

function refresh() {
  setControls({ state: app.state, canNext: app.canNext, hasStream: !!localStream() });
}

// pow pays for a join the node refused for want of proof of work
// (bots.pow); every frame passes it so it knows what to send again.
const pow = new PowGate({ send: (m) => sig.send(m), fail: (m) => onError(m) });
const send = (msg) => sig.send(pow.outgoing(msg));

// ---- the call ----

function leaveRoom() {
  if (app.call) app.call.close();
  faceUnwatch();
  if (app.shield) app.shield.stop();
  app.call = null;
  app.fellBack = false;
  app.early = [];
  clearRemote();
  setPath('');
  chat.forget();
  app.room = null;
  app.role = null;
}

function callStatus() {
  if (app.mode === 'text') return STATUS.connected;
  return app.call && app.call.pc.connectionState === 'connected' ? STATUS.connected : STATUS.connecting;
}

async function buildCall(msg) {
  const room = msg.room;
  if (!localStream()) {
    // A reload resumed us into a video room: the camera comes back quietly
    // if it is allowed; otherwise we still receive the stranger.
    try {
      await openCamera();
      refresh();
    } catch (err) {
      console.warn('duet: joining without a camera', err);
    }
    if (app.room !== room || app.call) return;
  }
  const sfu = msg.media === 'sfu';
  app.call = newCall(msg, sfu ? 'sfu' : '');
  app.fellBack = sfu;
  if (sfu) setPath('Relay via server');
  send({ type: 'ready', room });
  if (msg.role === 'offerer' && !sfu) app.call.offer();
  const early = app.early;
  app.early = [];
  for (const m of early) onSignal(m);
}

// newCall builds the room's connection: to the stranger (leg ""), or to
// the node's SFU (leg "sfu"), which offers and is only answered.
function newCall(msg, leg) {
  const stream = localStream();
  const call = new Call({
    room: msg.room,
    role: msg.role,
    leg,
    iceServers: leg ? [] : msg.ice_servers,
    iceTransportPolicy: leg ? 'all' : msg.ice_transport_policy,
    p2pTimeoutMs: leg ? 0 : msg.p2p_timeout_ms,
    stream,
    send,
    onRemoteStream: (s) => { showRemote(s); shieldWatch(); },
    onState: (st) => {
      console.debug('duet: connection', leg || 'p2p', st);
      if (app.state === 'room' && st === 'connected' && getStatus() !== STATUS.peerReconnecting) {
        setStatus(STATUS.connected);
      }
    },
    onPath: setPath,
    onFailed: leg ? () => {} : requestFallback,
  });
  if (!stream && !leg) {
    // Nothing to send: still receive the stranger. (On the SFU leg the
    // node's offer brings the transceivers.)
    call.pc.addTransceiver('audio', { direction: 'recvonly' });
    call.pc.addTransceiver('video', { direction: 'recvonly' });
  }
  return call;
}

// requestFallback asks the node to carry the room's media itself, once per
// room: ICE failed, or the P2P connection missed p2p_timeout_ms.
function requestFallback(reason) {
  if (app.fellBack || app.state !== 'room' || !app.room) return;
  app.fellBack = true;
  console.warn('duet: peer-to-peer connection', reason, '- asking the node to relay');
  send({ type: 'fallback', room: app.room, reason: reason === 'timeout' ? 'p2p timeout' : 'ice failed' });
}

// switchToSfu handles `media` {mode: "sfu"} (drop the P2P connection, wait
// for the node's offer) and the SFU leg's offer and candidates.
function switchToSfu(msg) {
  if (msg.room !== app.room || app.mode !== 'video') return;
  if (msg.type === 'media') {
    if (msg.mode !== 'sfu') return;
    // First move to the SFU, or the node starting its SFU room over (after
    // a resume): either way a fresh connection answers the next offer.
    const first = !(app.call && app.call.leg === 'sfu');
    if (app.call) app.call.close();
    if (first) clearRemote();
    app.fellBack = true;
    app.call = newCall({ room: app.room, role: app.role }, 'sfu');
    setPath('Relay via server');
    if (first) addLine('system', 'Relaying video through the server.');
    return;
  }
  const call = app.call;
  if (!call || call.leg !== 'sfu') {
    app.early.push(msg);
    return;
  }
  if (msg.type === 'offer' && typeof msg.sdp === 'string') call.handleOffer(msg.sdp);
  else if (msg.type === 'candidate') call.handleCandidate(msg.candidate ?? null);
}

// ---- server messages ----

function onWelcome(msg, info) {
  setOnline(Number(msg.online));
  app.faceCheck = !!(msg.features && msg.features.face_check);
  app.faceRecheck = faceRecheckOf(msg.features);
  app.shieldDefault = SHIELD_MODES.includes(msg.features && msg.features.shield) ? msg.features.shield : 'off';
  applyShield();
  if (msg.protocol !== 1) console.warn('duet: server speaks protocol', msg.protocol);
  clearTimeout(app.giveUp);
  app.giveUp = 0;
  if (info.resumeTried && info.resumed) {
    console.info('duet: session resumed'); // matched, queued or idle follows
  } else if (app.state === 'reconnecting' ||
             (app.state === 'idle' && info.previous && info.previous.state !== 'idle')) {
    sessionLost(); // whoever we were with has been told
  } else {
    setState(app.state);
  }
  if (app.pendingStart && app.state === 'idle') {
    const p = app.pendingStart;
    app.pendingStart = null;
    queue(p.mode, p.interests);
  }
}

function onDrop() {
  if (app.state === 'reconnecting') return;
  app.beforeDrop = { state: app.state, status: getStatus() };
  chat.forget();
  setStatus(STATUS.reconnecting);
  setState('reconnecting');
  clearTimeout(app.giveUp);
  app.giveUp = setTimeout(() => {
    app.giveUp = 0;
    if (app.state !== 'reconnecting') return;
    console.warn('duet: could not resume in time');
    sessionLost();
  }, RESUME_GIVE_UP_MS);
}

// onRefused: the node closed the socket for good (a ban); the reason was
// its last message, already shown.
function onRefused() {
  leaveRoom();
  app.canNext = false;
  app.beforeDrop = null;
  setStatus(STATUS.refused);
  setState('idle');
}

// sessionLost: the old session is gone for good (resume failed or timed out).
function sessionLost() {
  leaveRoom();
  app.canNext = false;
  app.beforeDrop = null;
  setCommon([]);
  setStatus(STATUS.resumeFailed);
  addLine('system', 'You were disconnected.');
  setState('idle');
}

function inRoom(msg) {
  return app.room !== null && msg.room === app.room;
}

function onMessage(msg) {
  switch (msg.type) {
    case 'queued': return onQueued(msg);
    case 'idle': return onIdle();
    case 'matched': return onMatched(msg);
    case 'error': return onError(msg);
  }
  if (!inRoom(msg)) {
    if ('room' in msg) console.debug('duet: stale', msg.type, 'dropped');
    return;
  }
  switch (msg.type) {
    case 'offer': case 'answer': case 'candidate': return onSignal(msg);
    case 'chat': return chat.received(msg);
    case 'typing': return chat.strangerTyping(msg.on);
    case 'media': return switchToSfu(msg);
    case 'peer_reconnecting': return setStatus(STATUS.peerReconnecting);
    case 'peer_resumed':
      setStatus(callStatus());
      if (app.call) app.call.restartIce();
      return;
    case 'peer_left': return onPeerLeft(msg);
    default: console.debug('duet: unhandled', msg.type);
  }
}

function onQueued(msg) {
  leaveRoom();
  app.beforeDrop = null;
  app.canNext = false;
  if (msg.mode === 'video' || msg.mode === 'text') app.mode = msg.mode;
  setMode(app.mode);
  setCommon([]);
  setStatus(STATUS.waiting);
  setState('waiting');
  app.expectQueued = '';
}

function onIdle() {
  const drop = app.beforeDrop;
  app.beforeDrop = null;
  if (app.leaving) {
    app.canNext = false;
    setStatus(STATUS.idle);
  } else if (app.state === 'idle') {
    // Already idle (the stranger left): keep saying so.
  } else if (app.state === 'reconnecting' && drop && drop.state === 'idle') {
    setStatus(drop.status); // back from a blip while idle: as it was
  } else {
    app.canNext = false;
    setStatus(STATUS.idle);
  }
  leaveRoom();
  app.leaving = false;
  setState('idle');
}

function onMatched(msg) {
  safetyMatched(msg);
  const again = msg.room === app.room && app.room !== null;
  app.beforeDrop = null;
  app.canNext = false;
  app.role = msg.role;
  app.mode = msg.mode === 'text' ? 'text' : 'video';
  setMode(app.mode);
  setCommon(msg.common_interests);
  if (again) {
    // Resumed into the same room: keep the connection, restart ICE.
    chat.forget();
    setStatus(callStatus());
    setState('room');
    if (app.mode === 'text') {
      send({ type: 'ready', room: app.room });
    } else if (app.call) {
      send({ type: 'ready', room: app.room });
      app.call.restartIce();
    } else {
      buildCall(msg);
    }
    return;
  }
  leaveRoom();
  app.room = msg.room;
  app.role = msg.role;
  clearChat();
  addLine('system', "You're now chatting with a stranger");
  setStatus(app.mode === 'text' ? STATUS.connected : STATUS.connecting);
  setState('room');
  if (app.mode === 'text') send({ type: 'ready', room: app.room });
  else {
    buildCall(msg);
    faceWatch();
  }
}

function onSignal(msg) {
  if (msg.leg === 'sfu') return switchToSfu(msg);
  if (app.mode !== 'video') return;
  const call = app.call;
  if (call && call.leg === 'sfu') return; // late P2P signals of a room now on the SFU
  if (!call) {
    app.early.push(msg);
    return;
  }
  if (msg.type === 'offer' && typeof msg.sdp === 'string') call.handleOffer(msg.sdp);
  else if (msg.type === 'answer' && typeof msg.sdp === 'string') call.handleAnswer(msg.sdp);
  else if (msg.type === 'candidate') call.handleCandidate(msg.candidate ?? null);
}

function onPeerLeft(msg) {
  console.info('duet: stranger left:', msg.reason);
  leaveRoom();
  app.beforeDrop = null;
  app.canNext = true;
  setCommon([]);
  setStatus(STATUS.peerLeft);
  addLine('system', 'Stranger has disconnected.');
  setState('idle');
}

function onError(msg) {
  if (pow.handles(msg)) return; // solving, then sent again
  console.warn('duet: server error', msg.code, msg.ref || '', msg.message || '');
  const text = userErrorText(msg);
  if (!text) return;
  addLine('system', text);
  if (app.expectQueued && msg.ref === app.expectQueued && app.state === 'waiting') {
    // We went ahead of the node, which refused: back to idle. A room the
    // node may still have ends with the next Next.
    app.expectQueued = '';
    app.canNext = true;
    setStatus(STATUS.idle);
    setState('idle');
  }
}

// ---- user actions ----

async function start(mode) {
  if (app.state !== 'idle' || app.starting) return;
  app.starting = true; // the house rules, asked once (site.rules)
  let accepted = false;
  try { accepted = await rulesAccepted(); } finally { app.starting = false; }
  if (!accepted || app.state !== 'idle') return;
  attention(el.startText, false);
  if (mode === 'video') {
    app.starting = true;
    try {
      await openCamera();
      refresh();
    } catch (err) {
      console.warn('duet: camera', err);
      addLine('system', `Could not use your camera: ${cameraProblem(err)}. You can still chat by text: press Start text.`);
      attention(el.startText, true);
      return;
    } finally {
      app.starting = false;
    }
    if (app.state !== 'idle') return;
  }
  app.mode = mode;
  setMode(mode);
  const interests = parseInterests(el.interests.value);
  if (!sig.open) {
    app.pendingStart = { mode, interests };
    if (!sig.ws) sig.connect();
    return;
  }
  queue(mode, interests);
}

// queue sends `queue`; for video on a node that asks for it, after the
// browser's own face check (only its yes/no goes to the node).
async function queue(mode, interests) {
  if (mode !== 'video' || !app.faceCheck) {
    send({ type: 'queue', mode, interests });
    return;
  }
  app.starting = true;
  refresh();
  let res;
  try {
    if (!app.face) app.face = new (await import('./face.js')).FaceCheck();
    res = await app.face.check(localStream());
  } catch (err) {
    res = { available: false, why: String(err) };
  } finally {
    app.starting = false;
    refresh();
  }
  if (app.state !== 'idle') return;
  if (!res.available) {
    addLine('system', 'This service asks for a face check, but it could not run in this browser (no face detector), so it was skipped.');
    send({ type: 'queue', mode, interests });
    return;
  }
  if (!res.face) {
    addLine('system', 'No face in view: this service asks that your face is visible before you meet someone. Check your camera and press Start again.');
    return;
  }
  send({ type: 'queue', mode, interests, face: true });
}

// ---- the face re-check during a call ----

// faceRecheckOf reads welcome.features.face_recheck (absent: no re-check).
function faceRecheckOf(f) {
  const r = f && f.face_check && f.face_recheck;
  const ms = r && Number(r.interval_ms);
  if (!(ms > 0)) return null;
  return { intervalMs: ms, leave: r.missing === 'leave', graceMs: Math.max(0, Number(r.grace_ms) || 0) };
}

function faceWatch() {
  const rc = app.faceRecheck;
  if (!rc || !app.face || !localStream()) return;
  const room = app.room;
  app.face.startWatching(localStream(), {
    intervalMs: rc.intervalMs,
    onChange: (present) => {
      if (app.room !== room || app.state !== 'room') return;
      send({ type: 'face', room, reason: present ? 'back' : 'missing' });
      clearTimeout(app.faceGone);
      app.faceGone = 0;
      if (present) {
        addLine('system', 'Thanks: your face is in view again.');
        return;
      }
      const secs = Math.round(rc.graceMs / 1000);
      addLine('system', rc.leave
        ? `We can't see your face. This service asks that it stays in view: show it within ${secs} seconds or you will leave this chat.`
        : "We can't see your face. This service asks that it stays in view during a chat.");
      if (!rc.leave) return;
      app.faceGone = setTimeout(() => {
        app.faceGone = 0;
        if (app.room !== room || app.state !== 'room') return;
        send({ type: 'face', room, reason: 'left' });
        stop();
        addLine('system', 'You left the chat: your face was not in view. Press Start to meet someone again.');
      }, rc.graceMs);
    },
  });
}

function faceUnwatch() {
  if (app.face) app.face.stopWatching();
  clearTimeout(app.faceGone);
  app.faceGone = 0;
}

function next() {
  if (!(app.state === 'room' || app.state === 'waiting' || (app.state === 'idle' && app.canNext))) return;
  if (app.state === 'room') addLine('system', 'You skipped the stranger.');
  leaveRoom();
  if (!send({ type: 'next' })) return;
  setCommon([]);
  setStatus(STATUS.waiting);
  setState('waiting');
  app.expectQueued = 'next';
}

function stop() {
  if (app.state === 'room') addLine('system', 'You left the chat.');
  leaveRoom();
  app.pendingStart = null;
  app.canNext = false;
  app.leaving = true;
  send({ type: 'leave' });
  setCommon([]);
  setStatus(STATUS.idle);
  setState('idle');
}

function report(reason) {
  if (app.state !== 'room') return;
  send({ type: 'report', room: app.room, reason: typeof reason === 'string' ? reason : 'inappropriate' });
  leaveRoom();
  addLine('system', 'Thanks: the stranger was reported. Looking for someone new…');
  setCommon([]);
  setStatus(STATUS.waiting);
  setState('waiting');
  app.expectQueued = 'report';
}

// ---- the nudity shield ----
// Off, nothing of it loads. On, body[data-shield] blurs the stranger's
// video by CSS at once and shield.js (with its worker and model) loads.

const SHIELD_MODES = ['off', 'blur-until-safe', 'blur-on-detect'];
const SHIELD_KEY = 'duet.shield'; // the user's own choice, in this browser

function shieldOwn() {
  let own = null;
  try { own = localStorage.getItem(SHIELD_KEY); } catch { /* storage off */ }
  return SHIELD_MODES.includes(own) ? own : '';
}

function shieldMode() {
  return shieldOwn() || app.shieldDefault;
}

function applyShield() {
  const mode = shieldMode();
  document.body.dataset.shield = mode;
  el.shieldMode.options[0].textContent = `default (${app.shieldDefault.replace(/-/g, ' ')})`;
  el.shieldMode.value = shieldOwn();
  if (app.shield) app.shield.setMode(mode);
  if (mode !== 'off' && app.state === 'room' && app.mode === 'video') shieldWatch();
}

let shieldLoading = null;
async function shieldWatch() {
  const mode = shieldMode();
  if (mode === 'off') return;
  if (!app.shield) {
    shieldLoading = shieldLoading || import('./shield.js').then((m) => {
      app.shield = new m.Shield({
        video: el.remoteVideo,
        tile: el.remoteVideo.parentElement,
        mode: shieldMode(),
        send: (event) => app.room && send({ type: 'shield', room: app.room, event }),
        onNext: next,
        onReport: report,
      });
      m.installTestHook(app.shield);
    });
    await shieldLoading;
  }
  if (app.state === 'room' && app.shield.room !== app.room) {
    app.shield.room = app.room;
    app.shield.watch();
  }
}

el.shieldMode.addEventListener('change', () => {
  try {
    if (el.shieldMode.value) localStorage.setItem(SHIELD_KEY, el.shieldMode.value);
    else localStorage.removeItem(SHIELD_KEY);
  } catch { /* storage off: this page only */ }
  applyShield();
});

// ---- wiring ----

el.startVideo.addEventListener('click', () => start('video'));
el.startText.addEventListener('click', () => start('text'));
el.interests.addEventListener('keydown', (e) => { if (e.key === 'Enter') start('video'); });
el.next.addEventListener('click', next);
el.stop.addEventListener('click', stop);
el.report.addEventListener('click', askReport); // a reason, confirmed, then report()
initSafety({ next, report, state: () => app.state, room: () => app.room });
el.toggleCam.addEventListener('click', () => toggle('video'));
el.toggleMic.addEventListener('click', () => toggle('audio'));

window.addEventListener('pagehide', (e) => {
  sig.close(); // a close frame: the stranger is told at once
  if (app.call) app.call.close();
  if (!e.persisted) stopCamera();
});
window.addEventListener('pageshow', (e) => {
  if (!e.persisted) return; // back from the bfcache: that session was closed
  if (app.state !== 'idle') sessionLost();
  if (!sig.ws) sig.connect();
});

// A read-only hook for tests and debugging.
window.duet = Object.freeze({
  get state() { return app.state; },
  get session() { return sig.session; },
  get room() { return app.room; },
  get role() { return app.role; },
  get mode() { return app.mode; },
  get pc() { return app.call ? app.call.pc : null; },
  get ws() { return sig.ws; },
  get face() { return app.face ? { ...app.face.stats } : null; },
  get shield() { return app.shield ? app.shield.mode : 'off'; },
});

// Keep "N online" fresh; welcome only gives the count at connect time.
const ONLINE_REFRESH_MS = 15000;
async function refreshOnline() {
  if (document.hidden) return;
  try {
    const r = await fetch('/api/stats', { cache: 'no-store' });
    if (r.ok) setOnline(Number((await r.json()).online));
  } catch { /* offline: the socket's own handling says so */ }
}
setInterval(refreshOnline, ONLINE_REFRESH_MS);

setStatus(STATUS.idle);
refresh();
sig.connect();
