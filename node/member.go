package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/rumorkv/rumor/ring"
)

// Member status in the cluster-membership CRDT. Ownership follows status,
// not reachability: an unreachable member keeps its ranges.
//
// A node that joins an existing cluster is joining: it receives the writes
// for the ranges it will own and pulls their data from the current owners;
// once it holds all of it, it declares itself a member and owns them. A
// member that leaves is leaving: it keeps its ranges until the nodes that
// take them over hold all their data, then declares itself left. A dead
// node is removed by any other node declaring it left.
const (
	StatusJoining = "joining"
	StatusMember  = "member"
	StatusLeaving = "leaving"
	StatusLeft    = "left"
)

// owner reports whether a member with status s owns ranges now (reads go
// to it); next whether it owns them once transfers finish (writes go to
// both).
func owner(s string) bool { return s == StatusMember || s == StatusLeaving }
func next(s string) bool  { return s == StatusMember || s == StatusJoining }

// Reachability as reported to clients.
const (
	StateAlive   = "alive"
	StateSuspect = "suspect"
	StateDead    = "dead"
	StateLeft    = "left"
)

// memberEntry is one row of the gossiped membership table. The table is a
// CRDT: rows are keyed by name, and the row with the higher Version wins
// (ties broken by ID, then status), so merging is commutative, associative and
// idempotent. A node bumps its own row's Version at every start (wall-clock
// nanoseconds, strictly above what it saw for itself before), so a restarted
// node's new addresses replace the old ones.
type memberEntry struct {
	Name    string `msgpack:"n"`
	ID      uint64 `msgpack:"i"`
	Gossip  string `msgpack:"g"`
	RPC     string `msgpack:"r"`
	HTTP    string `msgpack:"h"`
	Zone    string `msgpack:"z"`
	Status  string `msgpack:"s"`
	Version uint64 `msgpack:"v"`
}

func (e memberEntry) newer(o memberEntry) bool {
	if e.Version != o.Version {
		return e.Version > o.Version
	}
	if e.ID != o.ID {
		return e.ID > o.ID
	}
	return e.Status > o.Status
}

func (e memberEntry) validate() error {
	switch {
	case e.Name == "" || len(e.Name) > 256:
		return fmt.Errorf("member name length %d", len(e.Name))
	case e.ID == 0:
		return errors.New("member id 0")
	case e.Status != StatusJoining && e.Status != StatusMember && e.Status != StatusLeaving && e.Status != StatusLeft:
		return fmt.Errorf("member status %q", e.Status)
	case len(e.Gossip) > 256 || len(e.RPC) > 256 || len(e.HTTP) > 256 || len(e.Zone) > 256:
		return errors.New("member field too long")
	}
	return nil
}

const (
	metaVersion  = 1
	stateVersion = 1
	// maxMembers bounds a decoded membership table.
	maxMembers = 4096
)

// encodeMeta is the memberlist NodeMeta record: a format byte and this node's
// row (well under memberlist's 512-byte limit; fields are length-checked in
// validate).
func encodeMeta(e memberEntry) ([]byte, error) {
	b, err := msgpack.Marshal(&e)
	if err != nil {
		return nil, err
	}
	return append([]byte{metaVersion}, b...), nil
}

func decodeMeta(b []byte) (memberEntry, error) {
	var e memberEntry
	if len(b) < 2 || b[0] != metaVersion {
		return e, fmt.Errorf("node: meta record: unknown format")
	}
	if err := msgpack.Unmarshal(b[1:], &e); err != nil {
		return e, fmt.Errorf("node: meta record: %w", err)
	}
	if err := e.validate(); err != nil {
		return e, fmt.Errorf("node: meta record: %w", err)
	}
	return e, nil
}

func encodeTable(rows []memberEntry) ([]byte, error) {
	b, err := msgpack.Marshal(rows)
	if err != nil {
		return nil, err
	}
	return append([]byte{stateVersion}, b...), nil
}

