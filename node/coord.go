package node

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rumorkv/rumor/crdt"
	"github.com/rumorkv/rumor/node/rpc"
	"github.com/rumorkv/rumor/node/storage"
	"github.com/rumorkv/rumor/ring"
)

// WriteOptions are per-request write settings. A nil *WriteOptions means
// defaults.
type WriteOptions struct {
	// Context is the opaque causal context from an earlier read ("" = none:
	// the write becomes a sibling of whatever exists).
	Context string
	// W is the write quorum; zero means the node's configured default.
	W Consistency
}

// ReadOptions are per-request read settings. A nil *ReadOptions means
// defaults.
type ReadOptions struct {
	// R is the read quorum; zero means the node's configured default.
	R Consistency
	// Local reads only this node's own copy, without coordination.
	Local bool
}

func (o *WriteOptions) w() Consistency {
	if o == nil {
		return ConsistencyDefault
	}
	return o.W
}

func (o *WriteOptions) context() string {
	if o == nil {
		return ""
	}
	return o.Context
}

// Sibling is one live value of a key.
type Sibling struct {
	Value []byte
	// Time is the write's hybrid-logical-clock time.
	Time time.Time
	// Dot names the write ("actor:counter").
	Dot string
}

// Result is what a read returns: every live sibling and one opaque context
// that covers all of them (and any tombstones), to send back with the next
// write of the key.
type Result struct {
	Siblings []Sibling
	Context  string
}

// Values returns the sibling values.
func (r *Result) Values() [][]byte {
	out := make([][]byte, len(r.Siblings))
	for i, s := range r.Siblings {
		out[i] = s.Value
	}
	return out
}

// decodeLimits are sanity bounds for registers read from disk or a peer.
// They are far above anything the client limits let in: applying policy here
// would drop data another replica already acknowledged.
var decodeLimits = crdt.Limits{MaxVersions: 1 << 20, MaxVVEntries: 1 << 20, MaxValueBytes: 64 << 20}

func decodeReg(b []byte) (crdt.Register, error) {
	if len(b) == 0 {
		return crdt.Register{}, nil
	}
	return crdt.DecodeRegister(b, decodeLimits)
}

// Put writes value under key. It returns the causal context of the new
// version (which covers exactly what the write superseded plus itself).
func (n *Node) Put(ctx context.Context, key, value []byte, o *WriteOptions) (_ string, err error) {
	defer n.prom.observeRequest(opPut, time.Now(), &err)
	if len(value) > n.cfg.MaxValueSize {
		return "", fmt.Errorf("%w: %d bytes, limit %d", ErrValueTooLarge, len(value), n.cfg.MaxValueSize)
	}
	if value == nil {
		value = []byte{}
	}
	return n.write(ctx, key, value, false, o)
}

// Delete writes a tombstone for key. With the context of a read it removes
// exactly the versions that read saw; without one it hides nothing that was
// written concurrently.
func (n *Node) Delete(ctx context.Context, key []byte, o *WriteOptions) (_ string, err error) {
	defer n.prom.observeRequest(opDelete, time.Now(), &err)
	return n.write(ctx, key, nil, true, o)
}

func (n *Node) checkClientKey(key []byte) error {
	if len(key) == 0 {
		return ErrBadKey
	}
	if len(key) > n.cfg.MaxKeySize {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrKeyTooLarge, len(key), n.cfg.MaxKeySize)
	}
	return nil
}

func (n *Node) write(ctx context.Context, key, value []byte, deleted bool, o *WriteOptions) (string, error) {
	if err := n.checkClientKey(key); err != nil {
		return "", err
	}
	cctx, err := crdt.DecodeContext(o.context(), n.cfg.MaxContextEntries)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrBadContext, err)
	}
	if n.ctx.Err() != nil {
		return "", ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
	defer cancel()
	vv, err := n.coordinate(ctx, key, value, cctx, deleted, o.w(), true)
	if err != nil {
		return "", fmt.Errorf("write %q: %w", key, err)
	}
	return crdt.EncodeContext(vv), nil
}

