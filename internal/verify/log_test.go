package verify

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rekeyhq/rekey"
)

func logCheck(l rekey.LogCheck) rekey.Check {
	if l.Pattern == "" {
		l.Pattern = rekey.DefaultLogPattern
	}
	return rekey.Check{Name: "logs", Type: rekey.CheckLog, Log: &l, Timeout: l.Window + 5*time.Second, Deadline: l.Window + 5*time.Second}
}

// redactSecret stands for the session's redactor: it knows one value.
func redactSecret(s string) string { return strings.ReplaceAll(s, "s3cr3t-value", "[REDACTED]") }

// TestLogFile: a file followed from its end. Lines written before the
// check are not read; an ERROR written during the window fails it, quoted
// redacted; a quiet window passes; a file rotated during the window is
// followed at its new start.
func TestLogFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "app.log")
	if err := os.WriteFile(p, []byte("ERROR before the restart: not this check's business\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	appendLines := func(path string, lines ...string) {
		f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o600)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		for _, l := range lines {
			f.WriteString(l + "\n")
		}
	}
	o := Options{Redact: redactSecret}

	// Quiet: passes at the end of the window, counting the lines.
	go func() { time.Sleep(150 * time.Millisecond); appendLines(p, "INFO started", "INFO listening") }()
	r := runOne(t, logCheck(rekey.LogCheck{File: p, Window: 700 * time.Millisecond}), nil, o)
	if !r.OK || !strings.Contains(r.Message, "no line matched /panic|FATAL|ERROR/ in 700ms (2 lines)") {
		t.Fatalf("quiet log: %+v", r)
	}

	// An error after the restart: fails with the line, redacted, once.
	go func() {
		time.Sleep(150 * time.Millisecond)
		appendLines(p, "INFO reloading", "ERROR database refused password s3cr3t-value for role app")
	}()
	r = runOne(t, logCheck(rekey.LogCheck{File: p, Window: 20 * time.Second}), nil, o)
	if r.OK || r.Attempts != 1 || !strings.Contains(r.Message, "ERROR database refused password [REDACTED] for role app") || strings.Contains(r.Message, "s3cr3t") {
		t.Fatalf("error in the log: %+v", r)
	}

	// Rotated during the window: the new file is read from its start.
	go func() {
		time.Sleep(200 * time.Millisecond)
		if err := os.Rename(p, p+".1"); err != nil {
			t.Error(err)
		}
		appendLines(p, "FATAL config: missing JWT_SECRET")
	}()
	r = runOne(t, logCheck(rekey.LogCheck{File: p, Window: 20 * time.Second, Pattern: "FATAL"}), nil, o)
	if r.OK || !strings.Contains(r.Message, "FATAL config: missing JWT_SECRET") {
		t.Fatalf("rotated log: %+v", r)
	}

	// A line logged after the restart began but before the check started
	// (LogOffsets: the file's size when the restart began) is read too.
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	appendLines(p, "panic: early, before the checks ran")
	o2 := o
	o2.LogOffsets = map[string]int64{p: fi.Size()}
	r = runOne(t, logCheck(rekey.LogCheck{File: p, Window: 20 * time.Second}), nil, o2)
	if r.OK || !strings.Contains(r.Message, "panic: early") {
		t.Fatalf("a line from between the restart and the check: %+v", r)
	}

	// No such file: a clear failure.
	r = runOne(t, logCheck(rekey.LogCheck{File: filepath.Join(dir, "nope.log"), Window: time.Second}), nil, o)
	if r.OK || !strings.Contains(r.Message, "nope.log") {
		t.Fatalf("missing file: %+v", r)
	}
}

// TestLogCommand: a command's output (journalctl -f, docker compose logs
// -f...). A matching line fails the check; a quiet window passes and the
// command, with its children, is stopped; a command that ends in failure
// before the window fails it.
func TestLogCommand(t *testing.T) {
	dir := t.TempDir()
	o := Options{Dir: dir, Redact: redactSecret}
	sh := func(script string) *rekey.Command { return &rekey.Command{Argv: []string{"sh", "-c", script}} }

	r := runOne(t, logCheck(rekey.LogCheck{Command: sh(`echo starting; sleep 0.2; echo "panic: token s3cr3t-value invalid" >&2; sleep 30`), Window: 20 * time.Second}), nil, o)
	if r.OK || !strings.Contains(r.Message, "panic: token [REDACTED] invalid") {
		t.Fatalf("panic in the output: %+v", r)
	}

	pidfile := filepath.Join(dir, "child.pid")
	r = runOne(t, logCheck(rekey.LogCheck{Command: sh(`echo fine; sleep 30 & echo $! > child.pid; wait`), Window: 500 * time.Millisecond}), nil, o)
	if !r.OK || !strings.Contains(r.Message, "(1 line)") {
		t.Fatalf("quiet output: %+v", r)
	}
	raw, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
	for range 50 { // the group was killed: reaped by init soon after
		if syscall.Kill(pid, 0) != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		if st, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); !strings.Contains(string(st), ") Z ") {
			t.Errorf("the log command's child %d still runs after the window", pid)
		}
	}

	r = runOne(t, logCheck(rekey.LogCheck{Command: sh(`echo "no such unit" >&2; exit 3`), Window: 20 * time.Second}), nil, o)
	if r.OK || !strings.Contains(r.Message, "ended before the window") {
		t.Fatalf("failing command: %+v", r)
	}
	r = runOne(t, logCheck(rekey.LogCheck{Command: &rekey.Command{Argv: []string{filepath.Join(dir, "missing")}}, Window: time.Second}), nil, o)
	if r.OK || !strings.Contains(r.Message, "cannot start") {
		t.Fatalf("missing command: %+v", r)
	}
}
