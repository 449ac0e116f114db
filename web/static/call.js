// One P2P video call: the RTCPeerConnection of a room, its offer/answer
// exchange, trickle ICE, ICE restarts and the media path label.

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// fingerprint pulls the DTLS fingerprint out of an SDP; it changes when the
// stranger's page built a new RTCPeerConnection (a reload, say).
function fingerprint(sdp) {
  const m = /^a=fingerprint:(.+)$/m.exec(sdp || '');
  return m ? m[1].trim().toLowerCase() : '';
}

// Call events: onRemoteStream(stream), onState(connectionState),
// onPath(label), onFailed(reason) ("ice_failed" or "timeout": where the SFU
// fallback will hook in), and send(msg) for signalling.
export class Call {
  constructor({ room, role, leg, iceServers, iceTransportPolicy, p2pTimeoutMs, stream, send, onRemoteStream, onState, onPath, onFailed }) {
    this.room = room;
    // leg "sfu": this connection goes to the node's SFU, which makes every
    // offer; we only answer, and every message we send says leg "sfu".
    this.leg = leg === 'sfu' ? 'sfu' : '';
    this.role = this.leg ? 'answerer' : role;
    this.iceServers = Array.isArray(iceServers) ? iceServers : [];
    // "relay" when the operator runs privacy mode: strangers never learn
    // each other's addresses because only TURN candidates are used.
    this.iceTransportPolicy = iceTransportPolicy === 'relay' ? 'relay' : 'all';
    this.stream = stream;
    this.send = this.leg ? (msg) => send({ ...msg, leg: this.leg }) : send;
    this.onRemoteStream = onRemoteStream || (() => {});
    this.onState = onState || (() => {});
    this.onPath = onPath || (() => {});
    this.onFailed = onFailed || (() => {});
    this.pc = null;
    this.pending = [];     // remote candidates that came before the offer/answer
    this.chain = Promise.resolve(); // signalling steps run one at a time
    this.closed = false;
    this.pathTimer = 0;
    this.build();
    // Past the node's budget without a connection: time for the fallback.
    this.p2pTimer = p2pTimeoutMs > 0 ? setTimeout(() => {
      if (!this.closed && this.pc.connectionState !== 'connected') this.onFailed('timeout');
    }, p2pTimeoutMs) : 0;
  }

  get offerer() {
    return this.role === 'offerer';
  }

  build() {
    const pc = new RTCPeerConnection({ iceServers: this.iceServers, iceTransportPolicy: this.iceTransportPolicy });
    this.pc = pc;
    this.pending = [];
    if (this.stream) {
      for (const track of this.stream.getTracks()) pc.addTrack(track, this.stream);
    }
    pc.ontrack = (e) => {
      if (pc !== this.pc) return;
      const stream = e.streams && e.streams[0] ? e.streams[0] : new MediaStream([e.track]);
      this.onRemoteStream(stream);
    };
    pc.onicecandidate = (e) => {
      if (pc !== this.pc || this.closed) return;
      this.send({ type: 'candidate', room: this.room, candidate: e.candidate ? e.candidate.toJSON() : null });
    };
    pc.onconnectionstatechange = () => {
      if (pc !== this.pc || this.closed) return;
      const st = pc.connectionState;
      this.onState(st);
      if (st === 'connected') this.watchPath();
      if (st === 'failed') this.onFailed('ice_failed');
    };
  }

  // run queues one signalling step so offers, answers and candidates are
  // applied in the order they arrived, never interleaved.
  run(label, fn) {
    this.chain = this.chain.then(async () => {
      if (this.closed) return;
      try {
        await fn();
      } catch (err) {
        console.warn(`duet: ${label} failed`, err);
      }
    });
    return this.chain;
  }

  // offer sends a (re)offer; iceRestart asks for fresh ICE credentials.
  offer(iceRestart = false) {
    return this.run('offer', async () => {
      const pc = this.pc;
      if (pc.signalingState === 'have-local-offer' && iceRestart) {
        await pc.setLocalDescription({ type: 'rollback' });
      }
      if (pc.signalingState !== 'stable') return;
      const offer = await pc.createOffer(iceRestart ? { iceRestart: true } : {});
      await pc.setLocalDescription(offer);
      this.send({ type: 'offer', room: this.room, sdp: pc.localDescription.sdp });
    });
  }

