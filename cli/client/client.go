// Package client is a small Go client for Rumor's HTTP API, used by the
// rumor command and by tests and benchmarks that drive real agents.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// ContextHeader carries the opaque causal context (see node.ContextHeader).
const ContextHeader = "X-Rumor-Context"

// ErrNotFound is returned by Get when the key has no live value.
var ErrNotFound = errors.New("not found")

// Error is an error answer from a node.
type Error struct {
	Status int    // HTTP status code
	Msg    string // the node's message
	// Token reports whether the request carried a bearer token (a 401
	// then means the node does not accept it rather than wants one).
	Token bool
}

func (e *Error) Error() string { return fmt.Sprintf("%s (HTTP %d)", e.Msg, e.Status) }

// Client talks to one node's HTTP API. It is safe for concurrent use.
type Client struct {
	base  string
	http  *http.Client
	token string
	// err, if set, fails every request (a CACertFile that could not be
	// loaded).
	err error
}

// Options configure a Client. The zero value is usable.
type Options struct {
	// Timeout bounds each request. Default 10 s.
	Timeout time.Duration
	// HTTPClient overrides the transport (tests, TLS). Default: a client
	// with keep-alive connections sized for concurrent use.
	HTTPClient *http.Client
	// Token is sent as a bearer token when set.
	Token string
	// TLSConfig configures HTTPS connections (used when HTTPClient is
	// nil). Default: the system's roots verify the node, or CACertFile's.
	TLSConfig *tls.Config
	// CACertFile is a PEM file of the CA certificates that verify an HTTPS
	// node instead of the system's roots (used when HTTPClient and
	// TLSConfig are nil): the cluster's CA (rumor tls ca). New does not
	// fail: a file that cannot be read or holds no certificate fails every
	// request with that error.
	CACertFile string
}

// LoadCACert returns a TLS configuration that trusts the CA certificates
// in the PEM file path (and nothing else).
func LoadCACert(path string) (*tls.Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("CA certificate %s: no PEM certificate in it", path)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// New returns a client for the node whose HTTP API listens on addr
// ("host:port", which means plain HTTP, or a full http(s):// URL).
func New(addr string, o *Options) *Client {
	if o == nil {
		o = &Options{}
	}
	base := addr
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	c := &Client{base: strings.TrimRight(base, "/"), http: o.HTTPClient, token: o.Token}
	if c.http == nil {
		timeout := o.Timeout
		if timeout <= 0 {
			timeout = 10 * time.Second
		}
		tc := o.TLSConfig
		if tc == nil && o.CACertFile != "" {
			tc, c.err = LoadCACert(o.CACertFile)
		}
		c.http = &http.Client{
			Timeout: timeout,
			Transport: &http.Transport{
				DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
				TLSClientConfig:     tc,
				TLSHandshakeTimeout: 5 * time.Second,
				MaxIdleConns:        1024,
				MaxIdleConnsPerHost: 1024,
				IdleConnTimeout:     90 * time.Second,
			},
		}
	}
	return c
}

// Addr is the base URL the client talks to.
func (c *Client) Addr() string { return c.base }

// Value is the result of a read: every live sibling and the context to
// send back with the next write.
type Value struct {
	Values  [][]byte
	Context string
}

// Strings returns the sibling values as strings.
func (v *Value) Strings() []string {
	out := make([]string, len(v.Values))
	for i, b := range v.Values {
		out[i] = string(b)
	}
	return out
}

// ReadOptions are per-read settings; nil means defaults.
type ReadOptions struct {
	R     string // "", "1", "quorum", "all", or a count
	Local bool   // only the contacted node's own copy
}

// WriteOptions are per-write settings; nil means defaults.
type WriteOptions struct {
	Context string // from an earlier read: supersede what it saw
	W       string // "", "1", "quorum", "all", "primary", or a count
}

func kvPath(key string) string { return "/v1/kv/" + url.PathEscape(key) }

type getBody struct {
	Values   []string `json:"values"`
	Encoding string   `json:"encoding"`
	Context  string   `json:"context"`
	Error    string   `json:"error"`
}

// Get reads key. A key without live values returns ErrNotFound together
// with a Value whose Context covers what was deleted.
func (c *Client) Get(ctx context.Context, key string, o *ReadOptions) (*Value, error) {
	q := url.Values{}
	if o != nil && o.R != "" {
		q.Set("r", o.R)
	}
	if o != nil && o.Local {
		q.Set("local", "1")
	}
	path := kvPath(key)
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	// No "Accept: application/json": a single value comes back raw (no
	// JSON to build or parse); siblings come as JSON with status 300.
	resp, body, err := c.do(ctx, http.MethodGet, path, nil, nil)
	if err != nil {
		return nil, err
	}
	v := &Value{Context: resp.Header.Get(ContextHeader)}
	switch resp.StatusCode {
	case http.StatusOK, http.StatusMultipleChoices:
	case http.StatusNotFound:
		// Only a node's "not found" answer means the key is absent; a 404
		// from anything else (a proxy, a wrong base URL) is an error.
		var gb getBody
		if json.Unmarshal(body, &gb) == nil && gb.Error == "not found" {
			if v.Context == "" {
				v.Context = gb.Context
			}
			return v, ErrNotFound
		}
		return nil, apiError(resp, body)
	default:
		return nil, apiError(resp, body)
	}
	if resp.StatusCode == http.StatusOK && !isJSON(resp) {
		// A single value sent raw (what a node answers without
		// "Accept: application/json").
		v.Values = [][]byte{body}
		return v, nil
	}
	var gb getBody
	if err := json.Unmarshal(body, &gb); err != nil {
		return nil, fmt.Errorf("get %q: decode answer: %w", key, err)
	}
	for _, s := range gb.Values {
		if gb.Encoding == "base64" {
			b, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				return nil, fmt.Errorf("get %q: decode value: %w", key, err)
			}
			v.Values = append(v.Values, b)
		} else {
			v.Values = append(v.Values, []byte(s))
		}
	}
	if gb.Context != "" {
		v.Context = gb.Context
	}
	return v, nil
}

