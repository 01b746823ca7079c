package rpc

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var bg = context.Background()

// transports runs a test over an in-memory pipe and over loopback TCP.
func transports(t *testing.T, h Handler, so ServerOptions, co ClientOptions, fn func(t *testing.T, c *Client, addr string, s *Server)) {
	t.Run("pipe", func(t *testing.T) {
		checkLeaks(t)
		s, dial := pipeServer(t, h, so)
		o := co
		o.Dialer = dial
		fn(t, newClient(t, o), "pipe", s)
	})
	t.Run("tcp", func(t *testing.T) {
		checkLeaks(t)
		s, addr := tcpServer(t, h, so)
		fn(t, newClient(t, co), addr, s)
	})
}

func TestRoundTrip(t *testing.T) {
	var seen struct {
		sync.Mutex
		method uint16
		from   net.Addr
	}
	h := HandlerFunc(func(ctx context.Context, from net.Addr, method uint16, body []byte) ([]byte, error) {
		seen.Lock()
		seen.method, seen.from = method, from
		seen.Unlock()
		return append([]byte(fmt.Sprintf("m%d:", method)), body...), nil
	})
	transports(t, h, ServerOptions{}, ClientOptions{}, func(t *testing.T, c *Client, addr string, s *Server) {
		out, err := c.Call(bg, addr, 42, []byte("ping"))
		if err != nil || string(out) != "m42:ping" {
			t.Fatalf("Call = %q, %v", out, err)
		}
		seen.Lock()
		if seen.method != 42 || seen.from == nil {
			t.Errorf("handler saw method %d from %v", seen.method, seen.from)
		}
		seen.Unlock()

		// Empty bodies both ways.
		out, err = c.Call(bg, addr, 0, nil)
		if err != nil || string(out) != "m0:" {
			t.Fatalf("empty request: %q, %v", out, err)
		}
		eout, err := echo.ServeRPC(bg, nil, 0, nil)
		if err != nil || eout != nil {
			t.Fatal("echo")
		}

		// Large bodies (several MiB) both ways.
		big := make([]byte, 6<<20+123)
		for i := range big {
			big[i] = byte(i * 7)
		}
		out, err = c.Call(bg, addr, 1, big)
		if err != nil || !bytes.Equal(out[3:], big) {
			t.Fatalf("large body: %d bytes, %v", len(out), err)
		}
	})

	transports(t, echo, ServerOptions{}, ClientOptions{}, func(t *testing.T, c *Client, addr string, s *Server) {
		out, err := c.Call(bg, addr, 1, nil)
		if err != nil || len(out) != 0 {
			t.Fatalf("empty round trip = %q, %v", out, err)
		}
		// Counters agree on both sides once the calls are done.
		for i := range 10 {
			if _, err := c.Call(bg, addr, 1, make([]byte, i*100)); err != nil {
				t.Fatal(err)
			}
		}
		cs, ss := c.Stats(), s.Stats()
		if cs.Calls != 11 || cs.Errors != 0 || ss.Calls != 11 || cs.FramesSent != 11 || ss.FramesReceived != 11 ||
			cs.BytesSent != ss.BytesReceived || cs.BytesReceived != ss.BytesSent || cs.FramesReceived != 11 {
			t.Fatalf("stats disagree: client %+v server %+v", cs, ss)
		}
		if cs.Conns < 1 || cs.Conns > 2 || ss.Conns != cs.Conns {
			t.Fatalf("conns: client %d server %d", cs.Conns, ss.Conns)
		}
	})
}

