package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/rumorkv/rumor/bench/netns"
	"github.com/rumorkv/rumor/cli/client"
	"github.com/rumorkv/rumor/node"
	"github.com/rumorkv/rumor/ring"
)

// The scale-out benchmark (issue 6): grow a loaded cluster one node at a
// time, optionally shrink it back, while clients keep reading and writing,
// and measure what each move costs and what the clients saw.

func scaleOutCommand() *cli.Command {
	return &cli.Command{
		Name:  "scale-out",
		Usage: "add nodes to a loaded cluster one at a time (and remove them) under client load; time, bytes and client throughput of each move",
		Description: "Starts --from nodes, preloads --keys keys (w=all) and waits until every replica agrees. Then\n" +
			"--clients closed-loop clients run until the end: each operation goes to a random member (never a\n" +
			"joining or leaving node) and is a get of a random preloaded key (which must be found with its\n" +
			"value) or, with probability 1 − --read-ratio, a put of a new key. After --baseline of that,\n" +
			"nodes join one at a time up to --to (with --shrink they then leave again, last first). Each step\n" +
			"waits until it has settled: every node sees the new ring and no move under way, the new node\n" +
			"is a member (or the leaving one has left and stopped), and no node holds keys it no longer\n" +
			"replicates. Then writes pause (reads go on) until every pair of nodes agrees on the ranges it\n" +
			"shares with no hint pending, and resume. At the end every acknowledged write is read back\n" +
			"(r=all) and a sample of the keys is checked on each of its replicas.\n\n" +
			"Exits non-zero when a step does not settle within --step-timeout, a read of a preloaded key\n" +
			"returns not found or a wrong value, or an acknowledged write is missing.\n\n" +
			"--mode inproc: nodes in this process on loopback sockets, node.DefaultConfig timers (the\n" +
			"agent's). --mode netns (root): `rumor agent` processes in network namespaces (bench/netns); the\n" +
			"nodes that join later are started with the others, leave at once while the cluster is empty,\n" +
			"and join again with a fresh data directory (a new node identity) when their step comes.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "mode", Value: "inproc", Usage: "inproc (nodes in this process) or netns (agent processes in network namespaces; root)"},
			&cli.IntFlag{Name: "from", Value: 3, Usage: "nodes at the start"},
			&cli.IntFlag{Name: "to", Value: 5, Usage: "nodes after the joins (one at a time)"},
			&cli.BoolFlag{Name: "shrink", Usage: "after the joins, the added nodes leave again one at a time, last first"},
			&cli.IntFlag{Name: "n", Value: 3, Usage: "replication factor"},
			&cli.IntFlag{Name: "keys", Value: 1_000_000, Usage: "keys preloaded before the first step"},
			&cli.IntFlag{Name: "value-size", Value: 100, Usage: "value size in bytes"},
			&cli.IntFlag{Name: "clients", Value: 8, Usage: "concurrent closed-loop clients during the steps"},
			&cli.Float64Flag{Name: "read-ratio", Value: 0.5, Usage: "share of the clients' operations that are gets"},
			&cli.Float64Flag{Name: "rate", Usage: "cap on the clients' operations per second, all together (0: as fast as they go)"},
			&cli.IntFlag{Name: "concurrency", Value: 64, Usage: "concurrent requests of the preload and the final checks"},
			&cli.DurationFlag{Name: "baseline", Value: 10 * time.Second, Usage: "clients run this long before the first step (the \"before\" figures)"},
			&cli.DurationFlag{Name: "step-timeout", Value: 10 * time.Minute, Usage: "give up (and fail) when a step has not settled, or its replicas do not agree, after this long"},
			&cli.DurationFlag{Name: "poll", Value: 250 * time.Millisecond, Usage: "how often a step polls every node's /v1/status and /v1/ring (a status hashes every shared range: ~2 ms of CPU at a million keys)"},
			&cli.IntFlag{Name: "check-sample", Value: 20_000, Usage: "preloaded keys, and acknowledged writes, checked on each of their replicas at the end"},
			&cli.BoolFlag{Name: "no-sync", Usage: "nodes do not fsync (default: every acknowledged write is durable)"},
			&cli.StringFlag{Name: "dir", Usage: "directory for the nodes' data (default: a new temporary directory, removed after)"},
			&cli.StringFlag{Name: "binary", Usage: "netns: a built rumor binary (default: go build ./cli/rumor into a temporary directory)"},
			&cli.StringFlag{Name: "log-level", Value: "error", Usage: "nodes' log level: debug, info, warn, error"},
			&cli.StringFlag{Name: "cpuprofile", Usage: "inproc: write a CPU profile of the steps (first step's start to last step's end) to `FILE`"},
			seedFlag(),
			jsonFlag(),
			plotFlag("client throughput and moved keys over time, steps marked"),
		},
		Action: runScaleOut,
	}
}

// soConfig is the parsed command line, reported with the results.
type soConfig struct {
	Mode        string  `json:"mode"`
	From        int     `json:"from"`
	To          int     `json:"to"`
	Shrink      bool    `json:"shrink"`
	N           int     `json:"n"`
	Keys        int     `json:"keys"`
	ValueSize   int     `json:"value_size"`
	Clients     int     `json:"clients"`
	ReadRatio   float64 `json:"read_ratio"`
	Rate        float64 `json:"rate,omitempty"`
	Concurrency int     `json:"concurrency"`
	Baseline    string  `json:"baseline"`
	StepTimeout string  `json:"step_timeout"`
	Poll        string  `json:"poll"`
	CheckSample int     `json:"check_sample"`
	Sync        bool    `json:"fsync"`
	Seed        uint64  `json:"seed"`

	baseline, timeout, poll time.Duration
	profile                 string
}

func parseSOConfig(c *cli.Context) (soConfig, error) {
	cfg := soConfig{
		Mode: c.String("mode"), From: c.Int("from"), To: c.Int("to"), Shrink: c.Bool("shrink"), N: c.Int("n"),
		Keys: c.Int("keys"), ValueSize: c.Int("value-size"), Clients: c.Int("clients"),
		ReadRatio: c.Float64("read-ratio"), Rate: c.Float64("rate"), Concurrency: c.Int("concurrency"),
		CheckSample: c.Int("check-sample"), Sync: !c.Bool("no-sync"), Seed: c.Uint64("seed"),
		baseline: c.Duration("baseline"), timeout: c.Duration("step-timeout"), poll: c.Duration("poll"),
		profile: c.String("cpuprofile"),
	}
	cfg.Baseline, cfg.StepTimeout, cfg.Poll = cfg.baseline.String(), cfg.timeout.String(), cfg.poll.String()
	switch {
	case cfg.Mode != "inproc" && cfg.Mode != "netns":
		return cfg, usageErr("--mode %q: want inproc or netns", cfg.Mode)
	case cfg.From < 1 || cfg.To <= cfg.From || cfg.To > 64:
		return cfg, usageErr("--from %d --to %d: want 1 ≤ from < to ≤ 64", cfg.From, cfg.To)
	case cfg.N < 1 || cfg.N > cfg.From:
		return cfg, usageErr("--n %d: want 1..from", cfg.N)
	case cfg.Keys < 1:
		return cfg, usageErr("--keys %d: want ≥ 1", cfg.Keys)
	case cfg.ValueSize < 0:
		return cfg, usageErr("--value-size %d: want ≥ 0", cfg.ValueSize)
	case cfg.Clients < 1 || cfg.Concurrency < 1:
		return cfg, usageErr("--clients and --concurrency: want ≥ 1")
	case !(cfg.ReadRatio >= 0 && cfg.ReadRatio <= 1):
		return cfg, usageErr("--read-ratio %g: want 0..1", cfg.ReadRatio)
	case !(cfg.Rate >= 0):
		return cfg, usageErr("--rate %g: want ≥ 0", cfg.Rate)
	case cfg.baseline < 0 || cfg.timeout <= 0 || cfg.poll <= 0:
		return cfg, usageErr("--baseline wants ≥ 0, --step-timeout and --poll > 0")
	case cfg.CheckSample < 0:
		return cfg, usageErr("--check-sample %d: want ≥ 0", cfg.CheckSample)
	case cfg.Mode == "netns" && cfg.profile != "":
		return cfg, usageErr("--cpuprofile needs --mode inproc (the agents are other processes)")
	}
	return cfg, nil
}

