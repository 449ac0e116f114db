// The live admin page: every second it reads /api/rooms and /api/stats
// with the admin token and draws each room's bitrate over the last minute;
// once, /api/node: what the node binds and advertises, and /api/safety:
// which safety features are on. The token stays in this tab (sessionStorage) and goes only to this node.

const $ = (id) => document.getElementById(id);
const history = new Map(); // room -> last 60 total bitrates
let timer = 0;

function fmtRate(bps) {
  if (!bps) return '0';
  if (bps >= 1e6) return (bps / 1e6).toFixed(2) + ' Mb/s';
  return (bps / 1e3).toFixed(0) + ' kb/s';
}

function fmtBytes(n) {
  if (n >= 1e9) return (n / 1e9).toFixed(2) + ' GB';
  if (n >= 1e6) return (n / 1e6).toFixed(1) + ' MB';
  if (n >= 1e3) return (n / 1e3).toFixed(0) + ' kB';
  return String(n);
}

function fmtAge(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  return s >= 60 ? `${Math.floor(s / 60)}m ${s % 60}s` : `${s}s`;
}

function spark(canvas, values) {
  const ctx = canvas.getContext('2d');
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const top = Math.max(1, ...values);
  ctx.strokeStyle = '#3fb950';
  ctx.beginPath();
  values.forEach((v, i) => {
    const x = (i / 59) * (w - 1);
    const y = h - 1 - (v / top) * (h - 2);
    if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
  });
  ctx.stroke();
}

async function get(path, token) {
  const res = await fetch(path, { headers: { Authorization: `Bearer ${token}` }, cache: 'no-store' });
  if (!res.ok) throw new Error(res.status === 401 ? 'the token was refused' : `${path}: HTTP ${res.status}`);
  return res.json();
}

function render(rooms) {
  const list = $('list');
  const seen = new Set();
  let relayed = 0, total = 0;
  for (const r of rooms) {
    seen.add(r.room);
    const rate = (r.a_to_b.bitrate_bps || 0) + (r.b_to_a.bitrate_bps || 0);
    if (r.path !== 'p2p') { relayed++; total += rate; }
    const h = history.get(r.room) || [];
    h.push(rate);
    while (h.length > 60) h.shift();
    history.set(r.room, h);
    let row = document.getElementById(`room-${r.room}`);
    if (!row) {
      row = document.createElement('tr');
      row.id = `room-${r.room}`;
      for (let i = 0; i < 10; i++) row.appendChild(document.createElement('td'));
      const cell = document.createElement('td');
      const canvas = document.createElement('canvas');
      canvas.width = 120; canvas.height = 24;
      cell.appendChild(canvas);
      row.appendChild(cell);
      list.appendChild(row);
    }
    const c = row.children;
    c[0].textContent = r.room.slice(0, 8) + '…';
    c[0].title = r.room;
    c[1].textContent = r.mode;
    c[2].textContent = r.path;
    c[2].className = `path-${r.path}`;
    c[3].textContent = fmtAge(Date.now() - r.started_at);
    c[4].textContent = fmtRate(r.a_to_b.bitrate_bps);
    c[5].textContent = fmtRate(r.b_to_a.bitrate_bps);
    c[6].textContent = `${fmtBytes(r.a_to_b.bytes)} / ${fmtBytes(r.b_to_a.bytes)}`;
    c[7].textContent = `${((r.a_to_b.loss + r.b_to_a.loss) * 50).toFixed(1)}%`;
    c[8].textContent = r.a_to_b.rtt_ms || r.b_to_a.rtt_ms ? `${Math.round(Math.max(r.a_to_b.rtt_ms, r.b_to_a.rtt_ms))} ms` : '–';
    c[9].textContent = `${r.a_to_b.nacks + r.b_to_a.nacks} / ${r.a_to_b.plis + r.b_to_a.plis}`;
    spark(c[10].firstChild, h);
  }
  for (const row of [...list.children]) {
    const code = row.id.slice(5);
    if (!seen.has(code)) { row.remove(); history.delete(code); }
  }
  $('relayed').textContent = relayed;
  $('bitrate').textContent = fmtRate(total);
}

async function tick(token) {
  try {
    const [data, stats] = await Promise.all([get('/api/rooms', token), get('/api/stats', token)]);
    render(data.rooms || []);
    $('online').textContent = stats.online;
    $('rooms').textContent = stats.rooms;
    $('waiting').textContent = (stats.waiting.video || 0) + (stats.waiting.text || 0);
    $('problem').textContent = '';
  } catch (err) {
    $('problem').textContent = String(err.message || err);
  }
}

// showNetwork draws /api/node: what the node binds and what it advertises,
// and whether public_ip is one of its own addresses or assumed mapped.
async function showNetwork(token) {
  let n;
  try {
    n = (await get('/api/node', token)).network;
  } catch {
    return; // tick() says what is wrong
  }
  const binds = (v) => [['udp', v.binds_udp], ['tcp', v.binds_tcp], ['tls', v.binds_tls]]
    .filter(([, a]) => a).map(([p, a]) => `${p} ${a}`).join(', ');
  const rows = [['public_ip', n.public_ip
    ? `${n.public_ip}: ${n.public_ip_is === 'local' ? 'an address of this host' : `not an address of this host, assumed mapped 1:1 onto ${n.mapped_onto || '?'}`}`
    : `unset: advertising the default-route address ${n.default_route_ip || '(none)'}`]];
  if (n.turn) rows.push(['TURN', `binds ${binds(n.turn)}; relays on ${n.turn.relays_bind}; advertises ${n.turn.advertises}`]);
  if (n.sfu) rows.push(['SFU', `binds ${binds(n.sfu)}; gathers ${n.sfu.gathers}; advertises ${n.sfu.advertises}`]);
  rows.push(['HTTP', `binds ${n.http.binds}`]);
  const dl = $('net');
  dl.replaceChildren();
  for (const [k, v] of rows) {
    const dt = document.createElement('dt');
    const dd = document.createElement('dd');
    dt.textContent = k;
    dd.textContent = v;
    dl.append(dt, dd);
  }
  $('net-notes').replaceChildren(...(n.notes || []).map((text) => {
    const li = document.createElement('li');
    li.textContent = text;
    return li;
  }));
  $('network').hidden = false;
}

// showSafety draws /api/safety: each safety feature, whether it is on,
// the key that turns it on, where it runs and what of it the node sees.
async function showSafety(token) {
  let features;
  try {
    features = (await get('/api/safety', token)).features || [];
  } catch {
    return; // tick() says what is wrong
  }
  $('safety-list').replaceChildren(...features.map((f) => {
    const tr = document.createElement('tr');
    for (const v of [f.feature, f.setting, f.key, f.runs, f.sends]) {
      const td = document.createElement('td');
      td.textContent = v;
      tr.append(td);
    }
    tr.className = f.on ? 'on' : 'off';
    return tr;
  }));
  $('safety').hidden = false;
}

function watch(token) {
  sessionStorage.setItem('duet-admin-token', token);
  clearInterval(timer);
  showNetwork(token);
  showSafety(token);
  tick(token);
  timer = setInterval(() => tick(token), 1000);
}

$('auth').addEventListener('submit', (e) => {
  e.preventDefault();
  watch($('token').value);
});
const saved = sessionStorage.getItem('duet-admin-token');
if (saved) { $('token').value = saved; watch(saved); }
