package label

import (
	"bytes"
	"fmt"
	"image"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/go-pdf/fpdf"
	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/gofont/gomonobold"
	"golang.org/x/image/font/gofont/goregular"
	"golang.org/x/image/font/sfnt"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/oned"

	"github.com/shopflow/shopflow/pkg/events"
	"github.com/shopflow/shopflow/services/shipping/internal/pdfinspect"
)

func sample(t *testing.T) Shipment {
	t.Helper()
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	return Shipment{
		OrderID: "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", ShipmentID: "0193a1b2-c3d4-7e5f-8a9b-ffffffffffff",
		Carrier: "Shopflow Express", TrackingNumber: "SF12345678903",
		PickupAt: time.Date(2026, 11, 30, 9, 0, 0, 0, berlin), SlotLength: 3 * time.Hour,
		Name: "Ada Lovelace", Line1: "1 Main St", Line2: "Flat 2", City: "Springfield", PostalCode: "12345", Country: "US",
		CreatedAt: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC),
	}
}

// decode reads a Code 128 barcode from img as a scanner would.
func decode(t *testing.T, img image.Image) string {
	t.Helper()
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		t.Fatal(err)
	}
	res, err := oned.NewCode128Reader().Decode(bmp, nil)
	if err != nil {
		t.Fatalf("barcode does not scan: %v", err)
	}
	return res.GetText()
}

func TestBarcodeScans(t *testing.T) {
	t.Parallel()
	for _, tn := range []string{"SF12345678903", "SF00000000018", "SF99999999990"} {
		img, err := Barcode(tn)
		if err != nil {
			t.Fatal(err)
		}
		if got := decode(t, img); got != tn {
			t.Errorf("barcode of %s scans as %q", tn, got)
		}
	}
}

func TestRenderPDF(t *testing.T) {
	t.Parallel()
	s := sample(t)
	var buf bytes.Buffer
	if err := Render(&buf, s); err != nil {
		t.Fatal(err)
	}
	pdf := buf.Bytes()
	if !bytes.HasPrefix(pdf, []byte("%PDF-")) || !bytes.Contains(pdf[len(pdf)-16:], []byte("%%EOF")) {
		t.Fatalf("not a complete PDF: starts %q", pdf[:min(len(pdf), 16)])
	}
	if len(pdf) < 1000 || len(pdf) > 200_000 {
		t.Errorf("label is %d bytes; want a small single-page PDF", len(pdf))
	}
	content := pdfinspect.Text(t, pdf)
	for _, want := range []string{s.TrackingNumber, s.Carrier, s.Name, s.Line1, s.Line2, "Springfield 12345", "US",
		"Pickup: Mon 30 Nov 2026 09:00-12:00 \\(Europe/Berlin\\)", s.OrderID} {
		if !bytes.Contains(content, []byte(want)) {
			t.Errorf("label does not show %q", want)
		}
	}
	imgs := pdfinspect.Images(t, pdf)
	if len(imgs) != 1 {
		t.Fatalf("label embeds %d images, want the barcode", len(imgs))
	}
	if got := decode(t, imgs[0]); got != s.TrackingNumber {
		t.Errorf("the label's barcode scans as %q, want %s", got, s.TrackingNumber)
	}

	var again bytes.Buffer
	if err := Render(&again, s); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pdf, again.Bytes()) {
		t.Error("rendering the same shipment twice gave different bytes")
	}
}

// TestRenderEmbedsEveryFont: the label carries every font it is set in,
// so every printer prints it alike; the tracking number was set in
// Courier-Bold, a core font left to the printer (pdffonts: "emb no").
func TestRenderEmbedsEveryFont(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if err := Render(&buf, sample(t)); err != nil {
		t.Fatal(err)
	}
	fonts := pdfinspect.Fonts(t, buf.Bytes())
	if len(fonts) != 3 {
		t.Errorf("the label uses %d fonts (%+v), want 3: Go, Go bold, Go Mono bold", len(fonts), fonts)
	}
	for _, f := range fonts {
		if !f.Embedded {
			t.Errorf("font %s is not embedded", f.BaseFont)
		}
	}
}

