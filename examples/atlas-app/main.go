// Command atlas-app is the reference application of rekey's end-to-end
// tests: a patient-records API shaped like the runbook's Rust backend.
//
//	atlas-app --env-file PATH --listen 127.0.0.1:PORT
//	atlas-app --env-file PATH --seed N
//
// It reads the .env once at start (DATABASE_URL, JWT_SECRET, optional
// JWT_SECRET_PREVIOUS, ENCRYPTION_KEY, optional ENCRYPTION_KEY_PREVIOUS);
// the demo account's password is ATLAS_DEMO_PASSWORD or "demo-password".
// --seed creates the schema and demo patients 1..N, then exits. When
// serving, it logs "listening on ADDR" (the bound address, useful with
// port 0) and shuts down cleanly on SIGTERM or SIGINT. No secret value is
// ever logged.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/rekeyhq/rekey/examples/atlas-app/internal/atlas"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}

// run is main without the process: exit code 0 on success (including a
// clean shutdown when ctx is done), 1 on a runtime error, 2 on bad usage.
func run(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("atlas-app", flag.ContinueOnError)
	fs.SetOutput(stderr)
	envFile := fs.String("env-file", ".env", "`path` of the .env to read at start")
	listen := fs.String("listen", "127.0.0.1:8080", "`address` to serve on")
	seed := fs.Int("seed", -1, "create the schema and `N` demo patients, then exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(stderr, "atlas-app: unexpected arguments")
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))

	cfg, err := atlas.LoadEnvFile(*envFile)
	if err != nil {
		log.Error("configuration", "err", err)
		return 1
	}
	if *seed >= 0 {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		if err := atlas.Seed(sctx, cfg, *seed); err != nil {
			log.Error("seed failed", "err", err)
			return 1
		}
		log.Info("seeded", "patients", *seed)
		return 0
	}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Error("listen failed", "err", err)
		return 1
	}
	if err := serve(ctx, cfg, ln, log); err != nil {
		log.Error("serve failed", "err", err)
		return 1
	}
	return 0
}

// serve serves the API on ln until ctx is done, then shuts down
// gracefully (in-flight requests get up to 10s). It closes ln.
func serve(ctx context.Context, cfg *atlas.Config, ln net.Listener, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           atlas.NewServer(cfg, log).Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("listening on " + ln.Addr().String())

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err == nil {
		log.Info("stopped")
	}
	return err
}
