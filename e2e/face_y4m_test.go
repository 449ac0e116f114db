package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"image"
	"image/color"
	_ "image/jpeg" // the committed face picture
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// facePicture is a public-domain photograph with one face in it
// (testdata/face/README.md says where it comes from).
const facePicture = "testdata/face/astronaut.jpg"

// faceCamera writes the face picture, scaled by scale, as the Y4M file
// Chromium's --use-file-for-fake-video-capture plays in a loop, and returns
// the browser flag that makes it the fake camera.
func faceCamera(t *testing.T, scale int) chromedp.ExecAllocatorOption {
	t.Helper()
	f, err := os.Open(facePicture)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, _, err := image.Decode(f)
	if err != nil {
		t.Fatalf("decoding %s: %v", facePicture, err)
	}
	path := filepath.Join(t.TempDir(), "face.y4m")
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(out)
	if err := writeY4M(w, img, scale, 2); err != nil {
		t.Fatalf("writing %s: %v", path, err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return chromedp.Flag("use-file-for-fake-video-capture", path)
}

// writeY4M writes frames copies of img, each pixel repeated scale times
// both ways, as YUV4MPEG2 with 4:2:0 full-range (JPEG) chroma.
func writeY4M(w io.Writer, img image.Image, scale, frames int) error {
	b := img.Bounds()
	width, height := b.Dx()*scale&^1, b.Dy()*scale&^1
	if width == 0 || height == 0 {
		return fmt.Errorf("empty picture %v", b)
	}
	ys := make([]byte, width*height)
	cb := make([]byte, width*height/4)
	cr := make([]byte, width*height/4)
	at := func(x, y int) (uint8, uint8, uint8) {
		c := color.YCbCrModel.Convert(img.At(b.Min.X+x/scale, b.Min.Y+y/scale)).(color.YCbCr)
		return c.Y, c.Cb, c.Cr
	}
	for y := 0; y < height; y += 2 {
		for x := 0; x < width; x += 2 {
			var sumB, sumR int
			for _, d := range [4][2]int{{0, 0}, {1, 0}, {0, 1}, {1, 1}} {
				yy, u, v := at(x+d[0], y+d[1])
				ys[(y+d[1])*width+x+d[0]] = yy
				sumB += int(u)
				sumR += int(v)
			}
			cb[(y/2)*(width/2)+x/2] = uint8((sumB + 2) / 4)
			cr[(y/2)*(width/2)+x/2] = uint8((sumR + 2) / 4)
		}
	}
	if _, err := fmt.Fprintf(w, "YUV4MPEG2 W%d H%d F30:1 Ip A1:1 C420jpeg\n", width, height); err != nil {
		return err
	}
	for i := 0; i < frames; i++ {
		for _, part := range [][]byte{[]byte("FRAME\n"), ys, cb, cr} {
			if _, err := w.Write(part); err != nil {
				return err
			}
		}
	}
	return nil
}

// TestWriteY4M: the header Chromium parses, whole 4:2:0 frames, and
// colours that survive the conversion (pure red at full-range BT.601).
func TestWriteY4M(t *testing.T) {
	img := image.NewRGBA(image.Rect(0, 0, 3, 2))
	for y := 0; y < 2; y++ {
		for x := 0; x < 3; x++ {
			img.Set(x, y, color.RGBA{255, 0, 0, 255})
		}
	}
	for _, tc := range []struct {
		scale, frames int
		header        string
	}{
		{1, 1, "YUV4MPEG2 W2 H2 F30:1 Ip A1:1 C420jpeg\n"}, // odd width rounds down
		{2, 3, "YUV4MPEG2 W6 H4 F30:1 Ip A1:1 C420jpeg\n"},
	} {
		var buf bytes.Buffer
		if err := writeY4M(&buf, img, tc.scale, tc.frames); err != nil {
			t.Fatal(err)
		}
		out := buf.String()
		if !strings.HasPrefix(out, tc.header) {
			t.Fatalf("scale %d: header %q, want %q", tc.scale, out[:min(len(out), len(tc.header))], tc.header)
		}
		var w, h int
		fmt.Sscanf(tc.header, "YUV4MPEG2 W%d H%d", &w, &h)
		frame := len("FRAME\n") + w*h*3/2
		if got := len(out) - len(tc.header); got != tc.frames*frame {
			t.Fatalf("scale %d: %d bytes of frames, want %d frames of %d", tc.scale, got, tc.frames, frame)
		}
		body := out[len(tc.header)+len("FRAME\n"):]
		wantY, wantCb, wantCr := color.RGBToYCbCr(255, 0, 0)
		if body[0] != wantY || body[w*h] != wantCb || body[w*h+w*h/4] != wantCr {
			t.Fatalf("scale %d: red became Y %d Cb %d Cr %d, want %d %d %d", tc.scale, body[0], body[w*h], body[w*h+w*h/4], wantY, wantCb, wantCr)
		}
	}
	if err := writeY4M(io.Discard, image.NewRGBA(image.Rect(0, 0, 1, 1)), 1, 1); err == nil {
		t.Fatal("a 1x1 picture (no whole 4:2:0 block) was written")
	}
}
