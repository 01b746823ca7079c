package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/urfave/cli/v2"
	"gonum.org/v1/plot"

	"github.com/rumorkv/rumor/cli/client"
	"github.com/rumorkv/rumor/node"
)

func loadCommand() *cli.Command {
	return &cli.Command{
		Name:  "load",
		Usage: "put, get and mixed throughput and latency against an in-process cluster or running agents",
		Description: "Closed loop: --concurrency workers each issue one request at a time, spread round-robin\n" +
			"over the nodes. The put phase writes keys 0, 1, 2, … in order (wrapping), each write with the\n" +
			"context of the key's previous write so values are overwritten, not piled up as siblings\n" +
			"(--blind: without). The get and mixed phases pick keys by --dist among the keys written, so\n" +
			"reads hit; a get or mixed phase before any put phase first fills every key (not measured).",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "nodes", Value: 3, Usage: "in-process nodes (data on disk in a temporary directory)"},
			&cli.IntFlag{Name: "n", Value: 3, Usage: "replication factor of the in-process cluster"},
			&cli.StringFlag{Name: "addrs", Usage: "comma-separated HTTP addresses of running agents, instead of an in-process cluster"},
			&cli.StringFlag{Name: "client", Value: "http", Usage: "http (cli/client over loopback) or embedded (node.Put/Get in process)"},
			&cli.IntFlag{Name: "concurrency", Value: 50, Usage: "concurrent clients (workers)"},
			&cli.DurationFlag{Name: "duration", Value: 10 * time.Second, Usage: "length of each measured phase"},
			&cli.Int64Flag{Name: "ops", Usage: "operations per measured phase, instead of --duration"},
			&cli.DurationFlag{Name: "warmup", Value: time.Second, Usage: "unmeasured run before each phase"},
			&cli.IntFlag{Name: "value-size", Value: 100, Usage: "value size in bytes"},
			&cli.IntFlag{Name: "keys", Value: 100000, Usage: "number of distinct keys"},
			&cli.StringFlag{Name: "dist", Value: "uniform", Usage: "key distribution of the get and mixed phases: uniform or zipf"},
			&cli.Float64Flag{Name: "zipf-s", Value: 1.1, Usage: "zipf exponent (> 1)"},
			&cli.StringFlag{Name: "r", Usage: "read quorum: 1, quorum, all, a count (default: the nodes' default)"},
			&cli.StringFlag{Name: "w", Usage: "write quorum: 1, quorum, all, primary, a count (default: the nodes' default)"},
			&cli.StringFlag{Name: "phases", Value: "put,get,mixed", Usage: "phases to run, in order: put, get, mixed"},
			&cli.Float64Flag{Name: "read-ratio", Value: 0.9, Usage: "share of reads in the mixed phase"},
			&cli.BoolFlag{Name: "no-sync", Usage: "in-process nodes do not fsync (default: every acknowledged write is durable)"},
			&cli.BoolFlag{Name: "blind", Usage: "write without the previous context: every overwrite adds a sibling"},
			&cli.StringFlag{Name: "dir", Usage: "directory for the in-process nodes' data (default: a new temporary directory, removed after)"},
			&cli.StringFlag{Name: "cpuprofile", Usage: "write a CPU profile of each measured phase to `FILE` with the phase name added (cpu.pprof → cpu-put.pprof)"},
			&cli.StringFlag{Name: "pprof-addr", Usage: "serve net/http/pprof on `ADDR` during the run (block and mutex profiling on)"},
			&cli.BoolFlag{Name: "client-cpu", Value: true, Usage: "in-process: profile each phase to measure the client's share of the CPU"},
			&cli.StringFlag{Name: "log-level", Value: "error", Usage: "in-process nodes' log level: debug, info, warn, error"},
			seedFlag(),
			jsonFlag(),
			plotFlag("throughput over time"),
			&cli.StringFlag{Name: "latency-plot", Usage: "plot the latency percentiles of each phase to `FILE` (.png or .svg)"},
		},
		Action: runLoad,
	}
}

// loadConfig is the parsed command line, reported with the results.
type loadConfig struct {
	Nodes       int      `json:"nodes,omitempty"`
	N           int      `json:"n,omitempty"`
	Addrs       []string `json:"addrs,omitempty"`
	Client      string   `json:"client"`
	Concurrency int      `json:"concurrency"`
	Duration    string   `json:"duration,omitempty"`
	Ops         int64    `json:"ops,omitempty"`
	Warmup      string   `json:"warmup"`
	ValueSize   int      `json:"value_size"`
	Keys        int      `json:"keys"`
	Dist        string   `json:"dist"`
	ZipfS       float64  `json:"zipf_s,omitempty"`
	R           string   `json:"r"`
	W           string   `json:"w"`
	Phases      []string `json:"phases"`
	ReadRatio   float64  `json:"read_ratio"`
	Sync        bool     `json:"fsync"`
	Blind       bool     `json:"blind"`
	Seed        uint64   `json:"seed"`

	duration, warmup time.Duration
	r                node.Consistency
	w                node.Consistency
	clientCPU        bool
	profile          string
}

