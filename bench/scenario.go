package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rumorkv/rumor/cli/client"
	"github.com/rumorkv/rumor/crdt"
	"github.com/rumorkv/rumor/ring"
)

// The partition-heal scenario, over the nodes' HTTP API only, so it runs
// the same against in-process nodes and agent processes.

// phRun is one run of the scenario.
type phRun struct {
	cfg phConfig
	cl  phCluster
	out io.Writer
	res *phResult

	hc     *http.Client
	addrs  []string
	kv     []*client.Client // by node
	names  []string         // by node
	n      int              // replication factor, from /v1/ring
	ring   *ring.Ring
	byID   map[ring.NodeID]int
	sides  []*phSide
	bridge int // the bridge node, or -1

	// keys are the keys written (or deleted) during the partition;
	// replicas[k] their replicas, pre[k] and final[k] each replica's
	// state before the heal and at the end (nil: none).
	keys     []string
	replicas [][]int
	pre      [][][]byte
	final    [][][]byte
	deleted  map[int]bool // preloaded key numbers deleted during the partition
}

// phSide is one side of the partition and its writers' record.
type phSide struct {
	name  string
	group []int // the nodes of the side
	nodes []int // the nodes its writers talk to (the group, less a bridge)
	ops   []phOp
	next  atomic.Int64
	ok    atomic.Int64
	errs  atomic.Int64
	dels  atomic.Int64

	mu struct {
		sync.Mutex
		acked     []phAcked
		deletes   []int32
		errorKind map[string]*errorStat
	}
	start, end time.Time
	series     []rate
	errSeries  []rate
}

// phOp is one write of the partition: a put of keys[key], or a delete
// with context.
type phOp struct {
	key int32
	del bool
}

type phAcked struct {
	key   int32
	value string
}

func newPHRun(cfg phConfig, cl phCluster, out io.Writer, res *phResult) *phRun {
	r := &phRun{cfg: cfg, cl: cl, out: out, res: res, hc: cl.HTTPClient(), addrs: cl.HTTPAddrs(), bridge: -1}
	for _, a := range r.addrs {
		r.kv = append(r.kv, client.New(a, &client.Options{HTTPClient: r.hc}))
	}
	return r
}

// phPreloadKey names preloaded key number i.
func phPreloadKey(i int) string { return fmt.Sprintf("k%08d", i) }

// preloadValue is preloaded key i's value, a function of the seed so the
// bench need not keep a million values.
func (r *phRun) preloadValue(i int) []byte {
	rng := rand.New(rand.NewPCG(r.cfg.Seed, uint64(i)))
	return phRandomChars(rng, make([]byte, r.cfg.ValueSize))
}

// phRandomChars fills v with valueChars drawn from rng and returns it.
func phRandomChars(rng *rand.Rand, v []byte) []byte {
	var x uint64
	for i := range v {
		if i%10 == 0 {
			x = rng.Uint64()
		}
		v[i] = valueChars[x&63]
		x >>= 6
	}
	return v
}

func (r *phRun) say(format string, args ...any) {
	fmt.Fprintf(r.out, format+"\n", args...)
}

