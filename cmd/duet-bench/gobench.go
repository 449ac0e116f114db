package main

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// goBenchTable reads `go test -bench` output (several -count runs) and
// writes a Markdown table with the median of every metric per benchmark,
// in the order benchmarks first appear. Raw output stays benchstat's.
func goBenchTable(r io.Reader, w io.Writer) error {
	type bench struct {
		units  []string
		values map[string][]float64
	}
	var order []string
	all := map[string]*bench{}
	pkg := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimPrefix(p, "github.com/duetchat/duet/")
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := pkg + " " + strings.TrimPrefix(f[0], "Benchmark")
		b := all[name]
		if b == nil {
			b = &bench{values: map[string][]float64{}}
			all[name] = b
			order = append(order, name)
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			unit := f[i+1]
			if _, seen := b.values[unit]; !seen {
				b.units = append(b.units, unit)
			}
			b.values[unit] = append(b.values[unit], v)
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	fmt.Fprintln(w, "| package benchmark | runs | median of each metric |")
	fmt.Fprintln(w, "| --- | ---: | --- |")
	for _, name := range order {
		b := all[name]
		var parts []string
		runs := 0
		for _, u := range b.units {
			vs := slices.Clone(b.values[u])
			slices.Sort(vs)
			runs = max(runs, len(vs))
			parts = append(parts, strconv.FormatFloat(vs[(len(vs)-1)/2], 'g', 4, 64)+" "+u)
		}
		fmt.Fprintf(w, "| %s | %d | %s |\n", name, runs, strings.Join(parts, ", "))
	}
	return nil
}
