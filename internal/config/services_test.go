package config

import (
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/rekeyhq/rekey"
)

// cmpTemplates compares templates by their text.
var cmpTemplates = cmp.Comparer(func(a, b *rekey.Template) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Source() == b.Source()
})

func TestServicesAndChecks(t *testing.T) {
	c := mustLoad(t, "testdata/services.yaml")
	argv := func(a ...string) rekey.Command { return rekey.Command{Argv: a, Timeout: rekey.DefaultServiceTimeout} }
	status := func(a ...string) rekey.Command { return rekey.Command{Argv: a, Timeout: rekey.DefaultStatusTimeout} }
	composeStatus := status("sh", "-c", `test -n "$(docker compose "$@")"`, "sh", "-f", "deploy/compose.yml", "ps", "--status", "running", "--quiet", "web")
	wantServices := []rekey.Service{
		{
			Name:     "api",
			Restart:  argv("systemctl", "restart", "atlas-api"),
			Start:    argv("systemctl", "start", "atlas-api"),
			Stop:     argv("systemctl", "stop", "atlas-api"),
			Status:   status("systemctl", "is-active", "--quiet", "atlas-api"),
			Consumes: []string{"JWT_SECRET", "ENCRYPTION_KEY", "DATABASE_URL"},
			Line:     25,
		},
		{
			Name:        "web",
			Restart:     argv("docker", "compose", "-f", "deploy/compose.yml", "up", "-d", "--no-deps", "--force-recreate", "web"),
			Start:       argv("docker", "compose", "-f", "deploy/compose.yml", "up", "-d", "--no-deps", "web"),
			Stop:        argv("docker", "compose", "-f", "deploy/compose.yml", "stop", "web"),
			Status:      composeStatus,
			ConsumesAll: true,
			Order:       2,
			Line:        28,
		},
		{
			Name:         "worker",
			Restart:      rekey.Command{Argv: []string{"./bin/worker", "restart"}, Timeout: 90 * time.Second},
			Status:       rekey.Command{Shell: "pgrep -f bin/worker >/dev/null", Timeout: rekey.DefaultStatusTimeout},
			Consumes:     []string{"DATABASE_URL"},
			Order:        -1,
			Environments: []string{"production"},
			Line:         32,
		},
		{
			Name:         "legacy",
			Stop:         rekey.Command{Argv: []string{"./bin/legacy", "stop"}, Timeout: 2 * time.Minute},
			Start:        rekey.Command{Shell: "./bin/legacy start", Timeout: rekey.DefaultServiceTimeout},
			Consumes:     []string{"JWT_SECRET"},
			Environments: []string{"staging"},
			Line:         39,
		},
	}
	if d := cmp.Diff(wantServices, c.Services); d != "" {
		t.Errorf("Services (-want +got):\n%s", d)
	}
	def := func(k rekey.Check) rekey.Check {
		k.Retries, k.Backoff, k.Timeout, k.Deadline = rekey.DefaultCheckRetries, rekey.DefaultCheckBackoff, rekey.DefaultCheckTimeout, rekey.DefaultCheckDeadline
		return k
	}
	login := def(rekey.Check{Name: "login", Type: rekey.CheckHTTP, Line: 47, HTTP: &rekey.HTTPCheck{
		Method: "POST", URL: rekey.MustParseTemplate("http://localhost:8080/api/login"),
		Headers: []rekey.Header{{Name: "Content-Type", Value: rekey.MustParseTemplate("application/json")}, {Name: "X-Smoke", Value: rekey.MustParseTemplate("{{ SMOKE_PASSWORD }}")}},
		Body:    rekey.MustParseTemplate(`{"email": "smoke@example.com", "password": "{{ SMOKE_PASSWORD | json }}"}`),
		Expect:  []int{200}, JSONField: "data.token",
	}})
	login.Retries, login.Backoff, login.Deadline = 5, 500*time.Millisecond, 30*time.Second
	pii := def(rekey.Check{Name: "pii", Type: rekey.CheckDecryptSample, Line: 65, DecryptSample: &rekey.DecryptSample{
		URL: "DATABASE_URL", Table: "public.patients", Column: "email", Rows: 5, Key: "ENCRYPTION_KEY", Codec: "aes-256-gcm", Encoding: "base64",
	}})
	pii.Timeout = 20 * time.Second
	smoke := def(rekey.Check{Name: "smoke", Type: rekey.CheckCommand, Line: 68, Command: &rekey.Command{Argv: []string{"./scripts/smoke-test", "--quick"}, Timeout: rekey.DefaultCheckTimeout}})
	smoke.Retries = 0
	wantChecks := []rekey.Check{
		def(rekey.Check{Name: "health", Type: rekey.CheckHTTP, Line: 45, HTTP: &rekey.HTTPCheck{Method: "GET", URL: rekey.MustParseTemplate("http://localhost:8080/health")}}),
		login,
		def(rekey.Check{Name: "db-port", Type: rekey.CheckTCP, Line: 58, TCP: &rekey.TCPCheck{Address: rekey.MustParseTemplate("localhost:5432")}, Environments: []string{"production"}}),
		def(rekey.Check{Name: "db", Type: rekey.CheckPostgres, Line: 61, Postgres: &rekey.PostgresCheck{URL: "DATABASE_URL"}}),
		def(rekey.Check{Name: "patients", Type: rekey.CheckSQL, Line: 63, SQL: &rekey.SQLCheck{URL: "DATABASE_URL", Query: "SELECT count(*) FROM patients", Expect: "20"}}),
		pii,
		smoke,
	}
	if d := cmp.Diff(wantChecks, c.Checks, cmpTemplates); d != "" {
		t.Errorf("Checks (-want +got):\n%s", d)
	}

	// Per environment, in restart order.
	var names []string
	for _, s := range c.ServicesFor("production") {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, ","); got != "worker,api,web" {
		t.Errorf("ServicesFor(production) = %s, want worker,api,web", got)
	}
	names = nil
	for _, s := range c.ServicesFor("staging") {
		names = append(names, s.Name)
	}
	if got := strings.Join(names, ","); got != "api,legacy,web" {
		t.Errorf("ServicesFor(staging) = %s, want api,legacy,web", got)
	}
	if n := len(c.ChecksFor("staging")); n != 6 {
		t.Errorf("ChecksFor(staging) has %d checks, want 6 (not db-port)", n)
	}
	if got := strings.Join(login.Refs(), ","); got != "SMOKE_PASSWORD" {
		t.Errorf("login.Refs() = %s", got)
	}
	if got := strings.Join(pii.Refs(), ","); got != "DATABASE_URL,ENCRYPTION_KEY" {
		t.Errorf("pii.Refs() = %s", got)
	}
	if got := strings.Join(wantServices[3].Start.Args(), "|"); got != "sh|-c|./bin/legacy start" {
		t.Errorf("Args of a shell command = %s", got)
	}
}

