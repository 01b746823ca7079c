// Package crdt holds Rumor's causality and replicated data types: dots,
// version vectors, the multi-value register with tombstones, PN-counters,
// add-wins sets and maps of them, a hybrid logical clock and the
// deterministic encodings of all of them. It does no
// I/O: time comes from an injected function, and everything else is values
// in, values out.
//
// # Model
//
// Every write is identified by a dot (actor, counter). A node is an actor
// with one counter for all its keys, never reused, so a dot names one write
// in the whole cluster. A key's state is a [Register]: a set of versions,
// each carrying its dot, the causal context its writer had seen (a version
// vector, [VV]), a hybrid-logical-clock timestamp and a value or a tombstone
// flag.
//
// The join of two registers is the union of their versions by dot minus
// every version whose dot is covered by another version's context. A read
// hands out the live versions (siblings) and one context, the join of all
// dots and contexts ([Register.Context]); a write made with that context
// supersedes exactly what the reader saw, and a write without one becomes a
// sibling. A delete is a write of a tombstone: it dominates what it covers
// and stays until a later write supersedes it.
//
// # The invariant version vectors rely on
//
// Counters are per node, so one actor's dots for one key are not contiguous
// (A:5, then A:17). A version vector is a lossy summary of such a set:
// {A:17} also "covers" A:5. Contexts are therefore exact only under an
// invariant the caller (the node layer) keeps:
//
//	Any state that holds a dot of actor A for key k also holds, or
//	supersedes, every earlier dot of A for k.
//
// It holds when actor A writes only on its own copy of k and ships whole
// states, never single versions. Under it, join is commutative, associative
// and idempotent, and a write with a read's context supersedes exactly the
// versions that read returned.
//
// [Register.Write] closes the given context over the register (a version's
// context includes the context of everything it supersedes). Closure makes
// join associative on reachable states; a context that is not closed (a
// forged one) can at worst keep an old version alive as a sibling.
//
// # Counters, sets and maps
//
// Beside the register, three types merge without siblings. All are
// delta-state CRDTs (Almeida, Shoker and Baquero): a mutator does not
// change its receiver but returns a delta, a small value of the same type
// that the caller joins into its state and ships to the other replicas.
// Joining a delta into a state is the mutation; joining deltas together
// gives a delta group; joining whole states is the anti-entropy fallback.
// All three joins are commutative, associative and idempotent.
//
//   - [Counter], a PN-counter: per actor, the totals of its increments and
//     decrements. [Counter.Add] returns the actor's new entry; the join
//     takes per-actor, per-component maxima; [Counter.Value] sums in 128
//     bits and saturates to the int64 range, reporting whether it did.
//   - [ORSet], an add-wins observed-remove set of byte strings: a dot store
//     (member → the dots of the adds that made it) and an exact causal
//     context ([DotContext]: a version vector of contiguous prefixes plus a
//     cloud of dots beyond them). [ORSet.Add] returns the member with one
//     fresh dot and a context of that dot and the dots it replaces;
//     [ORSet.Remove] returns an empty store with a context of the member's
//     dots. An add the remover had not seen survives: add wins.
//   - [Map]: fields keyed by (name, kind) holding registers, counters or
//     sets, joined field by field. A type conflict keeps both fields. Fields
//     are never removed, and maps do not nest (see [Map]).
//
// [Value] is the tagged union of the four kinds: [JoinValues] fails with
// [ErrKindMismatch] on different kinds; [DecodeValue] reads any encoding.
//
// # Delta delivery
//
// The set's context is exact, never a lossy summary, so deltas may be
// lost, duplicated, delayed and reordered: a replica that missed a delta
// keeps a cloud of the dots it did see until a later delta or a full state
// fills the gap, and converges to the join of all full states once it has
// every delta or one full state holding them. The only assumption is the
// usual one: an actor mutates only the replica it owns (a node under its
// own id, on its own copy), so the counter it takes from the context
// (highest seen plus one) is fresh and its counter entry grows only there.
// Set dots are per set, not per node: one actor's dots for a set are
// contiguous at their origin, and clouds only hold gaps in delivery.
//
// A counter's delta is one entry and a set's delta is one member with its
// dot, so they are O(change) bytes: an add to a 100k-member set encodes in
// the member plus about 15 bytes, a remove in about 15 bytes. Deltas fold
// into delta groups of the same size as the changes: after a partition,
// shipping each side's group sends about 1x the bytes of the changed
// members (TestSetPartitionHealBytes, BenchmarkSetPartitionHeal). A
// register's delta is the whole register (it is small, and version-vector
// contexts need whole states). [ORSet.Join] copies the state, so joining a
// delta with it costs O(state); [ORSet.Merge] and [Map.Merge] apply a
// delta in place in O(delta) once a large set's dots are indexed (2.5 µs
// for an add and a remove on a 100k-member set).
//
// # Encodings
//
// Every value encodes canonically (equal values, equal bytes; decoders
// accept nothing else) as a one-byte kind tag then msgpack with shortest
// integer, array and bin headers:
//
//	1 register  the register format (see [Register.MarshalBinary])
//	2 counter   [actor₁, inc₁, dec₁, …]            actors increasing, no 0 entry
//	3 set       [[actor₀, actor₁, …],             actor table, increasing
//	             [[member, [i, c, …]], …],        members increasing (bin)
//	             [[i, c, …], [i, c, …]]]          context: vector, cloud
//	4 map       [[name, value], …]                by (name, kind); value a bin
//	                                              holding a tagged encoding
//
// In a set, a dot is a pair (i, c): index i into the actor table, counter
// c. The table lists exactly the actors that appear. The encoded cloud
// leaves out the members' dots, which the context holds anyway. Dots in a
// member and in the cloud are strictly increasing by (actor, counter);
// every member has a dot, no dot is in two members, and no cloud dot
// (listed or a member's) is covered by or adjacent to its actor's prefix.
// A map field is never empty and never a map. The
// register's tag is its old format byte, so registers stored before these
// types existed decode unchanged. [Limits] bounds every count and size.
//
// # Values are immutable
//
// Registers, versions, version vectors, counters, sets and maps returned by
// this package share memory with their inputs (values and contexts are not
// copied by Join). Treat them as immutable; the methods never modify their
// receivers or arguments, except [ORSet.Merge] and [Map.Merge], which
// update a value in place for the caller that owns it.
package crdt
