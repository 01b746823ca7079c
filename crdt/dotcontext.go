package crdt

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// DotContext is an exact causal context: the set of dots a state has seen.
// It is a version vector of contiguous prefixes (actor A seen 1..vv[A]) plus
// the dots seen beyond those prefixes (the cloud), which deltas lost,
// delayed or reordered leave behind. Unlike a bare [VV], it never claims a
// dot it has not seen, so it stays exact under any delivery order.
//
// Canonical form, kept by every function that returns one: no zero entries
// in the vector, no cloud dot covered by the vector, and no cloud dot
// (A, vv[A]+1) (it would have been folded into the vector). The zero
// DotContext is empty. Methods never modify their receiver.
type DotContext struct {
	vv    VV
	cloud map[Dot]struct{}
}

// NewDotContext returns the context holding every dot vv covers and the
// given dots, in canonical form. Invalid dots are ignored.
func NewDotContext(vv VV, dots ...Dot) DotContext {
	c := DotContext{vv: vv.Clone()}
	for _, d := range dots {
		c.insert(d)
	}
	c.compact()
	return c
}

// Covers reports whether c has seen d.
func (c DotContext) Covers(d Dot) bool {
	if d.Counter <= c.vv[d.Actor] {
		return true
	}
	_, ok := c.cloud[d]
	return ok
}

// Max returns the highest counter of actor's dots in c (0 when none).
func (c DotContext) Max(actor ActorID) uint64 {
	m := c.vv[actor]
	for d := range c.cloud {
		if d.Actor == actor {
			m = max(m, d.Counter)
		}
	}
	return m
}

// size returns the number of dots in c, or some number above limit when
// there are more than limit.
func (c DotContext) size(limit int) int {
	n := uint64(len(c.cloud))
	for _, k := range c.vv {
		if n += k; n > uint64(limit) || n < k {
			return limit + 1
		}
	}
	return int(n)
}

// each calls fn for every dot in c, prefixes first.
func (c DotContext) each(fn func(Dot)) {
	for a, n := range c.vv {
		for k := uint64(1); k <= n; k++ {
			fn(Dot{a, k})
		}
	}
	for d := range c.cloud {
		fn(d)
	}
}

// VV returns a copy of c's contiguous prefixes.
func (c DotContext) VV() VV { return c.vv.Clone() }

// Cloud returns c's dots beyond its prefixes, sorted.
func (c DotContext) Cloud() []Dot {
	ds := slices.Collect(maps.Keys(c.cloud))
	slices.SortFunc(ds, compareDots)
	return ds
}

// IsZero reports whether c holds no dot.
func (c DotContext) IsZero() bool { return len(c.vv) == 0 && len(c.cloud) == 0 }

// Equal reports whether c and o hold the same dots. Both must be canonical.
func (c DotContext) Equal(o DotContext) bool {
	if !c.vv.Equal(o.vv) || len(c.cloud) != len(o.cloud) {
		return false
	}
	for d := range c.cloud {
		if _, ok := o.cloud[d]; !ok {
			return false
		}
	}
	return true
}

// Join returns the union of c and o.
func (c DotContext) Join(o DotContext) DotContext {
	out := c.clone()
	out.joinInPlace(o)
	return out
}

func (c DotContext) clone() DotContext {
	out := DotContext{vv: c.vv.Clone()}
	if len(c.cloud) > 0 {
		out.cloud = maps.Clone(c.cloud)
	}
	return out
}

// joinInPlace adds o's dots to c and compacts. c.vv must be non-nil.
func (c *DotContext) joinInPlace(o DotContext) {
	c.vv.joinInPlace(o.vv)
	for d := range o.cloud {
		c.insert(d)
	}
	c.compact()
}

// insert adds d to the cloud unless the vector covers it; callers compact
// afterwards.
func (c *DotContext) insert(d Dot) {
	if !d.Valid() || d.Counter <= c.vv[d.Actor] {
		return
	}
	if c.cloud == nil {
		c.cloud = map[Dot]struct{}{}
	}
	c.cloud[d] = struct{}{}
}

// compact folds cloud dots that extend a prefix into the vector and drops
// those the vector covers.
func (c *DotContext) compact() {
	if len(c.cloud) == 0 {
		c.cloud = nil
		return
	}
	if c.vv == nil {
		c.vv = VV{}
	}
	for _, d := range c.Cloud() { // sorted: each actor's dots in order
		switch n := c.vv[d.Actor]; {
		case d.Counter <= n:
			delete(c.cloud, d)
		case d.Counter == n+1:
			c.vv[d.Actor] = d.Counter
			delete(c.cloud, d)
		}
	}
	if len(c.cloud) == 0 {
		c.cloud = nil
	}
}

// check reports the first way c breaks the canonical form.
func (c DotContext) check() error {
	for a, n := range c.vv {
		if a == 0 || n == 0 {
			return fmt.Errorf("context entry %d:%d", a, n)
		}
	}
	for d := range c.cloud {
		switch {
		case !d.Valid():
			return fmt.Errorf("invalid cloud dot %v", d)
		case d.Counter <= c.vv[d.Actor]+1:
			return fmt.Errorf("cloud dot %v not beyond prefix %d+1", d, c.vv[d.Actor])
		}
	}
	return nil
}

// String formats c as its vector followed by its cloud, e.g.
// "{0000000000000001:3}+[0000000000000002:5]".
func (c DotContext) String() string {
	var b strings.Builder
	b.WriteString(c.vv.String())
	if len(c.cloud) > 0 {
		parts := make([]string, 0, len(c.cloud))
		for _, d := range c.Cloud() {
			parts = append(parts, d.String())
		}
		b.WriteString("+[" + strings.Join(parts, " ") + "]")
	}
	return b.String()
}