// loadResult is what --json writes.
type loadResult struct {
	Environment environment    `json:"environment"`
	Config      loadConfig     `json:"config"`
	Fill        *phaseResult   `json:"fill,omitempty"`
	Phases      []*phaseResult `json:"phases"`
}

// phaseResult is one measured phase.
type phaseResult struct {
	Name string `json:"name"`
	// Ops counts successful operations; Errors the failed ones by kind.
	Ops        int64                 `json:"ops"`
	Errors     map[string]*errorStat `json:"errors,omitempty"`
	Seconds    float64               `json:"seconds"`
	Throughput float64               `json:"ops_per_sec"`
	// Latency is over every successful operation of the phase; ByOp
	// splits it by operation (the mixed phase).
	Latency latencySummary       `json:"latency"`
	ByOp    map[string]*opResult `json:"by_op,omitempty"`
	// ReadsWithSiblings counts reads that returned more than one value.
	ReadsWithSiblings int64     `json:"reads_with_siblings"`
	CPU               cpuResult `json:"cpu"`
	// Goroutines is the number of goroutines before the phase's warmup
	// and at its end (in process, or summed over the agents). Growth means
	// the nodes take on work they do not finish: not a sustainable rate.
	Goroutines [2]int `json:"goroutines"`
	// Series is the throughput per interval of the phase.
	Series  []rate `json:"throughput_series,omitempty"`
	Profile string `json:"profile,omitempty"`

	hist *histogram
}

type opResult struct {
	Ops        int64          `json:"ops"`
	Throughput float64        `json:"ops_per_sec"`
	Latency    latencySummary `json:"latency"`
}

type errorStat struct {
	Count   int64  `json:"count"`
	Example string `json:"example"`
}

// rate is the throughput of one interval ending At seconds into a phase.
type rate struct {
	At        float64 `json:"t"`
	OpsPerSec float64 `json:"ops_per_sec"`
}

// cpuResult is where the CPU went during a phase. In process, everything
// (nodes and bench) is one process: Process*. Against agents, Agents* sums
// their /v1/status process.cpu_seconds and Process* is the bench alone.
type cpuResult struct {
	ProcessSeconds float64 `json:"process_seconds"`
	ProcessPerOpUS float64 `json:"process_us_per_op"`
	// CoresBusy is process CPU seconds per wall-clock second.
	CoresBusy float64 `json:"cores_busy"`
	// OtherUserCores is the user CPU other processes used per second
	// (/proc/stat minus this process; in process only): above ~0.1
	// something else ran during the measurement.
	OtherUserCores *float64 `json:"other_user_cores,omitempty"`
	// ClientShare is the client's share of this process's CPU: from a
	// CPU profile of the phase in process (the bench's goroutines and the
	// HTTP connections they open carry a profile label; off with
	// --client-cpu=false), or bench/(bench+agents) against agents.
	ClientShare   *float64 `json:"client_share,omitempty"`
	AgentsSeconds *float64 `json:"agents_seconds,omitempty"`
	AgentsPerOpUS *float64 `json:"agents_us_per_op,omitempty"`
}

const rateInterval = 250 * time.Millisecond

