package config

import (
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/rekeyhq/rekey"
)

// everyField is a Config with every field Marshal writes set to a value
// other than its default, as Parse returns it (defaults filled in).
func everyField(t *testing.T, dir string) *Config {
	tm := func(s string) *rekey.Template { return mustTemplate(t, s) }
	cmd := func(timeout time.Duration, argv ...string) rekey.Command {
		return rekey.Command{Argv: argv, Timeout: timeout}
	}
	check := func(name string) rekey.Check {
		return rekey.Check{Name: name, Retries: 5, Backoff: 3 * time.Second, Timeout: 7 * time.Second, Deadline: 90 * time.Second, Environments: []string{"production"}}
	}
	httpCheck := check("login")
	httpCheck.Type = rekey.CheckHTTP
	httpCheck.HTTP = &rekey.HTTPCheck{Method: "POST", URL: tm("http://localhost:8080/login?k={{ JWT_SECRET | urlquery }}"),
		Headers: []rekey.Header{{Name: "Content-Type", Value: tm("application/json")}, {Name: "X-Empty", Value: tm("")}},
		Body:    tm(`{"p": "{{ SMOKE_PASSWORD | json }}"}`), Expect: []int{200, 204}, JSONField: "data.token",
		FollowRedirects: rekey.RedirectsSameOrigin}
	tcp := check("port")
	tcp.Type, tcp.TCP = rekey.CheckTCP, &rekey.TCPCheck{Address: tm("localhost:5432")}
	pg := check("db")
	pg.Type, pg.Postgres = rekey.CheckPostgres, &rekey.PostgresCheck{URL: "DATABASE_URL"}
	sql := check("count")
	sql.Type, sql.SQL = rekey.CheckSQL, &rekey.SQLCheck{URL: "DATABASE_URL", Query: "SELECT count(*) FROM patients", Expect: "20"}
	ds := check("pii")
	ds.Type, ds.DecryptSample = rekey.CheckDecryptSample, &rekey.DecryptSample{URL: "DATABASE_URL", Table: "app.patients", Column: "email", Rows: 3, Key: "ENCRYPTION_KEY", Codec: "aes-256-gcm", Encoding: "base64"}
	smoke := check("smoke")
	c := cmd(7*time.Second, "./scripts/smoke", "--fast")
	smoke.Type, smoke.Command, smoke.Stdin = rekey.CheckCommand, &c, "SMOKE_PASSWORD"
	logs := check("logs")
	logs.Type, logs.Log = rekey.CheckLog, &rekey.LogCheck{File: "/var/log/atlas.log", Window: 45 * time.Second, Pattern: "panic|FATAL"}
	logs.Retries, logs.Timeout, logs.Deadline = 0, 50*time.Second, 50*time.Second
	journal := check("journal")
	jc := cmd(0, "journalctl", "--follow", "--unit", "atlas")
	journal.Type, journal.Log = rekey.CheckLog, &rekey.LogCheck{Command: &jc, Window: rekey.DefaultLogWindow, Pattern: rekey.DefaultLogPattern}
	unit := check("unit")
	unit.Type, unit.Log = rekey.CheckLog, &rekey.LogCheck{Unit: "atlas.service", Window: rekey.DefaultLogWindow, Pattern: rekey.DefaultLogPattern}
	unit.Retries, unit.Timeout, unit.Deadline = 0, 35*time.Second, rekey.DefaultCheckDeadline
	journal.Retries, journal.Timeout, journal.Deadline = 0, 35*time.Second, rekey.DefaultCheckDeadline
	shell := check("shell")
	sh := rekey.Command{Shell: "curl -fsS localhost:8080 >/dev/null", Timeout: 7 * time.Second}
	shell.Type, shell.Command = rekey.CheckCommand, &sh
	return &Config{
		Path: filepath.Join(dir, FileName), Dir: dir, Version: 1,
		Store: Store{Path: filepath.Join(dir, "state", "rekey.db"), MasterKey: "file:/etc/rekey/master.key", KeepVersions: 4},
		Environments: []Environment{
			{Name: "production", Targets: []Target{{Name: "app", Type: TargetDotenv, Path: filepath.Join(dir, ".env")}, {Name: "worker", Type: TargetDotenv, Path: "/srv/worker.env"},
				{Name: "web1", Type: TargetSSH, Host: "deploy@web1.example.com:2222", Path: "/srv/app/.env"},
				{Name: "vault", Type: TargetCommand, Read: []string{"./vault-read", "atlas"}, Write: []string{"./vault-write", "atlas"}, Format: "env"}},
				Derived: []rekey.Derived{{Name: "DATABASE_URL", Template: tm("postgres://app:{{ DATABASE_PASSWORD | urlquery }}@db.prod/atlas")}}},
			{Name: "staging", Targets: []Target{{Name: "app", Type: TargetDotenv, Path: filepath.Join(dir, ".env.staging")}}},
		},
		Secrets: []rekey.Spec{
			{Name: "JWT_SECRET", Kind: rekey.KindGenerated, Purpose: "signing", Generator: rekey.Generator{Bytes: 48, Encoding: rekey.EncBase64URLNoPad},
				Period: 30 * rekey.Day, Storage: "vault", Encryption: "none", Access: "ops", Targets: []string{"app"},
				Sessions: &rekey.SessionsSpec{Mode: rekey.SessionsGraceful, Grace: 36 * time.Hour, PreviousKey: "JWT_OLD", OnRotate: []rekey.Hook{
					{SQL: "DELETE FROM sessions", Database: "DATABASE_URL", Timeout: 2 * time.Minute},
					{Command: []string{"./flush", "--all"}, Timeout: DefaultHookTimeout},
				}}},
			{Name: "DATABASE_PASSWORD", Kind: rekey.KindPostgresPassword, Generator: rekey.Generator{Bytes: 24, Encoding: rekey.EncAlphanumeric}, Period: 14 * rekey.Day,
				Postgres: &rekey.PostgresSpec{URLFrom: "DATABASE_URL", Host: "db", Port: 6432, Database: "atlas", Role: "", SSLMode: "require",
					ChangedBy: "admin", AdminSecret: "PG_ADMIN_URL", Strategy: "alternating", Roles: []string{"app_blue", "app_green"}, Grace: 12 * time.Hour}},
			{Name: "PG_ADMIN_URL", Kind: rekey.KindManual, Period: 60 * rekey.Day},
			{Name: "SMOKE_PASSWORD", Kind: rekey.KindManual},
			{Name: "ENCRYPTION_KEY", Kind: rekey.KindDataKey, Generator: rekey.Generator{Bytes: 32, Encoding: rekey.EncHex}, Period: 90 * rekey.Day,
				Reencrypt: &rekey.ReencryptSpec{Database: "DATABASE_URL", Codec: "command", Encoding: "hex", Columns: []string{"patients.email", "billing(tenant_id,id).card"},
					Command: []string{"./codec", "--v2"}, KeyID: true, BatchSize: 250, RowsPerSecond: 1000, Mode: rekey.ReencryptMaintenance, Pace: rekey.PaceFull, TargetFactor: 2.5}},
			{Name: "DATA_KEY", Kind: rekey.KindDataKey, Generator: rekey.Generator{Bytes: 32, Encoding: rekey.EncBase64},
				Reencrypt: &rekey.ReencryptSpec{Database: "DATABASE_URL", Codec: "aes-256-gcm", Encoding: "base64", Columns: []string{"notes.body"}, Mode: rekey.ReencryptOnline, PreviousKey: "DATA_KEY_OLD",
					Pace: rekey.PaceAdaptive, Probe: "SELECT 1 FROM notes WHERE id = 1", TargetP99: 20 * time.Millisecond, CheckpointSchema: "rekey_state",
					ReplicaLagCeiling: 2 * time.Second, Replicas: []string{"PG_ADMIN_URL"}}},
		},
		Derived: []rekey.Derived{{Name: "DATABASE_URL", Template: tm("postgres://app:{{ DATABASE_PASSWORD | urlquery }}@localhost/atlas")}},
		TLS:     []TLSCert{{Name: "api", File: filepath.Join(dir, "certs", "api.pem")}, {Name: "edge", Endpoint: "example.com:443"}},
		Services: []rekey.Service{
			{Name: "api", Restart: cmd(90*time.Second, "systemctl", "restart", "api"), Start: cmd(rekey.DefaultServiceTimeout, "systemctl", "start", "api"),
				Stop: cmd(2*time.Minute, "systemctl", "stop", "api"), Status: cmd(3*time.Second, "systemctl", "is-active", "api"),
				Consumes: []string{"JWT_SECRET", "DATABASE_URL"}, Order: 2, Environments: []string{"production"}},
			{Name: "web", Restart: rekey.Command{Shell: "./bin/web restart", Timeout: rekey.DefaultServiceTimeout}, ConsumesAll: true, Order: -1},
		},
		Checks: []rekey.Check{httpCheck, tcp, pg, sql, ds, smoke, shell, logs, journal, unit},
		Notify: Notify{
			Channels: []NotifyChannel{
				{Name: "hook", Type: ChannelWebhook, URL: "https://ops.example.com/rekey", Secret: "SMOKE_PASSWORD", Timeout: 5 * time.Second},
				{Name: "chat", Type: ChannelSlack, URLSecret: "PG_ADMIN_URL"},
				{Name: "pager", Type: ChannelPagerDuty, RoutingKeySecret: "SMOKE_PASSWORD"},
				{Name: "mail", Type: ChannelEmail, SMTP: "smtp.example.com:587", TLS: "starttls", Username: "rekey", PasswordSecret: "SMOKE_PASSWORD",
					From: "rekey@example.com", To: []string{"security@example.com"}, CAFile: filepath.Join(dir, "ca.pem")},
				{Name: "script", Type: ChannelCommand, Command: []string{"./notify", "--all"}},
			},
			Contacts: []Contact{{Role: "security", Channels: []string{"mail", "chat"}}, {Role: "oncall", Channels: []string{"pager"}}},
			Events:   []EventRoute{{Event: "incident.opened", To: []string{"security", "oncall", "hook"}}},
		},
		Incident: Incident{Stop: true},
	}
}