// TestRenderNonLatinAddress: the letters of the countries the carrier
// serves print as themselves (the core fonts' Windows-1252 printed
// Polish and Czech ones as placeholders), as do Greek and Cyrillic.
func TestRenderNonLatinAddress(t *testing.T) {
	t.Parallel()
	s := sample(t)
	s.Name, s.Line1, s.City, s.Country = "Zoë Müller-Łukasiewicz", "ul. Świętokrzyska 12, Dvořák", "Łódź", "PL"
	s.Line2 = "Αθήνα / Москва"
	var buf bytes.Buffer
	if err := Render(&buf, s); err != nil {
		t.Fatalf("Render = %v", err)
	}
	text := pdfinspect.Text(t, buf.Bytes())
	for _, want := range []string{"(" + s.Name + ")", "(" + s.Line1 + ")", "(" + s.Line2 + ")", "(12345 Łódź)"} {
		if !bytes.Contains(text, []byte(want)) {
			t.Errorf("label does not print %s", want)
		}
	}
}

// TestLabelRunesAreTheFonts: events.LabelPrintable, by which the order
// and shipping services refuse addresses, is exactly what the label's
// fonts print (both, regular and bold).
func TestLabelRunesAreTheFonts(t *testing.T) {
	t.Parallel()
	var fonts []*sfnt.Font
	for _, ttf := range [][]byte{goregular.TTF, gobold.TTF} {
		f, err := sfnt.Parse(ttf)
		if err != nil {
			t.Fatal(err)
		}
		fonts = append(fonts, f)
	}
	var buf sfnt.Buffer
	var ranges [][2]rune
	mismatches := 0
	for r := rune(0); r <= unicode.MaxRune; r++ {
		has := unicode.IsPrint(r)
		for _, f := range fonts {
			g, err := f.GlyphIndex(&buf, r)
			has = has && err == nil && g != 0
		}
		if has != events.LabelPrintable(r) {
			if mismatches++; mismatches <= 5 {
				t.Errorf("%U %q: the fonts print it: %v, events.LabelPrintable: %v", r, r, has, !has)
			}
		}
		if !has {
			continue
		}
		if n := len(ranges); n > 0 && ranges[n-1][1] == r-1 {
			ranges[n-1][1] = r
		} else {
			ranges = append(ranges, [2]rune{r, r})
		}
	}
	if mismatches > 0 {
		var src strings.Builder
		latin := 0
		for i, rg := range ranges {
			if i%4 == 0 {
				src.WriteString("\n\t\t")
			} else {
				src.WriteString(" ")
			}
			fmt.Fprintf(&src, "{0x%04x, 0x%04x, 1},", rg[0], rg[1])
			if rg[1] <= unicode.MaxLatin1 {
				latin++
			}
		}
		t.Errorf("%d characters differ; pkg/events/labelrunes.go should read:\n\tR16: []unicode.Range16{%s\n\t},\n\tLatinOffset: %d,", mismatches, src.String(), latin)
	}
}

func TestRenderRejectsUnencodableTracking(t *testing.T) {
	t.Parallel()
	s := sample(t)
	s.TrackingNumber = "SF\u00e9"
	if err := Render(&bytes.Buffer{}, s); err == nil {
		t.Error("Render accepted a tracking number Code 128 cannot encode")
	}
}

var (
	fontObj  = regexp.MustCompile(`(\d+) 0 obj\s*<</Type /Font\s*(?:/Subtype /Type0\s*)?/BaseFont /([\w-]+)`)
	fontRef  = regexp.MustCompile(`/(F[0-9a-f]+) (\d+) 0 R`)
	textOp   = regexp.MustCompile(`BT /(F[0-9a-f]+) ([\d.]+) Tf ET|BT ([\d.]+) [\d.]+ Td \((.*)\)Tj ET`)
	baseFont = map[string][2]string{"utf8go": {fontFamily, ""}, "utf8goB": {fontFamily, "B"}, "utf8gomonoB": {monoFamily, "B"}}
)

