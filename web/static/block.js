// Blocking strangers, kept in this browser only.
//
// The browser keeps one random token (`queue.me`) and the block handles
// of the strangers it blocked (`queue.blocked`). A handle is what the node
// gave in `matched.block`: an opaque value, new at every meeting, that only
// the node can turn back into the stranger; nothing here can recognise or
// follow anyone. The node never pairs two browsers when either blocked
// the other. Clearing the site's data forgets the token and the list.

const ME_KEY = 'duet.me';
const BLOCKED_KEY = 'duet.blocked';
export const MAX_BLOCKED = 200; // the node refuses longer lists (too_large)
const HANDLE = /^[A-Za-z0-9_-]{22}$/;

const memory = new Map(); // when storage is off (some private modes)

function load(key) {
  try { return localStorage.getItem(key); } catch { return memory.has(key) ? memory.get(key) : null; }
}

function save(key, value) {
  try { localStorage.setItem(key, value); } catch { memory.set(key, value); }
}

function newToken() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return btoa(String.fromCharCode(...b)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

// me is this browser's stable token, made on first use.
export function me() {
  let t = load(ME_KEY);
  if (!t || !/^[A-Za-z0-9_-]{16,64}$/.test(t)) {
    t = newToken();
    save(ME_KEY, t);
  }
  return t;
}

// blockedList returns the stored handles, oldest first.
export function blockedList() {
  try {
    const v = JSON.parse(load(BLOCKED_KEY) || '[]');
    return Array.isArray(v) ? v.filter((h) => typeof h === 'string' && HANDLE.test(h)) : [];
  } catch {
    return [];
  }
}

// block remembers a stranger's handle; past MAX_BLOCKED the oldest goes.
export function block(handle) {
  if (typeof handle !== 'string' || !HANDLE.test(handle)) return false;
  const list = blockedList().filter((h) => h !== handle);
  list.push(handle);
  save(BLOCKED_KEY, JSON.stringify(list.slice(-MAX_BLOCKED)));
  return true;
}

// withBlocks adds the token and the block list to a `queue` or `next`.
export function withBlocks(msg) {
  if (!msg || (msg.type !== 'queue' && msg.type !== 'next')) return msg;
  return { ...msg, me: me(), blocked: blockedList() };
}
