package postgres

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

var awkwardPasswords = []string{
	"p@ss:w/rd?#%",
	"with spaces  and\ttab",
	"%41%zz%",
	"a+b=c&d;e,f$g!h*i'j\"k\\l[m]n{o}p|q^r`s~t<u>v",
	"@@@:::///???###",
	"caf\u00e9 \u2603 \U0001F511",
	" leading and trailing ",
}

func TestURLRoundTrip(t *testing.T) {
	for _, pw := range awkwardPasswords {
		for _, p := range []Params{
			{Host: "db.example.com", Port: 5432, Database: "app", User: "app", Password: []byte(pw), SSLMode: "require"},
			{Host: "::1", Port: 6543, Database: "My DB/x", User: `We"ird Us@r:x`, Password: []byte(pw)},
			{Host: "/var/run/postgresql", Database: "app", User: "app", Password: []byte(pw),
				Options: url.Values{"application_name": {"my app"}, "connect_timeout": {"5"}}},
		} {
			u := p.URL()
			if strings.Contains(u, pw) {
				t.Errorf("password not encoded in %q", u)
			}
			got, err := ParseURL(u)
			if err != nil {
				t.Fatalf("ParseURL(URL()) of %v: %v", p, err)
			}
			if !paramsEqual(got, p) {
				t.Errorf("round trip:\n got %#v (pw %q)\nwant %#v (pw %q)\nurl %s", got, got.Password, p, p.Password, u)
			}
			if got.URL() != u {
				t.Errorf("URL not stable: %s vs %s", got.URL(), u)
			}
			// pgx (net/url) reads our URLs the same way.
			if p.Host != "/var/run/postgresql" {
				cfg, err := pgx.ParseConfig(u)
				if err != nil {
					t.Fatalf("pgx cannot parse our URL: %v", err)
				}
				if cfg.Password != pw || cfg.User != p.User || cfg.Database != p.Database || cfg.Host != p.Host {
					t.Errorf("pgx reads %q/%q/%q/%q", cfg.User, cfg.Password, cfg.Database, cfg.Host)
				}
			}
		}
	}
}

func paramsEqual(a, b Params) bool {
	if !bytes.Equal(a.Password, b.Password) || len(a.Options) != len(b.Options) {
		return false
	}
	if len(a.Options) > 0 && !reflect.DeepEqual(a.Options, b.Options) {
		return false
	}
	a.Password, b.Password, a.Options, b.Options, a.scheme, b.scheme = nil, nil, nil, nil, "", ""
	return reflect.DeepEqual(a, b)
}

func TestParseURL(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Params
	}{
		{"postgres://app:s3cret@db:5433/appdb?sslmode=require",
			Params{Host: "db", Port: 5433, Database: "appdb", User: "app", Password: []byte("s3cret"), SSLMode: "require"}},
		{"postgresql://app:p%40ss%3Aw%2Frd%3F%23%25%20x@db/appdb",
			Params{Host: "db", Database: "appdb", User: "app", Password: []byte("p@ss:w/rd?#% x")}},
		// A raw '@' in the password: the last '@' ends the userinfo.
		{"postgres://app:p@ss@db/appdb", Params{Host: "db", Database: "appdb", User: "app", Password: []byte("p@ss")}},
		// '+' is not a space (libpq).
		{"postgres://app:a+b@db", Params{Host: "db", User: "app", Password: []byte("a+b")}},
		// ':' after the first one belongs to the password.
		{"postgres://app:a:b@db", Params{Host: "db", User: "app", Password: []byte("a:b")}},
		{"postgres://app@[2001:db8::1]:6432/x", Params{Host: "2001:db8::1", Port: 6432, Database: "x", User: "app"}},
		{"postgres:///appdb?host=%2Fvar%2Frun%2Fpostgresql&user=app&password=pw%26x&port=5434",
			Params{Host: "/var/run/postgresql", Port: 5434, Database: "appdb", User: "app", Password: []byte("pw&x")}},
		{"postgres://db?ssl=true&application_name=rekey", Params{Host: "db", SSLMode: "require", Options: url.Values{"application_name": {"rekey"}}}},
		{"postgres://", Params{}},
	} {
		got, err := ParseURL(c.in)
		if err != nil {
			t.Errorf("ParseURL(%q): %v", c.in, err)
			continue
		}
		if !paramsEqual(got, c.want) {
			t.Errorf("ParseURL(%q)\n got %#v pw %q\nwant %#v pw %q", c.in, got, got.Password, c.want, c.want.Password)
		}
	}
}