// The label writes the city and postal code as the destination's post
// does, each line its own: the postal code came first for every country
// ("12345 Springfield", "SW1A 1AA London").
func TestRenderWritesTheCityAsItsCountryDoes(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		country, city, postal string
		lines                 []string
	}{
		{"US", "Springfield", "12345", []string{"Springfield 12345"}},
		{"GB", "London", "SW1A 1AA", []string{"London", "SW1A 1AA"}},
		{"DE", "Berlin", "10115", []string{"10115 Berlin"}},
	} {
		s := sample(t)
		s.City, s.PostalCode, s.Country = c.city, c.postal, c.country
		var buf bytes.Buffer
		if err := Render(&buf, s); err != nil {
			t.Fatal(err)
		}
		var printed []string
		for _, m := range textOp.FindAllSubmatch(pdfinspect.Text(t, buf.Bytes()), -1) {
			if m[4] != nil {
				printed = append(printed, string(m[4]))
			}
		}
		for _, l := range c.lines {
			if !slices.Contains(printed, l) {
				t.Errorf("%s: the label has no line %q; it prints %q", c.country, l, printed)
			}
		}
	}
}

// TestRenderLongAddressStaysOnTheLabel: every address field may have 60
// characters (events.MaxAddressFieldLength), more than a 12 pt line holds.
// Each printed string, measured in its font at its size, must end inside
// the right margin, and be printed whole; it used to run off the page
// ("Apartment 1204, Riverside Towers, 1500 Pennsylv" was all that showed).
func TestRenderLongAddressStaysOnTheLabel(t *testing.T) {
	t.Parallel()
	s := sample(t)
	s.Name = "Maximilian Alexander von Hohenzollern-Sigmaringen Schmidtkew"
	s.Line1 = "Apartment 1204, Riverside Towers, 1500 Pennsylvania Avenue W"
	s.Line2 = "WWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWW"
	s.City = "Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogochxx"
	s.PostalCode = "LL61 5UJ99"
	for _, f := range []string{s.Name, s.Line1, s.Line2, s.City} {
		if len(f) != 60 {
			t.Fatalf("%q has %d characters, want 60", f, len(f))
		}
	}
	var buf bytes.Buffer
	if err := Render(&buf, s); err != nil {
		t.Fatal(err)
	}
	pdf := buf.Bytes()
	objFont := map[string]string{}
	for _, m := range fontObj.FindAllSubmatch(pdf, -1) {
		objFont[string(m[1])] = string(m[2])
	}
	fonts := map[string][2]string{}
	for _, m := range fontRef.FindAllSubmatch(pdf, -1) {
		if bf, ok := baseFont[objFont[string(m[2])]]; ok {
			fonts[string(m[1])] = bf
		}
	}
	measure := fpdf.New("P", "pt", "A4", "")
	measure.AddUTF8FontFromBytes(fontFamily, "", goregular.TTF)
	measure.AddUTF8FontFromBytes(fontFamily, "B", gobold.TTF)
	measure.AddUTF8FontFromBytes(monoFamily, "B", gomonobold.TTF)
	const right = pageW/25.4*72 - margin/25.4*72 + 0.01 // points
	var font [2]string
	var size float64
	var printed []string
	for _, m := range textOp.FindAllSubmatch(pdfinspect.Text(t, pdf), -1) {
		if m[1] != nil {
			f, ok := fonts[string(m[1])]
			if !ok {
				t.Fatalf("font %s: not found in the PDF's resources", m[1])
			}
			font = f
			size, _ = strconv.ParseFloat(string(m[2]), 64)
			continue
		}
		x, _ := strconv.ParseFloat(string(m[3]), 64)
		str := strings.NewReplacer(`\(`, "(", `\)`, ")").Replace(string(m[4]))
		measure.SetFont(font[0], font[1], size)
		if end := x + measure.GetStringWidth(str); end > right {
			t.Errorf("%q at %.1f pt ends at %.1f pt, past the right margin at %.1f", str, size, end, right)
		}
		if size < minFontSize {
			t.Errorf("%q printed at %.1f pt, under %.1f", str, size, minFontSize)
		}
		printed = append(printed, str)
	}
	// Real lines fit on one line once shrunk; 60 W's (the widest letter)
	// do not even at the smallest size, and wrap: nothing is lost.
	for _, want := range []string{s.Name, s.Line1, s.City + " " + s.PostalCode} {
		if !slices.Contains(printed, want) {
			t.Errorf("the label does not print %q on one line; printed %q", want, printed)
		}
	}
	if all := strings.Join(printed, ""); !strings.Contains(all, s.Line2) {
		t.Errorf("the label lost part of %q; printed %q", s.Line2, printed)
	}
}
