package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rumorkv/rumor/antientropy"
	"github.com/rumorkv/rumor/ring"
)

// Range transfers: joining, leaving, and dropping what a node no longer
// replicates. All of it is decided from the gossiped membership table, by
// each node for itself, with no coordinator:
//
//   - A joining node is in the next ring only: writes for its future ranges
//     reach it, reads do not. Anti-entropy compares everything it will
//     replicate with the current owners and fetches what it lacks. Once a
//     session with every reachable current owner it shares ranges with has
//     completed, and those sessions cover all its future ranges, it
//     declares itself a member: both rings agree again.
//   - A leaving node is in the current ring only. The nodes that take its
//     ranges over pull them through anti-entropy; once every reachable next
//     owner has completed a session with it, covering all its ranges, it
//     declares itself left.
//   - A node holding keys in leaves it replicates in neither ring (a new
//     owner took them) hands them over: a session over those leaves with
//     each current owner lets the owner fetch what only this node holds.
//     A leaf is dropped once every owner of it completed such a session
//     in which it had nothing left to take.
//
// Everything moves through anti-entropy sessions, so a transfer is
// resumable by construction: after a crash of either side the next session
// moves only what is still missing.

type transfers struct {
	mu struct {
		sync.Mutex
		status string    // own status when last seen
		since  time.Time // when the current joining or leaving began here
		// confirmed holds, per owner, leaves it confirmed holding all this
		// node had there (since confirmedAt).
		confirmed     map[ring.NodeID]antientropy.RangeSet
		confirmedAt   time.Time
		confirmedHash antientropy.Digest // of the obsolete ranges then
		dropped       uint64             // keys dropped after handing them over
		lastDrop      time.Time          // last hand-over round
		progress      progress           // of keys left, for the ETA
	}
	left chan struct{} // closed once this node has left
	once sync.Once
}

// leftGate keeps a leaving node from taking data after it declared itself
// left: every path that stores data for others (coordinating a write,
// accepting replicated states and hints) holds it shared until what it
// owes others is counted in outbound(); the switch to left takes it
// exclusively, when nothing is owed.
type leftGate struct {
	mu   sync.RWMutex
	left atomic.Bool
}

// errHasLeft refuses data at a node that left the cluster (nothing of it
// was stored).
var errHasLeft = errors.New("node: this node has left the cluster")

// enter reports whether the node still takes data; when true, call exit.
func (g *leftGate) enter() bool {
	g.mu.RLock()
	if g.left.Load() {
		g.mu.RUnlock()
		return false
	}
	return true
}

func (g *leftGate) exit() { g.mu.RUnlock() }

// finishLeave switches a leaving node to left once its ranges are handed
// over and it owes nothing; a write in progress postpones it to the next
// check.
func (n *Node) finishLeave(v *view, since time.Time) bool {
	if !n.gate.mu.TryLock() {
		return false
	}
	defer n.gate.mu.Unlock()
	if !n.leaveDone(v, since) {
		return false
	}
	n.gate.left.Store(true)
	n.mem.setStatus(StatusLeft)
	return true
}

// confirmTTL bounds how long hand-over confirmations are trusted.
const confirmTTL = 10 * time.Minute

// transferLoop checks transfers twice per anti-entropy interval, at least
// every second.
func (n *Node) transferLoop() {
	iv := min(max(n.cfg.AEInterval/2, 100*time.Millisecond), time.Second)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-timer.C:
		}
		n.checkTransfers()
		// Look more often while this node joins or leaves.
		if st := n.mem.selfRow().Status; st == StatusJoining || st == StatusLeaving {
			timer.Reset(min(iv, 200*time.Millisecond))
		} else {
			timer.Reset(iv)
		}
	}
}

