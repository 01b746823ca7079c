package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
)

func partitionHealCommand() *cli.Command {
	return &cli.Command{
		Name:  "partition-heal",
		Usage: "cut a loaded cluster in two, write on both sides, heal, and measure how fast and how cheaply it converges",
		Description: "Preloads --keys keys (w=all) and waits until every replica agrees; cuts the network by\n" +
			"--shape; --writers per side each write --diverge keys per side in all (half overwrites of\n" +
			"preloaded keys, --overlap of them the same keys on both sides, half new keys; --deletes\n" +
			"deletes with context on side A); snapshots every written key on its replicas; heals; polls\n" +
			"every --poll (50 ms) until one membership and until every pair of nodes agrees on the ranges it\n" +
			"shares with no hint pending; then checks every acknowledged write and delete and a sample\n" +
			"of the preloaded keys. Exits non-zero when an acknowledged write is lost or the replicas do\n" +
			"not converge within --converge-timeout.\n\n" +
			"--mode netns (root): real `rumor agent` processes in network namespaces (bench/netns),\n" +
			"cut by blackhole routes. --mode inproc: nodes in this process on node.FaultNetwork.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "mode", Value: "inproc", Usage: "inproc (nodes in this process, fault-injecting network) or netns (agent processes in network namespaces; root)"},
			&cli.IntFlag{Name: "nodes", Value: 5, Usage: "cluster size"},
			&cli.IntFlag{Name: "n", Value: 3, Usage: "replication factor"},
			&cli.IntFlag{Name: "keys", Value: 1_000_000, Usage: "keys preloaded before the cut"},
			&cli.IntFlag{Name: "value-size", Value: 100, Usage: "value size in bytes"},
			&cli.IntFlag{Name: "diverge", Value: 10_000, Usage: "keys written on each side during the partition"},
			&cli.Float64Flag{Name: "overlap", Value: 0.5, Usage: "share of each side's overwrites that hit keys the other side overwrites too (concurrent siblings)"},
			&cli.IntFlag{Name: "deletes", Value: 100, Usage: "preloaded keys deleted with their context on side A (keys nobody else writes)"},
			&cli.StringFlag{Name: "shape", Value: "halves", Usage: "halves (first ⌈n/2⌉ | rest), isolate-one (node 0 | rest) or bridge (A | B, with a middle node reaching both)"},
			&cli.IntFlag{Name: "writers", Value: 8, Usage: "concurrent writers per side"},
			&cli.IntFlag{Name: "concurrency", Value: 64, Usage: "concurrent requests of the preload and of the state snapshots"},
			&cli.StringFlag{Name: "preload-w", Value: "all", Usage: "write quorum of the preload"},
			&cli.BoolFlag{Name: "silent", Usage: "cuts drop packets in transit (senders see timeouts) instead of failing senders at once"},
			&cli.DurationFlag{Name: "settle", Usage: "after the cut, wait this long instead of until each side sees only itself (bridge: default 5s)"},
			&cli.DurationFlag{Name: "quiesce", Value: time.Second, Usage: "pause between the last write and the snapshot"},
			&cli.DurationFlag{Name: "converge-timeout", Value: time.Minute, Usage: "give up waiting for convergence (and fail) after this long from the heal; also bounds the preload's sync and the split"},
			&cli.DurationFlag{Name: "poll", Value: healPollInterval, Usage: "how often the heal polls every node's /v1/members and /v1/status (each status costs the node a hash of every range it shares, ~2 ms of CPU at a million keys)"},
			&cli.IntFlag{Name: "check-sample", Value: 10_000, Usage: "preloaded keys checked after the heal"},
			&cli.BoolFlag{Name: "hints", Value: true, Usage: "hinted handoff (inproc only; the agent has no flag to turn it off)"},
			&cli.BoolFlag{Name: "no-sync", Usage: "nodes do not fsync (default: every acknowledged write is durable)"},
			&cli.StringFlag{Name: "dir", Usage: "directory for the nodes' data (default: a new temporary directory, removed after)"},
			&cli.StringFlag{Name: "binary", Usage: "netns: a built rumor binary (default: go build ./cli/rumor into a temporary directory)"},
			&cli.StringFlag{Name: "log-level", Value: "error", Usage: "nodes' log level: debug, info, warn, error"},
			&cli.StringFlag{Name: "cpuprofile", Usage: "inproc: write a CPU profile of the heal (heal to convergence) to `FILE`"},
			seedFlag(),
			jsonFlag(),
			plotFlag("divergent keys and per-side throughput over time"),
		},
		Action: runPartitionHeal,
	}
}

