package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/rumorkv/rumor/cli/client"
	"github.com/rumorkv/rumor/crdt"
)

// The crash benchmark: real `rumor agent` processes on loopback, fsync on,
// under a continuous write load; one agent at a time is killed with
// SIGKILL at a random (seeded) instant and restarted on the same data
// directory and ports. Afterwards every acknowledged write must still be
// there (or superseded by a write whose context saw it), and no dot may have
// been issued twice (Riak's kv679 class of bugs): not across keys, not
// across values, not across a restart.

func crashCommand() *cli.Command {
	return &cli.Command{
		Name:  "crash",
		Usage: "kill -9 agents at random instants under fsync write load; check no acknowledged write is lost and no dot is reused",
		Description: "Starts --nodes rumor agents on loopback (fsync on, data in a temporary directory) and\n" +
			"--writers clients that put new keys, overwrite with the context of their last write or of a\n" +
			"read, write blind (siblings) and delete with a context, recording every acknowledged write\n" +
			"and the context it returned. --iterations times, after a random uptime it kills one random\n" +
			"agent with SIGKILL, restarts it after a random downtime on the same directory and ports, and\n" +
			"waits until every agent sees every other alive. Then it waits for the replicas to agree, reads\n" +
			"every key with r=all and every replica's own copy (/v1/state), and checks: every acknowledged\n" +
			"write is present or superseded by a write whose context covered its dot; no dot names two\n" +
			"different writes; the first dot a restarted agent issues is above every dot it issued before\n" +
			"the kill; nothing an acknowledged write superseded is live again. Exit status 1 if any fails.",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "iterations", Value: 50, Usage: "kill -9 and restart this many times"},
			&cli.IntFlag{Name: "nodes", Value: 3, Usage: "agents"},
			&cli.IntFlag{Name: "n", Value: 3, Usage: "replication factor"},
			&cli.IntFlag{Name: "writers", Value: 16, Usage: "concurrent writers (one request at a time each)"},
			&cli.DurationFlag{Name: "min-up", Value: 500 * time.Millisecond, Usage: "shortest time between the cluster being whole again and the next kill"},
			&cli.DurationFlag{Name: "max-up", Value: 2 * time.Second, Usage: "longest such time (uniform between the two)"},
			&cli.DurationFlag{Name: "max-down", Value: time.Second, Usage: "longest time a killed agent stays down (uniform from 0)"},
			&cli.DurationFlag{Name: "settle", Value: 3 * time.Minute, Usage: "bound on waiting for the replicas to agree at the end"},
			&cli.BoolFlag{Name: "no-sync", Usage: "run the agents with --no-sync (acknowledged writes can be lost: shows that the check catches it)"},
			&cli.StringFlag{Name: "binary", Usage: "a built rumor binary (default: build cli/rumor)"},
			&cli.StringFlag{Name: "dir", Usage: "directory for the agents' data and logs (default: a temporary directory, removed unless a check fails)"},
			seedFlag(),
			jsonFlag(),
		},
		Action: runCrash,
	}
}

// crashConfig is the command's settings, as reported.
type crashConfig struct {
	Iterations int    `json:"iterations"`
	Nodes      int    `json:"nodes"`
	N          int    `json:"n"`
	Writers    int    `json:"writers"`
	Seed       uint64 `json:"seed"`
	MinUp      string `json:"min_up"`
	MaxUp      string `json:"max_up"`
	MaxDown    string `json:"max_down"`
	Fsync      bool   `json:"fsync"`

	minUp, maxUp, maxDown, settle time.Duration
}

func parseCrashConfig(c *cli.Context) (crashConfig, error) {
	cfg := crashConfig{
		Iterations: c.Int("iterations"), Nodes: c.Int("nodes"), N: c.Int("n"), Writers: c.Int("writers"),
		Seed: c.Uint64("seed"), Fsync: !c.Bool("no-sync"),
		minUp: c.Duration("min-up"), maxUp: c.Duration("max-up"), maxDown: c.Duration("max-down"), settle: c.Duration("settle"),
	}
	switch {
	case cfg.Iterations < 0:
		return cfg, usageErr("--iterations must be ≥ 0")
	case cfg.Nodes < 2:
		return cfg, usageErr("--nodes must be ≥ 2 (one is always down for a while)")
	case cfg.N < 1:
		return cfg, usageErr("--n must be ≥ 1")
	case cfg.Writers < 1:
		return cfg, usageErr("--writers must be ≥ 1")
	case cfg.minUp < 0 || cfg.maxUp < cfg.minUp:
		return cfg, usageErr("want 0 ≤ --min-up ≤ --max-up")
	case cfg.maxDown < 0:
		return cfg, usageErr("--max-down must be ≥ 0")
	case cfg.settle <= 0:
		return cfg, usageErr("--settle must be > 0")
	}
	cfg.MinUp, cfg.MaxUp, cfg.MaxDown = cfg.minUp.String(), cfg.maxUp.String(), cfg.maxDown.String()
	return cfg, nil
}

