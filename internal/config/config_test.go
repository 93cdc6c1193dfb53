package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/rekeyhq/rekey"
)

// cmpConfig compares Configs, templates by their source.
var cmpConfig = cmp.Options{
	cmpopts.IgnoreFields(Config{}, "Raw", "Digest"), // the text parsed: TestLoadDigest
	cmp.Comparer(func(a, b *rekey.Template) bool {
		if a == nil || b == nil {
			return a == b
		}
		return a.Source() == b.Source()
	}),
}

// ignoreLines also ignores line numbers, which change when a file is rewritten.
var ignoreLines = cmp.Options{
	cmpConfig,
	cmpopts.IgnoreFields(rekey.Spec{}, "Line"),
	cmpopts.IgnoreFields(rekey.Derived{}, "Line"),
	cmpopts.IgnoreFields(rekey.Hook{}, "Line"),
	cmpopts.IgnoreFields(Environment{}, "Line"),
	cmpopts.IgnoreFields(Target{}, "Line"),
}

func mustTemplate(t *testing.T, src string) *rekey.Template {
	t.Helper()
	tm, err := rekey.ParseTemplate(src)
	if err != nil {
		t.Fatalf("ParseTemplate(%q): %v", src, err)
	}
	return tm
}

func TestLoadFull(t *testing.T) {
	home, err := os.UserHomeDir()
	if err != nil {
		t.Skip("no home folder:", err)
	}
	c := mustLoad(t, "testdata/full.yaml")
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	dbURL := "postgres://postgres:{{ DATABASE_PASSWORD | urlquery }}@localhost:5432/atlas"
	want := &Config{
		Path:    filepath.Join(dir, "full.yaml"),
		Dir:     dir,
		Version: 1,
		Store: Store{
			Path:         filepath.Join(dir, ".rekey", "rekey.db"),
			MasterKey:    "file:" + filepath.Join(home, ".config", "rekey", "keys", "mk_0123abcd.key"),
			KeepVersions: 5,
		},
		Environments: []Environment{
			{Name: "production", Line: 8, Targets: []Target{
				{Name: "app", Type: "dotenv", Path: filepath.Join(dir, ".env"), Line: 10},
				{Name: "worker", Type: "dotenv", Path: filepath.Join(dir, "deploy", "worker.env"), Line: 11},
			}, Derived: []rekey.Derived{
				{Name: "DATABASE_URL", Template: mustTemplate(t, "postgres://postgres:{{ DATABASE_PASSWORD | urlquery }}@db.prod:5432/atlas"), Line: 13},
				{Name: "REPLICA_URL", Template: mustTemplate(t, "postgres://app_ro:{{ DATABASE_PASSWORD | urlquery }}@replica.prod:5432/atlas"), Line: 14},
			}},
			{Name: "staging", Line: 15, Targets: []Target{
				{Name: "app", Type: "dotenv", Path: "/srv/staging/.env", Line: 17},
				{Name: "worker", Type: "dotenv", Path: filepath.Join(dir, ".env"), Line: 18},
			}},
		},
		Secrets: []rekey.Spec{
			{Name: "JWT_SECRET", Kind: rekey.KindGenerated, Purpose: "JWT token signing",
				Generator: rekey.Generator{Bytes: 64, Encoding: rekey.EncBase64}, Period: 180 * rekey.Day,
				Storage: ".env", Encryption: "At rest", Access: "Backend only", Targets: []string{"app"}, Line: 20,
				Sessions: &rekey.SessionsSpec{Mode: rekey.SessionsGraceful, Grace: 24 * time.Hour, OnRotate: []rekey.Hook{
					{SQL: "DELETE FROM sessions", Database: "DATABASE_URL", Timeout: time.Minute, Line: 33},
					{Command: []string{"./scripts/flush", "--all"}, Timeout: 5 * time.Second, Line: 35},
				}}},
			{Name: "DATABASE_PASSWORD", Kind: rekey.KindPostgresPassword, Purpose: "PostgreSQL password: app role",
				Generator: rekey.Generator{Bytes: 32, Encoding: rekey.EncAlphanumeric}, Period: 14 * rekey.Day,
				Postgres: &rekey.PostgresSpec{URLFrom: "DATABASE_URL", Host: "localhost", Port: 5432, Database: "atlas",
					Role: "postgres", SSLMode: "prefer", ChangedBy: "admin", AdminSecret: "PG_ADMIN_URL",
					Strategy: "alternating", Roles: []string{"app_blue", "app_green"}, Grace: 36 * time.Hour},
				Line: 37},
			{Name: "PG_ADMIN_URL", Kind: rekey.KindManual, Purpose: "admin connection", Period: 90 * rekey.Day, Line: 54},
			{Name: "ENCRYPTION_KEY", Kind: rekey.KindDataKey, Generator: rekey.Generator{Bytes: 32, Encoding: rekey.EncHex},
				Period: 90 * time.Minute, Targets: []string{"worker", "app"}, Line: 58,
				Reencrypt: &rekey.ReencryptSpec{Database: "DATABASE_URL", Codec: "fernet", Encoding: "text", Columns: []string{"patients.email", "billing(tenant_id,id).card"}, BatchSize: 500, Mode: rekey.ReencryptMaintenance}},
			{Name: "SESSION_KEY", Kind: rekey.KindGenerated, Generator: rekey.Generator{Bytes: 16, Encoding: rekey.EncBase64URLNoPad}, Line: 69},
			{Name: "CSRF_KEY", Kind: rekey.KindGenerated, Generator: rekey.Generator{Bytes: 32, Encoding: rekey.EncBase64},
				Access: "yes", Storage: "123", Line: 72},
		},
		Derived: []rekey.Derived{
			{Name: "DATABASE_URL", Template: mustTemplate(t, dbURL), Line: 78},
			{Name: "SESSION_JSON", Template: mustTemplate(t, `{"k": "{{ SESSION_KEY | json }}"}`), Line: 79},
		},
	}
	if diff := cmp.Diff(want, c, cmpConfig); diff != "" {
		t.Errorf("Load mismatch (-want +got):\n%s", diff)
	}
}

