package crdt

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func mustMarshal(t testing.TB, v Value) []byte {
	t.Helper()
	b, err := v.MarshalBinary()
	if err != nil {
		t.Fatalf("marshal %v: %v", v, err)
	}
	return b
}

// Increments made concurrently on several actors sum exactly, whatever the
// order the states meet in.
func TestCounterConcurrentSum(t *testing.T) {
	replicas := make([]Counter, 4)
	var want int64
	for round := range 50 {
		for i := range replicas {
			n := int64(round*7+i*3) - 60
			want += n
			replicas[i] = replicas[i].Join(replicas[i].Add(ActorID(i+1), n))
		}
	}
	ab := replicas[0].Join(replicas[1])
	cd := replicas[3].Join(replicas[2])
	for _, c := range []Counter{ab.Join(cd), cd.Join(ab), replicas[2].Join(ab).Join(replicas[3]).Join(ab)} {
		if v, exact := c.Value(); v != want || !exact {
			t.Fatalf("sum %d (exact %v), want %d", v, exact, want)
		}
	}
}

func TestCounterSaturates(t *testing.T) {
	var c Counter
	c = c.Join(c.Add(1, math.MaxInt64))
	if v, exact := c.Value(); v != math.MaxInt64 || !exact {
		t.Fatalf("MaxInt64: %d %v", v, exact)
	}
	c = c.Join(c.Add(2, 1))
	if v, exact := c.Value(); v != math.MaxInt64 || exact {
		t.Fatalf("MaxInt64+1: %d %v, want saturated", v, exact)
	}
	c = c.Join(c.Add(3, math.MinInt64)).Join(c.Add(3, math.MinInt64).Add(3, 0))
	if v, exact := c.Value(); v != 0 || !exact {
		t.Fatalf("MaxInt64+1-2^63: %d %v, want 0", v, exact)
	}
	if e := c[3]; e.Dec != 1<<63 || e.Inc != 0 {
		t.Fatalf("MinInt64 recorded as %+v", e)
	}
	// Below the int64 range.
	var d Counter
	d = d.Join(d.Add(1, math.MinInt64))
	if v, exact := d.Value(); v != math.MinInt64 || !exact {
		t.Fatalf("MinInt64: %d %v", v, exact)
	}
	d = d.Join(d.Add(2, -1))
	if v, exact := d.Value(); v != math.MinInt64 || exact {
		t.Fatalf("MinInt64-1: %d %v, want saturated", v, exact)
	}
	// One actor's total saturates instead of wrapping.
	var e Counter
	for range 3 {
		e = e.Join(e.Add(1, math.MaxInt64))
	}
	if e[1].Inc != math.MaxUint64 {
		t.Fatalf("3*MaxInt64 recorded as %d, want saturation at 2^64-1", e[1].Inc)
	}
	// Sums beyond 64 bits are exact before saturating to the result.
	big := Counter{1: {Inc: math.MaxUint64}, 2: {Inc: math.MaxUint64}, 3: {Dec: math.MaxUint64}, 4: {Dec: math.MaxUint64 - 5}}
	if v, exact := big.Value(); v != 5 || !exact {
		t.Fatalf("128-bit sum: %d %v, want 5", v, exact)
	}
}

func TestCounterAddDelta(t *testing.T) {
	c := Counter{1: {Inc: 3}, 2: {Dec: 4}}
	d := c.Add(2, 10)
	if !d.Equal(Counter{2: {Inc: 10, Dec: 4}}) {
		t.Fatalf("delta %v", d)
	}
	if !c.Equal(Counter{1: {Inc: 3}, 2: {Dec: 4}}) {
		t.Fatalf("Add modified its receiver: %v", c)
	}
	if d := c.Add(1, 0); len(d) != 0 {
		t.Fatalf("adding 0 gives %v", d)
	}
	if !(Counter{1: {}}).Equal(nil) || !(Counter{1: {}}).IsZero() {
		t.Fatal("zero entries are not ignored")
	}
}

// setOf applies adds on behalf of actor to s.
func setOf(s ORSet, actor ActorID, members ...string) ORSet {
	for _, m := range members {
		s = s.Join(s.Add(actor, []byte(m)))
	}
	return s
}

