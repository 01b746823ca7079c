package node

// Gossip encryption: memberlist encrypts every gossip packet and stream
// with AES-GCM under the primary key of its keyring and accepts what any
// key of the ring decrypts (GossipVerifyIncoming/Outgoing: nothing in
// plaintext either way). The ring comes from Config.GossipKeys or from the
// keyring file, which is kept up to date so that rotations survive
// restarts; on start the file wins over the configured keys, which only
// seed a new node (as in Consul).
//
// Rotation without downtime (as Serf and Consul do it): install the new key
// everywhere (every node now decrypts both), make it the primary everywhere
// (every node encrypts with it and still decrypts the old one), remove the
// old key everywhere. The node a client asks fans each step out over peer
// RPC (methodKeyring) to every member that has not left, applies it itself,
// and reports each member's answer. use and remove first check that every
// member answers and is ready for the step (has the key; does not use the
// key being removed as its primary) and refuse otherwise unless forced: a
// member that missed the new key could talk to no one afterwards.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/rumorkv/rumor/node/rpc"
)

// methodKeyring applies a keyring operation on the receiver (keyringReq)
// and answers its keyring afterwards (keyringResp).
const methodKeyring uint16 = 14

// keyringTimeout bounds each member's answer to a keyring operation.
const keyringTimeout = 3 * time.Second

// KeyringFileName is the keyring file in the data directory (unless
// Config.KeyringFile names another).
const KeyringFileName = "keyring"

// Keyring operations (Node.Keyring, the /v1/keyring endpoints, `rumor
// keyring`).
const (
	// KeyringList reports every member's keys.
	KeyringList = "list"
	// KeyringInstall adds a key to every member's ring (it decrypts with
	// it; nothing is encrypted with it yet).
	KeyringInstall = "install"
	// KeyringUse makes an installed key every member's primary: the key
	// gossip is encrypted with.
	KeyringUse = "use"
	// KeyringRemove drops a key from every member's ring; refused for a
	// primary key.
	KeyringRemove = "remove"
)

// Keyring errors. Callers use errors.Is.
var (
	// ErrBadGossipKey: a key that is not base64 of 16, 24 or 32 bytes.
	ErrBadGossipKey = errors.New("node: bad gossip key")
	// ErrNoEncryption: keyring operations on a node whose gossip is not
	// encrypted (started without a gossip key or keyring file).
	ErrNoEncryption = errors.New("node: gossip encryption is not enabled on this node (start it with a gossip key)")
	// ErrKeyringRefused: the operation would cut members off (use of a key
	// some member lacks, removal of a primary key, or a member that could
	// not confirm); nothing was changed.
	ErrKeyringRefused = errors.New("node: keyring operation refused")
	// ErrKeyringPartial: some members did not apply the operation (the
	// response lists them); it is idempotent and may be retried.
	ErrKeyringPartial = errors.New("node: keyring operation failed on some members")
)

// KeyringResponse is the answer to a keyring operation: one row per member
// that has not left, and a summary of the keys they reported.
type KeyringResponse struct {
	// Op is the operation: list, install, use or remove.
	Op string `json:"op"`
	// Name is the node that answered (and fanned the operation out).
	Name string `json:"name"`
	// Members were asked; OK of them answered and applied the operation,
	// Failed did not.
	Members int `json:"members"`
	OK      int `json:"ok"`
	Failed  int `json:"failed"`
	// Nodes holds a row per member, sorted by name.
	Nodes []KeyringNode `json:"nodes"`
	// Keys maps each key (base64) any member reported to who has it.
	Keys map[string]KeyInfo `json:"keys"`
	// Error says why the operation failed or was refused ("" if it did
	// neither).
	Error string `json:"error,omitempty"`
}

// KeyringNode is one member's answer: its keys after the operation, or why
// it could not apply it.
type KeyringNode struct {
	Name string `json:"name"`
	OK   bool   `json:"ok"`
	// Error is set when OK is false: the member refused the operation or
	// could not be reached within the deadline.
	Error string `json:"error,omitempty"`
	// Keys are the member's keys (base64), primary first, and Primary the
	// one it encrypts with.
	Keys    []string `json:"keys,omitempty"`
	Primary string   `json:"primary,omitempty"`
}

