package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/urfave/cli/v2"

	"github.com/rumorkv/rumor/cli/client"
	"github.com/rumorkv/rumor/node"
)

const requestTimeout = 15 * time.Second

func putCommand() *cli.Command {
	return &cli.Command{
		Name:      "put",
		Usage:     "write a value (without --context it becomes a sibling of what is there)",
		ArgsUsage: "KEY VALUE",
		Flags: clientFlags(
			&cli.StringFlag{Name: "context", Aliases: []string{"c"}, Usage: "causal context from a read: supersede exactly what that read saw"},
			&cli.StringFlag{Name: "w", Usage: "write quorum: 1, quorum, all, primary or a count (default: the cluster's)"},
		),
		Action: func(c *cli.Context) error {
			if c.NArg() != 2 {
				return usageErr(c, fmt.Sprintf("put needs KEY and VALUE, got %d arguments", c.NArg()))
			}
			if err := checkWrite(c); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(c.Context, requestTimeout)
			defer cancel()
			out, err := newClient(c).Put(ctx, c.Args().Get(0), []byte(c.Args().Get(1)),
				&client.WriteOptions{Context: c.String("context"), W: c.String("w")})
			if err != nil {
				return err
			}
			return printWrite(c, out)
		},
	}
}

func delCommand() *cli.Command {
	return &cli.Command{
		Name:      "del",
		Aliases:   []string{"delete"},
		Usage:     "delete a key: the versions a read sees now, or with --context exactly those an earlier read saw",
		ArgsUsage: "KEY",
		Flags: clientFlags(
			&cli.StringFlag{Name: "context", Aliases: []string{"c"}, Usage: "causal context from a read (default: read the key first)"},
			&cli.StringFlag{Name: "w", Usage: "write quorum: 1, quorum, all, primary or a count"},
		),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageErr(c, fmt.Sprintf("del needs KEY, got %d arguments", c.NArg()))
			}
			if err := checkWrite(c); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(c.Context, requestTimeout)
			defer cancel()
			cl, key, cctx := newClient(c), c.Args().Get(0), c.String("context")
			if cctx == "" {
				// A tombstone without context hides nothing (it is
				// concurrent with every version), so delete what a read
				// sees now.
				v, err := cl.Get(ctx, key, nil)
				if err != nil && !errors.Is(err, client.ErrNotFound) {
					return fmt.Errorf("read before delete: %w", err)
				}
				cctx = v.Context
			}
			out, err := cl.Delete(ctx, key, &client.WriteOptions{Context: cctx, W: c.String("w")})
			if err != nil {
				return err
			}
			return printWrite(c, out)
		},
	}
}

// checkWrite validates a write's flags before anything is sent.
func checkWrite(c *cli.Context) error {
	if _, err := wantJSON(c); err != nil {
		return err
	}
	return checkLevel("w", c.String("w"), true)
}

func printWrite(c *cli.Context, ctxOut string) error {
	js, err := wantJSON(c)
	if err != nil {
		return err
	}
	if js {
		return printJSON(c.App.Writer, map[string]string{"context": ctxOut})
	}
	fmt.Fprintf(c.App.Writer, "ok context=%s\n", ctxOut)
	return nil
}

// getJSON is the -o json form of a read.
type getJSON struct {
	Values   []string `json:"values"`
	Encoding string   `json:"encoding,omitempty"`
	Context  string   `json:"context"`
}

func getCommand() *cli.Command {
	return &cli.Command{
		Name:      "get",
		Usage:     "read a key: one value, or every concurrent sibling",
		ArgsUsage: "KEY",
		Flags: clientFlags(
			&cli.StringFlag{Name: "r", Usage: "read quorum: 1, quorum, all or a count (default: the cluster's)"},
			&cli.BoolFlag{Name: "local", Usage: "only the contacted node's own copy, without coordination"},
		),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageErr(c, fmt.Sprintf("get needs KEY, got %d arguments", c.NArg()))
			}
			js, err := wantJSON(c)
			if err != nil {
				return err
			}
			if err := checkLevel("r", c.String("r"), false); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(c.Context, requestTimeout)
			defer cancel()
			v, err := newClient(c).Get(ctx, c.Args().Get(0), &client.ReadOptions{R: c.String("r"), Local: c.Bool("local")})
			if errors.Is(err, client.ErrNotFound) {
				if js {
					_ = printJSON(c.App.Writer, getJSON{Values: []string{}, Context: v.Context})
				}
				return exitErr{msg: "not found", code: exitNotFound}
			}
			if err != nil {
				return err
			}
			if js {
				out := getJSON{Context: v.Context, Values: make([]string, len(v.Values))}
				for _, b := range v.Values {
					if !utf8.Valid(b) {
						out.Encoding = "base64"
					}
				}
				for i, b := range v.Values {
					if out.Encoding == "base64" {
						out.Values[i] = base64.StdEncoding.EncodeToString(b)
					} else {
						out.Values[i] = string(b)
					}
				}
				return printJSON(c.App.Writer, out)
			}
			for _, b := range v.Values {
				fmt.Fprintf(c.App.Writer, "%s\n", b)
			}
			if len(v.Values) > 1 {
				fmt.Fprintf(c.App.ErrWriter, "(%d concurrent siblings; write with --context %s to resolve them)\n", len(v.Values), v.Context)
			}
			return nil
		},
	}
}