// Many concurrent calls on one connection, answered out of order, each get
// their own response.
func TestPipelined(t *testing.T) {
	h := HandlerFunc(func(ctx context.Context, from net.Addr, method uint16, body []byte) ([]byte, error) {
		time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
		return append(binary.BigEndian.AppendUint16(nil, method), body...), nil
	})
	transports(t, h, ServerOptions{}, ClientOptions{ConnsPerPeer: 1}, func(t *testing.T, c *Client, addr string, s *Server) {
		const calls = 300
		var wg sync.WaitGroup
		errs := make(chan error, calls)
		for i := range calls {
			wg.Go(func() {
				body := []byte(fmt.Sprintf("call %d", i))
				out, err := c.Call(bg, addr, uint16(i), body)
				if err != nil {
					errs <- err
					return
				}
				want := append(binary.BigEndian.AppendUint16(nil, uint16(i)), body...)
				if !bytes.Equal(out, want) {
					errs <- fmt.Errorf("call %d got %q", i, out)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if st := c.Stats(); st.Dials != 1 {
			t.Errorf("%d dials, want 1", st.Dials)
		}
		if st := s.Stats(); st.Conns != 1 || st.Calls != calls {
			t.Errorf("server saw %d connections and %d calls", st.Conns, st.Calls)
		}
	})
}

func TestConnsPerPeer(t *testing.T) {
	checkLeaks(t)
	s, addr := tcpServer(t, echo, ServerOptions{})
	c := newClient(t, ClientOptions{ConnsPerPeer: 3})
	for range 10 {
		if _, err := c.Call(bg, addr, 1, nil); err != nil {
			t.Fatal(err)
		}
	}
	if cs, ss := c.Stats(), s.Stats(); cs.Dials != 3 || cs.Conns != 3 || ss.Conns != 3 {
		t.Fatalf("client %+v server %+v, want 3 connections", cs, ss)
	}
}

func TestDeadline(t *testing.T) {
	type seen struct {
		deadline time.Duration
		err      error
	}
	seenc := make(chan seen, 1)
	h := HandlerFunc(func(ctx context.Context, from net.Addr, method uint16, body []byte) ([]byte, error) {
		d, ok := ctx.Deadline()
		if !ok {
			seenc <- seen{err: errors.New("no deadline")}
			return nil, nil
		}
		left := time.Until(d)
		if method == 1 {
			seenc <- seen{deadline: left}
			return nil, nil
		}
		<-ctx.Done()
		seenc <- seen{deadline: left, err: ctx.Err()}
		return nil, ctx.Err()
	})
	transports(t, h, ServerOptions{}, ClientOptions{}, func(t *testing.T, c *Client, addr string, s *Server) {
		// A slow handler and a short deadline: the call returns on time,
		// and the handler's ctx expires too.
		const timeout = 100 * time.Millisecond
		start := time.Now()
		ctx, cancel := context.WithTimeout(bg, timeout)
		defer cancel()
		_, err := c.Call(ctx, addr, 2, nil)
		took := time.Since(start)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v, want DeadlineExceeded", err)
		}
		if took < timeout || took > timeout+300*time.Millisecond {
			t.Errorf("call took %v with a %v deadline", took, timeout)
		}
		got := <-seenc
		if !errors.Is(got.err, context.DeadlineExceeded) || got.deadline > timeout || got.deadline < timeout/2 {
			t.Errorf("handler saw deadline %v, ctx error %v", got.deadline, got.err)
		}

		// Without a deadline the call gets DefaultTimeout, and the handler
		// sees it.
		if _, err := c.Call(bg, addr, 1, nil); err != nil {
			t.Fatal(err)
		}
		got = <-seenc
		if got.err != nil || got.deadline > DefaultTimeout || got.deadline < DefaultTimeout-time.Second {
			t.Errorf("handler saw deadline %v (%v), want about %v", got.deadline, got.err, DefaultTimeout)
		}

		// A context that is already done fails at once.
		done, cancel2 := context.WithCancel(bg)
		cancel2()
		if _, err := c.Call(done, addr, 1, nil); !errors.Is(err, context.Canceled) {
			t.Fatalf("done context: %v", err)
		}
	})
}

// A cancelled call returns at once; its late response is discarded and the
// connection goes on serving.
func TestCancel(t *testing.T) {
	release := make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, from net.Addr, method uint16, body []byte) ([]byte, error) {
		if method == 1 {
			<-release
		}
		return body, nil
	})
	transports(t, h, ServerOptions{}, ClientOptions{ConnsPerPeer: 1}, func(t *testing.T, c *Client, addr string, s *Server) {
		ctx, cancel := context.WithCancel(bg)
		errc := make(chan error)
		go func() {
			_, err := c.Call(ctx, addr, 1, []byte("slow"))
			errc <- err
		}()
		time.Sleep(20 * time.Millisecond)
		cancel()
		select {
		case err := <-errc:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("got %v, want Canceled", err)
			}
		case <-time.After(time.Second):
			t.Fatal("cancelled call did not return")
		}
		release <- struct{}{} // the handler answers now, too late
		out, err := c.Call(bg, addr, 2, []byte("next"))
		if err != nil || string(out) != "next" {
			t.Fatalf("call after a cancelled one: %q, %v", out, err)
		}
		deadline := time.Now().Add(time.Second)
		for c.Stats().FramesReceived < 2 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if st := c.Stats(); st.FramesReceived != 2 || st.Dials != 1 {
			t.Fatalf("stats %+v: want the late response received (and dropped) on the one connection", st)
		}
	})
}

