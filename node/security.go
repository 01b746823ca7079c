package node

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// securityChecks are the protections a node can run with: each names, in
// plain words, what is missing when ok says the configuration lacks it.
// SecurityGaps lists them in this order; a new protection is one line.
var securityChecks = []struct {
	gap string
	ok  func(c *Config) bool
}{
	{"gossip without encryption (anyone who reaches the gossip port can join and read membership: set a gossip key)",
		func(c *Config) bool { return len(c.GossipKeys) > 0 || keyringFileExists(c) }},
	{"peer RPC without mutual TLS (anyone who reaches the RPC port can read and write data: set TLS certificates)",
		func(c *Config) bool { return c.TLS != nil }},
	{"client API without tokens (anyone who reaches it can read and write)",
		func(c *Config) bool { return c.HTTPAddr == "" || len(c.Tokens) > 0 }},
}

// keyringFileExists reports whether c's keyring file exists: a node whose
// keys were installed by rotation needs no key in its configuration.
func keyringFileExists(c *Config) bool {
	p := keyringFilePath(c)
	if p == "" {
		return false
	}
	_, err := os.Stat(p)
	return err == nil
}

// ErrInsecure is returned by Open for a configuration that leaves
// something unprotected (SecurityGaps) without Config.Insecure.
var ErrInsecure = errors.New("node: insecure configuration")

// checkSecure refuses a configuration with security gaps unless Insecure
// acknowledges them: insecure operation only when asked for.
func (c *Config) checkSecure() error {
	gaps := c.SecurityGaps()
	if len(gaps) == 0 || c.Insecure {
		return nil
	}
	return fmt.Errorf("%w: %s; configure them (docs/security.md) or set Insecure (rumor agent --insecure) to run without",
		ErrInsecure, strings.Join(gaps, "; "))
}

// SecurityGaps lists in plain words what this configuration leaves
// unprotected; empty when nothing is. Running with gaps is meant to need
// Insecure; the node logs them at start.
func (c *Config) SecurityGaps() []string {
	var gaps []string
	for _, s := range securityChecks {
		if !s.ok(c) {
			gaps = append(gaps, s.gap)
		}
	}
	return gaps
}

// logSecurityGaps warns at start about what the node runs without.
func (n *Node) logSecurityGaps() {
	gaps := n.cfg.SecurityGaps()
	switch {
	case len(gaps) > 0 && n.cfg.Insecure:
		n.log.Warn("running insecure, as asked: "+strings.Join(gaps, "; "), "insecure", true)
	case len(gaps) > 0:
		n.log.Warn("running without: "+strings.Join(gaps, "; ")+"; set insecure (--insecure) to acknowledge", "insecure", false)
	case n.cfg.Insecure:
		n.log.Info("insecure is set, but nothing is left unprotected")
	}
}
