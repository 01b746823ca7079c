package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/rumorkv/rumor/cli/client"
	"github.com/rumorkv/rumor/node"
)

// keyringCommand is `rumor keyring`: gossip encryption keys across the
// cluster (GET /v1/keyring, POST /v1/keyring/{install,use,remove}).
func keyringCommand() *cli.Command {
	keyOp := func(op, usage, desc string, force bool) *cli.Command {
		var extra []cli.Flag
		if force {
			extra = append(extra, &cli.BoolFlag{Name: "force", Usage: "skip the check that every member answered and is ready (a member that misses the step cannot gossip with the others once the old key is removed)"})
		}
		return &cli.Command{
			Name:        op,
			Usage:       usage,
			ArgsUsage:   "KEY",
			Description: desc,
			Flags:       clientFlags(extra...),
			Action:      func(c *cli.Context) error { return keyringOp(c, op) },
		}
	}
	return &cli.Command{
		Name:  "keyring",
		Usage: "list, install, use and remove the gossip encryption keys of every member; generate a key",
		Description: "Rotate the gossip key without downtime: generate a key, install it (every member\n" +
			"then decrypts with it), use it (every member encrypts with it), remove the old key.\n" +
			"The contacted node applies each step on every member that has not left and shows each\n" +
			"member's answer; use and remove refuse unless every member answered and is ready\n" +
			"(--force skips that). KEY is base64 of 16, 24 or 32 bytes. See docs/security.md.",
		Flags: clientFlags(),
		Action: func(c *cli.Context) error {
			if !c.Args().Present() {
				return cli.ShowSubcommandHelp(c)
			}
			return exitErr{msg: fmt.Sprintf("unknown keyring command %q: want list, install, use, remove or generate (see 'rumor keyring --help')", c.Args().First()), code: exitError}
		},
		Subcommands: []*cli.Command{
			{
				Name:   "list",
				Usage:  "every member's keys, and which members have and use each key",
				Flags:  clientFlags(),
				Action: func(c *cli.Context) error { return keyringOp(c, node.KeyringList) },
			},
			keyOp(node.KeyringInstall, "add KEY to every member's keyring (it decrypts with it)",
				"Nothing is encrypted with the key yet: run 'rumor keyring use KEY' once every member has it.", false),
			keyOp(node.KeyringUse, "make KEY, installed everywhere, the key every member encrypts with",
				"Refused unless every member answers and has KEY installed (--force skips the check).", true),
			keyOp(node.KeyringRemove, "remove KEY from every member's keyring (refused for the key in use)",
				"Refused unless every member answers and none encrypts with KEY (--force skips the check\n"+
					"of members that do not answer; a primary key is never removed).", true),
			{
				Name:   "generate",
				Usage:  "print a new random 32-byte key (AES-256), base64",
				Flags:  clientFlags(),
				Action: generateKey,
			},
		},
	}
}

// keyringUsage is a usage error naming the full command.
func keyringUsage(c *cli.Context, msg string) error {
	return exitErr{msg: fmt.Sprintf("%s (usage: rumor keyring %s %s)", msg, c.Command.Name, c.Command.ArgsUsage), code: exitError}
}

