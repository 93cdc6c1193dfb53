// Command atlas-app is the reference application of rekey's end-to-end
// tests: a patient-records API shaped like the runbook's Rust backend.
//
//	atlas-app --env-file PATH --listen 127.0.0.1:PORT [--pidfile PATH]
//	atlas-app --env-file PATH --seed N
//	atlas-app start|restart|reload|stop|status --pidfile PATH ...
//
// It reads the .env at start (DATABASE_URL, JWT_SECRET of at least 64
// bytes, optional JWT_SECRET_PREVIOUS, ENCRYPTION_KEY, optional
// ENCRYPTION_KEY_PREVIOUS) and again on SIGHUP, swapping the new
// configuration in without closing its listener; a reload whose .env is
// unusable leaves it answering 503 until a reload succeeds. The demo
// account's password is ATLAS_DEMO_PASSWORD or "demo-password". --seed
// creates the schema and demo patients 1..N, then exits. When serving, it
// logs "listening on ADDR" (the bound address, useful with port 0) and
// shuts down cleanly on SIGTERM or SIGINT. `atlas-app help` describes the
// process commands (what rekey.yaml's services: run). No secret value is
// ever logged. `rekey demo --with-postgres` runs this binary (the rekey
// binary does not include it: it builds it from its source tree when it is
// not beside rekey, or takes --app PATH).
package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/rekeyhq/rekey/examples/atlas-app/atlas"
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
	self, err := os.Executable()
	if err != nil {
		self = os.Args[0]
	}
	return atlas.Main(ctx, atlas.Options{Self: []string{self}, Stdout: os.Stdout, Stderr: stderr}, args)
}

// serve serves the API on ln until ctx is done, then shuts down
// gracefully (in-flight requests get up to 10s). It closes ln.
func serve(ctx context.Context, cfg *atlas.Config, ln net.Listener, log *slog.Logger) error {
	return atlas.Serve(ctx, atlas.ServeOptions{Config: cfg, Listener: ln, Log: log})
}
