package reencrypt

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/rekeyhq/rekey"
)

// Copy methods of a rehearsal.
const (
	CopyTemplate = "template" // CREATE DATABASE copy TEMPLATE source
	CopyDump     = "pg_dump"  // pg_dump -Fc | pg_restore
)

// Rehearsal is what Rehearse measured on a copy of the database.
type Rehearsal struct {
	Copy     string        // the copy's name (dropped when Rehearse returns)
	Method   string        // CopyTemplate or CopyDump
	Admin    bool          // the copy was made (and dropped) through the admin connection
	CopyTime time.Duration // making the copy
	RunTime  time.Duration // the re-encryption on the copy
	Result   *Result       // the re-encryption's result (rows, failures)
	Tables   []TableGrowth // size of each table before and after
	// WALBytes is the WAL the server wrote during the run on the copy
	// (pg_wal_lsn_diff of pg_current_wal_lsn after and before: the whole
	// server's, other sessions' included); -1 when it could not be read.
	WALBytes int64
	// Estimate is EstimateRun's on the source, made after the copy: the
	// model's WAL beside the measured one (nil when it failed: EstimateErr).
	Estimate    *Estimate
	EstimateErr error
}

// TableGrowth is pg_total_relation_size (table, indexes, TOAST) of a table
// of the copy before and after the re-encryption. Every rewritten row
// leaves a dead version until VACUUM reclaims it.
type TableGrowth struct {
	Table         string
	Before, After int64 // bytes
}

// Rehearse copies the database of job (CREATE DATABASE ... TEMPLATE when
// no one else is connected to it, else pg_dump | pg_restore, streamed
// through a pipe: no dump file), runs the whole re-encryption on the copy
// and drops the copy (also on failure or cancellation). The source
// database is only read; its configured tables and columns are looked up
// first, before any copy is made.
//
// The copy is made by the job's role, which then needs CREATEDB (and, for
// the template copy, to own the source or be superuser; otherwise the
// pg_dump path is used), or, with job.AdminDSN, through that admin
// connection (same server), so the application's role needs no CREATEDB:
// the re-encryption then runs on a template copy as the job's role (the
// copy keeps the tables' owners and grants) and on a pg_dump copy as the
// admin (its objects are the admin's). Without CREATEDB the error wraps
// ErrNoCreateDB. The error is Run's (ErrUndecryptable when values open
// with neither key), returned with the Rehearsal.
func Rehearse(ctx context.Context, job Job) (*Rehearsal, error) {
	cfg, specs, err := prepare(job.Config)
	if err != nil {
		return nil, err
	}
	cc, err := job.connConfig()
	if err != nil {
		return nil, err
	}
	src := cc.Database
	if src == "" {
		return nil, invalid("the connection string names no database")
	}
	checkPID, err := checkTables(ctx, cc, specs, cfg.Encoding)
	if err != nil {
		return nil, err
	}
	creator := cc // the role that makes and drops the copy
	if job.AdminDSN != "" {
		if creator, err = (Job{DSN: job.AdminDSN}).connConfig(); err != nil {
			return nil, rekey.Wrap(rekey.CodeInvalid, err, "reencrypt: the admin connection")
		}
		if creator.Host != cc.Host || creator.Port != cc.Port {
			return nil, invalid("the admin connection is to another server than the database (%s:%d, not %s:%d)", creator.Host, creator.Port, cc.Host, cc.Port).
				WithHint("the admin URL must name the server the database is on")
		}
	}
	admin, err := connectAdmin(ctx, creator)
	if err != nil {
		return nil, err
	}
	defer admin.Close(context.Background())
	waitGone(ctx, admin, checkPID) // not one of the "others" on the source

	rh := &Rehearsal{Copy: copyName(job.JobID), WALBytes: -1}
	t0 := time.Now()
	created := false
	defer func() {
		if !created {
			return
		}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		_ = dropDatabase(dctx, admin, rh.Copy)
	}()
	rh.Admin = job.AdminDSN != ""
	rh.Method, created, err = copyDatabase(ctx, admin, creator, src, rh.Copy, job.PGBinDir)
	if err != nil {
		return nil, err
	}
	rh.CopyTime = time.Since(t0)
	// The model, on the source (read-only; after the copy, so that its
	// session is not one of the others on the source a template copy waits for).
	rh.Estimate, rh.EstimateErr = EstimateRun(ctx, job)

	copyCC := cc.Copy()
	if rh.Admin && rh.Method == CopyDump {
		copyCC = creator.Copy() // restored without owners: the admin's objects
	}
	copyCC.Database = rh.Copy
	before, err := rh.sizes(ctx, copyCC, specs, cfg.Encoding)
	if err != nil {
		return nil, err
	}
	run := job
	run.DSN, run.ConnConfig = "", copyCC
	run.JobID = "rehearsal-" + job.JobID
	lsn0, lsnErr := currentLSN(ctx, admin)
	t1 := time.Now()
	res, runErr := Run(ctx, run)
	rh.RunTime = time.Since(t1)
	if lsn1, err := currentLSN(ctx, admin); err == nil && lsnErr == nil {
		var n int64
		if admin.QueryRow(ctx, `SELECT pg_wal_lsn_diff($1::text::pg_lsn, $2::text::pg_lsn)::bigint`, lsn1, lsn0).Scan(&n) == nil {
			rh.WALBytes = n
		}
	}
	rh.Result = res
	if res == nil {
		return rh, runErr
	}
	if after, err := rh.sizes(ctx, copyCC, specs, cfg.Encoding); err == nil {
		for i := range rh.Tables {
			rh.Tables[i].Before, rh.Tables[i].After = before[i], after[i]
		}
	} else if runErr == nil {
		return rh, err
	}
	return rh, runErr
}

