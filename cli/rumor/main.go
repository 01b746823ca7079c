// Command rumor runs a Rumor agent and talks to one over its HTTP API.
//
//	rumor agent --name n1 --data /var/lib/rumor --bind 10.0.0.1:7946 --http 10.0.0.1:7948
//	rumor put KEY VALUE [--context C] [--w 1|quorum|all|primary]
//	rumor get KEY [--r 1|quorum|all] [--local] [-o json]
//	rumor del KEY [--context C]
//	rumor members | ring | status
//	rumor demo [--nodes 3]
//
// Exit codes: 0 success, 1 key not found, 2 any other error (one line on
// stderr).
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/rumorkv/rumor/cli/client"
)

// Exit codes.
const (
	exitNotFound = 1
	exitError    = 2
)

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// run executes the program with args and returns its exit code.
func run(args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	err := app.Run(reorderArgs(app, args))
	if err == nil {
		return 0
	}
	var code exitCoder
	if errors.As(err, &code) {
		if msg := code.Error(); msg != "" {
			fmt.Fprintln(stderr, "rumor: "+msg)
		}
		return code.ExitCode()
	}
	fmt.Fprintln(stderr, "rumor: "+oneLine(err.Error()))
	return exitError
}

type exitCoder interface {
	error
	ExitCode() int
}

type exitErr struct {
	msg  string
	code int
}

func (e exitErr) Error() string { return e.msg }
func (e exitErr) ExitCode() int { return e.code }

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// Flags shared by every client command.
var (
	addrFlag = &cli.StringFlag{
		Name:    "addr",
		Usage:   "HTTP address of the node to talk to",
		Value:   "127.0.0.1:7948",
		EnvVars: []string{"RUMOR_ADDR"},
	}
	outputFlag = &cli.StringFlag{
		Name:    "output",
		Aliases: []string{"o"},
		Usage:   "output format: text or json",
		Value:   "text",
	}
	tokenFlag = &cli.StringFlag{
		Name:    "token",
		Usage:   "bearer token for the client API",
		EnvVars: []string{"RUMOR_TOKEN"},
	}
)

func newApp(stdout, stderr io.Writer) *cli.App {
	return &cli.App{
		Name:                 "rumor",
		Usage:                "a peer-to-peer, eventually consistent key-value store",
		Writer:               stdout,
		ErrWriter:            stderr,
		EnableBashCompletion: true,
		Suggest:              true,
		HideVersion:          true,
		Flags:                []cli.Flag{addrFlag, outputFlag, tokenFlag},
		ExitErrHandler:       func(*cli.Context, error) {}, // run() reports errors
		Commands: []*cli.Command{
			agentCommand(),
			putCommand(),
			getCommand(),
			delCommand(),
			membersCommand(),
			ringCommand(),
			statusCommand(),
			demoCommand(),
		},
	}
}

// clientFlags are the flags every client command takes (also accepted after
// the command name, where people tend to put them).
func clientFlags(extra ...cli.Flag) []cli.Flag {
	return append([]cli.Flag{addrFlag, outputFlag, tokenFlag}, extra...)
}

// newClient builds a client from the command's flags (command level wins
// over global).
func newClient(c *cli.Context) *client.Client {
	return client.New(lookup(c, "addr"), &client.Options{Token: lookup(c, "token")})
}

// lookup returns a string flag from the command if it was set there, else
// from the app level (where its default lives).
func lookup(c *cli.Context, name string) string {
	for _, ctx := range c.Lineage() {
		if ctx.IsSet(name) {
			return ctx.String(name)
		}
	}
	return c.String(name)
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

// reorderArgs lets flags follow positional arguments ("rumor get k -o json"),
// which urfave/cli/v2 does not parse: for the command named in args, flag
// tokens (with their values) are moved before the positional ones, which are
// put after "--" so a value that starts with a dash stays a value.
func reorderArgs(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	// Skip global flags before the command name.
	i := 1
	for i < len(args) && strings.HasPrefix(args[i], "-") {
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
	out := append([]string{}, args[:i+1]...)
	var pos []string
	rest := args[i+1:]
	for j := 0; j < len(rest); j++ {
		a := rest[j]
		switch {
		case a == "--":
			pos = append(pos, rest[j+1:]...)
			j = len(rest)
		case strings.HasPrefix(a, "-") && len(a) > 1:
			out = append(out, a)
			if takesValue(cmd.Flags, a) && j+1 < len(rest) {
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
