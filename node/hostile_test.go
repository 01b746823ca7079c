package node

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/rumorkv/rumor/crdt"
)

// Hostile and broken clients on the client API (issue 5, item 4).

// hostileNode opens a one-node cluster (N=1: writes are applied here) with
// a small key and value limit.
func hostileNode(t *testing.T, tweak func(*Config)) *testNode {
	t.Helper()
	return startCluster(t, 1, func(c *Config) {
		c.N = 1
		c.MaxKeySize = 64
		c.MaxValueSize = 1024
		c.MaxContextEntries = 4
		if tweak != nil {
			tweak(c)
		}
	})[0]
}

// httpDo sends one request with client; body nil means none, and chunked
// hides the body's length so it goes out chunked.
func httpDo(t *testing.T, client *http.Client, method, url string, body []byte, chunked bool, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
		if chunked {
			rd = io.MultiReader(rd)
		}
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read answer: %v", method, url, err)
	}
	return resp, b
}

// checkJSONError fails unless resp is status with a JSON {"error": …}
// containing sub.
func checkJSONError(t *testing.T, what string, resp *http.Response, body []byte, status int, sub string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("%s: status %d, want %d (%s)", what, resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s: Content-Type %q, want JSON (%s)", what, ct, body)
	}
	var e errorBody
	if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
		t.Fatalf("%s: answer is not a JSON error: %q (%v)", what, body, err)
	}
	if !strings.Contains(e.Error, sub) {
		t.Fatalf("%s: error %q does not mention %q", what, e.Error, sub)
	}
}

func contextOf(entries int) string {
	vv := crdt.VV{}
	for i := 1; i <= entries; i++ {
		vv[crdt.ActorID(i)] = uint64(i)
	}
	return crdt.EncodeContext(vv)
}

// rawDial opens a plain TCP connection to the node's client API.
func rawDial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// rawExchange writes req on a new connection and reads one answer.
func rawExchange(t *testing.T, addr, req string) (*http.Response, []byte) {
	t.Helper()
	c := rawDial(t, addr)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	return readHTTPAnswer(t, bufio.NewReader(c))
}

func readHTTPAnswer(t *testing.T, br *bufio.Reader) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// waitClosed reports how long it takes the server to close c (reads until
// EOF or an error other than our own deadline), or fails after limit.
func waitClosed(t *testing.T, c net.Conn, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(limit))
	buf := make([]byte, 4096)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("server kept the connection open for %v", limit)
		}
		return time.Since(start)
	}
}