func TestORSetAddWins(t *testing.T) {
	a, b := ActorID(1), ActorID(2)
	x := []byte("x")
	both := func(name string, p, q ORSet, want bool) {
		t.Helper()
		pq, qp := p.Join(q), q.Join(p)
		if !pq.Equal(qp) || pq.Contains(x) != want {
			t.Errorf("%s: %v / %v, want contains=%v", name, pq, qp, want)
		}
	}

	// A adds x, B sees it; A removes x while B adds it again.
	base := setOf(ORSet{}, a, "x")
	repA := base.Join(base.Remove(x))
	repB := base.Join(base.Add(b, x))
	both("re-add concurrent with remove", repA, repB, true)

	// B removes x without having seen A's add: nothing to remove.
	repA = setOf(ORSet{}, a, "x")
	repB = ORSet{}.Join(ORSet{}.Remove(x))
	both("remove of an unseen add", repA, repB, true)

	// Both add x concurrently; A removes only what it saw.
	repA = setOf(ORSet{}, a, "x")
	repB = setOf(ORSet{}, b, "x")
	repA = repA.Join(repA.Remove(x))
	both("remove concurrent with another add", repA, repB, true)
	if got := repA.Join(repB).Dots(x); !slices.Equal(got, []Dot{{b, 1}}) {
		t.Errorf("surviving dots %v, want B's", got)
	}

	// A remove that saw every add wins.
	merged := repA.Join(repB)
	both("remove after seeing all", merged.Join(merged.Remove(x)), repB, false)

	// Both remove concurrently.
	base = setOf(ORSet{}, a, "x")
	both("concurrent removes", base.Join(base.Remove(x)), base.Join(base.Remove(x)), false)

	// The remove's delta arrives before the add it removes: still removed.
	add := ORSet{}.Add(a, x)
	rem := add.Remove(x)
	c := ORSet{}.Join(rem)
	if c.Contains(x) {
		t.Fatal("remove alone adds x")
	}
	if c = c.Join(add); c.Contains(x) {
		t.Errorf("late add resurrected a removed member: %v", c)
	}

	// Deltas of one actor arriving out of order leave a cloud, which the
	// missing delta fills.
	s1 := ORSet{}.Add(a, []byte("p"))
	d2 := s1.Add(a, []byte("q"))
	r := ORSet{}.Join(d2)
	if cloud := r.Context().Cloud(); !slices.Equal(cloud, []Dot{{a, 2}}) {
		t.Fatalf("cloud %v, want [A:2]", cloud)
	}
	r = r.Join(s1)
	if len(r.Context().Cloud()) != 0 || r.Context().VV()[a] != 2 || r.Len() != 2 {
		t.Fatalf("after filling the gap: %v", r)
	}
}

func TestORSetMutatorsDoNotModify(t *testing.T) {
	s := setOf(ORSet{}, 1, "a", "b")
	before := mustMarshal(t, s)
	s.Add(2, []byte("a"))
	s.Remove([]byte("b"))
	s.Join(s.Remove([]byte("a")))
	c := s.Join(ORSet{})
	c.Merge(s.Remove([]byte("a")))
	c.Merge(s.Add(3, []byte("z")))
	if !bytes.Equal(mustMarshal(t, s), before) {
		t.Fatalf("a method modified its receiver: %v", s)
	}
	if c.Contains([]byte("a")) || !c.Contains([]byte("z")) || !c.Contains([]byte("b")) {
		t.Fatalf("merged copy %v", c)
	}
	if got := s.Members(); len(got) != 2 || string(got[0]) != "a" || string(got[1]) != "b" {
		t.Fatalf("members %q", got)
	}
}

