package crdt

import (
	"slices"
	"testing"
)

const (
	actA ActorID = 0xa
	actB ActorID = 0xb
	actC ActorID = 0xc
)

func dots(vs []Version) []Dot {
	out := make([]Dot, len(vs))
	for i, v := range vs {
		out[i] = v.Dot
	}
	return out
}

func values(vs []Version) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v.Value)
	}
	return out
}

func mustCanonical(t *testing.T, r Register) {
	t.Helper()
	if err := r.check(); err != nil {
		t.Fatalf("not canonical: %v\n%v", err, r)
	}
}

func TestWriteWithoutContextIsSibling(t *testing.T) {
	a := Register{}.Write(Dot{actA, 1}, nil, 10, []byte("a"), false)
	b := Register{}.Write(Dot{actB, 1}, nil, 11, []byte("b"), false)
	j := a.Join(b)
	mustCanonical(t, j)
	if got := values(j.Live()); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("concurrent writes: live %q, want siblings a, b", got)
	}
	if got, want := j.Context(), (VV{actA: 1, actB: 1}); !got.Equal(want) {
		t.Fatalf("Context() = %v, want %v", got, want)
	}
	// A blind write at a replica that holds both is a third sibling.
	k := j.Write(Dot{actA, 7}, nil, 12, []byte("c"), false)
	if got := values(k.Live()); !slices.Equal(got, []string{"a", "c", "b"}) {
		t.Fatalf("blind write: live %q, want a, c, b (sorted by dot)", got)
	}
}

func TestWriteWithContextSupersedesExactlyWhatWasRead(t *testing.T) {
	a := Register{}.Write(Dot{actA, 1}, nil, 10, []byte("a1"), false)
	b := Register{}.Write(Dot{actB, 1}, nil, 10, []byte("b1"), false)
	read := a.Join(b)
	// A writes with the context of its read; concurrently B overwrites only
	// its own version.
	atA := read.Write(Dot{actA, 5}, read.Context(), 20, []byte("a5"), false)
	if got := values(atA.Live()); !slices.Equal(got, []string{"a5"}) {
		t.Fatalf("write with full context: live %q, want only a5", got)
	}
	atB := b.Write(Dot{actB, 2}, b.Context(), 21, []byte("b2"), false)
	for _, j := range []Register{atA.Join(atB), atB.Join(atA), atA.Join(atB).Join(read).Join(a)} {
		mustCanonical(t, j)
		if got := values(j.Live()); !slices.Equal(got, []string{"a5", "b2"}) {
			t.Fatalf("after join: live %q, want a5, b2 (b2 was not seen by a5)", got)
		}
	}
}

func TestDeleteWithContextLeavesDominatingTombstone(t *testing.T) {
	a := Register{}.Write(Dot{actA, 1}, nil, 10, []byte("a"), false)
	b := Register{}.Write(Dot{actB, 3}, nil, 11, []byte("b"), false)
	read := a.Join(b)
	del := read.Write(Dot{actA, 2}, read.Context(), 12, []byte("ignored"), true)
	if len(del.Live()) != 0 || !del.Tombstoned() || len(del.Versions) != 1 {
		t.Fatalf("delete that saw everything: %v, want one tombstone", del)
	}
	if del.Versions[0].Value != nil {
		t.Fatalf("tombstone kept a value: %q", del.Versions[0].Value)
	}
	// Old states arriving late do not resurrect anything.
	for _, old := range []Register{a, b, read} {
		if j := old.Join(del); !j.Equal(del) {
			t.Fatalf("old state %v resurrected: %v", old, j)
		}
	}
	// A concurrent write the delete did not see survives it.
	c := b.Write(Dot{actB, 9}, b.Context(), 13, []byte("b9"), false)
	j := del.Join(c)
	if got := values(j.Live()); !slices.Equal(got, []string{"b9"}) || j.Tombstoned() {
		t.Fatalf("delete vs unseen write: %v, want b9 live next to the tombstone", j)
	}
	if len(j.Versions) != 2 {
		t.Fatalf("tombstone not kept next to the unseen write: %v", j)
	}
	// A write with the tombstone's context supersedes it.
	again := del.Write(Dot{actA, 4}, del.Context(), 14, []byte("again"), false)
	if len(again.Versions) != 1 || again.Tombstoned() {
		t.Fatalf("write after delete: %v, want one live version", again)
	}
}

