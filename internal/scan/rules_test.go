package scan

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const upper27 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"

// samples returns, per built-in rule, a generated (fake, random) secret and
// a line planting it.
func samples(r *rand.Rand) map[string][2]string {
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	jwt := "eyJ" + b64(`{"alg":"HS256","typ":"JWT"}`)[3:] + "." + b64(`{"sub":"`+randString(r, 12, alnum)+`","iat":1700000000}`) + "." + randString(r, 43, alnum+"-_")
	pw := randString(r, 20, alnum) + "7q"
	out := map[string][2]string{}
	add := func(id, secret, line string) { out[id] = [2]string{secret, strings.ReplaceAll(line, "%s", secret)} }
	add("aws-access-token", "AKIA"+randString(r, 16, upper27), "aws_access_key_id = %s\n")
	add("github-pat", "ghp_"+randString(r, 36, alnum), "git clone https://%s@github.com/o/r\n")
	add("github-fine-grained-pat", "github_pat_"+randString(r, 82, alnum+"_"), "GH=%s\n")
	add("gitlab-pat", "glpat-"+randString(r, 20, alnum), "export CI_TOKEN_X=%s\n")
	add("anthropic-api-key", "sk-ant-api03-"+randString(r, 93, alnum+"-_")+"AA", "client = Anthropic(api_key='%s')\n")
	add("openai-api-key", "sk-proj-"+randString(r, 48, alnum), "openai.api_key = \"%s\"\n")
	add("slack-token", "xoxb-"+randString(r, 12, "0123456789")+"-"+randString(r, 24, alnum), "slack: %s\n")
	add("private-key", "-----BEGIN RSA PRIVATE KEY-----", "%s\nMIIEpAIBAAKCAQEA"+randString(r, 40, alnum)+"\n-----END RSA PRIVATE KEY-----\n")
	add("jwt", jwt, "Authorization: Bearer %s\n")
	add("generic-secret", pw, "DB_PASSWORD=%s\n")
	return out
}

