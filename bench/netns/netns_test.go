package netns

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
	"syscall"
	"testing"
	"time"
)

var build struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if build.dir != "" {
		_ = os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// rumorBinary skips the test unless namespaces are available, sweeps what
// crashed earlier runs left, and builds the rumor binary once per test
// binary.
func rumorBinary(t *testing.T) string {
	t.Helper()
	if err := Available(); err != nil {
		t.Skip(err)
	}
	build.once.Do(func() {
		if err := Sweep(); err != nil {
			build.err = fmt.Errorf("sweep: %w", err)
			return
		}
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = "/usr/local/go/bin/go"
		}
		if build.dir, err = os.MkdirTemp("", "rumor-netns-"); err != nil {
			build.err = err
			return
		}
		build.bin = filepath.Join(build.dir, "rumor")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, goTool, "build", "-o", build.bin, "github.com/rumorkv/rumor/cli/rumor")
		// In this package's source directory (inside the module), also when
		// the compiled test binary runs elsewhere.
		if _, file, _, ok := runtime.Caller(0); ok {
			cmd.Dir = filepath.Dir(file)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.bin
}

// startCluster starts n agents and registers cleanup that prints the agents'
// log tails if the test failed, closes the cluster and checks that no
// namespace and no agent process of it survived.
func startCluster(t *testing.T, bin string, n int) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	c, err := Start(ctx, Options{Nodes: n, Binary: bin, Dir: t.TempDir(), Logf: t.Logf})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { closeAndCheck(t, c, bin) })
	return c
}

func closeAndCheck(t *testing.T, c *Cluster, bin string) {
	t.Helper()
	if t.Failed() {
		for i := range c.Nodes() {
			t.Log(c.LogTail(i, 40))
		}
	}
	t0 := time.Now()
	if err := c.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	t.Logf("close took %v", time.Since(t0).Round(time.Millisecond))
	if err := c.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	names, err := listNamespaces(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if strings.HasPrefix(name, c.ID()+"-") {
			t.Errorf("namespace %s survived Close", name)
		}
	}
	if pids := processesOf(t, bin); len(pids) > 0 {
		t.Errorf("agent processes survived Close: %v", pids)
	}
}

// processesOf lists the processes running bin.
func processesOf(t *testing.T, bin string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if argv0, _, _ := bytes.Cut(cmdline, []byte{0}); string(argv0) == bin {
			pids = append(pids, pid)
		}
	}
	return pids
}

// kvState is one node's local copy of a key, in a form that compares.
type kvState struct {
	Found   bool
	Values  []string // sorted
	Context string
}

func (s kvState) String() string {
	if !s.Found {
		return fmt.Sprintf("not found (context %q)", s.Context)
	}
	return fmt.Sprintf("%q (context %q)", s.Values, s.Context)
}

func (s kvState) equal(o kvState) bool {
	return s.Found == o.Found && s.Context == o.Context && slices.Equal(s.Values, o.Values)
}

// getJSON is the JSON body of a read (HTTP and `rumor get -o json`), and of
// a not-found answer.
type getJSON struct {
	Values   []string `json:"values"`
	Encoding string   `json:"encoding"`
	Context  string   `json:"context"`
}

func (g getJSON) state(found bool) (kvState, error) {
	if g.Encoding != "" {
		return kvState{}, fmt.Errorf("unexpected encoding %q", g.Encoding)
	}
	v := slices.Clone(g.Values)
	slices.Sort(v)
	if v == nil {
		v = []string{}
	}
	return kvState{Found: found, Values: v, Context: g.Context}, nil
}

func kvURL(c *Cluster, i int, key string) string {
	return "http://" + c.Nodes()[i].HTTPAddr + "/v1/kv/" + url.PathEscape(key)
}

func do(ctx context.Context, c *Cluster, method, u, causal string, body []byte) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Accept", "application/json")
	if causal != "" {
		req.Header.Set("X-Rumor-Context", causal)
	}
	resp, err := c.Client().Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// localHTTP reads node i's own copy of key over HTTP.
func localHTTP(ctx context.Context, c *Cluster, i int, key string) (kvState, error) {
	code, b, err := do(ctx, c, http.MethodGet, kvURL(c, i, key)+"?local=1", "", nil)
	if err != nil {
		return kvState{}, err
	}
	var g getJSON
	if code != http.StatusOK && code != http.StatusMultipleChoices && code != http.StatusNotFound {
		return kvState{}, fmt.Errorf("GET %s on n%d: %d %s", key, i, code, b)
	}
	if err := json.Unmarshal(b, &g); err != nil {
		return kvState{}, fmt.Errorf("GET %s on n%d: %v: %s", key, i, err, b)
	}
	return g.state(code != http.StatusNotFound)
}