func runLoad(c *cli.Context) error {
	cfg, err := parseLoadConfig(c)
	if err != nil {
		return err
	}
	if err := checkOutputs(c.String("json"), c.String("plot"), c.String("latency-plot")); err != nil {
		return err
	}
	if cfg.profile != "" {
		if err := checkOutputs(cfg.profile); err != nil {
			return err
		}
	}
	out := c.App.Writer
	if a := c.String("pprof-addr"); a != "" {
		addr, err := servePprof(a)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.App.ErrWriter, "pprof: http://%s/debug/pprof/\n", addr)
	}
	res := &loadResult{Environment: currentEnvironment(c), Config: cfg}

	var tgt *target
	if len(cfg.Addrs) > 0 {
		tgt = httpTarget(cfg, cfg.Addrs)
		fmt.Fprintf(out, "load: %d agents %s, http client, ", len(cfg.Addrs), strings.Join(cfg.Addrs, ","))
	} else {
		var lv slog.Level
		if err := lv.UnmarshalText([]byte(c.String("log-level"))); err != nil {
			return usageErr("--log-level: %v", err)
		}
		cl, err := startCluster(clusterOptions{
			Nodes: cfg.Nodes, N: cfg.N, Dir: c.String("dir"), NoSync: !cfg.Sync,
			Logger: slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: lv})),
		})
		if err != nil {
			return err
		}
		defer cl.Close()
		if cfg.Client == "embedded" {
			tgt = embeddedTarget(cfg, cl.Nodes)
		} else {
			tgt = httpTarget(cfg, cl.HTTPAddrs())
		}
		fsync := "fsync on"
		if !cfg.Sync {
			fsync = "fsync off"
		}
		fmt.Fprintf(out, "load: %d in-process nodes (N=%d, %s), %s client, ", cfg.Nodes, cfg.N, fsync, cfg.Client)
	}
	defer tgt.close()
	length := cfg.Duration
	if cfg.Ops > 0 {
		length = fmt.Sprintf("%d ops", cfg.Ops)
	}
	fmt.Fprintf(out, "%d workers, %d-byte values, %d keys (%s), R=%s W=%s, phases of %s after %s warmup; GOMAXPROCS=%d\n",
		cfg.Concurrency, cfg.ValueSize, cfg.Keys, distName(cfg), orDefault(cfg.R), orDefault(cfg.W), length, cfg.Warmup,
		res.Environment.GOMAXPROCS)

	run := newLoadRun(cfg, tgt, out)
	for _, name := range cfg.Phases {
		if name != "put" && run.filled() == 0 {
			fill, err := run.fill()
			if err != nil {
				return err
			}
			res.Fill = fill
			fmt.Fprintf(out, "fill: wrote %d keys in %.1f s (%.0f puts/s, not measured)\n", fill.Ops, fill.Seconds, fill.Throughput)
		}
		ph, err := run.phase(name)
		if err != nil {
			return err
		}
		res.Phases = append(res.Phases, ph)
	}
	printLoad(out, res)
	if err := writeJSON(c.String("json"), res); err != nil {
		return err
	}
	if err := savePlot(throughputChart(res), c.String("plot")); err != nil {
		return err
	}
	return savePlot(latencyChart(res), c.String("latency-plot"))
}

func orDefault(s string) string {
	if s == "" {
		return "default"
	}
	return s
}

func distName(cfg loadConfig) string {
	if cfg.Dist == "zipf" {
		return fmt.Sprintf("zipf s=%g", cfg.ZipfS)
	}
	return cfg.Dist
}

func parseLoadConfig(c *cli.Context) (loadConfig, error) {
	cfg := loadConfig{
		Nodes: c.Int("nodes"), N: c.Int("n"), Client: c.String("client"),
		Concurrency: c.Int("concurrency"), Ops: c.Int64("ops"), ValueSize: c.Int("value-size"),
		Keys: c.Int("keys"), Dist: c.String("dist"), ZipfS: c.Float64("zipf-s"),
		R: c.String("r"), W: c.String("w"), ReadRatio: c.Float64("read-ratio"),
		Sync: !c.Bool("no-sync"), Blind: c.Bool("blind"), Seed: c.Uint64("seed"),
		duration: c.Duration("duration"), warmup: c.Duration("warmup"),
		clientCPU: c.Bool("client-cpu"), profile: c.String("cpuprofile"),
	}
	if cfg.Ops <= 0 {
		cfg.Ops = 0
		cfg.Duration = cfg.duration.String()
	}
	cfg.Warmup = cfg.warmup.String()
	if cfg.Dist != "zipf" {
		cfg.ZipfS = 0
	}
	if s := c.String("addrs"); s != "" {
		for _, a := range strings.Split(s, ",") {
			if a = strings.TrimSpace(a); a != "" {
				cfg.Addrs = append(cfg.Addrs, a)
			}
		}
		cfg.Nodes, cfg.N, cfg.Sync = 0, 0, false
	}
	for _, p := range strings.Split(c.String("phases"), ",") {
		if p = strings.TrimSpace(p); p != "" {
			cfg.Phases = append(cfg.Phases, p)
		}
	}
	var err error
	if cfg.r, err = node.ParseConsistency(cfg.R); err != nil || cfg.r == node.Primary {
		return cfg, usageErr("--r %q: want 1, quorum, all or a count", cfg.R)
	}
	if cfg.w, err = node.ParseConsistency(cfg.W); err != nil {
		return cfg, usageErr("--w %q: want 1, quorum, all, primary or a count", cfg.W)
	}
	switch {
	case len(c.String("addrs")) > 0 && len(cfg.Addrs) == 0:
		return cfg, usageErr("--addrs: no address")
	case len(cfg.Addrs) > 0 && cfg.Client == "embedded":
		return cfg, usageErr("--client embedded needs the in-process cluster, not --addrs")
	case cfg.Client != "http" && cfg.Client != "embedded":
		return cfg, usageErr("--client %q: want http or embedded", cfg.Client)
	case len(cfg.Addrs) == 0 && (cfg.Nodes < 1 || cfg.Nodes > 64):
		return cfg, usageErr("--nodes %d: want 1..64", cfg.Nodes)
	case len(cfg.Addrs) == 0 && cfg.N < 1:
		return cfg, usageErr("--n %d: want ≥ 1", cfg.N)
	case cfg.Concurrency < 1:
		return cfg, usageErr("--concurrency %d: want ≥ 1", cfg.Concurrency)
	case cfg.Ops == 0 && cfg.duration <= 0:
		return cfg, usageErr("--duration %v: want > 0 (or --ops)", cfg.duration)
	case cfg.warmup < 0:
		return cfg, usageErr("--warmup %v: want ≥ 0", cfg.warmup)
	case cfg.ValueSize < 0:
		return cfg, usageErr("--value-size %d: want ≥ 0", cfg.ValueSize)
	case cfg.Keys < 1:
		return cfg, usageErr("--keys %d: want ≥ 1", cfg.Keys)
	case cfg.Dist != "uniform" && cfg.Dist != "zipf":
		return cfg, usageErr("--dist %q: want uniform or zipf", cfg.Dist)
	case cfg.Dist == "zipf" && !(cfg.ZipfS > 1):
		return cfg, usageErr("--zipf-s %g: want > 1", cfg.ZipfS)
	case !(cfg.ReadRatio >= 0 && cfg.ReadRatio <= 1):
		return cfg, usageErr("--read-ratio %g: want 0..1", cfg.ReadRatio)
	case len(cfg.Phases) == 0:
		return cfg, usageErr("--phases: none")
	}
	for _, p := range cfg.Phases {
		if p != "put" && p != "get" && p != "mixed" {
			return cfg, usageErr("--phases: unknown phase %q: want put, get or mixed", p)
		}
	}
	return cfg, nil
}

