package node

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"
	"log"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// tapNetwork wraps a Network and records what the node using it sends on
// its gossip transport: every packet, and the bytes written on every
// stream it dials (push-pull state exchanges).
type tapNetwork struct {
	Network
	mu      sync.Mutex
	packets [][]byte
	streams []*tapConn
}

func (t *tapNetwork) Transport(addr string) (memberlist.NodeAwareTransport, error) {
	tr, err := t.Network.Transport(addr)
	if err != nil {
		return nil, err
	}
	return &tapTransport{NodeAwareTransport: tr, tap: t}, nil
}

// captured returns copies of the packets and stream bytes recorded so far.
func (t *tapNetwork) captured() (packets, streams [][]byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range t.packets {
		packets = append(packets, slices.Clone(p))
	}
	for _, c := range t.streams {
		streams = append(streams, c.written())
	}
	return packets, streams
}

type tapTransport struct {
	memberlist.NodeAwareTransport
	tap *tapNetwork
}

func (t *tapTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (t *tapTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	t.tap.mu.Lock()
	t.tap.packets = append(t.tap.packets, slices.Clone(b))
	t.tap.mu.Unlock()
	return t.NodeAwareTransport.WriteToAddress(b, a)
}

func (t *tapTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *tapTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	c, err := t.NodeAwareTransport.DialAddressTimeout(a, timeout)
	if err != nil {
		return nil, err
	}
	tc := &tapConn{Conn: c}
	t.tap.mu.Lock()
	t.tap.streams = append(t.tap.streams, tc)
	t.tap.mu.Unlock()
	return tc, nil
}

type tapConn struct {
	net.Conn
	mu  sync.Mutex
	out []byte
}

func (c *tapConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	c.out = append(c.out, b...)
	c.mu.Unlock()
	return c.Conn.Write(b)
}

func (c *tapConn) written() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.out)
}

// replayTransport is a memberlist transport that only receives what the
// test hands it; what memberlist sends goes nowhere.
type replayTransport struct {
	packets chan *memberlist.Packet
	streams chan net.Conn
}

var _ memberlist.NodeAwareTransport = (*replayTransport)(nil)

func (r *replayTransport) FinalAdvertiseAddr(string, int) (net.IP, int, error) {
	return net.ParseIP("127.0.9.9"), 7946, nil
}
func (r *replayTransport) WriteTo([]byte, string) (time.Time, error) { return time.Now(), nil }
func (r *replayTransport) WriteToAddress([]byte, memberlist.Address) (time.Time, error) {
	return time.Now(), nil
}
func (r *replayTransport) PacketCh() <-chan *memberlist.Packet { return r.packets }
func (r *replayTransport) DialTimeout(string, time.Duration) (net.Conn, error) {
	return nil, errors.New("replay transport dials nowhere")
}
func (r *replayTransport) DialAddressTimeout(memberlist.Address, time.Duration) (net.Conn, error) {
	return nil, errors.New("replay transport dials nowhere")
}
func (r *replayTransport) StreamCh() <-chan net.Conn { return r.streams }
func (r *replayTransport) Shutdown() error           { return nil }

// syncLog is a log destination safe for memberlist's goroutines.
type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncLog) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncLog) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// replayStream hands stream (the bytes a node wrote on a push-pull
// connection it dialed) to a fresh memberlist with keys (nil: no
// encryption), as if that node had dialed it, and returns the names the
// memberlist then knows besides itself, and its log.
func replayStream(t *testing.T, stream []byte, keys [][]byte) ([]string, string) {
	t.Helper()
	conf := memberlist.DefaultLocalConfig()
	conf.Name = "replay"
	tr := &replayTransport{packets: make(chan *memberlist.Packet), streams: make(chan net.Conn)}
	conf.Transport = tr
	logs := &syncLog{}
	conf.Logger = log.New(logs, "", 0)
	if keys != nil {
		kr, err := memberlist.NewKeyring(keys, keys[0])
		if err != nil {
			t.Fatal(err)
		}
		conf.Keyring = kr
	}
	ml, err := memberlist.Create(conf)
	if err != nil {
		t.Fatal(err)
	}
	defer ml.Shutdown()
	local, remote := net.Pipe()
	defer local.Close()
	tr.streams <- remote
	_ = local.SetDeadline(time.Now().Add(2 * time.Second))
	go func() {
		// memberlist answers with its own state: read it so it is not
		// stuck writing.
		var buf [4096]byte
		for {
			if _, err := local.Read(buf[:]); err != nil {
				return
			}
		}
	}()
	if _, err := local.Write(stream); err != nil {
		return nil, fmt.Sprintf("write: %v\n%s", err, logs.String())
	}
	var names []string
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		names = names[:0]
		for _, m := range ml.Members() {
			if m.Name != conf.Name {
				names = append(names, m.Name)
			}
		}
		if len(names) > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	slices.Sort(names)
	return names, logs.String()
}