// soResult is what --json writes. Times in series and steps' at_s are
// seconds since the clients started.
type soResult struct {
	Environment environment `json:"environment"`
	Config      soConfig    `json:"config"`
	// OK: every step settled, no read of a preloaded key failed to find
	// its value and no acknowledged write is missing; Failures says what
	// went wrong otherwise.
	OK       bool      `json:"ok"`
	Failures []string  `json:"failures,omitempty"`
	Preload  soPreload `json:"preload"`
	// Baseline is what the clients saw before the first step.
	Baseline *soWindow `json:"baseline"`
	Steps    []*soStep `json:"steps"`
	// Clients totals the whole run.
	Clients soTotals `json:"clients"`
	Check   soCheck  `json:"check"`
	// Throughput is the clients' successful (and failed) operations per
	// second per 250 ms; Moved the keys and bytes moved so far by the steps
	// (Δ Σ keys_pulled and anti-entropy bytes), at each poll.
	Throughput []soRatePoint  `json:"throughput_series"`
	Moved      []soMovedPoint `json:"moved_series"`
	CPUProfile string         `json:"cpu_profile,omitempty"`
	// LoadAvg is /proc/loadavg (1, 5, 15 min) at the start and the end.
	LoadAvg [2][3]float64 `json:"loadavg"`
}

type soPreload struct {
	Seconds    float64 `json:"seconds"`
	PutsPerSec float64 `json:"puts_per_s"`
	Client     string  `json:"client"`
	Retries    int64   `json:"retries"`
	// SyncSeconds is how long after the preload every replica agreed.
	SyncSeconds float64 `json:"sync_s"`
}

// soStep is one node joining or leaving.
type soStep struct {
	Kind string `json:"kind"` // join or leave
	Node string `json:"node"`
	From int    `json:"from"`
	To   int    `json:"to"`
	// At is when the step began (the new node's start, or the leave
	// request), in seconds since the clients started.
	At float64 `json:"at_s"`
	// Settled is seconds from the start of the step until every node saw
	// the new ring and no move under way, the node was a member (join) or
	// had left and stopped (leave), and no node held keys it no longer
	// replicates; StatusAt is when the node declared itself member or left.
	Settled  *float64 `json:"settled_s"`
	StatusAt *float64 `json:"status_s"`
	// InSync is seconds after Settled, with writes paused, until every
	// pair of nodes agreed on the ranges it shares and no hint was pending.
	InSync *float64 `json:"in_sync_s"`
	// KeysMoved is Δ Σ keys_pulled over the nodes (states anti-entropy
	// fetched), BytesMoved Δ Σ anti-entropy bytes sent and received by the
	// calls each node made, from the step's start until in sync;
	// KeysPulledByNode is the joining node's share of KeysMoved.
	KeysMoved        uint64 `json:"keys_moved"`
	KeysPulledByNode uint64 `json:"keys_pulled_by_node,omitempty"`
	BytesMoved       uint64 `json:"bytes_moved"`
	// BytesPerKey = BytesMoved / KeysMoved; a (key, state) pair of a
	// preloaded key is 135 bytes with the default 100-byte values.
	BytesPerKey float64 `json:"bytes_per_key"`
	// KeysDropped is Δ Σ dropped_keys: copies deleted by nodes that
	// handed their ranges over; Sessions Δ Σ anti-entropy sessions.
	KeysDropped uint64 `json:"keys_dropped"`
	Sessions    uint64 `json:"ae_sessions"`
	// CopiesBefore is Σ keys held over the nodes at the start of the step;
	// MovedFraction = KeysMoved / CopiesBefore. IdealReplicas is
	// ring.MovedReplicas(ring before, ring after, N): the share of copies
	// the new placement needs that the old one did not have; IdealOneOver
	// is 1/(larger cluster size). MovedOverIdeal = MovedFraction /
	// IdealReplicas.
	CopiesBefore   uint64  `json:"copies_before"`
	MovedFraction  float64 `json:"moved_fraction"`
	IdealReplicas  float64 `json:"ideal_moved_replicas"`
	IdealOneOver   float64 `json:"ideal_1_over_n"`
	MovedOverIdeal float64 `json:"moved_over_ideal"`
	KeysPerSec     float64 `json:"keys_per_s"`
	MBPerSec       float64 `json:"mb_per_s"`
	// CPUSeconds is the CPU used from the step's start until settled: the
	// bench process (inproc) or Σ the agents' process.cpu_seconds (netns).
	CPUSeconds float64 `json:"cpu_seconds"`
	// Clients is what the clients saw from the step's start until
	// settled.
	Clients *soWindow `json:"clients"`
	Error   string    `json:"error,omitempty"`

	start    time.Time
	base     map[string]soCounters
	last     map[string]soCounters
	cpu0     float64
	settleAt time.Time
}

// soWindow is the clients' record over one stretch of time.
type soWindow struct {
	Seconds   float64 `json:"seconds"`
	Ops       int64   `json:"ops"`
	OpsPerSec float64 `json:"ops_per_s"`
	Puts      int64   `json:"puts"`
	Gets      int64   `json:"gets"`
	Errors    int64   `json:"errors"`
	// NotFound counts gets of preloaded keys answered not found;
	// WrongValue those answered without the preloaded value.
	NotFound   int64                 `json:"not_found"`
	WrongValue int64                 `json:"wrong_value"`
	ErrorKinds map[string]*errorStat `json:"error_kinds,omitempty"`
	Latency    latencySummary        `json:"latency"`
	PutLatency latencySummary        `json:"put_latency"`
	GetLatency latencySummary        `json:"get_latency"`
}

type soTotals struct {
	Ops          int64                 `json:"ops"`
	Errors       int64                 `json:"errors"`
	AckedWrites  int                   `json:"acked_writes"`
	NotFound     int64                 `json:"not_found"`
	WrongValue   int64                 `json:"wrong_value"`
	BadReads     []soBadRead           `json:"bad_reads,omitempty"`
	ErrorsByKind map[string]*errorStat `json:"error_kinds,omitempty"`
}

// soBadRead is a get of a preloaded key that did not return its value.
type soBadRead struct {
	Key  string  `json:"key"`
	Node string  `json:"node"`
	At   float64 `json:"at_s"`
	What string  `json:"what"`
}

// soCheck is the final check, after the clients stopped.
type soCheck struct {
	// AckedChecked acknowledged writes were read back with r=all;
	// AckedLost of them lacked their value.
	AckedChecked int `json:"acked_checked"`
	AckedLost    int `json:"acked_lost"`
	// ReplicaChecks (key, replica) pairs of sampled preloaded keys and
	// acknowledged writes were read with local=1 on the replica the final
	// ring names; ReplicaMissing of them lacked the value.
	ReplicaChecks  int      `json:"replica_checks"`
	ReplicaMissing int      `json:"replica_missing"`
	Examples       []string `json:"examples,omitempty"`
	Seconds        float64  `json:"seconds"`
}

type soRatePoint struct {
	T         float64 `json:"t"`
	OpsPerSec float64 `json:"ops_per_s"`
	ErrPerSec float64 `json:"errors_per_s"`
}

type soMovedPoint struct {
	T     float64 `json:"t"`
	Keys  uint64  `json:"keys"`
	Bytes uint64  `json:"bytes"`
}

var errScaleOut = errors.New("bench: scale-out")

func runScaleOut(c *cli.Context) error {
	cfg, err := parseSOConfig(c)
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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	res := &soResult{Environment: currentEnvironment(c), Config: cfg}
	res.LoadAvg[0] = phLoadAvg()
	o := phClusterOptions{
		Nodes: cfg.To, N: cfg.N, Dir: c.String("dir"), NoSync: !cfg.Sync, Hints: true, LogLevel: lv,
		Conns: cfg.Concurrency + cfg.Clients + 2*cfg.To, Log: c.App.ErrWriter, Binary: c.String("binary"),
	}
	var cl soCluster
	if cfg.Mode == "netns" {
		cl, err = startSONetns(ctx, o, cfg.From)
	} else {
		cl, err = startSOInproc(o, cfg.From)
	}
	if err != nil {
		return err
	}
	defer func() {
		if err := cl.Close(); err != nil {
			fmt.Fprintf(c.App.ErrWriter, "bench: scale-out: cleanup: %v\n", err)
		}
	}()

	r := &soRun{cfg: cfg, cl: cl, out: c.App.Writer, res: res}
	runErr := r.run(ctx)
	res.LoadAvg[1] = phLoadAvg()
	if runErr != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%w: interrupted (%v); the cluster was stopped and removed", errScaleOut, runErr)
		}
		return runErr
	}
	printScaleOut(c.App.Writer, res)
	if err := writeJSON(c.String("json"), res); err != nil {
		return err
	}
	if err := saveScaleOutPlot(res, c.String("plot")); err != nil {
		return err
	}
	if !res.OK {
		return fmt.Errorf("%w: %s", errScaleOut, strings.Join(res.Failures, "; "))
	}
	return nil
}

