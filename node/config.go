package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	sockaddr "github.com/hashicorp/go-sockaddr"
	"github.com/hashicorp/memberlist"
)

// Consistency is a read or write quorum setting: an explicit count or one of
// the named levels. The zero value means "use the cluster default".
type Consistency int

// Named consistency levels. Positive values are explicit replica counts.
const (
	ConsistencyDefault Consistency = 0
	One                Consistency = 1
	Quorum             Consistency = -1 // N/2+1
	All                Consistency = -2 // N
	// Primary (writes only): the write must be durable on the key's first
	// replica, so a node cut off from a key's primary cannot accept writes for
	// it (the seed's CP behaviour).
	Primary Consistency = -3
)

// ParseConsistency parses "1", "2", …, "one", "quorum", "all", "primary" and
// "" (default).
func ParseConsistency(s string) (Consistency, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "default":
		return ConsistencyDefault, nil
	case "one":
		return One, nil
	case "quorum":
		return Quorum, nil
	case "all":
		return All, nil
	case "primary":
		return Primary, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("node: bad consistency %q: want a count ≥ 1, quorum, all or primary", s)
	}
	return Consistency(n), nil
}

func (c Consistency) String() string {
	switch c {
	case ConsistencyDefault:
		return "default"
	case Quorum:
		return "quorum"
	case All:
		return "all"
	case Primary:
		return "primary"
	}
	return strconv.Itoa(int(c))
}

// count resolves c against replication factor n, with def used for the
// default level. Primary counts as one ack that must be the primary's.
func (c Consistency) count(n int, def Consistency) int {
	if c == ConsistencyDefault {
		c = def
	}
	switch c {
	case ConsistencyDefault:
		return 1
	case Quorum:
		return n/2 + 1
	case All:
		return n
	case Primary:
		return 1
	}
	if int(c) > n {
		return n
	}
	return int(c)
}

