package netns

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// agent is one run of a rumor agent process.
type agent struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has been reaped
	err  error         // Wait's result; read after done
}

// running reports whether the process has not exited yet.
func (a *agent) running() bool {
	select {
	case <-a.done:
		return false
	default:
		return true
	}
}

// signal sends sig to the agent's process group.
func (a *agent) signal(sig syscall.Signal) error {
	if !a.running() {
		return ErrNotRunning
	}
	if err := syscall.Kill(-a.cmd.Process.Pid, sig); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return ErrNotRunning
		}
		return fmt.Errorf("netns: kill %d: %w", a.cmd.Process.Pid, err)
	}
	return nil
}

// stop sends SIGTERM, then SIGKILL after grace, and waits for the exit.
func (a *agent) stop(grace time.Duration) error {
	if !a.running() {
		return nil
	}
	_ = a.signal(syscall.SIGTERM)
	_ = a.signal(syscall.SIGCONT) // a paused (SIGSTOP) agent handles SIGTERM too
	select {
	case <-a.done:
		return nil
	case <-time.After(grace):
	}
	_ = a.signal(syscall.SIGKILL)
	select {
	case <-a.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("netns: agent pid %d survived SIGKILL", a.cmd.Process.Pid)
	}
}

// spawner starts agents from one goroutine locked to its OS thread for the
// life of the process. The parent-death signal fires when the thread that
// forked the child exits, not the process; Go may end a thread whose
// goroutine exits while locked, so agents are forked from a thread that
// never ends.
var spawner struct {
	once sync.Once
	reqs chan spawnReq
}

type spawnReq struct {
	cmd *exec.Cmd
	err chan<- error
}

func spawn(cmd *exec.Cmd) error {
	spawner.once.Do(func() {
		spawner.reqs = make(chan spawnReq)
		go func() {
			runtime.LockOSThread() // never unlocked: see spawner
			for r := range spawner.reqs {
				r.err <- r.cmd.Start()
			}
		}()
	})
	ch := make(chan error, 1)
	spawner.reqs <- spawnReq{cmd: cmd, err: ch}
	return <-ch
}

// agentArgs is the agent command line for node i.
func (c *Cluster) agentArgs(i int, join []string) []string {
	n := c.nodes[i]
	args := []string{"netns", "exec", n.Namespace, c.o.Binary, "agent", "--insecure",
		"--name", n.Name, "--data", n.DataDir,
		"--bind", n.GossipAddr, "--rpc", n.RPCAddr, "--http", n.HTTPAddr}
	if len(join) > 0 {
		args = append(args, "--join", strings.Join(join, ","))
	}
	args = append(args, c.o.AgentArgs...)
	if c.o.AgentArgsFor != nil {
		args = append(args, c.o.AgentArgsFor(i)...)
	}
	return args
}

