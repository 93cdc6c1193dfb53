package app

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/scan"
	"github.com/rekeyhq/rekey/internal/verify"
)

// RedactionUnavailable replaces output that could not be redacted.
const RedactionUnavailable = "[output hidden: values unavailable to redact it]"

// Redactor hides, in the output rekey shows of the commands it runs
// (service output tails, check messages, hook output, errors), every stored
// version of every secret of the store — every environment, current,
// pending, previous and retired — and the extra values it is given (the
// derived values rendered now), in every encoding `rekey scan` recognises
// (scan.NewMatcher: raw, base64 and base64url at any alignment, hex, URL and
// JSON escapings). Values shorter than scan.MinValueLen are replaced raw,
// URL- and JSON-escaped (verify.NewRedactor).
//
// The store is read the first time something is redacted — most commands
// succeed and show no output — and the values stay in memory only, until
// wipe. When the store cannot be read, every text is hidden whole.
type Redactor struct {
	ctx   context.Context
	st    rekey.Store
	extra []rekey.Value

	once   sync.Once
	mu     sync.RWMutex
	m      *scan.Matcher
	short  func(string) string
	owned  []rekey.Value // read from the store: wiped by wipe
	failed bool
	wiped  bool
}

func NewRedactor(ctx context.Context, st rekey.Store, extra ...rekey.Value) *Redactor {
	return &Redactor{ctx: context.WithoutCancel(ctx), st: st, extra: extra}
}

func (r *Redactor) load() {
	var secrets []scan.Secret
	err := EachVersion(r.ctx, r.st, func(v rekey.Version, val rekey.Value) {
		r.owned = append(r.owned, val)
		secrets = append(secrets, scan.Secret{Env: v.Env, Name: v.Name, Version: v.N, Value: val})
	})
	if err != nil {
		r.failed = true
		return
	}
	for _, v := range r.extra {
		secrets = append(secrets, scan.Secret{Value: v})
	}
	r.m = scan.NewMatcher(secrets)
	var short []rekey.Value
	for _, i := range r.m.Skipped() {
		short = append(short, secrets[i].Value)
	}
	r.short = verify.NewRedactor(short...)
}

// Redact returns text with every value replaced by rekey.Redacted.
func (r *Redactor) Redact(text string) string {
	if text == "" {
		return text
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.wiped {
		return RedactionUnavailable
	}
	r.once.Do(r.load)
	if r.failed {
		return RedactionUnavailable
	}
	return r.short(redactMatches(text, r.m.Scan([]byte(text))))
}

// redactMatches replaces the byte ranges of ms (ordered by offset,
// possibly overlapping) in text with rekey.Redacted; overlapping and
// adjacent ranges are replaced as one.
func redactMatches(text string, ms []scan.Match) string {
	if len(ms) == 0 {
		return text
	}
	var b strings.Builder
	pos := 0
	for i := 0; i < len(ms); {
		start, stop := ms[i].Offset, ms[i].Offset+ms[i].Len
		j := i + 1
		for ; j < len(ms) && ms[j].Offset <= stop; j++ {
			stop = max(stop, ms[j].Offset+ms[j].Len)
		}
		start = max(start, pos)
		b.WriteString(text[pos:start])
		b.WriteString(rekey.Redacted)
		pos, i = stop, j
	}
	b.WriteString(text[pos:])
	return b.String()
}

// Wipe forgets the values; later calls of redact hide their text whole.
func (r *Redactor) Wipe() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.wiped = true
	if r.m != nil {
		r.m.Wipe()
		r.m = nil
	}
	for _, v := range r.owned {
		v.Wipe()
	}
	r.owned = nil
}

// RedactingWriter passes what a child process writes (the command codec's
// stderr) to w a line at a time, redacted; Close writes what is left and
// forgets the values.
type RedactingWriter struct {
	mu  sync.Mutex
	w   io.Writer
	red *Redactor
	buf []byte
}

// RedactedStderr is the stderr for a child that may print a key: rekey's
// own stderr, redacted of every stored version and of extra.
// The values are read now, before the child starts: the child writes from
// another goroutine, possibly while a store transaction is open.
func (s *Session) RedactedStderr(ctx context.Context, st rekey.Store, extra ...rekey.Value) *RedactingWriter {
	red := NewRedactor(ctx, st, extra...)
	red.once.Do(red.load)
	return &RedactingWriter{w: s.stderr(), red: red}
}

// maxPendingLine bounds what waits for a newline: a longer line is
// redacted and written as it is.
const maxPendingLine = 64 << 10

func (r *RedactingWriter) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf = append(r.buf, p...)
	for {
		i := bytes.IndexByte(r.buf, '\n')
		if i < 0 {
			break
		}
		io.WriteString(r.w, r.red.Redact(string(r.buf[:i+1])))
		r.buf = r.buf[i+1:]
	}
	if len(r.buf) > maxPendingLine {
		io.WriteString(r.w, r.red.Redact(string(r.buf)))
		r.buf = nil
	}
	return len(p), nil
}

// Close writes the last partial line, redacted, and wipes the values.
func (r *RedactingWriter) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.buf) > 0 {
		io.WriteString(r.w, r.red.Redact(string(r.buf)))
		r.buf = nil
	}
	r.red.Wipe()
	return nil
}
