package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/internal/postgres"
)

// TestHardenInitURLCredentials: item 5. A connection URL whose credentials
// init splices into rekey.yaml's template: a password holding ':' or '@'
// (raw or percent-encoded), sslpassword= and password= query parameters, and
// the libpq keyword form. No fragment of 4 bytes of any credential, raw or
// percent-encoded, may be in rekey.yaml, and a derived template must render
// the same connection parameters as the original value.
func TestHardenInitURLCredentials(t *testing.T) {
	cases := []struct {
		name  string
		key   string // the connection value's key
		value string // its value as written in the .env (double-quoted there)
		pass  string // DATABASE_PASSWORD, or "" for none
		creds []string
		want  string // "derived" or "manual"
	}{
		{"colon in the password", "DATABASE_URL", "postgres://app:Kx7:Qm9:Zt4vR8w@db.internal:5432/atlas", "Kx7:Qm9:Zt4vR8w",
			[]string{"Kx7:Qm9:Zt4vR8w"}, "derived"},
		{"raw @ in the password", "DATABASE_URL", "postgres://app:Jq2@Wn5@Lp8vT3@db.internal:5432/atlas", "Jq2@Wn5@Lp8vT3",
			[]string{"Jq2@Wn5@Lp8vT3"}, "derived"},
		{"percent-encoded @ and :", "DATABASE_URL", "postgres://app:Hv3%40Rb6%3AYc9Ud@db.internal/atlas", "Hv3@Rb6:Yc9Ud",
			[]string{"Hv3@Rb6:Yc9Ud", "Hv3%40Rb6%3AYc9Ud"}, "derived"},
		{"sslpassword in the query", "DATABASE_URL", "postgres://app:Gw7Lm2Px9Qs4@db.internal/atlas?sslmode=verify-full&sslkey=/etc/app/client.key&sslpassword=Tg5Nf8Wd2Ks", "Gw7Lm2Px9Qs4",
			[]string{"Gw7Lm2Px9Qs4", "Tg5Nf8Wd2Ks"}, "manual"},
		{"password in the query", "DATABASE_URL", "postgres://app@db.internal/atlas?sslmode=disable&password=Mz4Bx9Qr7Lw", "Mz4Bx9Qr7Lw",
			[]string{"Mz4Bx9Qr7Lw"}, "derived"},
		{"unmanaged password in the query", "REPLICA_URL", "postgres://ro@replica.internal/atlas?password=Yp3Vc8Hn6Jd", "",
			[]string{"Yp3Vc8Hn6Jd"}, "manual"},
		{"keyword form", "DATABASE_DSN", "host=db.internal port=5432 user=app password=Vb8Nc3Xk5Rp2 dbname=atlas", "Vb8Nc3Xk5Rp2",
			[]string{"Vb8Nc3Xk5Rp2"}, "derived"},
		{"keyword form, quoted password", "DATABASE_DSN", "host=db.internal user=app password='Ws6 Fj2 Dq9' dbname=atlas", "Ws6 Fj2 Dq9",
			[]string{"Ws6 Fj2 Dq9"}, "derived"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			env := hdEnv(t)
			dotenv := c.key + "=\"" + c.value + "\"\nJWT_SECRET=" + hdJWT + "\n"
			if c.pass != "" {
				dotenv += "DATABASE_PASSWORD=\"" + c.pass + "\"\n"
			}
			if err := os.WriteFile(filepath.Join(dir, ".env"), []byte(dotenv), 0o600); err != nil {
				t.Fatal(err)
			}
			out, errs, code := runIn(t, dir, env, "", "init", "--env-file", ".env")
			if code != 0 {
				t.Fatalf("init: exit %d\n%s%s", code, out, errs)
			}
			yaml, err := os.ReadFile(filepath.Join(dir, "rekey.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			var leaked []string
			for _, cred := range c.creds {
				for _, f := range hdFragments(cred) {
					if strings.Contains(string(yaml), f) {
						leaked = append(leaked, f)
					}
				}
				for _, text := range []string{out, errs} {
					if strings.Contains(text, cred) {
						t.Errorf("init printed a credential of %s", c.key)
					}
				}
			}
			if len(leaked) > 0 {
				t.Errorf("rekey.yaml holds %q, fragments of a credential of %s:\n%s", leaked, c.key, yaml)
			}
			var kind string
			for _, line := range strings.Split(out, "\n") {
				if f := strings.Fields(line); len(f) > 1 && f[0] == c.key {
					kind = f[1]
				}
			}
			if kind != c.want {
				t.Errorf("%s is %q, want %s\n%s", c.key, kind, c.want, out)
			}
			if c.want != "derived" {
				return
			}
			// The template renders the value the application had.
			cfg, err := config.Load(filepath.Join(dir, "rekey.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			var tmpl *rekey.Template
			for _, d := range cfg.DerivedFor("production") {
				if d.Name == c.key {
					tmpl = d.Template
				}
			}
			if tmpl == nil {
				t.Fatalf("no derived %s in rekey.yaml:\n%s", c.key, yaml)
			}
			got, err := tmpl.Render(map[string]rekey.Value{"DATABASE_PASSWORD": rekey.NewValueString(c.pass)})
			if err != nil {
				t.Fatal(err)
			}
			// The same connection parameters: for a URL as rekey reads it (the
			// last '@' ends the userinfo, as in net/url; libpq and pgx take the
			// first, so a raw '@' is ambiguous and the template encodes it), for
			// the keyword form as pgx reads it.
			type params struct{ user, password, host, db string }
			parse := func(s string) (params, error) {
				if strings.Contains(s, "://") {
					p, err := postgres.ParseURL(s)
					return params{p.User, string(p.Password), p.Host, p.Database}, err
				}
				p, err := pgconn.ParseConfig(s)
				if err != nil {
					return params{}, err
				}
				return params{p.User, p.Password, p.Host, p.Database}, nil
			}
			want, err := parse(c.value)
			if err != nil {
				t.Fatal(err)
			}
			have, err := parse(got.RevealString())
			if err != nil {
				t.Fatalf("the rendered %s does not parse: %v", c.key, err)
			}
			if have != want {
				t.Errorf("the rendered %s connects as %s@%s/%s (password ok: %v), want %s@%s/%s", c.key,
					have.user, have.host, have.db, have.password == want.password, want.user, want.host, want.db)
			}
		})
	}
}
