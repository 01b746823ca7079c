package node

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"

	"github.com/cespare/xxhash/v2"

	"github.com/rumorkv/rumor/crdt"
)

// Stored records and per-copy actors.
//
// A node's dots use one counter per node (never reused), but the actor of a
// dot is not the node id: it is derived from the node id and an epoch kept
// with the node's own copy of the key, local and never replicated. A node
// keeps using an epoch only while its copy of the key has existed without
// interruption since the epoch began; a copy that is new here (created by
// replication or repair, or after the node lost its copy — a dropped
// range, a reaped tombstone, a damaged disk) gets a new epoch at the node's
// next write, so a new actor.
//
// Why: a version vector is a lossy summary of dots. Version-vector
// contexts are exact only while every state that holds a dot of actor A
// for a key also holds (or supersedes) every earlier dot of A for the key.
// A node writing with a fixed actor on a copy that lost its earlier dots
// breaks that, and a later read there returns a context {A:7} that also
// covers an A:5 the reader never saw; a write with that context erases
// A:5 (Riak's kv679 class of bugs). Tying the actor to an unbroken local
// history of the key keeps every actor's dots for a key together.
//
// Record layout: a plain encoded register (its format byte is 1), or
// recordEpoch, a 4-byte little-endian epoch, then the encoded register.
// Digests, peers and clients only ever see the register part.
const recordEpoch = 0xE1

// stateOf returns the encoded register inside a stored record.
func stateOf(rec []byte) []byte {
	if len(rec) >= 5 && rec[0] == recordEpoch {
		return rec[5:]
	}
	return rec
}

// decodeRecord splits a stored record into its epoch (0: none) and
// register.
func decodeRecord(rec []byte) (uint32, crdt.Register, error) {
	var epoch uint32
	if len(rec) > 0 && rec[0] == recordEpoch {
		if len(rec) < 5 {
			return 0, crdt.Register{}, fmt.Errorf("%w: truncated record", crdt.ErrCorrupt)
		}
		epoch = binary.LittleEndian.Uint32(rec[1:])
	}
	reg, err := decodeReg(stateOf(rec))
	return epoch, reg, err
}

// encodeRecord encodes a register with this node's epoch for the key.
func encodeRecord(epoch uint32, reg crdt.Register) ([]byte, error) {
	b, err := reg.MarshalBinary()
	if err != nil || epoch == 0 {
		return b, err
	}
	out := make([]byte, 5, 5+len(b))
	out[0] = recordEpoch
	binary.LittleEndian.PutUint32(out[1:], epoch)
	return append(out, b...), nil
}

// newEpoch returns a random nonzero epoch.
func newEpoch() uint32 {
	var b [4]byte
	for {
		_, _ = rand.Read(b[:])
		if e := binary.LittleEndian.Uint32(b[:]); e != 0 {
			return e
		}
	}
}

// actorFor is the actor of node id's writes under epoch.
func actorFor(id uint64, epoch uint32) crdt.ActorID {
	var b [12]byte
	binary.LittleEndian.PutUint64(b[:], id)
	binary.LittleEndian.PutUint32(b[8:], epoch)
	if a := xxhash.Sum64(b[:]); a != 0 {
		return crdt.ActorID(a)
	}
	return 1
}
