package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/rumorkv/rumor/bench/netns"
	"github.com/rumorkv/rumor/cli/client"
	"github.com/rumorkv/rumor/crdt"
	"github.com/rumorkv/rumor/node"
)

// The nemesis: a seeded schedule of faults (partitions of every shape,
// kill -9 and restart, SIGSTOP/SIGCONT pauses, clock offsets) against a
// cluster under a concurrent workload (unique-value writes without context,
// read-modify-writes and deletes with the context of a read), then a final
// heal, a wait until every replica agrees, and the crash benchmark's
// checker (analyzeCrash) over every acknowledged write.

func nemesisCommand() *cli.Command {
	return &cli.Command{
		Name:  "nemesis",
		Usage: "faults of every kind under a concurrent workload; check no acknowledged write is lost or deleted value resurrected and the replicas converge",
		Description: "Starts --nodes nodes (--mode inproc: in this process on a fault-injecting network;\n" +
			"--mode netns: `rumor agent` processes in network namespaces, root) and --clients clients that\n" +
			"write unique values without context, read-modify-write with the context of a read, and delete\n" +
			"with the context of a read, on --keys keys, for --duration. Meanwhile a schedule drawn from\n" +
			"--seed alternates healthy periods and faults (--faults, each lasting about --fault-interval and\n" +
			"undone before the next): partition-halves, isolate, majority-ring, bridge, kill (netns: kill -9\n" +
			"and restart; inproc: cut at once and closed without a leave, then reopened on the same data),\n" +
			"pause (netns: SIGSTOP, SIGCONT; inproc: silent isolation) and clock (restart with a clock\n" +
			"offset, then without). After the final heal it waits (--settle-timeout) until every node sees\n" +
			"every other alive, every pair agrees on the ranges it shares and no hint is pending, then reads\n" +
			"every key's copy on each of its replicas and with r=all, and classifies every acknowledged write:\n" +
			"present, superseded (an acknowledged write's context covered it) or lost; a live value that an\n" +
			"acknowledged write's context covered is resurrected. Exit status 1 when anything is lost or\n" +
			"resurrected or the replicas did not converge. --runs K runs seeds S, S+1, … and stops at the\n" +
			"first failure.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "mode", Value: "inproc", Usage: "inproc (nodes in this process) or netns (agent processes in network namespaces; root)"},
			&cli.DurationFlag{Name: "duration", Value: time.Minute, Usage: "workload and faults before the final heal"},
			&cli.IntFlag{Name: "nodes", Value: 5, Usage: "cluster size"},
			&cli.IntFlag{Name: "n", Value: 3, Usage: "replication factor"},
			&cli.IntFlag{Name: "keys", Value: 200, Usage: "key space of the workload (small, so clients collide)"},
			&cli.IntFlag{Name: "clients", Value: 8, Usage: "concurrent clients (one request at a time each)"},
			&cli.StringFlag{Name: "faults", Usage: "comma-separated faults to draw from: " + strings.Join(nemAllFaults, ", ") + " (default: all; bridge needs 3 nodes)"},
			&cli.DurationFlag{Name: "fault-interval", Value: 5 * time.Second, Usage: "mean length of a fault (uniform 0.5–1.5×) and of the healthy gap after it (0.25–0.75×)"},
			&cli.DurationFlag{Name: "settle-timeout", Value: 2 * time.Minute, Usage: "after the final heal, give up waiting for identical replicas after this long (not converged)"},
			&cli.DurationFlag{Name: "op-timeout", Value: 5 * time.Second, Usage: "a client request not answered within this is unacknowledged"},
			&cli.IntFlag{Name: "runs", Value: 1, Usage: "consecutive runs with seeds --seed, --seed+1, …; stops at the first failure"},
			&cli.BoolFlag{Name: "no-sync", Usage: "nodes do not fsync (a kill -9 leaves written data in the page cache, so this rarely loses anything)"},
			&cli.StringFlag{Name: "binary", Usage: "netns: a built rumor binary (default: go build ./cli/rumor once)"},
			&cli.StringFlag{Name: "log-level", Value: "error", Usage: "nodes' log level: debug, info, warn, error"},
			seedFlag(),
			jsonFlag(),
		},
		Action: runNemesis,
	}
}

// Faults the schedule draws from.
const (
	faultHalves  = "partition-halves"
	faultIsolate = "isolate"
	faultRing    = "majority-ring"
	faultBridge  = "bridge"
	faultKill    = "kill"
	faultPause   = "pause"
	faultClock   = "clock"
)

var nemAllFaults = []string{faultHalves, faultIsolate, faultRing, faultBridge, faultKill, faultPause, faultClock}

// nemClockOffsets are the offsets a clock fault draws from: up to beyond
// crdt.MaxDrift (10 min), where the others ignore the node's timestamps.
var nemClockOffsets = []time.Duration{-15 * time.Minute, -5 * time.Minute, -time.Minute, -10 * time.Second, -time.Second,
	time.Second, 10 * time.Second, time.Minute, 5 * time.Minute, 15 * time.Minute}

