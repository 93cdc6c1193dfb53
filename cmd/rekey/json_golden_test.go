package main

// TestJSONGolden: every command that prints JSON (a --json flag; report's
// --format json and scan's --report-format json) runs on a fixture
// project; its stdout (and, when it fails, the error object on stderr)
// must parse, every key at every depth must be snake_case except the keys
// of maps whose keys are data (jsonDataKeyed), and the document, with its
// volatile values normalised, must equal testdata/json/NAME.json. A
// command that gets --json without a case here fails the test, and so
// does a case without its golden file: add the case, then
// go test ./cmd/rekey -run TestJSONGolden -update

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

const regenerateJSON = "go test ./cmd/rekey -run TestJSONGolden -update"

// jsonCase is one run of a JSON command on a fresh fixture project: setup
// runs first (rekey argv lists, each must exit 0), then args.
type jsonCase struct {
	name  string            // golden file testdata/json/NAME.json
	files map[string]string // written into the project first
	setup [][]string
	args  []string
}

// jsonCases: at least one per command that prints JSON, keyed by the
// command's path (without "rekey ").
var jsonCases = map[string][]jsonCase{
	"status":          {{name: "status", args: []string{"status", "--json"}}},
	"doctor":          {{name: "doctor", args: []string{"doctor", "--json"}}},
	"verify":          {{name: "verify", args: []string{"verify", "--json"}}, {name: "verify_failed", files: map[string]string{"broken": ""}, args: []string{"verify", "--json"}}},
	"services status": {{name: "services_status", args: []string{"services", "status", "--json"}}},
	"audit": {{name: "audit", setup: [][]string{{"rotate", "JWT_SECRET"}},
		args: []string{"audit", "--json", "--secret", "JWT_SECRET"}}},
	"history": {{name: "history", setup: [][]string{{"rotate", "JWT_SECRET"}}, args: []string{"history", "JWT_SECRET", "--json"}},
		{name: "error_not_found", args: []string{"history", "JWT_SECRT", "--json"}}},
	"rotate": {{name: "rotate", args: []string{"rotate", "JWT_SECRET", "--json"}},
		{name: "rotate_rolled_back", files: map[string]string{"broken": ""}, args: []string{"rotate", "JWT_SECRET", "--json"}},
		{name: "rotate_dry_run", args: []string{"rotate", "JWT_SECRET", "--dry-run", "--json"}},
		{name: "rotate_nothing", args: []string{"rotate", "--due", "--json"}},
		{name: "error_usage", args: []string{"rotate", "--json"}}},
	"recover":  {{name: "recover", args: []string{"recover", "--json"}}},
	"rollback": {{name: "rollback", setup: [][]string{{"rotate", "JWT_SECRET"}}, args: []string{"rollback", "JWT_SECRET", "--json"}}},
	"version":  {{name: "version", args: []string{"version", "--json"}}},
	// With a database: TestReencryptJSON (reencrypt_cli_test.go).
	"reencrypt": {{name: "reencrypt", args: []string{"reencrypt", "--json"}},
		{name: "reencrypt_verify_none", args: []string{"reencrypt", "--verify", "--json"}}},
	"report": {{name: "report", args: []string{"report", "--format", "json"}}},
	"scan": {{name: "scan", files: map[string]string{"notes.txt": "jwt: " + strings.Repeat("c2VjcmV0", 12) + "\n"},
		args: []string{"scan", "--report-format", "json"}}},
	"incident open": {{name: "incident_open", args: []string{"incident", "open", "--secret", "JWT_SECRET", "--reason", "leaked", "--json"}}},
	"incident status": {{name: "incident_status", setup: [][]string{{"incident", "open", "--secret", "JWT_SECRET", "--reason", "leaked"}},
		args: []string{"incident", "status", "--json"}}},
	"incident report": {{name: "incident_report", setup: [][]string{{"incident", "open", "--secret", "JWT_SECRET", "--reason", "leaked"}},
		args: []string{"incident", "report", incidentArg, "--format", "json"}}},
	"notify status": {{name: "notify_status", args: []string{"notify", "status", "--json"}}},
	"hosts status":  {{name: "hosts_status", args: []string{"hosts", "status", "--json"}}}, // no ssh target here: [] (TestSSHTargets reads hosts)
}

// incidentArg, in a case's args, is the ID of the incident its setup opened.
const incidentArg = "INCIDENT_ID"

// jsonDataKeyed are the paths of objects whose keys are data (names of
// secrets, attributes), not field names: their keys are not checked.
var jsonDataKeyed = []string{
	"$[].attributes", // history: a version's attributes (role=, exposed=)
}