// currentLSN is the server's current WAL insert position (any role may
// read it).
func currentLSN(ctx context.Context, conn *pgx.Conn) (string, error) {
	var lsn string
	err := conn.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&lsn)
	return lsn, err
}

// copyDatabase copies database src to a new database dst: as a template
// when nobody else is connected to src and the role may, else by pg_dump
// into an empty database. created says whether dst exists (to drop), also
// when the copy failed.
func copyDatabase(ctx context.Context, admin *pgx.Conn, cc *pgx.ConnConfig, src, dst, binDir string) (method string, created bool, err error) {
	// With other sessions on the source, CREATE DATABASE ... TEMPLATE
	// waits 5 s before it fails: look first. Only clients count: the
	// server ends an autovacuum worker on the source itself (it used to
	// send a rehearsal to pg_dump whenever one was at work).
	var others int
	if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'`, src).Scan(&others); err != nil {
		return "", false, dbError(err, "list the sessions on the database")
	}
	err = &pgconn.PgError{Code: "55006"}
	if others == 0 {
		_, err = admin.Exec(ctx, "CREATE DATABASE "+quoteIdent(dst)+" TEMPLATE "+quoteIdent(src))
	}
	switch code := pgCode(err); {
	case err == nil:
		return CopyTemplate, true, nil
	case code == "55006" || code == "42501": // others are connected to it; or not ours to copy
		// The empty database first: without CREATEDB, that is what to say.
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+quoteIdent(dst)); err != nil {
			return "", false, createError(err, cc.User, "create the rehearsal database")
		}
		dump, restore, err := findDumpTools(binDir, serverMajor(admin))
		if err != nil {
			return CopyDump, true, dumpToolsError(err, code, src, serverMajor(admin))
		}
		return CopyDump, true, dumpRestore(ctx, cc, src, dst, dump, restore)
	default:
		return "", false, createError(err, cc.User, "copy the database")
	}
}

// createError is the error of a CREATE DATABASE by role: ErrNoCreateDB,
// with the grant, when the role may not.
func createError(err error, role, what string) *rekey.Error {
	if pgCode(err) == "42501" {
		return (&rekey.Error{Code: rekey.CodeUnsafe, Err: ErrNoCreateDB,
			Msg: fmt.Sprintf("reencrypt: role %s may not create databases: the rehearsal's copy needs CREATEDB", displayIdent(role))}).
			WithHint("grant it (as a superuser: ALTER ROLE %s CREATEDB), or make the copy through an admin connection", quoteIdent(role))
	}
	return dbError(err, "%s", what)
}

// sizes measures the tables of specs (values in encoding) in the database
// of cc (on its first call, it lists them in rh.Tables).
func (rh *Rehearsal) sizes(ctx context.Context, cc *pgx.ConnConfig, specs []TableSpec, encoding string) ([]int64, error) {
	conn, err := connect(ctx, cc)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	tables, err := resolveTables(ctx, conn, specs, encoding, false)
	if err != nil {
		return nil, err
	}
	var out []int64
	for _, t := range tables {
		var n int64
		if err := conn.QueryRow(ctx, `SELECT pg_total_relation_size($1::oid)`, t.oid).Scan(&n); err != nil {
			return nil, dbError(err, "measure %s", t.display)
		}
		if len(rh.Tables) < len(tables) {
			rh.Tables = append(rh.Tables, TableGrowth{Table: t.display})
		}
		out = append(out, n)
	}
	return out, nil
}

