package rpc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rumorkv/rumor/node/tlsutil"
)

// testPKI is a CA and certificates it signed, for TLS tests.
type testPKI struct {
	pool *x509.CertPool
	ca   *tlsutil.Cert
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	ca, err := tlsutil.NewCA(tlsutil.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca.CertPEM) {
		t.Fatal("CA does not parse")
	}
	return &testPKI{pool: pool, ca: ca}
}

// cert returns a loopback certificate signed by the CA.
func (p *testPKI) cert(t testing.TB, name string) tls.Certificate {
	t.Helper()
	c, err := tlsutil.NewCert(p.ca.CertPEM, p.ca.KeyPEM, tlsutil.CertOptions{CommonName: name, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	if err != nil {
		t.Fatal(err)
	}
	kp, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// server is a TLS 1.3 configuration that requires a client certificate of
// the CA.
func (p *testPKI) server(t testing.TB) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{p.cert(t, "server")},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    p.pool,
	}
}

// client returns a Client's TLS option: the CA verifies the server, cert
// (if any) is presented.
func (p *testPKI) client(cert *tls.Certificate, maxVersion uint16) func(string) *tls.Config {
	return func(string) *tls.Config {
		c := &tls.Config{RootCAs: p.pool, MaxVersion: maxVersion}
		if cert != nil {
			c.Certificates = []tls.Certificate{*cert}
		}
		return c
	}
}

// Calls work over mutual TLS, the server name being taken from the address
// dialed; clients without a certificate of the CA, or limited to TLS 1.2,
// fail and are counted.
func TestTLS(t *testing.T) {
	checkLeaks(t)
	pki := newTestPKI(t)
	s, addr := tcpServer(t, echo, ServerOptions{TLS: pki.server(t), Logger: quiet})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	good := pki.cert(t, "client")
	c := newClient(t, ClientOptions{TLS: pki.client(&good, 0), Logger: quiet})
	for i := range 20 {
		body := []byte{byte(i)}
		out, err := c.Call(ctx, addr, 1, body)
		if err != nil || string(out) != string(body) {
			t.Fatalf("call %d over TLS: %q, %v", i, out, err)
		}
	}
	if st := c.Stats(); st.HandshakeFailures != 0 || st.Dials == 0 {
		t.Fatalf("client stats %+v", st)
	}

	other := newTestPKI(t).cert(t, "intruder")
	for _, tc := range []struct {
		name string
		tls  func(string) *tls.Config
		// clientFails: the client's own handshake fails (TLS 1.3 lets a
		// client finish before the server has judged its certificate).
		clientFails bool
	}{
		{"no certificate", pki.client(nil, 0), false},
		{"another CA's certificate", pki.client(&other, 0), false},
		{"TLS 1.2 only", pki.client(&good, tls.VersionTLS12), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := s.Stats().HandshakeFailures
			bad := newClient(t, ClientOptions{TLS: tc.tls, Logger: quiet})
			out, err := bad.Call(ctx, addr, 1, []byte("secret?"))
			if err == nil || !errors.Is(err, ErrConnection) || out != nil {
				t.Fatalf("call: %q, %v; want a connection error", out, err)
			}
			if got := bad.Stats().HandshakeFailures; (got == 1) != tc.clientFails {
				t.Errorf("client counted %d handshake failures (client fails: %v): %v", got, tc.clientFails, err)
			}
			waitFor(t, func() bool { return s.Stats().HandshakeFailures == before+1 })
			if s.Stats().Calls != 20 {
				t.Errorf("server handled %d calls, want the 20 good ones", s.Stats().Calls)
			}
		})
	}
	// The good client still gets answers.
	if _, err := c.Call(ctx, addr, 1, []byte("x")); err != nil {
		t.Fatal(err)
	}
}

// A connection that never starts its handshake (a port scanner, a plain
// TCP client) is closed after HandshakeTimeout; a client whose server
// never answers the handshake gives up after its own.
func TestTLSHandshakeTimeouts(t *testing.T) {
	checkLeaks(t)
	pki := newTestPKI(t)
	s, addr := tcpServer(t, echo, ServerOptions{TLS: pki.server(t), HandshakeTimeout: 200 * time.Millisecond, Logger: quiet})
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	rawConn{t, conn}.expectClosed()
	if d := time.Since(start); d < 150*time.Millisecond || d > 3*time.Second {
		t.Errorf("silent connection closed after %v, want about 200ms", d)
	}
	waitFor(t, func() bool { return s.Stats().HandshakeFailures == 1 })

	// A listener that accepts and says nothing.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- c
		}
	}()
	good := pki.cert(t, "client")
	c := newClient(t, ClientOptions{TLS: pki.client(&good, 0), HandshakeTimeout: 200 * time.Millisecond, Logger: quiet})
	start = time.Now()
	_, err = c.Call(context.Background(), ln.Addr().String(), 1, nil)
	if d := time.Since(start); err == nil || !errors.Is(err, ErrNotSent) || !strings.Contains(err.Error(), "TLS handshake") || d > 3*time.Second {
		t.Fatalf("call to a silent server: %v after %v; want a TLS handshake error after about 200ms", err, d)
	}
	if st := c.Stats(); st.HandshakeFailures != 1 || st.DialFailures != 1 {
		t.Errorf("client stats %+v", st)
	}
	(<-accepted).Close()
}
