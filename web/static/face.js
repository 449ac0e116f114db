// Optional face presence check (signal.face_check): the browser looks for
// a face in its own camera before a video queue. Everything runs here,
// with the browser's built-in FaceDetector (Shape Detection API); no model
// is downloaded and no image leaves the page. Only the yes/no is sent, as
// queue.face. Where the browser has no detector the check is skipped and
// the page says so plainly.

const LOOK_MS = 3000;  // how long to look for a face
const EVERY_MS = 250;  // one frame this often

// checkFace resolves to {available: false} when this browser cannot
// detect faces, else {available: true, face: bool}.
export async function checkFace(stream) {
  if (typeof window.FaceDetector !== 'function' || !stream) return { available: false };
  let detector;
  try {
    detector = new window.FaceDetector({ fastMode: true, maxDetectedFaces: 1 });
  } catch {
    return { available: false };
  }
  const video = document.createElement('video');
  video.muted = true;
  video.playsInline = true;
  video.srcObject = stream;
  try {
    await video.play();
    const until = Date.now() + LOOK_MS;
    while (Date.now() < until) {
      if (video.readyState >= 2) {
        const faces = await detector.detect(video);
        if (faces.length > 0) return { available: true, face: true };
      }
      await new Promise((r) => setTimeout(r, EVERY_MS));
    }
    return { available: true, face: false };
  } catch (err) {
    // Chromium on Linux has the API but no backend: NotSupportedError.
    console.info('duet: face detector unusable', err && err.name);
    return { available: false };
  } finally {
    video.pause();
    video.srcObject = null;
  }
}
