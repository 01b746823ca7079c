package node

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// routeLiteral matches string literals that name an HTTP route: anything
// under /v1/, or a single top-level segment such as /metrics or /ui.
var routeLiteral = regexp.MustCompile(`^/(v1/[a-z0-9_/-]*|[a-z0-9_-]+/?)$`)

// codeRoutes returns every route-like string literal in the non-test files
// of this package that import net/http (the route table in httpHandler, the
// prefix constants, and whatever another file adds), with where it is.
func codeRoutes(t *testing.T) map[string]string {
	t.Helper()
	fset := token.NewFileSet()
	ents, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	routes := map[string]string{}
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(f.Imports, func(s *ast.ImportSpec) bool { return s.Path.Value == `"net/http"` }) {
			continue
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			if v, err := strconv.Unquote(lit.Value); err == nil && routeLiteral.MatchString(v) {
				routes[v] = fset.Position(lit.Pos()).String()
			}
			return true
		})
	}
	return routes
}

// docRoute matches "METHOD /path" in a heading of docs/api.md.
var docRoute = regexp.MustCompile("`(GET|HEAD|PUT|POST|DELETE) (/[^`\\s?]*)")

// normRoute reduces a route to what code and docs share: placeholders such
// as {key} and a trailing slash dropped ("/v1/kv/{key}" and "/v1/kv/" are
// both "/v1/kv").
func normRoute(p string) string {
	if i := strings.Index(p, "{"); i >= 0 {
		p = p[:i]
	}
	return strings.TrimSuffix(p, "/")
}

// documentedRoutes returns the routes named in the headings of docs/api.md.
func documentedRoutes(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		for _, m := range docRoute.FindAllStringSubmatch(line, -1) {
			doc[normRoute(m[2])] = true
		}
	}
	return doc
}

// TestDocsAPIRoutes checks that docs/api.md has a heading for every route
// the client API serves, so an endpoint added without documentation fails
// here, and that every /v1/ route it documents exists.
func TestDocsAPIRoutes(t *testing.T) {
	code := codeRoutes(t)
	// The extraction must see the routes we know of, or it proves nothing.
	for _, known := range []string{kvPrefix, statePrefix, removePrefix, healthPath, "/v1/leave", "/v1/members", "/v1/ring", "/v1/status"} {
		if _, ok := code[known]; !ok {
			t.Fatalf("route %s not found in the package's source: the extraction is broken (found %v)", known, code)
		}
	}
	doc := documentedRoutes(t)
	if len(doc) == 0 {
		t.Fatal("docs/api.md has no heading naming a route (### `GET /v1/…`)")
	}
	codeNorm := map[string]bool{}
	for r, pos := range code {
		codeNorm[normRoute(r)] = true
		if !doc[normRoute(r)] {
			t.Errorf("route %s (%s) has no heading in docs/api.md: add a section \"### `METHOD %s…`\"", r, pos, r)
		}
	}
	for r := range doc {
		if strings.HasPrefix(r, "/v1/") && !codeNorm[r] {
			t.Errorf("docs/api.md documents %s, which the client API does not serve", r)
		}
	}
}

// TestDocsAPINormRoute pins the matching rule the route check relies on.
func TestDocsAPINormRoute(t *testing.T) {
	for in, want := range map[string]string{
		"/v1/kv/{key}":       "/v1/kv",
		"/v1/kv/":            "/v1/kv",
		"/v1/remove/{name}":  "/v1/remove",
		"/v1/leave":          "/v1/leave",
		"/ui/":               "/ui",
		"/metrics":           "/metrics",
		"/v1/state/{key}/x/": "/v1/state",
	} {
		if got := normRoute(in); got != want {
			t.Errorf("normRoute(%q) = %q, want %q", in, got, want)
		}
	}
	m := docRoute.FindAllStringSubmatch("### `PUT /v1/kv/{key}`, `POST /v1/kv/{key}`", -1)
	if len(m) != 2 || m[0][2] != "/v1/kv/{key}" || m[1][1] != "POST" {
		t.Errorf("docRoute on a two-route heading: %q", m)
	}
	for _, s := range []string{"/v1/kv/", "/v1/health", "/metrics", "/ui", "/ui/"} {
		if !routeLiteral.MatchString(s) {
			t.Errorf("routeLiteral misses %q", s)
		}
	}
	for _, s := range []string{"/", "/proc/self/stat", "application/json", "/v1/kv?x=1", "/tmp/x y"} {
		if routeLiteral.MatchString(s) {
			t.Errorf("routeLiteral takes %q for a route", s)
		}
	}
}
