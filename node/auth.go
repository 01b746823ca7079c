package node

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync/atomic"

	"github.com/BurntSushi/toml"
)

// Bearer tokens for the client HTTP API. With Config.Tokens set, every
// request needs "Authorization: Bearer <secret>" naming one of them, except
// GET /v1/health (probes) and the /ui page itself (static HTML; its script
// sends the token on every fetch). A read-only token may read; anything
// else (PUT, POST, DELETE: key writes, leave, remove, keyring changes) and
// everything under /v1/keyring (gossip key material) needs read-write.

// Scope is what a client token allows.
type Scope string

// Token scopes.
const (
	// ScopeReadOnly allows GET and HEAD: keys, status, members, ring,
	// cluster, metrics.
	ScopeReadOnly Scope = "read-only"
	// ScopeReadWrite allows every request.
	ScopeReadWrite Scope = "read-write"
)

// ParseScope parses "read-only" or "read-write".
func ParseScope(s string) (Scope, error) {
	switch sc := Scope(s); sc {
	case ScopeReadOnly, ScopeReadWrite:
		return sc, nil
	}
	return "", fmt.Errorf("node: bad token scope %q: want %s or %s", s, ScopeReadOnly, ScopeReadWrite)
}

// Token is a client API credential: requests carry Secret as a bearer
// token. Name identifies the holder in logs; the secret is never logged or
// printed (String, GoString, LogValue and MarshalJSON leave it out).
type Token struct {
	// Name identifies the token in logs (letters, digits, '.', '_', '-',
	// '@'; at most 64), unique in Config.Tokens.
	Name string
	// Secret is what clients send: visible ASCII (no spaces), 16 to 1024
	// characters, unique in Config.Tokens. `rumor token generate` makes
	// one from 32 random bytes.
	Secret string
	// Scope is what the token allows.
	Scope Scope
}

// String names the token and its scope, without the secret.
func (t Token) String() string { return fmt.Sprintf("%s (%s)", t.Name, t.Scope) }

// GoString is String: %#v must not print the secret either.
func (t Token) GoString() string { return "node.Token{" + t.String() + "}" }

// LogValue logs the token's name and scope, without the secret.
func (t Token) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", t.Name), slog.String("scope", string(t.Scope)))
}

// MarshalJSON encodes the token's name and scope, without the secret.
func (t Token) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Name  string `json:"name"`
		Scope Scope  `json:"scope"`
	}{t.Name, t.Scope})
}

// Limits on tokens.
const (
	minSecretLen = 16
	maxSecretLen = 1024
	maxTokenName = 64
)

// validateTokens checks names, secrets and scopes. Its errors name tokens
// by position and name, never by secret.
func validateTokens(ts []Token) error {
	names := map[string]int{}
	secrets := map[[sha256.Size]byte]int{}
	for i, t := range ts {
		if t.Name == "" {
			return fmt.Errorf("token %d: no name", i+1)
		}
		which := fmt.Sprintf("token %d (%q)", i+1, t.Name)
		if len(t.Name) > maxTokenName || strings.IndexFunc(t.Name, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-@", r))
		}) >= 0 {
			return fmt.Errorf("%s: a name is up to %d letters, digits, '.', '_', '-' or '@'", which, maxTokenName)
		}
		if j, dup := names[t.Name]; dup {
			return fmt.Errorf("%s: the name of token %d again; names must be unique", which, j)
		}
		names[t.Name] = i + 1
		if _, err := ParseScope(string(t.Scope)); err != nil {
			return fmt.Errorf("%s: scope %q: want %s or %s", which, t.Scope, ScopeReadOnly, ScopeReadWrite)
		}
		switch n := len(t.Secret); {
		case n < minSecretLen:
			return fmt.Errorf("%s: the secret has %d characters; want at least %d (rumor token generate makes one)", which, n, minSecretLen)
		case n > maxSecretLen:
			return fmt.Errorf("%s: the secret has %d characters; want at most %d", which, n, maxSecretLen)
		}
		if strings.IndexFunc(t.Secret, func(r rune) bool { return r < '!' || r > '~' }) >= 0 {
			return fmt.Errorf("%s: the secret must be visible ASCII characters, no spaces", which)
		}
		sum := sha256.Sum256([]byte(t.Secret))
		if j, dup := secrets[sum]; dup {
			return fmt.Errorf("%s: the secret of token %d again; secrets must be unique", which, j)
		}
		secrets[sum] = i + 1
	}
	return nil
}

