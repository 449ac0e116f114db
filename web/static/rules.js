// House rules and minimum age (site.rules, site.min_age): shown once,
// before the first Start, and accepted by the user; the acceptance is
// remembered in this browser for exactly the rules it saw, so new rules
// are asked again.

const ACCEPT_KEY = 'duet.rules';
let site = null;

// siteInfo fetches /api/site once: {rules, min_age, report_reasons, ...}.
export async function siteInfo() {
  if (site) return site;
  try {
    const r = await fetch('/api/site', { cache: 'no-store' });
    if (r.ok) site = await r.json();
  } catch { /* the node is away: Start cannot work either */ }
  return site || { rules: '', min_age: 0, report_reasons: [] };
}

// digest names one version of the rules; a short FNV-1a is plenty.
function digest(s) {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(36);
}

function versionOf(info) {
  return digest(`${info.min_age}\n${info.rules}`);
}

function accepted(info) {
  try { return localStorage.getItem(ACCEPT_KEY) === versionOf(info); } catch { return false; }
}

function remember(info) {
  try { localStorage.setItem(ACCEPT_KEY, versionOf(info)); } catch { /* this page only */ }
}

let open = null; // the promise of the dialog on screen

// rulesAccepted resolves true when the user may start: no rules, rules
// accepted before, or accepted now in the dialog; false if declined.
export async function rulesAccepted() {
  const info = await siteInfo();
  const minAge = Number(info.min_age) || 0;
  if (!info.rules && !minAge) return true;
  if (accepted(info)) return true;
  if (!open) open = ask(info, minAge).finally(() => { open = null; });
  return open;
}

function ask(info, minAge) {
  const d = document.createElement('dialog');
  d.id = 'rules-dialog';
  d.className = 'safety-dialog';
  d.setAttribute('aria-labelledby', 'rules-title');
  const h = document.createElement('h2');
  h.id = 'rules-title';
  h.textContent = 'Before you start';
  d.append(h);
  if (info.rules) {
    const p = document.createElement('p');
    p.id = 'rules-text';
    p.className = 'rules-text';
    p.textContent = String(info.rules); // plain text, never HTML
    d.append(p);
  }
  let age = null;
  if (minAge) {
    const label = document.createElement('label');
    label.className = 'rules-age';
    age = document.createElement('input');
    age.type = 'checkbox';
    age.id = 'rules-age';
    label.append(age, ` I am ${minAge} or older`);
    d.append(label);
  }
  const row = document.createElement('div');
  row.className = 'dialog-actions';
  const ok = document.createElement('button');
  ok.type = 'button';
  ok.id = 'rules-accept';
  ok.className = 'primary';
  ok.textContent = info.rules ? 'I accept the rules' : 'Continue';
  const no = document.createElement('button');
  no.type = 'button';
  no.id = 'rules-decline';
  no.textContent = 'Not now';
  row.append(no, ok);
  d.append(row);
  const sync = () => { ok.disabled = !!age && !age.checked; };
  if (age) age.addEventListener('change', sync);
  sync();
  document.body.append(d);
  return new Promise((resolve) => {
    const done = (yes) => {
      if (yes) remember(info);
      d.close();
      d.remove();
      resolve(yes);
    };
    ok.addEventListener('click', () => { if (!ok.disabled) done(true); });
    no.addEventListener('click', () => done(false));
    d.addEventListener('cancel', (e) => { e.preventDefault(); done(false); });
    d.showModal();
    (age || ok).focus();
  });
}
