package node

import (
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
			if !ok || !n.mem.reachable(e.Name) {
				continue
			}
			n.handoff(target, e)
		}
	}
}

func (n *Node) handoff(target uint64, e memberEntry) {
	var batch []hint
	err := n.store.Hints(target, hintBatch, func(key, value []byte) error {
		batch = append(batch, hint{key: append([]byte(nil), key...), value: append([]byte(nil), value...)})
		return nil
	})
	if err != nil {
		n.log.Warn("read hints", "target", e.Name, "err", err)
		return
	}
	for _, h := range batch {
		if n.ctx.Err() != nil {
			return
		}
		body, err := encode(&replicateReq{Key: h.key, Reg: h.value})
		if err != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(n.ctx, n.cfg.ReplicaTimeout)
		_, err = n.call(ctx, e.RPC, methodReplicate, body)
		cancel()
		if err != nil {
			n.log.Debug("hand off hint", "target", e.Name, "err", err)
			return
		}
		if _, err := n.store.DeleteHint(target, h.key, h.value); err != nil {
			n.log.Warn("delete delivered hint", "target", e.Name, "err", err)
			return
		}
		n.metrics.hintsDelivered.Add(1)
		n.metrics.hintBytes.Add(uint64(len(body) + rpcRequestOverhead + rpcResponseOverhead))
	}
}