var unsafeName = regexp.MustCompile(`[^a-z0-9_]+`)

func copyName(jobID string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	id := unsafeName.ReplaceAllString(strings.ToLower(jobID), "_")
	if len(id) > 30 {
		id = id[:30]
	}
	return "rekey_rehearsal_" + id + "_" + hex.EncodeToString(b)
}

// connectAdmin connects to the maintenance database ("postgres", else
// "template1") with the job's credentials.
func connectAdmin(ctx context.Context, cc *pgx.ConnConfig) (*pgx.Conn, error) {
	var firstErr error
	for _, db := range []string{"postgres", "template1"} {
		c := cc.Copy()
		c.Database = db
		conn, err := connect(ctx, c)
		if err == nil {
			return conn, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, firstErr
}

func dropDatabase(ctx context.Context, admin *pgx.Conn, name string) error {
	_, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+quoteIdent(name)+" WITH (FORCE)")
	if pgCode(err) == "42601" { // before PostgreSQL 13: no FORCE
		_, err = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+quoteIdent(name))
	}
	return err
}

// serverMajor is the major version of the server admin is connected to
// (0 when it does not say).
func serverMajor(admin *pgx.Conn) int {
	v := admin.PgConn().ParameterStatus("server_version")
	major, _ := strconv.Atoi(strings.SplitN(strings.SplitN(v, ".", 2)[0], " ", 2)[0])
	return major
}