// kvClient is one worker's connection to one node.
type kvClient interface {
	// put writes value under key number k with the causal context wctx and
	// returns the new context.
	put(k int, value []byte, wctx string) (string, error)
	// get reads key number k and returns its number of values.
	get(k int) (int, error)
}

// target is what the workers drive: in-process nodes or agents over HTTP.
type target struct {
	clients []kvClient // one per node; worker i uses clients[i % len]
	// agents are the HTTP clients of --addrs, asked for their CPU time.
	agents []*client.Client
	close  func()
}

func embeddedTarget(cfg loadConfig, nodes []*node.Node) *target {
	keys := make([][]byte, cfg.Keys)
	for i := range keys {
		keys[i] = []byte(keyName(i))
	}
	t := &target{close: func() {}}
	for _, n := range nodes {
		t.clients = append(t.clients, &embeddedClient{n: n, keys: keys, w: cfg.w, ro: &node.ReadOptions{R: cfg.r}})
	}
	return t
}

func httpTarget(cfg loadConfig, addrs []string) *target {
	keys := make([]string, cfg.Keys)
	for i := range keys {
		keys[i] = keyName(i)
	}
	// One transport for all workers, with an idle connection kept for every
	// worker (the default keeps 2 per host and would reconnect constantly).
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        2 * cfg.Concurrency,
		MaxIdleConnsPerHost: cfg.Concurrency + 1,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	t := &target{close: tr.CloseIdleConnections}
	var ro *client.ReadOptions
	if cfg.R != "" {
		ro = &client.ReadOptions{R: cfg.R}
	}
	for _, a := range addrs {
		cl := client.New(a, &client.Options{HTTPClient: hc})
		t.clients = append(t.clients, &httpClient{c: cl, keys: keys, w: cfg.W, ro: ro})
		if len(cfg.Addrs) > 0 {
			t.agents = append(t.agents, cl)
		}
	}
	return t
}

func keyName(i int) string { return "key-" + strconv.Itoa(i) }

type embeddedClient struct {
	n    *node.Node
	keys [][]byte
	w    node.Consistency
	ro   *node.ReadOptions
}

// put and get run the node's code without the client profile label, so a
// profile counts it as server time (goroutines the node starts inherit the
// cleared labels).
func (e *embeddedClient) put(k int, value []byte, wctx string) (string, error) {
	pprof.SetGoroutineLabels(noLabels)
	defer pprof.SetGoroutineLabels(clientLabels)
	return e.n.Put(context.Background(), e.keys[k], value, &node.WriteOptions{Context: wctx, W: e.w})
}

func (e *embeddedClient) get(k int) (int, error) {
	pprof.SetGoroutineLabels(noLabels)
	defer pprof.SetGoroutineLabels(clientLabels)
	res, err := e.n.Get(context.Background(), e.keys[k], e.ro)
	if err != nil {
		return 0, err
	}
	return len(res.Siblings), nil
}