func (r *phRun) run(ctx context.Context) error {
	t0 := time.Now()
	if err := r.discover(ctx); err != nil {
		return err
	}
	r.makeSides()
	hints := "hints on"
	if !r.cfg.Hints {
		hints = "hints off"
	}
	fsync := "fsync on"
	if !r.cfg.Sync {
		fsync = "fsync off"
	}
	var groups []string
	for _, s := range r.sides {
		groups = append(groups, "{"+strings.Join(r.nodeNames(s.group), ",")+"}")
	}
	shape := strings.Join(groups, " | ")
	if r.bridge >= 0 {
		shape += ", bridge " + r.names[r.bridge]
	}
	r.say("partition-heal: %s, %d nodes (N=%d, %s, %s), %s %s, %d keys of %d bytes, %d written per side by %d writers, seed %d",
		r.cfg.Mode, len(r.addrs), r.n, fsync, hints, r.cfg.Shape, shape, r.cfg.Keys, r.cfg.ValueSize, r.cfg.Diverge, r.cfg.Writers, r.cfg.Seed)

	// 1. Preload, then wait until every replica agrees.
	start := time.Now()
	retries, err := r.preload(ctx)
	if err != nil {
		return err
	}
	ph := &r.res.Phases
	ph.PreloadSeconds = time.Since(start).Seconds()
	ph.PreloadPutsPerSec = float64(r.cfg.Keys) / ph.PreloadSeconds
	ph.PreloadRetries = retries
	start = time.Now()
	if _, err := r.waitInSync(ctx, r.cfg.timeout, "preload sync"); err != nil {
		return err
	}
	ph.PreloadSyncSec = time.Since(start).Seconds()
	r.say("preload: %d keys in %.1f s (%.0f puts/s, w=%s, %d retries); replicas in sync %.1f s later",
		r.cfg.Keys, ph.PreloadSeconds, ph.PreloadPutsPerSec, r.cfg.PreloadW, retries, ph.PreloadSyncSec)
	if err := r.plan(); err != nil {
		return err
	}

	// 2. Cut, and wait until each side sees only itself.
	cutGroups := make([][]int, len(r.sides))
	for i, s := range r.sides {
		cutGroups[i] = s.group
		r.res.Cut.Groups = append(r.res.Cut.Groups, r.nodeNames(s.group))
	}
	if r.bridge >= 0 {
		r.res.Cut.Bridge = r.names[r.bridge]
	}
	cutAt := time.Now()
	if err := r.cl.Partition(r.cfg.Silent, cutGroups...); err != nil {
		return err
	}
	if err := r.waitSplit(ctx); err != nil {
		return err
	}
	ph.SplitSeconds = time.Since(cutAt).Seconds()

	// 3. Write on both sides.
	start = time.Now()
	if err := r.write(ctx, cutAt); err != nil {
		return err
	}
	ph.WriteSeconds = time.Since(start).Seconds()
	r.res.OpsDuringPartition = map[string]*phSideOps{}
	for _, s := range r.sides {
		so := &phSideOps{Nodes: r.nodeNames(s.nodes), OK: s.ok.Load(), Errors: s.errs.Load(), Deletes: s.dels.Load(),
			Seconds: s.end.Sub(s.start).Seconds(), ErrorKind: s.mu.errorKind, Series: s.series}
		if so.Errors > 0 {
			so.ErrorSeries = s.errSeries
		}
		if so.Seconds > 0 {
			so.OpsPerSec = float64(so.OK) / so.Seconds
		}
		r.res.OpsDuringPartition[s.name] = so
		r.say("side %s (%s): %d writes acknowledged, %d failed, %.0f ops/s over %.1f s",
			s.name, strings.Join(so.Nodes, ","), so.OK, so.Errors, so.OpsPerSec, so.Seconds)
	}

	// 4. Quiesce, then snapshot every written key on each of its replicas.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(r.cfg.quiesce):
	}
	start = time.Now()
	if r.pre, err = r.fetchStates(ctx, r.keys, r.replicas, "snapshot"); err != nil {
		return err
	}
	ph.SnapshotSeconds = time.Since(start).Seconds()

	// 5. Heal and poll.
	if err := r.heal(ctx, cutAt); err != nil {
		return err
	}

	// 6. Check.
	start = time.Now()
	if err := r.check(ctx); err != nil {
		return err
	}
	ph.CheckSeconds = time.Since(start).Seconds()
	ph.TotalSeconds = time.Since(t0).Seconds()
	return nil
}

func (r *phRun) nodeNames(idx []int) []string {
	out := make([]string, len(idx))
	for i, j := range idx {
		out[i] = r.names[j]
	}
	return out
}

// phStatus is what the bench reads of /v1/status.
type phStatus struct {
	Name    string `json:"name"`
	ID      string `json:"id"`
	Metrics struct {
		HintsPending   map[string]int `json:"hints_pending"`
		HintsDelivered uint64         `json:"hints_delivered"`
		HintBytes      uint64         `json:"hint_bytes"`
	} `json:"metrics"`
	AE struct {
		Keys          int64  `json:"keys"`
		Sessions      uint64 `json:"sessions"`
		KeysPulled    uint64 `json:"keys_pulled"`
		KeysRepaired  uint64 `json:"keys_repaired"`
		BytesSent     uint64 `json:"bytes_sent"`
		BytesReceived uint64 `json:"bytes_received"`
		Peers         map[string]struct {
			SharedHash string `json:"shared_hash"`
			SharedKeys uint64 `json:"shared_keys"`
		} `json:"peers"`
	} `json:"antientropy"`
	Process struct {
		CPUSeconds float64 `json:"cpu_seconds"`
	} `json:"process"`
}