// mustLoad loads the rekey.yaml at path, or fails the test.
func mustLoad(t *testing.T, path string) *Config {
	t.Helper()
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRoundTrip(t *testing.T) {
	c := mustLoad(t, "testdata/full.yaml")
	out, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(out), "# rekey.yaml") {
		t.Errorf("Marshal output has no header comment:\n%s", out)
	}
	for _, want := range []string{
		"path: .rekey/rekey.db\n",
		"master_key: file:~/.config/rekey/keys/mk_0123abcd.key\n",
		"app: {type: dotenv, path: .env}\n",
		"worker: {type: dotenv, path: deploy/worker.env}\n",
		"rotate_every: 14d\n", // 2w is written in days
		"rotate_every: 1h30m\n",
		"grace: 36h\n",
		"remind_every: 90d\n",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("Marshal output lacks %q:\n%s", want, out)
		}
	}
	c2, err := Parse(c.Path, out)
	if err != nil {
		t.Fatalf("Parse(Marshal(c)): %v\n%s", err, out)
	}
	if diff := cmp.Diff(c, c2, ignoreLines); diff != "" {
		t.Errorf("round trip mismatch (-loaded +reparsed):\n%s", diff)
	}
	// Marshal is a fixed point of its own output, line numbers included.
	out2, err := Marshal(c2)
	if err != nil {
		t.Fatal(err)
	}
	if string(out2) != string(out) {
		t.Errorf("Marshal is not stable:\n--- first\n%s\n--- second\n%s", out, out2)
	}
	c3, err := Parse(c.Path, out2)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(c2, c3, cmpConfig); diff != "" {
		t.Errorf("second round trip mismatch (-want +got):\n%s", diff)
	}
}

// TestMarshalBuilt marshals a Config built in code, the way init does, with
// awkward free text, and checks that it reads back.
func TestMarshalBuilt(t *testing.T) {
	dir := t.TempDir()
	texts := []string{"123", "yes", "null", "~", "a: b", "#x", " lead", "trail ", "multi\nline\n", "tab\there",
		`quote"s`, "'single'", "{{ not a template }}", "- dash", "@at", "`tick", "%pct", "日本語", "true", "1e3", "0x10", "[x]", "*alias", "&anchor", "!tag", "a #b"}
	c := &Config{
		Path:    filepath.Join(dir, "rekey.yaml"),
		Dir:     dir,
		Version: 1,
		Store:   Store{Path: filepath.Join(dir, ".rekey", "rekey.db"), MasterKey: "passphrase"},
		Environments: []Environment{{Name: "dev", Targets: []Target{
			{Name: "app", Type: "dotenv", Path: filepath.Join(dir, "sub dir", "x, y {z}.env")},
			{Name: "other", Type: "dotenv", Path: "/elsewhere/.env"},
		}}},
		Derived: []rekey.Derived{{Name: "URL", Template: mustTemplate(t, "x://{{ S0 | urlquery }}:#{{ S1 }}")}},
	}
	for i, s := range texts {
		c.Secrets = append(c.Secrets, rekey.Spec{
			Name: "S" + strings.Repeat("X", i/10) + string(rune('0'+i%10)), Kind: rekey.KindGenerated,
			Generator: rekey.Generator{Bytes: 32, Encoding: rekey.EncBase64}, Purpose: s, Storage: s, Access: s, Encryption: s,
		})
	}
	c.Secrets = append(c.Secrets, rekey.Spec{
		Name: "DB", Kind: rekey.KindPostgresPassword, Generator: rekey.Generator{Bytes: 24, Encoding: rekey.EncBase64URL},
		Period: 36 * time.Hour, Postgres: &rekey.PostgresSpec{ChangedBy: "self", Strategy: "single", Host: "db", Port: 6543},
	})
	out, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(c.Path, out)
	if err != nil {
		t.Fatalf("Parse(Marshal(c)): %v\n%s", err, out)
	}
	if diff := cmp.Diff(c, got, ignoreLines); diff != "" {
		t.Errorf("round trip mismatch (-built +reparsed):\n%s\n%s", diff, out)
	}
	if strings.Contains(string(out), "changed_by") || strings.Contains(string(out), "strategy") {
		t.Errorf("defaults changed_by: self and strategy: single should be left out:\n%s", out)
	}
}

