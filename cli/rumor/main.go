// Command rumor runs a Rumor agent and talks to one over its HTTP API.
//
//	rumor agent --name n1 --data /var/lib/rumor --bind 10.0.0.1:7946 --http 10.0.0.1:7948
//	rumor put KEY VALUE [--context C] [--w 1|quorum|all|primary]
//	rumor get KEY [--r 1|quorum|all] [--local] [-o json]
//	rumor del KEY [--context C]
//	rumor members | ring | status [--node] [-o json]
//	rumor leave | remove NODE
//	rumor keyring list | install KEY | use KEY | remove KEY | generate
//	rumor token generate [--name NAME --scope read-only|read-write]
//	rumor demo [--nodes 3]
//	rumor tls ca | tls cert --node NAME [--ip IP] [--dns NAME]
//	rumor completion bash|zsh|fish
//
// Flags may follow the positional arguments ("rumor get k -o json"); a
// value that starts with a dash goes after "--" ("rumor put k -- -1").
//
// Exit codes: 0 success, 1 key not found, 2 any other error (one line on
// stderr).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/rumorkv/rumor/cli/client"
	"github.com/rumorkv/rumor/node"
)

// Exit codes.
const (
	exitNotFound = 1
	exitError    = 2
)

func main() {
	node.SetProcs() // fsync-heavy: see its doc
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// run executes the program with args and returns its exit code.
func run(args []string, stdout, stderr io.Writer) int {
	return runContext(context.Background(), args, stdout, stderr)
}

// runContext is run with a context whose cancellation stops long-running
// commands (agent, demo) as SIGINT does.
func runContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	err := app.RunContext(ctx, reorderArgs(app, args))
	if err == nil {
		return 0
	}
	code := exitError
	msg := err.Error()
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		switch ec.ExitCode() {
		case 0:
			return 0
		case exitNotFound:
			code = exitNotFound
		}
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		msg += " (is a rumor agent listening there? set --addr or RUMOR_ADDR)"
	}
	var ae *client.Error
	if errors.As(err, &ae) {
		if m := authMessage(ae); m != "" {
			msg = m
		}
	}
	msg += tlsHint(err)
	fmt.Fprintln(stderr, "rumor: "+oneLine(msg))
	return code
}

// authMessage is the one line a refused token gets, "" for other errors.
func authMessage(e *client.Error) string {
	switch {
	case e.Status == http.StatusUnauthorized && !e.Token:
		return "401 unauthorized: this node needs a token (--token or RUMOR_TOKEN)"
	case e.Status == http.StatusUnauthorized:
		return "401 unauthorized: the node does not accept this token (check --token or RUMOR_TOKEN)"
	case e.Status == http.StatusForbidden && strings.Contains(e.Msg, "read-only"):
		return "403 forbidden: the token is read-only"
	case e.Status == http.StatusForbidden:
		return "403 forbidden: " + e.Msg
	}
	return ""
}

// exitErr is an error with the exit code it ends the program with.
type exitErr struct {
	msg  string
	code int
}

func (e exitErr) Error() string { return e.msg }
func (e exitErr) ExitCode() int { return e.code }

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// globalFlags are the app-level client flags; only these read the
// environment, so a flag given on the command line always wins over
// RUMOR_ADDR and RUMOR_TOKEN. Flags are built per app: urfave/cli stores
// environment values in the flag itself.
func globalFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{
			Name:    "addr",
			Usage:   "address of the node's client API: host:port (HTTP) or https://host:port",
			Value:   "127.0.0.1:7948",
			EnvVars: []string{"RUMOR_ADDR"},
		},
		outputFlag(),
		&cli.StringFlag{
			Name:    "token",
			Usage:   "bearer token for the client API",
			EnvVars: []string{"RUMOR_TOKEN"},
		},
		&cli.StringFlag{
			Name:    "cacert",
			Usage:   "CA certificate (PEM) that verifies an HTTPS node (--addr https://…): the cluster's CA",
			EnvVars: []string{"RUMOR_CACERT"},
		},
	}
}

func outputFlag() cli.Flag {
	return &cli.StringFlag{
		Name:    "output",
		Aliases: []string{"o"},
		Usage:   "output format: text or json",
		Value:   "text",
	}
}

// clientFlags are the flags every client command takes (also accepted after
// the command name, where people tend to put them), plus extra. They have no
// defaults of their own: lookup falls back to the global flags.
func clientFlags(extra ...cli.Flag) []cli.Flag {
	return append([]cli.Flag{
		&cli.StringFlag{Name: "addr", Usage: "address of the node's client API: host:port or https://host:port (default: $RUMOR_ADDR, else 127.0.0.1:7948)"},
		outputFlag(),
		&cli.StringFlag{Name: "token", Usage: "bearer token for the client API (default: $RUMOR_TOKEN)"},
		&cli.StringFlag{Name: "cacert", Usage: "CA certificate (PEM) that verifies an HTTPS node (default: $RUMOR_CACERT)"},
	}, extra...)
}

func newApp(stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:                 "rumor",
		Usage:                "a peer-to-peer, eventually consistent key-value store",
		Writer:               stdout,
		ErrWriter:            stderr,
		EnableBashCompletion: true,
		Suggest:              true,
		HideVersion:          true,
		Flags:                globalFlags(),
		ExitErrHandler:       func(*cli.Context, error) {}, // run() reports errors
		OnUsageError:         usageError,
		Action:               unknownCommand,
		Commands: []*cli.Command{
			agentCommand(),
			putCommand(),
			getCommand(),
			delCommand(),
			membersCommand(),
			ringCommand(),
			leaveCommand(),
			removeCommand(),
			statusCommand(),
			keyringCommand(),
			tokenCommand(),
			demoCommand(),
			tlsCommand(),
			completionCommand(),
		},
	}
	for _, c := range app.Commands {
		c.OnUsageError = usageError
		// No "help" subcommand: "rumor get help" reads the key "help".
		// "rumor get --help" still shows the command's help.
		c.HideHelpCommand = true
		for _, s := range c.Subcommands {
			s.OnUsageError = usageError
			s.HideHelpCommand = true
		}
	}
	return app
}

