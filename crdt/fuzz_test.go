package crdt

import (
	"bytes"
	"errors"
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
