// Package verify runs the checks that rekey.yaml lists under checks: (see
// rekey.Check) — the runbook's "test the application" step: login still
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
// and body may carry secrets) unless rekey.HTTPCheck.FollowRedirects is
// same-origin: then only redirects to the same scheme, host and port of the
// check's URL are followed (so never from https to http), at most 10.
package verify

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/rekeyhq/rekey"
)

// Resolver returns the current value of a managed secret or derived value.
type Resolver func(name string) (rekey.Value, error)

// Opener returns the function that opens one ciphertext of a decrypt-sample
// check with key, the value of s.Key (s.Codec and s.Encoding say how). The
// returned function reports an error for a value that does not open. The
// codec package supplies it.
type Opener func(s rekey.DecryptSample, key rekey.Value) (func(ciphertext []byte) error, error)

// Postgres logs in to PostgreSQL for the postgres, sql and decrypt-sample
// checks. The postgres adapter implements it (postgres.URLDialer); without
// it those checks fail.
type Postgres interface {
	// Dial parses the connection URL url and returns the function that logs
	// in with it. Its error (url is not a usable connection URL, which no
	// retry can cure) never quotes url.
	Dial(url string) (login func(context.Context) (*pgx.Conn, error), err error)
	// Hint says what to do about an error of login, or "".
	Hint(err error) string
}

// Options configure Run.
type Options struct {
	// Postgres logs in to PostgreSQL (postgres, sql and decrypt-sample
	// checks); without it those checks fail.
	Postgres Postgres
	// Opener opens decrypt-sample values; without it those checks fail.
	Opener Opener
	// Previous holds, by data key name, the older key its rows may still be
	// under while their re-encryption is pending (published as
	// NAME_PREVIOUS, which the application reads too): a decrypt-sample
	// value that opens with it passes, and the result says how many did.
	// Run never wipes them: the caller does.
	Previous map[string]rekey.Value
	// LogStart is when the restart the log checks follow began (zero: now);
	// LogOffsets, the size of each log check's file then: the check reads
	// from there, so a line logged before it started is not missed.
	LogStart   time.Time
	LogOffsets map[string]int64
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
	Hint     string // what to do about a failure (or about a pass that needs more work)
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
