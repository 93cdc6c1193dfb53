package doctor

import "testing"

func TestVerboseLevel(t *testing.T) {
	for v, want := range map[string]string{
		"info": "", "debug": "debug", "info,app=debug": "debug", "app::db=TRACE": "trace",
		" warn , hyper=info": "", "debug/foo": "debug", "": "", "debugger": "",
	} {
		if got := verboseLevel(v); got != want {
			t.Errorf("verboseLevel(%q) = %q, want %q", v, got, want)
		}
	}
}