// Config configures a node. Build one with DefaultConfig and change what you
// need; Open validates it and fills in derived defaults.
type Config struct {
	// Name is the human-readable member name, unique in the cluster. Default:
	// the host name.
	Name string
	// DataDir is the pebble directory. Required unless InMemory.
	DataDir string
	// InMemory keeps all data in memory (pebble's vfs.NewMem): for tests and
	// ephemeral edge nodes. A restart loses everything and gets a new identity.
	InMemory bool

	// BindAddr is the gossip address (TCP and UDP) the node listens on.
	// Default 127.0.0.1:7946. Its host may be unspecified (0.0.0.0, ::) to
	// listen on every interface.
	BindAddr string
	// AdvertiseAddr is the gossip address other nodes use. Default:
	// BindAddr, or, when BindAddr's host is unspecified, this machine's
	// private IPv4 address with BindAddr's port (Open fails if there is
	// none: set it). A host without a port takes BindAddr's port.
	AdvertiseAddr string
	// RPCAddr is the peer-RPC listen address. Default: BindAddr's host,
	// port+1.
	RPCAddr string
	// AdvertiseRPCAddr is the peer-RPC address other nodes dial. Default:
	// the address RPCAddr listens on, with an unspecified host (0.0.0.0, ::)
	// replaced by AdvertiseAddr's host. Set it when peers reach this node
	// through a translated address (NAT, a port mapping).
	AdvertiseRPCAddr string
	// HTTPAddr is the client HTTP API address; empty disables the HTTP server.
	HTTPAddr string
	// AdvertiseHTTPAddr is the client API address the node announces to the
	// cluster (members and ring listings, clients that follow them).
	// Default: the address HTTPAddr listens on, with an unspecified host
	// replaced by AdvertiseAddr's host; with TLS it is announced as
	// "https://host:port". It may carry the scheme itself ("https://…").
	AdvertiseHTTPAddr string
	// Join lists seed gossip addresses (host:port; a host name is resolved
	// at every attempt and all its addresses are tried, as a Kubernetes
	// headless service gives them). Unreachable or unresolvable seeds are
	// retried in the background; Open does not fail because of them.
	Join []string
	// Zone is the failure zone (rack, site); replicas prefer distinct zones.
	Zone string

	// N is the replication factor. Default 3.
	N int
	// R and W are the default read and write quorums. Defaults One and One:
	// always readable and writable while any replica (or fallback) answers.
	R, W Consistency
	// VNodes is the number of virtual nodes per member. Default
	// ring.DefaultVNodes. Every node of a cluster must use the same value.
	VNodes int

	// MaxKeySize and MaxValueSize bound client requests (HTTP and embedded
	// API) only; replication and repair never apply them. Defaults 4 KiB and
	// 4 MiB.
	MaxKeySize   int
	MaxValueSize int
	// MaxContextEntries bounds the size of a client's causal context.
	// Default 1024.
	MaxContextEntries int
	// MaxBodyBytesInFlight bounds the memory holding client request bodies
	// (taken as bytes arrive); a request past it is answered 503. Default
	// 256 MiB (at least MaxValueSize).
	MaxBodyBytesInFlight int64
	// MaxClientConns caps open client HTTP connections; a connection past
	// it is answered 503 and closed. Default 4096.
	MaxClientConns int
	// MaxInFlightRequests caps client HTTP requests served at once; past it
	// a request is answered 503 {"error":"overloaded"} with Retry-After
	// (except /v1/health). Default 2048.
	MaxInFlightRequests int
	// HTTPReadHeaderTimeout bounds reading a request's headers. Default 10 s.
	HTTPReadHeaderTimeout time.Duration
	// HTTPBodyTimeout and HTTPMinBodyRate bound reading a request body: it
	// must arrive within HTTPBodyTimeout plus one second for every
	// HTTPMinBodyRate bytes received so far, and may not stall for
	// HTTPBodyTimeout, so a large value on a slow but steady link gets the
	// time it needs while a stalled or trickling body is cut (408).
	// Defaults 10 s and 16 KiB/s (a 4 MiB value may take up to 4 min 26 s).
	HTTPBodyTimeout time.Duration
	HTTPMinBodyRate int64
	// HTTPWriteTimeout bounds writing a response. Default 60 s.
	HTTPWriteTimeout time.Duration
	// HTTPIdleTimeout closes keep-alive connections idle this long.
	// Default 2 min.
	HTTPIdleTimeout time.Duration
	// MinFreeDisk makes the node refuse writes (clients get 507) while the
	// disk holding DataDir has less free space, so pebble never runs out of
	// it: pebble cannot continue after a failed write-ahead log write (the
	// node then refuses writes until restarted) and treats a failed
	// MANIFEST write as fatal. Writes resume once space is freed. Default
	// 256 MiB; negative disables the check.
	MinFreeDisk int64
	// SiblingWarn is the sibling count past which a key is reported (log and
	// metric). Siblings are never dropped. Default 32.
	SiblingWarn int

	// RequestTimeout bounds one client request end to end. Default 5 s.
	RequestTimeout time.Duration
	// ReplicaTimeout bounds one replica round trip. Default 2 s.
	ReplicaTimeout time.Duration
	// HintInterval is how often hints are offered to their targets.
	// Default 1 s.
	HintInterval time.Duration
	// RejoinInterval is how often the node re-joins known members that
	// memberlist considers dead (memberlist never re-merges on its own).
	// Default 1 s, jittered (0.5–1.5 s), so a healed partition re-forms one
	// cluster within about 2 s.
	RejoinInterval time.Duration

	// AEInterval is how often anti-entropy compares the ranges this node
	// shares with each peer (jittered); a peer that becomes reachable is
	// compared at once. Default 2 s; negative disables anti-entropy.
	AEInterval time.Duration
	// AERateLimit bounds the bytes of states anti-entropy sends per second
	// (pushes and answers to pulls). Default 64 MiB/s; negative: unlimited.
	AERateLimit int64
	// AEItemCacheKeys bounds the keys whose anti-entropy items a node keeps
	// in memory (about 16 bytes each) so that sessions list them without
	// reading the data; above it sessions scan storage. Default 4 000 000;
	// negative: no cache.
	AEItemCacheKeys int
	// AESessionTimeout bounds one anti-entropy session with its transfers.
	// Default 60 s.
	AESessionTimeout time.Duration
	// TombstoneGrace is how long a tombstone is kept at least; it is
	// reaped after that only once every replica holds it. A replica or a
	// hint cut off for longer than this can bring a deleted value back.
	// Default 24 h.
	TombstoneGrace time.Duration
	// ReapInterval is how often the node looks for tombstones to reap.
	// Default 10 min; negative disables reaping.
	ReapInterval time.Duration

	// DisableHints turns off hinted handoff: a write to an unreachable
	// replica is left to anti-entropy instead of being stored as a hint on
	// a fallback node, and hints no longer count toward W. For measuring
	// anti-entropy on its own. Default false.
	DisableHints bool

	// NoSync turns off fsync of writes. Default false: a write is
	// acknowledged only once durable.
	NoSync bool

	// ClockOffset shifts this node's physical clock (the source of its
	// hybrid logical clock) by the given amount. Default 0. For fault
	// injection: it shows that a node whose clock is off neither loses nor
	// resurrects writes (causality comes from dots, not timestamps).
	ClockOffset time.Duration

	// GossipKeys encrypt gossip (AES-GCM; each key 16, 24 or 32 bytes:
	// AES-128, -192 or -256): the first is the primary, which gossip is
	// encrypted with; every key decrypts. They seed the node's keyring
	// only when it has no keyring file yet: a keyring file, kept up to
	// date by rotations (Node.Keyring), wins over them. Default: none, and
	// without a keyring file gossip is not encrypted.
	GossipKeys [][]byte
	// KeyringFile is where the keyring is kept (JSON, mode 0600).
	// Default: "keyring" in DataDir; in memory only for an InMemory node.
	KeyringFile string

	// Memberlist is the base memberlist configuration. Default
	// memberlist.DefaultLANConfig with faster failure detection. Name, bind
	// and advertise addresses, the delegates and the keyring are
	// overwritten; its Keyring and SecretKey must be unset (use
	// GossipKeys).
	Memberlist *memberlist.Config
	// TLS, if set, turns on mutual TLS between peers (TLS 1.3 only) and
	// HTTPS for the client API, with the files it names; see TLSConfig.
	// The node then advertises its client API as "https://host:port" (in
	// members and ring listings), so clients that follow those addresses
	// use HTTPS. Default nil: plain TCP and HTTP.
	TLS *TLSConfig

	// Network overrides how the node listens and dials (tests use a
	// fault-injecting network). Default: real TCP/UDP sockets.
	Network Network

	// Tokens, if any, are the bearer tokens the client HTTP API accepts:
	// every request then needs one, except GET /v1/health and the /ui
	// page (see auth.go); a read-only token cannot write. Default none:
	// anyone who reaches the API may read and write. ReadTokensFile reads
	// them from a file.
	Tokens []Token
	// Insecure acknowledges running without some protection (see
	// SecurityGaps): without it, Open refuses a configuration that lacks
	// any (ErrInsecure); with it, the node logs what is missing at start.
	// Default false: a node needs a gossip key, TLS and client tokens, or
	// this.
	Insecure bool

	// Logger receives structured logs. Default slog.Default().
	Logger *slog.Logger

	// fs, if set, is the storage filesystem (tests inject faults with it).
	fs vfs.FS
}

