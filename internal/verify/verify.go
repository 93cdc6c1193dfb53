// Package verify runs the checks that rekey.yaml lists under checks: (see
// config.Check) — the runbook's "test the application" step: login still
// works, the database accepts the credentials, PII still decrypts.
//
// Each check is retried (Retries attempts after the first, waiting Backoff
// before the first retry and twice as long before each next one) within
// its Deadline; each attempt has its own Timeout. Checks run concurrently;
// Run returns their results in the order given.
//
// Secret hygiene: templates are rendered in memory only. A Result never
// holds a value: messages name the template's text (with its {{ NAME }}
// references, not the values), never print a response body, and every
// error text is passed through a redactor that removes each value the
// check resolved (raw and in its URL and JSON forms) and whatever
// Options.Redact removes. An http check follows no redirect (its headers
// and body may carry secrets) unless config.HTTPCheck.FollowRedirects is
// same-origin: then only redirects to the same scheme, host and port of the
// check's URL are followed (so never from https to http), at most 10.
package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/internal/postgres"
	"github.com/rekeyhq/rekey/internal/services"
)

// Resolver returns the current value of a managed secret or derived value.
type Resolver func(name string) (rekey.Value, error)

// Opener returns the function that opens one ciphertext of a decrypt-sample
// check with key, the value of s.Key (s.Codec and s.Encoding say how). The
// returned function reports an error for a value that does not open. The
// codec package supplies it.
type Opener func(s config.DecryptSample, key rekey.Value) (func(ciphertext []byte) error, error)

// Options configure Run.
type Options struct {
	// Opener opens decrypt-sample values; without it those checks fail.
	Opener Opener
	// Dir and Env are the working directory (the project folder) and the
	// environment (nil: rekey's own) of command checks.
	Dir string
	Env []string
	// Redact removes secrets from text, in addition to the values each
	// check resolves (for command output, which may print anything).
	Redact func(string) string
	// HTTPClient sends the http checks' requests (nil: a client without
	// keep-alives, so that each attempt opens a new connection).
	HTTPClient *http.Client
	// OnResult, when set, is called with each result in the order of the
	// checks, as soon as it and the ones before it are known.
	OnResult func(Result)
}

// Result is the outcome of one check. It never holds a secret value.
type Result struct {
	Name     string
	Type     string
	OK       bool
	Attempts int
	Duration time.Duration
	Message  string // what the last attempt found, or a note on success
	Hint     string // what to do about a failure
}

// MarshalJSON writes {name, type, ok, attempts, duration_ms, message, hint}.
func (r Result) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Name       string `json:"name"`
		Type       string `json:"type"`
		OK         bool   `json:"ok"`
		Attempts   int    `json:"attempts"`
		DurationMS int64  `json:"duration_ms"`
		Message    string `json:"message,omitempty"`
		Hint       string `json:"hint,omitempty"`
	}{r.Name, r.Type, r.OK, r.Attempts, r.Duration.Milliseconds(), r.Message, r.Hint})
}

// Failed returns the results that did not pass.
func Failed(rs []Result) []Result {
	var out []Result
	for _, r := range rs {
		if !r.OK {
			out = append(out, r)
		}
	}
	return out
}

// Error returns nil when every result passed, else an error (code
// CodeVerifyFailed) naming the failed checks, with the first one's hint.
func Error(rs []Result) error {
	f := Failed(rs)
	if len(f) == 0 {
		return nil
	}
	names := make([]string, len(f))
	for i, r := range f {
		names[i] = r.Name
	}
	e := rekey.Errorf(rekey.CodeVerifyFailed, "%d of %d checks failed: %s", len(f), len(rs), strings.Join(names, ", "))
	e.Hint = f[0].Name + ": " + f[0].Message
	if f[0].Hint != "" {
		e.Hint += "; " + f[0].Hint
	}
	return e
}

// maxBackoff caps the wait between attempts.
const maxBackoff = 30 * time.Second

// maxBody is how much of an HTTP response is read.
const maxBody = 1 << 20

