package app

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/rekeyhq/rekey"
)

// HistoryVersion is one version of a secret as `rekey history` lists it.
type HistoryVersion struct {
	rekey.Version
	// Note is the version's note followed by its attributes (k=v, sorted)
	// and, for a version exposed without its own mark, why it is exposed.
	Note string
}

// History lists the versions of a secret of the session's environment
// (never a value).
func (s *Session) History(ctx context.Context, name string) ([]HistoryVersion, error) {
	cfg, st, env, err := s.openEnv(ctx)
	if err != nil {
		return nil, err
	}
	if _, ok := cfg.Secret(name); !ok {
		return nil, rekey.UnknownSecret(name, cfg.Secrets)
	}
	var vs []rekey.Version
	var exposed map[int]*rekey.Exposure
	if err := st.View(ctx, func(tx rekey.Tx) error {
		if vs, err = tx.Versions(env.Name, name); err != nil {
			return err
		}
		exposed, err = rekey.Exposures(tx, env.Name, name)
		return err
	}); err != nil {
		return nil, err
	}
	out := make([]HistoryVersion, len(vs))
	for i, v := range vs {
		note := v.Note
		for _, k := range slices.Sorted(maps.Keys(v.Attrs)) {
			note = strings.TrimSpace(note + " " + k + "=" + v.Attrs[k])
		}
		// Exposed without its own mark: the same value as an exposed
		// version, or superseded by an emergency before the mark existed.
		if x := exposed[v.N]; x != nil && v.Attrs[rekey.AttrExposed] == "" {
			if x.Same != 0 {
				note = strings.TrimSpace(note + " " + rekey.AttrExposed + "=same value as v" + strconv.Itoa(x.Version))
			} else {
				note = strings.TrimSpace(note + " " + rekey.AttrExposed + "=emergency " + x.Rotation)
			}
		}
		out[i] = HistoryVersion{Version: v, Note: note}
	}
	return out, nil
}
