package node

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// FaultNetwork is an in-memory network for in-process clusters: memberlist
// packets and streams and peer-RPC connections between hosts, with
// directional cuts (which also close open streams between the pair), seeded
// packet drops and delays. Nothing touches a real socket, so tests can
// partition and heal clusters without root, in seconds.
//
// A host is the IP part of an address; a node's gossip and RPC addresses
// share one host, so cutting a host cuts both. Use loopback-range addresses
// such as 127.0.1.1:7946 (HostAddr builds them).
//
// It lives in a non-test file so benchmarks can use it too.
type FaultNetwork struct {
	mu struct {
		sync.Mutex
		rng        *rand.Rand
		transports map[string]*faultTransport // by gossip address
		listeners  map[string]*faultListener  // by RPC address
		cut        map[[2]string]bool         // from host → to host
		conns      map[*faultConn]struct{}
		drop       float64
		delay      time.Duration
		silent     bool
	}
	packets, dropped atomic.Uint64
	bytes            atomic.Uint64
}

var _ Network = (*FaultNetwork)(nil)

// NewFaultNetwork returns an empty network; seed drives drops and delays.
func NewFaultNetwork(seed uint64) *FaultNetwork {
	f := &FaultNetwork{}
	f.mu.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	f.mu.transports = make(map[string]*faultTransport)
	f.mu.listeners = make(map[string]*faultListener)
	f.mu.cut = make(map[[2]string]bool)
	f.mu.conns = make(map[*faultConn]struct{})
	return f
}

// HostAddr returns the address of host i (1-based) at port: 127.0.x.y.
func HostAddr(i, port int) string {
	return net.JoinHostPort(fmt.Sprintf("127.0.%d.%d", 1+i/250, i%250), strconv.Itoa(port))
}

func hostOf(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return h
}

// Cut blocks traffic from host a to host b (one direction) and closes open
// streams between them.
func (f *FaultNetwork) Cut(a, b string) {
	f.mu.Lock()
	f.mu.cut[[2]string{hostOf(a), hostOf(b)}] = true
	conns := f.connsBetweenLocked(hostOf(a), hostOf(b))
	f.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// Partition cuts every pair of hosts that are in different groups, both
// directions. Hosts in no group are unaffected.
func (f *FaultNetwork) Partition(groups ...[]string) {
	for i, g := range groups {
		for j, h := range groups {
			if i == j {
				continue
			}
			for _, a := range g {
				for _, b := range h {
					f.Cut(a, b)
				}
			}
		}
	}
}

// Isolate cuts host from every other host it has seen, both directions.
func (f *FaultNetwork) Isolate(host string) {
	f.mu.Lock()
	var others []string
	for addr := range f.mu.transports {
		if hostOf(addr) != hostOf(host) {
			others = append(others, addr)
		}
	}
	f.mu.Unlock()
	for _, o := range others {
		f.Cut(host, o)
		f.Cut(o, host)
	}
}

// Heal removes every cut.
func (f *FaultNetwork) Heal() {
	f.mu.Lock()
	clear(f.mu.cut)
	f.mu.Unlock()
}

// SetDrop sets the probability that a gossip packet is lost.
func (f *FaultNetwork) SetDrop(p float64) { f.mu.Lock(); f.mu.drop = p; f.mu.Unlock() }

// SetDelay delays every gossip packet by up to d (uniformly).
func (f *FaultNetwork) SetDelay(d time.Duration) { f.mu.Lock(); f.mu.delay = d; f.mu.Unlock() }

// SetSilent makes dials across a cut hang until their timeout (a cut cable)
// instead of failing at once (a blackhole route on the sender).
func (f *FaultNetwork) SetSilent(s bool) { f.mu.Lock(); f.mu.silent = s; f.mu.Unlock() }

// Stats returns the packets sent, packets dropped, and bytes written on
// streams and RPC connections.
func (f *FaultNetwork) Stats() (packets, dropped, streamBytes uint64) {
	return f.packets.Load(), f.dropped.Load(), f.bytes.Load()
}

func (f *FaultNetwork) cutLocked(from, to string) bool {
	return f.mu.cut[[2]string{hostOf(from), hostOf(to)}]
}

func (f *FaultNetwork) connsBetweenLocked(a, b string) []*faultConn {
	var out []*faultConn
	for c := range f.mu.conns {
		la, ra := hostOf(c.local.String()), hostOf(c.remote.String())
		if (la == a && ra == b) || (la == b && ra == a) {
			out = append(out, c)
		}
	}
	return out
}

var errUnreachable = errors.New("faultnet: host unreachable")

// dial makes a connected pair from local to remote and hands the far end to
// deliver. Across a cut it fails at once, or after timeout when silent.
func (f *FaultNetwork) dial(ctx context.Context, local, remote string, timeout time.Duration, deliver func(net.Conn) error) (net.Conn, error) {
	f.mu.Lock()
	cut, silent := f.cutLocked(local, remote), f.mu.silent
	f.mu.Unlock()
	if cut {
		if silent {
			t := time.NewTimer(timeout)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
			}
			return nil, fmt.Errorf("dial %s: i/o timeout: %w", remote, errUnreachable)
		}
		return nil, fmt.Errorf("dial %s: %w", remote, errUnreachable)
	}
	a, b := net.Pipe()
	la, ra := tcpAddr(local), tcpAddr(remote)
	ca := &faultConn{Conn: a, f: f, local: la, remote: ra}
	cb := &faultConn{Conn: b, f: f, local: ra, remote: la}
	f.mu.Lock()
	f.mu.conns[ca] = struct{}{}
	f.mu.conns[cb] = struct{}{}
	f.mu.Unlock()
	if err := deliver(cb); err != nil {
		ca.Close()
		cb.Close()
		return nil, err
	}
	return ca, nil
}

