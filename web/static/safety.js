// The page's safety controls around app.js: the language to be matched
// on, Report with a reason and a confirmation, Block, Esc for Next, and
// the chat input taking focus when a stranger arrives. app.js calls
// initSafety once, withPrefs on what it sends, and matched on `matched`.

import { block, withBlocks } from './block.js';
import { rulesAccepted, siteInfo } from './rules.js';

export { rulesAccepted };

const LANG_KEY = 'duet.lang';

// LANGS are offered to be matched on; the value goes out as queue.lang.
const LANGS = [
  ['', 'Any language'], ['en', 'English'], ['es', 'Español'], ['pt', 'Português'],
  ['fr', 'Français'], ['de', 'Deutsch'], ['it', 'Italiano'], ['nl', 'Nederlands'],
  ['pl', 'Polski'], ['ru', 'Русский'], ['uk', 'Українська'], ['tr', 'Türkçe'],
  ['ar', 'العربية'], ['hi', 'हिन्दी'], ['id', 'Bahasa Indonesia'], ['ja', '日本語'],
  ['ko', '한국어'], ['zh', '中文'],
];

// REASONS word the protocol's report reasons (docs/PROTOCOL.md).
const REASONS = {
  nudity: 'Nudity or sexual content',
  harassment: 'Harassment, hate or threats',
  spam: 'Spam, ads or a bot',
  underage: 'Looks under age',
  other: 'Something else',
};

const $ = (id) => document.getElementById(id);

let hooks = null;
let handle = { room: null, block: '' }; // the current stranger's block handle
let lang = null;

function loadLang() {
  let v = '';
  try { v = localStorage.getItem(LANG_KEY) || ''; } catch { /* storage off */ }
  return LANGS.some(([code]) => code === v) ? v : '';
}

// withPrefs adds what the user chose here to a `queue` (language, token,
// block list) or a `next` (token, block list).
export function withPrefs(msg) {
  const out = withBlocks(msg);
  if (out && out.type === 'queue' && lang && lang.value) out.lang = lang.value;
  return out;
}

// matched takes note of the new stranger's block handle.
export function matched(msg) {
  handle = { room: msg.room, block: typeof msg.block === 'string' ? msg.block : '' };
  sync();
}

// initSafety wires the controls. hooks: next(), report(reason),
// state() (idle | waiting | room | reconnecting), room().
export function initSafety(h) {
  hooks = h;
  lang = document.createElement('select');
  lang.id = 'lang';
  lang.title = 'Meet people who speak this language first';
  lang.setAttribute('aria-label', 'Language to be matched on');
  for (const [code, name] of LANGS) lang.add(new Option(name, code));
  lang.value = loadLang();
  lang.addEventListener('change', () => {
    try { localStorage.setItem(LANG_KEY, lang.value); } catch { /* this page only */ }
  });
  $('interests').after(lang);

  const b = document.createElement('button');
  b.type = 'button';
  b.id = 'block';
  b.className = 'danger';
  b.textContent = 'Block';
  b.title = 'Never be matched with this stranger again (kept in this browser)';
  b.disabled = true;
  b.addEventListener('click', askBlock);
  $('report').after(b);

  document.addEventListener('keydown', onKey);
  // setControls marks body[data-state]: follow it for our own controls
  // and to focus the chat when a room starts.
  let was = document.body.dataset.state;
  new MutationObserver(() => {
    const now = document.body.dataset.state;
    if (now === was) return;
    sync();
    if (now === 'room' && was !== 'room') setTimeout(() => $('chat-input').focus(), 0);
    was = now;
  }).observe(document.body, { attributes: true, attributeFilter: ['data-state'] });
  sync();
  siteInfo(); // fetch early: Start should not wait for it
}

function sync() {
  if (!hooks) return;
  const state = hooks.state();
  lang.disabled = state !== 'idle';
  $('block').disabled = !(state === 'room' && handle.block && handle.room === hooks.room());
}