func ruleScan(t *testing.T, files map[string]string, rs *RuleSet, secrets ...Secret) []Finding {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m := NewMatcher(secrets)
	m.SetRules(rs)
	fs, err := ScanDir(context.Background(), dir, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

// noWhole fails if any finding, printed every way, holds a whole secret.
func noWhole(t *testing.T, fs []Finding, secrets ...string) {
	t.Helper()
	b, _ := json.Marshal(fs)
	for _, s := range secrets {
		if bytes.Contains(b, []byte(s)) {
			t.Fatalf("a finding holds a whole secret")
		}
	}
}

func TestBuiltinRules(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for id, s := range samples(r) {
		t.Run(id, func(t *testing.T) {
			fs := ruleScan(t, map[string]string{"conf/app.txt": "# settings\n" + s[1]}, DefaultRules())
			if len(fs) != 1 || fs[0].Rule != id || fs[0].Path != "conf/app.txt" || fs[0].Line != 2 || fs[0].Secret != "" {
				t.Fatalf("want one %s finding at conf/app.txt:2, got %+v", id, fs)
			}
			if !strings.HasSuffix(fs[0].Redacted, "chars)") {
				t.Fatalf("redacted = %q", fs[0].Redacted)
			}
			noWhole(t, fs, s[0])
		})
	}
	// Several names and syntaxes of the generic rule.
	for _, line := range []string{`"client_secret": "%s"`, `apiKey: %s`, `AUTH_TOKEN := "%s"`, `my.password => '%s'`} {
		v := randString(r, 24, alnum) + "9"
		fs := ruleScan(t, map[string]string{"a.txt": strings.ReplaceAll(line, "%s", v) + "\n"}, DefaultRules())
		if len(fs) != 1 || fs[0].Rule != "generic-secret" {
			t.Fatalf("%s: got %+v", line, fs)
		}
		noWhole(t, fs, v)
	}
}

func TestBuiltinRulesCleanControl(t *testing.T) {
	clean := `package main
// A README-like file with near misses: placeholders, references, low entropy.
const API_KEY = "${API_KEY}"
DB_PASSWORD=changeme
token: process.env.TOKEN_VALUE_FROM_ENV1
SECRET_KEY={{ .Values.secretKey1234567 }}
aws_access_key_id = AKIAAAAAAAAAAAAAAAAA
openai: sk-short
password = aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa11
github: ghp_tooShort
-----BEGIN PUBLIC KEY-----
header: eyJhbGciOi.notajwt
the key to success is a long sentence without any digits at all
  master_key: file:~/.config/rekey/keys/atlas-mk_5e2e50dc20a4062a.key
`
	if fs := ruleScan(t, map[string]string{"main.go": clean}, DefaultRules()); len(fs) != 0 {
		t.Fatalf("clean control: %d findings %+v", len(fs), fs)
	}
}

func TestRulesManagedReportedOnce(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	v := "ghp_" + randString(r, 36, alnum)
	fs := ruleScan(t, map[string]string{"a.env": "GITHUB_TOKEN=" + v + "\n"}, DefaultRules(), secret("GITHUB_TOKEN", v))
	if len(fs) != 1 || fs[0].Secret != "GITHUB_TOKEN" || fs[0].Rule != "" {
		t.Fatalf("want one managed finding, got %+v", fs)
	}
}

func TestInlineAllow(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	s := samples(r)
	gh, aws := s["github-pat"][0], s["aws-access-token"][0]
	managed := "rk_" + randString(r, 29, alnum)
	data := "x = " + gh + " # rekey:allow\ny = " + aws + " // gitleaks:allow\nz = " + managed + " # rekey:allow\nw = " + aws + "\n"
	fs := ruleScan(t, map[string]string{"f.txt": data}, DefaultRules(), secret("M", managed))
	if len(fs) != 1 || fs[0].Line != 4 || fs[0].Rule != "aws-access-token" {
		t.Fatalf("want only line 4, got %+v", fs)
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadRulesGitleaks(t *testing.T) {
	p := writeFile(t, "gitleaks.toml", `
title = "custom"

[extend]
useDefault = true
disabledRules = ["jwt", "generic-secret"]

[allowlist]
description = "global"
paths = ['''(^|/)testdata/''']

[[rules]]
id = "acme-api-key"
description = "ACME API key"
regex = '''(?i)acme[_-]?key\s*[:=]\s*['"]?(acme_[a-z0-9]{24})'''
secretGroup = 1
entropy = 3.0
keywords = ["ACME"]
tags = ["key"]
  [rules.allowlist]
  regexTarget = "line"
  regexes = ['''example\.com''']
  stopwords = ["zzzzzz"]

[[rules]]
id = "only-in-yaml"
regex = '''internal-([0-9a-f]{32})'''
path = '''\.ya?ml$'''

[[rules]]
id = "pkcs12"
path = '''\.p12$'''
`)
	rs, err := LoadRules(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := rs.Rule("jwt"); ok {
		t.Fatal("disabled rule kept")
	}
	if _, ok := rs.Rule("github-pat"); !ok {
		t.Fatal("useDefault: built-in rules missing")
	}
	if len(rs.Skipped) != 1 || rs.Skipped[0] != "pkcs12" {
		t.Fatalf("skipped = %v", rs.Skipped)
	}
	r := rand.New(rand.NewPCG(17, 18))
	key := "acme_" + randString(r, 24, "abcdefghijklmnopqrstuvwxyz0123456789")
	hexv := randString(r, 32, "0123456789abcdef")
	stop := "acme_" + randString(r, 10, "abcdefghij0123456789") + "zzzzzz" + randString(r, 8, "abcdefghij0123456789")
	files := map[string]string{
		"app.cfg":          "ACME_KEY=" + key + "\n",
		"doc.md":           "acme-key: " + key + " see example.com\n", // allowed: line regex
		"stop.cfg":         "acme_key = " + stop + "\n",               // allowed: stopword
		"testdata/fixture": "acme_key: " + key + "\n",                 // allowed: global path
		"deploy.yaml":      "id: internal-" + hexv + "\n",
		"deploy.txt":       "id: internal-" + hexv + "\n", // rule path: yaml only
		"ghp.txt":          s0(samples(r), "github-pat"),
		"jwt.txt":          s0(samples(r), "jwt"), // disabled
	}
	fs := ruleScan(t, files, rs)
	var got []string
	for _, f := range fs {
		got = append(got, f.Rule+"@"+f.Path)
	}
	want := "acme-api-key@app.cfg only-in-yaml@deploy.yaml github-pat@ghp.txt"
	if strings.Join(got, " ") != want {
		t.Fatalf("got %v, want %s", got, want)
	}
	noWhole(t, fs, key, hexv)
}

func s0(s map[string][2]string, id string) string { return s[id][1] }

func TestLoadRulesErrors(t *testing.T) {
	for name, tc := range map[string]struct{ toml, want string }{
		"lookahead": {"[[rules]]\nid = \"pcre-rule\"\nregex = '''secret(?=[A-Z]{10})'''\n", `rule "pcre-rule": regex does not compile`},
		"backref":   {"[[rules]]\nid = \"br\"\nregex = '''(a)\\1'''\n", `rule "br": regex does not compile`},
		"allow":     {"[[rules]]\nid = \"al\"\nregex = 'x'\n[rules.allowlist]\nregexes = ['(?<=a)b']\n", `rule "al": allowlist regex does not compile`},
		"group":     {"[[rules]]\nid = \"g\"\nregex = 'a(b)'\nsecretGroup = 2\n", `rule "g": secretGroup 2`},
		"noid":      {"[[rules]]\nregex = 'a'\n", `rule #1 has no id`},
		"syntax":    {"[[rules]\nid=", `rules file`},
	} {
		t.Run(name, func(t *testing.T) {
			p := writeFile(t, "bad.toml", tc.toml)
			_, err := LoadRules(p)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
				t.Fatalf("err = %v, want %q and the file name", err, tc.want)
			}
			if re, ok := err.(*RuleError); ok && strings.Contains(tc.want, "compile") && !strings.Contains(re.Hint, "RE2") {
				t.Fatalf("hint = %q", re.Hint)
			}
		})
	}
}

func TestRulesInHistory(t *testing.T) {
	rp := newRepo(t)
	r := rand.New(rand.NewPCG(19, 20))
	s := samples(r)
	tok := s["slack-token"]
	rp.write("notes.txt", "hello\n"+tok[1])
	rp.git("add", "notes.txt")
	rp.git("commit", "-q", "-m", "leak")
	rp.git("rm", "-q", "notes.txt")
	rp.git("commit", "-q", "-m", "remove")
	m := NewMatcher(nil)
	m.SetRules(DefaultRules())
	var calls int
	fs, err := ScanRepo(context.Background(), rp.dir, m, Options{History: true, Progress: func(done, total int64) {
		calls++
		if done > total {
			t.Errorf("progress %d of %d", done, total)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 1 || fs[0].Rule != "slack-token" || fs[0].Where != WhereCommit || fs[0].Path != "notes.txt" || fs[0].Line != 2 {
		t.Fatalf("got %+v", fs)
	}
	if calls == 0 {
		t.Fatal("no progress")
	}
	id := FindingID(fs[0])
	if id != fs[0].Commit+":notes.txt:slack-token:2" {
		t.Fatalf("id = %q", id)
	}
	noWhole(t, fs, tok[0])
}
