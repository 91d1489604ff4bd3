package shipment

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func mustLoad(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestPickupAt(t *testing.T) {
	t.Parallel()
	utc := time.UTC
	ny := mustLoad(t, "America/New_York")
	berlin := mustLoad(t, "Europe/Berlin")
	std := Cutoff{15, 0}
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	// 2026-11-25 is a Wednesday.
	cases := []struct {
		name   string
		loc    *time.Location
		cutoff Cutoff
		placed string
		want   string // RFC 3339 in the schedule's zone
	}{
		{"Wednesday morning → Thursday", utc, std, "2026-11-25T10:00:00Z", "2026-11-26T09:00:00Z"},
		{"a nanosecond before the cutoff → next day", utc, std, "2026-11-25T14:59:59.999999999Z", "2026-11-26T09:00:00Z"},
		{"at the cutoff → the day after next", utc, std, "2026-11-25T15:00:00Z", "2026-11-27T09:00:00Z"},
		{"Thursday after the cutoff → Monday", utc, std, "2026-11-26T16:00:00Z", "2026-11-30T09:00:00Z"},
		{"Friday before the cutoff → Monday", utc, std, "2026-11-27T10:00:00Z", "2026-11-30T09:00:00Z"},
		{"Friday after the cutoff → Tuesday", utc, std, "2026-11-27T15:00:00Z", "2026-12-01T09:00:00Z"},
		{"Saturday → Tuesday", utc, std, "2026-11-28T10:00:00Z", "2026-12-01T09:00:00Z"},
		{"Sunday night → Tuesday", utc, std, "2026-11-29T23:59:00Z", "2026-12-01T09:00:00Z"},
		{"Monday midnight → Tuesday", utc, std, "2026-11-30T00:00:00Z", "2026-12-01T09:00:00Z"},
		{"across a month and year end", utc, std, "2026-12-31T16:00:00Z", "2027-01-04T09:00:00Z"},
		{"New York: 14:30 local is before the cutoff", ny, std, "2026-11-25T19:30:00Z", "2026-11-26T09:00:00-05:00"},
		{"New York: 15:30 local is after the cutoff", ny, std, "2026-11-25T20:30:00Z", "2026-11-27T09:00:00-05:00"},
		{"Berlin: Friday 23:30 UTC is Saturday local", berlin, std, "2026-11-27T23:30:00Z", "2026-12-01T09:00:00+01:00"},
		{"Berlin: Friday 14:59 local → Monday", berlin, std, "2026-11-27T13:59:00Z", "2026-11-30T09:00:00+01:00"},
		{"Berlin: pickup after the switch to summer time", berlin, std, "2027-03-26T09:00:00Z", "2027-03-29T09:00:00+02:00"},
		{"custom cutoff 12:30, just before", utc, Cutoff{12, 30}, "2026-11-25T12:29:00Z", "2026-11-26T09:00:00Z"},
		{"custom cutoff 12:30, at it", utc, Cutoff{12, 30}, "2026-11-25T12:30:00Z", "2026-11-27T09:00:00Z"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Schedule{Location: c.loc, Cutoff: c.cutoff}.PickupAt(at(c.placed))
			if want := at(c.want); !got.Equal(want) {
				t.Errorf("PickupAt(%s) = %s (%s), want %s", c.placed, got.Format(time.RFC3339), got.Weekday(), want.Format(time.RFC3339))
			}
			if got.Location() != c.loc {
				t.Errorf("slot is in %v, want the schedule's zone %v", got.Location(), c.loc)
			}
		})
	}
}

func TestParseCutoff(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		want Cutoff
		ok   bool
	}{
		{"15:00", Cutoff{15, 0}, true},
		{"00:00", Cutoff{0, 0}, true},
		{"23:59", Cutoff{23, 59}, true},
		{"24:00", Cutoff{}, false},
		{"9:00", Cutoff{}, false},
		{"15:00:00", Cutoff{}, false},
		{"3pm", Cutoff{}, false},
		{"", Cutoff{}, false},
	} {
		got, err := ParseCutoff(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("ParseCutoff(%q) = %v, %v; want %v, ok=%v", c.in, got, err, c.want, c.ok)
		}
		if c.ok && got.String() != c.in {
			t.Errorf("Cutoff.String() = %q, want %q", got.String(), c.in)
		}
	}
}

func TestTrackingNumber(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		serial int64
		want   string
	}{
		// Check digits worked by hand with the Luhn rule.
		{1, "SF00000000018"},
		{7992739871, "SF79927398713"}, // the textbook Luhn example
		{1234567890, "SF12345678903"},
		{MaxSerial, "SF99999999990"},
	} {
		got, err := TrackingNumber(c.serial)
		if err != nil || got != c.want {
			t.Errorf("TrackingNumber(%d) = %q, %v; want %q", c.serial, got, err, c.want)
		}
		if err := ValidTrackingNumber(got); err != nil {
			t.Errorf("ValidTrackingNumber(%q) = %v", got, err)
		}
	}
	for _, bad := range []int64{0, -1, MaxSerial + 1} {
		if got, err := TrackingNumber(bad); err == nil {
			t.Errorf("TrackingNumber(%d) = %q, want an error", bad, got)
		}
	}
}