// TestMarshalEveryField: Parse(Marshal(c)) gives c back for a Config with
// every field set, so a field Marshal forgets (follow_redirects was one)
// fails here.
func TestMarshalEveryField(t *testing.T) {
	dir := t.TempDir()
	c := everyField(t, dir)
	out, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(c.Path, out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	opts := cmp.Options{ignoreLines, cmpopts.IgnoreFields(rekey.Service{}, "Line"), cmpopts.IgnoreFields(rekey.Check{}, "Line"), cmpopts.IgnoreFields(TLSCert{}, "Line"),
		cmpopts.IgnoreFields(NotifyChannel{}, "Line"), cmpopts.IgnoreFields(Contact{}, "Line"), cmpopts.IgnoreFields(EventRoute{}, "Line")}
	if diff := cmp.Diff(c, back, opts); diff != "" {
		t.Errorf("Parse(Marshal(c)) differs (-want +got):\n%s\n%s", diff, out)
	}
}

// TestEveryFieldIsSet guards the test above: a field added to a struct
// that everyField leaves at its zero value fails here, naming it.
func TestEveryFieldIsSet(t *testing.T) {
	c := everyField(t, t.TempDir())
	skip := map[string]bool{"Config.Raw": true, "Config.Digest": true, "Line": true,
		"PostgresSpec.Role": true, // Role and Roles exclude each other (alternating)
	}
	seen := map[string]bool{}
	var walk func(v reflect.Value, name string)
	walk = func(v reflect.Value, name string) {
		switch v.Kind() {
		case reflect.Pointer:
			if !v.IsNil() && v.Type() != reflect.TypeOf(&rekey.Template{}) {
				walk(v.Elem(), name)
			}
		case reflect.Slice:
			for i := 0; i < v.Len(); i++ {
				walk(v.Index(i), name)
			}
		case reflect.Struct:
			for i := 0; i < v.NumField(); i++ {
				f := v.Type().Field(i)
				full := v.Type().Name() + "." + f.Name
				if !f.IsExported() || skip[full] || skip[f.Name] {
					continue
				}
				if !v.Field(i).IsZero() {
					seen[full] = true
				} else if _, ok := seen[full]; !ok {
					seen[full] = false
				}
				walk(v.Field(i), full)
			}
		}
	}
	walk(reflect.ValueOf(*c), "Config")
	for f, set := range seen {
		if !set {
			t.Errorf("everyField never sets %s", f)
		}
	}
}