// Network abstracts the node's sockets so tests can inject faults.
type Network interface {
	// Transport returns memberlist's transport for the gossip address.
	Transport(addr string) (memberlist.NodeAwareTransport, error)
	// Listen opens the peer-RPC listener.
	Listen(addr string) (net.Listener, error)
	// Dial connects from the node at local to the peer-RPC address addr.
	Dial(ctx context.Context, local, addr string) (net.Conn, error)
}

// DefaultConfig returns a configuration with every default set, for a node
// named name that keeps its data in dir.
func DefaultConfig(name, dir string) *Config {
	ml := memberlist.DefaultLANConfig()
	// Faster failure detection than the LAN default (≈5 s): clusters on one
	// LAN or one machine. TCP fallback pings stay on.
	ml.ProbeInterval = 500 * time.Millisecond
	ml.ProbeTimeout = 250 * time.Millisecond
	ml.GossipInterval = 100 * time.Millisecond
	ml.PushPullInterval = 10 * time.Second
	ml.SuspicionMult = 3
	ml.DeadNodeReclaimTime = 10 * time.Second
	// Joins and TCP probes to a dead peer must not stall the rejoin loop
	// (or Close) for the 10 s LAN default.
	ml.TCPTimeout = time.Second
	return &Config{
		Name:              name,
		DataDir:           dir,
		BindAddr:          "127.0.0.1:7946",
		N:                 3,
		R:                 One,
		W:                 One,
		MaxKeySize:        4 << 10,
		MaxValueSize:      4 << 20,
		MaxContextEntries: 1024,
		SiblingWarn:       32,
		RequestTimeout:    5 * time.Second,
		ReplicaTimeout:    2 * time.Second,
		HintInterval:      time.Second,
		RejoinInterval:    time.Second,
		AEInterval:        2 * time.Second,
		AERateLimit:       64 << 20,
		AEItemCacheKeys:   4_000_000,
		AESessionTimeout:  time.Minute,
		TombstoneGrace:    24 * time.Hour,
		ReapInterval:      10 * time.Minute,
		Memberlist:        ml,

		MaxBodyBytesInFlight:  256 << 20,
		MaxClientConns:        4096,
		MaxInFlightRequests:   2048,
		HTTPReadHeaderTimeout: 10 * time.Second,
		HTTPBodyTimeout:       10 * time.Second,
		HTTPMinBodyRate:       16 << 10,
		HTTPWriteTimeout:      time.Minute,
		HTTPIdleTimeout:       2 * time.Minute,
		MinFreeDisk:           256 << 20,
	}
}