// A one-member delta on a 100k-member set encodes in the size of the
// member and a dot, not of the set.
func TestORSetDeltaSize(t *testing.T) {
	s := bigSet(100_000)
	full := len(mustMarshal(t, s))
	member := []byte("a member added after the set grew large")
	for name, d := range map[string]ORSet{
		"add":              s.Add(0x9e3779b97f4a7c15, member),
		"add by an actor":  s.Add(benchActor(3), member),
		"re-add":           s.Add(benchActor(5), []byte(benchMember(17))),
		"remove":           s.Remove([]byte(benchMember(42))),
		"add after remove": s.Join(s.Remove([]byte(benchMember(42)))).Add(benchActor(1), []byte(benchMember(42))),
	} {
		enc := mustMarshal(t, d)
		if len(enc) >= 100+len(member) {
			t.Errorf("%s: delta of %d bytes (full state %d bytes)", name, len(enc), full)
		}
		// Shipped, it does what the mutation does.
		back, err := DecodeSet(enc, Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if !s.Join(back).Equal(s.Join(d)) {
			t.Errorf("%s: decoded delta joins differently", name)
		}
	}
	t.Logf("100k-member set: %d bytes", full)
}

func TestMapTypeConflict(t *testing.T) {
	a := Map{}.AddCounter(1, "f", 5)
	b := Map{}.AddMember(2, "f", []byte("m"))
	ab, ba := a.Join(b), b.Join(a)
	if !ab.Equal(ba) || !bytes.Equal(mustMarshal(t, ab), mustMarshal(t, ba)) {
		t.Fatalf("type conflict merges differently: %v / %v", ab, ba)
	}
	fs := ab.Fields()
	if len(fs) != 2 || fs[0].Name != "f" || fs[0].Value.Kind() != KindCounter || fs[1].Value.Kind() != KindSet {
		t.Fatalf("fields %v", fs)
	}
	if v, _ := ab.Counter("f").Value(); v != 5 || !ab.Set("f").Contains([]byte("m")) {
		t.Fatalf("conflict lost a side: %v", ab)
	}
	if _, ok := ab.Get("f", KindRegister); ok {
		t.Fatal("register field out of nowhere")
	}
	if _, err := MapDelta("m", Map{}); err == nil {
		t.Fatal("nested map accepted")
	}
	if _, err := MapDelta("m", nil); err == nil {
		t.Fatal("nil field value accepted")
	}
	if d, err := MapDelta("m", Counter{}); err != nil || d.Len() != 0 {
		t.Fatalf("empty field delta: %v %v", d, err)
	}
	// Register fields: the delta is the field's whole register.
	w := ab.WriteRegister("r", Dot{1, 9}, nil, 3, []byte("v"), false)
	if lv := ab.Join(w).Register("r").Live(); len(lv) != 1 || string(lv[0].Value) != "v" {
		t.Fatalf("register field %v", ab.Join(w))
	}
	// Removing a field's members leaves it empty but present only while
	// its set remembers the removal.
	rm := ab.Join(ab.RemoveMember("f", []byte("m")))
	if rm.Set("f").Len() != 0 || rm.Len() != 2 {
		t.Fatalf("after removing the member: %v", rm)
	}
}

func TestJoinValues(t *testing.T) {
	vals := []Value{
		Register{}.Write(Dot{1, 1}, nil, 1, []byte("r"), false),
		Counter{}.Add(1, 1),
		ORSet{}.Add(1, []byte("s")),
		Map{}.AddCounter(1, "c", 1),
	}
	for i, a := range vals {
		for j, b := range vals {
			got, err := JoinValues(a, b)
			if i != j {
				if !errors.Is(err, ErrKindMismatch) {
					t.Errorf("%v ⊔ %v: %v, want ErrKindMismatch", a.Kind(), b.Kind(), err)
				}
				continue
			}
			if err != nil || !EqualValues(got, a) {
				t.Errorf("%v ⊔ itself: %v %v", a.Kind(), got, err)
			}
		}
		if _, err := JoinValues(a, nil); !errors.Is(err, ErrKindMismatch) {
			t.Errorf("%v ⊔ nil: %v", a.Kind(), err)
		}
		enc := mustMarshal(t, a)
		if k, err := KindOf(enc); err != nil || k != a.Kind() || Kind(enc[0]) != a.Kind() {
			t.Errorf("KindOf(%v) = %v %v", a.Kind(), k, err)
		}
		back, err := DecodeValue(enc, Limits{})
		if err != nil || !EqualValues(back, a) {
			t.Errorf("DecodeValue(%v) = %v %v", a.Kind(), back, err)
		}
		if z := Zero(a.Kind()); z == nil || z.Kind() != a.Kind() || !isZeroValue(z) {
			t.Errorf("Zero(%v) = %v", a.Kind(), z)
		}
	}
	if Zero(0) != nil || Zero(5) != nil || Kind(5).Valid() || Kind(0).String() != "kind(0)" {
		t.Error("invalid kinds accepted")
	}
}

// Golden encodings: the byte layouts doc.go describes.
func TestTypesGoldenEncoding(t *testing.T) {
	s1 := ORSet{}.Add(1, []byte("a"))
	d2 := s1.Add(1, []byte("b"))
	tests := []struct {
		name string
		v    Value
		want string
	}{
		{"empty counter", Counter(nil), "02 90"},
		{"counter", Counter{1: {Inc: 5, Dec: 2}, 0x100: {Dec: 1}}, "02 96 01 05 02 cd 01 00 00 01"},
		{"empty set", ORSet{}, "03 93 90 90 92 90 90"},
		{"set", s1, "03 93 91 01 91 92 c4 01 61 92 00 01 92 92 00 01 90"},
		{"delta with a cloud", d2, "03 93 91 01 91 92 c4 01 62 92 00 02 92 90 90"},
		{"empty map", Map{}, "04 90"},
		{"map", Map{}.AddCounter(1, "n", 5), "04 91 92 c4 01 6e c4 05 02 93 01 05 00"},
	}
	for _, tt := range tests {
		got := mustMarshal(t, tt.v)
		if want := hexb(t, tt.want); !bytes.Equal(got, want) {
			t.Errorf("%s: % x\nwant % x", tt.name, got, want)
		}
		back, err := DecodeValue(got, Limits{})
		if err != nil || !EqualValues(back, tt.v) {
			t.Errorf("%s: decoded %v, %v", tt.name, back, err)
		}
		// Every proper prefix is rejected.
		for n := range len(got) {
			if _, err := DecodeValue(got[:n], Limits{}); !errors.Is(err, ErrCorrupt) {
				t.Errorf("%s: prefix of %d bytes: %v", tt.name, n, err)
			}
		}
	}
}

func TestMarshalTypesRejectsNonCanonical(t *testing.T) {
	ctx := NewDotContext(VV{1: 2})
	bad := map[string]Value{
		"counter actor 0":      Counter{0: {Inc: 1}},
		"set dot not in ctx":   ORSet{entries: map[string][]Dot{"a": {{1, 3}}}, ctx: ctx},
		"set member no dots":   ORSet{entries: map[string][]Dot{"a": {}}, ctx: ctx},
		"set shared dot":       ORSet{entries: map[string][]Dot{"a": {{1, 1}}, "b": {{1, 1}}}, ctx: ctx},
		"set unsorted dots":    ORSet{entries: map[string][]Dot{"a": {{1, 2}, {1, 1}}}, ctx: ctx},
		"set cloud not beyond": ORSet{ctx: DotContext{vv: VV{1: 2}, cloud: map[Dot]struct{}{{1, 3}: {}}}},
		"map nested":           Map{fields: map[FieldKey]Value{{"m", KindMap}: Map{}.AddCounter(1, "c", 1)}},
		"map empty field":      Map{fields: map[FieldKey]Value{{"m", KindCounter}: Counter{}}},
		"map wrong kind":       Map{fields: map[FieldKey]Value{{"m", KindSet}: Counter{1: {Inc: 1}}}},
		"map bad field":        Map{fields: map[FieldKey]Value{{"m", KindCounter}: Counter{0: {Inc: 1}}}},
	}
	for name, v := range bad {
		if _, err := v.MarshalBinary(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: MarshalBinary error %v, want ErrInvalid", name, err)
		}
	}
}

func TestDecodeTypesRejects(t *testing.T) {
	tests := []struct {
		name string
		in   string
		lim  Limits
		want error
	}{
		{"unknown tag", "05 90", noLimits, ErrCorrupt},
		{"tag 0", "00 90", noLimits, ErrCorrupt},
		{"counter not triples", "02 92 01 05", noLimits, ErrCorrupt},
		{"counter actor 0", "02 93 00 05 02", noLimits, ErrCorrupt},
		{"counter zero entry", "02 93 01 00 00", noLimits, ErrCorrupt},
		{"counter unsorted", "02 96 02 01 00 01 01 00", noLimits, ErrCorrupt},
		{"counter duplicate", "02 96 01 01 00 01 02 00", noLimits, ErrCorrupt},
		{"counter uint8 for small", "02 93 01 cc 05 00", noLimits, ErrCorrupt},
		{"counter trailing", "02 90 00", noLimits, ErrCorrupt},
		{"counter too many", "02 96 01 01 00 02 01 00", Limits{MaxVVEntries: 1}, ErrTooLarge},
		{"counter huge length", "02 dd ff ff ff ff", noLimits, ErrCorrupt},
		{"set two parts", "03 92 90 92 90 90", noLimits, ErrCorrupt},
		{"set member without dots", "03 93 91 01 91 92 c4 01 61 90 92 92 00 01 90", noLimits, ErrCorrupt},
		{"set member dot extends vector", "03 93 91 01 91 92 c4 01 61 92 00 02 92 92 00 01 90", noLimits, ErrCorrupt},
		{"set members unsorted", "03 93 91 01 92 92 c4 01 62 92 00 01 92 c4 01 61 92 00 02 92 92 00 02 90", noLimits, ErrCorrupt},
		{"set members duplicate", "03 93 91 01 92 92 c4 01 61 92 00 01 92 c4 01 61 92 00 02 92 92 00 02 90", noLimits, ErrCorrupt},
		{"set dot shared", "03 93 91 01 92 92 c4 01 61 92 00 01 92 c4 01 62 92 00 01 92 92 00 01 90", noLimits, ErrCorrupt},
		{"set dots unsorted", "03 93 91 01 91 92 c4 01 61 94 00 02 00 01 92 92 00 02 90", noLimits, ErrCorrupt},
		{"set dot zero", "03 93 91 01 91 92 c4 01 61 92 00 00 92 92 00 01 90", noLimits, ErrCorrupt},
		{"set member as str", "03 93 91 01 91 92 a1 61 92 00 01 92 92 00 01 90", noLimits, ErrCorrupt},
		{"set cloud covered", "03 93 91 01 90 92 92 00 02 92 00 02", noLimits, ErrCorrupt},
		{"set cloud adjacent", "03 93 91 01 90 92 92 00 02 92 00 03", noLimits, ErrCorrupt},
		{"set cloud first dot", "03 93 91 01 90 92 90 92 00 01", noLimits, ErrCorrupt},
		{"set cloud unsorted", "03 93 91 01 90 92 90 94 00 05 00 03", noLimits, ErrCorrupt},
		{"set cloud lists a member dot", "03 93 91 01 91 92 c4 01 61 92 00 05 92 90 92 00 05", noLimits, ErrCorrupt},
		{"set actor index out of range", "03 93 91 01 91 92 c4 01 61 92 01 01 92 92 00 01 90", noLimits, ErrCorrupt},
		{"set actor unused", "03 93 92 01 02 91 92 c4 01 61 92 00 01 92 92 00 01 90", noLimits, ErrCorrupt},
		{"set actors unsorted", "03 93 92 02 01 90 92 94 00 01 01 01 90", noLimits, ErrCorrupt},
		{"set actor zero", "03 93 91 00 90 92 92 00 01 90", noLimits, ErrCorrupt},
		{"set vector actor twice", "03 93 91 01 90 92 94 00 01 00 02 90", noLimits, ErrCorrupt},
		{"set vector zero counter", "03 93 91 01 90 92 92 00 00 90", noLimits, ErrCorrupt},
		{"set huge members", "03 93 90 dd ff ff ff ff", noLimits, ErrCorrupt},
		{"set huge actors", "03 93 dd ff ff ff ff", noLimits, ErrCorrupt},
		{"set too many members", "03 93 91 01 92 92 c4 01 61 92 00 01 92 c4 01 62 92 00 02 92 92 00 02 90", Limits{MaxMembers: 1}, ErrTooLarge},
		{"set member too long", "03 93 91 01 91 92 c4 02 61 61 92 00 01 92 92 00 01 90", Limits{MaxMemberBytes: 1}, ErrTooLarge},
		{"set too many dots", "03 93 91 01 91 92 c4 01 61 94 00 01 00 02 92 92 00 02 90", Limits{MaxDots: 1}, ErrTooLarge},
		{"set cloud too large", "03 93 91 01 90 92 90 94 00 05 00 07", Limits{MaxDots: 1}, ErrTooLarge},
		{"set implicit cloud too large", "03 93 91 01 92 92 c4 01 61 92 00 05 92 c4 01 62 92 00 07 92 90 90", Limits{MaxDots: 1}, ErrTooLarge},
		{"set too many actors", "03 93 92 01 02 90 92 94 00 01 01 01 90", Limits{MaxVVEntries: 1}, ErrTooLarge},
		{"map nested", "04 91 92 c4 01 6d c4 02 04 90", noLimits, ErrCorrupt},
		{"map empty field", "04 91 92 c4 01 6e c4 02 02 90", noLimits, ErrCorrupt},
		{"map field corrupt", "04 91 92 c4 01 6e c4 05 02 93 00 05 00", noLimits, ErrCorrupt},
		{"map field trailing", "04 91 92 c4 01 6e c4 06 02 93 01 05 00 00", noLimits, ErrCorrupt},
		{"map field bad tag", "04 91 92 c4 01 6e c4 02 09 90", noLimits, ErrCorrupt},
		{"map fields unsorted", "04 92 92 c4 01 6f c4 05 02 93 01 05 00 92 c4 01 6e c4 05 02 93 01 05 00", noLimits, ErrCorrupt},
		{"map fields duplicate", "04 92 92 c4 01 6e c4 05 02 93 01 05 00 92 c4 01 6e c4 05 02 93 01 06 00", noLimits, ErrCorrupt},
		{"map too many fields", "04 92 92 c4 01 6e c4 05 02 93 01 05 00 92 c4 01 6f c4 05 02 93 01 05 00", Limits{MaxFields: 1}, ErrTooLarge},
		{"map name too long", "04 91 92 c4 02 6e 6e c4 05 02 93 01 05 00", Limits{MaxMemberBytes: 1}, ErrTooLarge},
		{"map field beyond limits", "04 91 92 c4 01 6e c4 08 02 96 01 05 00 02 01 00", Limits{MaxVVEntries: 1}, ErrTooLarge},
		{"map huge fields", "04 dd ff ff ff ff", noLimits, ErrCorrupt},
	}
	for _, tt := range tests {
		_, err := DecodeValue(hexb(t, tt.in), tt.lim)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: error %v, want %v", tt.name, err, tt.want)
		}
	}
	// Same kind decoders refuse other kinds.
	for _, f := range []func([]byte) error{
		func(b []byte) error { _, err := DecodeCounter(b, noLimits); return err },
		func(b []byte) error { _, err := DecodeSet(b, noLimits); return err },
		func(b []byte) error { _, err := DecodeMap(b, noLimits); return err },
	} {
		if err := f(hexb(t, golden)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("a register decoded as another kind: %v", err)
		}
	}
	// Fields with two kinds under one name are in kind order.
	conflict := Map{}.AddCounter(1, "f", 1).Join(Map{}.AddMember(1, "f", []byte("m")))
	enc := mustMarshal(t, conflict)
	if _, err := DecodeMap(enc, noLimits); err != nil {
		t.Fatalf("conflict map: %v", err)
	}
}

