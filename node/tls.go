package node

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// TLSConfig turns on TLS for a node: peer RPC runs TLS 1.3 only, with
// mutual authentication against the cluster's CA, and the client HTTP API
// is HTTPS with the same certificate (clients authenticate with tokens, not
// certificates, there).
//
// What a node checks of a peer, in both directions (the dialing node checks
// the server, the server checks the dialing node): the certificate chains
// to a CA in CAFile, is valid now, and carries both the serverAuth and
// clientAuth extended key usages (or none, which means any) — a node
// certificate, as `rumor tls cert` makes them; a certificate made for
// something else by the same CA is refused. By default the certificate's
// names are not compared with the address dialed (see VerifyHostname).
//
// Peers are dialed at the RPC addresses they advertise through gossip, so
// checking names would only say that the peer holds a certificate for the
// address it claims, which any node certificate of the CA can be made for;
// it costs a certificate per address change (NAT, port mappings, pod IPs
// that change on restart). Every node is equally trusted — any node may
// write any key — so holding a node certificate of the cluster's CA is what
// makes a process a peer, as with Consul's default
// verify_server_hostname = false. Keep the CA for the cluster alone and its
// key off the nodes.
type TLSConfig struct {
	// CAFile is a PEM file with the CA certificate(s) that peers'
	// certificates must chain to. Required.
	CAFile string
	// CertFile is this node's certificate (PEM; intermediates may follow
	// it) and KeyFile its private key (PEM). The certificate must chain to
	// CAFile and carry the node usages. Both required.
	CertFile, KeyFile string
	// VerifyHostname makes a dialing node also check that the peer's
	// certificate names the host of the address it dials (the peer's
	// advertised RPC address: an IP address must be among the
	// certificate's IP SANs, a name among its DNS SANs). Default false:
	// the chain and the usages only.
	VerifyHostname bool
}

// tlsCreds are a node's TLS credentials, reloadable (Node.ReloadTLS):
// connections handshake with whatever is current when they start.
type tlsCreds struct {
	cfg TLSConfig
	cur atomic.Pointer[tlsState]
}

// tlsState is one load of the files.
type tlsState struct {
	cert tls.Certificate
	pool *x509.CertPool
	// peerServer is the peer RPC server's configuration.
	peerServer *tls.Config
}

// Handshake failures, counted per endpoint for the metrics.
const (
	tlsRPCServer = "rpc_server"
	tlsRPCClient = "rpc_client"
	tlsHTTP      = "http"
)

func (c *TLSConfig) check() error {
	var missing []string
	for _, f := range []struct{ name, v string }{{"CAFile", c.CAFile}, {"CertFile", c.CertFile}, {"KeyFile", c.KeyFile}} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("TLS needs a CA, a certificate and its key: %s not set", strings.Join(missing, ", "))
	}
	return nil
}

// loadTLS reads and checks the files: the certificate must match its key,
// chain to the CA, be valid now and carry the node usages (the other nodes
// would refuse it otherwise).
func loadTLS(c *TLSConfig) (*tlsState, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(c.CAFile)
	if err != nil {
		return nil, fmt.Errorf("read TLS CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("TLS CA %s: no PEM certificate in it", c.CAFile)
	}
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate %s with key %s: %w", c.CertFile, c.KeyFile, err)
	}
	if _, err := verifyPeer(cert.Leaf, cert.Certificate[1:], pool, ""); err != nil {
		return nil, fmt.Errorf("TLS certificate %s (CA %s): %w", c.CertFile, c.CAFile, err)
	}
	st := &tlsState{cert: cert, pool: pool}
	st.peerServer = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		// The chain was verified (with the clientAuth usage) by the
		// handshake; the peer must hold a node certificate.
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no client certificate")
			}
			return nodeUsages(cs.PeerCertificates[0])
		},
	}
	return st, nil
}

// verifyPeer checks a peer's certificate: it chains to pool through
// intermediates, is valid now, names host (unless host is "") and carries
// the node usages.
func verifyPeer(leaf *x509.Certificate, intermediates [][]byte, pool *x509.CertPool, host string) ([][]*x509.Certificate, error) {
	inter := x509.NewCertPool()
	for _, der := range intermediates {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("intermediate certificate: %w", err)
		}
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         pool,
		Intermediates: inter,
		DNSName:       host,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return nil, err
	}
	return chains, nodeUsages(leaf)
}

