package crdt

import (
	"fmt"
	"slices"
	"strings"
)

// ActorID identifies a writer: a node, or a one-off actor a node makes up
// for a single write. Zero is invalid.
type ActorID uint64

// Dot names one write: the actor's counter at the time. Counters start at 1
// and are never reused by an actor.
type Dot struct {
	Actor   ActorID
	Counter uint64
}

// String formats d as "%016x:%d" (actor in hex, counter in decimal).
func (d Dot) String() string { return fmt.Sprintf("%016x:%d", uint64(d.Actor), d.Counter) }

// Valid reports whether d has a nonzero actor and counter.
func (d Dot) Valid() bool { return d.Actor != 0 && d.Counter != 0 }

// compareDots orders dots by actor, then counter.
func compareDots(a, b Dot) int {
	switch {
	case a.Actor < b.Actor:
		return -1
	case a.Actor > b.Actor:
		return 1
	case a.Counter < b.Counter:
		return -1
	case a.Counter > b.Counter:
		return 1
	}
	return 0
}

// VV is a version vector: for each actor, the highest counter seen. An
// absent actor means 0; zero entries are never stored. A nil VV is empty
// and every method accepts it.
type VV map[ActorID]uint64

// Covers reports whether v has seen d.
func (v VV) Covers(d Dot) bool { return d.Counter <= v[d.Actor] }

// Join returns the per-actor maximum of v and o as a new map.
func (v VV) Join(o VV) VV {
	out := make(VV, max(len(v), len(o)))
	out.joinInPlace(v)
	out.joinInPlace(o)
	return out
}

// joinInPlace raises v to at least o. v must be non-nil.
func (v VV) joinInPlace(o VV) {
	for a, c := range o {
		if c > v[a] {
			v[a] = c
		}
	}
}

// add raises v to cover d. v must be non-nil.
func (v VV) add(d Dot) {
	if d.Counter > v[d.Actor] {
		v[d.Actor] = d.Counter
	}
}

// Meet returns the per-actor minimum of v and o as a new map: an actor
// missing from either is missing from the result.
func (v VV) Meet(o VV) VV {
	if len(o) < len(v) {
		v, o = o, v
	}
	out := make(VV, len(v))
	for a, c := range v {
		if m := min(c, o[a]); m > 0 {
			out[a] = m
		}
	}
	return out
}

// Descends reports whether v >= o for every actor.
func (v VV) Descends(o VV) bool {
	for a, c := range o {
		if v[a] < c {
			return false
		}
	}
	return true
}

// Equal reports whether v and o hold the same counters.
func (v VV) Equal(o VV) bool { return v.Descends(o) && o.Descends(v) }

// Clone returns a copy of v without zero entries (an empty, non-nil map for
// an empty v).
func (v VV) Clone() VV {
	out := make(VV, len(v))
	for a, c := range v {
		if c > 0 {
			out[a] = c
		}
	}
	return out
}

// actors returns the actors of v's nonzero entries in increasing order.
func (v VV) actors() []ActorID {
	as := make([]ActorID, 0, len(v))
	for a, c := range v {
		if c > 0 {
			as = append(as, a)
		}
	}
	slices.Sort(as)
	return as
}

// String formats v as "{actor:counter ...}" sorted by actor, with the same
// actor format as [Dot.String].
func (v VV) String() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, a := range v.actors() {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(Dot{a, v[a]}.String())
	}
	b.WriteByte('}')
	return b.String()
}
