package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	"github.com/rumorkv/rumor/bench/netns"
	"github.com/rumorkv/rumor/node"
)

// phCluster is a cluster the partition-heal scenario drives. The scenario
// is the same for both modes and talks to the nodes only over their HTTP
// API; the modes differ in how the nodes start, how the network between
// them is cut and healed, and how HTTP connects.
type phCluster interface {
	// HTTPAddrs returns each node's client API address.
	HTTPAddrs() []string
	// HTTPClient reaches those addresses, with keep-alive connections for
	// the bench's concurrency.
	HTTPClient() *http.Client
	// Partition cuts both directions between every pair of nodes in
	// different groups (node indices); nodes in no group keep reaching
	// everyone. silent drops packets in transit instead of failing the
	// sender at once.
	Partition(silent bool, groups ...[]int) error
	// Heal removes every cut.
	Heal() error
	// Close stops every node and removes everything the cluster created.
	Close() error
}

// phClusterOptions configure either kind of cluster.
type phClusterOptions struct {
	Nodes int
	N     int
	// Dir holds the nodes' data; "" makes a temporary directory that Close
	// removes.
	Dir    string
	NoSync bool
	// Hints false disables hinted handoff (in process only: the agent has
	// no flag for it).
	Hints bool
	// LogLevel is the nodes' log level.
	LogLevel slog.Level
	// Conns is how many concurrent requests the HTTP client must carry
	// without reconnecting.
	Conns int
	// Log receives the nodes' logs (in process) and progress messages.
	Log io.Writer
	// Binary is a built rumor binary (netns); "" builds one.
	Binary string
	// AgentArgsFor, when set, adds flags to node i's agent at every start
	// (netns; see netns.Options.AgentArgsFor).
	AgentArgsFor func(i int) []string
}

// phPoolTransport returns t configured to keep a connection per
// concurrent request (the default keeps 2 per host and would reconnect
// constantly).
func phPoolTransport(t *http.Transport, conns int) *http.Transport {
	t.MaxIdleConns = 2 * conns
	t.MaxIdleConnsPerHost = conns
	t.IdleConnTimeout = 90 * time.Second
	t.DisableCompression = true
	return t
}

// inprocCluster is nodes in this process on a node.FaultNetwork (gossip
// and peer RPC in memory, cut and healed by the bench), with their HTTP
// APIs on real loopback sockets and their data on disk.
type inprocCluster struct {
	c     *cluster
	net   *node.FaultNetwork
	hosts []string // gossip addresses, by node
	tr    *http.Transport
	hc    *http.Client
}

// Timers of the in-process nodes: faster failure detection than
// node.DefaultConfig (which the agents use), as in the node package's
// tests but not as aggressive, since a million keys keep the two cores
// busy.
const (
	inprocProbeInterval  = 200 * time.Millisecond
	inprocProbeTimeout   = 100 * time.Millisecond
	inprocGossipInterval = 50 * time.Millisecond
	inprocPushPull       = 2 * time.Second
	inprocReclaim        = 2 * time.Second
	inprocRejoin         = 500 * time.Millisecond
	inprocHintInterval   = 250 * time.Millisecond
)

