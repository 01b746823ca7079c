// Package antientropy finds what two replicas hold differently, cheaply.
//
// It is pure logic: no I/O, no clocks. The node feeds it key digests and
// messages and carries out what it decides (scans, transfers, merges).
//
// # The index
//
// Index keeps, for each of the ring's 1<<ring.LeafBits leaves (equal slices
// of the key-hash space), the XOR of a 128-bit Digest of (key, encoded
// state) for every key in it. A write updates it in O(log leaves): XOR out
// the old digest, XOR in the new. Leaves sit in a Fenwick tree, so the hash
// of any contiguous leaf range — and so of any RangeSet, such as everything
// two nodes both replicate — comes in O(log leaves) per span. Ring tokens are
// snapped to leaf edges, so every replicated range is a whole number of
// leaves and a ring change needs no rebuild.
//
// # The protocol
//
// A session compares the set of keys two replicas share (a RangeSet) and
// ends with the exact symmetric difference of their (key, state) items:
//
//  1. The initiator sends a Summary: ring fingerprint, the set's hash, its
//     item count (about 30 bytes). Equal hashes end the session: an in-sync
//     pair costs one small message each way per round for all shared ranges.
//  2. Otherwise the responder streams coded symbols of a rateless invertible
//     Bloom lookup table (RIBLT; Yang, Gilad and Alizadeh, SIGCOMM 2024) over
//     its items. The initiator subtracts its own items' symbols and peels; d
//     differences decode from about 1.35–1.7 d symbols of 17 bytes, whatever
//     the set sizes. Batches grow by a factor (default 1.25), so the
//     overshoot stays small.
//  3. When the differences are so many that symbols would cost more than the
//     responder's plain item list, the initiator asks for the list instead;
//     when the initiator holds nothing, it asks to pull everything; when the
//     responder holds nothing, the initiator pushes everything.
//
// The Result names items only on the initiator's side (LocalOnly) and only
// on the responder's (RemoteOnly); the node then moves exactly those states
// to the side that lacks them and merges them with the CRDT join. An item
// (ItemOf) is the top 24 bits of the key's hash and 40 bits of its digest,
// so the side that lacks an item can find its own copy of the key, if any,
// and say what it already holds.
package antientropy