// tokensFile is the TOML form of a tokens file.
type tokensFile struct {
	Token []struct {
		Name   string `toml:"name"`
		Scope  string `toml:"scope"`
		Secret string `toml:"secret"`
	} `toml:"token"`
}

// quoted matches what a TOML parse error quotes from the document.
var quoted = regexp.MustCompile(`"[^"]*"`)

// ParseTokens parses a tokens file: TOML with one [[token]] table per
// token, each with exactly the keys name, scope (read-only or read-write)
// and secret:
//
//	[[token]]
//	name = "app"
//	scope = "read-write"
//	secret = "…"
//
// The tokens are validated as Open validates Config.Tokens; a file without
// any token is an error (it would leave the API open). Errors never quote
// a secret.
func ParseTokens(data []byte) ([]Token, error) {
	var f tokensFile
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&f)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			// pe.Message, not pe.Error(), with what it quotes left out:
			// the text it quotes may be a secret.
			return nil, fmt.Errorf("line %d: %s", pe.Position.Line, quoted.ReplaceAllString(pe.Message, `"…"`))
		}
		return nil, fmt.Errorf("%w (a tokens file holds [[token]] tables of name, scope and secret strings)", err)
	}
	if keys := md.Undecoded(); len(keys) > 0 {
		return nil, fmt.Errorf("unknown key %q: a tokens file holds [[token]] tables with name, scope and secret", keys[0].String())
	}
	if len(f.Token) == 0 {
		return nil, errors.New("no [[token]] table: a tokens file lists at least one token")
	}
	out := make([]Token, len(f.Token))
	for i, t := range f.Token {
		out[i] = Token{Name: t.Name, Secret: t.Secret, Scope: Scope(t.Scope)}
	}
	if err := validateTokens(out); err != nil {
		return nil, err
	}
	return out, nil
}

// ReadTokensFile reads and parses a tokens file (see ParseTokens). It
// refuses a file that users other than its owner and group may write (they
// could add a token). A file they may read is accepted (container runtimes
// mount secrets 0644 by default) and reported in warning, for the caller to
// log; warning is "" otherwise.
func ReadTokensFile(path string) (tokens []Token, warning string, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, "", fmt.Errorf("tokens file: %w", err)
	}
	if fi.Mode().Perm()&0o002 != 0 {
		return nil, "", fmt.Errorf("tokens file %s: anyone may write it (mode %v): chmod o-w (600 is best)", path, fi.Mode().Perm())
	}
	if fi.Mode().Perm()&0o004 != 0 {
		warning = fmt.Sprintf("tokens file %s is readable by every user of this machine (mode %v): chmod 600 it (Kubernetes: defaultMode: 0400)", path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("tokens file: %w", err)
	}
	tokens, err = ParseTokens(data)
	if err != nil {
		return nil, "", fmt.Errorf("tokens file %s: %w", path, err)
	}
	return tokens, warning, nil
}

// Reasons a request is denied (the reason label of
// rumor_http_auth_denied_total).
const (
	denyMissing  = iota // no bearer token
	denyUnknown         // a token no configured one matches
	denyReadOnly        // a read-only token on a request that writes
	numDenials
)

var denialNames = [numDenials]string{"missing", "unknown", "read_only"}

// authToken is a configured token as the authenticator keeps it: the
// secret only as its SHA-256.
type authToken struct {
	name  string
	scope Scope
	sum   [sha256.Size]byte
}

// authenticator checks client requests' bearer tokens. Without tokens it
// lets everything through.
type authenticator struct {
	tokens []authToken
	denied [numDenials]atomic.Uint64
	// logLim rate-limits the info line about denied requests.
	logLim logLimiter
}

