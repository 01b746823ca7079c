package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/rumorkv/rumor/node"
)

// clusterOptions configure an in-process cluster.
type clusterOptions struct {
	// Nodes is the number of nodes. Default 3.
	Nodes int
	// N is the replication factor. Default 3.
	N int
	// Dir holds the nodes' data directories. Default: a new temporary
	// directory, removed by Close.
	Dir string
	// NoSync turns fsync off (node.Config.NoSync). Default false: every
	// write is durable before it is acknowledged, as in production.
	NoSync bool
	// Logger receives the nodes' logs. Default: warnings and errors to
	// stderr.
	Logger *slog.Logger
	// Tweak, when set, changes each node's configuration before it opens
	// (node i is named n<i+1>).
	Tweak func(i int, cfg *node.Config)
	// Timeout bounds waiting for every node to see every other. Default
	// 30 s.
	Timeout time.Duration
}

// cluster is a set of nodes in this process, on loopback sockets (gossip,
// peer RPC and HTTP), with their data on disk.
type cluster struct {
	Nodes  []*node.Node
	dir    string
	ownDir bool
	o      clusterOptions
	binds  []string // gossip bind address of each node's first open
}

var errCluster = errors.New("bench: cluster")

// startCluster opens o.Nodes nodes, each joining through the first, and
// waits until every node sees all of them alive in its ring.
func startCluster(o clusterOptions) (_ *cluster, err error) {
	if o.Nodes <= 0 {
		o.Nodes = 3
	}
	if o.N <= 0 {
		o.N = 3
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	c := &cluster{dir: o.Dir, o: o}
	if c.dir == "" {
		if c.dir, err = os.MkdirTemp("", "rumor-bench-"); err != nil {
			return nil, fmt.Errorf("%w: temporary directory: %v", errCluster, err)
		}
		c.ownDir = true
	}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	var seed string
	for i := range o.Nodes {
		var n *node.Node
		// The free port can be taken by another process before the node
		// binds it (tests run in parallel): then try another.
		for try := 0; ; try++ {
			bind, err := freeLoopback()
			if err != nil {
				return nil, err
			}
			c.binds = append(c.binds[:i], bind)
			cfg := c.config(i)
			if seed != "" {
				cfg.Join = []string{seed}
			}
			if o.Tweak != nil {
				o.Tweak(i, cfg)
			}
			n, err = node.Open(cfg)
			if err == nil {
				break
			}
			if try < 5 && strings.Contains(err.Error(), "address already in use") {
				continue
			}
			return nil, fmt.Errorf("%w: open %s: %v", errCluster, cfg.Name, err)
		}
		c.Nodes = append(c.Nodes, n)
		if seed == "" {
			seed = n.GossipAddr()
		}
	}
	return c, c.wait(o.Timeout)
}

// config is node i's configuration before Tweak.
func (c *cluster) config(i int) *node.Config {
	name := fmt.Sprintf("n%d", i+1)
	cfg := node.DefaultConfig(name, filepath.Join(c.dir, name))
	cfg.Insecure = true // no gossip key, TLS or tokens here
	cfg.BindAddr = c.binds[i]
	cfg.RPCAddr = "127.0.0.1:0"
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.N = c.o.N
	cfg.NoSync = c.o.NoSync
	cfg.Logger = c.o.Logger
	return cfg
}

// stop closes node i (without a leave: it keeps its ranges) unless it is
// already closed.
func (c *cluster) stop(i int) error {
	if err := c.Nodes[i].Close(); err != nil {
		return fmt.Errorf("%w: close %s: %v", errCluster, c.Nodes[i].Name(), err)
	}
	return nil
}

// reopen opens node i again on the same data directory, gossip and HTTP
// addresses, joining every other node, after Tweak and then tweak (nil:
// none). The node must have been stopped.
func (c *cluster) reopen(i int, tweak func(cfg *node.Config)) error {
	old := c.Nodes[i]
	cfg := c.config(i)
	for j, n := range c.Nodes {
		if j != i {
			cfg.Join = append(cfg.Join, n.GossipAddr())
		}
	}
	if c.o.Tweak != nil {
		c.o.Tweak(i, cfg)
	}
	cfg.HTTPAddr = old.HTTPAddr()
	if cfg.Network == nil {
		cfg.RPCAddr = old.RPCAddr()
	}
	if tweak != nil {
		tweak(cfg)
	}
	n, err := node.Open(cfg)
	if err != nil {
		return fmt.Errorf("%w: reopen %s: %v", errCluster, cfg.Name, err)
	}
	c.Nodes[i] = n
	return nil
}

// wait waits until every node sees every node alive and in its ring.
func (c *cluster) wait(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := c.formed()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: not formed within %v: %v", errCluster, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *cluster) formed() error {
	want := len(c.Nodes)
	for _, n := range c.Nodes {
		alive := 0
		for _, m := range n.Members() {
			if m.State == node.StateAlive {
				alive++
			}
		}
		if r := len(n.Ring().Members); alive != want || r != want {
			return fmt.Errorf("%s sees %d alive, a ring of %d; want %d", n.Name(), alive, r, want)
		}
	}
	return nil
}

// HTTPAddrs returns the nodes' client API addresses.
func (c *cluster) HTTPAddrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.HTTPAddr()
	}
	return out
}

// Close stops every node and removes the data if the cluster created the
// directory.
func (c *cluster) Close() error {
	var errs []error
	for _, n := range slices.Backward(c.Nodes) {
		errs = append(errs, n.Close())
	}
	if c.ownDir {
		errs = append(errs, os.RemoveAll(c.dir))
	}
	return errors.Join(errs...)
}

// freeLoopback returns a loopback address whose port is free for TCP and
// UDP (memberlist binds both).
func freeLoopback() (string, error) {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", fmt.Errorf("%w: %v", errCluster, err)
		}
		addr := l.Addr().String()
		u, err := net.ListenPacket("udp", addr)
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		return addr, nil
	}
	return "", fmt.Errorf("%w: no free loopback port", errCluster)
}