// soCluster is a cluster whose node slots 0..to-1 start as the run goes:
// 0..from-1 at once, the others when their step comes. The scenario talks
// to the nodes over HTTP only.
type soCluster interface {
	// HTTPAddr is node i's client API address (known before it starts).
	HTTPAddr(i int) string
	// HTTPClient reaches those addresses, with a connection pool for the
	// bench's concurrency.
	HTTPClient() *http.Client
	// Join starts node i as a new node joining the cluster, and returns
	// once its HTTP API answers.
	Join(ctx context.Context, i int) error
	// Exited reports whether node i has stopped (as an agent does after
	// leaving).
	Exited(i int) bool
	// Close stops every node and removes everything the cluster created.
	Close() error
}

// soEmbedded is implemented by clusters whose nodes are in this process:
// the preload then calls node.Put directly (more than twice the HTTP
// rate), and CPU is this process's.
type soEmbedded interface {
	Node(i int) *node.Node
}

// soInproc is nodes in this process on loopback sockets (cluster.go), with
// node.DefaultConfig timers as an agent has; nodes join later through the
// first. A node that has left is closed, as its agent would exit.
type soInproc struct {
	c    *cluster
	o    phClusterOptions
	tr   *http.Transport
	hc   *http.Client
	done chan struct{}
	wg   sync.WaitGroup

	mu struct {
		sync.Mutex
		nodes  []*node.Node // by slot; nil until started
		exited []bool
	}
}

func startSOInproc(o phClusterOptions, from int) (*soInproc, error) {
	c, err := startCluster(clusterOptions{
		Nodes: from, N: o.N, Dir: o.Dir, NoSync: o.NoSync,
		Logger: slog.New(slog.NewTextHandler(o.Log, &slog.HandlerOptions{Level: o.LogLevel})),
	})
	if err != nil {
		return nil, err
	}
	s := &soInproc{c: c, o: o, done: make(chan struct{})}
	s.mu.nodes = make([]*node.Node, o.Nodes)
	s.mu.exited = make([]bool, o.Nodes)
	for i, n := range c.Nodes {
		s.mu.nodes[i] = n
		s.watch(i, n)
	}
	s.tr = phPoolTransport(&http.Transport{Proxy: nil}, o.Conns)
	s.hc = &http.Client{Transport: s.tr, Timeout: 30 * time.Second}
	return s, nil
}

// watch closes node i once it has left.
func (s *soInproc) watch(i int, n *node.Node) {
	s.wg.Go(func() {
		select {
		case <-n.Left():
		case <-s.done:
			return
		}
		_ = n.Close()
		s.mu.Lock()
		s.mu.exited[i] = true
		s.mu.Unlock()
	})
}

func (s *soInproc) Node(i int) *node.Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.nodes[i]
}

func (s *soInproc) HTTPAddr(i int) string {
	if n := s.Node(i); n != nil {
		return n.HTTPAddr()
	}
	return ""
}

func (s *soInproc) HTTPClient() *http.Client { return s.hc }

func (s *soInproc) Join(_ context.Context, i int) error {
	if s.Node(i) != nil {
		return fmt.Errorf("%w: node %d already started", errCluster, i)
	}
	name := fmt.Sprintf("n%d", i+1)
	cfg := node.DefaultConfig(name, filepath.Join(s.c.dir, name))
	cfg.Insecure = true // no gossip key, TLS or tokens here
	var err error
	if cfg.BindAddr, err = freeLoopback(); err != nil {
		return err
	}
	cfg.RPCAddr, cfg.HTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.N, cfg.NoSync = s.o.N, s.o.NoSync
	cfg.Logger = slog.New(slog.NewTextHandler(s.o.Log, &slog.HandlerOptions{Level: s.o.LogLevel}))
	cfg.Join = []string{s.Node(0).GossipAddr()}
	n, err := node.Open(cfg)
	if err != nil {
		return fmt.Errorf("%w: open %s: %v", errCluster, name, err)
	}
	s.mu.Lock()
	s.mu.nodes[i] = n
	s.c.Nodes = append(s.c.Nodes, n) // closed with the cluster
	s.mu.Unlock()
	s.watch(i, n)
	return nil
}

func (s *soInproc) Exited(i int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.exited[i]
}

func (s *soInproc) Close() error {
	close(s.done)
	s.wg.Wait()
	s.tr.CloseIdleConnections()
	return s.c.Close()
}

// soNetns is agents in network namespaces. netns.Start starts every slot;
// the slots that join later leave at once (while the cluster is empty),
// their agents exit, and their data directories are wiped, so that Join
// (netns.Restart) starts a fresh node with a new identity under the old
// name and addresses.
type soNetns struct {
	nc *netnsCluster
}

func startSONetns(ctx context.Context, o phClusterOptions, from int) (_ *soNetns, err error) {
	nc, err := startNetns(ctx, o)
	if err != nil {
		return nil, err
	}
	s := &soNetns{nc: nc}
	defer func() {
		if err != nil {
			_ = nc.Close()
		}
	}()
	for i := from; i < o.Nodes; i++ {
		if err := soLeave(ctx, client.New(nc.addrs[i], &client.Options{HTTPClient: nc.hc})); err != nil {
			return nil, err
		}
		deadline := time.Now().Add(time.Minute)
		for !s.Exited(i) {
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("%w: %s did not leave the empty cluster within a minute\n%s",
					errNetns, nc.c.Nodes()[i].Name, nc.c.LogTail(i, 20))
			}
			if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
				return nil, err
			}
		}
		if err := os.RemoveAll(nc.c.Nodes()[i].DataDir); err != nil {
			return nil, fmt.Errorf("%w: %v", errNetns, err)
		}
	}
	return s, nil
}

