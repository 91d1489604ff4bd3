// Package label renders a shipment's printable label: a 4×6 inch PDF
// (the usual thermal-printer format) with the carrier, the pickup slot,
// the ship-to address, and the tracking number both as text and as a
// Code 128 barcode that a warehouse scanner reads.
//
// Rendering is deterministic: the same shipment always gives the same
// bytes (the PDF's dates come from the shipment, not the clock), so a label
// can be fetched again and reprinted identically.
package label

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"
	"slices"
	"time"

	"github.com/boombuler/barcode"
	"github.com/boombuler/barcode/code128"
	"github.com/go-pdf/fpdf"
	"golang.org/x/image/font/gofont/gobold"
	"golang.org/x/image/font/gofont/gomonobold"
	"golang.org/x/image/font/gofont/goregular"

	"github.com/shopflow/shopflow/pkg/events"
)

// Shipment is what a label shows.
type Shipment struct {
	OrderID        string
	ShipmentID     string
	Carrier        string
	TrackingNumber string
	// PickupAt is the start of the pickup slot, in the warehouse's zone
	// (printed in that zone); SlotLength is how long the slot lasts.
	PickupAt   time.Time
	SlotLength time.Duration
	// Name to Country are the ship-to address; Country is ISO 3166-1 alpha-2.
	Name, Line1, Line2, City, PostalCode, Country string
	// CreatedAt becomes the PDF's creation date.
	CreatedAt time.Time
}

// fontFamily and monoFamily name the embedded Go fonts in the PDF: Go
// (regular and bold) for the text, Go Mono (bold) for the tracking
// number, whose characters a clerk reads one by one.
const (
	fontFamily = "Go"
	monoFamily = "GoMono"
)

// Page size and layout, in millimetres.
const (
	pageW, pageH = 101.6, 152.4
	margin       = 5.0
	contentW     = pageW - 2*margin
	barcodeH     = 25.0
	// minFontSize is the smallest a too-long line is shrunk to, in points.
	minFontSize = 6.0
)

// Barcode geometry, in pixels of the embedded image: each Code 128 module
// is modulePx wide, and a quiet zone of quietModules white modules on each
// side lets scanners find the start and stop patterns (the standard asks
// for at least 10).
const (
	modulePx     = 4
	quietModules = 10
	barcodePx    = 160
)

// Barcode returns the tracking number as a Code 128 image, with its quiet
// zones: what the label embeds.
func Barcode(tracking string) (image.Image, error) {
	bc, err := code128.Encode(tracking)
	if err != nil {
		return nil, fmt.Errorf("label: code 128 of %q: %w", tracking, err)
	}
	modules := bc.Bounds().Dx()
	scaled, err := barcode.Scale(bc, modules*modulePx, barcodePx)
	if err != nil {
		return nil, fmt.Errorf("label: scale barcode: %w", err)
	}
	quiet := quietModules * modulePx
	img := image.NewGray(image.Rect(0, 0, modules*modulePx+2*quiet, barcodePx))
	draw.Draw(img, img.Bounds(), image.NewUniform(color.White), image.Point{}, draw.Src)
	draw.Draw(img, image.Rect(quiet, 0, quiet+modules*modulePx, barcodePx), scaled, image.Point{}, draw.Src)
	return img, nil
}

