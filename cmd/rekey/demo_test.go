package main

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rekeyhq/rekey/dotenv"
	"github.com/rekeyhq/rekey/internal/postgres"
	"github.com/rekeyhq/rekey/internal/testkit"
)

// TestDemoPostgres runs `rekey demo --with-postgres` (the README's second
// command) in-process with the reference app built apart, and checks the
// story it tells: every secret rotated, old tokens and the old password
// refused once the grace ends, PII intact, everything stopped.
func TestDemoPostgres(t *testing.T) {
	testkit.Long(t, "about 15 s: the demo waits for its grace period to end")
	dir := t.TempDir()
	var out, errb bytes.Buffer
	m := &Main{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Env: map[string]string{"REKEY_ACTOR": "demo-test"}}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// --grace 10s: the default 20s lets a person watch; 10s keeps the story
	// (the old token works during it, refused after) and the suite short.
	// Not less: the token from before lives as long as the grace, and on a
	// loaded CI machine the rotation between its login and its use took
	// more than 4s.
	grace := "10s"
	code := m.Run(ctx, []string{"demo", "--with-postgres", "--grace", grace, "--dir", dir, "--app", e2eApp(t)})
	if code != 0 && strings.Contains(errb.String(), "needs PostgreSQL's server binaries") {
		testkit.SkipOrFail(t, "%s", errb.String())
	}
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
	}
	for _, want := range []string{
		"Started the app (atlas-app",
		"$ rekey rotate --all",
		"the new token is signed with the new JWT_SECRET (yes); the token from before is not (no)",
		"the token from before still works during the " + grace + " grace (graceful sessions): GET /patients/1 → 200",
		"PII still reads: 20 of 20 patients read back identical",
		"the token from before the rotation is refused now: GET /patients/1 → 401",
		"the old password is refused: atlas_blue logs in with it: refused; the app's login role atlas_green: accepted",
		"login and PII still work: patient 20 reads",
		"$ rekey audit verify",
		"Stopped the app and removed the throwaway PostgreSQL cluster.",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the demo did not say %q:\n%s", want, out.String())
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "atlas-backend", "app.pid")); err == nil {
		t.Error("the app's pidfile is still there: the app was not stopped")
	}
	env := demoCheckPairManager(t, dir, out.String())
	demoNoLeaks(t, dir, env, out.String(), errb.String())
}

var demoMajorRE = regexp.MustCompile(`\nPostgreSQL (\d+): `)

// demoCheckPairManager checks who the demo made manage the alternating
// pair, by the server version it reports: on 16 and later the admin role
// of PG_ADMIN_URL (changed_by: admin), on 15 the login role itself
// (changed_by: self). It returns the project's .env.
func demoCheckPairManager(t *testing.T, dir, out string) map[string]string {
	t.Helper()
	proj := filepath.Join(dir, "atlas-backend")
	f, err := dotenv.Parse(".env", []byte(testkit.ReadFile(t, filepath.Join(proj, ".env"))))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, k := range []string{"DATABASE_URL", "DATABASE_PASSWORD", "PG_ADMIN_URL", "JWT_SECRET", "ENCRYPTION_KEY", "ANTHROPIC_API_KEY"} {
		if v, ok := f.Get(k); ok {
			env[k] = v
		}
	}
	m := demoMajorRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("the demo did not say which PostgreSQL it runs and who manages the pair:\n%s", out)
	}
	major, _ := strconv.Atoi(m[1])
	yml := testkit.ReadFile(t, filepath.Join(proj, "rekey.yaml"))
	t.Logf("PostgreSQL %d", major)
	if major >= postgres.AdminOptionMajor {
		want := "PostgreSQL " + m[1] + ": the pair is managed by role atlas_admin (CREATEROLE + ADMIN OPTION on atlas_owner and atlas_blue), as PostgreSQL 16+ requires"
		if !strings.Contains(out, want) || env["PG_ADMIN_URL"] == "" || !strings.Contains(yml, "changed_by: admin\n      admin_secret: PG_ADMIN_URL\n") {
			t.Errorf("PostgreSQL %d: want the admin role atlas_admin through PG_ADMIN_URL (changed_by: admin); said %q, PG_ADMIN_URL in the .env: %v, rekey.yaml:\n%s",
				major, want, env["PG_ADMIN_URL"] != "", yml)
		}
	} else if !strings.Contains(out, "login role atlas_blue has CREATEROLE and manages its pair itself (changed_by: self)") || env["PG_ADMIN_URL"] != "" || strings.Contains(yml, "changed_by: admin") {
		t.Errorf("PostgreSQL %d: want atlas_blue to manage its pair itself (changed_by: self), no PG_ADMIN_URL; rekey.yaml:\n%s", major, yml)
	}
	return env
}

// demoNoLeaks looks for the .env's secret values (as the demo left them:
// the rotated ones, the ANTHROPIC_API_KEY and, on PostgreSQL 16 and
// later, the admin role's password of PG_ADMIN_URL, which never rotates)
// in the demo's output (also every command line it ran, narrated as
// "$ rekey ...") and in every file of the demo folder but the .env: the
// app's log, rekey.yaml, the store with its audit trail, the approvals.
func demoNoLeaks(t *testing.T, dir string, env map[string]string, outputs ...string) {
	t.Helper()
	values := map[string]string{}
	for _, k := range []string{"DATABASE_PASSWORD", "JWT_SECRET", "ENCRYPTION_KEY", "ANTHROPIC_API_KEY"} {
		values[k] = env[k]
	}
	if u := env["PG_ADMIN_URL"]; u != "" {
		p, err := postgres.ParseURL(u)
		if err != nil || len(p.Password) == 0 {
			t.Fatalf("PG_ADMIN_URL holds no password (%v)", err)
		}
		values["the admin password of PG_ADMIN_URL"] = string(p.Password)
	}
	all := strings.Join(outputs, "\n")
	files := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path == filepath.Join(dir, "atlas-backend", ".env") {
			return err
		}
		b, err := os.ReadFile(path)
		all += "\n" + string(b)
		files++
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range values {
		if v == "" {
			t.Errorf("%s is empty in the .env", name)
			continue
		}
		for _, f := range forms(v) {
			if strings.Contains(all, f) {
				t.Errorf("%s appears in the demo's output or in a file of its folder", name)
				break
			}
		}
	}
	t.Logf("leak check: %d values, the output and %d files, %d bytes searched", len(values), files, len(all))
}

// TestDemoGraceTooShort: a grace under 2s is refused before anything
// starts, naming the flag.
func TestDemoGraceTooShort(t *testing.T) {
	var out, errb bytes.Buffer
	m := &Main{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Env: map[string]string{"REKEY_ACTOR": "demo-test"}}
	dir := filepath.Join(t.TempDir(), "demo")
	if code := m.Run(t.Context(), []string{"demo", "--with-postgres", "--grace", "1s", "--dir", dir}); code != 2 || !strings.Contains(errb.String(), "--grace 1s: at least 2s") {
		t.Fatalf("exit %d\n%s", code, errb.String())
	}
	if _, err := os.Stat(dir); err == nil {
		t.Error("the demo folder was created")
	}
}