// Shapes of the cut.
const (
	shapeHalves  = "halves"
	shapeIsolate = "isolate-one"
	shapeBridge  = "bridge"
)

// phConfig is the parsed command line, reported with the results.
type phConfig struct {
	Mode            string  `json:"mode"`
	Nodes           int     `json:"nodes"`
	N               int     `json:"n"`
	Keys            int     `json:"keys"`
	ValueSize       int     `json:"value_size"`
	Diverge         int     `json:"diverge_per_side"`
	Overlap         float64 `json:"overlap"`
	Deletes         int     `json:"deletes"`
	Shape           string  `json:"shape"`
	Writers         int     `json:"writers_per_side"`
	Concurrency     int     `json:"concurrency"`
	PreloadW        string  `json:"preload_w"`
	Silent          bool    `json:"silent"`
	Settle          string  `json:"settle,omitempty"`
	Quiesce         string  `json:"quiesce"`
	ConvergeTimeout string  `json:"converge_timeout"`
	Poll            string  `json:"poll"`
	CheckSample     int     `json:"check_sample"`
	Hints           bool    `json:"hints"`
	Sync            bool    `json:"fsync"`
	Seed            uint64  `json:"seed"`

	settle, quiesce, timeout, poll time.Duration
	profile                        string
}

func parsePHConfig(c *cli.Context) (phConfig, error) {
	cfg := phConfig{
		Mode: c.String("mode"), Nodes: c.Int("nodes"), N: c.Int("n"), Keys: c.Int("keys"),
		ValueSize: c.Int("value-size"), Diverge: c.Int("diverge"), Overlap: c.Float64("overlap"),
		Deletes: c.Int("deletes"), Shape: c.String("shape"), Writers: c.Int("writers"),
		Concurrency: c.Int("concurrency"), PreloadW: c.String("preload-w"), Silent: c.Bool("silent"),
		CheckSample: c.Int("check-sample"), Hints: c.Bool("hints"), Sync: !c.Bool("no-sync"),
		Seed: c.Uint64("seed"), settle: c.Duration("settle"), quiesce: c.Duration("quiesce"),
		timeout: c.Duration("converge-timeout"), poll: c.Duration("poll"), profile: c.String("cpuprofile"),
	}
	if cfg.Shape == shapeBridge && cfg.settle == 0 {
		cfg.settle = 5 * time.Second
	}
	if cfg.settle > 0 {
		cfg.Settle = cfg.settle.String()
	}
	cfg.Quiesce, cfg.ConvergeTimeout, cfg.Poll = cfg.quiesce.String(), cfg.timeout.String(), cfg.poll.String()
	half := cfg.Diverge / 2
	common := int(math.Round(float64(half) * cfg.Overlap))
	switch {
	case cfg.Mode != "inproc" && cfg.Mode != "netns":
		return cfg, usageErr("--mode %q: want inproc or netns", cfg.Mode)
	case cfg.Shape != shapeHalves && cfg.Shape != shapeIsolate && cfg.Shape != shapeBridge:
		return cfg, usageErr("--shape %q: want halves, isolate-one or bridge", cfg.Shape)
	case cfg.Nodes < 2 || cfg.Nodes > 64:
		return cfg, usageErr("--nodes %d: want 2..64", cfg.Nodes)
	case cfg.Shape == shapeBridge && cfg.Nodes < 3:
		return cfg, usageErr("--shape bridge needs at least 3 nodes")
	case cfg.N < 1 || cfg.N > cfg.Nodes:
		return cfg, usageErr("--n %d: want 1..nodes", cfg.N)
	case cfg.Keys < 1:
		return cfg, usageErr("--keys %d: want ≥ 1", cfg.Keys)
	case cfg.ValueSize < 0:
		return cfg, usageErr("--value-size %d: want ≥ 0", cfg.ValueSize)
	case cfg.Diverge < 0 || cfg.Deletes < 0:
		return cfg, usageErr("--diverge and --deletes: want ≥ 0")
	case !(cfg.Overlap >= 0 && cfg.Overlap <= 1):
		return cfg, usageErr("--overlap %g: want 0..1", cfg.Overlap)
	case common+2*(half-common)+cfg.Deletes > cfg.Keys:
		return cfg, usageErr("--keys %d: too few for %d overwrites per side (%d shared) and %d deletes",
			cfg.Keys, half, common, cfg.Deletes)
	case cfg.Writers < 1 || cfg.Concurrency < 1:
		return cfg, usageErr("--writers and --concurrency: want ≥ 1")
	case cfg.settle < 0 || cfg.quiesce < 0 || cfg.timeout <= 0 || cfg.poll <= 0:
		return cfg, usageErr("--settle and --quiesce want ≥ 0, --converge-timeout and --poll > 0")
	case cfg.CheckSample < 0:
		return cfg, usageErr("--check-sample %d: want ≥ 0", cfg.CheckSample)
	case cfg.Mode == "netns" && !cfg.Hints:
		return cfg, usageErr("--hints=false needs --mode inproc: the agent has no flag to turn hinted handoff off")
	case cfg.Mode == "netns" && cfg.profile != "":
		return cfg, usageErr("--cpuprofile needs --mode inproc (the agents are other processes)")
	}
	return cfg, nil
}