// The server goes away mid-call: the pending call fails with ErrConnection,
// and once a server is back on the address the next call redials.
func TestServerRestart(t *testing.T) {
	checkLeaks(t)
	entered := make(chan struct{}, 1)
	h := HandlerFunc(func(ctx context.Context, from net.Addr, method uint16, body []byte) ([]byte, error) {
		if method == 1 {
			entered <- struct{}{}
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return body, nil
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	s1 := NewServer(h, ServerOptions{Logger: quiet})
	go s1.Serve(ln)
	c := newClient(t, ClientOptions{})

	errc := make(chan error)
	go func() {
		_, err := c.Call(bg, addr, 1, nil)
		errc <- err
	}()
	<-entered
	start := time.Now()
	s1.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrConnection) {
			t.Fatalf("pending call: %v, want ErrConnection", err)
		}
		if errors.Is(err, ErrNotSent) {
			t.Fatalf("pending call: %v says not sent, but the server had it", err)
		}
		if time.Since(start) > time.Second {
			t.Errorf("pending call took %v to fail", time.Since(start))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("pending call did not fail")
	}

	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("relisten on %s: %v", addr, err)
	}
	s2 := NewServer(h, ServerOptions{})
	serve(t, s2, ln2)
	for i := range 4 { // every slot of the client redials
		out, err := c.Call(bg, addr, 2, []byte("again"))
		if err != nil || string(out) != "again" {
			t.Fatalf("call %d after restart: %q, %v", i, out, err)
		}
	}
	if st := c.Stats(); st.Dials < 2 || st.DialFailures != 0 {
		t.Fatalf("client stats %+v", st)
	}
}

// A failed dial puts the address in backoff: calls fail fast without
// dialing, then dial again once it is over.
func TestDialBackoff(t *testing.T) {
	checkLeaks(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now

	var dials atomic.Int32
	var d net.Dialer
	const backoff = 200 * time.Millisecond
	c := newClient(t, ClientOptions{DialBackoff: backoff, Dialer: func(ctx context.Context, addr string) (net.Conn, error) {
		dials.Add(1)
		return d.DialContext(ctx, "tcp", addr)
	}})

	_, err = c.Call(bg, addr, 1, nil)
	if !errors.Is(err, ErrConnection) || errors.Is(err, ErrBackoff) || !errors.Is(err, ErrNotSent) {
		t.Fatalf("first call: %v, want a dial error (not sent)", err)
	}
	failedAt := time.Now()
	for i := range 20 {
		start := time.Now()
		_, err = c.Call(bg, addr, 1, nil)
		if time.Since(failedAt) >= backoff {
			break // slow machine: the backoff is over
		}
		if !errors.Is(err, ErrBackoff) || !errors.Is(err, ErrConnection) || !errors.Is(err, ErrNotSent) {
			t.Fatalf("call %d in backoff: %v, want ErrBackoff (not sent)", i, err)
		}
		if took := time.Since(start); took > 20*time.Millisecond {
			t.Errorf("call in backoff took %v", took)
		}
	}
	if n := dials.Load(); n != 1 {
		t.Fatalf("%d dials during the backoff, want 1", n)
	}

	// After the backoff the next call dials again (and fails again).
	time.Sleep(time.Until(failedAt.Add(backoff + 10*time.Millisecond)))
	if _, err = c.Call(bg, addr, 1, nil); errors.Is(err, ErrBackoff) || !errors.Is(err, ErrConnection) {
		t.Fatalf("call after backoff: %v, want a new dial error", err)
	}
	if n := dials.Load(); n != 2 {
		t.Fatalf("%d dials, want 2", n)
	}

	// A server comes up: once the backoff is over, calls succeed.
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, NewServer(echo, ServerOptions{}), ln)
	time.Sleep(backoff + 10*time.Millisecond)
	if out, err := c.Call(bg, addr, 1, []byte("up")); err != nil || string(out) != "up" {
		t.Fatalf("call after the peer came up: %q, %v", out, err)
	}
}

// While one slot's dial is in backoff, calls use the peer's other live
// connection.
func TestBackoffUsesLiveConn(t *testing.T) {
	checkLeaks(t)
	_, addr := tcpServer(t, echo, ServerOptions{})
	var dials atomic.Int32
	var d net.Dialer
	c := newClient(t, ClientOptions{ConnsPerPeer: 2, DialBackoff: time.Minute, Dialer: func(ctx context.Context, addr string) (net.Conn, error) {
		if dials.Add(1) == 2 {
			return nil, errors.New("flaky")
		}
		return d.DialContext(ctx, "tcp", addr)
	}})
	if _, err := c.Call(bg, addr, 1, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Call(bg, addr, 1, nil); !errors.Is(err, ErrConnection) {
		t.Fatalf("second slot's dial: %v", err)
	}
	for i := range 10 {
		if _, err := c.Call(bg, addr, 1, nil); err != nil {
			t.Fatalf("call %d during backoff: %v", i, err)
		}
	}
	if n := dials.Load(); n != 2 {
		t.Fatalf("%d dials, want 2", n)
	}
}

// A dial that hangs (a silent peer) is bounded by the call's deadline and
// also starts the backoff; a caller's own cancellation does not.
func TestDialHang(t *testing.T) {
	checkLeaks(t)
	var dials atomic.Int32
	c := newClient(t, ClientOptions{DialBackoff: time.Minute, Dialer: func(ctx context.Context, addr string) (net.Conn, error) {
		dials.Add(1)
		<-ctx.Done()
		return nil, ctx.Err()
	}})
	ctx, cancel := context.WithCancel(bg)
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	if _, err := c.Call(ctx, "silent", 1, nil); !errors.Is(err, context.Canceled) || !errors.Is(err, ErrConnection) {
		t.Fatalf("cancelled dial: %v", err)
	}
	ctx, cancel = context.WithTimeout(bg, 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := c.Call(ctx, "silent", 1, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hanging dial: %v", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("hanging dial took %v", took)
	}
	if _, err := c.Call(bg, "silent", 1, nil); !errors.Is(err, ErrBackoff) {
		t.Fatalf("after a timed-out dial: %v, want ErrBackoff", err)
	}
	if n := dials.Load(); n != 2 {
		t.Fatalf("%d dials, want 2", n)
	}

	// Close aborts a dial in progress.
	errc := make(chan error)
	go func() {
		_, err := c.Call(bg, "other", 1, nil)
		errc <- err
	}()
	for dials.Load() != 3 {
		time.Sleep(time.Millisecond)
	}
	c.Close()
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("dial aborted by Close: %v", err)
	}
}

func TestRemoteError(t *testing.T) {
	h := HandlerFunc(func(ctx context.Context, from net.Addr, method uint16, body []byte) ([]byte, error) {
		switch method {
		case 1:
			return nil, &RemoteError{Code: 404, Msg: "no such key"}
		case 2:
			return nil, fmt.Errorf("wrapped: %w", &RemoteError{Code: 503, Msg: "later"})
		case 3:
			return []byte("ignored"), errors.New("disk on fire")
		case 4:
			return nil, &RemoteError{Code: 70000, Msg: "odd"}
		case 5:
			return nil, &RemoteError{Code: 400, Msg: string(bytes.Repeat([]byte("é"), 40000))}
		}
		return body, nil
	})
	transports(t, h, ServerOptions{}, ClientOptions{}, func(t *testing.T, c *Client, addr string, s *Server) {
		cases := []struct {
			method uint16
			code   int
			msg    string
		}{
			{1, 404, "no such key"},
			{2, 503, "later"},
			{3, 500, "disk on fire"},
			{4, 500, "(code 70000) odd"},
		}
		for _, tc := range cases {
			out, err := c.Call(bg, addr, tc.method, nil)
			re, ok := err.(*RemoteError)
			if !ok || re.Code != tc.code || re.Msg != tc.msg || out != nil {
				t.Errorf("method %d: %q, %v; want remote error %d %q", tc.method, out, err, tc.code, tc.msg)
			}
		}
		_, err := c.Call(bg, addr, 5, nil)
		var re *RemoteError
		if !errors.As(err, &re) || re.Code != 400 || len(re.Msg) > maxErrorMsg || len(re.Msg) < maxErrorMsg-2 || !bytes.HasPrefix([]byte(re.Msg), []byte("éé")) {
			t.Errorf("long message: %v", err)
		}
		if got := (&RemoteError{Code: 404, Msg: "x"}).Error(); got != "rpc: remote error 404: x" {
			t.Errorf("Error() = %q", got)
		}
		if st := s.Stats(); st.Errors != 5 {
			t.Errorf("server counted %d errors, want 5", st.Errors)
		}
		if out, err := c.Call(bg, addr, 9, []byte("ok")); err != nil || string(out) != "ok" {
			t.Fatalf("after errors: %q, %v", out, err)
		}
	})
}

func TestHandlerPanic(t *testing.T) {
	h := HandlerFunc(func(ctx context.Context, from net.Addr, method uint16, body []byte) ([]byte, error) {
		if method == 13 {
			panic("unlucky")
		}
		return body, nil
	})
	transports(t, h, ServerOptions{Logger: quiet}, ClientOptions{}, func(t *testing.T, c *Client, addr string, s *Server) {
		for range 3 {
			_, err := c.Call(bg, addr, 13, nil)
			var re *RemoteError
			if !errors.As(err, &re) || re.Code != CodeInternal {
				t.Fatalf("panicking handler: %v, want a 500", err)
			}
			if out, err := c.Call(bg, addr, 1, []byte("alive")); err != nil || string(out) != "alive" {
				t.Fatalf("after a panic: %q, %v", out, err)
			}
		}
		if st := s.Stats(); st.Panics != 3 || st.Conns < 1 {
			t.Fatalf("server stats %+v", st)
		}
	})
}

// At most MaxInFlight requests per connection run at once; the rest wait.
func TestMaxInFlight(t *testing.T) {
	var running, peak atomic.Int32
	release := make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, from net.Addr, method uint16, body []byte) ([]byte, error) {
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		<-release
		running.Add(-1)
		return body, nil
	})
	transports(t, h, ServerOptions{MaxInFlight: 3}, ClientOptions{ConnsPerPeer: 1}, func(t *testing.T, c *Client, addr string, s *Server) {
		running.Store(0)
		peak.Store(0)
		var wg sync.WaitGroup
		for range 10 {
			wg.Go(func() {
				if _, err := c.Call(bg, addr, 1, nil); err != nil {
					t.Error(err)
				}
			})
		}
		deadline := time.Now().Add(2 * time.Second)
		for running.Load() < 3 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond) // give a fourth the chance to start
		if n := running.Load(); n != 3 {
			t.Errorf("%d handlers running, want 3", n)
		}
		for range 10 {
			release <- struct{}{}
		}
		wg.Wait()
		if p := peak.Load(); p != 3 {
			t.Errorf("peak of %d handlers, want 3", p)
		}
	})
}

