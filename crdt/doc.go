// Package crdt holds Rumor's causality and replicated data types: dots,
// version vectors, the multi-value register with tombstones, a hybrid
// logical clock and the deterministic encodings of all of them. It does no
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
// # Values are immutable
//
// Registers, versions and version vectors returned by this package share
// memory with their inputs (values and contexts are not copied by Join).
// Treat them as immutable; the methods never modify their receivers or
// arguments.
package crdt