func TestMarshalRejectsInvalid(t *testing.T) {
	dir := t.TempDir()
	c := &Config{
		Path: filepath.Join(dir, "rekey.yaml"), Dir: dir, Version: 1,
		Environments: []Environment{{Name: "dev", Targets: []Target{{Name: "app", Path: filepath.Join(dir, ".env")}}}},
		Secrets:      []rekey.Spec{{Name: "K", Kind: rekey.KindGenerated, Generator: rekey.Generator{Bytes: 32}, Targets: []string{"web"}}},
	}
	if _, err := Marshal(c); err == nil || !strings.Contains(err.Error(), "target \"web\"") {
		t.Errorf("Marshal of a secret with an undefined target: err = %v", err)
	}
	c.Secrets[0].Targets = nil
	if _, err := Marshal(c); err != nil {
		t.Errorf("Marshal: %v", err)
	}
}

func TestAccessors(t *testing.T) {
	c := mustLoad(t, "testdata/full.yaml")
	if s, ok := c.Secret("PG_ADMIN_URL"); !ok || s.Kind != rekey.KindManual {
		t.Errorf("Secret(PG_ADMIN_URL) = %v, %v", s, ok)
	}
	if _, ok := c.Secret("NOPE"); ok {
		t.Error("Secret(NOPE) found")
	}
	if e, ok := c.Environment("staging"); !ok || len(e.Targets) != 2 {
		t.Errorf("Environment(staging) = %v, %v", e, ok)
	}
	if _, ok := c.Environment("nope"); ok {
		t.Error("Environment(nope) found")
	}

	names := func(ds []rekey.Derived) []string {
		var out []string
		for _, d := range ds {
			out = append(out, d.Name+"="+d.Template.Source())
		}
		return out
	}
	prod := names(c.DerivedFor("production"))
	wantProd := []string{
		"DATABASE_URL=postgres://postgres:{{ DATABASE_PASSWORD | urlquery }}@db.prod:5432/atlas",
		`SESSION_JSON={"k": "{{ SESSION_KEY | json }}"}`,
		"REPLICA_URL=postgres://app_ro:{{ DATABASE_PASSWORD | urlquery }}@replica.prod:5432/atlas",
	}
	if diff := cmp.Diff(wantProd, prod); diff != "" {
		t.Errorf("DerivedFor(production) (-want +got):\n%s", diff)
	}
	staging := names(c.DerivedFor("staging"))
	wantStaging := []string{
		"DATABASE_URL=postgres://postgres:{{ DATABASE_PASSWORD | urlquery }}@localhost:5432/atlas",
		`SESSION_JSON={"k": "{{ SESSION_KEY | json }}"}`,
	}
	if diff := cmp.Diff(wantStaging, staging); diff != "" {
		t.Errorf("DerivedFor(staging) (-want +got):\n%s", diff)
	}
	// DerivedFor must not let callers change the Config.
	got := c.DerivedFor("production")
	got[0].Name = "CHANGED"
	if c.Derived[0].Name != "DATABASE_URL" {
		t.Error("DerivedFor returned the Config's own slice")
	}

	targetNames := func(env, secret string) []string {
		t.Helper()
		ts, err := c.TargetsFor(env, secret)
		if err != nil {
			t.Fatalf("TargetsFor(%s, %s): %v", env, secret, err)
		}
		var out []string
		for _, x := range ts {
			out = append(out, x.Name)
		}
		return out
	}
	if diff := cmp.Diff([]string{"app"}, targetNames("production", "JWT_SECRET")); diff != "" {
		t.Error(diff)
	}
	if diff := cmp.Diff([]string{"app", "worker"}, targetNames("staging", "SESSION_KEY")); diff != "" {
		t.Error(diff)
	}
	if diff := cmp.Diff([]string{"app", "worker"}, targetNames("staging", "ENCRYPTION_KEY")); diff != "" {
		t.Error(diff)
	}
	if _, err := c.TargetsFor("prod", "JWT_SECRET"); rekey.ErrorCode(err) != rekey.CodeNotFound || !strings.Contains(rekey.ErrorHint(err), "production") {
		t.Errorf("TargetsFor(unknown env): %v (hint %q)", err, rekey.ErrorHint(err))
	}
	if _, err := c.TargetsFor("production", "JWT"); rekey.ErrorCode(err) != rekey.CodeNotFound {
		t.Errorf("TargetsFor(unknown secret): %v", err)
	}
}

