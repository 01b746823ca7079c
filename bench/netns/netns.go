// Package netns runs a cluster of real rumor agents in Linux network
// namespaces and cuts the network between them, for end-to-end tests, the
// partition-heal benchmark and nemesis runs. It needs root and iproute2
// (`ip`); tc netem is not used.
//
// Topology: one "router" namespace and one namespace per node. Node i is
// linked to the router by a veth pair on its own /24: the node has
// 10.211.i.2 (interface eth0, default route via the router), the router
// 10.211.i.1 (interface v<i>) and forwards between nodes. The test process
// stays in the root namespace and reaches nodes through the router
// namespace (Client, CLI). Nothing is created in the root namespace, so
// clusters of parallel test binaries cannot clash even though they use the
// same addresses.
//
// Two kinds of cut (Cut): a blackhole route in the sender's namespace makes
// the sender fail at once (connect and send return an error); an `ip rule
// … blackhole` in the router drops forwarded packets silently, like a cut
// cable, so the sender only sees timeouts.
//
// Namespaces are named "rumor-<owner pid>-<cluster>-<node or r>"; Sweep
// removes those whose owner process is gone (after a crash or a test
// timeout). Agents are started with a parent-death signal, so they die with
// the process that started them.
package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Errors returned by the package.
var (
	// ErrUnavailable: namespaces cannot be used here (not root, no `ip`,
	// `ip netns add` fails).
	ErrUnavailable = errors.New("netns: network namespaces unavailable")
	// ErrClosed: the cluster was closed.
	ErrClosed = errors.New("netns: cluster closed")
	// ErrBadNode: a node index is out of range.
	ErrBadNode = errors.New("netns: no such node")
	// ErrNotRunning: the agent has exited (Kill), or ErrRunning: it is still
	// running (Restart).
	ErrNotRunning = errors.New("netns: agent not running")
	ErrRunning    = errors.New("netns: agent still running")
	// ErrStart: the cluster did not come up (an agent exited, or the
	// members did not all see each other alive in time).
	ErrStart = errors.New("netns: cluster did not start")
)

const (
	// subnet is the second octet of every address: node i is 10.211.i.2.
	subnet = 211
	// maxNodes keeps the third octet valid.
	maxNodes = 250
	// cmdTimeout bounds every `ip` or helper command.
	cmdTimeout = 15 * time.Second
	// Agent ports on the node's address.
	gossipPort = 7946
	rpcPort    = 7947
	httpPort   = 7948
	// namePrefix starts every namespace name this package creates.
	namePrefix = "rumor-"
)

// Options configures Start.
type Options struct {
	// Nodes is the number of agents. Required, 1–250.
	Nodes int
	// Binary is the path of a built rumor binary. Required.
	Binary string
	// Dir holds the data directories and logs (tests: t.TempDir()).
	// Required; created if missing.
	Dir string
	// AgentArgs are extra flags for every agent (e.g. "--log-level",
	// "debug"). Default none.
	AgentArgs []string
	// AgentArgsFor, when set, returns extra flags for node i's agent,
	// after AgentArgs. It is called at every start and Restart, so a
	// restart can change them (e.g. "--clock-offset", "3s"). Default nil.
	AgentArgsFor func(i int) []string
	// Logf receives progress messages. Default: discard.
	Logf func(format string, args ...any)
	// StartTimeout bounds how long Start (and Restart) waits for agents to
	// answer and for every member to see every other alive. Default 30 s.
	StartTimeout time.Duration
	// StopGrace is how long Close waits after SIGTERM before SIGKILL.
	// Default 5 s.
	StopGrace time.Duration
}

// NodeInfo describes one node of a cluster.
type NodeInfo struct {
	// Name is the member name ("n0", "n1", …).
	Name string
	// IP is the node's address (10.211.i.2).
	IP string
	// GossipAddr, RPCAddr and HTTPAddr are IP:port of the agent's gossip,
	// peer RPC and client HTTP listeners.
	GossipAddr, RPCAddr, HTTPAddr string
	// Namespace is the node's network namespace.
	Namespace string
	// DataDir is the agent's --data directory; LogPath receives its stdout
	// and stderr (appended to across restarts).
	DataDir, LogPath string
}

// Cluster is a running set of agents in namespaces. Its methods are safe for
// concurrent use.
type Cluster struct {
	o      Options
	id     string // "rumor-<pid>-<n>"
	router string // router namespace
	nodes  []NodeInfo

	transport *http.Transport
	client    *http.Client

	mu struct {
		sync.Mutex
		closed     bool
		namespaces []string // created so far, in order
		agents     []*agent // by node; nil until started
		cuts       []cut    // in the order they were made
	}
}

var clusters atomic.Int64

