package bench

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
)

// Compare prints, for every result present in both reports, each metric's
// old and new median and the relative change, marking with "!" changes
// larger than the two results' combined spread (relative), and then the
// ratios side by side. Results and ratios of only one report are listed as
// new or gone; gone ones are marked too: a scenario that stopped producing
// a row must not pass unnoticed. It returns how many rows were marked.
func Compare(w io.Writer, old, cur *Report) int {
	fmt.Fprintf(w, "old: %s  %s, %d CPUs, GOMAXPROCS %d, %s\n", old.Date.Format("2006-01-02 15:04"), old.Machine.CPUModel, old.Machine.NumCPU, old.Machine.GOMAXPROCS, old.Machine.GoVersion)
	fmt.Fprintf(w, "new: %s  %s, %d CPUs, GOMAXPROCS %d, %s\n", cur.Date.Format("2006-01-02 15:04"), cur.Machine.CPUModel, cur.Machine.NumCPU, cur.Machine.GOMAXPROCS, cur.Machine.GoVersion)
	if old.Machine.CPUModel != cur.Machine.CPUModel || old.Machine.GOMAXPROCS != cur.Machine.GOMAXPROCS {
		fmt.Fprintln(w, "warning: different machines or GOMAXPROCS; compare the ratios, not the absolute numbers")
	}
	if o, n := gcTargetOf(old.Machine), gcTargetOf(cur.Machine); o != n {
		fmt.Fprintf(w, "warning: different GC targets (GOGC %s, then %s): latencies, allocations' cost and RSS move with it\n", o, n)
	}
	fmt.Fprintln(w)
	oldResults := map[string]*Result{}
	for _, sc := range old.Scenarios {
		for _, r := range sc.Results {
			oldResults[r.ID] = r
		}
	}
	marked := 0
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "result\tmetric\told\tnew\tdelta\tnoise\t\t")
	for _, sc := range cur.Scenarios {
		for _, r := range sc.Results {
			o := oldResults[r.ID]
			delete(oldResults, r.ID)
			if o == nil {
				fmt.Fprintf(tw, "%s\t(new)\t\t\t\t\t\t\n", r.ID)
				continue
			}
			for _, m := range metrics {
				ov, nv := m.get(o.Median), m.get(r.Median)
				if ov == 0 && nv == 0 {
					continue
				}
				if ov == 0 || nv == 0 {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\t\t\t\n", r.ID, m.name, fmtNum(ov), fmtNum(nv))
					continue
				}
				delta := (nv - ov) / math.Abs(ov)
				noise := o.Spread[m.name] + r.Spread[m.name]
				mark := ""
				if math.Abs(delta) > noise {
					mark = "!"
					marked++
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%+.1f%%\t±%.1f%%\t%s\t\n", r.ID, m.name, fmtNum(ov), fmtNum(nv), 100*delta, 100*noise, mark)
			}
		}
	}
	for _, sc := range old.Scenarios {
		for _, r := range sc.Results {
			if oldResults[r.ID] != nil {
				fmt.Fprintf(tw, "%s\t(gone)\t\t\t\t\t!\t\n", r.ID)
				marked++
			}
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	oldRatios := map[string]Ratio{}
	for _, sc := range old.Scenarios {
		for _, r := range sc.Ratios {
			oldRatios[sc.Name+": "+r.Name] = r
		}
	}
	tw = tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ratio\told\tnew\tdelta\tnoise\t\tgoal\t")
	for _, sc := range cur.Scenarios {
		for _, r := range sc.Ratios {
			ov, delta, noise, mark := "–", "", "", ""
			key := sc.Name + ": " + r.Name
			o, ok := oldRatios[key]
			delete(oldRatios, key)
			if ok {
				ov = fmtNum(o.Value)
				if o.Value != 0 {
					d, n := (r.Value-o.Value)/math.Abs(o.Value), o.Spread+r.Spread
					delta, noise = fmt.Sprintf("%+.1f%%", 100*d), fmt.Sprintf("±%.1f%%", 100*n)
					if math.Abs(d) > n {
						mark = "!"
						marked++
					}
				}
			}
			fmt.Fprintf(tw, "%s: %s\t%s\t%s\t%s\t%s\t%s\t%s %s\t\n", sc.Name, r.Name, ov, fmtNum(r.Value), delta, noise, mark, r.Goal, strings.Trim(verdict(r), "*"))
		}
	}
	for _, sc := range old.Scenarios {
		for _, r := range sc.Ratios {
			if o, ok := oldRatios[sc.Name+": "+r.Name]; ok {
				fmt.Fprintf(tw, "%s: %s\t%s\t(gone)\t\t\t!\t%s\t\n", sc.Name, r.Name, fmtNum(o.Value), o.Goal)
				marked++
			}
		}
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%d row(s) marked !: changes beyond the combined spread, and rows gone\n", marked)
	return marked
}

// gcTargetOf is m's GC target; reports from before it was recorded ran
// with Go's default.
func gcTargetOf(m Machine) string {
	if m.GCTarget == "" {
		return "100"
	}
	return m.GCTarget
}
