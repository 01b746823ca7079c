package antientropy

import (
	"encoding/binary"
	"sync"

	"github.com/zeebo/xxh3"
)

// Digest is a 128-bit digest of one (key, encoded state) pair. Its low half
// doubles as the item's identity in the reconciliation protocol.
type Digest struct{ Hi, Lo uint64 }

// Xor returns d ^ o.
func (d Digest) Xor(o Digest) Digest { return Digest{d.Hi ^ o.Hi, d.Lo ^ o.Lo} }

// IsZero reports whether d is all zeros (the digest of an empty set).
func (d Digest) IsZero() bool { return d.Hi == 0 && d.Lo == 0 }

// Item is the 64-bit item identity the protocol reconciles.
func (d Digest) Item() uint64 { return d.Lo }

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
