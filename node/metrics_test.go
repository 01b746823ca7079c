package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape fetches GET /metrics from a node over HTTP and parses it with
// Prometheus' text format parser.
func scrape(t *testing.T, n *testNode) map[string]*dto.MetricFamily {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + n.HTTPAddr() + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", n.Name(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("scrape %s: %s: %s", n.Name(), resp.Status, b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("scrape %s: Content-Type %q, want the text format", n.Name(), ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse the scrape of %s: %v", n.Name(), err)
	}
	return mfs
}

// series finds the sample of family name whose labels include want
// ("k=v" pairs); it fails the test unless exactly one matches.
func series(t *testing.T, mfs map[string]*dto.MetricFamily, name string, want ...string) *dto.Metric {
	t.Helper()
	mf := mfs[name]
	if mf == nil {
		t.Fatalf("no metric family %s", name)
	}
	var found []*dto.Metric
	for _, m := range mf.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		ok := true
		for _, kv := range want {
			k, v, _ := strings.Cut(kv, "=")
			if labels[k] != v {
				ok = false
			}
		}
		if ok {
			found = append(found, m)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s%v: %d series match, want 1", name, want, len(found))
	}
	return found[0]
}

// value is the value of a counter, gauge or untyped sample.
func value(t *testing.T, mfs map[string]*dto.MetricFamily, name string, want ...string) float64 {
	t.Helper()
	m := series(t, mfs, name, want...)
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	t.Fatalf("%s%v is not a counter or gauge", name, want)
	return 0
}

// histCount sums the sample counts of a histogram's series matching want.
func histCount(mfs map[string]*dto.MetricFamily, name string, want ...string) uint64 {
	var sum uint64
	for _, m := range mfs[name].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		ok := true
		for _, kv := range want {
			k, v, _ := strings.Cut(kv, "=")
			ok = ok && labels[k] == v
		}
		if ok && m.Histogram != nil {
			sum += m.Histogram.GetSampleCount()
		}
	}
	return sum
}

