package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/rumorkv/rumor/cli/client"
	"github.com/rumorkv/rumor/node"
)

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "start a real local cluster (temporary data, loopback ports), show it working, serve until interrupted",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "nodes", Value: 3, Usage: "number of nodes"},
			&cli.DurationFlag{Name: "duration", Usage: "stop after this long (default: until interrupted)"},
			&cli.StringFlag{Name: "log-level", Value: "warn", Usage: "node log level: debug, info, warn or error"},
		},
		Action: runDemo,
	}
}

// demoPorts picks the gossip, RPC and HTTP addresses of demo node i: the
// README's ports (7946+10i, +1, +2) when they are free; otherwise a free
// gossip port (memberlist needs a fixed one for TCP and UDP) and
// kernel-chosen RPC and HTTP ports.
func demoPorts(i int) (bind, rpc, http string) {
	base := 7946 + 10*i
	bind = "127.0.0.1:" + strconv.Itoa(base)
	rpc = "127.0.0.1:" + strconv.Itoa(base+1)
	http = "127.0.0.1:" + strconv.Itoa(base+2)
	if portsFree(bind, rpc, http) {
		return bind, rpc, http
	}
	return freeGossipAddr(), "127.0.0.1:0", "127.0.0.1:0"
}

func portsFree(bind, rpc, http string) bool {
	u, err := net.ListenPacket("udp", bind)
	if err != nil {
		return false
	}
	defer u.Close()
	for _, a := range []string{bind, rpc, http} {
		l, err := net.Listen("tcp", a)
		if err != nil {
			return false
		}
		defer l.Close()
	}
	return true
}

// freeGossipAddr returns a loopback address whose port is free for both
// TCP and UDP (memberlist binds both).
func freeGossipAddr() string {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			break
		}
		addr := l.Addr().String()
		l.Close()
		if u, err := net.ListenPacket("udp", addr); err == nil {
			u.Close()
			return addr
		}
	}
	return "127.0.0.1:0" // node.Open reports the failure
}