func (n *Node) checkTransfers() {
	self := n.mem.selfRow()
	v := n.view.Load()
	t := &n.xfer
	t.mu.Lock()
	if t.mu.status != self.Status {
		t.mu.status, t.mu.since = self.Status, time.Now()
	}
	since := t.mu.since
	t.mu.Unlock()
	relevant := v.transferPeers(self.Status)
	switch self.Status {
	case StatusJoining:
		if n.joinDone(v, since) {
			n.log.Info("join complete: this node holds its ranges", "ring", v.ring.Len(), "keys", n.ae.index.Keys(), "since", since)
			n.mem.setStatus(StatusMember)
		} else {
			n.kickWaiting(v, since, relevant)
		}
	case StatusLeaving:
		if n.finishLeave(v, since) {
			t.once.Do(func() { close(t.left) })
		} else {
			n.kickWaiting(v, since, relevant)
		}
	case StatusLeft:
		n.gate.left.Store(true) // after a restart
		t.once.Do(func() { close(t.left) })
	}
	if self.Status != StatusJoining && self.Status != StatusLeft {
		// Handing over costs a session per owner: at most once per
		// anti-entropy interval.
		t.mu.Lock()
		due := time.Since(t.mu.lastDrop) >= max(n.cfg.AEInterval, time.Second)
		if due {
			t.mu.lastDrop = time.Now()
		}
		t.mu.Unlock()
		if due {
			n.dropObsolete(v)
		}
	}
}

// transferPeers is, for a node joining or leaving, which peers its ranges
// move from or to: the current owners (joining) or the next ones
// (leaving). Nil for other states.
func (v *view) transferPeers(status string) func(ring.NodeID) bool {
	switch status {
	case StatusJoining:
		return func(id ring.NodeID) bool { return len(v.curRepl[id]) > 0 }
	case StatusLeaving:
		return func(id ring.NodeID) bool {
			e, ok := v.byID[uint64(id)]
			return ok && next(e.Status)
		}
	}
	return nil
}

// waiting lists the relevant peers this node shares ranges with that have
// not completed a session with it since the transfer began.
func (n *Node) waiting(v *view, since time.Time, relevant func(ring.NodeID) bool) []ring.NodeID {
	var out []ring.NodeID
	for id := range v.shared {
		if relevant(id) && !n.ae.completeSince(uint64(id), since) {
			out = append(out, id)
		}
	}
	return out
}

// kickWaiting asks for sessions with the relevant peers that have not
// completed one since the transfer began (and are not running one).
func (n *Node) kickWaiting(v *view, since time.Time, relevant func(ring.NodeID) bool) {
	for _, id := range n.waiting(v, since, relevant) {
		n.ae.trigger(uint64(id))
	}
}

// handedOver reports whether the moves of a join or leave are done: every
// reachable relevant peer completed a session with this node since the
// transfer began, and those sessions covered want.
func (n *Node) handedOver(v *view, since time.Time, relevant func(ring.NodeID) bool, want antientropy.RangeSet) bool {
	for _, id := range n.waiting(v, since, relevant) {
		if n.mem.reachable(v.byID[uint64(id)].Name) {
			return false
		}
	}
	var got antientropy.RangeSet
	for id, s := range v.shared {
		if relevant(id) && n.ae.completeSince(uint64(id), since) {
			got = got.Union(s)
		}
	}
	return len(want.Intersect(got.Complement())) == 0
}

// joinDone reports whether this joining node holds everything it will
// replicate: a complete session since the join began with every reachable
// current owner it shares ranges with, covering all its future ranges.
func (n *Node) joinDone(v *view, since time.Time) bool {
	if len(n.cfg.Join) > 0 && !n.mem.hasJoined() {
		return false // it does not know the cluster yet
	}
	if v.ring.Len() == 0 {
		// No current owners in this view: nothing to fetch (a new
		// cluster) — unless the view is older than the membership table
		// the join just brought in.
		for _, e := range n.mem.rows() {
			if e.ID != n.id && owner(e.Status) {
				return false
			}
		}
		return true
	}
	return n.handedOver(v, since, v.transferPeers(StatusJoining), v.mine)
}

// leaveDone reports whether the nodes taking this leaving node's ranges
// hold everything it has: a complete session since the leave began with
// every reachable next owner it shares ranges with, covering all its
// ranges.
func (n *Node) leaveDone(v *view, since time.Time) bool {
	if r, h := n.outbound(); r > 0 || h > 0 {
		return false // writes it took or hints it holds go first
	}
	return n.handedOver(v, since, v.transferPeers(StatusLeaving), v.curRepl[ring.NodeID(n.id)])
}

