package main

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rekeyhq/rekey/internal/sshtest"
)

// TestSSHTargets: an environment with a local .env and two .env files on
// other hosts (real sshd servers, type: ssh targets). A rotation publishes
// to all three, every other byte of each kept; a hand edit of the managed
// key on one host is drift: the next rotation refuses before writing
// anywhere, and the edited file stays as the person left it; a changed
// host key is refused the same way. No value in any output.
func TestSSHTargets(t *testing.T) {
	web1, web2 := sshtest.Start(t, "web1"), sshtest.Start(t, "web2")
	v1 := ctRandB64(48, base64.StdEncoding)
	remote := func(s *sshtest.Server) string { return filepath.Join(s.Home, ".env") }
	for _, s := range []*sshtest.Server{web1, web2} {
		if err := os.WriteFile(remote(s), []byte("# on "+s.Name+"\nJWT_SECRET="+v1+"\nWORKERS=4\n"), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	p := ctInitProject(t, t.TempDir(), ".env", "ssh-targets", "JWT_SECRET="+v1+"\nRUST_LOG=info\n")
	p.env = append(p.env, "REKEY_SSH_CONFIG="+sshtest.ClientConfig(t, t.TempDir(), web1, web2))
	cfg := filepath.Join(p.dir, "rekey.yaml")
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	local := "      app: {type: dotenv, path: .env}\n"
	hosts := local + "      web1: {type: ssh, host: \"" + web1.Dest() + "\", path: " + remote(web1) + "}\n" +
		"      web2: {type: ssh, host: \"" + web2.Dest() + "\", path: " + remote(web2) + "}\n"
	if !strings.Contains(string(raw), local) {
		t.Fatalf("rekey.yaml has no local target line:\n%s", raw)
	}
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(raw), local, hosts, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	var outputs []string
	run := func(want int, args ...string) ctResult {
		t.Helper()
		r := p.run(args...)
		outputs = append(outputs, r.stdout, r.stderr)
		if r.code != want || r.sig != 0 {
			t.Fatalf("want exit %d: %v", want, r)
		}
		return r
	}
	run(0, "config", "trust")
	run(0, "rotate", "JWT_SECRET")
	v2 := p.get(2)
	for _, s := range []*sshtest.Server{web1, web2} {
		got, _ := os.ReadFile(remote(s))
		if string(got) != "# on "+s.Name+"\nJWT_SECRET="+v2+"\nWORKERS=4\n" {
			t.Errorf("%s after the rotation: %q", s.Name, got)
		}
		if fi, _ := os.Stat(remote(s)); fi.Mode().Perm() != 0o640 {
			t.Errorf("%s: mode %04o, want 0640 kept", s.Name, fi.Mode().Perm())
		}
	}
	if v, _ := ctEnvValue(p.readEnv(), "JWT_SECRET"); v != v2 {
		t.Error("the local .env does not hold the new value")
	}

	// A hand edit of the managed key on web2: drift, refused before any write.
	edited := "# on web2\nJWT_SECRET=typed-by-hand-on-web2\nWORKERS=4\n"
	if err := os.WriteFile(remote(web2), []byte(edited), 0o640); err != nil {
		t.Fatal(err)
	}
	r := run(4, "rotate", "JWT_SECRET")
	if !strings.Contains(r.stderr, "web2") {
		t.Errorf("the drift does not name web2:\n%s", r.stderr)
	}
	if got, _ := os.ReadFile(remote(web2)); string(got) != edited {
		t.Errorf("web2's hand edit was overwritten: %q", got)
	}
	if got, _ := os.ReadFile(remote(web1)); !strings.Contains(string(got), "JWT_SECRET="+v2+"\n") {
		t.Errorf("web1 changed by a refused rotation: %q", got)
	}
	if err := os.WriteFile(remote(web2), []byte("# on web2\nJWT_SECRET="+v2+"\nWORKERS=4\n"), 0o640); err != nil {
		t.Fatal(err)
	}

	// web1's host key changed: refused, nothing written.
	web1.Impersonate(t)
	r = run(5, "rotate", "JWT_SECRET")
	if !strings.Contains(r.stderr, "web1") || !strings.Contains(r.stderr, "CHANGED") {
		t.Errorf("a changed host key is not named:\n%s", r.stderr)
	}
	for _, s := range []*sshtest.Server{web1, web2} {
		if got, _ := os.ReadFile(remote(s)); !strings.Contains(string(got), "JWT_SECRET="+v2+"\n") {
			t.Errorf("%s changed although web1's host key was refused: %q", s.Name, got)
		}
	}
	all := strings.Join(outputs, "\n")
	for _, v := range []string{v1, v2} {
		if strings.Contains(all, v) {
			t.Fatal("a value in an output")
		}
	}
}