// crashResult is the report (--json).
type crashResult struct {
	Environment environment `json:"environment"`
	Config      crashConfig `json:"config"`

	Iterations     int     `json:"iterations"`
	Seconds        float64 `json:"seconds"`          // from the start of the load to the verdict
	LoadSeconds    float64 `json:"load_seconds"`     // writers running
	Attempted      int     `json:"attempted"`        // writes sent
	Acked          int     `json:"acked"`            // writes acknowledged
	AckedPerSecond float64 `json:"acked_per_second"` // over LoadSeconds
	Failed         int     `json:"failed"`           // not acknowledged (errors, mostly the killed agent)
	// AckedByKind splits the acknowledged writes: new (a new key), overwrite
	// (context of the writer's last write), read_overwrite (context of a
	// read just before), blind (an existing key, no context: a sibling),
	// delete (with the context of the writer's last write).
	AckedByKind map[string]int `json:"acked_by_kind"`
	FailedBy    map[string]int `json:"failed_by"` // failures by kind of error
	Keys        int            `json:"keys"`      // distinct keys written

	// Every acknowledged write is one of these three.
	Present             int `json:"present"`               // its dot is in the final state (a live value or a tombstone)
	Superseded          int `json:"superseded"`            // an acknowledged write's context covered its dot
	SupersededByUnacked int `json:"superseded_by_unacked"` // only a write whose acknowledgement was lost (in the kill) covered it
	Lost                int `json:"lost"`
	// SupersededUnseen counts the superseded writes (a subset) that no
	// superseding writer saw: each covering context covered them only
	// because a version vector entry A:n covers every lower dot of A. A
	// blind write's acknowledgement {A:n} covers an older sibling A:m
	// (m < n) from the same coordinator, and a write sent with it
	// supersedes that sibling too.
	SupersededUnseen int `json:"superseded_unseen"`

	DotsChecked      int `json:"dots_checked"`      // distinct dots seen (acknowledged writes and final states)
	DotReuse         int `json:"dot_reuse"`         // dots naming two different writes
	UndeterminedDots int `json:"undetermined_dots"` // acknowledgements whose context names no new dot
	CounterRewinds   int `json:"counter_rewinds"`   // restarts whose first dot was not above every earlier one
	// MaxCounterGap is the largest jump of a restarted agent's counter
	// across a crash (first dot after minus last dot before): at most
	// about the store's CounterReserve.
	MaxCounterGap uint64 `json:"max_counter_gap"`
	// Resurrected counts live versions that an acknowledged write's
	// context covered (a deleted or overwritten value back).
	Resurrected int `json:"resurrected"`
	// Duplicated counts acknowledged values also present under a second
	// dot: a forwarded write applied by one primary whose answer was lost
	// in a kill and then by the next (at least once, not a reuse).
	Duplicated int `json:"duplicated"`
	// Diverged counts keys whose replicas still differed when --settle ran
	// out; ReadMismatch keys whose r=all read disagreed with the replicas'
	// agreed state; ReadErrors keys whose r=all read failed.
	Diverged     int `json:"diverged"`
	ReadMismatch int `json:"read_mismatch"`
	ReadErrors   int `json:"read_errors"`

	Restarts       []crashRestart `json:"restarts"`
	RejoinSeconds  crashSpread    `json:"rejoin_seconds"`  // restart → every agent sees every agent alive
	HealthySeconds crashSpread    `json:"healthy_seconds"` // restart → the agent's HTTP API answers
	SettleSeconds  float64        `json:"settle_seconds"`  // writers stopped → replicas identical
	SettlePasses   int            `json:"settle_passes"`   // looks at every copy until they agreed (1: at once)
	VerifySeconds  float64        `json:"verify_seconds"`  // settle and the final reads
	Nodes          []crashNodeRep `json:"nodes"`

	Samples []string `json:"samples,omitempty"` // the first problems found, in words
	OK      bool     `json:"ok"`
}

// crashRestart is one kill and restart.
type crashRestart struct {
	Iteration      int     `json:"iteration"`
	Node           string  `json:"node"`
	KilledAt       float64 `json:"killed_at"` // seconds since the start of the load
	UpSeconds      float64 `json:"up_seconds"`
	DownSeconds    float64 `json:"down_seconds"`
	HealthySeconds float64 `json:"healthy_seconds"`
	RejoinSeconds  float64 `json:"rejoin_seconds"`
	// MaxDotBefore is the highest counter the agent is known to have
	// issued before the kill (acknowledged before it, or in the final state
	// with a timestamp before it); FirstDotAfter the lowest it issued for
	// a write sent after the restart and before its next kill (0: none
	// seen). Gap = FirstDotAfter - MaxDotBefore.
	MaxDotBefore  uint64 `json:"max_dot_before"`
	FirstDotAfter uint64 `json:"first_dot_after"`
	Gap           int64  `json:"gap"`

	node            int
	killed, started time.Time
}

// crashSpread summarizes durations in seconds.
type crashSpread struct {
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	P90    float64 `json:"p90"`
	Max    float64 `json:"max"`
}