// jsonVolatile are the keys whose values change from run to run (times,
// durations, ids, the build): normalised before the comparison.
var jsonVolatile = map[string]bool{
	"started": true, "ended": true, "time": true, "created_at": true, "last_rotated": true, "next_due": true,
	"generated": true, "latest_rotation": true, "duration_ms": true, "hash": true, "prev_hash": true,
	"revision": true, "go_version": true, "modified": true, "seq": false, "duration_seconds": true,
}

var (
	snakeKey   = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
	volatileRe = []struct {
		re   *regexp.Regexp
		with string
	}{
		{regexp.MustCompile(`fp:[0-9a-f]{16}`), "fp:FINGERPRINT"},
		{regexp.MustCompile(`sha256 [0-9a-f]{12}`), "sha256 HASH"}, // of rekey.yaml, whose template init owns
		{regexp.MustCompile(`\d{8}T\d{6}Z-[0-9a-f]{8}`), "ROTATION_ID"},
		{regexp.MustCompile(`INC-\d{8}-[0-9a-f]{6}`), "INCIDENT_ID"},
		{regexp.MustCompile(`\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})`), "TIME"},
		{regexp.MustCompile(`\b\d{4}-\d{2}-\d{2}\b`), "DATE"},
		{regexp.MustCompile(`\b\d+(\.\d+)?(ms|µs|ns|s)\b`), "DURATION"},
	}
)

// jsonFixture is a fresh in-process project: a .env with a generated
// secret, a user-managed key and a setting, a service and two checks (one
// that fails once a file named broken exists), JWT_SECRET last rotated today.
func jsonFixture(t *testing.T) *inProject {
	t.Helper()
	p := &inProject{t: t, dir: t.TempDir(), env: map[string]string{
		"REKEY_MASTER_KEY": testMasterKey, "XDG_CONFIG_HOME": t.TempDir(), "XDG_STATE_HOME": t.TempDir(),
		"REKEY_ACTOR": "golden", "NO_COLOR": "", "REKEY_ENVIRONMENT": "",
	}}
	p.init("JWT_SECRET=" + strings.Repeat("c2VjcmV0", 12) + "\n" +
		"ANTHROPIC_API_KEY=sk-ant-api03-" + strings.Repeat("AbCdEfGh", 5) + "\n" +
		"PORT=8080\n")
	p.write("rekey.yaml", p.read("rekey.yaml")+`
services:
  api:
    restart: [sh, -c, 'true']
    status: [true]
    consumes: [JWT_SECRET]
checks:
  ready:
    command: [true]
    retries: 0
  not-broken:
    command: [test, '!', -e, broken]
    retries: 0
`, 0o644)
	p.must("config", "trust")
	return p
}

// jsonCommands are the paths of the commands that print JSON.
func jsonCommands(root *cobra.Command) []string {
	var out []string
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			walk(sub)
		}
		if f := c.Flags().Lookup("json"); f != nil && f.Value.Type() == "bool" {
			out = append(out, strings.TrimPrefix(c.CommandPath(), "rekey "))
		}
		for _, name := range []string{"format", "report-format"} {
			if f := c.Flags().Lookup(name); f != nil && strings.Contains(f.Usage, "json") {
				out = append(out, strings.TrimPrefix(c.CommandPath(), "rekey "))
			}
		}
	}
	walk(root)
	sort.Strings(out)
	return slices.Compact(out)
}