// usageError turns a flag parsing error into one line instead of the help
// page.
func usageError(c *cli.Context, err error, isSubcommand bool) error {
	cmd := "rumor"
	if isSubcommand && c.Command != nil {
		cmd += " " + c.Command.Name
	}
	return exitErr{msg: fmt.Sprintf("%s (see '%s --help')", err, cmd), code: exitError}
}

// unknownCommand is the app's action: help without arguments, an error
// for an unknown command.
func unknownCommand(c *cli.Context) error {
	if !c.Args().Present() {
		return cli.ShowAppHelp(c)
	}
	return exitErr{msg: fmt.Sprintf("unknown command %q (see 'rumor --help')", c.Args().First()), code: exitError}
}

// noArgs rejects positional arguments for commands that take none.
func noArgs(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageErr(c, fmt.Sprintf("%s takes no arguments, got %q", c.Command.Name, c.Args().First()))
	}
	return nil
}

// newClient builds a client from the command's flags (command level wins
// over global).
func newClient(c *cli.Context) *client.Client {
	return newClientAt(c, lookup(c, "addr"))
}

// newClientAt is newClient for another node's address.
func newClientAt(c *cli.Context, addr string) *client.Client {
	return client.New(addr, &client.Options{Token: lookup(c, "token"), CACertFile: lookup(c, "cacert")})
}

// lookup returns a string flag from the command if it was set there, else
// from the app level (where its default and environment variable live).
func lookup(c *cli.Context, name string) string {
	root := c
	for _, ctx := range c.Lineage() {
		if ctx.Command == nil {
			continue // the context RunContext wraps, without flags
		}
		if ctx.IsSet(name) {
			return ctx.String(name)
		}
		root = ctx
	}
	return root.String(name)
}

func wantJSON(c *cli.Context) (bool, error) {
	switch o := lookup(c, "output"); o {
	case "", "text":
		return false, nil
	case "json":
		return true, nil
	default:
		return false, fmt.Errorf("unknown output format %q: want text or json", o)
	}
}

// checkLevel validates a read (primaryOK false) or write quorum flag
// before anything is sent.
func checkLevel(flag, v string, primaryOK bool) error {
	want := "1, 2, …, quorum or all"
	if primaryOK {
		want = "1, 2, …, quorum, all or primary"
	}
	l, err := node.ParseConsistency(v)
	if err != nil || (l == node.Primary && !primaryOK) {
		return exitErr{msg: fmt.Sprintf("bad --%s %q: want %s", flag, v, want), code: exitError}
	}
	return nil
}

// reorderArgs lets flags follow positional arguments ("rumor get k -o json"),
// which urfave/cli/v2 does not parse: for the command named in args, flag
// tokens (with their values) are moved before the positional ones, which are
// put after "--" so a value that starts with a dash stays a value. Global
// flags before the command name stay where they are; anything else (no
// command, an unknown one, "--" before it) is returned unchanged.
func reorderArgs(app *cli.App, args []string) []string {
	if len(args) < 2 || completing(args) {
		return args
	}
	// Skip global flags before the command name.
	i := 1
	for i < len(args) && strings.HasPrefix(args[i], "-") {
		if args[i] == "--" {
			return args
		}
		if takesValue(app.Flags, args[i]) {
			i++
		}
		i++
	}
	if i >= len(args) {
		return args
	}
	cmd := findCommand(app, args[i])
	if cmd == nil || cmd.SkipFlagParsing {
		return args
	}
	// Subcommands named right after their command ("tls cert create").
	for i+1 < len(args) {
		sub := cmd.Command(args[i+1])
		if sub == nil {
			break
		}
		cmd, i = sub, i+1
	}
	out := append([]string{}, args[:i+1]...)
	var pos []string
	rest := args[i+1:]
	for j := 0; j < len(rest); j++ {
		a := rest[j]
		switch {
		case a == "--":
			pos = append(pos, rest[j+1:]...)
			j = len(rest)
		case a == "-h" || a == "--help":
			// Help for the command, whatever else was given (urfave/cli
			// would take a positional as a help topic).
			return append(args[:i+1:i+1], a)
		case strings.HasPrefix(a, "-") && len(a) > 1:
			out = append(out, a)
			if takesValue(cmd.Flags, a) {
				if j+1 == len(rest) {
					// A flag missing its value: leave it last so the
					// parser reports it instead of taking "--" as the
					// value.
					return out
				}
				out = append(out, rest[j+1])
				j++
			}
		default:
			pos = append(pos, a)
		}
	}
	if len(pos) > 0 {
		out = append(out, "--")
		out = append(out, pos...)
	}
	return out
}

func findCommand(app *cli.App, name string) *cli.Command {
	for _, c := range app.Commands {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// takesValue reports whether token names a flag in flags that takes a
// separate value (a non-boolean flag without "=value").
func takesValue(flags []cli.Flag, token string) bool {
	name := strings.TrimLeft(token, "-")
	if strings.Contains(name, "=") {
		return false
	}
	for _, f := range flags {
		for _, n := range f.Names() {
			if n != name {
				continue
			}
			if _, ok := f.(*cli.BoolFlag); ok {
				return false
			}
			return true
		}
	}
	return false
}