// Run runs the checks concurrently and returns one Result per check, in
// the order given.
func Run(ctx context.Context, checks []config.Check, resolve Resolver, o Options) []Result {
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
func RunOne(ctx context.Context, c config.Check, resolve Resolver, o Options) Result {
	start := time.Now()
	r := Result{Name: c.Name, Type: c.Type}
	deadline := c.Deadline
	if deadline <= 0 {
		deadline = config.DefaultCheckDeadline
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
				last.msg += fmt.Sprintf(" (deadline %s reached)", config.FormatDuration(deadline))
				break
			}
			if wait <= 0 {
				wait = config.DefaultCheckBackoff
			}
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				last.msg += fmt.Sprintf(" (deadline %s reached)", config.FormatDuration(deadline))
			}
			if ctx.Err() != nil {
				break
			}
			wait = min(2*wait, maxBackoff)
		}
	}
	r.Duration = time.Since(start)
	if last == nil {
		r.OK, r.Message = true, note
		return r
	}
	r.Message = run.redact(last.msg)
	r.Hint = run.redact(last.hint)
	return r
}

// checkRun holds what one check resolved.
type checkRun struct {
	c      config.Check
	o      Options
	values map[string]rekey.Value
	// rendered holds the templates rendered with values (to redact too).
	rendered []rekey.Value
	red      func(string) string
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
	}
	return "", &attemptErr{msg: "check has no type", hint: "give it one of " + strings.Join(config.CheckTypes, ", "), final: true}
}

const restartHint = "is the service running? see `rekey services status`"

func (r *checkRun) http(ctx context.Context, h *config.HTTPCheck) (string, *attemptErr) {
	what := h.Method + " " + h.URL.Source()
	u, err := r.render(h.URL)
	if err != nil {
		return "", err
	}
	var body io.Reader
	if h.Body != nil {
		b, err := r.render(h.Body)
		if err != nil {
			return "", err
		}
		body = strings.NewReader(b)
	}
	req, rerr := http.NewRequestWithContext(ctx, h.Method, u, body)
	if rerr != nil {
		// url.Error quotes the URL: only its cause is shown.
		var ue *url.Error
		if errors.As(rerr, &ue) {
			rerr = ue.Err
		}
		return "", &attemptErr{msg: what + ": invalid request: " + rerr.Error(), hint: "fix url in the check", final: true}
	}
	for _, hd := range h.Headers {
		v, err := r.render(hd.Value)
		if err != nil {
			return "", err
		}
		if strings.EqualFold(hd.Name, "Host") {
			req.Host = v
		} else {
			req.Header.Set(hd.Name, v)
		}
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", "rekey-verify")
	}
	client := r.o.HTTPClient
	if client == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.DisableKeepAlives = true
		client = &http.Client{Transport: tr}
		defer tr.CloseIdleConnections()
	}
	// The request carries secrets (headers, body, url): a redirect is
	// followed only when the check allows it and only within the origin.
	var refused *redirect
	c := *client
	c.CheckRedirect = func(next *http.Request, via []*http.Request) error {
		if h.FollowRedirects == config.RedirectsSameOrigin && len(via) < maxRedirects && sameOrigin(via[0].URL, next.URL) {
			return nil
		}
		refused = &redirect{from: via[len(via)-1].URL, to: next.URL, allowed: h.FollowRedirects == config.RedirectsSameOrigin, many: len(via) >= maxRedirects}
		return http.ErrUseLastResponse
	}
	resp, derr := c.Do(req)
	if derr != nil {
		var ue *url.Error
		if errors.As(derr, &ue) {
			derr = ue.Err
		}
		hint := restartHint
		if isTimeout(ctx, derr) {
			return "", fail("the service did not answer in time: raise timeout, or check that it is not stuck", "%s: no answer within %s", what, config.FormatDuration(r.c.Timeout))
		}
		return "", fail(hint, "%s: %s", what, derr.Error())
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	okStatus := resp.StatusCode >= 200 && resp.StatusCode <= 299
	want := "2xx"
	if len(h.Expect) > 0 {
		okStatus = slices.Contains(h.Expect, resp.StatusCode)
		ws := make([]string, len(h.Expect))
		for i, s := range h.Expect {
			ws[i] = strconv.Itoa(s)
		}
		want = strings.Join(ws, " or ")
	}
	if refused != nil && !(len(h.Expect) > 0 && okStatus) {
		return "", refused.fail(what, resp.StatusCode)
	}
	if !okStatus {
		hint := "check the service's logs"
		switch {
		case resp.StatusCode == 401 || resp.StatusCode == 403:
			hint = "the application rejects the credentials: did it restart with the new secrets? (`rekey services restart`)"
		case resp.StatusCode >= 500:
			hint = "the application fails: check its logs (a service that did not restart may still use the old secrets)"
		case resp.StatusCode == 404 || resp.StatusCode == 405:
			hint = "check the check's method and url"
		}
		return "", fail(hint, "%s: status %d, want %s", what, resp.StatusCode, want)
	}
	if h.JSONField == "" {
		return fmt.Sprintf("status %d", resp.StatusCode), nil
	}
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		return "", fail("the endpoint answered "+strconv.Itoa(resp.StatusCode)+" without a JSON body: check the url and method", "%s: the response is not JSON", what)
	}
	if !hasField(doc, h.JSONField) {
		return "", fail("check the endpoint and the test account (a login that fails may answer 200 with an error body)", "%s: the response has no field %s", what, h.JSONField)
	}
	return fmt.Sprintf("status %d, %s present", resp.StatusCode, h.JSONField), nil
}

