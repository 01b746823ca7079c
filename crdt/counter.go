package crdt

import (
	"fmt"
	"math"
	"math/bits"
	"strings"
)

// PN is one actor's share of a [Counter]: the totals of its increments and
// of its decrements, each only ever growing.
type PN struct {
	Inc, Dec uint64
}

// Counter is a PN-counter: for each actor, the totals of what it added and
// subtracted. Only the actor itself raises its entry; the join takes the
// per-actor, per-component maximum. An absent actor means {0, 0}; zero
// entries are never stored by this package and are ignored everywhere. A
// nil Counter is empty. Methods never modify their receiver.
type Counter map[ActorID]PN

// Add returns the delta of adding n (negative to subtract) on behalf of
// actor: a counter holding only actor's new entry. Join it into c (and ship
// it) to apply the change; c itself is unchanged. Adding 0 returns an empty
// delta. Each total saturates at 2^64-1 instead of wrapping (no real
// workload gets there, and a wrapped total would shrink and lose the join).
//
// actor must be nonzero (it panics otherwise: a bug in the caller) and must
// be the only one raising its entry: a node adds under its own id only.
func (c Counter) Add(actor ActorID, n int64) Counter {
	if actor == 0 {
		panic("crdt: Counter.Add with actor 0")
	}
	if n == 0 {
		return nil
	}
	e := c[actor]
	if n > 0 {
		e.Inc = satAdd(e.Inc, uint64(n))
	} else {
		e.Dec = satAdd(e.Dec, uint64(-(n+1))+1) // -MinInt64 overflows int64
	}
	return Counter{actor: e}
}

func satAdd(a, b uint64) uint64 {
	s, carry := bits.Add64(a, b, 0)
	if carry != 0 {
		return math.MaxUint64
	}
	return s
}

// Join returns the per-actor, per-component maximum of c and o as a new
// counter. It is commutative, associative and idempotent for any inputs.
func (c Counter) Join(o Counter) Counter {
	out := make(Counter, max(len(c), len(o)))
	for _, x := range []Counter{c, o} {
		for a, e := range x {
			if e == (PN{}) {
				continue
			}
			cur := out[a]
			out[a] = PN{Inc: max(cur.Inc, e.Inc), Dec: max(cur.Dec, e.Dec)}
		}
	}
	return out
}

// Value returns the sum of all increments minus the sum of all decrements,
// saturated to the int64 range: the sums are computed exactly in 128 bits
// and a result beyond math.MaxInt64 (or below math.MinInt64) reads as that
// bound. Exact reports whether no saturation happened.
func (c Counter) Value() (v int64, exact bool) {
	var incHi, incLo, decHi, decLo, carry uint64
	for _, e := range c {
		incLo, carry = bits.Add64(incLo, e.Inc, 0)
		incHi += carry
		decLo, carry = bits.Add64(decLo, e.Dec, 0)
		decHi += carry
	}
	// At most 2^64 actors fit in memory, so neither high word overflows.
	neg := incHi < decHi || (incHi == decHi && incLo < decLo)
	if neg {
		incHi, incLo, decHi, decLo = decHi, decLo, incHi, incLo
	}
	lo, borrow := bits.Sub64(incLo, decLo, 0)
	hi := incHi - decHi - borrow
	switch {
	case !neg && (hi != 0 || lo > math.MaxInt64):
		return math.MaxInt64, false
	case neg && (hi != 0 || lo > 1<<63):
		return math.MinInt64, false
	case neg:
		return int64(-lo), true // -(1<<63) wraps to MinInt64, as it should
	}
	return int64(lo), true
}

// Equal reports whether c and o hold the same nonzero entries.
func (c Counter) Equal(o Counter) bool {
	return c.subsetOf(o) && o.subsetOf(c)
}

func (c Counter) subsetOf(o Counter) bool {
	for a, e := range c {
		if e != (PN{}) && o[a] != e {
			return false
		}
	}
	return true
}

// IsZero reports whether c has no nonzero entry.
func (c Counter) IsZero() bool { return c.subsetOf(nil) }

// actors returns the actors of c's nonzero entries in increasing order.
func (c Counter) actors() []ActorID {
	vv := make(VV, len(c))
	for a, e := range c {
		if e != (PN{}) {
			vv[a] = 1
		}
	}
	return vv.actors()
}

// String formats c as "{actor:+inc-dec ...}" sorted by actor.
func (c Counter) String() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, a := range c.actors() {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%016x:+%d-%d", uint64(a), c[a].Inc, c[a].Dec)
	}
	b.WriteByte('}')
	return b.String()
}