// An idle connection is closed by the server and redialled by the client;
// a connection with a long request in flight is not idle.
func TestIdleTimeout(t *testing.T) {
	started := make(chan struct{}, 8)
	h := HandlerFunc(func(ctx context.Context, from net.Addr, method uint16, body []byte) ([]byte, error) {
		if method == 1 {
			started <- struct{}{}
			time.Sleep(300 * time.Millisecond)
		}
		return body, nil
	})
	transports(t, h, ServerOptions{IdleTimeout: 80 * time.Millisecond}, ClientOptions{ConnsPerPeer: 1}, func(t *testing.T, c *Client, addr string, s *Server) {
		for attempt := 1; ; attempt++ {
			for len(started) > 0 {
				<-started
			}
			_, err := c.Call(bg, addr, 1, []byte("long"))
			if err == nil {
				break
			}
			select {
			case <-started:
				t.Fatalf("connection closed with a request in flight: %v", err)
			default:
			}
			// On a loaded machine the new connection can go idle before
			// the request reaches the server; try again.
			if attempt == 3 {
				t.Fatalf("long call on a connection with a short idle timeout: %v", err)
			}
		}
		waitFor(t, func() bool { return s.Stats().Conns == 0 && c.Stats().Conns == 0 })
		dials := c.Stats().Dials
		if _, err := c.Call(bg, addr, 2, nil); err != nil {
			t.Fatalf("call after idle close: %v", err)
		}
		if st := c.Stats(); st.Dials != dials+1 {
			t.Fatalf("%d dials, want %d", st.Dials, dials+1)
		}
	})
}