// TestMetricsEndpoint drives a known workload through one node of a
// three-node cluster and checks what its /metrics reports.
func TestMetricsEndpoint(t *testing.T) {
	nodes := startCluster(t, 3, func(c *Config) { c.AEInterval = 200 * time.Millisecond })
	n1 := nodes[0]
	w, r := &WriteOptions{W: All}, &ReadOptions{R: All}

	const puts, deletes, singleGets = 10, 3, 5
	for i := range puts {
		if _, err := n1.Put(bg, fmt.Appendf(nil, "k%d", i), []byte("v"), w); err != nil {
			t.Fatal(err)
		}
	}
	// Two writes without a context are concurrent: the key gets siblings.
	if _, err := n1.Put(bg, []byte("sib"), []byte("a"), w); err != nil {
		t.Fatal(err)
	}
	if _, err := nodes[1].Put(bg, []byte("sib"), []byte("b"), w); err != nil {
		t.Fatal(err)
	}
	for i := range singleGets {
		res, err := n1.Get(bg, fmt.Appendf(nil, "k%d", i), r)
		if err != nil || len(res.Siblings) != 1 {
			t.Fatalf("get k%d: %v %v", i, res, err)
		}
	}
	if res, err := n1.Get(bg, []byte("sib"), r); err != nil || len(res.Siblings) != 2 {
		t.Fatalf("get sib: %v, %v; want two siblings", res, err)
	}
	if _, err := n1.Get(bg, []byte("absent"), r); err == nil {
		t.Fatal("get absent: found")
	}
	if _, err := n1.Get(bg, nil, r); err == nil {
		t.Fatal("get of an empty key succeeded")
	}
	for i := range deletes {
		if _, err := n1.Delete(bg, fmt.Appendf(nil, "k%d", i), w); err != nil {
			t.Fatal(err)
		}
	}

	mfs := scrape(t, n1)

	// Every family is documented, and counters are named as such.
	for name, mf := range mfs {
		if mf.GetHelp() == "" {
			t.Errorf("%s has no HELP", name)
		}
		if strings.HasPrefix(name, "rumor_") && (mf.GetType() == dto.MetricType_COUNTER) != strings.HasSuffix(name, "_total") {
			t.Errorf("%s is a %v: counters, and only they, end in _total", name, mf.GetType())
		}
	}
	if v := value(t, mfs, "rumor_node_info", "name=n1"); v != 1 {
		t.Errorf("rumor_node_info = %v", v)
	}

	// Request latency: one sample per operation issued, by result.
	const gets = singleGets + 3 // + sib, absent, empty key
	reqs := "rumor_request_duration_seconds"
	for _, c := range []struct {
		labels []string
		want   uint64
	}{
		{[]string{"op=get"}, gets},
		{[]string{"op=get", "result=ok"}, singleGets + 1},
		{[]string{"op=get", "result=not_found"}, 1},
		{[]string{"op=get", "result=bad_request"}, 1},
		{[]string{"op=put"}, puts + 1},
		{[]string{"op=put", "result=ok"}, puts + 1},
		{[]string{"op=delete"}, deletes},
		{[]string{"op=delete", "result=ok"}, deletes},
	} {
		if got := histCount(mfs, reqs, c.labels...); got != c.want {
			t.Errorf("%s%v: %d samples, want %d", reqs, c.labels, got, c.want)
		}
	}
	if h := series(t, mfs, reqs, "op=put", "result=ok").GetHistogram(); h.GetSampleSum() <= 0 {
		t.Errorf("put latency sums to %v", h.GetSampleSum())
	}

	// Siblings per read: the reads that answered (not the bad request),
	// one of them with two values.
	sib := series(t, mfs, "rumor_read_siblings").GetHistogram()
	if sib.GetSampleCount() != gets-1 || sib.GetSampleSum() != singleGets+2 {
		t.Errorf("rumor_read_siblings: %d reads, %v values; want %d, %d", sib.GetSampleCount(), sib.GetSampleSum(), gets-1, singleGets+2)
	}
	for _, b := range sib.GetBucket() {
		var want uint64
		switch {
		case b.GetUpperBound() < 0:
		case b.GetUpperBound() < 1: // the read of an absent key
			want = 1
		case b.GetUpperBound() < 2:
			want = gets - 2
		default:
			want = gets - 1
		}
		if b.GetCumulativeCount() != want {
			t.Errorf("rumor_read_siblings bucket le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
	if v := value(t, mfs, "rumor_reads_total"); v != gets-1 {
		t.Errorf("rumor_reads_total = %v, want %d", v, gets-1)
	}

	// Replication: W=all waited for both other replicas of every write
	// coordinated here.
	var shipped float64
	for _, res := range []string{"ok", "hinted", "failed"} {
		shipped += value(t, mfs, "rumor_replication_total", "result="+res)
	}
	if want := float64(2 * (puts + 1 + deletes)); shipped != want || value(t, mfs, "rumor_replication_total", "result=ok") == 0 {
		t.Errorf("rumor_replication_total: %v states shipped (%v ok), want %v", shipped, value(t, mfs, "rumor_replication_total", "result=ok"), want)
	}
	if v := value(t, mfs, "rumor_writes_total"); v != puts+1+deletes {
		t.Errorf("rumor_writes_total = %v, want %d", v, puts+1+deletes)
	}
	// Hints pending: a series per other member (0 unless a replica was
	// too slow and got a hint).
	if l := len(mfs["rumor_hints_pending"].GetMetric()); l != 2 {
		t.Errorf("rumor_hints_pending has %d series, want one per other member", l)
	}
	for _, other := range []string{"n2", "n3"} {
		if v := value(t, mfs, "rumor_hints_pending", "target="+other); v < 0 {
			t.Errorf("hints pending for %s: %v", other, v)
		}
	}

	// Membership.
	for state, want := range map[string]float64{"alive": 3, "suspect": 0, "dead": 0, "left": 0} {
		if v := value(t, mfs, "rumor_members", "state="+state); v != want {
			t.Errorf("rumor_members{state=%q} = %v, want %v", state, v, want)
		}
	}
	if v := value(t, mfs, "rumor_members_by_status", "status=member"); v != 3 {
		t.Errorf("rumor_members_by_status{status=member} = %v", v)
	}
	if v := value(t, mfs, "rumor_node_status", "status=member"); v != 1 {
		t.Errorf("rumor_node_status{status=member} = %v", v)
	}
	if v := value(t, mfs, "rumor_ring_ownership_ratio"); v <= 0 || v >= 1 {
		t.Errorf("rumor_ring_ownership_ratio = %v", v)
	}
	if v := value(t, mfs, "rumor_transfer_moving"); v != 0 {
		t.Errorf("rumor_transfer_moving = %v in a settled cluster", v)
	}

	// Storage (pebble).
	for _, name := range []string{"rumor_storage_disk_usage_bytes", "rumor_storage_wal_written_bytes_total",
		"rumor_storage_memtable_bytes", "rumor_storage_memtables", "rumor_storage_writes_total", "rumor_storage_healthy"} {
		if v := value(t, mfs, name); v <= 0 {
			t.Errorf("%s = %v", name, v)
		}
	}
	for _, name := range []string{"rumor_storage_read_amplification", "rumor_storage_compactions_total",
		"rumor_storage_compaction_debt_bytes", "rumor_storage_flushes_total", "rumor_storage_block_cache_bytes",
		"rumor_storage_block_cache_hits_total", "rumor_storage_block_cache_misses_total"} {
		if v := value(t, mfs, name); v < 0 || math.IsNaN(v) {
			t.Errorf("%s = %v", name, v)
		}
	}
	if l := len(mfs["rumor_storage_tables"].GetMetric()); l != 7 {
		t.Errorf("rumor_storage_tables has %d levels, want 7", l)
	}
	value(t, mfs, "rumor_storage_tables", "level=0")
	value(t, mfs, "rumor_storage_keyspace_bytes", "keyspace=data")

	// Anti-entropy: this node shares ranges with both peers; sessions run
	// every 200 ms, initiated by the lower id of each pair (the initiator
	// counts the session and the bytes; both sides the exchange).
	if v := value(t, mfs, "rumor_antientropy_ranges"); v <= 0 {
		t.Errorf("rumor_antientropy_ranges = %v", v)
	}
	if v := value(t, mfs, "rumor_antientropy_keys"); v < puts {
		t.Errorf("rumor_antientropy_keys = %v, want at least %d", v, puts)
	}
	eventually(t, 10*time.Second, func() error {
		var sessions, sent, received float64
		for _, n := range nodes {
			m := scrape(t, n)
			sessions += value(t, m, "rumor_antientropy_sessions_total")
			sent += value(t, m, "rumor_antientropy_sent_bytes_total")
			received += value(t, m, "rumor_antientropy_received_bytes_total")
		}
		if sessions == 0 || sent == 0 || received == 0 {
			return fmt.Errorf("anti-entropy: %v sessions, %v bytes sent, %v received", sessions, sent, received)
		}
		mfs = scrape(t, n1)
		for _, peer := range []string{"n2", "n3"} {
			if _, ok := findSeries(mfs, "rumor_antientropy_peer_last_exchange_timestamp_seconds", "peer="+peer); !ok {
				return fmt.Errorf("no exchange with %s yet", peer)
			}
		}
		return nil
	})
	for _, name := range []string{"rumor_antientropy_keys_pulled_total", "rumor_antientropy_keys_repaired_total", "rumor_antientropy_repaired_bytes_total",
		"rumor_antientropy_ranges_in_sync", "rumor_antientropy_sessions_in_sync_total", "rumor_antientropy_symbols_total"} {
		value(t, mfs, name)
	}
	for _, peer := range []string{"n2", "n3"} {
		value(t, mfs, "rumor_antientropy_peer_in_sync", "peer="+peer)
		if v := value(t, mfs, "rumor_antientropy_peer_ranges", "peer="+peer); v <= 0 {
			t.Errorf("shares %v ranges with %s", v, peer)
		}
	}

	// Peer RPCs: n2 merged n1's writes in replicate_batch calls.
	mfs2 := scrape(t, nodes[1])
	if c := histCount(mfs2, "rumor_rpc_duration_seconds", "method=replicate_batch", "result=ok"); c == 0 {
		t.Error("n2 reports no replicate_batch RPC")
	}
	if v := value(t, mfs2, "rumor_replica_states_received_total"); v < puts+1+deletes {
		t.Errorf("n2 received %v states, want at least %d", v, puts+1+deletes)
	}

	// Runtime and process collectors.
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if mfs[name] == nil {
			t.Errorf("no %s", name)
		}
	}

	// A second scrape after one more put: counters and histograms do not
	// go down, and the put shows.
	if _, err := n1.Put(bg, []byte("one-more"), []byte("v"), w); err != nil {
		t.Fatal(err)
	}
	again := scrape(t, n1)
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var before, after float64
			labels := labelPairs(m)
			m2, ok := findSeries(again, name, labels...)
			switch {
			case m.Counter != nil:
				if !ok {
					t.Errorf("%s%v gone in the second scrape", name, labels)
					continue
				}
				before, after = m.Counter.GetValue(), m2.Counter.GetValue()
			case m.Histogram != nil:
				if !ok {
					t.Errorf("%s%v gone in the second scrape", name, labels)
					continue
				}
				before, after = float64(m.Histogram.GetSampleCount()), float64(m2.Histogram.GetSampleCount())
			default:
				continue
			}
			if after < before {
				t.Errorf("%s%v went down: %v, then %v", name, labels, before, after)
			}
		}
	}
	if got := histCount(again, reqs, "op=put"); got != puts+2 {
		t.Errorf("%s{op=put} = %d after one more put, want %d", reqs, got, puts+2)
	}

	// GET and HEAD only.
	for method, want := range map[string]int{http.MethodHead: http.StatusOK, http.MethodPost: http.StatusMethodNotAllowed} {
		req, _ := http.NewRequest(method, "http://"+n1.HTTPAddr()+"/metrics", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s /metrics: %s, want %d", method, resp.Status, want)
		}
	}
}