// nemConfig is the parsed command line, reported with the results.
type nemConfig struct {
	Mode          string   `json:"mode"`
	Nodes         int      `json:"nodes"`
	N             int      `json:"n"`
	Keys          int      `json:"keys"`
	Clients       int      `json:"clients"`
	Faults        []string `json:"faults"`
	Duration      string   `json:"duration"`
	FaultInterval string   `json:"fault_interval"`
	SettleTimeout string   `json:"settle_timeout"`
	OpTimeout     string   `json:"op_timeout"`
	Seed          uint64   `json:"seed"`
	Runs          int      `json:"runs"`
	Sync          bool     `json:"fsync"`

	duration, interval, settle, opTimeout time.Duration
}

func parseNemConfig(c *cli.Context) (nemConfig, error) {
	cfg := nemConfig{
		Mode: c.String("mode"), Nodes: c.Int("nodes"), N: c.Int("n"), Keys: c.Int("keys"), Clients: c.Int("clients"),
		Seed: c.Uint64("seed"), Runs: c.Int("runs"), Sync: !c.Bool("no-sync"),
		duration: c.Duration("duration"), interval: c.Duration("fault-interval"), settle: c.Duration("settle-timeout"),
		opTimeout: c.Duration("op-timeout"),
	}
	cfg.Duration, cfg.FaultInterval, cfg.SettleTimeout, cfg.OpTimeout =
		cfg.duration.String(), cfg.interval.String(), cfg.settle.String(), cfg.opTimeout.String()
	switch {
	case cfg.Mode != "inproc" && cfg.Mode != "netns":
		return cfg, usageErr("--mode %q: want inproc or netns", cfg.Mode)
	case cfg.Nodes < 2 || cfg.Nodes > 64:
		return cfg, usageErr("--nodes %d: want 2..64", cfg.Nodes)
	case cfg.N < 1 || cfg.N > cfg.Nodes:
		return cfg, usageErr("--n %d: want 1..nodes", cfg.N)
	case cfg.Keys < 1 || cfg.Clients < 1:
		return cfg, usageErr("--keys and --clients: want ≥ 1")
	case cfg.duration <= 0 || cfg.interval <= 0 || cfg.settle <= 0 || cfg.opTimeout <= 0:
		return cfg, usageErr("--duration, --fault-interval, --settle-timeout and --op-timeout: want > 0")
	case cfg.Runs < 1:
		return cfg, usageErr("--runs %d: want ≥ 1", cfg.Runs)
	}
	if f := c.String("faults"); f != "" {
		for _, k := range strings.Split(f, ",") {
			k = strings.TrimSpace(k)
			switch {
			case k == "":
			case !slices.Contains(nemAllFaults, k):
				return cfg, usageErr("--faults: unknown fault %q (want %s)", k, strings.Join(nemAllFaults, ", "))
			case k == faultBridge && cfg.Nodes < 3:
				return cfg, usageErr("--faults bridge needs at least 3 nodes")
			case !slices.Contains(cfg.Faults, k):
				cfg.Faults = append(cfg.Faults, k)
			}
		}
		if len(cfg.Faults) == 0 {
			return cfg, usageErr("--faults: none given")
		}
	} else {
		for _, k := range nemAllFaults {
			if k != faultBridge || cfg.Nodes >= 3 {
				cfg.Faults = append(cfg.Faults, k)
			}
		}
	}
	return cfg, nil
}

// nemFault is one fault of the schedule: planned (kind, nodes, times) and
// as run (started, undone, error). Node indices count from 0.
type nemFault struct {
	Kind string `json:"kind"`
	// At and For are the planned start (seconds since the workload
	// started) and length.
	At  float64 `json:"at_s"`
	For float64 `json:"for_s"`
	// Silent: the cut drops packets in transit (senders time out) rather
	// than failing senders at once.
	Silent bool `json:"silent,omitempty"`
	// Groups are a partition's sides; nodes in none (a bridge) reach
	// everyone.
	Groups [][]int `json:"groups,omitempty"`
	// Cuts are the pairs cut both ways (majority-ring).
	Cuts [][2]int `json:"cuts,omitempty"`
	// Node is the node a kill, pause or clock fault hits.
	Node *int `json:"node,omitempty"`
	// ClockOffset is the clock fault's offset.
	ClockOffset string `json:"clock_offset,omitempty"`

	Started float64 `json:"started_s,omitempty"`
	Undone  float64 `json:"undone_s,omitempty"`
	Err     string  `json:"error,omitempty"`

	offset time.Duration
}

// String describes the fault in a few words.
func (f *nemFault) String() string {
	var s string
	switch {
	case f.Node != nil:
		s = fmt.Sprintf("%s node %d", f.Kind, *f.Node)
		if f.ClockOffset != "" {
			s += " by " + f.ClockOffset
		}
	case f.Cuts != nil:
		s = fmt.Sprintf("%s cuts %v", f.Kind, f.Cuts)
	default:
		s = fmt.Sprintf("%s %v", f.Kind, f.Groups)
	}
	if f.Silent {
		s += " (silent)"
	}
	return s
}