func TestParseURLErrorsNeverQuoteTheURL(t *testing.T) {
	const secret = "Sup3rS3cretPw"
	for _, in := range []string{
		"mysql://u:" + secret + "@h/db",
		"u:" + secret + "@h/db",
		"host=h password=" + secret,
		"postgres://u:" + secret + "@h:99999/db",
		"postgres://u:" + secret + "@h:port/db",
		"postgres://u:" + secret + "%zz@h/db",
		"postgres://u:" + secret + "%4@h/db",
		"postgres://u:" + secret + "@h1,h2/db",
		"postgres://u:" + secret + "#x@h/db",
		"postgres://u:" + secret + "/x@h/db",
		"postgres://u:" + secret + "?x@h/db",
		"postgres://u:" + secret + "@[::1/db",
		"postgres://u:" + secret + "@h/db?sslmode=bogus",
		"postgres://u:" + secret + "@h/db?novalue",
		"postgres://u:" + secret + "\n@h/db",
		"postgres://u@h/db?password=" + secret + "%",
		"postgres://u:" + secret[:5] + ":" + secret[5:] + "@h:1:2/db",
	} {
		_, err := ParseURL(in)
		if err == nil {
			t.Errorf("ParseURL accepted a bad URL (#%d)", len(in))
			continue
		}
		msg := err.Error()
		if strings.Contains(msg, secret) || strings.Contains(msg, secret[:5]) || strings.Contains(msg, secret[5:]) {
			t.Errorf("error quotes the password: %s", msg)
		}
		if !strings.HasPrefix(msg, "postgres: invalid database url: ") {
			t.Errorf("unexpected error text: %s", msg)
		}
	}
}

func TestParamsNeverPrintPassword(t *testing.T) {
	const secret = "Sup3rS3cretPw"
	p := Params{Host: "h", Port: 1, Database: "d", User: "u", Password: []byte(secret), SSLMode: "require"}
	var outs []string
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T %v"} {
		outs = append(outs, fmt.Sprintf(f, p), fmt.Sprintf(f, &p), fmt.Sprintf(f, []Params{p}), fmt.Sprintf(f, struct{ P Params }{p}))
	}
	outs = append(outs, p.String(), p.GoString(), fmt.Sprint(p), fmt.Sprintln(p))
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("connect", "params", p)
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("connect", "params", p)
	outs = append(outs, buf.String())
	j, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	outs = append(outs, string(j))
	hexSecret := fmt.Sprintf("%x", secret)
	for _, o := range outs {
		if strings.Contains(o, secret) || strings.Contains(strings.ToLower(o), hexSecret) || strings.Contains(o, "83 117 112") {
			t.Errorf("password printed: %s", o)
		}
	}
	if !strings.Contains(p.String(), "[redacted]") || !strings.Contains(p.String(), `user="u"`) {
		t.Errorf("String() = %s", p.String())
	}
}

func TestSplitGUCList(t *testing.T) {
	for in, want := range map[string][]string{
		`"$user", public`:         {"$user", "public"},
		`a,b`:                     {"a", "b"},
		`"My Schema", "we""ird"`:  {"My Schema", `we"ird`},
		`""`:                      {""},
		``:                        nil,
		`  spaced ,  "x y"  `:     {"spaced", "x y"},
		`"unterminated`:           {"!"},
		`a b`:                     {"!"},
		`a,`:                      {"!"},
		`"$user", public, "Über"`: {"$user", "public", "Über"},
	} {
		got, ok := splitGUCList(in)
		if len(want) == 1 && want[0] == "!" {
			if ok {
				t.Errorf("splitGUCList(%q) accepted", in)
			}
			continue
		}
		if !ok || !reflect.DeepEqual(got, want) {
			t.Errorf("splitGUCList(%q) = %q %v, want %q", in, got, ok, want)
		}
	}
	if got := gucValueSQL("search_path", `"$user", public, "it's"`); got != `'$user', 'public', 'it''s'` {
		t.Errorf("gucValueSQL = %s", got)
	}
	if got := gucValueSQL("statement_timeout", "5s"); got != "'5s'" {
		t.Errorf("gucValueSQL = %s", got)
	}
}

func TestConnectInvalidParams(t *testing.T) {
	const secret = "Sup3rS3cretPw"
	p := Params{Host: "db.invalid", Port: 5433, User: "app", Password: []byte(secret), SSLMode: "bogus",
		Options: url.Values{"sslpassword": {"KeyPassphrase9"}}}
	_, err := Connect(t.Context(), p)
	if err == nil {
		t.Fatal("bogus sslmode accepted")
	}
	msg := err.Error()
	t.Log(msg)
	if strings.Contains(msg, secret) || strings.Contains(msg, "KeyPassphrase9") || strings.Contains(msg, "cannot parse") ||
		!strings.Contains(msg, "db.invalid:5433") || !strings.Contains(msg, "invalid connection parameters") {
		t.Errorf("error text: %s", msg)
	}
}
