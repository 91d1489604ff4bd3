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
	"unicode/utf16"
)

var (
	objStart = regexp.MustCompile(`(?m)^\d+ 0 obj`)
	lengthRe = regexp.MustCompile(`/Length (\d+)`)
	widthRe  = regexp.MustCompile(`/Width (\d+)`)
	heightRe = regexp.MustCompile(`/Height (\d+)`)
	// A page's content stream; a Type0 font object; a font resource's
	// name and object.
	contentsRe = regexp.MustCompile(`/Contents (\d+) 0 R`)
	type0Re    = regexp.MustCompile(`(?m)^(\d+) 0 obj\s*<</Type /Font\s*/Subtype /Type0`)
	fontRefRe  = regexp.MustCompile(`/(F[0-9a-f]+) (\d+) 0 R`)
)

type stream struct {
	num  int // object number
	dict []byte
	data []byte // decompressed when the dictionary says FlateDecode
	raw  []byte
}

// objects returns pdf's objects in order, each from its "N 0 obj" to the
// next one's (or the end).
func objects(pdf []byte) [][]byte {
	locs := objStart.FindAllIndex(pdf, -1)
	out := make([][]byte, len(locs))
	for i, loc := range locs {
		end := len(pdf)
		if i+1 < len(locs) {
			end = locs[i+1][0]
		}
		out[i] = pdf[loc[0]:end]
	}
	return out
}

func streams(t testing.TB, pdf []byte) []stream {
	t.Helper()
	var out []stream
	for _, obj := range objects(pdf) {
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
		num, _ := strconv.Atoi(string(bytes.Fields(obj)[0]))
		s := stream{num: num, dict: dict, raw: obj[start : start+n], data: obj[start : start+n]}
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

// Text returns the page content of pdf: its content streams,
// decompressed and joined, where strings appear as "(text) Tj". Strings
// shown in a Type0 font (fpdf's UTF-8 fonts, which it writes as UTF-16BE
// code units) are rewritten in UTF-8, keeping PDF's escapes of "(", ")"
// and "\", so a test finds "(Köln)Tj" whatever the font.
func Text(t testing.TB, pdf []byte) []byte {
	t.Helper()
	contents := map[int]bool{}
	for _, m := range contentsRe.FindAllSubmatch(pdf, -1) {
		n, _ := strconv.Atoi(string(m[1]))
		contents[n] = true
	}
	type0 := map[string]bool{} // resource names of Type0 fonts
	objType0 := map[string]bool{}
	for _, m := range type0Re.FindAllSubmatch(pdf, -1) {
		objType0[string(m[1])] = true
	}
	for _, m := range fontRefRe.FindAllSubmatch(pdf, -1) {
		if objType0[string(m[2])] {
			type0[string(m[1])] = true
		}
	}
	var all []byte
	for _, s := range streams(t, pdf) {
		if contents[s.num] {
			all = append(all, utf8Strings(t, s.data, type0)...)
			all = append(all, '\n')
		}
	}
	return all
}

// utf8Strings copies content, rewriting the literal strings shown in a
// font of type0 from UTF-16BE to UTF-8.
func utf8Strings(t testing.TB, content []byte, type0 map[string]bool) []byte {
	t.Helper()
	var out []byte
	font := ""
	for i := 0; i < len(content); i++ {
		c := content[i]
		switch c {
		case '/':
			j := i + 1
			for j < len(content) && content[j] != ' ' && content[j] != '\n' {
				j++
			}
			font = string(content[i+1 : j]) // the last name before a string is its font
			out = append(out, content[i:j]...)
			i = j - 1
		case '(':
			str, end := literal(t, content, i)
			if type0[font] {
				if len(str)%2 != 0 {
					t.Fatalf("pdfinspect: odd-length UTF-16 string %q", str)
				}
				u := make([]uint16, len(str)/2)
				for k := range u {
					u[k] = binary.BigEndian.Uint16(str[2*k:])
				}
				str = []byte(string(utf16.Decode(u)))
			}
			out = append(out, '(')
			for _, b := range str {
				if b == '(' || b == ')' || b == '\\' {
					out = append(out, '\\')
				}
				out = append(out, b)
			}
			out = append(out, ')')
			i = end
		default:
			out = append(out, c)
		}
	}
	return out
}

// literal reads the PDF literal string starting at content[start] ("(")
// and returns its bytes, unescaped, and the index of its closing ")".
func literal(t testing.TB, content []byte, start int) ([]byte, int) {
	t.Helper()
	var b []byte
	depth := 0
	for i := start + 1; i < len(content); i++ {
		switch c := content[i]; c {
		case '\\':
			i++
			if i == len(content) {
				t.Fatalf("pdfinspect: string ends in an escape")
			}
			switch e := content[i]; e {
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			default:
				if e >= '0' && e <= '7' {
					v, k := 0, 0
					for ; k < 3 && i+k < len(content) && content[i+k] >= '0' && content[i+k] <= '7'; k++ {
						v = v*8 + int(content[i+k]-'0')
					}
					b = append(b, byte(v))
					i += k - 1
					continue
				}
				b = append(b, e) // \( \) \\ and any other character as itself
			}
		case '(':
			depth++
			b = append(b, c)
		case ')':
			if depth == 0 {
				return b, i
			}
			depth--
			b = append(b, c)
		default:
			b = append(b, c)
		}
	}
	t.Fatalf("pdfinspect: unterminated string at %d", start)
	return nil, 0
}

// Font is a font a PDF uses: its base font name and whether the PDF
// carries its glyphs (a font program in its descriptor, or a Type3 font,
// whose glyphs are drawn in the PDF), or leaves the font to the reader.
type Font struct {
	BaseFont string
	Embedded bool
}

var (
	fontRe       = regexp.MustCompile(`/Type /Font\b`)
	subtypeRe    = regexp.MustCompile(`/Subtype /(\w+)`)
	baseFontRe   = regexp.MustCompile(`/BaseFont /([^\s/\[<>()]+)`)
	descriptorRe = regexp.MustCompile(`/FontDescriptor (\d+) 0 R`)
	fontFileRe   = regexp.MustCompile(`/FontFile[23]? \d+ 0 R`)
)

// Fonts lists the fonts pdf uses that hold glyphs: every font object but
// the Type0 (composite) ones, whose descendant fonts are listed instead.
func Fonts(t testing.TB, pdf []byte) []Font {
	t.Helper()
	dicts := map[string][]byte{} // by object number: the object up to its stream
	var nums []string            // in order
	for _, obj := range objects(pdf) {
		if at := bytes.Index(obj, []byte("stream\n")); at >= 0 {
			obj = obj[:at]
		}
		num := string(bytes.Fields(obj)[0])
		dicts[num] = obj
		nums = append(nums, num)
	}
	var out []Font
	for _, num := range nums {
		dict := dicts[num]
		sub := subtypeRe.FindSubmatch(dict)
		if !fontRe.Match(dict) || sub == nil || string(sub[1]) == "Type0" {
			continue
		}
		f := Font{Embedded: string(sub[1]) == "Type3"}
		if m := baseFontRe.FindSubmatch(dict); m != nil {
			f.BaseFont = string(m[1])
		}
		if m := descriptorRe.FindSubmatch(dict); m != nil {
			desc, ok := dicts[string(m[1])]
			if !ok {
				t.Fatalf("pdfinspect: font %s's descriptor, object %s, is missing", f.BaseFont, m[1])
			}
			f.Embedded = f.Embedded || fontFileRe.Match(desc)
		}
		out = append(out, f)
	}
	return out
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
