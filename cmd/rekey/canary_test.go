package main

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestCanary runs every command and greps every output and file for every
// managed value, old and new.
func TestCanary(t *testing.T) {
	dir := t.TempDir()
	home := t.TempDir()
	env := map[string]string{"REKEY_MASTER_KEY": "", "XDG_CONFIG_HOME": home, "REKEY_ACTOR": "canary"}
	pw := "Q2FuYXJ5UGFzc3dvcmQtZm9yLWRi_canary1"
	initial := map[string]string{
		"DATABASE_PASSWORD": pw,
		"JWT_SECRET":        base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("canary-jwt-secret!"), 4)),
		"ENCRYPTION_KEY":    base64.StdEncoding.EncodeToString([]byte("canary-encryption-key-32-bytes!!")),
		"ANTHROPIC_API_KEY": "sk-ant-api03-canaryCANARYcanaryCANARYcanary",
	}
	dotenv := "# app\nDATABASE_URL=postgres://postgres:" + pw + "@localhost:5432/atlas\n"
	for _, k := range []string{"DATABASE_PASSWORD", "JWT_SECRET", "ENCRYPTION_KEY", "ANTHROPIC_API_KEY"} {
		dotenv += k + "=" + initial[k] + "\n"
	}
	dotenv += "RUST_LOG=info\n"
	if err := os.WriteFile(filepath.Join(dir, ".env"), []byte(dotenv), 0o600); err != nil {
		t.Fatal(err)
	}

	type call struct {
		args      []string
		stdin     string
		mayReveal bool // get and run's child print values by design
	}
	calls := []call{
		{args: []string{"init", "--env-file", ".env"}},
		{args: []string{"status"}},
		{args: []string{"status", "--json"}},
		{args: []string{"rotate", "JWT_SECRET"}},
		{args: []string{"rotate", "--all"}},
		{args: []string{"rotate", "JWT_SECRET", "--dry-run"}},
		{args: []string{"set", "ANTHROPIC_API_KEY"}, stdin: "sk-ant-api03-newCANARYnewCANARYnewCANARY00\n"},
		{args: []string{"rollback", "JWT_SECRET"}},
		{args: []string{"history", "JWT_SECRET"}},
		{args: []string{"history", "ANTHROPIC_API_KEY"}},
		{args: []string{"get", "JWT_SECRET"}, mayReveal: true},
		{args: []string{"get", "ANTHROPIC_API_KEY", "--version", "1"}, mayReveal: true},
		{args: []string{"run", "--", "sh", "-c", "echo $JWT_SECRET $DATABASE_URL"}, mayReveal: true},
		{args: []string{"run", "--", "sh", "-c", "exit 0"}},
		{args: []string{"report"}},
		{args: []string{"report", "--format", "json"}},
		{args: []string{"audit"}},
		{args: []string{"audit", "--json"}},
		{args: []string{"audit", "verify"}},
		{args: []string{"recover"}},
		{args: []string{"rotate", "ENCRYPTION_KEY"}},    // refused
		{args: []string{"rotate", "DATABASE_PASSWORD"}}, // refused
		{args: []string{"get", "NOPE"}},
		{args: []string{"master", "rotate"}},
		{args: []string{"status"}},
	}
	type output struct {
		name, text string
	}
	var outputs []output
	for _, c := range calls {
		stdout, stderr, code := runIn(t, dir, env, c.stdin, c.args...)
		t.Logf("rekey %s: exit %d", strings.Join(c.args, " "), code)
		if !c.mayReveal {
			outputs = append(outputs, output{"stdout of rekey " + strings.Join(c.args, " "), stdout})
		}
		outputs = append(outputs, output{"stderr of rekey " + strings.Join(c.args, " "), stderr})
	}

	// Every value the store has ever held, in every environment (from get --version).
	var values []string
	for _, name := range []string{"DATABASE_PASSWORD", "JWT_SECRET", "ENCRYPTION_KEY", "ANTHROPIC_API_KEY"} {
		for n := 1; ; n++ {
			stdout, _, code := runIn(t, dir, env, "", "get", name, "--version", itoa(n), "-n")
			if code != 0 {
				break
			}
			values = append(values, stdout)
		}
	}
	for _, v := range initial {
		values = append(values, v)
	}
	if len(values) < 10 {
		t.Fatalf("only %d managed values found; rotations did not happen", len(values))
	}

	// Files of the project other than the .env, and the key folder.
	var files []string
	for _, root := range []string{dir, home} {
		filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && p != filepath.Join(dir, ".env") {
				files = append(files, p)
			}
			return nil
		})
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		outputs = append(outputs, output{"file " + f, string(b)})
	}
	for _, o := range outputs {
		for _, v := range values {
			for _, form := range forms(v) {
				if strings.Contains(o.text, form) {
					t.Errorf("%s contains a managed value (len %d)", o.name, len(v))
				}
			}
		}
	}
	// The .env holds the current values (it is where they belong).
	data, _ := os.ReadFile(filepath.Join(dir, ".env"))
	cur, _, _ := runIn(t, dir, env, "", "get", "JWT_SECRET", "-n")
	if !strings.Contains(string(data), "JWT_SECRET="+cur+"\n") {
		t.Errorf(".env does not hold the current JWT_SECRET")
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestCanaryChildEnv extends the canary to the environments of the
// processes rekey starts: an on_rotate hook, a service's restart and status
// commands, a command check (in a rotation and in rekey verify) and rekey
// run's command each dump their environment to a file. With rekey's key
// material (REKEY_MASTER_KEY, REKEY_PASSPHRASE, REKEY_NEW_*) given through
// Main.Env or through the process's real environment, no dump holds it, and
// only run's command holds managed values: the current ones, by design.
func TestCanaryChildEnv(t *testing.T) {
	for _, where := range []string{"Main.Env", "environment"} {
		t.Run(where, func(t *testing.T) {
			dir := t.TempDir()
			keys := tpKeyVars()
			env := map[string]string{"XDG_CONFIG_HOME": t.TempDir(), "REKEY_ACTOR": "canary"}
			for k, v := range keys {
				if where == "Main.Env" {
					env[k] = v
				} else {
					t.Setenv(k, v)
				}
			}
			dotenv := "JWT_SECRET=" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte("canary-child-env!"), 4)) + "\n" +
				"ANTHROPIC_API_KEY=sk-ant-api03-childCANARYchildCANARYchild\n"
			if err := os.WriteFile(filepath.Join(dir, ".env"), []byte(dotenv), 0o600); err != nil {
				t.Fatal(err)
			}
			must := func(stdin string, args ...string) string {
				t.Helper()
				stdout, stderr, code := runIn(t, dir, env, stdin, args...)
				if code != 0 {
					t.Fatalf("rekey %s: exit %d\n%s%s", strings.Join(args, " "), code, stdout, stderr)
				}
				return stdout
			}
			must("", "init", "--env-file", ".env")
			// Key material in the .env itself (put there by mistake), and a
			// key rekey does not manage: run passes the .env's other keys,
			// never these.
			inFile := tpKeyVars()
			f, err := os.OpenFile(filepath.Join(dir, ".env"), os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range sortedKeys(inFile) {
				fmt.Fprintf(f, "%s=%s\n", k, inFile[k])
			}
			fmt.Fprintf(f, "CANARY_PLAIN=plain-from-the-env-file\n")
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			allKeys := maps.Clone(keys)
			for k, v := range inFile {
				allKeys[k+" (in the .env)"] = v
			}
			p := &tpProject{t: t, dir: dir}
			dump := func(name string) string { return `[sh, -c, "env > ` + name + `.env"]` }
			p.configure(
				"    sessions: {mode: immediate, on_rotate: [{command: "+dump("hook")+"}]}\n",
				"services:\n  api:\n    restart: "+dump("restart")+"\n    status: "+dump("status")+"\n    consumes: [JWT_SECRET]\n"+
					"checks:\n  envdump:\n    command: "+dump("check")+"\n")
			must("", "config", "trust")
			must("", "rotate", "JWT_SECRET")
			must("sk-ant-api03-childCANARYchildCANARYnew00\n", "set", "ANTHROPIC_API_KEY")
			var managed []string
			for _, name := range []string{"JWT_SECRET", "ANTHROPIC_API_KEY"} {
				for n := 1; ; n++ {
					stdout, _, code := runIn(t, dir, env, "", "get", name, "--version", itoa(n), "-n")
					if code != 0 {
						break
					}
					managed = append(managed, stdout)
				}
			}
			if len(managed) != 4 {
				t.Fatalf("%d versions stored, want 4", len(managed))
			}
			check := func(what, f string, allowed map[string]string) {
				t.Helper()
				checkChildEnv(t, what, filepath.Join(dir, f+".env"), allKeys, managed, allowed)
				os.Remove(filepath.Join(dir, f+".env"))
			}
			check("on_rotate hook", "hook", nil)
			check("service restart (rotation)", "restart", nil)
			check("command check (rotation)", "check", nil)
			must("", "verify")
			check("command check (rekey verify)", "check", nil)
			must("", "services", "status")
			check("service status", "status", nil)
			must("", "services", "restart")
			check("service restart", "restart", nil)
			current := map[string]string{
				"JWT_SECRET":        must("", "get", "JWT_SECRET", "-n"),
				"ANTHROPIC_API_KEY": must("", "get", "ANTHROPIC_API_KEY", "-n"),
			}
			// The default passes the whole .env; --secrets-only the managed values.
			for _, mode := range [][]string{nil, {"--secrets-only"}} {
				must("", append(append([]string{"run"}, mode...), "--", "sh", "-c", "env > run.env")...)
				plain := readEnvDump(t, filepath.Join(dir, "run.env"))["CANARY_PLAIN"]
				if want := map[bool]string{true: "", false: "plain-from-the-env-file"}[mode != nil]; plain != want {
					t.Errorf("rekey run %v: the child's CANARY_PLAIN is %q, want %q", mode, plain, want)
				}
				check(fmt.Sprintf("rekey run %v's command", mode), "run", current)
			}
		})
	}
}
