package crdt

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// ORSet is an add-wins observed-remove set of byte-string members (the
// optimized OR-set, "AWSet", of Almeida, Shoker and Baquero's delta-state
// CRDTs). Each add is a fresh dot; a member is present while some dot of it
// survives. The causal context records every dot the state has seen, so a
// dot the context covers but the store lacks was removed.
//
// Join keeps a dot both sides hold, and a dot one side holds that the other
// has not seen; a dot one side has seen and dropped is gone. A remove drops
// only the dots its replica had seen, so an add concurrent with a remove of
// the same member survives it: add wins.
//
// The context is exact ([DotContext]), so Join is a lattice join for any
// states, and deltas may be lost, duplicated and reordered: a replica that
// missed some holds a cloud of dots until a later delta or a full state
// fills the gaps.
//
// Canonical form, kept by every method: every member has at least one dot,
// no dot belongs to two members, and the context covers every stored dot.
// The zero ORSet is empty. Methods other than Merge never modify their
// receiver.
type ORSet struct {
	entries map[string][]Dot // member -> its surviving dots, sorted
	ctx     DotContext
	owner   map[Dot]string // entries' dots -> member: Merge's index, or nil
}

// Add returns the delta of adding member on behalf of actor: the member
// with a fresh dot (actor's highest counter in s's context, plus one), and
// a context holding that dot and the member's current dots, which the new
// dot replaces. Join it into s (and ship it) to apply the change; s itself
// is unchanged. The delta's size is that of the member and its dots,
// whatever the size of s.
//
// actor must be nonzero (it panics otherwise: a bug in the caller) and
// must add only on the replica it owns (a node adds under its own id on its
// own copy), so that its dots for this set are fresh.
func (s ORSet) Add(actor ActorID, member []byte) ORSet {
	if actor == 0 {
		panic("crdt: ORSet.Add with actor 0")
	}
	d := Dot{Actor: actor, Counter: s.ctx.Max(actor) + 1}
	old := s.entries[string(member)]
	return ORSet{
		entries: map[string][]Dot{string(member): {d}},
		ctx:     NewDotContext(nil, append(slices.Clone(old), d)...),
	}
}

// Remove returns the delta of removing member: an empty store with a
// context holding the member's current dots. Removing a member s does not
// hold returns an empty delta. An add s has not seen is not removed.
func (s ORSet) Remove(member []byte) ORSet {
	return ORSet{ctx: NewDotContext(nil, s.entries[string(member)]...)}
}

// Join returns the least upper bound of s and o. It is commutative,
// associative and idempotent for any canonical inputs.
//
// It costs O(|s| + |o|): joining a small delta into a large state copies
// the state. Use [ORSet.Merge] to apply a delta in place.
func (s ORSet) Join(o ORSet) ORSet {
	out := ORSet{entries: make(map[string][]Dot, len(s.entries)), ctx: s.ctx.clone()}
	for m, ds := range s.entries {
		out.entries[m] = ds
	}
	out.merge(o, false)
	return out
}

// Merge joins o into s in place; afterwards s equals the old s.Join(o). It
// copies only what o changes. On a set of mergeIndexMin members or more it
// builds, once, an index from dots to members, after which a delta with a
// small context costs O(|o|) instead of a scan of s. s must not share
// memory with another ORSet (a value returned by Join, Add, Remove or
// DecodeSet does not, except with its inputs, which Merge does not modify);
// o is not modified. Values read from s before the Merge (Context aside)
// may change with it.
func (s *ORSet) Merge(o ORSet) { s.merge(o, true) }

// merge is Merge; index says whether to build the dot index.
func (s *ORSet) merge(o ORSet, index bool) {
	if s.entries == nil {
		s.entries = map[string][]Dot{}
	}
	if s.ctx.vv == nil {
		s.ctx.vv = VV{}
	}
	if index && s.owner == nil && len(s.entries) >= mergeIndexMin {
		s.owner = make(map[Dot]string, len(s.entries))
		for m, ds := range s.entries {
			for _, d := range ds {
				s.owner[d] = m
			}
		}
	}
	// Dots s holds that o has seen but dropped are gone.
	switch {
	case o.ctx.IsZero():
	case s.owner != nil && o.ctx.size(len(s.owner)) <= len(s.owner):
		o.ctx.each(func(d Dot) {
			if m, ok := s.owner[d]; ok && !slices.Contains(o.entries[m], d) {
				s.setDots(m, slices.DeleteFunc(slices.Clone(s.entries[m]), func(x Dot) bool { return x == d }))
				delete(s.owner, d)
			}
		})
	default:
		for m, ds := range s.entries {
			for i, d := range ds {
				if o.ctx.Covers(d) && !slices.Contains(o.entries[m], d) {
					s.setDots(m, filterDots(ds[:i:i], ds[i:], m, o))
					break
				}
			}
		}
	}
	// Dots o holds that s has not seen are new.
	for m, ds := range o.entries {
		var add []Dot
		for _, d := range ds {
			if !s.ctx.Covers(d) {
				add = append(add, d)
			}
		}
		if len(add) > 0 {
			merged := append(slices.Clone(s.entries[m]), add...)
			slices.SortFunc(merged, compareDots)
			s.setDots(m, slices.Compact(merged))
		}
	}
	s.ctx.joinInPlace(o.ctx)
	if len(s.entries) == 0 {
		s.entries, s.owner = nil, nil
	}
}