function typing(t) {
  return t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' || t.isContentEditable);
}

// onKey: Esc does Next, as on the sites people know - but never from a
// field with text in it (Esc there must not throw away a stranger in the
// middle of a sentence), nor while a dialog is open (Esc closes it).
function onKey(e) {
  if (e.key !== 'Escape' || e.defaultPrevented || e.repeat) return;
  if (document.querySelector('dialog[open]')) return;
  const t = e.target;
  if (typing(t) && t.tagName !== 'SELECT' && t.value !== '') return;
  e.preventDefault();
  hooks.next();
}

// askReport asks why, confirms, then reports (which ends the room).
export async function askReport() {
  if (!hooks || hooks.state() !== 'room') return;
  const room = hooks.room();
  const info = await siteInfo();
  const reasons = Array.isArray(info.report_reasons) && info.report_reasons.length
    ? info.report_reasons : Object.keys(REASONS);
  const d = dialog('report-dialog', 'Report this stranger', 'What is wrong? The stranger is disconnected when you send the report.');
  const list = document.createElement('fieldset');
  list.className = 'reasons';
  const legend = document.createElement('legend');
  legend.className = 'visually-hidden';
  legend.textContent = 'Reason';
  list.append(legend);
  for (const r of reasons) {
    const label = document.createElement('label');
    const radio = document.createElement('input');
    radio.type = 'radio';
    radio.name = 'report-reason';
    radio.value = r;
    label.append(radio, ' ', REASONS[r] || r);
    list.append(label);
  }
  d.body.append(list);
  const send = d.button('report-send', 'Report and leave', 'danger');
  send.disabled = true;
  list.addEventListener('change', () => { send.disabled = !list.querySelector('input:checked'); });
  const yes = await d.run(send);
  const picked = list.querySelector('input:checked');
  if (!yes || !picked) return;
  if (hooks.state() !== 'room' || hooks.room() !== room) return; // the stranger left meanwhile
  hooks.report(picked.value);
}

async function askBlock() {
  if (!hooks || hooks.state() !== 'room' || !handle.block) return;
  const { room, block: h } = handle;
  const d = dialog('block-dialog', 'Block this stranger?',
    'You will never be matched with them again on this browser, and you move on to someone new.');
  const ok = d.button('block-confirm', 'Block and next', 'danger');
  if (!(await d.run(ok))) return;
  block(h); // kept even if the stranger left meanwhile
  if (hooks.state() === 'room' && hooks.room() === room) hooks.next();
}

// dialog builds a modal with a title, a text, Cancel and the caller's
// confirm button; run(confirm) resolves whether it was pressed.
function dialog(id, title, text) {
  const d = document.createElement('dialog');
  d.id = id;
  d.className = 'safety-dialog';
  const h = document.createElement('h2');
  h.textContent = title;
  const p = document.createElement('p');
  p.textContent = text;
  const body = document.createElement('div');
  const row = document.createElement('div');
  row.className = 'dialog-actions';
  const cancel = document.createElement('button');
  cancel.type = 'button';
  cancel.id = `${id}-cancel`;
  cancel.textContent = 'Cancel';
  row.append(cancel);
  d.append(h, p, body, row);
  return {
    body,
    button(bid, label, cls) {
      const b = document.createElement('button');
      b.type = 'button';
      b.id = bid;
      b.className = cls;
      b.textContent = label;
      row.append(b);
      return b;
    },
    run(confirm) {
      document.body.append(d);
      return new Promise((resolve) => {
        const done = (yes) => { d.close(); d.remove(); resolve(yes); };
        confirm.addEventListener('click', () => { if (!confirm.disabled) done(true); });
        cancel.addEventListener('click', () => done(false));
        d.addEventListener('cancel', (e) => { e.preventDefault(); done(false); });
        d.showModal();
        cancel.focus();
      });
    },
  };
}
