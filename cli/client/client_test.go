package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// request is what the fake node saw of one request.
type request struct {
	Method, Path, Query, Body string
	Header                    http.Header
}

// fake is an httptest server that records requests and answers with a
// handler chosen per test.
type fake struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []request
}

func newFake(t *testing.T, h http.HandlerFunc) (*fake, *Client) {
	t.Helper()
	f := &fake{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.got = append(f.got, request{Method: r.Method, Path: r.URL.EscapedPath(), Query: r.URL.RawQuery,
			Body: string(b), Header: r.Header.Clone()})
		f.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f, New(strings.TrimPrefix(f.srv.URL, "http://"), nil)
}

func (f *fake) last(t *testing.T) request {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.got) == 0 {
		t.Fatal("no request reached the server")
	}
	return f.got[len(f.got)-1]
}

func answer(status int, hdr map[string]string, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		for k, v := range hdr {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

const jsonCT = "application/json"

var bg = context.Background()

func TestGetAnswers(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	tests := []struct {
		name    string
		status  int
		hdr     map[string]string
		body    string
		want    []string
		wantCtx string
		wantErr string // substring; "" means success
		notFnd  bool
	}{
		{name: "one value", status: 200, hdr: map[string]string{"Content-Type": jsonCT, ContextHeader: "C1"},
			body: `{"values":["v"],"context":"C1"}`, want: []string{"v"}, wantCtx: "C1"},
		{name: "siblings", status: 300, hdr: map[string]string{"Content-Type": jsonCT},
			body: `{"values":["a","b"],"context":"C2"}`, want: []string{"a", "b"}, wantCtx: "C2"},
		{name: "body context wins over header", status: 200, hdr: map[string]string{"Content-Type": jsonCT, ContextHeader: "H"},
			body: `{"values":["v"],"context":"B"}`, want: []string{"v"}, wantCtx: "B"},
		{name: "header context when body has none", status: 200, hdr: map[string]string{"Content-Type": jsonCT, ContextHeader: "H"},
			body: `{"values":["v"]}`, want: []string{"v"}, wantCtx: "H"},
		{name: "base64", status: 300, hdr: map[string]string{"Content-Type": jsonCT},
			body: `{"values":["` + b64("\xff\x00") + `","` + b64("ok") + `"],"encoding":"base64","context":"C"}`,
			want: []string{"\xff\x00", "ok"}, wantCtx: "C"},
		{name: "raw single value", status: 200, hdr: map[string]string{"Content-Type": "application/octet-stream", ContextHeader: "R"},
			body: "raw {bytes}", want: []string{"raw {bytes}"}, wantCtx: "R"},
		{name: "not found with context", status: 404, hdr: map[string]string{"Content-Type": jsonCT, ContextHeader: "T"},
			body: `{"error":"not found","context":"T"}`, notFnd: true, wantCtx: "T"},
		{name: "not found, context only in body", status: 404, hdr: map[string]string{"Content-Type": jsonCT},
			body: `{"error":"not found","context":"T2"}`, notFnd: true, wantCtx: "T2"},
		{name: "404 not from a node", status: 404, body: "404 page not found", wantErr: "404 page not found (HTTP 404)"},
		{name: "server error", status: 503, hdr: map[string]string{"Content-Type": jsonCT},
			body: `{"error":"node: read quorum unavailable"}`, wantErr: "node: read quorum unavailable (HTTP 503)"},
		{name: "plain text error", status: 400, body: "bad things\n", wantErr: "bad things (HTTP 400)"},
		{name: "empty error body", status: 502, wantErr: "Bad Gateway (HTTP 502)"},
		{name: "bad JSON", status: 200, hdr: map[string]string{"Content-Type": jsonCT}, body: `{"values":`, wantErr: "decode answer"},
		{name: "bad base64", status: 200, hdr: map[string]string{"Content-Type": jsonCT},
			body: `{"values":["!!"],"encoding":"base64","context":"C"}`, wantErr: "decode value"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, c := newFake(t, answer(tc.status, tc.hdr, tc.body))
			v, err := c.Get(bg, "k", nil)
			switch {
			case tc.notFnd:
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("err = %v, want ErrNotFound", err)
				}
				if v == nil || v.Context != tc.wantCtx {
					t.Fatalf("value with not found = %+v, want context %q", v, tc.wantCtx)
				}
				return
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				if errors.Is(err, ErrNotFound) {
					t.Fatalf("err %v must not be ErrNotFound", err)
				}
				if tc.status >= 400 {
					var e *Error
					if !errors.As(err, &e) || e.Status != tc.status {
						t.Fatalf("err = %#v, want *Error with status %d", err, tc.status)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := v.Strings(); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("values = %q, want %q", got, tc.want)
			}
			if v.Context != tc.wantCtx {
				t.Fatalf("context = %q, want %q", v.Context, tc.wantCtx)
			}
		})
	}
}

func TestGetRequest(t *testing.T) {
	ok := answer(200, map[string]string{"Content-Type": jsonCT}, `{"values":["v"],"context":"C"}`)
	tests := []struct {
		key       string
		opts      *ReadOptions
		wantPath  string
		wantQuery string
	}{
		{"k", nil, "/v1/kv/k", ""},
		{"k", &ReadOptions{}, "/v1/kv/k", ""},
		{"k", &ReadOptions{R: "all"}, "/v1/kv/k", "r=all"},
		{"k", &ReadOptions{Local: true}, "/v1/kv/k", "local=1"},
		{"k", &ReadOptions{R: "2", Local: true}, "/v1/kv/k", "local=1&r=2"},
		{"a/b c?d#e%", nil, "/v1/kv/a%2Fb%20c%3Fd%23e%25", ""},
		{"héllo", nil, "/v1/kv/h%C3%A9llo", ""},
		{"../x", nil, "/v1/kv/..%2Fx", ""},
	}
	for _, tc := range tests {
		f, c := newFake(t, ok)
		if _, err := c.Get(bg, tc.key, tc.opts); err != nil {
			t.Fatalf("get %q: %v", tc.key, err)
		}
		r := f.last(t)
		if r.Method != http.MethodGet || r.Path != tc.wantPath || r.Query != tc.wantQuery {
			t.Errorf("get %q %+v: %s %s?%s, want GET %s?%s", tc.key, tc.opts, r.Method, r.Path, r.Query, tc.wantPath, tc.wantQuery)
		}
		if a := r.Header.Get("Accept"); a != "" {
			// A single value comes back raw: no JSON on the hot path.
			t.Errorf("Accept = %q, want none", a)
		}
		if h := r.Header.Get("Authorization"); h != "" {
			t.Errorf("Authorization %q sent without a token", h)
		}
	}
}

func TestWrites(t *testing.T) {
	tests := []struct {
		name      string
		del       bool
		value     string
		opts      *WriteOptions
		hdr       map[string]string
		body      string
		wantQuery string
		wantCtxIn string // context header the server must see
		wantOut   string
	}{
		{name: "put", value: "v1", hdr: map[string]string{ContextHeader: "OUT"}, body: `{"context":"OUT"}`, wantOut: "OUT"},
		{name: "put with context and w", value: "v2", opts: &WriteOptions{Context: "IN", W: "quorum"},
			hdr: map[string]string{ContextHeader: "OUT2"}, body: `{"context":"OUT2"}`, wantQuery: "w=quorum", wantCtxIn: "IN", wantOut: "OUT2"},
		{name: "put empty value", value: "", hdr: map[string]string{ContextHeader: "E"}, body: `{"context":"E"}`, wantOut: "E"},
		{name: "context only in body", value: "v", body: `{"context":"BODY"}`, wantOut: "BODY"},
		{name: "delete", del: true, opts: &WriteOptions{Context: "DC", W: "all"},
			hdr: map[string]string{ContextHeader: "D"}, body: `{"context":"D"}`, wantQuery: "w=all", wantCtxIn: "DC", wantOut: "D"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, c := newFake(t, answer(200, tc.hdr, tc.body))
			var out string
			var err error
			if tc.del {
				out, err = c.Delete(bg, "key", tc.opts)
			} else {
				out, err = c.Put(bg, "key", []byte(tc.value), tc.opts)
			}
			if err != nil {
				t.Fatal(err)
			}
			if out != tc.wantOut {
				t.Errorf("context out = %q, want %q", out, tc.wantOut)
			}
			r := f.last(t)
			wantMethod := http.MethodPut
			if tc.del {
				wantMethod = http.MethodDelete
			}
			if r.Method != wantMethod || r.Path != "/v1/kv/key" || r.Query != tc.wantQuery {
				t.Errorf("request %s %s?%s, want %s /v1/kv/key?%s", r.Method, r.Path, r.Query, wantMethod, tc.wantQuery)
			}
			if r.Body != tc.value {
				t.Errorf("body %q, want %q", r.Body, tc.value)
			}
			if got := r.Header.Get(ContextHeader); got != tc.wantCtxIn {
				t.Errorf("context header %q, want %q", got, tc.wantCtxIn)
			}
		})
	}
}

func TestWriteErrors(t *testing.T) {
	tests := []struct {
		status  int
		body    string
		wantMsg string
	}{
		{400, `{"error":"node: malformed causal context"}`, "node: malformed causal context"},
		{413, `{"error":"value is 9 bytes; the limit is 4"}`, "value is 9 bytes; the limit is 4"},
		{503, `{"error":"node: write quorum unavailable"}`, "node: write quorum unavailable"},
		{500, "", "Internal Server Error"},
	}
	for _, tc := range tests {
		_, c := newFake(t, answer(tc.status, map[string]string{"Content-Type": jsonCT}, tc.body))
		_, err := c.Put(bg, "k", []byte("v"), nil)
		var e *Error
		if !errors.As(err, &e) || e.Status != tc.status || e.Msg != tc.wantMsg {
			t.Errorf("status %d: err = %#v, want *Error{%d, %q}", tc.status, err, tc.status, tc.wantMsg)
		}
		if _, err := c.Delete(bg, "k", nil); !errors.As(err, &e) || e.Status != tc.status {
			t.Errorf("delete, status %d: err = %v", tc.status, err)
		}
	}
	// 200 without a context anywhere and a body that is not JSON.
	_, c := newFake(t, answer(200, nil, "nope"))
	if _, err := c.Put(bg, "k", []byte("v"), nil); err == nil || !strings.Contains(err.Error(), "decode answer") {
		t.Errorf("undecodable write answer: err = %v", err)
	}
}

func TestToken(t *testing.T) {
	f, _ := newFake(t, answer(200, map[string]string{"Content-Type": jsonCT, ContextHeader: "C"}, `{"values":["v"],"context":"C"}`))
	c := New(f.srv.URL, &Options{Token: "s3cret"})
	if _, err := c.Get(bg, "k", nil); err != nil {
		t.Fatal(err)
	}
	if got := f.last(t).Header.Get("Authorization"); got != "Bearer s3cret" {
		t.Errorf("get: Authorization = %q", got)
	}
	if _, err := c.Put(bg, "k", []byte("v"), nil); err != nil {
		t.Fatal(err)
	}
	if got := f.last(t).Header.Get("Authorization"); got != "Bearer s3cret" {
		t.Errorf("put: Authorization = %q", got)
	}
	var out map[string]any
	if err := c.GetJSON(bg, "/v1/status", &out); err != nil {
		t.Fatal(err)
	}
	if got := f.last(t).Header.Get("Authorization"); got != "Bearer s3cret" {
		t.Errorf("GetJSON: Authorization = %q", got)
	}
}

func TestGetJSON(t *testing.T) {
	f, c := newFake(t, answer(200, map[string]string{"Content-Type": jsonCT}, `[{"name":"n1","state":"alive"}]`))
	var ms []struct{ Name, State string }
	if err := c.GetJSON(bg, "/v1/members", &ms); err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].Name != "n1" || ms[0].State != "alive" {
		t.Fatalf("decoded %+v", ms)
	}
	if r := f.last(t); r.Path != "/v1/members" || r.Header.Get("Accept") != jsonCT {
		t.Fatalf("request %+v", r)
	}

	_, c = newFake(t, answer(200, nil, `not json`))
	if err := c.GetJSON(bg, "/v1/ring", &ms); err == nil || !strings.Contains(err.Error(), "GET /v1/ring: decode answer") {
		t.Fatalf("undecodable answer: err = %v", err)
	}
	_, c = newFake(t, answer(404, nil, "404 page not found"))
	var e *Error
	if err := c.GetJSON(bg, "/v1/nope", &ms); !errors.As(err, &e) || e.Status != 404 {
		t.Fatalf("404: err = %v", err)
	}
}

