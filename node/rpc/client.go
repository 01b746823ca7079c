package rpc

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Dialer opens a connection to addr, honoring ctx. The connection may be of
// any type (TLS, in-memory pipes in tests).
type Dialer func(ctx context.Context, addr string) (net.Conn, error)

// ClientOptions configure a Client. Zero values mean the defaults.
type ClientOptions struct {
	// Dialer opens connections. Default: TCP with a net.Dialer.
	Dialer Dialer
	// Logger receives connection errors. Default: slog.Default().
	Logger *slog.Logger
	// MaxFrame limits the length of frames sent and received. Default 64 MiB.
	MaxFrame int
	// ConnsPerPeer is how many long-lived connections per address calls
	// are spread over. Default 2.
	ConnsPerPeer int
	// DialBackoff: after a failed dial to an address, calls to it fail fast
	// with an error wrapping ErrBackoff for this long, so that a dead peer
	// does not cost every call a dial timeout. A dial that runs out of the
	// caller's deadline counts as failed (a silent peer); one cut short by
	// the caller's cancellation does not. Meanwhile calls use any other
	// live connection to the address. Default 100 ms.
	DialBackoff time.Duration
	// WriteTimeout closes a connection whose writes make no progress for
	// this long. Default 10 s.
	WriteTimeout time.Duration
	// SilenceTimeout detects dead peers on open connections (a blackholed
	// host keeps a TCP connection open for minutes): when a call's
	// deadline expires at least this long after it was sent and its
	// connection has received nothing since, the connection is closed,
	// failing its other calls with ErrConnection, and the next call
	// redials (then backs off if the dial fails too). Cancelled calls never
	// close a connection. Default 1 s.
	SilenceTimeout time.Duration
	// TLS, if set, makes every connection TLS, over whatever Dialer
	// returns: it is called for each dial with the address dialed and
	// returns the configuration to handshake with (a nil one: plain TCP).
	// A configuration without ServerName gets the address's host. A failed
	// handshake is a failed dial (with its backoff). Default nil: plain
	// TCP.
	TLS func(addr string) *tls.Config
	// HandshakeTimeout bounds a TLS handshake (within the caller's
	// deadline). Default 10 s.
	HandshakeTimeout time.Duration
}

