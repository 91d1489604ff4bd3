package config

import (
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"time"
)

// mask replaces a secret in logs and messages.
const mask = "***"

// Redacted returns a loggable view of a configuration (a struct or a
// pointer to one, typically what Load returned): one entry per
// variable-backed field, keyed by variable name. Fields tagged
// `secret:"true"` show as "***" (or "" when unset, so a missing secret is
// still visible); passwords inside connection strings (the userinfo and
// password/sslpassword query parameters of a URL, password=... in
// keyword/value form) show as "***"; durations show as strings ("20s").
//
//	log.Info("starting", "config", config.Redacted(cfg))
func Redacted(v any) map[string]any {
	out := map[string]any{}
	rv := reflect.ValueOf(v)
	for rv.Kind() == reflect.Pointer && !rv.IsNil() {
		rv = rv.Elem()
	}
	if rv.Kind() != reflect.Struct {
		return out
	}
	redactInto(out, rv, "")
	return out
}

func redactInto(out map[string]any, v reflect.Value, prefix string) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		key, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		if key == "-" {
			continue
		}
		fv := v.Field(i)
		if fv.Kind() == reflect.Pointer {
			if fv.IsNil() {
				if key != "" {
					out[prefix+key] = nil
				}
				continue
			}
			fv = fv.Elem()
		}
		if key == "" {
			if fv.Kind() == reflect.Struct && !isTextUnmarshaler(fv.Type()) {
				redactInto(out, fv, prefix+f.Tag.Get("envPrefix"))
			}
			continue
		}
		if f.Tag.Get("secret") == "true" {
			if fv.IsZero() {
				out[prefix+key] = ""
			} else {
				out[prefix+key] = mask
			}
			continue
		}
		out[prefix+key] = redactValue(fv)
	}
}

func redactValue(v reflect.Value) any {
	if d, ok := v.Interface().(time.Duration); ok {
		return d.String()
	}
	switch v.Kind() {
	case reflect.String:
		return maskSecrets(v.String())
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.String {
			out := make([]string, v.Len())
			for i := range out {
				out[i] = maskSecrets(v.Index(i).String())
			}
			return out
		}
	case reflect.Map:
		// name=URL lists (OPS_PEERS): the values can carry passwords too.
		if v.Type().Elem().Kind() == reflect.String && v.Type().Key().Kind() == reflect.String {
			out := make(map[string]string, v.Len())
			for it := v.MapRange(); it.Next(); {
				out[it.Key().String()] = maskSecrets(it.Value().String())
			}
			return out
		}
	case reflect.Func, reflect.Chan, reflect.UnsafePointer:
		return v.Type().String()
	}
	return v.Interface()
}

// keywordPassword matches password=... in a keyword/value connection
// string, quoted or not.
var keywordPassword = regexp.MustCompile(`(?i)\b((?:ssl)?password)\s*=\s*('(?:[^'\\]|\\.)*'|\S*)`)

// maskSecrets hides the passwords in s if it is a connection string and
// returns anything else unchanged.
func maskSecrets(s string) string {
	if u, err := url.Parse(s); err == nil && u.Scheme != "" && (u.User != nil || u.RawQuery != "") {
		masked := false
		if u.User != nil {
			if _, has := u.User.Password(); has {
				// URL.String would percent-encode the mask; put it in after.
				u.User = url.UserPassword(u.User.Username(), "MASKED")
				masked = true
			}
		}
		u.RawQuery = maskQuery(u.RawQuery)
		out := u.String()
		if masked {
			out = strings.Replace(out, ":MASKED@", ":"+mask+"@", 1)
		}
		return out
	}
	return keywordPassword.ReplaceAllString(s, "$1="+mask)
}

// maskQuery masks password parameters without re-encoding the rest.
func maskQuery(q string) string {
	if q == "" {
		return q
	}
	parts := strings.Split(q, "&")
	for i, p := range parts {
		k, _, hasValue := strings.Cut(p, "=")
		if dk, err := url.QueryUnescape(k); err == nil {
			k = dk
		}
		if hasValue && (strings.EqualFold(k, "password") || strings.EqualFold(k, "sslpassword")) {
			parts[i] = k + "=" + mask
		}
	}
	return strings.Join(parts, "&")
}

// MaskURL returns s, a URL or host:port that may carry credentials, fit
// for a message or a log: a password in its userinfo is "***" (as in
// Redacted and url.URL.Redacted), and so are the password parameters of
// its query. A value that does not parse as a URL with a scheme and a
// host (a malformed one, a user:password@host:port) has everything before
// the @ of its authority masked instead, and the password=... of a
// keyword/value connection string ("host=db password=secret").
func MaskURL(s string) string {
	if u, err := url.Parse(s); err == nil && u.Scheme != "" && u.Opaque == "" {
		return maskSecrets(s)
	}
	if !strings.Contains(s, "://") && keywordPassword.MatchString(s) {
		// A keyword/value connection string (host=db password=...) has
		// its password where no URL has one, and may hold an @ in it.
		return keywordPassword.ReplaceAllString(s, "$1="+mask)
	}
	start := 0
	if i := strings.Index(s, "://"); i >= 0 {
		start = i + len("://")
	}
	end := len(s)
	if i := strings.IndexAny(s[start:], "/?#"); i >= 0 {
		end = start + i
	}
	if at := strings.LastIndex(s[start:end], "@"); at >= 0 {
		return s[:start] + mask + s[start+at:]
	}
	return s
}