var errConfig = errors.New("node: invalid config")

// Validate reports whether Open would accept the configuration, without
// opening storage or sockets (the agent's --print-config). It does not
// change c.
func (c *Config) Validate() error {
	cp := *c
	return cp.validate()
}

// privateIP returns this machine's private IPv4 address, the address
// memberlist advertises for an unspecified bind host. A variable so tests
// can replace it.
var privateIP = sockaddr.GetPrivateIP

// unspecified reports whether host listens on every interface: "", 0.0.0.0
// or ::.
func unspecified(host string) bool {
	if host == "" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsUnspecified()
}

// advertiseAddr returns the gossip address to advertise for bind and the
// configured advertise address adv (see Config.AdvertiseAddr).
func advertiseAddr(bind, adv string) (string, error) {
	bhost, bport, err := net.SplitHostPort(bind)
	if err != nil {
		return "", fmt.Errorf("bind address %q: %v", bind, err)
	}
	if adv != "" {
		host, port, err := net.SplitHostPort(adv)
		if err != nil {
			// A bare host or IP (Kubernetes: --advertise $(POD_IP)) takes
			// the bind port.
			if ip := net.ParseIP(adv); ip == nil && strings.Contains(adv, ":") {
				return "", fmt.Errorf("advertise address %q: %v", adv, err)
			}
			host, port = adv, bport
		}
		if unspecified(host) {
			return "", fmt.Errorf("advertise address %q: other nodes cannot reach an unspecified host; give this node's routable address", adv)
		}
		return net.JoinHostPort(host, port), nil
	}
	if !unspecified(bhost) {
		return bind, nil
	}
	ip, err := privateIP()
	if err != nil || ip == "" {
		return "", fmt.Errorf("bind address %q listens on every interface and no private IP address was found to advertise (%v): set the advertise address (--advertise)", bind, err)
	}
	return net.JoinHostPort(ip, bport), nil
}

