package stock

import (
	"errors"
	"reflect"
	"testing"
)

func TestValidSKU(t *testing.T) {
	t.Parallel()
	long := "A"
	for len(long) < 64 {
		long += "1"
	}
	for _, tc := range []struct {
		sku  string
		want bool
	}{
		{"SKU-0001", true},
		{"A", true},
		{"0-A-", true},
		{long, true},
		{long + "2", false},
		{"", false},
		{"-SKU", false},
		{"sku-0001", false},
		{"SKU 1", false},
		{"SKU_1", false},
		{"SKU/1", false},
		{"SKÜ", false},
	} {
		if got := ValidSKU(tc.sku); got != tc.want {
			t.Errorf("ValidSKU(%q) = %v, want %v", tc.sku, got, tc.want)
		}
	}
}

func TestCheckOnHand(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		reserved int64
		n        int64
		want     error
	}{
		{"zero", 0, 0, nil},
		{"max", 0, MaxOnHand, nil},
		{"equal to reserved", 7, 7, nil},
		{"negative", 0, -1, ErrInvalid},
		{"over max", 0, MaxOnHand + 1, ErrInvalid},
		{"below reserved", 7, 6, ErrBelowReserved},
	} {
		err := CheckOnHand(Level{SKU: "SKU-1", OnHand: 10, Reserved: tc.reserved}, tc.n)
		if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("%s: CheckOnHand(reserved %d, %d) = %v, want %v", tc.name, tc.reserved, tc.n, err, tc.want)
		}
	}
}

func TestMerge(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		in      []Line
		want    []Line
		wantErr error
	}{
		{"one line", []Line{{"SKU-1", 2}}, []Line{{"SKU-1", 2}}, nil},
		{"sorted by SKU", []Line{{"SKU-3", 1}, {"SKU-1", 2}, {"SKU-2", 3}},
			[]Line{{"SKU-1", 2}, {"SKU-2", 3}, {"SKU-3", 1}}, nil},
		{"duplicates summed", []Line{{"SKU-2", 3}, {"SKU-1", 1}, {"SKU-2", 4}},
			[]Line{{"SKU-1", 1}, {"SKU-2", 7}}, nil},
		{"byte order, not locale", []Line{{"SKU-A", 1}, {"SKU-10", 1}, {"SKU-9", 1}, {"SKU1", 1}},
			[]Line{{"SKU-10", 1}, {"SKU-9", 1}, {"SKU-A", 1}, {"SKU1", 1}}, nil},
		{"huge sum capped unfillable", []Line{{"SKU-1", MaxOnHand}, {"SKU-1", MaxOnHand}},
			[]Line{{"SKU-1", MaxOnHand + 1}}, nil},
		{"no lines", nil, nil, ErrInvalid},
		{"zero quantity", []Line{{"SKU-1", 0}}, nil, ErrInvalid},
		{"negative quantity", []Line{{"SKU-1", 1}, {"SKU-2", -1}}, nil, ErrInvalid},
		{"empty SKU", []Line{{"", 1}}, nil, ErrInvalid},
	} {
		got, err := Merge(tc.in)
		if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
			t.Errorf("%s: Merge err = %v, want %v", tc.name, err, tc.wantErr)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: Merge = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestPlan(t *testing.T) {
	t.Parallel()
	levels := map[string]Level{
		"SKU-1": {SKU: "SKU-1", OnHand: 10, Reserved: 4}, // 6 available
		"SKU-2": {SKU: "SKU-2", OnHand: 3, Reserved: 3},  // none available
		"SKU-3": {SKU: "SKU-3", OnHand: 5},
	}
	for _, tc := range []struct {
		name  string
		lines []Line
		want  []Short
	}{
		{"all fit", []Line{{"SKU-1", 6}, {"SKU-3", 5}}, nil},
		{"one short", []Line{{"SKU-1", 7}, {"SKU-3", 5}}, []Short{{"SKU-1", 7, 6}}},
		{"fully reserved SKU", []Line{{"SKU-2", 1}}, []Short{{"SKU-2", 1, 0}}},
		{"unknown SKU", []Line{{"SKU-1", 1}, {"SKU-404", 2}}, []Short{{"SKU-404", 2, 0}}},
		{"several short, in line order", []Line{{"SKU-1", 9}, {"SKU-2", 1}, {"SKU-3", 6}},
			[]Short{{"SKU-1", 9, 6}, {"SKU-2", 1, 0}, {"SKU-3", 6, 5}}},
	} {
		if got := Plan(tc.lines, levels); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: Plan = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestOnCancel(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status     Status
		found      bool
		want       Action
		unexpected bool
	}{
		{"", false, Tombstone, false},
		{StatusReserved, true, Release, false},
		{StatusCommitted, true, Ignore, true},
		{StatusReleased, true, Ignore, false},
		{StatusRejected, true, Ignore, false},
		{StatusCancelled, true, Ignore, false},
	} {
		a, u := OnCancel(tc.status, tc.found)
		if a != tc.want || u != tc.unexpected {
			t.Errorf("OnCancel(%q, %v) = %v, %v; want %v, %v", tc.status, tc.found, a, u, tc.want, tc.unexpected)
		}
	}
}

func TestOnConfirm(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		status  Status
		found   bool
		want    Action
		wantErr bool
	}{
		{"", false, Ignore, true},
		{StatusReserved, true, Commit, false},
		{StatusCommitted, true, Ignore, false},
		{StatusReleased, true, Ignore, true},
		{StatusRejected, true, Ignore, true},
		{StatusCancelled, true, Ignore, true},
	} {
		a, err := OnConfirm(tc.status, tc.found)
		if a != tc.want || (err != nil) != tc.wantErr || (err != nil && !errors.Is(err, ErrConflict)) {
			t.Errorf("OnConfirm(%q, %v) = %v, %v; want %v, error %v", tc.status, tc.found, a, err, tc.want, tc.wantErr)
		}
	}
}
