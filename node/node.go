package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/bits"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/rumorkv/rumor/antientropy"
	"github.com/rumorkv/rumor/crdt"
	"github.com/rumorkv/rumor/node/rpc"
	"github.com/rumorkv/rumor/node/storage"
	"github.com/rumorkv/rumor/ring"
)

// Errors returned by the request path. Callers use errors.Is.
var (
	ErrNotFound      = errors.New("node: not found")
	ErrUnavailable   = errors.New("node: not enough replicas reachable")
	ErrKeyTooLarge   = errors.New("node: key too large")
	ErrValueTooLarge = errors.New("node: value too large")
	ErrBadKey        = errors.New("node: empty key")
	ErrBadContext    = errors.New("node: malformed causal context")
	ErrClosed        = errors.New("node: closed")
	ErrConflict      = errors.New("node: conflict")
	ErrNoMember      = errors.New("node: no such member")
)

const metaMembers = "members"

// maxRemoteReads bounds the replica reads a node has in flight.
const maxRemoteReads = 4096

// Node is one Rumor peer. Open starts it; Close stops every goroutine it owns.
type Node struct {
	cfg   Config
	log   *slog.Logger
	id    uint64
	store *storage.Store
	clock *crdt.Clock

	mem    *membership
	view   atomic.Pointer[view]
	rpc    *rpc.Client
	rpcSrv *rpc.Server
	rpcLn  net.Listener

	// httpAddr is the address the client API listens on; rpcAdv and
	// httpAdv are the peer-RPC and client API addresses announced to the
	// cluster ("" if there is no HTTP server).
	httpAddr string
	rpcAdv   string
	httpAdv  string
	httpSrv  *http.Server
	httpLn   net.Listener
	httpLim  httpLimits
	auth     *authenticator // auth.go
	// tls holds the TLS credentials (nil without Config.TLS).
	tls *tlsCreds

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed sync.Once

	ae   *antiEntropy
	repl replicators
	// dropMu orders writes of data against dropping handed-over ranges:
	// writers hold it shared, a drop exclusively (see dropObsolete).
	dropMu sync.RWMutex
	gate   leftGate
	// readSlots bounds remote replica reads in flight.
	readSlots chan struct{}
	xfer      transfers

	metrics metrics
	prom    *promMetrics // metrics.go
	// logLim rate-limits log lines that could otherwise repeat per request.
	logLim logLimits
	// keyring is the gossip encryption keyring (keyring.go).
	keyring *gossipKeyring
}

// view is an immutable snapshot of the ring and the members it was built
// from; the membership loop swaps in a new one on every change.
type view struct {
	// ring is who owns ranges now (members and leaving nodes): reads,
	// coordination, hints and tombstone reaping follow it. next is who
	// owns them once transfers finish (members and joining nodes); it is
	// ring itself when no transfer is under way. Writes go to the union of
	// both preference lists.
	ring, next *ring.Ring
	byID       map[uint64]memberEntry
	// mine is every leaf this node replicates now or once transfers
	// finish; data elsewhere is obsolete here once its owners hold it.
	mine antientropy.RangeSet
	// shared holds, per peer, the leaves both this node and the peer
	// replicate, now or next: what anti-entropy compares with that peer.
	shared map[ring.NodeID]antientropy.RangeSet
	// curRepl and nextRepl are, per node, the leaves it replicates now
	// and in the next ring (the same map when no move is under way).
	curRepl, nextRepl map[ring.NodeID]antientropy.RangeSet
	// gaining and losing are the leaves this node replicates only in the
	// next ring, and only in the current one.
	gaining, losing antientropy.RangeSet
	// hash fingerprints both rings (peers compare it before comparing
	// data).
	hash uint64
}

// newView computes a view of the rings for node self.
func newView(cur, nxt *ring.Ring, byID map[uint64]memberEntry, n int, self uint64) *view {
	v := &view{ring: cur, next: nxt, byID: byID, shared: map[ring.NodeID]antientropy.RangeSet{}}
	v.hash = cur.Hash() ^ bits.RotateLeft64(nxt.Hash(), 17)
	v.curRepl = antientropy.ReplicatedAll(cur, n)
	v.nextRepl = v.curRepl
	repl := v.curRepl
	if nxt != cur {
		repl = maps.Clone(v.curRepl)
		v.nextRepl = antientropy.ReplicatedAll(nxt, n)
		for id, s := range v.nextRepl {
			repl[id] = repl[id].Union(s)
		}
		v.gaining, v.losing = v.moving(ring.NodeID(self))
	}
	v.mine = repl[ring.NodeID(self)]
	for id, s := range repl {
		if id == ring.NodeID(self) {
			continue
		}
		if x := v.mine.Intersect(s); len(x) > 0 {
			v.shared[id] = x
		}
	}
	return v
}

