package verify

// This file holds the log check: after a restart, watch a log (a file
// followed from its end, or a command's output) for a window, and fail on
// the first lines that match a pattern, quoted redacted.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rekeyhq/rekey"
)

// logPoll is how often a followed file is read for new lines.
const logPoll = 100 * time.Millisecond

// maxQuoted is how many matched lines a failure quotes.
const maxQuoted = 3

func (r *checkRun) log(ctx context.Context, l *rekey.LogCheck) (string, *attemptErr) {
	re, err := regexp.Compile(l.Pattern)
	if err != nil {
		return "", &attemptErr{msg: "pattern does not compile: " + err.Error(), final: true}
	}
	window := l.Window
	if window <= 0 {
		window = rekey.DefaultLogWindow
	}
	wctx, cancel := context.WithTimeout(ctx, window)
	defer cancel()
	var matched []string
	var lines int
	match := func(line string) bool {
		lines++
		if re.MatchString(line) {
			matched = append(matched, r.redact(strings.TrimSpace(line)))
		}
		return len(matched) > 0
	}
	var what string
	var aerr *attemptErr
	switch {
	case l.File != "":
		from, ok := r.o.LogOffsets[l.File]
		if !ok {
			from = -1
		}
		what, aerr = followFile(wctx, l.File, from, match)
	case l.Unit != "":
		c := rekey.Command{Argv: []string{"journalctl", "--follow", "--output=cat", "--unit", l.Unit, "--lines=0"}}
		if !r.o.LogStart.IsZero() {
			c.Argv[len(c.Argv)-1] = "--since=@" + strconv.FormatInt(r.o.LogStart.Unix(), 10)
		}
		what, aerr = r.followCommand(wctx, c, match)
		what = "the journal of " + l.Unit
	default:
		what, aerr = r.followCommand(wctx, *l.Command, match)
	}
	if aerr != nil {
		return "", aerr
	}
	if len(matched) > 0 {
		if len(matched) > maxQuoted {
			matched = matched[:maxQuoted]
		}
		return "", &attemptErr{msg: fmt.Sprintf("%s: a line matches /%s/: %s", what, l.Pattern, strings.Join(matched, " | ")),
			hint: "the service logged an error after the restart: look at " + what, final: true}
	}
	if ctx.Err() != nil {
		return "", &attemptErr{msg: what + ": interrupted before the end of the window", final: true}
	}
	n := fmt.Sprintf("%d lines", lines)
	if lines == 1 {
		n = "1 line"
	}
	return fmt.Sprintf("%s: no line matched /%s/ in %s (%s)", what, l.Pattern, rekey.FormatDuration(window), n), nil
}

// followFile reads the lines of path from offset from (its end when from
// is negative or beyond it) until ctx ends (or match says stop); a
// truncated or replaced file is read from its start.
func followFile(ctx context.Context, path string, from int64, match func(string) bool) (string, *attemptErr) {
	f, err := os.Open(path)
	if err != nil {
		return path, &attemptErr{msg: "open " + path + ": " + errText(err), hint: "check file: in the check, and that rekey may read it", final: true}
	}
	defer func() { f.Close() }()
	off, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return path, &attemptErr{msg: "read " + path + ": " + errText(err), final: true}
	}
	if from >= 0 && from <= off {
		off = from
	}
	var partial []byte
	buf := make([]byte, 64<<10)
	t := time.NewTicker(logPoll)
	defer t.Stop()
	for {
		for {
			n, err := f.ReadAt(buf, off)
			off += int64(n)
			partial = append(partial, buf[:n]...)
			for {
				i := bytes.IndexByte(partial, '\n')
				if i < 0 {
					break
				}
				if match(string(partial[:i])) {
					return path, nil
				}
				partial = partial[i+1:]
			}
			if n == 0 || errors.Is(err, io.EOF) {
				break
			}
		}
		// Rotated (a new file at the path) or truncated: from its start.
		if fi, err := os.Stat(path); err == nil {
			if cur, err2 := f.Stat(); err2 == nil && (!os.SameFile(fi, cur) || fi.Size() < off) {
				if nf, err := os.Open(path); err == nil {
					f.Close()
					f, off, partial = nf, 0, nil
					continue
				}
			}
		}
		select {
		case <-ctx.Done():
			if len(partial) > 0 {
				match(string(partial))
			}
			return path, nil
		case <-t.C:
		}
	}
}

// followCommand runs c for the window and reads its output's lines; it is
// stopped (its process group) when the window ends. A command that cannot
// start, or exits non-zero before the end, fails the check.
func (r *checkRun) followCommand(ctx context.Context, c rekey.Command, match func(string) bool) (string, *attemptErr) {
	args := c.Args()
	what := c.String()
	if len(args) == 0 {
		return what, &attemptErr{msg: "no log command", final: true}
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = r.o.Dir
	env := r.o.Env
	if env == nil {
		env = os.Environ()
	}
	cmd.Env = rekey.ChildEnv(env)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw, err := os.Pipe()
	if err != nil {
		return what, &attemptErr{msg: err.Error(), final: true}
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return what, &attemptErr{msg: "cannot start " + what + ": " + errText(err), hint: "check command: in the check", final: true}
	}
	pw.Close()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	stop := func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		pr.Close()
		for range lines {
		}
	}
	for {
		select {
		case line, ok := <-lines:
			if !ok { // the command ended before the window
				err := cmd.Wait()
				pr.Close()
				if err != nil && ctx.Err() == nil {
					return what, &attemptErr{msg: what + " ended before the window: " + errText(err), hint: "run it by hand to see why", final: true}
				}
				return what, nil
			}
			if match(line) {
				stop()
				return what, nil
			}
		case <-ctx.Done():
			stop()
			return what, nil
		}
	}
}
