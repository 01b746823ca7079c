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
		Description: "Settings come from flags, then RUMOR_* environment variables, then the TOML file\n" +
			"given by --config (keys are the flag names), then the defaults: see docs/configuration.md.",
		Flags:  agentFlags(),
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

// agentConfig builds a node configuration from the agent's settings
// (flags, environment, configuration file, defaults).
func agentConfig(c *cli.Context, s *settings) (*node.Config, error) {
	name := s.str("name")
	if name == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("no --name and no host name: %w", err)
		}
		name = h
		s.vals["name"] = h
	}
	cfg := node.DefaultConfig(name, s.str("data"))
	cfg.InMemory = s.boolean("in-memory")
	if cfg.DataDir == "" && !cfg.InMemory {
		return nil, fmt.Errorf("--data is required (or --in-memory)")
	}
	cfg.BindAddr = s.str("bind")
	cfg.AdvertiseAddr = s.str("advertise")
	cfg.RPCAddr = s.str("rpc")
	cfg.AdvertiseRPCAddr = s.str("advertise-rpc")
	cfg.HTTPAddr = s.str("http")
	cfg.AdvertiseHTTPAddr = s.str("advertise-http")
	cfg.Join = s.list("join")
	cfg.Zone = s.str("zone")
	cfg.N = s.integer("replicas")
	// r and w were checked by resolveSettings.
	cfg.R, _ = node.ParseConsistency(s.str("r"))
	cfg.W, _ = node.ParseConsistency(s.str("w"))
	cfg.VNodes = s.integer("vnodes")
	cfg.NoSync = s.boolean("no-sync")
	cfg.ClockOffset = s.duration("clock-offset")
	if k := s.str("gossip-key"); k != "" {
		key, err := node.ParseGossipKey(k)
		if err != nil {
			// The value is a secret: the message does not repeat it.
			return nil, fmt.Errorf("gossip-key (from %s): %s", s.src["gossip-key"], strings.TrimPrefix(err.Error(), "node: "))
		}
		cfg.GossipKeys = [][]byte{key}
	}
	cfg.KeyringFile = s.str("keyring-file")
	cfg.Insecure = s.boolean("insecure")
	if ca, cert, key := s.str("tls-ca"), s.str("tls-cert"), s.str("tls-key"); ca != "" || cert != "" || key != "" {
		if ca == "" || cert == "" || key == "" {
			return nil, fmt.Errorf("--tls-ca, --tls-cert and --tls-key go together (got --tls-ca %q, --tls-cert %q, --tls-key %q)", ca, cert, key)
		}
		cfg.TLS = &node.TLSConfig{CAFile: ca, CertFile: cert, KeyFile: key, VerifyHostname: s.boolean("tls-verify-hostname")}
	} else if s.boolean("tls-verify-hostname") {
		return nil, fmt.Errorf("--tls-verify-hostname needs --tls-ca, --tls-cert and --tls-key")
	}
	var err error
	if cfg.Logger, err = newLogger(c.App.ErrWriter, s.str("log-level"), s.str("log-format")); err != nil {
		return nil, err
	}
	if path := s.str("tokens-file"); path != "" {
		tokens, warning, err := node.ReadTokensFile(path)
		if err != nil {
			return nil, err
		}
		if warning != "" {
			cfg.Logger.Warn(warning)
		}
		cfg.Tokens = tokens
	}
	return cfg, nil
}

func runAgent(c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	if c.Bool(flagConfigTable) {
		_, err := io.WriteString(c.App.Writer, configTable())
		return err
	}
	asJSON, err := wantJSON(c)
	if err != nil {
		return err
	}
	s, err := resolveSettings(c, os.LookupEnv)
	if err != nil {
		return err
	}
	cfg, err := agentConfig(c, s)
	if err != nil {
		return err
	}
	if c.Bool(flagPrintConfig) {
		if err := cfg.Validate(); err != nil {
			return err
		}
		// Printable and valid, but it would not start: say why.
		if gaps := cfg.SecurityGaps(); len(gaps) > 0 && !cfg.Insecure {
			fmt.Fprintf(c.App.ErrWriter, "rumor: note: this configuration would not start: %s; configure them (docs/security.md) or set insecure (--insecure)\n",
				strings.Join(gaps, "; "))
		}
		if asJSON {
			return s.writeJSON(c.App.Writer)
		}
		return s.writeTOML(c.App.Writer)
	}
	n, err := node.Open(cfg)
	if err != nil {
		return err
	}
	startupLine(c.App.ErrWriter, s.str("log-format"), n, cfg.BindAddr)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	// SIGHUP reloads the TLS files (certificate rotation without a
	// restart); without TLS it is logged and ignored, never fatal
	// (systemctl reload on any node).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			if cfg.TLS == nil {
				cfg.Logger.Info("SIGHUP: no TLS files to reload")
				continue
			}
			if err := n.ReloadTLS(); err != nil {
				cfg.Logger.Error("SIGHUP: TLS files not reloaded; keeping the current ones", "err", err)
			}
			continue
		case s := <-sig:
			cfg.Logger.Info("shutting down", "signal", s.String())
		case <-n.Left():
			cfg.Logger.Info("left the cluster; stopping")
		case <-c.Context.Done():
		}
		return n.Close()
	}
}

// startupLine tells the operator where the agent listens, whatever the log
// level: a plain line, or a JSON record when logs are JSON (so that every
// line of stderr parses). The addresses are the advertised ones; the
// listen addresses follow when they differ (a 0.0.0.0 host).
func startupLine(w io.Writer, format string, n *node.Node, bind string) {
	// An HTTPS API is announced as https://host:port.
	httpAdv := strings.TrimPrefix(n.HTTPAddr(), "https://")
	differ := n.RPCListenAddr() != n.RPCAddr() || n.HTTPListenAddr() != httpAdv || bind != n.GossipAddr()
	if format == "json" {
		attrs := []any{"name", n.Name(), "gossip", n.GossipAddr(), "rpc", n.RPCAddr(), "http", n.HTTPAddr()}
		if differ {
			attrs = append(attrs, "gossip_bind", bind, "rpc_listen", n.RPCListenAddr(), "http_listen", n.HTTPListenAddr())
		}
		slog.New(slog.NewJSONHandler(w, nil)).Info("rumor agent started", attrs...)
		return
	}
	fmt.Fprintf(w, "rumor agent %s: gossip %s, rpc %s, http %s\n", n.Name(), n.GossipAddr(), n.RPCAddr(), n.HTTPAddr())
	if differ {
		fmt.Fprintf(w, "rumor agent %s: listening on gossip %s, rpc %s, http %s\n", n.Name(), bind, n.RPCListenAddr(), n.HTTPListenAddr())
	}
}
