// DOM access for the page: every element id the tests rely on lives here.
// Text from the network is only ever written with textContent.

const $ = (id) => document.getElementById(id);

export const el = {
  startVideo: $('start-video'),
  startText: $('start-text'),
  interests: $('interests'),
  next: $('next'),
  stop: $('stop'),
  report: $('report'),
  toggleCam: $('toggle-cam'),
  toggleMic: $('toggle-mic'),
  status: $('status'),
  common: $('common'),
  path: $('path'),
  online: $('online'),
  localVideo: $('local-video'),
  remoteVideo: $('remote-video'),
  chatLog: $('chat-log'),
  chatForm: $('chat-form'),
  chatInput: $('chat-input'),
  chatSend: $('chat-send'),
  typing: $('typing'),
  shieldMode: $('shield-mode'),
};

export const STATUS = {
  idle: 'Press Start to meet someone',
  waiting: 'Looking for someone…',
  connecting: 'Connecting…',
  connected: 'Connected',
  peerReconnecting: 'Stranger is reconnecting…',
  peerLeft: 'Stranger has disconnected',
  reconnecting: 'Reconnecting…',
  resumeFailed: 'Disconnected. Press Start to meet someone',
  refused: 'The server refused this connection',
};

export function setStatus(text) {
  if (el.status.textContent !== text) el.status.textContent = text;
}

export function getStatus() {
  return el.status.textContent;
}

// controls enables what makes sense in the given situation:
//   state: idle | waiting | room | reconnecting
//   canNext: idle after a stranger left (Next queues again)
export function setControls({ state, canNext, hasStream }) {
  document.body.dataset.state = state;
  const idle = state === 'idle';
  const room = state === 'room';
  el.startVideo.disabled = !idle;
  el.startText.disabled = !idle;
  el.interests.disabled = !idle;
  el.next.disabled = !(state === 'waiting' || room || (idle && canNext));
  el.stop.disabled = !(state === 'waiting' || room || (idle && canNext));
  el.report.disabled = !room;
  el.chatInput.disabled = !room;
  el.chatSend.disabled = !room;
  el.toggleCam.disabled = !hasStream;
  el.toggleMic.disabled = !hasStream;
  if (!room) setTyping(false);
}

export function setMode(mode) {
  document.body.classList.toggle('mode-text', mode === 'text');
  document.body.classList.toggle('mode-video', mode !== 'text');
}

export function setToggle(button, on, what) {
  button.setAttribute('aria-pressed', on ? 'true' : 'false');
  button.textContent = `${what} ${on ? 'on' : 'off'}`;
}

export function setCommon(list) {
  el.common.textContent = list && list.length ? `You both like: ${list.join(', ')}` : '';
}

export function setPath(text) {
  el.path.textContent = text || '';
  el.path.classList.toggle('relay', /relay/i.test(text || ''));
}

export function setOnline(n) {
  el.online.textContent = Number.isFinite(n) && n > 0 ? `${n} online` : '';
}

let typingHide = 0;

// setTyping shows the stranger's typing line; it hides itself if the
// stranger goes quiet without saying so (they refresh it every 2 s).
export function setTyping(on) {
  clearTimeout(typingHide);
  el.typing.hidden = !on;
  if (on) typingHide = setTimeout(() => { el.typing.hidden = true; }, 6000);
}

export function clearChat() {
  el.chatLog.replaceChildren();
  setTyping(false);
}

// addLine appends one chat line. kind is "me", "stranger" or "system".
export function addLine(kind, text) {
  const li = document.createElement('li');
  li.className = kind;
  if (kind === 'me' || kind === 'stranger') {
    const who = document.createElement('span');
    who.className = 'who';
    who.textContent = kind === 'me' ? 'You:' : 'Stranger:';
    const body = document.createElement('span');
    body.className = 'text';
    body.textContent = text;
    li.append(who, ' ', body);
  } else {
    li.textContent = text;
  }
  const log = el.chatLog;
  const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  log.append(li);
  if (atBottom || kind === 'me') log.scrollTop = log.scrollHeight;
  return li;
}

export function showLocal(stream) {
  if (el.localVideo.srcObject !== stream) el.localVideo.srcObject = stream;
  el.localVideo.parentElement.classList.add('live');
}

export function showRemote(stream) {
  if (el.remoteVideo.srcObject !== stream) el.remoteVideo.srcObject = stream;
  el.remoteVideo.parentElement.classList.add('live');
}

export function clearRemote() {
  el.remoteVideo.srcObject = null;
  el.remoteVideo.parentElement.classList.remove('live');
}

export function attention(button, on) {
  button.classList.toggle('attention', on);
}

// parseInterests turns "Music, cats ,, music" into ["music", "cats"].
export function parseInterests(text, max = 10, maxChars = 40) {
  const seen = new Set();
  const out = [];
  for (const part of String(text || '').split(',')) {
    const v = part.trim().toLowerCase().slice(0, maxChars);
    if (!v || seen.has(v)) continue;
    seen.add(v);
    out.push(v);
    if (out.length >= max) break;
  }
  return out;
}

// userErrorText words the server errors people should see; "" for the
// rest (those only go to the console).
export function userErrorText(msg) {
  if (msg.ref === 'fallback') return '';
  switch (msg.code) {
    case 'rate_limited': return 'Slow down: you are sending too fast.';
    case 'banned': {
      const until = Number(msg.until) > 0 ? new Date(Number(msg.until)).toLocaleString() : '';
      return until ? `You are banned from meeting strangers until ${until}.` : 'You are banned from meeting strangers for now.';
    }
    case 'unavailable': case 'too_large': case 'link_held': return String(msg.message || 'Something went wrong.');
    case 'pow_required': case 'pow_invalid': return `The check that you're not a bot failed: ${msg.message || 'try again'}`;
    default: return '';
  }
}