// phResult is what --json writes. Times in series are seconds since the
// cut (throughput) or since the heal (divergence).
type phResult struct {
	Environment environment `json:"environment"`
	Config      phConfig    `json:"config"`

	// Converged: within --converge-timeout every pair of nodes agreed on
	// the ranges it shares with no hint pending, and every written key's
	// replicas then held identical states.
	Converged bool `json:"converged"`
	// LostWrites counts acknowledged writes whose value is not among the
	// key's live values after the heal, acknowledged deletes whose key has
	// a live value again, and sampled preloaded keys without their value.
	LostWrites int `json:"lost_writes"`
	// HealToMembership and HealToConverged are seconds from the heal until
	// every node saw every node alive, and until convergence (null: not
	// within the timeout).
	HealToMembership *float64 `json:"heal_to_membership_s"`
	HealToConverged  *float64 `json:"heal_to_converged_s"`
	// HealToHashesAgree is when every pair of nodes first agreed on the
	// ranges it shares, HealToHintsDrained when no hint was pending any
	// more; convergence needs both at once.
	HealToHashesAgree  *float64 `json:"heal_to_hashes_agree_s"`
	HealToHintsDrained *float64 `json:"heal_to_hints_drained_s"`
	// HintsAtHeal is the hints pending on all nodes at the heal.
	HintsAtHeal int `json:"hints_at_heal"`
	// AEBytes is what anti-entropy put on the wire from the heal until
	// convergence: Σ over nodes of bytes sent + received by the calls each
	// node made.
	AEBytes uint64 `json:"ae_bytes"`
	// DivergedBytes is Σ len(key) + len(final state) over the (key,
	// replica) pairs whose state changed between the snapshot before the
	// heal and the end: what a perfect repair would have to move.
	DivergedBytes int64 `json:"diverged_bytes"`
	// KeysTransferred is the states anti-entropy received (Δ Σ
	// keys_pulled); KeysDiffering the (key, replica) pairs that changed.
	KeysTransferred uint64 `json:"keys_transferred"`
	KeysDiffering   int    `json:"keys_differing"`
	// OpsDuringPartition is per side: A, B.
	OpsDuringPartition map[string]*phSideOps `json:"ops_during_partition"`

	AEBytesPerDivergedByte      float64 `json:"ae_bytes_per_diverged_byte"`
	KeysTransferredPerDiffering float64 `json:"keys_transferred_per_differing"`
	// HintsDelivered and HintBytes are hinted handoff's share of the
	// repair (Δ over the same window); RepairBytes = AEBytes + HintBytes.
	HintsDelivered             uint64  `json:"hints_delivered"`
	HintBytes                  uint64  `json:"hint_bytes"`
	RepairBytes                uint64  `json:"repair_bytes"`
	RepairBytesPerDivergedByte float64 `json:"repair_bytes_per_diverged_byte"`
	// KeysRepaired is Δ keys_repaired (copies anti-entropy changed);
	// AESessions Δ sessions.
	KeysRepaired uint64 `json:"keys_repaired"`
	AESessions   uint64 `json:"ae_sessions"`
	// ReplicaMismatches counts checked keys whose replicas still held
	// different states at the end.
	ReplicaMismatches int `json:"replica_mismatches"`
	// SiblingsCreated counts written keys with more than one live value
	// after the heal (a write without context keeps what it overwrites).
	SiblingsCreated int          `json:"siblings_created"`
	Lost            phLostReport `json:"lost"`
	// Targets says which of the stated targets this run met.
	Targets map[string]bool `json:"targets"`

	Cut    phCut        `json:"cut"`
	Phases phTimings    `json:"phases"`
	CPU    phCPU        `json:"cpu"`
	Series []phDivPoint `json:"divergence_series"`
	// LoadAvg is /proc/loadavg (1, 5, 15 min) at the start and the end.
	LoadAvg [2][3]float64 `json:"loadavg"`
}

