package rekey

import (
	"strings"
	"testing"
)

func TestWeakness(t *testing.T) {
	jwt := &Spec{Name: "JWT_SECRET", Kind: KindGenerated, Generator: JWTGenerator}
	data := &Spec{Name: "ENCRYPTION_KEY", Kind: KindDataKey, Generator: DataKeyGenerator}
	pg := &Spec{Name: "DATABASE_PASSWORD", Kind: KindPostgresPassword, Generator: PasswordGenerator}
	api := &Spec{Name: "ANTHROPIC_API_KEY", Kind: KindManual}
	strong := func(g Generator) Value {
		v, err := g.Generate(nil)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, c := range []struct {
		s    *Spec
		v    Value
		want string // "" = not weak; else a part of the reason
	}{
		{jwt, strong(JWTGenerator), ""},
		{jwt, NewValueString("changeme"), "below the 256 a signing secret needs"},
		{jwt, NewValueString(""), "empty"},
		{data, strong(DataKeyGenerator), ""},
		{data, NewValueString("c2hvcnRrZXk="), "below the 256 a data-encryption key needs"},
		{pg, strong(PasswordGenerator), ""},
		{pg, NewValueString("hunter2"), "a database password needs"},
		{api, NewValueString("sk-ant-api03-abcdefghijklmnopqrstuvwxyz012345"), ""},
		{api, NewValueString("sk-test-123"), "11 characters, short for an API key"},
		{api, NewValueString("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"), "below the 96 of an API key"},
		{api, NewValueString(strings.Repeat("ab", 60)), "repetitive"},
	} {
		got := Weakness(c.s, c.v)
		if c.want == "" && got != "" || c.want != "" && !strings.Contains(got, c.want) {
			t.Errorf("Weakness(%s, …) = %q, want %q", c.s.Name, got, c.want)
		}
		if s := c.v.RevealString(); len(s) > 3 && strings.Contains(got, s) {
			t.Errorf("reason %q holds the value", got)
		}
	}
	if KindLabel(&Spec{Name: "SMTP_PASSWORD", Kind: KindGenerated}) != "password" {
		t.Error("SMTP_PASSWORD is not a password")
	}
	if !strings.Contains(WeakFix(api), "rekey set ANTHROPIC_API_KEY") || !strings.Contains(WeakFix(jwt), "rekey rotate JWT_SECRET") {
		t.Error(WeakFix(api), WeakFix(jwt))
	}
}
