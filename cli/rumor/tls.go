package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/rumorkv/rumor/node/tlsutil"
)

// `rumor tls ca` and `rumor tls cert` make a cluster's CA and its nodes'
// certificates, as `consul tls ca create` and `consul tls cert create` do
// (a trailing "create" is accepted: `rumor tls ca create`).

// Default file names, in --dir.
const (
	caFile    = "rumor-agent-ca.pem"
	caKeyFile = "rumor-agent-ca-key.pem"
)

// maxDays bounds --days (100 years; a time.Duration holds 292).
const maxDays = 100 * 365

// nodeFileName is what a node name may be: it becomes part of file names.
var nodeFileName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

func tlsCommand() *cli.Command {
	ca := tlsCACommand()
	cert := tlsCertCommand()
	// A trailing "create" runs the same command, with flags of its own
	// (urfave/cli keeps parsed values in the flags).
	for _, p := range []struct {
		c    *cli.Command
		make func() *cli.Command
	}{{ca, tlsCACommand}, {cert, tlsCertCommand}} {
		sub := p.make()
		sub.Name, sub.Usage = "create", "the same as '"+p.c.Name+"' without 'create'"
		sub.OnUsageError, sub.HideHelpCommand = tlsFlagError, true
		p.c.Subcommands = []*cli.Command{sub}
	}
	for _, c := range []*cli.Command{ca, cert} {
		c.OnUsageError, c.HideHelpCommand = tlsFlagError, true
	}
	return &cli.Command{
		Name:  "tls",
		Usage: "create a CA and node certificates for mutual TLS between nodes and HTTPS",
		Description: "rumor tls ca                       the cluster's CA: rumor-agent-ca.pem, rumor-agent-ca-key.pem\n" +
			"rumor tls cert --node n1 --ip 10.0.0.1   a node's certificate: rumor-n1.pem, rumor-n1-key.pem\n\n" +
			"Start each agent with --tls-ca rumor-agent-ca.pem --tls-cert rumor-NAME.pem --tls-key rumor-NAME-key.pem;\n" +
			"keep the CA's key off the nodes. See docs/security.md.",
		Subcommands: []*cli.Command{ca, cert},
		Action: func(c *cli.Context) error {
			if !c.Args().Present() {
				return cli.ShowSubcommandHelp(c)
			}
			return tlsUsageErr(c, fmt.Sprintf("unknown tls command %q: want ca or cert", c.Args().First()))
		},
	}
}

func tlsCACommand() *cli.Command {
	return &cli.Command{
		Name:  "ca",
		Usage: "create the cluster's certificate authority (" + caFile + " and " + caKeyFile + ")",
		Description: "Writes a self-signed CA certificate and its ECDSA P-256 key (mode 0600) in --dir. It never\n" +
			"overwrites a file. Give the certificate to every node and client; keep the key where you\n" +
			"make certificates, not on the nodes.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Value: ".", Usage: "directory to write the files in (created if missing)"},
			&cli.IntFlag{Name: "days", Value: 5 * 365, Usage: "days the CA is valid"},
			&cli.StringFlag{Name: "common-name", Usage: "the CA's subject common name", DefaultText: "Rumor Agent CA and 8 hex digits of its serial number"},
			outputFlag(),
		},
		Action: runTLSCA,
	}
}

