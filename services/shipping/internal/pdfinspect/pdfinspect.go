// Package pdfinspect reads back the text and the images of the PDFs this
// service renders, so tests check what a printer would print rather than
// trusting the renderer. It understands exactly what fpdf writes (one
// object per "N 0 obj", a direct /Length, Flate streams, PNG-predicted
// grayscale images), not arbitrary PDFs.
package pdfinspect

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/png"
	"io"
	"regexp"
	"strconv"
	"testing"
)

var (
	objStart = regexp.MustCompile(`(?m)^\d+ 0 obj`)
	lengthRe = regexp.MustCompile(`/Length (\d+)`)
	widthRe  = regexp.MustCompile(`/Width (\d+)`)
	heightRe = regexp.MustCompile(`/Height (\d+)`)
)

type stream struct {
	dict []byte
	data []byte // decompressed when the dictionary says FlateDecode
	raw  []byte
}

func streams(t testing.TB, pdf []byte) []stream {
	t.Helper()
	var out []stream
	locs := objStart.FindAllIndex(pdf, -1)
	for i, loc := range locs {
		end := len(pdf)
		if i+1 < len(locs) {
			end = locs[i+1][0]
		}
		obj := pdf[loc[0]:end]
		at := bytes.Index(obj, []byte("stream\n"))
		if at < 0 {
			continue
		}
		dict := obj[:at]
		m := lengthRe.FindSubmatch(dict)
		if m == nil {
			t.Fatalf("pdfinspect: stream without a direct /Length: %q", dict)
		}
		n, _ := strconv.Atoi(string(m[1]))
		start := at + len("stream\n")
		if start+n > len(obj) {
			t.Fatalf("pdfinspect: stream /Length %d runs past its object", n)
		}
		s := stream{dict: dict, raw: obj[start : start+n], data: obj[start : start+n]}
		if bytes.Contains(dict, []byte("/FlateDecode")) {
			zr, err := zlib.NewReader(bytes.NewReader(s.raw))
			if err != nil {
				t.Fatalf("pdfinspect: inflate: %v", err)
			}
			s.data, err = io.ReadAll(zr)
			if err != nil {
				t.Fatalf("pdfinspect: inflate: %v", err)
			}
		}
		out = append(out, s)
	}
	return out
}

// Text returns every non-image stream of pdf, decompressed and joined:
// the page content, where strings appear as "(text) Tj" in the font's
// single-byte encoding.
func Text(t testing.TB, pdf []byte) []byte {
	t.Helper()
	var all []byte
	for _, s := range streams(t, pdf) {
		if !bytes.Contains(s.dict, []byte("/Subtype /Image")) {
			all = append(all, s.data...)
			all = append(all, '\n')
		}
	}
	return all
}

// Images decodes the 8-bit grayscale images embedded in pdf, in order.
// fpdf embeds a PNG's IDAT data unchanged (Flate with PNG predictors), so
// the image is rebuilt as a PNG file around it and decoded as one.
func Images(t testing.TB, pdf []byte) []image.Image {
	t.Helper()
	var out []image.Image
	for _, s := range streams(t, pdf) {
		if !bytes.Contains(s.dict, []byte("/Subtype /Image")) {
			continue
		}
		if !bytes.Contains(s.dict, []byte("/DeviceGray")) || !bytes.Contains(s.dict, []byte("/BitsPerComponent 8")) {
			t.Fatalf("pdfinspect: only 8-bit grayscale images are supported: %q", s.dict)
		}
		w, _ := strconv.Atoi(string(widthRe.FindSubmatch(s.dict)[1]))
		h, _ := strconv.Atoi(string(heightRe.FindSubmatch(s.dict)[1]))
		var file bytes.Buffer
		file.WriteString("\x89PNG\r\n\x1a\n")
		ihdr := make([]byte, 13)
		binary.BigEndian.PutUint32(ihdr[0:], uint32(w))
		binary.BigEndian.PutUint32(ihdr[4:], uint32(h))
		ihdr[8], ihdr[9] = 8, 0 // 8 bits, grayscale
		chunk(&file, "IHDR", ihdr)
		chunk(&file, "IDAT", s.raw)
		chunk(&file, "IEND", nil)
		img, err := png.Decode(&file)
		if err != nil {
			t.Fatalf("pdfinspect: embedded image does not decode: %v", err)
		}
		out = append(out, img)
	}
	return out
}

func chunk(w *bytes.Buffer, typ string, data []byte) {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(data)))
	w.Write(n[:])
	crc := crc32.NewIEEE()
	crc.Write([]byte(typ))
	crc.Write(data)
	w.WriteString(typ)
	w.Write(data)
	binary.BigEndian.PutUint32(n[:], crc.Sum32())
	w.Write(n[:])
}
