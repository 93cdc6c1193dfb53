package rekey

import (
	"slices"
	"testing"
)

func TestChildEnv(t *testing.T) {
	in := []string{
		"PATH=/usr/bin", "HOME=/home/x",
		"REKEY_MASTER_KEY=mk", "REKEY_PASSPHRASE=pp",
		"REKEY_NEW_MASTER_KEY=nmk", "REKEY_NEW_PASSPHRASE=npp", "REKEY_NEW_ANYTHING=x",
		"REKEY_MASTER_KEY_FILE=/k", "REKEY_ADMIN_PASSWORD=p", "REKEY_API_TOKEN=t", "REKEY_SECRET=s",
		"rekey_master_key=lower",
		"REKEY_ACTOR=alice", "REKEY_ENVIRONMENT=staging", "REKEY_TEST_NOW=2025-01-01T00:00:00Z",
		"JWT_SECRET=app-owned", "MY_REKEY_MASTER_KEY=not-ours", "NOEQUALS",
	}
	want := []string{
		"PATH=/usr/bin", "HOME=/home/x",
		"REKEY_ACTOR=alice", "REKEY_ENVIRONMENT=staging", "REKEY_TEST_NOW=2025-01-01T00:00:00Z",
		"JWT_SECRET=app-owned", "MY_REKEY_MASTER_KEY=not-ours", "NOEQUALS",
	}
	if got := ChildEnv(in); !slices.Equal(got, want) {
		t.Errorf("ChildEnv = %q,\nwant %q", got, want)
	}
}
