// Text chat: sending, showing, and both typing indicators.

import { el, addLine, setTyping } from './ui.js';
import { plainParts } from './links.js';

const TYPING_EVERY_MS = 2000; // re-send "typing on" at most this often
const TYPING_IDLE_MS = 3000;  // quiet this long: "typing off"

// Chat needs room() (the current room code, or null when not in one) and
// send(msg) (returns whether the socket took it).
export class Chat {
  constructor({ room, send }) {
    this.room = room;
    this.send = send;
    this.typingOn = false;
    this.sentAt = 0;
    this.idleTimer = 0;
    el.chatForm.addEventListener('submit', (e) => this.submit(e));
    el.chatInput.addEventListener('input', () => this.onInput());
  }

  submit(ev) {
    ev.preventDefault();
    const room = this.room();
    const text = el.chatInput.value.trim();
    if (!text || !room) return;
    if (!this.send({ type: 'chat', room, text })) return;
    addLine('me', text);
    el.chatInput.value = '';
    el.chatInput.focus(); // after a click on Send too: the next line follows
    this.stopTyping();
  }

  onInput() {
    const room = this.room();
    if (!room) return;
    if (!el.chatInput.value.trim()) {
      this.stopTyping();
      return;
    }
    const now = Date.now();
    if (!this.typingOn || now - this.sentAt >= TYPING_EVERY_MS) {
      this.send({ type: 'typing', room, on: true });
      this.typingOn = true;
      this.sentAt = now;
    }
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => this.stopTyping(), TYPING_IDLE_MS);
  }

  // stopTyping tells the stranger we stopped (if we had said we started).
  stopTyping() {
    clearTimeout(this.idleTimer);
    this.idleTimer = 0;
    const room = this.room();
    if (this.typingOn && room) this.send({ type: 'typing', room, on: false });
    this.typingOn = false;
    this.sentAt = 0;
  }

  // forget drops our typing state without telling anyone (room is over).
  forget() {
    clearTimeout(this.idleTimer);
    this.idleTimer = 0;
    this.typingOn = false;
    this.sentAt = 0;
    setTyping(false);
  }

  received(msg) {
    setTyping(false);
    const text = String(msg.text ?? '');
    const li = addLine('stranger', text);
    if (msg.links === 'plain') showPlain(li, text);
  }

  strangerTyping(on) {
    setTyping(on === true);
  }
}

// showPlain rewrites a chat line whose links the node flagged (sent before
// the strangers talked a while, signal.chat_links: plain): each link is
// defanged ("example[.]com") in a span, text only, so neither the page
// nor the OS nor a copy and paste turns it into something to click.
function showPlain(li, text) {
  const body = li.querySelector('.text');
  if (!body) return;
  const nodes = plainParts(text).map((p) => {
    if (!p.link) return document.createTextNode(p.text);
    const s = document.createElement('span');
    s.className = 'link-plain';
    s.title = 'Links are shown as text until you have talked a while';
    s.textContent = p.text;
    return s;
  });
  body.replaceChildren(...nodes);
  li.classList.add('has-plain-links');
}
