package verify

// This file runs the checks: concurrently, each with its retries within its
// deadline, resolving and redacting the values it reads.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/rekeyhq/rekey"
)

// maxBackoff caps the wait between attempts.
const maxBackoff = 30 * time.Second

// maxBody is how much of an HTTP response is read.
const maxBody = 1 << 20

// Run runs the checks concurrently and returns one Result per check, in
// the order given.
func Run(ctx context.Context, checks []rekey.Check, resolve Resolver, o Options) []Result {
	out := make([]Result, len(checks))
	done := make([]chan struct{}, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		done[i] = make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = RunOne(ctx, c, resolve, o)
			close(done[i])
		}()
	}
	for i := range checks {
		<-done[i]
		if o.OnResult != nil {
			o.OnResult(out[i])
		}
	}
	wg.Wait()
	return out
}

// attemptErr is what one attempt found: a message and a hint, both free of
// values once redacted. retry is false when another attempt cannot help
// (a configuration problem).
type attemptErr struct {
	msg, hint string
	final     bool
}

func (e *attemptErr) Error() string { return e.msg }

func fail(hint, format string, args ...any) *attemptErr {
	return &attemptErr{msg: fmt.Sprintf(format, args...), hint: hint}
}

// RunOne runs one check with its retries, within its deadline.
func RunOne(ctx context.Context, c rekey.Check, resolve Resolver, o Options) Result {
	start := time.Now()
	r := Result{Name: c.Name, Type: c.Type}
	deadline := c.Deadline
	if deadline <= 0 {
		deadline = rekey.DefaultCheckDeadline
	}
	timeout := c.Timeout
	if timeout <= 0 || timeout > deadline {
		timeout = deadline
	}
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()

	run := &checkRun{c: c, o: o}
	defer run.wipe()
	var note string
	var last *attemptErr
	if err := run.resolveAll(resolve); err != nil {
		last = err
	} else {
		wait := c.Backoff
		for {
			r.Attempts++
			actx, acancel := context.WithTimeout(ctx, timeout)
			n, err := run.once(actx)
			acancel()
			if err == nil {
				last, note = nil, n
				break
			}
			last = err
			if err.final || r.Attempts > c.Retries {
				break
			}
			if ctx.Err() != nil {
				last.msg += fmt.Sprintf(" (deadline %s reached)", rekey.FormatDuration(deadline))
				break
			}
			if wait <= 0 {
				wait = rekey.DefaultCheckBackoff
			}
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				last.msg += fmt.Sprintf(" (deadline %s reached)", rekey.FormatDuration(deadline))
			}
			if ctx.Err() != nil {
				break
			}
			wait = min(2*wait, maxBackoff)
		}
	}
	r.Duration = time.Since(start)
	if last == nil {
		r.OK, r.Message, r.Hint = true, note, run.okHint
		return r
	}
	r.Message = run.redact(last.msg)
	r.Hint = run.redact(last.hint)
	return r
}

// checkRun holds what one check resolved.
type checkRun struct {
	c      rekey.Check
	o      Options
	values map[string]rekey.Value
	// rendered holds the templates rendered with values (to redact too).
	rendered []rekey.Value
	// okHint is what to do although the check passed (rows still under a
	// data key's previous key).
	okHint string
	red    func(string) string
}

func (r *checkRun) wipe() {
	for _, v := range r.values {
		v.Wipe()
	}
	for _, v := range r.rendered {
		v.Wipe()
	}
}

func (r *checkRun) resolveAll(resolve Resolver) *attemptErr {
	r.values = map[string]rekey.Value{}
	for _, name := range r.c.Refs() {
		if resolve == nil {
			return &attemptErr{msg: "cannot read " + name + ": no values given", final: true}
		}
		v, err := resolve(name)
		if err != nil {
			hint := rekey.ErrorHint(err)
			if hint == "" {
				hint = "check that " + name + " has a current value (`rekey status`)"
			}
			return &attemptErr{msg: "cannot read " + name + ": " + errText(err), hint: hint, final: true}
		}
		r.values[name] = v
	}
	return nil
}

// errText is the message of err; a *rekey.Error's own text (never a value).
func errText(err error) string {
	var re *rekey.Error
	if errors.As(err, &re) {
		return re.Error()
	}
	return err.Error()
}

// render fills a template; it keeps the result for redaction.
func (r *checkRun) render(t *rekey.Template) (string, *attemptErr) {
	if t == nil {
		return "", nil
	}
	v, err := t.Render(r.values)
	if err != nil {
		return "", &attemptErr{msg: errText(err), final: true}
	}
	if len(t.Refs()) > 0 {
		r.rendered = append(r.rendered, v)
		r.red = nil
	}
	return v.RevealString(), nil
}

// redact removes every value the check resolved or rendered from s, then
// applies Options.Redact.
func (r *checkRun) redact(s string) string {
	if r.red == nil {
		vals := make([]rekey.Value, 0, len(r.values)+len(r.rendered))
		for _, v := range r.values {
			vals = append(vals, v)
		}
		vals = append(vals, r.rendered...)
		r.red = NewRedactor(vals...)
	}
	s = r.red(s)
	if r.o.Redact != nil {
		s = r.o.Redact(s)
	}
	return s
}

// once runs one attempt. On success it returns a note (may be empty).
func (r *checkRun) once(ctx context.Context) (string, *attemptErr) {
	c := r.c
	switch {
	case c.HTTP != nil:
		return r.http(ctx, c.HTTP)
	case c.TCP != nil:
		return r.tcp(ctx, c.TCP)
	case c.Postgres != nil:
		return r.postgres(ctx, c.Postgres)
	case c.SQL != nil:
		return r.sql(ctx, c.SQL)
	case c.DecryptSample != nil:
		return r.decryptSample(ctx, c.DecryptSample)
	case c.Command != nil:
		return r.command(ctx, *c.Command)
	case c.Log != nil:
		return r.log(ctx, c.Log)
	}
	return "", &attemptErr{msg: "check has no type", hint: "give it one of " + strings.Join(rekey.CheckTypes, ", "), final: true}
}