func isJSON(resp *http.Response) bool {
	return strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json")
}

// Put writes value under key and returns the new causal context.
func (c *Client) Put(ctx context.Context, key string, value []byte, o *WriteOptions) (string, error) {
	return c.write(ctx, http.MethodPut, key, value, o)
}

// Delete writes a tombstone for key (with o.Context: exactly what that read
// saw) and returns the new causal context.
func (c *Client) Delete(ctx context.Context, key string, o *WriteOptions) (string, error) {
	return c.write(ctx, http.MethodDelete, key, nil, o)
}

func (c *Client) write(ctx context.Context, method, key string, value []byte, o *WriteOptions) (string, error) {
	path := kvPath(key)
	hdr := map[string]string{}
	if o != nil && o.W != "" {
		path += "?" + url.Values{"w": {o.W}}.Encode()
	}
	if o != nil && o.Context != "" {
		hdr[ContextHeader] = o.Context
	}
	resp, body, err := c.do(ctx, method, path, value, hdr)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", apiError(resp, body)
	}
	if ctxOut := resp.Header.Get(ContextHeader); ctxOut != "" {
		return ctxOut, nil
	}
	var wb struct {
		Context string `json:"context"`
	}
	if err := json.Unmarshal(body, &wb); err != nil {
		return "", fmt.Errorf("%s %q: decode answer: %w", method, key, err)
	}
	return wb.Context, nil
}

// PostJSON posts to path (an empty body) and decodes the JSON answer into
// out (nil: ignore it). Any 2xx is success.
func (c *Client) PostJSON(ctx context.Context, path string, out any) error {
	resp, body, err := c.do(ctx, http.MethodPost, path, nil, map[string]string{"Accept": "application/json"})
	if err != nil {
		return err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return apiError(resp, body)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("POST %s: decode answer: %w", path, err)
	}
	return nil
}

// GetJSON fetches path (such as "/v1/members") and decodes the JSON answer
// into out.
func (c *Client) GetJSON(ctx context.Context, path string, out any) error {
	resp, body, err := c.do(ctx, http.MethodGet, path, nil, map[string]string{"Accept": "application/json"})
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return apiError(resp, body)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("GET %s: decode answer: %w", path, err)
	}
	return nil
}

// DoJSON sends in as a JSON body (nil: no body) with method to path, and
// decodes a JSON answer into out (nil: ignore it) whatever its status:
// some endpoints (/v1/keyring) answer a failure with a document too. It
// returns the status, and an *Error for an answer outside 2xx.
func (c *Client) DoJSON(ctx context.Context, method, path string, in, out any) (int, error) {
	hdr := map[string]string{"Accept": "application/json"}
	var body []byte
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, fmt.Errorf("%s %s: encode body: %w", method, path, err)
		}
		body = b
		hdr["Content-Type"] = "application/json"
	}
	resp, b, err := c.do(ctx, method, path, body, hdr)
	if err != nil {
		return 0, err
	}
	ok := resp.StatusCode >= 200 && resp.StatusCode <= 299
	if out != nil && (ok || isJSON(resp)) {
		if err := json.Unmarshal(b, out); err != nil && ok {
			return resp.StatusCode, fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	if !ok {
		return resp.StatusCode, apiError(resp, b)
	}
	return resp.StatusCode, nil
}

// maxAnswer bounds what the client reads of one answer (a value is at most
// a few MiB; status documents are small).
const maxAnswer = 256 << 20

func (c *Client) do(ctx context.Context, method, path string, body []byte, hdr map[string]string) (*http.Response, []byte, error) {
	if c.err != nil {
		return nil, nil, c.err
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		// *url.Error repeats method and URL in its message; keep its cause
		// (still matched by errors.Is, e.g. syscall.ECONNREFUSED or
		// context.DeadlineExceeded).
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, nil, fmt.Errorf("%s %s: %w", method, c.base+path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: read answer: %w", method, c.base, err)
	}
	return resp, b, nil
}

func apiError(resp *http.Response, body []byte) error {
	var eb struct {
		Error string `json:"error"`
	}
	msg := strings.TrimSpace(string(body))
	if json.Unmarshal(body, &eb) == nil && eb.Error != "" {
		msg = eb.Error
	}
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	return &Error{Status: resp.StatusCode, Msg: msg, Token: resp.Request != nil && resp.Request.Header.Get("Authorization") != ""}
}