func TestHostileRequests(t *testing.T) {
	n := hostileNode(t, nil)
	base := "http://" + n.HTTPAddr()
	cl := &http.Client{Timeout: 10 * time.Second}
	long := strings.Repeat("k", 65)
	euros := strings.Repeat("%E2%82%AC", 22) // 66 bytes once unescaped
	cases := []struct {
		name, method, path string
		body               []byte
		chunked            bool
		hdr                map[string]string
		status             int
		sub                string // in the JSON error; "" for a success
	}{
		{"long key PUT", "PUT", "/v1/kv/" + long, []byte("v"), false, nil, 413, "limit"},
		{"long key GET", "GET", "/v1/kv/" + long, nil, false, nil, 413, "limit"},
		{"long key DELETE", "DELETE", "/v1/kv/" + long, nil, false, nil, 413, "limit"},
		{"long escaped key", "PUT", "/v1/kv/" + euros, []byte("v"), false, nil, 413, "limit"},
		{"long key state", "GET", "/v1/state/" + long, nil, false, nil, 404, "no copy"},
		{"empty key", "PUT", "/v1/kv/", []byte("v"), false, nil, 400, "empty key"},
		{"binary key", "PUT", "/v1/kv/%FF%00%01", []byte("v"), false, nil, 200, ""},
		{"value over limit", "PUT", "/v1/kv/a", bytes.Repeat([]byte("v"), 1025), false, nil, 413, "limit"},
		{"chunked value over limit", "PUT", "/v1/kv/a", bytes.Repeat([]byte("v"), 1025), true, nil, 413, "limit"},
		{"chunked value of 64 KiB", "PUT", "/v1/kv/a", bytes.Repeat([]byte("v"), 64<<10), true, nil, 413, "limit"},
		{"value at limit", "PUT", "/v1/kv/a", bytes.Repeat([]byte("v"), 1024), false, nil, 200, ""},
		{"chunked value at limit", "PUT", "/v1/kv/a", bytes.Repeat([]byte("v"), 1024), true, nil, 200, ""},
		{"empty value", "PUT", "/v1/kv/empty", []byte{}, false, nil, 200, ""},
		{"garbage context", "PUT", "/v1/kv/a", []byte("v"), false, map[string]string{ContextHeader: "!!not-a-context!!"}, 400, ContextHeader},
		{"garbage base64 context", "PUT", "/v1/kv/a", []byte("v"), false, map[string]string{ContextHeader: "QUFBQUFBQUE"}, 400, ContextHeader},
		{"context over MaxContextEntries", "PUT", "/v1/kv/a", []byte("v"), false, map[string]string{ContextHeader: contextOf(5)}, 400, "entries"},
		{"context at MaxContextEntries", "PUT", "/v1/kv/a", []byte("v"), false, map[string]string{ContextHeader: contextOf(4)}, 200, ""},
		{"long context", "PUT", "/v1/kv/a", []byte("v"), false, map[string]string{ContextHeader: strings.Repeat("A", 40<<10)}, 400, ContextHeader},
		{"garbage context DELETE", "DELETE", "/v1/kv/a", nil, false, map[string]string{ContextHeader: "%%%"}, 400, ContextHeader},
		{"bad r", "GET", "/v1/kv/a?r=bogus", nil, false, nil, 400, "bad r"},
		{"r=0", "GET", "/v1/kv/a?r=0", nil, false, nil, 400, "bad r"},
		{"r=primary", "GET", "/v1/kv/a?r=primary", nil, false, nil, 400, "bad r"},
		{"huge r", "GET", "/v1/kv/a?r=99999999999999999999999", nil, false, nil, 400, "bad r"},
		{"bad w", "PUT", "/v1/kv/a?w=-1", []byte("v"), false, nil, 400, "bad w"},
		{"bad w DELETE", "DELETE", "/v1/kv/a?w=x", nil, false, nil, 400, "bad w"},
		{"method", "PATCH", "/v1/kv/a", []byte("v"), false, nil, 405, "method"},
		{"method on members", "POST", "/v1/members", []byte("v"), false, nil, 405, "method"},
		{"no such endpoint", "GET", "/v1/nope", nil, false, nil, 404, "no such endpoint"},
		{"GET with a body", "GET", "/v1/kv/nope", []byte("stray body"), true, nil, 404, "not found"},
	}
	for _, tc := range cases {
		resp, body := httpDo(t, cl, tc.method, base+tc.path, tc.body, tc.chunked, tc.hdr)
		if tc.sub == "" {
			if resp.StatusCode != tc.status {
				t.Fatalf("%s: %d %s, want %d", tc.name, resp.StatusCode, body, tc.status)
			}
			continue
		}
		checkJSONError(t, tc.name, resp, body, tc.status, tc.sub)
		if len(tc.body) > 0 && resp.StatusCode >= 400 && !resp.Close {
			t.Fatalf("%s: answered before reading the body but kept the connection", tc.name)
		}
	}

	// What net/http refuses before the handler: a header block past
	// MaxHeaderBytes (431), a bad escape or a garbage request line (400).
	// (Raw connections: net/http hangs up on a client still sending its
	// headers, and a client that has not finished writing may see the
	// reset before the 431.)
	for what, raw := range map[string]string{
		"70 KiB header": "PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\n" + ContextHeader + ": " + strings.Repeat("A", 70<<10) + "\r\nContent-Length: 1\r\n\r\nv",
		"70 KiB URL":    "GET /v1/kv/" + strings.Repeat("k", 70<<10) + " HTTP/1.1\r\nHost: x\r\n\r\n",
	} {
		if resp, body := rawExchange(t, n.HTTPAddr(), raw); resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("%s: %d %s", what, resp.StatusCode, body)
		}
	}
	for _, raw := range []string{
		"GET /v1/kv/%zz HTTP/1.1\r\nHost: x\r\n\r\n",
		"HELLO\r\n\r\n",
		"GET /v1/kv/a HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
		"PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
		"PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
		"PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
	} {
		resp, body := rawExchange(t, n.HTTPAddr(), raw)
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("%q: %d %s, want 400", raw, resp.StatusCode, body)
		}
	}

	// A Content-Length past the limit is refused at once, without waiting
	// for (or reading) a byte of the body, and the connection is closed.
	c := rawDial(t, n.HTTPAddr())
	start := time.Now()
	_ = c.SetDeadline(start.Add(5 * time.Second))
	fmt.Fprintf(c, "PUT /v1/kv/big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", 100<<20)
	resp, body := readHTTPAnswer(t, bufio.NewReader(c))
	checkJSONError(t, "100 MiB Content-Length", resp, body, 413, "limit")
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("413 took %v", d)
	}
	waitClosed(t, c, 5*time.Second)

	// The node still serves.
	resp, body = httpDo(t, cl, "PUT", base+"/v1/kv/still", []byte("here"), false, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("PUT after the hostile requests: %d %s", resp.StatusCode, body)
	}
	resp, body = httpDo(t, cl, "GET", base+"/v1/kv/still", nil, false, nil)
	if resp.StatusCode != 200 || string(body) != "here" {
		t.Fatalf("GET after the hostile requests: %d %s", resp.StatusCode, body)
	}
}

