package app

import (
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rekeyhq/rekey"
)

// newInitRun is an initRun for project folder dir/name with the .env
// values given, and HOME at home.
func newInitRun(t *testing.T, proj, home string, values map[string]string) *initRun {
	t.Helper()
	if err := os.MkdirAll(proj, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &Session{Opts: Options{Dir: proj, Getenv: func(k string) string {
		if k == "HOME" {
			return home
		}
		return ""
	}}}
	var keys []string
	for k := range values {
		keys = append(keys, k)
	}
	return &initRun{s: s, projDir: proj, envPath: filepath.Join(proj, ".env"), values: values, classes: rekey.Classify(keys, values)}
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestFindService: a system unit named after the project comes first, then
// a user unit, then a compose service named after the project, then the
// compose service whose env_file is the .env; else nothing.
func TestFindService(t *testing.T) {
	dir, home := t.TempDir(), t.TempDir()
	units := filepath.Join(dir, "units")
	old := SystemUnitDirs
	SystemUnitDirs = []string{units}
	t.Cleanup(func() { SystemUnitDirs = old })

	cases := []struct {
		name, project string
		files         map[string]string // relative to dir (the project is dir/project), or home/...
		want          string            // ServiceName/Systemd|Compose/user
	}{
		{"system unit", "atlas", map[string]string{"units/atlas.service": "", "home/.config/systemd/user/atlas.service": ""}, "atlas systemd atlas.service user=false"},
		{"user unit", "beta", map[string]string{"home/.config/systemd/user/beta.service": "", "beta/compose.yaml": "services:\n  beta: {image: x}\n"}, "beta systemd beta.service user=true"},
		{"compose by name", "gamma", map[string]string{"gamma/compose.yaml": "services:\n  web: {image: x, env_file: .env}\n  gamma: {image: y}\n"}, "gamma compose compose.yaml/gamma user=false"},
		{"compose by env_file", "delta", map[string]string{"delta/docker-compose.yml": "services:\n  db: {image: postgres}\n  api:\n    image: x\n    env_file:\n      - path: ./.env\n        required: true\n"}, "api compose docker-compose.yml/api user=false"},
		{"nothing", "eps", map[string]string{"eps/compose.yaml": "services:\n  db: {image: postgres}\n"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for p, data := range tc.files {
				if rest, ok := strings.CutPrefix(p, "home/"); ok {
					write(t, filepath.Join(home, rest), data)
				} else {
					write(t, filepath.Join(dir, p), data)
				}
			}
			r := newInitRun(t, filepath.Join(dir, tc.project), home, map[string]string{"PORT": "8080"})
			s, err := r.suggestions(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			switch {
			case s.Systemd != "":
				got = s.ServiceName + " systemd " + s.Systemd
			case s.ComposeService != "":
				got = s.ServiceName + " compose " + s.ComposeFile + "/" + s.ComposeService
			}
			if got != "" {
				got += " user=" + map[bool]string{true: "true", false: "false"}[s.SystemdUser]
			}
			if got != tc.want {
				t.Errorf("found %q, want %q", got, tc.want)
			}
			if s.Port != "8080" {
				t.Errorf("Port %q", s.Port)
			}
		})
	}
}

// TestDatabaseURLName: DATABASE_URL when the .env has it; else the first
// PostgreSQL URL that is not an admin's; never a value that is not a URL.
func TestDatabaseURLName(t *testing.T) {
	pw := "Zm9vYmFyYmF6cXV4LV9mb29iYXJiYXpx"
	for _, tc := range []struct {
		values map[string]string
		want   string
	}{
		{map[string]string{"DATABASE_URL": "postgres://app:" + pw + "@db/atlas", "DATABASE_PASSWORD": pw}, "DATABASE_URL"},
		{map[string]string{"PG_ADMIN_URL": "postgres://admin:" + pw + "x@db/atlas", "APP_DB_URL": "postgresql://app:" + pw + "@db/atlas", "DATABASE_PASSWORD": pw}, "APP_DB_URL"},
		{map[string]string{"REDIS_URL": "redis://:" + pw + "@cache", "DATABASE_PASSWORD": pw}, ""},
	} {
		r := newInitRun(t, filepath.Join(t.TempDir(), "p"), t.TempDir(), tc.values)
		if got := r.databaseURLName(); got != tc.want {
			t.Errorf("%v: %q, want %q", tc.values, got, tc.want)
		}
	}
}

// TestCipherShape: the heuristic of --detect-columns (initpostgres.go).
func TestCipherShape(t *testing.T) {
	random := func(n int) []byte {
		b := make([]byte, n)
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	b64 := func(b []byte) []byte { return []byte(base64.StdEncoding.EncodeToString(b)) }
	urlsafe := func() []byte { // random bytes whose base64url has a - or _
		for {
			s := base64.RawURLEncoding.EncodeToString(random(40))
			for _, c := range s {
				if c == '-' || c == '_' {
					return []byte(s)
				}
			}
		}
	}
	headed := append([]byte("rki\x01abcd"), random(40)...)
	for _, tc := range []struct {
		name  string
		vals  [][]byte
		bytea bool
		want  bool
		enc   string
		keyID bool
	}{
		{"base64 ciphertexts", [][]byte{b64(random(40)), b64(random(60))}, false, true, "base64", false},
		{"base64url", [][]byte{urlsafe()}, false, true, "base64url", false},
		{"key-id header", [][]byte{b64(headed)}, false, true, "base64", true},
		{"bytea", [][]byte{random(44)}, true, true, "bytea", false},
		{"base64 of text", [][]byte{b64([]byte("a plain note about a patient, in base64"))}, false, false, "", false},
		{"one value of text", [][]byte{b64(random(40)), []byte("hello")}, false, false, "", false},
		{"too short", [][]byte{b64(random(27))}, false, false, "", false},
		{"hex digest", [][]byte{[]byte("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")}, false, false, "", false},
		{"fernet", [][]byte{[]byte("gAAAAABl" + string(b64(random(60))))}, false, false, "", false},
		{"bytea text", [][]byte{[]byte("plain text stored as bytea, long enough")}, true, false, "", false},
		{"no value", nil, false, false, "", false},
	} {
		enc, keyID, ok := cipherShape(tc.vals, tc.bytea)
		if ok != tc.want || enc != tc.enc || keyID != tc.keyID {
			t.Errorf("%s: cipherShape = %q, %v, %v; want %q, %v, %v", tc.name, enc, keyID, ok, tc.enc, tc.keyID, tc.want)
		}
	}
}