// mergeIndexMin is the set size from which Merge keeps a dot index. Below
// it, scanning the set is as cheap as keeping the index.
var mergeIndexMin = 512

// setDots replaces member m's dots with ds (never aliased with another
// set), keeping the index, if any, in step.
func (s *ORSet) setDots(m string, ds []Dot) {
	if s.owner != nil {
		for _, d := range s.entries[m] {
			delete(s.owner, d)
		}
		for _, d := range ds {
			s.owner[d] = m
		}
	}
	if len(ds) == 0 {
		delete(s.entries, m)
		return
	}
	s.entries[m] = ds
}

// filterDots returns kept (a copy of ds's prefix) plus the dots of rest that
// o has not removed from member m.
func filterDots(kept, rest []Dot, m string, o ORSet) []Dot {
	kept = slices.Clone(kept)
	for _, d := range rest {
		if !o.ctx.Covers(d) || slices.Contains(o.entries[m], d) {
			kept = append(kept, d)
		}
	}
	return kept
}

// Contains reports whether member is in s.
func (s ORSet) Contains(member []byte) bool { return len(s.entries[string(member)]) > 0 }

// Len returns the number of members.
func (s ORSet) Len() int { return len(s.entries) }

// Members returns the members in increasing byte order.
func (s ORSet) Members() [][]byte {
	ms := slices.Sorted(maps.Keys(s.entries))
	out := make([][]byte, len(ms))
	for i, m := range ms {
		out[i] = []byte(m)
	}
	return out
}

// Dots returns member's surviving dots, sorted (nil when absent).
func (s ORSet) Dots(member []byte) []Dot { return slices.Clone(s.entries[string(member)]) }

// Context returns a copy of the set's causal context.
func (s ORSet) Context() DotContext { return s.ctx.clone() }

// IsZero reports whether s holds no member and no context: joining it
// changes nothing.
func (s ORSet) IsZero() bool { return len(s.entries) == 0 && s.ctx.IsZero() }

// Equal reports whether s and o hold the same members, dots and context.
// Both must be canonical.
func (s ORSet) Equal(o ORSet) bool {
	return maps.EqualFunc(s.entries, o.entries, slices.Equal) && s.ctx.Equal(o.ctx)
}

// check reports the first way s breaks the canonical form.
func (s ORSet) check() error {
	if err := s.ctx.check(); err != nil {
		return err
	}
	owner := map[Dot]string{}
	for m, ds := range s.entries {
		if len(ds) == 0 {
			return fmt.Errorf("member %q without dots", m)
		}
		for i, d := range ds {
			if i > 0 && compareDots(ds[i-1], d) >= 0 {
				return fmt.Errorf("member %q: dot %v not after %v", m, d, ds[i-1])
			}
			if !s.ctx.Covers(d) {
				return fmt.Errorf("member %q: dot %v not in the context", m, d)
			}
			if o, dup := owner[d]; dup {
				return fmt.Errorf("dot %v in members %q and %q", d, o, m)
			}
			owner[d] = m
		}
	}
	return nil
}

// String formats s for test output: members in order with their dots,
// then the context.
func (s ORSet) String() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, m := range slices.Sorted(maps.Keys(s.entries)) {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%q%v", m, s.entries[m])
	}
	b.WriteString("} ctx ")
	b.WriteString(s.ctx.String())
	return b.String()
}

// checkIndex reports the first way s's dot index, if any, disagrees with
// its members.
func (s ORSet) checkIndex() error {
	if s.owner == nil {
		return nil
	}
	n := 0
	for m, ds := range s.entries {
		for _, d := range ds {
			if s.owner[d] != m {
				return fmt.Errorf("index maps %v to %q, member %q holds it", d, s.owner[d], m)
			}
			n++
		}
	}
	if n != len(s.owner) {
		return fmt.Errorf("index holds %d dots, members %d", len(s.owner), n)
	}
	return nil
}