// endless is a body that never ends; n counts the bytes taken from it.
type endless struct{ n atomic.Int64 }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	e.n.Add(int64(len(p)))
	return len(p), nil
}

// An endless chunked body is cut at the limit: the client gets 413 and
// the connection is closed, after the client pushed little more than the
// socket buffers hold.
func TestEndlessBodyIsCut(t *testing.T) {
	n := hostileNode(t, func(c *Config) { c.MaxValueSize = 64 << 10 })
	body := &endless{}
	req, err := http.NewRequest("PUT", "http://"+n.HTTPAddr()+"/v1/kv/endless", body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	checkJSONError(t, "endless body", resp, b, 413, "limit")
	time.Sleep(100 * time.Millisecond)
	sent := body.n.Load()
	t.Logf("client pushed %d bytes of an endless body before the server closed", sent)
	if sent > 64<<20 {
		t.Fatalf("client pushed %d bytes: the server kept reading", sent)
	}
}

// Slow clients are cut by timeouts; a slow but steady upload is not.
func TestSlowClients(t *testing.T) {
	n := hostileNode(t, func(c *Config) {
		c.MaxValueSize = 1 << 20
		c.HTTPReadHeaderTimeout = 300 * time.Millisecond
		c.HTTPBodyTimeout = 300 * time.Millisecond
		c.HTTPMinBodyRate = 2000
		c.HTTPIdleTimeout = 500 * time.Millisecond
	})
	addr := n.HTTPAddr()
	cl := &http.Client{Timeout: 5 * time.Second}
	before := runtime.NumGoroutine()
	var wg sync.WaitGroup
	check := func(name string, f func(t *testing.T)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Run(name, f)
		}()
	}

	// Headers one byte at a time, forever: cut at ReadHeaderTimeout.
	check("slowloris", func(t *testing.T) {
		c := rawDial(t, addr)
		io.WriteString(c, "GET /v1/health HTTP/1.1\r\nHost: x\r\n")
		start := time.Now()
		done := make(chan time.Duration, 1)
		go func() { done <- waitClosed(t, c, 5*time.Second) }()
		for {
			select {
			case <-done:
				d := time.Since(start)
				if d < 250*time.Millisecond || d > 3*time.Second {
					t.Errorf("slowloris connection closed after %v, want ≈ 300 ms", d)
				}
				return
			case <-time.After(50 * time.Millisecond):
				c.Write([]byte("X"))
			}
		}
	})
	// A connection that never sends anything.
	check("silent", func(t *testing.T) {
		c := rawDial(t, addr)
		if d := waitClosed(t, c, 5*time.Second); d > 3*time.Second {
			t.Errorf("silent connection closed after %v", d)
		}
	})
	// A body that trickles below the minimum rate: 408, then closed.
	check("trickle", func(t *testing.T) {
		c := rawDial(t, addr)
		start := time.Now()
		io.WriteString(c, "PUT /v1/kv/trickle HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
		ans := make(chan struct{})
		go func() {
			defer close(ans)
			resp, body := readHTTPAnswer(t, bufio.NewReader(c))
			checkJSONError(t, "trickle", resp, body, http.StatusRequestTimeout, "too slow")
		}()
		for {
			select {
			case <-ans:
				if d := time.Since(start); d > 3*time.Second {
					t.Errorf("trickling body cut after %v", d)
				}
				waitClosed(t, c, 5*time.Second)
				return
			case <-time.After(50 * time.Millisecond):
				c.Write([]byte("x"))
			}
		}
	})
	// Half a body, then nothing: cut HTTPBodyTimeout after the stall.
	check("stall", func(t *testing.T) {
		c := rawDial(t, addr)
		// 4000 bytes at once bank 2 s at 2000 B/s; the stall is cut
		// before that.
		io.WriteString(c, "PUT /v1/kv/stall HTTP/1.1\r\nHost: x\r\nContent-Length: 8000\r\n\r\n"+strings.Repeat("x", 4000))
		start := time.Now()
		_ = c.SetDeadline(start.Add(5 * time.Second))
		resp, body := readHTTPAnswer(t, bufio.NewReader(c))
		checkJSONError(t, "stall", resp, body, http.StatusRequestTimeout, "too slow")
		if d := time.Since(start); d < 250*time.Millisecond || d > 1500*time.Millisecond {
			t.Errorf("stalled body cut %v after the stall, want ≈ 300 ms", d)
		}
	})
	// Slow but above the minimum rate, and longer than HTTPBodyTimeout:
	// accepted. Then the keep-alive connection is closed when idle.
	check("slow but steady", func(t *testing.T) {
		c := rawDial(t, addr)
		start := time.Now()
		io.WriteString(c, "PUT /v1/kv/steady HTTP/1.1\r\nHost: x\r\nContent-Length: 4000\r\n\r\n")
		for range 20 { // 200 bytes per 50 ms: 4000 B/s for 1 s
			time.Sleep(50 * time.Millisecond)
			c.Write(bytes.Repeat([]byte("s"), 200))
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, body := readHTTPAnswer(t, bufio.NewReader(c))
		if resp.StatusCode != 200 {
			t.Errorf("steady upload of %v: %d %s", time.Since(start), resp.StatusCode, body)
			return
		}
		if resp.Close {
			t.Errorf("steady upload: connection not kept alive")
		}
		if d := waitClosed(t, c, 5*time.Second); d < 400*time.Millisecond || d > 3*time.Second {
			t.Errorf("idle keep-alive connection closed after %v, want ≈ 500 ms", d)
		}
	})
	// Meanwhile everyone else is served promptly.
	for i := range 10 {
		start := time.Now()
		resp, body := httpDo(t, cl, "PUT", fmt.Sprintf("http://%s/v1/kv/fine%d", addr, i), []byte("ok"), false, nil)
		if resp.StatusCode != 200 || time.Since(start) > time.Second {
			t.Fatalf("well-behaved PUT during slow clients: %d %s after %v", resp.StatusCode, body, time.Since(start))
		}
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()
	resp, body := httpDo(t, cl, "GET", "http://"+addr+"/v1/kv/steady", nil, false, nil)
	if resp.StatusCode != 200 || len(body) != 4000 {
		t.Fatalf("GET steady: %d, %d bytes", resp.StatusCode, len(body))
	}
	cl.CloseIdleConnections()
	eventually(t, 5*time.Second, func() error {
		if g := runtime.NumGoroutine(); g > before+5 {
			return fmt.Errorf("%d goroutines, %d before the slow clients", g, before)
		}
		return nil
	})
}

func heapAlloc() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// A connection flood is capped: connections past MaxClientConns get 503
// and are closed, a client with a connection keeps being served, and the
// node's goroutines and heap stay bounded.
func TestConnectionFlood(t *testing.T) {
	const maxConns, flood = 64, 300
	n := hostileNode(t, func(c *Config) {
		c.MaxClientConns = maxConns
		c.HTTPReadHeaderTimeout = time.Minute // the flood is held, not timed out
	})
	addr := n.HTTPAddr()
	good := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxConnsPerHost: 1}}
	defer good.CloseIdleConnections()
	if resp, body := httpDo(t, good, "PUT", "http://"+addr+"/v1/kv/k", []byte("v"), false, nil); resp.StatusCode != 200 {
		t.Fatalf("PUT: %d %s", resp.StatusCode, body)
	}

	g0, h0 := runtime.NumGoroutine(), heapAlloc()
	conns := make([]net.Conn, 0, flood)
	for range flood {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial %d: %v", len(conns), err)
		}
		conns = append(conns, c)
		io.WriteString(c, "GET /v1/health HTTP/1.1\r\nHost: x\r\n") // and never finish
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	time.Sleep(500 * time.Millisecond) // the refusals land
	g1, h1 := runtime.NumGoroutine(), heapAlloc()
	// Every connection past the cap reads a 503; the rest are held.
	var refused, held, dropped atomic.Int64
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout():
				held.Add(1)
				return
			case err != nil:
				dropped.Add(1)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(b), "too many connections") {
				t.Errorf("flood connection: %d %v %s", resp.StatusCode, resp.Header, b)
			}
			refused.Add(1)
		}()
	}
	wg.Wait()
	t.Logf("flood of %d connections, cap %d: %d held, %d refused with 503, %d dropped; goroutines %d → %d, heap %d → %d KiB",
		flood, maxConns, held.Load(), refused.Load(), dropped.Load(), g0, g1, h0>>10, h1>>10)
	if held.Load() >= maxConns || refused.Load() < flood-maxConns || dropped.Load() > 0 {
		t.Fatalf("the cap is %d connections (one is the well-behaved client's)", maxConns)
	}
	if g1-g0 > maxConns+maxRefusing+20 {
		t.Fatalf("goroutines grew by %d during the flood", g1-g0)
	}
	if h1 > h0+32<<20 {
		t.Fatalf("heap grew by %d KiB during the flood", (h1-h0)>>10)
	}
	// The client that has a connection is still served.
	for i := range 5 {
		resp, body := httpDo(t, good, "GET", "http://"+addr+"/v1/kv/k", nil, false, nil)
		if resp.StatusCode != 200 || string(body) != "v" {
			t.Fatalf("well-behaved GET %d during the flood: %d %s", i, resp.StatusCode, body)
		}
	}
	// A new one is told to come back.
	resp, body := httpDo(t, &http.Client{Timeout: 5 * time.Second}, "GET", "http://"+addr+"/v1/kv/k", nil, false, nil)
	if resp.StatusCode != 503 {
		t.Fatalf("new connection during the flood: %d %s", resp.StatusCode, body)
	}
	if m := n.Metrics(); m.HTTPConnsRefused < uint64(refused.Load()) {
		t.Fatalf("metrics count %d refused connections, saw %d", m.HTTPConnsRefused, refused.Load())
	}
	// Once the flood goes away, new clients are served again.
	for _, c := range conns {
		c.Close()
	}
	eventually(t, 5*time.Second, func() error {
		resp, body := httpDo(t, &http.Client{Timeout: 5 * time.Second}, "GET", "http://"+addr+"/v1/kv/k", nil, false, nil)
		if resp.StatusCode != 200 {
			return fmt.Errorf("after the flood: %d %s", resp.StatusCode, body)
		}
		return nil
	})
}