// openGCM decrypts a memberlist packet (encryption version byte, 12-byte
// nonce, AES-GCM ciphertext and tag; no label) with key.
func openGCM(key, packet []byte) ([]byte, error) {
	if len(packet) < 1+12+16 || packet[0] != 1 {
		return nil, fmt.Errorf("not an encrypted packet (version %d, %d bytes)", packet[0], len(packet))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return gcm.Open(nil, packet[1:13], packet[13:], nil)
}

// gossipCapture runs two nodes named name1 and name2 on a fault network,
// the second (joining the first) tapped, with gossip encrypted under key
// (nil: not encrypted) and compression off (so that plaintext would show
// names as they are), and returns what the tapped node sent in two
// seconds of gossip.
func gossipCapture(t *testing.T, key []byte, name1, name2 string) (packets, streams [][]byte) {
	t.Helper()
	fn := NewFaultNetwork(7)
	tap := &tapNetwork{Network: fn}
	var nodes []*testNode
	for i, name := range []string{name1, name2} {
		nodes = append(nodes, faultNode(t, fn, i+1, func(c *Config) {
			c.Name = name
			c.Memberlist.EnableCompression = false
			if key != nil {
				c.GossipKeys = [][]byte{key}
			}
			if i == 1 {
				c.Network = tap
			}
		}))
	}
	waitMembers(t, nodes, 2)
	time.Sleep(2 * time.Second) // probes, gossip and a push-pull (1 s)
	packets, streams = tap.captured()
	if len(packets) < 10 || len(streams) < 2 {
		t.Fatalf("captured %d packets and %d streams; want probes and push-pulls", len(packets), len(streams))
	}
	return packets, streams
}

// TestGossipUnreadable captures the gossip a keyed node sends (packets and
// push-pull streams) and checks that it holds neither the node names nor
// the addresses in plaintext, that memberlist without the key (or with
// another) cannot decode it, and that with the key it can: the capture is
// real gossip. An unencrypted cluster captured the same way shows its
// names in plaintext (the check can fail).
func TestGossipUnreadable(t *testing.T) {
	const name1, name2 = "alpha-keyed-member", "bravo-keyed-member"
	addrs := []string{HostAddr(1, 7946), HostAddr(2, 7946), HostAddr(1, 7947), HostAddr(2, 7947)}
	secrets := []string{name1, name2}
	secrets = append(secrets, addrs...)
	contains := func(b []byte, ss []string) []string {
		var found []string
		for _, s := range ss {
			if bytes.Contains(b, []byte(s)) {
				found = append(found, s)
			}
		}
		// The hosts' IPv4 addresses as raw bytes (memberlist's wire form).
		for _, ip := range [][]byte{{127, 0, 1, 1}, {127, 0, 1, 2}} {
			if bytes.Contains(b, ip) {
				found = append(found, fmt.Sprint(ip))
			}
		}
		return found
	}

	t.Run("control: plaintext", func(t *testing.T) {
		packets, streams := gossipCapture(t, nil, "plain-member-one", "plain-member-two")
		all := bytes.Join(append(packets, streams...), nil)
		if found := contains(all, []string{"plain-member-one", "plain-member-two", HostAddr(2, 7946)}); len(found) < 3 {
			t.Fatalf("unencrypted gossip shows only %v in plaintext: the check would not see plaintext", found)
		}
		names, _ := replayStream(t, streams[0], nil)
		if len(names) == 0 {
			t.Fatal("memberlist learned nothing from an unencrypted push-pull: the replay does not work")
		}
	})

	key, other := newKey(t, 32), newKey(t, 32)
	packets, streams := gossipCapture(t, key, name1, name2)
	for i, p := range packets {
		if found := contains(p, secrets); len(found) > 0 {
			t.Fatalf("packet %d shows %v in plaintext", i, found)
		}
	}
	for i, s := range streams {
		if found := contains(s, secrets); len(found) > 0 {
			t.Fatalf("stream %d shows %v in plaintext", i, found)
		}
	}

	// Packets: AES-GCM under the key; names inside; no other key opens them.
	sawName := false
	for i, p := range packets {
		plain, err := openGCM(key, p)
		if err != nil {
			t.Fatalf("packet %d (%d bytes) does not decrypt with the key: %v", i, len(p), err)
		}
		sawName = sawName || len(contains(plain, secrets)) > 0
		if _, err := openGCM(other, p); err == nil {
			t.Fatalf("packet %d decrypts with another key", i)
		}
	}
	if !sawName {
		t.Error("no decrypted packet holds a node name or address: not the gossip we meant to capture")
	}

	// Streams: memberlist with the key decodes the push-pull and learns
	// both members; without it, or with another key, it learns nothing and
	// says why.
	learned := false
	for i, s := range streams {
		names, logs := replayStream(t, s, [][]byte{key})
		if slices.Equal(names, []string{name1, name2}) {
			learned = true
		}
		if names, logs := replayStream(t, s, nil); len(names) > 0 || !strings.Contains(logs, "remote state is encrypted and encryption is not configured") {
			t.Fatalf("stream %d without the key: learned %v; log:\n%s", i, names, logs)
		}
		if names, logs := replayStream(t, s, [][]byte{other}); len(names) > 0 || !strings.Contains(logs, "no installed keys could decrypt") {
			t.Fatalf("stream %d with another key: learned %v; log:\n%s", i, names, logs)
		}
		if learned {
			break
		}
		t.Logf("stream %d with the key: learned %v; log:\n%s", i, names, logs)
	}
	if !learned {
		t.Fatal("memberlist with the key learned the members from no captured stream")
	}
}
