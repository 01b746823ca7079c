package antientropy

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/rumorkv/rumor/ring"
)

// TestIndexMatchesModel applies random inserts, updates and deletes to an
// Index and to a plain map, and compares range hashes over random ranges.
func TestIndexMatchesModel(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	x := NewIndex()
	model := map[string]struct {
		hash uint64
		d    Digest
	}{}
	for i := range 20000 {
		key := fmt.Sprintf("k%d", rng.IntN(5000))
		hash := ring.KeyHash([]byte(key))
		old, had := model[key]
		switch rng.IntN(4) {
		case 0: // delete
			if had {
				x.Update(hash, old.d, Digest{}, -1)
				delete(model, key)
			}
		default: // write a new state
			d := DigestOf([]byte(key), fmt.Appendf(nil, "state-%d", i))
			delta := 1
			if had {
				delta = 0
			}
			x.Update(hash, old.d, d, delta)
			model[key] = struct {
				hash uint64
				d    Digest
			}{hash, d}
		}
	}
	if int(x.Keys()) != len(model) {
		t.Fatalf("Keys() = %d, model has %d", x.Keys(), len(model))
	}
	brute := func(lo, hi uint32) Digest {
		var acc Digest
		for _, e := range model {
			if l := ring.LeafOf(e.hash); l >= lo && l < hi {
				acc = acc.Xor(e.d)
			}
		}
		return acc
	}
	for range 300 {
		lo := rng.Uint32N(Leaves)
		hi := lo + rng.Uint32N(Leaves-lo+1)
		if got, want := x.RangeHash(lo, hi), brute(lo, hi); got != want {
			t.Fatalf("RangeHash(%d, %d) = %x, want %x", lo, hi, got, want)
		}
	}
	if got, want := x.RangeHash(0, Leaves), brute(0, Leaves); got != want {
		t.Fatal("whole-space hash differs")
	}
	set := RangeSet{{0, 1000}, {5000, 9000}, {Leaves - 10, Leaves}}
	want := brute(0, 1000).Xor(brute(5000, 9000)).Xor(brute(Leaves-10, Leaves))
	if got := x.SetHash(set); got != want {
		t.Fatalf("SetHash = %x, want %x", got, want)
	}
	wantCount := 0
	for _, e := range model {
		for _, sp := range set {
			if l := ring.LeafOf(e.hash); l >= sp.Lo && l < sp.Hi {
				wantCount++
			}
		}
	}
	if got := x.SetCount(set); got != uint64(wantCount) {
		t.Fatalf("SetCount = %d, want %d", got, wantCount)
	}
	if got := x.SetCount(RangeSet{{0, Leaves}}); got != uint64(len(model)) {
		t.Fatalf("SetCount(all) = %d, want %d", got, len(model))
	}

	// Clearing leaves removes exactly their keys.
	z := NewIndex()
	if err := z.LoadSnapshot(x.Snapshot()); err != nil {
		t.Fatal(err)
	}
	z.ClearLeaves(5000, 9000)
	if got, want := z.SetHash(RangeSet{{5000, 9000}}), (Digest{}); got != want {
		t.Fatalf("cleared leaves hash %x", got)
	}
	if got := z.SetCount(RangeSet{{5000, 9000}}); got != 0 {
		t.Fatalf("cleared leaves hold %d keys", got)
	}
	if z.RangeHash(0, 5000) != x.RangeHash(0, 5000) || z.RangeHash(9000, Leaves) != x.RangeHash(9000, Leaves) {
		t.Fatal("clearing leaves changed others")
	}
	if z.Keys() != x.Keys()-int64(x.SetCount(RangeSet{{5000, 9000}})) {
		t.Fatalf("key count after clearing: %d", z.Keys())
	}

	// Snapshot round trip, and corruption is detected.
	snap := x.Snapshot()
	y := NewIndex()
	if err := y.LoadSnapshot(snap); err != nil {
		t.Fatal(err)
	}
	if y.RangeHash(0, Leaves) != x.RangeHash(0, Leaves) || y.Keys() != x.Keys() || y.SetCount(set) != x.SetCount(set) {
		t.Fatal("snapshot does not round-trip")
	}
	snap[len(snap)/2] ^= 1
	if err := y.LoadSnapshot(snap); err == nil {
		t.Fatal("corrupt snapshot loaded")
	}
	if err := y.LoadSnapshot(snap[:100]); err == nil {
		t.Fatal("short snapshot loaded")
	}
}

