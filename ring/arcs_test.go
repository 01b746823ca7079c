package ring

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestArcs checks Arcs against its definition on random rings: the arcs of
// all members partition the hash space, each arc's leaves are owned by its
// member, each member's arcs add up to its Ownership, and arcs are maximal
// (two arcs of one member never touch, except across leaf 0).
func TestArcs(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 8))
	check := func(name string, r *Ring) {
		t.Helper()
		arcs := r.Arcs()
		own := r.Ownership()
		if r.Len() == 0 {
			if len(arcs) != 0 {
				t.Fatalf("%s: empty ring has arcs %v", name, arcs)
			}
			return
		}
		type owned struct {
			Arc
			id NodeID
		}
		var all []owned
		for id, as := range arcs {
			if _, ok := own[id]; !ok {
				t.Fatalf("%s: arcs for %d, not a member", name, id)
			}
			var leaves uint64
			for i, a := range as {
				if a.Lo >= a.Hi || a.Hi > numLeaves {
					t.Fatalf("%s: member %d arc %d is [%d, %d)", name, id, i, a.Lo, a.Hi)
				}
				if i > 0 && a.Lo <= as[i-1].Hi {
					t.Fatalf("%s: member %d arcs %d and %d touch or are out of order: %v %v", name, id, i-1, i, as[i-1], a)
				}
				leaves += uint64(a.Hi - a.Lo)
				all = append(all, owned{a, id})
			}
			if got := float64(leaves) / numLeaves; got != own[id] {
				t.Fatalf("%s: member %d arcs sum to %v, Ownership %v", name, id, got, own[id])
			}
		}
		for id, o := range own {
			if _, ok := arcs[id]; !ok && o != 0 {
				t.Fatalf("%s: member %d owns %v but has no arcs", name, id, o)
			}
		}
		slices.SortFunc(all, func(a, b owned) int { return cmp.Compare(a.Lo, b.Lo) })
		if all[0].Lo != 0 || all[len(all)-1].Hi != numLeaves {
			t.Fatalf("%s: arcs span [%d, %d), not the whole space", name, all[0].Lo, all[len(all)-1].Hi)
		}
		for i, a := range all {
			if i > 0 && a.Lo != all[i-1].Hi {
				t.Fatalf("%s: arc [%d, %d) follows one ending at %d: gap or overlap", name, a.Lo, a.Hi, all[i-1].Hi)
			}
			for _, leaf := range []uint32{a.Lo, a.Hi - 1, a.Lo + rng.Uint32N(a.Hi-a.Lo)} {
				h := uint64(leaf)<<leafShift | rng.Uint64()&leafMask
				if o := r.Owner(h); o != a.id {
					t.Fatalf("%s: arc [%d, %d) of %d, but Owner(%#x) = %d", name, a.Lo, a.Hi, a.id, h, o)
				}
			}
		}
	}
	check("empty", New(nil, 16))
	check("one member", New([]Member{{ID: 5}}, 16))
	for iter := range 300 {
		ms, vnodes := randomRing(rng)
		check(fmt.Sprintf("ring %d", iter), New(ms, vnodes))
	}
	check("64 nodes", New(randomMembers(9, 64), 0))
}
