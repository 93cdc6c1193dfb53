package config

import (
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/rekeyhq/rekey"
)

// The sessions and reencrypt sections of a secret.
//
//	JWT_SECRET:
//	  sessions:
//	    mode: graceful          # immediate (default) | graceful
//	    grace: 24h              # graceful: no shorter than the longest token lifetime
//	    previous_key: JWT_SECRET_PREVIOUS
//	    on_rotate:
//	      - sql: DELETE FROM sessions
//	        database: DATABASE_URL
//	      - command: [./scripts/flush-sessions]
//	ENCRYPTION_KEY:
//	  kind: data-key
//	  reencrypt:
//	    database: DATABASE_URL
//	    codec: aes-256-gcm
//	    encoding: base64
//	    columns: [patients.email, patients.ssn]
//	    mode: online            # online (default) | maintenance
//	    pace: adaptive          # online: adaptive (default) | full
//	    probe: SELECT 1 FROM patients WHERE id = 1  # default: a point read on the table being moved
//	    target_p99: 2x          # a duration (20ms), or a factor of the p99 measured before the run
//	    checkpoint_schema: rekey_state  # default: the first schema of the search_path

// The session modes, re-encryption modes, codecs and encodings.
var (
	SessionModes    = []string{rekey.SessionsImmediate, rekey.SessionsGraceful}
	ReencryptModes  = []string{rekey.ReencryptOnline, rekey.ReencryptMaintenance}
	Codecs          = []string{"aes-256-gcm", "chacha20-poly1305", "fernet", "command"}
	CipherEncodings = []string{"base64", "base64url", "hex", "bytea", "text"}
	Paces           = []string{rekey.PaceAdaptive, rekey.PaceFull}
)

// targetP99 reads target_p99: a duration (20ms) or a factor of the idle
// p99 (3x).
func (d *decoder) targetP99(v *yaml.Node, what string) (time.Duration, float64) {
	const hint = "write a duration such as 20ms, or a factor of the p99 measured before the run such as 3x"
	if isNull(v) {
		return 0, 0
	}
	s, ok := d.text(v, what)
	if !ok {
		return 0, 0
	}
	if f, found := strings.CutSuffix(s, "x"); found {
		x, err := strconv.ParseFloat(f, 64)
		if err != nil || !(x >= 1 && x <= 1000) {
			d.fail(v, hint, "%s: the factor must be a number from 1 to 1000 followed by x", what)
			return 0, 0
		}
		return 0, x
	}
	t, err := time.ParseDuration(s)
	if err != nil || t <= 0 {
		d.fail(v, hint, "%s is neither a positive duration nor a factor", what)
		return 0, 0
	}
	return t, 0
}

// DefaultHookTimeout bounds an on_rotate hook.
const DefaultHookTimeout = 60 * time.Second

func (d *decoder) sessions(v *yaml.Node, secret string) *rekey.SessionsSpec {
	what := "sessions of " + secret
	s := &rekey.SessionsSpec{Mode: rekey.SessionsImmediate}
	var graceKey, modeVal *yaml.Node
	_, ok := d.decode(v, section{
		what: what,
		fields: []field{
			{"mode", func(k, v *yaml.Node) {
				if m, ok := d.enum(v, "mode of "+what, SessionModes); ok && m != "" {
					s.Mode, modeVal = m, v
				}
			}},
			{"grace", func(k, v *yaml.Node) { graceKey = k; s.Grace, _ = d.duration(v, "grace of "+what) }},
			{"previous_key", d.previousKey(&s.PreviousKey, what)},
			{"on_rotate", func(k, v *yaml.Node) { s.OnRotate = d.hooks(v, "on_rotate of "+secret) }},
		},
	})
	if !ok {
		return s
	}
	if s.Mode == rekey.SessionsGraceful && s.Grace <= 0 {
		at := modeVal
		if graceKey != nil {
			at = graceKey
		}
		d.fail(at, "give the longest token lifetime, e.g. grace: 24h", "mode: graceful needs a grace period (%s)", what)
	}
	if s.Mode != rekey.SessionsGraceful && graceKey != nil {
		d.fail(graceKey, "grace is used only with mode: graceful", "%s: grace without mode: graceful", what)
	}
	return s
}

