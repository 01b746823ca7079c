package rpc

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"
)

func totalAlloc() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.TotalAlloc
}

// Hostile clients: the server closes each offending connection, allocates
// nothing large, and goes on serving everyone else.
func TestHostileClient(t *testing.T) {
	checkLeaks(t)
	s, addr := tcpServer(t, echo, ServerOptions{Logger: quiet})
	c := newClient(t, ClientOptions{})
	call := func() {
		t.Helper()
		if out, err := c.Call(bg, addr, 1, []byte("fine")); err != nil || string(out) != "fine" {
			t.Fatalf("honest call: %q, %v", out, err)
		}
	}
	call()

	id := make([]byte, 8)
	be32 := func(n uint32, rest ...byte) []byte { return append(binary.BigEndian.AppendUint32(nil, n), rest...) }
	cases := []struct {
		name      string
		send      []byte
		hangUp    bool // close our side after sending (truncated input)
		protoErrs uint64
	}{
		{"length 0xFFFFFFFF", be32(0xFFFFFFFF), false, 1},
		{"length over MaxFrame", be32(DefaultMaxFrame + 1), false, 1},
		{"length below header", be32(3, 1, 1, 0), false, 1},
		{"bad version", be32(16, append(append([]byte{9, kindRequest}, id...), 0, 1, 0, 0, 0, 0)...), false, 1},
		{"unknown kind", be32(10, append([]byte{1, 77}, id...)...), false, 1},
		{"response from a client", be32(10, append([]byte{1, kindResponse}, id...)...), false, 1},
		{"short request header", be32(12, append(append([]byte{1, kindRequest}, id...), 0, 1)...), false, 1},
		{"truncated length", []byte{0, 0}, true, 0},
		{"truncated header", be32(16, 1, kindRequest, 0, 0), true, 0},
		{"announces 60 MiB, sends 100 bytes", be32(60<<20, append([]byte{1, kindRequest}, make([]byte, 98)...)...), true, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := s.Stats().ProtocolErrors
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			raw := rawConn{t, conn}
			alloc := totalAlloc()
			raw.write(tc.send)
			if tc.hangUp {
				time.Sleep(20 * time.Millisecond) // let the server read what came
				conn.(*net.TCPConn).CloseWrite()
			}
			raw.expectClosed()
			if a := totalAlloc() - alloc; a > 2<<20 {
				t.Errorf("server allocated %d bytes for a hostile frame", a)
			}
			call()
			deadline := time.Now().Add(time.Second)
			for s.Stats().ProtocolErrors-before != tc.protoErrs && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if n := s.Stats().ProtocolErrors - before; n != tc.protoErrs {
				t.Errorf("%d protocol errors counted, want %d", n, tc.protoErrs)
			}
		})
	}

	// A slow hostile peer holding a half-sent huge frame open does not
	// stop others, nor cost the announced memory.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	raw := rawConn{t, conn}
	alloc := totalAlloc()
	raw.write(be32(60<<20, append([]byte{1, kindRequest}, make([]byte, 10<<10)...)...))
	time.Sleep(20 * time.Millisecond)
	call()
	if a := totalAlloc() - alloc; a > 2<<20 {
		t.Errorf("server allocated %d bytes for a half-sent frame", a)
	}
	conn.Close()
}