// dumpRestore streams pg_dump -Fc of src into pg_restore on dst. The
// password goes through a 0600 passfile (PGPASSFILE), never argv or the
// environment.
func dumpRestore(ctx context.Context, cc *pgx.ConnConfig, src, dst, dump, restore string) error {
	dir, err := os.MkdirTemp("", "rekey-rehearsal-")
	if err != nil {
		return rekey.Wrap(rekey.CodeInternal, err, "reencrypt: temp dir")
	}
	defer os.RemoveAll(dir)
	env := []string{"PATH=" + os.Getenv("PATH"), "LC_ALL=C", "PGAPPNAME=rekey-rehearsal",
		"PGHOST=" + cc.Host, "PGPORT=" + strconv.Itoa(int(cc.Port)), "PGUSER=" + cc.User, "PGCONNECT_TIMEOUT=30"}
	if cc.TLSConfig == nil {
		env = append(env, "PGSSLMODE=disable")
	} else {
		env = append(env, "PGSSLMODE=require")
	}
	if cc.Password != "" {
		pass := filepath.Join(dir, "pgpass")
		esc := func(s string) string { return strings.NewReplacer(`\`, `\\`, `:`, `\:`).Replace(s) }
		line := "*:*:*:" + esc(cc.User) + ":" + esc(cc.Password) + "\n"
		if err := os.WriteFile(pass, []byte(line), 0o600); err != nil {
			return rekey.Wrap(rekey.CodeInternal, err, "reencrypt: write the passfile")
		}
		env = append(env, "PGPASSFILE="+pass)
	}
	dumpCmd := exec.CommandContext(ctx, dump, "--format=custom", "--no-sync", "--dbname="+src)
	restoreCmd := exec.CommandContext(ctx, restore, "--no-owner", "--no-privileges", "--exit-on-error", "--dbname="+dst)
	dumpCmd.Env, restoreCmd.Env = env, env
	var dumpErr, restoreErr bytes.Buffer
	dumpCmd.Stderr, restoreCmd.Stderr = &limitedBuffer{b: &dumpErr}, &limitedBuffer{b: &restoreErr}
	pipe, err := dumpCmd.StdoutPipe()
	if err != nil {
		return rekey.Wrap(rekey.CodeInternal, err, "reencrypt: pg_dump")
	}
	restoreCmd.Stdin = pipe
	if err := dumpCmd.Start(); err != nil {
		return rekey.Wrap(rekey.CodeInternal, err, "reencrypt: start pg_dump")
	}
	if err := restoreCmd.Start(); err != nil {
		_ = dumpCmd.Process.Kill()
		_ = dumpCmd.Wait()
		return rekey.Wrap(rekey.CodeInternal, err, "reencrypt: start pg_restore")
	}
	rerr := restoreCmd.Wait()
	if rerr != nil {
		_ = dumpCmd.Process.Kill()
	}
	derr := dumpCmd.Wait()
	if derr != nil {
		return rekey.Errorf(rekey.CodeInternal, "reencrypt: pg_dump of the database failed (%v): %s", derr, firstLine(dumpErr.String()))
	}
	if rerr != nil {
		return rekey.Errorf(rekey.CodeInternal, "reencrypt: pg_restore into the rehearsal database failed (%v): %s", rerr, firstLine(restoreErr.String()))
	}
	return nil
}

// limitedBuffer keeps the first 8 KiB written to it.
type limitedBuffer struct{ b *bytes.Buffer }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := 8<<10 - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// firstLine is the first line of a tool's stderr, cut before any quoted
// text (which could be data).
func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, "\n\"'"); i >= 0 {
		s = s[:i]
	}
	if len(s) > 300 {
		s = s[:300]
	}
	return s
}

var toolVersion = regexp.MustCompile(`\(PostgreSQL\) (\d+)`)

// findDumpTools finds pg_dump and pg_restore of at least the server's
// major version: in binDir, then /usr/lib/postgresql/<major>/bin, PATH,
// and the newest /usr/lib/postgresql/*/bin.
func findDumpTools(binDir string, major int) (string, string, error) {
	var dirs []string
	if binDir != "" {
		dirs = append(dirs, binDir)
	}
	if major > 0 {
		dirs = append(dirs, fmt.Sprintf("/usr/lib/postgresql/%d/bin", major))
	}
	if p, err := exec.LookPath("pg_dump"); err == nil {
		dirs = append(dirs, filepath.Dir(p))
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(matches, func(i, j int) bool { return versionOfDir(matches[i]) > versionOfDir(matches[j]) })
	dirs = append(dirs, matches...)
	newest, newestDir := 0, ""
	for _, d := range dirs {
		dump, restore := filepath.Join(d, "pg_dump"), filepath.Join(d, "pg_restore")
		if !isExec(dump) || !isExec(restore) {
			continue
		}
		out, err := exec.Command(dump, "--version").Output()
		if err != nil {
			continue
		}
		m := toolVersion.FindSubmatch(out)
		if m == nil {
			continue
		}
		v, _ := strconv.Atoi(string(m[1]))
		if v >= major {
			return dump, restore, nil
		}
		if v > newest {
			newest, newestDir = v, d
		}
	}
	if newest > 0 {
		return "", "", rekey.Errorf(rekey.CodeNotFound, "reencrypt: pg_dump %d (%s) cannot dump a PostgreSQL %d server (pg_dump refuses a server newer than itself), and no pg_dump %d or later is installed", newest, newestDir, major, major)
	}
	return "", "", rekey.Errorf(rekey.CodeNotFound, "reencrypt: no pg_dump and pg_restore found (of PostgreSQL %d or later)", major)
}

// dumpToolsError explains why the pg_dump path was needed (code: the
// TEMPLATE copy's SQLSTATE) and the ways around it.
func dumpToolsError(err error, code, src string, major int) error {
	var re *rekey.Error
	if !errors.As(err, &re) {
		return err
	}
	why := fmt.Sprintf("other sessions are connected to database %s, so it cannot be copied on the server (CREATE DATABASE ... TEMPLATE)", displayIdent(src))
	hint := "the copy on the server needs no client tools: stop the sessions on the database for the rehearsal (the application, pools), " +
		"or install the client tools of the server's version (postgresql-client-%d) where rekey runs"
	if code == "42501" {
		why = fmt.Sprintf("the role may not copy database %s on the server (CREATE DATABASE ... TEMPLATE needs its owner or a superuser)", displayIdent(src))
		hint = "the copy on the server needs no client tools: rehearse with --admin-secret NAME (a superuser's or the database owner's connection URL), " +
			"or install the client tools of the server's version (postgresql-client-%d) where rekey runs"
	}
	out := *re
	out.Msg = re.Msg + "; the rehearsal needs them because " + why
	return out.WithHint(hint, major)
}

func versionOfDir(dir string) float64 {
	v, err := strconv.ParseFloat(filepath.Base(filepath.Dir(dir)), 64)
	if err != nil {
		return -1
	}
	return v
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}
