package main

import (
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"strconv"

	"github.com/urfave/cli/v2"
	"gonum.org/v1/plot"

	"github.com/rumorkv/rumor/ring"
)

func rebalanceCommand() *cli.Command {
	return &cli.Command{
		Name:  "rebalance",
		Usage: "share of keys that move and ownership imbalance when growing a cluster one node at a time: mod-N, a plain ring, a ring with virtual nodes",
		Description: "Moved fractions are exact: for the rings over the 2^20 leaves of the hash space\n" +
			"(ring.MovedPrimary), for mod-N over all 2^64 hashes. --keys real keys check them by sampling.",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "from", Value: 3, Usage: "first cluster size"},
			&cli.IntFlag{Name: "to", Value: 16, Usage: "last cluster size"},
			&cli.IntFlag{Name: "vnodes", Value: ring.DefaultVNodes, Usage: "tokens per node of the virtual-node ring"},
			&cli.IntFlag{Name: "keys", Value: 100000, Usage: "keys for the sampled check of the exact figures (0: none)"},
			&cli.IntFlag{Name: "trials", Value: 1, Usage: "random node-id sets to average over (the sampled check uses the first)"},
			&cli.IntFlag{Name: "replicas", Value: 3, Usage: "N for the replicated-data figure (moved_replicas in the JSON)"},
			seedFlag(),
			jsonFlag(),
			plotFlag("the moved fraction against the cluster size"),
		},
		Action: runRebalance,
	}
}

// schemes holds one figure for each placement scheme.
type schemes struct {
	ModN   float64 `json:"mod_n"`
	Ring   float64 `json:"ring"`
	VNodes float64 `json:"vnodes"`
}

func (s schemes) apply(f func(float64, float64) float64, o schemes) schemes {
	return schemes{f(s.ModN, o.ModN), f(s.Ring, o.Ring), f(s.VNodes, o.VNodes)}
}

// rebalanceStep is what growing the cluster from From to To nodes costs.
type rebalanceStep struct {
	From  int     `json:"from"`
	To    int     `json:"to"`
	Ideal float64 `json:"ideal"` // 1/To: the new node's fair share, all that must move
	// Moved is the share of keys whose primary owner changes (mean over
	// trials); MovedMax the largest over trials (with --trials > 1).
	Moved    schemes  `json:"moved"`
	MovedMax *schemes `json:"moved_max,omitempty"`
	// MovedReplicas is the share of (key, replica) placements with
	// --replicas replicas that the grown ring has and the old one had not:
	// the replicated data to copy (rings only).
	MovedReplicas struct {
		Ring   float64 `json:"ring"`
		VNodes float64 `json:"vnodes"`
	} `json:"moved_replicas"`
	// Imbalance is max/mean of the primary ownership of the grown cluster
	// (mean over trials; ImbalanceMax the largest).
	Imbalance    schemes  `json:"imbalance"`
	ImbalanceMax *schemes `json:"imbalance_max,omitempty"`
	// Sampled are the same figures measured on real keys (first trial).
	Sampled *sampledStep `json:"sampled,omitempty"`
}

type sampledStep struct {
	Moved     schemes `json:"moved"`
	Imbalance schemes `json:"imbalance"`
	// ExactMoved is the exact figure of the same id set, to compare with.
	ExactMoved schemes `json:"exact_moved"`
}

type rebalanceResult struct {
	Environment environment `json:"environment"`
	Config      struct {
		From     int    `json:"from"`
		To       int    `json:"to"`
		VNodes   int    `json:"vnodes"`
		Keys     int    `json:"keys"`
		Trials   int    `json:"trials"`
		Replicas int    `json:"replicas"`
		Seed     uint64 `json:"seed"`
	} `json:"config"`
	Method string          `json:"method"`
	Steps  []rebalanceStep `json:"steps"`
	// SampledMaxDiff is the largest |sampled − exact| moved fraction over
	// all steps, per scheme; SampledSigma the sampling error (one standard
	// deviation) of a fraction of 1/2 with this many keys, the worst case.
	SampledMaxDiff *schemes `json:"sampled_max_diff,omitempty"`
	SampledSigma   float64  `json:"sampled_sigma,omitempty"`
}