func spreadOf(xs []float64) crashSpread {
	if len(xs) == 0 {
		return crashSpread{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	at := func(q float64) float64 { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return crashSpread{Min: s[0], Median: at(0.5), P90: at(0.9), Max: s[len(s)-1]}
}

// crashNodeRep describes one agent in the report.
type crashNodeRep struct {
	Name       string `json:"name"`
	ID         string `json:"id"`
	MaxCounter uint64 `json:"max_counter"` // highest counter of its dots seen
	Kills      int    `json:"kills"`
}

var errCrash = errors.New("bench: crash")

func runCrash(c *cli.Context) error {
	cfg, err := parseCrashConfig(c)
	if err != nil {
		return err
	}
	if err := checkOutputs(c.String("json")); err != nil {
		return err
	}
	ctx := c.Context
	if ctx == nil {
		ctx = context.Background()
	}
	out, logw := c.App.Writer, c.App.ErrWriter
	res := &crashResult{Environment: currentEnvironment(c), Config: cfg}

	dir, ownDir := c.String("dir"), false
	if dir == "" {
		if dir, err = os.MkdirTemp("", "rumor-crash-"); err != nil {
			return fmt.Errorf("%w: %v", errCrash, err)
		}
		ownDir = true
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("%w: %v", errCrash, err)
	}
	bin := c.String("binary")
	if bin == "" {
		bin = filepath.Join(dir, "rumor")
		fmt.Fprintln(logw, "crash: building cli/rumor")
		if err := buildRumor(ctx, bin); err != nil {
			return fmt.Errorf("%w: %v", errCrash, err)
		}
	}
	r := &crashRun{cfg: cfg, bin: bin, dir: dir, log: logw}
	defer r.close()
	fsync := "fsync on"
	if !cfg.Fsync {
		fsync = "fsync OFF"
	}
	fmt.Fprintf(out, "crash: %d agents (N=%d, %s), %d writers, %d kill -9 and restart cycles, seed %d; data in %s\n",
		cfg.Nodes, cfg.N, fsync, cfg.Writers, cfg.Iterations, cfg.Seed, dir)
	runErr := r.run(ctx, res)
	if runErr == nil {
		printCrash(out, res)
		runErr = writeJSON(c.String("json"), res)
	}
	if runErr == nil && !res.OK {
		runErr = fmt.Errorf("%w: %d acknowledged writes lost, %d dots reused, %d counter rewinds, %d resurrected, "+
			"%d keys diverged, %d read mismatches, %d read errors, %d undetermined dots (data and logs kept in %s)",
			errCrash, res.Lost, res.DotReuse, res.CounterRewinds, res.Resurrected, res.Diverged,
			res.ReadMismatch, res.ReadErrors, res.UndeterminedDots, dir)
	}
	r.close()
	if runErr == nil && ownDir {
		_ = os.RemoveAll(dir)
	} else if runErr != nil && ownDir {
		fmt.Fprintf(logw, "crash: data and agent logs kept in %s\n", dir)
	}
	return runErr
}

// crashRun is one run of the benchmark: the agents, the writers and what
// they recorded.
type crashRun struct {
	cfg   crashConfig
	bin   string
	dir   string
	log   io.Writer
	hc    *http.Client
	tr    *http.Transport
	nodes []*crashNode
	start time.Time // the load's start
	stop  atomic.Bool
}

// crashNode is one agent: fixed addresses and directory, and its current
// process.
type crashNode struct {
	idx                   int
	name, data, logPath   string
	gossip, rpc, httpAddr string
	id                    uint64
	cl                    *client.Client
	proc                  *crashProc
	kills                 int
	startedOnce           bool
}

// crashProc is one agent process.
type crashProc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once it has been reaped
}

// Agents are forked from one goroutine locked to its OS thread for the
// life of the process: the parent-death signal (SIGKILL for the agents if
// the bench dies) fires when the forking thread exits, and Go may end a
// thread whose goroutine exits while locked.
var crashSpawner struct {
	once sync.Once
	reqs chan crashSpawnReq
}

type crashSpawnReq struct {
	cmd *exec.Cmd
	err chan<- error
}

func crashSpawn(cmd *exec.Cmd) error {
	crashSpawner.once.Do(func() {
		crashSpawner.reqs = make(chan crashSpawnReq)
		go func() {
			runtime.LockOSThread() // never unlocked: see crashSpawner
			for r := range crashSpawner.reqs {
				r.err <- r.cmd.Start()
			}
		}()
	})
	ch := make(chan error, 1)
	crashSpawner.reqs <- crashSpawnReq{cmd: cmd, err: ch}
	return <-ch
}

func (r *crashRun) logf(format string, args ...any) {
	fmt.Fprintf(r.log, "crash: "+format+"\n", args...)
}

// since is seconds since the load started.
func (r *crashRun) since(t time.Time) float64 { return t.Sub(r.start).Seconds() }

func (r *crashRun) run(ctx context.Context, res *crashResult) error {
	cfg := r.cfg
	conns := cfg.Writers + 64
	r.tr = phPoolTransport(&http.Transport{
		DialContext: (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	}, conns)
	r.hc = &http.Client{Transport: r.tr, Timeout: 20 * time.Second}
	for i := range cfg.Nodes {
		n := &crashNode{idx: i, name: fmt.Sprintf("n%d", i+1)}
		n.data = filepath.Join(r.dir, n.name)
		n.logPath = filepath.Join(r.dir, n.name+".log")
		var err error
		for _, a := range []*string{&n.gossip, &n.rpc, &n.httpAddr} {
			if *a, err = freeLoopback(); err != nil {
				return err
			}
		}
		n.cl = client.New(n.httpAddr, &client.Options{HTTPClient: r.hc})
		r.nodes = append(r.nodes, n)
	}
	for _, n := range r.nodes {
		for attempt := 1; ; attempt++ {
			if err := r.startAgent(n); err != nil {
				return err
			}
			_, err := r.waitHealthy(ctx, n, 30*time.Second)
			if err == nil {
				break
			}
			// A port picked free may be taken by another process before
			// the agent binds it: pick new ones (first start only; a
			// restart must keep its addresses).
			if attempt == 3 || n.running() || !fileHas(n.logPath, "address already in use") {
				return err
			}
			r.logf("%s: a port it was given was taken meanwhile; starting it on new ports", n.name)
			for _, a := range []*string{&n.gossip, &n.rpc, &n.httpAddr} {
				if *a, err = freeLoopback(); err != nil {
					return err
				}
			}
			n.cl = client.New(n.httpAddr, &client.Options{HTTPClient: r.hc})
			n.startedOnce = false
		}
	}
	if err := r.waitWhole(ctx, 60*time.Second); err != nil {
		return err
	}
	r.logf("%d agents up: %s", len(r.nodes), r.idList())

	// The load.
	r.start = time.Now()
	ops := make([][]crashOp, cfg.Writers)
	var wg sync.WaitGroup
	for w := range cfg.Writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ops[w] = r.writer(ctx, w, rand.New(rand.NewPCG(cfg.Seed, uint64(w)+1)))
		}()
	}
	stopLoad := func() {
		r.stop.Store(true)
		wg.Wait()
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0))
	bar := newProgress(r.log, int64(cfg.Iterations), "crash")
	whole := time.Now()
	for it := range cfg.Iterations {
		up := cfg.minUp + time.Duration(rng.Int64N(int64(cfg.maxUp-cfg.minUp)+1))
		victim := r.nodes[rng.IntN(len(r.nodes))]
		down := time.Duration(rng.Int64N(int64(cfg.maxDown) + 1))
		if err := sleepCtx(ctx, time.Until(whole.Add(up))); err != nil {
			stopLoad()
			bar.done()
			return err
		}
		rs, err := r.crashOnce(ctx, victim, down)
		if err != nil {
			stopLoad()
			bar.done()
			return fmt.Errorf("%w: iteration %d: %v", errCrash, it, err)
		}
		rs.Iteration = it
		rs.UpSeconds = rs.killed.Sub(whole).Seconds()
		res.Restarts = append(res.Restarts, rs)
		whole = time.Now()
		bar.set(int64(it + 1))
		if !isTerminal(r.log) {
			r.logf("%d/%d: killed %s at %.1f s, down %.2f s, HTTP after %.2f s, whole again after %.2f s",
				it+1, cfg.Iterations, rs.Node, rs.KilledAt, rs.DownSeconds, rs.HealthySeconds, rs.RejoinSeconds)
		}
	}
	bar.done()
	// Keep writing a little so the last restarted agent issues dots.
	if err := sleepCtx(ctx, max(cfg.minUp, 500*time.Millisecond)); err != nil {
		stopLoad()
		return err
	}
	stopLoad()
	loadEnd := time.Now()
	res.LoadSeconds = loadEnd.Sub(r.start).Seconds()
	res.Iterations = len(res.Restarts)

	var all []crashOp
	for _, o := range ops {
		base := len(all)
		for _, op := range o {
			if op.SentFrom >= 0 {
				op.SentFrom += base
			}
			all = append(all, op)
		}
	}
	keys := map[string]bool{}
	for _, o := range all {
		keys[o.Key] = true
	}
	keyList := make([]string, 0, len(keys))
	for k := range keys {
		keyList = append(keyList, k)
	}
	slices.Sort(keyList)
	r.logf("load stopped: %d writes sent to %d keys in %.1f s; waiting for the replicas to agree", len(all), len(keyList), res.LoadSeconds)

	finals, settled, passes, err := r.settle(ctx, keyList)
	if err != nil {
		return err
	}
	res.SettleSeconds, res.SettlePasses = settled.Seconds(), passes
	r.finalReads(ctx, keyList, finals)
	res.VerifySeconds = time.Since(loadEnd).Seconds()

	facts := &crashFacts{Ops: all, Final: finals, Restarts: res.Restarts, Actors: map[crdt.ActorID]int{},
		Contacted: cfg.Nodes <= cfg.N}
	for _, n := range r.nodes {
		facts.Actors[crdt.ActorID(n.id)] = n.idx
	}
	analyzeCrash(facts, res)
	var healthy, rejoin []float64
	for _, rs := range res.Restarts {
		healthy = append(healthy, rs.HealthySeconds)
		rejoin = append(rejoin, rs.RejoinSeconds)
	}
	res.HealthySeconds, res.RejoinSeconds = spreadOf(healthy), spreadOf(rejoin)
	for _, n := range r.nodes {
		res.Nodes = append(res.Nodes, crashNodeRep{Name: n.name, ID: fmt.Sprintf("%016x", n.id),
			MaxCounter: facts.maxCounter[n.idx], Kills: n.kills})
	}
	res.Seconds = time.Since(r.start).Seconds()
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *crashRun) idList() string {
	var s []string
	for _, n := range r.nodes {
		s = append(s, fmt.Sprintf("%s=%016x", n.name, n.id))
	}
	return strings.Join(s, " ")
}