// Requests past MaxInFlightRequests get 503 {"error":"overloaded"} with
// Retry-After; /v1/health still answers; a burst of concurrent requests
// gets only 200s and 503s, never an error or a hang.
func TestInFlightLimit(t *testing.T) {
	const slots = 8
	n := hostileNode(t, func(c *Config) { c.MaxInFlightRequests = slots })
	addr := n.HTTPAddr()
	cl := &http.Client{Timeout: 10 * time.Second}
	// slots uploads that stop half way hold every slot.
	var uploads []net.Conn
	for i := range slots {
		c := rawDial(t, addr)
		fmt.Fprintf(c, "PUT /v1/kv/up%d HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhalf.", i)
		uploads = append(uploads, c)
	}
	// (Generous: under a loaded CI machine the server takes a while to
	// reach all of them.)
	eventually(t, 30*time.Second, func() error {
		resp, body := httpDo(t, cl, "GET", "http://"+addr+"/v1/kv/up0", nil, false, nil)
		if resp.StatusCode != 503 {
			return fmt.Errorf("GET with every slot taken: %d %s", resp.StatusCode, body)
		}
		checkJSONError(t, "overloaded", resp, body, 503, "overloaded")
		if resp.Header.Get("Retry-After") == "" {
			return errors.New("503 without Retry-After")
		}
		return nil
	})
	if resp, body := httpDo(t, cl, "GET", "http://"+addr+"/v1/health", nil, false, nil); resp.StatusCode != 200 {
		t.Fatalf("health with every slot taken: %d %s", resp.StatusCode, body)
	}
	for i, c := range uploads {
		io.WriteString(c, "done!")
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if resp, body := readHTTPAnswer(t, bufio.NewReader(c)); resp.StatusCode != 200 {
			t.Fatalf("upload %d: %d %s", i, resp.StatusCode, body)
		}
	}
	// A burst far past the limit.
	var wg sync.WaitGroup
	var ok, busy atomic.Int64
	errs := make(chan error, 100)
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := cl.Get(fmt.Sprintf("http://%s/v1/kv/up%d", addr, i%slots))
			if err != nil {
				errs <- err
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			switch resp.StatusCode {
			case 200:
				ok.Add(1)
			case 503:
				busy.Add(1)
			default:
				errs <- fmt.Errorf("status %d", resp.StatusCode)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("burst: %v", err)
	}
	t.Logf("burst of 100 with %d slots: %d served, %d overloaded", slots, ok.Load(), busy.Load())
	if ok.Load() == 0 {
		t.Fatal("burst: nothing served")
	}
}

// Bodies held in memory are bounded by MaxBodyBytesInFlight.
func TestBodyMemoryBudget(t *testing.T) {
	n := hostileNode(t, func(c *Config) { c.MaxBodyBytesInFlight = 2048 })
	addr := n.HTTPAddr()
	var held []net.Conn
	for i := range 2 {
		c := rawDial(t, addr)
		fmt.Fprintf(c, "PUT /v1/kv/b%d HTTP/1.1\r\nHost: x\r\nContent-Length: 1024\r\n\r\nx", i)
		held = append(held, c)
	}
	// Both uploads hold their declared length once the server reads their
	// first byte. Wait for that before the next PUT: sent earlier, its own
	// small reservation can make one of them the request that is refused.
	eventually(t, 20*time.Second, func() error {
		if used := n.httpLim.bodies.used.Load(); used != 2048 {
			return fmt.Errorf("%d body bytes reserved, want 2048", used)
		}
		return nil
	})
	resp, body := httpDo(t, &http.Client{Timeout: 5 * time.Second}, "PUT", "http://"+addr+"/v1/kv/b3", make([]byte, 10), false, nil)
	if resp.StatusCode != 503 || !strings.Contains(string(body), "request bytes") {
		t.Fatalf("PUT past the body budget: %d %s", resp.StatusCode, body)
	}
	for i, c := range held {
		c.Write(bytes.Repeat([]byte("x"), 1023))
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if resp, body := readHTTPAnswer(t, bufio.NewReader(c)); resp.StatusCode != 200 {
			t.Fatalf("held upload %d: %d %s", i, resp.StatusCode, body)
		}
	}
	if used := n.httpLim.bodies.used.Load(); used != 0 {
		t.Fatalf("%d body bytes still reserved", used)
	}
}

func TestReadBody(t *testing.T) {
	budget := &byteBudget{max: 1 << 20}
	for _, size := range []int{0, 1, 4095, 4096, 4097, 100_000, 1 << 16} {
		for _, known := range []bool{true, false} {
			in := bytes.Repeat([]byte{7}, size)
			cl := int64(size)
			if !known {
				cl = -1
			}
			got, reserved, err := readBody(bytes.NewReader(in), cl, 100_000, budget)
			if err != nil || !bytes.Equal(got, in) {
				t.Fatalf("size %d known %v: %d bytes, %v", size, known, len(got), err)
			}
			if reserved < int64(size) || reserved > 2*int64(size)+4096 {
				t.Fatalf("size %d known %v: reserved %d", size, known, reserved)
			}
			budget.give(reserved)
		}
	}
	for _, cl := range []int64{100_001, -1} {
		if _, _, err := readBody(bytes.NewReader(make([]byte, 100_001)), cl, 100_000, budget); !errors.Is(err, errBodyTooLarge) {
			t.Fatalf("over the limit (cl %d): %v", cl, err)
		}
	}
	if _, _, err := readBody(bytes.NewReader(make([]byte, 10)), 20, 100, budget); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short body: %v", err)
	}
	small := &byteBudget{max: 5000}
	if _, _, err := readBody(bytes.NewReader(make([]byte, 6000)), 6000, 10000, small); !errors.Is(err, errBodyBudget) {
		t.Fatalf("known size past the budget: %v", err)
	}
	if _, _, err := readBody(bytes.NewReader(make([]byte, 9000)), -1, 10000, small); !errors.Is(err, errBodyBudget) {
		t.Fatalf("chunked past the budget: %v", err)
	}
	if budget.used.Load() != 0 || small.used.Load() != 0 {
		t.Fatalf("budget leaked: %d %d", budget.used.Load(), small.used.Load())
	}
}