type httpClient struct {
	c    *client.Client
	keys []string
	w    string
	ro   *client.ReadOptions
}

func (h *httpClient) put(k int, value []byte, wctx string) (string, error) {
	var o *client.WriteOptions
	if wctx != "" || h.w != "" {
		o = &client.WriteOptions{Context: wctx, W: h.w}
	}
	return h.c.Put(context.Background(), h.keys[k], value, o)
}

func (h *httpClient) get(k int) (int, error) {
	v, err := h.c.Get(context.Background(), h.keys[k], h.ro)
	if err != nil {
		return 0, err
	}
	return len(v.Values), nil
}

// loadRun is the state shared by the phases of one run.
type loadRun struct {
	cfg loadConfig
	tgt *target
	out io.Writer
	// cursor is the next key the put phase writes (mod Keys); the keys
	// below min(cursor, Keys) have been written.
	cursor atomic.Int64
	// ctxs holds the context returned by each key's latest write.
	ctxs []atomic.Pointer[string]
	runs int // runs started, for the workers' random streams
}

func newLoadRun(cfg loadConfig, tgt *target, out io.Writer) *loadRun {
	return &loadRun{cfg: cfg, tgt: tgt, out: out, ctxs: make([]atomic.Pointer[string], cfg.Keys)}
}

func (r *loadRun) filled() int { return int(min(r.cursor.Load(), int64(r.cfg.Keys))) }

// spec says what the workers do in one run of a phase.
type spec struct {
	name      string
	readRatio float64 // 0: puts only, 1: gets only
	sequence  bool    // puts walk the cursor instead of drawing keys
	keys      int     // draw keys among [0, keys)
	duration  time.Duration
	ops       int64
	record    bool
	profile   bool
}

// worker is one closed-loop client.
type worker struct {
	kv    kvClient
	rng   *rand.Rand
	zipf  *rand.Zipf
	done  atomic.Int64 // operations finished, read by the sampler
	hist  [2]*histogram
	errs  map[string]*errorStat
	multi int64
}

// valueChars are the bytes values are made of: text, so the HTTP API
// returns them as JSON strings, as it would most applications' values.
const valueChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"

// newValue returns a fresh random value of n bytes. Fresh, so that no two
// writes store the same bytes (pebble's block compression would otherwise
// make the data unrealistically small) and no node can hold on to a buffer
// the bench reuses.
func (w *worker) newValue(n int) []byte {
	v := make([]byte, n)
	var x uint64
	for i := range v {
		if i%10 == 0 {
			x = w.rng.Uint64()
		}
		v[i] = valueChars[x&63]
		x >>= 6
	}
	return v
}

const (
	opPut = iota
	opGet
)

var opNames = [2]string{"put", "get"}

// fill writes every key once, unmeasured, for read phases that come first.
func (r *loadRun) fill() (*phaseResult, error) {
	res, err := r.run(spec{name: "fill", sequence: true, ops: int64(r.cfg.Keys) - r.cursor.Load(), record: true})
	if err != nil {
		return nil, err
	}
	if res.Errors != nil {
		return nil, fmt.Errorf("bench: fill: %d writes failed (%s)", totalErrors(res), firstError(res))
	}
	return res, nil
}

// phase runs the warmup and the measured part of phase name.
func (r *loadRun) phase(name string) (*phaseResult, error) {
	s := spec{name: name, keys: r.filled(), duration: r.cfg.duration, ops: r.cfg.Ops}
	switch name {
	case "put":
		s.sequence = true
	case "get":
		s.readRatio = 1
	case "mixed":
		s.readRatio = r.cfg.ReadRatio
	}
	g0, err := r.goroutines()
	if err != nil {
		return nil, err
	}
	if r.cfg.warmup > 0 {
		w := s
		w.duration, w.ops = r.cfg.warmup, 0
		if _, err := r.run(w); err != nil {
			return nil, err
		}
	}
	s.record = true
	s.profile = r.cfg.profile != "" || (r.cfg.clientCPU && r.tgt.agents == nil)
	res, err := r.run(s)
	if err != nil {
		return nil, err
	}
	g1, err := r.goroutines()
	if err != nil {
		return nil, err
	}
	res.Goroutines = [2]int{g0, g1}
	return res, nil
}

// goroutines counts the goroutines of this process, or of the agents.
func (r *loadRun) goroutines() (int, error) {
	if r.tgt.agents == nil {
		return runtime.NumGoroutine(), nil
	}
	st, err := agentsStatus(r.tgt.agents)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, a := range st {
		n += a.Goroutines
	}
	return n, nil
}