func (o ClientOptions) withDefaults() ClientOptions {
	if o.Dialer == nil {
		var d net.Dialer
		o.Dialer = func(ctx context.Context, addr string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", addr)
		}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxFrame <= 0 {
		o.MaxFrame = DefaultMaxFrame
	}
	o.MaxFrame = min(o.MaxFrame, 1<<32-1)
	if o.ConnsPerPeer <= 0 {
		o.ConnsPerPeer = 2
	}
	if o.DialBackoff <= 0 {
		o.DialBackoff = 100 * time.Millisecond
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = defaultWriteTimeout
	}
	if o.SilenceTimeout <= 0 {
		o.SilenceTimeout = time.Second
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = defaultHandshakeTimeout
	}
	return o
}

// Client makes calls to any number of peers. It is safe for concurrent use.
type Client struct {
	o      ClientOptions
	ctx    context.Context // cancelled by Close: aborts dials in progress
	cancel context.CancelFunc
	nextID atomic.Uint64
	closed atomic.Bool // set under mu
	mu     struct {
		sync.Mutex
		peers map[string]*peer
	}
	wg sync.WaitGroup // connection readers and writers
	st counters
}

// peer holds the connections to one address.
type peer struct {
	addr string
	rr   atomic.Uint32 // round robin over slots
	mu   struct {
		sync.Mutex
		slots        []slot
		backoffUntil time.Time
		dialErr      error
	}
}

type slot struct {
	conn    *clientConn
	dialing chan struct{} // non-nil while a dial is in progress; closed after
}

// NewClient returns a client; it dials lazily, on the first call to each
// address.
func NewClient(o ClientOptions) *Client {
	c := &Client{o: o.withDefaults()}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.mu.peers = make(map[string]*peer)
	return c
}

// Stats returns a snapshot of the client's counters.
func (c *Client) Stats() Stats { return c.st.snapshot() }

// Call sends a request to addr and waits for its response. Many calls may be
// in flight on one connection. A ctx without a deadline gets DefaultTimeout;
// when ctx ends first, Call returns at once with an error wrapping ctx.Err()
// and the late response is discarded. An error from the remote handler is
// returned as a *RemoteError; failures to reach the peer wrap ErrConnection
// (and ErrBackoff when the call failed fast after a failed dial). Call does
// not retain body after it returns.
func (c *Client) Call(ctx context.Context, addr string, method uint16, body []byte) ([]byte, error) {
	c.st.calls.Add(1)
	out, err := c.call(ctx, addr, method, body)
	if err != nil {
		c.st.errors.Add(1)
		if re, ok := err.(*RemoteError); ok {
			return nil, re
		}
		return nil, fmt.Errorf("rpc: call %d to %s: %w", method, addr, err)
	}
	return out, nil
}

// errSilent marks a connection closed by SilenceTimeout.
var errSilent = errors.New("peer silent")

type result struct {
	body []byte
	err  error
}

func (c *Client) call(ctx context.Context, addr string, method uint16, body []byte) ([]byte, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultTimeout)
		defer cancel()
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if n := requestHeader + len(body); n > c.o.MaxFrame {
		return nil, fmt.Errorf("%w: request of %d bytes, limit %d", ErrFrameTooLarge, n, c.o.MaxFrame)
	}
	cc, err := c.conn(ctx, addr)
	if err != nil {
		return nil, err
	}
	id := c.nextID.Add(1)
	done := make(chan result, 1)
	if err := cc.register(id, done); err != nil {
		return nil, err
	}
	sentAt := time.Now()
	recv := cc.recv.Load()
	f := frame{kind: kindRequest, id: id, method: method, timeout: msUntil(deadline(ctx).Sub(sentAt)), body: body}
	// The frame is a copy of body: the writer may still hold it after a
	// cancelled call has returned.
	buf, err := appendFrame(make([]byte, 0, lenSize+requestHeader+len(body)), &f, c.o.MaxFrame)
	if err != nil {
		cc.unregister(id)
		return nil, err
	}
	select {
	case cc.q <- outFrame{hdr: buf}:
	case <-cc.done: // the connection failed: done already holds the error
	case <-ctx.Done():
		cc.unregister(id)
		return nil, ctx.Err()
	}
	select {
	case r := <-done:
		return r.body, r.err
	case <-ctx.Done():
		cc.unregister(id)
		if ctx.Err() == context.DeadlineExceeded && cc.alive() {
			if silent := time.Since(sentAt); silent >= c.o.SilenceTimeout && cc.recv.Load() == recv {
				cc.fail(fmt.Errorf("%w: %w: nothing received from %s in %v", ErrConnection, errSilent, addr, silent.Round(time.Millisecond)))
			}
		}
		return nil, ctx.Err()
	}
}

func (c *Client) peer(addr string) (*peer, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed.Load() {
		return nil, ErrClosed
	}
	p := c.mu.peers[addr]
	if p == nil {
		p = &peer{addr: addr}
		p.mu.slots = make([]slot, c.o.ConnsPerPeer)
		c.mu.peers[addr] = p
	}
	return p, nil
}