func decodeTable(b []byte) ([]memberEntry, error) {
	if len(b) < 1 || b[0] != stateVersion {
		return nil, errors.New("node: membership state: unknown format")
	}
	d := msgpack.NewDecoder(bytes.NewReader(b[1:]))
	n, err := d.DecodeArrayLen()
	if err != nil {
		return nil, fmt.Errorf("node: membership state: %w", err)
	}
	if n < 0 || n > maxMembers {
		return nil, fmt.Errorf("node: membership state: %d rows", n)
	}
	rows := make([]memberEntry, 0, n)
	for i := 0; i < n; i++ {
		var e memberEntry
		if err := d.Decode(&e); err != nil {
			return nil, fmt.Errorf("node: membership state row %d: %w", i, err)
		}
		if err := e.validate(); err != nil {
			return nil, fmt.Errorf("node: membership state row %d: %w", i, err)
		}
		rows = append(rows, e)
	}
	return rows, nil
}

// membership owns memberlist, the membership table and the ring built from
// it.
type membership struct {
	n  *Node
	ml *memberlist.Memberlist
	// name and id of this node (fixed); its current row is mu.self.
	name string
	id   uint64
	// bcast queues membership rows for gossip (memberlist re-sends each a
	// few times; receivers forward rows that changed their table).
	bcast *memberlist.TransmitLimitedQueue

	// changed is signalled (non-blocking) when the table or reachability
	// changes; the membership loop rebuilds the ring and persists the table.
	changed chan struct{}

	mu struct {
		sync.Mutex
		table map[string]memberEntry
		// reachable is the set of member names memberlist reports alive or
		// suspect, refreshed by the loop (never inside a delegate callback,
		// which runs under memberlist's lock).
		reachable map[string]bool
		// suspect holds the reachable members memberlist currently
		// suspects (failed a probe, not yet declared dead).
		suspect map[string]bool
		// joined reports whether this node has ever joined a seed.
		joined bool
		// self is this node's own row (its status changes over its life).
		self memberEntry
	}
}

// size is the number of members that have not left (for gossip fan-out).
func (m *membership) size() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, e := range m.mu.table {
		if e.Status != StatusLeft {
			n++
		}
	}
	return max(n, 1)
}

// selfRow returns this node's current row.
func (m *membership) selfRow() memberEntry {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mu.self
}

var (
	_ memberlist.Delegate      = (*gossipDelegate)(nil)
	_ memberlist.EventDelegate = (*gossipDelegate)(nil)
)

// gossipDelegate adapts membership to memberlist's callbacks. Every method
// must return quickly: memberlist calls them from its own goroutines, the
// event methods under its node lock.
type gossipDelegate struct{ m *membership }

func (g *gossipDelegate) NodeMeta(limit int) []byte {
	b, err := encodeMeta(g.m.selfRow())
	if err != nil || len(b) > limit {
		g.m.n.log.Error("node meta does not fit", "bytes", len(b), "limit", limit, "err", err)
		return nil
	}
	return b
}

// NotifyMsg takes a gossiped membership row; a row that changes this
// node's table is forwarded (memberlist does not re-gossip user messages).
func (g *gossipDelegate) NotifyMsg(b []byte) {
	e, err := decodeMeta(b)
	if err != nil {
		g.m.n.log.Debug("ignoring bad membership message", "err", err)
		return
	}
	if g.m.merge(e) {
		g.m.broadcast(e)
	}
}

func (g *gossipDelegate) GetBroadcasts(overhead, limit int) [][]byte {
	return g.m.bcast.GetBroadcasts(overhead, limit)
}

func (g *gossipDelegate) LocalState(join bool) []byte {
	b, err := encodeTable(g.m.rows())
	if err != nil {
		g.m.n.log.Error("encode membership state", "err", err)
		return nil
	}
	return b
}

func (g *gossipDelegate) MergeRemoteState(buf []byte, join bool) {
	rows, err := decodeTable(buf)
	if err != nil {
		g.m.n.log.Warn("ignoring remote membership state", "err", err)
		return
	}
	g.m.merge(rows...)
}