// run runs the workers for one spec and collects what they measured.
func (r *loadRun) run(s spec) (*phaseResult, error) {
	r.runs++
	workers := make([]*worker, r.cfg.Concurrency)
	for i := range workers {
		rng := rand.New(rand.NewPCG(r.cfg.Seed, uint64(r.runs)<<32|uint64(i)))
		w := &worker{kv: r.tgt.clients[i%len(r.tgt.clients)], rng: rng, errs: map[string]*errorStat{},
			hist: [2]*histogram{newHistogram(), newHistogram()}}
		if r.cfg.Dist == "zipf" && s.keys > 1 {
			w.zipf = rand.NewZipf(rng, r.cfg.ZipfS, 1, uint64(s.keys-1))
		}
		workers[i] = w
	}

	var agents0 []agentStatus
	if s.record && r.tgt.agents != nil {
		var err error
		if agents0, err = agentsStatus(r.tgt.agents); err != nil {
			return nil, err
		}
	}
	var prof *cpuProfile
	if s.profile {
		var err error
		if prof, err = startCPUProfile(); err != nil {
			return nil, err
		}
	}
	total := s.ops
	if total == 0 {
		total = s.duration.Milliseconds()
	}
	desc := s.name + " (ops)"
	if s.ops == 0 {
		desc = s.name + " (ms)"
	}
	bar := newProgress(r.out, total, desc)
	var stop atomic.Bool
	var tickets atomic.Int64
	mach0, machOK := machineUserCPU()
	user0, sys0 := processTimes()
	start := time.Now()
	if s.ops == 0 {
		t := time.AfterFunc(s.duration, func() { stop.Store(true) })
		defer t.Stop()
	}
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pprof.SetGoroutineLabels(clientLabels)
			r.work(w, s, &stop, &tickets)
		}()
	}
	// Sample throughput (and move the bar) until the workers are done.
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	var series []rate
	tick := time.NewTicker(rateInterval)
	last, lastT := int64(0), start
	sum := func() int64 {
		var n int64
		for _, w := range workers {
			n += w.done.Load()
		}
		return n
	}
	for loop := true; loop; {
		select {
		case <-finished:
			loop = false
		case now := <-tick.C:
			n := sum()
			series = append(series, rate{At: now.Sub(start).Seconds(), OpsPerSec: float64(n-last) / now.Sub(lastT).Seconds()})
			last, lastT = n, now
			if s.ops > 0 {
				bar.set(n)
			} else {
				bar.set(min(now.Sub(start).Milliseconds(), total))
			}
		}
	}
	tick.Stop()
	elapsed := time.Since(start)
	user1, sys1 := processTimes()
	mach1, _ := machineUserCPU()
	cpu := user1 - user0 + sys1 - sys0
	bar.done()

	res := &phaseResult{Name: s.name, Seconds: elapsed.Seconds(), hist: newHistogram(), Series: series}
	var byOp [2]*histogram
	byOp[opPut], byOp[opGet] = newHistogram(), newHistogram()
	for _, w := range workers {
		for op, h := range w.hist {
			byOp[op].merge(h)
			res.hist.merge(h)
		}
		for k, e := range w.errs {
			if res.Errors == nil {
				res.Errors = map[string]*errorStat{}
			}
			if x, ok := res.Errors[k]; ok {
				x.Count += e.Count
			} else {
				res.Errors[k] = e
			}
		}
		res.ReadsWithSiblings += w.multi
	}
	res.Ops = int64(res.hist.n)
	res.Throughput = float64(res.Ops) / elapsed.Seconds()
	res.Latency = res.hist.summary()
	if s.readRatio > 0 && s.readRatio < 1 {
		res.ByOp = map[string]*opResult{}
		for op, h := range byOp {
			res.ByOp[opNames[op]] = &opResult{Ops: int64(h.n), Throughput: float64(h.n) / elapsed.Seconds(), Latency: h.summary()}
		}
	}
	res.CPU = cpuResult{ProcessSeconds: cpu.Seconds(), CoresBusy: cpu.Seconds() / elapsed.Seconds()}
	if machOK && r.tgt.agents == nil {
		other := max(0, (mach1-mach0)-(user1-user0)).Seconds() / elapsed.Seconds()
		res.CPU.OtherUserCores = &other
	}
	if res.Ops > 0 {
		res.CPU.ProcessPerOpUS = cpu.Seconds() * 1e6 / float64(res.Ops)
	}
	if prof != nil {
		data := prof.stop()
		if r.cfg.profile != "" {
			res.Profile = phaseFile(r.cfg.profile, s.name)
			if err := writeFile(res.Profile, data); err != nil {
				return nil, err
			}
		}
		if r.tgt.agents == nil {
			labelled, all, err := labelShare(data, labelKey, labelClient)
			if err != nil {
				return nil, err
			}
			if all > 0 {
				share := float64(labelled) / float64(all)
				res.CPU.ClientShare = &share
			}
		}
	}
	if agents0 != nil {
		agents1, err := agentsStatus(r.tgt.agents)
		if err != nil {
			return nil, err
		}
		var sec float64
		for i := range agents1 {
			sec += agents1[i].CPUSeconds - agents0[i].CPUSeconds
		}
		res.CPU.AgentsSeconds = &sec
		if res.Ops > 0 {
			per := sec * 1e6 / float64(res.Ops)
			res.CPU.AgentsPerOpUS = &per
		}
		if all := sec + cpu.Seconds(); all > 0 {
			share := cpu.Seconds() / all
			res.CPU.ClientShare = &share
		}
	}
	return res, nil
}

