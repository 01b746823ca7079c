package rpc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// quiet is a logger for tests that expect errors to be logged.
var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// goroutines returns the stacks of the live goroutines that run this
// package's code, by goroutine header line ("goroutine 7 [...]").
func goroutines() map[string]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	out := make(map[string]string)
	for _, g := range strings.Split(string(buf), "\n\n") {
		if !strings.Contains(g, "rumor/node/rpc") {
			continue
		}
		id, _, _ := strings.Cut(g, " [")
		out[id] = g
	}
	return out
}

// checkLeaks fails the test if goroutines running this package's code that
// did not exist when it was called are still alive after the test's other
// cleanups (so call it first). Tests that use it must not run in parallel.
func checkLeaks(t testing.TB) {
	before := goroutines()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			var leaked []string
			for id, g := range goroutines() {
				if _, ok := before[id]; !ok {
					leaked = append(leaked, g)
				}
			}
			if len(leaked) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Errorf("%d goroutines leaked:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// pipeNet is an in-memory listener whose Dial hands out net.Pipe pairs.
type pipeNet struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeNet() *pipeNet {
	return &pipeNet{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (p *pipeNet) Dial(ctx context.Context, addr string) (net.Conn, error) {
	a, b := net.Pipe()
	select {
	case p.conns <- b:
		return a, nil
	case <-p.done:
		return nil, errors.New("pipe: connection refused")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (p *pipeNet) Accept() (net.Conn, error) {
	select {
	case c := <-p.conns:
		return c, nil
	case <-p.done:
		return nil, net.ErrClosed
	}
}

func (p *pipeNet) Close() error {
	p.once.Do(func() { close(p.done) })
	return nil
}

func (p *pipeNet) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// serve runs s on ln until the test ends, then closes s and checks that
// Serve returned nil.
func serve(t testing.TB, s *Server, ln net.Listener) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-errc; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
}

// tcpServer starts a server for h on a loopback TCP listener.
func tcpServer(t testing.TB, h Handler, o ServerOptions) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(h, o)
	serve(t, s, ln)
	return s, ln.Addr().String()
}

// pipeServer starts a server for h on an in-memory listener and returns a
// client dialer for it.
func pipeServer(t testing.TB, h Handler, o ServerOptions) (*Server, Dialer) {
	t.Helper()
	pn := newPipeNet()
	s := NewServer(h, o)
	serve(t, s, pn)
	return s, pn.Dial
}

func newClient(t testing.TB, o ClientOptions) *Client {
	c := NewClient(o)
	t.Cleanup(func() { c.Close() })
	return c
}

// echo answers every request with its body.
var echo = HandlerFunc(func(ctx context.Context, from net.Addr, method uint16, body []byte) ([]byte, error) {
	return body, nil
})

// rawConn is a hostile peer's connection.
type rawConn struct {
	t testing.TB
	net.Conn
}

func (r rawConn) write(b []byte) {
	r.t.Helper()
	r.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.Write(b); err != nil {
		r.t.Fatalf("raw write: %v", err)
	}
}

// expectClosed waits until the other end closes the connection, discarding
// anything it sends.
func (r rawConn) expectClosed() {
	r.t.Helper()
	r.SetReadDeadline(time.Now().Add(5 * time.Second))
	// EOF, or a reset when the peer closed with our bytes unread.
	if _, err := io.Copy(io.Discard, r.Conn); isTimeout(err) {
		r.t.Fatalf("peer did not close the connection: %v", err)
	}
}

func mustFrame(t testing.TB, f frame) []byte {
	t.Helper()
	b, err := appendFrame(nil, &f, DefaultMaxFrame)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func equalFrames(a, b frame) bool {
	return a.kind == b.kind && a.id == b.id && a.method == b.method && a.timeout == b.timeout &&
		a.code == b.code && a.msg == b.msg && bytes.Equal(a.body, b.body)
}

// waitFor polls cond for up to 5 s.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5 s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestMain fails the run if any goroutine running this package's code
// outlives the tests (each test's own check is stricter; this one covers
// the tests that do not call checkLeaks).
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(5 * time.Second)
		for {
			var left []string
			for _, g := range goroutines() {
				if !strings.Contains(g, "rpc.TestMain") {
					left = append(left, g)
				}
			}
			if len(left) == 0 {
				break
			}
			if time.Now().After(deadline) {
				fmt.Fprintf(os.Stderr, "goroutines leaked by the tests:\n%s\n", strings.Join(left, "\n\n"))
				code = 1
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	os.Exit(code)
}