// planNemesis draws the schedule: a healthy start of half an interval, then
// faults of 0.5–1.5 intervals each followed by a healthy gap of 0.25–0.75
// intervals, until duration. It depends only on its arguments.
func planNemesis(seed uint64, duration, interval time.Duration, nodes int, kinds []string) []nemFault {
	rng := rand.New(rand.NewPCG(seed, 0x6e656d65736973))
	var out []nemFault
	at := interval / 2
	for at < duration {
		length := min(time.Duration((0.5+rng.Float64())*float64(interval)), duration-at)
		gap := time.Duration((0.25 + 0.5*rng.Float64()) * float64(interval))
		kind := kinds[rng.IntN(len(kinds))]
		perm := rng.Perm(nodes)
		silent := rng.IntN(2) == 0
		offset := nemClockOffsets[rng.IntN(len(nemClockOffsets))]
		if length < 100*time.Millisecond {
			break
		}
		f := nemFault{Kind: kind, At: at.Seconds(), For: length.Seconds()}
		sorted := func(x []int) []int { x = slices.Clone(x); slices.Sort(x); return x }
		switch kind {
		case faultHalves:
			h := (nodes + 1) / 2
			f.Groups, f.Silent = [][]int{sorted(perm[:h]), sorted(perm[h:])}, silent
		case faultIsolate:
			f.Groups, f.Silent = [][]int{{perm[0]}, sorted(perm[1:])}, silent
		case faultBridge:
			h := 1 + (nodes-1)/2
			f.Groups, f.Silent = [][]int{sorted(perm[1:h]), sorted(perm[h:])}, silent
		case faultRing:
			f.Cuts, f.Silent = majorityRing(perm), silent
		case faultKill, faultPause:
			f.Node = &perm[0]
		case faultClock:
			f.Node, f.offset, f.ClockOffset = &perm[0], offset, offset.String()
		}
		out = append(out, f)
		at += length + gap
	}
	return out
}

// majorityRing returns the pairs to cut so that every node, on a ring in
// the order of ring, sees a majority of the nodes (itself and its nearest
// neighbours both ways) but each node a different majority. With three or
// fewer nodes every node already sees a majority of neighbours, so one
// pair is cut (each node still sees a majority, no two the same).
func majorityRing(ring []int) [][2]int {
	n := len(ring)
	m := n/2 + 1 // a majority
	k := m / 2   // neighbours each way: 1+2k ≥ m
	var cuts [][2]int
	for i := range n {
		for j := i + 1; j < n; j++ {
			if d := min(j-i, n-(j-i)); d > k {
				a, b := min(ring[i], ring[j]), max(ring[i], ring[j])
				cuts = append(cuts, [2]int{a, b})
			}
		}
	}
	if len(cuts) == 0 && n >= 2 {
		cuts = [][2]int{{min(ring[0], ring[1]), max(ring[0], ring[1])}}
	}
	slices.SortFunc(cuts, func(a, b [2]int) int {
		if a[0] != b[0] {
			return a[0] - b[0]
		}
		return a[1] - b[1]
	})
	return cuts
}

// nemCluster is a cluster the nemesis can also crash, pause and skew.
type nemCluster interface {
	phCluster
	// Cut cuts both directions of every pair.
	Cut(silent bool, pairs [][2]int) error
	// Crash stops node i at once (netns: SIGKILL).
	Crash(i int) error
	// Restart starts a crashed node i again on the same data, with the
	// clock offset set last.
	Restart(i int) error
	// Pause and Resume freeze and thaw node i.
	Pause(i int) error
	Resume(i int) error
	// SetClockOffset sets the offset of node i's clock from its next
	// Restart on.
	SetClockOffset(i int, d time.Duration)
}

// nemOffsets are the nodes' clock offsets, read at every (re)start.
type nemOffsets struct {
	mu  sync.Mutex
	off []time.Duration
}

func (o *nemOffsets) set(i int, d time.Duration) { o.mu.Lock(); o.off[i] = d; o.mu.Unlock() }
func (o *nemOffsets) get(i int) time.Duration    { o.mu.Lock(); defer o.mu.Unlock(); return o.off[i] }

// nemInproc emulates the process faults in process: Crash cuts the node
// from every other (failing senders at once, as a dead process's closed
// ports do) and closes it without a leave; Restart heals the network and
// reopens it on the same data directory and addresses. Close syncs and
// closes pebble, so unlike kill -9 nothing unsynced is lost (acknowledged
// writes are synced anyway). Pause cuts it silently (packets dropped, peers
// time out) while its client API still answers.
type nemInproc struct {
	*inprocCluster
	clocks *nemOffsets
}

func (c *nemInproc) Cut(silent bool, pairs [][2]int) error {
	c.net.SetSilent(silent)
	for _, p := range pairs {
		a, b := c.hosts[p[0]], c.hosts[p[1]]
		c.net.Cut(a, b)
		c.net.Cut(b, a)
	}
	return nil
}

func (c *nemInproc) Crash(i int) error {
	c.net.SetSilent(false)
	c.net.Isolate(c.hosts[i])
	return c.c.stop(i)
}

func (c *nemInproc) Restart(i int) error {
	c.net.Heal()
	off := c.clocks.get(i)
	return c.c.reopen(i, func(cfg *node.Config) { cfg.ClockOffset = off })
}

func (c *nemInproc) Pause(i int) error {
	c.net.SetSilent(true)
	c.net.Isolate(c.hosts[i])
	return nil
}

func (c *nemInproc) Resume(int) error {
	c.net.Heal()
	return nil
}