func (g *gossipDelegate) NotifyJoin(n *memberlist.Node)   { g.notify(n) }
func (g *gossipDelegate) NotifyUpdate(n *memberlist.Node) { g.notify(n) }
func (g *gossipDelegate) NotifyLeave(n *memberlist.Node)  { g.m.signal() }

func (g *gossipDelegate) notify(n *memberlist.Node) {
	e, err := decodeMeta(n.Meta)
	if err != nil {
		g.m.n.log.Warn("ignoring member with bad metadata", "member", n.Name, "err", err)
		return
	}
	if e.Name != n.Name {
		g.m.n.log.Warn("ignoring member whose metadata names another", "member", n.Name, "meta", e.Name)
		return
	}
	e.Gossip = n.Address()
	g.m.merge(e)
}

// rowBroadcast is one membership row queued for gossip; a newer row for the
// same member replaces it in the queue.
type rowBroadcast struct {
	name string
	msg  []byte
}

func (b *rowBroadcast) Invalidates(o memberlist.Broadcast) bool {
	ob, ok := o.(*rowBroadcast)
	return ok && ob.name == b.name
}
func (b *rowBroadcast) Name() string    { return b.name }
func (b *rowBroadcast) Message() []byte { return b.msg }
func (b *rowBroadcast) Finished()       {}

var _ memberlist.NamedBroadcast = (*rowBroadcast)(nil)

// broadcast queues a row for gossip.
func (m *membership) broadcast(e memberEntry) {
	b, err := encodeMeta(e)
	if err != nil {
		return
	}
	m.bcast.QueueBroadcast(&rowBroadcast{name: e.Name, msg: b})
}

// drainBroadcasts waits until the queued membership rows went out (each is
// sent a few times), or d passed.
func (m *membership) drainBroadcasts(d time.Duration) {
	deadline := time.Now().Add(d)
	for m.bcast.NumQueued() > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
}

// setStatus changes this node's own status: its row gets a higher version,
// goes into its node metadata and is broadcast.
func (m *membership) setStatus(status string) {
	m.mu.Lock()
	e := m.mu.self
	e.Status = status
	e.Version = max(e.Version+1, uint64(time.Now().UnixNano()))
	m.mu.self = e
	m.mu.table[e.Name] = e
	m.mu.Unlock()
	m.n.log.Info("membership status", "status", status)
	if err := m.ml.UpdateNode(time.Second); err != nil {
		m.n.log.Debug("update node metadata", "err", err)
	}
	m.broadcast(e)
	m.signal()
}

// remove declares another member left (it is gone for good).
func (m *membership) remove(name string) (memberEntry, error) {
	m.mu.Lock()
	e, ok := m.mu.table[name]
	if !ok {
		m.mu.Unlock()
		return e, fmt.Errorf("%w: %q", ErrNoMember, name)
	}
	if name == m.name {
		m.mu.Unlock()
		return e, fmt.Errorf("node: a node cannot remove itself; use leave")
	}
	if m.mu.reachable[name] {
		m.mu.Unlock()
		return e, fmt.Errorf("%w: %s is reachable; run leave on it instead", ErrConflict, name)
	}
	e.Status = StatusLeft
	e.Version = max(e.Version+1, uint64(time.Now().UnixNano()))
	m.mu.table[name] = e
	m.mu.Unlock()
	m.broadcast(e)
	m.signal()
	return e, nil
}

