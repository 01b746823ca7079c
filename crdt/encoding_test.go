package crdt

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"math/rand"
	"strings"
	"testing"
	"testing/quick"
)

// hexb turns "01 91 c4" into bytes.
func hexb(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

var noLimits = Limits{}

// golden is Register{A=1: 1:2 ctx {3:4} hlc 5 value "hi"}.
const golden = "01 91 96 01 02 05 00 c4 02 68 69 92 03 04"

func TestRegisterGoldenEncoding(t *testing.T) {
	r := Register{}.Write(Dot{1, 2}, VV{3: 4}, 5, []byte("hi"), false)
	b, err := r.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if want := hexb(t, golden); !bytes.Equal(b, want) {
		t.Fatalf("encoding % x\nwant       % x", b, want)
	}
	del := Register{}.Write(Dot{1, 3}, nil, 0x1234, []byte("ignored"), true)
	b, err = del.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if want := hexb(t, "01 91 96 01 03 cd 12 34 01 c4 00 90"); !bytes.Equal(b, want) {
		t.Fatalf("tombstone encoding % x\nwant                 % x", b, want)
	}
	b, err = Register{}.MarshalBinary()
	if err != nil || !bytes.Equal(b, hexb(t, "01 90")) {
		t.Fatalf("empty register encodes to % x, %v", b, err)
	}
}

func TestRegisterRoundTrip(t *testing.T) {
	check := func(r Register) {
		t.Helper()
		b, err := r.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeRegister(b, noLimits)
		if err != nil {
			t.Fatalf("decode %v: %v", r, err)
		}
		if !got.Equal(r) {
			t.Fatalf("round trip: %v, want %v", got, r)
		}
		again, _ := got.MarshalBinary()
		if !bytes.Equal(again, b) {
			t.Fatal("re-encoding differs")
		}
		for _, v := range got.Versions {
			if !v.Deleted && v.Value == nil {
				t.Fatalf("live empty value decoded as nil: %v", v)
			}
		}
	}
	check(Register{})
	check(Register{}.Write(Dot{1, 1}, nil, 0, []byte{}, false))
	check(Register{}.Write(Dot{^ActorID(0), ^uint64(0)}, VV{1: ^uint64(0)}, ^Timestamp(0),
		bytes.Repeat([]byte{0xab}, 70000), false))
	for seed := range uint64(20) {
		s := newSim(t, 5000+seed)
		s.run(150)
		for _, r := range s.pool {
			check(r)
		}
	}
}

func TestMarshalRejectsNonCanonical(t *testing.T) {
	v := func(a ActorID, c uint64, ctx VV) Version {
		return Version{Dot: Dot{a, c}, Ctx: ctx, Value: []byte("x")}
	}
	bad := map[string]Register{
		"invalid dot":        {Versions: []Version{v(0, 1, nil)}},
		"unsorted":           {Versions: []Version{v(2, 1, nil), v(1, 1, nil)}},
		"duplicate":          {Versions: []Version{v(1, 1, nil), v(1, 1, nil)}},
		"covered":            {Versions: []Version{v(1, 1, nil), v(2, 1, VV{1: 1})}},
		"covers own dot":     {Versions: []Version{v(1, 1, VV{1: 1})}},
		"zero context actor": {Versions: []Version{v(1, 1, VV{0: 3})}},
		"tombstone value":    {Versions: []Version{{Dot: Dot{1, 1}, Deleted: true, Value: []byte("x")}}},
	}
	for name, r := range bad {
		if _, err := r.MarshalBinary(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: MarshalBinary error %v, want ErrInvalid", name, err)
		}
	}
}

func TestDecodeRegisterRejects(t *testing.T) {
	// v is a minimal version (a, c) with an empty value and context.
	v := func(a, c string) string { return "96 " + a + " " + c + " 00 00 c4 00 90" }
	tests := []struct {
		name string
		in   string
		lim  Limits
		want error
	}{
		{"empty", "", noLimits, ErrCorrupt},
		{"format 0", "00" + golden[2:], noLimits, ErrCorrupt},
		{"format 2", "02" + golden[2:], noLimits, ErrCorrupt},
		{"format only", "01", noLimits, ErrCorrupt},
		{"trailing byte", golden + " 00", noLimits, ErrCorrupt},
		{"nil versions", "01 c0", noLimits, ErrCorrupt},
		{"versions as map", "01 81 01 01", noLimits, ErrCorrupt},
		{"versions array16 for one", "01 dc 00 01" + golden[5:], noLimits, ErrCorrupt},
		{"more versions than input", "01 dd 00 01 00 00 96", noLimits, ErrCorrupt},
		{"five fields", "01 91 95 01 02 05 00 c4 02 68 69", noLimits, ErrCorrupt},
		{"seven fields", "01 91 97 01 02 05 00 c4 02 68 69 92 03 04 00", noLimits, ErrCorrupt},
		{"zero actor", "01 91 96 00 02 05 00 c4 02 68 69 92 03 04", noLimits, ErrCorrupt},
		{"zero counter", "01 91 96 01 00 05 00 c4 02 68 69 92 03 04", noLimits, ErrCorrupt},
		{"counter as uint8", "01 91 96 01 cc 02 05 00 c4 02 68 69 92 03 04", noLimits, ErrCorrupt},
		{"counter as int8", "01 91 96 01 d0 02 05 00 c4 02 68 69 92 03 04", noLimits, ErrCorrupt},
		{"hlc as uint64", "01 91 96 01 02 cf 00 00 00 00 00 00 00 05 00 c4 02 68 69 92 03 04", noLimits, ErrCorrupt},
		{"negative actor", "01 91 96 ff 02 05 00 c4 02 68 69 92 03 04", noLimits, ErrCorrupt},
		{"counter as float", "01 91 96 01 ca 00 00 00 00 05 00 c4 02 68 69 92 03 04", noLimits, ErrCorrupt},
		{"counter nil", "01 91 96 01 c0 05 00 c4 02 68 69 92 03 04", noLimits, ErrCorrupt},
		{"unknown flags", "01 91 96 01 02 05 02 c4 02 68 69 92 03 04", noLimits, ErrCorrupt},
		{"tombstone with value", "01 91 96 01 02 05 01 c4 02 68 69 92 03 04", noLimits, ErrCorrupt},
		{"value as str", "01 91 96 01 02 05 00 a2 68 69 92 03 04", noLimits, ErrCorrupt},
		{"value nil", "01 91 96 01 02 05 00 c0 92 03 04", noLimits, ErrCorrupt},
		{"value bin16 for short", "01 91 96 01 02 05 00 c5 00 02 68 69 92 03 04", noLimits, ErrCorrupt},
		{"value longer than input", "01 91 96 01 02 05 00 c6 7f ff ff ff 68 69", noLimits, ErrCorrupt},
		{"context nil", "01 91 96 01 02 05 00 c4 02 68 69 c0", noLimits, ErrCorrupt},
		{"context odd", "01 91 96 01 02 05 00 c4 02 68 69 93 03 04 05", noLimits, ErrCorrupt},
		{"context zero actor", "01 91 96 01 02 05 00 c4 02 68 69 92 00 04", noLimits, ErrCorrupt},
		{"context zero counter", "01 91 96 01 02 05 00 c4 02 68 69 92 03 00", noLimits, ErrCorrupt},
		{"context unsorted", "01 91 96 01 02 05 00 c4 02 68 69 94 05 01 03 01", noLimits, ErrCorrupt},
		{"context duplicate actor", "01 91 96 01 02 05 00 c4 02 68 69 94 03 01 03 02", noLimits, ErrCorrupt},
		{"context covers own dot", "01 91 96 01 02 05 00 c4 02 68 69 92 01 02", noLimits, ErrCorrupt},
		{"context covers beyond own dot", "01 91 96 01 02 05 00 c4 02 68 69 92 01 07", noLimits, ErrCorrupt},
		{"context longer than input", "01 91 96 01 02 05 00 c4 02 68 69 dd 7f ff ff ff 03 04", noLimits, ErrCorrupt},
		{"versions unsorted", "01 92 " + v("02", "01") + " " + v("01", "01"), noLimits, ErrCorrupt},
		{"versions unsorted by counter", "01 92 " + v("01", "02") + " " + v("01", "01"), noLimits, ErrCorrupt},
		{"duplicate version", "01 92 " + v("01", "01") + " " + v("01", "01"), noLimits, ErrCorrupt},
		{"superseded version kept", "01 92 " + v("01", "01") + " 96 02 01 00 00 c4 00 92 01 01", noLimits, ErrCorrupt},
		{"too many versions", "01 92 " + v("01", "01") + " " + v("02", "01"), Limits{MaxVersions: 1}, ErrTooLarge},
		{"too many context entries", "01 91 96 01 02 05 00 c4 02 68 69 94 03 04 05 06", Limits{MaxVVEntries: 1}, ErrTooLarge},
		{"value too large", golden, Limits{MaxValueBytes: 1}, ErrTooLarge},
	}
	for _, tt := range tests {
		_, err := DecodeRegister(hexb(t, tt.in), tt.lim)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: error %v, want %v", tt.name, err, tt.want)
		}
	}
	// The limits are inclusive.
	lim := Limits{MaxVersions: 1, MaxVVEntries: 1, MaxValueBytes: 2}
	if _, err := DecodeRegister(hexb(t, golden), lim); err != nil {
		t.Errorf("golden at the limits: %v", err)
	}
	// Every proper prefix of a valid encoding is rejected.
	r := Register{}.Write(Dot{1, 2}, VV{3: 4, 0xffffffff: 1 << 40}, 5, []byte("hello"), false).
		Join(Register{}.Write(Dot{9, 1}, nil, 6, nil, true))
	b, err := r.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	for n := range len(b) {
		if _, err := DecodeRegister(b[:n], noLimits); !errors.Is(err, ErrCorrupt) {
			t.Errorf("prefix of %d bytes: error %v, want ErrCorrupt", n, err)
		}
	}
}