func TestDeleteWithoutContextHidesNothing(t *testing.T) {
	a := Register{}.Write(Dot{actA, 1}, nil, 10, []byte("a"), false)
	del := a.Write(Dot{actB, 1}, nil, 11, nil, true)
	if got := values(del.Live()); !slices.Equal(got, []string{"a"}) || del.Tombstoned() {
		t.Fatalf("blind delete: %v, want a still live", del)
	}
}

// Closure: a write's context includes the context of everything it
// supersedes, so a version superseded transitively cannot come back from
// a replica that still holds it.
func TestWriteClosesContext(t *testing.T) {
	x := Register{}.Write(Dot{actA, 1}, nil, 1, []byte("x"), false)
	// B saw x and replaced it.
	y := x.Write(Dot{actB, 3}, x.Context(), 2, []byte("y"), false)
	// A client that only knows B:3 writes at C's copy, which holds y.
	z := y.Write(Dot{actC, 1}, VV{actB: 3}, 3, []byte("z"), false)
	if got, want := z.Versions[0].Ctx, (VV{actA: 1, actB: 3}); !got.Equal(want) {
		t.Fatalf("closed context %v, want %v", got, want)
	}
	if j := x.Join(z); !j.Equal(z) {
		t.Fatalf("superseded x came back: %v", j)
	}
	// Associativity needs closure: (x ⊔ y) ⊔ z and x ⊔ (y ⊔ z) agree.
	if l, r := x.Join(y).Join(z), x.Join(y.Join(z)); !l.Equal(r) {
		t.Fatalf("not associative: %v vs %v", l, r)
	}
}

// Closure takes in exactly the contexts of the versions the context covers.
func TestWriteClosureMergesCoveredContexts(t *testing.T) {
	// Two concurrent versions whose contexts mention other actors.
	r := Register{Versions: []Version{
		{Dot: Dot{actA, 2}, Ctx: VV{actC: 9}, Value: []byte("a")},
		{Dot: Dot{actB, 2}, Ctx: VV{actA: 1}, Value: []byte("b")},
	}}
	mustCanonical(t, r)
	// ctx covers B:2 only; B:2's context covers A:1, not A:2.
	w := r.Write(Dot{actC, 10}, VV{actB: 2}, 1, []byte("c"), false)
	if got := values(w.Live()); !slices.Equal(got, []string{"a", "c"}) {
		t.Fatalf("live %q, want a, c", got)
	}
	// Covering both pulls in both contexts.
	w = r.Write(Dot{actB, 5}, VV{actB: 2, actA: 2}, 1, []byte("b5"), false)
	if got, want := w.Versions[0].Ctx, (VV{actA: 2, actB: 2, actC: 9}); !got.Equal(want) {
		t.Fatalf("closed context %v, want %v", got, want)
	}
}

func TestWriteEdgeCases(t *testing.T) {
	r := Register{}.Write(Dot{actA, 1}, nil, 1, []byte("a"), false)
	before := r.String()
	value := []byte("b")
	ctx := VV{actA: 1}
	w := r.Write(Dot{actB, 1}, ctx, 2, value, false)
	value[0] = 'X'
	if r.String() != before {
		t.Fatalf("Write changed its receiver: %v", r)
	}
	if !ctx.Equal(VV{actA: 1}) || len(ctx) != 1 {
		t.Fatalf("Write changed the context argument: %v", ctx)
	}
	if string(w.Versions[0].Value) != "b" {
		t.Fatalf("Write kept the caller's value slice: %q", w.Versions[0].Value)
	}
	// A context that claims to have seen the new dot itself is cut below
	// it, so the new version is not covered by its own context.
	w = r.Write(Dot{actA, 5}, VV{actA: 9}, 3, []byte("c"), false)
	mustCanonical(t, w)
	if got, want := w.Versions[0].Ctx, (VV{actA: 4}); !got.Equal(want) {
		t.Fatalf("context %v, want %v", got, want)
	}
	w = Register{}.Write(Dot{actA, 1}, VV{actA: 9, actB: 1}, 3, []byte("c"), false)
	if got, want := w.Versions[0].Ctx, (VV{actB: 1}); !got.Equal(want) || len(got) != 1 {
		t.Fatalf("context %v, want %v", got, want)
	}
	// Writing an existing dot again replaces that version (a reused dot
	// is a caller bug, but the result stays canonical).
	w = r.Write(Dot{actA, 1}, nil, 4, []byte("again"), false)
	if got := values(w.Live()); !slices.Equal(got, []string{"again"}) {
		t.Fatalf("reused dot: %q", got)
	}
	for _, bad := range []Dot{{0, 1}, {actA, 0}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Write(%v) did not panic", bad)
				}
			}()
			Register{}.Write(bad, nil, 1, nil, false)
		}()
	}
}

