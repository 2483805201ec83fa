// Package cli is the borderlink command line: it parses flags and calls
// into the other packages. Only Main decides the process exit code.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"sort"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/borderlink/borderlink/internal/audit"
)

// Exit codes, documented in docs/cli.md.
const (
	ExitOK       = 0
	ExitError    = 1 // failure (bad input, unreachable gateway, internal error)
	ExitUsage    = 2 // wrong flags or arguments
	ExitDenied   = 3 // the partner's policy refused (PERMISSION_DENIED)
	ExitNotFound = 4 // the record does not exist (NOT_FOUND)
)

// env is what a command may touch of the outside world.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
}

type command struct {
	name  string
	usage string
	run   func(ctx context.Context, e *env, args []string) error
}

func commands() []command {
	return []command{
		{"serve", "run one gateway: serve --config FILE", runServe},
		{"query", "ask a partner through your own gateway: query declaration|search|risk ...", runQuery},
		{"publish", "store a risk assessment and push it to entitled partners: publish [--purpose P] FILE.json", runPublish},
		{"delivery", "see and steer the push queue: delivery status|retry|cancel ...", runDelivery},
		{"inbox", "list the alerts partners pushed to you: inbox [--sender D] [--since T]", runInbox},
		{"import", "load records into your own gateway: import [--skip-invalid] FILE.jsonl", runImport},
		{"gen", "write synthetic records as JSONL: gen --domain D --count N --seed S", runGen},
		{"certs", "make development certificates: certs dev --out DIR --domains a,b,c", runCerts},
		{"audit", "read, export, verify and reconcile the audit log: audit list|export|verify|key|reconcile|split-views ...", runAudit},
		{"policy", "check, test and explain policies: policy check|test|explain|diff|status ...", runPolicy},
		{"demo", "run three administrations on this machine and tour them: demo [--dir DIR]", runDemo},
		{"bench", "measure the gateway against its baselines: bench [--quick] | bench compare OLD.json NEW.json", runBench},
		{"vault", "set up a development Vault and print the config section: vault init-dev --domain D", runVault},
		{"version", "print the version", runVersion},
	}
}

// groupCommands are made of subcommands (audit list, policy explain ...).
var groupCommands = map[string]bool{"audit": true, "policy": true, "certs": true, "vault": true, "delivery": true}

// Main runs the command line and returns the process exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := &env{stdout: stdout, stderr: stderr, getenv: os.Getenv}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return ExitUsage
		}
		return ExitOK
	}
	for _, c := range commands() {
		if c.name == args[0] && groupCommands[c.name] && len(args) == 2 && (args[1] == "-h" || args[1] == "--help") {
			// Commands made of subcommands have no flags of their own: help
			// is their usage line, and asking for it is not an error.
			fmt.Fprintf(stderr, "Usage: borderlink %s\n\nRun 'borderlink %s SUBCOMMAND -h' for its flags. Documentation: docs/cli.md\n", c.usage, c.name)
			return ExitOK
		}
		if c.name == args[0] {
			err := c.run(ctx, e, args[1:])
			return report(stderr, err)
		}
	}
	fmt.Fprintf(stderr, "borderlink: unknown command %q\n\n", args[0])
	usage(stderr)
	return ExitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: borderlink COMMAND [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.usage)
	}
	fmt.Fprintln(w, "\nRun 'borderlink COMMAND -h' for a command's flags. Documentation: docs/cli.md")
}

// usageError marks errors caused by how the command was called.
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

func report(stderr io.Writer, err error) int {
	if err == nil {
		return ExitOK
	}
	if errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	var ec interface{ ExitCode() int }
	if errors.As(err, &ec) {
		fmt.Fprintf(stderr, "borderlink: %v\n", err)
		return ec.ExitCode()
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "borderlink: %s\n", ue.msg)
		return ExitUsage
	}
	if st, ok := status.FromError(err); ok && st.Code() != codes.OK && st.Code() != codes.Unknown {
		fmt.Fprintf(stderr, "borderlink: %s: %s\n", audit.StatusName(st.Code()), st.Message())
		switch st.Code() {
		case codes.PermissionDenied:
			return ExitDenied
		case codes.NotFound:
			return ExitNotFound
		}
		return ExitError
	}
	fmt.Fprintf(stderr, "borderlink: %v\n", err)
	return ExitError
}

func newFlagSet(e *env, name, usageLine string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: borderlink %s\n\nFlags:\n", usageLine)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags, turning flag errors into usage errors (the flag
// package has already printed them). Unlike the flag package alone it
// accepts flags after positional arguments ("query declaration ID --peer
// X"), because that is how people type.
func parse(fs *flag.FlagSet, args []string) error {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return err
			}
			return usageError{err.Error()}
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	return fs.Parse(append([]string{"--"}, positional...))
}

// logFlags adds --log-format and --log-level and returns a constructor for
// the logger they describe.
func logFlags(fs *flag.FlagSet) func(w io.Writer) (*slog.Logger, error) {
	format := fs.String("log-format", "text", "log format: text (for a person) or json (for a collector)")
	level := fs.String("log-level", "info", "lowest level logged: debug, info, warn, error")
	return func(w io.Writer) (*slog.Logger, error) {
		var lv slog.Level
		if err := lv.UnmarshalText([]byte(*level)); err != nil {
			return nil, usagef("--log-level %q: use debug, info, warn or error", *level)
		}
		opts := &slog.HandlerOptions{Level: lv}
		switch *format {
		case "text":
			return slog.New(slog.NewTextHandler(w, opts)), nil
		case "json":
			return slog.New(slog.NewJSONHandler(w, opts)), nil
		}
		return nil, usagef("--log-format %q: use text or json", *format)
	}
}

func runVersion(_ context.Context, e *env, args []string) error {
	version := "(devel)"
	if bi, ok := debug.ReadBuildInfo(); ok {
		version = bi.Main.Version
		var settings []string
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" || s.Key == "GOOS" || s.Key == "GOARCH" {
				settings = append(settings, s.Key+"="+s.Value)
			}
		}
		sort.Strings(settings)
		fmt.Fprintf(e.stdout, "borderlink %s %s %s\n", version, bi.GoVersion, strings.Join(settings, " "))
		return nil
	}
	fmt.Fprintf(e.stdout, "borderlink %s\n", version)
	return nil
}