func TestAddr(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:7948":          "http://127.0.0.1:7948",
		"http://127.0.0.1:7948/":  "http://127.0.0.1:7948",
		"https://rumor.example//": "https://rumor.example",
		"localhost:1":             "http://localhost:1",
	} {
		if got := New(in, nil).Addr(); got != want {
			t.Errorf("New(%q).Addr() = %q, want %q", in, got, want)
		}
	}
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestConnectionRefused(t *testing.T) {
	addr := closedAddr(t)
	c := New(addr, nil)
	_, err := c.Get(bg, "k", nil)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("err = %v, want ECONNREFUSED", err)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, "GET http://"+addr+"/v1/kv/k: ") || strings.Count(msg, addr) != 2 {
		// once in the URL, once in "dial tcp ADDR"; url.Error would add a third
		t.Errorf("message %q: want the URL once and the dial error", msg)
	}
	if _, err := c.Put(bg, "k", []byte("v"), nil); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("put: err = %v", err)
	}
}

func TestContextAndTimeout(t *testing.T) {
	release := make(chan struct{})
	f, _ := newFake(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)

	c := New(f.srv.URL, nil)
	ctx, cancel := context.WithTimeout(bg, 50*time.Millisecond)
	defer cancel()
	if _, err := c.Get(ctx, "k", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("expired context: err = %v", err)
	}

	c = New(f.srv.URL, &Options{Timeout: 50 * time.Millisecond})
	start := time.Now()
	if _, err := c.Put(bg, "k", []byte("v"), nil); err == nil {
		t.Error("request outlived Options.Timeout")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("timeout took %v", d)
	}
}

