package main

import (
	"fmt"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// savePartitionHealPlot draws two panels over one time axis (seconds since
// the cut): per-side throughput during the partition, and the (key,
// replica) pairs still differing after the heal; the heal, one membership
// and convergence are marked.
func savePartitionHealPlot(res *phResult, name string) error {
	if name == "" {
		return nil
	}
	heal := res.Cut.HealAt
	end := heal
	if len(res.Series) > 0 {
		end = heal + res.Series[len(res.Series)-1].T
	}
	end = max(end*1.02, end+0.2)

	tput := chart{Title: "Partition and heal: throughput per side", YLabel: "writes/s"}
	for _, name := range phSortedKeys(res.OpsDuringPartition) {
		s := res.OpsDuringPartition[name]
		ser := series{Name: "side " + name + " (" + strings.Join(s.Nodes, ",") + ")"}
		for _, p := range s.Series {
			ser.X, ser.Y = append(ser.X, p.At), append(ser.Y, p.OpsPerSec)
		}
		tput.Series = append(tput.Series, ser)
		if len(s.ErrorSeries) > 0 {
			es := series{Name: "side " + name + " errors", Dashed: true}
			for _, p := range s.ErrorSeries {
				es.X, es.Y = append(es.X, p.At), append(es.Y, p.OpsPerSec)
			}
			tput.Series = append(tput.Series, es)
		}
	}

	div := chart{Title: "Divergence after the heal", XLabel: "seconds since the cut",
		YLabel: "(key, replica) pairs differing"}
	// The estimate counts a pair twice when hinted handoff and anti-entropy
	// both repair it, so with hints on it reaches 0 before convergence.
	est := series{Name: "estimate: D0 − (Δ keys pulled + Δ hints delivered)"}
	for _, p := range res.Series {
		est.X, est.Y = append(est.X, heal+p.T), append(est.Y, float64(p.Estimate))
	}
	exact := series{Name: "exact (at the heal and at convergence)", X: []float64{heal}, Y: []float64{float64(res.KeysDiffering)}}
	if res.HealToConverged != nil {
		exact.X, exact.Y = append(exact.X, heal+*res.HealToConverged), append(exact.Y, 0)
	}
	hints := series{Name: "hints pending (all nodes)", Dashed: true}
	for _, p := range res.Series {
		hints.X, hints.Y = append(hints.X, heal+p.T), append(hints.Y, float64(p.HintsPending))
	}
	div.Series = append(div.Series, est, exact, hints)

	ymax := func(c chart) float64 {
		m := 1.0
		for _, s := range c.Series {
			for _, y := range s.Y {
				m = max(m, y)
			}
		}
		return m * 1.05
	}
	var plots [][]*plot.Plot
	for _, c := range []chart{tput, div} {
		top := ymax(c)
		marks := []struct {
			at    *float64
			label string
		}{{&heal, "heal"}, {phOffset(heal, res.HealToMembership), "one membership"},
			{phOffset(heal, res.HealToHashesAgree), "shared ranges agree"}, {phOffset(heal, res.HealToConverged), "converged"}}
		p, err := phPlot(c, end, top, "exact")
		if err != nil {
			return fmt.Errorf("plot %s: %w", name, err)
		}
		for i, m := range marks {
			if m.at == nil {
				continue
			}
			l, err := plotter.NewLine(plotter.XYs{{X: *m.at, Y: 0}, {X: *m.at, Y: top}})
			if err != nil {
				return fmt.Errorf("plot %s: %w", name, err)
			}
			l.Color = plotutil.Color(3 + i) // after the panels' (at most three) series
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			p.Add(l)
			p.Legend.Add(m.label, l)
		}
		plots = append(plots, []*plot.Plot{p})
	}
	return saveColumn(name, plots)
}

func phOffset(base float64, d *float64) *float64 {
	if d == nil {
		return nil
	}
	v := base + *d
	return &v
}

// phPlot builds one panel like savePlot does, with the x axis from 0 to
// xmax and the y axis from 0 to ymax; series whose name starts with
// pointsOnly are drawn as points without a line.
func phPlot(c chart, xmax, ymax float64, pointsOnly string) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = c.Title
	p.X.Label.Text = c.XLabel
	p.Y.Label.Text = c.YLabel
	// Nothing is drawn before the first writes (panel 1) or before the heal
	// (panel 2): the legend goes top left.
	p.Legend.Top, p.Legend.Left = true, true
	p.Legend.XOffs = vg.Points(10)
	p.Add(plotter.NewGrid())
	for i, s := range c.Series {
		if len(s.X) == 0 {
			continue
		}
		xys := make(plotter.XYs, len(s.X))
		for j := range s.X {
			xys[j] = plotter.XY{X: s.X[j], Y: s.Y[j]}
		}
		line, points, err := plotter.NewLinePoints(xys)
		if err != nil {
			return nil, fmt.Errorf("series %q: %w", s.Name, err)
		}
		line.Color = plotutil.Color(i)
		line.Width = vg.Points(1.5)
		points.Color = plotutil.Color(i)
		points.Shape = plotutil.Shape(i)
		points.Radius = vg.Points(1.5)
		if s.Dashed {
			line.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
		}
		if strings.HasPrefix(s.Name, pointsOnly) {
			points.Radius = vg.Points(4)
			p.Add(points)
			p.Legend.Add(s.Name, points)
			continue
		}
		p.Add(line, points)
		p.Legend.Add(s.Name, line, points)
	}
	p.X.Min, p.X.Max = 0, xmax
	p.Y.Min, p.Y.Max = 0, ymax
	return p, nil
}