// conn returns a live connection to addr, dialing if needed.
func (c *Client) conn(ctx context.Context, addr string) (*clientConn, error) {
	p, err := c.peer(addr)
	if err != nil {
		return nil, err
	}
	i := int(p.rr.Add(1) % uint32(c.o.ConnsPerPeer))
	for {
		p.mu.Lock()
		if cc := p.mu.slots[i].conn; cc != nil && cc.alive() {
			p.mu.Unlock()
			return cc, nil
		}
		// Slot i needs a connection. While it is being dialed, or the
		// address is in backoff, another live connection will do.
		wait := p.mu.slots[i].dialing
		left := time.Until(p.mu.backoffUntil)
		if wait != nil || left > 0 {
			for _, s := range p.mu.slots {
				if s.conn != nil && s.conn.alive() {
					p.mu.Unlock()
					return s.conn, nil
				}
			}
		}
		if wait != nil {
			p.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if left > 0 {
			err := p.mu.dialErr
			p.mu.Unlock()
			return nil, fmt.Errorf("%w: %w: %w (%v left; last dial error: %v)", ErrConnection, ErrNotSent, ErrBackoff, left.Round(time.Millisecond), err)
		}
		wait = make(chan struct{})
		p.mu.slots[i].dialing = wait
		p.mu.Unlock()

		conn, err := c.dial(ctx, addr)

		p.mu.Lock()
		p.mu.slots[i].dialing = nil
		close(wait)
		if err != nil {
			// A dial cut short by the caller's cancellation or by Close says
			// nothing about the peer; anything else (deadline included:
			// a silent peer) starts the backoff.
			if !errors.Is(ctx.Err(), context.Canceled) && !c.closed.Load() {
				p.mu.backoffUntil = time.Now().Add(c.o.DialBackoff)
				p.mu.dialErr = err
			}
			p.mu.Unlock()
			if c.closed.Load() {
				return nil, ErrClosed
			}
			if ctx.Err() != nil || (isTimeout(err) && !time.Now().Before(deadline(ctx))) {
				// The dial ran out of the caller's time; the dialer may say
				// so in its own words before ctx notices.
				return nil, fmt.Errorf("%w: %w: dial: %w", ErrConnection, ErrNotSent, cmp.Or(ctx.Err(), context.DeadlineExceeded))
			}
			return nil, fmt.Errorf("%w: %w: dial: %w", ErrConnection, ErrNotSent, err)
		}
		p.mu.backoffUntil = time.Time{}
		p.mu.dialErr = nil
		// Registering under p.mu after checking closed: Close sets closed
		// before it collects connections under p.mu, so it either sees
		// this one or this sees closed.
		if c.closed.Load() {
			p.mu.Unlock()
			conn.Close()
			return nil, ErrClosed
		}
		cc := c.start(conn, addr)
		p.mu.slots[i].conn = cc
		p.mu.Unlock()
		return cc, nil
	}
}

// deadline is ctx's deadline; calls always have one.
func deadline(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}

func (c *Client) dial(ctx context.Context, addr string) (net.Conn, error) {
	c.st.dials.Add(1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(c.ctx, cancel)
	defer stop()
	conn, err := c.o.Dialer(ctx, addr)
	if err == nil && conn == nil {
		err = errors.New("dialer returned no connection")
	}
	if err == nil && c.o.TLS != nil {
		if cfg := c.o.TLS(addr); cfg != nil {
			conn, err = c.handshake(ctx, conn, addr, cfg)
		}
	}
	if err != nil {
		c.st.dialFailures.Add(1)
		return nil, err
	}
	return conn, nil
}

// handshake runs the client side of a TLS handshake on conn (closed if it
// fails).
func (c *Client) handshake(ctx context.Context, conn net.Conn, addr string, cfg *tls.Config) (net.Conn, error) {
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr
		}
		cfg = cfg.Clone()
		cfg.ServerName = host
	}
	tc := tls.Client(conn, cfg)
	ctx, cancel := context.WithTimeout(ctx, c.o.HandshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		c.st.handshakeFailures.Add(1)
		return nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
	}
	return tc, nil
}

// clientConn is one connection to a peer with its calls in flight.
type clientConn struct {
	c    *Client
	addr string
	conn net.Conn
	q    chan outFrame
	done chan struct{} // closed when the connection fails
	once sync.Once
	// recv counts the frames received.
	recv atomic.Uint64
	mu   struct {
		sync.Mutex
		pending map[uint64]chan<- result // nil once failed
	}
}

