package app

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/sqlite"
	"github.com/rekeyhq/rekey/seal"
)

// testVersion is a version a test store starts with (environment production).
type testVersion struct {
	name, value string
	label       rekey.Label
	attrs       map[string]string
}

// newStore creates a store under a fresh master key, holding versions.
func newStore(t *testing.T, versions ...testVersion) *sqlite.DB {
	t.Helper()
	ctx := context.Background()
	key, err := seal.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Create(ctx, filepath.Join(t.TempDir(), "rekey.db"), key, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, v := range versions {
		if err := st.Update(ctx, func(tx rekey.Tx) error {
			_, err := tx.AddVersion("production", v.name, rekey.NewVersion{Value: rekey.NewValueString(v.value), Label: v.label, Attrs: v.attrs})
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	return st
}
