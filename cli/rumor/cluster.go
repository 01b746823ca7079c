package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/rumorkv/rumor/node"
)

func leaveCommand() *cli.Command {
	return &cli.Command{
		Name:  "leave",
		Usage: "make the contacted node hand its ranges over to the others and stop",
		Description: "The node becomes leaving: the nodes that take its ranges over copy them from it\n" +
			"while reads and writes go on; once they hold everything, it declares itself left\n" +
			"and its agent exits. Without --no-wait the command follows the progress until then.",
		Flags: clientFlags(
			&cli.BoolFlag{Name: "no-wait", Usage: "return once the node has started leaving"},
			&cli.DurationFlag{Name: "timeout", Value: time.Hour, Usage: "give up waiting after this long (the node keeps leaving)"},
		),
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return usageErr(c, "leave takes no arguments; --addr picks the node")
			}
			js, err := wantJSON(c)
			if err != nil {
				return err
			}
			// -o json: one object at the end instead of progress lines.
			out := c.App.Writer
			if js {
				out = io.Discard
			}
			done := func(state string) error {
				if js {
					return printJSON(c.App.Writer, map[string]string{"addr": newClient(c).Addr(), "state": state})
				}
				return nil
			}
			cl := newClient(c)
			ctx, cancel := context.WithTimeout(c.Context, requestTimeout)
			err = cl.PostJSON(ctx, "/v1/leave", nil)
			cancel()
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "%s is leaving\n", cl.Addr())
			if c.Bool("no-wait") {
				return done(node.StatusLeaving)
			}
			deadline := time.Now().Add(c.Duration("timeout"))
			last := ""
			for time.Now().Before(deadline) {
				var st struct {
					Transfer node.TransferStatus `json:"transfer"`
				}
				ctx, cancel := context.WithTimeout(c.Context, 5*time.Second)
				err := cl.GetJSON(ctx, "/v1/status", &st)
				cancel()
				switch {
				case err != nil && st.Transfer.State == "" && last != "":
					// The agent exited after leaving.
					fmt.Fprintln(out, "left (the agent has stopped)")
					return done(node.StatusLeft)
				case err != nil:
					return fmt.Errorf("following the leave: %w", err)
				case st.Transfer.State == node.StatusLeft:
					fmt.Fprintln(out, "left")
					return done(node.StatusLeft)
				}
				line := fmt.Sprintf("%s: waiting for %v", st.Transfer.State, st.Transfer.Waiting)
				if line != last {
					fmt.Fprintln(out, line)
					last = line
				}
				select {
				case <-c.Context.Done():
					return c.Context.Err()
				case <-time.After(500 * time.Millisecond):
				}
			}
			return errors.New("still leaving after --timeout (the node keeps going; check rumor status)")
		},
	}
}

func removeCommand() *cli.Command {
	return &cli.Command{
		Name:      "remove",
		Usage:     "declare a member that is gone for good left; its ranges are re-replicated from the survivors",
		ArgsUsage: "NODE",
		Flags:     clientFlags(),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageErr(c, "remove needs the member's NAME")
			}
			ctx, cancel := context.WithTimeout(c.Context, requestTimeout)
			defer cancel()
			name := c.Args().Get(0)
			js, err := wantJSON(c)
			if err != nil {
				return err
			}
			if err := newClient(c).PostJSON(ctx, "/v1/remove/"+url.PathEscape(name), nil); err != nil {
				return err
			}
			if js {
				return printJSON(c.App.Writer, map[string]string{"removed": name})
			}
			fmt.Fprintf(c.App.Writer, "%s removed; its ranges are being re-replicated\n", name)
			return nil
		},
	}
}
