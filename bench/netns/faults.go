package netns

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// cut is one dropped direction between two nodes.
type cut struct {
	from, to int
	silent   bool
}

// cutArgs returns the `ip` arguments that add (verb "add") or remove ("del")
// the cut.
func (c *Cluster) cutArgs(k cut, verb string) []string {
	from, to := c.nodes[k.from], c.nodes[k.to]
	if k.silent {
		return []string{"-n", c.router, "rule", verb, "from", from.IP + "/32", "to", to.IP + "/32", "blackhole"}
	}
	return []string{"-n", from.Namespace, "route", verb, "blackhole", to.IP + "/32"}
}

// Cut drops packets from node a to node b (one direction; TCP across a
// one-way cut fails both ways since replies are lost too).
//
// silent=false adds a blackhole route for b's address in a's namespace: a's
// connects and sends fail at once with an error. silent=true adds `ip rule
// from <a> to <b> blackhole` in the router: packets are dropped in transit
// and a only sees timeouts. Cutting the same direction twice is a no-op;
// Heal removes every cut. The router and the test process can still reach
// every node.
func (c *Cluster) Cut(a, b int, silent bool) error {
	if _, err := c.node(a); err != nil {
		return err
	}
	if _, err := c.node(b); err != nil {
		return err
	}
	if a == b {
		return fmt.Errorf("%w: cannot cut node %d from itself", ErrBadNode, a)
	}
	k := cut{from: a, to: b, silent: silent}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.closed {
		return ErrClosed
	}
	if slices.Contains(c.mu.cuts, k) {
		return nil
	}
	if _, err := ip(context.Background(), c.cutArgs(k, "add")...); err != nil {
		return err
	}
	c.mu.cuts = append(c.mu.cuts, k)
	return nil
}

// Partition cuts both directions between every pair of nodes in different
// groups. Nodes in no group keep reaching everyone.
func (c *Cluster) Partition(silent bool, groups ...[]int) error {
	for gi, g := range groups {
		for gj, h := range groups {
			if gi == gj {
				continue
			}
			for _, a := range g {
				for _, b := range h {
					if err := c.Cut(a, b, silent); err != nil {
						return fmt.Errorf("partition %v: %w", groups, err)
					}
				}
			}
		}
	}
	return nil
}

// Isolate cuts node i from every other node, both directions.
func (c *Cluster) Isolate(i int, silent bool) error {
	if _, err := c.node(i); err != nil {
		return err
	}
	var others []int
	for j := range c.nodes {
		if j != i {
			others = append(others, j)
		}
	}
	return c.Partition(silent, []int{i}, others)
}

// Heal removes every cut made so far. Cuts it fails to remove stay recorded
// for the next Heal.
func (c *Cluster) Heal() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.closed {
		return ErrClosed
	}
	var errs []error
	var left []cut
	for _, k := range slices.Backward(c.mu.cuts) {
		if _, err := ip(context.Background(), c.cutArgs(k, "del")...); err != nil {
			errs = append(errs, err)
			left = append(left, k)
		}
	}
	slices.Reverse(left)
	c.mu.cuts = left
	return errors.Join(errs...)
}
