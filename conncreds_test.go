package rekey

import (
	"strings"
	"testing"
)

func TestDeriveConn(t *testing.T) {
	secrets := map[string]string{"DATABASE_PASSWORD": "", "JWT_SECRET": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}
	for _, c := range []struct {
		v, pass string
		want    string // the template, or "manual", or "" (no credential)
	}{
		{"postgres://app:pw:with:colons@db/x", "pw:with:colons", "postgres://app:{{ DATABASE_PASSWORD | urlquery }}@db/x"},
		{"postgres://app:p@ss@w@rd@db:5432/x", "p@ss@w@rd", "postgres://app:{{ DATABASE_PASSWORD | urlquery }}@db:5432/x"},
		{"postgres://app:p%40ss%2Fw%3Ard@db/x", "p@ss/w:rd", "postgres://app:{{ DATABASE_PASSWORD | urlquery }}@db/x"},
		{"postgres://app:a+b@db/x", "a+b", "postgres://app:{{ DATABASE_PASSWORD | urlquery }}@db/x"},
		{"postgres://app@db/x?sslmode=require&password=Pw9Xk2Lm7Qz&application_name=api", "Pw9Xk2Lm7Qz", "postgres://app@db/x?sslmode=require&password={{ DATABASE_PASSWORD | urlquery }}&application_name=api"},
		{"postgres://app:Pw9Xk2Lm7Qz@db/x?password=Pw9Xk2Lm7Qz", "Pw9Xk2Lm7Qz", "postgres://app:{{ DATABASE_PASSWORD | urlquery }}@db/x?password={{ DATABASE_PASSWORD | urlquery }}"},
		{"postgres://app:Pw9Xk2Lm7Qz@db/x?sslkey=/etc/k.pem&sslcert=/etc/c.pem", "Pw9Xk2Lm7Qz", "postgres://app:{{ DATABASE_PASSWORD | urlquery }}@db/x?sslkey=/etc/k.pem&sslcert=/etc/c.pem"},
		{"postgres://app:Pw9Xk2Lm7Qz@db/x?sslpassword=Other1234", "Pw9Xk2Lm7Qz", "manual"},
		{"postgres://app:Other1234@db/x", "Pw9Xk2Lm7Qz", "manual"},
		{"postgres://app:pa/ss@db/x", "pa/ss", "manual"},                     // '/' cut the password short
		{"postgres://app:pa#ss@db/x", "pa#ss", "manual"},                     // '#' too
		{"postgres://app:pa%zzss@db/x", "pa%zzss", "manual"},                 // bad percent-encoding
		{"postgres://Pw9Xk2Lm7Qz:Pw9Xk2Lm7Qz@db/x", "Pw9Xk2Lm7Qz", "manual"}, // the user name is the password
		{"postgres://app:Pw9Xk2Lm7Qz@db/c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", "Pw9Xk2Lm7Qz", "manual"},
		{"redis://:Pw9Xk2Lm7Qz@cache:6379/0", "Pw9Xk2Lm7Qz", "redis://:{{ DATABASE_PASSWORD | urlquery }}@cache:6379/0"},
		{"https://api.example.com/v1?token=Tk5Lq8Wz3", "", "manual"},
		{"postgres://localhost:5432/x", "", ""},
		{"https://example.com/@me", "", ""},
		{"host=db user=app password=Pw9Xk2Lm7Qz dbname=x", "Pw9Xk2Lm7Qz", "host=db user=app password={{ DATABASE_PASSWORD | pgquote }} dbname=x"},
		{"host=db password = 'a b\\'c\\\\d' dbname=x", `a b'c\d`, "host=db password = {{ DATABASE_PASSWORD | pgquote }} dbname=x"},
		{"host=db password='unterminated dbname=x", "", "manual"},
		{"host=db user=app dbname=x", "", ""},
		{"info,hyper=warn", "", ""},
	} {
		s := map[string]string{}
		for k, v := range secrets {
			s[k] = v
		}
		s["DATABASE_PASSWORD"] = c.pass
		ct, ok := deriveConn("URL", c.v, s)
		got := ""
		switch {
		case ct.derived != nil:
			got = ct.derived.Template.Source()
		case ok:
			got = "manual"
		}
		if got != c.want {
			t.Errorf("deriveConn(%q) = %q (%v), want %q", c.v, got, ct.unmanaged, c.want)
		}
		if ct.derived != nil {
			r, err := ct.derived.Template.Render(map[string]Value{"DATABASE_PASSWORD": NewValueString(c.pass)})
			if err != nil {
				t.Fatal(err)
			}
			cr, _, _ := connCredentials(r.RevealString())
			for _, x := range cr {
				if x.value != c.pass {
					t.Errorf("%q renders %s with another value", c.v, x.where)
				}
			}
		}
		for _, u := range ct.unmanaged {
			if c.pass != "" && strings.Contains(u, c.pass) {
				t.Errorf("a reason quotes the credential")
			}
		}
	}
}

func TestPgquote(t *testing.T) {
	tm, err := ParseTemplate("password={{ P | pgquote }}")
	if err != nil {
		t.Fatal(err)
	}
	v, _ := tm.Render(map[string]Value{"P": NewValueString(`it's a \ test`)})
	if got, want := v.RevealString(), `password='it\'s a \\ test'`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}
