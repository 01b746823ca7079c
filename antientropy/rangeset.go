package antientropy

import (
	"fmt"
	"slices"

	"github.com/rumorkv/rumor/ring"
)

// Leaves is the number of leaves of the hash space.
const Leaves = 1 << ring.LeafBits

// Span is the leaf interval [Lo, Hi).
type Span struct{ Lo, Hi uint32 }

// RangeSet is a sorted list of disjoint, non-adjacent, non-empty spans.
type RangeSet []Span

// Shared returns the leaves whose preference list (n replicas) in r holds
// both a and b: what the two nodes must agree on.
func Shared(r *ring.Ring, n int, a, b ring.NodeID) RangeSet {
	var s RangeSet
	for _, rg := range r.Ranges(n) {
		if slices.Contains(rg.Replicas, a) && slices.Contains(rg.Replicas, b) {
			s = s.add(Span{rg.Lo, rg.Hi})
		}
	}
	return s
}

// Replicated returns the leaves whose preference list holds a.
func Replicated(r *ring.Ring, n int, a ring.NodeID) RangeSet {
	var s RangeSet
	for _, rg := range r.Ranges(n) {
		if slices.Contains(rg.Replicas, a) {
			s = s.add(Span{rg.Lo, rg.Hi})
		}
	}
	return s
}

// add appends sp, which must start at or after the end of s, merging
// adjacent spans.
func (s RangeSet) add(sp Span) RangeSet {
	if sp.Lo >= sp.Hi {
		return s
	}
	if k := len(s); k > 0 && s[k-1].Hi == sp.Lo {
		s[k-1].Hi = sp.Hi
		return s
	}
	return append(s, sp)
}

// Contains reports whether the leaf of hash is in s.
func (s RangeSet) Contains(hash uint64) bool {
	leaf := ring.LeafOf(hash)
	i, _ := slices.BinarySearchFunc(s, leaf, func(sp Span, l uint32) int {
		switch {
		case sp.Hi <= l:
			return -1
		case sp.Lo > l:
			return 1
		}
		return 0
	})
	return i < len(s) && s[i].Lo <= leaf && leaf < s[i].Hi
}

// Leaves is the number of leaves s covers.
func (s RangeSet) Leaves() int {
	t := 0
	for _, sp := range s {
		t += int(sp.Hi - sp.Lo)
	}
	return t
}

// HashBounds returns the key-hash interval [start, end) of a span; end == 0
// means the end of the hash space.
func (sp Span) HashBounds() (start, end uint64) {
	const shift = 64 - ring.LeafBits
	return uint64(sp.Lo) << shift, uint64(sp.Hi) << shift // Hi == Leaves wraps to 0
}

// Validate checks the RangeSet invariants (for sets decoded from a peer).
func (s RangeSet) Validate() error {
	for i, sp := range s {
		if sp.Lo >= sp.Hi || sp.Hi > Leaves {
			return fmt.Errorf("antientropy: bad span [%d, %d)", sp.Lo, sp.Hi)
		}
		if i > 0 && s[i-1].Hi >= sp.Lo {
			return fmt.Errorf("antientropy: spans out of order at %d", i)
		}
	}
	return nil
}

// SharedAll returns, for every other node, the leaves whose preference list
// (n replicas) in r holds both self and that node: Shared for all peers in
// one pass over the ring's ranges.
func SharedAll(r *ring.Ring, n int, self ring.NodeID) map[ring.NodeID]RangeSet {
	out := make(map[ring.NodeID]RangeSet)
	for _, rg := range r.Ranges(n) {
		if !slices.Contains(rg.Replicas, self) {
			continue
		}
		for _, p := range rg.Replicas {
			if p != self {
				out[p] = out[p].add(Span{rg.Lo, rg.Hi})
			}
		}
	}
	return out
}

// ReplicatedAll returns, for every member of r, the leaves whose
// preference list (n replicas) holds it, in one pass over r's ranges.
func ReplicatedAll(r *ring.Ring, n int) map[ring.NodeID]RangeSet {
	out := make(map[ring.NodeID]RangeSet)
	for _, rg := range r.Ranges(n) {
		for _, p := range rg.Replicas {
			out[p] = out[p].add(Span{rg.Lo, rg.Hi})
		}
	}
	return out
}

// Union returns the leaves in s or o.
func (s RangeSet) Union(o RangeSet) RangeSet {
	var out RangeSet
	i, j := 0, 0
	for i < len(s) || j < len(o) {
		var sp Span
		if j == len(o) || (i < len(s) && s[i].Lo <= o[j].Lo) {
			sp, i = s[i], i+1
		} else {
			sp, j = o[j], j+1
		}
		if k := len(out); k > 0 && out[k-1].Hi >= sp.Lo {
			out[k-1].Hi = max(out[k-1].Hi, sp.Hi)
			continue
		}
		out = append(out, sp)
	}
	return out
}

// Intersect returns the leaves in both s and o.
func (s RangeSet) Intersect(o RangeSet) RangeSet {
	var out RangeSet
	i, j := 0, 0
	for i < len(s) && j < len(o) {
		lo, hi := max(s[i].Lo, o[j].Lo), min(s[i].Hi, o[j].Hi)
		if lo < hi {
			out = out.add(Span{lo, hi})
		}
		if s[i].Hi < o[j].Hi {
			i++
		} else {
			j++
		}
	}
	return out
}

// Complement returns the leaves not in s.
func (s RangeSet) Complement() RangeSet {
	var out RangeSet
	prev := uint32(0)
	for _, sp := range s {
		out = out.add(Span{prev, sp.Lo})
		prev = sp.Hi
	}
	return out.add(Span{prev, Leaves})
}