// Render writes s's label as a PDF to w.
func Render(w io.Writer, s Shipment) error {
	img, err := Barcode(s.TrackingNumber)
	if err != nil {
		return err
	}
	var pngBuf bytes.Buffer
	if err := png.Encode(&pngBuf, img); err != nil {
		return fmt.Errorf("label: encode barcode: %w", err)
	}

	pdf := fpdf.NewCustom(&fpdf.InitType{UnitStr: "mm", Size: fpdf.SizeType{Wd: pageW, Ht: pageH}})
	pdf.SetMargins(margin, margin, margin)
	pdf.SetAutoPageBreak(false, margin)
	pdf.SetCreationDate(s.CreatedAt)
	pdf.SetModificationDate(s.CreatedAt)
	pdf.SetCatalogSort(true)
	// The Go fonts, embedded (the core fonts are Windows-1252 only: a
	// Polish or Czech address printed with placeholders). What they
	// can print is events.LabelPrintable, and addresses are checked
	// against it before an order is placed.
	//
	// Each render hands fpdf fonts of its own: fpdf writes into the bytes
	// it is given (getMetrics appends to a slice of them) for each glyph
	// past the font's last long horizontal metric, which in Go Mono is
	// every glyph but the first. Given the package's shared bytes,
	// concurrent renders raced, and each label changed the next one's.
	pdf.AddUTF8FontFromBytes(fontFamily, "", bytes.Clone(goregular.TTF))
	pdf.AddUTF8FontFromBytes(fontFamily, "B", bytes.Clone(gobold.TTF))
	// The tracking number was set in the core Courier-Bold, the one
	// font not embedded: a printer without it substituted another.
	pdf.AddUTF8FontFromBytes(monoFamily, "B", bytes.Clone(gomonobold.TTF))
	pdf.SetTitle("Shipping label "+s.TrackingNumber, true)
	pdf.SetProducer("shopflow shipping", true)
	pdf.AddPage()

	// text prints str on one line of the label's width: at size, or at the
	// size that fits when it is wider (an address line may have 60
	// characters; about 45 fit at 12 pt), down to minFontSize, below
	// which it wraps. A line is never cut off at the page's edge.
	text := func(style string, size, h float64, str string) {
		pdf.SetFont(fontFamily, style, size)
		avail := contentW - 2*pdf.GetCellMargin() // a cell pads its text
		fit := size
		if w := pdf.GetStringWidth(str); w > avail {
			fit = max(minFontSize, math.Floor(size*avail/w*10)/10)
			pdf.SetFontSize(fit)
		}
		lh := h * fit / size
		if pdf.GetStringWidth(str) > avail {
			pdf.MultiCell(contentW, lh, str, "", "L", false)
			return
		}
		pdf.CellFormat(contentW, lh, str, "", 1, "L", false, 0, "")
	}
	rule := func() {
		y := pdf.GetY() + 1.5
		pdf.SetLineWidth(0.4)
		pdf.Line(margin, y, pageW-margin, y)
		pdf.SetY(y + 2)
	}

	text("B", 16, 8, s.Carrier)
	loc := s.PickupAt.Location()
	end := s.PickupAt.Add(s.SlotLength)
	text("", 9, 5, fmt.Sprintf("Pickup: %s %s-%s (%s)", s.PickupAt.Format("Mon 2 Jan 2006"),
		s.PickupAt.Format("15:04"), end.Format("15:04"), loc))
	rule()

	text("B", 8, 4, "SHIP TO:")
	text("B", 14, 7, s.Name)
	// The city and postal code as the destination's post writes them
	// (as the order page shows them).
	city := events.Address{City: s.City, PostalCode: s.PostalCode, Country: s.Country}.CityLines()
	for _, l := range slices.Concat([]string{s.Line1, s.Line2}, city, []string{s.Country}) {
		if l != "" {
			text("", 12, 6, l)
		}
	}
	rule()

	text("B", 8, 4, "TRACKING NUMBER:")
	y := pdf.GetY() + 2
	pdf.RegisterImageOptionsReader("barcode", fpdf.ImageOptions{ImageType: "PNG"}, &pngBuf)
	pdf.ImageOptions("barcode", margin, y, contentW, barcodeH, false, fpdf.ImageOptions{ImageType: "PNG"}, 0, "")
	pdf.SetY(y + barcodeH + 2)
	pdf.SetFont(monoFamily, "B", 16)
	pdf.CellFormat(contentW, 8, s.TrackingNumber, "", 1, "C", false, 0, "")
	rule()

	text("", 7, 4, "Order "+s.OrderID)
	text("", 7, 4, "Shipment "+s.ShipmentID)

	if err := pdf.Output(w); err != nil {
		return fmt.Errorf("label: render PDF: %w", err)
	}
	return nil
}