// hostileServer accepts connections, reads one request from each, and
// answers with whatever respond returns.
func hostileServer(t *testing.T, respond func(req frame) [][]byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			wg.Go(func() {
				fr := frameReader{r: bufio.NewReader(conn), max: DefaultMaxFrame}
				for {
					req, _, err := fr.read()
					if err != nil {
						return
					}
					for _, b := range respond(req) {
						if _, err := conn.Write(b); err != nil {
							return
						}
					}
				}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// Hostile servers: the client fails the calls on that connection with
// ErrConnection, allocates nothing large, and redials for the next call.
func TestHostileServer(t *testing.T) {
	checkLeaks(t)
	id := func(req frame) []byte { return binary.BigEndian.AppendUint64(nil, req.id) }
	be32 := func(n uint32, rest ...byte) []byte { return append(binary.BigEndian.AppendUint32(nil, n), rest...) }
	cases := []struct {
		name    string
		respond func(req frame) [][]byte
		want    error // context.DeadlineExceeded: the server leaves the frame half sent
	}{
		{"length 0xFFFFFFFF", func(req frame) [][]byte { return [][]byte{be32(0xFFFFFFFF)} }, ErrFrameTooLarge},
		{"announces 60 MiB, sends 1 KiB", func(req frame) [][]byte {
			return [][]byte{be32(60<<20, append(append([]byte{1, kindResponse}, id(req)...), make([]byte, 1024)...)...)}
		}, context.DeadlineExceeded},
		{"bad version", func(req frame) [][]byte { return [][]byte{be32(10, append([]byte{3, kindResponse}, id(req)...)...)} }, ErrProtocol},
		{"unknown kind", func(req frame) [][]byte { return [][]byte{be32(10, append([]byte{1, 0xEE}, id(req)...)...)} }, ErrProtocol},
		{"request from a server", func(req frame) [][]byte {
			return [][]byte{mustFrame(t, frame{kind: kindRequest, id: req.id})}
		}, ErrProtocol},
		{"error message overrun", func(req frame) [][]byte {
			return [][]byte{be32(14, append(append([]byte{1, kindError}, id(req)...), 0, 1, 0xFF, 0xFF)...)}
		}, ErrProtocol},
		{"truncated header", func(req frame) [][]byte { return [][]byte{be32(10, 1)} }, context.DeadlineExceeded},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr := hostileServer(t, tc.respond)
			c := newClient(t, ClientOptions{ConnsPerPeer: 1, Logger: quiet})
			for i := range 2 { // the second call redials
				alloc := totalAlloc()
				ctx, cancel := context.WithTimeout(bg, 200*time.Millisecond)
				_, err := c.Call(ctx, addr, 1, []byte("hi"))
				cancel()
				if !errors.Is(err, tc.want) || (tc.want != context.DeadlineExceeded && !errors.Is(err, ErrConnection)) {
					t.Fatalf("call %d: %v, want %v", i, err, tc.want)
				}
				if a := totalAlloc() - alloc; a > 2<<20 {
					t.Errorf("client allocated %d bytes for a hostile response", a)
				}
			}
		})
	}

	// Responses for unknown ids are dropped; the real one still arrives.
	addr := hostileServer(t, func(req frame) [][]byte {
		return [][]byte{
			mustFrame(t, frame{kind: kindResponse, id: req.id + 1000, body: []byte("stray")}),
			mustFrame(t, frame{kind: kindError, id: req.id + 2000, code: 1, msg: "stray"}),
			mustFrame(t, frame{kind: kindResponse, id: req.id, body: []byte("mine")}),
		}
	})
	c := newClient(t, ClientOptions{})
	if out, err := c.Call(bg, addr, 1, nil); err != nil || string(out) != "mine" {
		t.Fatalf("stray responses: %q, %v", out, err)
	}
}

// A peer that accepts requests and never answers: calls that time out with
// nothing received close the connection (so the next call redials), calls
// that are cancelled or time out quickly do not.
func TestSilentPeer(t *testing.T) {
	checkLeaks(t)
	addr := hostileServer(t, func(req frame) [][]byte { return nil })
	c := newClient(t, ClientOptions{ConnsPerPeer: 1, SilenceTimeout: 60 * time.Millisecond, Logger: quiet})
	callWith := func(ctx context.Context, cancel context.CancelFunc, want error) {
		t.Helper()
		defer cancel()
		if _, err := c.Call(ctx, addr, 1, nil); !errors.Is(err, want) {
			t.Fatalf("got %v, want %v", err, want)
		}
	}
	ctx, cancel := context.WithCancel(bg)
	time.AfterFunc(100*time.Millisecond, cancel)
	callWith(ctx, cancel, context.Canceled)
	ctx, cancel = context.WithTimeout(bg, 10*time.Millisecond)
	callWith(ctx, cancel, context.DeadlineExceeded)
	if st := c.Stats(); st.Conns != 1 || st.Dials != 1 {
		t.Fatalf("after a short timeout and a cancel: %+v, want the connection kept", st)
	}
	ctx, cancel = context.WithTimeout(bg, 100*time.Millisecond)
	callWith(ctx, cancel, context.DeadlineExceeded)
	if st := c.Stats(); st.Conns != 0 {
		t.Fatalf("after a silent timeout: %+v, want the connection closed", st)
	}
	ctx, cancel = context.WithTimeout(bg, 10*time.Millisecond)
	callWith(ctx, cancel, context.DeadlineExceeded)
	if st := c.Stats(); st.Dials != 2 {
		t.Fatalf("%d dials, want a redial", st.Dials)
	}
}