// diskFault fails write operations with err while on.
type diskFault struct {
	on  atomic.Bool
	err error
}

func (d *diskFault) MaybeError(op errorfs.Op) error {
	if !d.on.Load() || op.Kind.ReadOrWrite() != errorfs.OpIsWrite {
		return nil
	}
	return fmt.Errorf("%s: %w", op.Path, d.err)
}

func (d *diskFault) String() string { return "diskFault" }

// faultyNode opens a one-node cluster on fs.
func faultyNode(t *testing.T, fs vfs.FS, noSync bool) *testNode {
	t.Helper()
	return hostileNode(t, func(c *Config) {
		c.DataDir, c.InMemory, c.fs = "", true, fs
		c.NoSync = noSync
		c.MinFreeDisk = 64 << 20
	})
}

// A failing disk fails writes with a clear 5xx; the node stays up and
// serves reads and /v1/health (503 with the error); a restart once the
// disk is fixed writes again.
func TestStorageFaults(t *testing.T) {
	cases := []struct {
		name   string
		err    error
		noSync bool
		status int
	}{
		{"ENOSPC", syscall.ENOSPC, false, http.StatusInsufficientStorage},
		{"ENOSPC NoSync", syscall.ENOSPC, true, http.StatusInsufficientStorage},
		{"EIO", syscall.EIO, false, http.StatusInternalServerError},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mem := vfs.NewMem()
			fault := &diskFault{err: tc.err}
			fs := errorfs.Wrap(mem, fault)
			n := faultyNode(t, fs, tc.noSync)
			base := "http://" + n.HTTPAddr()
			cl := &http.Client{Timeout: 10 * time.Second}
			if resp, body := httpDo(t, cl, "PUT", base+"/v1/kv/a", []byte("before"), false, nil); resp.StatusCode != 200 {
				t.Fatalf("PUT: %d %s", resp.StatusCode, body)
			}
			fault.on.Store(true)
			// NoSync acknowledges writes before pebble writes its log:
			// the failure shows once pebble flushes a block.
			failed := false
			for i := 0; i < 200 && !failed; i++ {
				resp, body := httpDo(t, cl, "PUT", fmt.Sprintf("%s/v1/kv/k%d", base, i), bytes.Repeat([]byte("v"), 1000), false, nil)
				switch {
				case resp.StatusCode == 200 && tc.noSync:
				case resp.StatusCode == tc.status:
					checkJSONError(t, "write on a failing disk", resp, body, tc.status, "write-ahead log failed")
					failed = true
				default:
					t.Fatalf("write %d on a failing disk: %d %s", i, resp.StatusCode, body)
				}
			}
			if !failed {
				t.Fatal("no write failed on a failing disk")
			}
			fault.on.Store(false) // pebble's log stays broken until a restart
			resp, body := httpDo(t, cl, "PUT", base+"/v1/kv/b", []byte("v"), false, nil)
			checkJSONError(t, "write after the failure", resp, body, tc.status, "write-ahead log failed")
			resp, body = httpDo(t, cl, "DELETE", base+"/v1/kv/a", nil, false, nil)
			checkJSONError(t, "delete after the failure", resp, body, tc.status, "write-ahead log failed")
			for _, p := range []string{"/v1/kv/a", "/v1/kv/a?local=1", "/v1/kv/a?r=all"} {
				if resp, body := httpDo(t, cl, "GET", base+p, nil, false, nil); resp.StatusCode != 200 || string(body) != "before" {
					t.Fatalf("GET %s after the failure: %d %s", p, resp.StatusCode, body)
				}
			}
			for _, p := range []string{"/v1/state/a", "/v1/status", "/v1/members", "/v1/ring"} {
				if resp, body := httpDo(t, cl, "GET", base+p, nil, false, nil); resp.StatusCode != 200 {
					t.Fatalf("GET %s after the failure: %d %s", p, resp.StatusCode, body)
				}
			}
			resp, body = httpDo(t, cl, "GET", base+"/v1/health", nil, false, nil)
			var h map[string]any
			if err := json.Unmarshal(body, &h); err != nil || resp.StatusCode != 503 || h["status"] != "unhealthy" ||
				!strings.Contains(fmt.Sprint(h["error"]), tc.err.Error()) {
				t.Fatalf("health after the failure: %d %s", resp.StatusCode, body)
			}

			// A restart on the fixed disk writes again and kept what was
			// acknowledged before the failure.
			closed := make(chan error, 1)
			go func() { closed <- n.Close() }()
			select {
			case err := <-closed:
				t.Logf("Close after the failure: %v", err)
			case <-time.After(15 * time.Second):
				t.Fatal("Close hung after the storage failure")
			}
			n = faultyNode(t, fs, tc.noSync)
			base = "http://" + n.HTTPAddr()
			if resp, body := httpDo(t, cl, "PUT", base+"/v1/kv/b", []byte("after"), false, nil); resp.StatusCode != 200 {
				t.Fatalf("PUT after restart: %d %s", resp.StatusCode, body)
			}
			// (NoSync acknowledged "a" before pebble wrote it to its log,
			// and the log never got written: like a crash, the restart
			// may have lost it.)
			if resp, body := httpDo(t, cl, "GET", base+"/v1/kv/a", nil, false, nil); !tc.noSync && (resp.StatusCode != 200 || string(body) != "before") {
				t.Fatalf("GET after restart: %d %s", resp.StatusCode, body)
			}
			if resp, body := httpDo(t, cl, "GET", base+"/v1/health", nil, false, nil); resp.StatusCode != 200 {
				t.Fatalf("health after restart: %d %s", resp.StatusCode, body)
			}
		})
	}
}

