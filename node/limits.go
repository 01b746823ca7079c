package node

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Limits of the client HTTP API against hostile or broken clients. The
// knobs are Config's HTTP* and Max* fields; this file holds the pieces.
//
// Slow clients: headers must arrive within HTTPReadHeaderTimeout (a client
// that sends them byte by byte is cut then). A request body (only PUT and
// POST of /v1/kv/ read one) must arrive within HTTPBodyTimeout plus one
// second per HTTPMinBodyRate bytes received so far, and must not stall for
// HTTPBodyTimeout: the read deadline moves forward as bytes come in, so a
// large value on a slow but steady link gets the time it needs, while a
// stalled or trickling body is cut (408) — Apache's mod_reqtimeout
// ("body=10,MinRate=16384") plus nginx's client_body_timeout between reads.
// A fixed http.Server.ReadTimeout could not do both: long enough for 4 MiB
// on a slow link is long enough to hold thousands of idle connections. Any
// other request that comes with a body is answered with "Connection:
// close", so the server never reads a body nobody is timing.
//
// Floods: at most MaxClientConns connections are open; past that a new
// connection is answered 503 and closed at once (refusing, not queueing: a
// queued connection waits in the kernel with no timeout of ours and its
// client cannot tell it from a dead node). At most 256 refusals are being
// answered at once; past that a connection is closed unanswered (always,
// with HTTPS: a plain 503 is not TLS, and a TLS handshake is the cost a
// flood must not impose). At most
// MaxInFlightRequests requests are being served (503 {"error":"overloaded"}
// with Retry-After past that; /v1/health and /metrics are exempt so probes
// and scrapes see the node), and request bodies held in memory total at most
// MaxBodyBytesInFlight (503 past that).

// httpLimits is the client API's shared limit state.
type httpLimits struct {
	ln       *limitListener
	inflight chan struct{} // one token per request being served
	bodies   byteBudget    // request body bytes held
	// overloaded counts requests answered 503 for the in-flight or body
	// limits; ln.refused counts connections refused.
	overloaded atomic.Uint64
}

// maxHeaderBytes bounds a request's headers (with the request line, so
// also the key in the URL): past it net/http answers 431.
const maxHeaderBytes = 64 << 10

// newHTTPServer builds the client API server on n.httpLn, which it wraps
// in the connection cap. There is no http.Server.ReadTimeout: headers are
// bounded by ReadHeaderTimeout, bodies per request (bodyReader), and no
// other body is ever read (see the comment at the top of this file).
func (n *Node) newHTTPServer() *http.Server {
	c := &n.cfg
	n.httpLim.ln = newLimitListener(n.httpLn, c.MaxClientConns)
	n.httpLim.ln.tls = n.tls != nil
	n.httpLn = n.httpLim.ln
	n.httpLim.inflight = make(chan struct{}, c.MaxInFlightRequests)
	n.httpLim.bodies.max = c.MaxBodyBytesInFlight
	srv := &http.Server{
		Handler:           n.httpHandler(),
		ReadHeaderTimeout: c.HTTPReadHeaderTimeout,
		WriteTimeout:      c.HTTPWriteTimeout,
		IdleTimeout:       c.HTTPIdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          n.httpErrorLog(),
	}
	if n.tls != nil {
		// HTTPS. net/http bounds the handshake by ReadHeaderTimeout. No
		// HTTP/2: an empty TLSNextProto keeps ServeTLS from adding it.
		srv.TLSConfig = n.tls.httpConfig()
		srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	}
	return srv
}

// limitListener caps the connections a listener hands out. One past the
// cap is answered 503 and closed.
type limitListener struct {
	net.Listener
	slots chan struct{}
	// refusing bounds the goroutines answering refused connections; past
	// it a refused connection is closed without an answer.
	refusing chan struct{}
	refused  atomic.Uint64
	// tls: the connections carry TLS, which a plain 503 would not be, so
	// a refused connection is closed without an answer.
	tls bool
}

// At most maxRefusing refused connections are being answered at once, each
// for at most refuseTimeout.
const (
	maxRefusing   = 256
	refuseTimeout = 500 * time.Millisecond
)

func newLimitListener(l net.Listener, n int) *limitListener {
	return &limitListener{Listener: l, slots: make(chan struct{}, n), refusing: make(chan struct{}, maxRefusing)}
}