func newAuthenticator(ts []Token) *authenticator {
	a := &authenticator{}
	for _, t := range ts {
		a.tokens = append(a.tokens, authToken{name: t.Name, scope: t.Scope, sum: sha256.Sum256([]byte(t.Secret))})
	}
	return a
}

// lookup returns the token whose secret is secret. Its time does not
// depend on which token matches, or on how much of a secret does: the
// secret's SHA-256 is compared with every token's in constant time (the
// lengths are equal), and the loop never exits early.
func (a *authenticator) lookup(secret string) (authToken, bool) {
	sum := sha256.Sum256([]byte(secret))
	found := -1
	for i := range a.tokens {
		eq := subtle.ConstantTimeCompare(sum[:], a.tokens[i].sum[:])
		found = subtle.ConstantTimeSelect(eq, i, found)
	}
	if found < 0 {
		return authToken{}, false
	}
	return a.tokens[found], true
}

// keyringPath is where gossip key management lives on the client API;
// every request under it needs read-write (listing shows key material).
const keyringPath = "/v1/keyring"

// scopeNeeded returns the scope request r needs, "" for none.
func scopeNeeded(r *http.Request) Scope {
	p := r.URL.Path // what the router routes on
	read := r.Method == http.MethodGet || r.Method == http.MethodHead
	switch {
	case p == healthPath:
		return ""
	case (p == "/ui" || p == "/ui/") && read:
		return ""
	case p == keyringPath || strings.HasPrefix(p, keyringPath+"/"):
		return ScopeReadWrite
	case read:
		return ScopeReadOnly
	}
	return ScopeReadWrite
}

// bearerToken returns the bearer token of r's Authorization header.
func bearerToken(r *http.Request) (string, bool) {
	scheme, rest, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	s := strings.TrimSpace(rest)
	return s, s != ""
}

// authorize checks r's token when the node has tokens; if r may not
// proceed it answers it (401 or 403, JSON) and returns false.
func (n *Node) authorize(w http.ResponseWriter, r *http.Request) bool {
	a := n.auth
	if len(a.tokens) == 0 {
		return true
	}
	need := scopeNeeded(r)
	if need == "" {
		return true
	}
	secret, ok := bearerToken(r)
	if !ok {
		n.deny(w, r, denyMissing, "")
		return false
	}
	tok, ok := a.lookup(secret)
	if !ok {
		n.deny(w, r, denyUnknown, "")
		return false
	}
	if need == ScopeReadWrite && tok.scope != ScopeReadWrite {
		n.deny(w, r, denyReadOnly, tok.name)
		return false
	}
	return true
}

// deny answers a request refused for reason, counts it and logs it (at
// debug each time; at info at most once a minute, with a count). name is
// the token's, if one matched. The secret is never logged.
func (n *Node) deny(w http.ResponseWriter, r *http.Request, reason int, name string) {
	a := n.auth
	a.denied[reason].Add(1)
	n.log.Debug("client API request denied", "reason", denialNames[reason], "token", name,
		"method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
	if ok, events, _ := a.logLim.note(logRepeatEvery, 1); ok {
		n.log.Info("client API requests denied for missing, unknown or read-only tokens", "denied", events,
			"last_reason", denialNames[reason], "last_token", name, "last_remote", r.RemoteAddr)
	}
	const realm = `Bearer realm="rumor"`
	switch reason {
	case denyMissing:
		w.Header().Set("WWW-Authenticate", realm)
		writeError(w, http.StatusUnauthorized, "unauthorized: this node needs a token (Authorization: Bearer <secret>)")
	case denyUnknown:
		w.Header().Set("WWW-Authenticate", realm+`, error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, "unauthorized: unknown token")
	default:
		w.Header().Set("WWW-Authenticate", realm+`, error="insufficient_scope", scope="`+string(ScopeReadWrite)+`"`)
		writeError(w, http.StatusForbidden, "forbidden: the token is read-only")
	}
}