// moving returns the leaves node id replicates only in the next ring
// (gaining) and only in the current one (losing).
func (v *view) moving(id ring.NodeID) (gaining, losing antientropy.RangeSet) {
	now, then := v.curRepl[id], v.nextRepl[id]
	return then.Intersect(now.Complement()), now.Intersect(then.Complement())
}

// transfer reports whether ranges are moving (the two rings differ).
func (v *view) transfer() bool { return v.next != v.ring }

// writeTargets is where a write of hash goes: the current preference list,
// then the next one's members not in it.
func (v *view) writeTargets(hash uint64, n int) []ring.NodeID {
	pref := v.ring.Preference(hash, n)
	if !v.transfer() {
		return pref
	}
	for _, id := range v.next.Preference(hash, n) {
		if !slices.Contains(pref, id) {
			pref = append(pref, id)
		}
	}
	return pref
}

// Open starts a node: storage, peer RPC, membership and (if configured) the
// HTTP API. Unreachable seeds do not make Open fail; they are retried in the
// background.
func Open(cfg *Config) (_ *Node, err error) {
	if cfg == nil {
		return nil, fmt.Errorf("%w: nil config", errConfig)
	}
	c := *cfg
	if err := c.validate(); err != nil {
		return nil, err
	}
	if err := c.checkSecure(); err != nil {
		return nil, err
	}
	n := &Node{cfg: c, log: c.Logger.With("node", c.Name), readSlots: make(chan struct{}, maxRemoteReads)}
	n.xfer.left = make(chan struct{})
	n.auth = newAuthenticator(c.Tokens)
	n.prom = newPromMetrics(n)
	n.ctx, n.cancel = context.WithCancel(context.Background())
	if off := c.ClockOffset; off != 0 {
		n.clock = crdt.NewClock(func() time.Time { return time.Now().Add(off) })
	} else {
		n.clock = crdt.NewClock(time.Now)
	}
	cleanup := []func(){n.cancel}
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				cleanup[i]()
			}
		}
	}()

	n.ae = newAntiEntropy(n)
	so := storage.Options{Dir: c.DataDir, NoSync: c.NoSync, Logger: n.log, OnChange: n.ae.onChange}
	if c.InMemory {
		so.FS = vfs.NewMem()
	}
	if c.fs != nil {
		so.FS = c.fs
	}
	so.MinFreeBytes = max(c.MinFreeDisk, 0)
	n.store, err = storage.Open(so)
	if err != nil {
		return nil, fmt.Errorf("node: open storage: %w", err)
	}
	cleanup = append(cleanup, func() { n.store.Close() })
	n.id = n.store.NodeID()
	if err := n.ae.load(); err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}

	if n.keyring, err = loadKeyring(&n.cfg, n.log); err != nil {
		return nil, err
	}

	var prev []memberEntry
	if b, ok, err := n.store.GetMeta(metaMembers); err != nil {
		return nil, fmt.Errorf("node: load membership: %w", err)
	} else if ok {
		if prev, err = decodeTable(b); err != nil {
			n.log.Warn("ignoring stored membership table", "err", err)
			prev = nil
		}
	}

	if c.TLS != nil {
		if n.tls, err = newTLSCreds(c.TLS); err != nil {
			return nil, fmt.Errorf("node: %w", err)
		}
	}

	// Peer RPC.
	if c.Network != nil {
		n.rpcLn, err = c.Network.Listen(c.RPCAddr)
	} else {
		n.rpcLn, err = net.Listen("tcp", c.RPCAddr)
	}
	if err != nil {
		return nil, fmt.Errorf("node: listen for peer RPC on %s: %w", c.RPCAddr, err)
	}
	cleanup = append(cleanup, func() { n.rpcLn.Close() })
	n.cfg.RPCAddr = n.rpcLn.Addr().String()
	dialer := rpc.Dialer(nil)
	if c.Network != nil {
		local := n.cfg.RPCAddr
		dialer = func(ctx context.Context, addr string) (net.Conn, error) {
			return c.Network.Dial(ctx, local, addr)
		}
	}
	co := rpc.ClientOptions{Dialer: dialer, Logger: n.log}
	srvo := rpc.ServerOptions{Logger: n.log}
	if n.tls != nil {
		co.TLS = n.tls.peerClientConfig
		srvo.TLS = n.tls.peerServerConfig()
	}
	n.rpc = rpc.NewClient(co)
	cleanup = append(cleanup, func() { n.rpc.Close() })
	n.rpcSrv = rpc.NewServer(rpc.HandlerFunc(n.serveRPCTimed), srvo)

	if c.HTTPAddr != "" {
		n.httpLn, err = net.Listen("tcp", c.HTTPAddr)
		if err != nil {
			return nil, fmt.Errorf("node: listen for HTTP on %s: %w", c.HTTPAddr, err)
		}
		cleanup = append(cleanup, func() { n.httpLn.Close() })
		n.httpAddr = n.httpLn.Addr().String()
		n.httpSrv = n.newHTTPServer() // limits.go
	}
	n.rpcAdv = advertised(c.AdvertiseRPCAddr, n.cfg.RPCAddr, c.AdvertiseAddr)
	n.httpAdv = httpAdvertised(advertised(c.AdvertiseHTTPAddr, n.httpAddr, c.AdvertiseAddr), n.tls != nil)

	n.mem, err = newMembership(n, prev)
	if err != nil {
		return nil, err
	}
	n.rebuildView()

	n.goroutine(func() {
		if err := n.rpcSrv.Serve(n.rpcLn); err != nil {
			n.log.Error("peer RPC server stopped", "err", err)
		}
	})
	if n.httpSrv != nil {
		n.goroutine(func() {
			serve := n.httpSrv.Serve
			if n.tls != nil {
				serve = func(ln net.Listener) error { return n.httpSrv.ServeTLS(ln, "", "") }
			}
			if err := serve(n.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				n.log.Error("HTTP server stopped", "err", err)
			}
		})
	}
	n.goroutine(n.membershipLoop)
	n.goroutine(n.rejoinLoop)
	n.goroutine(n.hintLoop)
	n.goroutine(n.ae.loop)
	n.goroutine(n.transferLoop)
	n.goroutine(n.reapLoop)
	n.log.Info("node started", "id", fmt.Sprintf("%016x", n.id), "gossip", c.AdvertiseAddr,
		"rpc", n.rpcAdv, "http", n.httpAdv, "gossip_bind", c.BindAddr, "rpc_listen", n.cfg.RPCAddr,
		"http_listen", n.httpAddr, "tls", n.tls != nil, "fresh", n.store.Fresh())
	if n.tls != nil {
		n.log.Info("TLS on: peer RPC mutual TLS 1.3, client API HTTPS", "ca", c.TLS.CAFile, "cert", c.TLS.CertFile,
			"expires", n.tls.expiry().Format(time.RFC3339), "verify_hostname", c.TLS.VerifyHostname)
	}
	n.logSecurityGaps()
	return n, nil
}

