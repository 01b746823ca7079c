package crdt

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
)

// Version is one write of a key: a value or a tombstone.
type Version struct {
	// Dot names the write.
	Dot Dot
	// Ctx is the causal context the write was made with: what its writer
	// had seen, closed over the versions it superseded. It never covers
	// Dot itself.
	Ctx VV
	// HLC is the coordinator's clock when the write was made. It orders
	// siblings for optional last-writer-wins reads and nothing else.
	HLC Timestamp
	// Value is the written value; nil for a tombstone.
	Value []byte
	// Deleted marks a tombstone.
	Deleted bool
}

// Equal reports whether v and o are the same version.
func (v Version) Equal(o Version) bool {
	return v.Dot == o.Dot && v.HLC == o.HLC && v.Deleted == o.Deleted &&
		bytes.Equal(v.Value, o.Value) && v.Ctx.Equal(o.Ctx)
}

// String formats v for test output: dot, context, and value or "<deleted>".
func (v Version) String() string {
	val := fmt.Sprintf("%q", v.Value)
	if v.Deleted {
		val = "<deleted>"
	}
	return fmt.Sprintf("%s%s=%s", v.Dot, v.Ctx, val)
}

// Register is a multi-value register: the versions of one key that no other
// version has superseded. Concurrent writes are siblings; tombstones are
// versions too. The zero Register is empty.
//
// Canonical form, produced by every method and required by DecodeRegister:
// versions sorted by dot (actor, then counter), no two with the same dot,
// and none whose dot another version's context covers.
type Register struct {
	Versions []Version
}

// Write returns r with a new version made with context ctx. ctx is first
// closed over r: every version whose dot ctx covers contributes its dot and
// its own context, to a fixpoint. The new version carries the closed
// context and r loses every version it covers. A delete is a Write with
// deleted set (the value is dropped): the tombstone dominates what it
// covers and stays until a later write supersedes it.
//
// dot must be valid (it panics otherwise: that is a bug in the caller) and
// must never have been used before. If the context covers dot itself (only
// possible when a dot is reused), the context is cut just below dot.
func (r Register) Write(dot Dot, ctx VV, hlc Timestamp, value []byte, deleted bool) Register {
	if !dot.Valid() {
		panic(fmt.Sprintf("crdt: Write with invalid dot %v", dot))
	}
	closed := ctx.Clone()
	merged := make([]bool, len(r.Versions))
	for changed := true; changed; {
		changed = false
		for i, v := range r.Versions {
			if !merged[i] && closed.Covers(v.Dot) {
				merged[i], changed = true, true
				closed.joinInPlace(v.Ctx)
				closed.add(v.Dot)
			}
		}
	}
	if closed[dot.Actor] >= dot.Counter {
		if dot.Counter == 1 {
			delete(closed, dot.Actor)
		} else {
			closed[dot.Actor] = dot.Counter - 1
		}
	}
	nv := Version{Dot: dot, Ctx: closed, HLC: hlc, Deleted: deleted}
	if !deleted {
		nv.Value = append([]byte{}, value...)
	}
	vs := make([]Version, 0, len(r.Versions)+1)
	for _, v := range r.Versions {
		if v.Dot != dot {
			vs = append(vs, v)
		}
	}
	return Register{Versions: canonical(append(vs, nv))}
}

// Join returns the least upper bound of r and o: the union of their
// versions by dot, minus every version another version's context covers.
// It is commutative and idempotent for any inputs, and associative on
// states reachable through Write and Join (see the package documentation).
// Two different versions with the same dot (never made by a correct node)
// resolve deterministically to the greater encoding.
func (r Register) Join(o Register) Register {
	vs := make([]Version, 0, len(r.Versions)+len(o.Versions))
	vs = append(append(vs, r.Versions...), o.Versions...)
	return Register{Versions: canonical(vs)}
}

// canonical sorts vs by dot, keeps one version per dot and drops the
// versions other versions' contexts cover. It reuses vs.
func canonical(vs []Version) []Version {
	slices.SortStableFunc(vs, func(a, b Version) int { return compareDots(a.Dot, b.Dot) })
	out := vs[:0]
	for _, v := range vs {
		if n := len(out); n > 0 && out[n-1].Dot == v.Dot {
			if compareVersions(v, out[n-1]) > 0 {
				out[n-1] = v
			}
			continue
		}
		out = append(out, v)
	}
	seen := make(VV)
	for _, v := range out {
		seen.joinInPlace(v.Ctx)
	}
	keep := out[:0]
	for _, v := range out {
		if !seen.Covers(v.Dot) {
			keep = append(keep, v)
		}
	}
	clear(out[len(keep):]) // let dropped versions be collected
	if len(keep) == 0 {
		return nil
	}
	return keep
}

// compareVersions orders two versions with the same dot by their encoding.
func compareVersions(a, b Version) int {
	if a.Equal(b) {
		return 0
	}
	if c := bytes.Compare(appendVersion(nil, a), appendVersion(nil, b)); c != 0 {
		return c
	}
	return bytes.Compare(a.Value, b.Value) // a tombstone's value is not encoded
}

// Equal reports whether r and o hold the same versions. Both must be
// canonical.
func (r Register) Equal(o Register) bool {
	return slices.EqualFunc(r.Versions, o.Versions, Version.Equal)
}

// Live returns the versions that are not tombstones (the siblings a read
// returns), in canonical order.
func (r Register) Live() []Version {
	var live []Version
	for _, v := range r.Versions {
		if !v.Deleted {
			live = append(live, v)
		}
	}
	return live
}

// Context returns what a reader of r has seen: the join of every version's
// dot and context, tombstones included. A write made with it supersedes
// every version of r.
func (r Register) Context() VV {
	vv := make(VV)
	for _, v := range r.Versions {
		vv.joinInPlace(v.Ctx)
		vv.add(v.Dot)
	}
	return vv
}

// Tombstoned reports whether r is non-empty and holds only tombstones.
func (r Register) Tombstoned() bool {
	if len(r.Versions) == 0 {
		return false
	}
	for _, v := range r.Versions {
		if !v.Deleted {
			return false
		}
	}
	return true
}

// MaxHLC returns the latest timestamp of any version (0 when empty).
func (r Register) MaxHLC() Timestamp {
	var m Timestamp
	for _, v := range r.Versions {
		m = max(m, v.HLC)
	}
	return m
}

// LWW returns the live version with the latest timestamp, ties broken by
// the greater dot, and false when there is none. It is a read-side
// resolution only: the register keeps every sibling.
func (r Register) LWW() (Version, bool) {
	var best Version
	found := false
	for _, v := range r.Versions {
		if v.Deleted {
			continue
		}
		if !found || v.HLC > best.HLC || (v.HLC == best.HLC && compareDots(v.Dot, best.Dot) > 0) {
			best, found = v, true
		}
	}
	return best, found
}

// String formats r for test output: its versions in canonical order.
func (r Register) String() string {
	parts := make([]string, len(r.Versions))
	for i, v := range r.Versions {
		parts[i] = v.String()
	}
	return "[" + strings.Join(parts, " ") + "]"
}
