// Command rekey rotates a project's secrets safely: it generates, seals,
// applies, publishes and verifies new values, keeps every version, keeps the
// schedule and leaves an audit trail. `rekey --help` lists the commands.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"sync/atomic"
	"syscall"
)

func main() {
	// REKEY_CPUPROFILE=FILE writes a CPU profile (for bench/ investigations).
	if p := os.Getenv("REKEY_CPUPROFILE"); p != "" {
		if f, err := createProfile(p); err == nil {
			pprof.StartCPUProfile(f)
		} else {
			fmt.Fprintf(os.Stderr, "rekey: warning: REKEY_CPUPROFILE: %v (no profile written)\n", err)
		}
	}
	code := runProcess(os.Args[1:])
	pprof.StopCPUProfile()
	os.Exit(code)
}

// runProcess runs rekey as a process: the standard streams, and SIGINT or
// SIGTERM cancel the run (exit 130 or 143, Main.Run).
func runProcess(args []string) int {
	ctx, interrupted := onInterrupt()
	return (&Main{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Interrupted: interrupted}).Run(ctx, args)
}

// onInterrupt returns a context that SIGINT or SIGTERM cancels, and the
// signal that did (nil before). After the first signal the default
// handling is back: a second Ctrl-C ends rekey at once (what it had started
// is journaled; `rekey recover` completes or rolls it back).
func onInterrupt() (context.Context, func() os.Signal) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	var got atomic.Value
	go func() {
		s := <-sigs
		got.Store(s)
		signal.Stop(sigs)
		cancel()
	}()
	return ctx, func() os.Signal { s, _ := got.Load().(os.Signal); return s }
}

// createProfile creates a new file for a CPU profile. It never opens an
// existing file (nor follows a symbolic link): whoever sets the variable
// cannot make rekey truncate a file it can write.
func createProfile(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
}

// Main is the program with injectable standard streams and environment, so
// tests run it in-process.
type Main struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Dir is the working directory ("" = the process's).
	Dir string
	// Env overrides environment variables (a key mapped to "" unsets it).
	Env map[string]string
	// Interrupted returns the signal (SIGINT, SIGTERM) that cancelled the
	// run's context, or nil; nil when not wired (in-process tests).
	Interrupted func() os.Signal
}
