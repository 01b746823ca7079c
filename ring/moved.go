package ring

// MovedPrimary returns the fraction of the hash space whose owner in b
// differs from its owner in a: the share of keys that change primary. An
// empty ring owns nothing, so against a non-empty one everything moves.
func MovedPrimary(a, b *Ring) float64 {
	moved := zip(a, b, 1, func(pa, pb []NodeID) int {
		if len(pa) == len(pb) && (len(pa) == 0 || pa[0] == pb[0]) {
			return 0
		}
		return 1
	})
	return float64(moved) / numLeaves
}

// MovedReplicas returns the fraction of b's (key, replica) placements with
// n replicas that a did not have: the average over the hash space of
// |Preference_b \ Preference_a| / n. It is the share of replicated data a
// change from a to b has to copy.
func MovedReplicas(a, b *Ring, n int) float64 {
	if n <= 0 {
		return 0
	}
	moved := zip(a, b, n, func(pa, pb []NodeID) int {
		c := 0
		for _, x := range pb {
			if !contains(pa, x) {
				c++
			}
		}
		return c
	})
	return float64(moved) / numLeaves / float64(n)
}

func contains(s []NodeID, x NodeID) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}

// zip walks the hash space of both rings leaf run by leaf run and returns
// the sum over all leaves of cost(preference in a, preference in b).
func zip(a, b *Ring, n int, cost func(pa, pb []NodeID) int) uint64 {
	ca, cb := newCursor(a, n), newCursor(b, n)
	var sum uint64
	for lo := uint32(0); lo < numLeaves; {
		hi := min(ca.hi, cb.hi)
		sum += uint64(cost(ca.pref, cb.pref)) * uint64(hi-lo)
		lo = hi
		if ca.hi == hi {
			ca.next()
		}
		if cb.hi == hi {
			cb.next()
		}
	}
	return sum
}

// cursor walks the arcs of a ring in leaf order from leaf 0: arc 0 is
// [0, LeafOf(t_0)), arc k is [LeafOf(t_{k-1}), LeafOf(t_k)), and the last,
// arc m, is [LeafOf(t_{m-1}), 1<<LeafBits); arcs 0 and m belong to token 0.
type cursor struct {
	r    *Ring
	n    int
	k    int    // current arc
	hi   uint32 // end leaf of the current arc
	pref []NodeID
}

func newCursor(r *Ring, n int) *cursor {
	c := &cursor{r: r, n: min(n, r.Len()), k: -1}
	if len(r.tokens) == 0 {
		c.hi = numLeaves
		return c
	}
	c.pref = make([]NodeID, 0, c.n)
	c.next()
	return c
}

// next moves to the next non-empty arc.
func (c *cursor) next() {
	m := len(c.r.tokens)
	if m == 0 || c.k == m {
		return // past the end; zip stops first
	}
	for {
		c.k++
		lo := uint32(0)
		if c.k > 0 {
			lo = LeafOf(c.r.tokens[c.k-1])
		}
		start := c.k
		c.hi = numLeaves
		if c.k < m {
			c.hi = LeafOf(c.r.tokens[c.k])
		} else {
			start = 0
		}
		if c.hi > lo || c.k == m {
			c.pref = c.r.appendPref(c.pref[:0], start, c.n)
			return
		}
	}
}
