package web

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"net/http"
	"sort"
	"strings"
	"testing"
)

// TestShieldVendorManifest: what the binary embeds under vendor/shield is
// exactly what scripts/vendor-shield.sh verified and listed in MANIFEST
// (no file edited by hand, none missing, none extra), and the page gets
// each with a type a browser accepts.
func TestShieldVendorManifest(t *testing.T) {
	const dir = "static/vendor/shield"
	manifest, err := fs.ReadFile(files, dir+"/MANIFEST")
	if err != nil {
		t.Fatalf("MANIFEST not embedded: %v", err)
	}
	listed := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(manifest)))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 3 || len(f[0]) != 64 {
			t.Fatalf("MANIFEST line %d malformed: %q", n, line)
		}
		listed[f[1]] = f[0]
	}
	var embedded []string
	err = fs.WalkDir(files, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		name := strings.TrimPrefix(p, dir+"/")
		if name != "MANIFEST" {
			embedded = append(embedded, name)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(embedded)
	if len(embedded) != len(listed) {
		t.Errorf("embedded %v, MANIFEST lists %d files", embedded, len(listed))
	}
	for _, name := range embedded {
		want, ok := listed[name]
		if !ok {
			t.Errorf("%s is embedded but not in MANIFEST", name)
			continue
		}
		b, err := fs.ReadFile(files, dir+"/"+name)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		if got := hex.EncodeToString(sum[:]); got != want {
			t.Errorf("%s: sha256 %s, MANIFEST says %s", name, got, want)
		}
	}

	for path, ct := range map[string]string{
		"/vendor/shield/tf.min.js":                   "text/javascript",
		"/vendor/shield/tfjs-backend-wasm-simd.wasm": "application/wasm",
		"/shield-worker.js":                          "text/javascript",
	} {
		res, _ := get(t, path)
		if res.StatusCode != http.StatusOK || !strings.HasPrefix(res.Header.Get("Content-Type"), ct) {
			t.Errorf("GET %s = %d %q, want 200 %s", path, res.StatusCode, res.Header.Get("Content-Type"), ct)
		}
	}
}