func ExampleORSet() {
	// Replica 1 adds "x"; replica 2 sees it, then removes it while
	// replica 1, unaware, adds it again: add wins.
	r1 := ORSet{}
	r1 = r1.Join(r1.Add(1, []byte("x")))
	r2 := ORSet{}.Join(r1)
	del := r2.Remove([]byte("x"))
	add := r1.Add(1, []byte("x"))
	r1, r2 = r1.Join(add).Join(del), r2.Join(del).Join(add)
	fmt.Println(r1.Contains([]byte("x")), r2.Contains([]byte("x")), r1.Equal(r2))
	// Output: true true true
}

func ExampleCounter() {
	var a, b Counter
	a = a.Join(a.Add(1, 5))
	b = b.Join(b.Add(2, -2))
	v, _ := a.Join(b).Value()
	fmt.Println(v)
	// Output: 3
}

// Replicas that only ever Merge in place (keeping the dot index across
// merges) stay equal to replicas that Join, under lost, duplicated and
// reordered deltas and full-state merges.
func TestORSetMergeInPlace(t *testing.T) {
	defer func(old int) { mergeIndexMin = old }(mergeIndexMin)
	for _, min := range []int{0, 3, 1 << 30} {
		mergeIndexMin = min
		for seed := range uint64(simSeeds(t, 40)) {
			rng := rand.New(rand.NewPCG(seed, 0x3e6e))
			n := 3 + rng.IntN(3)
			joined, merged := make([]ORSet, n), make([]ORSet, n)
			type msg struct {
				to    int
				delta ORSet
			}
			var net []msg
			for step := range 300 {
				i := rng.IntN(n)
				switch x := rng.IntN(10); {
				case x < 5:
					member := []byte{'a' + byte(rng.IntN(8))}
					var d ORSet
					if rng.IntN(3) > 0 {
						d = joined[i].Add(replicaActor(i), member)
					} else {
						d = joined[i].Remove(member)
					}
					joined[i] = joined[i].Join(d)
					merged[i].Merge(d)
					for k := range n {
						if k != i && rng.IntN(4) > 0 {
							net = append(net, msg{k, d})
						}
					}
				case x < 9 && len(net) > 0:
					k := rng.IntN(len(net))
					m := net[k]
					joined[m.to] = joined[m.to].Join(m.delta)
					merged[m.to].Merge(m.delta)
					if rng.IntN(3) > 0 {
						net = slices.Delete(net, k, k+1)
					}
				default:
					j := rng.IntN(n)
					joined[i] = joined[i].Join(joined[j])
					merged[i].Merge(joined[j])
				}
				for k := range n {
					if !merged[k].Equal(joined[k]) {
						t.Fatalf("min %d seed %d step %d: replica %d merged %v, joined %v", min, seed, step, k, merged[k], joined[k])
					}
					if err := merged[k].checkIndex(); err != nil {
						t.Fatalf("min %d seed %d step %d: replica %d: %v", min, seed, step, k, err)
					}
				}
			}
		}
	}
}

