package rekey

import (
	"strings"
	"testing"
	"time"
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
	// A password rekey generates (24 bytes) is not weak: a password needs
	// 128 bits, not a signing key's 256; status agrees.
	smtp := &Spec{Name: "SMTP_PASSWORD", Kind: KindGenerated, Generator: PasswordGenerator, Period: 180 * Day}
	if KindLabel(smtp) != "password" || MinBitsFor(smtp) != 128 {
		t.Errorf("SMTP_PASSWORD: %s, %d bits", KindLabel(smtp), MinBitsFor(smtp))
	}
	if why := Weakness(smtp, strong(PasswordGenerator)); why != "" {
		t.Errorf("a generated password is weak: %s", why)
	}
	now := time.Now()
	rows := ComputeStatus("production", []Spec{*smtp}, map[string]Version{"SMTP_PASSWORD": {N: 1, CreatedAt: now}}, map[string]int{"SMTP_PASSWORD": 192}, now)
	if rows[0].State != StateOK {
		t.Errorf("status of a generated password: %s", rows[0].State)
	}
	if !strings.Contains(WeakFix(api), "rekey set ANTHROPIC_API_KEY") || !strings.Contains(WeakFix(jwt), "rekey rotate JWT_SECRET") {
		t.Error(WeakFix(api), WeakFix(jwt))
	}
}
