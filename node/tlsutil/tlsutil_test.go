package tlsutil

import (
	"crypto/x509"
	"encoding/pem"
	"net"
	"strings"
	"testing"
	"time"
)

func TestCAAndCert(t *testing.T) {
	start := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	ca, err := NewCA(CAOptions{NotBefore: start, Validity: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	caCert, _, err := ParseCA(ca.CertPEM, ca.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !caCert.NotBefore.Equal(start) || !caCert.NotAfter.Equal(start.Add(48*time.Hour)) || !ca.NotAfter.Equal(caCert.NotAfter) {
		t.Fatalf("CA valid %v to %v (reported %v)", caCert.NotBefore, caCert.NotAfter, ca.NotAfter)
	}
	if !caCert.MaxPathLenZero || !caCert.BasicConstraintsValid || len(caCert.SubjectKeyId) == 0 {
		t.Fatalf("CA constraints: %+v", caCert)
	}

	c, err := NewCert(ca.CertPEM, ca.KeyPEM, CertOptions{CommonName: "n1", DNSNames: []string{"n1.example"}, IPs: []net.IP{net.ParseIP("::1")}})
	if err != nil {
		t.Fatal(err)
	}
	// The default year is cut to the CA's two days.
	if !c.Capped || !c.NotAfter.Equal(caCert.NotAfter) {
		t.Fatalf("capped %v, expires %v; CA expires %v", c.Capped, c.NotAfter, caCert.NotAfter)
	}
	leaf, err := ParseCert(c.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "::1", KeyUsages: NodeUsages}); err != nil {
		t.Fatal(err)
	}
	if string(leaf.AuthorityKeyId) != string(caCert.SubjectKeyId) || leaf.IsCA {
		t.Fatal("leaf does not point at its CA, or is a CA")
	}
	if b, _ := pem.Decode(c.KeyPEM); b == nil || b.Type != "EC PRIVATE KEY" {
		t.Fatalf("key PEM %q", c.KeyPEM)
	}

	// Another CA's key does not sign for this one; a leaf is no CA.
	other, err := NewCA(CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewCert(ca.CertPEM, other.KeyPEM, CertOptions{CommonName: "x"}); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("mismatched CA key: %v", err)
	}
	if _, err := NewCert(c.CertPEM, c.KeyPEM, CertOptions{CommonName: "x"}); err == nil || !strings.Contains(err.Error(), "not a CA") {
		t.Fatalf("leaf as CA: %v", err)
	}
	if _, err := NewCert(ca.CertPEM, ca.KeyPEM, CertOptions{}); err == nil {
		t.Fatal("no common name accepted")
	}
	if _, err := NewCert(ca.CertPEM, ca.KeyPEM, CertOptions{CommonName: "late", NotBefore: time.Now().Add(72 * time.Hour)}); err == nil {
		t.Fatal("a certificate starting after its CA expires was made")
	}
}