// The digest depends on key and state, with no ambiguity between them.
func TestDigestOf(t *testing.T) {
	a := DigestOf([]byte("ab"), []byte("c"))
	b := DigestOf([]byte("a"), []byte("bc"))
	if a == b {
		t.Fatal("key/state boundary is ambiguous")
	}
	if a != DigestOf([]byte("ab"), []byte("c")) {
		t.Fatal("digest not deterministic")
	}
}

// Shared is exactly the leaves whose preference list holds both nodes, and
// RangeSet.Contains agrees with the ring.
func TestSharedRanges(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	var members []ring.Member
	for range 6 {
		members = append(members, ring.Member{ID: ring.NodeID(rng.Uint64())})
	}
	r := ring.New(members, 64)
	a, b := members[0].ID, members[3].ID
	s := Shared(r, 3, a, b)
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	mine := Replicated(r, 3, a)
	if all := SharedAll(r, 3, a); !slices.Equal(all[b], s) {
		t.Fatal("SharedAll disagrees with Shared")
	}
	for range 20000 {
		h := rng.Uint64()
		pref := r.Preference(h, 3)
		hasA, hasB := false, false
		for _, id := range pref {
			hasA = hasA || id == a
			hasB = hasB || id == b
		}
		if got := s.Contains(h); got != (hasA && hasB) {
			t.Fatalf("hash %x: Shared contains %v, preference %v", h, got, pref)
		}
		if got := mine.Contains(h); got != hasA {
			t.Fatalf("hash %x: Replicated contains %v, preference %v", h, got, pref)
		}
	}
	// Three replicas of six nodes: a node replicates about half the space.
	if f := float64(mine.Leaves()) / Leaves; f < 0.35 || f > 0.65 {
		t.Fatalf("node replicates %.2f of the space", f)
	}
	start, end := Span{Lo: 3, Hi: Leaves}.HashBounds()
	if start != 3<<(64-ring.LeafBits) || end != 0 {
		t.Fatalf("HashBounds = %x, %x", start, end)
	}
}

// Union, Intersect and Complement agree with a leaf-by-leaf model.
func TestRangeSetAlgebra(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	random := func() RangeSet {
		var s RangeSet
		at := uint32(0)
		for at < Leaves {
			at += rng.Uint32N(Leaves / 8)
			end := min(at+1+rng.Uint32N(Leaves/8), Leaves)
			if at >= Leaves {
				break
			}
			s = s.add(Span{at, end})
			at = end + rng.Uint32N(3)
		}
		return s
	}
	in := func(s RangeSet, l uint32) bool { return s.Contains(uint64(l) << (64 - ring.LeafBits)) }
	for range 50 {
		a, b := random(), random()
		u, x, c := a.Union(b), a.Intersect(b), a.Complement()
		for _, r := range []RangeSet{u, x, c} {
			if err := r.Validate(); err != nil {
				t.Fatal(err)
			}
		}
		for range 2000 {
			l := rng.Uint32N(Leaves)
			if in(u, l) != (in(a, l) || in(b, l)) || in(x, l) != (in(a, l) && in(b, l)) || in(c, l) == in(a, l) {
				t.Fatalf("leaf %d: a %v b %v union %v intersect %v complement %v", l, in(a, l), in(b, l), in(u, l), in(x, l), in(c, l))
			}
		}
		if u.Leaves()+x.Leaves() != a.Leaves()+b.Leaves() || a.Leaves()+c.Leaves() != Leaves {
			t.Fatal("leaf counts do not add up")
		}
	}
	var r *ring.Ring = ring.New([]ring.Member{{ID: 1}, {ID: 2}, {ID: 3}, {ID: 4}}, 32)
	all := ReplicatedAll(r, 2)
	if !slices.Equal(all[1], Replicated(r, 2, 1)) {
		t.Fatal("ReplicatedAll disagrees with Replicated")
	}
}