// keyringOp runs one keyring operation through the contacted node and
// prints every member's answer.
func keyringOp(c *cli.Context, op string) error {
	js, err := wantJSON(c)
	if err != nil {
		return err
	}
	var body any
	if op == node.KeyringList {
		if c.NArg() != 0 {
			return keyringUsage(c, fmt.Sprintf("keyring list takes no arguments, got %q", c.Args().First()))
		}
	} else {
		if c.NArg() != 1 {
			return keyringUsage(c, fmt.Sprintf("keyring %s needs exactly one KEY (base64), got %d arguments", op, c.NArg()))
		}
		key := c.Args().First()
		if _, err := node.ParseGossipKey(key); err != nil {
			return exitErr{msg: fmt.Sprintf("bad KEY: %v", strings.TrimPrefix(err.Error(), "node: ")), code: exitError}
		}
		body = map[string]any{"key": key, "force": c.Bool("force")}
	}
	ctx, cancel := context.WithTimeout(c.Context, requestTimeout)
	defer cancel()
	var r node.KeyringResponse
	method, path := http.MethodGet, "/v1/keyring"
	if op != node.KeyringList {
		method, path = http.MethodPost, "/v1/keyring/"+op
	}
	status, err := newClient(c).DoJSON(ctx, method, path, body, &r)
	var ae *client.Error
	switch {
	case err != nil && !errors.As(err, &ae):
		return err // no answer
	case err != nil && authMessage(ae) != "":
		return err // a refused token: runContext says so
	case err != nil && r.Op == "":
		// A plain {"error": …}: a bad key, no encryption, or the node's
		// own primary key.
		return exitErr{msg: fmt.Sprintf("keyring %s: %s", op, strings.TrimPrefix(ae.Msg, "node: ")), code: exitError}
	}
	if js {
		if perr := printJSON(c.App.Writer, r); perr != nil {
			return perr
		}
	} else if status != http.StatusConflict { // a refusal changed nothing: its reasons are the error
		printKeyring(c.App.Writer, r, c.Args().First())
	}
	switch {
	case err == nil:
		return nil
	case status == http.StatusConflict || r.Failed == 0:
		return exitErr{msg: fmt.Sprintf("keyring %s: %s", op, strings.TrimPrefix(r.Error, "node: ")), code: exitError}
	}
	var failed []string
	for _, n := range r.Nodes {
		if !n.OK {
			failed = append(failed, n.Name)
		}
	}
	what := "failed"
	if op == node.KeyringList {
		what = "could not be asked"
	}
	return exitErr{msg: fmt.Sprintf("keyring %s: %s on %d of %d members: %s (see each member's error above; every step can be repeated once they are back)",
		op, what, r.Failed, r.Members, strings.Join(failed, ", ")), code: exitError}
}

// printKeyring prints a keyring answer: for list, a row per key; for a
// change, what it did; then the members that failed.
func printKeyring(w io.Writer, r node.KeyringResponse, key string) {
	switch r.Op {
	case node.KeyringList:
		fmt.Fprintf(w, "%d of %d members answered (asked by %s)\n", r.OK, r.Members, r.Name)
		keys := make([]string, 0, len(r.Keys))
		for k := range r.Keys {
			keys = append(keys, k)
		}
		// The keys in use first, then by how many members have them.
		sort.Slice(keys, func(i, j int) bool {
			a, b := r.Keys[keys[i]], r.Keys[keys[j]]
			if len(a.PrimaryOn) != len(b.PrimaryOn) {
				return len(a.PrimaryOn) > len(b.PrimaryOn)
			}
			if a.Members != b.Members {
				return a.Members > b.Members
			}
			return keys[i] < keys[j]
		})
		tw := table(w, "KEY", "MEMBERS", "PRIMARY ON", "MISSING ON")
		for _, k := range keys {
			ki := r.Keys[k]
			row(tw, k, fmt.Sprintf("%d/%d", ki.Members, r.OK), dash(strings.Join(ki.PrimaryOn, ", ")), dash(strings.Join(ki.MissingOn, ", ")))
		}
		_ = tw.Flush()
	default:
		verb := map[string]string{node.KeyringInstall: "installed", node.KeyringUse: "now using", node.KeyringRemove: "removed"}[r.Op]
		fmt.Fprintf(w, "%s key %s on %d of %d members (asked by %s)\n", verb, key, r.OK, r.Members, r.Name)
		tw := table(w, "NAME", "RESULT", "KEYS", "PRIMARY")
		for _, n := range r.Nodes {
			if n.OK {
				p := "other"
				if n.Primary == key {
					p = "this key"
				}
				row(tw, n.Name, "ok", fmt.Sprint(len(n.Keys)), p)
			} else {
				row(tw, n.Name, "failed", "-", "-")
			}
		}
		_ = tw.Flush()
	}
	for _, n := range r.Nodes {
		if !n.OK {
			fmt.Fprintf(w, "%s: %s\n", n.Name, n.Error)
		}
	}
}

// generateKey prints a new random 32-byte key, as `consul keygen` does.
func generateKey(c *cli.Context) error {
	if c.NArg() != 0 {
		return keyringUsage(c, fmt.Sprintf("keyring generate takes no arguments, got %q", c.Args().First()))
	}
	js, err := wantJSON(c)
	if err != nil {
		return err
	}
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	s := base64.StdEncoding.EncodeToString(k)
	if js {
		return printJSON(c.App.Writer, map[string]string{"key": s})
	}
	_, err = fmt.Fprintln(c.App.Writer, s)
	return err
}