func runDemo(c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	count := c.Int("nodes")
	if count < 1 || count > 32 {
		return fmt.Errorf("--nodes must be between 1 and 32")
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return fmt.Errorf("bad --log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(c.App.ErrWriter, &slog.HandlerOptions{Level: lv}))
	dir, err := os.MkdirTemp("", "rumor-demo-")
	if err != nil {
		return fmt.Errorf("temporary directory: %w", err)
	}
	defer os.RemoveAll(dir)

	out := c.App.Writer
	var nodes []*node.Node
	defer func() {
		for _, n := range slices.Backward(nodes) {
			n.Close()
		}
	}()
	var seed string
	for i := range count {
		name := fmt.Sprintf("n%d", i+1)
		cfg := node.DefaultConfig(name, filepath.Join(dir, name))
		cfg.BindAddr, cfg.RPCAddr, cfg.HTTPAddr = demoPorts(i)
		cfg.Logger = logger
		cfg.Insecure = true // a local demo: no gossip key, TLS or tokens, and the log says so
		if seed != "" {
			cfg.Join = []string{seed}
		}
		n, err := node.Open(cfg)
		if err != nil {
			return fmt.Errorf("start %s: %w", name, err)
		}
		nodes = append(nodes, n)
		if seed == "" {
			seed = n.GossipAddr()
		}
	}
	fmt.Fprintf(out, "Rumor demo: %d nodes, data in %s (removed on exit)\n\n", count, dir)
	for _, n := range nodes {
		fmt.Fprintf(out, "  %s  http %-16s gossip %-16s rpc %s\n", n.Name(), n.HTTPAddr(), n.GossipAddr(), n.RPCAddr())
	}
	fmt.Fprintln(out)

	ctx, cancel := context.WithTimeout(c.Context, 20*time.Second)
	defer cancel()
	if err := waitAlive(ctx, nodes); err != nil {
		return err
	}
	fmt.Fprintf(out, "All %d nodes see each other. A short session against the cluster:\n\n", count)
	if err := demoSession(ctx, out, nodes); err != nil {
		return fmt.Errorf("demo session: %w", err)
	}

	first := nodes[0].HTTPAddr()
	last := nodes[len(nodes)-1].HTTPAddr()
	addrFlag := ""
	if first != "127.0.0.1:7948" {
		addrFlag = " --addr " + first
	}
	rumorCmd := "go run ./cli/rumor" + addrFlag
	lastCmd := "go run ./cli/rumor --addr " + last
	fmt.Fprint(out, "\nTry it yourself (in another terminal; --addr picks the node, any node answers):\n\n")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	for _, l := range [][2]string{
		{rumorCmd + " members", ""},
		{rumorCmd + " put colour blue", ""},
		{lastCmd + " get colour", "# any node answers"},
		{lastCmd + " put colour green", "# no context: a sibling"},
		{rumorCmd + " get colour -o json", "# both values and a context"},
		{rumorCmd + " put colour teal --context <context>", "# resolves: one value"},
		{rumorCmd + " get colour --local", "# this node's own copy"},
		{rumorCmd + " status", "# a row per node"},
		{rumorCmd + " ring", "# ownership of the hash space"},
		{"curl -s http://" + first + "/metrics", "# Prometheus"},
		{"open http://" + first + "/ui", "# the ring, live, in a browser"},
	} {
		if l[1] == "" {
			fmt.Fprintf(tw, "  %s\n", l[0]) // no cell: no trailing blanks
			continue
		}
		fmt.Fprintf(tw, "  %s\t%s\n", l[0], l[1])
	}
	tw.Flush()
	fmt.Fprintln(out)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	var timeout <-chan time.Time
	if d := c.Duration("duration"); d > 0 {
		timeout = time.After(d)
		fmt.Fprintf(out, "Serving for %v.\n", d)
	} else {
		fmt.Fprintln(out, "Serving until interrupted (Ctrl-C).")
	}
	select {
	case <-sig:
	case <-timeout:
	case <-c.Context.Done():
	}
	fmt.Fprintln(out, "Stopping the demo cluster.")
	return nil
}

func waitAlive(ctx context.Context, nodes []*node.Node) error {
	for {
		ok := true
		for _, n := range nodes {
			alive := 0
			for _, m := range n.Members() {
				// A joining node is alive but owns nothing until it has
				// taken its ranges over.
				if m.State == node.StateAlive && m.Status == node.StatusMember {
					alive++
				}
			}
			if alive != len(nodes) {
				ok = false
			}
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.New("the demo nodes did not find each other within 20 s")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// demoSession runs a few requests over HTTP and prints them as a transcript:
// a write and a read on different nodes, two concurrent writes becoming
// siblings, and a write with the read's context resolving them.
func demoSession(ctx context.Context, out io.Writer, nodes []*node.Node) error {
	a := client.New(nodes[0].HTTPAddr(), nil)
	b := client.New(nodes[len(nodes)-1].HTTPAddr(), nil)
	say := func(addr, cmd string) { fmt.Fprintf(out, "  $ rumor --addr %s %s\n", addr, cmd) }

	say(nodes[0].HTTPAddr(), "put greeting hello")
	if _, err := a.Put(ctx, "greeting", []byte("hello"), nil); err != nil {
		return err
	}
	say(nodes[len(nodes)-1].HTTPAddr(), "get greeting")
	v, err := b.Get(ctx, "greeting", nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "    %s\n", strings.Join(v.Strings(), ", "))

	say(nodes[len(nodes)-1].HTTPAddr(), "put greeting hi          # no context: concurrent with hello")
	if _, err := b.Put(ctx, "greeting", []byte("hi"), &client.WriteOptions{W: "all"}); err != nil {
		return err
	}
	say(nodes[0].HTTPAddr(), "get greeting --r all")
	v, err = a.Get(ctx, "greeting", &client.ReadOptions{R: "all"})
	if err != nil {
		return err
	}
	sibs := v.Strings()
	slices.Sort(sibs) // a stable transcript; the node's order is arbitrary
	fmt.Fprintf(out, "    siblings: %q\n    context:  %s\n", sibs, v.Context)

	say(nodes[0].HTTPAddr(), "put greeting 'hello, world' --context <that context>")
	if _, err := a.Put(ctx, "greeting", []byte("hello, world"), &client.WriteOptions{Context: v.Context, W: "all"}); err != nil {
		return err
	}
	for _, n := range nodes {
		say(n.HTTPAddr(), "get greeting --local")
		v, err := client.New(n.HTTPAddr(), nil).Get(ctx, "greeting", &client.ReadOptions{Local: true})
		if errors.Is(err, client.ErrNotFound) {
			fmt.Fprintln(out, "    (no copy here: not one of the key's N replicas)")
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", n.Name(), err)
		}
		fmt.Fprintf(out, "    %s\n", strings.Join(v.Strings(), ", "))
	}
	say(nodes[0].HTTPAddr(), "status")
	var cs node.ClusterStatus
	if err := a.GetJSON(ctx, "/v1/cluster", &cs); err != nil {
		return err
	}
	var buf strings.Builder
	printClusterStatus(&buf, cs, time.Now())
	for _, l := range strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n") {
		fmt.Fprintf(out, "    %s\n", l)
	}
	return nil
}