func TestHTTPClientOption(t *testing.T) {
	f, _ := newFake(t, answer(200, map[string]string{"Content-Type": jsonCT}, `{"values":["v"],"context":"C"}`))
	used := false
	hc := &http.Client{Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
		used = true
		return http.DefaultTransport.RoundTrip(r)
	})}
	c := New(f.srv.URL, &Options{HTTPClient: hc})
	if _, err := c.Get(bg, "k", nil); err != nil || !used {
		t.Fatalf("err %v, custom client used %v", err, used)
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestValueStrings(t *testing.T) {
	v := &Value{Values: [][]byte{[]byte("a"), {}, []byte("\xff")}}
	if got := v.Strings(); !reflect.DeepEqual(got, []string{"a", "", "\xff"}) {
		t.Fatalf("Strings() = %q", got)
	}
	if got := (&Value{}).Strings(); len(got) != 0 {
		t.Fatalf("empty Strings() = %q", got)
	}
}

func TestErrorMessage(t *testing.T) {
	e := &Error{Status: 503, Msg: "node: write quorum unavailable"}
	if got, want := e.Error(), "node: write quorum unavailable (HTTP 503)"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
	// The JSON error body a node sends is what apiError reads.
	b, _ := json.Marshal(map[string]string{"error": "x"})
	_, c := newFake(t, answer(500, nil, string(b)))
	if _, err := c.Get(bg, "k", nil); err == nil || err.Error() != "x (HTTP 500)" {
		t.Fatalf("err = %v", err)
	}
}

// FuzzGetAnswer feeds arbitrary answers to Get and GetJSON: they must not
// panic, and a successful Get must return exactly the values the body
// lists (decoded when the answer says base64).
func FuzzGetAnswer(f *testing.F) {
	f.Add(200, jsonCT, `{"values":["v"],"context":"C"}`)
	f.Add(300, jsonCT, `{"values":["a","b"],"context":"C"}`)
	f.Add(300, jsonCT, `{"values":["/w=="],"encoding":"base64","context":"C"}`)
	f.Add(404, jsonCT, `{"error":"not found","context":"T"}`)
	f.Add(200, "application/octet-stream", "\xff raw")
	f.Add(503, "", `{"error":"x"}`)
	f.Add(200, jsonCT, `{"values":[1,2]}`)
	f.Fuzz(func(t *testing.T, status int, ct, body string) {
		if status < 100 || status > 999 {
			return
		}
		hc := &http.Client{Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
			h := http.Header{}
			if ct != "" {
				h.Set("Content-Type", ct)
			}
			return &http.Response{StatusCode: status, Header: h, Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
		})}
		c := New("127.0.0.1:1", &Options{HTTPClient: hc})
		v, err := c.Get(bg, "k", nil)
		if err == nil {
			if status != 200 && status != 300 {
				t.Fatalf("status %d accepted", status)
			}
			var gb getBody
			if json.Unmarshal([]byte(body), &gb) == nil && isJSON(&http.Response{Header: http.Header{"Content-Type": {ct}}}) &&
				len(v.Values) != len(gb.Values) {
				t.Fatalf("%d values from a body listing %d", len(v.Values), len(gb.Values))
			}
		} else if errors.Is(err, ErrNotFound) && (status != 404 || v == nil) {
			t.Fatalf("ErrNotFound for status %d (value %v)", status, v)
		}
		var out any
		_ = c.GetJSON(bg, "/v1/status", &out)
	})
}
