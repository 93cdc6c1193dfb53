package main

import (
	"context"
	"database/sql"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fuzzTemplate is a project made once per test process: two environments,
// a few rotations (so there are old versions, rotations, grace attributes
// and audit entries), closed.
var fuzzTemplate struct {
	once sync.Once
	dir  string
	key  string
	jwt  string   // the current JWT_SECRET
	old  []string // every earlier JWT_SECRET value
	err  error
}

func fuzzSetup(t testing.TB) {
	fuzzTemplate.once.Do(func() {
		dir, err := os.MkdirTemp("", "rekey-fuzz-template-")
		if err != nil {
			fuzzTemplate.err = err
			return
		}
		fuzzTemplate.dir = filepath.Join(dir, "p")
		os.MkdirAll(fuzzTemplate.dir, 0o700)
		fuzzTemplate.key = ctRandB64(32, base64.StdEncoding)
		env := map[string]string{"REKEY_MASTER_KEY": fuzzTemplate.key, "XDG_CONFIG_HOME": filepath.Join(dir, "config"), "XDG_STATE_HOME": filepath.Join(dir, "state"), "REKEY_ACTOR": "fuzz"}
		write := func(name, text string) {
			if err := os.WriteFile(filepath.Join(fuzzTemplate.dir, name), []byte(text), 0o600); err != nil && fuzzTemplate.err == nil {
				fuzzTemplate.err = err
			}
		}
		write(".env", "JWT_SECRET="+ctRandB64(64, base64.StdEncoding)+"\nSESSION_SECRET="+ctRandB64(32, base64.StdEncoding)+"\nANTHROPIC_API_KEY=sk-ant-api03-"+ctRandB64(30, base64.RawURLEncoding)+"\nRUST_LOG=info\n")
		write(".env.staging", "JWT_SECRET="+ctRandB64(64, base64.StdEncoding)+"\n")
		run := func(args ...string) string {
			var out, errb strings.Builder
			m := &Main{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Dir: fuzzTemplate.dir, Env: env}
			if code := m.Run(context.Background(), args); code != 0 && fuzzTemplate.err == nil {
				fuzzTemplate.err = fmt.Errorf("rekey %s: exit %d\n%s", strings.Join(args, " "), code, errb.String())
			}
			return out.String()
		}
		run("init", "--env-file", ".env")
		run("init", "--environment", "staging", "--env-file", ".env.staging")
		cfg := filepath.Join(fuzzTemplate.dir, "rekey.yaml")
		b, _ := os.ReadFile(cfg)
		// Graceful sessions: rotations leave grace attributes and JWT_SECRET_PREVIOUS.
		b = []byte(strings.Replace(string(b), "\n  JWT_SECRET:\n", "\n  JWT_SECRET:\n    sessions: {mode: graceful, grace: 1h}\n", 1))
		os.WriteFile(cfg, b, 0o600)
		run("config", "trust") // the operator approves the edit
		for range 3 {
			fuzzTemplate.old = append(fuzzTemplate.old, strings.TrimSpace(run("get", "JWT_SECRET", "-n", "-e", "production")))
			run("rotate", "JWT_SECRET", "-e", "production")
		}
		run("rotate", "--all", "-e", "production")
		fuzzTemplate.old = append(fuzzTemplate.old, strings.TrimSpace(run("get", "JWT_SECRET", "-n", "-e", "production")))
		run("rotate", "JWT_SECRET", "-e", "production")
		fuzzTemplate.jwt = strings.TrimSpace(run("get", "JWT_SECRET", "-n", "-e", "production"))
	})
	if fuzzTemplate.err != nil {
		t.Fatal(fuzzTemplate.err)
	}
}

// fuzzTables are the store's tables with the columns naming a row.
var fuzzTables = []struct{ name, key string }{
	{"meta", "k"}, {"secret", "id"}, {"version", "secret_id, n"}, {"rotation", "id"}, {"audit", "seq"}, {"audit_block", "first"},
}

// tamper changes one thing of one row of one table of the store at path.
// It reports what it did, or "" when the table has no row.
func fuzzTamper(t *testing.T, path string, table, row, col, op uint8, pos uint16, delta byte) string {
	// Escaped: a fuzz seed's folder is named "seed#N", and '#' ends a file: URI's path.
	db, err := sql.Open("sqlite", "file:"+strings.NewReplacer("%", "%25", "?", "%3F", "#", "%23").Replace(path))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tb := fuzzTables[int(table)%len(fuzzTables)]
	rows, err := db.Query(`SELECT ` + tb.key + `, * FROM ` + tb.name + ` ORDER BY ` + tb.key)
	if err != nil {
		t.Fatal(err)
	}
	cols, _ := rows.Columns()
	nkey := len(strings.Split(tb.key, ","))
	var all [][]any
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		all = append(all, vals)
	}
	rows.Close()
	if len(all) == 0 {
		return ""
	}
	r := all[int(row)%len(all)]
	where := ""
	var args []any
	for i, k := range strings.Split(tb.key, ",") {
		if i > 0 {
			where += " AND "
		}
		where += strings.TrimSpace(k) + " = ?"
		args = append(args, r[i])
	}
	data := cols[nkey:]
	c := int(col) % len(data)
	v := r[nkey+c]
	var q string
	var nv any
	what := fmt.Sprintf("%s row %v column %s", tb.name, r[:nkey], data[c])
	switch op % 4 {
	case 0, 1: // change one byte, or add to a number
		switch x := v.(type) {
		case int64:
			nv = x + int64(delta) + 1
		case []byte:
			b := append([]byte(nil), x...)
			if len(b) == 0 {
				b = []byte{delta}
			} else {
				b[int(pos)%len(b)] ^= delta | 1
			}
			nv = b
		case string:
			b := []byte(x)
			if len(b) == 0 {
				b = []byte{delta | 0x20}
			} else {
				b[int(pos)%len(b)] ^= delta | 1
			}
			nv = string(b)
		default:
			nv = int64(delta)
		}
		q = `UPDATE ` + tb.name + ` SET ` + data[c] + ` = ? WHERE ` + where
		what += " changed"
	case 2: // the same column of another row (a swap half)
		o := all[(int(row)+1+int(pos))%len(all)]
		nv = o[nkey+c]
		q = `UPDATE ` + tb.name + ` SET ` + data[c] + ` = ? WHERE ` + where
		what += " copied from another row"
	case 3:
		q = `DELETE FROM ` + tb.name + ` WHERE ` + where
		what = tb.name + fmt.Sprintf(" row %v deleted", r[:nkey])
	}
	if nv != nil {
		args = append([]any{nv}, args...)
	}
	if _, err := db.Exec(q, args...); err != nil {
		return what + " (refused by SQLite: " + err.Error() + ")"
	}
	return what
}