// Start creates the namespaces and links, starts the agents (node i > 0
// joins node 0) and waits until every node's /v1/members lists every node
// alive. On error it removes everything it created.
func Start(ctx context.Context, o Options) (*Cluster, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	if o.Nodes < 1 || o.Nodes > maxNodes {
		return nil, fmt.Errorf("netns: Options.Nodes = %d: want 1–%d", o.Nodes, maxNodes)
	}
	if o.Binary == "" || o.Dir == "" {
		return nil, errors.New("netns: Options.Binary and Options.Dir are required")
	}
	bin, err := filepath.Abs(o.Binary)
	if err != nil {
		return nil, fmt.Errorf("netns: binary: %w", err)
	}
	if st, err := os.Stat(bin); err != nil || st.IsDir() {
		return nil, fmt.Errorf("netns: binary %s: not a file (%v)", bin, err)
	}
	o.Binary = bin
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = 30 * time.Second
	}
	if o.StopGrace <= 0 {
		o.StopGrace = 5 * time.Second
	}
	o.AgentArgs = append([]string(nil), o.AgentArgs...)

	c := &Cluster{o: o, id: fmt.Sprintf("%s%d-%d", namePrefix, os.Getpid(), clusters.Add(1))}
	c.router = c.id + "-r"
	c.mu.agents = make([]*agent, o.Nodes)
	for i := range o.Nodes {
		ip := fmt.Sprintf("10.%d.%d.2", subnet, i)
		name := fmt.Sprintf("n%d", i)
		c.nodes = append(c.nodes, NodeInfo{
			Name:       name,
			IP:         ip,
			GossipAddr: fmt.Sprintf("%s:%d", ip, gossipPort),
			RPCAddr:    fmt.Sprintf("%s:%d", ip, rpcPort),
			HTTPAddr:   fmt.Sprintf("%s:%d", ip, httpPort),
			Namespace:  fmt.Sprintf("%s-%d", c.id, i),
			DataDir:    filepath.Join(o.Dir, name, "data"),
			LogPath:    filepath.Join(o.Dir, name+".log"),
		})
	}
	c.transport = &http.Transport{
		Proxy:               nil, // never an environment proxy: addresses are namespace-local
		DialContext:         c.dialRouter,
		MaxIdleConnsPerHost: 8,
		IdleConnTimeout:     30 * time.Second,
	}
	c.client = &http.Client{Transport: c.transport, Timeout: 30 * time.Second}

	if err := c.start(ctx); err != nil {
		if cerr := c.Close(); cerr != nil {
			err = fmt.Errorf("%w (and cleanup: %v)", err, cerr)
		}
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(ctx context.Context) error {
	t0 := time.Now()
	if err := c.addNamespace(ctx, c.router); err != nil {
		return err
	}
	if _, err := ipNetnsExec(ctx, c.router, "sysctl", "-qw", "net.ipv4.ip_forward=1"); err != nil {
		return err
	}
	for i, n := range c.nodes {
		if err := c.addNamespace(ctx, n.Namespace); err != nil {
			return err
		}
		veth := fmt.Sprintf("v%d", i)
		gw := fmt.Sprintf("10.%d.%d.1", subnet, i)
		steps := [][]string{
			// Created inside the router: the names only need to be unique
			// there and in the node's namespace, never in the root one.
			{"-n", c.router, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", n.Namespace},
			{"-n", c.router, "addr", "add", gw + "/24", "dev", veth},
			{"-n", c.router, "link", "set", veth, "up"},
			{"-n", n.Namespace, "addr", "add", n.IP + "/24", "dev", "eth0"},
			{"-n", n.Namespace, "link", "set", "eth0", "up"},
			{"-n", n.Namespace, "route", "add", "default", "via", gw},
		}
		for _, s := range steps {
			if _, err := ip(ctx, s...); err != nil {
				return err
			}
		}
	}
	c.o.Logf("netns: %s: %d namespaces and links in %v", c.id, len(c.nodes)+1, time.Since(t0).Round(time.Millisecond))

	ctx, cancel := context.WithTimeout(ctx, c.o.StartTimeout)
	defer cancel()
	for i := range c.nodes {
		var join []string
		if i > 0 {
			join = []string{c.nodes[0].GossipAddr}
		}
		if err := c.startAgent(i, join); err != nil {
			return err
		}
	}
	if err := c.WaitMembers(ctx, nil); err != nil {
		return err
	}
	c.o.Logf("netns: %s: %d agents up, all alive, after %v", c.id, len(c.nodes), time.Since(t0).Round(time.Millisecond))
	return nil
}

// addNamespace creates a namespace (recording it for Close) and brings its
// loopback up.
func (c *Cluster) addNamespace(ctx context.Context, name string) error {
	c.mu.Lock()
	if c.mu.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	c.mu.Unlock()
	if _, err := ip(ctx, "netns", "add", name); err != nil {
		return err
	}
	c.mu.Lock()
	c.mu.namespaces = append(c.mu.namespaces, name)
	c.mu.Unlock()
	_, err := ip(ctx, "-n", name, "link", "set", "lo", "up")
	return err
}

// Close stops every agent (SIGTERM to its process group, SIGKILL after
// Options.StopGrace), kills anything else left in the namespaces and deletes
// them, which removes the veth pairs. It is idempotent and safe after a
// partial Start.
func (c *Cluster) Close() error {
	c.mu.Lock()
	if c.mu.closed {
		c.mu.Unlock()
		return nil
	}
	c.mu.closed = true
	agents := append([]*agent(nil), c.mu.agents...)
	namespaces := append([]string(nil), c.mu.namespaces...)
	c.mu.Unlock()

	c.transport.CloseIdleConnections()
	errs := make([]error, len(agents))
	var wg sync.WaitGroup
	for i, a := range agents {
		if a == nil {
			continue
		}
		wg.Go(func() { errs[i] = a.stop(c.o.StopGrace) })
	}
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := len(namespaces) - 1; i >= 0; i-- {
		errs = append(errs, removeNamespace(ctx, namespaces[i]))
	}
	c.transport.CloseIdleConnections()
	return errors.Join(errs...)
}

// removeNamespace kills every process still in the namespace and deletes it.
func removeNamespace(ctx context.Context, name string) error {
	out, err := ip(ctx, "netns", "pids", name)
	if err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, perr := strconv.Atoi(f); perr == nil && pid > 0 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	_, err = ip(ctx, "netns", "del", name)
	return err
}

// ID is the cluster's unique prefix of namespace names ("rumor-<pid>-<n>").
func (c *Cluster) ID() string { return c.id }

// RouterNamespace is the name of the router namespace.
func (c *Cluster) RouterNamespace() string { return c.router }

// Nodes describes the nodes, indexed like every other method's node
// argument.
func (c *Cluster) Nodes() []NodeInfo { return append([]NodeInfo(nil), c.nodes...) }

// Namespaces lists the namespaces the cluster has created and not yet
// deleted.
func (c *Cluster) Namespaces() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.closed {
		return nil
	}
	return append([]string(nil), c.mu.namespaces...)
}

func (c *Cluster) node(i int) (NodeInfo, error) {
	if i < 0 || i >= len(c.nodes) {
		return NodeInfo{}, fmt.Errorf("%w: %d (cluster has %d)", ErrBadNode, i, len(c.nodes))
	}
	return c.nodes[i], nil
}

// Available reports whether Start can work here: root, `ip` on the PATH and
// `ip netns add` succeeding. The error says why not (tests t.Skip with it).
func Available() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: needs root (euid is %d)", ErrUnavailable, os.Geteuid())
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("%w: iproute2 `ip` not found: %v", ErrUnavailable, err)
	}
	if _, err := os.Stat("/proc/thread-self/ns/net"); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	name := fmt.Sprintf("%s%d-%d-probe", namePrefix, os.Getpid(), clusters.Add(1))
	if _, err := ip(ctx, "netns", "add", name); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	if _, err := ip(ctx, "netns", "del", name); err != nil {
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return nil
}

