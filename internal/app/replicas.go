package app

import (
	"strings"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/reencrypt"
)

// replicaConns resolves the replicas: of a reencrypt section (secrets
// holding the URLs of streaming replicas) for the lag throttle.
func replicaConns(vals *Values, names []string) ([]reencrypt.Replica, error) {
	var out []reencrypt.Replica
	for _, name := range names {
		v, err := vals.Resolve(name)
		if err != nil {
			return nil, err
		}
		dsn := v.RevealString()
		if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
			return nil, rekey.Errorf(rekey.CodeInvalid, "replica %s does not hold a postgres:// URL", name).
				WithHint("store a hot standby's URL in %s (rekey set %s), or remove it from replicas:", name, name)
		}
		out = append(out, reencrypt.Replica{Name: name, DSN: dsn})
	}
	return out, nil
}

// lagNotes narrates the replica lag throttle's decisions: a hold and its
// resume as progress, the missing pg_monitor as a warning.
func (w *wiring) lagNotes(d reencrypt.LagDecision) {
	if d.Action == reencrypt.LagUnmonitored {
		w.s.warnf("%s", d)
		return
	}
	w.say("%s", d)
}