func (c *nemInproc) SetClockOffset(i int, d time.Duration) { c.clocks.set(i, d) }

// nemNetns signals the agents: SIGKILL, SIGSTOP, SIGCONT.
type nemNetns struct {
	*netnsCluster
	clocks *nemOffsets
}

func (c *nemNetns) Cut(silent bool, pairs [][2]int) error {
	for _, p := range pairs {
		if err := c.c.Cut(p[0], p[1], silent); err != nil {
			return err
		}
		if err := c.c.Cut(p[1], p[0], silent); err != nil {
			return err
		}
	}
	return nil
}

func (c *nemNetns) Crash(i int) error                     { return c.c.Kill(i, syscall.SIGKILL) }
func (c *nemNetns) Restart(i int) error                   { return c.c.Restart(i) }
func (c *nemNetns) Pause(i int) error                     { return c.c.Kill(i, syscall.SIGSTOP) }
func (c *nemNetns) Resume(i int) error                    { return c.c.Kill(i, syscall.SIGCONT) }
func (c *nemNetns) SetClockOffset(i int, d time.Duration) { c.clocks.set(i, d) }

// clockArgs is netns.Options.AgentArgsFor for the offsets.
func (o *nemOffsets) clockArgs(i int) []string {
	if d := o.get(i); d != 0 {
		return []string{"--clock-offset", d.String()}
	}
	return nil
}

// nemOps counts the workload's writes.
type nemOps struct {
	Attempted    int                    `json:"attempted"`
	Acknowledged int                    `json:"acknowledged"`
	Failed       int                    `json:"failed"` // not acknowledged: errors and timeouts (indeterminate, never lost)
	ByKind       map[string]*nemOpCount `json:"by_kind"`
	FailedBy     map[string]int         `json:"failed_by"`
	// ReadsFailed counts read-modify-writes and deletes not sent because
	// their read failed.
	ReadsFailed int `json:"reads_failed"`
}

type nemOpCount struct {
	Attempted    int `json:"attempted"`
	Acknowledged int `json:"acknowledged"`
	Failed       int `json:"failed"`
}

// nemResult is one run's report.
type nemResult struct {
	Seed      uint64     `json:"seed"`
	DurationS float64    `json:"duration_s"`
	Mode      string     `json:"mode"`
	Nodes     int        `json:"nodes"`
	N         int        `json:"n"`
	Faults    []nemFault `json:"faults"`
	Ops       nemOps     `json:"ops"`
	Keys      int        `json:"keys"` // distinct keys written

	// Every acknowledged write is present, superseded (by an acknowledged
	// write whose context covered its dot; superseded_by_unacked: only by
	// a write whose acknowledgement was lost but which landed) or lost.
	Present             int `json:"present"`
	Superseded          int `json:"superseded"`
	SupersededByUnacked int `json:"superseded_by_unacked"`
	Lost                int `json:"lost"`
	// Resurrected counts live values that an acknowledged write's context
	// covered (a deleted or overwritten value back).
	Resurrected int `json:"resurrected"`
	// DotReuse: dots naming two different writes; UndeterminedDots:
	// acknowledgements whose context names no single new dot.
	DotReuse         int `json:"dot_reuse"`
	UndeterminedDots int `json:"undetermined_dots"`
	// Diverged: keys whose replicas still differed at the end;
	// ReadMismatch: keys whose r=all read disagreed with them;
	// ReadErrors: keys whose r=all read failed.
	Diverged     int `json:"diverged"`
	ReadMismatch int `json:"read_mismatch"`
	ReadErrors   int `json:"read_errors"`
	// Converged: within --settle-timeout of the final heal every node saw
	// every other alive, every pair agreed on the ranges it shares, no
	// hint was pending and every key's replicas held identical states.
	Converged         bool     `json:"converged"`
	HealToMembershipS *float64 `json:"heal_to_membership_s"`
	HealToConvergedS  *float64 `json:"heal_to_converged_s"`
	// Why says what was not yet in sync when the settle timeout ran out.
	Why string `json:"why,omitempty"`

	Samples  []string `json:"samples,omitempty"`
	OK       bool     `json:"ok"`
	Seconds  float64  `json:"seconds"`  // the whole run, start to verdict
	Restarts int      `json:"restarts"` // nodes restarted (kill and clock faults)
}

// nemReport is what --json writes with --runs > 1: the runs and their
// totals.
type nemReport struct {
	Environment environment `json:"environment"`
	Config      nemConfig   `json:"config"`
	Runs        []nemResult `json:"runs"`
	Passed      int         `json:"passed"`
	FailedSeed  *uint64     `json:"failed_seed,omitempty"`
	Ops         nemOps      `json:"ops"`
	Present     int         `json:"present"`
	Superseded  int         `json:"superseded"`
	Lost        int         `json:"lost"`
	Resurrected int         `json:"resurrected"`
	Converged   bool        `json:"converged"` // every run converged
	Seconds     float64     `json:"seconds"`
}

// nemSingle is what --json writes for one run.
type nemSingle struct {
	Environment environment `json:"environment"`
	Config      nemConfig   `json:"config"`
	nemResult
}

var errNemesis = errors.New("bench: nemesis")

