// Package tlsutil creates the certificates of a Rumor cluster: a
// certificate authority (CA) and node certificates it signs, as `rumor tls
// ca` and `rumor tls cert` write them. Keys are ECDSA P-256; everything is
// PEM encoded.
//
// A node certificate serves both ends of a connection (a node dials its
// peers and is dialled by them), so it carries both the server and the
// client extended key usages; a node accepts a peer only if its
// certificate has both (see node.TLSConfig).
package tlsutil

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// Defaults of CAOptions and CertOptions.
const (
	// DefaultCAValidity is how long a CA is valid: five years.
	DefaultCAValidity = 5 * 365 * 24 * time.Hour
	// DefaultCertValidity is how long a node certificate is valid: one
	// year.
	DefaultCertValidity = 365 * 24 * time.Hour
	// backdate is how far before now a certificate's validity starts by
	// default, so that a peer whose clock is a little behind accepts it.
	backdate = time.Minute
)

// NodeUsages are a node certificate's extended key usages: server and
// client, since a node is both.
var NodeUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}

// CAOptions configure NewCA. The zero value is usable.
type CAOptions struct {
	// CommonName is the CA's subject common name. Default "Rumor Agent CA
	// " followed by 8 hex digits taken from its (random) serial number, so
	// that two clusters' CAs are told apart.
	CommonName string
	// NotBefore is when the CA becomes valid. Default one minute ago.
	NotBefore time.Time
	// Validity is how long it stays valid from NotBefore. Default
	// DefaultCAValidity.
	Validity time.Duration
}

// CertOptions configure NewCert.
type CertOptions struct {
	// CommonName is the certificate's subject common name: the node's
	// name. Required.
	CommonName string
	// DNSNames and IPs are the subject alternative names: the names and
	// addresses clients use to reach the node (HTTPS clients check them;
	// peers check them only with node.TLSConfig.VerifyHostname).
	DNSNames []string
	IPs      []net.IP
	// ExtKeyUsage lists the extended key usages. Default NodeUsages.
	ExtKeyUsage []x509.ExtKeyUsage
	// NotBefore is when the certificate becomes valid. Default one minute
	// ago.
	NotBefore time.Time
	// Validity is how long it stays valid from NotBefore. Default
	// DefaultCertValidity. A certificate never outlives its CA: NotAfter
	// is capped at the CA's (see Cert.Capped).
	Validity time.Duration
}

// Cert is a certificate and its private key, PEM encoded.
type Cert struct {
	CertPEM, KeyPEM []byte
	// Capped is set when the requested validity went past the CA's expiry
	// and was cut to it.
	Capped bool
	// NotAfter is when the certificate expires.
	NotAfter time.Time
}

// NewCA creates a self-signed CA certificate with a new ECDSA P-256 key. It
// may sign node certificates only (no intermediate CAs: path length 0).
func NewCA(o CAOptions) (*Cert, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	cn := o.CommonName
	if cn == "" {
		cn = fmt.Sprintf("Rumor Agent CA %08x", serial.Uint64()>>32)
	}
	notBefore, notAfter := validity(o.NotBefore, o.Validity, DefaultCAValidity)
	ski, err := keyID(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"Rumor"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		SubjectKeyId:          ski,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: create CA certificate: %w", err)
	}
	return encode(der, key, notAfter, false)
}

// NewCert creates a certificate with a new ECDSA P-256 key, signed by the CA
// in caCertPEM and caKeyPEM.
func NewCert(caCertPEM, caKeyPEM []byte, o CertOptions) (*Cert, error) {
	if o.CommonName == "" {
		return nil, errors.New("tlsutil: certificate needs a common name (the node's name)")
	}
	ca, caKey, err := ParseCA(caCertPEM, caKeyPEM)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: generate key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	notBefore, notAfter := validity(o.NotBefore, o.Validity, DefaultCertValidity)
	capped := false
	if notAfter.After(ca.NotAfter) {
		notAfter, capped = ca.NotAfter, true
	}
	if !notAfter.After(notBefore) {
		return nil, fmt.Errorf("tlsutil: the CA expires (%s) before the certificate would become valid", ca.NotAfter.Format(time.RFC3339))
	}
	usage := o.ExtKeyUsage
	if len(usage) == 0 {
		usage = NodeUsages
	}
	ski, err := keyID(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: o.CommonName, Organization: []string{"Rumor"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           usage,
		BasicConstraintsValid: true,
		DNSNames:              o.DNSNames,
		IPAddresses:           o.IPs,
		SubjectKeyId:          ski,
		AuthorityKeyId:        ca.SubjectKeyId,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: create certificate: %w", err)
	}
	return encode(der, key, notAfter, capped)
}

// ParseCA parses a CA certificate and its private key and checks that they
// belong together and that the certificate is a CA's.
func ParseCA(certPEM, keyPEM []byte) (*x509.Certificate, crypto.Signer, error) {
	ca, err := ParseCert(certPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsutil: CA certificate: %w", err)
	}
	if !ca.IsCA || ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, nil, fmt.Errorf("tlsutil: %q is not a CA certificate", ca.Subject.CommonName)
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, nil, errors.New("tlsutil: CA key: no PEM block")
	}
	var key any
	switch block.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, nil, fmt.Errorf("tlsutil: CA key: unexpected PEM block %q", block.Type)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("tlsutil: CA key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("tlsutil: CA key: %T cannot sign", key)
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(ca.PublicKey) {
		return nil, nil, errors.New("tlsutil: the CA key does not match the CA certificate")
	}
	return ca, signer, nil
}

// ParseCert parses the first certificate in PEM data.
func ParseCert(certPEM []byte) (*x509.Certificate, error) {
	for rest := certPEM; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("no PEM certificate")
		}
		if block.Type == "CERTIFICATE" {
			return x509.ParseCertificate(block.Bytes)
		}
	}
}

func encode(der []byte, key *ecdsa.PrivateKey, notAfter time.Time, capped bool) (*Cert, error) {
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: encode key: %w", err)
	}
	return &Cert{
		CertPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:   pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}),
		Capped:   capped,
		NotAfter: notAfter,
	}, nil
}

// validity resolves a NotBefore and a validity period to the certificate's
// bounds (second precision: what the certificate stores).
func validity(notBefore time.Time, d, def time.Duration) (time.Time, time.Time) {
	if notBefore.IsZero() {
		notBefore = time.Now().Add(-backdate)
	}
	if d <= 0 {
		d = def
	}
	notBefore = notBefore.UTC().Truncate(time.Second)
	return notBefore, notBefore.Add(d)
}

// newSerial returns a random positive 127-bit serial number.
func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("tlsutil: serial number: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil
}

// keyID is a subject key identifier: the SHA-256 of the encoded public
// key, cut to 20 bytes.
func keyID(pub *ecdsa.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: encode public key: %w", err)
	}
	h := sha256.Sum256(der)
	return h[:20], nil
}
