package antientropy

import (
	"encoding/binary"
	"sync"

	"github.com/zeebo/xxh3"
)

// Digest is a 128-bit digest of one (key, encoded state) pair. The index
// XORs whole digests; the protocol reconciles ItemOf identities.
type Digest struct{ Hi, Lo uint64 }

// Xor returns d ^ o.
func (d Digest) Xor(o Digest) Digest { return Digest{d.Hi ^ o.Hi, d.Lo ^ o.Lo} }

// IsZero reports whether d is all zeros (the digest of an empty set).
func (d Digest) IsZero() bool { return d.Hi == 0 && d.Lo == 0 }

// ItemBits is how many low bits of an item come from the digest; the rest
// are the top bits of the key's hash.
const ItemBits = 40

// ItemOf is the 64-bit identity the protocol reconciles for a key whose hash
// is hash and whose (key, state) digest is d: the top 24 bits of the key
// hash, then 40 bits of the digest. Two states of one key collide with
// probability 2^-40; different keys almost never share an item. Carrying
// the hash prefix lets the side that decodes an item it lacks find its own
// copy of that key (if any) without another round trip.
func ItemOf(hash uint64, d Digest) uint64 {
	const low = 1<<ItemBits - 1
	return hash&^low | d.Lo&low
}

// ItemHashRange is the key-hash interval [start, end] an item's key lies in.
func ItemHashRange(item uint64) (start, end uint64) {
	const low = 1<<ItemBits - 1
	return item &^ low, item | low
}

var hasherPool = sync.Pool{New: func() any { return xxh3.New128() }}

// DigestOf returns the digest of key holding the encoded state. The key is
// length-prefixed so (k, s) pairs cannot collide by shifting bytes between
// key and state. Equal states must have equal encodings (crdt's encoding is
// canonical), so replicas that agree have equal digests.
func DigestOf(key, state []byte) Digest {
	h := hasherPool.Get().(*xxh3.Hasher128)
	h.Reset()
	var n [binary.MaxVarintLen64]byte
	_, _ = h.Write(n[:binary.PutUvarint(n[:], uint64(len(key)))])
	_, _ = h.Write(key)
	_, _ = h.Write(state)
	s := h.Sum128()
	hasherPool.Put(h)
	return Digest{Hi: s.Hi, Lo: s.Lo}
}