func startInproc(o phClusterOptions) (*inprocCluster, error) {
	fn := node.NewFaultNetwork(1)
	ic := &inprocCluster{net: fn}
	for i := range o.Nodes {
		ic.hosts = append(ic.hosts, node.HostAddr(i+1, 7946))
	}
	c, err := startCluster(clusterOptions{
		Nodes: o.Nodes, N: o.N, Dir: o.Dir, NoSync: o.NoSync,
		Logger: slog.New(slog.NewTextHandler(o.Log, &slog.HandlerOptions{Level: o.LogLevel})),
		Tweak: func(i int, cfg *node.Config) {
			cfg.Network = fn
			cfg.BindAddr = ic.hosts[i]
			cfg.AdvertiseAddr = ""
			cfg.RPCAddr = node.HostAddr(i+1, 7947)
			cfg.HTTPAddr = "127.0.0.1:0"
			cfg.DisableHints = !o.Hints
			ml := cfg.Memberlist
			ml.ProbeInterval = inprocProbeInterval
			ml.ProbeTimeout = inprocProbeTimeout
			ml.GossipInterval = inprocGossipInterval
			ml.PushPullInterval = inprocPushPull
			ml.SuspicionMult = 3
			ml.DeadNodeReclaimTime = inprocReclaim
			cfg.RejoinInterval = inprocRejoin
			cfg.HintInterval = inprocHintInterval
		},
	})
	if err != nil {
		return nil, err
	}
	ic.c = c
	ic.tr = phPoolTransport(&http.Transport{
		Proxy:       nil,
		DialContext: (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	}, o.Conns)
	ic.hc = &http.Client{Transport: ic.tr, Timeout: 30 * time.Second}
	return ic, nil
}

func (ic *inprocCluster) HTTPAddrs() []string      { return ic.c.HTTPAddrs() }
func (ic *inprocCluster) HTTPClient() *http.Client { return ic.hc }

func (ic *inprocCluster) Partition(silent bool, groups ...[]int) error {
	ic.net.SetSilent(silent)
	hostGroups := make([][]string, len(groups))
	for g, idx := range groups {
		for _, i := range idx {
			if i < 0 || i >= len(ic.hosts) {
				return fmt.Errorf("%w: no node %d", errCluster, i)
			}
			hostGroups[g] = append(hostGroups[g], ic.hosts[i])
		}
	}
	ic.net.Partition(hostGroups...)
	return nil
}

func (ic *inprocCluster) Heal() error {
	ic.net.Heal()
	return nil
}

func (ic *inprocCluster) Close() error {
	ic.tr.CloseIdleConnections()
	return ic.c.Close()
}

// netnsCluster is real `rumor agent` processes, each in its own network
// namespace (bench/netns).
type netnsCluster struct {
	c      *netns.Cluster
	tr     *http.Transport
	hc     *http.Client
	tmp    string // removed by Close: the built binary, and the data unless Options.Dir
	addrs  []string
	closed bool
}

// errNetns: the netns mode cannot run here.
var errNetns = errors.New("bench: --mode netns")

func startNetns(ctx context.Context, o phClusterOptions) (_ *netnsCluster, err error) {
	if err := netns.Available(); err != nil {
		return nil, fmt.Errorf("%w needs root and iproute2 (network namespaces, veth pairs, routes): %v; "+
			"run it as root, or use --mode inproc", errNetns, err)
	}
	// Namespaces left by an earlier run that was killed (SIGKILL cannot be
	// caught; its agents died with it, their namespaces did not).
	if err := netns.Sweep(); err != nil {
		fmt.Fprintf(o.Log, "partition-heal: sweeping namespaces of dead runs: %v\n", err)
	}
	nc := &netnsCluster{}
	if nc.tmp, err = os.MkdirTemp("", "rumor-partition-heal-"); err != nil {
		return nil, fmt.Errorf("%w: %v", errNetns, err)
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(nc.tmp)
		}
	}()
	bin := o.Binary
	if bin == "" {
		fmt.Fprintln(o.Log, "partition-heal: building cli/rumor")
		bin = filepath.Join(nc.tmp, "rumor")
		if err := buildRumor(ctx, bin); err != nil {
			return nil, fmt.Errorf("%w: %v", errNetns, err)
		}
	}
	dir := o.Dir
	if dir == "" {
		dir = filepath.Join(nc.tmp, "cluster")
	}
	args := []string{"--log-level", o.LogLevel.String(), "--replicas", strconv.Itoa(o.N)}
	if o.NoSync {
		args = append(args, "--no-sync")
	}
	nc.c, err = netns.Start(ctx, netns.Options{
		Nodes: o.Nodes, Binary: bin, Dir: dir, AgentArgs: args, AgentArgsFor: o.AgentArgsFor,
		Logf: func(format string, a ...any) { fmt.Fprintf(o.Log, format+"\n", a...) },
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNetns, err)
	}
	for _, n := range nc.c.Nodes() {
		nc.addrs = append(nc.addrs, n.HTTPAddr)
	}
	// The netns client dials inside the router namespace; a clone keeps
	// that dialer with a pool for the bench's concurrency.
	base, ok := nc.c.Client().Transport.(*http.Transport)
	if !ok {
		_ = nc.c.Close()
		return nil, fmt.Errorf("%w: unexpected transport %T", errNetns, nc.c.Client().Transport)
	}
	nc.tr = phPoolTransport(base.Clone(), o.Conns)
	nc.hc = &http.Client{Transport: nc.tr, Timeout: 30 * time.Second}
	return nc, nil
}

// buildRumor builds cli/rumor to bin, from the module the bench runs in
// (the working directory) or, failing that, the module this file was
// compiled from.
func buildRumor(ctx context.Context, bin string) error {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("building cli/rumor needs the go command (%v); or pass --binary", err)
	}
	dirs := []string{""}
	if _, file, _, ok := runtime.Caller(0); ok {
		dirs = append(dirs, filepath.Dir(file))
	}
	var out []byte
	for _, d := range dirs {
		cmd := exec.CommandContext(ctx, goTool, "build", "-o", bin, "github.com/rumorkv/rumor/cli/rumor")
		cmd.Dir = d
		if out, err = cmd.CombinedOutput(); err == nil {
			return nil
		}
	}
	return fmt.Errorf("go build cli/rumor: %v\n%s", err, out)
}

func (nc *netnsCluster) HTTPAddrs() []string      { return nc.addrs }
func (nc *netnsCluster) HTTPClient() *http.Client { return nc.hc }

func (nc *netnsCluster) Partition(silent bool, groups ...[]int) error {
	return nc.c.Partition(silent, groups...)
}

func (nc *netnsCluster) Heal() error { return nc.c.Heal() }

func (nc *netnsCluster) Close() error {
	if nc.closed {
		return nil
	}
	nc.closed = true
	nc.tr.CloseIdleConnections()
	err := nc.c.Close()
	return errors.Join(err, os.RemoveAll(nc.tmp))
}