func TestValidTrackingNumberCatchesTypos(t *testing.T) {
	t.Parallel()
	good, err := TrackingNumber(4_204_242_042)
	if err != nil {
		t.Fatal(err)
	}
	// Every single-digit substitution is caught.
	for i := len(TrackingPrefix); i < len(good); i++ {
		for d := byte('0'); d <= '9'; d++ {
			if d == good[i] {
				continue
			}
			typo := good[:i] + string(d) + good[i+1:]
			if err := ValidTrackingNumber(typo); !errors.Is(err, ErrBadTrackingNumber) {
				t.Errorf("ValidTrackingNumber(%q) = %v, want ErrBadTrackingNumber", typo, err)
			}
		}
	}
	for _, s := range []string{"", "SF", "XX00000000018", "SF0000000001", "SF000000000180", "SF0000000001A", "sf00000000018"} {
		if err := ValidTrackingNumber(s); !errors.Is(err, ErrBadTrackingNumber) {
			t.Errorf("ValidTrackingNumber(%q) = %v, want ErrBadTrackingNumber", s, err)
		}
	}
}

func TestCheckAddress(t *testing.T) {
	t.Parallel()
	ok := Address{Name: "Ada Lovelace", Line1: "1 Main St", City: "Springfield", PostalCode: "12345", Country: "US"}
	with := func(f func(*Address)) Address { a := ok; f(&a); return a }
	cases := []struct {
		name  string
		addr  Address
		field string // "" = accepted
	}{
		{"complete", ok, ""},
		{"with a second line and accents", with(func(a *Address) { a.Line2 = "Flat 2"; a.Name = "Zoë Müller"; a.Country = "DE" }), ""},
		{"country not served", with(func(a *Address) { a.Country = "BR" }), "country"},
		{"country lower case", with(func(a *Address) { a.Country = "us" }), "country"},
		{"country empty", with(func(a *Address) { a.Country = "" }), "country"},
		{"no postal code", with(func(a *Address) { a.PostalCode = "  " }), "postal_code"},
		{"no name", with(func(a *Address) { a.Name = "" }), "name"},
		{"no line1", with(func(a *Address) { a.Line1 = "" }), "line1"},
		{"no city", with(func(a *Address) { a.City = "" }), "city"},
		{"line2 too long", with(func(a *Address) { a.Line2 = strings.Repeat("x", MaxFieldLength+1) }), "line2"},
		{"control character", with(func(a *Address) { a.City = "Spring\nfield" }), "city"},
		{"invalid UTF-8", with(func(a *Address) { a.Name = "A\xffB" }), "name"},
		{"Polish letters", with(func(a *Address) { a.Name = "Zoë Łukasiewicz"; a.City = "Łódź"; a.Country = "PL" }), ""},
		{"a script the label cannot print", with(func(a *Address) { a.Line1 = "千代田区1-1"; a.Country = "JP" }), "line1"},
		{"no-break space", with(func(a *Address) { a.PostalCode = "123\u00a045" }), "postal_code"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := CheckAddress(c.addr)
			if c.field == "" {
				if err != nil {
					t.Fatalf("CheckAddress = %v, want accepted", err)
				}
				return
			}
			var ae *AddressError
			if !errors.As(err, &ae) || ae.Field != c.field || !errors.Is(err, ErrUndeliverable) {
				t.Fatalf("CheckAddress = %v, want an AddressError on %s", err, c.field)
			}
			if !strings.Contains(err.Error(), "shipping_address."+c.field) {
				t.Errorf("message %q does not name the field", err)
			}
		})
	}
}

func TestTransitions(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name    string
		do      func(Status) (Status, bool)
		from    Status
		to      Status
		changed bool
	}{
		{"cancel scheduled", Cancel, StatusScheduled, StatusCancelled, true},
		{"cancel ready", Cancel, StatusReady, StatusCancelled, true},
		{"cancel cancelled", Cancel, StatusCancelled, StatusCancelled, false},
		{"confirm scheduled", Confirm, StatusScheduled, StatusReady, true},
		{"confirm ready", Confirm, StatusReady, StatusReady, false},
		{"confirm cancelled", Confirm, StatusCancelled, StatusCancelled, false},
	} {
		to, changed := c.do(c.from)
		if to != c.to || changed != c.changed {
			t.Errorf("%s: got %s, %v; want %s, %v", c.name, to, changed, c.to, c.changed)
		}
	}
}