// maxRedirects bounds the redirects a same-origin check follows.
const maxRedirects = 10

// redirect is one a check did not follow.
type redirect struct {
	from, to *url.URL
	allowed  bool // follow_redirects: same-origin, and to was not
	many     bool // too many redirects within the origin
}

// fail says which redirect was refused, naming its target's host (never
// its path or query, which may carry anything).
func (rd *redirect) fail(what string, status int) *attemptErr {
	to := rd.to.Scheme + "://" + rd.to.Host
	switch {
	case rd.many:
		return &attemptErr{msg: fmt.Sprintf("%s: more than %d redirects (last to %s)", what, maxRedirects, to), hint: "point url at the final address", final: true}
	case rd.allowed && strings.EqualFold(rd.from.Scheme, "https") && strings.EqualFold(rd.to.Scheme, "http"):
		return &attemptErr{msg: fmt.Sprintf("%s: redirect (status %d) from https to %s refused: it would send the check's secrets unencrypted", what, status, to),
			hint: "point url at the final address", final: true}
	case rd.allowed:
		return &attemptErr{msg: fmt.Sprintf("%s: redirect (status %d) to another origin, %s, refused: it would send the check's secrets there", what, status, to),
			hint: "follow_redirects: same-origin follows redirects to the same scheme, host and port only; point url at the final address", final: true}
	}
	return &attemptErr{msg: fmt.Sprintf("%s: redirect (status %d) to %s not followed: it would send the check's secrets there", what, status, to),
		hint: "point url at the final address, or add follow_redirects: same-origin to the check's http: to follow redirects within the same scheme, host and port", final: true}
}

// sameOrigin reports whether a and b have the same scheme, host and port
// (the scheme's default port when none is given).
func sameOrigin(a, b *url.URL) bool {
	port := func(u *url.URL) string {
		if p := u.Port(); p != "" {
			return p
		}
		if strings.EqualFold(u.Scheme, "https") {
			return "443"
		}
		return "80"
	}
	return strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Hostname(), b.Hostname()) && port(a) == port(b)
}

// hasField reports whether the dotted path is present in doc and not null.
func hasField(doc any, path string) bool {
	for _, k := range strings.Split(path, ".") {
		switch d := doc.(type) {
		case map[string]any:
			v, ok := d[k]
			if !ok {
				return false
			}
			doc = v
		case []any:
			i, err := strconv.Atoi(k)
			if err != nil || i < 0 || i >= len(d) {
				return false
			}
			doc = d[i]
		default:
			return false
		}
	}
	return doc != nil
}

