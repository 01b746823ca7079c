package node

import "strings"

// securityChecks are the protections a node can run with: each names, in
// plain words, what is missing when ok says the configuration lacks it.
// SecurityGaps lists them in this order; a new protection is one line.
var securityChecks = []struct {
	gap string
	ok  func(c *Config) bool
}{
	{"client API without tokens (anyone who reaches it can read and write)",
		func(c *Config) bool { return c.HTTPAddr == "" || len(c.Tokens) > 0 }},
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
