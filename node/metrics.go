package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rumorkv/rumor/node/storage"
	"github.com/rumorkv/rumor/ring"
)

// Prometheus metrics, served at GET /metrics on the client API; the list
// with the meaning of each is docs/metrics.md.
//
// Every node owns its registry (several nodes run in one process in tests
// and in `rumor demo`; the global default registry is never used). Only
// three things are observed on the request path: the latency of client
// requests and of peer RPCs, and the siblings a read returned, into
// histograms whose usual series are resolved when the node opens (an
// Observe: no label lookup, no allocation). Everything else is read when
// Prometheus scrapes, from what the node already keeps: its counters
// (Metrics), anti-entropy (AntiEntropy), membership, transfers and the
// store's Metrics.

const metricsPath = "/metrics"

// op is a client operation (the op label of rumor_request_duration_seconds).
type op uint8

const (
	opGet op = iota
	opPut
	opDelete
	numOps
)

var opNames = [numOps]string{"get", "put", "delete"}

// Request results (the result label).
const (
	resultOK          = "ok"
	resultNotFound    = "not_found"
	resultBadRequest  = "bad_request"
	resultUnavailable = "unavailable"
	resultTimeout     = "timeout"
	resultCanceled    = "canceled"
	resultError       = "error"
)

// resultOf names a request's outcome.
func resultOf(err error) string {
	switch {
	case err == nil:
		return resultOK
	case errors.Is(err, ErrNotFound):
		return resultNotFound
	case errors.Is(err, ErrBadKey), errors.Is(err, ErrBadContext),
		errors.Is(err, ErrKeyTooLarge), errors.Is(err, ErrValueTooLarge):
		return resultBadRequest
	case errors.Is(err, ErrUnavailable), errors.Is(err, ErrClosed):
		return resultUnavailable
	case errors.Is(err, context.DeadlineExceeded):
		return resultTimeout
	case errors.Is(err, context.Canceled):
		return resultCanceled
	}
	return resultError
}

// rpcMethodNames label peer RPC methods; 0 stands for any unknown method.
var rpcMethodNames = [...]string{
	0:                    "unknown",
	methodReplicate:      "replicate",
	methodRead:           "read",
	methodHint:           "hint",
	methodCoordinate:     "coordinate",
	methodAESync:         "ae_sync",
	methodAEPull:         "ae_pull",
	methodAEPullRange:    "ae_pull_range",
	methodAEDone:         "ae_done",
	methodReap:           "reap",
	methodAENeed:         "ae_need",
	methodAEFetch:        "ae_fetch",
	methodReplicateBatch: "replicate_batch",
	methodSummary:        "summary",
	methodKeyring:        "keyring",
}

// latencyBuckets fit a store answering in well under a millisecond on a
// LAN and in seconds when replicas time out.
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// siblingBuckets: 0 is a read that found nothing, 1 the common case.
var siblingBuckets = []float64{0, 1, 2, 3, 4, 6, 8, 16, 32, 64}

// promMetrics is a node's registry and the histograms it observes on the
// request path.
type promMetrics struct {
	reg     *prometheus.Registry
	handler http.Handler

	requests *prometheus.HistogramVec
	// reqOK and getNotFound are requests' usual series, resolved once;
	// other results are looked up when they happen.
	reqOK       [numOps]prometheus.Observer
	getNotFound prometheus.Observer
	siblings    prometheus.Observer

	rpcs *prometheus.HistogramVec
	// rpcOK[m] is method m's usual series, resolved once (nil for 0).
	rpcOK [len(rpcMethodNames)]prometheus.Observer
}

func newPromMetrics(n *Node) *promMetrics {
	p := &promMetrics{reg: prometheus.NewRegistry()}
	p.requests = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "rumor_request_duration_seconds",
		Help:    "Time this node took to answer client requests, by operation and result: coordination and replica quorum, not the upload of the value or the download of the answer.",
		Buckets: latencyBuckets,
	}, []string{"op", "result"})
	for o := range numOps {
		p.reqOK[o] = p.requests.WithLabelValues(opNames[o], resultOK)
	}
	p.getNotFound = p.requests.WithLabelValues(opNames[opGet], resultNotFound)
	siblings := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "rumor_read_siblings",
		Help:    "Values a client read returned: 1 for a settled key, more for concurrent writes (siblings), 0 for a key not found.",
		Buckets: siblingBuckets,
	})
	p.siblings = siblings
	p.rpcs = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "rumor_rpc_duration_seconds",
		Help:    "Time this node took to handle peer RPCs, by method and result (ok or error).",
		Buckets: latencyBuckets,
	}, []string{"method", "result"})
	for m, name := range rpcMethodNames[1:] {
		p.rpcOK[m+1] = p.rpcs.WithLabelValues(name, resultOK)
	}
	p.reg.MustRegister(p.requests, siblings, p.rpcs, nodeCollector{n},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	p.handler = promhttp.HandlerFor(p.reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(n.log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      p.reg,
		// Scrapes are exempt from MaxInFlightRequests (an overloaded node
		// is when they matter most): this bounds them instead (503 past
		// it).
		MaxRequestsInFlight: 4,
	})
	return p
}

