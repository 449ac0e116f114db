// Proof of work before queueing (welcome.features.pow, bots.pow on the
// node). The node refuses a join it has not been paid for with `error`
// `pow_required` (or `pow_invalid`); this module then fetches a challenge
// from GET /api/pow/challenge, has a Worker (pow-worker.js, loaded only
// then) find the number, and sends the refused `queue` or `next` again
// with the solution in `pow`. One solution buys a few joins (a pass), so
// most Nexts go straight through. The challenge is ALTCHA's: the payload
// is base64 of {algorithm, challenge, number, salt, signature}.
// Wire contract: docs/PROTOCOL.md.

import { setStatus, STATUS } from './ui.js';

export const CHECKING = "Checking you're not a bot…";

const JOINS = new Set(['queue', 'next']);
const CODES = new Set(['pow_required', 'pow_invalid']);

export class PowGate {
  // send(msg) puts a frame on the socket; fail(msg) hands a refusal the
  // gate gives up on back to the page's own error handling.
  constructor({ send, fail }) {
    this.send = send;
    this.fail = fail;
    this.last = null;    // the last queue/next the page sent
    this.paid = false;   // that message already carried a solution
    this.gen = 0;        // bumped by every new join, leave or cancel
    this.solving = false;
  }

  // outgoing sees every frame the page sends: it remembers joins (to send
  // them again once paid for) and forgets them on leave/cancel.
  outgoing(msg) {
    if (JOINS.has(msg.type)) {
      this.last = msg;
      this.paid = 'pow' in msg;
      if (!this.paid) this.gen++;
    } else if (msg.type === 'leave' || msg.type === 'cancel') {
      this.last = null;
      this.gen++;
    }
    return msg;
  }

  // handles takes a refused join and pays for it; false leaves the error
  // to the page (not ours, or a solution of ours was refused too: the
  // node left the session idle, and so does the page).
  handles(msg) {
    if (!CODES.has(msg.code) || !JOINS.has(msg.ref)) return false;
    if (this.paid || !this.last) {
      setStatus(STATUS.idle);
      return false;
    }
    if (!this.solving) this.pay();
    return true;
  }

  async pay() {
    this.solving = true;
    const gen = this.gen;
    setStatus(CHECKING);
    let payload;
    try {
      payload = await solveChallenge((done) => {
        if (this.gen === gen) setStatus(`${CHECKING} ${Math.round(done * 100)}%`);
      });
    } catch (err) {
      console.warn('duet: proof of work', err);
      this.solving = false;
      const last = this.last;
      this.paid = true; // what follows is the page's to show
      if (last) {
        this.fail({
          type: 'error', code: 'pow_invalid', ref: last.type,
          message: `${err && err.message ? err.message : err}; try again`,
        });
      }
      return;
    }
    this.solving = false;
    // A join sent meanwhile (refused in its turn) is the one to pay for;
    // after leave/cancel nothing is.
    if (!this.last) return;
    if (this.gen !== gen) console.debug('duet: paying for a newer join');
    const msg = { ...this.last, pow: payload };
    this.outgoing(msg);
    this.send(msg);
  }
}

// solveChallenge fetches a challenge and solves it off the main thread;
// it resolves to the payload for `pow`.
export async function solveChallenge(onProgress) {
  const res = await fetch('/api/pow/challenge', { cache: 'no-store' });
  if (!res.ok) throw new Error(`the server answered ${res.status}`);
  const ch = await res.json();
  if (ch.algorithm !== 'SHA-256') throw new Error(`unknown algorithm ${ch.algorithm}`);
  const number = await runWorker(ch.salt, ch.challenge, ch.maxnumber, onProgress);
  return btoa(JSON.stringify({
    algorithm: ch.algorithm, challenge: ch.challenge, number, salt: ch.salt, signature: ch.signature,
  }));
}

// runWorker finds the number in pow-worker.js, loaded only now.
function runWorker(salt, challenge, max, onProgress) {
  return new Promise((resolve, reject) => {
    const w = new Worker('/pow-worker.js');
    w.onmessage = (e) => {
      const d = e.data;
      if (typeof d.progress === 'number') { onProgress(d.progress); return; }
      w.terminate();
      if (typeof d.number === 'number') resolve(d.number);
      else reject(new Error(d.error || 'no solution'));
    };
    w.onerror = (e) => { w.terminate(); reject(new Error(e.message || 'worker failed')); };
    w.postMessage({ salt, challenge, max });
  });
}

