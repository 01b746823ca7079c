package crdt

import (
	"math/rand"
	"reflect"
	"testing"
	"testing/quick"
)

func TestVV(t *testing.T) {
	a := VV{1: 3, 2: 5}
	b := VV{2: 7, 3: 1}
	tests := []struct {
		name string
		got  any
		want any
	}{
		{"covers below", a.Covers(Dot{1, 2}), true},
		{"covers equal", a.Covers(Dot{1, 3}), true},
		{"covers above", a.Covers(Dot{1, 4}), false},
		{"covers absent actor", a.Covers(Dot{3, 1}), false},
		{"nil covers nothing", VV(nil).Covers(Dot{1, 1}), false},
		{"join", a.Join(b), VV{1: 3, 2: 7, 3: 1}},
		{"join nil", VV(nil).Join(nil), VV{}},
		{"join with nil", a.Join(nil), a},
		{"meet", a.Meet(b), VV{2: 5}},
		{"meet nil", a.Meet(nil), VV{}},
		{"meet drops zero entries", VV{1: 0, 2: 4}.Meet(VV{1: 9, 2: 2}), VV{2: 2}},
		{"descends join", a.Join(b).Descends(a) && a.Join(b).Descends(b), true},
		{"not descends", a.Descends(b), false},
		{"descends nil", a.Descends(nil), true},
		{"nil descends empty", VV(nil).Descends(VV{}), true},
		{"equal ignores zero entries", VV{1: 3, 2: 5, 9: 0}.Equal(a), true},
		{"equal nil empty", VV(nil).Equal(VV{}), true},
		{"not equal", a.Equal(b), false},
		{"clone drops zero", VV{1: 0, 2: 1}.Clone(), VV{2: 1}},
		{"clone nil", VV(nil).Clone(), VV{}},
		{"string", VV{0x20: 1, 0x3: 9, 7: 0}.String(), "{0000000000000003:9 0000000000000020:1}"},
		{"string empty", VV(nil).String(), "{}"},
		{"dot string", Dot{0xabc, 17}.String(), "0000000000000abc:17"},
	}
	for _, tt := range tests {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

func TestVVJoinMeetDoNotMutate(t *testing.T) {
	a := VV{1: 3, 2: 5}
	b := VV{2: 7, 3: 1}
	j := a.Join(b)
	m := a.Meet(b)
	j[9], m[9] = 9, 9
	if !reflect.DeepEqual(a, VV{1: 3, 2: 5}) || !reflect.DeepEqual(b, VV{2: 7, 3: 1}) {
		t.Fatalf("inputs changed: %v %v", a, b)
	}
	c := a.Clone()
	c[1] = 100
	if a[1] != 3 {
		t.Fatal("Clone shares the map")
	}
}

// smallVV makes quick's random maps collide on actors and stay valid.
func smallVV(m map[uint8]uint8) VV {
	v := VV{}
	for a, c := range m {
		if c > 0 {
			v[ActorID(a%8+1)] = uint64(c % 16)
		}
	}
	return v.Clone()
}

// The lattice laws of version vectors, against testing/quick's inputs.
func TestVVLatticeLaws(t *testing.T) {
	cfg := &quick.Config{MaxCount: 2000, Rand: rand.New(rand.NewSource(1))}
	laws := map[string]func(x, y, z map[uint8]uint8) bool{
		"join commutative": func(x, y, _ map[uint8]uint8) bool {
			a, b := smallVV(x), smallVV(y)
			return a.Join(b).Equal(b.Join(a))
		},
		"join associative": func(x, y, z map[uint8]uint8) bool {
			a, b, c := smallVV(x), smallVV(y), smallVV(z)
			return a.Join(b).Join(c).Equal(a.Join(b.Join(c)))
		},
		"join idempotent": func(x, _, _ map[uint8]uint8) bool {
			a := smallVV(x)
			return a.Join(a).Equal(a)
		},
		"meet commutative and below both": func(x, y, _ map[uint8]uint8) bool {
			a, b := smallVV(x), smallVV(y)
			m := a.Meet(b)
			return m.Equal(b.Meet(a)) && a.Descends(m) && b.Descends(m)
		},
		"absorption": func(x, y, _ map[uint8]uint8) bool {
			a, b := smallVV(x), smallVV(y)
			return a.Join(a.Meet(b)).Equal(a) && a.Meet(a.Join(b)).Equal(a)
		},
		"descends iff join is identity": func(x, y, _ map[uint8]uint8) bool {
			a, b := smallVV(x), smallVV(y)
			return a.Descends(b) == a.Join(b).Equal(a)
		},
		"covers agrees with descends": func(x, y, _ map[uint8]uint8) bool {
			a, b := smallVV(x), smallVV(y)
			all := true
			for act, c := range b {
				all = all && a.Covers(Dot{act, c})
			}
			return all == a.Descends(b)
		},
		"no zero entries": func(x, y, _ map[uint8]uint8) bool {
			a, b := smallVV(x), smallVV(y)
			for _, v := range []VV{a.Join(b), a.Meet(b), a.Clone()} {
				for _, c := range v {
					if c == 0 {
						return false
					}
				}
			}
			return true
		},
	}
	for name, law := range laws {
		if err := quick.Check(law, cfg); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