func (s *soNetns) HTTPAddr(i int) string    { return s.nc.addrs[i] }
func (s *soNetns) HTTPClient() *http.Client { return s.nc.hc }
func (s *soNetns) Join(ctx context.Context, i int) error {
	name := s.nc.c.Nodes()[i].Name
	err := s.nc.c.Restart(i)
	if err == nil {
		return nil
	}
	// Restart gives up as soon as any agent of the cluster has exited,
	// and the slots still waiting for their step have (they left). When
	// this one runs, wait for its API here.
	if !errors.Is(err, netns.ErrStart) || s.nc.c.PID(i) == 0 {
		return fmt.Errorf("%w: start %s: %v", errNetns, name, err)
	}
	kv := client.New(s.nc.addrs[i], &client.Options{HTTPClient: s.nc.hc})
	deadline := time.Now().Add(30 * time.Second)
	for {
		hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		var h map[string]any
		herr := kv.GetJSON(hctx, "/v1/health", &h)
		cancel()
		switch {
		case herr == nil:
			return nil
		case s.nc.c.PID(i) == 0:
			return fmt.Errorf("%w: %s exited after its start\n%s", errNetns, name, s.nc.c.LogTail(i, 20))
		case time.Now().After(deadline):
			return fmt.Errorf("%w: %s's API did not answer within 30 s: %v", errNetns, name, herr)
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}
func (s *soNetns) Exited(i int) bool { return s.nc.c.PID(i) == 0 }
func (s *soNetns) Close() error      { return s.nc.Close() }

// soLeave asks a node to leave.
func soLeave(ctx context.Context, kv *client.Client) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := kv.PostJSON(ctx, "/v1/leave", nil); err != nil {
		return fmt.Errorf("%w: leave %s: %v", errScaleOut, kv.Addr(), err)
	}
	return nil
}

// soRun is one run of the scenario.
type soRun struct {
	cfg soConfig
	cl  soCluster
	out io.Writer
	res *soResult

	kv    []*client.Client // by slot
	names []string         // by slot, once started
	live  []int            // slots started and not left, in order
	cls   *soClients
	t0    time.Time // clients' start: time 0 of the series
}

func (r *soRun) say(format string, args ...any) { fmt.Fprintf(r.out, format+"\n", args...) }

func (r *soRun) run(ctx context.Context) error {
	for i := range r.cfg.To {
		r.kv = append(r.kv, client.New(r.cl.HTTPAddr(i), &client.Options{HTTPClient: r.cl.HTTPClient()}))
		r.names = append(r.names, "")
	}
	for i := range r.cfg.From {
		r.live = append(r.live, i)
	}
	sts, _, err := r.poll(ctx, r.live)
	if err != nil {
		return err
	}
	for _, i := range r.live {
		r.names[i] = sts[i].Name
	}
	fsync := "fsync on"
	if !r.cfg.Sync {
		fsync = "fsync off"
	}
	shrink := ""
	if r.cfg.Shrink {
		shrink = fmt.Sprintf(" → %d", r.cfg.From)
	}
	r.say("scale-out: %s, %d → %d%s nodes (N=%d, %s), %d keys of %d bytes, %d clients (%.0f%% gets), seed %d",
		r.cfg.Mode, r.cfg.From, r.cfg.To, shrink, r.cfg.N, fsync, r.cfg.Keys, r.cfg.ValueSize, r.cfg.Clients,
		100*r.cfg.ReadRatio, r.cfg.Seed)

	// 1. Preload, and wait until the replicas agree.
	if err := r.preload(ctx); err != nil {
		return err
	}
	start := time.Now()
	if _, err := r.waitSettled(ctx, r.live, nil, r.cfg.timeout); err != nil {
		return fmt.Errorf("%w: after the preload: %v", errScaleOut, err)
	}
	if _, err := r.waitInSync(ctx, r.live, r.cfg.timeout); err != nil {
		return fmt.Errorf("%w: after the preload: %v", errScaleOut, err)
	}
	p := &r.res.Preload
	p.SyncSeconds = time.Since(start).Seconds()
	r.say("preload: %d keys in %.1f s (%.0f puts/s, %s, w=all, %d retries); replicas in sync %.1f s later",
		r.cfg.Keys, p.Seconds, p.PutsPerSec, p.Client, p.Retries, p.SyncSeconds)

	// 2. Clients, and a baseline.
	r.cls = newSOClients(r)
	r.t0 = time.Now()
	r.cls.start(r.t0)
	defer r.cls.stop()
	r.cls.window.Store(0)
	wstart := time.Now()
	if err := sleepCtx(ctx, r.cfg.baseline); err != nil {
		return err
	}
	r.cls.window.Store(-1)
	baseSecs := time.Since(wstart).Seconds()

	// 3. Steps.
	var steps []*soStep
	for i := r.cfg.From; i < r.cfg.To; i++ {
		steps = append(steps, &soStep{Kind: "join", From: i, To: i + 1})
	}
	if r.cfg.Shrink {
		for i := r.cfg.To; i > r.cfg.From; i-- {
			steps = append(steps, &soStep{Kind: "leave", From: i, To: i - 1})
		}
	}
	var prof *cpuProfile
	if r.cfg.profile != "" {
		if prof, err = startCPUProfile(); err != nil {
			return err
		}
	}
	var failed error
	for k, st := range steps {
		r.res.Steps = append(r.res.Steps, st)
		slot := st.From // join: the next free slot; leave: the last live one
		if st.Kind == "leave" {
			slot = r.live[len(r.live)-1]
		}
		if failed = r.step(ctx, k+1, st, slot); failed != nil {
			st.Error = failed.Error()
			break
		}
	}
	if prof != nil {
		data := prof.stop()
		r.res.CPUProfile = r.cfg.profile
		if err := writeFile(r.cfg.profile, data); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}

	// 4. Stop the clients, collect, check.
	r.cls.stop()
	r.collect(baseSecs, steps)
	if failed != nil {
		r.res.Failures = append(r.res.Failures, failed.Error())
	} else if err := r.check(ctx); err != nil {
		return err
	}
	r.verdict()
	return nil
}

// soCounters are the status counters the steps are measured by.
type soCounters struct {
	pulled, bytes, keys, dropped, sessions uint64
	cpu                                    float64
}

// soStatus is what the bench reads of /v1/status.
type soStatus struct {
	phStatus
	Transfer node.TransferStatus `json:"transfer"`
}

func (s *soStatus) counters() soCounters {
	return soCounters{pulled: s.AE.KeysPulled, bytes: s.AE.BytesSent + s.AE.BytesReceived,
		keys: uint64(max(s.AE.Keys, 0)), dropped: s.Transfer.DroppedKeys, sessions: s.AE.Sessions,
		cpu: s.Process.CPUSeconds}
}

// poll fetches /v1/status and /v1/ring of the given slots, concurrently;
// the answers are indexed by slot (nil where a node did not answer, with
// the error joined into err).
func (r *soRun) poll(ctx context.Context, slots []int) ([]*soStatus, []*node.RingInfo, error) {
	sts := make([]*soStatus, len(r.kv))
	rings := make([]*node.RingInfo, len(r.kv))
	errs := make([]error, len(r.kv))
	var wg sync.WaitGroup
	for _, i := range slots {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			st, ri := &soStatus{}, &node.RingInfo{}
			if err := r.kv[i].GetJSON(ctx, "/v1/status", st); err != nil {
				errs[i] = err
				return
			}
			if err := r.kv[i].GetJSON(ctx, "/v1/ring", ri); err != nil {
				errs[i] = err
				return
			}
			sts[i], rings[i] = st, ri
		})
	}
	wg.Wait()
	return sts, rings, errors.Join(errs...)
}

// settledWhy reports why the given slots have not settled on a ring of
// len(slots) members with no move under way ("" when they have).
func settledWhy(slots []int, sts []*soStatus, rings []*node.RingInfo) string {
	for _, i := range slots {
		st, ri := sts[i], rings[i]
		switch {
		case st == nil:
			return fmt.Sprintf("slot %d did not answer", i)
		case len(ri.Members) != len(slots) || ri.Moving:
			return fmt.Sprintf("%s sees a ring of %d (want %d), moving %v", st.Name, len(ri.Members), len(slots), ri.Moving)
		case st.Transfer.State != node.StatusMember:
			return fmt.Sprintf("%s is %s, waiting for %v", st.Name, st.Transfer.State, st.Transfer.Waiting)
		case st.Transfer.ObsoleteKeys > 0:
			return fmt.Sprintf("%s still holds %d keys it no longer replicates", st.Name, st.Transfer.ObsoleteKeys)
		}
	}
	return ""
}

// waitSettled polls slots until settledWhy is satisfied, for at most
// timeout; each poll's statuses go to each (when set). It returns the
// last statuses.
func (r *soRun) waitSettled(ctx context.Context, slots []int, each func([]*soStatus, []*node.RingInfo) bool, timeout time.Duration) ([]*soStatus, error) {
	start := time.Now()
	for {
		sts, rings, err := r.poll(ctx, slots)
		why := ""
		if err != nil {
			why = err.Error()
		} else {
			why = settledWhy(slots, sts, rings)
		}
		extra := true
		if each != nil {
			extra = each(sts, rings)
		}
		if why == "" && extra {
			return sts, nil
		}
		if time.Since(start) > timeout {
			if why == "" {
				why = "the step's own condition does not hold"
			}
			return nil, fmt.Errorf("not settled after %v: %s", timeout, why)
		}
		if err := sleepCtx(ctx, r.cfg.poll); err != nil {
			return nil, err
		}
	}
}

// waitInSync polls slots until every pair agrees on the ranges it shares
// with no hint pending, for at most timeout.
func (r *soRun) waitInSync(ctx context.Context, slots []int, timeout time.Duration) ([]*soStatus, error) {
	start := time.Now()
	for {
		sts, _, err := r.poll(ctx, slots)
		why := ""
		if err != nil {
			why = err.Error()
		} else {
			var ok bool
			if ok, why = phInSync(soPH(slots, sts)); ok {
				return sts, nil
			}
		}
		if time.Since(start) > timeout {
			return nil, fmt.Errorf("replicas do not agree after %v: %s", timeout, why)
		}
		if err := sleepCtx(ctx, r.cfg.poll); err != nil {
			return nil, err
		}
	}
}