const rebalanceMethod = "moved: exact share of the hash space whose primary owner changes; rings over the 2^20 leaves " +
	"(ring.MovedPrimary), mod-N over all 2^64 hashes (h mod n = h mod n+1 exactly for h mod n(n+1) < n). " +
	"imbalance: max/mean of primary ownership after the step (ring.Ownership; mod-N exact). " +
	"ring = one token per node (vnodes=1); node ids are random 64-bit ids from the seed, as real nodes get."

func runRebalance(c *cli.Context) error {
	from, to := c.Int("from"), c.Int("to")
	vnodes, keys, trials, replicas := c.Int("vnodes"), c.Int("keys"), c.Int("trials"), c.Int("replicas")
	switch {
	case from < 1 || to <= from:
		return usageErr("--from %d --to %d: want 1 ≤ from < to", from, to)
	case to > 1024:
		return usageErr("--to %d: at most 1024", to)
	case vnodes < 1:
		return usageErr("--vnodes %d: want ≥ 1", vnodes)
	case keys < 0 || trials < 1 || replicas < 1:
		return usageErr("want --keys ≥ 0, --trials ≥ 1, --replicas ≥ 1")
	}
	if err := checkOutputs(c.String("json"), c.String("plot")); err != nil {
		return err
	}
	res := rebalanceResult{Environment: currentEnvironment(c), Method: rebalanceMethod}
	cfg := &res.Config
	cfg.From, cfg.To, cfg.VNodes, cfg.Keys, cfg.Trials, cfg.Replicas, cfg.Seed =
		from, to, vnodes, keys, trials, replicas, c.Uint64("seed")

	steps := make([]rebalanceStep, to-from)
	for i := range steps {
		n := from + i
		steps[i] = rebalanceStep{From: n, To: n + 1, Ideal: 1 / float64(n+1)}
		steps[i].Moved.ModN = modNMoved(n)
		steps[i].Imbalance.ModN = modNImbalance(n + 1)
	}
	bar := newProgress(c.App.Writer, int64(trials*(to-from)), "rebalance")
	for t := range trials {
		members := randomMembers(cfg.Seed, t, to)
		var sample *keySample
		if t == 0 && keys > 0 {
			sample = newKeySample(keys)
		}
		prevPlain, prevV := ring.New(members[:from], 1), ring.New(members[:from], vnodes)
		if sample != nil {
			sample.start(prevPlain, prevV, from)
		}
		for i := range steps {
			s := &steps[i]
			plain, v := ring.New(members[:s.To], 1), ring.New(members[:s.To], vnodes)
			moved := schemes{ModN: s.Moved.ModN, Ring: ring.MovedPrimary(prevPlain, plain), VNodes: ring.MovedPrimary(prevV, v)}
			imb := schemes{ModN: s.Imbalance.ModN, Ring: imbalance(plain), VNodes: imbalance(v)}
			// Running means and maxima over trials.
			w := 1 / float64(t+1)
			mean := func(acc, x float64) float64 { return acc + (x-acc)*w }
			if t == 0 {
				s.Moved, s.Imbalance = moved, imb
			} else {
				s.Moved, s.Imbalance = s.Moved.apply(mean, moved), s.Imbalance.apply(mean, imb)
			}
			if trials > 1 {
				if s.MovedMax == nil {
					s.MovedMax, s.ImbalanceMax = &moved, &imb
				} else {
					*s.MovedMax, *s.ImbalanceMax = s.MovedMax.apply(math.Max, moved), s.ImbalanceMax.apply(math.Max, imb)
				}
			}
			s.MovedReplicas.Ring = mean(s.MovedReplicas.Ring, ring.MovedReplicas(prevPlain, plain, replicas))
			s.MovedReplicas.VNodes = mean(s.MovedReplicas.VNodes, ring.MovedReplicas(prevV, v, replicas))
			if sample != nil {
				s.Sampled = sample.step(plain, v, s.To)
				s.Sampled.ExactMoved = moved
			}
			prevPlain, prevV = plain, v
			bar.set(int64(t*len(steps) + i + 1))
		}
	}
	bar.done()
	res.Steps = steps
	if keys > 0 {
		var d schemes
		for _, s := range steps {
			d = d.apply(math.Max, s.Sampled.Moved.apply(func(a, b float64) float64 { return math.Abs(a - b) }, s.Sampled.ExactMoved))
		}
		res.SampledMaxDiff = &d
		res.SampledSigma = math.Sqrt(0.25 / float64(keys))
	}
	printRebalance(c, &res)
	if err := writeJSON(c.String("json"), &res); err != nil {
		return err
	}
	return savePlot(rebalanceChart(&res), c.String("plot"))
}