  restartIce() {
    if (this.offerer) this.offer(true);
  }

  handleOffer(sdp) {
    return this.run('answer', async () => {
      const prev = this.pc.remoteDescription;
      if (prev && fingerprint(prev.sdp) !== fingerprint(sdp)) {
        // The stranger starts over with a new connection: so do we.
        this.rebuild();
      }
      const pc = this.pc;
      await pc.setRemoteDescription({ type: 'offer', sdp });
      await this.flushCandidates();
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      this.send({ type: 'answer', room: this.room, sdp: pc.localDescription.sdp });
    });
  }

  handleAnswer(sdp) {
    return this.run('set answer', async () => {
      const pc = this.pc;
      if (pc.signalingState !== 'have-local-offer') {
        console.warn('duet: answer while', pc.signalingState, '(ignored)');
        return;
      }
      try {
        await pc.setRemoteDescription({ type: 'answer', sdp });
      } catch (err) {
        // The stranger's connection changed under us: start a fresh one.
        console.warn('duet: answer rejected, rebuilding the connection', err);
        this.rebuild();
        const fresh = this.pc;
        const offer = await fresh.createOffer();
        await fresh.setLocalDescription(offer);
        this.send({ type: 'offer', room: this.room, sdp: fresh.localDescription.sdp });
        return;
      }
      await this.flushCandidates();
    });
  }

  handleCandidate(candidate) {
    // Candidates wait in order behind any offer/answer being applied.
    return this.run('candidate', async () => {
      if (!this.pc.remoteDescription) {
        this.pending.push(candidate);
        return;
      }
      await this.addCandidate(candidate);
    });
  }

  async flushCandidates() {
    const list = this.pending;
    this.pending = [];
    for (const c of list) await this.addCandidate(c);
  }

  async addCandidate(candidate) {
    try {
      if (candidate) await this.pc.addIceCandidate(candidate);
      else await this.pc.addIceCandidate();
    } catch (err) {
      // Stale candidates of an earlier ICE generation land here; harmless.
      if (candidate) console.debug('duet: candidate ignored', err && err.message);
    }
  }

  rebuild() {
    const old = this.pc;
    clearInterval(this.pathTimer);
    this.pathTimer = 0;
    this.onPath('');
    this.build();
    try { old.close(); } catch { /* closed already */ }
  }

  // watchPath labels the selected candidate pair now and every few seconds
  // (an ICE restart may move the call between direct and relayed).
  watchPath() {
    this.updatePath();
    if (!this.pathTimer) this.pathTimer = setInterval(() => this.updatePath(), 4000);
  }

  async updatePath() {
    const pc = this.pc;
    if (this.closed || !pc) return;
    if (this.leg === 'sfu') {
      if (pc.connectionState === 'connected') this.onPath('Relay via server');
      return;
    }
    let label = '';
    for (let i = 0; i < 3 && !label; i++) {
      label = await pathOf(pc);
      if (!label) await sleep(300);
    }
    if (pc === this.pc && !this.closed && pc.connectionState === 'connected') this.onPath(label);
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.p2pTimer);
    clearInterval(this.pathTimer);
    this.pathTimer = 0;
    const pc = this.pc;
    pc.ontrack = pc.onicecandidate = pc.onconnectionstatechange = null;
    try { pc.close(); } catch { /* closed already */ }
  }
}

// pathOf reads the selected candidate pair: any relay end means TURN.
export async function pathOf(pc) {
  let stats;
  try {
    stats = await pc.getStats();
  } catch {
    return '';
  }
  let pair = null;
  stats.forEach((r) => {
    if (r.type === 'transport' && r.selectedCandidatePairId) pair = stats.get(r.selectedCandidatePairId) || pair;
  });
  if (!pair) {
    stats.forEach((r) => {
      if (r.type === 'candidate-pair' && r.state === 'succeeded' && (r.selected || r.nominated) && !pair) pair = r;
    });
  }
  if (!pair) return '';
  const local = stats.get(pair.localCandidateId);
  const remote = stats.get(pair.remoteCandidateId);
  if (!local || !remote) return '';
  const types = [local.candidateType, remote.candidateType];
  return types.includes('relay') ? 'Relay via TURN' : 'Direct';
}
