package rpc

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// ServerOptions configure a Server. Zero values mean the defaults.
type ServerOptions struct {
	// Logger receives connection errors and handler panics.
	// Default: slog.Default().
	Logger *slog.Logger
	// MaxFrame limits the length of frames received and sent. Default 64 MiB.
	MaxFrame int
	// MaxInFlight is how many requests per connection are handled
	// concurrently; beyond that the connection's reader waits
	// (backpressure). Default 512.
	MaxInFlight int
	// IdleTimeout closes a connection that has carried no frame and had no
	// request in flight for this long. Default 5 min.
	IdleTimeout time.Duration
	// WriteTimeout closes a connection whose writes make no progress for
	// this long (a peer that stopped reading). Default 10 s.
	WriteTimeout time.Duration
	// TLS, if set, makes every connection TLS: the server completes a
	// handshake with this configuration (whose ClientAuth decides what
	// clients must present) before it reads any frame, and a connection
	// whose handshake fails is closed having answered nothing but TLS
	// alerts. Default nil: plain TCP.
	TLS *tls.Config
	// HandshakeTimeout bounds a TLS handshake. Default 10 s.
	HandshakeTimeout time.Duration
}

// defaultHandshakeTimeout bounds TLS handshakes unless told otherwise.
const defaultHandshakeTimeout = 10 * time.Second

func (o ServerOptions) withDefaults() ServerOptions {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxFrame <= 0 {
		o.MaxFrame = DefaultMaxFrame
	}
	o.MaxFrame = min(o.MaxFrame, 1<<32-1)
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = 512
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 5 * time.Minute
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = defaultWriteTimeout
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = defaultHandshakeTimeout
	}
	return o
}

// Server serves RPC requests on any number of listeners.
type Server struct {
	h      Handler
	o      ServerOptions
	ctx    context.Context // parent of every handler's context; cancelled by Close
	cancel context.CancelFunc
	done   chan struct{} // closed by Close
	mu     struct {
		sync.Mutex
		closed bool
		lns    map[net.Listener]struct{}
		conns  map[*serverConn]struct{}
	}
	wg sync.WaitGroup // connection readers, writers and handlers
	st counters
}

// NewServer returns a server that passes requests to h.
func NewServer(h Handler, o ServerOptions) *Server {
	s := &Server{h: h, o: o.withDefaults(), done: make(chan struct{})}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.mu.lns = make(map[net.Listener]struct{})
	s.mu.conns = make(map[*serverConn]struct{})
	return s
}

// Stats returns a snapshot of the server's counters.
func (s *Server) Stats() Stats { return s.st.snapshot() }

// Serve accepts connections on ln until Close, then returns nil. Other
// accept errors are retried with a backoff, except a listener closed by
// someone else, which Serve returns. Serve may be called for several
// listeners; called after Close, it closes ln and returns nil.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.mu.lns[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.mu.lns, ln)
		s.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if s.isClosed() {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("rpc: accept: %w", err)
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.o.Logger.Warn("rpc: accept failed; retrying", "addr", ln.Addr(), "err", err, "backoff", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-s.done:
				t.Stop()
				return nil
			}
			continue
		}
		backoff = 0
		s.serveConn(conn)
	}
}

func (s *Server) isClosed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// Close closes the listeners and every connection, cancels the handlers'
// contexts and waits for every goroutine the server started (handlers
// included).
func (s *Server) Close() error {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.mu.closed = true
	close(s.done)
	lns, conns := s.mu.lns, s.mu.conns
	s.mu.lns, s.mu.conns = nil, nil
	s.mu.Unlock()
	s.cancel()
	for ln := range lns {
		ln.Close()
	}
	for sc := range conns {
		sc.close(ErrClosed)
	}
	s.wg.Wait()
	return nil
}

// serverConn is one accepted connection.
type serverConn struct {
	s        *Server
	conn     net.Conn
	from     net.Addr
	ctx      context.Context // cancelled when the connection closes
	cancel   context.CancelFunc
	q        chan outFrame
	done     chan struct{}
	once     sync.Once
	sem      chan struct{} // one token per request in flight
	inFlight atomic.Int32
}

func (s *Server) serveConn(conn net.Conn) {
	if s.o.TLS != nil {
		conn = tls.Server(conn, s.o.TLS)
	}
	sc := &serverConn{
		s:    s,
		conn: conn,
		from: conn.RemoteAddr(),
		q:    make(chan outFrame, queueLen),
		done: make(chan struct{}),
		sem:  make(chan struct{}, s.o.MaxInFlight),
	}
	sc.ctx, sc.cancel = context.WithCancel(s.ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		sc.cancel()
		conn.Close()
		return
	}
	s.mu.conns[sc] = struct{}{}
	s.st.conns.Add(1)
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		if tc, ok := sc.conn.(*tls.Conn); ok && !sc.handshake(tc) {
			return
		}
		sc.readLoop()
	}()
	go func() {
		defer s.wg.Done()
		if err := writeLoop(conn, sc.q, sc.done, s.o.WriteTimeout, &s.st); err != nil {
			sc.close(fmt.Errorf("write: %w", err))
		}
	}()
}

// close closes the connection and cancels its handlers; err says why
// (nil: the peer hung up or went idle).
func (sc *serverConn) close(err error) {
	sc.once.Do(func() {
		s := sc.s
		sc.cancel()
		close(sc.done)
		sc.conn.Close()
		s.st.conns.Add(-1)
		s.mu.Lock()
		delete(s.mu.conns, sc) // no-op after Close
		s.mu.Unlock()
		switch {
		case err == nil, errors.Is(err, ErrClosed):
		case errors.Is(err, ErrProtocol) || errors.Is(err, ErrFrameTooLarge):
			s.st.protocolErrors.Add(1)
			s.o.Logger.Error("rpc: closing connection after a bad frame", "peer", sc.from, "err", err)
		default:
			s.o.Logger.Debug("rpc: connection closed", "peer", sc.from, "err", err)
		}
	})
}