// localCLI reads node i's own copy of key with `rumor get --local -o json`.
func localCLI(ctx context.Context, c *Cluster, i int, key string) (kvState, error) {
	stdout, stderr, err := c.CLI(ctx, i, "get", key, "--local", "-o", "json")
	found := true
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !bytes.Contains(stderr, []byte("not found")) {
			return kvState{}, err
		}
		found = false
	}
	var g getJSON
	if err := json.Unmarshal(stdout, &g); err != nil {
		return kvState{}, fmt.Errorf("rumor get %s on n%d: %v: %q", key, i, err, stdout)
	}
	return g.state(found)
}

func write(ctx context.Context, t *testing.T, c *Cluster, i int, method, key, value, causal, query string) {
	t.Helper()
	code, b, err := do(ctx, c, method, kvURL(c, i, key)+query, causal, []byte(value))
	if err != nil || code != http.StatusOK {
		t.Fatalf("%s %s on n%d: %d %s %v", method, key, i, code, b, err)
	}
}

// compare reads every key on every node with read and reports whether all
// nodes agree and hold the expected values (as found/not found and sorted
// values; contexts are opaque and only compared across nodes). The string
// describes the first difference.
func compare(ctx context.Context, c *Cluster, keys []string, want map[string]kvState,
	read func(context.Context, *Cluster, int, string) (kvState, error)) (bool, string) {
	type job struct{ key string }
	n := len(c.Nodes())
	got := make(map[string][]kvState, len(keys))
	for _, k := range keys {
		got[k] = make([]kvState, n)
	}
	var mu sync.Mutex
	var firstErr error
	jobs := make(chan job)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for j := range jobs {
				for i := range n {
					s, err := read(ctx, c, i, j.key)
					mu.Lock()
					if err != nil && firstErr == nil {
						firstErr = err
					}
					got[j.key][i] = s
					mu.Unlock()
				}
			}
		})
	}
	for _, k := range keys {
		jobs <- job{k}
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return false, firstErr.Error()
	}
	for _, k := range keys {
		g := got[k]
		for i := 1; i < n; i++ {
			if !g[i].equal(g[0]) {
				return false, fmt.Sprintf("%s: n0 has %v, n%d has %v", k, g[0], i, g[i])
			}
		}
		w := want[k]
		if g[0].Found != w.Found || !slices.Equal(g[0].Values, w.Values) {
			return false, fmt.Sprintf("%s: all nodes have %v, want %q (found=%v)", k, g[0], w.Values, w.Found)
		}
	}
	return true, ""
}

// TestPartitionHeal is issue 3's real-process acceptance test: three agents,
// writes while one is cut off (it stays writable: W=1), and after the cut is
// healed `rumor get --local` on every node returns the same values within
// seconds. Both kinds of cut: a blackhole route on the sender (fails fast)
// and a silent drop in the router.
func TestPartitionHeal(t *testing.T) {
	bin := rumorBinary(t)
	for _, tc := range []struct {
		name   string
		silent bool
	}{{"sender-blackhole", false}, {"silent-drop", true}} {
		t.Run(tc.name, func(t *testing.T) { partitionHeal(t, bin, tc.silent) })
	}
}

