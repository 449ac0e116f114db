#!/usr/bin/env bash
# Vendors the face check's model and runtime into web/static/vendor/face/
# from npm, at a pinned version, and checks them twice: the tarball against
# the integrity npm published for it (pinned here too), then every copied
# file against the committed SHA256SUMS. The files are committed and
# embedded in the binary, so `make run` needs neither npm nor a network;
# run this only to re-vendor or to audit what is committed.
#
#   scripts/vendor-face.sh           fetch, check, copy; fail on any mismatch
#   scripts/vendor-face.sh --write   same, then (re)write SHA256SUMS (new pin)
#
# Why @vladmandic/face-api's tiny face detector: its package ships the
# model (190 KB) and one ES module with TensorFlow.js inside (1.3 MB);
# @mediapipe/tasks-vision ships a 12-13 MB wasm and no face model at all.
set -euo pipefail

# package@version and the integrity npm publishes for its tarball
PACKAGES=(
  "@vladmandic/face-api@1.7.15 sha512-WDMmK3CfNLo8jylWqMoQgf4nIst3M0fzx1dnac96wv/dvMTN4DxC/Pq1DGtduDk1lktCamQ3MIDXFnvrdHTXDw=="
  # face-api bundles TensorFlow.js 4.22.0 with its wasm backend's code but
  # not its binary: the SIMD build, the backend the face worker prefers
  # (measured in a worker in headless Chromium: 22 ms a frame, median,
  # where TensorFlow.js's plain-JS backend takes over 600 ms).
  "@tensorflow/tfjs-backend-wasm@4.22.0 sha512-/IYhReRIp4jg/wYW0OwbbJZG8ON87mbz0PgkiP3CdcACRSvUN0h8rvC0O3YcDtkTQtFWF/tcXq/KlVDyV49wmA=="
)
# package@version:path in its tarball:vendored name
FILES=(
  "@vladmandic/face-api@1.7.15:dist/face-api.esm.js:face-api.esm.js"
  "@vladmandic/face-api@1.7.15:model/tiny_face_detector_model-weights_manifest.json:tiny_face_detector_model-weights_manifest.json"
  "@vladmandic/face-api@1.7.15:model/tiny_face_detector_model.bin:tiny_face_detector_model.bin"
  "@vladmandic/face-api@1.7.15:LICENSE:LICENSE-face-api"
  "@tensorflow/tfjs-backend-wasm@4.22.0:dist/tfjs-backend-wasm-simd.wasm:tfjs-backend-wasm-simd.wasm"
)

root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/web/static/vendor/face"
write=0
case "${1:-}" in
  --write) write=1 ;;
  "") ;;
  *) echo "usage: $0 [--write]" >&2; exit 2 ;;
esac

for tool in npm node tar sha256sum; do
  command -v "$tool" >/dev/null || { echo "vendor-face: $tool is needed" >&2; exit 1; }
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

mkdir -p "$dest"
for entry in "${PACKAGES[@]}"; do
  spec=${entry%% *}
  want=${entry#* }
  dir="$tmp/$(echo "$spec" | tr '/@' '__')"
  mkdir -p "$dir"
  published=$(npm view "$spec" dist.integrity)
  if [ "$published" != "$want" ]; then
    echo "vendor-face: npm now publishes $published for $spec, pinned $want" >&2
    exit 1
  fi
  (cd "$dir" && npm pack --silent "$spec" >/dev/null)
  got=$(node -e 'const c=require("crypto"),f=require("fs");process.stdout.write("sha512-"+c.createHash("sha512").update(f.readFileSync(process.argv[1])).digest("base64"))' "$dir"/*.tgz)
  if [ "$got" != "$want" ]; then
    echo "vendor-face: $spec tarball integrity $got, want $want" >&2
    exit 1
  fi
  tar -xzf "$dir"/*.tgz -C "$dir"
  for f in "${FILES[@]}"; do
    [ "${f%%:*}" = "$spec" ] || continue
    rest=${f#*:}
    install -m 0644 "$dir/package/${rest%%:*}" "$dest/${rest#*:}"
  done
done
# TensorFlow.js (inside face-api.esm.js, and the wasm) ships no LICENSE
# file; its headers name Apache-2.0, whose text Debian keeps.
install -m 0644 /usr/share/common-licenses/Apache-2.0 "$dest/LICENSE-tfjs"

cd "$dest"
if [ "$write" = 1 ]; then
  { for f in "${FILES[@]}"; do sha256sum "${f##*:}"; done; sha256sum LICENSE-tfjs; } >SHA256SUMS
  echo "vendor-face: wrote $dest/SHA256SUMS"
fi
sha256sum --quiet -c SHA256SUMS
echo "vendor-face: ${#FILES[@]} files checked in web/static/vendor/face ($(du -sh --exclude=SHA256SUMS . | cut -f1))"
