package config

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// tlsBase is a valid file of 9 lines (errors_test.go's head and gen) that
// the cases continue with a tls: section.
const tlsBase = head + "secrets:\n" + gen

func TestTLSSection(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rekey.yaml")
	c, err := Parse(path, []byte(tlsBase+"tls:\n  api: {file: certs/api.pem}\n  edge: {endpoint: 'api.example.com:443'}\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []TLSCert{
		{Name: "api", File: filepath.Join(dir, "certs", "api.pem"), Line: 11},
		{Name: "edge", Endpoint: "api.example.com:443", Line: 12},
	}
	if d := cmp.Diff(want, c.TLS); d != "" {
		t.Fatalf("TLS (-want +got):\n%s", d)
	}
	text, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := Parse(path, text)
	if err != nil {
		t.Fatalf("re-parse: %v\n%s", err, text)
	}
	if d := cmp.Diff(c.TLS, c2.TLS, cmpIgnoreLine()); d != "" {
		t.Errorf("round trip (-first +second):\n%s", d)
	}
}

func cmpIgnoreLine() cmp.Option {
	return cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Line" }, cmp.Ignore())
}

func TestTLSSectionErrors(t *testing.T) {
	for _, tc := range []struct{ name, tls, want, hint string }{
		{"both", "tls:\n  x: {file: a.pem, endpoint: 'h:443'}\n", `rekey.yaml:11:3: certificate x needs a file or an endpoint`, "exactly one"},
		{"neither", "tls:\n  x: {}\n", `rekey.yaml:11:3: certificate x needs a file or an endpoint`, "exactly one"},
		{"bad endpoint", "tls:\n  x: {endpoint: example.com}\n", `rekey.yaml:11:17: endpoint of certificate x is not host:port`, "host:port"},
		{"unknown key", "tls:\n  x: {path: a.pem}\n", `rekey.yaml:11:`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(filepath.Join(t.TempDir(), "rekey.yaml"), []byte(tlsBase+tc.tls))
			if err == nil {
				t.Fatal("no error")
			}
			e, ok := err.(*Error)
			if !ok {
				t.Fatalf("error %T %v", err, err)
			}
			if got := filepath.Base(e.File) + ":" + strings.SplitN(e.Error(), ":", 2)[1]; !strings.HasPrefix(got, tc.want) {
				t.Errorf("error %q, want prefix %q", got, tc.want)
			}
			if !strings.Contains(e.Hint, tc.hint) {
				t.Errorf("hint %q does not contain %q", e.Hint, tc.hint)
			}
		})
	}
}
