// Package answer reads the services' answers for shop's HTTP clients
// (seed, load): a problem+json body as a line of plain text, and the wait
// a Retry-After asks for, with the bound shop puts on it.
package answer

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/shopflow/shopflow/pkg/platform/httpserver"
)

// MaxWait bounds the wait a Retry-After asks for (the storefront's bound
// too): a command that waited an hour because a proxy said so would look
// hung.
const MaxWait = 30 * time.Second

// RetryAfter reads a Retry-After header, in seconds or as an HTTP date,
// as a wait from now; false without one, or with one in the past.
func RetryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0, false
	}
	if n, err := strconv.Atoi(v); err == nil {
		if n <= 0 {
			return 0, false
		}
		return time.Duration(n) * time.Second, true
	}
	if at, err := http.ParseTime(v); err == nil && at.After(now) {
		return at.Sub(now), true
	}
	return 0, false
}

// maxText bounds, in bytes, the text of a body that is no problem (a
// proxy's error page).
const maxText = 300

// Text is an answer's body as a person reads it, on one line: a problem's
// title and detail, and its field errors ("Unauthorized: admin endpoint:
// send Authorization: Bearer <ADMIN_TOKEN>", where the JSON has
// \u003cADMIN_TOKEN\u003e), else the body's own text, cut at 300 bytes.
// Control characters (line breaks, a terminal's escapes) become spaces.
func Text(body []byte) string {
	body = bytes.TrimSpace(body)
	var p httpserver.Problem
	if json.Unmarshal(body, &p) == nil && (p.Title != "" || p.Detail != "") {
		var s strings.Builder
		s.WriteString(p.Title)
		if p.Title != "" && p.Detail != "" {
			s.WriteString(": ")
		}
		s.WriteString(p.Detail)
		for i, e := range p.Errors {
			if i == 0 {
				s.WriteString(" (")
			} else {
				s.WriteString("; ")
			}
			s.WriteString(e.Field + ": " + e.Message)
		}
		if len(p.Errors) > 0 {
			s.WriteString(")")
		}
		return oneLine(s.String())
	}
	if len(body) > maxText {
		cut := maxText
		for cut > 0 && !utf8.RuneStart(body[cut]) {
			cut--
		}
		return oneLine(string(body[:cut])) + "…"
	}
	return oneLine(string(body))
}

// oneLine replaces control characters by spaces.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

// Sleep waits d; false if ctx ended first.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