// coordinate runs a client write. The write is coordinated by a primary
// replica of the key that applies it to its own copy first, under the key's
// lock, and then ships the whole merged state. That keeps an invariant that
// version-vector contexts rely on: any state that holds a dot of actor A for
// a key also holds (or supersedes) every earlier dot of A for that key, so a
// context that covers A:17 never silently covers a concurrent A:5 it has not
// seen. A node that is not a primary forwards the write to the first
// reachable primary; only when none is reachable does it coordinate itself,
// under a fresh one-off actor (so the invariant holds trivially), storing
// hints for the primaries.
func (n *Node) coordinate(ctx context.Context, key, value []byte, cctx crdt.VV, deleted bool, w Consistency, mayForward bool) (crdt.VV, error) {
	v := n.view.Load()
	hash := ring.KeyHash(key)
	pref := v.ring.Preference(hash, n.cfg.N)
	if len(pref) == 0 {
		return nil, fmt.Errorf("%w: empty ring", ErrUnavailable)
	}
	// A leaving node coordinates only when no other primary answers: it
	// is about to go, and writes it took after its last hand-over session
	// would leave with it.
	leaving := n.mem.selfRow().Status == StatusLeaving
	replica := slices.Contains(pref, ring.NodeID(n.id))
	if replica && (!leaving || !mayForward || (w == Primary && pref[0] == ring.NodeID(n.id))) {
		return n.coordinateHere(ctx, v, key, hash, pref, value, cctx, deleted, w, true)
	}
	if mayForward {
		req := coordinateReq{Key: key, Value: value, Context: crdt.EncodeContext(cctx), Deleted: deleted, W: int(w)}
		body, err := encode(&req)
		if err != nil {
			return nil, err
		}
		var lastErr error
		for i, p := range coordinators(v, pref, n.id) {
			if w == Primary && i > 0 {
				break
			}
			e, ok := v.byID[uint64(p)]
			if !ok || !n.mem.reachable(e.Name) {
				continue
			}
			n.metrics.forwarded.Add(1)
			out, err := n.call(ctx, e.RPC, methodCoordinate, body)
			if err == nil {
				var resp coordinateResp
				if err := decode(out, &resp); err != nil {
					return nil, err
				}
				vv, err := crdt.DecodeContext(resp.Context, 1<<20)
				if err != nil {
					return nil, fmt.Errorf("node: coordinator %s returned a bad context: %w", e.Name, err)
				}
				return vv, nil
			}
			var re *rpc.RemoteError
			if errors.As(err, &re) && re.Code != codeStorage {
				return nil, remoteToError(re)
			}
			// Try the next primary only when this one certainly did not
			// make the write durable: the request never left, or its
			// storage refused it.
			if re == nil && !errors.Is(err, rpc.ErrNotSent) {
				// The primary may have applied the write: sending it to
				// another one would make a second version of it. The
				// outcome is unknown to the client, as after a timeout.
				if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
					return nil, fmt.Errorf("%w: coordinator %s: %v", context.DeadlineExceeded, e.Name, err)
				}
				return nil, fmt.Errorf("%w: coordinator %s: %v", ErrUnavailable, e.Name, err)
			}
			lastErr = err
			if ctx.Err() != nil {
				break
			}
		}
		if w == Primary {
			return nil, fmt.Errorf("%w: primary replica unreachable (%v)", ErrUnavailable, lastErr)
		}
		if replica {
			return n.coordinateHere(ctx, v, key, hash, pref, value, cctx, deleted, w, true)
		}
	}
	return n.coordinateHere(ctx, v, key, hash, pref, value, cctx, deleted, w, false)
}

// coordinators orders the primaries a write may be forwarded to: the
// preference list without self, leaving nodes last (W=primary keeps the
// first primary first).
func coordinators(v *view, pref []ring.NodeID, self uint64) []ring.NodeID {
	out := make([]ring.NodeID, 0, len(pref))
	var later []ring.NodeID
	for i, p := range pref {
		switch {
		case uint64(p) == self:
		case i > 0 && v.byID[uint64(p)].Status == StatusLeaving:
			later = append(later, p)
		default:
			out = append(out, p)
		}
	}
	return append(out, later...)
}

// leavesOwnSibling reports whether reg holds a version of actor that ctx
// does not cover (it would stay beside a new write of that actor).
func leavesOwnSibling(reg crdt.Register, actor crdt.ActorID, ctx crdt.VV) bool {
	for _, v := range reg.Versions {
		if v.Dot.Actor == actor && !ctx.Covers(v.Dot) {
			return true
		}
	}
	return false
}