// statuses fetches every node's status, concurrently.
func (r *phRun) statuses(ctx context.Context) ([]*phStatus, error) {
	out := make([]*phStatus, len(r.kv))
	errs := make([]error, len(r.kv))
	var wg sync.WaitGroup
	for i, kv := range r.kv {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			st := &phStatus{}
			if errs[i] = kv.GetJSON(ctx, "/v1/status", st); errs[i] == nil {
				out[i] = st
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: status: %v", errPartitionHeal, err)
	}
	return out, nil
}

// alive returns, per node, the names of the members it sees alive.
func (r *phRun) alive(ctx context.Context) ([]map[string]bool, error) {
	out := make([]map[string]bool, len(r.kv))
	errs := make([]error, len(r.kv))
	var wg sync.WaitGroup
	for i, kv := range r.kv {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			var ms []struct {
				Name  string `json:"name"`
				State string `json:"state"`
			}
			if errs[i] = kv.GetJSON(ctx, "/v1/members", &ms); errs[i] != nil {
				return
			}
			out[i] = map[string]bool{}
			for _, m := range ms {
				if m.State == "alive" {
					out[i][m.Name] = true
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: members: %v", errPartitionHeal, err)
	}
	return out, nil
}

// sees reports whether every node sees exactly want[i] alive.
func (r *phRun) sees(views []map[string]bool, want [][]int) bool {
	for i, v := range views {
		if len(v) != len(want[i]) {
			return false
		}
		for _, j := range want[i] {
			if !v[r.names[j]] {
				return false
			}
		}
	}
	return true
}

// phInSync reports whether every replica holds identical data: no node has
// a hint pending (a write acknowledged through a hint lives only there
// until handed off) and every pair of nodes reports the same hash of the
// ranges it shares. why says what is not yet in sync.
func phInSync(sts []*phStatus) (ok bool, why string) {
	for _, s := range sts {
		for target, c := range s.Metrics.HintsPending {
			if c > 0 {
				return false, fmt.Sprintf("%s holds %d hints for %s", s.Name, c, target)
			}
		}
	}
	return phHashesAgree(sts)
}

// phHintsPending returns the hints pending on all nodes together.
func phHintsPending(sts []*phStatus) int {
	n := 0
	for _, s := range sts {
		for _, c := range s.Metrics.HintsPending {
			n += c
		}
	}
	return n
}

// phHashesAgree reports whether every pair of nodes reports the same hash
// of the ranges it shares: the replicas agree on everything they store
// (though hints may still hold writes no replica has).
func phHashesAgree(sts []*phStatus) (ok bool, why string) {
	for i, a := range sts {
		for _, b := range sts[i+1:] {
			pa, oka := a.AE.Peers[b.Name]
			pb, okb := b.AE.Peers[a.Name]
			switch {
			case oka != okb:
				return false, fmt.Sprintf("%s and %s disagree on whether they share ranges", a.Name, b.Name)
			case oka && pa.SharedHash != pb.SharedHash:
				return false, fmt.Sprintf("%s and %s differ on the ranges they share", a.Name, b.Name)
			}
		}
	}
	return true, ""
}

// discover learns the nodes' names and the ring, to place keys on their
// replicas exactly as the nodes do.
func (r *phRun) discover(ctx context.Context) error {
	sts, err := r.statuses(ctx)
	if err != nil {
		return err
	}
	byName := map[string]int{}
	for i, s := range sts {
		r.names = append(r.names, s.Name)
		byName[s.Name] = i
	}
	// Nodes that joined go through "joining" while ranges move to them:
	// wait until every node's ring is settled with every node a member.
	var ri phRing
	start := time.Now()
	for {
		settled, why := true, ""
		for i, kv := range r.kv {
			var x phRing
			if err := kv.GetJSON(ctx, "/v1/ring", &x); err != nil {
				return fmt.Errorf("%w: ring: %v", errPartitionHeal, err)
			}
			if i == 0 {
				ri = x
			}
			if ok, w := x.settled(len(r.kv)); !ok && settled {
				settled, why = false, r.names[i]+": "+w
			}
		}
		if settled {
			break
		}
		if time.Since(start) > r.cfg.timeout {
			return fmt.Errorf("%w: the ring did not settle within %v: %s", errPartitionHeal, r.cfg.timeout, why)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	r.n = ri.N
	r.byID = map[ring.NodeID]int{}
	var members []ring.Member
	for _, m := range ri.Members {
		id, err := strconv.ParseUint(m.ID, 16, 64)
		i, ok := byName[m.Name]
		if err != nil || !ok {
			return fmt.Errorf("%w: ring member %q (id %q) is not a node of the cluster", errPartitionHeal, m.Name, m.ID)
		}
		r.byID[ring.NodeID(id)] = i
		members = append(members, ring.Member{ID: ring.NodeID(id), Zone: m.Zone})
	}
	r.ring = ring.New(members, ri.VNodes)
	return nil
}

// phRing is what the bench reads of /v1/ring.
type phRing struct {
	N       int  `json:"n"`
	VNodes  int  `json:"vnodes"`
	Moving  bool `json:"moving"`
	Members []struct {
		Name   string `json:"name"`
		ID     string `json:"id"`
		Zone   string `json:"zone"`
		Status string `json:"status"`
	} `json:"members"`
}

// settled reports whether the ring has nodes members, none joining or
// leaving.
func (x *phRing) settled(nodes int) (bool, string) {
	if x.Moving {
		return false, "ranges are moving"
	}
	if len(x.Members) != nodes {
		return false, fmt.Sprintf("the ring has %d members, the cluster %d nodes", len(x.Members), nodes)
	}
	for _, m := range x.Members {
		if m.Status != "" && m.Status != "member" {
			return false, fmt.Sprintf("%s is %s", m.Name, m.Status)
		}
	}
	return true, ""
}

// replicasOf returns the node indices of key's replicas.
func (r *phRun) replicasOf(key string) []int {
	var out []int
	for _, id := range r.ring.Preference(ring.KeyHash([]byte(key)), r.n) {
		out = append(out, r.byID[id])
	}
	return out
}

// makeSides splits the nodes by the shape.
func (r *phRun) makeSides() {
	n := len(r.addrs)
	span := func(lo, hi int) []int {
		var out []int
		for i := lo; i < hi; i++ {
			out = append(out, i)
		}
		return out
	}
	var a, b []int
	switch r.cfg.Shape {
	case shapeIsolate:
		a, b = []int{0}, span(1, n)
	case shapeBridge:
		m := (n - 1) / 2
		a, b, r.bridge = span(0, m), span(m+1, n), m
	default:
		h := (n + 1) / 2
		a, b = span(0, h), span(h, n)
	}
	r.sides = []*phSide{{name: "A", group: a, nodes: a}, {name: "B", group: b, nodes: b}}
	for _, s := range r.sides {
		s.mu.errorKind = map[string]*errorStat{}
	}
}

// forEach calls fn(ctx, i) for every i in [0, n) from conc goroutines,
// showing a progress bar labelled desc on a terminal. It stops at the
// first error or when ctx ends.
func (r *phRun) forEach(ctx context.Context, n, conc int, desc string, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	bar := newProgress(r.out, int64(n), desc)
	defer bar.done()
	var next, done atomic.Int64
	var wg sync.WaitGroup
	for range min(conc, n) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				if err := fn(ctx, int(i)); err != nil {
					cancel(err)
					return
				}
				done.Add(1)
			}
		})
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-finished:
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			return nil
		case <-tick.C:
			bar.set(done.Load())
		}
	}
}

