package cli

import (
	"context"

	"github.com/borderlink/borderlink/internal/config"
	"github.com/borderlink/borderlink/internal/gateway"
)

func runServe(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "serve", "serve --config FILE [--log-format text|json] [--log-level info]")
	cfgPath := fs.String("config", "", "gateway configuration file (docs/configuration.md)")
	newLogger := logFlags(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *cfgPath == "" {
		return usagef("serve: --config is required")
	}
	logger, err := newLogger(e.stderr)
	if err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	return gateway.Run(ctx, cfg, logger)
}
