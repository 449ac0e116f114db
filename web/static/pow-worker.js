// Finds the number n in [0, max] with SHA-256(salt + n) == challenge
// (an ALTCHA challenge), off the page's main thread. SHA-256 is done
// here in plain JavaScript: crypto.subtle answers one promise per digest
// (about 24,000 a second in headless Chromium on the test box), a loop
// over typed arrays is many times faster, and it needs no secure context.

const PROGRESS_EVERY = 100000;

const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);
const W = new Int32Array(64);

// sha256 hashes buf[0:len] into out (eight big-endian words); buf must
// have room for the padding (len + 72 bytes).
function sha256(buf, len, out) {
  const total = (len + 9 + 63) & ~63;
  buf[len] = 0x80;
  buf.fill(0, len + 1, total - 4);
  const bits = len * 8;
  buf[total - 4] = bits >>> 24; buf[total - 3] = bits >>> 16; buf[total - 2] = bits >>> 8; buf[total - 1] = bits;
  let h0 = 0x6a09e667, h1 = 0xbb67ae85 | 0, h2 = 0x3c6ef372, h3 = 0xa54ff53a | 0;
  let h4 = 0x510e527f, h5 = 0x9b05688c | 0, h6 = 0x1f83d9ab, h7 = 0x5be0cd19;
  for (let off = 0; off < total; off += 64) {
    for (let i = 0; i < 16; i++) {
      const j = off + 4 * i;
      W[i] = (buf[j] << 24) | (buf[j + 1] << 16) | (buf[j + 2] << 8) | buf[j + 3];
    }
    for (let i = 16; i < 64; i++) {
      const x = W[i - 15], y = W[i - 2];
      const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
      const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
      W[i] = (W[i - 16] + s0 + W[i - 7] + s1) | 0;
    }
    let a = h0, b = h1, c = h2, d = h3, e = h4, f = h5, g = h6, h = h7;
    for (let i = 0; i < 64; i++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const t1 = (h + S1 + ((e & f) ^ (~e & g)) + K[i] + W[i]) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      h = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
    }
    h0 = (h0 + a) | 0; h1 = (h1 + b) | 0; h2 = (h2 + c) | 0; h3 = (h3 + d) | 0;
    h4 = (h4 + e) | 0; h5 = (h5 + f) | 0; h6 = (h6 + g) | 0; h7 = (h7 + h) | 0;
  }
  out[0] = h0; out[1] = h1; out[2] = h2; out[3] = h3; out[4] = h4; out[5] = h5; out[6] = h6; out[7] = h7;
}

// solve returns the number, or -1 when none up to max solves it.
function solve(salt, challenge, max, progress) {
  const want = new Int32Array(8);
  for (let i = 0; i < 8; i++) want[i] = parseInt(challenge.substr(8 * i, 8), 16) | 0;
  const prefix = new TextEncoder().encode(salt);
  const buf = new Uint8Array(prefix.length + 20 + 72);
  buf.set(prefix);
  const got = new Int32Array(8);
  let next = PROGRESS_EVERY;
  for (let n = 0; n <= max; n++) {
    // The decimal digits of n after the salt, as ALTCHA hashes them.
    const s = String(n);
    let len = prefix.length;
    for (let i = 0; i < s.length; i++) buf[len++] = s.charCodeAt(i);
    sha256(buf, len, got);
    if (got[0] === want[0] && got[1] === want[1] && got[2] === want[2] && got[3] === want[3] &&
        got[4] === want[4] && got[5] === want[5] && got[6] === want[6] && got[7] === want[7]) return n;
    if (n === next) {
      next += PROGRESS_EVERY;
      progress(n / max);
    }
  }
  return -1;
}

if (typeof self !== 'undefined' && typeof self.postMessage === 'function') {
  self.onmessage = (e) => {
    const { salt, challenge, max } = e.data;
    if (typeof salt !== 'string' || !/^[0-9a-f]{64}$/.test(challenge) || !(max >= 0 && max <= 1e9)) {
      self.postMessage({ error: 'malformed challenge' });
      return;
    }
    const n = solve(salt, challenge, max, (done) => self.postMessage({ progress: done }));
    self.postMessage(n >= 0 ? { number: n } : { error: 'no number solves the challenge' });
  };
}