// refusedResponse is what a connection past the cap reads before the close.
var refusedResponse = func() []byte {
	body := `{"error":"too many connections"}` + "\n"
	return fmt.Appendf(nil, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"+
		"Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}()

// Accept returns the next connection within the cap.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
			return &limitConn{Conn: c, release: func() { <-l.slots }}, nil
		default:
			l.refuse(c)
		}
	}
}

// refuse answers c with a 503 and closes it, in a goroutine of its own.
// It waits for the request to start before answering (an answer that
// arrives before the request is "unsolicited" to net/http's client, which
// drops it), then shuts its write side and drains what the client sends
// until refuseTimeout, so the close does not reset the connection before
// the client has read the answer.
func (l *limitListener) refuse(c net.Conn) {
	l.refused.Add(1)
	if l.tls {
		c.Close()
		return
	}
	select {
	case l.refusing <- struct{}{}:
	default:
		c.Close()
		return
	}
	go func() {
		defer func() { <-l.refusing }()
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(refuseTimeout))
		var buf [512]byte
		_, _ = c.Read(buf[:])
		if _, err := c.Write(refusedResponse); err != nil {
			return
		}
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
	}()
}

// limitConn gives its slot back on the first Close.
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// byteBudget bounds bytes held at once (request bodies). take never waits.
type byteBudget struct {
	max  int64
	used atomic.Int64
}

func (b *byteBudget) take(n int64) bool {
	for {
		u := b.used.Load()
		if u+n > b.max {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

func (b *byteBudget) give(n int64) { b.used.Add(-n) }

// Errors reading a request body; handleWrite maps them to statuses.
var (
	errBodyTooLarge = errors.New("value too large")
	errBodyBudget   = errors.New("overloaded: too many request bytes in flight")
	errBodyTooSlow  = errors.New("request body too slow")
)

// bodyReader reads a request body under a read deadline that moves
// forward as bytes arrive: base after the last byte, but no later than
// base plus one second per minRate bytes received since start (see the
// comment at the top).
type bodyReader struct {
	r       io.Reader
	rc      *http.ResponseController
	start   time.Time
	base    time.Duration
	minRate int64
	n       int64
}

func (b *bodyReader) deadline() time.Time {
	d := b.start.Add(b.base + time.Duration(b.n*int64(time.Second)/b.minRate))
	if idle := time.Now().Add(b.base); idle.Before(d) {
		return idle
	}
	return d
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if n > 0 {
		b.n += int64(n)
		_ = b.rc.SetReadDeadline(b.deadline())
	}
	return n, err
}

// readBody reads a request body of at most limit bytes into memory taken
// from budget. size is the Content-Length (-1 if unknown, chunked). The
// buffer starts small and doubles as bytes arrive, each growth taken from
// the budget first: a client must send bytes to make the node hold them
// (announcing a large Content-Length takes nothing), and the memory held is
// at most twice what arrived. The caller gives back the returned
// reservation when done with the body.
func readBody(r io.Reader, size int64, limit int, budget *byteBudget) (body []byte, reserved int64, err error) {
	if size > int64(limit) {
		return nil, 0, errBodyTooLarge
	}
	end := int64(limit) + 1 // unknown size: one byte past the limit shows it is too large
	if size >= 0 {
		end = size
	}
	defer func() {
		if err != nil {
			budget.give(reserved)
			body, reserved = nil, 0
		}
	}()
	const first = 4 << 10
	for int64(len(body)) < end {
		if len(body) == cap(body) {
			grow := min(max(first, int64(cap(body))), end-int64(cap(body)))
			if !budget.take(grow) {
				return nil, reserved, errBodyBudget
			}
			reserved += grow
			nb := make([]byte, len(body), int64(cap(body))+grow)
			copy(nb, body)
			body = nb
		}
		n, rerr := r.Read(body[len(body):cap(body)])
		body = body[:len(body)+n]
		if rerr == io.EOF {
			if size >= 0 && int64(len(body)) < size {
				return nil, reserved, io.ErrUnexpectedEOF
			}
			break
		}
		if rerr != nil {
			return nil, reserved, rerr
		}
	}
	if len(body) > limit {
		return nil, reserved, errBodyTooLarge
	}
	return body, reserved, nil
}