// advertised returns the address to announce for a listener at listen:
// explicit if set, else listen with an unspecified host replaced by the
// host of the gossip advertise address.
func advertised(explicit, listen, gossipAdv string) string {
	if explicit != "" || listen == "" {
		return explicit
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil || !unspecified(host) {
		return listen
	}
	ahost, _, err := net.SplitHostPort(gossipAdv)
	if err != nil {
		return listen
	}
	return net.JoinHostPort(ahost, port)
}

// validate fills derived defaults and checks the configuration.
func (c *Config) validate() error {
	if c.Name == "" {
		return fmt.Errorf("%w: empty name", errConfig)
	}
	if c.DataDir == "" && !c.InMemory {
		return fmt.Errorf("%w: no data directory (set DataDir or InMemory)", errConfig)
	}
	if c.N < 1 {
		return fmt.Errorf("%w: N must be ≥ 1, got %d", errConfig, c.N)
	}
	if c.R == Primary {
		return fmt.Errorf("%w: R cannot be primary", errConfig)
	}
	for i, k := range c.GossipKeys {
		if err := checkGossipKey(k); err != nil {
			return fmt.Errorf("%w: gossip key %d: %w", errConfig, i+1, err)
		}
	}
	if c.Memberlist != nil && (c.Memberlist.Keyring != nil || len(c.Memberlist.SecretKey) > 0) {
		return fmt.Errorf("%w: set GossipKeys, not Memberlist.Keyring or Memberlist.SecretKey", errConfig)
	}
	if err := validateTokens(c.Tokens); err != nil {
		return fmt.Errorf("%w: %v", errConfig, err)
	}
	// Zero values mean defaults (a Config built by hand, not by
	// DefaultConfig).
	def := DefaultConfig(c.Name, c.DataDir)
	fill := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	fill(&c.RequestTimeout, def.RequestTimeout)
	fill(&c.ReplicaTimeout, def.ReplicaTimeout)
	fill(&c.HintInterval, def.HintInterval)
	fill(&c.RejoinInterval, def.RejoinInterval)
	fill(&c.AEInterval, def.AEInterval)
	fill(&c.AESessionTimeout, def.AESessionTimeout)
	fill(&c.TombstoneGrace, def.TombstoneGrace)
	fill(&c.ReapInterval, def.ReapInterval)
	if c.AERateLimit == 0 {
		c.AERateLimit = def.AERateLimit
	}
	if c.AEItemCacheKeys == 0 {
		c.AEItemCacheKeys = def.AEItemCacheKeys
	}
	if c.MaxKeySize <= 0 {
		c.MaxKeySize = def.MaxKeySize
	}
	if c.MaxValueSize <= 0 {
		c.MaxValueSize = def.MaxValueSize
	}
	if c.MaxContextEntries <= 0 {
		c.MaxContextEntries = def.MaxContextEntries
	}
	if c.SiblingWarn <= 0 {
		c.SiblingWarn = def.SiblingWarn
	}
	fill(&c.HTTPReadHeaderTimeout, def.HTTPReadHeaderTimeout)
	fill(&c.HTTPBodyTimeout, def.HTTPBodyTimeout)
	fill(&c.HTTPWriteTimeout, def.HTTPWriteTimeout)
	fill(&c.HTTPIdleTimeout, def.HTTPIdleTimeout)
	if c.HTTPMinBodyRate <= 0 {
		c.HTTPMinBodyRate = def.HTTPMinBodyRate
	}
	if c.MaxClientConns <= 0 {
		c.MaxClientConns = def.MaxClientConns
	}
	if c.MaxInFlightRequests <= 0 {
		c.MaxInFlightRequests = def.MaxInFlightRequests
	}
	if c.MaxBodyBytesInFlight <= 0 {
		c.MaxBodyBytesInFlight = def.MaxBodyBytesInFlight
	}
	c.MaxBodyBytesInFlight = max(c.MaxBodyBytesInFlight, int64(c.MaxValueSize))
	if c.MinFreeDisk == 0 {
		c.MinFreeDisk = def.MinFreeDisk
	}
	if c.BindAddr == "" {
		c.BindAddr = def.BindAddr
	}
	adv, err := advertiseAddr(c.BindAddr, c.AdvertiseAddr)
	if err != nil {
		return fmt.Errorf("%w: %v", errConfig, err)
	}
	c.AdvertiseAddr = adv
	for _, a := range []struct{ what, addr string }{{"RPC advertise", c.AdvertiseRPCAddr}, {"HTTP advertise", c.AdvertiseHTTPAddr}} {
		if a.addr == "" {
			continue
		}
		addr := a.addr
		if a.what == "HTTP advertise" {
			addr = trimScheme(addr)
		}
		if host, _, err := splitHostPort(addr); err != nil {
			return fmt.Errorf("%w: %s address %q: %v", errConfig, a.what, a.addr, err)
		} else if unspecified(host) {
			return fmt.Errorf("%w: %s address %q: other nodes cannot reach an unspecified host", errConfig, a.what, a.addr)
		}
	}
	if c.RPCAddr == "" {
		host, port, err := net.SplitHostPort(c.BindAddr)
		if err != nil {
			return fmt.Errorf("%w: bind address %q: %v", errConfig, c.BindAddr, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p <= 0 {
			return fmt.Errorf("%w: bind port %q must be a fixed number when no RPC address is given", errConfig, port)
		}
		c.RPCAddr = net.JoinHostPort(host, strconv.Itoa(p+1))
	}
	if c.TLS != nil {
		if _, err := loadTLS(c.TLS); err != nil {
			return fmt.Errorf("%w: %v", errConfig, err)
		}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Memberlist == nil {
		c.Memberlist = def.Memberlist
	}
	return nil
}

// trimScheme drops an "http://" or "https://" prefix.
func trimScheme(addr string) string {
	for _, p := range []string{"http://", "https://"} {
		if len(addr) > len(p) && strings.EqualFold(addr[:len(p)], p) {
			return addr[len(p):]
		}
	}
	return addr
}

// httpAdvertised is the client API address to announce: adv, prefixed
// with "https://" when the API is HTTPS and adv names no scheme. A plain
// HTTP API's address stays "host:port", as it always was.
func httpAdvertised(adv string, https bool) string {
	if adv == "" || !https || trimScheme(adv) != adv {
		return adv
	}
	return "https://" + adv
}