// observeRequest records a client request that began at start and ended
// with *errp.
func (p *promMetrics) observeRequest(o op, start time.Time, errp *error) {
	d := time.Since(start).Seconds()
	switch err := *errp; {
	case err == nil:
		p.reqOK[o].Observe(d)
	case o == opGet && errors.Is(err, ErrNotFound):
		p.getNotFound.Observe(d)
	default:
		p.requests.WithLabelValues(opNames[o], resultOf(err)).Observe(d)
	}
}

// observeRPC records a peer RPC this node handled.
func (p *promMetrics) observeRPC(method uint16, d time.Duration, err error) {
	m := int(method)
	if m >= len(rpcMethodNames) {
		m = 0
	}
	s := d.Seconds()
	if err == nil && p.rpcOK[m] != nil {
		p.rpcOK[m].Observe(s)
		return
	}
	result := resultOK
	if err != nil {
		result = resultError
	}
	p.rpcs.WithLabelValues(rpcMethodNames[m], result).Observe(s)
}

// serveRPCTimed is serveRPC, timed.
func (n *Node) serveRPCTimed(ctx context.Context, from net.Addr, method uint16, body []byte) ([]byte, error) {
	start := time.Now()
	out, err := n.serveRPC(ctx, from, method, body)
	n.prom.observeRPC(method, time.Since(start), err)
	return out, err
}

// handleMetrics serves GET /metrics in Prometheus' exposition formats.
func (n *Node) handleMetrics(w http.ResponseWriter, r *http.Request) {
	n.prom.handler.ServeHTTP(w, r)
}

// Gatherer returns the node's Prometheus registry: what GET /metrics
// serves, for programs that embed a node and expose its metrics their own
// way (promhttp.HandlerFor, or a prometheus.Gatherers with theirs).
func (n *Node) Gatherer() prometheus.Gatherer { return n.prom.reg }

// Replication results, as the coordinator of a write saw them for each
// replica: acknowledged by the replica, kept as a hint for it, or neither.
const (
	replOK     = "ok"
	replHinted = "hinted"
	replFailed = "failed"
)

// noteReplication counts the outcome of shipping a write to one replica.
func (m *metrics) noteReplication(replicated, hinted bool) {
	switch {
	case replicated:
		m.replOK.Add(1)
	case hinted:
		m.replHinted.Add(1)
	default:
		m.replFailed.Add(1)
	}
}

// nodeDescs are the descriptors of what nodeCollector reports.
var nodeDescs []*prometheus.Desc

func newDesc(name, help string, labels ...string) *prometheus.Desc {
	d := prometheus.NewDesc("rumor_"+name, help, labels, nil)
	nodeDescs = append(nodeDescs, d)
	return d
}