// coordinateHere applies the write locally (as a replica, or into a fresh
// register when this node is not a replica) and replicates it.
func (n *Node) coordinateHere(ctx context.Context, v *view, key []byte, hash uint64, pref []ring.NodeID,
	value []byte, cctx crdt.VV, deleted bool, w Consistency, replica bool) (crdt.VV, error) {
	// From the local write until every replica's state is counted as
	// pending: a leaving node must not declare itself gone in between.
	if !n.gate.enter() {
		return nil, errHasLeft
	}
	exitGate := sync.OnceFunc(n.gate.exit)
	defer exitGate()
	hlc := n.clock.Now()
	var dot crdt.Dot
	var reg crdt.Register
	var written crdt.VV
	if replica {
		c, err := n.store.NextCounter()
		if err != nil {
			return nil, fmt.Errorf("node: allocate dot: %w", err)
		}
		n.dropMu.RLock()
		_, err = n.store.Update(key, func(old []byte, ok bool) ([]byte, bool, error) {
			epoch, cur, err := decodeRecord(old)
			if err != nil {
				return nil, false, err
			}
			// A client context is untrusted: it may only supersede what
			// this replica holds (a forged or stale "future" context cannot
			// erase versions the coordinator has not seen).
			clamped := cctx.Meet(cur.Context())
			// This node's actor for the key: kept while its copy has an
			// unbroken history here, new otherwise (see record.go) — and
			// new when a version of that actor would stay beside this one
			// (a write without its context): the write's context is a
			// version vector, and {A:n} would also cover that older A:m the
			// writer never saw.
			if epoch == 0 || len(cur.Versions) == 0 || leavesOwnSibling(cur, actorFor(n.id, epoch), clamped) {
				epoch = newEpoch()
			}
			dot = crdt.Dot{Actor: actorFor(n.id, epoch), Counter: c}
			reg = cur.Write(dot, clamped, hlc, value, deleted)
			written = clamped.Join(crdt.VV{dot.Actor: dot.Counter})
			b, err := encodeRecord(epoch, reg)
			return b, true, err
		})
		n.dropMu.RUnlock()
		if err != nil {
			return nil, fmt.Errorf("node: local write: %w", err)
		}
		if s := len(reg.Live()); s > n.cfg.SiblingWarn {
			n.metrics.siblingWarnings.Add(1)
			if ok, events, _ := n.logLim.siblings.note(logRepeatEvery, 1); ok {
				n.log.Warn("key has many siblings; resolve them with a context write", "key", string(key), "siblings", s,
					"writes_over_limit_since_last_line", events)
			}
		}
	} else {
		// One-off actor: its only dot is this one, so nothing can be
		// covered by mistake. The client's context is dropped: this node
		// holds nothing it could supersede.
		actor := rand.Uint64()
		for actor == 0 {
			actor = rand.Uint64()
		}
		dot = crdt.Dot{Actor: crdt.ActorID(actor), Counter: 1}
		reg = crdt.Register{}.Write(dot, crdt.VV{}, hlc, value, deleted)
		written = crdt.VV{dot.Actor: dot.Counter}
	}
	body, err := reg.MarshalBinary()
	if err != nil {
		return nil, err
	}

	need := w.count(len(pref), n.cfg.W)
	acks := 0
	primaryAcked := false
	if replica {
		acks = 1
		primaryAcked = pref[0] == ring.NodeID(n.id)
	}
	type result struct {
		primary bool
		ok      bool
	}
	// While ranges move, the nodes that will own this key receive the write
	// too (they count toward W like the others).
	targets := v.writeTargets(hash, n.cfg.N)
	results := make(chan result, len(targets))
	pending := 0
	for i, p := range targets {
		if p == ring.NodeID(n.id) {
			continue
		}
		pending++
		isPrimary := i == 0
		target := uint64(p)
		// Queue the state for the replica here, in the writer: a full
		// queue makes the writer wait (backpressure) instead of leaving
		// the work to a goroutine.
		n.repl.pending.Add(1)
		var item *replItem
		if e, ok := v.byID[target]; ok && n.mem.reachable(e.Name) {
			item = n.enqueue(ctx, e.RPC, key, body)
		}
		n.goroutine(func() {
			replicated, hinted := n.replicateOrHint(v, targets, target, key, hash, body, item)
			n.metrics.noteReplication(replicated, hinted)
			n.repl.pending.Add(-1)
			results <- result{primary: isPrimary && replicated, ok: replicated || hinted}
		})
	}
	exitGate() // every replica's state is counted as pending now
	satisfied := func() bool {
		if w == Primary || (w == ConsistencyDefault && n.cfg.W == Primary) {
			return primaryAcked && acks >= need
		}
		return acks >= need
	}
	for !satisfied() && pending > 0 {
		select {
		case r := <-results:
			pending--
			if r.ok {
				acks++
			}
			if r.primary {
				primaryAcked = true
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %d of %d acknowledgements before %v", ErrUnavailable, acks, need, ctx.Err())
		}
	}
	if !satisfied() {
		return nil, fmt.Errorf("%w: %d of %d acknowledgements", ErrUnavailable, acks, need)
	}
	n.metrics.writes.Add(1)
	return written, nil
}

// replicateOrHint waits for a state queued for one replica (item; nil if
// the replica was unreachable or its queue stayed full); when that fails,
// the state is stored as a durable hint for the replica on a fallback node
// (or here), to be handed over when it is back. It reports whether the
// replica itself and whether a hint holder acknowledged. It runs on the
// node's context, not the client's: a client that stops waiting does not
// cancel replication or hints.
func (n *Node) replicateOrHint(v *view, pref []ring.NodeID, target uint64, key []byte, hash uint64, reg []byte, item *replItem) (replicated, hinted bool) {
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.ReplicaTimeout)
	defer cancel()
	if item != nil {
		err := item.wait(ctx)
		if err == nil {
			return true, false
		}
		n.log.Debug("replicate failed; storing a hint", "target", fmt.Sprintf("%016x", target), "err", err)
	}
	if n.cfg.DisableHints {
		return false, false
	}
	// Fallback: the first reachable node after the preference list.
	var holder *memberEntry
	v.ring.Walk(hash, func(id ring.NodeID) bool {
		if slices.Contains(pref, id) || uint64(id) == n.id {
			return true
		}
		if e, ok := v.byID[uint64(id)]; ok && n.mem.reachable(e.Name) {
			holder = &e
			return false
		}
		return true
	})
	if holder != nil {
		body, err := encode(&hintReq{Target: target, Key: key, Reg: reg})
		if err == nil {
			if _, err = n.call(ctx, holder.RPC, methodHint, body); err == nil {
				n.metrics.hintsStored.Add(1)
				return false, true
			}
		}
		n.log.Debug("fallback hint failed; keeping the hint here", "holder", holder.Name, "err", err)
	}
	if err := n.storeHint(target, key, reg); err != nil {
		if ok, events, _ := n.logLim.hintStore.note(logRepeatEvery, 1); ok {
			n.log.Error("store hint", "target", fmt.Sprintf("%016x", target), "err", err, "failures_since_last_line", events)
		}
		return false, false
	}
	return false, true
}