// KeyInfo summarises one key across the members that answered.
type KeyInfo struct {
	// Members is how many members have the key.
	Members int `json:"members"`
	// PrimaryOn names the members that encrypt with it.
	PrimaryOn []string `json:"primary_on,omitempty"`
	// MissingOn names the members that answered without it.
	MissingOn []string `json:"missing_on,omitempty"`
}

// keyringReq and keyringResp are methodKeyring's messages.
type keyringReq struct {
	Op  string `msgpack:"o"`
	Key []byte `msgpack:"k"`
}

type keyringResp struct {
	Keys    [][]byte `msgpack:"k"`
	Primary []byte   `msgpack:"p"`
}

// keyringFile is the keyring file's JSON document.
type keyringFile struct {
	Keys    []string `json:"keys"`
	Primary string   `json:"primary"`
}

// gossipKeyring is the node's memberlist keyring and the file it is kept
// in.
type gossipKeyring struct {
	// ring is memberlist's keyring; nil when gossip is not encrypted.
	ring *memberlist.Keyring
	// path is the keyring file; "" keeps the ring in memory only.
	path string
	// mu serialises changes with their persistence (memberlist reads the
	// ring under its own lock).
	mu sync.Mutex
}

// ParseGossipKey decodes a base64 gossip key (standard encoding, as
// `rumor keyring generate` and `consul keygen` print it) and checks its
// length: 16, 24 or 32 bytes (AES-128, -192, -256).
func ParseGossipKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	k, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: not base64: %v", ErrBadGossipKey, err)
	}
	if err := checkGossipKey(k); err != nil {
		return nil, err
	}
	return k, nil
}

// checkGossipKey checks a key's length.
func checkGossipKey(k []byte) error {
	if err := memberlist.ValidateKey(k); err != nil {
		return fmt.Errorf("%w: %d bytes, want 16, 24 or 32 (AES-128, AES-192 or AES-256; `rumor keyring generate` makes one)", ErrBadGossipKey, len(k))
	}
	return nil
}

func encodeKey(k []byte) string { return base64.StdEncoding.EncodeToString(k) }

// keyringFilePath is where the keyring is kept: Config.KeyringFile, else the
// data directory's keyring file, else nowhere (in-memory nodes).
func keyringFilePath(c *Config) string {
	switch {
	case c.KeyringFile != "":
		return c.KeyringFile
	case c.InMemory || c.DataDir == "":
		return ""
	}
	return filepath.Join(c.DataDir, KeyringFileName)
}

// loadKeyring builds the node's keyring: from the keyring file if there is
// one, else from c.GossipKeys (written to the file). Without either, gossip
// is not encrypted (ring nil).
func loadKeyring(c *Config, log *slog.Logger) (*gossipKeyring, error) {
	kr := &gossipKeyring{path: keyringFilePath(c)}
	if kr.path != "" {
		keys, primary, err := readKeyringFile(kr.path)
		switch {
		case err == nil:
			if kr.ring, err = memberlist.NewKeyring(keys, primary); err != nil {
				return nil, fmt.Errorf("node: keyring file %s: %w", kr.path, err)
			}
			log.Info("gossip encryption: using the keyring file (it takes precedence over the configured gossip key)",
				"file", kr.path, "keys", len(keys))
			if len(c.GossipKeys) > 0 && !slices.ContainsFunc(keys, func(k []byte) bool { return bytes.Equal(k, c.GossipKeys[0]) }) {
				log.Warn("the configured gossip key is not in the keyring file; using the file's keys "+
					"(the configured key only seeds a new node: rotate with `rumor keyring`, or delete the file to seed it again)",
					"file", kr.path)
			}
			return kr, nil
		case !errors.Is(err, os.ErrNotExist):
			return nil, err
		case len(c.GossipKeys) == 0 && c.KeyringFile != "":
			return nil, fmt.Errorf("%w: keyring file %s does not exist and no gossip key is configured to create it", errConfig, kr.path)
		}
	}
	if len(c.GossipKeys) == 0 {
		log.Info("gossip encryption: off (no gossip key or keyring file)")
		return kr, nil
	}
	ring, err := memberlist.NewKeyring(c.GossipKeys, c.GossipKeys[0])
	if err != nil {
		return nil, fmt.Errorf("%w: gossip keys: %v", errConfig, err)
	}
	kr.ring = ring
	if kr.path != "" {
		if err := writeKeyringFile(kr.path, ring.GetKeys()); err != nil {
			return nil, err
		}
	}
	log.Info("gossip encryption: keyring seeded from the configured gossip key", "keys", len(c.GossipKeys), "file", kr.path)
	return kr, nil
}

