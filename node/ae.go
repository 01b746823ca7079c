package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rumorkv/rumor/antientropy"
	"github.com/rumorkv/rumor/crdt"
	"github.com/rumorkv/rumor/node/rpc"
	"github.com/rumorkv/rumor/ring"
)

const (
	// aeBatchBytes bounds the states in one pull or fetch answer.
	aeBatchBytes = 1 << 20
	// aeBatchItems bounds the items or hashes in one request.
	aeBatchItems = 4096
	// aeMaxSessions bounds concurrent responder sessions; more are refused.
	aeMaxSessions = 16
	// aeSessionIdle is how long an idle responder session is kept.
	aeSessionIdle = time.Minute
	// aeConcurrency bounds the sessions a node initiates at once.
	aeConcurrency = 2
	// reapBatch bounds the tombstones one reaper round handles.
	reapBatch = 10000
)

// itemRef maps a protocol item to the hash of its key.
type itemRef struct{ item, hash uint64 }

// aeResponder is a session this node answers.
type aeResponder struct {
	peer uint64
	resp *antientropy.Responder
	refs []itemRef // sorted by item
	used time.Time
}

// aePeer is what this node knows of its exchanges with one peer.
type aePeer struct {
	inSync       bool
	lastExchange time.Time
	// lastComplete is when a session with the peer (either side
	// initiating) last ended with every state moved that needed to.
	lastComplete  time.Time
	lastDuration  time.Duration
	lastError     string
	keysPulled    uint64
	bytesSent     uint64
	bytesReceived uint64
}

// antiEntropy keeps the hash index current and reconciles shared ranges
// with peers.
//
// Every state that crosses the network is asked for by the node that lacks
// it, together with that node's current causal context for the key, and
// the sender leaves out states the context already covers. All merges into
// one node are serialized (repairMu), so when two peers both hold a state
// this node lacks — after a partition, the two replicas on one side — it
// takes the state from whichever it asks first and the second answers with
// nothing: every state crosses once per replica that needs it.
type antiEntropy struct {
	n     *Node
	index *antientropy.Index
	items *itemCache // the index's items, for listing them fast
	cfg   antientropy.Config
	kick  chan uint64
	limit *rateLimiter

	// repairMu serializes fetching and merging states into this node.
	repairMu sync.Mutex

	mu struct {
		sync.Mutex
		sessions map[uint64]*aeResponder
		peers    map[uint64]*aePeer
	}

	sessions, inSync, keysPulled, keysRepaired atomic.Uint64
	// bytesRepaired is the size of received states that changed a copy.
	bytesRepaired atomic.Uint64
	// incoming counts states sessions know they still have to pull (for
	// the transfer progress in status).
	incoming                                  atomic.Int64
	bytesSent, bytesReceived, symbols, reaped atomic.Uint64
	// bytesByMethod counts request and answer bytes per RPC method.
	bytesByMethod [16]atomic.Uint64
}

func newAntiEntropy(n *Node) *antiEntropy {
	a := &antiEntropy{
		n:     n,
		index: antientropy.NewIndex(),
		items: newItemCache(max(n.cfg.AEItemCacheKeys, 0)),
		kick:  make(chan uint64, 64),
		limit: newRateLimiter(n.cfg.AERateLimit),
	}
	a.mu.sessions = make(map[uint64]*aeResponder)
	a.mu.peers = make(map[uint64]*aePeer)
	return a
}

// onChange keeps the index current; storage calls it after every committed
// change of a data key, under that key's lock.
func (a *antiEntropy) onChange(hash uint64, key, old, new []byte) {
	var od, nd antientropy.Digest
	delta := 0
	if old != nil {
		od = antientropy.DigestOf(key, stateOf(old))
		delta--
	}
	if new != nil {
		nd = antientropy.DigestOf(key, stateOf(new))
		delta++
	}
	a.index.Update(hash, od, nd, delta)
	a.items.update(hash, antientropy.ItemOf(hash, od), old != nil, antientropy.ItemOf(hash, nd), new != nil)
}

const (
	metaAEIndex = "ae-index"
	metaAEClean = "ae-clean"
)