func (n *Node) storeHint(target uint64, key, reg []byte) error {
	in, err := decodeReg(reg)
	if err != nil {
		return err
	}
	err = n.store.UpdateHint(target, key, func(old []byte, ok bool) ([]byte, bool, error) {
		cur, err := decodeReg(old)
		if err != nil {
			return nil, false, err
		}
		b, err := cur.Join(in).MarshalBinary()
		return b, true, err
	})
	if err == nil {
		n.metrics.hintsStored.Add(1)
	}
	return err
}

// mergeLocal joins a state into this node's copy of key, durably. It
// returns the merged state and whether the copy changed.
func (n *Node) mergeLocal(key []byte, in crdt.Register) (crdt.Register, bool, error) {
	var merged crdt.Register
	n.dropMu.RLock()
	defer n.dropMu.RUnlock()
	changed, err := n.store.Update(key, func(old []byte, ok bool) ([]byte, bool, error) {
		epoch, cur, err := decodeRecord(old)
		if err != nil {
			return nil, false, err
		}
		merged = cur.Join(in)
		if ok && merged.Equal(cur) {
			return nil, false, nil
		}
		b, err := encodeRecord(epoch, merged)
		return b, true, err
	})
	if err != nil {
		return crdt.Register{}, false, fmt.Errorf("node: merge %q: %w", key, err)
	}
	if ts := in.MaxHLC(); ts != 0 {
		n.clock.Update(ts)
	}
	return merged, changed, nil
}