// TestServicesMarshal checks that what servicesAndChecks writes reads back
// as the same services and checks.
func TestServicesMarshal(t *testing.T) {
	c := mustLoad(t, "testdata/services.yaml")
	base, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	root := newMap()
	(&marshaler{dir: c.Dir}).servicesAndChecks(c, root)
	extra, err := yaml.Marshal(root.Node)
	if err != nil {
		t.Fatal(err)
	}
	text := string(base)
	if !strings.Contains(text, "\nservices:") {
		text += string(extra) // until Marshal writes them itself
	}
	c2, err := Parse(c.Path, []byte(text))
	if err != nil {
		t.Fatalf("re-parse: %v\n%s", err, text)
	}
	if d := cmp.Diff(c.Services, c2.Services, cmpIgnoreLine()); d != "" {
		t.Errorf("services round trip (-first +second):\n%s", d)
	}
	if d := cmp.Diff(c.Checks, c2.Checks, cmpIgnoreLine(), cmpTemplates); d != "" {
		t.Errorf("checks round trip (-first +second):\n%s", d)
	}
}

// svcHead is a valid file (lines 1-16) that the error cases continue.
const svcHead = head + `secrets:
` + gen + `  DB_PASSWORD:
    kind: postgres-password
    generator: {}
    postgres: {url_from: DATABASE_URL}
  ENCRYPTION_KEY:
    kind: data-key
    generator: {}
derived:
  DATABASE_URL: "postgres://app:{{ DB_PASSWORD | urlquery }}@db/app"
`

