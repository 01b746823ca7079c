package ring

import (
	"cmp"
	"encoding/binary"
	"math/bits"
	"slices"

	"github.com/cespare/xxhash/v2"
)

// NodeID identifies a member. Ids are random 64-bit values; a member's
// tokens are derived from its id alone.
type NodeID uint64

// Member is one ring member. Zone is its failure zone (rack, site). Zones
// matter once some member has a non-empty one; the empty zone then counts
// as one more zone.
type Member struct {
	ID   NodeID
	Zone string
}

// LeafBits is log2 of the number of leaves: the hash space is cut into
// 1<<LeafBits equal leaves, which anti-entropy indexes. Tokens sit on leaf
// edges, so every range of the ring is a whole number of leaves.
const LeafBits = 20

// DefaultVNodes is the number of tokens per member when New is given
// vnodes <= 0. It is the smallest power of two for which the most loaded
// member of any cluster of 3 to 64 members with random ids owns at most
// about 8% more than the mean (measured over 50 random id sets per size;
// see TestVNodeTable). 64 members then hold 262144 tokens, 3 MiB.
const DefaultVNodes = 4096

const (
	leafShift = 64 - LeafBits
	numLeaves = 1 << LeafBits
	leafMask  = 1<<leafShift - 1 // the low bits of a hash below its leaf
)

// KeyHash is the key's position on the ring: xxhash64 of the key. Storage
// orders keys by the same hash, so a ring range is a contiguous key range.
func KeyHash(key []byte) uint64 { return xxhash.Sum64(key) }

// LeafOf returns the leaf that contains hash.
func LeafOf(hash uint64) uint32 { return uint32(hash >> leafShift) }

// Tokens returns the vnodes tokens of the member id, in index order: the
// xxhash64 of (id, index), each snapped down to a leaf edge. It depends on
// nothing but its arguments, so every node computes the same tokens.
func Tokens(id NodeID, vnodes int) []uint64 {
	out := rawTokens(id, vnodes)
	for i := range out {
		out[i] &^= leafMask
	}
	return out
}

// rawTokens returns the tokens before snapping.
func rawTokens(id NodeID, vnodes int) []uint64 {
	out := make([]uint64, max(vnodes, 0))
	var buf [16]byte
	binary.LittleEndian.PutUint64(buf[:8], uint64(id))
	for i := range out {
		binary.LittleEndian.PutUint64(buf[8:], uint64(i))
		out[i] = xxhash.Sum64(buf[:])
	}
	return out
}

// Ring is an immutable consistent-hashing ring. It is safe for concurrent
// use; to change membership build a new Ring and swap it in (for example
// with an atomic.Pointer[Ring]).
//
// The owner of a hash h is the member of the first token t > h, wrapping
// around: token t_i owns the arc [t_{i-1}, t_i), a whole number of leaves.
// Several tokens can snap to the same leaf edge. They are ordered by their
// hash before snapping (then by member id); the first owns the arc and the
// others own nothing. Ordering them by member id alone would hand every
// such arc to the smaller id, which skews ownership measurably once tokens
// are dense (see TestVNodeTable).
type Ring struct {
	members []Member // sorted by ID, distinct
	zone    []int32  // zone index of each member
	nzones  int      // number of distinct zones
	zoned   bool     // some member has a non-empty zone
	tokens  []uint64 // sorted by (token, member id)
	owner   []int32  // member index of each token
	vnodes  int
	hash    uint64
}

// New builds the ring of members with vnodes tokens each; vnodes <= 0
// means DefaultVNodes. Of members with equal IDs one is kept (the one with
// the smallest zone), so the input order never matters. No members make an
// empty ring, whose Preference is nil.
func New(members []Member, vnodes int) *Ring {
	if vnodes <= 0 {
		vnodes = DefaultVNodes
	}
	ms := slices.Clone(members)
	slices.SortFunc(ms, func(a, b Member) int {
		return cmp.Or(cmp.Compare(a.ID, b.ID), cmp.Compare(a.Zone, b.Zone))
	})
	ms = slices.CompactFunc(ms, func(a, b Member) bool { return a.ID == b.ID })
	r := &Ring{members: ms, vnodes: vnodes, zone: make([]int32, len(ms))}

	zones := make(map[string]int32)
	for i, m := range ms {
		z, ok := zones[m.Zone]
		if !ok {
			z = int32(len(zones))
			zones[m.Zone] = z
		}
		r.zone[i] = z
		r.zoned = r.zoned || m.Zone != ""
	}
	r.nzones = len(zones)

	// Sort packed words: the token's hash before snapping with its low
	// idxBits bits replaced by the member index (index order is id order).
	// That orders tokens by leaf edge, then by the rest of the hash, then
	// by id; snapping the word recovers the token.
	idxBits := 0
	if len(ms) > 1 {
		idxBits = bits.Len(uint(len(ms) - 1))
	}
	idxMask := uint64(1)<<idxBits - 1
	packed := make([]uint64, 0, len(ms)*vnodes)
	for i, m := range ms {
		for _, t := range rawTokens(m.ID, vnodes) {
			packed = append(packed, t&^idxMask|uint64(i))
		}
	}
	slices.Sort(packed)
	r.tokens = make([]uint64, len(packed))
	r.owner = make([]int32, len(packed))
	for i, p := range packed {
		r.tokens[i] = p &^ leafMask
		r.owner[i] = int32(p & idxMask)
	}
	r.hash = fingerprint(ms, vnodes)
	return r
}

