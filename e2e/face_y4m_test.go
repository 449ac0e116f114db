package e2e

import (
	"bufio"
	"fmt"
	"image"
	"image/color"
	_ "image/jpeg" // the committed face picture
	"io"
	"os"
	"path/filepath"
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