func tlsCertCommand() *cli.Command {
	return &cli.Command{
		Name:  "cert",
		Usage: "create a node's certificate, signed by the CA (rumor-NAME.pem and rumor-NAME-key.pem)",
		Description: "Writes a certificate for node NAME and its ECDSA P-256 key (mode 0600) in --dir, signed by the\n" +
			"CA. It serves both ends of peer connections (server and client usages) and the node's HTTPS\n" +
			"API. Its names are localhost, 127.0.0.1 and what --dns and --ip add: list the addresses\n" +
			"clients use to reach the node (HTTPS clients check them). It never overwrites a file, and\n" +
			"never outlives the CA.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "node", Usage: "the node's name: the certificate's common name and its files' names (required)"},
			&cli.StringFlag{Name: "dir", Value: ".", Usage: "directory to write the files in (created if missing)"},
			&cli.StringFlag{Name: "ca", Usage: "CA certificate", DefaultText: "--dir/" + caFile},
			&cli.StringFlag{Name: "ca-key", Usage: "CA private key", DefaultText: "--dir/" + caKeyFile},
			&cli.StringSliceFlag{Name: "ip", Usage: "IP address the node is reached at (repeatable, comma-separated); 127.0.0.1 is always included"},
			&cli.StringSliceFlag{Name: "dns", Usage: "DNS name the node is reached at (repeatable, comma-separated); localhost is always included"},
			&cli.IntFlag{Name: "days", Value: 365, Usage: "days the certificate is valid (at most until the CA expires)"},
			outputFlag(),
		},
		Action: runTLSCert,
	}
}

// tlsUsageErr is a usage error of a tls command, naming it in full
// ("rumor tls cert").
func tlsUsageErr(c *cli.Context, msg string) error {
	return exitErr{msg: fmt.Sprintf("%s (see '%s --help')", msg, helpName(c)), code: exitError}
}

// tlsFlagError reports a flag parsing error of a tls command in one line.
func tlsFlagError(c *cli.Context, err error, _ bool) error {
	return tlsUsageErr(c, err.Error())
}

func helpName(c *cli.Context) string {
	if c.Command != nil && c.Command.HelpName != "" {
		return c.Command.HelpName
	}
	return "rumor tls"
}

func runTLSCA(c *cli.Context) error {
	if c.NArg() > 0 {
		return tlsUsageErr(c, fmt.Sprintf("takes no arguments, got %q", c.Args().First()))
	}
	js, err := wantJSON(c)
	if err != nil {
		return err
	}
	days := c.Int("days")
	if days < 1 || days > maxDays {
		return tlsUsageErr(c, fmt.Sprintf("--days must be from 1 to %d, got %d", maxDays, days))
	}
	dir := c.String("dir")
	certPath, keyPath := filepath.Join(dir, caFile), filepath.Join(dir, caKeyFile)
	if err := refuseExisting(certPath, keyPath); err != nil {
		return err
	}
	ca, err := tlsutil.NewCA(tlsutil.CAOptions{CommonName: c.String("common-name"), Validity: time.Duration(days) * 24 * time.Hour})
	if err != nil {
		return err
	}
	if err := writePair(dir, certPath, ca.CertPEM, keyPath, ca.KeyPEM); err != nil {
		return err
	}
	if js {
		return printJSON(c.App.Writer, map[string]string{"ca_file": certPath, "ca_key_file": keyPath, "expires": ca.NotAfter.Format(time.RFC3339)})
	}
	fmt.Fprintf(c.App.Writer, "wrote %s (CA certificate, valid until %s)\n", certPath, ca.NotAfter.Format(time.DateOnly))
	fmt.Fprintf(c.App.Writer, "wrote %s (CA key: keep it off the nodes)\n", keyPath)
	return nil
}