// dropObsolete hands over and then drops keys in leaves this node
// replicates in neither ring.
func (n *Node) dropObsolete(v *view) {
	obsolete := v.mine.Complement()
	if n.ae.index.SetCount(obsolete) == 0 {
		return
	}
	// What this node holds there now; the sessions below hand over at
	// least this, and the drop happens only if nothing changed since.
	before := n.ae.index.SetHash(obsolete)
	t := &n.xfer
	t.mu.Lock()
	if t.mu.confirmed == nil || t.mu.confirmedHash != before || time.Since(t.mu.confirmedAt) > confirmTTL {
		// Confirmations hold for the data they were made on: a write
		// since (a node with an older view took one here) voids them.
		t.mu.confirmed, t.mu.confirmedAt, t.mu.confirmedHash = map[ring.NodeID]antientropy.RangeSet{}, time.Now(), before
	}
	// Leaves this node replicates again lose their confirmations: what it
	// takes there from now on has not been handed over.
	for id, c := range t.mu.confirmed {
		t.mu.confirmed[id] = c.Intersect(obsolete)
	}
	t.mu.Unlock()
	// Hand over to every current owner of obsolete leaves holding keys, a
	// few at a time.
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for id, repl := range v.curRepl {
		t.mu.Lock()
		part := obsolete.Intersect(repl).Intersect(t.mu.confirmed[id].Complement())
		t.mu.Unlock()
		if len(part) == 0 || n.ae.index.SetCount(part) == 0 {
			continue
		}
		e, ok := v.byID[uint64(id)]
		if !ok || !n.mem.reachable(e.Name) {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(n.ctx, n.cfg.AESessionTimeout)
			moved, err := n.ae.handoff(ctx, uint64(id), e, v, part)
			cancel()
			if err != nil {
				n.log.Debug("hand over ranges", "to", e.Name, "err", err)
				return
			}
			if moved == 0 {
				t.mu.Lock()
				t.mu.confirmed[id] = t.mu.confirmed[id].Union(part)
				t.mu.Unlock()
			}
		}()
	}
	wg.Wait()
	// Drop the leaves every owner confirmed.
	t.mu.Lock()
	confirmed := t.mu.confirmed
	t.mu.Unlock()
	var drop antientropy.RangeSet
	for _, rg := range v.ring.Ranges(n.cfg.N) {
		sp := antientropy.RangeSet{{Lo: rg.Lo, Hi: rg.Hi}}.Intersect(obsolete)
		if len(sp) == 0 || len(rg.Replicas) == 0 {
			continue
		}
		all := true
		for _, id := range rg.Replicas {
			if len(sp.Intersect(confirmed[id].Complement())) > 0 {
				all = false
				break
			}
		}
		if all {
			drop = drop.Union(sp)
		}
	}
	if len(drop) == 0 {
		return
	}
	// Drop under the exclusive lock, and only if no write reached these
	// ranges since the hand-over began.
	n.dropMu.Lock()
	defer n.dropMu.Unlock()
	if n.ae.index.SetHash(obsolete) != before {
		return
	}
	keys := n.ae.index.SetCount(drop)
	for _, sp := range drop {
		start, end := sp.HashBounds()
		if err := n.store.DeleteRange(start, end); err != nil {
			n.log.Warn("drop handed-over ranges", "err", err)
			return
		}
		n.ae.index.ClearLeaves(sp.Lo, sp.Hi)
		n.ae.items.clear(start, end)
	}
	t.mu.Lock()
	t.mu.dropped += keys
	t.mu.Unlock()
	n.log.Info("dropped ranges handed over to their owners", "keys", keys, "leaves", drop.Leaves())
}

// Leave hands this node's ranges over to the nodes that take them and
// declares it left; it returns once they hold everything (or ctx ends).
// Close the node afterwards.
func (n *Node) Leave(ctx context.Context) error {
	switch s := n.mem.selfRow().Status; s {
	case StatusLeft:
		return nil
	case StatusMember, StatusJoining:
		n.mem.setStatus(StatusLeaving)
	}
	n.ae.triggerAll()
	select {
	case <-n.xfer.left:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("node: leave: %w", ctx.Err())
	case <-n.ctx.Done():
		return ErrClosed
	}
}

// Left is closed once this node has left the cluster.
func (n *Node) Left() <-chan struct{} { return n.xfer.left }

// Remove declares a member that is gone for good left: its ranges are
// re-replicated from the surviving replicas. It refuses a member this node
// can reach (ask that one to leave).
func (n *Node) Remove(name string) error {
	if _, err := n.mem.remove(name); err != nil {
		return err
	}
	n.ae.triggerAll()
	return nil
}