// fingerprint hashes everything the ring is computed from.
func fingerprint(ms []Member, vnodes int) uint64 {
	var buf []byte
	buf = append(buf, "rumor-ring-v1"...)
	buf = binary.LittleEndian.AppendUint64(buf, LeafBits)
	buf = binary.LittleEndian.AppendUint64(buf, uint64(vnodes))
	buf = binary.LittleEndian.AppendUint64(buf, uint64(len(ms)))
	for _, m := range ms {
		buf = binary.LittleEndian.AppendUint64(buf, uint64(m.ID))
		buf = binary.AppendUvarint(buf, uint64(len(m.Zone)))
		buf = append(buf, m.Zone...)
	}
	return xxhash.Sum64(buf)
}

// Len returns the number of members.
func (r *Ring) Len() int { return len(r.members) }

// Members returns the members sorted by ID.
func (r *Ring) Members() []Member { return slices.Clone(r.members) }

// VNodes returns the number of tokens per member.
func (r *Ring) VNodes() int { return r.vnodes }

// Hash fingerprints the members, their zones and the number of vnodes:
// two rings with equal Hash place every key identically.
func (r *Ring) Hash() uint64 { return r.hash }

// search returns the index of the token that owns hash: the first token
// greater than hash, wrapping to 0.
func (r *Ring) search(hash uint64) int {
	lo, hi := 0, len(r.tokens)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if r.tokens[mid] <= hash {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo == len(r.tokens) {
		return 0
	}
	return lo
}

// Owner returns the member that owns hash, or 0 for an empty ring.
func (r *Ring) Owner(hash uint64) NodeID {
	if len(r.tokens) == 0 {
		return 0
	}
	return r.members[r.owner[r.search(hash)]].ID
}

// Preference returns the first min(n, Len()) distinct members clockwise
// from the owner of hash, the owner first. When some member has a zone,
// distinct zones come first: the walk takes members of zones not yet
// taken, then fills up with the remaining members in clockwise order.
func (r *Ring) Preference(hash uint64, n int) []NodeID {
	n = min(n, len(r.members))
	if n <= 0 {
		return nil
	}
	return r.appendPref(make([]NodeID, 0, n), r.search(hash), n)
}

// bitset is a set of small integers; up to 256 members need no allocation.
type bitset []uint64

func newBitset(small *[4]uint64, n int) bitset {
	if w := (n + 63) / 64; w > len(small) {
		return make(bitset, w)
	}
	*small = [4]uint64{}
	return small[:]
}

func (s bitset) has(i int32) bool { return s[i>>6]&(1<<(i&63)) != 0 }
func (s bitset) add(i int32)      { s[i>>6] |= 1 << (i & 63) }

// appendPref appends the preference list of n <= Len() members starting
// at token index start.
func (r *Ring) appendPref(out []NodeID, start, n int) []NodeID {
	var smallSeen, smallZones [4]uint64
	seen := newBitset(&smallSeen, len(r.members))
	m := len(r.tokens)
	want := len(out) + n
	if r.zoned && r.nzones > 1 {
		// Pass 1: one member per zone, clockwise.
		zones := newBitset(&smallZones, r.nzones)
		used := 0
		for k, j := 0, start; k < m && len(out) < want && used < r.nzones; k++ {
			mi := r.owner[j]
			if z := r.zone[mi]; !zones.has(z) {
				zones.add(z)
				used++
				seen.add(mi)
				out = append(out, r.members[mi].ID)
			}
			if j++; j == m {
				j = 0
			}
		}
	}
	// Pass 2 (the only pass without zones): distinct members, clockwise.
	for j := start; len(out) < want; {
		if mi := r.owner[j]; !seen.has(mi) {
			seen.add(mi)
			out = append(out, r.members[mi].ID)
		}
		if j++; j == m {
			j = 0
		}
	}
	return out
}

// Walk calls fn with each member once, in clockwise order from the owner
// of hash (zones play no part), until fn returns false or every member was
// visited.
func (r *Ring) Walk(hash uint64, fn func(NodeID) bool) {
	if len(r.tokens) == 0 {
		return
	}
	var small [4]uint64
	seen := newBitset(&small, len(r.members))
	m := len(r.tokens)
	for visited, j := 0, r.search(hash); visited < len(r.members); {
		if mi := r.owner[j]; !seen.has(mi) {
			seen.add(mi)
			visited++
			if !fn(r.members[mi].ID) {
				return
			}
		}
		if j++; j == m {
			j = 0
		}
	}
}

// Ownership returns the share of the hash space each member owns as
// primary. The shares sum to 1 (exactly, in leaves).
func (r *Ring) Ownership() map[NodeID]float64 {
	out := make(map[NodeID]float64, len(r.members))
	if len(r.tokens) == 0 {
		return out
	}
	leaves := make([]uint64, len(r.members))
	m := len(r.tokens)
	for i := range m {
		var arc uint64
		if i == 0 {
			arc = numLeaves - uint64(LeafOf(r.tokens[m-1])) + uint64(LeafOf(r.tokens[0]))
		} else {
			arc = uint64(LeafOf(r.tokens[i]) - LeafOf(r.tokens[i-1]))
		}
		leaves[r.owner[i]] += arc
	}
	for i, m := range r.members {
		out[m.ID] = float64(leaves[i]) / numLeaves
	}
	return out
}

// Range is the leaves [Lo, Hi) of the hash space, Hi <= 1<<LeafBits, all
// of whose hashes have the preference list Replicas.
type Range struct {
	Lo, Hi   uint32
	Replicas []NodeID
}

// segments calls fn for each maximal run of leaves [lo, hi) with a
// constant preference list of n members, in order from leaf 0 (not
// wrapping). pref is only valid during the call. The ring must not be
// empty and n must be in [1, Len()].
func (r *Ring) segments(n int, fn func(lo, hi uint32, pref []NodeID)) {
	m := len(r.tokens)
	cur := make([]NodeID, 0, n)
	next := make([]NodeID, 0, n)
	lo := uint32(0)
	cur = r.appendPref(cur, 0, n) // the arc [0, LeafOf(t_0)) belongs to token 0
	for i := 1; i <= m; i++ {
		// Token i (token 0 past the end) owns the leaves [a, b).
		a, b, start := LeafOf(r.tokens[i-1]), uint32(numLeaves), 0
		if i < m {
			b, start = LeafOf(r.tokens[i]), i
		}
		if a == b {
			continue // an empty arc: equal tokens
		}
		next = r.appendPref(next[:0], start, n)
		if slices.Equal(cur, next) {
			continue
		}
		if a > lo { // else the run so far is empty: leaf 0 is a token's
			fn(lo, a, cur)
			lo = a
		}
		cur, next = next, cur
	}
	fn(lo, numLeaves, cur)
}

// Ranges cuts the whole hash space into maximal runs of leaves with a
// constant preference list of n members, in order from leaf 0 (a run that
// wraps past the end is split at 0). Every range is non-empty and
// Replicas is Preference(h, n) for every hash h in it.
func (r *Ring) Ranges(n int) []Range {
	n = min(n, len(r.members))
	if n <= 0 {
		return []Range{{Lo: 0, Hi: numLeaves}}
	}
	// There are at most len(tokens)+1 ranges; their Replicas share one
	// backing array.
	out := make([]Range, 0, len(r.tokens)+1)
	slab := make([]NodeID, 0, (len(r.tokens)+1)*n)
	r.segments(n, func(lo, hi uint32, pref []NodeID) {
		k := len(slab)
		slab = append(slab, pref...)
		out = append(out, Range{Lo: lo, Hi: hi, Replicas: slab[k : k+n : k+n]})
	})
	return out
}

// Arc is the leaves [Lo, Hi) of the hash space, Lo < Hi <= 1<<LeafBits.
type Arc struct{ Lo, Hi uint32 }

// Arcs returns, per member, the leaves it owns as primary: maximal runs of
// leaves with that owner, in order from leaf 0 (a run that wraps past the
// end is split at 0, so it is the member's first and last arc). The arcs of
// all members partition the hash space, and a member's arcs add up to its
// Ownership. Members that own nothing are absent; an empty ring has none.
func (r *Ring) Arcs() map[NodeID][]Arc {
	out := make(map[NodeID][]Arc, len(r.members))
	if len(r.tokens) == 0 {
		return out
	}
	r.segments(1, func(lo, hi uint32, pref []NodeID) {
		out[pref[0]] = append(out[pref[0]], Arc{Lo: lo, Hi: hi})
	})
	return out
}