func partitionHeal(t *testing.T, bin string, silent bool) {
	const healDeadline = 20 * time.Second
	c := startCluster(t, bin, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()

	want := map[string]kvState{}
	var keys []string
	set := func(key string, found bool, values ...string) {
		if _, ok := want[key]; !ok {
			keys = append(keys, key)
		}
		v := append([]string{}, values...)
		slices.Sort(v)
		want[key] = kvState{Found: found, Values: v}
	}

	// Before the cut: on every replica (N=3, so every node).
	for i := range 5 {
		key := fmt.Sprintf("pre-%d", i)
		write(ctx, t, c, 0, http.MethodPut, key, "pre-value-"+key, "", "?w=all")
		set(key, true, "pre-value-"+key)
	}

	t0 := time.Now()
	if err := c.Isolate(2, silent); err != nil {
		t.Fatal(err)
	}
	// Wait until both sides see the split, so the writes below happen in a
	// partition the nodes know about (n2 alone cannot confirm its
	// suspicions, so its side takes longest).
	views := [][]int{{0, 1}, {0, 1}, {2}}
	seen := make([]time.Duration, 3)
	for slices.Contains(seen, 0) {
		if time.Since(t0) > 20*time.Second {
			t.Fatalf("membership did not split within 20 s: seen after %v", seen)
		}
		for i := range 3 {
			if seen[i] == 0 {
				if ok, _ := c.Alive(ctx, i, views[i]); ok {
					seen[i] = time.Since(t0)
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("cut → n0, n1, n2 see the split after %.2fs, %.2fs, %.2fs",
		seen[0].Seconds(), seen[1].Seconds(), seen[2].Seconds())

	// During the cut: 50 keys through n0 and n1, a delete with the read's
	// context, and writes on the cut-off n2, some to the same keys.
	tw := time.Now()
	for i := range 50 {
		key := fmt.Sprintf("k-%02d", i)
		write(ctx, t, c, i%2, http.MethodPut, key, "v-"+key, "", "")
		set(key, true, "v-"+key)
	}
	pre0, err := localHTTP(ctx, c, 0, "pre-0")
	if err != nil || !pre0.Found {
		t.Fatalf("read pre-0 before deleting it: %v %v", pre0, err)
	}
	write(ctx, t, c, 0, http.MethodDelete, "pre-0", "", pre0.Context, "")
	set("pre-0", false)
	for i := range 5 {
		key := fmt.Sprintf("k-%02d", i)
		write(ctx, t, c, 2, http.MethodPut, key, "n2-"+key, "", "")
		set(key, true, "v-"+key, "n2-"+key)
	}
	for i := range 3 {
		key := fmt.Sprintf("n2only-%d", i)
		write(ctx, t, c, 2, http.MethodPut, key, "n2-"+key, "", "")
		set(key, true, "n2-"+key)
	}
	t.Logf("%d writes during the cut took %.2fs", 50+1+5+3, time.Since(tw).Seconds())

	// The cut is real: n2 has not seen n0's writes nor n0 n2's.
	if s, err := localHTTP(ctx, c, 2, "k-10"); err != nil || s.Found {
		t.Fatalf("n2 saw k-10 during the cut: %v %v", s, err)
	}
	if s, err := localHTTP(ctx, c, 0, "n2only-0"); err != nil || s.Found {
		t.Fatalf("n0 saw n2only-0 during the cut: %v %v", s, err)
	}
	if s, err := localHTTP(ctx, c, 2, "pre-0"); err != nil || !s.Found {
		t.Fatalf("n2 saw the delete of pre-0 during the cut: %v %v", s, err)
	}

	if err := c.Heal(); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	var members, identical time.Duration
	var diff string
	for members == 0 || identical == 0 {
		if time.Since(healed) > healDeadline {
			t.Fatalf("not converged %v after heal: membership after %v, identical after %v; last difference: %s",
				healDeadline, members, identical, diff)
		}
		if members == 0 {
			ok := true
			for i := range 3 {
				if alive, err := c.Alive(ctx, i, nil); err != nil || !alive {
					ok = false
					break
				}
			}
			if ok {
				members = time.Since(healed)
			}
		}
		if identical == 0 {
			var ok bool
			if ok, diff = compare(ctx, c, keys, want, localHTTP); ok {
				identical = time.Since(healed)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The acceptance criterion proper: `rumor get --local` on every node.
	var viaCLI time.Duration
	for {
		ok, d := compare(ctx, c, keys, want, localCLI)
		if ok {
			viaCLI = time.Since(healed)
			break
		}
		if time.Since(healed) > healDeadline {
			t.Fatalf("`rumor get --local` differs %v after heal: %s", healDeadline, d)
		}
	}
	t.Logf("heal → one membership: %.2fs; heal → identical on every node (HTTP local reads): %.2fs; "+
		"confirmed with `rumor get --local` for %d keys × 3 nodes at %.2fs",
		members.Seconds(), identical.Seconds(), len(keys), viaCLI.Seconds())
}

// dial connects from node from's namespace to node to's HTTP port.
func dial(c *Cluster, from, to int, timeout time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	t0 := time.Now()
	conn, err := c.DialFrom(ctx, from, "tcp", c.Nodes()[to].HTTPAddr)
	if err == nil {
		_ = conn.Close()
	}
	return time.Since(t0), err
}

// isTimeout reports whether a dial ran out of time (the net package reports
// a context deadline as context.DeadlineExceeded or as an i/o timeout).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// TestCuts checks the harness itself: a sender blackhole fails a dial at
// once, a silent router drop makes it time out, Heal restores both, the
// test process keeps reaching cut-off nodes, Partition cuts exactly between
// groups, and Kill/Restart keep a node's data and identity.
func TestCuts(t *testing.T) {
	bin := rumorBinary(t)
	c := startCluster(t, bin, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()

	reach := func(from, to int) {
		t.Helper()
		if d, err := dial(c, from, to, 2*time.Second); err != nil {
			t.Fatalf("n%d → n%d: %v after %v", from, to, err, d)
		}
	}
	fast := func(from, to int) {
		t.Helper()
		d, err := dial(c, from, to, 2*time.Second)
		if err == nil || isTimeout(err) || d > 500*time.Millisecond {
			t.Fatalf("n%d → n%d: want an immediate error, got %v after %v", from, to, err, d)
		}
		t.Logf("n%d → n%d across a sender blackhole: %v after %v", from, to, err, d.Round(time.Microsecond))
	}
	silent := func(from, to int) {
		t.Helper()
		d, err := dial(c, from, to, time.Second)
		if !isTimeout(err) || d < 900*time.Millisecond {
			t.Fatalf("n%d → n%d: want a timeout, got %v after %v", from, to, err, d)
		}
	}
	routerReaches := func(i int) {
		t.Helper()
		if _, err := c.members(ctx, i); err != nil {
			t.Fatalf("test process → n%d: %v", i, err)
		}
	}

	for a := range 3 {
		for b := range 3 {
			if a != b {
				reach(a, b)
			}
		}
	}

	if err := c.Cut(0, 1, false); err != nil {
		t.Fatal(err)
	}
	if err := c.Cut(0, 1, false); err != nil {
		t.Fatalf("repeated cut: %v", err)
	}
	fast(0, 1)
	reach(0, 2)
	reach(1, 2)
	routerReaches(1)
	if err := c.Heal(); err != nil {
		t.Fatal(err)
	}
	reach(0, 1)

	if err := c.Cut(0, 1, true); err != nil {
		t.Fatal(err)
	}
	silent(0, 1)
	silent(1, 0) // the SYN gets through, the SYN-ACK does not
	reach(0, 2)
	reach(2, 1)
	routerReaches(0)
	routerReaches(1)
	if err := c.Heal(); err != nil {
		t.Fatal(err)
	}
	reach(0, 1)
	reach(1, 0)

	if err := c.Partition(false, []int{0}, []int{1, 2}); err != nil {
		t.Fatal(err)
	}
	fast(0, 1)
	fast(0, 2)
	fast(1, 0)
	fast(2, 0)
	reach(1, 2)
	reach(2, 1)
	if err := c.Heal(); err != nil {
		t.Fatal(err)
	}
	if err := c.Isolate(2, true); err != nil {
		t.Fatal(err)
	}
	silent(0, 2)
	silent(2, 1)
	reach(0, 1)
	routerReaches(2)
	if err := c.Heal(); err != nil {
		t.Fatal(err)
	}
	reach(0, 2)
	reach(2, 1)

	// Invalid arguments.
	if err := c.Cut(0, 0, false); !errors.Is(err, ErrBadNode) {
		t.Errorf("Cut(0, 0): %v, want ErrBadNode", err)
	}
	if err := c.Cut(0, 3, true); !errors.Is(err, ErrBadNode) {
		t.Errorf("Cut(0, 3): %v, want ErrBadNode", err)
	}

	// The CLI runs in the router namespace.
	out, _, err := c.CLI(ctx, 1, "members", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var ms []Member
	if err := json.Unmarshal(out, &ms); err != nil || len(ms) != 3 {
		t.Fatalf("rumor members: %v %s", err, out)
	}

	// Kill and Restart: same data directory, so the value and the identity
	// survive; the node rejoins.
	write(ctx, t, c, 1, http.MethodPut, "durable", "yes", "", "?w=all")
	if err := c.Restart(1); !errors.Is(err, ErrRunning) {
		t.Fatalf("Restart of a running agent: %v, want ErrRunning", err)
	}
	oldPID := c.PID(1)
	if err := c.Kill(1, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(1); err != nil {
		t.Fatal(err)
	}
	if c.PID(1) == oldPID || c.PID(1) == 0 {
		t.Fatalf("pid %d after restart (was %d)", c.PID(1), oldPID)
	}
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := c.WaitMembers(wctx, nil); err != nil {
		t.Fatalf("after restart: %v", err)
	}
	if s, err := localCLI(ctx, c, 1, "durable"); err != nil || !s.Found || !slices.Equal(s.Values, []string{"yes"}) {
		t.Fatalf("durable after restart: %v %v", s, err)
	}
	if ms, err := c.Members(ctx, 0); err != nil || len(ms) != 3 {
		t.Fatalf("n0's members after restart (same identity, so still 3): %v %v", ms, err)
	}
}

// TestSweep checks that Sweep removes namespaces of dead owners, with their
// processes, and leaves those of live owners alone.
func TestSweep(t *testing.T) {
	if err := Available(); err != nil {
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	deadPID := gone.ProcessState.Pid()
	if processExists(deadPID) {
		t.Skipf("pid %d was reused at once", deadPID)
	}
	stale := fmt.Sprintf("%s%d-1-r", namePrefix, deadPID)
	live := fmt.Sprintf("%s%d-%d-r", namePrefix, os.Getpid(), clusters.Add(1))
	for _, ns := range []string{stale, live} {
		if _, err := ip(ctx, "netns", "add", ns); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = removeNamespace(context.Background(), ns) })
	}
	sleeper := exec.Command("ip", "netns", "exec", stale, "sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() })

	if err := Sweep(); err != nil {
		t.Fatal(err)
	}
	names, err := listNamespaces(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(names, stale) {
		t.Errorf("Sweep left %s (owner %d is gone)", stale, deadPID)
	}
	if !slices.Contains(names, live) {
		t.Errorf("Sweep removed %s (owner is this process)", live)
	}
	done := make(chan error, 1)
	go func() { done <- sleeper.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Errorf("process in the stale namespace: %v, want killed by SIGKILL", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("Sweep did not kill the process in the stale namespace")
	}
}

// TestStartOptions checks that bad options fail before anything is created.
func TestStartOptions(t *testing.T) {
	if err := Available(); err != nil {
		t.Skip(err)
	}
	for _, o := range []Options{
		{Nodes: 0, Binary: "/bin/true", Dir: t.TempDir()},
		{Nodes: maxNodes + 1, Binary: "/bin/true", Dir: t.TempDir()},
		{Nodes: 1, Dir: t.TempDir()},
		{Nodes: 1, Binary: "/nonexistent/rumor", Dir: t.TempDir()},
		{Nodes: 1, Binary: t.TempDir(), Dir: t.TempDir()},
	} {
		if c, err := Start(context.Background(), o); err == nil {
			_ = c.Close()
			t.Errorf("Start(%+v) succeeded", o)
		}
	}
	// An agent that cannot start: Start fails and removes what it made.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := Start(ctx, Options{Nodes: 2, Binary: "/bin/false", Dir: t.TempDir(), Logf: t.Logf})
	if !errors.Is(err, ErrStart) {
		t.Fatalf("Start with /bin/false: %v, want ErrStart", err)
	}
	names, err := listNamespaces(ctx)
	if err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("%s%d-", namePrefix, os.Getpid())
	for _, name := range names {
		if strings.HasPrefix(name, prefix) {
			t.Errorf("namespace %s survived a failed Start", name)
		}
	}
}

// TestAgentArgs: AgentArgs go to every agent, AgentArgsFor's to its node,
// read at every start (so a restart can change them).
func TestAgentArgs(t *testing.T) {
	extra := map[int][]string{1: {"--clock-offset", "5s"}}
	c := &Cluster{o: Options{Binary: "/bin/rumor", AgentArgs: []string{"--log-level", "warn"},
		AgentArgsFor: func(i int) []string { return extra[i] }}}
	for i := range 2 {
		c.nodes = append(c.nodes, NodeInfo{Name: fmt.Sprintf("n%d", i), Namespace: fmt.Sprintf("ns%d", i)})
	}
	tail := func(i int) string {
		a := c.agentArgs(i, nil)
		return strings.Join(a[len(a)-4:], " ")
	}
	if got := tail(0); !strings.HasSuffix(got, "--log-level warn") {
		t.Errorf("node 0: %q", got)
	}
	if got := tail(1); got != "--log-level warn --clock-offset 5s" {
		t.Errorf("node 1: %q", got)
	}
	extra[1] = nil
	if got := tail(1); strings.Contains(got, "clock-offset") {
		t.Errorf("node 1 after the change: %q", got)
	}
}