// startAgent starts n's agent: the first node alone, every other joining
// the nodes started before it, and a restart joining all the others.
func (r *crashRun) startAgent(n *crashNode) error {
	args := []string{"agent", "--insecure", "--name", n.name, "--data", n.data, "--bind", n.gossip, "--rpc", n.rpc,
		"--http", n.httpAddr, "--replicas", strconv.Itoa(r.cfg.N), "--log-level", "info"}
	if !r.cfg.Fsync {
		args = append(args, "--no-sync")
	}
	var join []string
	for _, o := range r.nodes {
		if o != n && (n.startedOnce || o.idx < n.idx) {
			join = append(join, o.gossip)
		}
	}
	if len(join) > 0 {
		args = append(args, "--join", strings.Join(join, ","))
	}
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("%w: agent log: %v", errCrash, err)
	}
	cmd := exec.Command(r.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	fmt.Fprintf(logf, "=== crash: %s %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(cmd.Args, " "))
	if err := crashSpawn(cmd); err != nil {
		_ = logf.Close()
		return fmt.Errorf("%w: start %s: %v", errCrash, n.name, err)
	}
	p := &crashProc{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		_ = logf.Close()
		close(p.done)
	}()
	n.proc = p
	n.startedOnce = true
	return nil
}

// fileHas reports whether the file at path contains s.
func fileHas(path, s string) bool {
	b, err := os.ReadFile(path)
	return err == nil && bytes.Contains(b, []byte(s))
}

// kill sends SIGKILL to n's agent and waits until it has been reaped.
func (n *crashNode) kill() error {
	p := n.proc
	if !n.running() {
		return nil // reaped: its pid may belong to another process now
	}
	if err := syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill %s (pid %d): %w", n.name, p.cmd.Process.Pid, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) survived SIGKILL", n.name, p.cmd.Process.Pid)
	}
}

// stop asks n's agent to shut down (SIGTERM), then kills it after grace.
func (n *crashNode) stop(grace time.Duration) {
	p := n.proc
	if !n.running() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	_ = n.kill()
}

// running reports whether n's agent process has not exited.
func (n *crashNode) running() bool {
	if n.proc == nil {
		return false
	}
	select {
	case <-n.proc.done:
		return false
	default:
		return true
	}
}

// close stops every agent (it may be called more than once).
func (r *crashRun) close() {
	var wg sync.WaitGroup
	for _, n := range r.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.stop(10 * time.Second)
		}()
	}
	wg.Wait()
	if r.tr != nil {
		r.tr.CloseIdleConnections()
	}
}

// crashOnce kills victim, restarts it after down, and waits until the
// cluster is whole again.
func (r *crashRun) crashOnce(ctx context.Context, victim *crashNode, down time.Duration) (crashRestart, error) {
	rs := crashRestart{Node: victim.name, node: victim.idx}
	if !victim.running() {
		return rs, fmt.Errorf("%s exited on its own (see %s)", victim.name, victim.logPath)
	}
	rs.killed = time.Now()
	if err := victim.kill(); err != nil {
		return rs, err
	}
	victim.kills++
	rs.KilledAt = r.since(rs.killed)
	if err := sleepCtx(ctx, down); err != nil {
		return rs, err
	}
	rs.started = time.Now()
	rs.DownSeconds = rs.started.Sub(rs.killed).Seconds()
	oldID := victim.id
	if err := r.startAgent(victim); err != nil {
		return rs, err
	}
	healthy, err := r.waitHealthy(ctx, victim, 60*time.Second)
	if err != nil {
		return rs, err
	}
	rs.HealthySeconds = healthy.Sub(rs.started).Seconds()
	if victim.id != oldID {
		return rs, fmt.Errorf("%s came back as %016x, was %016x: same data directory, same identity expected", victim.name, victim.id, oldID)
	}
	if err := r.waitWhole(ctx, 120*time.Second); err != nil {
		return rs, err
	}
	rs.RejoinSeconds = time.Since(rs.started).Seconds()
	return rs, nil
}

// waitHealthy waits until n's HTTP API answers /v1/health and records its
// identity; it fails early if the agent exits.
func (r *crashRun) waitHealthy(ctx context.Context, n *crashNode, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		var h struct {
			ID string `json:"id"`
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		err := n.cl.GetJSON(cctx, "/v1/health", &h)
		cancel()
		if err == nil {
			id, perr := strconv.ParseUint(h.ID, 16, 64)
			if perr != nil || id == 0 {
				return time.Time{}, fmt.Errorf("%w: %s reports id %q", errCrash, n.name, h.ID)
			}
			n.id = id
			return time.Now(), nil
		}
		last = err
		if !n.running() {
			return time.Time{}, fmt.Errorf("%w: %s exited (see %s)", errCrash, n.name, n.logPath)
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("%w: %s not healthy within %v: %v", errCrash, n.name, timeout, last)
		}
		if err := sleepCtx(ctx, 20*time.Millisecond); err != nil {
			return time.Time{}, err
		}
	}
}