func TestJSONGolden(t *testing.T) {
	root := (&app{m: &Main{}}).rootCommand()
	cmds := jsonCommands(root)
	if len(cmds) < 10 {
		t.Fatalf("only %d commands print JSON: %v", len(cmds), cmds)
	}
	for _, path := range cmds {
		if len(jsonCases[path]) == 0 {
			t.Errorf("rekey %s prints JSON but has no case in jsonCases (json_golden_test.go): add one, then run `%s`", path, regenerateJSON)
		}
	}
	for path := range jsonCases {
		if !slices.Contains(cmds, path) {
			t.Errorf("jsonCases has rekey %s, which prints no JSON (any more)", path)
		}
	}
	genDir := t.TempDir()
	for _, path := range cmds {
		for _, c := range jsonCases[path] {
			t.Run(c.name, func(t *testing.T) {
				doc := runJSONCase(t, c)
				b, err := json.MarshalIndent(doc, "", "  ")
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(genDir, c.name+".json"), append(b, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
	if !t.Failed() {
		compareTree(t, filepath.Join("testdata", "json"), genDir, regenerateJSON)
	}
}

// runJSONCase runs a case on a fresh fixture and returns what the golden
// file holds: the exit status, stdout's document (JSON lines: an array of
// them) and the error object of stderr, normalised.
func runJSONCase(t *testing.T, c jsonCase) map[string]any {
	t.Helper()
	p := jsonFixture(t)
	for name, data := range c.files {
		p.write(name, data, 0o644)
	}
	var setupOut string
	for _, s := range c.setup {
		setupOut += p.must(s...)
	}
	args := slices.Clone(c.args)
	if i := slices.Index(args, incidentArg); i >= 0 {
		args[i] = regexp.MustCompile(`INC-\d{8}-[0-9a-f]{6}`).FindString(setupOut)
	}
	out, errs, code := p.run(args...)
	doc := map[string]any{"args": strings.Join(c.args, " "), "exit_code": code}
	if strings.TrimSpace(out) != "" {
		v, err := parseJSONDoc(out)
		if err != nil {
			t.Fatalf("rekey %s: stdout is not JSON: %v\n%s", strings.Join(c.args, " "), err, out)
		}
		checkSnake(t, v, "$")
		doc["stdout"] = v
	}
	if code != 0 && code != 1 || strings.Contains(errs, `{"error"`) {
		lines := strings.Split(strings.TrimSpace(errs), "\n")
		last := lines[len(lines)-1]
		var v any
		if err := json.Unmarshal([]byte(last), &v); err != nil {
			t.Fatalf("rekey %s: exit %d, and the last line of stderr is no JSON error: %v\n%s", strings.Join(c.args, " "), code, err, errs)
		}
		if m, _ := v.(map[string]any); m == nil || m["error"] == nil {
			t.Fatalf("rekey %s: stderr's last line is not {\"error\": ...}: %s", strings.Join(c.args, " "), last)
		}
		checkSnake(t, v, "$")
		doc["stderr_error"] = v
	}
	if doc["stdout"] == nil && doc["stderr_error"] == nil {
		t.Fatalf("rekey %s printed no JSON (exit %d)\nstdout: %s\nstderr: %s", strings.Join(c.args, " "), code, out, errs)
	}
	return normaliseJSON(doc, "", p.dir).(map[string]any)
}

// parseJSONDoc parses one JSON document, or JSON lines (audit) as an array.
func parseJSONDoc(s string) (any, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	var docs []any
	for dec.More() {
		var v any
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		docs = append(docs, v)
	}
	if len(docs) == 1 {
		return docs[0], nil
	}
	return docs, nil
}

// checkSnake fails for each key at any depth that is not snake_case,
// except the keys of the objects at jsonDataKeyed paths.
func checkSnake(t *testing.T, v any, path string) {
	t.Helper()
	for _, bad := range snakeViolations(v, path) {
		t.Errorf("key %s is not snake_case", bad)
	}
}

// snakeViolations lists the keys of v (as PATH."key") that are not
// snake_case, outside the jsonDataKeyed objects.
func snakeViolations(v any, path string) []string {
	var out []string
	switch x := v.(type) {
	case map[string]any:
		data := slices.Contains(jsonDataKeyed, path)
		for _, k := range sortedKeys(x) {
			if !data && !snakeKey.MatchString(k) {
				out = append(out, path+"."+strconv.Quote(k))
			}
			out = append(out, snakeViolations(x[k], path+"."+k)...)
		}
	case []any:
		for _, sub := range x {
			out = append(out, snakeViolations(sub, path+"[]")...)
		}
	}
	return out
}

// TestSnakeViolations: the key check finds camelCase, PascalCase and
// kebab-case keys at any depth, and leaves data-keyed objects alone.
func TestSnakeViolations(t *testing.T) {
	var v any
	json.Unmarshal([]byte(`[{"ok_key": 1, "camelCase": {"Inner": [{"kebab-key": 2}]},
		"attributes": {"Role-Name": "x"}}]`), &v)
	got := snakeViolations(v, "$")
	want := []string{`$[]."camelCase"`, `$[].camelCase."Inner"`, `$[].camelCase.Inner[]."kebab-key"`}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// normaliseJSON replaces what changes from run to run: the values of
// volatile keys, and fingerprints, rotation ids, times, durations and the
// project's folder inside strings.
func normaliseJSON(v any, key, dir string) any {
	switch x := v.(type) {
	case map[string]any:
		for k, sub := range x {
			x[k] = normaliseJSON(sub, k, dir)
		}
		return x
	case []any:
		for i, sub := range x {
			x[i] = normaliseJSON(sub, key, dir)
		}
		return x
	}
	if jsonVolatile[key] {
		switch v.(type) {
		case float64:
			return 0
		case bool:
			return false
		}
		return "VOLATILE"
	}
	s, ok := v.(string)
	if !ok {
		return v
	}
	if rd, err := filepath.EvalSymlinks(dir); err == nil {
		s = strings.ReplaceAll(s, rd, "$DIR")
	}
	s = strings.ReplaceAll(s, dir, "$DIR")
	for _, r := range volatileRe {
		s = r.re.ReplaceAllString(s, r.with)
	}
	return s
}
