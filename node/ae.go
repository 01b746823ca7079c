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
	"github.com/rumorkv/rumor/node/rpc"
	"github.com/rumorkv/rumor/ring"
)

// Anti-entropy peer RPC methods.
const (
	// methodAESync carries one protocol message of a session (Summary,
	// More, ListReq) and returns the responder's answer.
	methodAESync uint16 = 5
	// methodAEPull returns the states behind items of a session.
	methodAEPull uint16 = 6
	// methodAEPush merges states into the receiver (durably, in one sync).
	methodAEPush uint16 = 7
	// methodAEPullRange pages through every state the two share (bulk copy
	// for a replica that holds nothing).
	methodAEPullRange uint16 = 8
	// methodAEDone ends a responder session.
	methodAEDone uint16 = 9
	// methodReap checks (and with Do, deletes) a tombstone on a replica.
	methodReap uint16 = 10
)

// Wire overhead of one peer call: the RPC frame headers of the request and
// of the response (see node/rpc). Counted in the anti-entropy byte figures
// so they are what the network carries, not just the bodies.
const (
	rpcRequestOverhead  = 20
	rpcResponseOverhead = 14
)

const (
	// aeBatchBytes bounds the states in one push or pull answer.
	aeBatchBytes = 1 << 20
	// aePullItems bounds the items asked for in one pull.
	aePullItems = 4096
	// aeMaxSessions bounds concurrent responder sessions; more are refused.
	aeMaxSessions = 16
	// aeSessionIdle is how long an idle responder session is kept.
	aeSessionIdle = time.Minute
	// reapBatch bounds the tombstones one reaper round handles.
	reapBatch = 10000
)

type aeSyncReq struct {
	Session uint64 `msgpack:"s"`
	From    uint64 `msgpack:"f"`
	Msg     []byte `msgpack:"m"`
}

type aeSyncResp struct {
	Msg []byte `msgpack:"m"`
}

type aePullReq struct {
	Session uint64   `msgpack:"s"`
	Items   []uint64 `msgpack:"i"`
}

type aePair struct {
	Key   []byte `msgpack:"k"`
	State []byte `msgpack:"v"`
}

type aePairs struct {
	Pairs []aePair `msgpack:"p"`
	// Done is how many of the requested items the answer covers (pull);
	// the rest must be asked for again.
	Done int `msgpack:"d"`
}

type aePullRangeReq struct {
	From      uint64 `msgpack:"f"`
	AfterHash uint64 `msgpack:"h"`
	AfterKey  []byte `msgpack:"k"`
}

type aePullRangeResp struct {
	Pairs []aePair `msgpack:"p"`
	More  bool     `msgpack:"m"`
}

type aeDoneReq struct {
	Session uint64 `msgpack:"s"`
}

type reapReq struct {
	Key    []byte    `msgpack:"k"`
	Digest [2]uint64 `msgpack:"d"`
	Do     bool      `msgpack:"x"`
}

type reapResp struct {
	Same bool `msgpack:"s"`
}

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
	ranges        int
	inSync        bool
	lastExchange  time.Time
	lastDuration  time.Duration
	lastError     string
	keysPushed    uint64
	keysPulled    uint64
	bytesSent     uint64
	bytesReceived uint64
}

// antiEntropy keeps the hash index current and reconciles shared ranges
// with peers.
type antiEntropy struct {
	n     *Node
	index *antientropy.Index
	cfg   antientropy.Config
	kick  chan uint64
	limit *rateLimiter

	mu struct {
		sync.Mutex
		sessions map[uint64]*aeResponder
		peers    map[uint64]*aePeer
	}

	sessions, inSync, keysPushed, keysPulled, keysRepaired atomic.Uint64
	bytesSent, bytesReceived, symbols, reaped              atomic.Uint64
}

