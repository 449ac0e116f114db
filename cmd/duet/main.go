// Command duet runs a random video chat node. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/duetchat/duet/configs"
	"github.com/duetchat/duet/node"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `duet: random video chat node

Usage:
  duet serve [--config FILE]   run the node (embedded defaults without a file)
  duet config [--config FILE]  print the effective config, secrets masked
  duet turn-credentials [--secret S] [--ttl 1h] [--user U]
                               print a TURN REST username and password
                               (for turnutils_uclient -u U -w P)
  duet version                 print the version

Every scalar setting can also come from the environment as
DUET_<SECTION>_<KEY>, e.g. DUET_HTTP_LISTEN=:9000.
`

func main() {
	os.Exit(run(os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

func run(args, env []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return serve(rest, env, stderr)
	case "config":
		return printConfig(rest, env, stdout, stderr)
	case "turn-credentials":
		return turnCredentials(rest, env, stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, versionString())
		return 0
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "duet: unknown command %q\n\n%s", cmd, usage)
	return 2
}

func loadConfig(name string, args, env []string, stderr io.Writer) (*configs.Config, bool) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "YAML config file (default: embedded defaults)")
	if err := fs.Parse(args); err != nil {
		return nil, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "duet %s: unexpected argument %q\n", name, fs.Arg(0))
		return nil, false
	}
	cfg, err := configs.Load(*path, env)
	if err != nil {
		fmt.Fprintf(stderr, "duet: config: %v\n", err)
		return nil, false
	}
	return cfg, true
}

func printConfig(args, env []string, stdout, stderr io.Writer) int {
	cfg, ok := loadConfig("config", args, env, stderr)
	if !ok {
		return 2
	}
	// Warnings go to stderr, so stdout stays a config file.
	for _, w := range cfg.Warnings {
		fmt.Fprintf(stderr, "duet config: warning: %s\n", w)
	}
	out, err := cfg.Masked().YAML()
	if err != nil {
		fmt.Fprintf(stderr, "duet config: %v\n", err)
		return 1
	}
	_, _ = stdout.Write(out)
	return 0
}

func serve(args, env []string, stderr io.Writer) int {
	cfg, ok := loadConfig("serve", args, env, stderr)
	if !ok {
		return 2
	}
	log := newLogger(cfg.Log, stderr)
	for _, w := range cfg.Warnings {
		log.Warn("config warning", "warning", w)
	}
	// go-redis logs every failed dial on its own; duet logs the failures
	// that matter, so its chatter goes to debug.
	redis.SetLogger(redisLog{log.With("component", "go-redis")})
	n, err := node.New(cfg, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	ln, err := node.Listen(context.Background(), cfg.HTTP)
	if err != nil {
		log.Error("cannot listen", "addr", cfg.HTTP.Listen, "err", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log.Info("duet starting", "version", versionString(), "http", cfg.HTTP.Listen)
	if err := n.Serve(ctx, ln); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("stopped with error", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

func newLogger(c configs.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level)) // validated by configs
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func versionString() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
		v += " " + bi.GoVersion
	}
	return v
}

type redisLog struct{ log *slog.Logger }

func (r redisLog) Printf(ctx context.Context, format string, v ...any) {
	r.log.DebugContext(ctx, fmt.Sprintf(format, v...))
}