// preload writes every preloaded key, spread over the nodes, retrying a
// failed write on the next node. It returns the number of retries.
func (r *phRun) preload(ctx context.Context) (int64, error) {
	var retries atomic.Int64
	wo := &client.WriteOptions{W: r.cfg.PreloadW}
	err := r.forEach(ctx, r.cfg.Keys, r.cfg.Concurrency, "preload", func(ctx context.Context, i int) error {
		key, value := phPreloadKey(i), r.preloadValue(i)
		for attempt := 0; ; attempt++ {
			node := (i + attempt) % len(r.kv)
			wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			_, err := r.kv[node].Put(wctx, key, value, wo)
			cancel()
			if err == nil {
				return nil
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if attempt == 4 {
				return fmt.Errorf("%w: preload %s: %v", errPartitionHeal, key, err)
			}
			retries.Add(1)
			time.Sleep(time.Duration(attempt+1) * 100 * time.Millisecond)
		}
	})
	return retries.Load(), err
}

// waitInSync polls until every replica agrees (phInSync), for at most
// timeout, and returns how long that took.
func (r *phRun) waitInSync(ctx context.Context, timeout time.Duration, what string) (time.Duration, error) {
	start := time.Now()
	why := ""
	for {
		sts, err := r.statuses(ctx)
		if err == nil {
			var ok bool
			if ok, why = phInSync(sts); ok {
				return time.Since(start), nil
			}
		} else {
			why = err.Error()
		}
		if time.Since(start) > timeout {
			return 0, fmt.Errorf("%w: %s: replicas not in sync after %v: %s", errPartitionHeal, what, timeout, why)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// plan chooses the keys each side writes: half overwrites of preloaded
// keys (the first --overlap of them the same on both sides), half new
// keys, and on side A --deletes deletes of preloaded keys nobody else
// writes and that have a replica on side A (so side A can read their
// context).
func (r *phRun) plan() error {
	rng := rand.New(rand.NewPCG(r.cfg.Seed, 0x7061727469))
	half := r.cfg.Diverge / 2
	common := int(math.Round(float64(half) * r.cfg.Overlap))
	perm := rng.Perm(r.cfg.Keys)
	pos := 0
	take := func(n int) []int { s := perm[pos : pos+n]; pos += n; return s }
	addKey := func(name string) int32 {
		r.keys = append(r.keys, name)
		r.replicas = append(r.replicas, r.replicasOf(name))
		return int32(len(r.keys) - 1)
	}
	shared := map[int]int32{}
	for _, i := range take(common) {
		shared[i] = addKey(phPreloadKey(i))
	}
	for _, s := range r.sides {
		for _, i := range perm[:common] {
			s.ops = append(s.ops, phOp{key: shared[i]})
		}
		for _, i := range take(half - common) {
			s.ops = append(s.ops, phOp{key: addKey(phPreloadKey(i))})
		}
		for j := range r.cfg.Diverge - half {
			s.ops = append(s.ops, phOp{key: addKey(fmt.Sprintf("new-%s-%07d", s.name, j))})
		}
	}
	r.deleted = map[int]bool{}
	a := r.sides[0]
	for ; len(r.deleted) < r.cfg.Deletes && pos < len(perm); pos++ {
		i := perm[pos]
		reps := r.replicasOf(phPreloadKey(i))
		if slices.ContainsFunc(reps, func(j int) bool { return slices.Contains(a.nodes, j) }) {
			r.deleted[i] = true
			a.ops = append(a.ops, phOp{key: addKey(phPreloadKey(i)), del: true})
		}
	}
	if len(r.deleted) < r.cfg.Deletes {
		return fmt.Errorf("%w: found only %d keys to delete with a replica on side A; use fewer --deletes or more --keys",
			errPartitionHeal, len(r.deleted))
	}
	for _, s := range r.sides {
		rng.Shuffle(len(s.ops), func(i, j int) { s.ops[i], s.ops[j] = s.ops[j], s.ops[i] })
	}
	return nil
}

// waitSplit waits until each side's nodes see exactly their side alive
// (the bridge node: everyone), or --settle when set.
func (r *phRun) waitSplit(ctx context.Context) error {
	if r.cfg.settle > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(r.cfg.settle):
		}
		r.say("cut: waited %v", r.cfg.settle)
		return nil
	}
	want := make([][]int, len(r.addrs))
	for _, s := range r.sides {
		for _, i := range s.group {
			want[i] = s.group
		}
	}
	start := time.Now()
	for {
		views, err := r.alive(ctx)
		if err == nil && r.sees(views, want) {
			r.say("cut: each side saw only itself after %.1f s", time.Since(start).Seconds())
			return nil
		}
		if time.Since(start) > r.cfg.timeout {
			return fmt.Errorf("%w: the sides did not see the split within %v (views %v, err %v)", errPartitionHeal, r.cfg.timeout, views, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// write runs every side's writers until each side has done its
// operations, sampling per-side throughput every 100 ms (t in seconds
// since cutAt).
func (r *phRun) write(ctx context.Context, cutAt time.Time) error {
	total := 0
	for _, s := range r.sides {
		total += len(s.ops)
	}
	bar := newProgress(r.out, int64(total), "partition writes")
	defer bar.done()
	var wg sync.WaitGroup
	for _, s := range r.sides {
		s.start = time.Now()
		var sw sync.WaitGroup
		for w := range r.cfg.Writers {
			sw.Go(func() { r.writer(ctx, s, w) })
		}
		wg.Go(func() { sw.Wait(); s.end = time.Now() })
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	last := make([][2]int64, len(r.sides))
	lastT := time.Now()
	sample := func(now time.Time) {
		dt := now.Sub(lastT).Seconds()
		if dt <= 0 {
			return
		}
		done := int64(0)
		for i, s := range r.sides {
			ok, errs := s.ok.Load(), s.errs.Load()
			t := now.Sub(cutAt).Seconds()
			s.series = append(s.series, rate{At: t, OpsPerSec: float64(ok-last[i][0]) / dt})
			s.errSeries = append(s.errSeries, rate{At: t, OpsPerSec: float64(errs-last[i][1]) / dt})
			last[i] = [2]int64{ok, errs}
			done += ok + errs
		}
		lastT = now
		bar.set(done)
	}
	for {
		select {
		case <-finished:
			sample(time.Now())
			return ctx.Err()
		case now := <-tick.C:
			sample(now)
		}
	}
}

// writer is one of side s's writers: it takes the side's next operation
// until none is left, talking to the side's nodes in turn. Every value is
// unique (side, writer, sequence number).
func (r *phRun) writer(ctx context.Context, s *phSide, w int) {
	rng := rand.New(rand.NewPCG(r.cfg.Seed, uint64(s.name[0])<<32|uint64(w)))
	var acked []phAcked
	var deletes []int32
	defer func() {
		s.mu.Lock()
		s.mu.acked = append(s.mu.acked, acked...)
		s.mu.deletes = append(s.mu.deletes, deletes...)
		s.mu.Unlock()
	}()
	for seq := 0; ctx.Err() == nil; seq++ {
		i := s.next.Add(1) - 1
		if i >= int64(len(s.ops)) {
			return
		}
		op := s.ops[i]
		kv := r.kv[s.nodes[(w+seq)%len(s.nodes)]]
		key := r.keys[op.key]
		octx, cancel := context.WithTimeout(ctx, 15*time.Second)
		var err error
		if op.del {
			var v *client.Value
			if v, err = kv.Get(octx, key, nil); err == nil {
				_, err = kv.Delete(octx, key, &client.WriteOptions{Context: v.Context})
			}
			if err == nil {
				deletes = append(deletes, op.key)
				s.dels.Add(1)
			}
		} else {
			prefix := fmt.Sprintf("%s%d-%d-", s.name, w, seq)
			value := []byte(prefix)
			if n := r.cfg.ValueSize - len(prefix); n > 0 {
				value = append(value, phRandomChars(rng, make([]byte, n))...)
			}
			if _, err = kv.Put(octx, key, value, nil); err == nil {
				acked = append(acked, phAcked{key: op.key, value: string(value)})
			}
		}
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			s.errs.Add(1)
			kind := errKind(err)
			s.mu.Lock()
			if e, ok := s.mu.errorKind[kind]; ok {
				e.Count++
			} else {
				s.mu.errorKind[kind] = &errorStat{Count: 1, Example: err.Error()}
			}
			s.mu.Unlock()
			continue
		}
		s.ok.Add(1)
	}
}

// fetchStates returns, for every key, each of its replicas' own state
// (GET /v1/state; nil where the replica has none).
func (r *phRun) fetchStates(ctx context.Context, keys []string, replicas [][]int, desc string) ([][][]byte, error) {
	type job struct{ k, j int }
	var jobs []job
	out := make([][][]byte, len(keys))
	for k := range keys {
		out[k] = make([][]byte, len(replicas[k]))
		for j := range replicas[k] {
			jobs = append(jobs, job{k, j})
		}
	}
	err := r.forEach(ctx, len(jobs), r.cfg.Concurrency, desc, func(ctx context.Context, i int) error {
		jb := jobs[i]
		st, err := r.state(ctx, replicas[jb.k][jb.j], keys[jb.k])
		out[jb.k][jb.j] = st
		return err
	})
	return out, err
}

// state fetches node i's own copy of key (nil if it has none), retrying
// transport errors.
func (r *phRun) state(ctx context.Context, i int, key string) ([]byte, error) {
	u := "http://" + r.addrs[i] + "/v1/state/" + url.PathEscape(key)
	var last error
	for attempt := range 5 {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
			}
		}
		b, retry, err := r.getState(ctx, u)
		if err == nil || !retry {
			if err != nil {
				err = fmt.Errorf("%w: state of %q on %s: %v", errPartitionHeal, key, r.names[i], err)
			}
			return b, err
		}
		last = err
	}
	return nil, fmt.Errorf("%w: state of %q on %s: %v", errPartitionHeal, key, r.names[i], last)
}

func (r *phRun) getState(ctx context.Context, u string) (_ []byte, retry bool, _ error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, false, err
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return nil, ctx.Err() == nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	switch {
	case err != nil:
		return nil, true, err
	case resp.StatusCode == http.StatusNotFound:
		return nil, false, nil
	case resp.StatusCode != http.StatusOK:
		return nil, resp.StatusCode >= 500, fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(b))
	}
	return b, false, nil
}

// phTotals are cluster-wide sums of the counters the heal is measured by.
type phTotals struct {
	aeBytes, pulled, repaired, sessions uint64
	hintsDelivered, hintBytes           uint64
	cpu                                 float64
}

func phSum(sts []*phStatus) phTotals {
	var t phTotals
	for _, s := range sts {
		t.aeBytes += s.AE.BytesSent + s.AE.BytesReceived
		t.pulled += s.AE.KeysPulled
		t.repaired += s.AE.KeysRepaired
		t.sessions += s.AE.Sessions
		t.hintsDelivered += s.Metrics.HintsDelivered
		t.hintBytes += s.Metrics.HintBytes
		t.cpu += s.Process.CPUSeconds
	}
	return t
}

// healPollInterval is how often the heal is polled by default.
const healPollInterval = 50 * time.Millisecond

// heal removes the cut and polls every --poll until one membership and
// convergence (or the timeout), recording the counters' deltas.
func (r *phRun) heal(ctx context.Context, cutAt time.Time) error {
	sts0, err := r.statuses(ctx)
	if err != nil {
		return err
	}
	t0 := phSum(sts0)
	r.res.HintsAtHeal = phHintsPending(sts0)
	var prof *cpuProfile
	if r.cfg.profile != "" {
		if prof, err = startCPUProfile(); err != nil {
			return err
		}
	}
	defer func() {
		if prof != nil {
			prof.stop()
		}
	}()
	user0, sys0 := processTimes()
	mach0, machOK := machineUserCPU()
	var healAt time.Time
	cpu := func(last phTotals) phCPU {
		user1, sys1 := processTimes()
		mach1, _ := machineUserCPU()
		c := phCPU{HealSeconds: (user1 - user0 + sys1 - sys0).Seconds(), Source: "bench process (nodes and bench)"}
		ours := (user1 - user0).Seconds()
		if r.cfg.Mode != "inproc" {
			c = phCPU{HealSeconds: last.cpu - t0.cpu, Source: "agents' process.cpu_seconds"}
			ours += c.HealSeconds // user and system: the other processes' share is a lower bound
		}
		if el := time.Since(healAt).Seconds(); machOK && el > 0 {
			other := max(0, (mach1-mach0).Seconds()-ours) / el
			c.OtherUserCores = &other
		}
		return c
	}
	healAt = time.Now()
	if err := r.cl.Heal(); err != nil {
		return err
	}
	r.res.Cut.HealAt = healAt.Sub(cutAt).Seconds()
	bar := newProgress(r.out, r.cfg.timeout.Milliseconds(), "converging (ms)")
	var memAt, convAt *float64
	var last phTotals
	why := "no status yet"
	all := make([][]int, len(r.addrs))
	for i := range all {
		all[i] = make([]int, len(r.addrs))
		for j := range all[i] {
			all[i][j] = j
		}
	}
	for next := healAt; ; {
		if memAt == nil {
			if views, err := r.alive(ctx); err == nil && r.sees(views, all) {
				t := time.Since(healAt).Seconds()
				memAt = &t
			}
		}
		if convAt == nil {
			sts, err := r.statuses(ctx)
			if err != nil {
				why = err.Error()
			} else {
				t := time.Since(healAt).Seconds()
				last = phSum(sts)
				pending := phHintsPending(sts)
				r.res.Series = append(r.res.Series, phDivPoint{T: t,
					Repaired: last.pulled - t0.pulled + last.hintsDelivered - t0.hintsDelivered,
					AEBytes:  last.aeBytes - t0.aeBytes, HintsPending: pending})
				if agree, _ := phHashesAgree(sts); agree && r.res.HealToHashesAgree == nil {
					r.res.HealToHashesAgree = &t
				}
				if pending == 0 && r.res.HealToHintsDrained == nil {
					r.res.HealToHintsDrained = &t
				}
				var ok bool
				if ok, why = phInSync(sts); ok {
					convAt = &t
					r.res.CPU = cpu(last)
					if prof != nil {
						data := prof.stop()
						prof = nil
						r.res.CPU.Profile = r.cfg.profile
						if err := writeFile(r.cfg.profile, data); err != nil {
							return err
						}
					}
				}
			}
		}
		elapsed := time.Since(healAt)
		bar.set(min(elapsed.Milliseconds(), r.cfg.timeout.Milliseconds()))
		if (memAt != nil && convAt != nil) || elapsed > r.cfg.timeout || ctx.Err() != nil {
			break
		}
		next = next.Add(r.cfg.poll)
		if d := time.Until(next); d > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
		} else {
			next = time.Now()
		}
	}
	bar.done()
	if err := ctx.Err(); err != nil {
		return err
	}
	r.res.HealToMembership, r.res.HealToConverged = memAt, convAt
	r.res.Converged = convAt != nil
	if convAt == nil {
		r.say("heal: NOT converged within %v: %s", r.cfg.timeout, why)
		r.res.CPU = cpu(last) // up to the timeout
	}
	r.res.AEBytes = last.aeBytes - t0.aeBytes
	r.res.KeysTransferred = last.pulled - t0.pulled
	r.res.KeysRepaired = last.repaired - t0.repaired
	r.res.AESessions = last.sessions - t0.sessions
	r.res.HintsDelivered = last.hintsDelivered - t0.hintsDelivered
	r.res.HintBytes = last.hintBytes - t0.hintBytes
	r.res.RepairBytes = r.res.AEBytes + r.res.HintBytes
	r.say("heal: one membership after %s, every replica identical after %s", phSecs(memAt), phSecs(convAt))
	return nil
}

// phJoinStates decodes and joins replica states (nil: none).
func phJoinStates(states [][]byte) (crdt.Register, error) {
	var reg crdt.Register
	for _, b := range states {
		if b == nil {
			continue
		}
		x, err := crdt.DecodeRegister(b, crdt.Limits{})
		if err != nil {
			return reg, fmt.Errorf("%w: decode state: %v", errPartitionHeal, err)
		}
		reg = reg.Join(x)
	}
	return reg, nil
}

// phAllEqual reports whether every replica holds the same state (or every
// one none).
func phAllEqual(states [][]byte) bool {
	if len(states) == 0 {
		return true
	}
	for _, b := range states[1:] {
		if !bytes.Equal(b, states[0]) || (b == nil) != (states[0] == nil) {
			return false
		}
	}
	return true
}

// check fetches every written key's final state on its replicas and a
// sample of the preloaded keys, and counts what differed, what is lost
// and the siblings.
func (r *phRun) check(ctx context.Context) error {
	var err error
	if r.final, err = r.fetchStates(ctx, r.keys, r.replicas, "final states"); err != nil {
		return err
	}
	res := r.res
	live := make([]map[string]bool, len(r.keys))
	for k, key := range r.keys {
		if !phAllEqual(r.final[k]) {
			res.ReplicaMismatches++
		}
		for j, st := range r.final[k] {
			if !bytes.Equal(st, r.pre[k][j]) || (st == nil) != (r.pre[k][j] == nil) {
				res.KeysDiffering++
				res.DivergedBytes += int64(len(key) + len(st))
			}
		}
		reg, err := phJoinStates(r.final[k])
		if err != nil {
			return fmt.Errorf("%w (key %q)", err, key)
		}
		live[k] = map[string]bool{}
		for _, v := range reg.Live() {
			live[k][string(v.Value)] = true
		}
		if len(live[k]) > 1 {
			res.SiblingsCreated++
		}
	}
	lost := &res.Lost
	example := func(it phLostItem) {
		if len(lost.Examples) < 20 {
			lost.Examples = append(lost.Examples, it)
		}
	}
	for _, s := range r.sides {
		for _, a := range s.mu.acked {
			lost.WritesChecked++
			if !live[a.key][a.value] {
				lost.WritesLost++
				example(phLostItem{Key: r.keys[a.key], What: "write", Value: a.value, Values: len(live[a.key])})
			}
		}
		for _, k := range s.mu.deletes {
			lost.DeletesChecked++
			if len(live[k]) > 0 {
				lost.DeletesLost++
				example(phLostItem{Key: r.keys[k], What: "delete", Values: len(live[k])})
			}
		}
	}

	// A sample of the preloaded keys (not deleted) still has its value,
	// identical on every replica.
	rng := rand.New(rand.NewPCG(r.cfg.Seed, 0x636865636b))
	var sample []int
	var sampleKeys []string
	var sampleReps [][]int
	if n := min(r.cfg.CheckSample, r.cfg.Keys-len(r.deleted)); n > 0 {
		seen := map[int]bool{}
		for len(sample) < n {
			i := rng.IntN(r.cfg.Keys)
			if seen[i] || r.deleted[i] {
				continue
			}
			seen[i] = true
			sample = append(sample, i)
			sampleKeys = append(sampleKeys, phPreloadKey(i))
			sampleReps = append(sampleReps, r.replicasOf(phPreloadKey(i)))
		}
	}
	states, err := r.fetchStates(ctx, sampleKeys, sampleReps, "preload check")
	if err != nil {
		return err
	}
	for s, i := range sample {
		lost.PreloadedChecked++
		if !phAllEqual(states[s]) {
			res.ReplicaMismatches++
		}
		reg, err := phJoinStates(states[s])
		if err != nil {
			return fmt.Errorf("%w (key %q)", err, sampleKeys[s])
		}
		want := r.preloadValue(i)
		if !slices.ContainsFunc(reg.Live(), func(v crdt.Version) bool { return bytes.Equal(v.Value, want) }) {
			lost.PreloadedLost++
			example(phLostItem{Key: sampleKeys[s], What: "preloaded", Value: string(want), Values: len(reg.Live())})
		}
	}
	res.LostWrites = lost.WritesLost + lost.DeletesLost + lost.PreloadedLost
	if res.ReplicaMismatches > 0 {
		res.Converged = false
	}

	if res.KeysDiffering > 0 {
		res.AEBytesPerDivergedByte = float64(res.AEBytes) / float64(res.DivergedBytes)
		res.RepairBytesPerDivergedByte = float64(res.RepairBytes) / float64(res.DivergedBytes)
		res.KeysTransferredPerDiffering = float64(res.KeysTransferred) / float64(res.KeysDiffering)
	}
	for i := range res.Series {
		p := &res.Series[i]
		p.Estimate = max(0, int64(res.KeysDiffering)-int64(p.Repaired))
	}
	within := func(p *float64, limit float64) bool { return p != nil && *p <= limit }
	res.Targets = map[string]bool{
		"membership_2s": within(res.HealToMembership, 2),
		"converged_5s":  res.Converged && within(res.HealToConverged, 5),
		"ae_bytes_1.5x": res.KeysDiffering > 0 && res.AEBytesPerDivergedByte <= 1.5,
		"lost_0":        res.LostWrites == 0,
	}
	return nil
}