// waitWhole waits until every agent sees every agent alive and in its
// ring.
func (r *crashRun) waitWhole(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := r.whole(ctx)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: cluster not whole within %v: %v", errCrash, timeout, err)
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

func (r *crashRun) whole(ctx context.Context) error {
	for _, n := range r.nodes {
		if !n.running() {
			return fmt.Errorf("%s exited (see %s)", n.name, n.logPath)
		}
		var members []struct {
			Name  string `json:"name"`
			State string `json:"state"`
		}
		var ring struct {
			Members []struct {
				Name   string `json:"name"`
				Status string `json:"status"`
			} `json:"members"`
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := n.cl.GetJSON(cctx, "/v1/members", &members)
		if err == nil {
			err = n.cl.GetJSON(cctx, "/v1/ring", &ring)
		}
		cancel()
		if err != nil {
			return fmt.Errorf("%s: %v", n.name, err)
		}
		alive := 0
		for _, m := range members {
			if m.State == "alive" {
				alive++
			}
		}
		if alive != len(r.nodes) || len(ring.Members) != len(r.nodes) {
			return fmt.Errorf("%s sees %d of %d alive, a ring of %d", n.name, alive, len(r.nodes), len(ring.Members))
		}
		// Joining nodes forward writes to the current owners: until every
		// node owns its ranges, a write's dot is not the contacted node's.
		for _, m := range ring.Members {
			if m.Status != "member" {
				return fmt.Errorf("%s sees %s %s", n.name, m.Name, m.Status)
			}
		}
	}
	return nil
}

// Kinds of writes.
const (
	opNew           = "new"
	opOverwrite     = "overwrite"
	opReadOverwrite = "read_overwrite"
	opBlind         = "blind"
	opDelete        = "delete"
)

// crashOp is one write a writer sent.
type crashOp struct {
	Kind   string
	Key    string
	Value  string // unique per write; "" for a delete
	Delete bool
	Sent   string // the context sent with it
	// SentFrom is the write whose acknowledgement Sent is (an index into
	// the run's writes; -1 when Sent came from a read or is empty).
	SentFrom int
	Acked    bool
	Ack      string // the context the acknowledgement returned
	Err      string // kind of error when not acknowledged
	Node     int    // agent it was sent to
	Start    time.Time
	End      time.Time
}

// writer sends one write at a time, to random agents, until r.stop.
func (r *crashRun) writer(ctx context.Context, w int, rng *rand.Rand) []crashOp {
	var ops []crashOp
	var keys []string
	last := map[string]int{} // key → index in ops of the latest acknowledged write
	lastCtx := func(key string) (string, int) {
		if i, ok := last[key]; ok {
			return ops[i].Ack, i
		}
		return "", -1
	}
	for seq := 0; !r.stop.Load() && ctx.Err() == nil; seq++ {
		nd := r.nodes[rng.IntN(len(r.nodes))]
		op := crashOp{Node: nd.idx, SentFrom: -1}
		pick := func() string {
			// Mostly recent keys, so overwrites chain.
			if rng.IntN(4) > 0 {
				return keys[max(0, len(keys)-1-rng.IntN(min(len(keys), 32)))]
			}
			return keys[rng.IntN(len(keys))]
		}
		switch p := rng.Float64(); {
		case len(keys) == 0 || p < 0.5:
			op.Kind, op.Key = opNew, fmt.Sprintf("c-w%02d-%06d", w, seq)
			keys = append(keys, op.Key)
		case p < 0.72:
			op.Kind, op.Key = opOverwrite, pick()
			op.Sent, op.SentFrom = lastCtx(op.Key)
		case p < 0.84:
			op.Kind, op.Key = opReadOverwrite, pick()
			op.Sent, op.SentFrom = lastCtx(op.Key)
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			v, err := nd.cl.Get(cctx, op.Key, nil)
			cancel()
			if err == nil || errors.Is(err, client.ErrNotFound) {
				op.Sent, op.SentFrom = v.Context, -1
			}
		case p < 0.9:
			op.Kind, op.Key = opBlind, pick()
		default:
			op.Kind, op.Key, op.Delete = opDelete, pick(), true
			op.Sent, op.SentFrom = lastCtx(op.Key)
		}
		if !op.Delete {
			op.Value = fmt.Sprintf("w%02d.%06d", w, seq)
		}
		wo := &client.WriteOptions{Context: op.Sent}
		cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		op.Start = time.Now()
		var ack string
		var err error
		if op.Delete {
			ack, err = nd.cl.Delete(cctx, op.Key, wo)
		} else {
			ack, err = nd.cl.Put(cctx, op.Key, []byte(op.Value), wo)
		}
		op.End = time.Now()
		cancel()
		if err == nil {
			op.Acked, op.Ack = true, ack
			last[op.Key] = len(ops)
		} else {
			op.Err = crashErrKind(err)
		}
		ops = append(ops, op)
		if err != nil {
			// The agent is down: do not spin on refused connections.
			_ = sleepCtx(ctx, time.Duration(5+rng.IntN(20))*time.Millisecond)
		}
	}
	return ops
}

func crashErrKind(err error) string {
	var ae *client.Error
	switch {
	case errors.As(err, &ae):
		return "http " + strconv.Itoa(ae.Status)
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection reset"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	return "other"
}

// crashFinal is what the end of the run found for one key.
type crashFinal struct {
	// State is the replicas' agreed state (their join if they never
	// agreed), nil versions if no replica holds the key.
	State crdt.Register
	// Values are the live values an r=all read returned, sorted.
	Values []string
	// Diverged: the replicas still differed when the settle time ran out.
	Diverged bool
	// ReadErr: the r=all read failed.
	ReadErr string
}

// settle waits until, for every key, the agents holding a copy hold the
// same bytes and as many hold one as there are replicas (or none does),
// then returns the states. Keys that still differ get an r=all read (read
// repair) before the next look.
func (r *crashRun) settle(ctx context.Context, keys []string) (map[string]*crashFinal, time.Duration, int, error) {
	start := time.Now()
	deadline := start.Add(r.cfg.settle)
	want := min(r.cfg.N, len(r.nodes))
	finals := make(map[string]*crashFinal, len(keys))
	var mu sync.Mutex
	pending := keys
	passes := 0
	for len(pending) > 0 {
		passes++
		var next []string
		last := time.Now().After(deadline)
		err := crashParallel(ctx, pending, 32, func(key string) error {
			states := make([][]byte, len(r.nodes))
			holders := 0
			for i, n := range r.nodes {
				b, ok, err := r.state(ctx, n, key)
				if err != nil {
					return err
				}
				if ok {
					states[i] = b
					holders++
				}
			}
			agreed := holders == 0 || holders == want
			var first []byte
			for _, s := range states {
				if s == nil {
					continue
				}
				if first == nil {
					first = s
				} else if string(s) != string(first) {
					agreed = false
				}
			}
			if !agreed && !last {
				mu.Lock()
				next = append(next, key)
				mu.Unlock()
				return nil
			}
			f := &crashFinal{Diverged: !agreed}
			for _, s := range states {
				if s == nil {
					continue
				}
				reg, err := crdt.DecodeRegister(s, crdt.Limits{})
				if err != nil {
					return fmt.Errorf("%w: state of %q: %v", errCrash, key, err)
				}
				f.State = f.State.Join(reg)
			}
			mu.Lock()
			finals[key] = f
			mu.Unlock()
			return nil
		})
		if err != nil {
			return nil, 0, passes, err
		}
		if len(next) == 0 {
			break
		}
		r.logf("settle pass %d: %d keys still differ", passes, len(next))
		slices.Sort(next)
		pending = next
		// Read repair helps anti-entropy along.
		_ = crashParallel(ctx, pending, 32, func(key string) error {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			_, _ = r.nodes[0].cl.Get(cctx, key, &client.ReadOptions{R: "all"})
			return nil
		})
		if err := sleepCtx(ctx, time.Second); err != nil {
			return nil, 0, passes, err
		}
	}
	return finals, time.Since(start), passes, nil
}

// state reads n's own copy of key: ok false if it holds none.
func (r *crashRun) state(ctx context.Context, n *crashNode, key string) ([]byte, bool, error) {
	var lastErr error
	for attempt := range 5 {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		b, ok, err := r.stateOnce(cctx, n, key)
		cancel()
		if err == nil {
			return b, ok, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
		_ = sleepCtx(ctx, time.Duration(attempt+1)*100*time.Millisecond)
	}
	return nil, false, fmt.Errorf("%w: state of %q on %s: %v", errCrash, key, n.name, lastErr)
}

func (r *crashRun) stateOnce(ctx context.Context, n *crashNode, key string) ([]byte, bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.httpAddr+"/v1/state/"+url.PathEscape(key), nil)
	if err != nil {
		return nil, false, err
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		return nil, false, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, false, err
	}
	switch resp.StatusCode {
	case http.StatusOK:
		return b, true, nil
	case http.StatusNotFound:
		return nil, false, nil
	}
	return nil, false, fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
}

// finalReads reads every key with r=all, from the agents in turn.
func (r *crashRun) finalReads(ctx context.Context, keys []string, finals map[string]*crashFinal) {
	var i atomic.Int64
	_ = crashParallel(ctx, keys, 32, func(key string) error {
		n := r.nodes[int(i.Add(1))%len(r.nodes)]
		f := finals[key]
		var v *client.Value
		var err error
		for attempt := range 5 {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			v, err = n.cl.Get(cctx, key, &client.ReadOptions{R: "all"})
			cancel()
			if err == nil || errors.Is(err, client.ErrNotFound) {
				err = nil
				break
			}
			_ = sleepCtx(ctx, time.Duration(attempt+1)*100*time.Millisecond)
		}
		if err != nil {
			f.ReadErr = err.Error()
			return nil
		}
		f.Values = v.Strings()
		slices.Sort(f.Values)
		return nil
	})
}

// crashParallel calls fn for every item with up to workers at a time; the
// first error stops it.
func crashParallel(ctx context.Context, items []string, workers int, fn func(string) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for range min(workers, len(items)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(items) || ctx.Err() != nil {
					return
				}
				if err := fn(items[i]); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					next.Store(int64(len(items)))
					return
				}
			}
		}()
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

func printCrash(w io.Writer, res *crashResult) {
	verdict := "OK"
	if !res.OK {
		verdict = "FAILED"
	}
	kinds := make([]string, 0, len(res.AckedByKind))
	for _, k := range []string{opNew, opOverwrite, opReadOverwrite, opBlind, opDelete} {
		kinds = append(kinds, fmt.Sprintf("%d %s", res.AckedByKind[k], strings.ReplaceAll(k, "_", "-")))
	}
	fmt.Fprintf(w, "load: %d writes sent, %d acknowledged (%s) in %.1f s (%.0f/s), %d not acknowledged\n",
		res.Attempted, res.Acked, strings.Join(kinds, ", "), res.LoadSeconds, res.AckedPerSecond, res.Failed)
	fmt.Fprintf(w, "restarts: %d; HTTP up after %.2f s median (max %.2f), whole cluster again after %.2f s median (%.2f–%.2f s)\n",
		len(res.Restarts), res.HealthySeconds.Median, res.HealthySeconds.Max,
		res.RejoinSeconds.Median, res.RejoinSeconds.Min, res.RejoinSeconds.Max)
	fmt.Fprintf(w, "verify: %d keys; every copy read %d time(s) until the replicas agreed (%.1f s); r=all reads done after %.1f s\n",
		res.Keys, res.SettlePasses, res.SettleSeconds, res.VerifySeconds)
	fmt.Fprintf(w, "acknowledged writes: %d present, %d superseded by acknowledged writes whose context covered them "+
		"(%d of them through the version vector's summary only), %d by writes whose acknowledgement was lost, %d LOST\n",
		res.Present, res.Superseded, res.SupersededUnseen, res.SupersededByUnacked, res.Lost)
	fmt.Fprintf(w, "dots: %d checked, %d reused, %d undetermined, %d counter rewinds after a restart "+
		"(largest jump %d); %d resurrected, %d duplicated, %d diverged, %d read mismatches, %d read errors\n",
		res.DotsChecked, res.DotReuse, res.UndeterminedDots, res.CounterRewinds, res.MaxCounterGap,
		res.Resurrected, res.Duplicated, res.Diverged, res.ReadMismatch, res.ReadErrors)
	for _, s := range res.Samples {
		fmt.Fprintf(w, "  %s\n", s)
	}
	fmt.Fprintf(w, "crash: %s in %.1f s\n", verdict, res.Seconds)
}

// crashFacts is everything the checks look at, as plain data (tests feed
// made-up histories to analyzeCrash).
type crashFacts struct {
	Ops      []crashOp
	Final    map[string]*crashFinal
	Restarts []crashRestart       // in order; node, killed and started set
	Actors   map[crdt.ActorID]int // agent ids → node index
	// Contacted: the agent a write was sent to coordinated it (every
	// agent replicates every key, so none forwards). Dots are then
	// attributed to agents by that, whatever their actor; otherwise only
	// dots whose actor is an agent id are.
	Contacted bool

	maxCounter map[int]uint64 // per node index; set by analyzeCrash
}

// crashWrite is an acknowledged write with its contexts and its dot.
type crashWrite struct {
	idx       int // in crashFacts.Ops
	op        *crashOp
	sent, ack crdt.VV
	// super is what the write superseded: the context it was sent with,
	// as far as the coordinator held it (the returned context is that
	// plus the write's own dot, so their meet).
	super crdt.VV
	dot   crdt.Dot
	ok    bool // dot determined
}

// maxContext bounds decoded contexts (a key's context has an entry per
// actor that wrote it: a handful here).
const maxContext = 1 << 16

// analyzeCrash runs every check on f and fills res's counts, samples and
// verdict (and the dot figures of f.Restarts, which it stores in res).
func analyzeCrash(f *crashFacts, res *crashResult) {
	res.AckedByKind, res.FailedBy = map[string]int{}, map[string]int{}
	sample := func(format string, args ...any) {
		if len(res.Samples) < 25 {
			res.Samples = append(res.Samples, fmt.Sprintf(format, args...))
		}
	}
	byKey := map[string][]*crashWrite{}
	unacked := map[string][]crdt.VV{} // contexts sent with unacknowledged writes
	var acked []*crashWrite
	byIdx := make([]*crashWrite, len(f.Ops))
	keys := map[string]bool{}
	res.Attempted = len(f.Ops)
	for i := range f.Ops {
		op := &f.Ops[i]
		keys[op.Key] = true
		sent, err := crdt.DecodeContext(op.Sent, maxContext)
		if err != nil {
			sample("write %d to %q was sent with a bad context: %v", i, op.Key, err)
			sent = crdt.VV{}
		}
		if !op.Acked {
			res.Failed++
			res.FailedBy[op.Err]++
			unacked[op.Key] = append(unacked[op.Key], sent)
			continue
		}
		res.Acked++
		res.AckedByKind[op.Kind]++
		w := &crashWrite{idx: i, op: op, sent: sent}
		if w.ack, err = crdt.DecodeContext(op.Ack, maxContext); err != nil {
			res.UndeterminedDots++
			sample("%s of %q acknowledged with a bad context: %v", op.Kind, op.Key, err)
			continue
		}
		// The returned context is what the write superseded (at most what
		// was sent) plus its own dot: the one entry above the sent context.
		var dots []crdt.Dot
		for a, c := range w.ack {
			if c > sent[a] {
				dots = append(dots, crdt.Dot{Actor: a, Counter: c})
			}
		}
		w.super = sent.Meet(w.ack)
		if len(dots) == 1 {
			w.dot, w.ok = dots[0], true
		} else {
			res.UndeterminedDots++
			sample("%s of %q: acknowledged context %v sent with %v names %d new dots, want 1 (a reused counter?)",
				op.Kind, op.Key, w.ack, sent, len(dots))
		}
		byKey[op.Key] = append(byKey[op.Key], w)
		acked = append(acked, w)
		byIdx[i] = w
	}
	res.Keys = len(keys)
	if res.LoadSeconds > 0 {
		res.AckedPerSecond = float64(res.Acked) / res.LoadSeconds
	}
	finalKeys := make([]string, 0, len(f.Final))
	for k := range f.Final {
		finalKeys = append(finalKeys, k)
	}
	slices.Sort(finalKeys)

	// Dots: each names one write. An acknowledged write's dot comes from
	// its context; every version of every final state carries one.
	type owner struct{ key, what string } // what: "v:"+value, "d:"+op index (an acknowledged delete), "t" (a final tombstone)
	owners := map[crdt.Dot]owner{}
	reused := map[crdt.Dot]bool{}
	claim := func(d crdt.Dot, o owner) {
		prev, ok := owners[d]
		switch {
		case !ok:
			owners[d] = o
		case prev == o:
		case prev.key == o.key && prev.what == "t" && strings.HasPrefix(o.what, "d:"):
			owners[d] = o // a tombstone is the delete that wrote it
		case prev.key == o.key && o.what == "t" && strings.HasPrefix(prev.what, "d:"):
		default:
			if !reused[d] {
				reused[d] = true
				sample("dot %v names two writes: %q %s and %q %s", d, prev.key, prev.what, o.key, o.what)
			}
		}
	}
	for _, w := range acked {
		if !w.ok {
			continue
		}
		what := "v:" + w.op.Value
		if w.op.Delete {
			what = "d:" + strconv.Itoa(w.idx)
		}
		claim(w.dot, owner{w.op.Key, what})
	}
	valueDots := map[string][]crdt.Dot{} // final live values → their dots
	for _, k := range finalKeys {
		for _, v := range f.Final[k].State.Versions {
			what := "t"
			if !v.Deleted {
				what = "v:" + string(v.Value)
				valueDots[string(v.Value)] = append(valueDots[string(v.Value)], v.Dot)
			}
			claim(v.Dot, owner{k, what})
		}
	}
	res.DotsChecked, res.DotReuse = len(owners), len(reused)

	// Every acknowledged write is in the final state, or an acknowledged
	// write's context covered its dot (or, failing that, the context of a
	// write whose acknowledgement the kill swallowed, which the final
	// state shows landed: its context covers the dot too).
	for _, w := range acked {
		if !w.ok {
			continue
		}
		fin := f.Final[w.op.Key]
		if fin == nil {
			fin = &crashFinal{}
		}
		if slices.ContainsFunc(fin.State.Versions, func(v crdt.Version) bool { return v.Dot == w.dot }) {
			res.Present++
			if !w.op.Delete && slices.ContainsFunc(valueDots[w.op.Value], func(d crdt.Dot) bool { return d != w.dot }) {
				res.Duplicated++
			}
			continue
		}
		covered := fin.State.Context().Covers(w.dot)
		var by []*crashWrite
		for _, o := range byKey[w.op.Key] {
			if o != w && o.ok && o.dot != w.dot && o.super.Covers(w.dot) {
				by = append(by, o)
			}
		}
		if covered && len(by) > 0 {
			res.Superseded++
			// Did the writer of any of them see w? Its context came from a
			// read, or from w's own acknowledgement, or from that of a write
			// that superseded w. Otherwise only the version vector's
			// summary covered w: the context of an earlier write x by the
			// same coordinator, whose entry x.dot covers every lower dot of
			// that actor, w's included, though x superseded nothing.
			if !slices.ContainsFunc(by, func(o *crashWrite) bool {
				if o.op.SentFrom < 0 || o.op.SentFrom == w.idx {
					return true
				}
				x := byIdx[o.op.SentFrom]
				return x == nil || x.super.Covers(w.dot)
			}) {
				res.SupersededUnseen++
			}
			continue
		}
		if covered && slices.ContainsFunc(unacked[w.op.Key], func(s crdt.VV) bool { return s.Covers(w.dot) }) {
			res.SupersededByUnacked++
			continue
		}
		res.Lost++
		why := "no replica holds it and nothing covers it"
		if covered {
			why = "the final state's context covers it, but no write of the run sent or returned a context that did"
		}
		sample("lost: %s %q=%q, dot %v, acknowledged by n%d at %s: %s",
			w.op.Kind, w.op.Key, w.op.Value, w.dot, w.op.Node+1, w.op.End.Format("15:04:05.000"), why)
	}

	// Per key: replicas agreed, the r=all read returned the live values,
	// and nothing an acknowledged write superseded is live.
	for _, k := range finalKeys {
		fin := f.Final[k]
		if fin.Diverged {
			res.Diverged++
			sample("replicas of %q still differ", k)
		}
		if fin.ReadErr != "" {
			res.ReadErrors++
			sample("r=all read of %q failed: %s", k, fin.ReadErr)
		} else {
			var live []string
			for _, v := range fin.State.Live() {
				live = append(live, string(v.Value))
			}
			slices.Sort(live)
			if !slices.Equal(live, fin.Values) {
				res.ReadMismatch++
				sample("r=all read of %q returned %q, the replicas hold %q", k, fin.Values, live)
			}
		}
		for _, v := range fin.State.Live() {
			for _, w := range byKey[k] {
				if w.ok && w.dot != v.Dot && w.super.Covers(v.Dot) {
					res.Resurrected++
					sample("resurrected: %q=%q (dot %v) is live, but the acknowledged %s %v covered it",
						k, v.Value, v.Dot, w.op.Kind, w.dot)
					break
				}
			}
		}
	}

	// Counters are per agent: an agent's dots never share a counter, even
	// under different actors (an actor may be derived from the agent id
	// and more). Dots are attributed to the agent whose id is their actor,
	// or else (Contacted) to the agent that took the write.
	nodeOf := func(w *crashWrite) int {
		if i, ok := f.Actors[w.dot.Actor]; ok {
			return i
		}
		if f.Contacted && w.dot.Counter > 0 {
			return w.op.Node
		}
		return -1
	}
	type nodeCounter struct {
		node    int
		counter uint64
	}
	counters := map[nodeCounter]crdt.Dot{}
	actorNode := map[crdt.ActorID]int{} // actors seen on an agent's acknowledged writes
	maps.Copy(actorNode, f.Actors)
	f.maxCounter = map[int]uint64{}
	for _, w := range acked {
		i := -1
		if w.ok {
			i = nodeOf(w)
		}
		if i < 0 {
			continue
		}
		actorNode[w.dot.Actor] = i
		f.maxCounter[i] = max(f.maxCounter[i], w.dot.Counter)
		nc := nodeCounter{i, w.dot.Counter}
		if d, ok := counters[nc]; ok && d != w.dot && !reused[w.dot] {
			reused[w.dot] = true
			res.DotReuse++
			sample("n%d issued counter %d twice: dots %v and %v", i+1, w.dot.Counter, d, w.dot)
		}
		counters[nc] = w.dot
	}

	// Restarts: the first dot a restarted agent issues is above every dot
	// it issued before the kill. Before: acknowledged before the kill, or
	// in a final state, with an actor of the agent's, and a timestamp
	// before the kill (a version's clock is at least the wall time it was
	// written at). After: dots of writes sent after the restart and
	// acknowledged before the agent's next kill.
	finalByNode := map[int][]crdt.Version{}
	for _, k := range finalKeys {
		for _, v := range f.Final[k].State.Versions {
			if i, ok := actorNode[v.Dot.Actor]; ok {
				finalByNode[i] = append(finalByNode[i], v)
			}
		}
	}
	for i := range f.Restarts {
		rs := &f.Restarts[i]
		var nextKill time.Time
		for _, o := range f.Restarts[i+1:] {
			if o.node == rs.node {
				nextKill = o.killed
				break
			}
		}
		var before, after uint64
		for _, w := range acked {
			if !w.ok || nodeOf(w) != rs.node {
				continue
			}
			if w.op.End.Before(rs.killed) {
				before = max(before, w.dot.Counter)
			}
			if w.op.Start.After(rs.started) && (nextKill.IsZero() || w.op.End.Before(nextKill)) && (after == 0 || w.dot.Counter < after) {
				after = w.dot.Counter
			}
		}
		for _, v := range finalByNode[rs.node] {
			if v.HLC != 0 && !v.HLC.Time().Add(time.Millisecond).After(rs.killed) {
				before = max(before, v.Dot.Counter)
			}
		}
		rs.MaxDotBefore, rs.FirstDotAfter = before, after
		if after == 0 {
			continue
		}
		rs.Gap = int64(after) - int64(before)
		if after <= before {
			res.CounterRewinds++
			sample("restart %d of %s: first dot after it %d, but it had issued %d before the kill", rs.Iteration, rs.Node, after, before)
		} else {
			res.MaxCounterGap = max(res.MaxCounterGap, after-before)
		}
	}
	res.Restarts = f.Restarts
	res.OK = res.Lost == 0 && res.DotReuse == 0 && res.UndeterminedDots == 0 && res.CounterRewinds == 0 &&
		res.Resurrected == 0 && res.Diverged == 0 && res.ReadMismatch == 0 && res.ReadErrors == 0
}
