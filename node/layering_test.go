package node

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPurePackagesDoNoIO guards the layering: crdt/, ring/ and
// antientropy/ are pure logic and must not import I/O packages.
func TestPurePackagesDoNoIO(t *testing.T) {
	forbidden := []string{"net", "os", "os/exec", "syscall", "net/http",
		"github.com/cockroachdb/pebble", "github.com/hashicorp/memberlist", "github.com/rumorkv/rumor/node"}
	for _, dir := range []string{"crdt", "ring", "antientropy"} {
		files, _ := filepath.Glob(filepath.Join("..", dir, "*.go"))
		hasSource := false
		for _, f := range files {
			if !strings.HasSuffix(f, "_test.go") {
				hasSource = true
			}
		}
		if !hasSource {
			continue
		}
		out, err := exec.Command("go", "list", "-f", `{{join .Imports "\n"}}`, "../"+dir).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", dir, err, out)
		}
		for _, imp := range strings.Fields(string(out)) {
			for _, bad := range forbidden {
				if imp == bad || strings.HasPrefix(imp, bad+"/") {
					t.Errorf("%s imports %s: pure packages do no I/O", dir, imp)
				}
			}
		}
	}
}
