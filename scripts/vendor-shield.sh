#!/usr/bin/env bash
# vendor-shield.sh: fetch the nudity shield's model and runtime from npm
# at pinned versions and copy the few files the page needs, with their
# licences, into web/static/vendor/shield/, where they are committed and
# embedded in the binary (nothing is built or downloaded for `make run`).
#
#   scripts/vendor-shield.sh          fetch, verify, copy, write MANIFEST
#   scripts/vendor-shield.sh --check  verify the committed files only
#
# Each tarball must match the integrity pinned here (npm's dist.integrity,
# sha512) before anything is taken from it; every vendored file is
# byte-identical to its file in the tarball, and MANIFEST records its
# sha256 and where it came from (web/vendor_test.go checks the embedded
# copies against it).
set -euo pipefail

cd "$(dirname "$0")/.."
DEST=web/static/vendor/shield

# package@version  dist.integrity
PACKAGES=(
	"nsfwjs@4.4.0 sha512-krC1fgeTLXtZwgdpKJ0jm7hqv0gTSRQQRL+FhOaxaJ9Wj92t42BO3csO2odwgTAgZgf2RvkwPtp0R8Aa7dc+MA=="
	"@tensorflow/tfjs@4.22.0 sha512-0TrIrXs6/b7FLhLVNmfh8Sah6JgjBPH4mZ8JGb7NU6WW+cx00qK5BcAZxw7NCzxj6N8MRAIfHq+oNbPUNG5VAg=="
	"@tensorflow/tfjs-backend-wasm@4.22.0 sha512-/IYhReRIp4jg/wYW0OwbbJZG8ON87mbz0PgkiP3CdcACRSvUN0h8rvC0O3YcDtkTQtFWF/tcXq/KlVDyV49wmA=="
)

# vendored name  package@version  path in the tarball
FILES=(
	# MobileNetV2 (uint8-quantized, 224 px input): nsfwjs's smallest model,
	# shipped as scripts that set globals `model` and `group1_shard1of1`.
	"nsfwjs-mobilenet_v2-model.min.js nsfwjs@4.4.0 package/dist/models/mobilenet_v2/model.min.js"
	"nsfwjs-mobilenet_v2-group1-shard1of1.min.js nsfwjs@4.4.0 package/dist/models/mobilenet_v2/group1-shard1of1.min.js"
	"LICENSE-nsfwjs nsfwjs@4.4.0 package/LICENSE"
	# The TensorFlow.js runtime (core, layers, CPU backend) as one script.
	"tf.min.js @tensorflow/tfjs@4.22.0 package/dist/tf.min.js"
	# Its WebAssembly backend (SIMD build): several times faster than the
	# CPU backend, and it needs no GPU, so it behaves the same everywhere.
	"tf-backend-wasm.min.js @tensorflow/tfjs-backend-wasm@4.22.0 package/dist/tf-backend-wasm.min.js"
	"tfjs-backend-wasm-simd.wasm @tensorflow/tfjs-backend-wasm@4.22.0 package/dist/tfjs-backend-wasm-simd.wasm"
)

check() {
	(cd "$DEST" && awk '!/^#/ && NF {print $1 "  " $2}' MANIFEST | sha256sum --quiet -c -)
	local listed actual
	listed=$(awk '!/^#/ && NF {print $2}' "$DEST/MANIFEST" | sort)
	actual=$(cd "$DEST" && find . -type f ! -name MANIFEST | sed 's|^\./||' | sort)
	if [ "$listed" != "$actual" ]; then
		echo "vendor-shield: files in $DEST differ from MANIFEST" >&2
		diff <(echo "$listed") <(echo "$actual") >&2 || true
		exit 1
	fi
	echo "vendor-shield: $DEST matches MANIFEST"
}

if [ "${1:-}" = "--check" ]; then
	check
	exit 0
fi

command -v npm >/dev/null || { echo "vendor-shield: npm is needed (apt-get install npm)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

declare -A dir
for entry in "${PACKAGES[@]}"; do
	read -r spec want <<<"$entry"
	tgz=$(cd "$work" && npm pack --silent "$spec" | tail -n1)
	got="sha512-$(openssl dgst -sha512 -binary "$work/$tgz" | base64 -w0)"
	if [ "$got" != "$want" ]; then
		echo "vendor-shield: $spec: integrity $got, pinned $want" >&2
		exit 1
	fi
	d="$work/x-${tgz%.tgz}"
	mkdir -p "$d"
	tar -xzf "$work/$tgz" -C "$d"
	dir[$spec]=$d
	echo "vendor-shield: $spec verified ($want)"
done

rm -rf "$DEST"
mkdir -p "$DEST"
{
	echo "# sha256  file  source (npm package@version:path), written by scripts/vendor-shield.sh"
	for entry in "${FILES[@]}"; do
		read -r name spec src <<<"$entry"
		install -m 0644 "${dir[$spec]}/$src" "$DEST/$name"
		echo "$(sha256sum "$DEST/$name" | cut -d' ' -f1)  $name  $spec:$src"
	done
	# The tfjs packages ship no LICENSE file; each script's header names
	# Apache-2.0, whose text Debian keeps.
	install -m 0644 /usr/share/common-licenses/Apache-2.0 "$DEST/LICENSE-tfjs"
	echo "$(sha256sum "$DEST/LICENSE-tfjs" | cut -d' ' -f1)  LICENSE-tfjs  Apache-2.0 (named in the headers of tf.min.js and tf-backend-wasm.min.js)"
} >"$DEST/MANIFEST.tmp"
mv "$DEST/MANIFEST.tmp" "$DEST/MANIFEST"
check
du -cb "$DEST"/* | tail -n1 | awk '{printf "vendor-shield: %d bytes in %s\n", $1, "'"$DEST"'"}'