// soPH returns the partition-heal view of the slots' statuses.
func soPH(slots []int, sts []*soStatus) []*phStatus {
	out := make([]*phStatus, 0, len(slots))
	for _, i := range slots {
		out = append(out, &sts[i].phStatus)
	}
	return out
}

// soPreloadValue is preloaded key i's value, a function of the seed (the
// same as partition-heal's).
func soPreloadValue(seed uint64, size, i int) []byte {
	return phRandomChars(rand.New(rand.NewPCG(seed, uint64(i))), make([]byte, size))
}

// preload writes every key with w=all, in process through node.Put when
// the nodes are here, else over HTTP, spread over the nodes and retrying
// a failed write on the next.
func (r *soRun) preload(ctx context.Context) error {
	emb, _ := r.cl.(soEmbedded)
	p := &r.res.Preload
	p.Client = "http"
	if emb != nil {
		p.Client = "embedded"
	}
	var retries atomic.Int64
	bar := newProgress(r.out, int64(r.cfg.Keys), "preload")
	defer bar.done()
	var done atomic.Int64
	stopBar := make(chan struct{})
	go func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopBar:
				return
			case <-t.C:
				bar.set(done.Load())
			}
		}
	}()
	keys := make([]string, r.cfg.Keys)
	for i := range keys {
		keys[i] = phPreloadKey(i)
	}
	start := time.Now()
	err := crashParallel(ctx, keys, r.cfg.Concurrency, func(key string) error {
		i, _ := strconv.Atoi(key[1:]) // phPreloadKey: "k%08d"
		value := soPreloadValue(r.cfg.Seed, r.cfg.ValueSize, i)
		for attempt := 0; ; attempt++ {
			slot := r.live[(i+attempt)%len(r.live)]
			wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			var err error
			if emb != nil {
				_, err = emb.Node(slot).Put(wctx, []byte(key), value, &node.WriteOptions{W: node.All})
			} else {
				_, err = r.kv[slot].Put(wctx, key, value, &client.WriteOptions{W: "all"})
			}
			cancel()
			if err == nil {
				done.Add(1)
				return nil
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if attempt == 4 {
				return fmt.Errorf("%w: preload %s: %v", errScaleOut, key, err)
			}
			retries.Add(1)
			if err := sleepCtx(ctx, time.Duration(attempt+1)*100*time.Millisecond); err != nil {
				return err
			}
		}
	})
	close(stopBar)
	if err != nil {
		return err
	}
	p.Seconds = time.Since(start).Seconds()
	p.PutsPerSec = float64(r.cfg.Keys) / p.Seconds
	p.Retries = retries.Load()
	return nil
}

// ringOf builds the ring of the members a node reports as owning ranges
// now, to compute the ideal movement.
func ringOf(ri *node.RingInfo) (*ring.Ring, error) {
	var ms []ring.Member
	for _, m := range ri.Members {
		if m.Status != node.StatusMember && m.Status != node.StatusLeaving {
			continue
		}
		id, err := strconv.ParseUint(m.ID, 16, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: ring member %s: id %q", errScaleOut, m.Name, m.ID)
		}
		ms = append(ms, ring.Member{ID: ring.NodeID(id), Zone: m.Zone})
	}
	return ring.New(ms, ri.VNodes), nil
}

// note records the counters of every node that answered; the step's
// movement is measured against base.
func (st *soStep) note(sts []*soStatus) {
	for _, s := range sts {
		if s != nil {
			st.last[s.Name] = s.counters()
		}
	}
}

// delta sums, over every node seen during the step, the counters' change
// since the step began (a node that joined counts from zero; a node that
// left counts up to its last answer).
func (st *soStep) delta() soCounters {
	var d soCounters
	for name, l := range st.last {
		b := st.base[name]
		d.pulled += l.pulled - b.pulled
		d.bytes += l.bytes - b.bytes
		d.dropped += l.dropped - b.dropped
		d.sessions += l.sessions - b.sessions
		d.cpu += l.cpu - b.cpu
	}
	return d
}

// step runs step k: slot joins (or leaves) while the clients go on.
func (r *soRun) step(ctx context.Context, k int, st *soStep, slot int) error {
	sts0, rings0, err := r.poll(ctx, r.live)
	if err != nil {
		return fmt.Errorf("%w: before step %d: %v", errScaleOut, k, err)
	}
	before, err := ringOf(rings0[r.live[0]])
	if err != nil {
		return err
	}
	st.base, st.last = map[string]soCounters{}, map[string]soCounters{}
	for _, i := range r.live {
		c := sts0[i].counters()
		st.base[sts0[i].Name], st.last[sts0[i].Name] = c, c
		st.CopiesBefore += c.keys
	}
	_, embedded := r.cl.(soEmbedded)
	cpuNow := func() float64 {
		if embedded {
			u, s := processTimes()
			return (u + s).Seconds()
		}
		return 0
	}
	st.cpu0 = cpuNow()

	// Start the move; the clients record into window k until settled.
	var slots []int // the nodes of the ring after the step
	st.start = time.Now()
	st.At = st.start.Sub(r.t0).Seconds()
	r.cls.window.Store(int32(k))
	if st.Kind == "join" {
		if err := r.cl.Join(ctx, slot); err != nil {
			return err
		}
		// In process, the node's address is known once it has started.
		r.kv[slot] = client.New(r.cl.HTTPAddr(slot), &client.Options{HTTPClient: r.cl.HTTPClient()})
		if sts, _, err := r.poll(ctx, []int{slot}); err == nil {
			r.names[slot] = sts[slot].Name
		}
		slots = append(slices.Clone(r.live), slot)
	} else {
		r.cls.setTargets(slices.DeleteFunc(slices.Clone(r.live), func(i int) bool { return i == slot }))
		if err := soLeave(ctx, r.kv[slot]); err != nil {
			return err
		}
		slots = slices.DeleteFunc(slices.Clone(r.live), func(i int) bool { return i == slot })
	}
	r.say("step %d: %s %s (%d → %d nodes) at %.1f s", k, st.Kind, r.nameOf(slot), st.From, st.To, st.At)

	// Poll until settled, recording the movement.
	var statusAt *float64
	each := func(sts []*soStatus, _ []*node.RingInfo) bool {
		st.note(sts)
		now := time.Since(st.start).Seconds()
		d := st.delta()
		r.res.Moved = append(r.res.Moved, soMovedPoint{T: time.Since(r.t0).Seconds(), Keys: r.movedBefore(k) + d.pulled, Bytes: r.bytesBefore(k) + d.bytes})
		if s := sts[slot]; s != nil && r.names[slot] == "" {
			r.names[slot] = s.Name
		}
		if st.Kind == "join" {
			if s := sts[slot]; statusAt == nil && s != nil && s.Transfer.State == node.StatusMember {
				statusAt = &now
			}
			return true
		}
		exited := r.cl.Exited(slot)
		if s := sts[slot]; statusAt == nil && (exited || (s != nil && s.Transfer.State == node.StatusLeft)) {
			statusAt = &now
		}
		return exited
	}
	var sts []*soStatus
	if st.Kind == "join" {
		sts, err = r.waitSettled(ctx, slots, each, r.cfg.timeout)
	} else {
		// The leaving node answers until it stops; settledWhy looks only
		// at the others.
		sts, err = r.waitSettled(ctx, slots, func(s []*soStatus, ri []*node.RingInfo) bool {
			more, _, _ := r.poll(ctx, []int{slot})
			if more[slot] != nil {
				s[slot] = more[slot]
			}
			return each(s, ri)
		}, r.cfg.timeout)
	}
	if err != nil {
		r.cls.window.Store(-1)
		return fmt.Errorf("%w: step %d (%s %s): %v", errScaleOut, k, st.Kind, r.nameOf(slot), err)
	}
	r.cls.window.Store(-1)
	st.settleAt = time.Now()
	settled := st.settleAt.Sub(st.start).Seconds()
	st.Settled, st.StatusAt = &settled, statusAt
	st.note(sts)
	cpu := st.delta().cpu
	if embedded {
		cpu = cpuNow() - st.cpu0
	}
	st.CPUSeconds = cpu

	// Pause writes until every replica agrees.
	r.cls.pauseWrites.Store(true)
	sts, err = r.waitInSync(ctx, slots, r.cfg.timeout)
	r.cls.pauseWrites.Store(false)
	if err != nil {
		return fmt.Errorf("%w: step %d (%s %s): settled after %.1f s, but %v", errScaleOut, k, st.Kind, r.nameOf(slot), settled, err)
	}
	inSync := time.Since(st.settleAt).Seconds()
	st.InSync = &inSync
	st.note(sts)
	d := st.delta()
	st.KeysMoved, st.BytesMoved, st.KeysDropped, st.Sessions = d.pulled, d.bytes, d.dropped, d.sessions
	if st.KeysMoved > 0 {
		st.BytesPerKey = float64(st.BytesMoved) / float64(st.KeysMoved)
	}
	if st.Kind == "join" {
		st.KeysPulledByNode = st.last[r.names[slot]].pulled
	}
	_, rings, err := r.poll(ctx, slots)
	if err != nil {
		return fmt.Errorf("%w: after step %d: %v", errScaleOut, k, err)
	}
	after, err := ringOf(rings[slots[0]])
	if err != nil {
		return err
	}
	st.Node = r.names[slot]
	st.IdealReplicas = ring.MovedReplicas(before, after, r.cfg.N)
	st.IdealOneOver = 1 / float64(max(st.From, st.To))
	if st.CopiesBefore > 0 {
		st.MovedFraction = float64(st.KeysMoved) / float64(st.CopiesBefore)
	}
	if st.IdealReplicas > 0 {
		st.MovedOverIdeal = st.MovedFraction / st.IdealReplicas
	}
	st.KeysPerSec = float64(st.KeysMoved) / settled
	st.MBPerSec = float64(st.BytesMoved) / 1e6 / settled
	r.live = slots
	if st.Kind == "join" {
		r.cls.setTargets(slots) // a member now: clients use it too
	}
	r.say("  settled after %.1f s (%s after %s), replicas agree %.2f s later; moved %d keys, %s (%.0f B/key; %.4f of the copies; ideal %.4f, 1/n %.4f: ×%.2f); %d sessions, %d copies dropped",
		settled, map[string]string{"join": "member", "leave": "left"}[st.Kind], soSecs(statusAt), inSync,
		st.KeysMoved, phMB(int64(st.BytesMoved)), st.BytesPerKey, st.MovedFraction, st.IdealReplicas, st.IdealOneOver,
		st.MovedOverIdeal, st.Sessions, st.KeysDropped)
	return nil
}