// phSideOps is what one side's writers did during the partition.
type phSideOps struct {
	Nodes     []string              `json:"nodes"`
	OK        int64                 `json:"ok"`
	Errors    int64                 `json:"errors"`
	OpsPerSec float64               `json:"ops_per_s"`
	Seconds   float64               `json:"seconds"`
	Deletes   int64                 `json:"deletes_ok"`
	ErrorKind map[string]*errorStat `json:"error_kinds,omitempty"`
	// Series is the acknowledged operations per second per 100 ms, t in
	// seconds since the cut; ErrorSeries the failed ones.
	Series      []rate `json:"throughput_series"`
	ErrorSeries []rate `json:"error_series,omitempty"`
}

type phLostReport struct {
	WritesChecked    int          `json:"writes_checked"`
	WritesLost       int          `json:"writes_lost"`
	DeletesChecked   int          `json:"deletes_checked"`
	DeletesLost      int          `json:"deletes_lost"`
	PreloadedChecked int          `json:"preloaded_checked"`
	PreloadedLost    int          `json:"preloaded_lost"`
	Examples         []phLostItem `json:"examples,omitempty"`
}

type phLostItem struct {
	Key    string `json:"key"`
	What   string `json:"what"`
	Value  string `json:"value,omitempty"`
	Values int    `json:"live_values"`
}

type phCut struct {
	Groups [][]string `json:"groups"`
	Bridge string     `json:"bridge,omitempty"`
	// HealAt is the heal, in seconds since the cut.
	HealAt float64 `json:"heal_at_s"`
}

type phTimings struct {
	PreloadSeconds    float64 `json:"preload_s"`
	PreloadPutsPerSec float64 `json:"preload_puts_per_s"`
	PreloadRetries    int64   `json:"preload_retries"`
	PreloadSyncSec    float64 `json:"preload_sync_s"`
	SplitSeconds      float64 `json:"split_s"`
	WriteSeconds      float64 `json:"write_s"`
	SnapshotSeconds   float64 `json:"snapshot_s"`
	CheckSeconds      float64 `json:"check_s"`
	TotalSeconds      float64 `json:"total_s"`
}

// phCPU is the CPU used from the heal until convergence: the bench
// process (inproc: nodes and bench), or the agents' summed
// process.cpu_seconds (netns).
type phCPU struct {
	HealSeconds float64 `json:"heal_seconds"`
	Source      string  `json:"source"`
	// OtherUserCores is the user CPU other processes used per second over
	// the same window (/proc/stat less the bench and, netns, the agents):
	// above ~0.1 something else ran and the heal figures are slow.
	OtherUserCores *float64 `json:"other_user_cores,omitempty"`
	Profile        string   `json:"profile,omitempty"`
}

// phDivPoint is one poll after the heal: the estimated (key, replica) pairs
// still differing, D0 − (Δ keys_pulled + Δ hints_delivered) clamped at 0,
// with D0 the exact count measured at the end; and the anti-entropy bytes
// so far.
type phDivPoint struct {
	T        float64 `json:"t"`
	Estimate int64   `json:"estimate"`
	Repaired uint64  `json:"repaired"`
	AEBytes  uint64  `json:"ae_bytes"`
	// HintsPending is the hints pending on all nodes together.
	HintsPending int `json:"hints_pending"`
}

