package crdt

import (
	"bytes"
	"errors"
	"math"
	"testing"
)

var fuzzLimits = Limits{MaxVersions: 16, MaxVVEntries: 16, MaxValueBytes: 64}

func FuzzDecodeRegister(f *testing.F) {
	for _, r := range []Register{
		{},
		Register{}.Write(Dot{1, 2}, VV{3: 4}, 5, []byte("hi"), false),
		Register{}.Write(Dot{1, 1}, nil, 1, []byte("a"), false).
			Join(Register{}.Write(Dot{0xffffffffff, 300}, VV{1: 1}, 1<<40, nil, true)).
			Join(Register{}.Write(Dot{7, 70000}, VV{2: 9, 1 << 63: 1}, 3, []byte{}, false)),
	} {
		b, err := r.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{1, 0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{1, 0x91, 0x96, 1, 2, 5, 0, 0xc4, 2, 'h', 'i', 0x92, 1, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRegister(b, fuzzLimits)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error %v wraps neither ErrCorrupt nor ErrTooLarge", err)
			}
			if _, err2 := DecodeRegister(b, Limits{}); errors.Is(err, ErrCorrupt) && err2 == nil {
				t.Fatalf("corrupt under limits (%v) but accepted without", err)
			}
			return
		}
		if len(r.Versions) > fuzzLimits.MaxVersions {
			t.Fatalf("%d versions accepted, limit %d", len(r.Versions), fuzzLimits.MaxVersions)
		}
		for _, v := range r.Versions {
			if len(v.Ctx) > fuzzLimits.MaxVVEntries || len(v.Value) > fuzzLimits.MaxValueBytes {
				t.Fatalf("version beyond limits accepted: %v", v)
			}
		}
		again, err := r.MarshalBinary()
		if err != nil {
			t.Fatalf("accepted register does not encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n in % x\nout % x", b, again)
		}
		if !r.Join(r).Equal(r) {
			t.Fatal("join not idempotent on a decoded register")
		}
		if _, err := DecodeRegister(b, Limits{}); err != nil {
			t.Fatalf("accepted under limits, rejected without: %v", err)
		}
	})
}

func FuzzDecodeContext(f *testing.F) {
	f.Add("")
	f.Add(EncodeContext(VV{1: 2, 3: 4}))
	f.Add(EncodeContext(VV{1 << 63: 1 << 62, 0xffff: 7}))
	f.Add("AZIBAg")
	f.Add("!!!!")
	f.Fuzz(func(t *testing.T, s string) {
		const maxEntries = 8
		vv, err := DecodeContext(s, maxEntries)
		if err != nil {
			if !errors.Is(err, ErrContext) {
				t.Fatalf("error %v does not wrap ErrContext", err)
			}
			return
		}
		if len(vv) > maxEntries {
			t.Fatalf("%d entries accepted, limit %d", len(vv), maxEntries)
		}
		for a, c := range vv {
			if a == 0 || c == 0 {
				t.Fatalf("zero entry accepted: %v", vv)
			}
		}
		if again := EncodeContext(vv); again != s {
			t.Fatalf("re-encoding differs: %q, want %q", again, s)
		}
	})
}

var fuzzTypeLimits = Limits{MaxVVEntries: 16, MaxMembers: 16, MaxMemberBytes: 32, MaxDots: 16, MaxFields: 8, MaxVersions: 8, MaxValueBytes: 64}