// readKeyringFile reads a keyring file: its keys with the primary first.
func readKeyringFile(path string) (keys [][]byte, primary []byte, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("node: read keyring file: %w", err)
	}
	var f keyringFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, nil, fmt.Errorf("node: keyring file %s: %w", path, err)
	}
	if f.Primary == "" {
		return nil, nil, fmt.Errorf("node: keyring file %s: no primary key", path)
	}
	if primary, err = ParseGossipKey(f.Primary); err != nil {
		return nil, nil, fmt.Errorf("node: keyring file %s: primary key: %w", path, err)
	}
	keys = [][]byte{primary}
	for i, s := range f.Keys {
		k, err := ParseGossipKey(s)
		if err != nil {
			return nil, nil, fmt.Errorf("node: keyring file %s: key %d: %w", path, i+1, err)
		}
		if !slices.ContainsFunc(keys, func(o []byte) bool { return bytes.Equal(o, k) }) {
			keys = append(keys, k)
		}
	}
	return keys, primary, nil
}

// writeKeyringFile replaces the keyring file with keys (primary first):
// written to a temporary file (mode 0600) in the same directory, fsynced,
// renamed over the old one, and the directory fsynced, so a crash leaves
// the old ring or the new one.
func writeKeyringFile(path string, keys [][]byte) error {
	f := keyringFile{Primary: encodeKey(keys[0])}
	for _, k := range keys {
		f.Keys = append(f.Keys, encodeKey(k))
	}
	b, err := json.MarshalIndent(&f, "", "  ")
	if err != nil {
		return fmt.Errorf("node: encode keyring: %w", err)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".keyring-*")
	if err != nil {
		return fmt.Errorf("node: write keyring file: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	werr := tmp.Chmod(0o600)
	if werr == nil {
		_, werr = tmp.Write(append(b, '\n'))
	}
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), path)
	}
	if werr != nil {
		return fmt.Errorf("node: write keyring file %s: %w", path, werr)
	}
	if d, err := os.Open(dir); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("node: sync keyring directory %s: %w", dir, err)
		}
	}
	return nil
}

// snapshot returns a copy of the ring's keys, primary first.
func (kr *gossipKeyring) snapshot() [][]byte {
	if kr.ring == nil {
		return nil
	}
	return slices.Clone(kr.ring.GetKeys())
}

