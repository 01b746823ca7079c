package rpc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"time"
)

// Errors returned by this package. Callers use errors.Is.
var (
	// ErrClosed: the Client or Server was closed.
	ErrClosed = errors.New("rpc: closed")
	// ErrConnection wraps every failure to reach a peer or to keep a
	// connection to it: dial errors, broken connections, bad frames.
	ErrConnection = errors.New("rpc: connection failed")
	// ErrBackoff: a recent dial to the address failed, so the call failed
	// fast without dialing. It comes wrapped together with ErrConnection.
	ErrBackoff = errors.New("rpc: peer in dial backoff")
	// ErrNotSent: the call failed before its request could leave (no
	// connection: a failed dial or dial backoff), so the peer certainly
	// did not act on it and it is safe to send elsewhere. Every other
	// failure leaves the outcome unknown.
	ErrNotSent = errors.New("rpc: request not sent")
	// ErrFrameTooLarge: a frame's length exceeds MaxFrame.
	ErrFrameTooLarge = errors.New("rpc: frame too large")
	// ErrProtocol: a frame that does not follow the format in doc.go.
	ErrProtocol = errors.New("rpc: protocol error")
)

const (
	// DefaultTimeout is the deadline given to a call whose context has
	// none: every network call has a deadline.
	DefaultTimeout = 10 * time.Second
	// CodeInternal is the remote error code for handler errors that are not
	// a *RemoteError, and for handler panics.
	CodeInternal = 500

	defaultWriteTimeout = 10 * time.Second
	queueLen            = 128 // outgoing frames buffered per connection
	readBufferSize      = 32 << 10
	writeBufferSize     = 32 << 10
)

// RemoteError is an error returned by the remote handler.
type RemoteError struct {
	Code int
	Msg  string
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("rpc: remote error %d: %s", e.Code, e.Msg)
}

// Handler serves requests. ServeRPC is called concurrently, each request in
// its own goroutine, with a ctx that carries the caller's deadline and is
// cancelled when the connection or the server closes. Server.Close waits for
// running handlers, so they must honor ctx. A returned *RemoteError (also
// wrapped) reaches the caller with its Code and Msg; any other error reaches
// it as Code 500 with the error's text. The returned body is not modified.
type Handler interface {
	ServeRPC(ctx context.Context, from net.Addr, method uint16, body []byte) ([]byte, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, from net.Addr, method uint16, body []byte) ([]byte, error)

// ServeRPC calls f.
func (f HandlerFunc) ServeRPC(ctx context.Context, from net.Addr, method uint16, body []byte) ([]byte, error) {
	return f(ctx, from, method, body)
}

// Stats is a snapshot of a Client's or Server's counters.
type Stats struct {
	FramesSent, FramesReceived uint64
	// Flushes counts writes to connections: FramesSent/Flushes is the
	// average batch.
	Flushes                  uint64
	BytesSent, BytesReceived uint64 // whole frames, length prefix included
	// Calls counts calls made (client) or requests received (server).
	Calls uint64
	// Errors counts calls that returned an error (client) or requests
	// answered with an error frame (server).
	Errors uint64
	// Conns is the number of connections open now.
	Conns int64
	// Dials and DialFailures count the client's dial attempts.
	Dials, DialFailures uint64
	// ProtocolErrors counts connections closed because of a bad frame.
	ProtocolErrors uint64
	// Panics counts recovered handler panics (server).
	Panics uint64
	// HandshakeFailures counts failed TLS handshakes: connections closed
	// before any frame (server; a TLS 1.3 server rejects a client's
	// certificate after the client considers its handshake done, and such
	// a client finds out on its first read), dials that failed in the
	// handshake (client).
	HandshakeFailures uint64
}

type counters struct {
	framesSent, framesRecv atomic.Uint64
	flushes                atomic.Uint64
	bytesSent, bytesRecv   atomic.Uint64
	calls, errors          atomic.Uint64
	conns                  atomic.Int64
	dials, dialFailures    atomic.Uint64
	protocolErrors, panics atomic.Uint64
	handshakeFailures      atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		FramesSent:     c.framesSent.Load(),
		FramesReceived: c.framesRecv.Load(),
		Flushes:        c.flushes.Load(),
		BytesSent:      c.bytesSent.Load(),
		BytesReceived:  c.bytesRecv.Load(),
		Calls:          c.calls.Load(),
		Errors:         c.errors.Load(),
		Conns:          c.conns.Load(),
		Dials:          c.dials.Load(),
		DialFailures:   c.dialFailures.Load(),
		ProtocolErrors: c.protocolErrors.Load(),
		Panics:         c.panics.Load(),

		HandshakeFailures: c.handshakeFailures.Load(),
	}
}

// outFrame is a frame queued for a connection's writer: a header (or a whole
// frame) and an optional body written right after it.
type outFrame struct {
	hdr, body []byte
}

// writeLoop is a connection's writer: it drains q into a buffered writer and
// flushes when q is empty, so many small frames cost one syscall. Each frame
// is written whole before the next. It returns nil when done is closed, or
// the first write error. A write that makes no progress for timeout fails
// (when conn supports write deadlines).
func writeLoop(conn net.Conn, q <-chan outFrame, done <-chan struct{}, timeout time.Duration, st *counters) error {
	bw := bufio.NewWriterSize(conn, writeBufferSize)
	arm := func() {
		_ = conn.SetWriteDeadline(time.Now().Add(timeout)) // unsupported: no deadline
	}
	for {
		var f outFrame
		select {
		case f = <-q:
		case <-done:
			return nil
		}
		arm()
		for n, more := 1, true; more; n++ {
			if n%64 == 0 || len(f.hdr)+len(f.body) > writeBufferSize {
				arm() // a long batch, or a frame written straight to conn
			}
			if _, err := bw.Write(f.hdr); err != nil {
				return err
			}
			if _, err := bw.Write(f.body); err != nil {
				return err
			}
			st.framesSent.Add(1)
			st.bytesSent.Add(uint64(len(f.hdr) + len(f.body)))
			select {
			case f = <-q:
				continue
			default:
			}
			// The queue is empty. Let the goroutines that are about to
			// queue a frame run once before paying for a syscall: under
			// load this turns many small writes into one.
			runtime.Gosched()
			select {
			case f = <-q:
			default:
				more = false
			}
		}
		st.flushes.Add(1)
		arm()
		if err := bw.Flush(); err != nil {
			return err
		}
	}
}

// isTimeout reports whether err is a deadline expiring on a connection.
func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// msUntil is the time left, in whole milliseconds rounded up, at least 1
// and at most MaxUint32.
func msUntil(left time.Duration) uint32 {
	if left <= time.Millisecond {
		return 1
	}
	ms := (left + time.Millisecond - 1) / time.Millisecond
	if ms > 1<<32-1 {
		return 1<<32 - 1
	}
	return uint32(ms)
}
