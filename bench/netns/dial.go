package netns

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// Client returns an HTTP client whose connections are made inside the
// router namespace, so the calling process (in the root namespace) can reach
// the nodes' addresses. It never uses an environment proxy; its Timeout is
// 30 s. Close closes its idle connections.
func (c *Cluster) Client() *http.Client { return c.client }

// DialFrom opens a connection from inside node i's namespace (its sockets
// stay there), e.g. to check what a cut does to that node.
func (c *Cluster) DialFrom(ctx context.Context, i int, network, addr string) (net.Conn, error) {
	n, err := c.node(i)
	if err != nil {
		return nil, err
	}
	return c.dialIn(ctx, n.Namespace, network, addr)
}

func (c *Cluster) dialRouter(ctx context.Context, network, addr string) (net.Conn, error) {
	return c.dialIn(ctx, c.router, network, addr)
}

func (c *Cluster) dialIn(ctx context.Context, ns, network, addr string) (net.Conn, error) {
	if c.closed() {
		return nil, ErrClosed
	}
	return dialIn(ctx, filepath.Join("/run/netns", ns), network, addr)
}

// dialIn dials from the network namespace bound at nsPath. A socket belongs
// to the namespace it was created in, so it is enough to create it from a
// thread that has switched there: a fresh goroutine locks its OS thread,
// switches, dials and switches back. If switching back fails the thread
// stays locked and Go discards it when the goroutine exits.
func dialIn(ctx context.Context, nsPath, network, addr string) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		conn, restored, err := dialLocked(ctx, nsPath, network, addr)
		if restored {
			runtime.UnlockOSThread()
		}
		ch <- result{conn, err}
	}()
	r := <-ch
	return r.conn, r.err
}

// dialLocked does dialIn's work on a locked thread; restored reports
// whether the thread is back in its original namespace.
func dialLocked(ctx context.Context, nsPath, network, addr string) (conn net.Conn, restored bool, err error) {
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, true, fmt.Errorf("netns: own namespace: %w", err)
	}
	defer orig.Close()
	target, err := os.Open(nsPath)
	if err != nil {
		return nil, true, fmt.Errorf("netns: namespace: %w", err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return nil, true, fmt.Errorf("netns: setns %s: %w", nsPath, err)
	}
	var d net.Dialer
	conn, err = d.DialContext(ctx, network, addr)
	if rerr := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); rerr != nil {
		if conn != nil {
			_ = conn.Close()
		}
		return nil, false, fmt.Errorf("netns: setns back from %s: %w", nsPath, rerr)
	}
	return conn, true, err
}