func tcpAddr(addr string) net.Addr {
	h, p, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(p)
	return &net.TCPAddr{IP: net.ParseIP(h), Port: port}
}

// faultConn is one end of an in-memory connection; Close removes it from the
// network's table. Writes across a cut fail (and close the connection).
type faultConn struct {
	net.Conn
	f             *FaultNetwork
	local, remote net.Addr
	once          sync.Once
}

func (c *faultConn) LocalAddr() net.Addr  { return c.local }
func (c *faultConn) RemoteAddr() net.Addr { return c.remote }

func (c *faultConn) Write(b []byte) (int, error) {
	c.f.mu.Lock()
	cut := c.f.cutLocked(c.local.String(), c.remote.String())
	c.f.mu.Unlock()
	if cut {
		c.Close()
		return 0, fmt.Errorf("write to %s: %w", c.remote, errUnreachable)
	}
	n, err := c.Conn.Write(b)
	c.f.bytes.Add(uint64(n))
	return n, err
}

func (c *faultConn) Close() error {
	c.once.Do(func() {
		c.f.mu.Lock()
		delete(c.f.mu.conns, c)
		c.f.mu.Unlock()
	})
	return c.Conn.Close()
}

// Transport implements Network: memberlist's transport for a gossip address.
func (f *FaultNetwork) Transport(addr string) (memberlist.NodeAwareTransport, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t, ok := f.mu.transports[addr]; ok && !t.closed.Load() {
		return nil, fmt.Errorf("faultnet: %s already in use", addr)
	}
	t := &faultTransport{
		f:       f,
		addr:    addr,
		packets: make(chan *memberlist.Packet, 1024),
		streams: make(chan net.Conn, 64),
		done:    make(chan struct{}),
	}
	f.mu.transports[addr] = t
	return t, nil
}

// Listen implements Network: an in-memory listener for peer RPC.
func (f *FaultNetwork) Listen(addr string) (net.Listener, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if l, ok := f.mu.listeners[addr]; ok && !l.closed.Load() {
		return nil, fmt.Errorf("faultnet: listen %s: address in use", addr)
	}
	l := &faultListener{f: f, addr: tcpAddr(addr), conns: make(chan net.Conn, 64), done: make(chan struct{})}
	f.mu.listeners[addr] = l
	return l, nil
}

