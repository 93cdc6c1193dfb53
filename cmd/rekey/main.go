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
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := (&Main{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}).Run(ctx, os.Args[1:])
	stop()
	pprof.StopCPUProfile()
	os.Exit(code)
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
}