func newAntiEntropy(n *Node) *antiEntropy {
	a := &antiEntropy{
		n:     n,
		index: antientropy.NewIndex(),
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
		od = antientropy.DigestOf(key, old)
		delta--
	}
	if new != nil {
		nd = antientropy.DigestOf(key, new)
		delta++
	}
	a.index.Update(hash, od, nd, delta)
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
	if ok && bytes.Equal(clean, []byte{1}) {
		snap, ok, err := st.GetMeta(metaAEIndex)
		if err == nil && ok {
			if err := a.index.LoadSnapshot(snap); err == nil {
				a.n.log.Debug("anti-entropy index loaded from snapshot", "keys", a.index.Keys())
				return st.PutMeta(metaAEClean, []byte{0})
			} else {
				a.n.log.Warn("anti-entropy index snapshot unusable; rebuilding", "err", err)
			}
		}
	}
	start := time.Now()
	a.index.Reset()
	err = st.Scan(0, 0, func(hash uint64, key, value []byte) error {
		a.index.Update(hash, antientropy.Digest{}, antientropy.DigestOf(key, value), 1)
		return nil
	})
	if err != nil {
		return fmt.Errorf("rebuild anti-entropy index: %w", err)
	}
	a.n.log.Info("anti-entropy index rebuilt", "keys", a.index.Keys(), "took", time.Since(start).Round(time.Millisecond))
	return st.PutMeta(metaAEClean, []byte{0})
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

// trigger asks for a session with peer now (when it becomes reachable).
func (a *antiEntropy) trigger(peer uint64) {
	if a.n.cfg.AEInterval < 0 {
		return
	}
	select {
	case a.kick <- peer:
	default:
	}
}

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return time.Second
	}
	return d/2 + rand.N(d)
}

// loop runs sessions every AEInterval (jittered) with every peer this node
// initiates with, and at once with a peer that becomes reachable.
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
			a.run(a.filter(peers, false))
		case <-timer.C:
			a.expire()
			a.run(a.filter(nil, true))
			timer.Reset(jitter(a.n.cfg.AEInterval))
		}
	}
}

