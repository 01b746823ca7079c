package storage

import (
	"time"

	"github.com/cockroachdb/pebble/v2"
	dto "github.com/prometheus/client_model/go"
)

// Metrics is a snapshot of the store's state, for operators.
type Metrics struct {
	// DiskUsage is the bytes on disk: WAL, tables, manifest, and obsolete
	// files not yet deleted.
	DiskUsage uint64
	// DataBytes and HintBytes estimate the bytes on disk of the data and
	// hint key spaces (tables only; recent writes still in the memtable are
	// not counted).
	DataBytes, HintBytes uint64
	// MemTableBytes is the size of the memtables and MemTables their
	// number (the mutable one and those waiting for a flush).
	MemTableBytes uint64
	MemTables     int64
	// WALBytes is the size of the live WAL files (at least the data in
	// them: pebble does not size the file being written); WALBytesWritten
	// counts every byte written to the WAL since Open.
	WALBytes, WALBytesWritten uint64
	// WALSyncs is the number of WAL fsyncs since Open, WALSyncTime their
	// total duration and WALSyncLatency their mean. Writes / WALSyncs above
	// 1 is group commit at work.
	WALSyncs       uint64
	WALSyncLatency time.Duration
	WALSyncTime    time.Duration
	// Writes counts the store's commits since Open; SyncedWrites those that
	// waited for an fsync.
	Writes, SyncedWrites uint64
	// ReadAmp is the number of sorted runs a point read may consult;
	// WriteAmp the bytes written to tables per byte written to L0.
	ReadAmp  int
	WriteAmp float64
	// Tables is the number of sstables; Levels breaks them down by level
	// of the LSM tree.
	Tables int64
	Levels [NumLevels]LevelMetrics
	// Flushes and Compactions count those operations since Open;
	// CompactionDebt estimates the bytes compaction still has to rewrite.
	Flushes, Compactions int64
	CompactionDebt       uint64
	// WriteStalls counts the times pebble delayed writes for compaction.
	WriteStalls uint64
	// BlockCache* describe the block cache.
	BlockCacheBytes, BlockCacheHits, BlockCacheMisses int64
	// HintsPending is the number of hints waiting for handoff.
	HintsPending int
}

// NumLevels is the number of levels of pebble's LSM tree (L0 to L6).
const NumLevels = 7

// The compiler checks NumLevels against pebble's.
var _ = [NumLevels]pebble.LevelMetrics(pebble.Metrics{}.Levels)

// LevelMetrics describe one level of the LSM tree.
type LevelMetrics struct {
	// Tables and Bytes are the number and total size of its sstables.
	Tables, Bytes int64
	// Sublevels is the level's share of the read amplification: the
	// sorted runs in it (several in L0, at most one elsewhere).
	Sublevels int32
}

// Metrics returns a snapshot of the store's metrics; the zero Metrics once
// the store is closed.
func (s *Store) Metrics() Metrics {
	if !s.enter() {
		return Metrics{}
	}
	defer s.exit()
	pm := s.db.Metrics()
	total := pm.Total()
	m := Metrics{
		DiskUsage:        pm.DiskSpaceUsage(),
		MemTableBytes:    pm.MemTable.Size,
		MemTables:        pm.MemTable.Count,
		WALBytes:         max(pm.WAL.PhysicalSize, pm.WAL.Size),
		WALBytesWritten:  pm.WAL.BytesWritten,
		Writes:           s.stats.writes.Load(),
		SyncedWrites:     s.stats.syncedWrites.Load(),
		ReadAmp:          pm.ReadAmp(),
		WriteAmp:         total.WriteAmp(),
		Tables:           total.TablesCount,
		Flushes:          pm.Flush.Count,
		Compactions:      pm.Compact.Count,
		CompactionDebt:   pm.Compact.EstimatedDebt,
		WriteStalls:      s.stats.stalls.Load(),
		BlockCacheBytes:  pm.BlockCache.Size,
		BlockCacheHits:   pm.BlockCache.Hits,
		BlockCacheMisses: pm.BlockCache.Misses,
	}
	for i, l := range pm.Levels {
		m.Levels[i] = LevelMetrics{Tables: l.TablesCount, Bytes: l.TablesSize, Sublevels: l.Sublevels}
	}
	m.DataBytes, _ = s.db.EstimateDiskUsage([]byte{prefixData}, []byte{prefixData + 1})
	m.HintBytes, _ = s.db.EstimateDiskUsage([]byte{prefixHint}, []byte{prefixHint + 1})
	if h := pm.LogWriter.FsyncLatency; h != nil {
		var d dto.Metric
		if h.Write(&d) == nil && d.Histogram != nil {
			m.WALSyncs = d.Histogram.GetSampleCount()
			// pebble observes nanoseconds.
			m.WALSyncTime = time.Duration(d.Histogram.GetSampleSum())
			if m.WALSyncs > 0 {
				m.WALSyncLatency = m.WALSyncTime / time.Duration(m.WALSyncs)
			}
		}
	}
	s.hints.Lock()
	for _, n := range s.hints.count {
		m.HintsPending += n
	}
	s.hints.Unlock()
	return m
}

// eventListener routes pebble's events worth an operator's attention to the
// logger. Data corruption is logged, not fatal: the read that found it
// returns an error.
func (s *Store) eventListener() *pebble.EventListener {
	log := s.opts.Logger.With("component", "pebble")
	return &pebble.EventListener{
		BackgroundError: func(err error) { log.Error("background error", "err", err) },
		DataCorruption: func(info pebble.DataCorruptionInfo) {
			log.Error("data corruption", "info", info.String())
		},
		DiskSlow: func(info pebble.DiskSlowInfo) {
			log.Warn("disk slow", "path", info.Path, "op", info.OpType.String(), "duration", info.Duration)
		},
		WriteStallBegin: func(info pebble.WriteStallBeginInfo) {
			s.stats.stalls.Add(1)
			log.Warn("write stall", "reason", info.Reason)
		},
		WriteStallEnd: func() { log.Info("write stall ended") },
	}
}