func (r *soRun) nameOf(slot int) string {
	if r.names[slot] != "" {
		return r.names[slot]
	}
	return fmt.Sprintf("node %d", slot)
}

// movedBefore and bytesBefore total the steps before step k (1-based),
// for the cumulative series.
func (r *soRun) movedBefore(k int) uint64 {
	var n uint64
	for _, st := range r.res.Steps[:k-1] {
		n += st.KeysMoved
	}
	return n
}

func (r *soRun) bytesBefore(k int) uint64 {
	var n uint64
	for _, st := range r.res.Steps[:k-1] {
		n += st.BytesMoved
	}
	return n
}

func soSecs(p *float64) string {
	if p == nil {
		return "—"
	}
	return fmt.Sprintf("%.1f s", *p)
}

// soClients are the closed-loop clients of the run.
type soClients struct {
	r       *soRun
	targets atomic.Pointer[[]int] // slots the clients use
	// window is the window operations are recorded in: 0 the baseline, k
	// step k, -1 none.
	window      atomic.Int32
	pauseWrites atomic.Bool
	stopped     atomic.Bool
	workers     []*soWorker
	wg          sync.WaitGroup
	samplerDone chan struct{}
	once        sync.Once
	series      []soRatePoint
}

// soWorker is one client. Its windows and records are its own until the
// clients stop; ok and errs are read by the sampler.
type soWorker struct {
	id       int
	rng      *rand.Rand
	ok, errs atomic.Int64
	wins     []*soWin
	acked    []soAcked
	bad      []soBadRead
	notFound int64
	wrong    int64
	errKinds map[string]*errorStat
}

type soWin struct {
	hist     [2]*histogram // by opPut, opGet
	errs     int64
	notFound int64
	wrong    int64
	kinds    map[string]*errorStat
}

type soAcked struct {
	key   string
	value []byte
	at    float64 // seconds since the clients started, at the acknowledgement
	slot  int     // the coordinator
}

func newSOClients(r *soRun) *soClients {
	c := &soClients{r: r, samplerDone: make(chan struct{})}
	c.window.Store(-1)
	c.setTargets(r.live)
	for i := range r.cfg.Clients {
		c.workers = append(c.workers, &soWorker{id: i, rng: rand.New(rand.NewPCG(r.cfg.Seed, 0x736f<<32|uint64(i))),
			errKinds: map[string]*errorStat{}})
	}
	return c
}

func (c *soClients) setTargets(slots []int) {
	s := slices.Clone(slots)
	c.targets.Store(&s)
}

func (c *soClients) start(t0 time.Time) {
	for _, w := range c.workers {
		c.wg.Go(func() { c.work(w) })
	}
	go c.sample(t0)
}

// stop stops the clients and waits for them (idempotent).
func (c *soClients) stop() {
	c.once.Do(func() {
		c.stopped.Store(true)
		c.wg.Wait()
		<-c.samplerDone
	})
}

// sample records the throughput every rateInterval until the clients stop.
func (c *soClients) sample(t0 time.Time) {
	defer close(c.samplerDone)
	tick := time.NewTicker(rateInterval)
	defer tick.Stop()
	var lastOK, lastErr int64
	lastT := t0
	for now := range tick.C {
		if c.stopped.Load() {
			return
		}
		var ok, errs int64
		for _, w := range c.workers {
			ok += w.ok.Load()
			errs += w.errs.Load()
		}
		dt := now.Sub(lastT).Seconds()
		c.series = append(c.series, soRatePoint{T: now.Sub(t0).Seconds(),
			OpsPerSec: float64(ok-lastOK) / dt, ErrPerSec: float64(errs-lastErr) / dt})
		lastOK, lastErr, lastT = ok, errs, now
	}
}

func (w *soWorker) win(k int) *soWin {
	for len(w.wins) <= k {
		w.wins = append(w.wins, &soWin{hist: [2]*histogram{newHistogram(), newHistogram()}, kinds: map[string]*errorStat{}})
	}
	return w.wins[k]
}

func countError(m map[string]*errorStat, err error) {
	kind := errKind(err)
	if e, ok := m[kind]; ok {
		e.Count++
	} else {
		m[kind] = &errorStat{Count: 1, Example: err.Error()}
	}
}

