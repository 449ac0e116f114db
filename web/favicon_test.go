package web

import (
	"bytes"
	"encoding/binary"
	"image/png"
	"net/http"
	"strings"
	"testing"
)

// TestFavicon: /favicon.ico (which browsers ask for unprompted) and the
// SVG the page links are served as images; the ICO holds the PNGs its
// directory promises, at the sizes it names.
func TestFavicon(t *testing.T) {
	res, body := get(t, "/favicon.ico")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /favicon.ico = %d", res.StatusCode)
	}
	if ct := res.Header.Get("Content-Type"); ct != "image/x-icon" {
		t.Errorf("GET /favicon.ico Content-Type = %q", ct)
	}
	ico := []byte(body)
	if len(ico) < 6 || binary.LittleEndian.Uint16(ico[0:]) != 0 || binary.LittleEndian.Uint16(ico[2:]) != 1 {
		t.Fatalf("/favicon.ico has no ICO header: % x", ico[:min(len(ico), 6)])
	}
	n := int(binary.LittleEndian.Uint16(ico[4:]))
	if n == 0 || len(ico) < 6+16*n {
		t.Fatalf("/favicon.ico: %d images in %d bytes", n, len(ico))
	}
	for i := range n {
		e := ico[6+16*i:]
		w := int(e[0])
		size, off := binary.LittleEndian.Uint32(e[8:]), binary.LittleEndian.Uint32(e[12:])
		if uint64(off)+uint64(size) > uint64(len(ico)) {
			t.Fatalf("image %d: %d bytes at %d past the end (%d)", i, size, off, len(ico))
		}
		img, err := png.Decode(bytes.NewReader(ico[off : off+size]))
		if err != nil {
			t.Fatalf("image %d: %v", i, err)
		}
		if b := img.Bounds(); b.Dx() != w || b.Dy() != int(e[1]) {
			t.Errorf("image %d is %v, the directory says %dx%d", i, b.Size(), w, e[1])
		}
	}

	res, body = get(t, "/favicon.svg")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /favicon.svg = %d", res.StatusCode)
	}
	if ct := res.Header.Get("Content-Type"); ct != "image/svg+xml" {
		t.Errorf("GET /favicon.svg Content-Type = %q", ct)
	}
	if !strings.HasPrefix(body, "<svg ") {
		t.Errorf("/favicon.svg does not start with <svg: %.40q", body)
	}
	if _, index := get(t, "/"); !strings.Contains(index, `href="/favicon.svg"`) {
		t.Error("the page does not link /favicon.svg")
	}
}