// FuzzStoreTamper changes random bytes of random rows of a real store, then
// runs what cron and an operator run: status, rotate --due (a year later,
// so everything is due), recover, audit verify. Every mutation must be
// harmless or refused with exit 6: no panic, no other failure, and no value
// published that the store's authenticated state did not make current.
//
// The seeds run with go test; `go test -fuzz FuzzStoreTamper ./cmd/rekey`
// explores.
func FuzzStoreTamper(f *testing.F) {
	for table := range uint8(len(fuzzTables)) {
		for op := range uint8(4) {
			f.Add(table, uint8(table*7+op), uint8(op*3+table), op, uint16(table*13+op), byte(0x5a))
		}
	}
	f.Fuzz(func(t *testing.T, table, row, col, op uint8, pos uint16, delta byte) {
		fuzzSetup(t)
		dir := filepath.Join(t.TempDir(), "p")
		if err := os.CopyFS(dir, os.DirFS(fuzzTemplate.dir)); err != nil {
			t.Fatal(err)
		}
		for name, mode := range map[string]os.FileMode{".env": 0o600, ".env.staging": 0o600, ".rekey": 0o700, ".rekey/rekey.db": 0o600} {
			os.Chmod(filepath.Join(dir, name), mode) // CopyFS makes everything 0644/0755
		}
		env := map[string]string{"REKEY_MASTER_KEY": fuzzTemplate.key, "XDG_CONFIG_HOME": t.TempDir(), "XDG_STATE_HOME": t.TempDir(), "REKEY_ACTOR": "fuzz"}
		// The operator approved rekey.yaml at this path (before the attack).
		if _, errs, code := runIn(t, dir, env, "", "config", "trust"); code != 0 {
			t.Fatalf("config trust: exit %d\n%s", code, errs)
		}
		envBefore, _ := os.ReadFile(filepath.Join(dir, ".env"))
		what := fuzzTamper(t, filepath.Join(dir, ".rekey", "rekey.db"), table, row, col, op, pos, delta)
		if what == "" {
			t.Skip("no row")
		}
		env["REKEY_TEST_NOW"] = time.Now().Add(400 * 24 * time.Hour).UTC().Format(time.RFC3339)
		for _, c := range []struct {
			args []string
			ok   []int
		}{
			{[]string{"status"}, []int{0, 6, 8}},
			{[]string{"rotate", "--due"}, []int{0, 6}},
			{[]string{"recover"}, []int{0, 6}},
			{[]string{"audit", "verify"}, []int{0, 6}},
		} {
			_, errs, code := runIn(t, dir, env, "", c.args...)
			t.Logf("%s: rekey %s: exit %d %s", what, strings.Join(c.args, " "), code, firstLine(errs))
			if !containsInt(c.ok, code) {
				t.Fatalf("%s: rekey %s exited %d, want one of %v\n%s", what, strings.Join(c.args, " "), code, c.ok, errs)
			}
		}
		envAfter, _ := os.ReadFile(filepath.Join(dir, ".env"))
		published, _ := ctEnvValue(envAfter, "JWT_SECRET")
		for _, o := range fuzzTemplate.old {
			if published == o {
				t.Fatalf("%s: an old JWT_SECRET was published", what)
			}
		}
		delete(env, "REKEY_TEST_NOW")
		cur, errs, code := runIn(t, dir, env, "", "get", "JWT_SECRET", "-n")
		switch code {
		case 0:
			if published != strings.TrimSpace(cur) {
				t.Fatalf("%s: the .env holds a JWT_SECRET that is not the store's current one", what)
			}
		case 6:
			if string(envAfter) != string(envBefore) {
				t.Fatalf("%s: the store is refused, yet the .env changed", what)
			}
		default:
			t.Fatalf("%s: get exited %d\n%s", what, code, errs)
		}
	})
}

func containsInt(list []int, x int) bool {
	for _, y := range list {
		if y == x {
			return true
		}
	}
	return false
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