func membersCommand() *cli.Command {
	return &cli.Command{
		Name:  "members",
		Usage: "list cluster members and their reachability (alive, suspect, dead)",
		Flags: clientFlags(),
		Action: func(c *cli.Context) error {
			js, err := checkInfo(c)
			if err != nil {
				return err
			}
			var ms []node.MemberInfo
			if err := fetch(c, "/v1/members", &ms); err != nil {
				return err
			}
			if js {
				return printJSON(c.App.Writer, ms)
			}
			tw := table(c.App.Writer, "NAME", "ID", "STATE", "STATUS", "ZONE", "GOSSIP", "RPC", "HTTP")
			for _, m := range ms {
				row(tw, m.Name, m.ID, m.State, m.Status, dash(m.Zone), m.Gossip, m.RPC, dash(m.HTTP))
			}
			return tw.Flush()
		},
	}
}

func ringCommand() *cli.Command {
	return &cli.Command{
		Name:  "ring",
		Usage: "show ownership of the hash space per node",
		Flags: clientFlags(),
		Action: func(c *cli.Context) error {
			js, err := checkInfo(c)
			if err != nil {
				return err
			}
			var ri node.RingInfo
			if err := fetch(c, "/v1/ring", &ri); err != nil {
				return err
			}
			if js {
				return printJSON(c.App.Writer, ri)
			}
			fmt.Fprintf(c.App.Writer, "N=%d, %d virtual nodes per member\n", ri.N, ri.VNodes)
			if !ri.Moving {
				tw := table(c.App.Writer, "NAME", "ID", "ZONE", "STATE", "STATUS", "OWNS (PRIMARY)", "AFTER TRANSFERS")
				for _, m := range ri.Members {
					row(tw, m.Name, m.ID, dash(m.Zone), m.State, m.Status, fmt.Sprintf("%.1f%%", 100*m.Ownership), fmt.Sprintf("%.1f%%", 100*m.NextOwnership))
				}
				return tw.Flush()
			}
			// Ranges are moving: each member's own figures of what it still
			// has to move (receivers pull, so they carry the progress).
			progress := transferProgress(c, ri.Members)
			fmt.Fprintln(c.App.Writer, "ranges are moving: a node is joining or leaving")
			tw := table(c.App.Writer, "NAME", "ID", "ZONE", "STATE", "STATUS", "OWNS (PRIMARY)", "AFTER TRANSFERS",
				"RANGES IN/OUT", "KEYS LEFT", "BYTES LEFT", "ETA")
			for i, m := range ri.Members {
				p := progress[i]
				keys, size, eta := "?", "?", "?"
				if p != nil {
					keys, size, eta = strconv.FormatUint(p.KeysLeft, 10), humanBytes(p.BytesLeft), "-"
					if p.ETASeconds != nil {
						eta = (time.Duration(*p.ETASeconds * float64(time.Second))).Round(time.Second).String()
					}
				}
				row(tw, m.Name, m.ID, dash(m.Zone), m.State, m.Status, fmt.Sprintf("%.1f%%", 100*m.Ownership), fmt.Sprintf("%.1f%%", 100*m.NextOwnership),
					fmt.Sprintf("%d/%d", m.RangesGaining, m.RangesLosing), keys, size, eta)
			}
			return tw.Flush()
		},
	}
}

// transferProgress asks every member with an HTTP address for its
// transfer status, concurrently; nil where it does not answer.
func transferProgress(c *cli.Context, members []node.RingMemberInfo) []*node.TransferStatus {
	out := make([]*node.TransferStatus, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		if m.HTTP == "" || m.State != node.StateAlive {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(c.Context, 2*time.Second)
			defer cancel()
			var st struct {
				Transfer node.TransferStatus `json:"transfer"`
			}
			if err := newClientAt(c, m.HTTP).GetJSON(ctx, "/v1/status", &st); err == nil {
				out[i] = &st.Transfer
			}
		}()
	}
	wg.Wait()
	return out
}

// humanBytes formats a byte count with a binary unit.
func humanBytes(b uint64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := uint64(unit), 0
	for n := b / unit; n >= unit; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTPE"[exp])
}

// printTree prints a decoded JSON document as indented "key: value" lines
// with sorted keys.
func printTree(w io.Writer, indent string, v map[string]any) {
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		switch x := v[k].(type) {
		case map[string]any:
			if len(x) == 0 {
				fmt.Fprintf(w, "%s%s: -\n", indent, k)
				continue
			}
			fmt.Fprintf(w, "%s%s:\n", indent, k)
			printTree(w, indent+"  ", x)
		default:
			b, _ := json.Marshal(x)
			fmt.Fprintf(w, "%s%s: %s\n", indent, k, strings.Trim(string(b), `"`))
		}
	}
}

func fetch(c *cli.Context, path string, out any) error {
	ctx, cancel := context.WithTimeout(c.Context, requestTimeout)
	defer cancel()
	return newClient(c).GetJSON(ctx, path, out)
}

// checkInfo validates the arguments of members, ring and status and
// reports whether JSON output is wanted.
func checkInfo(c *cli.Context) (bool, error) {
	if err := noArgs(c); err != nil {
		return false, err
	}
	return wantJSON(c)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func table(w io.Writer, header ...string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row(tw, header...)
	return tw
}

func row(tw *tabwriter.Writer, cols ...string) {
	fmt.Fprintln(tw, strings.Join(cols, "\t"))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func usageErr(c *cli.Context, msg string) error {
	return exitErr{msg: fmt.Sprintf("%s (usage: rumor %s %s)", msg, c.Command.Name, c.Command.ArgsUsage), code: exitError}
}