func newMembership(n *Node, prev []memberEntry) (*membership, error) {
	cfg := n.cfg
	m := &membership{n: n, changed: make(chan struct{}, 1)}
	m.mu.table = make(map[string]memberEntry)
	m.mu.reachable = make(map[string]bool)
	version := uint64(time.Now().UnixNano())
	// Status at start: what this identity had before (a restart resumes a
	// join or a leave; a node that had left joins again); a new identity
	// joins when it has seeds, and bootstraps a cluster as a member when
	// it has none.
	status := StatusMember
	if len(cfg.Join) > 0 {
		status = StatusJoining
	}
	for _, e := range prev {
		if e.Name == cfg.Name && e.Version >= version {
			version = e.Version + 1
		}
		if e.Name == cfg.Name && e.ID == n.id {
			status = e.Status
			if status == StatusLeft {
				status = StatusJoining
			}
		}
	}
	self := memberEntry{
		Name:    cfg.Name,
		ID:      n.id,
		Gossip:  cfg.AdvertiseAddr,
		RPC:     n.rpcAdv,
		HTTP:    n.httpAdv,
		Zone:    cfg.Zone,
		Status:  status,
		Version: version,
	}
	if err := self.validate(); err != nil {
		return nil, fmt.Errorf("node: own membership entry: %w", err)
	}
	// memberlist panics on node metadata over 512 bytes.
	if b, err := encodeMeta(self); err != nil || len(b) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("%w: name, zone and addresses take %d bytes of node metadata, limit %d", errConfig, len(b), memberlist.MetaMaxSize)
	}
	m.name, m.id = cfg.Name, n.id
	m.mu.self = self
	m.bcast = &memberlist.TransmitLimitedQueue{
		NumNodes:       m.size,
		RetransmitMult: 3,
	}
	m.merge(prev...)
	m.merge(self)
	m.mu.reachable[cfg.Name] = true

	mc := *cfg.Memberlist
	mc.Name = cfg.Name
	host, port, err := splitHostPort(cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("node: gossip bind address: %w", err)
	}
	mc.BindAddr, mc.BindPort = host, port
	ahost, aport, err := splitHostPort(cfg.AdvertiseAddr)
	if err != nil {
		return nil, fmt.Errorf("node: gossip advertise address: %w", err)
	}
	mc.AdvertiseAddr, mc.AdvertisePort = ahost, aport
	g := &gossipDelegate{m: m}
	mc.Delegate = g
	mc.Events = g
	mc.LogOutput = nil
	mc.Logger = log.New(slogWriter{n}, "", 0)
	if cfg.Network != nil {
		t, err := cfg.Network.Transport(cfg.BindAddr)
		if err != nil {
			return nil, fmt.Errorf("node: gossip transport: %w", err)
		}
		mc.Transport = t
	}
	ml, err := memberlist.Create(&mc)
	if err != nil {
		return nil, fmt.Errorf("node: start gossip on %s: %w", cfg.BindAddr, err)
	}
	m.ml = ml
	return m, nil
}

// slogWriter forwards memberlist's log lines to the node's logger, each
// at the level of its "[DEBUG]", "[INFO]", "[WARN]" or "[ERR]" prefix, with
// component=memberlist. memberlist logs at most a few lines per membership
// event (a probe failing, a node suspected or marked dead), never per
// request. Join failures are logged at debug: the node reports seeds it
// cannot reach itself (membership.join).
type slogWriter struct{ n *Node }

func (w slogWriter) Write(p []byte) (int, error) {
	level, msg := memberlistLevel(string(bytes.TrimSpace(p)))
	w.n.log.Log(context.Background(), level, msg, "component", "memberlist")
	return len(p), nil
}

var _ io.Writer = slogWriter{}

// memberlistLevel splits one memberlist log line ("[WARN] memberlist:
// text") into a slog level and the text.
func memberlistLevel(line string) (slog.Level, string) {
	level := slog.LevelInfo
	if rest, ok := strings.CutPrefix(line, "["); ok {
		if tag, text, ok := strings.Cut(rest, "]"); ok {
			switch tag {
			case "DEBUG", "TRACE":
				level, line = slog.LevelDebug, text
			case "INFO":
				level, line = slog.LevelInfo, text
			case "WARN":
				level, line = slog.LevelWarn, text
			case "ERR", "ERROR":
				level, line = slog.LevelError, text
			}
		}
	}
	line = strings.TrimSpace(line)
	line = strings.TrimSpace(strings.TrimPrefix(line, "memberlist:"))
	// Join reports its own failures (join() logs them, rate-limited): the
	// "failed to resolve" warning would repeat at every retry.
	if strings.HasPrefix(line, "failed to resolve ") || strings.HasPrefix(line, "failed to join ") {
		level = slog.LevelDebug
	}
	// A probe racing this node's own shutdown is not an error.
	if strings.Contains(line, "use of closed network connection") {
		level = slog.LevelDebug
	}
	return level, line
}

