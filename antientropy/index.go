package antientropy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/zeebo/xxh3"

	"github.com/rumorkv/rumor/ring"
)

// Index is the incremental hash index over the key-hash space: per leaf the
// XOR of the digests of its keys, in a Fenwick tree so any leaf range hashes
// in O(log leaves). It is safe for concurrent use.
type Index struct {
	mu struct {
		sync.Mutex
		tree []Digest // Fenwick tree over leaves, 1-based: tree[i] covers (i - lowbit(i), i]
		// counts is a Fenwick tree of key counts per leaf. It counts modulo
		// 2^32: a range's count is exact while below 2^32 keys.
		counts []uint32
		keys   int64
	}
}

// NewIndex returns an empty index (20 bytes per leaf: 20 MiB).
func NewIndex() *Index {
	x := &Index{}
	x.mu.tree = make([]Digest, Leaves+1)
	x.mu.counts = make([]uint32, Leaves+1)
	return x
}

// Update records that the key at hash changed from old to new (either may be
// the zero Digest: absent), and adjusts the key count by delta (+1 for a new
// key, -1 for a removed one, 0 otherwise).
func (x *Index) Update(hash uint64, old, new Digest, delta int) {
	d := old.Xor(new)
	if d.IsZero() && delta == 0 {
		return
	}
	x.mu.Lock()
	x.mu.keys += int64(delta)
	for i := int(ring.LeafOf(hash)) + 1; i <= Leaves; i += i & -i {
		x.mu.tree[i] = x.mu.tree[i].Xor(d)
		x.mu.counts[i] += uint32(delta) // modulo 2^32, see counts
	}
	x.mu.Unlock()
}

func (x *Index) prefixCountLocked(k uint32) uint32 {
	var acc uint32
	for i := int(k); i > 0; i -= i & -i {
		acc += x.mu.counts[i]
	}
	return acc
}

// SetCount is the number of keys in s.
func (x *Index) SetCount(s RangeSet) uint64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	var n uint64
	for _, sp := range s {
		n += uint64(x.prefixCountLocked(sp.Hi) - x.prefixCountLocked(sp.Lo))
	}
	return n
}

// prefixLocked is the XOR of leaves [0, k).
func (x *Index) prefixLocked(k uint32) Digest {
	var acc Digest
	for i := int(k); i > 0; i -= i & -i {
		acc = acc.Xor(x.mu.tree[i])
	}
	return acc
}

// RangeHash is the XOR of the digests of every key in leaves [lo, hi).
func (x *Index) RangeHash(lo, hi uint32) Digest {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.prefixLocked(hi).Xor(x.prefixLocked(lo))
}

// SetHash is the XOR of the digests of every key in s.
func (x *Index) SetHash(s RangeSet) Digest {
	x.mu.Lock()
	defer x.mu.Unlock()
	var acc Digest
	for _, sp := range s {
		acc = acc.Xor(x.prefixLocked(sp.Hi)).Xor(x.prefixLocked(sp.Lo))
	}
	return acc
}

// ClearLeaves empties leaves [lo, hi): the node dropped every key there.
// It costs O(log leaves) per non-empty leaf.
func (x *Index) ClearLeaves(lo, hi uint32) {
	x.mu.Lock()
	defer x.mu.Unlock()
	type leaf struct {
		l uint32
		d Digest
		c uint32
	}
	var clear []leaf
	prev, prevCount := x.prefixLocked(lo), x.prefixCountLocked(lo)
	for l := lo; l < hi; l++ {
		cur, curCount := x.prefixLocked(l+1), x.prefixCountLocked(l+1)
		if d, c := cur.Xor(prev), curCount-prevCount; !d.IsZero() || c != 0 {
			clear = append(clear, leaf{l, d, c})
		}
		prev, prevCount = cur, curCount
	}
	for _, lf := range clear {
		x.mu.keys -= int64(lf.c)
		for i := int(lf.l) + 1; i <= Leaves; i += i & -i {
			x.mu.tree[i] = x.mu.tree[i].Xor(lf.d)
			x.mu.counts[i] -= lf.c
		}
	}
}

// Keys is the number of keys indexed.
func (x *Index) Keys() int64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.mu.keys
}

// Reset empties the index.
func (x *Index) Reset() {
	x.mu.Lock()
	clear(x.mu.tree)
	clear(x.mu.counts)
	x.mu.keys = 0
	x.mu.Unlock()
}

const (
	snapshotVersion = 1
	snapshotSize    = 1 + 8 + 20*Leaves + 8
)

// ErrSnapshot is returned for a snapshot that cannot be loaded.
var ErrSnapshot = errors.New("antientropy: bad index snapshot")

// Snapshot encodes the index: a format byte, the key count, the tree and an
// xxh3 checksum of all of it.
func (x *Index) Snapshot() []byte {
	x.mu.Lock()
	defer x.mu.Unlock()
	b := make([]byte, 0, snapshotSize)
	b = append(b, snapshotVersion)
	b = binary.LittleEndian.AppendUint64(b, uint64(x.mu.keys))
	for i, d := range x.mu.tree[1:] {
		b = binary.LittleEndian.AppendUint64(b, d.Hi)
		b = binary.LittleEndian.AppendUint64(b, d.Lo)
		b = binary.LittleEndian.AppendUint32(b, x.mu.counts[i+1])
	}
	return binary.LittleEndian.AppendUint64(b, xxh3.Hash(b))
}

// LoadSnapshot replaces the index's contents with a snapshot.
func (x *Index) LoadSnapshot(b []byte) error {
	const size = snapshotSize
	if len(b) != size {
		return fmt.Errorf("%w: %d bytes, want %d", ErrSnapshot, len(b), size)
	}
	if b[0] != snapshotVersion {
		return fmt.Errorf("%w: format %d", ErrSnapshot, b[0])
	}
	if sum := binary.LittleEndian.Uint64(b[size-8:]); sum != xxh3.Hash(b[:size-8]) {
		return fmt.Errorf("%w: checksum mismatch", ErrSnapshot)
	}
	keys := int64(binary.LittleEndian.Uint64(b[1:]))
	if keys < 0 {
		return fmt.Errorf("%w: key count %d", ErrSnapshot, keys)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.mu.keys = keys
	p := b[9:]
	for i := 1; i <= Leaves; i++ {
		x.mu.tree[i] = Digest{Hi: binary.LittleEndian.Uint64(p), Lo: binary.LittleEndian.Uint64(p[8:])}
		x.mu.counts[i] = binary.LittleEndian.Uint32(p[16:])
		p = p[20:]
	}
	return nil
}
