package cli

import (
	"context"
	"fmt"
	"os"

	"github.com/borderlink/borderlink/internal/policy"
)

func runPolicy(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || args[0] != "check" {
		return usagef("policy: the only subcommand is check: policy check [DIR]")
	}
	fs := newFlagSet(e, "policy check", "policy check [DIR]\n\nCompiles *.rego and validates agreements/*.yaml in DIR (default: policies).")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	dir := "policies"
	if fs.NArg() > 0 {
		dir = fs.Arg(0)
	}
	set, err := policy.Compile(ctx, os.DirFS(dir))
	if err != nil {
		return fmt.Errorf("policy check %s:\n%w", dir, err)
	}
	grants := 0
	for _, a := range set.Agreements() {
		grants += len(a.Grants)
	}
	fmt.Fprintf(e.stdout, "%s: ok: %d agreement(s), %d grant(s), revision %s\n", dir, len(set.Agreements()), grants, set.Revision())
	return nil
}