var errPartitionHeal = errors.New("bench: partition-heal")

func runPartitionHeal(c *cli.Context) error {
	cfg, err := parsePHConfig(c)
	if err != nil {
		return err
	}
	if err := checkOutputs(c.String("json"), c.String("plot")); err != nil {
		return err
	}
	if cfg.profile != "" {
		if err := checkOutputs(cfg.profile); err != nil {
			return err
		}
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return usageErr("--log-level: %v", err)
	}
	// Ctrl-C or SIGTERM cancels the run; the deferred Close then stops the
	// nodes and removes namespaces, links and data.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	out := c.App.Writer
	res := &phResult{Environment: currentEnvironment(c), Config: cfg}
	res.LoadAvg[0] = phLoadAvg()
	o := phClusterOptions{
		Nodes: cfg.Nodes, N: cfg.N, Dir: c.String("dir"), NoSync: !cfg.Sync, Hints: cfg.Hints,
		LogLevel: lv, Conns: cfg.Concurrency + 2*cfg.Writers + 2*cfg.Nodes, Log: c.App.ErrWriter,
		Binary: c.String("binary"),
	}
	var cl phCluster
	if cfg.Mode == "netns" {
		cl, err = startNetns(ctx, o)
	} else {
		cl, err = startInproc(o)
	}
	if err != nil {
		return err
	}
	defer func() {
		if err := cl.Close(); err != nil {
			fmt.Fprintf(c.App.ErrWriter, "bench: partition-heal: cleanup: %v\n", err)
		}
	}()

	r := newPHRun(cfg, cl, out, res)
	runErr := r.run(ctx)
	res.LoadAvg[1] = phLoadAvg()
	if runErr != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%w: interrupted (%v); the cluster was stopped and removed", errPartitionHeal, runErr)
		}
		return runErr
	}
	printPartitionHeal(out, res)
	if err := writeJSON(c.String("json"), res); err != nil {
		return err
	}
	if err := savePartitionHealPlot(res, c.String("plot")); err != nil {
		return err
	}
	var fails []string
	if !res.Converged {
		fails = append(fails, fmt.Sprintf("replicas did not converge within %v", cfg.timeout))
	}
	if res.LostWrites > 0 {
		fails = append(fails, fmt.Sprintf("%d acknowledged writes lost", res.LostWrites))
	}
	if len(fails) > 0 {
		return fmt.Errorf("%w: %s", errPartitionHeal, strings.Join(fails, "; "))
	}
	return nil
}

// phLoadAvg returns /proc/loadavg's three averages (zeros where missing).
func phLoadAvg() [3]float64 {
	var la [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return la
	}
	for i, f := range strings.Fields(string(b)) {
		if i >= 3 {
			break
		}
		la[i], _ = strconv.ParseFloat(f, 64)
	}
	return la
}

func phSecs(p *float64) string {
	if p == nil {
		return "not reached"
	}
	return fmt.Sprintf("%.2f s", *p)
}

func phMB(b int64) string { return fmt.Sprintf("%.2f MB", float64(b)/1e6) }

