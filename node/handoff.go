package node

import (
	"bytes"
	"context"
	"time"
)

// hintBatch is how many hints one target gets per round.
const hintBatch = 256

type hint struct{ key, value []byte }

// hintLoop offers stored hints to their targets once they are reachable, and
// deletes each hint once its target has it durably (and only if the hint did
// not change in the meantime).
func (n *Node) hintLoop() {
	tick := time.NewTicker(n.cfg.HintInterval)
	defer tick.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-tick.C:
		}
		targets, err := n.store.HintTargets()
		if err != nil {
			n.log.Warn("list hint targets", "err", err)
			continue
		}
		v := n.view.Load()
		for target := range targets {
			e, ok := v.byID[target]
			if !ok {
				// The target left or was removed: its hints go to the
				// keys' owners now.
				n.reroute(target)
				continue
			}
			if !n.mem.reachable(e.Name) {
				continue
			}
			n.handoff(target, e)
		}
	}
}

// hintRounds bounds the batches handed to one target per HintInterval.
const hintRounds = 64

// handoff hands target its hints, a batch at a time, until none is left,
// a batch fails, or hintRounds batches went.
func (n *Node) handoff(target uint64, e memberEntry) {
	for range hintRounds {
		if n.ctx.Err() != nil || n.handoffBatch(target, e) == 0 {
			return
		}
	}
}

// handoffBatch hands over up to hintBatch hints and returns how many it
// delivered and deleted.
func (n *Node) handoffBatch(target uint64, e memberEntry) int {
	var batch []hint
	err := n.store.Hints(target, hintBatch, func(key, value []byte) error {
		batch = append(batch, hint{key: append([]byte(nil), key...), value: append([]byte(nil), value...)})
		return nil
	})
	if err != nil {
		n.log.Warn("read hints", "target", e.Name, "err", err)
		return 0
	}
	if len(batch) == 0 {
		return 0
	}
	// One batch RPC: the target merges all of them with one sync.
	req := replicateBatchReq{Pairs: make([]aePair, len(batch))}
	for i, h := range batch {
		req.Pairs[i] = aePair{Key: h.key, State: h.value}
	}
	body, err := encode(&req)
	if err != nil {
		n.log.Warn("encode hints", "target", e.Name, "err", err)
		return 0
	}
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.ReplicaTimeout)
	_, err = n.call(ctx, e.RPC, methodReplicateBatch, body)
	cancel()
	if err != nil {
		n.log.Debug("hand off hints", "target", e.Name, "hints", len(batch), "err", err)
		return 0
	}
	n.metrics.hintBytes.Add(uint64(len(body) + rpcRequestOverhead + rpcResponseOverhead))
	deleted := 0
	for _, h := range batch {
		// Delete only if unchanged since read: a hint merged with a newer
		// state meanwhile stays for the next round.
		ok, err := n.store.DeleteHint(target, h.key, h.value)
		if err != nil {
			n.log.Warn("delete delivered hint", "target", e.Name, "err", err)
			return deleted
		}
		if ok {
			deleted++
		}
		n.metrics.hintsDelivered.Add(1)
	}
	return deleted
}

// reroute turns the hints held for a node that is no longer a member into
// hints for (or, where this node is one, merges into) the keys' current
// owners.
func (n *Node) reroute(target uint64) {
	for range hintRounds {
		var batch []hint
		err := n.store.Hints(target, hintBatch, func(key, value []byte) error {
			batch = append(batch, hint{key: bytes.Clone(key), value: bytes.Clone(value)})
			return nil
		})
		if err != nil || len(batch) == 0 {
			return
		}
		pairs := make([]aePair, len(batch))
		for i, h := range batch {
			pairs[i] = aePair{Key: h.key, State: h.value}
		}
		if err := n.acceptStates(pairs); err != nil {
			n.log.Warn("reroute hints of a departed node", "err", err)
			return
		}
		for _, h := range batch {
			if _, err := n.store.DeleteHint(target, h.key, h.value); err != nil {
				return
			}
		}
	}
}