// apply performs op on this node's ring (persisting the result first: the
// file never lags a key the node uses) and returns the keys afterwards,
// primary first. Every change is idempotent.
func (kr *gossipKeyring) apply(op string, key []byte) ([][]byte, error) {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	if kr.ring == nil {
		return nil, ErrNoEncryption
	}
	cur := kr.snapshot()
	has := slices.ContainsFunc(cur, func(k []byte) bool { return bytes.Equal(k, key) })
	var next [][]byte
	switch op {
	case KeyringList:
		return cur, nil
	case KeyringInstall:
		if err := checkGossipKey(key); err != nil {
			return nil, err
		}
		if has {
			return cur, nil
		}
		next = append(slices.Clone(cur), key)
	case KeyringUse:
		if !has {
			return nil, fmt.Errorf("%w: the key is not installed on this node (install it first)", ErrKeyringRefused)
		}
		if bytes.Equal(cur[0], key) {
			return cur, nil
		}
		next = [][]byte{key}
		for _, k := range cur {
			if !bytes.Equal(k, key) {
				next = append(next, k)
			}
		}
	case KeyringRemove:
		if bytes.Equal(cur[0], key) {
			return nil, fmt.Errorf("%w: the key is this node's primary key (use another key first)", ErrKeyringRefused)
		}
		if !has {
			return cur, nil
		}
		next = slices.DeleteFunc(slices.Clone(cur), func(k []byte) bool { return bytes.Equal(k, key) })
	default:
		return nil, fmt.Errorf("%w: unknown keyring operation %q", ErrKeyringRefused, op)
	}
	if kr.path != "" {
		if err := writeKeyringFile(kr.path, next); err != nil {
			return nil, err
		}
	}
	var err error
	switch op {
	case KeyringInstall:
		err = kr.ring.AddKey(key)
	case KeyringUse:
		err = kr.ring.UseKey(key)
	case KeyringRemove:
		err = kr.removeLocked(cur, key)
	}
	if err != nil {
		return nil, fmt.Errorf("node: keyring %s: %w", op, err)
	}
	return kr.snapshot(), nil
}

// removeLocked drops key (not the primary) from the ring whose keys are
// cur. memberlist's Keyring.RemoveKey shifts the later keys down inside
// the slice that GetKeys handed out, which gossip goroutines read without
// the ring's lock (memberlist v0.7.0): a data race unless the removed key
// is the last one, where nothing moves. So the key is first moved last:
// UseKey copies the ring into a new slice with the given key in front, and
// calling it for the other keys from last to first, the primary last,
// leaves them in order with the key to remove at the end. The primary
// changes only between those calls, to keys the ring (and, after the
// checks of a cluster-wide remove, every member) holds. The usual rotation
// (two keys, the old one last after `use`) needs none of this.
func (kr *gossipKeyring) removeLocked(cur [][]byte, key []byte) error {
	if !bytes.Equal(cur[len(cur)-1], key) {
		others := slices.DeleteFunc(slices.Clone(cur), func(k []byte) bool { return bytes.Equal(k, key) })
		for i := len(others) - 1; i >= 0; i-- {
			if err := kr.ring.UseKey(others[i]); err != nil {
				return err
			}
		}
	}
	return kr.ring.RemoveKey(key)
}

// Keyring performs a keyring operation (KeyringList, KeyringInstall,
// KeyringUse or KeyringRemove) on every member that has not left: this node
// applies it and asks each other member over peer RPC (keyringTimeout
// each, at once), and the response has every member's answer. key is
// ignored by list.
//
// Before use and remove it asks every member for its keys and refuses
// (ErrKeyringRefused, nothing changed) if one did not answer, or lacks the
// key to use, or encrypts with the key to remove; force skips the check
// (a member that misses a step can no longer gossip with the others once
// the old key is gone). It fails with ErrKeyringPartial if some member did
// not apply the operation. The response comes with every error but a bad
// key or operation, ErrNoEncryption, and the refusal to remove this
// node's own primary key.
func (n *Node) Keyring(ctx context.Context, op string, key []byte, force bool) (*KeyringResponse, error) {
	switch op {
	case KeyringList:
		key = nil
	case KeyringInstall, KeyringUse, KeyringRemove:
		if err := checkGossipKey(key); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%w: unknown operation %q: want list, install, use or remove", ErrKeyringRefused, op)
	}
	if n.keyring.ring == nil {
		return nil, ErrNoEncryption
	}
	if op == KeyringRemove {
		if keys := n.keyring.snapshot(); bytes.Equal(keys[0], key) {
			return nil, fmt.Errorf("%w: the key is the primary key on %s: make another key the primary first (rumor keyring use)", ErrKeyringRefused, n.cfg.Name)
		}
	}
	if (op == KeyringUse || op == KeyringRemove) && !force {
		r := n.keyringFanOut(ctx, KeyringList, nil)
		var why []string
		for _, row := range r.Nodes {
			switch {
			case !row.OK:
				why = append(why, fmt.Sprintf("%s did not answer (%s)", row.Name, row.Error))
			case op == KeyringUse && !slices.Contains(row.Keys, encodeKey(key)):
				why = append(why, row.Name+" does not have the key (install it first)")
			case op == KeyringRemove && row.Primary == encodeKey(key):
				why = append(why, row.Name+" encrypts with it (use another key first)")
			}
		}
		if len(why) > 0 {
			r.Op = op
			r.Error = fmt.Sprintf("%s: %s; nothing was changed (force to %s anyway)", ErrKeyringRefused, strings.Join(why, "; "), op)
			return r, fmt.Errorf("%w: %s", ErrKeyringRefused, strings.Join(why, "; "))
		}
	}
	r := n.keyringFanOut(ctx, op, key)
	if r.Failed > 0 {
		var failed []string
		for _, row := range r.Nodes {
			if !row.OK {
				failed = append(failed, row.Name+": "+row.Error)
			}
		}
		r.Error = fmt.Sprintf("%s: %d of %d members: %s", ErrKeyringPartial, r.Failed, r.Members, strings.Join(failed, "; "))
		return r, fmt.Errorf("%w: %s", ErrKeyringPartial, strings.Join(failed, "; "))
	}
	if op != KeyringList {
		n.log.Info("gossip keyring changed across the cluster", "op", op, "members", r.Members)
	}
	return r, nil
}

