package web

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"testing"
)

// TestVendoredFaceModel: what the binary embeds under vendor/face is
// exactly what scripts/vendor-face.sh checked and recorded in SHA256SUMS:
// every listed file is there with its hash, and nothing unlisted is.
func TestVendoredFaceModel(t *testing.T) {
	checkVendored(t, "static/vendor/face")
	for _, p := range []string{"/vendor/face/face-api.esm.js", "/vendor/face/tiny_face_detector_model.bin", "/face-worker.js"} {
		res, _ := get(t, p)
		if res.StatusCode != http.StatusOK {
			t.Errorf("GET %s = %d", p, res.StatusCode)
		}
	}
	if res, _ := get(t, "/vendor/face/face-api.esm.js"); !strings.HasPrefix(res.Header.Get("Content-Type"), "text/javascript") {
		t.Errorf("the vendored module is served as %q: browsers refuse it", res.Header.Get("Content-Type"))
	}
}

func checkVendored(t *testing.T, dir string) {
	t.Helper()
	sums, err := fs.ReadFile(files, path.Join(dir, "SHA256SUMS"))
	if err != nil {
		t.Fatalf("manifest: %v", err)
	}
	listed := map[string]bool{"SHA256SUMS": true}
	sc := bufio.NewScanner(bytes.NewReader(sums))
	for n := 1; sc.Scan(); n++ {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok || len(sum) != 64 || name == "" || strings.Contains(name, "/") {
			t.Fatalf("SHA256SUMS line %d: %q is not `<sha256>  <file>`", n, sc.Text())
		}
		listed[name] = true
		data, err := fs.ReadFile(files, path.Join(dir, name))
		if err != nil {
			t.Errorf("%s is listed but not embedded: %v", name, err)
			continue
		}
		got := sha256.Sum256(data)
		if hex.EncodeToString(got[:]) != sum {
			t.Errorf("%s: sha256 %x, SHA256SUMS says %s", name, got, sum)
		}
	}
	if len(listed) < 2 {
		t.Fatal("SHA256SUMS lists no file")
	}
	entries, err := fs.ReadDir(files, dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !listed[e.Name()] {
			t.Errorf("%s/%s is embedded but not in SHA256SUMS", dir, e.Name())
		}
	}
}