// Dial implements Network: connect from the node whose RPC address is local
// to the RPC address addr.
func (f *FaultNetwork) Dial(ctx context.Context, local, addr string) (net.Conn, error) {
	timeout := 2 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	return f.dial(ctx, local, addr, timeout, func(c net.Conn) error {
		f.mu.Lock()
		l, ok := f.mu.listeners[addr]
		f.mu.Unlock()
		if !ok || l.closed.Load() {
			return fmt.Errorf("dial %s: connection refused", addr)
		}
		select {
		case l.conns <- c:
			return nil
		case <-l.done:
			return fmt.Errorf("dial %s: connection refused", addr)
		case <-ctx.Done():
			return ctx.Err()
		}
	})
}

type faultListener struct {
	f      *FaultNetwork
	addr   net.Addr
	conns  chan net.Conn
	done   chan struct{}
	closed atomic.Bool
	once   sync.Once
}

func (l *faultListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *faultListener) Close() error {
	l.once.Do(func() {
		l.closed.Store(true)
		close(l.done)
	})
	return nil
}

func (l *faultListener) Addr() net.Addr { return l.addr }

// faultTransport is memberlist's transport on a FaultNetwork. Sends never
// block: a full receive queue drops the packet, as a busy UDP socket would.
type faultTransport struct {
	f       *FaultNetwork
	addr    string
	packets chan *memberlist.Packet
	streams chan net.Conn
	done    chan struct{}
	closed  atomic.Bool
	once    sync.Once
}

var _ memberlist.NodeAwareTransport = (*faultTransport)(nil)

func (t *faultTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	h, p, err := splitHostPort(t.addr)
	if err != nil {
		return nil, 0, err
	}
	return net.ParseIP(h), p, nil
}

func (t *faultTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (t *faultTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	now := time.Now()
	f := t.f
	f.packets.Add(1)
	f.mu.Lock()
	dst, ok := f.mu.transports[a.Addr]
	lost := !ok || f.cutLocked(t.addr, a.Addr) || (f.mu.drop > 0 && f.mu.rng.Float64() < f.mu.drop)
	var delay time.Duration
	if f.mu.delay > 0 {
		delay = time.Duration(f.mu.rng.Int64N(int64(f.mu.delay)))
	}
	f.mu.Unlock()
	if lost || dst.closed.Load() {
		f.dropped.Add(1)
		return now, nil
	}
	p := &memberlist.Packet{Buf: append([]byte(nil), b...), From: &net.UDPAddr{IP: net.ParseIP(hostOf(t.addr)), Port: portOf(t.addr)}, Timestamp: now}
	send := func() {
		select {
		case dst.packets <- p:
		case <-dst.done:
		default:
			f.dropped.Add(1)
		}
	}
	if delay > 0 {
		time.AfterFunc(delay, send)
	} else {
		send()
	}
	return now, nil
}

func portOf(addr string) int {
	_, p, _ := splitHostPort(addr)
	return p
}

func (t *faultTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }

func (t *faultTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *faultTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return t.f.dial(ctx, t.addr, a.Addr, timeout, func(c net.Conn) error {
		t.f.mu.Lock()
		dst, ok := t.f.mu.transports[a.Addr]
		t.f.mu.Unlock()
		if !ok || dst.closed.Load() {
			return fmt.Errorf("dial %s: connection refused", a.Addr)
		}
		select {
		case dst.streams <- c:
			return nil
		case <-dst.done:
			return fmt.Errorf("dial %s: connection refused", a.Addr)
		case <-ctx.Done():
			return ctx.Err()
		}
	})
}

func (t *faultTransport) StreamCh() <-chan net.Conn { return t.streams }

func (t *faultTransport) Shutdown() error {
	t.once.Do(func() {
		t.closed.Store(true)
		close(t.done)
	})
	return nil
}
