package node

import (
	"bytes"
	"context"
	"errors"
	"time"

	"github.com/rumorkv/rumor/antientropy"
	"github.com/rumorkv/rumor/ring"
)

// Tombstone reaping. A deleted key keeps its tombstone until the tombstone
// is older than TombstoneGrace and every one of the key's N replicas holds
// exactly the same state. The key's first replica checks that with each
// replica, then asks each to delete the key if its state is still that one,
// then deletes its own copy the same way. A replica that misses the delete
// keeps its tombstone and anti-entropy copies it back to the others (a
// tombstone, never a live value), to be reaped in a later round.
//
// What the grace period protects against: a state written before the delete
// that is still on its way — a hint on a fallback node cut off from the
// key's replicas, or a replica cut off from the others — arriving after the
// tombstone was reaped would bring the deleted value back. Set
// TombstoneGrace above the longest cut-off you expect.

// reapLoop runs reapRound every ReapInterval (jittered).
func (n *Node) reapLoop() {
	if n.cfg.ReapInterval <= 0 {
		return
	}
	timer := time.NewTimer(jitter(n.cfg.ReapInterval))
	defer timer.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-timer.C:
		}
		if reaped, err := n.reapRound(); err != nil && n.ctx.Err() == nil {
			n.log.Warn("tombstone reaping", "err", err, "reaped", reaped)
		} else if reaped > 0 {
			n.log.Info("reaped tombstones", "keys", reaped)
		}
		timer.Reset(jitter(n.cfg.ReapInterval))
	}
}

type reapCandidate struct {
	key    []byte
	hash   uint64
	digest antientropy.Digest
}

var errReapBatchFull = errors.New("reap batch full")

// reapRound reaps what it can of the tombstones this node is first replica
// of, and returns how many keys it removed.
func (n *Node) reapRound() (int, error) {
	v := n.view.Load()
	cutoff := time.Now().Add(-n.cfg.TombstoneGrace)
	var cands []reapCandidate
	err := n.store.Scan(0, 0, func(hash uint64, key, value []byte) error {
		pref := v.ring.Preference(hash, n.cfg.N)
		if len(pref) == 0 || pref[0] != ring.NodeID(n.id) {
			return nil
		}
		_, reg, err := decodeRecord(value)
		if err != nil || !reg.Tombstoned() || !reg.MaxHLC().Time().Before(cutoff) {
			return nil
		}
		cands = append(cands, reapCandidate{key: bytes.Clone(key), hash: hash, digest: antientropy.DigestOf(key, stateOf(value))})
		if len(cands) >= reapBatch {
			return errReapBatchFull
		}
		return nil
	})
	if err != nil && !errors.Is(err, errReapBatchFull) {
		return 0, err
	}
	reaped := 0
	for _, c := range cands {
		if n.ctx.Err() != nil {
			break
		}
		ok, err := n.reapKey(v, c)
		if err != nil {
			n.log.Debug("reap", "key", string(c.key), "err", err)
			continue
		}
		if ok {
			reaped++
		}
	}
	n.ae.reaped.Add(uint64(reaped))
	return reaped, nil
}

// reapKey removes one tombstone from every replica if all hold it.
func (n *Node) reapKey(v *view, c reapCandidate) (bool, error) {
	var others []memberEntry
	// Every node that holds or will hold the key must hold the tombstone.
	for _, id := range v.writeTargets(c.hash, n.cfg.N) {
		if uint64(id) == n.id {
			continue
		}
		e, ok := v.byID[uint64(id)]
		if !ok || !n.mem.reachable(e.Name) {
			return false, nil // every replica must confirm
		}
		others = append(others, e)
	}
	req := reapReq{Key: c.key, Digest: [2]uint64{c.digest.Hi, c.digest.Lo}}
	ask := func(e memberEntry) (bool, error) {
		ctx, cancel := context.WithTimeout(n.ctx, n.cfg.ReplicaTimeout)
		defer cancel()
		body, err := encode(&req)
		if err != nil {
			return false, err
		}
		out, err := n.call(ctx, e.RPC, methodReap, body)
		if err != nil {
			return false, err
		}
		var resp reapResp
		if err := decode(out, &resp); err != nil {
			return false, err
		}
		return resp.Same, nil
	}
	for _, e := range others {
		if same, err := ask(e); err != nil || !same {
			return false, err
		}
	}
	req.Do = true
	for _, e := range others {
		if _, err := ask(e); err != nil {
			return false, err
		}
	}
	return n.reapLocal(c.key, c.digest, true)
}

// reapLocal reports whether this node's copy of key has the given digest,
// and with do deletes it if so (atomically under the key's lock).
func (n *Node) reapLocal(key []byte, d antientropy.Digest, do bool) (bool, error) {
	if !do {
		b, ok, err := n.store.Get(key)
		if err != nil || !ok {
			return false, err
		}
		return antientropy.DigestOf(key, stateOf(b)) == d, nil
	}
	same := false
	_, err := n.store.Update(key, func(old []byte, ok bool) ([]byte, bool, error) {
		same = ok && antientropy.DigestOf(key, stateOf(old)) == d
		return nil, same, nil
	})
	return same, err
}