func labelPairs(m *dto.Metric) []string {
	var out []string
	for _, l := range m.GetLabel() {
		out = append(out, l.GetName()+"="+l.GetValue())
	}
	return out
}

// findSeries finds the sample of family name with exactly the labels want.
func findSeries(mfs map[string]*dto.MetricFamily, name string, want ...string) (*dto.Metric, bool) {
	for _, m := range mfs[name].GetMetric() {
		got := labelPairs(m)
		if len(got) != len(want) {
			continue
		}
		match := true
		for _, kv := range want {
			match = match && slices.Contains(got, kv)
		}
		if match {
			return m, true
		}
	}
	return nil, false
}

// Several nodes in one process each have their own registry, and a node
// closed and opened again on its directory registers afresh.
func TestMetricsPerNode(t *testing.T) {
	dirA := t.TempDir()
	a := openNode(t, testConfig(t, "a", dirA))
	memCfg := testConfig(t, "b", "")
	memCfg.InMemory = true
	b := openNode(t, memCfg)
	if _, err := a.Put(bg, []byte("k"), []byte("v"), nil); err != nil {
		t.Fatal(err)
	}

	gather := func(n *testNode) map[string]*dto.MetricFamily {
		t.Helper()
		fams, err := n.Gatherer().Gather()
		if err != nil {
			t.Fatalf("gather %s: %v", n.Name(), err)
		}
		out := map[string]*dto.MetricFamily{}
		for _, mf := range fams {
			out[mf.GetName()] = mf
		}
		return out
	}
	ma, mb := gather(a), gather(b)
	if value(t, ma, "rumor_node_info", "name=a") != 1 || value(t, mb, "rumor_node_info", "name=b") != 1 {
		t.Fatal("node_info does not name each node")
	}
	if h := histCount(ma, "rumor_request_duration_seconds", "op=put"); h != 1 {
		t.Errorf("a counted %d puts, want 1", h)
	}
	if h := histCount(mb, "rumor_request_duration_seconds", "op=put"); h != 0 {
		t.Errorf("b counted %d puts, want 0 (the put went to a)", h)
	}
	// The in-memory store is pebble too.
	if v := value(t, mb, "rumor_storage_wal_written_bytes_total"); v <= 0 {
		t.Errorf("in-memory node: rumor_storage_wal_written_bytes_total = %v", v)
	}
	if v := value(t, mb, "rumor_storage_memtables"); v < 1 {
		t.Errorf("in-memory node: rumor_storage_memtables = %v", v)
	}

	// A peer RPC b does not know is refused and counted as such.
	ctx, cancel := context.WithTimeout(bg, 5*time.Second)
	defer cancel()
	if _, err := a.call(ctx, b.RPCAddr(), 99, nil); err == nil {
		t.Fatal("b answered RPC method 99")
	}
	if c := histCount(gather(b), "rumor_rpc_duration_seconds", "method=unknown", "result=error"); c != 1 {
		t.Errorf("b counted %d unknown RPCs, want 1", c)
	}

	// Close and reopen a on its directory.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Gatherer().Gather(); err != nil {
		t.Errorf("gather a closed node: %v", err)
	}
	a2 := openNode(t, testConfig(t, "a", dirA))
	if res, err := a2.Get(bg, []byte("k"), nil); err != nil || len(res.Siblings) != 1 {
		t.Fatalf("get after reopen: %v %v", res, err)
	}
	m2 := scrape(t, a2)
	if value(t, m2, "rumor_node_info", "name=a") != 1 {
		t.Fatal("reopened node does not name itself")
	}
	if h := histCount(m2, "rumor_request_duration_seconds", "op=get"); h != 1 {
		t.Errorf("reopened node counted %d gets, want 1", h)
	}
	if h := histCount(m2, "rumor_request_duration_seconds", "op=put"); h != 0 {
		t.Errorf("reopened node counted %d puts, want 0 (a fresh registry)", h)
	}
	if v := value(t, m2, "rumor_storage_disk_usage_bytes"); v <= 0 {
		t.Errorf("reopened node: rumor_storage_disk_usage_bytes = %v", v)
	}
}