// Two different versions with one dot (never made by a correct node)
// resolve the same way whatever the order.
func TestJoinConflictingDuplicateDot(t *testing.T) {
	x := Register{}.Write(Dot{actA, 1}, nil, 1, []byte("x"), false)
	y := Register{}.Write(Dot{actA, 1}, nil, 1, []byte("y"), false)
	z := Register{}.Write(Dot{actA, 1}, nil, 2, nil, true)
	xy, yx := x.Join(y), y.Join(x)
	if !xy.Equal(yx) || len(xy.Versions) != 1 {
		t.Fatalf("x⊔y = %v, y⊔x = %v", xy, yx)
	}
	if l, r := xy.Join(z), x.Join(y.Join(z)); !l.Equal(r) {
		t.Fatalf("not associative: %v vs %v", l, r)
	}
	if !x.Join(x).Equal(x) {
		t.Fatal("not idempotent")
	}
}

func TestJoinDoesNotMutate(t *testing.T) {
	a := Register{}.Write(Dot{actA, 1}, nil, 1, []byte("a"), false)
	b := a.Write(Dot{actB, 1}, a.Context(), 2, []byte("b"), false)
	c := Register{}.Write(Dot{actC, 1}, nil, 3, []byte("c"), false)
	sa, sb, sc := a.String(), b.String(), c.String()
	j := a.Join(b).Join(c)
	j.Versions[0].Value = []byte("changed")
	if a.String() != sa || b.String() != sb || c.String() != sc {
		t.Fatalf("Join changed its inputs: %v %v %v", a, b, c)
	}
}

func TestReadHelpers(t *testing.T) {
	var empty Register
	if empty.Tombstoned() || empty.MaxHLC() != 0 || len(empty.Live()) != 0 || len(empty.Context()) != 0 {
		t.Fatal("empty register helpers")
	}
	if _, ok := empty.LWW(); ok {
		t.Fatal("LWW of an empty register")
	}
	r := Register{}.
		Write(Dot{actA, 1}, nil, 30, []byte("a"), false).
		Join(Register{}.Write(Dot{actB, 1}, nil, 30, []byte("b"), false)).
		Join(Register{}.Write(Dot{actC, 1}, nil, 20, []byte("c"), false)).
		Join(Register{}.Write(Dot{actC, 2}, nil, 99, nil, true))
	if got := r.MaxHLC(); got != 99 {
		t.Errorf("MaxHLC() = %d, want 99", got)
	}
	v, ok := r.LWW()
	if !ok || string(v.Value) != "b" {
		t.Errorf("LWW() = %v, %v; want b (latest live, tie broken by the greater dot)", v, ok)
	}
	if got := dots(r.Versions); !slices.Equal(got, []Dot{{actA, 1}, {actB, 1}, {actC, 1}, {actC, 2}}) {
		t.Errorf("versions not sorted by dot: %v", got)
	}
	if got, want := r.Context(), (VV{actA: 1, actB: 1, actC: 2}); !got.Equal(want) {
		t.Errorf("Context() = %v, want %v", got, want)
	}
	if got, want := r.String(), `[000000000000000a:1{}="a" 000000000000000b:1{}="b" 000000000000000c:1{}="c" 000000000000000c:2{}=<deleted>]`; got != want {
		t.Errorf("String() = %s\nwant %s", got, want)
	}
}