// start wraps conn and starts its reader and writer.
func (c *Client) start(conn net.Conn, addr string) *clientConn {
	cc := &clientConn{c: c, addr: addr, conn: conn, q: make(chan outFrame, queueLen), done: make(chan struct{})}
	cc.mu.pending = make(map[uint64]chan<- result)
	c.st.conns.Add(1)
	c.wg.Add(2)
	go func() {
		defer c.wg.Done()
		cc.readLoop()
	}()
	go func() {
		defer c.wg.Done()
		if err := writeLoop(conn, cc.q, cc.done, c.o.WriteTimeout, &c.st); err != nil {
			cc.fail(fmt.Errorf("%w: write: %w", ErrConnection, err))
		}
	}()
	return cc
}

func (cc *clientConn) alive() bool {
	select {
	case <-cc.done:
		return false
	default:
		return true
	}
}

func (cc *clientConn) register(id uint64, ch chan<- result) error {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.mu.pending == nil {
		return fmt.Errorf("%w: connection to %s closed", ErrConnection, cc.addr)
	}
	cc.mu.pending[id] = ch
	return nil
}

func (cc *clientConn) unregister(id uint64) {
	cc.mu.Lock()
	delete(cc.mu.pending, id)
	cc.mu.Unlock()
}

// deliver hands r to the call waiting for id; a response to a call that
// has given up is discarded.
func (cc *clientConn) deliver(id uint64, r result) {
	cc.mu.Lock()
	ch := cc.mu.pending[id]
	delete(cc.mu.pending, id)
	cc.mu.Unlock()
	if ch != nil {
		ch <- r // buffered, and each call is delivered at most once
	}
}

// fail closes the connection and fails every call pending on it with err.
func (cc *clientConn) fail(err error) {
	cc.once.Do(func() {
		cc.mu.Lock()
		pending := cc.mu.pending
		cc.mu.pending = nil
		cc.mu.Unlock()
		close(cc.done)
		cc.conn.Close()
		cc.c.st.conns.Add(-1)
		for _, ch := range pending {
			ch <- result{err: err}
		}
		switch {
		case errors.Is(err, ErrClosed):
		case errors.Is(err, ErrProtocol) || errors.Is(err, ErrFrameTooLarge):
			cc.c.st.protocolErrors.Add(1)
			cc.c.o.Logger.Error("rpc: closing connection after a bad frame", "peer", cc.addr, "err", err)
		case errors.Is(err, errSilent):
			cc.c.o.Logger.Warn("rpc: closing a silent connection", "peer", cc.addr, "err", err, "pending", len(pending))
		default:
			cc.c.o.Logger.Debug("rpc: connection closed", "peer", cc.addr, "err", err, "pending", len(pending))
		}
	})
}

func (cc *clientConn) readLoop() {
	fr := frameReader{r: bufio.NewReaderSize(cc.conn, readBufferSize), max: cc.c.o.MaxFrame}
	for {
		f, n, err := fr.read()
		if err != nil {
			if err == io.EOF {
				err = fmt.Errorf("closed by peer: %w", err)
			}
			cc.fail(fmt.Errorf("%w: read: %w", ErrConnection, err))
			return
		}
		cc.recv.Add(1)
		cc.c.st.framesRecv.Add(1)
		cc.c.st.bytesRecv.Add(uint64(n))
		switch f.kind {
		case kindResponse:
			cc.deliver(f.id, result{body: f.body})
		case kindError:
			cc.deliver(f.id, result{err: &RemoteError{Code: int(f.code), Msg: f.msg}})
		default:
			cc.fail(fmt.Errorf("%w: %w: request frame from a server", ErrConnection, ErrProtocol))
			return
		}
	}
}

// Close closes every connection, fails the calls in flight with ErrClosed,
// and waits for the goroutines the client started. Later calls fail with
// ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed.Store(true)
	peers := c.mu.peers
	c.mu.peers = map[string]*peer{}
	c.mu.Unlock()
	c.cancel()
	var conns []*clientConn
	for _, p := range peers {
		p.mu.Lock()
		for _, s := range p.mu.slots {
			if s.conn != nil {
				conns = append(conns, s.conn)
			}
		}
		p.mu.Unlock()
	}
	for _, cc := range conns {
		cc.fail(ErrClosed)
	}
	c.wg.Wait()
	return nil
}