// handshake runs the TLS handshake within HandshakeTimeout and reports
// whether it succeeded; on failure it counts it, closes the connection and
// logs at debug level only (a port scanner or a misconfigured peer must not
// flood the log: Stats.HandshakeFailures is what to watch).
func (sc *serverConn) handshake(tc *tls.Conn) bool {
	s := sc.s
	_ = tc.SetDeadline(time.Now().Add(s.o.HandshakeTimeout))
	if err := tc.HandshakeContext(sc.ctx); err != nil {
		if !s.isClosed() {
			s.st.handshakeFailures.Add(1)
			s.o.Logger.Debug("rpc: TLS handshake failed", "peer", sc.from, "err", err)
		}
		sc.close(nil)
		return false
	}
	_ = tc.SetDeadline(time.Time{}) // the reader and the writer arm their own
	return true
}

func (sc *serverConn) readLoop() {
	s := sc.s
	br := bufio.NewReaderSize(sc.conn, readBufferSize)
	fr := frameReader{r: br, max: s.o.MaxFrame}
	idle := s.o.IdleTimeout
	var armed time.Time
	arm := func() {
		if now := time.Now(); now.Sub(armed) > idle/16 {
			_ = sc.conn.SetReadDeadline(now.Add(idle))
			armed = now
		}
	}
	for {
		// Wait for the next frame without consuming anything, so that an
		// idle timeout can be survived while requests are in flight.
		if br.Buffered() == 0 {
			arm()
		}
		if _, err := br.Peek(1); err != nil {
			if isTimeout(err) && sc.inFlight.Load() > 0 {
				continue
			}
			if isTimeout(err) || err == io.EOF {
				err = nil
			}
			sc.close(err)
			return
		}
		if b, err := br.Peek(lenSize); err != nil || br.Buffered()-lenSize < int(binary.BigEndian.Uint32(b)) {
			arm() // the frame has not arrived in full yet
		}
		f, n, err := fr.read()
		if err != nil {
			sc.close(err)
			return
		}
		s.st.framesRecv.Add(1)
		s.st.bytesRecv.Add(uint64(n))
		if f.kind != kindRequest {
			sc.close(fmt.Errorf("%w: frame kind %d from a client", ErrProtocol, f.kind))
			return
		}
		s.st.calls.Add(1)
		select {
		case sc.sem <- struct{}{}:
		case <-sc.done:
			return
		}
		sc.inFlight.Add(1)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			sc.handle(&f)
		}()
	}
}

// handle runs one request and queues its answer.
func (sc *serverConn) handle(f *frame) {
	s := sc.s
	defer func() {
		sc.inFlight.Add(-1)
		<-sc.sem
	}()
	ctx := sc.ctx
	if f.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(f.timeout)*time.Millisecond)
		defer cancel()
	}
	body, err := s.invoke(ctx, sc.from, f.method, f.body)
	var out outFrame
	if err == nil {
		out.hdr, err = appendHeader(nil, &frame{kind: kindResponse, id: f.id}, len(body), s.o.MaxFrame)
		if err != nil {
			err = &RemoteError{Code: CodeInternal, Msg: fmt.Sprintf("response too large: %v", err)}
		} else {
			out.body = body
		}
	}
	if err != nil {
		s.st.errors.Add(1)
		code, msg := errorCode(err)
		out.hdr, err = appendHeader(nil, &frame{kind: kindError, id: f.id, code: code, msg: msg}, 0, s.o.MaxFrame)
		if err != nil { // only with an absurdly small MaxFrame
			out.hdr, _ = appendHeader(nil, &frame{kind: kindError, id: f.id, code: CodeInternal}, 0, 1<<20)
		}
	}
	if ctx.Err() != nil {
		return // the caller has given up, or the connection is gone
	}
	select {
	case sc.q <- out:
	case <-sc.done:
	}
}

// invoke calls the handler, turning a panic into a 500.
func (s *Server) invoke(ctx context.Context, from net.Addr, method uint16, body []byte) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			s.st.panics.Add(1)
			s.o.Logger.Error("rpc: handler panic", "method", method, "peer", from, "panic", r, "stack", string(debug.Stack()))
			out, err = nil, &RemoteError{Code: CodeInternal, Msg: "internal error: handler panic"}
		}
	}()
	return s.h.ServeRPC(ctx, from, method, body)
}

// errorCode maps a handler error to the code and message sent back.
func errorCode(err error) (uint16, string) {
	code, msg := CodeInternal, err.Error()
	var re *RemoteError
	if errors.As(err, &re) {
		code, msg = re.Code, re.Msg
	}
	if code < 0 || code > 0xFFFF {
		msg = fmt.Sprintf("(code %d) %s", code, msg)
		code = CodeInternal
	}
	msg = strings.ToValidUTF8(msg, "\uFFFD")
	if len(msg) > maxErrorMsg {
		msg = msg[:maxErrorMsg]
		// Do not leave half a UTF-8 sequence at the cut.
		for msg != "" {
			r, size := utf8.DecodeLastRuneInString(msg)
			if r != utf8.RuneError || size > 1 {
				break
			}
			msg = msg[:len(msg)-1]
		}
	}
	return uint16(code), msg
}
