package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	httppprof "net/http/pprof"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// processTimes returns the user and system CPU time of this process.
func processTimes() (user, sys time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

// machineUserCPU returns the user CPU time of all processes (user + nice
// in /proc/stat, in USER_HZ ticks of 10 ms), and false where that is not
// available. Compared with this process's user time it shows whether
// another program took CPU during a measurement. (System time is not
// compared: kernel work done for this process, such as block I/O and
// loopback network interrupts, is not charged to it.)
func machineUserCPU() (time.Duration, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 3 || f[0] != "cpu" {
		return 0, false
	}
	var ticks int64
	for _, x := range f[1:3] {
		v, err := strconv.ParseInt(x, 10, 64)
		if err != nil {
			return 0, false
		}
		ticks += v
	}
	return time.Duration(ticks) * 10 * time.Millisecond, true
}

// servePprof serves net/http/pprof on addr until the process ends, with
// block and mutex profiling on, for looking into a run while it goes
// (go tool pprof http://ADDR/debug/pprof/block). It returns the address
// it listens on.
func servePprof(addr string) (string, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("bench: pprof listener: %w", err)
	}
	runtime.SetBlockProfileRate(int(10 * time.Microsecond))
	runtime.SetMutexProfileFraction(10)
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", httppprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", httppprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", httppprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", httppprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", httppprof.Trace)
	go func() { _ = http.Serve(l, mux) }()
	return l.Addr().String(), nil
}

// Profile labels: the bench marks the goroutines that do client work (its
// workers and, through inheritance, the HTTP transport's connection
// goroutines they dial) so a CPU profile tells client from server time.
const (
	labelKey    = "bench"
	labelClient = "client"
)

// clientLabels is a context carrying the client label, for
// pprof.SetGoroutineLabels.
var clientLabels = pprof.WithLabels(context.Background(), pprof.Labels(labelKey, labelClient))

// noLabels clears a goroutine's labels (pprof.SetGoroutineLabels with a
// context without labels).
var noLabels = context.Background()

// cpuProfile is a CPU profile being taken into memory; stop returns it.
type cpuProfile struct {
	buf bytes.Buffer
}

var errProfiling = errors.New("bench: a CPU profile is already running")

func startCPUProfile() (*cpuProfile, error) {
	p := &cpuProfile{}
	if err := pprof.StartCPUProfile(&p.buf); err != nil {
		return nil, fmt.Errorf("%w: %v", errProfiling, err)
	}
	return p, nil
}

// stop ends the profile and returns it (gzipped protobuf, pprof's format).
func (p *cpuProfile) stop() []byte {
	pprof.StopCPUProfile()
	return p.buf.Bytes()
}

// writeFile writes data to name.
func writeFile(name string, data []byte) error {
	if err := os.WriteFile(name, data, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

var errProfile = errors.New("bench: malformed profile")

// maxProfile bounds a decompressed profile (a 10 s profile is ~100 KiB).
const maxProfile = 256 << 20

// labelShare reads a pprof CPU profile and returns the CPU time of the
// samples labelled key=value and of all samples (the last sample value,
// nanoseconds for a CPU profile). It decodes only what it needs of the
// protobuf: samples (field 2: values, labels) and the string table (6).
func labelShare(profile []byte, key, value string) (labelled, total int64, err error) {
	data := profile
	if len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(profile))
		if err != nil {
			return 0, 0, fmt.Errorf("%w: %v", errProfile, err)
		}
		data, err = io.ReadAll(io.LimitReader(zr, maxProfile+1))
		if err != nil {
			return 0, 0, fmt.Errorf("%w: %v", errProfile, err)
		}
		if len(data) > maxProfile {
			return 0, 0, fmt.Errorf("%w: over %d bytes", errProfile, maxProfile)
		}
	}
	type label struct{ key, str int64 }
	type sample struct {
		value  int64
		labels []label
	}
	var samples []sample
	var strs []string
	err = pbFields(data, func(field int, wire int, v uint64, b []byte) error {
		switch {
		case field == 6 && wire == 2:
			strs = append(strs, string(b))
		case field == 2 && wire == 2:
			var s sample
			err := pbFields(b, func(field int, wire int, v uint64, b []byte) error {
				switch {
				case field == 2 && wire == 0:
					s.value = int64(v)
				case field == 2 && wire == 2: // packed values: keep the last
					for len(b) > 0 {
						x, n := uvarint(b)
						if n <= 0 {
							return fmt.Errorf("%w: bad packed value", errProfile)
						}
						s.value, b = int64(x), b[n:]
					}
				case field == 3 && wire == 2:
					var l label
					if err := pbFields(b, func(field int, wire int, v uint64, _ []byte) error {
						switch {
						case field == 1 && wire == 0:
							l.key = int64(v)
						case field == 2 && wire == 0:
							l.str = int64(v)
						}
						return nil
					}); err != nil {
						return err
					}
					s.labels = append(s.labels, l)
				}
				return nil
			})
			if err != nil {
				return err
			}
			samples = append(samples, s)
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	str := func(i int64) (string, bool) {
		if i < 0 || i >= int64(len(strs)) {
			return "", false
		}
		return strs[i], true
	}
	for _, s := range samples {
		total += s.value
		for _, l := range s.labels {
			k, ok1 := str(l.key)
			v, ok2 := str(l.str)
			if ok1 && ok2 && k == key && v == value {
				labelled += s.value
				break
			}
		}
	}
	return labelled, total, nil
}

// pbFields calls fn for every field of the protobuf message b: v is the
// value of varint and fixed-width fields, b the bytes of length-delimited
// ones. Every length is checked against what is left.
func pbFields(b []byte, fn func(field, wire int, v uint64, b []byte) error) error {
	for len(b) > 0 {
		tag, n := uvarint(b)
		if n <= 0 {
			return fmt.Errorf("%w: bad tag", errProfile)
		}
		b = b[n:]
		field, wire := int(tag>>3), int(tag&7)
		var v uint64
		var body []byte
		switch wire {
		case 0:
			v, n = uvarint(b)
			if n <= 0 {
				return fmt.Errorf("%w: bad varint", errProfile)
			}
			b = b[n:]
		case 1, 5:
			w := 8
			if wire == 5 {
				w = 4
			}
			if len(b) < w {
				return fmt.Errorf("%w: truncated fixed field", errProfile)
			}
			for i := w - 1; i >= 0; i-- {
				v = v<<8 | uint64(b[i])
			}
			b = b[w:]
		case 2:
			l, n := uvarint(b)
			if n <= 0 || l > uint64(len(b)-n) {
				return fmt.Errorf("%w: bad length", errProfile)
			}
			body, b = b[n:n+int(l)], b[n+int(l):]
		default:
			return fmt.Errorf("%w: wire type %d", errProfile, wire)
		}
		if err := fn(field, wire, v, body); err != nil {
			return err
		}
	}
	return nil
}

// uvarint decodes a protobuf varint; n <= 0 means malformed.
func uvarint(b []byte) (v uint64, n int) { return binary.Uvarint(b) }