func isTimeout(ctx context.Context, err error) bool {
	var ne net.Error
	return ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

func (r *checkRun) tcp(ctx context.Context, t *config.TCPCheck) (string, *attemptErr) {
	what := "connect to " + t.Address.Source()
	addr, err := r.render(t.Address)
	if err != nil {
		return "", err
	}
	var d net.Dialer
	conn, derr := d.DialContext(ctx, "tcp", addr)
	if derr != nil {
		switch {
		case errors.Is(derr, syscall.ECONNREFUSED):
			return "", fail("nothing listens there: "+restartHint, "%s: connection refused", what)
		case isTimeout(ctx, derr):
			return "", fail("check the address, and that a firewall does not drop the connection", "%s: no answer within %s", what, config.FormatDuration(r.c.Timeout))
		}
		var oe *net.OpError
		if errors.As(derr, &oe) && oe.Err != nil {
			derr = oe.Err
		}
		return "", fail("check the address", "%s: %s", what, derr.Error())
	}
	conn.Close()
	return "connected", nil
}

// connect logs in with the URL held by name.
func (r *checkRun) connect(ctx context.Context, name string) (*pgx.Conn, *attemptErr) {
	v := r.values[name]
	p, err := postgres.ParseURL(v.RevealString())
	if err != nil {
		// ParseURL errors never quote the URL.
		return nil, &attemptErr{msg: name + " is not a usable connection URL: " + err.Error(), hint: "it must be a postgres:// URL", final: true}
	}
	conn, err := postgres.Connect(ctx, p)
	if err != nil {
		hint := postgres.Hint(err)
		if hint == "" {
			hint = "check " + name
		}
		return nil, fail(hint, "log in with %s: %s", name, err.Error())
	}
	return conn, nil
}

func (r *checkRun) postgres(ctx context.Context, p *config.PostgresCheck) (string, *attemptErr) {
	conn, err := r.connect(ctx, p.URL)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	var one int
	if qerr := conn.QueryRow(ctx, "SELECT 1").Scan(&one); qerr != nil {
		return "", fail("check the server's log", "SELECT 1 with %s: %s", p.URL, pgErrText(qerr))
	}
	return "logged in with " + p.URL, nil
}

// pgErrText describes a query error without framing that could quote SQL.
func pgErrText(err error) string {
	var pe interface{ SQLState() string }
	if errors.As(err, &pe) {
		return err.Error()
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return "timeout"
	}
	return err.Error()
}

// readOnly runs fn in a read-only transaction that is rolled back.
func readOnly(ctx context.Context, conn *pgx.Conn, fn func(pgx.Tx) error) error {
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	return fn(tx)
}

func (r *checkRun) sql(ctx context.Context, s *config.SQLCheck) (string, *attemptErr) {
	conn, err := r.connect(ctx, s.URL)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	var got string
	var rowsN, cols int
	qerr := readOnly(ctx, conn, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, s.Query)
		if err != nil {
			return err
		}
		defer rows.Close()
		cols = len(rows.FieldDescriptions())
		for rows.Next() {
			rowsN++
			if rowsN > 1 {
				continue
			}
			raw := rows.RawValues()
			vals, err := rows.Values()
			if err != nil {
				return err
			}
			if len(raw) == 0 {
				continue
			}
			switch {
			case raw[0] == nil:
				got = "NULL"
			case s.Expect != string(raw[0]) && fmt.Sprint(vals[0]) == s.Expect:
				got = s.Expect // true for t, and other Go forms
			default:
				got = string(raw[0])
			}
		}
		return rows.Err()
	})
	if qerr != nil {
		return "", fail("run the query by hand (it runs read-only)", "query with %s failed: %s", s.URL, pgErrText(qerr))
	}
	switch {
	case cols != 1:
		return "", &attemptErr{msg: fmt.Sprintf("the query returns %d columns, want one", cols), hint: "select one value, e.g. SELECT count(*) FROM users", final: true}
	case rowsN != 1:
		return "", fail("select one value, e.g. SELECT count(*) FROM users", "the query returned %d rows, want one", rowsN)
	case got != s.Expect && !(got == "NULL" && strings.EqualFold(s.Expect, "null")):
		shown := "another value"
		if len(got) <= 40 {
			shown = strconv.Quote(got)
		}
		return "", fail("check the data, or expect in the check", "the query returned %s, want %s", shown, strconv.Quote(s.Expect))
	}
	return "returned " + strconv.Quote(s.Expect), nil
}