// nodeUsages checks that c is a node certificate: usable as a server and
// as a client.
func nodeUsages(c *x509.Certificate) error {
	if len(c.ExtKeyUsage) == 0 || slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageAny) {
		return nil
	}
	if !slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || !slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return fmt.Errorf("certificate %q is not a node certificate: it lacks the serverAuth or clientAuth extended key usage", c.Subject.CommonName)
	}
	return nil
}

func newTLSCreds(c *TLSConfig) (*tlsCreds, error) {
	st, err := loadTLS(c)
	if err != nil {
		return nil, err
	}
	cr := &tlsCreds{cfg: *c}
	cr.cur.Store(st)
	return cr, nil
}

// reload reads the files again; on error the current credentials stay.
func (cr *tlsCreds) reload() error {
	st, err := loadTLS(&cr.cfg)
	if err != nil {
		return err
	}
	cr.cur.Store(st)
	return nil
}

// peerServerConfig is the peer RPC server's TLS configuration: TLS 1.3,
// a client certificate required and verified against the CA.
func (cr *tlsCreds) peerServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return cr.cur.Load().peerServer, nil
		},
	}
}

// peerClientConfig is the TLS configuration for dialing the peer at addr:
// TLS 1.3, this node's certificate, the server checked against the CA.
func (cr *tlsCreds) peerClientConfig(addr string) *tls.Config {
	st := cr.cur.Load()
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	verifyHost := ""
	if cr.cfg.VerifyHostname {
		verifyHost = host
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{st.cert},
		ServerName:   host, // sent as SNI only if it is a name
		// crypto/tls would check the certificate's names against
		// ServerName; VerifyConnection does the whole check instead: the
		// chain to the cluster CA, the node usages and, with
		// VerifyHostname, the host.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no server certificate")
			}
			_, err := verifyPeer(cs.PeerCertificates[0], rawCerts(cs.PeerCertificates[1:]), st.pool, verifyHost)
			return err
		},
	}
}

func rawCerts(cs []*x509.Certificate) [][]byte {
	out := make([][]byte, len(cs))
	for i, c := range cs {
		out[i] = c.Raw
	}
	return out
}

// httpConfig is the client API's TLS configuration: the node's
// certificate, TLS 1.2 or later (HTTP clients are browsers, curl and
// monitoring tools), no client certificate (tokens authenticate clients),
// HTTP/1.1 only (the API's connection and body limits are per connection;
// see limits.go).
func (cr *tlsCreds) httpConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return &cr.cur.Load().cert, nil
		},
	}
}

// expiry is when the current certificate expires.
func (cr *tlsCreds) expiry() time.Time {
	return cr.cur.Load().cert.Leaf.NotAfter
}

// ReloadTLS reads the TLS files again (Config.TLS): new connections, peer
// and client, use the new certificate, key and CA; open ones keep theirs.
// On error the node keeps what it has. Without TLS it does nothing.
func (n *Node) ReloadTLS() error {
	if n.tls == nil {
		return nil
	}
	if err := n.tls.reload(); err != nil {
		return fmt.Errorf("node: reload TLS: %w", err)
	}
	n.log.Info("TLS certificates reloaded", "cert", n.cfg.TLS.CertFile, "expires", n.tls.expiry().Format(time.RFC3339))
	return nil
}

// httpErrorLog is the client API server's error log. net/http logs every
// failed TLS handshake ("http: TLS handshake error from …"), which a port
// scanner or a plain-HTTP client would turn into a flood: those lines are
// counted and logged at debug level; the rest at warn, as before.
func (n *Node) httpErrorLog() *log.Logger {
	warn := slog.NewLogLogger(n.log.Handler(), slog.LevelWarn)
	return log.New(writerFunc(func(p []byte) (int, error) {
		line := string(bytes.TrimRight(p, "\n"))
		if strings.Contains(line, "TLS handshake error") {
			// A connection closed before sending anything (a TCP
			// probe, a load balancer's check) is not a failed
			// handshake worth counting.
			if !strings.HasSuffix(line, ": EOF") {
				n.metrics.httpHandshakeFailures.Add(1)
			}
			n.log.Debug(line)
			return len(p), nil
		}
		warn.Print(line)
		return len(p), nil
	}), "", 0)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