func runTLSCert(c *cli.Context) error {
	if c.NArg() > 0 {
		return tlsUsageErr(c, fmt.Sprintf("takes no arguments, got %q", c.Args().First()))
	}
	js, err := wantJSON(c)
	if err != nil {
		return err
	}
	name := c.String("node")
	switch {
	case name == "":
		return tlsUsageErr(c, "cert needs --node NAME")
	case !nodeFileName.MatchString(name):
		return tlsUsageErr(c, fmt.Sprintf("bad --node %q: letters, digits, '.', '_' and '-' only (it names the files)", name))
	}
	days := c.Int("days")
	if days < 1 || days > maxDays {
		return tlsUsageErr(c, fmt.Sprintf("--days must be from 1 to %d, got %d", maxDays, days))
	}
	ips := []net.IP{net.IPv4(127, 0, 0, 1)}
	for _, s := range splitList(c.StringSlice("ip")) {
		ip := net.ParseIP(s)
		if ip == nil {
			return tlsUsageErr(c, fmt.Sprintf("bad --ip %q: not an IP address", s))
		}
		if !slices.ContainsFunc(ips, ip.Equal) {
			ips = append(ips, ip)
		}
	}
	dns := []string{"localhost"}
	for _, s := range splitList(c.StringSlice("dns")) {
		if net.ParseIP(s) != nil {
			return tlsUsageErr(c, fmt.Sprintf("bad --dns %q: an IP address goes in --ip", s))
		}
		if !slices.Contains(dns, s) {
			dns = append(dns, s)
		}
	}
	dir := c.String("dir")
	caPath, caKeyPath := c.String("ca"), c.String("ca-key")
	if caPath == "" {
		caPath = filepath.Join(dir, caFile)
	}
	if caKeyPath == "" {
		caKeyPath = filepath.Join(dir, caKeyFile)
	}
	caPEM, err := os.ReadFile(caPath)
	if err != nil {
		return fmt.Errorf("read the CA certificate (--ca): %w (create one with 'rumor tls ca')", err)
	}
	caKeyPEM, err := os.ReadFile(caKeyPath)
	if err != nil {
		return fmt.Errorf("read the CA key (--ca-key): %w", err)
	}
	certPath, keyPath := filepath.Join(dir, "rumor-"+name+".pem"), filepath.Join(dir, "rumor-"+name+"-key.pem")
	if err := refuseExisting(certPath, keyPath); err != nil {
		return err
	}
	cert, err := tlsutil.NewCert(caPEM, caKeyPEM, tlsutil.CertOptions{
		CommonName: name,
		DNSNames:   dns,
		IPs:        ips,
		Validity:   time.Duration(days) * 24 * time.Hour,
	})
	if err != nil {
		return err
	}
	if err := writePair(dir, certPath, cert.CertPEM, keyPath, cert.KeyPEM); err != nil {
		return err
	}
	if cert.Capped {
		fmt.Fprintf(c.App.ErrWriter, "note: the certificate expires with the CA, on %s\n", cert.NotAfter.Format(time.DateOnly))
	}
	ipStrs := make([]string, len(ips))
	for i, ip := range ips {
		ipStrs[i] = ip.String()
	}
	if js {
		return printJSON(c.App.Writer, map[string]any{"cert_file": certPath, "key_file": keyPath, "ca_file": caPath,
			"node": name, "dns": dns, "ips": ipStrs, "expires": cert.NotAfter.Format(time.RFC3339)})
	}
	fmt.Fprintf(c.App.Writer, "wrote %s (certificate of node %s, valid until %s, for %v and %v)\n", certPath, name,
		cert.NotAfter.Format(time.DateOnly), dns, ipStrs)
	fmt.Fprintf(c.App.Writer, "wrote %s (its key)\n", keyPath)
	return nil
}

// refuseExisting fails if any of paths exists: certificates and keys are
// never overwritten.
func refuseExisting(paths ...string) error {
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s already exists; not overwriting it (move it away or pick another --dir)", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("check %s: %w", p, err)
		}
	}
	return nil
}

// writePair writes a certificate (mode 0644) and its key (mode 0600) to
// new files in dir, creating dir if needed; neither file may exist. If
// the second write fails, the first file is removed.
func writePair(dir, certPath string, certPEM []byte, keyPath string, keyPEM []byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := writeNew(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	if err := writeNew(certPath, certPEM, 0o644); err != nil {
		os.Remove(keyPath)
		return err
	}
	return nil
}

// writeNew writes data to a file that must not exist yet, with mode perm.
func writeNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s already exists; not overwriting it", path)
		}
		return fmt.Errorf("write %s: %w", path, err)
	}
	// The umask cannot widen perm, but it may have narrowed a
	// certificate's; set it exactly.
	if err := f.Chmod(perm); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