// A claimed length is checked against the input before anything is
// allocated.
func TestDecodeRegisterDoesNotTrustLengths(t *testing.T) {
	for _, in := range []string{
		"01 dd ff ff ff ff",                               // 4G versions
		"01 91 96 01 02 05 00 c6 ff ff ff ff",             // 4 GiB value
		"01 91 96 01 02 05 00 c4 00 dd ff ff ff ff 01 01", // 4G context integers
	} {
		b := hexb(t, in)
		allocs := testing.AllocsPerRun(10, func() { _, _ = DecodeRegister(b, noLimits) })
		if allocs > 20 {
			t.Errorf("%s: %v allocations", in, allocs)
		}
	}
}

func TestContextRoundTrip(t *testing.T) {
	if EncodeContext(nil) != "" || EncodeContext(VV{7: 0}) != "" {
		t.Fatal("empty context does not encode to the empty token")
	}
	vv, err := DecodeContext("", 4)
	if err != nil || vv == nil || len(vv) != 0 {
		t.Fatalf(`DecodeContext("") = %v, %v; want an empty, non-nil VV`, vv, err)
	}
	if got, want := EncodeContext(VV{3: 4, 1: 2}), base64.RawURLEncoding.EncodeToString(hexb(t, "01 94 01 02 03 04")); got != want {
		t.Fatalf("EncodeContext = %q, want %q", got, want)
	}
	roundTrip := func(m map[uint64]uint64) bool {
		vv := VV{}
		for a, c := range m {
			if a != 0 && c != 0 {
				vv[ActorID(a)] = c
			}
		}
		s := EncodeContext(vv)
		got, err := DecodeContext(s, len(vv))
		return err == nil && got.Equal(vv) && len(got) == len(vv) && EncodeContext(got) == s
	}
	if err := quick.Check(roundTrip, &quick.Config{MaxCount: 500, Rand: rand.New(rand.NewSource(2))}); err != nil {
		t.Fatal(err)
	}
}

