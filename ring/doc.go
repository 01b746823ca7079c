// Package ring places keys on members: a consistent-hashing ring with
// virtual nodes, zone-aware preference lists, and measures of what moves
// when membership changes. It does no I/O and holds no lock: a Ring is
// immutable, and its owner builds a new one on every membership change and
// swaps it in (atomic.Pointer[ring.Ring]).
//
// # Positions and leaves
//
// A key's position is KeyHash(key), xxhash64 of the key; storage orders keys
// by the same hash. The hash space is cut into 1<<LeafBits equal leaves,
// the unit of the anti-entropy index.
//
// # Tokens
//
// Each member has vnodes tokens, xxhash64 of (member id, index), so every
// node derives the same ring from the member list alone, without a
// coordinator and without gossiping tokens. The member of the first token
// after a hash owns it; the preference list of a hash is the first N
// distinct members clockwise (members of zones not yet used first, when
// zones are set).
//
// Why virtual nodes: with one token per member, arcs are exponentially
// distributed and the largest member owns several times the mean. A
// member's share is the sum of its vnodes arcs, so its relative spread
// falls as 1/sqrt(vnodes); DefaultVNodes keeps the most loaded member of
// 3..64 random ids within about 8% of the mean (TestVNodeTable has the
// figures). Many small arcs also spread a joining member's intake, and a
// leaving member's load, over all the others, and each change moves about
// 1/n of the keys (MovedPrimary, MovedReplicas).
//
// Why tokens are snapped down to leaf edges: then every arc, and every
// Range, is a whole number of leaves, so the anti-entropy index needs no
// rebuild when the ring changes; the hashes of a range are those of its
// leaves. Dense tokens can land on the same edge; the first of them in the
// order of their unsnapped hashes owns the arc, which keeps that choice
// unbiased between members.
package ring
