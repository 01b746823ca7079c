package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rumorkv/rumor/cli/client"
	"github.com/rumorkv/rumor/node"
	"github.com/rumorkv/rumor/node/tlsutil"
)

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tlsutil.ParseCert(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

func wantMode(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != mode {
		t.Errorf("%s has mode %v, want %v", path, fi.Mode().Perm(), mode)
	}
}

// approx checks that d is within a day of want.
func approx(t *testing.T, what string, d, want time.Duration) {
	t.Helper()
	if d < want-24*time.Hour || d > want+24*time.Hour {
		t.Errorf("%s: %v, want about %v", what, d, want)
	}
}

// rumor tls ca and rumor tls cert write a CA and node certificates that
// parse, chain, carry the names and usages asked for, keep their keys
// private, and never overwrite anything.
func TestTLSCommands(t *testing.T) {
	dir := t.TempDir()
	r := ok(t, "tls", "ca", "--dir", dir)
	caPath, caKeyPath := filepath.Join(dir, "rumor-agent-ca.pem"), filepath.Join(dir, "rumor-agent-ca-key.pem")
	if !strings.Contains(r.stdout, caPath) || !strings.Contains(r.stdout, caKeyPath) {
		t.Errorf("ca output does not name the files: %v", r)
	}
	ca := readCert(t, caPath)
	if !ca.IsCA || ca.KeyUsage&x509.KeyUsageCertSign == 0 || !strings.HasPrefix(ca.Subject.CommonName, "Rumor Agent CA ") {
		t.Errorf("CA certificate: IsCA %v, usage %v, CN %q", ca.IsCA, ca.KeyUsage, ca.Subject.CommonName)
	}
	if pub, ok := ca.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("CA key is %T, want ECDSA P-256", ca.PublicKey)
	}
	approx(t, "CA validity", ca.NotAfter.Sub(ca.NotBefore), 5*365*24*time.Hour)
	wantMode(t, caKeyPath, 0o600)
	wantMode(t, caPath, 0o644)
	caBytes, _ := os.ReadFile(caPath)

	// Never overwritten, with or without "create".
	wantError(t, rumor(t, "tls", "ca", "--dir", dir), exitError, "already exists", "not overwriting")
	wantError(t, rumor(t, "tls", "ca", "create", "--dir", dir), exitError, "already exists")
	if b, _ := os.ReadFile(caPath); string(b) != string(caBytes) {
		t.Fatal("the CA certificate changed")
	}

	// A node certificate with the names asked for.
	r = ok(t, "tls", "cert", "--dir", dir, "--node", "n1", "--ip", "10.0.0.1", "--ip", "10.0.0.2,127.0.0.1", "--dns", "n1.example,n1.local", "--days", "30")
	certPath, keyPath := filepath.Join(dir, "rumor-n1.pem"), filepath.Join(dir, "rumor-n1-key.pem")
	if !strings.Contains(r.stdout, certPath) || !strings.Contains(r.stdout, keyPath) {
		t.Errorf("cert output does not name the files: %v", r)
	}
	cert := readCert(t, certPath)
	wantMode(t, keyPath, 0o600)
	wantMode(t, certPath, 0o644)
	if _, err := tls.LoadX509KeyPair(certPath, keyPath); err != nil {
		t.Fatalf("certificate and key do not match: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
			t.Errorf("node certificate does not chain to the CA for usage %v: %v", u, err)
		}
	}
	if cert.Subject.CommonName != "n1" || !slices.Equal(cert.DNSNames, []string{"localhost", "n1.example", "n1.local"}) {
		t.Errorf("CN %q, DNS names %q", cert.Subject.CommonName, cert.DNSNames)
	}
	var ips []string
	for _, ip := range cert.IPAddresses {
		ips = append(ips, ip.String())
	}
	if !slices.Equal(ips, []string{"127.0.0.1", "10.0.0.1", "10.0.0.2"}) {
		t.Errorf("IP SANs %q", ips)
	}
	if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) || cert.IsCA {
		t.Errorf("usages %v, IsCA %v", cert.ExtKeyUsage, cert.IsCA)
	}
	for _, h := range []string{"localhost", "n1.example", "127.0.0.1", "10.0.0.2"} {
		if err := cert.VerifyHostname(h); err != nil {
			t.Errorf("certificate does not name %s: %v", h, err)
		}
	}
	if cert.VerifyHostname("10.0.0.3") == nil {
		t.Error("certificate names 10.0.0.3, which was not asked for")
	}
	approx(t, "node validity", cert.NotAfter.Sub(cert.NotBefore), 30*24*time.Hour)
	wantError(t, rumor(t, "tls", "cert", "--dir", dir, "--node", "n1"), exitError, "rumor-n1", "already exists")

	// -o json, create, the CA named explicitly, another directory, the
	// default validity.
	other := t.TempDir()
	r = ok(t, "tls", "cert", "create", "--node", "n2", "--dir", other, "--ca", caPath, "--ca-key", caKeyPath, "-o", "json")
	var js struct {
		Cert string   `json:"cert_file"`
		Key  string   `json:"key_file"`
		CA   string   `json:"ca_file"`
		DNS  []string `json:"dns"`
		IPs  []string `json:"ips"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &js); err != nil {
		t.Fatalf("json: %v: %v", err, r)
	}
	if js.Cert != filepath.Join(other, "rumor-n2.pem") || js.Key != filepath.Join(other, "rumor-n2-key.pem") || js.CA != caPath ||
		!slices.Equal(js.DNS, []string{"localhost"}) || !slices.Equal(js.IPs, []string{"127.0.0.1"}) {
		t.Errorf("json output %+v", js)
	}
	approx(t, "default node validity", readCert(t, js.Cert).NotAfter.Sub(readCert(t, js.Cert).NotBefore), 365*24*time.Hour)
	wantMode(t, js.Key, 0o600)
	r = ok(t, "tls", "ca", "create", "--dir", filepath.Join(other, "sub"), "--days", "10", "--common-name", "Test CA", "-o", "json")
	var cajs map[string]string
	if err := json.Unmarshal([]byte(r.stdout), &cajs); err != nil || cajs["ca_file"] != filepath.Join(other, "sub", "rumor-agent-ca.pem") ||
		cajs["ca_key_file"] != filepath.Join(other, "sub", "rumor-agent-ca-key.pem") {
		t.Fatalf("ca json: %v %v", cajs, err)
	}
	if c := readCert(t, cajs["ca_file"]); c.Subject.CommonName != "Test CA" {
		t.Errorf("CN %q", c.Subject.CommonName)
	}
	// A certificate never outlives its CA.
	r = ok(t, "tls", "cert", "--dir", filepath.Join(other, "sub"), "--node", "short")
	if c := readCert(t, filepath.Join(other, "sub", "rumor-short.pem")); c.NotAfter.After(readCert(t, cajs["ca_file"]).NotAfter) {
		t.Errorf("certificate expires %v, after its CA", c.NotAfter)
	}
	if !strings.Contains(r.err, "expires with the CA") {
		t.Errorf("no note about the capped validity: %v", r)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"tls", "cert", "--dir", dir}, "needs --node NAME"},
		{[]string{"tls", "cert", "--dir", dir, "--node", "../x"}, `bad --node "../x"`},
		{[]string{"tls", "cert", "--dir", dir, "--node", "x", "--ip", "10.0.0"}, `bad --ip "10.0.0"`},
		{[]string{"tls", "cert", "--dir", dir, "--node", "x", "--dns", "10.0.0.1"}, "goes in --ip"},
		{[]string{"tls", "cert", "--dir", t.TempDir(), "--node", "x"}, "rumor tls ca"},
		{[]string{"tls", "cert", "--dir", dir, "--node", "x", "--ca-key", keyPath}, "CA key does not match"},
		{[]string{"tls", "cert", "--dir", dir, "--node", "x", "--days", "0"}, "--days must be from 1 to 36500"},
		{[]string{"tls", "ca", "--dir", t.TempDir(), "--days", "200000"}, "--days must be from 1 to 36500"},
		{[]string{"tls", "ca", "--dir", t.TempDir(), "extra"}, `takes no arguments, got "extra"`},
		{[]string{"tls", "bogus"}, `unknown tls command "bogus"`},
		{[]string{"tls", "ca", "--bogus"}, "flag provided but not defined"},
	} {
		wantError(t, rumor(t, tc.args...), exitError, tc.want)
	}
	if _, err := os.Stat(filepath.Join(dir, "rumor-x.pem")); err == nil {
		t.Error("a failed cert command left a file behind")
	}
	fish := ok(t, "completion", "fish").stdout
	for _, want := range []string{"'__fish_seen_subcommand_from tls' -a 'cert'", "'__fish_seen_subcommand_from cert' -l node"} {
		if !strings.Contains(fish, want) {
			t.Errorf("fish completion lacks %q", want)
		}
	}
}

// tlsPKI makes a CA and a certificate for node NAME with the CLI, in dir.
func tlsPKI(t *testing.T, dir string, names ...string) (caPath string) {
	t.Helper()
	ok(t, "tls", "ca", "--dir", dir)
	for _, n := range names {
		ok(t, "tls", "cert", "--dir", dir, "--node", n)
	}
	return filepath.Join(dir, "rumor-agent-ca.pem")
}

// An agent started with certificates from rumor tls serves HTTPS: the CLI
// reaches it with --addr https://… and --cacert (or RUMOR_CACERT), and
// says clearly what is wrong without the CA, or over plain HTTP.
func TestAgentTLS(t *testing.T) {
	dir := t.TempDir()
	ca := tlsPKI(t, dir, "n1")
	bind, rpc, http := freeAddr(t), closedAddr(t), closedAddr(t)
	a := startAgent(t, "--name", "n1", "--in-memory", "--bind", bind, "--rpc", rpc, "--http", http, "--log-level", "error",
		"--tls-ca", ca, "--tls-cert", filepath.Join(dir, "rumor-n1.pem"), "--tls-key", filepath.Join(dir, "rumor-n1-key.pem"))
	https := "https://" + http
	// Polled with the client package: running the CLI while the agent
	// parses its flags races on urfave/cli's global help flag.
	hc := client.New(https, &client.Options{Timeout: time.Second, CACertFile: ca})
	eventually(t, 15*time.Second, func() error {
		var h map[string]any
		return hc.GetJSON(context.Background(), "/v1/health", &h)
	})
	if !strings.Contains(a.stderr.String(), "http "+https) {
		t.Errorf("startup line does not announce %s:\n%s", https, a.stderr)
	}
	ok(t, "put", "k", "v", "--addr", https, "--cacert", ca)
	if r := ok(t, "get", "k", "--addr", https, "--cacert", ca); r.stdout != "v\n" {
		t.Fatalf("%v", r)
	}
	t.Setenv("RUMOR_CACERT", ca)
	if r := ok(t, "--addr", https, "get", "k"); r.stdout != "v\n" {
		t.Fatalf("with RUMOR_CACERT: %v", r)
	}
	ms := decode[[]node.MemberInfo](t, ok(t, "members", "-o", "json", "--addr", https))
	if len(ms) != 1 || ms[0].HTTP != https {
		t.Fatalf("members: %+v", ms)
	}
	t.Setenv("RUMOR_CACERT", "")

	wantError(t, rumor(t, "get", "k", "--addr", https), exitError,
		"x509: certificate signed by unknown authority — pass --cacert")
	wantError(t, rumor(t, "get", "k", "--addr", http, "--cacert", ca), exitError,
		"HTTP request to an HTTPS server", "the node serves HTTPS: use --addr https://")
	wantError(t, rumor(t, "get", "k", "--addr", https, "--cacert", filepath.Join(dir, "nope.pem")), exitError,
		"read CA certificate", "nope.pem")
	// A CA that did not sign the node's certificate.
	otherCA := tlsPKI(t, t.TempDir())
	wantError(t, rumor(t, "get", "k", "--addr", https, "--cacert", otherCA), exitError, "unknown authority — pass --cacert")
	// A name the certificate does not carry (it has localhost and
	// 127.0.0.1 only).
	_, port, _ := net.SplitHostPort(http)
	if addrs, err := net.LookupHost("localhost"); err == nil && slices.Contains(addrs, "127.0.0.1") {
		ok(t, "get", "k", "--addr", "https://localhost:"+port, "--cacert", ca)
	}

	// --tls-* go together.
	wantError(t, rumor(t, "agent", "--in-memory", "--tls-ca", ca), exitError, "--tls-ca, --tls-cert and --tls-key go together")
	wantError(t, rumor(t, "agent", "--in-memory", "--tls-verify-hostname"), exitError, "--tls-verify-hostname needs")
	wantError(t, rumor(t, "agent", "--in-memory", "--bind", freeAddr(t), "--rpc", closedAddr(t), "--http", closedAddr(t), "--tls-ca", otherCA,
		"--tls-cert", filepath.Join(dir, "rumor-n1.pem"), "--tls-key", filepath.Join(dir, "rumor-n1-key.pem")), exitError, "unknown authority")

	if code := a.stop(t); code != 0 {
		t.Errorf("exit %d; stderr:\n%s", code, a.stderr)
	}
}

// A plain https client to a plain HTTP node is told to drop https://; a
// node certificate that does not name the address is reported as such.
func TestTLSHints(t *testing.T) {
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer plain.Close()
	wantError(t, rumor(t, "members", "--addr", "https://"+strings.TrimPrefix(plain.URL, "http://")), exitError,
		"the node serves plain HTTP: use --addr HOST:PORT")

	dir := t.TempDir()
	ca := tlsPKI(t, dir)
	// A certificate for another address only (rumor tls cert always adds
	// 127.0.0.1, so it is made with the library).
	caPEM, _ := os.ReadFile(ca)
	caKeyPEM, _ := os.ReadFile(filepath.Join(dir, "rumor-agent-ca-key.pem"))
	far, err := tlsutil.NewCert(caPEM, caKeyPEM, tlsutil.CertOptions{CommonName: "far", IPs: []net.IP{net.IPv4(10, 1, 2, 3)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rumor-far.pem"), far.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rumor-far-key.pem"), far.KeyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	srv := tlsServer(t, dir, "far", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	wantError(t, rumor(t, "members", "--addr", srv.URL, "--cacert", ca), exitError,
		"not 127.0.0.1", "the node's certificate does not name the address in --addr")
}

// tlsServer starts an HTTPS test server with node name's certificate from
// dir.
func tlsServer(t *testing.T, dir, name string, h http.Handler) *httptest.Server {
	t.Helper()
	kp, err := tls.LoadX509KeyPair(filepath.Join(dir, "rumor-"+name+".pem"), filepath.Join(dir, "rumor-"+name+"-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{kp}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// While ranges move, rumor ring asks every member for its progress at the
// HTTPS address it announces, verified with --cacert.
func TestRingFollowsHTTPS(t *testing.T) {
	dir := t.TempDir()
	ca := tlsPKI(t, dir, "n1")
	eta := 3.0
	var srv *httptest.Server
	srv = tlsServer(t, dir, "n1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body any
		switch r.URL.Path {
		case "/v1/ring":
			body = node.RingInfo{N: 3, VNodes: 64, Moving: true, Members: []node.RingMemberInfo{
				{Name: "n1", ID: "01", State: "alive", Status: "joining", NextOwnership: 1, HTTP: srv.URL, RangesGaining: 5},
			}}
		case "/v1/status":
			body = map[string]any{"transfer": node.TransferStatus{State: "joining", Moving: true, KeysLeft: 4321, BytesLeft: 1 << 20, ETASeconds: &eta}}
		default:
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(body)
	}))
	if !strings.HasPrefix(srv.URL, "https://") {
		t.Fatalf("test server at %s", srv.URL)
	}
	out := ok(t, "ring", "--addr", srv.URL, "--cacert", ca).stdout
	if !regexpLine(out, "n1", "01", "-", "alive", "joining", "0.0%", "100.0%", "5/0", "4321", "1.0", "MiB", "3s") {
		t.Errorf("no progress row for n1 (fetched over HTTPS):\n%s", out)
	}
}
