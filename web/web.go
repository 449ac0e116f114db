// Package web serves duet's browser client: static HTML, CSS and ES
// modules embedded in the binary, with no build step.
package web

import (
	"embed"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
)

//go:embed static
var files embed.FS

// contentTypes are fixed here so the answer does not depend on the host's
// MIME database (browsers refuse modules served with a wrong type).
var contentTypes = map[string]string{
	".html":        "text/html; charset=utf-8",
	".js":          "text/javascript; charset=utf-8",
	".css":         "text/css; charset=utf-8",
	".svg":         "image/svg+xml",
	".png":         "image/png",
	".ico":         "image/x-icon",
	".json":        "application/json",
	".webmanifest": "application/manifest+json",
}

// Handler serves the client at /, index.html for / itself. Unknown paths
// are 404; every answer is revalidated (Cache-Control: no-cache).
func Handler() http.Handler {
	root, err := fs.Sub(files, "static")
	if err != nil {
		panic("web: embedded static directory missing: " + err.Error())
	}
	fileServer := http.FileServer(http.FS(root))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		name := path.Clean("/" + r.URL.Path)
		if name == "/index.html" {
			// FileServer would redirect this to /; serve it directly instead.
			name = "/"
		}
		file := strings.TrimPrefix(name, "/")
		if file == "" {
			file = "index.html"
		}
		st, err := fs.Stat(root, file)
		if err != nil || st.IsDir() {
			http.NotFound(w, r)
			return
		}
		ext := path.Ext(file)
		ct, ok := contentTypes[ext]
		if !ok {
			ct = mime.TypeByExtension(ext)
		}
		if ct != "" {
			w.Header().Set("Content-Type", ct)
		}
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if file == "index.html" {
			w.Header().Set("Referrer-Policy", "no-referrer")
		}
		r2 := r.Clone(r.Context())
		r2.URL.Path = name
		fileServer.ServeHTTP(w, r2)
	})
}