func TestResultOf(t *testing.T) {
	for err, want := range map[error]string{
		nil: "ok",
		fmt.Errorf("read %q: %w", "k", ErrNotFound): "not_found",
		ErrBadKey: "bad_request",
		fmt.Errorf("write: %w: 5 bytes", ErrValueTooLarge):      "bad_request",
		fmt.Errorf("write %q: %w: 1 of 2", "k", ErrUnavailable): "unavailable",
		ErrClosed: "unavailable",
		fmt.Errorf("coordinator: %w", context.DeadlineExceeded): "timeout",
		fmt.Errorf("read: %w", context.Canceled):                "canceled",
		errors.New("disk on fire"):                              "error",
	} {
		if got := resultOf(err); got != want {
			t.Errorf("resultOf(%v) = %q, want %q", err, got, want)
		}
	}
}

// docs/metrics.md lists every rumor_ metric a node exports, and nothing
// else.
func TestMetricsDocumented(t *testing.T) {
	cfg := testConfig(t, "solo", "")
	cfg.InMemory = true
	n := openNode(t, cfg)
	fams, err := n.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `(rumor_[a-z_]+)` \\|").FindAllSubmatch(doc, -1) {
		documented[string(m[1])] = true
	}
	// What a lone node exports, and the families that need peers (from
	// the collector's descriptors).
	exported := map[string]bool{}
	for _, mf := range fams {
		if name := mf.GetName(); strings.HasPrefix(name, "rumor_") {
			exported[name] = true
		}
	}
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	for _, d := range nodeDescs {
		m := fqName.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("no name in %s", d)
		}
		exported[m[1]] = true
	}
	for name := range exported {
		if !documented[name] {
			t.Errorf("%s is not in docs/metrics.md", name)
		}
	}
	for name := range documented {
		if !exported[name] {
			t.Errorf("docs/metrics.md lists %s, which the node does not export", name)
		}
	}
}