var serviceErrorCases = []struct {
	name, yaml, msg, hint string
}{
	// services.
	{"services as text", "services: api # <-\n", "services must be a mapping of names, not text", "NAME:"},
	{"service unknown key", "services:\n  api:\n    restart: [x]\n    consumes: all\n    restrat: [y] # <-\n", `unknown key "restrat" in service api`, "did you mean restart?"},
	{"service bad name", "services:\n  'my api': # <-\n    restart: [x]\n    consumes: all\n", `invalid service name "my api"`, "letters, digits"},
	{"service without restart", "services:\n  api: # <-\n    status: [x]\n    consumes: all\n", "service api has no restart command", "systemd: UNIT"},
	{"service with start only", "services:\n  api: # <-\n    start: [x]\n    consumes: all\n", "service api has no restart command", "start and stop"},
	{"service without consumes", "services:\n  api: # <-\n    restart: [x]\n", "service api does not say what it consumes", "consumes: all"},
	{"consumes undefined", "services:\n  api:\n    restart: [x]\n    consumes: [JWT_SECRET, DATABASE_ULR] # <-\n", `consumes of service api references "DATABASE_ULR", which is not a secret or derived value`, "did you mean DATABASE_URL?"},
	{"consumes as text", "services:\n  api:\n    restart: [x]\n    consumes: JWT_SECRET # <-\n", "consumes of service api must be a list, not text", "[JWT_SECRET, DATABASE_URL]"},
	{"restart empty list", "services:\n  api:\n    restart: [] # <-\n    consumes: all\n", "restart of service api is an empty list", "[systemctl, restart, api]"},
	{"restart as mapping without run", "services:\n  api:\n    restart: {timeout: 5s} # <-\n    consumes: all\n", "restart of service api has no run", "add run:"},
	{"restart nested list", "services:\n  api:\n    restart: [[a]] # <-\n    consumes: all\n", "arguments of restart of service api must be text, not a list", "as text"},
	{"restart with a template", "services:\n  api:\n    restart: [curl, \"{{ JWT_SECRET }}\"] # <-\n    consumes: all\n", "commands cannot reference secrets", "never puts a secret in a command line"},
	{"bad timeout", "services:\n  api:\n    restart: [x]\n    timeout: 5 minutes # <-\n    consumes: all\n", `timeout of service api: bad duration "5 minutes"`, "use 90d"},
	{"bad command timeout", "services:\n  api:\n    restart: {run: [x], timeout: -5s} # <-\n    consumes: all\n", "timeout of restart of service api", "use 90d"},
	{"order as text", "services:\n  api:\n    restart: [x]\n    order: first # <-\n    consumes: all\n", "order of service api must be a whole number, not text", "order: 1"},
	{"unknown environment", "services:\n  api:\n    restart: [x]\n    consumes: all\n    environments: [prd] # <-\n", `environments of service api: "prd" is not defined`, "did you mean prod?"},
	{"systemd and compose", "services:\n  api:\n    systemd: api\n    compose: {service: api} # <-\n    consumes: all\n", "service api has both systemd and compose", "either"},
	{"systemd option injection", "services:\n  api:\n    systemd: --force # <-\n    consumes: all\n", "systemd unit of service api must be a name", "atlas-api.service"},
	{"compose without service", "services:\n  api:\n    compose: {file: c.yml} # <-\n    consumes: all\n", "compose of service api has no service", "add service: NAME"},
	{"compose unknown key", "services:\n  api:\n    compose: {servce: api} # <-\n    consumes: all\n", `unknown key "servce" in compose of service api`, "did you mean service?"},

	// checks.
	{"checks as list", "checks: [a] # <-\n", "checks must be a mapping of names, not a list", "NAME:"},
	{"check without type", "checks:\n  db: # <-\n    retries: 3\n", "check db has no type", "http, tcp, postgres, sql, decrypt-sample, command"},
	{"check with two types", "checks:\n  db:\n    tcp: {address: 'db:5432'}\n    postgres: {url: DATABASE_URL} # <-\n", "check db has both tcp and postgres", "one type"},
	{"check key misplaced", "checks:\n  h:\n    url: http://x/ # <-\n", `unknown key "url" in check h`, "belongs under the check's type"},
	{"check unknown type", "checks:\n  h:\n    htp: {url: http://x/} # <-\n", `unknown key "htp" in check h`, "did you mean http?"},
	{"retries negative", "checks:\n  h:\n    http: {url: http://x/}\n    retries: -1 # <-\n", "retries of check h must be between 0 and 100", "attempts after the first"},
	{"retries as text", "checks:\n  h:\n    http: {url: http://x/}\n    retries: many # <-\n", "retries of check h must be a whole number, not text", "retries: 3"},
	{"bad backoff", "checks:\n  h:\n    http: {url: http://x/}\n    backoff: 1 second # <-\n", `backoff of check h: bad duration "1 second"`, "use 90d"},
	{"bad deadline", "checks:\n  h:\n    http: {url: http://x/}\n    deadline: 0s # <-\n", "deadline of check h", "use 90d"},
	{"timeout over deadline", "checks:\n  h:\n    http: {url: http://x/}\n    timeout: 1m # <-\n    deadline: 10s\n", "timeout of check h is longer than its deadline", "at least the timeout"},
	{"http without url", "checks:\n  h:\n    http: {method: GET} # <-\n", "http of check h has no url", "add url:"},
	{"http url not http", "checks:\n  h:\n    http: {url: localhost:8080} # <-\n", "url of check h must start with http:// or https://", "full URL"},
	{"http url undefined secret", "checks:\n  h:\n    http: {url: \"http://x/?t={{ JWT_SECRT }}\"} # <-\n", `url of check h references "JWT_SECRT", which is not a secret or derived value`, "did you mean JWT_SECRET?"},
	{"http url malformed template", "checks:\n  h:\n    http: {url: \"http://x/{{ JWT_SECRET\"} # <-\n", "url of check h: malformed {{ }} reference", "{{ NAME }}"},
	{"http bad filter", "checks:\n  h:\n    http:\n      url: http://x/\n      body: \"{{ JWT_SECRET | upper }}\" # <-\n", `body of check h: unknown filter "upper"`, "filters: urlquery"},
	{"http header undefined", "checks:\n  h:\n    http:\n      url: http://x/\n      headers: {Authorization: \"Bearer {{ TOKEN }}\"} # <-\n", `header Authorization of check h references "TOKEN"`, "name a secret"},
	{"http headers as list", "checks:\n  h:\n    http:\n      url: http://x/\n      headers: [a] # <-\n", "headers of check h must be a mapping of names, not a list", "NAME:"},
	{"http bad method", "checks:\n  h:\n    http: {url: http://x/, method: \"GET /\"} # <-\n", "method of check h is not an HTTP method", "GET, POST"},
	{"http bad status", "checks:\n  h:\n    http: {url: http://x/, expect: 700} # <-\n", "expect of check h: 700 is not an HTTP status", "100 to 599"},
	{"http status as text", "checks:\n  h:\n    http: {url: http://x/, expect: ok} # <-\n", "expect of check h must be a whole number, not text", "expect: 200"},
	{"http bad json_field", "checks:\n  h:\n    http: {url: http://x/, json_field: a..b} # <-\n", "json_field of check h is not a field path", "data.token"},
	{"tcp without address", "checks:\n  t:\n    tcp: {} # <-\n", "tcp of check t has no address", "localhost:5432"},
	{"tcp bad address", "checks:\n  t:\n    tcp: {address: localhost} # <-\n", "address of check t is not host:port", "host:port"},
	{"postgres without url", "checks:\n  p:\n    postgres: {} # <-\n", "postgres of check p has no url", "url: DATABASE_URL"},
	{"postgres url undefined", "checks:\n  p:\n    postgres: {url: DATABASE_URI} # <-\n", `url of check p references "DATABASE_URI"`, "did you mean DATABASE_URL?"},
	{"postgres url is a URL", "checks:\n  p:\n    postgres: {url: \"postgres://app:hunter2@db/app\"} # <-\n", "must be the name of a secret or derived value", "url: DATABASE_URL"},
	{"sql without query", "checks:\n  s:\n    sql: {url: DATABASE_URL, expect: \"1\"} # <-\n", "sql of check s has no query", "add query:"},
	{"sql without expect", "checks:\n  s:\n    sql: {url: DATABASE_URL, query: SELECT 1} # <-\n", "sql of check s has no expect", "add expect:"},
	{"sql expect as list", "checks:\n  s:\n    sql: {url: DATABASE_URL, query: SELECT 1, expect: [1]} # <-\n", "expect of check s must be a value, not a list", `expect: "1"`},
	{"sample without column", "checks:\n  d:\n    decrypt-sample: {url: DATABASE_URL, key: ENCRYPTION_KEY} # <-\n", "decrypt-sample of check d has no column", "TABLE.COLUMN"},
	{"sample bad column", "checks:\n  d:\n    decrypt-sample: {url: DATABASE_URL, key: ENCRYPTION_KEY, column: email} # <-\n", "column of check d is not table.column", "patients.email"},
	{"sample without key", "checks:\n  d:\n    decrypt-sample: {url: DATABASE_URL, column: p.email} # <-\n", "decrypt-sample of check d has no key", "key: ENCRYPTION_KEY"},
	{"sample key is derived", "checks:\n  d:\n    decrypt-sample: {url: DATABASE_URL, column: p.email, key: DATABASE_URL} # <-\n", `key of check d: "DATABASE_URL" is not a managed secret`, "not a derived value"},
	{"sample key undefined", "checks:\n  d:\n    decrypt-sample: {url: DATABASE_URL, column: p.email, key: ENCRYPTION_KY} # <-\n", `key of check d: "ENCRYPTION_KY" is not a managed secret`, "did you mean ENCRYPTION_KEY?"},
	{"sample rows zero", "checks:\n  d:\n    decrypt-sample: {url: DATABASE_URL, column: p.email, key: ENCRYPTION_KEY, rows: 0} # <-\n", "rows of check d must be between 1 and 10000", "10 is usually enough"},
	{"command empty", "checks:\n  c:\n    command: \"\" # <-\n", "command of check c is empty", "argv list"},
	{"command mapping", "checks:\n  c:\n    command: {run: [x]} # <-\n", "command of check c must be a list or text, not a mapping", "argv list"},
	{"check environments undefined", "checks:\n  c:\n    command: [x]\n    environments: [staging] # <-\n", `environments of check c: "staging" is not defined`, "environments: prod"},
	{"check references before secrets", "", "", ""}, // filled in below
}