// load restores the index from the snapshot written at the last clean
// shutdown, or rebuilds it by scanning the data. The clean marker is
// cleared before the node takes writes, so a crash forces a rebuild.
func (a *antiEntropy) load() error {
	st := a.n.store
	clean, ok, err := st.GetMeta(metaAEClean)
	if err != nil {
		return err
	}
	start := time.Now()
	a.items.reset()
	if ok && bytes.Equal(clean, []byte{1}) {
		snap, ok, err := st.GetMeta(metaAEIndex)
		if err == nil && ok {
			err = a.index.LoadSnapshot(snap)
			if err == nil {
				if err := a.fillItems(); err != nil {
					return err
				}
				a.n.log.Debug("anti-entropy index loaded from snapshot", "keys", a.index.Keys(), "took", time.Since(start).Round(time.Millisecond))
				return st.PutMeta(metaAEClean, []byte{0})
			}
			a.n.log.Warn("anti-entropy index snapshot unusable; rebuilding", "err", err)
		}
	}
	a.index.Reset()
	err = st.Scan(0, 0, func(hash uint64, key, value []byte) error {
		d := antientropy.DigestOf(key, stateOf(value))
		a.index.Update(hash, antientropy.Digest{}, d, 1)
		a.items.update(hash, 0, false, antientropy.ItemOf(hash, d), true)
		return nil
	})
	if err != nil {
		return fmt.Errorf("rebuild anti-entropy index: %w", err)
	}
	a.n.log.Info("anti-entropy index rebuilt", "keys", a.index.Keys(), "took", time.Since(start).Round(time.Millisecond))
	return st.PutMeta(metaAEClean, []byte{0})
}

// fillItems fills the item cache from storage (after the index was loaded
// from its snapshot), unless the keys are too many for it.
func (a *antiEntropy) fillItems() error {
	if _, on := a.items.keys(); !on {
		return nil
	}
	if a.index.Keys() > int64(a.n.cfg.AEItemCacheKeys) {
		a.items.mu.Lock()
		a.items.drop()
		a.items.mu.Unlock()
		return nil
	}
	err := a.n.store.Scan(0, 0, func(hash uint64, key, value []byte) error {
		a.items.update(hash, 0, false, antientropy.ItemOf(hash, antientropy.DigestOf(key, stateOf(value))), true)
		return nil
	})
	if err != nil {
		return fmt.Errorf("fill anti-entropy item cache: %w", err)
	}
	return nil
}

// save writes the snapshot and the clean marker; the node calls it on Close
// after every writer has stopped.
func (a *antiEntropy) save() error {
	if a.n.cfg.InMemory {
		return nil
	}
	if err := a.n.store.PutMeta(metaAEIndex, a.index.Snapshot()); err != nil {
		return err
	}
	return a.n.store.PutMeta(metaAEClean, []byte{1})
}

// trigger asks for a session with peer now (it became reachable).
func (a *antiEntropy) trigger(peer uint64) {
	if a.n.cfg.AEInterval < 0 {
		return
	}
	select {
	case a.kick <- peer:
	default:
	}
}

// triggerAll asks for sessions with every peer now (membership changed).
func (a *antiEntropy) triggerAll() {
	for id := range a.n.view.Load().shared {
		a.trigger(uint64(id))
	}
}

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return time.Second
	}
	return d/2 + rand.N(d)
}

// loop runs sessions every AEInterval (jittered) and at once with a peer
// that becomes reachable.
func (a *antiEntropy) loop() {
	if a.n.cfg.AEInterval < 0 {
		return
	}
	timer := time.NewTimer(jitter(a.n.cfg.AEInterval))
	defer timer.Stop()
	for {
		select {
		case <-a.n.ctx.Done():
			return
		case p := <-a.kick:
			peers := []uint64{p}
			for len(a.kick) > 0 {
				if q := <-a.kick; !slices.Contains(peers, q) {
					peers = append(peers, q)
				}
			}
			a.run(a.initiateWith(peers, false))
		case <-timer.C:
			a.expire()
			a.run(a.initiateWith(nil, true))
			timer.Reset(jitter(a.n.cfg.AEInterval))
		}
	}
}