func runNemesis(c *cli.Context) error {
	cfg, err := parseNemConfig(c)
	if err != nil {
		return err
	}
	if err := checkOutputs(c.String("json")); err != nil {
		return err
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return usageErr("--log-level: %v", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	out, logw := c.App.Writer, c.App.ErrWriter
	bin := c.String("binary")
	if cfg.Mode == "netns" {
		if err := netns.Available(); err != nil {
			return fmt.Errorf("%w needs root and iproute2 (network namespaces, veth pairs, routes): %v; "+
				"run it as root, or use --mode inproc", errNetns, err)
		}
		if bin == "" {
			tmp, err := os.MkdirTemp("", "rumor-nemesis-")
			if err != nil {
				return fmt.Errorf("%w: %v", errNemesis, err)
			}
			defer os.RemoveAll(tmp)
			bin = filepath.Join(tmp, "rumor")
			fmt.Fprintln(logw, "nemesis: building cli/rumor")
			if err := buildRumor(ctx, bin); err != nil {
				return fmt.Errorf("%w: %v", errNemesis, err)
			}
		}
	}
	rep := &nemReport{Environment: currentEnvironment(c), Config: cfg, Converged: true}
	start := time.Now()
	var runErr error
	for k := range cfg.Runs {
		seed := cfg.Seed + uint64(k)
		res, err := runNemesisOnce(ctx, cfg, seed, lv, bin, out, logw)
		if err != nil {
			runErr = fmt.Errorf("%w: seed %d: %v", errNemesis, seed, err)
			rep.FailedSeed = &seed
			break
		}
		rep.Runs = append(rep.Runs, *res)
		nemAddOps(&rep.Ops, &res.Ops)
		rep.Present += res.Present
		rep.Superseded += res.Superseded + res.SupersededByUnacked
		rep.Lost += res.Lost
		rep.Resurrected += res.Resurrected
		rep.Converged = rep.Converged && res.Converged
		if !res.OK {
			rep.FailedSeed = &seed
			break
		}
		rep.Passed++
	}
	rep.Seconds = time.Since(start).Seconds()
	if cfg.Runs > 1 {
		fmt.Fprintf(out, "nemesis: %d of %d runs OK (seeds %d..%d); %d writes sent, %d acknowledged; %d present, %d superseded, %d lost, %d resurrected; %.0f s in all\n",
			rep.Passed, cfg.Runs, cfg.Seed, cfg.Seed+uint64(cfg.Runs)-1, rep.Ops.Attempted, rep.Ops.Acknowledged,
			rep.Present, rep.Superseded, rep.Lost, rep.Resurrected, rep.Seconds)
		if rep.FailedSeed != nil {
			fmt.Fprintf(out, "nemesis: stopped at seed %d\n", *rep.FailedSeed)
		}
		if err := writeJSON(c.String("json"), rep); err != nil {
			return err
		}
	} else if len(rep.Runs) == 1 {
		if err := writeJSON(c.String("json"), nemSingle{Environment: rep.Environment, Config: cfg, nemResult: rep.Runs[0]}); err != nil {
			return err
		}
	}
	if runErr != nil {
		return runErr
	}
	if rep.FailedSeed != nil {
		r := rep.Runs[len(rep.Runs)-1]
		return fmt.Errorf("%w: seed %d failed: %d lost, %d resurrected, converged %v, %d dots reused, %d undetermined, %d diverged, %d read mismatches, %d read errors",
			errNemesis, *rep.FailedSeed, r.Lost, r.Resurrected, r.Converged, r.DotReuse, r.UndeterminedDots, r.Diverged, r.ReadMismatch, r.ReadErrors)
	}
	return nil
}

func nemAddOps(dst, src *nemOps) {
	if dst.ByKind == nil {
		dst.ByKind, dst.FailedBy = map[string]*nemOpCount{}, map[string]int{}
	}
	dst.Attempted += src.Attempted
	dst.Acknowledged += src.Acknowledged
	dst.Failed += src.Failed
	dst.ReadsFailed += src.ReadsFailed
	for k, v := range src.ByKind {
		d := dst.ByKind[k]
		if d == nil {
			d = &nemOpCount{}
			dst.ByKind[k] = d
		}
		d.Attempted += v.Attempted
		d.Acknowledged += v.Acknowledged
		d.Failed += v.Failed
	}
	for k, v := range src.FailedBy {
		dst.FailedBy[k] += v
	}
}

// runNemesisOnce starts a cluster, runs one seed against it and removes it.
func runNemesisOnce(ctx context.Context, cfg nemConfig, seed uint64, lv slog.Level, bin string, out, logw io.Writer) (*nemResult, error) {
	t0 := time.Now()
	clocks := &nemOffsets{off: make([]time.Duration, cfg.Nodes)}
	o := phClusterOptions{
		Nodes: cfg.Nodes, N: cfg.N, NoSync: !cfg.Sync, Hints: true, LogLevel: lv,
		Conns: cfg.Clients + 4*cfg.Nodes + 16, Log: logw, Binary: bin, AgentArgsFor: clocks.clockArgs,
	}
	var cl nemCluster
	if cfg.Mode == "netns" {
		nc, err := startNetns(ctx, o)
		if err != nil {
			return nil, err
		}
		cl = &nemNetns{netnsCluster: nc, clocks: clocks}
	} else {
		ic, err := startInproc(o)
		if err != nil {
			return nil, err
		}
		cl = &nemInproc{inprocCluster: ic, clocks: clocks}
	}
	defer func() {
		if err := cl.Close(); err != nil {
			fmt.Fprintf(logw, "nemesis: cleanup: %v\n", err)
		}
	}()
	r := &nemRun{cfg: cfg, seed: seed, cl: cl, out: out, res: &nemResult{Seed: seed, Mode: cfg.Mode, Nodes: cfg.Nodes, N: cfg.N},
		down: make([]bool, cfg.Nodes), paused: make([]bool, cfg.Nodes)}
	r.ph = newPHRun(phConfig{Mode: cfg.Mode, Seed: seed, Concurrency: 16, timeout: cfg.settle}, cl, out, &phResult{})
	if err := r.run(ctx); err != nil {
		return nil, err
	}
	r.res.Seconds = time.Since(t0).Seconds()
	printNemesis(out, r.res)
	return r.res, nil
}

// nemRun is one run: the cluster, the workload's record and the faults.
type nemRun struct {
	cfg  nemConfig
	seed uint64
	cl   nemCluster
	ph   *phRun // the partition-heal scenario's view of the cluster: ring, statuses, states
	out  io.Writer
	res  *nemResult

	start  time.Time // the workload's start
	stop   atomic.Bool
	down   []bool // crashed, by node (the nemesis goroutine's)
	paused []bool
}

func (r *nemRun) say(format string, args ...any) { fmt.Fprintf(r.out, format+"\n", args...) }

func (r *nemRun) run(ctx context.Context) error {
	if err := r.ph.discover(ctx); err != nil {
		return err
	}
	sched := planNemesis(r.seed, r.cfg.duration, r.cfg.interval, r.cfg.Nodes, r.cfg.Faults)
	r.say("nemesis: %s, %d nodes (N=%d), %d clients on %d keys for %v, %d faults from {%s} every ~%v, seed %d",
		r.cfg.Mode, r.cfg.Nodes, r.cfg.N, r.cfg.Clients, r.cfg.Keys, r.cfg.duration, len(sched),
		strings.Join(r.cfg.Faults, ","), r.cfg.interval, r.seed)

	r.start = time.Now()
	ops := make([][]crashOp, r.cfg.Clients)
	reads := make([]int, r.cfg.Clients)
	var wg sync.WaitGroup
	for w := range r.cfg.Clients {
		wg.Go(func() { ops[w], reads[w] = r.client(ctx, w) })
	}
	nemErr := r.nemesis(ctx, sched)
	r.stop.Store(true)
	wg.Wait()
	r.res.Faults = sched
	r.res.DurationS = time.Since(r.start).Seconds()
	// The final heal: whatever is still broken (after an error) is undone.
	healErr := r.healAll()
	if err := errors.Join(nemErr, healErr); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	healAt := time.Now()

	var all []crashOp
	for w, o := range ops {
		all = append(all, o...)
		r.res.Ops.ReadsFailed += reads[w]
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
	r.say("workload: %d writes sent to %d keys in %.1f s; healed, waiting for the replicas to agree", len(all), len(keyList), r.res.DurationS)

	finals, err := r.settle(ctx, healAt, keyList)
	if err != nil {
		return err
	}
	r.finalReads(ctx, keyList, finals)
	r.res.check(all, finals)
	return nil
}

// check classifies the run's writes against the final states with the
// crash benchmark's checker and sets the counts and the verdict (after
// settle has set Converged). Writes may be forwarded between nodes, so dots
// are not attributed to nodes: no per-node counter checks.
func (res *nemResult) check(all []crashOp, finals map[string]*crashFinal) {
	facts := &crashFacts{Ops: all, Final: finals, Actors: map[crdt.ActorID]int{}}
	var cres crashResult
	analyzeCrash(facts, &cres)
	res.Ops.Attempted, res.Ops.Acknowledged, res.Ops.Failed, res.Ops.FailedBy = cres.Attempted, cres.Acked, cres.Failed, cres.FailedBy
	res.Ops.ByKind = map[string]*nemOpCount{}
	for _, o := range all {
		k := res.Ops.ByKind[o.Kind]
		if k == nil {
			k = &nemOpCount{}
			res.Ops.ByKind[o.Kind] = k
		}
		k.Attempted++
		if o.Acked {
			k.Acknowledged++
		} else {
			k.Failed++
		}
	}
	res.Keys = cres.Keys
	res.Present, res.Superseded, res.SupersededByUnacked, res.Lost = cres.Present, cres.Superseded, cres.SupersededByUnacked, cres.Lost
	res.Resurrected, res.DotReuse, res.UndeterminedDots = cres.Resurrected, cres.DotReuse, cres.UndeterminedDots
	res.Diverged, res.ReadMismatch, res.ReadErrors = cres.Diverged, cres.ReadMismatch, cres.ReadErrors
	res.Samples = cres.Samples
	res.OK = cres.OK && res.Converged
}

// nemesis runs the schedule, undoing every fault before the next starts
// and the one in progress when the duration ends.
func (r *nemRun) nemesis(ctx context.Context, sched []nemFault) error {
	end := r.start.Add(r.cfg.duration)
	for i := range sched {
		f := &sched[i]
		if err := sleepCtx(ctx, time.Until(r.start.Add(time.Duration(f.At*float64(time.Second))))); err != nil {
			return err
		}
		f.Started = time.Since(r.start).Seconds()
		err := r.apply(f)
		if err == nil {
			until := r.start.Add(time.Duration((f.At + f.For) * float64(time.Second)))
			if end.Before(until) {
				until = end
			}
			err = sleepCtx(ctx, time.Until(until))
		}
		if uerr := r.undo(f); uerr != nil {
			err = errors.Join(err, uerr)
		}
		f.Undone = time.Since(r.start).Seconds()
		if err != nil {
			f.Err = err.Error()
			return fmt.Errorf("fault %d (%s): %w", i, f, err)
		}
		r.say("  %5.1f–%5.1f s  %s", f.Started, f.Undone, f)
	}
	return sleepCtx(ctx, time.Until(end))
}

func (r *nemRun) apply(f *nemFault) error {
	switch f.Kind {
	case faultHalves, faultIsolate, faultBridge:
		return r.cl.Partition(f.Silent, f.Groups...)
	case faultRing:
		return r.cl.Cut(f.Silent, f.Cuts)
	case faultKill:
		r.down[*f.Node] = true
		return r.cl.Crash(*f.Node)
	case faultPause:
		r.paused[*f.Node] = true
		return r.cl.Pause(*f.Node)
	case faultClock:
		r.cl.SetClockOffset(*f.Node, f.offset)
		r.down[*f.Node] = true
		if err := r.cl.Crash(*f.Node); err != nil {
			return err
		}
		r.res.Restarts++
		if err := r.cl.Restart(*f.Node); err != nil {
			return err
		}
		r.down[*f.Node] = false
		return nil
	}
	return fmt.Errorf("unknown fault %q", f.Kind)
}

func (r *nemRun) undo(f *nemFault) error {
	switch f.Kind {
	case faultClock:
		r.cl.SetClockOffset(*f.Node, 0)
		r.down[*f.Node] = true
		if err := r.cl.Crash(*f.Node); err != nil {
			return err
		}
	}
	return r.healAll()
}

// healAll restarts crashed nodes, resumes paused ones and removes every
// cut.
func (r *nemRun) healAll() error {
	var errs []error
	for i := range r.down {
		if r.paused[i] {
			errs = append(errs, r.cl.Resume(i))
			r.paused[i] = false
		}
		if r.down[i] {
			if err := r.cl.Restart(i); err != nil {
				errs = append(errs, err)
				continue
			}
			r.res.Restarts++
			r.down[i] = false
		}
	}
	errs = append(errs, r.cl.Heal())
	return errors.Join(errs...)
}

// nemKey names key number i of the workload.
func nemKey(i int) string { return fmt.Sprintf("nem-%05d", i) }

// client is one client of the workload: until the run stops, it sends one
// request at a time to a random node. It returns its writes and how many
// read-modify-writes or deletes it dropped because their read failed.
func (r *nemRun) client(ctx context.Context, w int) (ops []crashOp, readsFailed int) {
	rng := rand.New(rand.NewPCG(r.seed, uint64(w)+1))
	for seq := 0; !r.stop.Load() && ctx.Err() == nil; seq++ {
		nd := rng.IntN(len(r.ph.kv))
		kv := r.ph.kv[nd]
		op := crashOp{Node: nd, SentFrom: -1, Key: nemKey(rng.IntN(r.cfg.Keys))}
		switch p := rng.Float64(); {
		case p < 0.5:
			op.Kind = opBlind
		case p < 0.85:
			op.Kind = opReadOverwrite
		default:
			op.Kind, op.Delete = opDelete, true
		}
		if op.Kind != opBlind {
			cctx, cancel := context.WithTimeout(ctx, r.cfg.opTimeout)
			v, err := kv.Get(cctx, op.Key, nil)
			cancel()
			if err != nil && !errors.Is(err, client.ErrNotFound) {
				readsFailed++
				_ = sleepCtx(ctx, time.Duration(5+rng.IntN(20))*time.Millisecond)
				continue
			}
			op.Sent = v.Context
		}
		if !op.Delete {
			op.Value = fmt.Sprintf("c%02d.%07d", w, seq)
		}
		wo := &client.WriteOptions{Context: op.Sent}
		cctx, cancel := context.WithTimeout(ctx, r.cfg.opTimeout)
		op.Start = time.Now()
		var ack string
		var err error
		if op.Delete {
			ack, err = kv.Delete(cctx, op.Key, wo)
		} else {
			ack, err = kv.Put(cctx, op.Key, []byte(op.Value), wo)
		}
		op.End = time.Now()
		cancel()
		if err == nil {
			op.Acked, op.Ack = true, ack
		} else {
			op.Err = crashErrKind(err)
		}
		ops = append(ops, op)
		if err != nil {
			_ = sleepCtx(ctx, time.Duration(5+rng.IntN(20))*time.Millisecond)
		}
	}
	return ops, readsFailed
}

// settle waits until one membership, every pair of nodes in sync and no
// hint pending, and every key's replicas identical, or the settle timeout;
// it returns every key's final state (the join of its replicas').
func (r *nemRun) settle(ctx context.Context, healAt time.Time, keys []string) (map[string]*crashFinal, error) {
	deadline := healAt.Add(r.cfg.settle)
	all := make([][]int, r.cfg.Nodes)
	for i := range all {
		for j := range r.cfg.Nodes {
			all[i] = append(all[i], j)
		}
	}
	replicas := make([][]int, len(keys))
	for k, key := range keys {
		replicas[k] = r.ph.replicasOf(key)
	}
	why := "no status yet"
	for {
		last := time.Now().After(deadline)
		if r.res.HealToMembershipS == nil {
			if views, err := r.ph.alive(ctx); err == nil && r.ph.sees(views, all) {
				t := time.Since(healAt).Seconds()
				r.res.HealToMembershipS = &t
			} else if err != nil {
				why = err.Error()
			} else {
				why = "not every node sees every other alive"
			}
		}
		inSync := false
		if r.res.HealToMembershipS != nil {
			if sts, err := r.ph.statuses(ctx); err != nil {
				why = err.Error()
			} else {
				inSync, why = phInSync(sts)
			}
		}
		if inSync || last {
			states, err := r.ph.fetchStates(ctx, keys, replicas, "final states")
			if err != nil {
				return nil, err
			}
			finals := map[string]*crashFinal{}
			same := true
			for k, key := range keys {
				f := &crashFinal{Diverged: !phAllEqual(states[k])}
				if f.Diverged {
					same = false
				}
				if f.State, err = phJoinStates(states[k]); err != nil {
					return nil, fmt.Errorf("%w (key %q)", err, key)
				}
				finals[key] = f
			}
			if inSync && same {
				t := time.Since(healAt).Seconds()
				r.res.HealToConvergedS, r.res.Converged = &t, true
				return finals, nil
			}
			if last {
				if inSync {
					why = "every pair in sync, but some keys' replicas differ"
				}
				r.res.Why = why
				r.say("settle: NOT converged within %v: %s", r.cfg.settle, why)
				return finals, nil
			}
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

// finalReads reads every key with r=all, from the nodes in turn, into its
// final's Values (or ReadErr).
func (r *nemRun) finalReads(ctx context.Context, keys []string, finals map[string]*crashFinal) {
	var i atomic.Int64
	_ = crashParallel(ctx, keys, 16, func(key string) error {
		kv := r.ph.kv[int(i.Add(1))%len(r.ph.kv)]
		f := finals[key]
		var v *client.Value
		var err error
		for attempt := range 5 {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			v, err = kv.Get(cctx, key, &client.ReadOptions{R: "all"})
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

func printNemesis(w io.Writer, res *nemResult) {
	kinds := make([]string, 0, 3)
	for _, k := range []string{opBlind, opReadOverwrite, opDelete} {
		c := res.Ops.ByKind[k]
		if c == nil {
			c = &nemOpCount{}
		}
		kinds = append(kinds, fmt.Sprintf("%s %d/%d", strings.ReplaceAll(k, "_", "-"), c.Acknowledged, c.Attempted))
	}
	fmt.Fprintf(w, "ops: %d writes sent, %d acknowledged (%s), %d not acknowledged, %d read-modify-writes or deletes dropped after a failed read\n",
		res.Ops.Attempted, res.Ops.Acknowledged, strings.Join(kinds, ", "), res.Ops.Failed, res.Ops.ReadsFailed)
	if len(res.Ops.FailedBy) > 0 {
		var fb []string
		for _, k := range phSortedKeys(res.Ops.FailedBy) {
			fb = append(fb, fmt.Sprintf("%s ×%d", k, res.Ops.FailedBy[k]))
		}
		fmt.Fprintf(w, "not acknowledged: %s\n", strings.Join(fb, ", "))
	}
	fmt.Fprintf(w, "faults: %d run, %d restarts; heal → one membership %s, → identical replicas %s\n",
		len(res.Faults), res.Restarts, phSecs(res.HealToMembershipS), phSecs(res.HealToConvergedS))
	fmt.Fprintf(w, "check: %d keys; acknowledged writes %d present, %d superseded, %d superseded by unacknowledged writes, %d LOST; "+
		"%d resurrected, %d dots reused, %d undetermined, %d diverged, %d read mismatches, %d read errors\n",
		res.Keys, res.Present, res.Superseded, res.SupersededByUnacked, res.Lost, res.Resurrected, res.DotReuse,
		res.UndeterminedDots, res.Diverged, res.ReadMismatch, res.ReadErrors)
	for _, s := range res.Samples {
		fmt.Fprintf(w, "  %s\n", s)
	}
	verdict := "OK"
	if !res.OK {
		verdict = "FAILED"
	}
	conv := "converged in " + phSecs(res.HealToConvergedS)
	if !res.Converged {
		conv = "NOT converged (" + res.Why + ")"
	}
	fmt.Fprintf(w, "nemesis: %s seed %d: %d lost, %d resurrected, %s, %d ops in %.1f s\n",
		verdict, res.Seed, res.Lost, res.Resurrected, conv, res.Ops.Attempted, res.Seconds)
}