// randomMembers returns count members with distinct random non-zero ids,
// the same for the same (seed, trial).
func randomMembers(seed uint64, trial, count int) []ring.Member {
	rng := rand.New(rand.NewPCG(seed, uint64(trial)))
	seen := make(map[ring.NodeID]bool, count)
	out := make([]ring.Member, 0, count)
	for len(out) < count {
		id := ring.NodeID(rng.Uint64())
		if id == 0 || seen[id] {
			continue
		}
		seen[id] = true
		out = append(out, ring.Member{ID: id})
	}
	return out
}

// hashSpace is 2^64, the number of key hashes.
var hashSpace = new(big.Int).Lsh(big.NewInt(1), 64)

// modNMoved returns, exactly, the share of the 2^64 hashes h with
// h mod n ≠ h mod (n+1). By the Chinese remainder theorem h mod n =
// h mod (n+1) = r holds exactly for h ≡ r (mod n(n+1)) with r < n: n
// residues in every period of n(n+1), so the share that stays is
// 1/(n+1) up to the incomplete last period.
func modNMoved(n int) float64 {
	p := big.NewInt(int64(n) * int64(n+1))
	q, r := new(big.Int).QuoRem(hashSpace, p, new(big.Int))
	stay := new(big.Int).Mul(q, big.NewInt(int64(n)))
	stay.Add(stay, big.NewInt(min(r.Int64(), int64(n))))
	frac, _ := new(big.Rat).SetFrac(stay, hashSpace).Float64()
	return 1 - frac
}

// modNImbalance returns max/mean of the bucket sizes of h mod n over all
// 2^64 hashes: the first 2^64 mod n buckets hold one hash more.
func modNImbalance(n int) float64 {
	q, r := new(big.Int).QuoRem(hashSpace, big.NewInt(int64(n)), new(big.Int))
	if r.Sign() > 0 {
		q.Add(q, big.NewInt(1))
	}
	ratio, _ := new(big.Rat).SetFrac(q.Mul(q, big.NewInt(int64(n))), hashSpace).Float64()
	return ratio
}

// imbalance returns max/mean of r's primary ownership.
func imbalance(r *ring.Ring) float64 {
	own := r.Ownership()
	if len(own) == 0 {
		return 0
	}
	var hi float64
	for _, o := range own {
		hi = max(hi, o)
	}
	return hi * float64(len(own))
}

// keySample measures movement and balance on real keys: it remembers every
// key's owner under each scheme and compares it with the next step's.
type keySample struct {
	hashes              []uint64
	modN, plain, vnodes []uint64 // current owner of each key
	nextM, nextP, nextV []uint64
}

func newKeySample(keys int) *keySample {
	s := &keySample{hashes: make([]uint64, keys)}
	for i := range s.hashes {
		s.hashes[i] = ring.KeyHash([]byte("key-" + strconv.Itoa(i)))
	}
	for _, p := range []*[]uint64{&s.modN, &s.plain, &s.vnodes, &s.nextM, &s.nextP, &s.nextV} {
		*p = make([]uint64, keys)
	}
	return s
}

func (s *keySample) start(plain, v *ring.Ring, n int) {
	for i, h := range s.hashes {
		s.modN[i], s.plain[i], s.vnodes[i] = h%uint64(n), uint64(plain.Owner(h)), uint64(v.Owner(h))
	}
}

// step moves to the rings of n nodes and returns the sampled figures.
func (s *keySample) step(plain, v *ring.Ring, n int) *sampledStep {
	var moved [3]int
	counts := [3]map[uint64]int{{}, {}, {}}
	for i, h := range s.hashes {
		s.nextM[i], s.nextP[i], s.nextV[i] = h%uint64(n), uint64(plain.Owner(h)), uint64(v.Owner(h))
		for k, pair := range [3][2]uint64{{s.modN[i], s.nextM[i]}, {s.plain[i], s.nextP[i]}, {s.vnodes[i], s.nextV[i]}} {
			if pair[0] != pair[1] {
				moved[k]++
			}
			counts[k][pair[1]]++
		}
	}
	s.modN, s.nextM = s.nextM, s.modN
	s.plain, s.nextP = s.nextP, s.plain
	s.vnodes, s.nextV = s.nextV, s.vnodes
	keys := float64(len(s.hashes))
	imb := func(c map[uint64]int) float64 {
		hi := 0
		for _, x := range c {
			hi = max(hi, x)
		}
		return float64(hi) * float64(n) / keys // nodes that own no key count in the mean
	}
	return &sampledStep{
		Moved:     schemes{float64(moved[0]) / keys, float64(moved[1]) / keys, float64(moved[2]) / keys},
		Imbalance: schemes{imb(counts[0]), imb(counts[1]), imb(counts[2])},
	}
}

