// Package storage is a Rumor node's single pebble instance: its data,
// hints for unreachable peers, and its own metadata.
//
// # Key layout
//
// Every pebble key starts with a byte naming its key space:
//
//	data:  'd' | be64(hash) | key              hash = xxhash64(key)
//	hints: 'h' | be64(target node id) | be64(hash) | key
//	meta:  'm' | name
//
// Data keys are ordered by the key's hash, the same hash the ring uses, so
// a slice of the hash space (a vnode range, an anti-entropy leaf) is one
// contiguous range scan (Scan). Hints are grouped by the node they are held
// for, so a handoff reads one prefix. Data and hint values are opaque bytes
// from the caller (an encoded register) and are never empty. Reads check
// every key's hash prefix against its key and reject empty values: a bad
// record is an error wrapping ErrCorrupt, never a panic.
//
// The store's own records are the meta names "storage.id" and
// "storage.counter" (PutMeta refuses the "storage." prefix). Each is
//
//	format byte (1) | be64 value | be32 CRC-32C of the first 9 bytes
//
// and is validated on read.
//
// # Durability
//
// Every data and hint write is synced (pebble.Sync) before Update or
// UpdateHint returns, unless Options.NoSync: with NoSync even a process
// crash, not only power loss, can lose writes buffered inside pebble. A
// node acknowledges a write only after that, so the cost of an fsync per
// write matters; pebble's commit pipeline queues concurrent synced batches
// and covers them with one WAL fsync (group commit), so throughput grows
// with the number of concurrent writers (see BenchmarkUpdateSync).
// Updates of one key are serialized by a striped mutex, which makes
// Update a read-modify-write: the CRDT merge of a register runs inside it.
//
// # Identity and dot counters
//
// A node's id is a random nonzero 64-bit number created, and synced, with
// its data directory: a new (or wiped) directory is a new node. Dots are
// (node id, counter) with one counter per node. The counter must never
// issue the same value twice: Riak's kv679 bugs came from a node that lost
// its copy of a key (handed off, disk replaced, key reaped), restarted its
// per-key counter and issued dots its peers had already seen, so its new
// writes were silently discarded as old. Here the counter is per node, and
// a high-water mark is persisted, synced even with NoSync, CounterReserve
// (default 10 000) ahead of use before any counter above the previous mark
// is handed out. Below the mark NextCounter is one atomic add; after a
// crash counting resumes above the persisted mark, skipping at most
// CounterReserve values and never reusing one. A directory that has an
// identity but no mark is rejected as corrupt rather than restarted at 1.
package storage