// Below MinFreeDisk writes get 507 before pebble sees a full disk, and
// resume once space is freed, without a restart.
func TestDiskNearlyFull(t *testing.T) {
	mem := vfs.NewMem()
	plenty := vfs.DiskUsage{AvailBytes: 10 << 30, TotalBytes: 20 << 30, UsedBytes: 10 << 30}
	mem.TestingSetDiskUsage(plenty)
	n := faultyNode(t, mem, false)
	base := "http://" + n.HTTPAddr()
	cl := &http.Client{Timeout: 10 * time.Second}
	if resp, body := httpDo(t, cl, "PUT", base+"/v1/kv/a", []byte("before"), false, nil); resp.StatusCode != 200 {
		t.Fatalf("PUT: %d %s", resp.StatusCode, body)
	}
	mem.TestingSetDiskUsage(vfs.DiskUsage{AvailBytes: 10 << 20, TotalBytes: 20 << 30, UsedBytes: 20<<30 - 10<<20})
	eventually(t, 5*time.Second, func() error {
		resp, body := httpDo(t, cl, "PUT", base+"/v1/kv/b", []byte("v"), false, nil)
		if resp.StatusCode != http.StatusInsufficientStorage {
			return fmt.Errorf("PUT with 10 MiB free: %d %s", resp.StatusCode, body)
		}
		checkJSONError(t, "disk nearly full", resp, body, http.StatusInsufficientStorage, "disk nearly full")
		return nil
	})
	if resp, body := httpDo(t, cl, "GET", base+"/v1/kv/a", nil, false, nil); resp.StatusCode != 200 || string(body) != "before" {
		t.Fatalf("GET with the disk nearly full: %d %s", resp.StatusCode, body)
	}
	if resp, body := httpDo(t, cl, "GET", base+"/v1/health", nil, false, nil); resp.StatusCode != 503 || !strings.Contains(string(body), "disk nearly full") {
		t.Fatalf("health with the disk nearly full: %d %s", resp.StatusCode, body)
	}
	mem.TestingSetDiskUsage(plenty)
	eventually(t, 5*time.Second, func() error {
		if resp, body := httpDo(t, cl, "PUT", base+"/v1/kv/b", []byte("after"), false, nil); resp.StatusCode != 200 {
			return fmt.Errorf("PUT once space is back: %d %s", resp.StatusCode, body)
		}
		return nil
	})
	if resp, body := httpDo(t, cl, "GET", base+"/v1/health", nil, false, nil); resp.StatusCode != 200 {
		t.Fatalf("health once space is back: %d %s", resp.StatusCode, body)
	}
}