// healResult is what partitionHeal measured.
type healResult struct {
	a, b          ORSet // the two sides after the heal
	full          ORSet // the join of the two sides' full states
	sent, changed int   // delta-group bytes shipped; bytes of changed members
}

// partitionHeal runs a partition of a 100k-member set: each side adds and
// removes changes members (side B re-adds some that side A removes), folding
// its deltas into a delta group, then each side ships its group to the
// other.
func partitionHeal(t testing.TB, n, changes int) healResult {
	base := bigSet(n)
	sides := [2]ORSet{base.Join(ORSet{}), base.Join(ORSet{})}
	var groups [2]ORSet
	var changed int
	for side, actor := range []ActorID{benchActor(0), benchActor(1)} {
		s := &sides[side]
		for i := range changes {
			var d ORSet
			var m []byte
			switch i % 3 {
			case 0: // a new member
				m = []byte(benchMember(n + side*changes + i))
				d = s.Add(actor, m)
			case 1: // a removed member (both sides remove some of the same)
				m = []byte(benchMember((i * 37) % (n / 2)))
				d = s.Remove(m)
			default: // A removes what B re-adds: add wins
				m = []byte(benchMember(n/2 + i))
				if side == 0 {
					d = s.Remove(m)
				} else {
					d = s.Add(actor, m)
				}
			}
			changed += len(m)
			s.Merge(d)
			groups[side].Merge(d)
		}
	}
	full := sides[0].Join(sides[1])
	var sent int
	for _, g := range groups {
		sent += len(mustMarshal(t, g))
	}
	return healResult{a: sides[0].Join(groups[1]), b: sides[1].Join(groups[0]), full: full, sent: sent, changed: changed}
}

// After a partition heals, shipping each side's delta group converges the
// two sides to the join of their full states, sending less than twice the
// bytes of the members that changed.
func TestSetPartitionHealBytes(t *testing.T) {
	const n, changes = 100_000, 1500
	r := partitionHeal(t, n, changes)
	if !r.a.Equal(r.full) || !r.b.Equal(r.full) {
		t.Fatal("the sides differ from the full-state join after the heal")
	}
	for i := range changes {
		if i%3 == 2 && !r.full.Contains([]byte(benchMember(n/2+i))) {
			t.Fatalf("member %d: a remove beat a concurrent add", n/2+i)
		}
		if i%3 == 1 && r.full.Contains([]byte(benchMember((i*37)%(n/2)))) {
			t.Fatalf("member %d: removed on both sides but present", (i*37)%(n/2))
		}
	}
	t.Logf("%d changed member bytes, %d delta bytes sent (%.2fx)", r.changed, r.sent, float64(r.sent)/float64(r.changed))
	if r.sent > 2*r.changed {
		t.Fatalf("sent %d bytes for %d bytes of changed members", r.sent, r.changed)
	}
}