var (
	descInfo = newDesc("node_info", "Always 1; the labels name this node.", "name", "id")

	// Node counters (Node.Metrics).
	descReads            = newDesc("reads_total", "Client reads answered by this node (found or not).")
	descWrites           = newDesc("writes_total", "Writes this node coordinated (for its clients or forwarded by other nodes) that reached their write quorum.")
	descForwarded        = newDesc("writes_forwarded_total", "Client writes this node forwarded to a primary replica to coordinate (one per attempt).")
	descReplication      = newDesc("replication_total", "States of writes coordinated here shipped to other replicas, by result: ok (the replica acknowledged), hinted (kept as a hint for it), failed (neither).", "result")
	descReplicaReceived  = newDesc("replica_states_received_total", "States peers sent this node to merge (replication, read repair, hint handoff).")
	descReadRepairs      = newDesc("read_repairs_total", "Replicas a read found out of date and repaired.")
	descSiblingWarnings  = newDesc("sibling_warnings_total", "Writes that left a key with more siblings than SiblingWarn.")
	descHintsStored      = newDesc("hints_stored_total", "Hints stored for unreachable replicas (here or on a fallback node).")
	descHintsDelivered   = newDesc("hints_delivered_total", "Hints this node handed off to their replicas.")
	descHintBytes        = newDesc("hint_handoff_bytes_total", "Bytes sent handing off hints.")
	descHintsPending     = newDesc("hints_pending", "Hints held here waiting for their replica, by target member.", "target")
	descHTTPOverloaded   = newDesc("http_overloaded_total", "Client requests answered 503 for the in-flight request or request body memory limits.")
	descHTTPConnsRefused = newDesc("http_conns_refused_total", "Client connections refused past MaxClientConns.")
	descHTTPAuthDenied   = newDesc("http_auth_denied_total", "Client requests refused for their token, by reason: missing (401), unknown (401), read_only (403: a read-only token on a write).", "reason")
	descTLSHandshakes    = newDesc("tls_handshake_failures_total", "Failed TLS handshakes (with TLS configured), by endpoint: rpc_server (connections to peer RPC), rpc_client (this node's dials to peers), http (client API).", "endpoint")

	// Membership and ring.
	descMembers       = newDesc("members", "Members this node knows, by reachability.", "state")
	descMemberStatus  = newDesc("members_by_status", "Members this node knows, by membership status.", "status")
	descNodeStatus    = newDesc("node_status", "This node's membership status: 1 for the current one.", "status")
	descRingOwnership = newDesc("ring_ownership_ratio", "Share of the hash space this node owns as primary replica.")

	// Anti-entropy (Node.AntiEntropy).
	descAEKeys          = newDesc("antientropy_keys", "Keys in this node's anti-entropy index.")
	descAERanges        = newDesc("antientropy_ranges", "Ranges this node shares with peers (counted once per peer).")
	descAERangesInSync  = newDesc("antientropy_ranges_in_sync", "Shared ranges whose last exchange found nothing to repair.")
	descAESessions      = newDesc("antientropy_sessions_total", "Anti-entropy sessions this node initiated.")
	descAESessionsSync  = newDesc("antientropy_sessions_in_sync_total", "Initiated sessions that found the replicas in sync.")
	descAEKeysPulled    = newDesc("antientropy_keys_pulled_total", "States pulled from peers by anti-entropy.")
	descAEKeysRepaired  = newDesc("antientropy_keys_repaired_total", "Keys anti-entropy changed here (repaired).")
	descAEBytesRepaired = newDesc("antientropy_repaired_bytes_total", "Bytes of the received states that changed a copy here.")
	descAEBytesSent     = newDesc("antientropy_sent_bytes_total", "Bytes sent in anti-entropy sessions.")
	descAEBytesReceived = newDesc("antientropy_received_bytes_total", "Bytes received in anti-entropy sessions.")
	descAESymbols       = newDesc("antientropy_symbols_total", "Reconciliation symbols exchanged.")
	descAEReaped        = newDesc("antientropy_tombstones_reaped_total", "Tombstones reaped once every replica held them.")
	descAEPeerInSync    = newDesc("antientropy_peer_in_sync", "1 if the last exchange with the peer found the shared ranges in sync.", "peer")
	descAEPeerRanges    = newDesc("antientropy_peer_ranges", "Ranges this node shares with the peer.", "peer")
	descAEPeerLast      = newDesc("antientropy_peer_last_exchange_timestamp_seconds", "Unix time of the last exchange with the peer (absent before the first).", "peer")

	// Transfers (Node.Transfers).
	descXferMoving   = newDesc("transfer_moving", "1 while ranges move (a node joins or leaves).")
	descXferKeysLeft = newDesc("transfer_keys_left", "Keys this node still has to move: states to pull plus obsolete keys to hand over.")
	descXferObsolete = newDesc("transfer_obsolete_keys", "Keys held here in ranges this node no longer replicates.")
	descXferDropped  = newDesc("transfer_dropped_keys_total", "Keys dropped after their ranges were handed over.")
	descXferRanges   = newDesc("transfer_ranges", "Ranges this node gains or loses in the moves under way.", "direction")

	// Storage (storage.Store.Metrics: pebble).
	descStHealthy     = newDesc("storage_healthy", "1 while the store takes writes; 0 when it refuses them (disk nearly full, failed WAL).")
	descStDisk        = newDesc("storage_disk_usage_bytes", "Bytes on disk: WAL, tables, manifest, obsolete files not yet deleted.")
	descStKeyspace    = newDesc("storage_keyspace_bytes", "Estimated table bytes on disk of a key space (data or hints).", "keyspace")
	descStMemtable    = newDesc("storage_memtable_bytes", "Size of the memtables.")
	descStMemtables   = newDesc("storage_memtables", "Memtables: the mutable one and those waiting for a flush.")
	descStWAL         = newDesc("storage_wal_bytes", "Size of the live WAL files.")
	descStWALWritten  = newDesc("storage_wal_written_bytes_total", "Bytes written to the WAL.")
	descStWALSyncs    = newDesc("storage_wal_syncs_total", "WAL fsyncs.")
	descStWALSyncTime = newDesc("storage_wal_sync_seconds_total", "Time spent in WAL fsyncs.")
	descStWrites      = newDesc("storage_writes_total", "Commits to the store.")
	descStSynced      = newDesc("storage_synced_writes_total", "Commits that waited for an fsync.")
	descStReadAmp     = newDesc("storage_read_amplification", "Sorted runs a point read may consult.")
	descStWriteAmp    = newDesc("storage_write_amplification", "Bytes written to tables per byte written to L0.")
	descStTables      = newDesc("storage_tables", "Sstables, by LSM level.", "level")
	descStLevelBytes  = newDesc("storage_level_bytes", "Bytes of sstables, by LSM level.", "level")
	descStSublevels   = newDesc("storage_sublevels", "Sorted runs in an LSM level (its share of read amplification).", "level")
	descStFlushes     = newDesc("storage_flushes_total", "Memtable flushes.")
	descStCompactions = newDesc("storage_compactions_total", "Compactions.")
	descStDebt        = newDesc("storage_compaction_debt_bytes", "Estimated bytes compaction still has to rewrite.")
	descStStalls      = newDesc("storage_write_stalls_total", "Times pebble delayed writes for compaction.")
	descStCache       = newDesc("storage_block_cache_bytes", "Bytes in the block cache.")
	descStCacheHits   = newDesc("storage_block_cache_hits_total", "Block cache hits.")
	descStCacheMisses = newDesc("storage_block_cache_misses_total", "Block cache misses.")
)