// keyringFanOut applies op on this node and on every other member that has
// not left (those memberlist considers dead too: a member that cannot
// gossip because it lacks a key may still be reachable over peer RPC).
func (n *Node) keyringFanOut(ctx context.Context, op string, key []byte) *KeyringResponse {
	var rows []memberEntry
	for _, e := range n.mem.rows() {
		if e.Status != StatusLeft {
			rows = append(rows, e)
		}
	}
	answers := make([]KeyringNode, len(rows))
	var wg sync.WaitGroup
	for i, e := range rows {
		a := &answers[i]
		a.Name = e.Name
		if e.ID == n.id {
			keys, err := n.keyring.apply(op, key)
			a.fill(keys, err)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			keys, err := n.askKeyring(ctx, e.RPC, op, key)
			a.fill(keys, err)
		}()
	}
	wg.Wait()
	return n.keyringResponse(op, answers)
}

// keyringResponse summarises the members' answers.
func (n *Node) keyringResponse(op string, answers []KeyringNode) *KeyringResponse {
	r := &KeyringResponse{Op: op, Name: n.cfg.Name, Members: len(answers), Nodes: answers, Keys: map[string]KeyInfo{}}
	if r.Nodes == nil {
		r.Nodes = []KeyringNode{}
	}
	sort.Slice(r.Nodes, func(i, j int) bool { return r.Nodes[i].Name < r.Nodes[j].Name })
	for _, a := range r.Nodes {
		if !a.OK {
			r.Failed++
			continue
		}
		r.OK++
		for _, k := range a.Keys {
			ki := r.Keys[k]
			ki.Members++
			if k == a.Primary {
				ki.PrimaryOn = append(ki.PrimaryOn, a.Name)
			}
			r.Keys[k] = ki
		}
	}
	for k, ki := range r.Keys {
		for _, a := range r.Nodes {
			if a.OK && !slices.Contains(a.Keys, k) {
				ki.MissingOn = append(ki.MissingOn, a.Name)
			}
		}
		r.Keys[k] = ki
	}
	return r
}

func (a *KeyringNode) fill(keys [][]byte, err error) {
	if err != nil {
		var re *rpc.RemoteError
		if errors.As(err, &re) {
			a.Error = re.Msg
		} else {
			a.Error = err.Error()
		}
		return
	}
	a.OK = true
	for _, k := range keys {
		a.Keys = append(a.Keys, encodeKey(k))
	}
	if len(keys) > 0 {
		a.Primary = a.Keys[0]
	}
}