// work is one worker's loop.
func (r *loadRun) work(w *worker, s spec, stop *atomic.Bool, tickets *atomic.Int64) {
	for {
		if s.ops > 0 {
			if tickets.Add(1) > s.ops {
				return
			}
		} else if stop.Load() {
			return
		}
		op, k := opPut, 0
		if s.readRatio >= 1 || (s.readRatio > 0 && w.rng.Float64() < s.readRatio) {
			op = opGet
		}
		switch {
		case s.sequence:
			k = int(r.cursor.Add(1)-1) % r.cfg.Keys
		case w.zipf != nil:
			k = int(w.zipf.Uint64())
		default:
			k = w.rng.IntN(max(s.keys, 1))
		}
		start := time.Now()
		var err error
		if op == opGet {
			var n int
			n, err = w.kv.get(k)
			if n > 1 {
				w.multi++
			}
		} else {
			var wctx string
			if !r.cfg.Blind {
				if p := r.ctxs[k].Load(); p != nil {
					wctx = *p
				}
			}
			var out string
			if out, err = w.kv.put(k, w.newValue(r.cfg.ValueSize), wctx); err == nil && !r.cfg.Blind {
				r.ctxs[k].Store(&out)
			}
		}
		d := time.Since(start)
		if s.record {
			if err != nil {
				kind := errKind(err)
				if e, ok := w.errs[kind]; ok {
					e.Count++
				} else {
					w.errs[kind] = &errorStat{Count: 1, Example: err.Error()}
				}
			} else {
				w.hist[op].record(d)
			}
		}
		w.done.Add(1)
	}
}

// errKind names the class of a failed operation, for the error counts.
func errKind(err error) string {
	var ae *client.Error
	var ne net.Error
	switch {
	case errors.Is(err, node.ErrNotFound), errors.Is(err, client.ErrNotFound):
		return "not found"
	case errors.Is(err, node.ErrUnavailable):
		return "unavailable"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.As(err, &ae):
		return "http " + strconv.Itoa(ae.Status)
	case errors.As(err, &ne):
		return "network"
	}
	return "other"
}

func totalErrors(p *phaseResult) int64 {
	var n int64
	for _, e := range p.Errors {
		n += e.Count
	}
	return n
}

