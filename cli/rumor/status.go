package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/rumorkv/rumor/node"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "a row per node: state, zone, ownership, keys, hints pending, anti-entropy in sync, last exchange, bytes repaired",
		Description: "The contacted node asks every member for its own figures (2 s deadline each); a\n" +
			"member it cannot ask shows '?' and the reason below the table. --node prints\n" +
			"the contacted node's own counters in detail instead (GET /v1/status).",
		Flags: clientFlags(
			&cli.BoolFlag{Name: "node", Usage: "only the contacted node, with all its counters"},
		),
		Action: func(c *cli.Context) error {
			js, err := checkInfo(c)
			if err != nil {
				return err
			}
			if c.Bool("node") {
				return nodeStatus(c, js)
			}
			var cs node.ClusterStatus
			if err := fetch(c, "/v1/cluster", &cs); err != nil {
				return err
			}
			if js {
				return printJSON(c.App.Writer, cs)
			}
			printClusterStatus(c.App.Writer, cs, time.Now())
			return nil
		},
	}
}

// printClusterStatus prints cs as a table, like nodetool status.
func printClusterStatus(w io.Writer, cs node.ClusterStatus, now time.Time) {
	fmt.Fprintf(w, "%d nodes, N=%d, %d virtual nodes per member; answered by %s\n", len(cs.Nodes), cs.N, cs.VNodes, cs.Name)
	if cs.Moving {
		fmt.Fprintln(w, "ranges are moving: a node is joining or leaving (OWNS shows now → after; see rumor ring)")
	}
	tw := table(w, "NAME", "STATE", "STATUS", "ZONE", "OWNS", "KEYS", "HINTS", "AE IN SYNC", "LAST EXCHANGE", "REPAIRED")
	var failed []node.NodeStatus
	for _, n := range cs.Nodes {
		owns := fmt.Sprintf("%.1f%%", 100*n.Ownership)
		if cs.Moving && n.Ownership != n.NextOwnership {
			owns += fmt.Sprintf(" → %.1f%%", 100*n.NextOwnership)
		}
		keys, hints, sync, last, repaired := "?", "?", "?", "?", "?"
		if n.Error == "" {
			keys, hints = strconv.FormatInt(n.Keys, 10), strconv.FormatInt(n.HintsPending, 10)
			sync = fmt.Sprintf("%d/%d", n.AERangesInSync, n.AERangesTotal)
			last = "never"
			if n.LastExchange != nil {
				last = ago(now.Sub(*n.LastExchange))
			}
			repaired = fmt.Sprintf("%s (%d keys)", humanBytes(n.BytesRepaired), n.KeysRepaired)
		} else {
			failed = append(failed, n)
		}
		row(tw, n.Name, n.State, n.Status, dash(n.Zone), owns, keys, hints, sync, last, repaired)
	}
	_ = tw.Flush()
	for _, n := range failed {
		fmt.Fprintf(w, "%s: could not be asked: %s\n", n.Name, n.Error)
	}
}

// ago formats how long ago something happened, coarsely.
func ago(d time.Duration) string {
	switch {
	case d < time.Second:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd ago", int(d/(24*time.Hour)))
}

// nodeStatus prints the contacted node's own status document.
func nodeStatus(c *cli.Context, js bool) error {
	var raw json.RawMessage
	if err := fetch(c, "/v1/status", &raw); err != nil {
		return err
	}
	// Numbers stay exact (counters are uint64).
	var st map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&st); err != nil {
		return fmt.Errorf("status: decode answer: %w", err)
	}
	if js {
		return printJSON(c.App.Writer, st)
	}
	printTree(c.App.Writer, "", st)
	return nil
}