func (d *decoder) hooks(v *yaml.Node, what string) []rekey.Hook {
	v = resolve(v)
	if isNull(v) {
		return nil
	}
	if v.Kind != yaml.SequenceNode {
		d.fail(v, "write a list, e.g. on_rotate: [{sql: DELETE FROM sessions, database: DATABASE_URL}]", "%s must be a list, not %s", what, kindOf(v))
		return nil
	}
	var out []rekey.Hook
	for i, item := range v.Content {
		h := rekey.Hook{Line: item.Line, Timeout: DefaultHookTimeout}
		hw := what + " #" + itoa(i+1)
		var sqlKey, dbKey, cmdKey *yaml.Node
		_, ok := d.decode(item, section{
			what: hw,
			fields: []field{
				{"sql", func(k, v *yaml.Node) { sqlKey = k; h.SQL, _ = d.text(v, "sql of "+hw) }},
				{"database", d.database(&dbKey, &h.Database, hw)},
				{"command", func(k, v *yaml.Node) {
					cmdKey = k
					if c, ok := d.command(v, "command of "+hw, false); ok {
						h.Command = c.Args()
					}
				}},
				{"timeout", func(k, v *yaml.Node) { h.Timeout, _ = d.duration(v, "timeout of "+hw) }},
			},
		})
		if !ok {
			continue
		}
		switch {
		case sqlKey != nil && cmdKey != nil:
			d.fail(cmdKey, "give either sql (with database) or command in one hook", "%s has both sql and command", hw)
		case sqlKey == nil && cmdKey == nil:
			d.missing(item, item, "add sql: DELETE FROM sessions with database: DATABASE_URL, or command: [./flush-sessions]", "%s has neither sql nor command", hw)
		case sqlKey != nil && dbKey == nil:
			d.fail(sqlKey, "add database: DATABASE_URL (a secret or derived value holding the connection URL)", "%s: sql needs database", hw)
		case cmdKey != nil && dbKey != nil:
			d.fail(dbKey, "database is for sql hooks", "%s: database without sql", hw)
		}
		out = append(out, h)
	}
	return out
}