// Get reads key. With R > 1 it waits for that many replicas and merges their
// answers; stale replicas it saw are repaired in the background. A deleted or
// absent key returns ErrNotFound together with a Result whose Context covers
// the tombstones (use it to write the key again without siblings).
func (n *Node) Get(ctx context.Context, key []byte, o *ReadOptions) (_ *Result, err error) {
	defer n.prom.observeRequest(opGet, time.Now(), &err)
	if err := n.checkClientKey(key); err != nil {
		return nil, err
	}
	if n.ctx.Err() != nil {
		return nil, ErrClosed
	}
	var reg crdt.Register
	if o != nil && o.Local {
		b, _, err := n.store.Get(key)
		if err != nil {
			return nil, fmt.Errorf("read %q: %w", key, err)
		}
		if _, reg, err = decodeRecord(b); err != nil {
			return nil, fmt.Errorf("read %q: %w", key, err)
		}
	} else {
		ctx, cancel := context.WithTimeout(ctx, n.cfg.RequestTimeout)
		defer cancel()
		r := ConsistencyDefault
		if o != nil {
			r = o.R
		}
		if reg, err = n.read(ctx, key, r); err != nil {
			return nil, fmt.Errorf("read %q: %w", key, err)
		}
	}
	n.metrics.reads.Add(1)
	res := &Result{Context: crdt.EncodeContext(reg.Context())}
	for _, v := range reg.Live() {
		res.Siblings = append(res.Siblings, Sibling{Value: v.Value, Time: v.HLC.Time(), Dot: v.Dot.String()})
	}
	n.prom.siblings.Observe(float64(len(res.Siblings)))
	if len(res.Siblings) == 0 {
		return res, ErrNotFound
	}
	return res, nil
}

type readAnswer struct {
	node uint64
	reg  crdt.Register
	err  error
}

func (n *Node) read(ctx context.Context, key []byte, r Consistency) (crdt.Register, error) {
	v := n.view.Load()
	pref := v.ring.Preference(ring.KeyHash(key), n.cfg.N)
	need := r.count(len(pref), n.cfg.R)
	answers := make(chan readAnswer, len(pref))
	asked := 0
	if slices.Contains(pref, ring.NodeID(n.id)) {
		b, _, err := n.store.Get(key)
		var reg crdt.Register
		if err == nil {
			_, reg, err = decodeRecord(b)
		}
		// Fast path: one answer wanted and this replica has the key. Its
		// copy may trail another replica's, as any single answer may;
		// anti-entropy, not this read, brings it up to date.
		if need == 1 && err == nil && len(reg.Versions) > 0 {
			return reg, nil
		}
		asked++
		answers <- readAnswer{node: n.id, reg: reg, err: err}
	}
	for _, p := range pref {
		id := uint64(p)
		if id == n.id {
			continue
		}
		e, ok := v.byID[id]
		if !ok || !n.mem.reachable(e.Name) {
			continue
		}
		// Bound the remote reads in flight: under overload readers wait
		// here rather than leave unbounded work to goroutines.
		select {
		case n.readSlots <- struct{}{}:
		case <-ctx.Done():
			return crdt.Register{}, fmt.Errorf("%w: waiting to read replicas: %v", ErrUnavailable, ctx.Err())
		}
		asked++
		n.goroutine(func() {
			defer func() { <-n.readSlots }()
			reg, err := n.readRemote(e, key)
			answers <- readAnswer{node: id, reg: reg, err: err}
		})
	}
	if asked < need {
		// Drain in the background: answers is buffered, senders never block.
		return crdt.Register{}, fmt.Errorf("%w: %d of %d replicas reachable", ErrUnavailable, asked, need)
	}
	// An answer without the key counts toward R only once every replica
	// asked has answered (Riak's notfound_ok=false): a read right after a
	// write acknowledged by one replica finds it rather than stopping at
	// the first copy that has not received it yet.
	var got []readAnswer
	ok, found := 0, 0
	var lastErr error
	for found < need && len(got) < asked {
		select {
		case a := <-answers:
			got = append(got, a)
			if a.err == nil {
				ok++
				if len(a.reg.Versions) > 0 {
					found++
				}
			} else {
				lastErr = a.err
			}
		case <-ctx.Done():
			return crdt.Register{}, fmt.Errorf("%w: %d of %d answers before %v", ErrUnavailable, ok, need, ctx.Err())
		}
	}
	if ok < need {
		return crdt.Register{}, fmt.Errorf("%w: %d of %d answers (last error: %v)", ErrUnavailable, ok, need, lastErr)
	}
	if quorum := len(pref)/2 + 1; found == 0 && ok < quorum {
		// Too few replicas said they lack the key to say it is absent: one
		// that did not answer may hold it.
		return crdt.Register{}, fmt.Errorf("%w: %d of %d replicas answered, none has the key (last error: %v)", ErrUnavailable, ok, len(pref), lastErr)
	}
	var merged crdt.Register
	for _, a := range got {
		if a.err == nil {
			merged = merged.Join(a.reg)
		}
	}
	remaining := asked - len(got)
	n.goroutine(func() { n.readRepair(v, key, merged, got, answers, remaining) })
	return merged, nil
}

