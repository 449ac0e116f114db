package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func get(t *testing.T, path string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	res := rec.Result()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(body)
}

func TestIndex(t *testing.T) {
	res, body := get(t, "/")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET / = %d", res.StatusCode)
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("GET / Content-Type = %q", ct)
	}
	if cc := res.Header.Get("Cache-Control"); cc != "no-cache" {
		t.Errorf("GET / Cache-Control = %q", cc)
	}
	for _, want := range []string{`id="start-video"`, `id="start-text"`, `id="status"`, `src="/app.js"`} {
		if !strings.Contains(body, want) {
			t.Errorf("GET / lacks %s", want)
		}
	}
}

func TestAssets(t *testing.T) {
	for path, want := range map[string]string{
		"/app.js":       "text/javascript",
		"/signaling.js": "text/javascript",
		"/call.js":      "text/javascript",
		"/ui.js":        "text/javascript",
		"/style.css":    "text/css",
	} {
		res, body := get(t, path)
		if res.StatusCode != http.StatusOK {
			t.Errorf("GET %s = %d", path, res.StatusCode)
			continue
		}
		if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, want) {
			t.Errorf("GET %s Content-Type = %q, want %s", path, ct, want)
		}
		if res.Header.Get("Cache-Control") != "no-cache" {
			t.Errorf("GET %s has no Cache-Control: no-cache", path)
		}
		if body == "" {
			t.Errorf("GET %s is empty", path)
		}
	}
}

func TestNotFound(t *testing.T) {
	for _, path := range []string{"/nope.js", "/static/app.js", "/../web.go", "/static/"} {
		if res, _ := get(t, path); res.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", path, res.StatusCode)
		}
	}
}

func TestIndexHTMLPath(t *testing.T) {
	res, body := get(t, "/index.html")
	if res.StatusCode != http.StatusOK || !strings.Contains(body, `id="start-video"`) {
		t.Errorf("GET /index.html = %d", res.StatusCode)
	}
}
