// The local camera and microphone: opened once per visit and kept across
// strangers (Next never stops the tracks; leaving the page does).

import { el, showLocal, setToggle } from './ui.js';

let stream = null;
let opening = null;

export function localStream() {
  return stream;
}

// openCamera asks for camera and microphone once; later calls reuse them.
export async function openCamera() {
  if (stream) return stream;
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new Error('this browser cannot use a camera here (HTTPS is needed)');
  }
  if (!opening) {
    opening = navigator.mediaDevices.getUserMedia({ video: true, audio: true })
      .finally(() => { opening = null; });
  }
  const s = await opening;
  if (!stream) {
    stream = s;
    showLocal(s);
    syncToggles();
  }
  return stream;
}

// cameraProblem words a getUserMedia failure for people.
export function cameraProblem(err) {
  const name = err && err.name;
  if (name === 'NotAllowedError' || name === 'SecurityError') return 'permission was denied';
  if (name === 'NotFoundError' || name === 'OverconstrainedError') return 'no camera or microphone was found';
  if (name === 'NotReadableError') return 'the camera is in use by another app';
  return (err && err.message) || 'it is not available';
}

function syncToggles() {
  const cam = stream && stream.getVideoTracks()[0];
  const mic = stream && stream.getAudioTracks()[0];
  setToggle(el.toggleCam, !!cam && cam.enabled, 'Camera');
  setToggle(el.toggleMic, !!mic && mic.enabled, 'Mic');
}

// toggle flips track.enabled for "video" or "audio" (the stranger gets
// black frames or silence; nothing is renegotiated).
export function toggle(kind) {
  if (!stream) return;
  const tracks = kind === 'video' ? stream.getVideoTracks() : stream.getAudioTracks();
  if (!tracks.length) return;
  const on = !tracks[0].enabled;
  for (const t of tracks) t.enabled = on;
  syncToggles();
}

export function stopCamera() {
  if (!stream) return;
  for (const t of stream.getTracks()) t.stop();
}