// initiateWith picks the peers to start sessions with: reachable, sharing
// ranges with this node, and with a higher id (of each pair the lower id
// initiates, so a pair runs one session per round) — or, in a periodic
// round, not heard from for three intervals (the other side may not reach
// us), or any while this node joins or leaves. With all, every peer in the view is considered; otherwise only those
// given.
func (a *antiEntropy) initiateWith(given []uint64, all bool) []uint64 {
	v := a.n.view.Load()
	if all {
		given = given[:0]
		for id := range v.shared {
			given = append(given, uint64(id))
		}
	}
	stale := 3 * a.n.cfg.AEInterval
	// A node joining or leaving initiates with everyone: it cannot wait
	// for the peers' rounds to finish its transfer.
	st := a.n.mem.selfRow().Status
	moving := st == StatusJoining || st == StatusLeaving
	var out []uint64
	for _, id := range given {
		e, ok := v.byID[id]
		if !ok || len(v.shared[ring.NodeID(id)]) == 0 || !a.n.mem.reachable(e.Name) {
			continue
		}
		if a.n.id > id && !moving {
			a.mu.Lock()
			p := a.mu.peers[id]
			recent := p != nil && time.Since(p.lastExchange) < stale
			a.mu.Unlock()
			if !all || recent {
				continue
			}
		}
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// run holds sessions with peers, aeConcurrency at a time, and returns when
// all are over.
func (a *antiEntropy) run(peers []uint64) {
	conc := aeConcurrency
	if a.n.mem.selfRow().Status == StatusJoining {
		// One at a time: the first session fills an empty node (it pulls
		// everything); the next ones then only move what differs.
		conc = 1
	}
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	for _, id := range peers {
		select {
		case sem <- struct{}{}:
		case <-a.n.ctx.Done():
			wg.Wait()
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			a.syncPeer(id)
		}()
	}
	wg.Wait()
}

// expire drops responder sessions idle for too long.
func (a *antiEntropy) expire() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, s := range a.mu.sessions {
		if time.Since(s.used) > aeSessionIdle {
			delete(a.mu.sessions, id)
		}
	}
}

// call is one anti-entropy RPC with byte accounting for the peer.
func (a *antiEntropy) call(ctx context.Context, peer uint64, e memberEntry, method uint16, req, resp any) error {
	body, err := encode(req)
	if err != nil {
		return err
	}
	// Each call has its own deadline, well inside the session's: a peer
	// that vanished mid-session (a crash, a silent cut) costs one call's
	// wait, not the whole session timeout. A page of states may wait for
	// the peer's rate limiter, so the bound allows for one at that rate.
	cctx, cancel := context.WithTimeout(ctx, a.callTimeout())
	out, err := a.n.call(cctx, e.RPC, method, body)
	cancel()
	sent, recv := uint64(len(body)+rpcRequestOverhead), uint64(len(out)+rpcResponseOverhead)
	if err != nil {
		recv = 0
	}
	a.bytesSent.Add(sent)
	a.bytesReceived.Add(recv)
	a.bytesByMethod[method%16].Add(sent + recv)
	a.mu.Lock()
	p := a.peerLocked(peer)
	p.bytesSent += sent
	p.bytesReceived += recv
	a.mu.Unlock()
	if err != nil {
		return err
	}
	if resp == nil {
		return nil
	}
	return decode(out, resp)
}

// aeCallTimeout bounds one anti-entropy call, besides the time a page of
// states may wait for the sender's rate limiter.
const aeCallTimeout = 10 * time.Second

func (a *antiEntropy) callTimeout() time.Duration {
	d := aeCallTimeout
	if r := a.n.cfg.AERateLimit; r > 0 {
		d += time.Duration(float64(aeBatchBytes) / float64(r) * float64(time.Second))
	}
	return d
}

func (a *antiEntropy) peerLocked(id uint64) *aePeer {
	p := a.mu.peers[id]
	if p == nil {
		p = &aePeer{}
		a.mu.peers[id] = p
	}
	return p
}

func compareRefs(x itemRef, item uint64) int {
	switch {
	case x.item < item:
		return -1
	case x.item > item:
		return 1
	}
	return 0
}

// items enumerates this node's items in s, sorted.
func (a *antiEntropy) itemsOf(s antientropy.RangeSet) ([]uint64, []itemRef, error) {
	var refs []itemRef
	for _, sp := range s {
		start, end := sp.HashBounds()
		var ok bool
		if refs, ok = a.items.appendRange(refs, start, end); ok {
			continue
		}
		err := a.n.store.Scan(start, end, func(hash uint64, key, value []byte) error {
			refs = append(refs, itemRef{item: antientropy.ItemOf(hash, antientropy.DigestOf(key, stateOf(value))), hash: hash})
			return nil
		})
		if err != nil {
			return nil, nil, fmt.Errorf("anti-entropy: enumerate items: %w", err)
		}
	}
	slices.SortFunc(refs, func(x, y itemRef) int { return compareRefs(x, y.item) })
	items := make([]uint64, len(refs))
	for i, r := range refs {
		items[i] = r.item
	}
	return items, refs, nil
}

// hashesOf maps items to their key hashes (sorted, deduplicated).
func hashesOf(refs []itemRef, items []uint64) []uint64 {
	var out []uint64
	for _, it := range items {
		if i, ok := slices.BinarySearchFunc(refs, it, compareRefs); ok {
			out = append(out, refs[i].hash)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// statesAt appends the current (key, state) pairs at each hash to pairs,
// leaving out states that have[hash] already covers, until they hold
// limit bytes; it returns how many hashes it covered and the bytes added.
func (a *antiEntropy) statesAt(hashes []uint64, pairs []aePair, limit int, have map[uint64]crdt.VV) ([]aePair, int, int, error) {
	size := 0
	for i, h := range hashes {
		if size >= limit && i > 0 {
			return pairs, i, size, nil
		}
		err := a.n.store.Scan(h, h+1, func(hash uint64, key, value []byte) error {
			if hash != h {
				return nil
			}
			if vv, ok := have[h]; ok {
				if _, reg, err := decodeRecord(value); err == nil && coveredBy(reg, vv) {
					return nil
				}
			}
			pairs = append(pairs, aePair{Key: bytes.Clone(key), State: bytes.Clone(stateOf(value))})
			size += len(key) + len(value)
			return nil
		})
		if err != nil {
			return nil, 0, 0, err
		}
	}
	return pairs, len(hashes), size, nil
}

// coveredBy reports whether vv covers every version of reg: joining reg
// into a state whose context is vv changes nothing.
func coveredBy(reg crdt.Register, vv crdt.VV) bool {
	for _, v := range reg.Versions {
		if !vv.Covers(v.Dot) {
			return false
		}
	}
	return true
}

// haveIn returns this node's causal context for every key whose hash lies
// in one of the closed intervals [start, end] (by full key hash; a hash
// shared by two keys is left out, one context being ambiguous there).
func (a *antiEntropy) haveIn(intervals [][2]uint64) (map[uint64]crdt.VV, error) {
	have := map[uint64]crdt.VV{}
	dup := map[uint64]bool{}
	for _, iv := range intervals {
		end := iv[1] + 1 // Scan's end is exclusive; 0 means the end of the space
		err := a.n.store.Scan(iv[0], end, func(hash uint64, key, value []byte) error {
			if _, seen := have[hash]; seen {
				dup[hash] = true
				return nil
			}
			_, reg, err := decodeRecord(value)
			if err != nil {
				return err
			}
			have[hash] = reg.Context()
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	for h := range dup {
		delete(have, h)
	}
	return have, nil
}

// merge joins received states into this node's copies, durably (one
// batch, one sync); the caller holds repairMu. It returns how many copies
// changed.
func (a *antiEntropy) merge(pairs []aePair) (int, error) {
	if len(pairs) == 0 {
		return 0, nil
	}
	changed, bytes, err := a.n.mergeBatchBytes(pairs)
	a.keysRepaired.Add(uint64(changed))
	a.bytesRepaired.Add(uint64(bytes))
	return changed, err
}

// received records states received from peer.
func (a *antiEntropy) received(peer uint64, n int) {
	a.keysPulled.Add(uint64(n))
	a.mu.Lock()
	a.peerLocked(peer).keysPulled += uint64(n)
	a.mu.Unlock()
}

// syncPeer runs one session with peer as the initiator.
func (a *antiEntropy) syncPeer(peer uint64) {
	n := a.n
	v := n.view.Load()
	e, ok := v.byID[peer]
	if !ok {
		return
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.AESessionTimeout)
	defer cancel()
	repaired, inSync, err := a.session(ctx, peer, e, v, v.shared[ring.NodeID(peer)])
	a.sessions.Add(1)
	if inSync {
		a.inSync.Add(1)
	}
	a.mu.Lock()
	p := a.peerLocked(peer)
	p.lastDuration = time.Since(start)
	if err != nil {
		p.lastError = err.Error()
		p.inSync = false
	} else {
		p.lastError = ""
		p.lastExchange = time.Now()
		p.lastComplete = p.lastExchange
		p.inSync = true // in sync, or repaired both ways
	}
	a.mu.Unlock()
	if err != nil && n.ctx.Err() == nil {
		n.log.Debug("anti-entropy session failed", "peer", e.Name, "err", err)
	} else if repaired > 0 {
		// Per session at debug; at info a summary at most once a minute
		// (replicas that lag behind a write load repair every session).
		n.log.Debug("anti-entropy repaired", "peer", e.Name, "states", repaired,
			"took", time.Since(start).Round(time.Millisecond))
		if ok, sessions, states := n.logLim.aeRepaired.note(logRepeatEvery, repaired); ok {
			n.log.Info("anti-entropy repaired", "last_peer", e.Name, "states", states, "sessions", sessions)
		}
	}
}

// session runs one reconciliation with peer as the initiator, then has the
// peer fetch what it lacks and pulls what this node lacks. It returns the
// states that crossed.
func (a *antiEntropy) session(ctx context.Context, peer uint64, e memberEntry, v *view, s antientropy.RangeSet) (moved int, inSync bool, err error) {
	return a.sessionOver(ctx, peer, e, v, s, false)
}

// handoff runs a session over ranges this node no longer replicates: the
// peer, an owner of them, fetches what only this node holds; nothing is
// pulled. It returns how many states the peer had to take (0: the peer
// already holds everything this node has there).
func (a *antiEntropy) handoff(ctx context.Context, peer uint64, e memberEntry, v *view, s antientropy.RangeSet) (int, error) {
	moved, _, err := a.sessionOver(ctx, peer, e, v, s, true)
	return moved, err
}

func (a *antiEntropy) sessionOver(ctx context.Context, peer uint64, e memberEntry, v *view, s antientropy.RangeSet, handoff bool) (moved int, inSync bool, err error) {
	var spans []uint32
	if handoff {
		spans = flattenSpans(s)
	}
	pulledBefore := a.keysPulled.Load() // see pullAll
	ini := antientropy.NewInitiator(a.cfg, v.hash, a.index.SetHash(s), a.index.SetCount(s))
	sid := rand.Uint64()
	msg := ini.Summary()
	var refs []itemRef
	var remoteCount int64 // the responder's keys, when it says pull them all
	remoteSession := false
	defer func() {
		if remoteSession {
			dctx, cancel := context.WithTimeout(a.n.ctx, a.n.cfg.ReplicaTimeout)
			_ = a.call(dctx, peer, e, methodAEDone, &aeDoneReq{Session: sid, Complete: err == nil}, nil)
			cancel()
		}
	}()
	for msg != nil {
		body, err := msg.MarshalBinary()
		if err != nil {
			return 0, false, err
		}
		var resp aeSyncResp
		if err := a.call(ctx, peer, e, methodAESync, &aeSyncReq{Session: sid, From: a.n.id, Msg: body, Spans: spans}, &resp); err != nil {
			return 0, false, err
		}
		var reply antientropy.Message
		if err := reply.Decode(resp.Msg, antientropy.Limits{}); err != nil {
			return 0, false, err
		}
		if (reply.Type == antientropy.MsgSymbols && reply.Count > 0) || reply.Type == antientropy.MsgList {
			remoteSession = true
		}
		if reply.Type == antientropy.MsgPullAll {
			remoteCount = int64(reply.Count)
		}
		if ini.NeedItems(&reply) {
			var items []uint64
			if items, refs, err = a.itemsOf(s); err != nil {
				return 0, false, err
			}
			ini.SetItems(items)
		}
		if msg, err = ini.Step(&reply); err != nil {
			return 0, false, err
		}
	}
	res := ini.Result()
	a.symbols.Add(uint64(res.Symbols))
	if res.InSync {
		return 0, true, nil
	}
	if res.PullAll {
		if handoff {
			return 0, false, nil
		}
		moved, err = a.pullAll(ctx, peer, e, s, remoteCount, pulledBefore)
		return moved, false, err
	}
	if hashes := hashesOf(refs, res.LocalOnly); len(hashes) > 0 {
		for len(hashes) > 0 {
			batch := hashes[:min(len(hashes), aeBatchItems)]
			var resp aeNeedResp
			if err := a.call(ctx, peer, e, methodAENeed, &aeNeedReq{Session: sid, From: a.n.id, Hashes: batch}, &resp); err != nil {
				return moved, false, err
			}
			moved += resp.Fetched
			hashes = hashes[len(batch):]
		}
	}
	if handoff {
		return moved, false, nil
	}
	pulled, err := a.pull(ctx, peer, e, sid, res.RemoteOnly)
	return moved + pulled, false, err
}

// pull asks the session's responder for the states behind items (those it
// holds and this node lacks) and merges them. Each batch carries this
// node's current context for keys in the items' hash ranges, so states it
// has meanwhile received from elsewhere are not sent again.
func (a *antiEntropy) pull(ctx context.Context, peer uint64, e memberEntry, sid uint64, items []uint64) (int, error) {
	pulled := 0
	left := int64(len(items))
	a.incoming.Add(left)
	defer func() { a.incoming.Add(-left) }()
	for len(items) > 0 {
		batch := items[:min(len(items), aeBatchItems)]
		n, done, err := a.pullBatch(ctx, peer, e, sid, batch)
		pulled += n
		if err == nil {
			a.incoming.Add(-int64(done))
			left -= int64(done)
		}
		if err != nil {
			return pulled, err
		}
		items = items[done:]
	}
	return pulled, nil
}

func (a *antiEntropy) pullBatch(ctx context.Context, peer uint64, e memberEntry, sid uint64, items []uint64) (int, int, error) {
	a.repairMu.Lock()
	defer a.repairMu.Unlock()
	intervals := make([][2]uint64, len(items))
	for i, it := range items {
		intervals[i][0], intervals[i][1] = antientropy.ItemHashRange(it)
	}
	have, err := a.haveIn(intervals)
	if err != nil {
		return 0, 0, err
	}
	var resp aePairs
	if err := a.call(ctx, peer, e, methodAEPull, &aePullReq{Session: sid, Items: items, Have: encodeHave(have)}, &resp); err != nil {
		return 0, 0, err
	}
	if resp.Done <= 0 || resp.Done > len(items) {
		return 0, 0, fmt.Errorf("anti-entropy: pull answer covers %d of %d items", resp.Done, len(items))
	}
	if _, err := a.merge(resp.Pairs); err != nil {
		return 0, 0, err
	}
	a.received(peer, len(resp.Pairs))
	return len(resp.Pairs), resp.Done, nil
}

// fetch gets the states at hashes from peer (the initiator of a session,
// which holds them) and merges them, sending this node's context for those
// keys so states it already covers stay where they are.
func (a *antiEntropy) fetch(ctx context.Context, peer uint64, e memberEntry, hashes []uint64) (int, error) {
	a.repairMu.Lock()
	defer a.repairMu.Unlock()
	fetched := 0
	for len(hashes) > 0 {
		intervals := make([][2]uint64, len(hashes))
		for i, h := range hashes {
			intervals[i] = [2]uint64{h, h}
		}
		have, err := a.haveIn(intervals)
		if err != nil {
			return fetched, err
		}
		var resp aePairs
		if err := a.call(ctx, peer, e, methodAEFetch, &aeFetchReq{Hashes: hashes, Have: encodeHave(have)}, &resp); err != nil {
			return fetched, err
		}
		if resp.Done <= 0 || resp.Done > len(hashes) {
			return fetched, fmt.Errorf("anti-entropy: fetch answer covers %d of %d keys", resp.Done, len(hashes))
		}
		if _, err := a.merge(resp.Pairs); err != nil {
			return fetched, err
		}
		a.received(peer, len(resp.Pairs))
		fetched += len(resp.Pairs)
		hashes = hashes[resp.Done:]
	}
	return fetched, nil
}

// pullAll copies every state the two share from the peer (this node holds
// none of them; the peer said it holds expect).
func (a *antiEntropy) pullAll(ctx context.Context, peer uint64, e memberEntry, s antientropy.RangeSet, expect int64, pulledBefore uint64) (int, error) {
	req := aePullRangeReq{From: a.n.id}
	pulled := 0
	a.incoming.Add(expect)
	defer func() { a.incoming.Add(-expect) }()
	// The copy holds the repair lock throughout: its pages carry no
	// context of what this node has (it had nothing), so a state another
	// session brought in meanwhile would come again. Other sessions' merges
	// wait (and then send their contexts, which cover what the copy
	// brought).
	a.repairMu.Lock()
	defer a.repairMu.Unlock()
	if a.keysPulled.Load() != pulledBefore && a.index.SetCount(s) > 0 {
		// Another session (begun as empty-handed as this one) filled part
		// of the set since this one began: reconcile next time instead.
		return 0, errNotEmpty
	}
	for {
		var resp aePullRangeResp
		if err := a.call(ctx, peer, e, methodAEPullRange, &req, &resp); err != nil {
			return pulled, err
		}
		_, err := a.merge(resp.Pairs)
		if err != nil {
			return pulled, err
		}
		a.received(peer, len(resp.Pairs))
		pulled += len(resp.Pairs)
		d := min(expect, int64(len(resp.Pairs)))
		a.incoming.Add(-d)
		expect -= d
		if !resp.More || len(resp.Pairs) == 0 {
			return pulled, nil
		}
		last := resp.Pairs[len(resp.Pairs)-1].Key
		req.AfterHash, req.AfterKey = ring.KeyHash(last), last
	}
}

// errNotEmpty ends a bulk copy that would bring states this node already
// received from another peer.
var errNotEmpty = errors.New("anti-entropy: bulk copy abandoned: states arrived from another peer meanwhile")

// responderSession returns a responder session, touching it.
func (a *antiEntropy) responderSession(id uint64) *aeResponder {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.mu.sessions[id]
	if s != nil {
		s.used = time.Now()
	}
	return s
}

// serve handles the anti-entropy RPC methods.
func (a *antiEntropy) serve(ctx context.Context, method uint16, body []byte) ([]byte, error) {
	switch method {
	case methodAESync:
		var req aeSyncReq
		if err := decode(body, &req); err != nil {
			return nil, badRequest(err)
		}
		var m antientropy.Message
		if err := m.Decode(req.Msg, antientropy.Limits{}); err != nil {
			return nil, badRequest(err)
		}
		reply, err := a.answer(req, &m)
		if err != nil {
			return nil, err
		}
		out, err := reply.MarshalBinary()
		if err != nil {
			return nil, err
		}
		return encode(&aeSyncResp{Msg: out})
	case methodAEPull:
		var req aePullReq
		if err := decode(body, &req); err != nil {
			return nil, badRequest(err)
		}
		have, err := decodeHave(req.Have)
		if err != nil {
			return nil, badRequest(err)
		}
		s := a.responderSession(req.Session)
		if s == nil {
			return nil, badRequest(fmt.Errorf("no anti-entropy session %x", req.Session))
		}
		return a.serveStates(ctx, len(req.Items), func(i int) []uint64 { return hashesOf(s.refs, req.Items[i:i+1]) }, have)
	case methodAEFetch:
		var req aeFetchReq
		if err := decode(body, &req); err != nil {
			return nil, badRequest(err)
		}
		have, err := decodeHave(req.Have)
		if err != nil {
			return nil, badRequest(err)
		}
		return a.serveStates(ctx, len(req.Hashes), func(i int) []uint64 { return req.Hashes[i : i+1] }, have)
	case methodAENeed:
		var req aeNeedReq
		if err := decode(body, &req); err != nil {
			return nil, badRequest(err)
		}
		e, ok := a.n.view.Load().byID[req.From]
		if !ok {
			return nil, badRequest(fmt.Errorf("anti-entropy: unknown node %016x", req.From))
		}
		fetched, err := a.fetch(ctx, req.From, e, req.Hashes)
		if err != nil {
			return nil, err
		}
		return encode(&aeNeedResp{Fetched: fetched})
	case methodAEPullRange:
		var req aePullRangeReq
		if err := decode(body, &req); err != nil {
			return nil, badRequest(err)
		}
		return a.serveRange(ctx, req)
	case methodAEDone:
		var req aeDoneReq
		if err := decode(body, &req); err != nil {
			return nil, badRequest(err)
		}
		a.mu.Lock()
		s := a.mu.sessions[req.Session]
		delete(a.mu.sessions, req.Session)
		a.mu.Unlock()
		if s != nil {
			// With Complete, the repairs both ways are done.
			a.noteExchange(s.peer, req.Complete)
		}
		return nil, nil
	case methodReap:
		var req reapReq
		if err := decode(body, &req); err != nil {
			return nil, badRequest(err)
		}
		if err := checkKey(req.Key); err != nil {
			return nil, badRequest(err)
		}
		same, err := a.n.reapLocal(req.Key, antientropy.Digest{Hi: req.Digest[0], Lo: req.Digest[1]}, req.Do)
		if err != nil {
			return nil, err
		}
		return encode(&reapResp{Same: same})
	}
	return nil, badRequest(fmt.Errorf("unknown method %d", method))
}

// serveStates answers a pull or fetch: for requests 0..n-1 (each naming
// key hashes), the states not covered by have, up to aeBatchBytes.
func (a *antiEntropy) serveStates(ctx context.Context, n int, hashesFor func(int) []uint64, have map[uint64]crdt.VV) ([]byte, error) {
	var resp aePairs
	size := 0
	for resp.Done < n && size < aeBatchBytes {
		var added int
		var err error
		if resp.Pairs, _, added, err = a.statesAt(hashesFor(resp.Done), resp.Pairs, aeBatchBytes, have); err != nil {
			return nil, err
		}
		size += added
		resp.Done++
	}
	if err := a.limit.wait(ctx, size); err != nil {
		return nil, err
	}
	return encode(&resp)
}

// answer handles one session message as the responder.
func (a *antiEntropy) answer(req aeSyncReq, m *antientropy.Message) (*antientropy.Message, error) {
	if m.Type != antientropy.MsgSummary {
		s := a.responderSession(req.Session)
		if s == nil || s.peer != req.From {
			return nil, badRequest(fmt.Errorf("no anti-entropy session %x", req.Session))
		}
		reply, err := s.resp.Step(m)
		if err != nil {
			return nil, badRequest(err)
		}
		return reply, nil
	}
	v := a.n.view.Load()
	s := v.shared[ring.NodeID(req.From)]
	if req.Spans != nil {
		var err error
		if s, err = unflattenSpans(req.Spans); err != nil {
			return nil, badRequest(err)
		}
	}
	reply, need, err := antientropy.Respond(m, v.hash, a.index.SetHash(s), a.index.SetCount(s))
	if err != nil {
		return nil, badRequest(err)
	}
	a.noteExchange(req.From, reply != nil && reply.Type == antientropy.MsgInSync)
	if !need {
		return reply, nil
	}
	a.mu.Lock()
	busy := len(a.mu.sessions) >= aeMaxSessions
	a.mu.Unlock()
	if busy {
		return nil, &rpc.RemoteError{Code: codeUnavailable, Msg: "too many anti-entropy sessions"}
	}
	items, refs, err := a.itemsOf(s)
	if err != nil {
		return nil, err
	}
	r := antientropy.NewResponder(a.cfg, items, m.Count)
	a.mu.Lock()
	a.mu.sessions[req.Session] = &aeResponder{peer: req.From, resp: r, refs: refs, used: time.Now()}
	a.mu.Unlock()
	return r.First(), nil
}

// serveRange answers a bulk copy page: states in the ranges shared with the
// asking node, after the cursor, up to aeBatchBytes.
func (a *antiEntropy) serveRange(ctx context.Context, req aePullRangeReq) ([]byte, error) {
	v := a.n.view.Load()
	s := v.shared[ring.NodeID(req.From)]
	var resp aePullRangeResp
	size := 0
	errFull := errors.New("full")
	for _, sp := range s {
		start, end := sp.HashBounds()
		if end != 0 && end <= req.AfterHash {
			continue
		}
		if start < req.AfterHash {
			start = req.AfterHash
		}
		err := a.n.store.Scan(start, end, func(hash uint64, key, value []byte) error {
			if req.AfterKey != nil && hash == req.AfterHash && bytes.Compare(key, req.AfterKey) <= 0 {
				return nil
			}
			if size >= aeBatchBytes {
				return errFull
			}
			st := stateOf(value)
			resp.Pairs = append(resp.Pairs, aePair{Key: bytes.Clone(key), State: bytes.Clone(st)})
			size += len(key) + len(st)
			return nil
		})
		if errors.Is(err, errFull) {
			resp.More = true
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if err := a.limit.wait(ctx, size); err != nil {
		return nil, err
	}
	return encode(&resp)
}

// AntiEntropyPeer is the anti-entropy state with one peer.
type AntiEntropyPeer struct {
	Ranges int `json:"ranges"`
	// SharedHash and SharedKeys describe this node's copy of the ranges it
	// shares with the peer, now: the two replicas agree on them exactly
	// when the peer reports the same hash for this node.
	SharedHash    string    `json:"shared_hash"`
	SharedKeys    uint64    `json:"shared_keys"`
	InSync        bool      `json:"in_sync"`
	LastExchange  time.Time `json:"last_exchange"`
	LastDuration  string    `json:"last_duration"`
	LastError     string    `json:"last_error,omitempty"`
	KeysPulled    uint64    `json:"keys_pulled"`
	BytesSent     uint64    `json:"bytes_sent"`
	BytesReceived uint64    `json:"bytes_received"`
}

// AntiEntropyStatus summarises this node's anti-entropy.
type AntiEntropyStatus struct {
	Keys           int64                      `json:"keys"`
	RangesInSync   int                        `json:"ranges_in_sync"`
	RangesTotal    int                        `json:"ranges_total"`
	Sessions       uint64                     `json:"sessions"`
	SessionsInSync uint64                     `json:"sessions_in_sync"`
	KeysPulled     uint64                     `json:"keys_pulled"`
	KeysRepaired   uint64                     `json:"keys_repaired"`
	BytesRepaired  uint64                     `json:"bytes_repaired"`
	BytesSent      uint64                     `json:"bytes_sent"`
	BytesReceived  uint64                     `json:"bytes_received"`
	Symbols        uint64                     `json:"symbols"`
	Tombstones     uint64                     `json:"tombstones_reaped"`
	Peers          map[string]AntiEntropyPeer `json:"peers"`
}

// AntiEntropy returns a snapshot of this node's anti-entropy counters. A
// peer's ranges count as in sync when its last exchange found nothing to
// repair (either side may have initiated it).
func (n *Node) AntiEntropy() AntiEntropyStatus {
	a := n.ae
	st := AntiEntropyStatus{
		Keys:           a.index.Keys(),
		Sessions:       a.sessions.Load(),
		SessionsInSync: a.inSync.Load(),
		KeysPulled:     a.keysPulled.Load(),
		KeysRepaired:   a.keysRepaired.Load(),
		BytesRepaired:  a.bytesRepaired.Load(),
		BytesSent:      a.bytesSent.Load(),
		BytesReceived:  a.bytesReceived.Load(),
		Symbols:        a.symbols.Load(),
		Tombstones:     a.reaped.Load(),
		Peers:          map[string]AntiEntropyPeer{},
	}
	v := n.view.Load()
	a.mu.Lock()
	defer a.mu.Unlock()
	for id, s := range v.shared {
		e := v.byID[uint64(id)]
		p := a.mu.peers[uint64(id)]
		st.RangesTotal += len(s)
		h := a.index.SetHash(s)
		info := AntiEntropyPeer{Ranges: len(s), SharedHash: fmt.Sprintf("%016x%016x", h.Hi, h.Lo), SharedKeys: a.index.SetCount(s)}
		if p != nil {
			info.InSync = p.inSync
			info.LastExchange = p.lastExchange
			info.LastDuration = p.lastDuration.Round(time.Microsecond).String()
			info.LastError = p.lastError
			info.KeysPulled = p.keysPulled
			info.BytesSent, info.BytesReceived = p.bytesSent, p.bytesReceived
			if p.inSync {
				st.RangesInSync += len(s)
			}
		}
		st.Peers[e.Name] = info
	}
	return st
}

// noteExchange records, on the responder side, an exchange a peer started
// and whether the shared ranges were in sync (so status is right on both
// sides).
func (a *antiEntropy) noteExchange(peer uint64, inSync bool) {
	a.mu.Lock()
	p := a.peerLocked(peer)
	p.inSync = inSync
	p.lastExchange = time.Now()
	if inSync {
		p.lastComplete = p.lastExchange
	}
	a.mu.Unlock()
}

// completeSince reports whether a session with peer ended complete after t.
func (a *antiEntropy) completeSince(peer uint64, t time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := a.mu.peers[peer]
	return p != nil && p.lastComplete.After(t)
}