// A peer that stops reading does not hold a server's writer forever.
func TestWriteTimeout(t *testing.T) {
	checkLeaks(t)
	h := HandlerFunc(func(ctx context.Context, from net.Addr, method uint16, body []byte) ([]byte, error) {
		return make([]byte, 1<<20), nil
	})
	s, dial := pipeServer(t, h, ServerOptions{WriteTimeout: 100 * time.Millisecond, Logger: quiet})
	conn, err := dial(bg, "pipe")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	raw := rawConn{t, conn}
	raw.write(mustFrame(t, frame{kind: kindRequest, id: 1, timeout: 10000}))
	// Never read. The server gives up on the write and closes.
	deadline := time.Now().Add(3 * time.Second)
	for s.Stats().Conns != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := s.Stats().Conns; n != 0 {
		t.Fatalf("server still has %d connections", n)
	}
}

func TestFrameLimits(t *testing.T) {
	checkLeaks(t)
	h := HandlerFunc(func(ctx context.Context, from net.Addr, method uint16, body []byte) ([]byte, error) {
		if method == 1 {
			return make([]byte, 2048), nil
		}
		return body, nil
	})
	s, addr := tcpServer(t, h, ServerOptions{MaxFrame: 1024, Logger: quiet})

	// The client refuses to send a frame over its own limit.
	small := newClient(t, ClientOptions{MaxFrame: 512})
	if _, err := small.Call(bg, addr, 2, make([]byte, 600)); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("over the client's limit: %v", err)
	}
	if st := small.Stats(); st.Dials != 0 {
		t.Fatalf("dialed for a call that cannot be sent")
	}

	// A response over the server's limit becomes a 500.
	c := newClient(t, ClientOptions{ConnsPerPeer: 1, Logger: quiet})
	var re *RemoteError
	if _, err := c.Call(bg, addr, 1, nil); !errors.As(err, &re) || re.Code != CodeInternal {
		t.Fatalf("response over the server's limit: %v", err)
	}
	// A request over the server's limit closes that connection.
	if _, err := c.Call(bg, addr, 2, make([]byte, 2000)); !errors.Is(err, ErrConnection) {
		t.Fatalf("request over the server's limit: %v", err)
	}
	if out, err := c.Call(bg, addr, 2, []byte("fits")); err != nil || string(out) != "fits" {
		t.Fatalf("after a closed connection: %q, %v", out, err)
	}
	// The server counts the error just after closing the connection.
	waitFor(t, func() bool { return s.Stats().ProtocolErrors == 1 })
}