func TestServiceErrors(t *testing.T) {
	for _, tc := range serviceErrorCases {
		switch tc.name {
		case "check references before secrets":
			// The sections may come before secrets: references still resolve.
			text := "version: 1\nchecks:\n  h:\n    http: {url: \"http://x/{{ NOPE }}\"} # <-\n" + svcHead[11:]
			checkErrorAt(t, tc.name, text, `references "NOPE"`, "name a secret")
			continue
		}
		checkErrorAt(t, tc.name, svcHead+tc.yaml, tc.msg, tc.hint)
	}
}

func checkErrorAt(t *testing.T, name, text, msg, hint string) {
	t.Run(name, func(t *testing.T) {
		line := markedLine(t, text)
		c, err := Parse("rekey.yaml", []byte(text))
		if err == nil {
			t.Fatalf("Parse succeeded (%+v); want an error at line %d\n%s", c, line, numbered(text))
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("Parse error %T %v is not an *Error", err, err)
		}
		prefix := "rekey.yaml:" + strconv.Itoa(line) + ":"
		if !strings.HasPrefix(err.Error(), prefix) {
			t.Errorf("error %q does not start with %q\n%s", err, prefix, numbered(text))
		}
		if !strings.Contains(e.Msg, msg) {
			t.Errorf("Msg %q does not contain %q", e.Msg, msg)
		}
		if !strings.Contains(e.Hint, hint) {
			t.Errorf("Hint %q does not contain %q", e.Hint, hint)
		}
		if strings.Contains(err.Error()+e.Hint, "hunter2") {
			t.Errorf("the error shows a password: %v (%s)", err, e.Hint)
		}
	})
}

// TestServicesOptional checks that a file without the sections has none.
func TestServicesOptional(t *testing.T) {
	c, err := Parse(filepath.Join(t.TempDir(), "rekey.yaml"), []byte(svcHead))
	if err != nil {
		t.Fatal(err)
	}
	if c.Services != nil || c.Checks != nil || c.ServicesFor("prod") != nil || c.ChecksFor("prod") != nil {
		t.Errorf("services %v, checks %v", c.Services, c.Checks)
	}
}
