package main

import (
	"crypto/x509"
	"errors"
	"strings"

	"github.com/rumorkv/rumor/cli/client"
)

// tlsHint is what to do about a TLS problem talking to a node, appended to
// the error's line ("" for other errors).
func tlsHint(err error) string {
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		apiErr   *client.Error
	)
	switch {
	case errors.As(err, &unknown):
		return " — pass --cacert FILE (or set RUMOR_CACERT) with the cluster's CA certificate"
	case errors.As(err, &hostname):
		return " — the node's certificate does not name the address in --addr: use a name or IP it lists (rumor tls cert --dns/--ip)"
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return " — the certificate has expired or is not valid yet: check its dates and this machine's clock"
	case errors.As(err, &apiErr) && apiErr.Status == 400 && strings.Contains(apiErr.Msg, "HTTP request to an HTTPS server"):
		return " — the node serves HTTPS: use --addr https://HOST:PORT (and --cacert)"
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return " — the node serves plain HTTP: use --addr HOST:PORT"
	}
	return ""
}