func printPartitionHeal(w io.Writer, res *phResult) {
	cfg := res.Config
	fmt.Fprintln(w)
	tw := table(w)
	fmt.Fprintln(tw, "side\tnodes\tok\terrors\tdeletes\tops/s\tseconds\t")
	for _, name := range phSortedKeys(res.OpsDuringPartition) {
		s := res.OpsDuringPartition[name]
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%.0f\t%.2f\t\n", name, strings.Join(s.Nodes, ","), s.OK, s.Errors, s.Deletes, s.OpsPerSec, s.Seconds)
	}
	tw.Flush()
	for _, name := range phSortedKeys(res.OpsDuringPartition) {
		s := res.OpsDuringPartition[name]
		for _, k := range phSortedKeys(s.ErrorKind) {
			fmt.Fprintf(w, "side %s errors: %s ×%d (e.g. %s)\n", name, k, s.ErrorKind[k].Count, s.ErrorKind[k].Example)
		}
	}
	fmt.Fprintln(w)
	target := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	fmt.Fprintf(w, "heal → one membership:            %s   (target ≤ 2 s: %s)\n", phSecs(res.HealToMembership), target(res.Targets["membership_2s"]))
	fmt.Fprintf(w, "heal → every replica identical:   %s   (target ≤ 5 s: %s)\n", phSecs(res.HealToConverged), target(res.Targets["converged_5s"]))
	fmt.Fprintf(w, "  of which: every pair's shared ranges agree after %s; the %d hints pending at the heal drained after %s\n",
		phSecs(res.HealToHashesAgree), res.HintsAtHeal, phSecs(res.HealToHintsDrained))
	fmt.Fprintf(w, "(key, replica) pairs that differed: %d; diverged bytes %s (key + final state of each)\n", res.KeysDiffering, phMB(res.DivergedBytes))
	fmt.Fprintf(w, "anti-entropy: %s on the wire, %.3f per diverged byte (target ≤ 1.5: %s); %d states transferred (%.3f per differing pair), %d copies changed, %d sessions\n",
		phMB(int64(res.AEBytes)), res.AEBytesPerDivergedByte, target(res.Targets["ae_bytes_1.5x"]), res.KeysTransferred,
		res.KeysTransferredPerDiffering, res.KeysRepaired, res.AESessions)
	if cfg.Hints {
		fmt.Fprintf(w, "hinted handoff: %d hints delivered, %s; repair bytes (anti-entropy + hints) %s, %.3f per diverged byte\n",
			res.HintsDelivered, phMB(int64(res.HintBytes)), phMB(int64(res.RepairBytes)), res.RepairBytesPerDivergedByte)
		fmt.Fprintln(w, "  (with hints on, part of the repair is hint handoff: the anti-entropy ratio counts only what anti-entropy moved)")
	}
	l := res.Lost
	fmt.Fprintf(w, "acknowledged writes lost: %d (target 0: %s) — writes %d/%d, deletes undone %d/%d, preloaded sample %d/%d\n",
		res.LostWrites, target(res.LostWrites == 0), l.WritesLost, l.WritesChecked, l.DeletesLost, l.DeletesChecked, l.PreloadedLost, l.PreloadedChecked)
	for _, e := range l.Examples {
		fmt.Fprintf(w, "  lost: %s %q value %q (%d live values)\n", e.What, e.Key, e.Value, e.Values)
	}
	fmt.Fprintf(w, "siblings created: %d keys with more than one live value\n", res.SiblingsCreated)
	if res.ReplicaMismatches > 0 {
		fmt.Fprintf(w, "replicas still differing at the end: %d keys\n", res.ReplicaMismatches)
	}
	fmt.Fprintf(w, "CPU from heal to convergence: %.2f s (%s)\n", res.CPU.HealSeconds, res.CPU.Source)
	if o := res.CPU.OtherUserCores; o != nil && *o > 0.1 {
		fmt.Fprintf(w, "warning: other processes used %.2f cores during the heal; the heal figures may be slow.\n", *o)
	}
	if res.CPU.Profile != "" {
		fmt.Fprintf(w, "CPU profile of the heal in %s\n", res.CPU.Profile)
	}
	p := res.Phases
	fmt.Fprintf(w, "phases: preload %.1f s, in sync after %.1f s more; split seen %.1f s after the cut; writes %.1f s; snapshot %.1f s; checks %.1f s; total %.1f s\n",
		p.PreloadSeconds, p.PreloadSyncSec, p.SplitSeconds, p.WriteSeconds, p.SnapshotSeconds, p.CheckSeconds, p.TotalSeconds)
	fmt.Fprintf(w, "loadavg %.2f %.2f %.2f at the start, %.2f %.2f %.2f at the end\n",
		res.LoadAvg[0][0], res.LoadAvg[0][1], res.LoadAvg[0][2], res.LoadAvg[1][0], res.LoadAvg[1][1], res.LoadAvg[1][2])
	switch {
	case res.Converged && res.LostWrites == 0:
		fmt.Fprintln(w, "result: converged, nothing acknowledged lost")
	case !res.Converged:
		fmt.Fprintln(w, "result: NOT converged")
	}
}

func phSortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
