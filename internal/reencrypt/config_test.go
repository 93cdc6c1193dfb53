package reencrypt

import (
	"reflect"
	"strings"
	"testing"

	"github.com/rekeyhq/rekey"
)

func TestParseColumns(t *testing.T) {
	got, err := ParseColumns([]string{
		"patients.email", "patients.ssn", "billing.invoices.iban", "items(tenant, id).secret", `"Odd.Name"."col ""x"""`, "items.note",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []TableSpec{
		{Table: "patients", Columns: []string{"email", "ssn"}},
		{Schema: "billing", Table: "invoices", Columns: []string{"iban"}},
		{Table: "items", PK: []string{"tenant", "id"}, Columns: []string{"secret", "note"}},
		{Table: "Odd.Name", Columns: []string{`col "x"`}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %+v\nwant %+v", got, want)
	}
	if n := got[3].Name(); n != `"Odd.Name"` {
		t.Fatalf("Name() = %s", n)
	}

	for in, wantErr := range map[string]string{
		"email":                        "want table.column",
		"a.b.c.d":                      "want table.column",
		"t(id.c":                       "expected ',' or ')'",
		"t().c":                        "expected an identifier",
		"s(id).t.c":                    "right after the table name",
		"t(id)(id).c":                  "expected '.'",
		"t(id, id).c":                  "listed twice",
		`"unterminated.c`:              "unterminated",
		"t.":                           "expected an identifier",
		"1t.c":                         "expected an identifier",
		`"".c`:                         "empty identifier",
		"t(id).id":                     "also a key column",
		"t." + strings.Repeat("x", 64): "longer than 63",
	} {
		_, err := ParseColumns([]string{in})
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%q: %v, want %q", in, err, wantErr)
		} else if rekey.ErrorCode(err) != rekey.CodeInvalid {
			t.Errorf("%q: code %v", in, rekey.ErrorCode(err))
		}
	}
	for _, in := range [][]string{{"t.c", "t.c"}, {"t(a).c", "t(b).d"}, {}} {
		if _, err := ParseColumns(in); err == nil {
			t.Errorf("%q: accepted", in)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := []rekey.ReencryptSpec{
		{Columns: []string{"t.c"}},
		{Codec: CodecChaCha, Encoding: EncodingHex, Columns: []string{"t.c"}, KeyID: true},
		{Codec: CodecFernet, Columns: []string{"t.c"}},
		{Codec: CodecFernet, Encoding: EncodingBase64URL, Columns: []string{"t.c"}},
		{Codec: CodecFernet, Encoding: EncodingBytea, Columns: []string{"t.c"}},
		{Codec: CodecCommand, Command: []string{"/bin/codec"}, Encoding: EncodingText, Columns: []string{"t.c"}, KeyID: true},
		{Columns: []string{"t.c"}, BatchSize: 1, RowsPerSecond: 10},
	}
	for _, c := range ok {
		if err := Validate(c); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
	bad := map[string]rekey.ReencryptSpec{
		"unknown codec":    {Codec: "rot13", Columns: []string{"t.c"}},
		"unknown encoding": {Encoding: "base32", Columns: []string{"t.c"}},
		"fernet hex":       {Codec: CodecFernet, Encoding: EncodingHex, Columns: []string{"t.c"}},
		"fernet key id":    {Codec: CodecFernet, KeyID: true, Columns: []string{"t.c"}},
		"aes text":         {Encoding: EncodingText, Columns: []string{"t.c"}},
		"command missing":  {Codec: CodecCommand, Columns: []string{"t.c"}},
		"command unused":   {Command: []string{"x"}, Columns: []string{"t.c"}},
		"batch":            {BatchSize: -1, Columns: []string{"t.c"}},
		"huge batch":       {BatchSize: 1 << 20, Columns: []string{"t.c"}},
		"rate":             {RowsPerSecond: -1, Columns: []string{"t.c"}},
		"no columns":       {},
	}
	for name, c := range bad {
		err := Validate(c)
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if rekey.ErrorCode(err) != rekey.CodeInvalid {
			t.Errorf("%s: code %v", name, rekey.ErrorCode(err))
		}
	}
}
