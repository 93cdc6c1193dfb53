package pgcluster

// A streaming replica of a running cluster, for tests and benchmarks of
// what rekey does to replicas. It needs no pg_basebackup (the server
// packages of some majors ship no client tools): a low-level online base
// backup (pg_backup_start, a copy of the data directory, pg_backup_stop's
// backup_label), then standby.signal and primary_conninfo.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Replica is a hot standby of Primary, streaming from it through a
// physical replication slot, on the same machine on a free port. Stop it
// before its primary: Stop drops its slot and its replication role there.
type Replica struct {
	*Cluster
	Primary *Cluster
	Slot    string // the physical replication slot on Primary
	Role    string // the replication role on Primary (its password is random, in the replica's postgresql.conf only)

	stopOnce sync.Once
	stopErr  error
}

var replicaSeq struct {
	sync.Mutex
	n int
}

// StartReplica makes a hot standby of c (running) and starts it. Its
// superuser and password are c's (the catalog is a copy).
func (c *Cluster) StartReplica() (*Replica, error) {
	if c.Major < 12 {
		return nil, fmt.Errorf("pgtest: replica: PostgreSQL %d: standby.signal needs 12 or later", c.Major)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	replicaSeq.Lock()
	replicaSeq.n++
	name := fmt.Sprintf("rekey_replica_%d_%d", c.Port, replicaSeq.n)
	replicaSeq.Unlock()
	password, err := randomPassword()
	if err != nil {
		return nil, err
	}
	if err := c.addReplicationRole(ctx, name, password); err != nil {
		return nil, err
	}
	dir, err := makeDir(c.cred)
	if err != nil {
		return nil, err
	}
	r := &Replica{Primary: c, Slot: name, Role: name, Cluster: &Cluster{
		Version: c.Version, Major: c.Major, Host: c.Host, Dir: dir,
		LogFile: filepath.Join(dir, "postgres.log"), SuperUser: c.SuperUser, SuperPassword: c.SuperPassword,
		binDir: c.binDir, dataDir: filepath.Join(dir, "data"), cred: c.cred,
	}}
	ok := false
	defer func() {
		if !ok {
			_ = r.Stop()
		}
	}()
	if err := c.baseBackup(ctx, r.dataDir, name); err != nil {
		return nil, err
	}
	conninfo := fmt.Sprintf("host=%s port=%d user=%s password=%s application_name=%s", c.Host, c.Port, name, password, name)
	standby := fmt.Sprintf(`
# --- rekey pgtest replica ---
hot_standby = on
primary_conninfo = %s
primary_slot_name = %s
wal_receiver_status_interval = 1s
`, quoteLiteral(conninfo), quoteLiteral(name))
	if err := r.writeServerFile(filepath.Join(r.dataDir, "standby.signal"), nil); err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		if r.Port, err = freePort(); err != nil {
			return nil, err
		}
		if err := r.writeConf(); err != nil {
			return nil, err
		}
		conf := filepath.Join(r.dataDir, "postgresql.conf")
		b, err := os.ReadFile(conf)
		if err != nil {
			return nil, fmt.Errorf("pgtest: replica: %w", err)
		}
		if err := r.writeServerFile(conf, append(b, standby...)); err != nil {
			return nil, err
		}
		if lastErr = r.startServer(); lastErr == nil {
			ok = true
			r.recordCaller()
			return r, nil
		}
		r.kill()
		if !strings.Contains(r.logTail(), "already in use") {
			break
		}
	}
	return nil, fmt.Errorf("pgtest: replica: %w", lastErr)
}

// addReplicationRole creates role name (REPLICATION LOGIN) with password
// (never logged: the session's log_statement is off), its physical slot,
// and a pg_hba line letting it stream.
func (c *Cluster) addReplicationRole(ctx context.Context, name, password string) error {
	conn, err := c.Connect(ctx, "")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for _, stmt := range []string{
		"SET log_statement = 'none'",
		"CREATE ROLE " + name + " REPLICATION LOGIN PASSWORD " + quoteLiteral(password),
		"SELECT pg_create_physical_replication_slot(" + quoteLiteral(name) + ", true)",
	} {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("pgtest: replica: %s: %w", strings.Fields(stmt)[0], err)
		}
	}
	b, err := os.ReadFile(filepath.Join(c.dataDir, "pg_hba.conf"))
	if err != nil {
		return fmt.Errorf("pgtest: replica: %w", err)
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	return c.SetHBA(append([]string{"host replication " + name + " 127.0.0.1/32 scram-sha-256"}, lines...)...)
}