// filter picks the peers to start sessions with: reachable, sharing ranges
// with this node, and either with a higher id (of a pair, the lower id
// initiates, so each pair runs one session per round) or not heard from for
// three intervals (the other side may not reach us). With all, every peer
// in the view is considered; otherwise only those given.
func (a *antiEntropy) filter(given []uint64, all bool) []uint64 {
	v := a.n.view.Load()
	if all {
		given = given[:0]
		for id := range v.shared {
			given = append(given, uint64(id))
		}
	}
	stale := 3 * a.n.cfg.AEInterval
	var out []uint64
	for _, id := range given {
		e, ok := v.byID[id]
		if !ok || len(v.shared[ring.NodeID(id)]) == 0 || !a.n.mem.reachable(e.Name) {
			continue
		}
		if a.n.id > id {
			a.mu.Lock()
			p := a.mu.peers[id]
			recent := p != nil && time.Since(p.lastExchange) < stale
			a.mu.Unlock()
			if recent || !all {
				continue
			}
		}
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// run holds sessions with peers, AEConcurrency at a time, and returns when
// all are over.
func (a *antiEntropy) run(peers []uint64) {
	sem := make(chan struct{}, max(1, a.n.cfg.AEConcurrency))
	var wg sync.WaitGroup
	for _, id := range peers {
		select {
		case sem <- struct{}{}:
		case <-a.n.ctx.Done():
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
	out, err := a.n.call(ctx, e.RPC, method, body)
	sent, recv := uint64(len(body)+rpcRequestOverhead), uint64(len(out)+rpcResponseOverhead)
	if err != nil {
		recv = 0
	}
	a.bytesSent.Add(sent)
	a.bytesReceived.Add(recv)
	a.mu.Lock()
	if p := a.peerLocked(peer); p != nil {
		p.bytesSent += sent
		p.bytesReceived += recv
	}
	a.mu.Unlock()
	if err != nil {
		return err
	}
	if resp == nil {
		return nil
	}
	return decode(out, resp)
}

func (a *antiEntropy) peerLocked(id uint64) *aePeer {
	p := a.mu.peers[id]
	if p == nil {
		p = &aePeer{}
		a.mu.peers[id] = p
	}
	return p
}

// items enumerates this node's items in s: every key's digest item and
// hash, sorted by item.
func (a *antiEntropy) items(s antientropy.RangeSet) ([]uint64, []itemRef, error) {
	var refs []itemRef
	for _, sp := range s {
		start, end := sp.HashBounds()
		err := a.n.store.Scan(start, end, func(hash uint64, key, value []byte) error {
			refs = append(refs, itemRef{item: antientropy.DigestOf(key, value).Item(), hash: hash})
			return nil
		})
		if err != nil {
			return nil, nil, fmt.Errorf("anti-entropy: enumerate items: %w", err)
		}
	}
	slices.SortFunc(refs, func(x, y itemRef) int {
		switch {
		case x.item < y.item:
			return -1
		case x.item > y.item:
			return 1
		}
		return 0
	})
	items := make([]uint64, len(refs))
	for i, r := range refs {
		items[i] = r.item
	}
	return items, refs, nil
}

// hashesOf maps items to their key hashes (deduplicated).
func hashesOf(refs []itemRef, items []uint64) []uint64 {
	var out []uint64
	for _, it := range items {
		i, ok := slices.BinarySearchFunc(refs, it, func(r itemRef, t uint64) int {
			switch {
			case r.item < t:
				return -1
			case r.item > t:
				return 1
			}
			return 0
		})
		if ok {
			out = append(out, refs[i].hash)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// statesAt appends the current (key, state) pairs at each hash to pairs,
// until the pairs hold limit bytes; it returns how many hashes it covered.
func (a *antiEntropy) statesAt(hashes []uint64, pairs []aePair, limit int) ([]aePair, int, error) {
	size := 0
	for i, h := range hashes {
		if size >= limit && i > 0 {
			return pairs, i, nil
		}
		err := a.n.store.Scan(h, h+1, func(hash uint64, key, value []byte) error {
			if hash != h {
				return nil
			}
			pairs = append(pairs, aePair{Key: bytes.Clone(key), State: bytes.Clone(value)})
			size += len(key) + len(value)
			return nil
		})
		if err != nil {
			return nil, 0, err
		}
	}
	return pairs, len(hashes), nil
}

// merge joins received states into this node's copies and makes them
// durable with one sync; it returns how many copies changed.
func (a *antiEntropy) merge(pairs []aePair) (int, error) {
	changed := 0
	for _, p := range pairs {
		if err := checkKey(p.Key); err != nil {
			return changed, err
		}
		reg, err := decodeReg(p.State)
		if err != nil {
			return changed, fmt.Errorf("state of %q: %w", p.Key, err)
		}
		_, ch, err := a.n.mergeLocalUnsynced(p.Key, reg)
		if err != nil {
			return changed, err
		}
		if ch {
			changed++
		}
	}
	if err := a.n.store.Sync(); err != nil {
		return changed, err
	}
	a.keysRepaired.Add(uint64(changed))
	return changed, nil
}

// syncPeer runs one session with peer as the initiator and carries out the
// transfers it finds.
func (a *antiEntropy) syncPeer(peer uint64) {
	n := a.n
	v := n.view.Load()
	e, ok := v.byID[peer]
	if !ok {
		return
	}
	s := v.shared[ring.NodeID(peer)]
	start := time.Now()
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.AESessionTimeout)
	defer cancel()
	pushed, pulled, inSync, err := a.session(ctx, peer, e, v, s)
	a.sessions.Add(1)
	if inSync {
		a.inSync.Add(1)
	}
	a.mu.Lock()
	p := a.peerLocked(peer)
	p.ranges = len(s)
	p.lastDuration = time.Since(start)
	p.keysPushed += uint64(pushed)
	p.keysPulled += uint64(pulled)
	if err != nil {
		p.lastError = err.Error()
		p.inSync = false
	} else {
		p.lastError = ""
		p.lastExchange = time.Now()
		p.inSync = inSync || (pushed == 0 && pulled == 0)
	}
	a.mu.Unlock()
	if err != nil && n.ctx.Err() == nil {
		n.log.Debug("anti-entropy session failed", "peer", e.Name, "err", err)
	} else if pushed+pulled > 0 {
		n.log.Info("anti-entropy repaired", "peer", e.Name, "pushed", pushed, "pulled", pulled,
			"took", time.Since(start).Round(time.Millisecond))
	}
}

func (a *antiEntropy) session(ctx context.Context, peer uint64, e memberEntry, v *view, s antientropy.RangeSet) (pushed, pulled int, inSync bool, err error) {
	ini := antientropy.NewInitiator(a.cfg, v.ring.Hash(), a.index.SetHash(s), a.index.SetCount(s))
	sid := rand.Uint64()
	msg := ini.Summary()
	var refs []itemRef
	remoteSession := false
	defer func() {
		if remoteSession {
			dctx, cancel := context.WithTimeout(a.n.ctx, a.n.cfg.ReplicaTimeout)
			_ = a.call(dctx, peer, e, methodAEDone, &aeDoneReq{Session: sid}, nil)
			cancel()
		}
	}()
	for msg != nil {
		body, err := msg.MarshalBinary()
		if err != nil {
			return 0, 0, false, err
		}
		var resp aeSyncResp
		if err := a.call(ctx, peer, e, methodAESync, &aeSyncReq{Session: sid, From: a.n.id, Msg: body}, &resp); err != nil {
			return 0, 0, false, err
		}
		var reply antientropy.Message
		if err := reply.Decode(resp.Msg, antientropy.Limits{}); err != nil {
			return 0, 0, false, err
		}
		if reply.Type == antientropy.MsgSymbols || reply.Type == antientropy.MsgList {
			remoteSession = reply.Count > 0 || reply.Type == antientropy.MsgList
		}
		if ini.NeedItems(&reply) {
			var items []uint64
			if items, refs, err = a.items(s); err != nil {
				return 0, 0, false, err
			}
			ini.SetItems(items)
		}
		if msg, err = ini.Step(&reply); err != nil {
			return 0, 0, false, err
		}
	}
	res := ini.Result()
	a.symbols.Add(uint64(res.Symbols))
	if res.InSync {
		return 0, 0, true, nil
	}
	if res.PullAll {
		pulled, err = a.pullAll(ctx, peer, e)
		return 0, pulled, false, err
	}
	if pushed, err = a.push(ctx, peer, e, hashesOf(refs, res.LocalOnly)); err != nil {
		return pushed, 0, false, err
	}
	pulled, err = a.pull(ctx, peer, e, sid, res.RemoteOnly)
	return pushed, pulled, false, err
}

// push sends the states at hashes to the peer, in batches, rate-limited.
func (a *antiEntropy) push(ctx context.Context, peer uint64, e memberEntry, hashes []uint64) (int, error) {
	pushed := 0
	for len(hashes) > 0 {
		pairs, done, err := a.statesAt(hashes, nil, aeBatchBytes)
		if err != nil {
			return pushed, err
		}
		hashes = hashes[done:]
		if len(pairs) == 0 {
			continue
		}
		if err := a.limit.wait(ctx, pairsSize(pairs)); err != nil {
			return pushed, err
		}
		if err := a.call(ctx, peer, e, methodAEPush, &aePairs{Pairs: pairs}, nil); err != nil {
			return pushed, err
		}
		pushed += len(pairs)
		a.keysPushed.Add(uint64(len(pairs)))
	}
	return pushed, nil
}

// pull asks the peer for the states behind items and merges them.
func (a *antiEntropy) pull(ctx context.Context, peer uint64, e memberEntry, sid uint64, items []uint64) (int, error) {
	pulled := 0
	for len(items) > 0 {
		batch := items[:min(len(items), aePullItems)]
		var resp aePairs
		if err := a.call(ctx, peer, e, methodAEPull, &aePullReq{Session: sid, Items: batch}, &resp); err != nil {
			return pulled, err
		}
		if resp.Done <= 0 || resp.Done > len(batch) {
			return pulled, fmt.Errorf("anti-entropy: pull answer covers %d of %d items", resp.Done, len(batch))
		}
		items = items[resp.Done:]
		if _, err := a.merge(resp.Pairs); err != nil {
			return pulled, err
		}
		pulled += len(resp.Pairs)
		a.keysPulled.Add(uint64(len(resp.Pairs)))
	}
	return pulled, nil
}

// pullAll copies every state the two share from the peer (this node holds
// none of them).
func (a *antiEntropy) pullAll(ctx context.Context, peer uint64, e memberEntry) (int, error) {
	req := aePullRangeReq{From: a.n.id}
	pulled := 0
	for {
		var resp aePullRangeResp
		if err := a.call(ctx, peer, e, methodAEPullRange, &req, &resp); err != nil {
			return pulled, err
		}
		if _, err := a.merge(resp.Pairs); err != nil {
			return pulled, err
		}
		pulled += len(resp.Pairs)
		a.keysPulled.Add(uint64(len(resp.Pairs)))
		if !resp.More || len(resp.Pairs) == 0 {
			return pulled, nil
		}
		last := resp.Pairs[len(resp.Pairs)-1].Key
		req.AfterHash, req.AfterKey = ring.KeyHash(last), last
	}
}

func pairsSize(pairs []aePair) int {
	n := 0
	for _, p := range pairs {
		n += len(p.Key) + len(p.State) + 8
	}
	return n
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
		a.mu.Lock()
		s := a.mu.sessions[req.Session]
		if s != nil {
			s.used = time.Now()
		}
		a.mu.Unlock()
		if s == nil {
			return nil, badRequest(fmt.Errorf("no anti-entropy session %x", req.Session))
		}
		// Cover a prefix of the items whose states fit in one answer.
		var resp aePairs
		for resp.Done < len(req.Items) {
			hs := hashesOf(s.refs, req.Items[resp.Done:resp.Done+1])
			var err error
			if resp.Pairs, _, err = a.statesAt(hs, resp.Pairs, aeBatchBytes); err != nil {
				return nil, err
			}
			resp.Done++
			if pairsSize(resp.Pairs) >= aeBatchBytes {
				break
			}
		}
		if err := a.limit.wait(ctx, pairsSize(resp.Pairs)); err != nil {
			return nil, err
		}
		return encode(&resp)
	case methodAEPush:
		var req aePairs
		if err := decode(body, &req); err != nil {
			return nil, badRequest(err)
		}
		if _, err := a.merge(req.Pairs); err != nil {
			return nil, err
		}
		return nil, nil
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
			a.noteExchange(s.peer, true) // the initiator has carried out the repairs
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

// answer handles one session message as the responder.
func (a *antiEntropy) answer(req aeSyncReq, m *antientropy.Message) (*antientropy.Message, error) {
	if m.Type != antientropy.MsgSummary {
		a.mu.Lock()
		s := a.mu.sessions[req.Session]
		if s != nil {
			s.used = time.Now()
		}
		a.mu.Unlock()
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
	reply, need, err := antientropy.Respond(m, v.ring.Hash(), a.index.SetHash(s), a.index.SetCount(s))
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
	items, refs, err := a.items(s)
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
			resp.Pairs = append(resp.Pairs, aePair{Key: bytes.Clone(key), State: bytes.Clone(value)})
			size += len(key) + len(value)
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
	Ranges        int       `json:"ranges"`
	InSync        bool      `json:"in_sync"`
	LastExchange  time.Time `json:"last_exchange"`
	LastDuration  string    `json:"last_duration"`
	LastError     string    `json:"last_error,omitempty"`
	KeysPushed    uint64    `json:"keys_pushed"`
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
	KeysPushed     uint64                     `json:"keys_pushed"`
	KeysPulled     uint64                     `json:"keys_pulled"`
	KeysRepaired   uint64                     `json:"keys_repaired"`
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
		KeysPushed:     a.keysPushed.Load(),
		KeysPulled:     a.keysPulled.Load(),
		KeysRepaired:   a.keysRepaired.Load(),
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
		info := AntiEntropyPeer{Ranges: len(s)}
		if p != nil {
			info.InSync = p.inSync
			info.LastExchange = p.lastExchange
			info.LastDuration = p.lastDuration.Round(time.Microsecond).String()
			info.LastError = p.lastError
			info.KeysPushed, info.KeysPulled = p.keysPushed, p.keysPulled
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
	a.mu.Unlock()
}
