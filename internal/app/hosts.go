package app

// `rekey hosts status` (issue 16, item 6): for each .env on another
// machine (type: ssh targets), whether it is reachable, whether its host
// key is known, and which version of each secret it holds, by fingerprint
// (drift: a value the store does not know). Nothing is unsealed: the
// values read are fingerprinted and wiped.

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/sshhost"
)

// The states of a secret on a host (HostSecret.State).
const (
	HostCurrent = "current" // the current version
	HostOlder   = "older"   // a version of the store that is not current (its label says which)
	HostUnknown = "unknown" // a value the store never held: drift
	HostAbsent  = "absent"  // the key is not in the file
)

// HostSecret is what a host's .env holds for one secret.
type HostSecret struct {
	Name        string `json:"name"`
	State       string `json:"state"`
	Version     int    `json:"version,omitempty"`
	Label       string `json:"label,omitempty"`
	Fingerprint string `json:"fingerprint,omitempty"`
}

// HostStatus is one ssh target.
type HostStatus struct {
	Target    string `json:"target"`
	Host      string `json:"host"`
	Path      string `json:"path"`
	Reachable bool   `json:"reachable"`
	// HostKey is "ok", "unknown" or "changed" ("" when the host could not
	// be reached for another reason).
	HostKey string       `json:"host_key"`
	Error   string       `json:"error,omitempty"`
	Secrets []HostSecret `json:"secrets"`
}

// InSync reports whether the host is reachable and holds the current
// version of every secret it receives.
func (h HostStatus) InSync() bool {
	if !h.Reachable {
		return false
	}
	for _, s := range h.Secrets {
		if s.State != HostCurrent {
			return false
		}
	}
	return true
}

// HostsStatus reads every ssh target of the session's environment, in
// rekey.yaml order. A host that cannot be read is reported, not an error.
func (s *Session) HostsStatus(ctx context.Context) ([]HostStatus, error) {
	cfg, st, env, err := s.openEnv(ctx)
	if err != nil {
		return nil, err
	}
	e := s.Engine(cfg, st, env)
	out := []HostStatus{}
	for _, t := range env.Targets {
		if !t.Remote() {
			continue
		}
		hs := HostStatus{Target: t.Name, Host: t.Host, Path: t.Path, Secrets: []HostSecret{}}
		var names []string
		for _, sp := range cfg.Secrets {
			if len(sp.Targets) == 0 || slices.Contains(sp.Targets, t.Name) {
				names = append(names, sp.Name)
			}
		}
		got, err := e.Targets[t.Name].Read(ctx, names)
		switch {
		case errors.Is(err, sshhost.ErrHostKey):
			hs.HostKey = "unknown"
			if strings.Contains(err.Error(), "CHANGED") {
				hs.HostKey = "changed"
			}
			hs.Error = err.Error()
		case err != nil:
			hs.Error = err.Error()
			if !errors.Is(err, sshhost.ErrUnreachable) && rekey.ErrorCode(err) != rekey.CodeAuth {
				hs.Reachable, hs.HostKey = true, "ok" // reached: the file is missing or does not parse
			}
		default:
			hs.Reachable, hs.HostKey = true, "ok"
			if hs.Secrets, err = hostSecrets(ctx, st, env.Name, names, got); err != nil {
				return nil, err
			}
		}
		out = append(out, hs)
	}
	return out, nil
}

// hostSecrets matches what a host holds for names (got, wiped here) with
// the store's versions, by fingerprint.
func hostSecrets(ctx context.Context, st rekey.Store, env string, names []string, got map[string]rekey.Value) ([]HostSecret, error) {
	defer wipeAll(got)
	var out []HostSecret
	err := st.View(ctx, func(tx rekey.Tx) error {
		for _, n := range names {
			v, ok := got[n]
			if !ok {
				out = append(out, HostSecret{Name: n, State: HostAbsent})
				continue
			}
			hs := HostSecret{Name: n, State: HostUnknown, Fingerprint: st.Fingerprint(v)}
			vs, err := tx.Versions(env, n)
			if err != nil && !errors.Is(err, rekey.ErrNotFound) {
				return err
			}
			for _, ver := range vs {
				if ver.Fingerprint != hs.Fingerprint {
					continue
				}
				hs.Version, hs.Label, hs.State = ver.N, string(ver.Label), HostOlder
				if ver.Label == rekey.LabelCurrent {
					hs.State = HostCurrent
				}
			}
			out = append(out, hs)
		}
		return nil
	})
	return out, err
}
