package label

import (
	"bytes"
	"image"
	"testing"
	"time"

	"github.com/makiuchi-d/gozxing"
	"github.com/makiuchi-d/gozxing/oned"

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
	for _, want := range []string{s.TrackingNumber, s.Carrier, s.Name, s.Line1, s.Line2, "12345 Springfield", "US",
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

func TestRenderNonLatinAddress(t *testing.T) {
	t.Parallel()
	s := sample(t)
	s.Name, s.City, s.Country = "Zoë Müller-Łukasiewicz 山田", "Köln", "DE"
	var buf bytes.Buffer
	if err := Render(&buf, s); err != nil {
		t.Fatalf("Render = %v", err)
	}
	// Windows-1252 ö is 0xF6: the accented city prints as itself.
	if !bytes.Contains(pdfinspect.Text(t, buf.Bytes()), []byte("K\xf6ln")) {
		t.Error("accented city not printed in the core font's encoding")
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