// goroutine runs fn in a goroutine owned by the node: Close waits for it.
func (n *Node) goroutine(fn func()) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		fn()
	}()
}

// Name is the node's member name.
func (n *Node) Name() string { return n.cfg.Name }

// ID is the node's identity, created with its data directory.
func (n *Node) ID() uint64 { return n.id }

// HTTPAddr is the client API address the node announces to the cluster
// (Config.AdvertiseHTTPAddr; "" if disabled): where clients reach it,
// "https://host:port" when the API is HTTPS.
func (n *Node) HTTPAddr() string { return n.httpAdv }

// HTTPListenAddr is the address the client API listens on ("" if
// disabled); it differs from HTTPAddr when listening on every interface.
func (n *Node) HTTPListenAddr() string { return n.httpAddr }

// GossipAddr is the advertised gossip address.
func (n *Node) GossipAddr() string { return n.cfg.AdvertiseAddr }

// RPCAddr is the peer-RPC address the node announces to the cluster.
func (n *Node) RPCAddr() string { return n.rpcAdv }

// RPCListenAddr is the address the peer-RPC server listens on.
func (n *Node) RPCListenAddr() string { return n.cfg.RPCAddr }

// Close stops the node: the client API, gossip (without announcing a leave:
// a stopped node keeps its ranges), peer RPC and storage. It waits for every
// goroutine the node started.
func (n *Node) Close() error {
	var err error
	n.closed.Do(func() {
		left := n.mem.selfRow().Status == StatusLeft
		if n.httpSrv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			if e := n.httpSrv.Shutdown(ctx); e != nil {
				n.httpSrv.Close()
			}
			cancel()
		}
		if left {
			// A node that left will not come back: what it still holds for
			// others (writes in its replication queues, hints) goes to
			// them first, while its loops still run.
			n.drain(5 * time.Second)
		}
		n.cancel()
		if left {
			// It tells the others before it goes, or they would take it
			// for dead and keep its ranges for it.
			n.mem.drainBroadcasts(3 * time.Second)
			if e := n.mem.ml.Leave(time.Second); e != nil {
				n.log.Debug("gossip leave", "err", e)
			}
		}
		if e := n.mem.ml.Shutdown(); e != nil {
			err = errors.Join(err, fmt.Errorf("node: stop gossip: %w", e))
		}
		n.rpcSrv.Close()
		n.rpc.Close()
		n.wg.Wait()
		n.persistMembers()
		if e := n.ae.save(); e != nil {
			err = errors.Join(err, fmt.Errorf("node: save anti-entropy index: %w", e))
		}
		if e := n.store.Close(); e != nil {
			err = errors.Join(err, fmt.Errorf("node: close storage: %w", e))
		}
		n.log.Info("node stopped")
	})
	return err
}