var ownedName = regexp.MustCompile(`^` + namePrefix + `([0-9]+)-`)

// listNamespaces returns the names of every namespace of this package (any
// owner).
func listNamespaces(ctx context.Context) ([]string, error) {
	out, err := ip(ctx, "netns", "list")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && ownedName.MatchString(f[0]) {
			names = append(names, f[0])
		}
	}
	return names, nil
}

// Sweep deletes the namespaces left by earlier runs whose owner process is
// gone, killing every process still inside them. Namespaces of live owners
// (including this process) are left alone, so parallel test binaries may
// all call it.
func Sweep() error {
	if err := Available(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	names, err := listNamespaces(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range names {
		pid, err := strconv.Atoi(ownedName.FindStringSubmatch(name)[1])
		if err != nil || pid == os.Getpid() || processExists(pid) {
			continue
		}
		errs = append(errs, removeNamespace(ctx, name))
	}
	return errors.Join(errs...)
}

// processExists reports whether pid names a live process (a zombie, killed
// but not yet reaped, counts as gone). A reused pid keeps the namespaces of
// the dead owner until that pid ends too.
func processExists(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	// "pid (comm) S …": the state follows the last ')'.
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) && (stat[i+2] == 'Z' || stat[i+2] == 'X') {
		return false
	}
	return true
}

// ip runs iproute2.
func ip(ctx context.Context, args ...string) ([]byte, error) {
	return run(ctx, "ip", args...)
}

// ipNetnsExec runs a command inside a namespace.
func ipNetnsExec(ctx context.Context, ns string, args ...string) ([]byte, error) {
	return run(ctx, "ip", append([]string{"netns", "exec", ns}, args...)...)
}

// run runs a short command with a timeout and returns its stdout; an error
// includes its stderr and stdout.
func run(ctx context.Context, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("netns: %s %s: %w: %s", name, strings.Join(args, " "), err,
			bytes.TrimSpace(append(stderr.Bytes(), stdout.Bytes()...)))
	}
	return stdout.Bytes(), nil
}
