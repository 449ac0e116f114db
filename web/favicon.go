//go:build ignore

// favicon.go draws duet's mark, two overlapping circles on the page's dark
// background, and writes it as static/favicon.svg and static/favicon.ico
// (16, 32 and 48 pixel PNGs in one ICO). The artwork is this file; run it
// from web/ after changing it:
//
//	go run favicon.go
package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"log"
	"math"
	"os"
)

// The mark on a 32-unit square, in the colours of style.css (--bg,
// --accent, --ok).
var (
	bg     = color.NRGBA{0x11, 0x14, 0x18, 0xff}
	left   = color.NRGBA{0x4f, 0x8c, 0xff, 0xff}
	right  = color.NRGBA{0x3f, 0xb9, 0x70, 0xff}
	radius = 7.5 // of each circle
	corner = 7.0 // of the background square
	cy     = 16.0
	cxL    = 11.5
	cxR    = 20.5
	alphaR = 0.85 // the right circle lets the left show through
)

const svg = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">
<rect width="32" height="32" rx="%g" fill="#111418"/>
<circle cx="%g" cy="%g" r="%g" fill="#4f8cff"/>
<circle cx="%g" cy="%g" r="%g" fill="#3fb970" fill-opacity="%g"/>
</svg>
`

func main() {
	s := fmt.Sprintf(svg, corner, cxL, cy, radius, cxR, cy, radius, alphaR)
	if err := os.WriteFile("static/favicon.svg", []byte(s), 0o644); err != nil {
		log.Fatal(err)
	}
	var pngs [][]byte
	sizes := []int{16, 32, 48}
	for _, size := range sizes {
		var b bytes.Buffer
		if err := png.Encode(&b, draw(size)); err != nil {
			log.Fatal(err)
		}
		pngs = append(pngs, b.Bytes())
	}
	if err := os.WriteFile("static/favicon.ico", ico(sizes, pngs), 0o644); err != nil {
		log.Fatal(err)
	}
}

// draw renders the mark at size×size, 8×8 samples a pixel.
func draw(size int) image.Image {
	const ss = 8
	img := image.NewNRGBA(image.Rect(0, 0, size, size))
	scale := 32 / float64(size)
	for py := range size {
		for px := range size {
			var r, g, b, a float64
			for sy := range ss {
				for sx := range ss {
					x := (float64(px) + (float64(sx)+0.5)/ss) * scale
					y := (float64(py) + (float64(sy)+0.5)/ss) * scale
					c, ca := sample(x, y)
					r += float64(c.R) * ca
					g += float64(c.G) * ca
					b += float64(c.B) * ca
					a += ca
				}
			}
			if a == 0 {
				continue
			}
			img.SetNRGBA(px, py, color.NRGBA{
				R: uint8(math.Round(r / a)), G: uint8(math.Round(g / a)), B: uint8(math.Round(b / a)),
				A: uint8(math.Round(255 * a / (ss * ss))),
			})
		}
	}
	return img
}

// sample is the mark's colour and coverage (0 or 1) at x, y.
func sample(x, y float64) (color.NRGBA, float64) {
	if !inRoundedSquare(x, y) {
		return color.NRGBA{}, 0
	}
	c := bg
	if math.Hypot(x-cxL, y-cy) <= radius {
		c = left
	}
	if math.Hypot(x-cxR, y-cy) <= radius {
		c = mix(c, right, alphaR)
	}
	return c, 1
}

func inRoundedSquare(x, y float64) bool {
	dx := math.Max(math.Max(corner-x, x-(32-corner)), 0)
	dy := math.Max(math.Max(corner-y, y-(32-corner)), 0)
	return math.Hypot(dx, dy) <= corner
}

func mix(under, over color.NRGBA, a float64) color.NRGBA {
	m := func(u, o uint8) uint8 { return uint8(math.Round(float64(u)*(1-a) + float64(o)*a)) }
	return color.NRGBA{m(under.R, over.R), m(under.G, over.G), m(under.B, over.B), 0xff}
}

// ico packs PNG images into an ICO file: a 6-byte header, a 16-byte
// directory entry per image, then the images.
func ico(sizes []int, pngs [][]byte) []byte {
	var b bytes.Buffer
	le := func(v any) { _ = binary.Write(&b, binary.LittleEndian, v) }
	le(uint16(0))         // reserved
	le(uint16(1))         // type: icon
	le(uint16(len(pngs))) // count
	offset := 6 + 16*len(pngs)
	for i, p := range pngs {
		b.WriteByte(byte(sizes[i])) // width (0 would mean 256)
		b.WriteByte(byte(sizes[i])) // height
		b.WriteByte(0)              // palette size
		b.WriteByte(0)              // reserved
		le(uint16(1))               // colour planes
		le(uint16(32))              // bits per pixel
		le(uint32(len(p)))
		le(uint32(offset))
		offset += len(p)
	}
	for _, p := range pngs {
		b.Write(p)
	}
	return b.Bytes()
}
