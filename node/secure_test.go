package node

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// A cluster with everything on — gossip key, mutual TLS, client tokens —
// starts without Insecure and serves authenticated clients over HTTPS.
func TestSecureCluster(t *testing.T) {
	pki := newTestPKI(t)
	key := newKey(t, 32)
	nodes := startCluster(t, 3, func(c *Config) {
		c.Insecure = false
		c.GossipKeys = [][]byte{key}
		c.TLS = pki.nodeTLS(t, c.Name)
		c.Tokens = testTokens()
	})
	for _, n := range nodes {
		if g := n.cfg.SecurityGaps(); len(g) != 0 {
			t.Fatalf("%s runs without %q", n.Name(), g)
		}
	}
	caPEM, err := os.ReadFile(pki.caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	do := func(method, url, token, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	url := func(n *testNode, path string) string {
		addr := n.HTTPAddr()
		if !strings.HasPrefix(addr, "https://") {
			t.Fatalf("%s serves its client API at %q, not HTTPS", n.Name(), addr)
		}
		return addr + path
	}
	if code, body := do("PUT", url(nodes[0], "/v1/kv/k?w=all"), rwSecret, "v"); code != 200 {
		t.Fatalf("put with a read-write token: %d %s", code, body)
	}
	if code, _ := do("PUT", url(nodes[0], "/v1/kv/k"), roSecret, "x"); code != http.StatusForbidden {
		t.Fatalf("put with a read-only token: %d", code)
	}
	if code, _ := do("GET", url(nodes[1], "/v1/kv/k"), "", ""); code != http.StatusUnauthorized {
		t.Fatalf("get without a token: %d", code)
	}
	eventually(t, 10*time.Second, func() error {
		for _, n := range nodes {
			if code, body := do("GET", url(n, "/v1/kv/k?local=1"), roSecret, ""); code != 200 || body != "v" {
				return fmt.Errorf("%s: %d %q", n.Name(), code, body)
			}
		}
		return nil
	})
	if code, body := do("GET", url(nodes[2], "/v1/cluster"), roSecret, ""); code != 200 || strings.Count(body, `"state": "alive"`) != 3 {
		t.Fatalf("cluster status: %d %s", code, body)
	}
}
