package web

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// pageNames are the templates that are whole pages; each is parsed with
// the layout.
var pageNames = []string{"store", "order", "ops", "error"}

var funcs = template.FuncMap{
	"money": formatMoney,
	"time":  func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"iso":   func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	// orNA shows a figure that may be missing (nil) as "n/a".
	"orNA": func(v any) string {
		switch n := v.(type) {
		case *int64:
			if n != nil {
				return itoa(*n)
			}
		case *float64:
			if n != nil {
				return strconv.FormatFloat(*n, 'f', 2, 64)
			}
		}
		return "n/a"
	},
}

func parsePages() (map[string]*template.Template, error) {
	pages := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("web: parse %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// layoutData is what the layout shows around a page.
type layoutData struct {
	Title string
	// Nav marks the current page in the navigation.
	Nav  string
	Data any
}

// contentSecurityPolicy allows nothing from elsewhere: the pages work
// offline and a stray external reference fails loudly in the console.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'self'"

// render writes the page through a buffer, so a template error becomes a
// clean 500 instead of half a page.
func (wb *Web) render(w http.ResponseWriter, r *http.Request, status int, page, title string, data any) {
	var buf bytes.Buffer
	err := wb.pages[page].Execute(&buf, layoutData{Title: title, Nav: page, Data: data})
	if err != nil {
		wb.log.Error("render page", "page", page, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	// same-origin: links out of the shop do not carry an order's URL.
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// minorDigits are the ISO 4217 exponents that are not 2.
var minorDigits = map[string]int{
	"BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0,
	"RWF": 0, "UGX": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
	"BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
}

var symbols = map[string]string{"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}

// minorDigitsOf is the currency's number of minor-unit digits.
func minorDigitsOf(currency string) int {
	if digits, ok := minorDigits[currency]; ok {
		return digits
	}
	return 2
}

// formatMoney shows minor units in their currency, thousands grouped:
// 2499 USD is $24.99, 1500 JPY is ¥1,500, 1234 KWD is KWD 1.234.
func formatMoney(minor int64, currency string) string {
	digits := minorDigitsOf(currency)
	sign := ""
	if minor < 0 {
		sign, minor = "-", -minor
	}
	s := strconv.FormatInt(minor, 10)
	if len(s) <= digits {
		s = strings.Repeat("0", digits-len(s)+1) + s
	}
	whole, frac := s[:len(s)-digits], s[len(s)-digits:]
	for i := len(whole) - 3; i > 0; i -= 3 {
		whole = whole[:i] + "," + whole[i:]
	}
	s = whole
	if digits > 0 {
		s += "." + frac
	}
	if sym, ok := symbols[currency]; ok {
		return sign + sym + s
	}
	return sign + currency + " " + s
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