func (n *Node) readRemote(e memberEntry, key []byte) (crdt.Register, error) {
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.ReplicaTimeout)
	defer cancel()
	body, err := encode(&readReq{Key: key})
	if err != nil {
		return crdt.Register{}, err
	}
	out, err := n.call(ctx, e.RPC, methodRead, body)
	if err != nil {
		return crdt.Register{}, err
	}
	var resp readResp
	if err := decode(out, &resp); err != nil {
		return crdt.Register{}, err
	}
	return decodeReg(resp.Reg)
}

// readRepair waits (bounded by the replica timeout) for the answers a read
// did not wait for, then sends the merged state to every replica whose copy
// differs from it.
func (n *Node) readRepair(v *view, key []byte, merged crdt.Register, got []readAnswer, more <-chan readAnswer, remaining int) {
	timeout := time.NewTimer(n.cfg.ReplicaTimeout)
	defer timeout.Stop()
collect:
	for ; remaining > 0; remaining-- {
		select {
		case a := <-more:
			got = append(got, a)
			if a.err == nil {
				merged = merged.Join(a.reg)
			}
		case <-timeout.C:
			break collect
		case <-n.ctx.Done():
			return
		}
	}
	var body []byte
	for _, a := range got {
		if a.err != nil || a.reg.Equal(merged) {
			continue
		}
		n.metrics.readRepairs.Add(1)
		if a.node == n.id {
			if _, _, err := n.mergeLocal(key, merged); err != nil {
				if ok, events, _ := n.logLim.readRepair.note(logRepeatEvery, 1); ok {
					n.log.Warn("read repair (local)", "err", err, "failures_since_last_line", events)
				}
			}
			continue
		}
		e, ok := v.byID[a.node]
		if !ok {
			continue
		}
		if body == nil {
			b, err := merged.MarshalBinary()
			if err != nil {
				return
			}
			if body, err = encode(&replicateReq{Key: key, Reg: b}); err != nil {
				return
			}
		}
		ctx, cancel := context.WithTimeout(n.ctx, n.cfg.ReplicaTimeout)
		if _, err := n.call(ctx, e.RPC, methodReplicate, body); err != nil {
			n.log.Debug("read repair", "target", e.Name, "err", err)
		}
		cancel()
	}
}

// call is one peer RPC with the node's accounting.
func (n *Node) call(ctx context.Context, addr string, method uint16, body []byte) ([]byte, error) {
	out, err := n.rpc.Call(ctx, addr, method, body)
	if err != nil {
		return nil, fmt.Errorf("peer %s: %w", addr, err)
	}
	return out, nil
}

// Remote error codes used by this node's RPC handlers.
const (
	codeBadRequest  = 400
	codeTooLarge    = 413
	codeUnavailable = 503
	codeStorage     = 507 // the node's storage refused the write
)

func remoteToError(re *rpc.RemoteError) error {
	switch re.Code {
	case codeBadRequest:
		return fmt.Errorf("%w: %s", ErrBadContext, re.Msg)
	case codeTooLarge:
		return fmt.Errorf("%w: %s", ErrValueTooLarge, re.Msg)
	case codeUnavailable:
		return fmt.Errorf("%w: %s", ErrUnavailable, re.Msg)
	}
	return re
}