func splitHostPort(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", addr)
	}
	return host, p, nil
}

func (m *membership) signal() {
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

// merge folds rows into the table; it signals the loop if anything changed
// and reports whether it did. A newer row for this node itself (another
// node declared it left while it was cut off) is answered by re-asserting
// this node's own row with a higher version: a live node decides its own
// status.
func (m *membership) merge(rows ...memberEntry) bool {
	changed, reassert := false, false
	m.mu.Lock()
	for _, e := range rows {
		if e.validate() != nil {
			continue
		}
		if e.Name == m.name {
			if e.ID == m.id && e.newer(m.mu.self) && e.Status != m.mu.self.Status {
				reassert = true
			} else if e.ID != m.id && e.newer(m.mu.self) {
				m.n.log.Error("another node uses this node's name", "name", e.Name, "id", fmt.Sprintf("%016x", e.ID))
			}
			e = m.mu.self
		}
		old, ok := m.mu.table[e.Name]
		if !ok || e.newer(old) {
			m.mu.table[e.Name] = e
			changed = true
		}
	}
	var self memberEntry
	if reassert {
		self = m.mu.self
		self.Version = max(self.Version+1, uint64(time.Now().UnixNano()))
		m.mu.self = self
		m.mu.table[self.Name] = self
		changed = true
	}
	m.mu.Unlock()
	if reassert {
		m.n.log.Warn("another node declared this node gone; re-asserting", "status", self.Status)
		m.broadcast(self)
	}
	if changed {
		m.signal()
	}
	return changed
}

func (m *membership) rows() []memberEntry {
	m.mu.Lock()
	defer m.mu.Unlock()
	rows := make([]memberEntry, 0, len(m.mu.table))
	for _, e := range m.mu.table {
		rows = append(rows, e)
	}
	slices.SortFunc(rows, func(a, b memberEntry) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return rows
}

// refreshReachable reads memberlist's live members and returns the names
// that were not reachable before. It must not run inside a memberlist
// callback.
func (m *membership) refreshReachable() []string {
	live := make(map[string]bool)
	suspect := make(map[string]bool)
	for _, n := range m.ml.Members() {
		live[n.Name] = true
		if n.State == memberlist.StateSuspect {
			suspect[n.Name] = true
		}
	}
	live[m.name] = true
	delete(suspect, m.name)
	m.mu.Lock()
	m.mu.suspect = suspect
	var back []string
	for name := range live {
		if !m.mu.reachable[name] {
			back = append(back, name)
		}
	}
	m.mu.reachable = live
	m.mu.Unlock()
	return back
}

func (m *membership) reachable(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mu.reachable[name]
}

// liveness is a member's reachability as the client API reports it:
// StateAlive, StateSuspect or StateDead (left members are the caller's).
func (m *membership) liveness(name string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case m.mu.suspect[name]:
		return StateSuspect
	case m.mu.reachable[name]:
		return StateAlive
	}
	return StateDead
}

// buildRings computes the current ring (members that own ranges now), the
// next ring (once transfers finish) and the id → entry index of every
// member that has not left.
func buildRings(rows []memberEntry, vnodes int) (cur, nxt *ring.Ring, byID map[uint64]memberEntry) {
	var now, then []ring.Member
	byID = make(map[uint64]memberEntry, len(rows))
	for _, e := range rows {
		if e.Status == StatusLeft {
			continue
		}
		byID[e.ID] = e
		m := ring.Member{ID: ring.NodeID(e.ID), Zone: e.Zone}
		if owner(e.Status) {
			now = append(now, m)
		}
		if next(e.Status) {
			then = append(then, m)
		}
	}
	cur = ring.New(now, vnodes)
	nxt = ring.New(then, vnodes)
	if nxt.Hash() == cur.Hash() {
		nxt = cur
	}
	return cur, nxt, byID
}

// hasJoined reports whether this node has joined a seed at least once.
func (m *membership) hasJoined() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mu.joined
}

