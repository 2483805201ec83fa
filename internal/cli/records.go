package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/borderlink/borderlink/internal/devca"
	"github.com/borderlink/borderlink/internal/gen"
	"github.com/borderlink/borderlink/internal/importer"
	blv1 "github.com/borderlink/borderlink/proto/borderlink/v1"
)

func runImport(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "import", "import [--skip-invalid] [client flags] FILE.jsonl\n\nEach line is one protojson IngestRecord ({\"declaration\": {...}} or {\"risk_assessment\": {...}}). By default one invalid line imports nothing.")
	co := clientFlags(fs)
	skip := fs.Bool("skip-invalid", false, "import the valid lines and report every skipped one")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("import: give exactly one file (use - for standard input)")
	}
	var r io.Reader = os.Stdin
	name := fs.Arg(0)
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("import: %w", err)
		}
		defer f.Close()
		r = f
	}
	lines, problems, err := importer.Read(r)
	if err != nil {
		return fmt.Errorf("import %s: %w", name, err)
	}
	for _, p := range problems {
		fmt.Fprintf(e.stderr, "%s:%s\n", name, strings.TrimPrefix(p.String(), "line "))
	}
	if len(problems) > 0 && !*skip {
		return fmt.Errorf("import %s: %d problem(s) found, nothing imported (fix them, or use --skip-invalid to import the valid lines)", name, len(problems))
	}
	if len(lines) == 0 {
		return fmt.Errorf("import %s: no valid records", name)
	}
	cc, err := dial(ctx, e, co)
	if err != nil {
		return err
	}
	defer cc.Close()
	resp, err := importer.Send(ctx, blv1.NewIngestClient(cc), lines, *skip)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "imported %d record(s), skipped %d line(s) with %d problem(s)\n", resp.GetImported(), countLines(problems), len(problems))
	return nil
}

func countLines(ps []importer.Problem) int {
	seen := map[uint64]bool{}
	for _, p := range ps {
		seen[p.Line] = true
	}
	return len(seen)
}

func runGen(_ context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "gen", "gen --domain DOMAIN [--count N] [--seed S] [--start RFC3339] [--partners SG,CN] [--out FILE]")
	domain := fs.String("domain", "", "issuing administration's trust domain; its first label is the country, e.g. nl.customs.example")
	count := fs.Int("count", 100, "number of declarations (each gets a risk assessment)")
	seed := fs.Uint64("seed", 1, "random seed; the same flags give the same file")
	start := fs.String("start", "", "latest acceptance time (RFC 3339); records spread over the 90 days before it (default: today 00:00 UTC)")
	partners := fs.String("partners", "", "comma-separated partner country codes that appear often, e.g. SG,CN")
	out := fs.String("out", "-", "output file, - for standard output")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *domain == "" {
		return usagef("gen: --domain is required")
	}
	if *count < 1 {
		return usagef("gen: --count must be at least 1")
	}
	st := time.Now().UTC().Truncate(24 * time.Hour)
	if *start != "" {
		t, err := time.Parse(time.RFC3339, *start)
		if err != nil {
			return usagef("gen: --start %q is not an RFC 3339 time", *start)
		}
		st = t
	}
	opts := gen.Options{Domain: *domain, Count: *count, Seed: *seed, Start: st}
	if *partners != "" {
		opts.Partners = strings.Split(*partners, ",")
	}
	recs, err := gen.Generate(opts)
	if err != nil {
		return fmt.Errorf("gen: %w", err)
	}
	w := e.stdout
	if *out != "-" {
		f, err := os.Create(*out)
		if err != nil {
			return fmt.Errorf("gen: %w", err)
		}
		defer f.Close()
		w = f
	}
	bw := bufio.NewWriter(w)
	if err := gen.WriteJSONL(bw, recs); err != nil {
		return fmt.Errorf("gen: %w", err)
	}
	return bw.Flush()
}

func runCerts(_ context.Context, e *env, args []string) error {
	if len(args) == 0 || args[0] != "dev" {
		return usagef("certs: the only subcommand is dev: certs dev --out DIR --domains a,b,c")
	}
	fs := newFlagSet(e, "certs dev", "certs dev --out DIR --domains a,b,c\n\nDevelopment only: a CA per administration and certificates for its gateway, one agency (health), one auditor (dpa) and one system (cli). See certs/README.md.")
	out := fs.String("out", "certs/dev", "output directory")
	domains := fs.String("domains", "", "comma-separated trust domains, e.g. nl.customs.example,sg.customs.example")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	if *domains == "" {
		return usagef("certs dev: --domains is required")
	}
	logger := newTextLogger(e.stderr)
	if err := devca.Generate(*out, strings.Split(*domains, ","), time.Now(), logger); err != nil {
		return fmt.Errorf("certs dev: %w", err)
	}
	fmt.Fprintf(e.stdout, "development certificates written to %s\n", *out)
	return nil
}