func TestLoadMissing(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "rekey.yaml"))
	if err == nil {
		t.Fatal("Load of a missing file succeeded")
	}
	if rekey.ErrorCode(err) != rekey.CodeNotFound || !strings.Contains(rekey.ErrorHint(err), "rekey init") ||
		!errors.Is(err, fs.ErrNotExist) || !strings.HasSuffix(err.Error(), "rekey.yaml: file not found") {
		t.Errorf("Load of a missing file: %v (code %v, hint %q)", err, rekey.ErrorCode(err), rekey.ErrorHint(err))
	}
}

func TestFind(t *testing.T) {
	root := t.TempDir()
	nested := filepath.Join(root, "a", "b", "c")
	if err := os.MkdirAll(nested, 0o755); err != nil {
		t.Fatal(err)
	}
	// A folder named rekey.yaml is not the file.
	if err := os.Mkdir(filepath.Join(root, "a", "rekey.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(root, "rekey.yaml")
	if err := os.WriteFile(want, []byte("version: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{nested, root} {
		got, err := Find(dir)
		if err != nil || got != want {
			t.Errorf("Find(%s) = %q, %v; want %q", dir, got, err, want)
		}
	}
}

func TestFindNotFound(t *testing.T) {
	if _, err := os.Stat("/rekey.yaml"); err == nil {
		t.Skip("/rekey.yaml exists on this machine")
	}
	_, err := Find("/")
	var e *Error
	if !asError(err, &e) {
		t.Fatalf("Find(/) = %v, want an *Error", err)
	}
	if !strings.Contains(e.Hint, "run `rekey init --env-file .env`, or pass --config") {
		t.Errorf("hint = %q", e.Hint)
	}
	if rekey.ErrorCode(err) != rekey.CodeNotFound {
		t.Errorf("code = %v, want CodeNotFound", rekey.ErrorCode(err))
	}
	if !strings.Contains(err.Error(), "no rekey.yaml in /") {
		t.Errorf("message = %q", err.Error())
	}
}

// TestCommandTargetRecipes: the README's secret-manager recipes parse as
// written (the argv rekey runs, no shell added).
func TestCommandTargetRecipes(t *testing.T) {
	text := `version: 1
environments:
  production:
    targets:
      vault:
        type: command
        read: [sh, -c, "vault kv get -mount=secret -format=json atlas | jq .data.data"]
        write: [vault, kv, put, -mount=secret, atlas, "@/dev/stdin"]
      aws:
        type: command
        read: [aws, secretsmanager, get-secret-value, --secret-id, atlas/production, --query, SecretString, --output, text]
        write: [aws, secretsmanager, put-secret-value, --secret-id, atlas/production, --secret-string, "file:///dev/stdin"]
      k8s:
        type: command
        read: [sh, -c, "kubectl get secret atlas -o json | jq '.data | map_values(@base64d)'"]
        write: [sh, -c, "jq '{apiVersion: \"v1\", kind: \"Secret\", metadata: {name: \"atlas\"}, stringData: .}' | kubectl apply -f -"]
secrets:
  JWT_SECRET:
    kind: generated
    generator: {bytes: 32, encoding: base64}
`
	cfg, err := Parse(filepath.Join(t.TempDir(), FileName), []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	e, _ := cfg.Environment("production")
	if len(e.Targets) != 3 || e.Targets[0].Write[len(e.Targets[0].Write)-1] != "@/dev/stdin" || e.Targets[2].Read[0] != "sh" || e.Targets[1].Format != "json" {
		t.Fatalf("targets: %+v", e.Targets)
	}
}