// baseBackup copies c's data directory to dst between pg_backup_start and
// pg_backup_stop (pg_start_backup/pg_stop_backup before 15) and writes the
// backup_label the stop returns. The WAL comes from the slot.
func (c *Cluster) baseBackup(ctx context.Context, dst, label string) error {
	conn, err := c.Connect(ctx, "")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	start, stop := "SELECT pg_backup_start($1, true)", "SELECT labelfile FROM pg_backup_stop(false)"
	if c.Major < 15 {
		start, stop = "SELECT pg_start_backup($1, true, false)", "SELECT labelfile FROM pg_stop_backup(false, false)"
	}
	if _, err := conn.Exec(ctx, start, label); err != nil {
		return fmt.Errorf("pgtest: replica: start the backup: %w", err)
	}
	copyErr := c.copyData(c.dataDir, dst)
	var labelFile string
	if err := conn.QueryRow(ctx, stop).Scan(&labelFile); err != nil {
		return fmt.Errorf("pgtest: replica: stop the backup: %w", err)
	}
	if copyErr != nil {
		return copyErr
	}
	return c.writeServerFile(filepath.Join(dst, "backup_label"), []byte(labelFile))
}

// skipContents are the directories of a data directory whose contents a
// base backup leaves out (as pg_basebackup does); skipFiles the files.
var (
	skipContents = map[string]bool{"pg_wal": true, "pg_replslot": true, "pg_stat_tmp": true, "pg_dynshmem": true,
		"pg_notify": true, "pg_serial": true, "pg_snapshots": true, "pg_subtrans": true}
	skipFiles = map[string]bool{"postmaster.pid": true, "postmaster.opts": true, "backup_label": true,
		"tablespace_map": true, "current_logfiles": true, "pg_internal.init": true}
)

// copyData copies a running server's data directory: files that vanish
// during the copy are skipped (the WAL replay recreates what matters).
func (c *Cluster) copyData(src, dst string) error {
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		rel, _ := filepath.Rel(src, path)
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			if err := os.Mkdir(to, 0o700); err != nil {
				return err
			}
			if err := c.chown(to); err != nil {
				return err
			}
			if !skipContents[rel] {
				return nil
			}
			if rel == "pg_wal" {
				if err := os.Mkdir(filepath.Join(to, "archive_status"), 0o700); err != nil {
					return err
				}
				if err := c.chown(filepath.Join(to, "archive_status")); err != nil {
					return err
				}
			}
			return filepath.SkipDir
		}
		if skipFiles[d.Name()] || strings.HasSuffix(d.Name(), ".tmp") || !d.Type().IsRegular() {
			return nil
		}
		return c.copyOne(path, to)
	})
	if err != nil {
		return fmt.Errorf("pgtest: replica: copy the data directory: %w", err)
	}
	return nil
}

func (c *Cluster) copyOne(from, to string) error {
	in, err := os.Open(from)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return c.chown(to)
}

func (c *Cluster) chown(path string) error {
	if c.cred == nil {
		return nil
	}
	return os.Chown(path, int(c.cred.Uid), int(c.cred.Gid))
}

// Stop stops the replica (as Cluster.Stop does), then drops its slot and
// its role on the primary when the primary still runs. It is safe to call
// more than once.
func (r *Replica) Stop() error {
	r.stopOnce.Do(func() {
		errs := []error{r.Cluster.Stop()}
		if r.Primary.cmd != nil {
			select {
			case <-r.Primary.exited:
			default:
				errs = append(errs, r.dropOnPrimary())
			}
		}
		r.stopErr = errors.Join(errs...)
	})
	return r.stopErr
}

// dropOnPrimary drops the slot (once its walsender has gone) and the role.
func (r *Replica) dropOnPrimary() error {
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	conn, err := r.Primary.Connect(ctx, "")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	for {
		var active bool
		err := conn.QueryRow(ctx, `SELECT active FROM pg_replication_slots WHERE slot_name = $1`, r.Slot).Scan(&active)
		if err == nil && !active {
			if _, err = conn.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, r.Slot); err == nil {
				break
			}
		}
		if err != nil && ctx.Err() != nil {
			return fmt.Errorf("pgtest: replica: drop slot %s: %w", r.Slot, err)
		}
		if errors.Is(err, pgx.ErrNoRows) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := conn.Exec(ctx, "DROP ROLE IF EXISTS "+r.Role); err != nil {
		return fmt.Errorf("pgtest: replica: drop role %s: %w", r.Role, err)
	}
	return nil
}

// WaitReplayed waits until the replica has replayed everything the
// primary had written when it was called (its WAL insert position: with
// synchronous_commit off a commit may not be flushed yet).
func (r *Replica) WaitReplayed(ctx context.Context) error {
	pc, err := r.Primary.Connect(ctx, "")
	if err != nil {
		return err
	}
	defer pc.Close(context.Background())
	var target string
	if err := pc.QueryRow(ctx, `SELECT pg_current_wal_insert_lsn()::text`).Scan(&target); err != nil {
		return fmt.Errorf("pgtest: replica: %w", err)
	}
	rc, err := r.Connect(ctx, "")
	if err != nil {
		return err
	}
	defer rc.Close(context.Background())
	for {
		var done bool
		err := rc.QueryRow(ctx, `SELECT coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false)`, target).Scan(&done)
		if err != nil {
			return fmt.Errorf("pgtest: replica: replay position: %w", err)
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pgtest: replica %s not replayed up to %s: %w", strconv.Itoa(r.Port), target, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