// work is one client's loop: a get of a random preloaded key or a put of
// a new key, on a random member, until the clients stop.
func (c *soClients) work(w *soWorker) {
	cfg := c.r.cfg
	var pace time.Duration
	if cfg.Rate > 0 {
		pace = time.Duration(float64(time.Second) * float64(cfg.Clients) / cfg.Rate)
	}
	next := time.Now()
	seq := 0
	for !c.stopped.Load() {
		if pace > 0 {
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
			next = next.Add(pace)
		}
		targets := *c.targets.Load()
		slot := targets[w.rng.IntN(len(targets))]
		kv := c.r.kv[slot]
		win := int(c.window.Load())
		op := opPut
		if c.pauseWrites.Load() || w.rng.Float64() < cfg.ReadRatio {
			op = opGet
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		start := time.Now()
		var err error
		var bad string
		var key string
		if op == opGet {
			i := w.rng.IntN(cfg.Keys)
			key = phPreloadKey(i)
			var v *client.Value
			v, err = kv.Get(ctx, key, nil)
			switch {
			case errors.Is(err, client.ErrNotFound):
				bad = "not found"
			case err == nil && !slices.ContainsFunc(v.Values, func(b []byte) bool {
				return bytes.Equal(b, soPreloadValue(cfg.Seed, cfg.ValueSize, i))
			}):
				bad = fmt.Sprintf("wrong value (%d values)", len(v.Values))
			}
		} else {
			key = fmt.Sprintf("c%02d-%08d", w.id, seq)
			seq++
			value := phRandomChars(w.rng, make([]byte, cfg.ValueSize))
			if _, err = kv.Put(ctx, key, value, nil); err == nil {
				w.acked = append(w.acked, soAcked{key: key, value: value, at: time.Since(c.r.t0).Seconds(), slot: slot})
			}
		}
		d := time.Since(start)
		cancel()
		if bad != "" {
			if bad == "not found" {
				w.notFound++
			} else {
				w.wrong++
			}
			if len(w.bad) < 20 {
				w.bad = append(w.bad, soBadRead{Key: key, Node: c.r.names[slot], At: time.Since(c.r.t0).Seconds(), What: bad})
			}
		}
		var wn *soWin
		if win >= 0 {
			wn = w.win(win)
		}
		switch {
		case bad != "":
			w.errs.Add(1)
			if wn != nil {
				if bad == "not found" {
					wn.notFound++
				} else {
					wn.wrong++
				}
			}
		case err != nil:
			w.errs.Add(1)
			countError(w.errKinds, err)
			if wn != nil {
				wn.errs++
				countError(wn.kinds, err)
			}
		default:
			w.ok.Add(1)
			if wn != nil {
				wn.hist[op].record(d)
			}
		}
	}
}

// window merges every worker's record of window k over secs seconds.
func (c *soClients) windowResult(k int, secs float64) *soWindow {
	all, puts, gets := newHistogram(), newHistogram(), newHistogram()
	res := &soWindow{Seconds: secs}
	for _, w := range c.workers {
		if k >= len(w.wins) {
			continue
		}
		wn := w.wins[k]
		puts.merge(wn.hist[opPut])
		gets.merge(wn.hist[opGet])
		res.Errors += wn.errs
		res.NotFound += wn.notFound
		res.WrongValue += wn.wrong
		for kind, e := range wn.kinds {
			if res.ErrorKinds == nil {
				res.ErrorKinds = map[string]*errorStat{}
			}
			if x, ok := res.ErrorKinds[kind]; ok {
				x.Count += e.Count
			} else {
				res.ErrorKinds[kind] = &errorStat{Count: e.Count, Example: e.Example}
			}
		}
	}
	all.merge(puts)
	all.merge(gets)
	res.Ops, res.Puts, res.Gets = int64(all.n), int64(puts.n), int64(gets.n)
	if secs > 0 {
		res.OpsPerSec = float64(res.Ops) / secs
	}
	res.Latency, res.PutLatency, res.GetLatency = all.summary(), puts.summary(), gets.summary()
	return res
}

// collect turns the clients' records into the result.
func (r *soRun) collect(baseSecs float64, steps []*soStep) {
	c := r.cls
	r.res.Baseline = c.windowResult(0, baseSecs)
	for k, st := range steps {
		if st.Settled != nil {
			st.Clients = c.windowResult(k+1, *st.Settled)
		} else if !st.start.IsZero() {
			st.Clients = c.windowResult(k+1, time.Since(st.start).Seconds())
		}
	}
	t := &r.res.Clients
	t.ErrorsByKind = map[string]*errorStat{}
	for _, w := range c.workers {
		t.Ops += w.ok.Load()
		t.Errors += w.errs.Load()
		t.AckedWrites += len(w.acked)
		t.NotFound += w.notFound
		t.WrongValue += w.wrong
		for _, b := range w.bad {
			if len(t.BadReads) < 20 {
				t.BadReads = append(t.BadReads, b)
			}
		}
		for kind, e := range w.errKinds {
			if x, ok := t.ErrorsByKind[kind]; ok {
				x.Count += e.Count
			} else {
				t.ErrorsByKind[kind] = &errorStat{Count: e.Count, Example: e.Example}
			}
		}
	}
	r.res.Throughput = c.series
}

// replicasOf returns the slots of key's replicas in ring rg.
func replicasOf(rg *ring.Ring, byID map[ring.NodeID]int, n int, key string) []int {
	var out []int
	for _, id := range rg.Preference(ring.KeyHash([]byte(key)), n) {
		out = append(out, byID[id])
	}
	return out
}

// check reads every acknowledged write back with r=all, and a sample of
// the preloaded keys and of the acknowledged writes on each of their
// replicas (local=1).
func (r *soRun) check(ctx context.Context) error {
	start := time.Now()
	chk := &r.res.Check
	var mu sync.Mutex
	example := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		if len(chk.Examples) < 20 {
			chk.Examples = append(chk.Examples, s)
		}
	}
	var acked []soAcked
	for _, w := range r.cls.workers {
		acked = append(acked, w.acked...)
	}
	byKey := make(map[string]soAcked, len(acked))
	keys := make([]string, len(acked))
	for i, a := range acked {
		byKey[a.key], keys[i] = a, a.key
	}
	var lost atomic.Int64
	err := crashParallel(ctx, keys, r.cfg.Concurrency, func(key string) error {
		kv := r.kv[r.live[int(ring.KeyHash([]byte(key))%uint64(len(r.live)))]]
		v, err := soGetRetry(ctx, kv, key, &client.ReadOptions{R: "all"})
		if err != nil && !errors.Is(err, client.ErrNotFound) {
			return fmt.Errorf("%w: check %s: %v", errScaleOut, key, err)
		}
		a := byKey[key]
		if v == nil || !slices.ContainsFunc(v.Values, func(b []byte) bool { return bytes.Equal(b, a.value) }) {
			lost.Add(1)
			example(fmt.Sprintf("acknowledged write %s (at %.2f s through %s, %s): not found (r=all)", key, a.at, r.names[a.slot], r.when(a.at)))
		}
		return nil
	})
	if err != nil {
		return err
	}
	chk.AckedChecked, chk.AckedLost = len(keys), int(lost.Load())

	// The sample, on each replica of the final ring.
	_, rings, err := r.poll(ctx, r.live[:1])
	if err != nil {
		return err
	}
	rg, err := ringOf(rings[r.live[0]])
	if err != nil {
		return err
	}
	byID := map[ring.NodeID]int{}
	sts, _, err := r.poll(ctx, r.live)
	if err != nil {
		return err
	}
	for _, i := range r.live {
		id, err := strconv.ParseUint(sts[i].ID, 16, 64)
		if err != nil {
			return fmt.Errorf("%w: status of %s: id %q", errScaleOut, sts[i].Name, sts[i].ID)
		}
		byID[ring.NodeID(id)] = i
	}
	rng := rand.New(rand.NewPCG(r.cfg.Seed, 0x636865636b))
	var sample []string
	want := map[string][]byte{}
	for _, i := range rng.Perm(r.cfg.Keys)[:min(r.cfg.CheckSample, r.cfg.Keys)] {
		k := phPreloadKey(i)
		sample = append(sample, k)
		want[k] = soPreloadValue(r.cfg.Seed, r.cfg.ValueSize, i)
	}
	for _, j := range rng.Perm(len(acked))[:min(r.cfg.CheckSample, len(acked))] {
		sample = append(sample, acked[j].key)
		want[acked[j].key] = acked[j].value
	}
	var checks, missing atomic.Int64
	err = crashParallel(ctx, sample, r.cfg.Concurrency, func(key string) error {
		for _, slot := range replicasOf(rg, byID, r.cfg.N, key) {
			checks.Add(1)
			v, err := soGetRetry(ctx, r.kv[slot], key, &client.ReadOptions{Local: true})
			if err != nil && !errors.Is(err, client.ErrNotFound) {
				return fmt.Errorf("%w: check %s on %s: %v", errScaleOut, key, r.names[slot], err)
			}
			if v == nil || !slices.ContainsFunc(v.Values, func(b []byte) bool { return bytes.Equal(b, want[key]) }) {
				missing.Add(1)
				example(fmt.Sprintf("%s: no copy on its replica %s", key, r.names[slot]))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	chk.ReplicaChecks, chk.ReplicaMissing = int(checks.Load()), int(missing.Load())
	chk.Seconds = time.Since(start).Seconds()
	return nil
}

// when names the step under way at t seconds since the clients started.
func (r *soRun) when(t float64) string {
	for k, st := range r.res.Steps {
		end := st.At + 1e9
		if st.Settled != nil {
			end = st.At + *st.Settled
			if st.InSync != nil {
				end += *st.InSync
			}
		}
		if t >= st.At && t <= end {
			return fmt.Sprintf("during step %d, %s %s, %.2f s after its start", k+1, st.Kind, st.Node, t-st.At)
		}
	}
	return "between steps"
}

// soGetRetry reads key, retrying transport errors and 5xx a few times.
func soGetRetry(ctx context.Context, kv *client.Client, key string, o *client.ReadOptions) (*client.Value, error) {
	var err error
	for attempt := range 5 {
		if attempt > 0 {
			if err := sleepCtx(ctx, time.Duration(attempt)*100*time.Millisecond); err != nil {
				return nil, err
			}
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		var v *client.Value
		v, err = kv.Get(rctx, key, o)
		cancel()
		var ae *client.Error
		if err == nil || errors.Is(err, client.ErrNotFound) || (errors.As(err, &ae) && ae.Status < 500) {
			if errors.Is(err, client.ErrNotFound) {
				return nil, err
			}
			return v, err
		}
	}
	return nil, err
}

// verdict fills OK and Failures.
func (r *soRun) verdict() {
	res := r.res
	t := res.Clients
	if t.NotFound > 0 || t.WrongValue > 0 {
		res.Failures = append(res.Failures, fmt.Sprintf("%d reads of preloaded keys found nothing and %d a wrong value", t.NotFound, t.WrongValue))
	}
	if res.Check.AckedLost > 0 {
		res.Failures = append(res.Failures, fmt.Sprintf("%d acknowledged writes lost", res.Check.AckedLost))
	}
	if res.Check.ReplicaMissing > 0 {
		res.Failures = append(res.Failures, fmt.Sprintf("%d sampled (key, replica) pairs without the value", res.Check.ReplicaMissing))
	}
	res.OK = len(res.Failures) == 0
}

func printScaleOut(w io.Writer, res *soResult) {
	fmt.Fprintln(w)
	tw := table(w)
	fmt.Fprintln(tw, "step\tsettled s\tin sync s\tkeys moved\tMB moved\tmoved/copies\tideal\t×ideal\tkeys/s\tMB/s\tCPU s\tops/s\tp99 ms\terrors\tnot found\t")
	clients := func(c *soWindow) string {
		if c == nil {
			return "\t\t\t\t"
		}
		return fmt.Sprintf("%.0f\t%.1f\t%d\t%d\t", c.OpsPerSec, c.Latency.P99MS, c.Errors, c.NotFound+c.WrongValue)
	}
	fmt.Fprintf(tw, "before (baseline)\t\t\t\t\t\t\t\t\t\t\t%s\n", clients(res.Baseline))
	for _, st := range res.Steps {
		name := fmt.Sprintf("%s %s (%d→%d)", st.Kind, st.Node, st.From, st.To)
		if st.Settled == nil {
			fmt.Fprintf(tw, "%s\tNOT settled\t\t\t\t\t\t\t\t\t\t%s\n", name, clients(st.Clients))
			continue
		}
		inSync := "—"
		if st.InSync != nil {
			inSync = fmt.Sprintf("%.2f", *st.InSync)
		}
		fmt.Fprintf(tw, "%s\t%.1f\t%s\t%d\t%.1f\t%.4f\t%.4f\t%.2f\t%.0f\t%.2f\t%.1f\t%s\n", name, *st.Settled, inSync,
			st.KeysMoved, float64(st.BytesMoved)/1e6, st.MovedFraction, st.IdealReplicas, st.MovedOverIdeal,
			st.KeysPerSec, st.MBPerSec, st.CPUSeconds, clients(st.Clients))
	}
	tw.Flush()
	if b := res.Baseline; b != nil && b.OpsPerSec > 0 {
		for _, st := range res.Steps {
			if c := st.Clients; c != nil {
				fmt.Fprintf(w, "%s %s: clients at %.0f%% of the baseline throughput (gets %.0f/s p99 %.1f ms, puts %.0f/s p99 %.1f ms; before: gets p99 %.1f ms, puts p99 %.1f ms)\n",
					st.Kind, st.Node, 100*c.OpsPerSec/b.OpsPerSec, float64(c.Gets)/c.Seconds, c.GetLatency.P99MS,
					float64(c.Puts)/c.Seconds, c.PutLatency.P99MS, b.GetLatency.P99MS, b.PutLatency.P99MS)
			}
		}
	}
	fmt.Fprintln(w, "moved: Δ Σ keys_pulled (states fetched by anti-entropy) and anti-entropy bytes on the wire; ideal: ring.MovedReplicas(before, after, N).")
	t := res.Clients
	fmt.Fprintf(w, "clients: %d operations, %d errors, %d acknowledged writes; reads of preloaded keys: %d not found, %d wrong value\n",
		t.Ops, t.Errors, t.AckedWrites, t.NotFound, t.WrongValue)
	for _, k := range phSortedKeys(t.ErrorsByKind) {
		fmt.Fprintf(w, "  errors: %s ×%d (e.g. %s)\n", k, t.ErrorsByKind[k].Count, t.ErrorsByKind[k].Example)
	}
	for _, b := range t.BadReads {
		fmt.Fprintf(w, "  bad read at %.1f s: %s on %s: %s\n", b.At, b.Key, b.Node, b.What)
	}
	c := res.Check
	fmt.Fprintf(w, "check: %d acknowledged writes read back (r=all), %d lost; %d sampled (key, replica) pairs, %d without the value (%.1f s)\n",
		c.AckedChecked, c.AckedLost, c.ReplicaChecks, c.ReplicaMissing, c.Seconds)
	for _, e := range c.Examples {
		fmt.Fprintf(w, "  %s\n", e)
	}
	if res.CPUProfile != "" {
		fmt.Fprintf(w, "CPU profile of the steps in %s\n", res.CPUProfile)
	}
	if res.OK {
		fmt.Fprintln(w, "result: every step settled, nothing lost")
	} else {
		fmt.Fprintf(w, "result: FAILED: %s\n", strings.Join(res.Failures, "; "))
	}
}

// saveScaleOutPlot draws two panels over one time axis (seconds since the
// clients started): the clients' throughput, and the keys moved so far;
// each step's start and settling are marked.
func saveScaleOutPlot(res *soResult, name string) error {
	if name == "" {
		return nil
	}
	end := 1.0
	if n := len(res.Throughput); n > 0 {
		end = res.Throughput[n-1].T
	}
	tput := chart{Title: "Scale-out: client throughput", YLabel: "operations/s"}
	ok, bad := series{Name: "successful"}, series{Name: "failed", Dashed: true}
	for _, p := range res.Throughput {
		ok.X, ok.Y = append(ok.X, p.T), append(ok.Y, p.OpsPerSec)
		bad.X, bad.Y = append(bad.X, p.T), append(bad.Y, p.ErrPerSec)
	}
	tput.Series = append(tput.Series, ok, bad)
	moved := chart{Title: "Keys moved (Δ Σ keys pulled by anti-entropy)", XLabel: "seconds since the clients started", YLabel: "keys"}
	m := series{Name: "keys moved so far"}
	for _, p := range res.Moved {
		m.X, m.Y = append(m.X, p.T), append(m.Y, float64(p.Keys))
	}
	moved.Series = append(moved.Series, m)

	var plots [][]*plot.Plot
	for _, c := range []chart{tput, moved} {
		top := 1.0
		for _, s := range c.Series {
			for _, y := range s.Y {
				top = max(top, y)
			}
		}
		top *= 1.15
		p, err := phPlot(c, end*1.02, top, "\x00")
		if err != nil {
			return fmt.Errorf("plot %s: %w", name, err)
		}
		for i, st := range res.Steps {
			marks := []struct {
				at    float64
				label string
				dash  bool
			}{{st.At, st.Kind + " " + st.Node + ": start (dashed), settled (solid)", true}}
			if st.Settled != nil {
				marks = append(marks, struct {
					at    float64
					label string
					dash  bool
				}{st.At + *st.Settled, "settled", false})
			}
			for _, mk := range marks {
				l, err := plotter.NewLine(plotter.XYs{{X: mk.at, Y: 0}, {X: mk.at, Y: top}})
				if err != nil {
					return fmt.Errorf("plot %s: %w", name, err)
				}
				l.Color = plotutil.Color(2 + i)
				if mk.dash {
					l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
				}
				p.Add(l)
				if c.Title == tput.Title && mk.dash {
					p.Legend.Add(mk.label, l)
				}
			}
		}
		plots = append(plots, []*plot.Plot{p})
	}
	return saveColumn(name, plots)
}
