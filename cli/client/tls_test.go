package client

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// An https:// address is verified with CACertFile's certificates; without
// them it is refused; a CA file that cannot be loaded fails every request.
func TestHTTPS(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"status":"ok"}`)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var h map[string]string
	if err := New(srv.URL, &Options{CACertFile: caFile}).GetJSON(ctx, "/v1/health", &h); err != nil || h["status"] != "ok" {
		t.Fatalf("with the CA: %v %v", h, err)
	}
	err := New(srv.URL, nil).GetJSON(ctx, "/v1/health", &h)
	var ua x509.UnknownAuthorityError
	if !errors.As(err, &ua) {
		t.Fatalf("without the CA: %v", err)
	}
	c := New(srv.URL, &Options{CACertFile: filepath.Join(dir, "missing.pem")})
	for range 2 {
		if err := c.GetJSON(ctx, "/v1/health", &h); err == nil || !strings.Contains(err.Error(), "missing.pem") {
			t.Fatalf("missing CA file: %v", err)
		}
	}
	if _, err := LoadCACert(filepath.Join(dir, "ca.pem")); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.pem")
	os.WriteFile(empty, []byte("nothing"), 0o644)
	if _, err := LoadCACert(empty); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("empty CA file: %v", err)
	}
}