func TestDecodeContextRejects(t *testing.T) {
	tok := func(h string) string { return base64.RawURLEncoding.EncodeToString(hexb(t, h)) }
	valid := tok("01 92 01 02")
	// Same bytes, nonzero unused bits in the last character.
	last := strings.IndexByte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", valid[len(valid)-1])
	sloppy := valid[:len(valid)-1] + string("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[last+1])
	if raw, err := base64.RawURLEncoding.DecodeString(sloppy); err != nil || !bytes.Equal(raw, hexb(t, "01 92 01 02")) {
		t.Fatalf("test setup: %q does not decode leniently: %v", sloppy, err)
	}
	tests := []struct {
		name string
		in   string
		max  int
	}{
		{"bad characters", "!!!!", 8},
		{"padding", valid + "==", 8},
		{"standard encoding", base64.StdEncoding.EncodeToString(hexb(t, "01 92 01 02")), 8},
		{"nonzero unused bits", sloppy, 8},
		{"newline", valid[:2] + "\n" + valid[2:], 8},
		{"format only", tok("01"), 8},
		{"unknown format", tok("02 92 01 02"), 8},
		{"empty array", tok("01 90"), 8},
		{"nil array", tok("01 c0"), 8},
		{"odd length", tok("01 93 01 02 03"), 8},
		{"zero actor", tok("01 92 00 02"), 8},
		{"zero counter", tok("01 92 01 00"), 8},
		{"unsorted", tok("01 94 03 04 01 02"), 8},
		{"duplicate actor", tok("01 94 01 02 01 03"), 8},
		{"trailing bytes", tok("01 92 01 02 00"), 8},
		{"non-canonical integer", tok("01 92 cc 01 02"), 8},
		{"non-canonical array", tok("01 dc 00 02 01 02"), 8},
		{"length beyond input", tok("01 dd 7f ff ff ff 01 02"), 8},
		{"too many entries", tok("01 94 01 02 03 04"), 1},
		{"no entries allowed", valid, 0},
		{"too long to hold max entries", strings.Repeat("A", 1000), 4},
	}
	for _, tt := range tests {
		if vv, err := DecodeContext(tt.in, tt.max); !errors.Is(err, ErrContext) {
			t.Errorf("%s: DecodeContext(%q) = %v, %v; want ErrContext", tt.name, tt.in, vv, err)
		}
	}
	if _, err := DecodeContext(valid, 1); err != nil {
		t.Errorf("valid token at the limit: %v", err)
	}
}