// Any request the HTTP parser lets through gets an answer below 500 (a
// handler panic would be answered 500 by guardHTTP), and every error is
// JSON.
func FuzzClientRequest(f *testing.F) {
	n := startCluster(f, 1, func(c *Config) {
		c.N = 1
		c.MaxKeySize = 64
		c.MaxValueSize = 1024
		c.MaxContextEntries = 4
		c.DataDir, c.InMemory = "", true
	})[0]
	h := n.httpSrv.Handler
	for _, seed := range []string{
		"PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nv",
		"PUT /v1/kv/a?w=quorum HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nv\r\n0\r\n\r\n",
		"GET /v1/kv/a?r=all&local=1 HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\n\r\n",
		"DELETE /v1/kv/a HTTP/1.1\r\nHost: x\r\nX-Rumor-Context: " + contextOf(2) + "\r\n\r\n",
		"PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nX-Rumor-Context: AZLPYNUWz_ishMAM\r\nContent-Length: 0\r\n\r\n",
		"GET /v1/state/a HTTP/1.1\r\nHost: x\r\n\r\n",
		"HEAD /v1/status HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /v1/kv/%FF%00 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return
		}
		if strings.HasPrefix(req.URL.Path, "/v1/status") || strings.HasPrefix(req.URL.Path, "/v1/members") {
			return // slow, and no input to speak of
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable {
			t.Fatalf("%q: %d %s", raw, rec.Code, rec.Body)
		}
		if rec.Code >= 400 && rec.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("%q: %d with Content-Type %q", raw, rec.Code, rec.Header().Get("Content-Type"))
		}
	})
}