// TransferStatus describes the ranges moving to or from this node.
type TransferStatus struct {
	// State is this node's membership status: joining, member, leaving,
	// left.
	State string `json:"state"`
	// Moving reports whether the cluster's rings differ (some node joins
	// or leaves).
	Moving bool `json:"moving"`
	// Peers this node still has to complete a session with before its
	// join or leave is done.
	Waiting []string `json:"waiting,omitempty"`
	// ObsoleteKeys are keys held here in ranges this node no longer
	// replicates, to hand over and drop; DroppedKeys were dropped so far.
	ObsoleteKeys uint64 `json:"obsolete_keys"`
	DroppedKeys  uint64 `json:"dropped_keys"`
	// Since is when the current join or leave began here.
	Since time.Time `json:"since,omitzero"`
	// RangesGaining and RangesLosing count the contiguous ranges this node
	// replicates only after, and only before, the moves under way.
	RangesGaining int `json:"ranges_gaining"`
	RangesLosing  int `json:"ranges_losing"`
	// KeysLeft is what this node still has to move: states its sessions
	// know they have to pull, plus ObsoleteKeys (to hand over and drop).
	// Moves are pulls by the receiving nodes: a leaving node's progress
	// shows in the keys left of the nodes taking its ranges.
	// BytesLeft estimates their size from the states pulled so far (0
	// until some were). ETASeconds is KeysLeft at the rate KeysLeft fell
	// over the last seconds (absent while unknown).
	KeysLeft   uint64   `json:"keys_left"`
	BytesLeft  uint64   `json:"bytes_left"`
	KeysPerSec float64  `json:"keys_per_s"`
	ETASeconds *float64 `json:"eta_s,omitempty"`
}

// progress is the rate at which keys left to move fall.
type progress struct {
	left uint64
	at   time.Time
	rate float64 // keys per second, smoothed
}

// note records keys left at now and returns the smoothed rate.
func (p *progress) note(left uint64, now time.Time) float64 {
	if p.at.IsZero() || left > p.left+p.left/2 {
		// First sample, or a new move began: start over.
		p.left, p.at, p.rate = left, now, 0
		return 0
	}
	dt := now.Sub(p.at).Seconds()
	if dt < 0.5 {
		return p.rate
	}
	r := 0.0
	if left < p.left {
		r = float64(p.left-left) / dt
	}
	if p.rate == 0 {
		p.rate = r
	} else {
		p.rate = 0.7*p.rate + 0.3*r
	}
	p.left, p.at = left, now
	return p.rate
}

// keysToMove returns the keys held here in ranges this node no longer
// replicates, and all it still has to move: those plus the states its
// sessions know they have to pull (TransferStatus's ObsoleteKeys and
// KeysLeft).
func (n *Node) keysToMove(v *view) (obsolete, left uint64) {
	obsolete = n.ae.index.SetCount(v.mine.Complement())
	return obsolete, uint64(max(n.ae.incoming.Load(), 0)) + obsolete
}

// Transfers returns the state of range transfers at this node.
func (n *Node) Transfers() TransferStatus {
	self := n.mem.selfRow()
	v := n.view.Load()
	st := TransferStatus{State: self.Status, Moving: v.transfer(),
		RangesGaining: len(v.gaining), RangesLosing: len(v.losing)}
	st.ObsoleteKeys, st.KeysLeft = n.keysToMove(v)
	if pulled := n.ae.keysPulled.Load(); pulled > 0 {
		st.BytesLeft = uint64(float64(st.KeysLeft) * float64(n.ae.bytesReceived.Load()) / float64(pulled))
	}
	t := &n.xfer
	t.mu.Lock()
	since := t.mu.since
	st.DroppedKeys = t.mu.dropped
	st.KeysPerSec = t.mu.progress.note(st.KeysLeft, time.Now())
	t.mu.Unlock()
	if st.KeysLeft == 0 {
		eta := 0.0
		st.ETASeconds = &eta
	} else if st.KeysPerSec > 0 {
		eta := float64(st.KeysLeft) / st.KeysPerSec
		st.ETASeconds = &eta
	}
	if relevant := v.transferPeers(self.Status); relevant != nil {
		st.Since = since
		for _, id := range n.waiting(v, since, relevant) {
			st.Waiting = append(st.Waiting, v.byID[uint64(id)].Name)
		}
	}
	return st
}
