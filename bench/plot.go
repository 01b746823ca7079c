package main

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// series is one line of a plot.
type series struct {
	Name string
	X, Y []float64
	// Dashed draws the line dashed (reference lines such as an ideal).
	Dashed bool
}

// chart describes a line plot.
type chart struct {
	Title, XLabel, YLabel string
	Series                []series
	// LogX and LogY use logarithmic axes (every value must be > 0).
	LogX, LogY bool
	// YMin, when set, pins the bottom of the y axis (0 for fractions).
	YMin *float64
	// XTicks, when set, are the only marks on the x axis.
	XTicks []plot.Tick
	// Legend places the legend where the data leave room: "" (top
	// right), "top-left", "bottom-right" or "middle-right".
	Legend string
}

// Size of every plot.
const (
	plotWidth  = 8 * vg.Inch
	plotHeight = 5 * vg.Inch
)

// plotFormat returns the image format for a file name: png or svg.
func plotFormat(name string) (string, error) {
	switch ext := strings.ToLower(filepath.Ext(name)); ext {
	case ".png":
		return "png", nil
	case ".svg":
		return "svg", nil
	default:
		return "", usageErr("plot %s: unknown format %q: want .png or .svg", name, ext)
	}
}

// savePlot draws c and writes it to name, as PNG or SVG by the extension.
func savePlot(c chart, name string) error {
	if name == "" {
		return nil
	}
	format, err := plotFormat(name)
	if err != nil {
		return err
	}
	p := plot.New()
	p.Title.Text = c.Title
	p.X.Label.Text = c.XLabel
	p.Y.Label.Text = c.YLabel
	switch c.Legend {
	case "", "top-right":
		p.Legend.Top = true
	case "top-left":
		p.Legend.Top, p.Legend.Left = true, true
		p.Legend.XOffs = vg.Points(10)
	case "bottom-right":
		p.Legend.YOffs = vg.Points(10)
	case "middle-right":
		p.Legend.YOffs = plotHeight * 0.35
	}
	p.Add(plotter.NewGrid())
	if c.LogX {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	if c.LogY {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	if c.XTicks != nil {
		p.X.Tick.Marker = plot.ConstantTicks(c.XTicks)
	}
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
			return fmt.Errorf("plot %s: series %q: %w", name, s.Name, err)
		}
		line.Color = plotutil.Color(i)
		line.Width = vg.Points(1.5)
		points.Color = plotutil.Color(i)
		points.Shape = plotutil.Shape(i)
		points.Radius = vg.Points(2.5)
		if s.Dashed {
			line.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
			points.Shape = draw.CircleGlyph{}
			points.Radius = vg.Points(1)
		}
		p.Add(line, points)
		p.Legend.Add(s.Name, line, points)
	}
	if c.YMin != nil {
		p.Y.Min = *c.YMin
	}
	wt, err := p.WriterTo(plotWidth, plotHeight, format)
	if err != nil {
		return fmt.Errorf("plot %s: %w", name, err)
	}
	var buf bytes.Buffer
	if _, err := wt.WriteTo(&buf); err != nil {
		return fmt.Errorf("plot %s: %w", name, err)
	}
	return writeFile(name, buf.Bytes())
}

// saveColumn writes plots (one per row, one column) to name, PNG or SVG by
// its extension, each panel as wide as a single plot.
func saveColumn(name string, plots [][]*plot.Plot) error {
	format, err := plotFormat(name)
	if err != nil {
		return err
	}
	w, h := plotWidth, plotHeight*0.8*vg.Length(len(plots))
	var canvas vg.CanvasWriterTo
	if format == "svg" {
		canvas = vgsvg.New(w, h)
	} else {
		canvas = vgimg.PngCanvas{Canvas: vgimg.New(w, h)}
	}
	tiles := draw.Tiles{Rows: len(plots), Cols: 1, PadX: vg.Millimeter, PadY: 4 * vg.Millimeter,
		PadTop: 2 * vg.Millimeter, PadBottom: 2 * vg.Millimeter, PadLeft: 2 * vg.Millimeter, PadRight: 2 * vg.Millimeter}
	canvases := plot.Align(plots, tiles, draw.New(canvas))
	for i := range plots {
		plots[i][0].Draw(canvases[i][0])
	}
	var buf bytes.Buffer
	if _, err := canvas.WriteTo(&buf); err != nil {
		return fmt.Errorf("plot %s: %w", name, err)
	}
	return writeFile(name, buf.Bytes())
}
