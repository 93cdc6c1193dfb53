package rekey

import (
	"slices"
	"time"
)

// This file holds what rekey.yaml's checks: section declares: the
// verifications run after a rotation and by `rekey verify` (the verify
// adapter runs them; config decodes them).

// Defaults of checks.
const (
	DefaultCheckRetries  = 2
	DefaultCheckBackoff  = time.Second
	DefaultCheckTimeout  = 10 * time.Second
	DefaultCheckDeadline = 60 * time.Second
	DefaultSampleRows    = 10
)

// The check types.
const (
	CheckHTTP          = "http"
	CheckTCP           = "tcp"
	CheckPostgres      = "postgres"
	CheckSQL           = "sql"
	CheckDecryptSample = "decrypt-sample"
	CheckCommand       = "command"
	CheckLog           = "log"
)

// CheckTypes lists the check types.
var CheckTypes = []string{CheckHTTP, CheckTCP, CheckPostgres, CheckSQL, CheckDecryptSample, CheckCommand, CheckLog}

// The defaults of a log check.
const (
	DefaultLogWindow  = 30 * time.Second
	DefaultLogPattern = `panic|FATAL|ERROR`
)

// LogCheck watches a log for Window after the restart it follows and
// fails on the first lines matching Pattern (quoted, redacted). The log is
// a file, read from where it ended when the restart began; a systemd
// unit's journal since then; or the output of a command (docker compose
// logs -f, any), stopped at the end of the window.
type LogCheck struct {
	File    string   // absolute; or
	Unit    string   // a systemd unit, read with journalctl; or
	Command *Command // its output, stdout and stderr
	Window  time.Duration
	Pattern string // RE2
}

// Check is a verification run after a rotation and by `rekey verify`.
// Exactly one of HTTP, TCP, Postgres, SQL, DecryptSample, Command and Log
// is set, as Type says.
type Check struct {
	Name     string
	Type     string
	Retries  int           // attempts after the first
	Backoff  time.Duration // wait before the first retry, doubled after each
	Timeout  time.Duration // each attempt
	Deadline time.Duration // all attempts together
	// Environments the check applies to; empty means every environment.
	Environments []string

	HTTP          *HTTPCheck
	TCP           *TCPCheck
	Postgres      *PostgresCheck
	SQL           *SQLCheck
	DecryptSample *DecryptSample
	Command       *Command // its Timeout is the check's Timeout
	Log           *LogCheck
	// Stdin names the secret a command check reads on its standard input
	// (never in its argv or environment): how a provider's key is tested
	// (a request with it must succeed), and proved dead once replaced.
	Stdin string
	Line  int
}

// In reports whether the check applies to environment env.
func (c Check) In(env string) bool { return inEnvs(c.Environments, env) }

// Refs lists the secrets and derived values the check reads, in order,
// without repeats.
func (c Check) Refs() []string {
	var out []string
	add := func(names ...string) {
		for _, n := range names {
			if n != "" && !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	tmpl := func(t *Template) {
		if t != nil {
			add(t.Refs()...)
		}
	}
	switch {
	case c.HTTP != nil:
		tmpl(c.HTTP.URL)
		for _, h := range c.HTTP.Headers {
			tmpl(h.Value)
		}
		tmpl(c.HTTP.Body)
	case c.TCP != nil:
		tmpl(c.TCP.Address)
	case c.Postgres != nil:
		add(c.Postgres.URL)
	case c.SQL != nil:
		add(c.SQL.URL)
	case c.DecryptSample != nil:
		add(c.DecryptSample.URL, c.DecryptSample.Key)
	case c.Command != nil:
		add(c.Stdin)
	}
	return out
}

// HTTPCheck sends a request and checks the response status and, optionally,
// that a field is present in its JSON body. URL, header values and body are
// templates that may reference secrets and derived values.
type HTTPCheck struct {
	Method    string // default GET
	URL       *Template
	Headers   []Header  // file order
	Body      *Template // nil: no body
	Expect    []int     // accepted statuses; empty means any 2xx
	JSONField string    // dotted path (data.token) that must be present and not null
	// FollowRedirects says which redirects the check follows: none ("",
	// the default: a redirect fails the check) or RedirectsSameOrigin (same
	// scheme, host and port only; never https to http).
	FollowRedirects string
}

// The values of HTTPCheck.FollowRedirects (follow_redirects: in rekey.yaml).
const (
	RedirectsNone       = "none"
	RedirectsSameOrigin = "same-origin"
)

// Header is one HTTP request header.
type Header struct {
	Name  string
	Value *Template
}

// TCPCheck connects to host:port (a template).
type TCPCheck struct {
	Address *Template
}

// PostgresCheck logs in with the connection URL held by the secret or
// derived value URL and runs SELECT 1.
type PostgresCheck struct {
	URL string // name of a secret or derived value holding a postgres:// URL
}

// SQLCheck runs Query (which returns one value) through URL and compares
// the value's text with Expect.
type SQLCheck struct {
	URL    string
	Query  string
	Expect string
}

// DecryptSample reads Rows non-null values of Table.Column through URL and
// opens each with the current value of Key. Codec and Encoding are passed
// to the opener as written.
type DecryptSample struct {
	URL      string
	Table    string // may be schema.table
	Column   string
	Rows     int
	Key      string // a managed secret (a data key)
	Codec    string
	Encoding string
}