// startAgent starts node i's agent (`ip netns exec` execs the binary, so the
// process is the agent itself) in its own process group, logging to
// LogPath.
func (c *Cluster) startAgent(i int, join []string) error {
	n := c.nodes[i]
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.closed {
		return ErrClosed
	}
	if a := c.mu.agents[i]; a != nil && a.running() {
		return fmt.Errorf("%w: node %d (pid %d)", ErrRunning, i, a.cmd.Process.Pid)
	}
	log, err := os.OpenFile(n.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("netns: agent log: %w", err)
	}
	cmd := exec.Command("ip", c.agentArgs(i, join)...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	fmt.Fprintf(log, "=== netns: %s %s\n", time.Now().Format(time.RFC3339Nano), strings.Join(cmd.Args, " "))
	if err := spawn(cmd); err != nil {
		_ = log.Close()
		return fmt.Errorf("netns: start agent %d: %w", i, err)
	}
	a := &agent{cmd: cmd, done: make(chan struct{})}
	go func() {
		a.err = cmd.Wait()
		_ = log.Close()
		close(a.done)
	}()
	c.mu.agents[i] = a
	c.o.Logf("netns: %s: started %s (pid %d)", c.id, n.Name, cmd.Process.Pid)
	return nil
}

func (c *Cluster) agent(i int) (*agent, error) {
	if _, err := c.node(i); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.closed {
		return nil, ErrClosed
	}
	if c.mu.agents[i] == nil {
		return nil, fmt.Errorf("%w: node %d never started", ErrNotRunning, i)
	}
	return c.mu.agents[i], nil
}

// PID returns the process id of node i's current agent, or 0 if it has
// exited.
func (c *Cluster) PID(i int) int {
	a, err := c.agent(i)
	if err != nil || !a.running() {
		return 0
	}
	return a.cmd.Process.Pid
}

// Kill sends sig to node i's agent's process group (SIGKILL to crash it,
// SIGTERM for a clean stop, SIGSTOP and SIGCONT to pause it). It does not
// wait for the process to exit.
func (c *Cluster) Kill(i int, sig syscall.Signal) error {
	a, err := c.agent(i)
	if err != nil {
		return err
	}
	if err := a.signal(sig); err != nil {
		return fmt.Errorf("node %d: %w", i, err)
	}
	return nil
}

// Restart starts node i's agent again with the same data directory and
// addresses, joining every other node, once the previous process has
// exited (it waits up to Options.StopGrace for that, else returns
// ErrRunning), and waits until its HTTP API answers.
func (c *Cluster) Restart(i int) error {
	a, err := c.agent(i)
	if err != nil {
		return err
	}
	select {
	case <-a.done:
	case <-time.After(c.o.StopGrace):
		return fmt.Errorf("%w: node %d (pid %d); Kill it first", ErrRunning, i, a.cmd.Process.Pid)
	}
	var join []string
	for j, n := range c.nodes {
		if j != i {
			join = append(join, n.GossipAddr)
		}
	}
	if err := c.startAgent(i, join); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.o.StartTimeout)
	defer cancel()
	for {
		if _, err := c.members(ctx, i); err == nil {
			return nil
		}
		if err := c.exited(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: node %d's HTTP API did not answer within %v\n%s", ErrStart, i, c.o.StartTimeout, c.LogTail(i, 20))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Member is one row of an agent's /v1/members.
type Member struct {
	Name  string `json:"name"`
	State string `json:"state"`
}

// members fetches node i's member list.
func (c *Cluster) members(ctx context.Context, i int) ([]Member, error) {
	n, err := c.node(i)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.HTTPAddr+"/v1/members", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("netns: %s /v1/members: %s: %s", n.Name, resp.Status, bytes.TrimSpace(body))
	}
	var ms []Member
	if err := json.Unmarshal(body, &ms); err != nil {
		return nil, fmt.Errorf("netns: %s /v1/members: %w", n.Name, err)
	}
	return ms, nil
}

// Members returns node i's view of the membership (name and state of every
// member it knows).
func (c *Cluster) Members(ctx context.Context, i int) ([]Member, error) { return c.members(ctx, i) }

// Alive reports whether node i's /v1/members lists exactly the nodes in
// want as alive (every node of the cluster when want is nil).
func (c *Cluster) Alive(ctx context.Context, i int, want []int) (bool, error) {
	ms, err := c.members(ctx, i)
	if err != nil {
		return false, err
	}
	if want == nil {
		want = make([]int, len(c.nodes))
		for j := range want {
			want[j] = j
		}
	}
	alive := map[string]bool{}
	for _, m := range ms {
		if m.State == "alive" {
			alive[m.Name] = true
		}
	}
	if len(alive) != len(want) {
		return false, nil
	}
	for _, j := range want {
		if j < 0 || j >= len(c.nodes) || !alive[c.nodes[j].Name] {
			return false, nil
		}
	}
	return true, nil
}

// WaitMembers polls every node until each lists exactly the nodes in
// views[i] as alive (nil views, or a nil entry: every node), or ctx ends.
// It fails early if an agent exits.
func (c *Cluster) WaitMembers(ctx context.Context, views [][]int) error {
	var last error
	for {
		ok := true
		for i := range c.nodes {
			var want []int
			if views != nil {
				want = views[i]
			}
			good, err := c.Alive(ctx, i, want)
			if err != nil {
				last = err
			}
			if !good {
				ok = false
				break
			}
		}
		if ok {
			return nil
		}
		if err := c.exited(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			var tails strings.Builder
			for i := range c.nodes {
				tails.WriteString(c.LogTail(i, 10))
			}
			return fmt.Errorf("%w: members not as expected: %v (last error: %v)\n%s", ErrStart, ctx.Err(), last, tails.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// exited returns an error naming the first agent that has exited.
func (c *Cluster) exited() error {
	c.mu.Lock()
	agents := append([]*agent(nil), c.mu.agents...)
	c.mu.Unlock()
	for i, a := range agents {
		if a != nil && !a.running() {
			return fmt.Errorf("%w: agent %s exited: %v\n%s", ErrStart, c.nodes[i].Name, a.err, c.LogTail(i, 20))
		}
	}
	return nil
}

// LogTail returns the last lines of node i's log, headed by the node's name.
func (c *Cluster) LogTail(i, lines int) string {
	n, err := c.node(i)
	if err != nil {
		return err.Error()
	}
	b, err := os.ReadFile(n.LogPath)
	if err != nil {
		return fmt.Sprintf("--- %s: %v\n", n.Name, err)
	}
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return fmt.Sprintf("--- %s (%s), last %d lines:\n%s\n", n.Name, n.LogPath, len(ls), strings.Join(ls, "\n"))
}

// CLI runs the rumor binary inside the router namespace with --addr set to
// node i's HTTP address, e.g. CLI(ctx, 0, "get", "k", "--local", "-o",
// "json"). A non-zero exit is an error wrapping *exec.ExitError; stdout and
// stderr are returned either way.
func (c *Cluster) CLI(ctx context.Context, i int, args ...string) (stdout, stderr []byte, err error) {
	n, err := c.node(i)
	if err != nil {
		return nil, nil, err
	}
	if c.closed() {
		return nil, nil, ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	argv := append([]string{"netns", "exec", c.router, c.o.Binary, "--addr", n.HTTPAddr}, args...)
	cmd := exec.CommandContext(ctx, "ip", argv...)
	cmd.WaitDelay = time.Second
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return out.Bytes(), errOut.Bytes(), fmt.Errorf("netns: rumor %s on %s: %w: %s", strings.Join(args, " "), n.Name, err,
			bytes.TrimSpace(errOut.Bytes()))
	}
	return out.Bytes(), errOut.Bytes(), nil
}

func (c *Cluster) closed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.closed
}