func (d *decoder) reencrypt(v *yaml.Node, secret string) *rekey.ReencryptSpec {
	what := "reencrypt of " + secret
	r := &rekey.ReencryptSpec{Codec: "aes-256-gcm", Encoding: "base64", Mode: rekey.ReencryptOnline}
	var dbKey, colsKey, cmdKey, codecVal, encKey, paceVal *yaml.Node
	_, ok := d.decode(v, section{
		what: what,
		fields: []field{
			{"database", d.database(&dbKey, &r.Database, what)},
			{"codec", func(k, v *yaml.Node) {
				if c, ok := d.enum(v, "codec of "+what, Codecs); ok && c != "" {
					r.Codec, codecVal = c, v
				}
			}},
			{"encoding", func(k, v *yaml.Node) {
				encKey = k
				if e, ok := d.enum(v, "encoding of "+what, CipherEncodings); ok && e != "" {
					r.Encoding = e
				}
			}},
			{"columns", func(k, v *yaml.Node) {
				colsKey = k
				r.Columns = d.columns(v, "columns of "+what)
			}},
			{"command", func(k, v *yaml.Node) {
				cmdKey = k
				if c, ok := d.command(v, "command of "+what, false); ok {
					r.Command = c.Args()
				}
			}},
			{"key_id", func(k, v *yaml.Node) {
				if v.Kind != yaml.ScalarNode || (v.Value != "true" && v.Value != "false") {
					d.fail(v, "write key_id: true or key_id: false", "key_id of %s must be true or false", what)
					return
				}
				r.KeyID = v.Value == "true"
			}},
			{"batch_size", func(k, v *yaml.Node) { r.BatchSize, _ = d.integer(v, "batch_size of "+what, "2000") }},
			{"rows_per_second", func(k, v *yaml.Node) { r.RowsPerSecond, _ = d.integer(v, "rows_per_second of "+what, "5000") }},
			{"mode", func(k, v *yaml.Node) {
				if m, ok := d.enum(v, "mode of "+what, ReencryptModes); ok && m != "" {
					r.Mode = m
				}
			}},
			{"previous_key", d.previousKey(&r.PreviousKey, what)},
			{"checkpoint_schema", d.textTo(&r.CheckpointSchema, "checkpoint_schema of "+what)},
			{"pace", func(k, v *yaml.Node) {
				if p, ok := d.enum(v, "pace of "+what, Paces); ok && p != "" {
					r.Pace, paceVal = p, v
				}
			}},
			{"probe", d.textTo(&r.Probe, "probe of "+what)},
			{"target_p99", func(k, v *yaml.Node) { r.TargetP99, r.TargetFactor = d.targetP99(v, "target_p99 of "+what) }},
			{"replica_lag_ceiling", func(k, v *yaml.Node) { r.ReplicaLagCeiling, _ = d.duration(v, "replica_lag_ceiling of "+what) }},
			{"replicas", func(k, v *yaml.Node) { r.Replicas = d.secretList(v, "replicas of "+what) }},
		},
	})
	if !ok {
		return r
	}
	if r.Mode == rekey.ReencryptMaintenance && r.Pace == rekey.PaceAdaptive {
		d.fail(paceVal, "leave pace out: maintenance mode always runs at full pace", "%s: pace: adaptive needs mode: online", what)
	}
	if dbKey == nil {
		d.missing(v, v, "add database: DATABASE_URL (the secret or derived value holding the connection URL)", "%s has no database", what)
	}
	if colsKey == nil {
		d.missing(v, v, "add columns: [table.column, ...]", "%s has no columns", what)
	}
	if r.Codec == "command" && cmdKey == nil {
		d.fail(codecVal, "add command: [./bin/codec] (see `rekey help reencrypt` for the line protocol)", "codec: command needs command (%s)", what)
	}
	if r.Codec != "command" && cmdKey != nil {
		d.fail(cmdKey, "command is used only with codec: command", "%s: command without codec: command", what)
	}
	if r.Codec == "fernet" && encKey == nil {
		r.Encoding = "text"
	}
	if r.BatchSize < 0 || r.RowsPerSecond < 0 {
		d.fail(v, "use a positive number, or leave it out", "%s: batch_size and rows_per_second cannot be negative", what)
	}
	return r
}

func (d *decoder) columns(v *yaml.Node, what string) []string {
	v = resolve(v)
	if v == nil || v.Kind != yaml.SequenceNode || len(v.Content) == 0 {
		d.fail(v, "list them, e.g. columns: [patients.email, patients.ssn]", "%s must be a non-empty list", what)
		return nil
	}
	var out []string
	for _, item := range v.Content {
		t, ok := d.text(item, what)
		if !ok {
			continue
		}
		if !strings.Contains(t, ".") {
			d.fail(item, "write table.column (or schema.table.column, or table(pk).column)", "%s: %s has no table", what, quote(t))
			continue
		}
		out = append(out, t)
	}
	return out
}

// database returns a field decoder for database: NAME, the secret or
// derived value holding a connection URL: the name goes to *dst, the key
// node to *key.
func (d *decoder) database(key **yaml.Node, dst *string, what string) func(k, v *yaml.Node) {
	return func(k, v *yaml.Node) {
		*key = k
		if t, ok := d.text(v, "database of "+what); ok {
			*dst = t
			d.ref(v, t, what)
		}
	}
}

// previousKey returns a field decoder for previous_key: NAME, the key the
// superseded value is published under.
func (d *decoder) previousKey(dst *string, what string) func(k, v *yaml.Node) {
	return func(k, v *yaml.Node) {
		if t, ok := d.text(v, "previous_key of "+what); ok {
			if !varName.MatchString(t) {
				d.fail(v, varNameHint, "invalid previous_key %s", quote(t))
			}
			*dst = t
		}
	}
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}