func printRebalance(c *cli.Context, res *rebalanceResult) {
	w := c.App.Writer
	cfg := res.Config
	fmt.Fprintf(w, "rebalance: growing %d→%d nodes one at a time; vnodes ring: %d tokens per node; plain ring: 1\n",
		cfg.From, cfg.To, cfg.VNodes)
	idsets := "1 random node-id set"
	if cfg.Trials > 1 {
		idsets = fmt.Sprintf("mean over %d random node-id sets", cfg.Trials)
	}
	fmt.Fprintf(w, "moved = share of keys whose primary owner changes (exact); imbalance = max/mean ownership after the step (%s, seed %d)\n\n",
		idsets, cfg.Seed)
	tw := table(w)
	fmt.Fprintln(tw, "step\tmoved mod-N\tring\tvnodes\tideal 1/(n+1)\t\timbalance mod-N\tring\tvnodes\t")
	for _, s := range res.Steps {
		fmt.Fprintf(tw, "%d→%d\t%.4f\t%.4f\t%.4f\t%.4f\t\t%.4f\t%.3f\t%.3f\t\n", s.From, s.To,
			s.Moved.ModN, s.Moved.Ring, s.Moved.VNodes, s.Ideal, s.Imbalance.ModN, s.Imbalance.Ring, s.Imbalance.VNodes)
	}
	tw.Flush()
	if cfg.Keys == 0 {
		return
	}
	fmt.Fprintf(w, "\nsampled check with %d real keys (first id set):\n", cfg.Keys)
	tw = table(w)
	fmt.Fprintln(tw, "step\tmoved mod-N\tring\tvnodes\t\timbalance mod-N\tring\tvnodes\t")
	for _, s := range res.Steps {
		m, b := s.Sampled.Moved, s.Sampled.Imbalance
		fmt.Fprintf(tw, "%d→%d\t%.4f\t%.4f\t%.4f\t\t%.4f\t%.3f\t%.3f\t\n", s.From, s.To, m.ModN, m.Ring, m.VNodes, b.ModN, b.Ring, b.VNodes)
	}
	tw.Flush()
	if d := res.SampledMaxDiff; d != nil {
		fmt.Fprintf(w, "largest |sampled − exact| moved: mod-N %.4f, ring %.4f, vnodes %.4f (sampling σ ≤ %.4f)\n",
			d.ModN, d.Ring, d.VNodes, res.SampledSigma)
	}
}

func rebalanceChart(res *rebalanceResult) chart {
	var xs []float64
	var ticks []plot.Tick
	var m, r, v, ideal []float64
	for _, s := range res.Steps {
		xs = append(xs, float64(s.To))
		ticks = append(ticks, plot.Tick{Value: float64(s.To), Label: strconv.Itoa(s.To)})
		m, r, v, ideal = append(m, s.Moved.ModN), append(r, s.Moved.Ring), append(v, s.Moved.VNodes), append(ideal, s.Ideal)
	}
	zero := 0.0
	title := fmt.Sprintf("Keys moved when a cluster grows from n−1 to n nodes (%d→%d)", res.Config.From, res.Config.To)
	if res.Config.Trials > 1 {
		title += fmt.Sprintf(", mean of %d id sets", res.Config.Trials)
	}
	return chart{
		Title:  title,
		XLabel: "nodes after the step (n)",
		YLabel: "share of keys whose primary moves",
		XTicks: ticks,
		YMin:   &zero,

		Legend: "middle-right",
		Series: []series{
			{Name: "mod-N", X: xs, Y: m},
			{Name: "ring, 1 token per node", X: xs, Y: r},
			{Name: fmt.Sprintf("ring, %d vnodes", res.Config.VNodes), X: xs, Y: v},
			{Name: "ideal 1/n", X: xs, Y: ideal, Dashed: true},
		},
	}
}