// serveRPC handles one peer request.
func (n *Node) serveRPC(ctx context.Context, from net.Addr, method uint16, body []byte) ([]byte, error) {
	switch method {
	case methodReplicate:
		var req replicateReq
		if err := decode(body, &req); err != nil {
			return nil, &rpc.RemoteError{Code: codeBadRequest, Msg: err.Error()}
		}
		if err := checkKey(req.Key); err != nil {
			return nil, &rpc.RemoteError{Code: codeBadRequest, Msg: err.Error()}
		}
		if _, err := decodeReg(req.Reg); err != nil {
			return nil, &rpc.RemoteError{Code: codeBadRequest, Msg: err.Error()}
		}
		if err := n.acceptStates([]aePair{{Key: req.Key, State: req.Reg}}); err != nil {
			return nil, err
		}
		n.metrics.replicated.Add(1)
		return nil, nil
	case methodRead:
		var req readReq
		if err := decode(body, &req); err != nil {
			return nil, &rpc.RemoteError{Code: codeBadRequest, Msg: err.Error()}
		}
		if err := checkKey(req.Key); err != nil {
			return nil, &rpc.RemoteError{Code: codeBadRequest, Msg: err.Error()}
		}
		b, ok, err := n.store.Get(req.Key)
		if err != nil {
			return nil, err
		}
		return encode(&readResp{Found: ok, Reg: stateOf(b)})
	case methodReplicateBatch:
		var req replicateBatchReq
		if err := decode(body, &req); err != nil {
			return nil, badRequest(err)
		}
		if err := n.acceptStates(req.Pairs); err != nil {
			return nil, err
		}
		n.metrics.replicated.Add(uint64(len(req.Pairs)))
		return nil, nil
	case methodHint:
		var req hintReq
		if err := decode(body, &req); err != nil {
			return nil, &rpc.RemoteError{Code: codeBadRequest, Msg: err.Error()}
		}
		if err := checkKey(req.Key); err != nil || req.Target == 0 {
			return nil, &rpc.RemoteError{Code: codeBadRequest, Msg: fmt.Sprintf("bad hint (target %x): %v", req.Target, err)}
		}
		if !n.gate.enter() {
			return nil, errHasLeft
		}
		err := n.storeHint(req.Target, req.Key, req.Reg)
		n.gate.exit()
		if err != nil {
			return nil, err
		}
		return nil, nil
	case methodCoordinate:
		var req coordinateReq
		if err := decode(body, &req); err != nil {
			return nil, &rpc.RemoteError{Code: codeBadRequest, Msg: err.Error()}
		}
		if err := checkKey(req.Key); err != nil {
			return nil, &rpc.RemoteError{Code: codeBadRequest, Msg: err.Error()}
		}
		cctx, err := crdt.DecodeContext(req.Context, n.cfg.MaxContextEntries)
		if err != nil {
			return nil, &rpc.RemoteError{Code: codeBadRequest, Msg: err.Error()}
		}
		vv, err := n.coordinate(ctx, req.Key, req.Value, cctx, req.Deleted, Consistency(req.W), false)
		if err != nil {
			switch {
			case errors.Is(err, storage.ErrWriteFailed), errors.Is(err, storage.ErrDiskFull), errors.Is(err, errHasLeft):
				// Not durable here: the asking node may try another primary.
				return nil, &rpc.RemoteError{Code: codeStorage, Msg: err.Error()}
			case errors.Is(err, ErrUnavailable):
				return nil, &rpc.RemoteError{Code: codeUnavailable, Msg: err.Error()}
			}
			return nil, err
		}
		return encode(&coordinateResp{Context: crdt.EncodeContext(vv)})
	}
	if method == methodSummary {
		return n.serveSummary()
	}
	if method == methodKeyring {
		return n.serveKeyring(body)
	}
	if isAEMethod(method) {
		return n.ae.serve(ctx, method, body)
	}
	return nil, &rpc.RemoteError{Code: codeBadRequest, Msg: fmt.Sprintf("unknown method %d", method)}
}

// badRequest wraps a peer's bad input as a 400 remote error.
func badRequest(err error) error {
	return &rpc.RemoteError{Code: codeBadRequest, Msg: err.Error()}
}

// metrics are the node's counters; Metrics returns a snapshot.
type metrics struct {
	writes, reads, forwarded, replicated     atomic.Uint64
	hintsStored, hintsDelivered, readRepairs atomic.Uint64
	siblingWarnings                          atomic.Uint64
	hintBytes                                atomic.Uint64
	// replOK, replHinted and replFailed count replicas a coordinated
	// write reached, hinted for, and neither (see noteReplication).
	replOK, replHinted, replFailed atomic.Uint64
	// httpHandshakeFailures counts failed TLS handshakes on the client
	// API (see httpErrorLog).
	httpHandshakeFailures atomic.Uint64
}