// outbound reports what this node still has to deliver to others: states
// queued or in flight to replicas, and hints.
func (n *Node) outbound() (replicating int64, hints int) {
	if targets, err := n.store.HintTargets(); err == nil {
		for _, c := range targets {
			hints += c
		}
	}
	return n.repl.pending.Load(), hints
}

// drain waits until nothing is left to deliver, or d passed.
func (n *Node) drain(d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if r, h := n.outbound(); r == 0 && h == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	r, h := n.outbound()
	n.log.Warn("stopping with undelivered states", "replicating", r, "hints", h)
}

func (n *Node) rebuildView() {
	cur, nxt, byID := buildRings(n.mem.rows(), n.cfg.VNodes)
	if old := n.view.Load(); old != nil && old.ring.Hash() == cur.Hash() && old.next.Hash() == nxt.Hash() && sameEntries(old.byID, byID) {
		return // nothing that matters changed
	}
	n.view.Store(newView(cur, nxt, byID, n.cfg.N, n.id))
}

func sameEntries(a, b map[uint64]memberEntry) bool {
	if len(a) != len(b) {
		return false
	}
	for id, e := range a {
		if b[id] != e {
			return false
		}
	}
	return true
}

func (n *Node) persistMembers() {
	b, err := encodeTable(n.mem.rows())
	if err == nil {
		err = n.store.PutMeta(metaMembers, b)
	}
	if err != nil {
		n.log.Warn("persist membership table", "err", err)
	}
}

// membershipLoop rebuilds the ring and persists the table when membership
// changes, and refreshes reachability from memberlist (outside its
// callbacks).
func (n *Node) membershipLoop() {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	lastRows := 0
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.mem.changed:
			n.kickReturning(n.mem.refreshReachable())
			n.rebuildView()
			n.persistMembers()
		case <-tick.C:
			n.kickReturning(n.mem.refreshReachable())
			if rows := len(n.mem.rows()); rows != lastRows {
				lastRows = rows
				n.rebuildView()
			}
		}
	}
}

// kickReturning starts anti-entropy at once with members that just became
// reachable (after a partition heals or a node restarts).
func (n *Node) kickReturning(names []string) {
	if len(names) == 0 {
		return
	}
	v := n.view.Load()
	for id, e := range v.byID {
		if id != n.id && slices.Contains(names, e.Name) {
			n.ae.trigger(id)
		}
	}
}

// rejoinLoop joins the seeds at start and then, every RejoinInterval with
// jitter, re-joins known members that memberlist does not see (Serf's
// reconnect loop), so a healed partition or a restarted seed re-forms one
// cluster without an operator.
func (n *Node) rejoinLoop() {
	delay := time.Duration(0)
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(delay):
		}
		targets := n.mem.rejoinTargets(n.cfg.Join)
		if len(targets) > 0 {
			if n.mem.join(targets) {
				n.mem.signal()
			}
		}
		iv := n.cfg.RejoinInterval
		delay = iv/2 + rand.N(iv)
	}
}

// ScanLocal calls fn with every key this node stores and its encoded state
// (crdt's canonical encoding: equal states have equal bytes), in key-hash
// order. For convergence checks and tools; the slices are valid only during
// the call.
func (n *Node) ScanLocal(fn func(key, state []byte) error) error {
	return n.store.Scan(0, 0, func(_ uint64, key, value []byte) error { return fn(key, stateOf(value)) })
}

// Replicas returns the names of key's N replicas, in preference order, as
// this node's ring places them.
func (n *Node) Replicas(key []byte) []string {
	v := n.view.Load()
	var out []string
	for _, id := range v.ring.Preference(ring.KeyHash(key), n.cfg.N) {
		out = append(out, v.byID[uint64(id)].Name)
	}
	return out
}