// Close fails the calls in flight, stops every goroutine, and later calls
// fail with ErrClosed.
func TestClose(t *testing.T) {
	checkLeaks(t)
	entered := make(chan struct{}, 16)
	h := HandlerFunc(func(ctx context.Context, from net.Addr, method uint16, body []byte) ([]byte, error) {
		entered <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	})
	s1, addr := tcpServer(t, h, ServerOptions{})
	s2, dial := pipeServer(t, h, ServerOptions{})
	pipes := newPipeNet() // a second listener on s1
	serve(t, s1, pipes)
	c := NewClient(ClientOptions{Dialer: func(ctx context.Context, a string) (net.Conn, error) {
		switch a {
		case "pipe":
			return dial(ctx, a)
		case "pipe1":
			return pipes.Dial(ctx, a)
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", a)
	}})
	errc := make(chan error, 6)
	for _, a := range []string{addr, addr, "pipe", "pipe", "pipe1", "pipe1"} {
		go func() {
			_, err := c.Call(bg, a, 1, nil)
			errc <- err
		}()
	}
	for range 6 {
		<-entered
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for range 6 {
		if err := <-errc; !errors.Is(err, ErrClosed) {
			t.Errorf("pending call: %v, want ErrClosed", err)
		}
	}
	if _, err := c.Call(bg, addr, 1, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("call after Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if st := c.Stats(); st.Conns != 0 {
		t.Errorf("client has %d connections after Close", st.Conns)
	}

	// Server Close cancels running handlers and waits for them.
	c2 := newClient(t, ClientOptions{Dialer: dial})
	go func() {
		_, err := c2.Call(bg, "pipe", 1, nil)
		errc <- err
	}()
	<-entered
	s2.Close()
	if err := <-errc; !errors.Is(err, ErrConnection) {
		t.Errorf("call to a closed server: %v", err)
	}
	if st := s2.Stats(); st.Conns != 0 {
		t.Errorf("server has %d connections after Close", st.Conns)
	}
	// Serve after Close returns nil at once.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Serve(ln); err != nil {
		t.Errorf("Serve after Close: %v", err)
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Serve after Close left the listener open: %v", err)
	}
}

// A listener closed behind the server's back ends Serve with an error.
func TestServeListenerClosed(t *testing.T) {
	checkLeaks(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(echo, ServerOptions{})
	defer s.Close()
	errc := make(chan error)
	go func() { errc <- s.Serve(ln) }()
	time.Sleep(10 * time.Millisecond)
	ln.Close()
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Serve: %v", err)
	}
}