// fuzzSeeds returns encodings of values of every kind, reached by deltas.
func fuzzSeeds(f *testing.F) [][]byte {
	s1 := ORSet{}.Add(1, []byte("a"))
	s2 := s1.Join(s1.Add(0xffffffffff, []byte("b"))).Join(s1.Add(7, []byte{}))
	d := s2.Add(1<<63, []byte("c"))
	r := s2.Join(s2.Remove([]byte("a")))
	m := Map{}.AddCounter(1, "n", -3).Join(Map{}.AddMember(2, "n", []byte("x"))).
		Join(Map{}.WriteRegister("r", Dot{3, 300}, VV{1: 2}, 5, []byte("v"), false))
	var out [][]byte
	for _, v := range []Value{
		Counter(nil), Counter{1: {Inc: 5, Dec: 2}, 1 << 40: {Dec: 1 << 33}},
		ORSet{}, s1, s2, d, r, ORSet{}.Join(d),
		Map{}, m,
		Register{}.Write(Dot{1, 2}, VV{3: 4}, 5, []byte("hi"), false),
	} {
		b, err := v.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return append(out, []byte{}, []byte{2, 0xdd, 0xff, 0xff, 0xff, 0xff}, []byte{3, 0x93, 0x91, 1, 0x90, 0x92, 0x90, 0x92, 0, 3})
}

// fuzzDecode checks one decoder on arbitrary input: errors wrap the
// sentinels, and whatever is accepted is canonical (re-encodes to the same
// bytes), within the limits, and a lattice element (join idempotent).
func fuzzDecode[T interface {
	Value
	Join(T) T
	Equal(T) bool
}](f *testing.F, decode func([]byte, Limits) (T, error), size func(T) (n, max int)) {
	for _, b := range fuzzSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := decode(b, fuzzTypeLimits)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error %v wraps neither ErrCorrupt nor ErrTooLarge", err)
			}
			if _, err2 := decode(b, Limits{}); errors.Is(err, ErrCorrupt) && err2 == nil {
				t.Fatalf("corrupt under limits (%v) but accepted without", err)
			}
			return
		}
		if n, limit := size(v); n > limit {
			t.Fatalf("%d entries accepted, limit %d", n, limit)
		}
		again, err := v.MarshalBinary()
		if err != nil {
			t.Fatalf("accepted value does not encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs:\n in % x\nout % x", b, again)
		}
		if !v.Join(v).Equal(v) {
			t.Fatal("join not idempotent on a decoded value")
		}
		if _, err := decode(b, Limits{}); err != nil {
			t.Fatalf("accepted under limits, rejected without: %v", err)
		}
	})
}

func FuzzDecodeCounter(f *testing.F) {
	fuzzDecode(f, DecodeCounter, func(c Counter) (int, int) { return len(c), fuzzTypeLimits.MaxVVEntries })
}

func FuzzDecodeSet(f *testing.F) {
	fuzzDecode(f, DecodeSet, func(s ORSet) (int, int) {
		for m, ds := range s.entries {
			if len(m) > fuzzTypeLimits.MaxMemberBytes || len(ds) > fuzzTypeLimits.MaxDots {
				return math.MaxInt, 0
			}
		}
		if len(s.ctx.vv) > fuzzTypeLimits.MaxVVEntries || len(s.ctx.cloud) > fuzzTypeLimits.MaxDots {
			return math.MaxInt, 0
		}
		return s.Len(), fuzzTypeLimits.MaxMembers
	})
}

func FuzzDecodeMap(f *testing.F) {
	fuzzDecode(f, DecodeMap, func(m Map) (int, int) { return m.Len(), fuzzTypeLimits.MaxFields })
}

// FuzzDecodeValue checks the dispatch: what DecodeValue accepts, the
// decoder of its kind accepts too, and its kind is its first byte.
func FuzzDecodeValue(f *testing.F) {
	for _, b := range fuzzSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := DecodeValue(b, fuzzTypeLimits)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error %v wraps neither ErrCorrupt nor ErrTooLarge", err)
			}
			return
		}
		if k, err := KindOf(b); err != nil || k != v.Kind() {
			t.Fatalf("KindOf = %v %v, decoded a %v", k, err, v.Kind())
		}
		again, err := v.MarshalBinary()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("re-encoding differs (%v):\n in % x\nout % x", err, b, again)
		}
		j, err := JoinValues(v, Zero(v.Kind()))
		if err != nil || !EqualValues(j, v) {
			t.Fatalf("joining the empty %v changes it: %v %v", v.Kind(), j, err)
		}
	})
}