func (r *checkRun) decryptSample(ctx context.Context, s *config.DecryptSample) (string, *attemptErr) {
	if r.o.Opener == nil {
		return "", &attemptErr{msg: "no codec to open values with", hint: "this rekey cannot open " + orDefault(s.Codec, "these") + " values", final: true}
	}
	open, oerr := r.o.Opener(*s, r.values[s.Key])
	if oerr != nil {
		return "", &attemptErr{msg: "cannot use " + s.Key + ": " + errText(oerr), hint: "check key, codec and encoding in the check", final: true}
	}
	conn, err := r.connect(ctx, s.URL)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	var tbl pgx.Identifier = strings.Split(s.Table, ".")
	q := "SELECT " + pgx.Identifier{s.Column}.Sanitize() + " FROM " + tbl.Sanitize() +
		" WHERE " + pgx.Identifier{s.Column}.Sanitize() + " IS NOT NULL LIMIT " + strconv.Itoa(s.Rows)
	var n, bad int
	var firstErr string
	qerr := readOnly(ctx, conn, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, q)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var ct []byte
			if err := rows.Scan(&ct); err != nil {
				return err
			}
			n++
			if err := open(bytes.Clone(ct)); err != nil {
				bad++
				if firstErr == "" {
					firstErr = errText(err)
				}
			}
		}
		return rows.Err()
	})
	if qerr != nil {
		return "", fail("check column (table.column) and that the role may read it", "read %s.%s with %s: %s", s.Table, s.Column, s.URL, pgErrText(qerr))
	}
	if n == 0 {
		return "no values to sample", nil
	}
	if bad > 0 {
		return "", fail("values written under another key remain: finish the re-encryption before retiring the previous key, or check codec and encoding",
			"%d of %d sampled values of %s.%s do not open with the current %s (%s)", bad, n, s.Table, s.Column, s.Key, firstErr)
	}
	return fmt.Sprintf("%d sampled values open", n), nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (r *checkRun) command(ctx context.Context, c config.Command) (string, *attemptErr) {
	res := services.Run(ctx, r.c.Name, "check", c, services.Options{Dir: r.o.Dir, Env: r.o.Env, Redact: r.redact, TailLines: 1, KillGrace: 2 * time.Second})
	if res.OK {
		return "exit status 0", nil
	}
	msg := c.String() + ": " + res.Err
	if len(res.Tail) > 0 {
		msg += ": " + res.Tail[len(res.Tail)-1]
	}
	return "", fail("run it by hand to see its output", "%s", msg)
}

// NewRedactor returns a function that replaces each value (of 4 bytes or
// more), and its URL-encoded and JSON-escaped forms, with [REDACTED].
func NewRedactor(values ...rekey.Value) func(string) string {
	var needles []string
	seen := map[string]bool{}
	add := func(s string) {
		if len(s) >= 4 && !seen[s] {
			seen[s] = true
			needles = append(needles, s)
		}
	}
	for _, v := range values {
		s := v.RevealString()
		add(s)
		add(url.QueryEscape(s))
		add(strings.ReplaceAll(url.QueryEscape(s), "+", "%20"))
		add(url.PathEscape(s))
		if j, err := json.Marshal(s); err == nil {
			add(string(j[1 : len(j)-1]))
		}
	}
	// Longest first, so that a value containing another goes whole.
	slices.SortFunc(needles, func(a, b string) int { return len(b) - len(a) })
	return func(text string) string {
		for _, n := range needles {
			text = strings.ReplaceAll(text, n, rekey.Redacted)
		}
		return text
	}
}
