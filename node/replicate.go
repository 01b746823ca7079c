package node

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/rumorkv/rumor/crdt"
	"github.com/rumorkv/rumor/ring"
)

// Replication batches. Every write ships the key's whole merged state to
// the other replicas. Instead of one RPC (and one fsync on the receiver)
// per state, each peer has a bounded queue drained by a few senders; a
// sender takes what is queued, up to replBatch states, and ships it as one
// RPC that the receiver merges with one sync. Under load batches grow by
// themselves; when replication cannot keep up, the queue fills and writers
// wait (backpressure) instead of piling up unbounded work that would then
// time out into hints.
const (
	replQueue      = 4096    // states queued per peer
	replBatch      = 256     // states per RPC at most
	replBatchBytes = 1 << 20 // bytes per RPC, about
	replSenders    = 4       // batches in flight per peer
)

// methodReplicateBatch merges a batch of states into the receiver's
// copies, durably (one sync for the batch). Empty reply once durable.
const methodReplicateBatch uint16 = 12

type replicateBatchReq struct {
	Pairs []aePair
}

type replItem struct {
	key, reg []byte
	done     chan error // buffered: the sender never blocks on it
}

type replicator struct {
	q chan *replItem
}

type replicators struct {
	mu     sync.Mutex
	byAddr map[string]*replicator
	// pending counts states a coordinator still has to deliver to a
	// replica: from before they are queued until the replica or a hint
	// holder acknowledged them.
	pending atomic.Int64
}

// enqueue queues one state for the peer whose RPC address is addr; it
// waits while the peer's queue is full, until ctx ends (then it returns
// nil). Wait on the item for the outcome.
func (n *Node) enqueue(ctx context.Context, addr string, key, reg []byte) *replItem {
	r := n.replicatorFor(addr)
	if r == nil {
		return nil
	}
	it := &replItem{key: key, reg: reg, done: make(chan error, 1)}
	select {
	case r.q <- it:
		return it
	case <-ctx.Done():
		return nil
	}
}

// wait returns the outcome of a queued state: nil once durable on the peer.
func (it *replItem) wait(ctx context.Context) error {
	select {
	case err := <-it.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (n *Node) replicatorFor(addr string) *replicator {
	n.repl.mu.Lock()
	defer n.repl.mu.Unlock()
	if r := n.repl.byAddr[addr]; r != nil {
		return r
	}
	if n.ctx.Err() != nil {
		return nil
	}
	if n.repl.byAddr == nil {
		n.repl.byAddr = make(map[string]*replicator)
	}
	r := &replicator{q: make(chan *replItem, replQueue)}
	n.repl.byAddr[addr] = r
	for range replSenders {
		n.goroutine(func() { n.sendBatches(addr, r) })
	}
	return r
}

// sendBatches is one sender of a peer's queue; it stops when the node
// closes, failing what is still queued.
func (n *Node) sendBatches(addr string, r *replicator) {
	for {
		var first *replItem
		select {
		case first = <-r.q:
		case <-n.ctx.Done():
			for {
				select {
				case it := <-r.q:
					it.done <- ErrClosed
				default:
					return
				}
			}
		}
		batch := []*replItem{first}
		size := len(first.key) + len(first.reg)
	fill:
		for len(batch) < replBatch && size < replBatchBytes {
			select {
			case it := <-r.q:
				batch = append(batch, it)
				size += len(it.key) + len(it.reg)
			default:
				break fill
			}
		}
		req := replicateBatchReq{Pairs: make([]aePair, len(batch))}
		for i, it := range batch {
			req.Pairs[i] = aePair{Key: it.key, State: it.reg}
		}
		err := n.sendBatch(addr, &req)
		for _, it := range batch {
			it.done <- err
		}
	}
}

func (n *Node) sendBatch(addr string, req *replicateBatchReq) error {
	body, err := encode(req)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.ReplicaTimeout)
	defer cancel()
	_, err = n.call(ctx, addr, methodReplicateBatch, body)
	return err
}

// mergeBatch joins states into this node's copies with one batch and one
// sync.
func (n *Node) mergeBatch(pairs []aePair) (changed int, err error) {
	changed, _, err = n.mergeBatchBytes(pairs)
	return changed, err
}

// mergeBatchBytes is mergeBatch that also returns the size of the received
// states that changed a copy.
func (n *Node) mergeBatchBytes(pairs []aePair) (changed, changedBytes int, err error) {
	keys := make([][]byte, len(pairs))
	regs := make([]crdt.Register, len(pairs))
	for i, p := range pairs {
		if err := checkKey(p.Key); err != nil {
			return 0, 0, err
		}
		if regs[i], err = decodeReg(p.State); err != nil {
			return 0, 0, fmt.Errorf("state of %q: %w", p.Key, err)
		}
		keys[i] = p.Key
	}
	var ts crdt.Timestamp
	n.dropMu.RLock()
	defer n.dropMu.RUnlock()
	written, err := n.store.UpdateMany(keys, func(i int, old []byte, ok bool) ([]byte, bool, error) {
		epoch, cur, err := decodeRecord(old)
		if err != nil {
			return nil, false, err
		}
		merged := cur.Join(regs[i])
		if ok && merged.Equal(cur) {
			return nil, false, nil
		}
		ts = max(ts, regs[i].MaxHLC())
		b, err := encodeRecord(epoch, merged)
		return b, true, err
	})
	if err != nil {
		return 0, 0, fmt.Errorf("node: merge %d states: %w", len(pairs), err)
	}
	if ts != 0 {
		n.clock.Update(ts)
	}
	for i, w := range written {
		if w {
			changed++
			changedBytes += len(pairs[i].State)
		}
	}
	return changed, changedBytes, nil
}

// acceptStates merges states peers send for replication, read repair and
// hint handoff. A state for a key this node replicates in neither ring —
// sent on a view older than this node's, or a hint handed off after its
// ranges moved — is kept as hints for the key's owners instead: merged
// into ranges this node is dropping, it could be dropped with them.
func (n *Node) acceptStates(pairs []aePair) error {
	if !n.gate.enter() {
		return errHasLeft
	}
	defer n.gate.exit()
	v := n.view.Load()
	mine := pairs[:0:0]
	for _, p := range pairs {
		h := ring.KeyHash(p.Key)
		if v.ring.Len() == 0 || v.mine.Contains(h) {
			mine = append(mine, p)
			continue
		}
		if err := checkKey(p.Key); err != nil {
			return err
		}
		for _, t := range v.writeTargets(h, n.cfg.N) {
			if uint64(t) == n.id {
				continue
			}
			if err := n.storeHint(uint64(t), p.Key, p.State); err != nil {
				return fmt.Errorf("keep %q for its owners: %w", p.Key, err)
			}
		}
	}
	if len(mine) == 0 {
		return nil
	}
	_, err := n.mergeBatch(mine)
	return err
}