// resolveTimeout bounds the name lookup of one seed.
const resolveTimeout = 2 * time.Second

// join tries the given gossip addresses (seeds or known members); a host
// name is resolved first and every address it has is tried. Failures are
// logged, not fatal: the rejoin loop tries again. While this node has
// never joined, a failure is a warning (at most once a minute); once it
// has, retrying dead members is routine and logged at debug.
func (m *membership) join(addrs []string) bool {
	if len(addrs) == 0 {
		return false
	}
	resolved, err := m.resolve(addrs)
	n := 0
	if len(resolved) > 0 {
		var jerr error
		n, jerr = m.ml.Join(resolved)
		if n == 0 {
			err = errors.Join(err, jerr)
		}
	}
	if n == 0 {
		if err == nil {
			return false // only this node's own address
		}
		if m.hasJoined() {
			m.n.log.Debug("join failed", "addrs", addrs, "err", err)
		} else if ok, attempts, _ := m.n.logLim.seeds.note(logRepeatEvery, 1); ok {
			m.n.log.Warn("cannot join the cluster yet: no seed or known member answered; retrying", "tried", addrs,
				"err", oneLineErr(err), "attempts_since_last_line", attempts, "retry_every", m.n.cfg.RejoinInterval)
		}
		return false
	}
	m.mu.Lock()
	first := !m.mu.joined
	m.mu.joined = true
	m.mu.Unlock()
	if first {
		m.n.log.Info("joined the cluster", "via", addrs, "nodes_contacted", n)
	}
	return true
}

// resolve turns addrs into IP:port addresses for memberlist's Join: an IP
// address is kept, a host name (a DNS seed, a Kubernetes headless
// service) is looked up with a deadline, so that Close never waits on a
// slow resolver. This node's own address is left out.
func (m *membership) resolve(addrs []string) ([]string, error) {
	var out []string
	var errs []error
	self := m.selfRow().Gossip
	add := func(a string) {
		if a != self && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			errs = append(errs, fmt.Errorf("seed %q: %w", a, err))
			continue
		}
		if net.ParseIP(host) != nil {
			add(a)
			continue
		}
		ctx, cancel := context.WithTimeout(m.n.ctx, resolveTimeout)
		ips, err := net.DefaultResolver.LookupHost(ctx, host)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("resolve seed %s: %w", a, err))
			continue
		}
		for _, ip := range ips {
			add(net.JoinHostPort(ip, port))
		}
	}
	return out, errors.Join(errs...)
}

// oneLineErr flattens a joined error (one line per cause) for a log line.
func oneLineErr(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}

// rejoinTargets returns the gossip addresses worth a Join: every known member
// that memberlist does not see (memberlist never re-merges two sides that
// declared each other dead; Serf's reconnect loop is the model), plus the
// seeds while this node has never joined or sees fewer members than it knows.
func (m *membership) rejoinTargets(seeds []string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	missing := 0
	for name, e := range m.mu.table {
		if name == m.name || e.Status == StatusLeft || m.mu.reachable[name] {
			continue
		}
		missing++
		if e.Gossip != "" {
			out = append(out, e.Gossip)
		}
	}
	if !m.mu.joined || missing > 0 {
		for _, s := range seeds {
			if s != m.mu.self.Gossip && !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	// A few per round: each dead address can cost a TCP timeout.
	if len(out) > 3 {
		out = out[:3]
	}
	return out
}
