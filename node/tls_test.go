package node

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rumorkv/rumor/crdt"
	"github.com/rumorkv/rumor/node/tlsutil"
)

// testPKI is a CA in a directory, and the certificates it signs.
type testPKI struct {
	dir    string
	ca     *tlsutil.Cert
	caFile string
	pool   *x509.CertPool
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	ca, err := tlsutil.NewCA(tlsutil.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{dir: t.TempDir(), ca: ca, pool: x509.NewCertPool()}
	p.caFile = filepath.Join(p.dir, "ca.pem")
	if err := os.WriteFile(p.caFile, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	p.pool.AppendCertsFromPEM(ca.CertPEM)
	return p
}

// loopback are the names of a certificate for a node on this machine.
var loopback = tlsutil.CertOptions{DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}

// cert makes a certificate for name with options o (its CommonName is
// name).
func (p *testPKI) cert(t testing.TB, name string, o tlsutil.CertOptions) *tlsutil.Cert {
	t.Helper()
	o.CommonName = name
	c, err := tlsutil.NewCert(p.ca.CertPEM, p.ca.KeyPEM, o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// files writes a certificate and its key to files named after name.
func (p *testPKI) files(t testing.TB, name string, c *tlsutil.Cert) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(p.dir, name+".pem"), filepath.Join(p.dir, name+"-key.pem")
	if err := os.WriteFile(certFile, c.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, c.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// nodeTLS is the TLS configuration of a loopback node named name.
func (p *testPKI) nodeTLS(t testing.TB, name string) *TLSConfig {
	t.Helper()
	cf, kf := p.files(t, name, p.cert(t, name, loopback))
	return &TLSConfig{CAFile: p.caFile, CertFile: cf, KeyFile: kf}
}

func keyPair(t testing.TB, c *tlsutil.Cert) tls.Certificate {
	t.Helper()
	kp, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// rawPeerRead sends a peer RPC methodRead request for key over conn, as
// any process could, and returns every byte that comes back before the
// connection ends (or 3 s pass) with the error that ended the read.
func rawPeerRead(t testing.TB, conn net.Conn, key []byte) ([]byte, error) {
	t.Helper()
	body, err := encode(&readReq{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	// doc.go in node/rpc: u32 length, version 1, kind 1 (request), u64 id,
	// u16 method, u32 timeout in ms, body.
	f := binary.BigEndian.AppendUint32(nil, uint32(1+1+8+2+4+len(body)))
	f = append(f, 1, 1)
	f = binary.BigEndian.AppendUint64(f, 7)
	f = binary.BigEndian.AppendUint16(f, methodRead)
	f = binary.BigEndian.AppendUint32(f, 2000)
	f = append(f, body...)
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	_, werr := conn.Write(f) // may fail: the server may already have hung up
	got, rerr := io.ReadAll(conn)
	if rerr == nil {
		rerr = werr
	}
	return got, rerr
}

// oneFrame makes a connection's stream end (EOF) after the first peer RPC
// frame it carries, so that rawPeerRead returns once the answer is in.
type oneFrame struct {
	net.Conn
	left int // bytes of the frame still to read; -1 before its length
	hdr  []byte
}

func (c *oneFrame) Read(p []byte) (int, error) {
	if len(c.hdr) < 4 {
		n, err := c.Conn.Read(p[:min(len(p), 4-len(c.hdr))])
		c.hdr = append(c.hdr, p[:n]...)
		if len(c.hdr) == 4 {
			c.left = int(binary.BigEndian.Uint32(c.hdr))
		}
		return n, err
	}
	if c.left == 0 {
		return 0, io.EOF
	}
	n, err := c.Conn.Read(p[:min(len(p), c.left)])
	c.left -= n
	return n, err
}

// onlyTLSAlerts reports whether b is nothing but TLS alert records (what a
// TLS server may send a client it refuses).
func onlyTLSAlerts(b []byte) bool {
	for len(b) > 0 {
		if len(b) < 5 || b[0] != 21 { // content type 21: alert
			return false
		}
		n := 5 + int(binary.BigEndian.Uint16(b[3:5]))
		if len(b) < n {
			return false
		}
		b = b[n:]
	}
	return true
}

// A cluster whose nodes authenticate each other with mutual TLS works as
// usual (replication, reads, anti-entropy, the client API over HTTPS); a
// process without a valid node certificate of the cluster's CA reads
// nothing over peer RPC, and the node keeps serving.
func TestMutualTLSCluster(t *testing.T) {
	pki := newTestPKI(t)
	nodes := startCluster(t, 3, func(c *Config) {
		c.TLS = pki.nodeTLS(t, c.Name)
		c.AEInterval = 200 * time.Millisecond
	})
	ctx, cancel := context.WithTimeout(bg, 30*time.Second)
	defer cancel()

	// Every node announces an HTTPS client API.
	for _, n := range nodes {
		for _, m := range n.Members() {
			if !strings.HasPrefix(m.HTTP, "https://127.0.0.1:") {
				t.Fatalf("%s lists %s's client API as %q, want https://127.0.0.1:…", n.Name(), m.Name, m.HTTP)
			}
		}
	}

	// Replication and quorum reads go over peer RPC.
	secret := []byte("top-secret-value-7f3a")
	key := []byte("secret")
	if _, err := nodes[0].Put(ctx, key, secret, &WriteOptions{W: All}); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		res, err := n.Get(ctx, key, &ReadOptions{R: All})
		if err != nil || len(res.Siblings) != 1 || !bytes.Equal(res.Values()[0], secret) {
			t.Fatalf("%s reads %v, %v", n.Name(), res, err)
		}
	}

	// Anti-entropy: states written into one replica only reach the others.
	actor := crdt.ActorID(nodes[0].ID())
	byName := map[string]*testNode{}
	for _, n := range nodes {
		byName[n.Name()] = n
	}
	for i := range 30 {
		k := fmt.Appendf(nil, "ae-%d", i)
		c, err := nodes[0].store.NextCounter()
		if err != nil {
			t.Fatal(err)
		}
		state, err := crdt.Register{}.Write(crdt.Dot{Actor: actor, Counter: c}, nil, nodes[0].clock.Now(), []byte("v"), false).MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := byName[nodes[0].Replicas(k)[0]].mergeBatch([]aePair{{Key: k, State: state}}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 15*time.Second, func() error { return replicasIdentical(t, nodes) })
	pulled := uint64(0)
	for _, n := range nodes {
		pulled += n.AntiEntropy().KeysPulled
	}
	if pulled < 60 {
		t.Fatalf("anti-entropy pulled %d states, want at least 60 (30 keys to 2 more replicas)", pulled)
	}
	for _, n := range nodes {
		if a, b := n.rpcSrv.Stats().HandshakeFailures, n.rpc.Stats().HandshakeFailures; a != 0 || b != 0 {
			t.Fatalf("%s: %d failed handshakes served, %d dialed between valid peers", n.Name(), a, b)
		}
	}

	t.Run("https", func(t *testing.T) {
		url := nodes[0].HTTPAddr() + "/v1/kv/secret"
		hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.pool}}}
		resp, body := httpDo(t, hc, http.MethodGet, url, nil, false, nil)
		if resp.StatusCode != http.StatusOK || !bytes.Equal(body, secret) {
			t.Fatalf("GET over HTTPS: %d %q", resp.StatusCode, body)
		}
		if resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
			t.Fatalf("answer not over TLS: %+v", resp.TLS)
		}
		// Plain HTTP to the HTTPS port: net/http's clear 400.
		resp, body = httpDo(t, http.DefaultClient, http.MethodGet, "http://"+nodes[0].HTTPListenAddr()+"/v1/kv/secret", nil, false, nil)
		if resp.StatusCode != http.StatusBadRequest || bytes.Contains(body, secret) || !strings.Contains(string(body), "HTTPS server") {
			t.Fatalf("plain HTTP to the HTTPS port: %d %q", resp.StatusCode, body)
		}
		// A client that does not trust the cluster's CA.
		before := nodes[0].metrics.httpHandshakeFailures.Load()
		_, err := (&http.Client{Timeout: 5 * time.Second}).Get(url)
		var ua x509.UnknownAuthorityError
		if !errors.As(err, &ua) {
			t.Fatalf("client without the CA: %v, want an unknown authority", err)
		}
		eventually(t, 5*time.Second, func() error {
			if got := nodes[0].metrics.httpHandshakeFailures.Load(); got <= before {
				return fmt.Errorf("HTTP handshake failures %d, want more than %d", got, before)
			}
			return nil
		})
		// A TCP probe (connect, close) is not counted as a failure.
		before = nodes[0].metrics.httpHandshakeFailures.Load()
		for range 5 {
			c, err := net.Dial("tcp", nodes[0].HTTPListenAddr())
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
		}
		// A health GET over HTTPS after the probes: once it is answered,
		// the server has seen the probes' connections end.
		resp, _ = httpDo(t, hc, http.MethodGet, nodes[0].HTTPAddr()+"/v1/health", nil, false, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("health: %d", resp.StatusCode)
		}
		time.Sleep(200 * time.Millisecond)
		if got := nodes[0].metrics.httpHandshakeFailures.Load(); got != before {
			t.Errorf("5 TCP probes counted as %d failed handshakes", got-before)
		}
	})

	t.Run("peer RPC", func(t *testing.T) {
		target := nodes[0].RPCListenAddr()
		other := newTestPKI(t)
		good := keyPair(t, pki.cert(t, "probe", loopback))
		expiredOpts := loopback
		expiredOpts.NotBefore, expiredOpts.Validity = time.Now().Add(-48*time.Hour), 24*time.Hour
		clientOnlyOpts := loopback
		clientOnlyOpts.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
		tlsClient := func(cert *tlsutil.Cert, maxVersion uint16) *tls.Config {
			c := &tls.Config{RootCAs: pki.pool, ServerName: "127.0.0.1", MaxVersion: maxVersion}
			if cert != nil {
				c.Certificates = []tls.Certificate{keyPair(t, cert)}
			}
			return c
		}
		before := nodes[0].rpcSrv.Stats().HandshakeFailures
		cases := []struct {
			name string
			cfg  *tls.Config // nil: plain TCP
		}{
			{"plaintext", nil},
			{"TLS without a certificate", tlsClient(nil, 0)},
			{"certificate of another CA", tlsClient(other.cert(t, "intruder", loopback), 0)},
			{"expired certificate of the CA", tlsClient(pki.cert(t, "expired", expiredOpts), 0)},
			{"TLS 1.2 only", &tls.Config{RootCAs: pki.pool, ServerName: "127.0.0.1", MaxVersion: tls.VersionTLS12, Certificates: []tls.Certificate{good}}},
			{"client-only certificate of the CA", tlsClient(pki.cert(t, "cli", clientOnlyOpts), 0)},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				conn, err := net.DialTimeout("tcp", target, 3*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				var c net.Conn = conn
				if tc.cfg != nil {
					tc := tls.Client(conn, tc.cfg)
					_ = tc.SetDeadline(time.Now().Add(3 * time.Second))
					if err := tc.Handshake(); err != nil {
						t.Logf("client handshake: %v", err)
					}
					c = tc
				}
				got, err := rawPeerRead(t, c, key)
				t.Logf("read: %d bytes, %v", len(got), err)
				if bytes.Contains(got, secret) {
					t.Fatalf("the value came back: %q", got)
				}
				if tc.cfg == nil && !onlyTLSAlerts(got) {
					t.Fatalf("plaintext client got %q, want at most TLS alerts", got)
				}
				if tc.cfg != nil && len(got) != 0 {
					t.Fatalf("TLS client got %q, want nothing", got)
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("the server did not close the connection: %v", err)
				}
				if tc.cfg != nil && err == nil {
					t.Fatal("the TLS connection ended without an error, want the server's refusal")
				}
			})
		}
		if got := nodes[0].rpcSrv.Stats().HandshakeFailures - before; got != uint64(len(cases)) {
			t.Errorf("server counted %d failed handshakes, want %d", got, len(cases))
		}

		// The same request with a node certificate gets the value: the
		// refusals above are about the certificates, not the request.
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", target, tlsClient(pki.cert(t, "probe", loopback), 0))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		got, err := rawPeerRead(t, &oneFrame{Conn: conn}, key)
		if !bytes.Contains(got, secret) {
			t.Fatalf("a valid node certificate read %q (%v), want the value", got, err)
		}

		// The node keeps serving its peers and clients.
		if _, err := nodes[1].Put(ctx, []byte("after"), []byte("ok"), &WriteOptions{W: All}); err != nil {
			t.Fatal(err)
		}
		if res, err := nodes[2].Get(ctx, []byte("after"), &ReadOptions{R: All}); err != nil || string(res.Values()[0]) != "ok" {
			t.Fatalf("after the probes: %v, %v", res, err)
		}
	})
}

// A node refuses to start with TLS files that do not fit together, and
// says why.
func TestTLSConfigErrors(t *testing.T) {
	pki := newTestPKI(t)
	other := newTestPKI(t)
	good := pki.nodeTLS(t, "good")
	foreignCert, foreignKey := other.files(t, "foreign", other.cert(t, "foreign", loopback))
	cliOpts := loopback
	cliOpts.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	cliCert, cliKey := pki.files(t, "cli", pki.cert(t, "cli", cliOpts))
	expOpts := loopback
	expOpts.NotBefore, expOpts.Validity = time.Now().Add(-48*time.Hour), time.Hour
	expCert, expKey := pki.files(t, "expired", pki.cert(t, "expired", expOpts))
	for _, tc := range []struct {
		name string
		tls  TLSConfig
		want string
	}{
		{"missing key", TLSConfig{CAFile: good.CAFile, CertFile: good.CertFile}, "KeyFile not set"},
		{"no such CA file", TLSConfig{CAFile: filepath.Join(pki.dir, "nope.pem"), CertFile: good.CertFile, KeyFile: good.KeyFile}, "no such file"},
		{"CA file without a certificate", TLSConfig{CAFile: good.KeyFile, CertFile: good.CertFile, KeyFile: good.KeyFile}, "no PEM certificate"},
		{"key of another certificate", TLSConfig{CAFile: good.CAFile, CertFile: good.CertFile, KeyFile: foreignKey}, "private key does not match"},
		{"certificate of another CA", TLSConfig{CAFile: good.CAFile, CertFile: foreignCert, KeyFile: foreignKey}, "unknown authority"},
		{"client-only certificate", TLSConfig{CAFile: good.CAFile, CertFile: cliCert, KeyFile: cliKey}, "incompatible key usage"},
		{"expired certificate", TLSConfig{CAFile: good.CAFile, CertFile: expCert, KeyFile: expKey}, "expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t, "n1", "")
			cfg.InMemory = true
			cfg.TLS = &tc.tls
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate: %v, want an error with %q", err, tc.want)
			}
			if _, err := Open(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open: %v, want an error with %q", err, tc.want)
			}
		})
	}
	cfg := testConfig(t, "n1", "")
	cfg.InMemory = true
	cfg.TLS = good
	if err := cfg.Validate(); err != nil {
		t.Fatalf("good files: %v", err)
	}
}

// By default a dialing node checks the peer's chain and usages only; with
// VerifyHostname the certificate must also name the address dialed.
func TestTLSVerifyHostname(t *testing.T) {
	pki := newTestPKI(t)
	elsewhere := tlsutil.CertOptions{DNSNames: []string{"elsewhere.example"}, IPs: []net.IP{net.IPv4(10, 9, 8, 7)}}
	client := pki.nodeTLS(t, "client")
	for _, tc := range []struct {
		server         tlsutil.CertOptions
		verifyHostname bool
		want           string // "" = success
	}{
		{loopback, false, ""},
		{loopback, true, ""},
		{elsewhere, false, ""},
		{elsewhere, true, "not 127.0.0.1"},
	} {
		t.Run(fmt.Sprintf("%v/verify=%v", tc.server.IPs, tc.verifyHostname), func(t *testing.T) {
			cf, kf := pki.files(t, "server", pki.cert(t, "server", tc.server))
			srv, err := newTLSCreds(&TLSConfig{CAFile: pki.caFile, CertFile: cf, KeyFile: kf})
			if err != nil {
				t.Fatal(err)
			}
			ln, err := tls.Listen("tcp", "127.0.0.1:0", srv.peerServerConfig())
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				c, err := ln.Accept()
				if err == nil {
					_ = c.SetDeadline(time.Now().Add(3 * time.Second))
					_ = c.(*tls.Conn).Handshake()
					c.Close()
				}
			}()
			cc := *client
			cc.VerifyHostname = tc.verifyHostname
			cr, err := newTLSCreds(&cc)
			if err != nil {
				t.Fatal(err)
			}
			addr := ln.Addr().String()
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", addr, cr.peerClientConfig(addr))
			if conn != nil {
				conn.Close()
			}
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("handshake: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("handshake: %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// ReloadTLS swaps the certificate for new connections; files that do not
// load leave the current one in place.
func TestReloadTLS(t *testing.T) {
	pki := newTestPKI(t)
	cfg := testConfig(t, "n1", "")
	cfg.InMemory = true
	cfg.TLS = pki.nodeTLS(t, "n1")
	n := openNode(t, cfg)
	served := func() string {
		t.Helper()
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", n.HTTPListenAddr(), &tls.Config{RootCAs: pki.pool, ServerName: "localhost"})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	first := served()
	next := pki.cert(t, "n1", loopback)
	pki.files(t, "n1", next)
	if err := n.ReloadTLS(); err != nil {
		t.Fatal(err)
	}
	leaf, err := tlsutil.ParseCert(next.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	if got := served(); got == first || got != leaf.SerialNumber.String() {
		t.Fatalf("after reload the node serves certificate %s, want %s (was %s)", got, leaf.SerialNumber, first)
	}
	if err := os.WriteFile(cfg.TLS.KeyFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := n.ReloadTLS(); err == nil {
		t.Fatal("reload with a broken key succeeded")
	}
	if got := served(); got != leaf.SerialNumber.String() {
		t.Fatalf("after a failed reload the node serves %s, want %s", got, leaf.SerialNumber)
	}
}
