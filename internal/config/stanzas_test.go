package config

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/rekeyhq/rekey"
)

// initConfig is a Config as `rekey init` builds it from the seed's .env.
func initConfig(t *testing.T) *Config {
	dir := t.TempDir()
	return &Config{
		Path: filepath.Join(dir, FileName), Dir: dir, Version: 1,
		Store:        Store{Path: filepath.Join(dir, ".rekey", "rekey.db"), MasterKey: "env"},
		Environments: []Environment{{Name: "production", Targets: []Target{{Name: "app", Type: TargetDotenv, Path: filepath.Join(dir, ".env")}}}},
		Secrets: []rekey.Spec{
			{Name: "DATABASE_PASSWORD", Kind: rekey.KindPostgresPassword, Generator: rekey.PasswordGenerator, Period: 180 * rekey.Day,
				Postgres: &rekey.PostgresSpec{URLFrom: "DATABASE_URL", ChangedBy: "self", Strategy: "single"}},
			{Name: "JWT_SECRET", Kind: rekey.KindGenerated, Generator: rekey.JWTGenerator, Period: 180 * rekey.Day},
			{Name: "ENCRYPTION_KEY", Kind: rekey.KindDataKey, Generator: rekey.DataKeyGenerator, Period: 90 * rekey.Day},
			{Name: "ANTHROPIC_API_KEY", Kind: rekey.KindManual, Period: 90 * rekey.Day},
		},
		Derived: []rekey.Derived{{Name: "DATABASE_URL", Template: mustTemplate(t, "postgres://app:{{ DATABASE_PASSWORD | urlquery }}@localhost:5432/atlas")}},
	}
}

var reStanzaLine = regexp.MustCompile(`^(\s*)# `)

// stanzas returns the runs of "# " lines of text (0-based line ranges).
func stanzas(lines []string) [][2]int {
	var out [][2]int
	start := -1
	for i := 0; i <= len(lines); i++ {
		in := i < len(lines) && reStanzaLine.MatchString(lines[i]) && !strings.HasPrefix(strings.TrimSpace(lines[i]), "# rekey.yaml") &&
			!strings.HasPrefix(strings.TrimSpace(lines[i]), "# It names") && !strings.HasPrefix(strings.TrimSpace(lines[i]), "# holds no")
		switch {
		case in && start < 0:
			start = i
		case !in && start >= 0:
			out = append(out, [2]int{start, i})
			start = -1
		}
	}
	return out
}

// uncomment removes the leading "# " of lines [from, to).
func uncomment(lines []string, r [2]int) string {
	out := append([]string(nil), lines...)
	for i := r[0]; i < r[1]; i++ {
		out[i] = reStanzaLine.ReplaceAllString(out[i], "$1")
	}
	return strings.Join(out, "\n")
}

// TestStanzasUncomment: every stanza init writes, uncommented alone or all
// together, gives a rekey.yaml that parses, and declares what it says.
func TestStanzasUncomment(t *testing.T) {
	cols := map[string]DetectedColumns{"ENCRYPTION_KEY": {Columns: []string{"patients.email", "billing.card_number"}, Encoding: "base64", KeyID: true, Opened: true, Notes: []string{"found by --detect-columns"}}}
	for name, s := range map[string]Suggestions{
		"systemd": {ServiceName: "atlas", Systemd: "atlas.service", Found: "/etc/systemd/system/atlas.service", DatabaseURL: "DATABASE_URL", Port: "8080", Columns: cols, ColumnsNote: "sampled 4 columns"},
		"compose": {ServiceName: "atlas", ComposeFile: "docker-compose.yml", ComposeService: "atlas", Found: "docker-compose.yml", DatabaseURL: "DATABASE_URL"},
		"user":    {ServiceName: "atlas", Systemd: "atlas.service", SystemdUser: true, Found: "~/.config/systemd/user/atlas.service"},
		"nothing": {},
		"no-db":   {Port: "3000"},
	} {
		t.Run(name, func(t *testing.T) {
			c := initConfig(t)
			cm := Stanzas(c, s)
			out, err := MarshalWith(c, cm)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(string(out), "\n")
			found := stanzas(lines)
			want := map[string]bool{"services": true, "sessions": true}
			if s.DatabaseURL != "" || s.Port != "" {
				want["checks"] = true
			}
			if s.DatabaseURL != "" {
				want["reencrypt"] = true
			}
			seen := map[string]bool{}
			all := lines
			for _, r := range found {
				first := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(lines[r[0]]), "#"))
				kind := strings.TrimSuffix(first, ":")
				seen[kind] = true
				text := uncomment(lines, r)
				got, err := Parse(c.Path, []byte(text))
				if err != nil {
					t.Fatalf("uncommenting %s: %v\n%s", kind, err, text)
				}
				declares(t, kind, got)
				all = strings.Split(uncomment(all, r), "\n")
			}
			if diff := cmp.Diff(want, seen); diff != "" {
				t.Errorf("stanzas (-want +got):\n%s\n%s", diff, out)
			}
			allText := []byte(strings.Join(all, "\n"))
			c2, err := Parse(c.Path, allText)
			if err != nil {
				t.Fatalf("uncommenting every stanza: %v\n%s", err, allText)
			}
			// rekey's own rewrite of the uncommented file keeps every note.
			kept2, lost2 := KeptComments(allText)
			if lost2 != 0 {
				t.Errorf("after uncommenting, a rewrite loses %d comment lines of\n%s", lost2, allText)
			}
			again2, err := MarshalWith(c2, kept2)
			if err != nil {
				t.Fatal(err)
			}
			if k3, _ := KeptComments(again2); !cmp.Equal(k3, kept2) {
				t.Errorf("the rewrite of the uncommented file moved comments:\n%s\n--- rewritten\n%s", allText, again2)
			}
			// Rewriting the file keeps every stanza and loses nothing.
			kept, lost := KeptComments(out)
			if lost != 0 {
				t.Errorf("KeptComments: %d lines lost of\n%s", lost, out)
			}
			again, err := MarshalWith(c, kept)
			if err != nil {
				t.Fatal(err)
			}
			if string(again) != string(out) {
				t.Errorf("a rewrite changed the file:\n--- first\n%s\n--- rewritten\n%s", out, again)
			}
		})
	}
}