var levelNames = func() (out [storage.NumLevels]string) {
	for i := range out {
		out[i] = strconv.Itoa(i)
	}
	return out
}()

var (
	memberStates   = []string{StateAlive, StateSuspect, StateDead, StateLeft}
	memberStatuses = []string{StatusJoining, StatusMember, StatusLeaving, StatusLeft}
)

// nodeCollector reports, at scrape time, what the node keeps anyway.
type nodeCollector struct{ n *Node }

// Describe sends every descriptor Collect uses.
func (c nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range nodeDescs {
		ch <- d
	}
}

// Collect reads the node's counters and snapshots.
func (c nodeCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.n
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	v := n.view.Load()
	gauge(descInfo, 1, n.cfg.Name, fmt.Sprintf("%016x", n.id))

	m := n.Metrics()
	counter(descReads, float64(m.Reads))
	counter(descWrites, float64(m.Writes))
	counter(descForwarded, float64(m.Forwarded))
	counter(descReplication, float64(n.metrics.replOK.Load()), replOK)
	counter(descReplication, float64(n.metrics.replHinted.Load()), replHinted)
	counter(descReplication, float64(n.metrics.replFailed.Load()), replFailed)
	counter(descReplicaReceived, float64(m.Replicated))
	counter(descReadRepairs, float64(m.ReadRepairs))
	counter(descSiblingWarnings, float64(m.SiblingWarnings))
	counter(descHintsStored, float64(m.HintsStored))
	counter(descHintsDelivered, float64(m.HintsDelivered))
	counter(descHintBytes, float64(m.HintBytes))
	counter(descHTTPOverloaded, float64(m.HTTPOverloaded))
	counter(descHTTPConnsRefused, float64(m.HTTPConnsRefused))
	for i, reason := range denialNames {
		counter(descHTTPAuthDenied, float64(n.auth.denied[i].Load()), reason)
	}
	counter(descTLSHandshakes, float64(n.rpcSrv.Stats().HandshakeFailures), tlsRPCServer)
	counter(descTLSHandshakes, float64(n.rpc.Stats().HandshakeFailures), tlsRPCClient)
	counter(descTLSHandshakes, float64(n.metrics.httpHandshakeFailures.Load()), tlsHTTP)
	// Hints pending: every other member (0 without hints), and any target
	// the ring no longer names; summed by name, as a name may come back
	// under a new identity.
	pending := map[string]float64{}
	for id, e := range v.byID {
		if id != n.id && e.Status != StatusLeft {
			pending[e.Name] = 0
		}
	}
	if targets, err := n.store.HintTargets(); err == nil {
		for t, count := range targets {
			name := fmt.Sprintf("%016x", t)
			if e, ok := v.byID[t]; ok {
				name = e.Name
			}
			pending[name] += float64(count)
		}
	}
	for name, count := range pending {
		gauge(descHintsPending, count, name)
	}

	states, statuses := map[string]int{}, map[string]int{}
	for _, mi := range n.Members() {
		states[mi.State]++
		statuses[mi.Status]++
	}
	for _, s := range memberStates {
		gauge(descMembers, float64(states[s]), s)
	}
	self := n.mem.selfRow().Status
	for _, s := range memberStatuses {
		gauge(descMemberStatus, float64(statuses[s]), s)
		gauge(descNodeStatus, b2f(s == self), s)
	}
	gauge(descRingOwnership, v.ring.Ownership()[ring.NodeID(n.id)])

	ae := n.AntiEntropy()
	gauge(descAEKeys, float64(ae.Keys))
	gauge(descAERanges, float64(ae.RangesTotal))
	gauge(descAERangesInSync, float64(ae.RangesInSync))
	counter(descAESessions, float64(ae.Sessions))
	counter(descAESessionsSync, float64(ae.SessionsInSync))
	counter(descAEKeysPulled, float64(ae.KeysPulled))
	counter(descAEKeysRepaired, float64(ae.KeysRepaired))
	counter(descAEBytesRepaired, float64(ae.BytesRepaired))
	counter(descAEBytesSent, float64(ae.BytesSent))
	counter(descAEBytesReceived, float64(ae.BytesReceived))
	counter(descAESymbols, float64(ae.Symbols))
	counter(descAEReaped, float64(ae.Tombstones))
	for peer, p := range ae.Peers {
		gauge(descAEPeerInSync, b2f(p.InSync), peer)
		gauge(descAEPeerRanges, float64(p.Ranges), peer)
		if !p.LastExchange.IsZero() {
			gauge(descAEPeerLast, float64(p.LastExchange.UnixNano())/1e9, peer)
		}
	}

	obsolete, left := n.keysToMove(v)
	n.xfer.mu.Lock()
	dropped := n.xfer.mu.dropped
	n.xfer.mu.Unlock()
	gauge(descXferMoving, b2f(v.transfer()))
	gauge(descXferKeysLeft, float64(left))
	gauge(descXferObsolete, float64(obsolete))
	counter(descXferDropped, float64(dropped))
	gauge(descXferRanges, float64(len(v.gaining)), "gaining")
	gauge(descXferRanges, float64(len(v.losing)), "losing")

	s := n.store.Metrics()
	gauge(descStHealthy, b2f(n.store.Health() == nil))
	gauge(descStDisk, float64(s.DiskUsage))
	gauge(descStKeyspace, float64(s.DataBytes), "data")
	gauge(descStKeyspace, float64(s.HintBytes), "hints")
	gauge(descStMemtable, float64(s.MemTableBytes))
	gauge(descStMemtables, float64(s.MemTables))
	gauge(descStWAL, float64(s.WALBytes))
	counter(descStWALWritten, float64(s.WALBytesWritten))
	counter(descStWALSyncs, float64(s.WALSyncs))
	counter(descStWALSyncTime, s.WALSyncTime.Seconds())
	counter(descStWrites, float64(s.Writes))
	counter(descStSynced, float64(s.SyncedWrites))
	gauge(descStReadAmp, float64(s.ReadAmp))
	gauge(descStWriteAmp, s.WriteAmp)
	for i, l := range s.Levels {
		gauge(descStTables, float64(l.Tables), levelNames[i])
		gauge(descStLevelBytes, float64(l.Bytes), levelNames[i])
		gauge(descStSublevels, float64(l.Sublevels), levelNames[i])
	}
	counter(descStFlushes, float64(s.Flushes))
	counter(descStCompactions, float64(s.Compactions))
	gauge(descStDebt, float64(s.CompactionDebt))
	counter(descStStalls, float64(s.WriteStalls))
	gauge(descStCache, float64(s.BlockCacheBytes))
	counter(descStCacheHits, float64(s.BlockCacheHits))
	counter(descStCacheMisses, float64(s.BlockCacheMisses))
}
