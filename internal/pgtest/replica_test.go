package pgtest

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReplica: a hot standby of the cluster follows it (a row written on
// the primary appears on the replica), refuses writes, keeps its
// replication password out of the logs, and Stop drops its slot and role.
func TestReplica(t *testing.T) {
	c := Need(t, cluster)
	r, err := c.StartReplica()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Stop() })
	t.Logf("replica of PostgreSQL %s on port %d (primary %d)", r.Version, r.Port, c.Port)
	if err := c.Exec(ctx(t), "DROP TABLE IF EXISTS replica_probe; CREATE TABLE replica_probe (v text); INSERT INTO replica_probe VALUES ('from the primary')"); err != nil {
		t.Fatal(err)
	}
	if err := r.WaitReplayed(ctx(t)); err != nil {
		t.Fatal(err)
	}
	conn, err := r.Connect(ctx(t), "")
	if err != nil {
		t.Fatal(err)
	}
	var v string
	var recovering bool
	if err := conn.QueryRow(ctx(t), "SELECT v, pg_is_in_recovery() FROM replica_probe").Scan(&v, &recovering); err != nil {
		t.Fatal(err)
	}
	if v != "from the primary" || !recovering {
		t.Fatalf("replica read %q, in recovery %v", v, recovering)
	}
	if _, err := conn.Exec(ctx(t), "INSERT INTO replica_probe VALUES ('x')"); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("a write on the replica: %v, want read-only", err)
	}
	conn.Close(ctx(t))
	var state string
	pc, err := c.Connect(ctx(t), "")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(ctx(t))
	if err := pc.QueryRow(ctx(t), "SELECT state FROM pg_stat_replication WHERE application_name = $1", r.Role).Scan(&state); err != nil || state != "streaming" {
		t.Fatalf("pg_stat_replication of %s: %q, %v", r.Role, state, err)
	}
	conf, err := os.ReadFile(filepath.Join(r.Dir, "data", "postgresql.conf"))
	if err != nil {
		t.Fatal(err)
	}
	_, pw, _ := strings.Cut(string(conf), "password=")
	pw, _, _ = strings.Cut(pw, " ")
	if len(pw) < 16 {
		t.Fatalf("no replication password in the replica's postgresql.conf")
	}
	for _, f := range []string{c.LogFile, r.LogFile} {
		if b, _ := os.ReadFile(f); bytes.Contains(b, []byte(pw)) {
			t.Fatalf("the replication password is in %s", f)
		}
	}
	dir := r.Dir
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("replica dir left behind: %v", err)
	}
	var n int
	if err := pc.QueryRow(ctx(t), "SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1) + (SELECT count(*) FROM pg_roles WHERE rolname = $1)", r.Slot).Scan(&n); err != nil || n != 0 {
		t.Fatalf("slot or role left on the primary: %d, %v", n, err)
	}
}