// declares checks that the config parsed from an uncommented stanza has it.
func declares(t *testing.T, kind string, c *Config) {
	t.Helper()
	ok := false
	switch kind {
	case "services":
		ok = len(c.Services) == 1 && c.Services[0].ConsumesAll
	case "checks":
		ok = len(c.Checks) > 0
	case "sessions":
		sp, _ := c.Secret("JWT_SECRET")
		ok = sp.Sessions != nil && sp.Sessions.Mode == rekey.SessionsGraceful && sp.Sessions.Grace == rekey.Day
	case "reencrypt":
		sp, _ := c.Secret("ENCRYPTION_KEY")
		ok = sp.Reencrypt != nil && sp.Reencrypt.Database == "DATABASE_URL" && len(sp.Reencrypt.Columns) > 0
	default:
		t.Errorf("unexpected stanza %q", kind)
		return
	}
	if !ok {
		t.Errorf("uncommented %s stanza does not declare it", kind)
	}
}

// TestKeptComments: the blocks at the end of a secret and of the file are
// kept by a rewrite; a comment anywhere else is counted as lost.
func TestKeptComments(t *testing.T) {
	c := initConfig(t)
	out, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(out), "    kind: data-key\n", "    # about the kind\n    kind: data-key\n", 1)
	text = strings.Replace(text, "  ANTHROPIC_API_KEY:\n", "    # end of the key\n\n    #   of ENCRYPTION_KEY\n  # before ANTHROPIC\n  ANTHROPIC_API_KEY:\n", 1)
	text = strings.Replace(text, "\nderived:\n", "\n# about derived\n#\nderived:\n", 1)
	text = strings.Replace(text, "    remind_every: 90d\n", "    remind_every: 90d  # inline\n", 1)
	text += "\n# my notes\n#   more\n"
	cm, lost := KeptComments([]byte(text))
	want := Comments{Secrets: map[string][]string{"ENCRYPTION_KEY": {"# end of the key", "", "#   of ENCRYPTION_KEY"}}, Before: map[string][]string{"derived": {"# about derived", "#"}, "secrets.ENCRYPTION_KEY.kind": {"# about the kind"}}, Trailer: []string{"# my notes", "#   more"}}
	if diff := cmp.Diff(want, cm); diff != "" {
		t.Errorf("KeptComments (-want +got):\n%s", diff)
	}
	if lost != 2 {
		t.Errorf("lost = %d, want 2 (before ANTHROPIC, inline)", lost)
	}
	// What is kept is written back where it was.
	back, err := MarshalWith(c, cm)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"    # about the kind\n    kind: data-key\n", "    # end of the key\n\n    #   of ENCRYPTION_KEY\n\n  ANTHROPIC_API_KEY:", "\n\n# about derived\n#\nderived:\n", "\n\n# my notes\n#   more\n"} {
		if !strings.Contains(string(back), want) {
			t.Errorf("rewritten text lacks %q:\n%s", want, back)
		}
	}
	if _, err := MarshalWith(c, Comments{Trailer: []string{"services: {}"}}); err == nil {
		t.Error("MarshalWith accepted a comment line that is not a comment")
	}
}
