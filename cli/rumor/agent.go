package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/rumorkv/rumor/node"
)

func agentCommand() *cli.Command {
	return &cli.Command{
		Name:  "agent",
		Usage: "run a Rumor node until interrupted",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "name", Usage: "member name, unique in the cluster (default: the host name)", EnvVars: []string{"RUMOR_NAME"}},
			&cli.StringFlag{Name: "data", Usage: "data directory (created if missing; a new directory means a new node identity)", EnvVars: []string{"RUMOR_DATA"}},
			&cli.BoolFlag{Name: "in-memory", Usage: "keep everything in memory (lost on exit)"},
			&cli.StringFlag{Name: "bind", Value: "127.0.0.1:7946", Usage: "gossip address, TCP and UDP", EnvVars: []string{"RUMOR_BIND"}},
			&cli.StringFlag{Name: "advertise", Usage: "gossip address other nodes use (default: --bind)", EnvVars: []string{"RUMOR_ADVERTISE"}},
			&cli.StringFlag{Name: "rpc", Usage: "peer RPC address (default: --bind's host, port + 1)", EnvVars: []string{"RUMOR_RPC"}},
			&cli.StringFlag{Name: "http", Value: "127.0.0.1:7948", Usage: "client HTTP API address", EnvVars: []string{"RUMOR_HTTP"}},
			&cli.StringSliceFlag{Name: "join", Usage: "gossip addresses of seeds (comma-separated or repeated); unreachable seeds are retried", EnvVars: []string{"RUMOR_JOIN"}},
			&cli.StringFlag{Name: "zone", Usage: "failure zone (rack, site): replicas prefer distinct zones", EnvVars: []string{"RUMOR_ZONE"}},
			&cli.IntFlag{Name: "replicas", Aliases: []string{"n"}, Value: 3, Usage: "replication factor N (the same on every node)"},
			&cli.StringFlag{Name: "r", Value: "1", Usage: "default read quorum: 1, quorum, all or a count"},
			&cli.StringFlag{Name: "w", Value: "1", Usage: "default write quorum: 1, quorum, all, primary or a count"},
			&cli.IntFlag{Name: "vnodes", Usage: "virtual nodes per member (the same on every node; default: the ring's)"},
			&cli.DurationFlag{Name: "clock-offset", Usage: "shift this node's clock (fault injection: a node with a wrong clock loses no writes)", Hidden: true},
			&cli.BoolFlag{Name: "no-sync", Usage: "acknowledge writes before they are fsynced (faster, loses recent writes on a crash)"},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error", EnvVars: []string{"RUMOR_LOG_LEVEL"}},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "text or json", EnvVars: []string{"RUMOR_LOG_FORMAT"}},
		},
		Action: runAgent,
	}
}

// newLogger returns a logger writing to w at level in format.
func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("bad --log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("bad --log-format %q: want text or json", format)
}

// agentConfig builds a node configuration from the agent's flags.
func agentConfig(c *cli.Context) (*node.Config, error) {
	if err := noArgs(c); err != nil {
		return nil, err
	}
	name := c.String("name")
	if name == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("no --name and no host name: %w", err)
		}
		name = h
	}
	cfg := node.DefaultConfig(name, c.String("data"))
	cfg.InMemory = c.Bool("in-memory")
	if cfg.DataDir == "" && !cfg.InMemory {
		return nil, fmt.Errorf("--data is required (or --in-memory)")
	}
	cfg.BindAddr = c.String("bind")
	cfg.AdvertiseAddr = c.String("advertise")
	cfg.RPCAddr = c.String("rpc")
	cfg.HTTPAddr = c.String("http")
	for _, j := range c.StringSlice("join") {
		for _, s := range strings.Split(j, ",") {
			if s = strings.TrimSpace(s); s != "" {
				cfg.Join = append(cfg.Join, s)
			}
		}
	}
	cfg.Zone = c.String("zone")
	cfg.N = c.Int("replicas")
	if err := checkLevel("r", c.String("r"), false); err != nil {
		return nil, err
	}
	if err := checkLevel("w", c.String("w"), true); err != nil {
		return nil, err
	}
	cfg.R, _ = node.ParseConsistency(c.String("r"))
	cfg.W, _ = node.ParseConsistency(c.String("w"))
	cfg.VNodes = c.Int("vnodes")
	cfg.NoSync = c.Bool("no-sync")
	cfg.ClockOffset = c.Duration("clock-offset")
	var err error
	if cfg.Logger, err = newLogger(c.App.ErrWriter, c.String("log-level"), c.String("log-format")); err != nil {
		return nil, err
	}
	return cfg, nil
}

func runAgent(c *cli.Context) error {
	cfg, err := agentConfig(c)
	if err != nil {
		return err
	}
	n, err := node.Open(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.App.ErrWriter, "rumor agent %s: gossip %s, rpc %s, http %s\n", n.Name(), n.GossipAddr(), n.RPCAddr(), n.HTTPAddr())
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	select {
	case s := <-sig:
		cfg.Logger.Info("shutting down", "signal", s.String())
	case <-n.Left():
		cfg.Logger.Info("left the cluster; stopping")
	case <-c.Context.Done():
	}
	return n.Close()
}