func firstError(p *phaseResult) string {
	kinds := make([]string, 0, len(p.Errors))
	for k := range p.Errors {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	if len(kinds) == 0 {
		return ""
	}
	return kinds[0] + ": " + p.Errors[kinds[0]].Example
}

// agentStatus is what the bench reads of an agent's /v1/status.
type agentStatus struct {
	CPUSeconds float64 `json:"cpu_seconds"`
	Goroutines int     `json:"goroutines"`
}

// agentsStatus returns each agent's process status from /v1/status.
func agentsStatus(agents []*client.Client) ([]agentStatus, error) {
	out := make([]agentStatus, len(agents))
	for i, a := range agents {
		var st struct {
			Process agentStatus `json:"process"`
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := a.GetJSON(ctx, "/v1/status", &st)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("bench: status of agent %s: %w", a.Addr(), err)
		}
		out[i] = st.Process
	}
	return out, nil
}

// phaseFile inserts the phase name before the extension: cpu.pprof →
// cpu-put.pprof.
func phaseFile(name, phase string) string {
	ext := filepath.Ext(name)
	return strings.TrimSuffix(name, ext) + "-" + phase + ext
}

func printLoad(w io.Writer, res *loadResult) {
	fmt.Fprintln(w)
	tw := table(w)
	fmt.Fprintln(tw, "phase\tops\tops/s\tp50 ms\tp95\tp99\tp99.9\tmax\terrors\tCPU µs/op\tcores busy\tclient CPU\t")
	row := func(name string, ops int64, tput float64, l latencySummary, errs string, cpu *cpuResult) {
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.2f\t%.2f\t%.2f\t%.2f\t%.1f\t%s\t", name, ops, tput, l.P50MS, l.P95MS, l.P99MS, l.P999MS, l.MaxMS, errs)
		if cpu == nil {
			fmt.Fprint(tw, "\t\t\t\n")
			return
		}
		share := "-"
		if cpu.ClientShare != nil {
			share = fmt.Sprintf("%.0f%%", 100**cpu.ClientShare)
		}
		fmt.Fprintf(tw, "%.1f\t%.2f\t%s\t\n", cpu.ProcessPerOpUS, cpu.CoresBusy, share)
	}
	for _, p := range res.Phases {
		row(p.Name, p.Ops, p.Throughput, p.Latency, strconv.FormatInt(totalErrors(p), 10), &p.CPU)
		for _, op := range opNames {
			if b, ok := p.ByOp[op]; ok {
				row(p.Name+"/"+op, b.Ops, b.Throughput, b.Latency, "", nil)
			}
		}
	}
	tw.Flush()
	for _, p := range res.Phases {
		if p.Errors != nil {
			fmt.Fprintf(w, "%s errors: ", p.Name)
			kinds := make([]string, 0, len(p.Errors))
			for k := range p.Errors {
				kinds = append(kinds, k)
			}
			slices.Sort(kinds)
			for i, k := range kinds {
				if i > 0 {
					fmt.Fprint(w, "; ")
				}
				fmt.Fprintf(w, "%s ×%d (e.g. %s)", k, p.Errors[k].Count, p.Errors[k].Example)
			}
			fmt.Fprintln(w)
		}
		if p.ReadsWithSiblings > 0 {
			fmt.Fprintf(w, "%s: %d reads returned siblings\n", p.Name, p.ReadsWithSiblings)
		}
		if a := p.CPU.AgentsPerOpUS; a != nil {
			fmt.Fprintf(w, "%s: agents %.1f CPU µs/op (%.2f s), bench %.1f CPU µs/op\n", p.Name, *a, *p.CPU.AgentsSeconds, p.CPU.ProcessPerOpUS)
		}
		if p.Profile != "" {
			fmt.Fprintf(w, "%s: CPU profile in %s\n", p.Name, p.Profile)
		}
	}
	if len(res.Config.Addrs) == 0 {
		fmt.Fprintln(w, "CPU is the whole process (nodes and bench); client CPU is the bench's share of it, from a CPU profile.")
	} else {
		fmt.Fprintln(w, "CPU µs/op is the bench process's own; client CPU is bench/(bench+agents).")
	}
	for _, p := range res.Phases {
		if o := p.CPU.OtherUserCores; o != nil && *o > 0.1 {
			fmt.Fprintf(w, "warning: %s: other processes used %.2f cores during the phase; the figures may be low.\n", p.Name, *o)
		}
		if g := p.Goroutines; g[1] > 2*g[0]+1000 {
			fmt.Fprintf(w, "warning: %s: goroutines grew from %d to %d: the nodes queue work faster than they finish it; this rate is not sustainable.\n",
				p.Name, g[0], g[1])
		}
		if s := p.CPU.ClientShare; s != nil && *s >= 0.25 && p.CPU.CoresBusy >= 0.9*float64(res.Environment.GOMAXPROCS) {
			fmt.Fprintf(w, "note: %s: the CPU is saturated and the client takes %.0f%% of it; with the client on another machine the nodes would do more.\n",
				p.Name, 100**s)
		}
	}
}

func throughputChart(res *loadResult) chart {
	c := chart{Title: "Throughput over time", XLabel: "seconds into the phase", YLabel: "operations per second", Legend: "bottom-right"}
	for _, p := range res.Phases {
		s := series{Name: p.Name}
		for _, r := range p.Series {
			s.X, s.Y = append(s.X, r.At), append(s.Y, r.OpsPerSec)
		}
		c.Series = append(c.Series, s)
	}
	zero := 0.0
	c.YMin = &zero
	return c
}

func latencyChart(res *loadResult) chart {
	c := chart{Title: "Latency by percentile", XLabel: "percentile", YLabel: "latency (ms)", LogX: true, LogY: true, Legend: "top-left"}
	var maxX float64
	for _, p := range res.Phases {
		qs, lat := p.hist.spectrum()
		s := series{Name: p.Name}
		for i, q := range qs {
			x := 1 / (1 - q)
			maxX = max(maxX, x)
			s.X, s.Y = append(s.X, x), append(s.Y, math.Max(ms(lat[i]), 1e-3))
		}
		c.Series = append(c.Series, s)
	}
	for _, t := range []struct {
		x     float64
		label string
	}{{1, "0%"}, {2, "50%"}, {10, "90%"}, {100, "99%"}, {1000, "99.9%"}, {10000, "99.99%"}, {100000, "99.999%"}} {
		if t.x <= max(maxX, 100) {
			c.XTicks = append(c.XTicks, plot.Tick{Value: t.x, Label: t.label})
		}
	}
	return c
}