// askKeyring asks the member at rpcAddr to apply op.
func (n *Node) askKeyring(ctx context.Context, rpcAddr, op string, key []byte) ([][]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, keyringTimeout)
	defer cancel()
	body, err := encode(&keyringReq{Op: op, Key: key})
	if err != nil {
		return nil, fmt.Errorf("keyring %s: %w", op, err)
	}
	b, err := n.call(ctx, rpcAddr, methodKeyring, body)
	if err != nil {
		return nil, err // "peer ADDR: …"; the member's row says what was asked
	}
	var resp keyringResp
	if err := decode(b, &resp); err != nil {
		return nil, fmt.Errorf("keyring %s from %s: %w", op, rpcAddr, err)
	}
	if len(resp.Keys) == 0 || !bytes.Equal(resp.Keys[0], resp.Primary) {
		return nil, fmt.Errorf("keyring %s from %s: answer without its primary key", op, rpcAddr)
	}
	return resp.Keys, nil
}

// serveKeyring answers methodKeyring.
func (n *Node) serveKeyring(body []byte) ([]byte, error) {
	var req keyringReq
	if err := decode(body, &req); err != nil {
		return nil, badRequest(err)
	}
	if req.Op != KeyringList {
		if err := checkGossipKey(req.Key); err != nil {
			return nil, badRequest(err)
		}
	}
	keys, err := n.keyring.apply(req.Op, req.Key)
	switch {
	case err == nil:
	case errors.Is(err, ErrKeyringRefused), errors.Is(err, ErrNoEncryption):
		return nil, &rpc.RemoteError{Code: codeConflict, Msg: err.Error()}
	default:
		return nil, err
	}
	if req.Op != KeyringList {
		n.log.Info("gossip keyring changed", "op", req.Op, "keys", len(keys))
	}
	return encode(&keyringResp{Keys: keys, Primary: keys[0]})
}

// codeConflict is the remote error code for a refused keyring operation.
const codeConflict = 409

// keyringBody is the body of the keyring POSTs.
type keyringBody struct {
	Key   string `json:"key"`
	Force bool   `json:"force,omitempty"`
}

// maxKeyringBody bounds a keyring request body.
const maxKeyringBody = 4 << 10

// handleKeyring serves the keyring endpoints (keyringPath): GET
// /v1/keyring lists, POST /v1/keyring/{install,use,remove} with {"key":
// "base64"} (and "force": true to skip the readiness check of use and
// remove). Status: 200 when every member
// applied the operation; 500 when some did not (the body is the same
// document with the failures in its rows and in "error"); 409 when refused
// (nothing changed; the body shows why); 400 for a bad key or body.
func (n *Node) handleKeyring(w http.ResponseWriter, r *http.Request) {
	op := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, keyringPath), "/")
	var key []byte
	var force bool
	switch {
	case op == "":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, "method not allowed: GET lists the keys; POST to /v1/keyring/install, use or remove")
			return
		}
		op = KeyringList
	case op == KeyringInstall || op == KeyringUse || op == KeyringRemove:
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			writeError(w, http.StatusMethodNotAllowed, "method not allowed: use POST")
			return
		}
		b, release, ok := n.readLimitedBody(w, r, maxKeyringBody, "body")
		if !ok {
			return
		}
		defer release()
		var kb keyringBody
		if err := json.Unmarshal(b, &kb); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf(`bad body: %v; want {"key": "base64"}`, err))
			return
		}
		var err error
		if key, err = ParseGossipKey(kb.Key); err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		force = kb.Force || r.URL.Query().Get("force") == "1" || r.URL.Query().Get("force") == "true"
	default:
		writeError(w, http.StatusNotFound, "no such endpoint: keyring operations are install, use and remove")
		return
	}
	resp, err := n.Keyring(r.Context(), op, key, force)
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, resp)
	case errors.Is(err, ErrBadGossipKey):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, ErrNoEncryption), errors.Is(err, ErrKeyringRefused) && resp == nil:
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, ErrKeyringRefused):
		writeJSON(w, http.StatusConflict, resp)
	case resp == nil:
		writeError(w, http.StatusInternalServerError, err.Error())
	default:
		writeJSON(w, http.StatusInternalServerError, resp)
	}
}
