package main

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/rumorkv/rumor/node"
)

// secretBytes is the entropy of a generated token secret.
const secretBytes = 32

// tokenCommand is `rumor token generate`: the action is a positional word
// (as `rumor completion bash`), so flags may come anywhere.
func tokenCommand() *cli.Command {
	return &cli.Command{
		Name:      "token",
		Usage:     "client API tokens: 'rumor token generate' prints a new random secret",
		ArgsUsage: "generate",
		Description: "generate prints a random secret (32 bytes, URL-safe base64) for the agent's\n" +
			"--tokens-file. With --name it prints a whole [[token]] table to append instead:\n" +
			"  rumor token generate --name app --scope read-write >> tokens.toml",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "name", Usage: "print a [[token]] table for a token of this name"},
			&cli.StringFlag{Name: "scope", Value: string(node.ScopeReadOnly), Usage: "the table's scope: read-only or read-write"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 || c.Args().First() != "generate" {
				return usageErr(c, "token needs an action: generate")
			}
			return generateToken(c)
		},
	}
}

// newSecret returns secretBytes random bytes in URL-safe base64 without
// padding (43 characters).
func newSecret() (string, error) {
	b := make([]byte, secretBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random secret: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func generateToken(c *cli.Context) error {
	name := c.String("name")
	if name == "" && c.IsSet("scope") {
		return usageErr(c, "--scope goes with --name (a bare secret has no scope)")
	}
	scope, err := node.ParseScope(c.String("scope"))
	if err != nil {
		return exitErr{msg: fmt.Sprintf("bad --scope %q: want read-only or read-write", c.String("scope")), code: exitError}
	}
	secret, err := newSecret()
	if err != nil {
		return err
	}
	if name == "" {
		_, err := fmt.Fprintln(c.App.Writer, secret)
		return err
	}
	// A blank line first: the table is meant to be appended to a file.
	table := fmt.Sprintf("\n[[token]]\nname = %q\nscope = %q\nsecret = %q\n", name, scope, secret)
	if _, err := node.ParseTokens([]byte(table)); err != nil { // what the agent will read
		return exitErr{msg: fmt.Sprintf("bad --name %q: %v", name, err), code: exitError}
	}
	_, err = fmt.Fprint(c.App.Writer, table)
	return err
}
