package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/rumorkv/rumor/node"
)

// While ranges move, rumor ring shows each member's ranges in transfer
// and, from the member's own status, keys and bytes left and an ETA.
func TestRingShowsTransfers(t *testing.T) {
	eta := 42.4
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		addr := strings.TrimPrefix(srv.URL, "http://")
		var body any
		switch r.URL.Path {
		case "/v1/ring":
			body = node.RingInfo{N: 3, VNodes: 64, Moving: true, Members: []node.RingMemberInfo{
				{Name: "n1", ID: "01", State: "alive", Status: "member", Ownership: 0.5, NextOwnership: 0.34, HTTP: addr, RangesLosing: 7},
				{Name: "n2", ID: "02", State: "alive", Status: "joining", Ownership: 0, NextOwnership: 0.33, HTTP: addr, RangesGaining: 12},
				{Name: "n3", ID: "03", State: "dead", Status: "member", Ownership: 0.5, NextOwnership: 0.33},
			}}
		case "/v1/status":
			body = map[string]any{"transfer": node.TransferStatus{State: "joining", Moving: true, KeysLeft: 1500, BytesLeft: 3 << 20, ETASeconds: &eta}}
		default:
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(body)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	out := ok(t, "ring", "--addr", addr).stdout
	for _, want := range []string{"ranges are moving", "RANGES IN/OUT", "KEYS LEFT", "BYTES LEFT", "ETA"} {
		if !strings.Contains(out, want) {
			t.Errorf("ring output lacks %q:\n%s", want, out)
		}
	}
	if !regexpLine(out, "n2", "02", "-", "alive", "joining", "0.0%", "33.0%", "12/0", "1500", "3.0", "MiB", "42s") {
		t.Errorf("no transfer row for n2:\n%s", out)
	}
	if !regexpLine(out, "n1", "01", "-", "alive", "member", "50.0%", "34.0%", "0/7", "1500", "3.0", "MiB", "42s") {
		t.Errorf("no transfer row for n1:\n%s", out)
	}
	// A member that does not answer shows unknowns, not zeros.
	if !regexpLine(out, "n3", "03", "-", "dead", "member", "50.0%", "33.0%", "0/0", "?", "?", "?") {
		t.Errorf("no unknown row for n3:\n%s", out)
	}
}
