package dotenv

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/rekeyhq/rekey/internal/testkit"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

type binding struct {
	Key   string
	Value string
	Line  int
}

func bindings(f *File) []binding {
	var out []binding
	for _, k := range f.Keys() {
		v, ok := f.Get(k)
		if !ok {
			panic("Keys lists a key that Get does not know")
		}
		out = append(out, binding{k, v, f.Line(k)})
	}
	return out
}

// compareBindings reports differences in keys and lines, and for values
// only which key differs.
func compareBindings(t *testing.T, got, want []binding) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d bindings %v, want %d %v", len(got), keysOf(got), len(want), keysOf(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Key != w.Key || g.Line != w.Line {
			t.Errorf("binding %d = %s on line %d, want %s on line %d", i, g.Key, g.Line, w.Key, w.Line)
		}
		if g.Value != w.Value {
			t.Errorf("value of %s: %s", w.Key, valueDiff(g.Value, w.Value))
		}
	}
}

func keysOf(bs []binding) []string {
	var ks []string
	for _, b := range bs {
		ks = append(ks, b.Key)
	}
	return ks
}

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []binding
	}{
		{"empty", "", nil},
		{"blank lines", "\n\n  \n\t\n", nil},
		{"comment", "# a comment\n", nil},
		{"indented comment", "   # a comment\n\t# another\n", nil},
		{"comment with equals", "# KEY=value\n", nil},
		{"simple", "KEY=value\n", []binding{{"KEY", "value", 1}}},
		{"export", "export KEY=value\n", []binding{{"KEY", "value", 1}}},
		{"export with tabs", "export\t\tKEY=value\n", []binding{{"KEY", "value", 1}}},
		{"key named export", "export=value\n", []binding{{"export", "value", 1}}},
		{"key named export with space", "export =value\n", []binding{{"export", "value", 1}}},
		{"key named export with tab", "export\t=value\n", []binding{{"export", "value", 1}}},
		{"key with export prefix in name", "exported=value\n", []binding{{"exported", "value", 1}}},
		{"indented binding", "  KEY=value\n", []binding{{"KEY", "value", 1}}},
		{"spaces around equals", "KEY = value\n", []binding{{"KEY", "value", 1}}},
		{"tabs around equals", "KEY\t=\tvalue\n", []binding{{"KEY", "value", 1}}},
		{"dotted key", "a.b_C9=value\n", []binding{{"a.b_C9", "value", 1}}},
		{"underscore key", "_=value\n", []binding{{"_", "value", 1}}},
		{"unquoted trailing whitespace", "KEY=value  \t\n", []binding{{"KEY", "value", 1}}},
		{"unquoted inner spaces", "KEY=a b  c\n", []binding{{"KEY", "a b  c", 1}}},
		{"inline comment", "KEY=value # comment\n", []binding{{"KEY", "value", 1}}},
		{"inline comment after tab", "KEY=value\t# comment\n", []binding{{"KEY", "value", 1}}},
		{"hash without space is value", "KEY=a#b\n", []binding{{"KEY", "a#b", 1}}},
		{"hash right after equals is value", "KEY=#fff\n", []binding{{"KEY", "#fff", 1}}},
		{"space then hash is comment", "KEY= #comment\n", []binding{{"KEY", "", 1}}},
		{"first space-hash starts the comment", "KEY=a # b # c\n", []binding{{"KEY", "a", 1}}},
		{"equals in value", "KEY=a=b==\n", []binding{{"KEY", "a=b==", 1}}},
		{"value starting with equals", "KEY==a\n", []binding{{"KEY", "=a", 1}}},
		{"quotes inside unquoted", "KEY=it's \"x\"\n", []binding{{"KEY", `it's "x"`, 1}}},
		{"backtick is not a quote", "KEY=`x`\n", []binding{{"KEY", "`x`", 1}}},
		{"unquoted dollar kept literally", "KEY=$HOME${X}\n", []binding{{"KEY", "$HOME${X}", 1}}},
		{"unquoted backslash kept literally", `KEY=a\nb` + "\n", []binding{{"KEY", `a\nb`, 1}}},
		{"empty", "KEY=\n", []binding{{"KEY", "", 1}}},
		{"empty with spaces", "KEY=   \n", []binding{{"KEY", "", 1}}},
		{"empty at EOF", "KEY=", []binding{{"KEY", "", 1}}},
		{"single quoted", "KEY='a b'\n", []binding{{"KEY", "a b", 1}}},
		{"single quoted is literal", `KEY='a\nb $HOME \" # c'` + "\n", []binding{{"KEY", `a\nb $HOME \" # c`, 1}}},
		{"single quoted keeps spaces", "KEY=' a '\n", []binding{{"KEY", " a ", 1}}},
		{"single quoted empty", "KEY=''\n", []binding{{"KEY", "", 1}}},
		{"single quoted multi-line", "KEY='a\nb'\nNEXT=1\n", []binding{{"KEY", "a\nb", 1}, {"NEXT", "1", 3}}},
		{"double quoted", `KEY="a b"` + "\n", []binding{{"KEY", "a b", 1}}},
		{"double quoted escapes", `KEY="n\n r\r t\t q\" b\\ s\' d\$"` + "\n", []binding{{"KEY", "n\n r\r t\t q\" b\\ s' d$", 1}}},
		{"double quoted unknown escape kept", `KEY="\a\x"` + "\n", []binding{{"KEY", `\a\x`, 1}}},
		{"double quoted dollar kept literally", `KEY="$HOME"` + "\n", []binding{{"KEY", "$HOME", 1}}},
		{"double quoted empty", `KEY=""` + "\n", []binding{{"KEY", "", 1}}},
		{"double quoted single quote", `KEY="it's"` + "\n", []binding{{"KEY", "it's", 1}}},
		{"double quoted hash", `KEY="a # b"` + "\n", []binding{{"KEY", "a # b", 1}}},
		{"double quoted multi-line", "KEY=\"a\nb # c\n\"\nNEXT=1\n", []binding{{"KEY", "a\nb # c\n", 1}, {"NEXT", "1", 4}}},
		{"double quoted multi-line CRLF", "KEY=\"a\r\nb\"\r\nNEXT=1\r\n", []binding{{"KEY", "a\nb", 1}, {"NEXT", "1", 3}}},
		{"double quoted escaped newline and quote", "KEY=\"a\\\"\nb\"\n", []binding{{"KEY", "a\"\nb", 1}}},
		{"comment after closing quote", "KEY='v' # c\n", []binding{{"KEY", "v", 1}}},
		{"comment right after closing quote", `KEY="v"#c` + "\n", []binding{{"KEY", "v", 1}}},
		{"comment with quote after closing quote", "KEY=\"v\" # it's\n", []binding{{"KEY", "v", 1}}},
		{"whitespace after closing quote", "KEY='v'  \t\n", []binding{{"KEY", "v", 1}}},
		{"space before quote", "KEY=  'v'\n", []binding{{"KEY", "v", 1}}},
		{"CRLF", "A=1\r\nB='2'\r\n", []binding{{"A", "1", 1}, {"B", "2", 2}}},
		{"mixed line endings", "A=1\r\nB=2\nC=3\r\n", []binding{{"A", "1", 1}, {"B", "2", 2}, {"C", "3", 3}}},
		{"CRLF unquoted trailing space", "A=1 \r\n", []binding{{"A", "1", 1}}},
		{"no final newline", "A=1\nB=2", []binding{{"A", "1", 1}, {"B", "2", 2}}},
		{"no final newline quoted", "A='1' # c", []binding{{"A", "1", 1}}},
		{"BOM", "\uFEFFA=1\n", []binding{{"A", "1", 1}}},
		{"BOM then comment", "\uFEFF# c\nA=1\n", []binding{{"A", "1", 2}}},
		{"BOM only", "\uFEFF", nil},
		{"non-ASCII value", "A=päss wörd\n", []binding{{"A", "päss wörd", 1}}},
		{"lines counted", "# c\n\nA=1\n\n  B=2\n", []binding{{"A", "1", 3}, {"B", "2", 5}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := mustParse(t, tt.in)
			compareBindings(t, bindings(f), tt.want)
			if got := f.Bytes(); string(got) != tt.in {
				t.Errorf("Bytes() differs from input: %s", testkit.BytesDiff(got, []byte(tt.in)))
			}
			if _, ok := f.Get("ABSENT"); ok {
				t.Error("Get(ABSENT) reports ok")
			}
			if l := f.Line("ABSENT"); l != 0 {
				t.Errorf("Line(ABSENT) = %d, want 0", l)
			}
		})
	}
}

func TestParseDoesNotAliasInput(t *testing.T) {
	in := []byte("A=1\nB=2")
	f, err := Parse("x", in)
	if err != nil {
		t.Fatal(err)
	}
	copy(in, "Z=9\nY=8")
	if got := string(f.Bytes()); got != "A=1\nB=2" {
		t.Errorf("Bytes() changed with the input slice: %s", testkit.BytesDiff([]byte(got), []byte("A=1\nB=2")))
	}
	b := f.Bytes()
	b[0] = 'X'
	if got := string(f.Bytes()); got != "A=1\nB=2" {
		t.Error("modifying the result of Bytes() changed the File")
	}
}

// secret is put into every refused input; no error may contain it.
const secret = "s3cr3tV4lue"

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		line int
		msg  string // substring of the message
	}{
		{"duplicate key", "A=" + secret + "\n# c\nA=" + secret + "2\n", 3, "duplicate key A (first defined on line 1)"},
		{"duplicate key via export", "export A=1\nB=2\nA=" + secret + "\n", 3, "duplicate key A (first defined on line 1)"},
		{"duplicate after multi-line", "A=\"" + secret + "\n\"\nA=2\n", 3, "first defined on line 1"},
		{"unterminated single quote", "A=1\nB='" + secret + "\nC=3\n", 2, "unterminated single-quoted value of B"},
		{"unterminated double quote", "A=1\n\nB=\"" + secret + "\nC=3\n", 3, "unterminated double-quoted value of B"},
		{"unterminated by escaped quote", `B="` + secret + `\"`, 1, "unterminated double-quoted value of B"},
		{"unterminated at EOF", "B='" + secret, 1, "unterminated"},
		{"no equals", "A=1\n" + secret + "\n", 2, `has no "="`},
		{"no equals with export", "export " + secret + "\n", 1, `has no "="`},
		{"colon instead of equals", "KEY: " + secret + "\n", 1, `has no "="`},
		{"key starts with digit", "1KEY=" + secret + "\n", 1, "invalid key name"},
		{"key with dash", "MY-KEY=" + secret + "\n", 1, "invalid key name"},
		{"key with space", "MY KEY=" + secret + "\n", 1, "invalid key name"},
		{"quoted key", `"KEY"=` + secret + "\n", 1, "invalid key name"},
		{"empty key", "=" + secret + "\n", 1, "invalid key name"},
		{"secret looking key", secret + "-x=1\n", 1, "invalid key name"},
		{"text after single quote", "A='" + secret + "'x\n", 1, "unexpected text after the closing quote of A"},
		{"text after double quote", "A=\"" + secret + "\" x\n", 1, "unexpected text after the closing quote of A"},
		{"text after multi-line quote", "A=\"a\n" + secret + "\"" + secret + "\n", 2, "unexpected text after the closing quote of A"},
		{"second quoted part", "A='a' '" + secret + "'\n", 1, "unexpected text after the closing quote"},
		{"stray carriage return", "A=1\nB=" + secret + "\rC=2\n", 2, "carriage return"},
		{"carriage return at EOF", "A=" + secret + "\r", 1, "carriage return"},
		{"carriage return in quotes", "A='" + secret + "\r'\n", 1, "carriage return"},
		{"BOM not at start", "A=1\n\uFEFFB=" + secret + "\n", 2, "invalid key name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("test.env", []byte(tt.in))
			if err == nil {
				t.Fatal("Parse accepted the input")
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error is %T, want *ParseError", err)
			}
			if pe.File != "test.env" || pe.Line != tt.line {
				t.Errorf("error at %s:%d, want test.env:%d", pe.File, pe.Line, tt.line)
			}
			prefix := fmt.Sprintf("test.env:%d: ", tt.line)
			if !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("error %q does not start with %q", err, prefix)
			}
			if !strings.Contains(pe.Msg, tt.msg) {
				t.Errorf("message %q does not contain %q", pe.Msg, tt.msg)
			}
			if pe.Hint == "" {
				t.Error("no hint")
			}
			if strings.Contains(err.Error()+pe.Hint, secret[:6]) {
				t.Error("error or hint contains the value")
			}
			if pe.Msg != strings.ToLower(pe.Msg[:1])+pe.Msg[1:] || strings.Contains(pe.Msg, "failed to") {
				t.Errorf("message %q is not terse lowercase", pe.Msg)
			}
		})
	}
}

func TestParseErrorWithoutFileName(t *testing.T) {
	_, err := Parse("", []byte("A\n"))
	if err == nil || err.Error() != `line 1: line is not blank, not a comment and has no "="` {
		t.Errorf("error = %v", err)
	}
}

func TestSet(t *testing.T) {
	tests := []struct {
		name       string
		in         string
		key, value string
		want       string
	}{
		{"replace plain", "A=1\nB=old\nC=3\n", "B", "new", "A=1\nB=new\nC=3\n"},
		{"keep export spacing comment CRLF", "A=1\r\n  export  B = old  # note\r\nC=3", "B", "new-v", "A=1\r\n  export  B = new-v  # note\r\nC=3"},
		{"keep tab spacing", "B\t=\told\n", "B", "x", "B\t=\tx\n"},
		{"single quoted stays single", "B='old'\n", "B", "plain", "B='plain'\n"},
		{"double quoted stays double", "B=\"old\" # c\n", "B", "plain", "B=\"plain\" # c\n"},
		{"needs quotes", "B=old\n", "B", "a b", "B='a b'\n"},
		{"hash needs quotes", "B=old # c\n", "B", "a#b", "B='a#b' # c\n"},
		{"dollar needs quotes", "B=\"old\"\n", "B", "pa$$ $HOME", "B='pa$$ $HOME'\n"},
		{"double quote char", "B=old\n", "B", `say "hi"`, "B='say \"hi\"'\n"},
		{"backslash", "B=old\n", "B", `C:\dir\file`, `B='C:\dir\file'` + "\n"},
		{"leading and trailing spaces", "B=old\n", "B", " x ", "B=' x '\n"},
		{"non-ASCII", "B=old\n", "B", "pässwörd", "B='pässwörd'\n"},
		{"every plain char", "B=old\n", "B", "Az09_-.:/+=@%,~?&*!^[]", "B=Az09_-.:/+=@%,~?&*!^[]\n"},
		{"base64", "B=old\n", "B", "q8+Vx/3kZmFrZQ==", "B=q8+Vx/3kZmFrZQ==\n"},
		{"multi-line to single line", "A=1\nB=\"x\ny\nz\"  # c\nC=3\n", "B", "v", "A=1\nB=\"v\"  # c\nC=3\n"},
		{"multi-line CRLF", "B='x\r\ny'\r\nC=3\r\n", "B", "v w", "B='v w'\r\nC=3\r\n"},
		{"empty", "B=old\n", "B", "", "B=\n"},
		{"empty keeps spacing", "B = old\n", "B", "", "B = \n"},
		{"empty from quoted", "B='old'\n", "B", "", "B=''\n"},
		{"empty with comment", "B=old # c\n", "B", "", "B='' # c\n"},
		{"empty to empty with comment", "B=   # c\n", "B", "", "B=''   # c\n"},
		{"value into empty with comment", "B=   # c\n", "B", "v", "B=v   # c\n"},
		{"value into empty with spaces", "B=  \n", "B", "v", "B=v  \n"},
		{"hash right after quote gets a space", "B=\"old\"#c\n", "B", "a b", "B='a b' #c\n"},
		{"hash right after quote plain", "B='old'#c\n", "B", "v", "B='v' #c\n"},
		{"comment with two hashes quotes plain", "B=old # c # d\n", "B", "v", "B='v' # c # d\n"},
		{"no final newline", "A=1\nB=old", "B", "v", "A=1\nB=v"},
		{"BOM kept", "\uFEFFB=old\n", "B", "v", "\uFEFFB=v\n"},
		{"append", "A=1\n", "B", "v", "A=1\nB=v\n"},
		{"append quoted", "A=1\n", "B", "a b", "A=1\nB='a b'\n"},
		{"append empty", "A=1\n", "B", "", "A=1\nB=\n"},
		{"append adds final newline", "A=1", "B", "v", "A=1\nB=v\n"},
		{"append after comment without newline", "A=1\n# c", "B", "v", "A=1\n# c\nB=v\n"},
		{"append CRLF dominant", "A=1\r\nC=2\r\nD=3\n", "B", "v", "A=1\r\nC=2\r\nD=3\nB=v\r\n"},
		{"append CRLF without final newline", "A=1\r\nC=2", "B", "v", "A=1\r\nC=2\r\nB=v\r\n"},
		{"append LF on tie", "A=1\r\nC=2\n", "B", "v", "A=1\r\nC=2\nB=v\n"},
		{"append to empty file", "", "B", "v", "B=v\n"},
		{"append to BOM only", "\uFEFF", "B", "v", "\uFEFFB=v\n"},
		{"append key named export", "A=1\n", "export", "v", "A=1\nexport=v\n"},
		{"replace key named export", "export =old\n", "export", "v", "export =v\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := mustParse(t, tt.in)
			before := values(f)
			if err := f.Set(tt.key, tt.value); err != nil {
				t.Fatalf("Set: %v", err)
			}
			if got := f.Bytes(); string(got) != tt.want {
				t.Errorf("Bytes(): %s", testkit.BytesDiff(got, []byte(tt.want)))
			}
			if got, _ := f.Get(tt.key); got != tt.value {
				t.Errorf("Get after Set: %s", valueDiff(got, tt.value))
			}
			g := mustParse(t, string(f.Bytes()))
			after := values(g)
			before[tt.key] = tt.value
			if d := mapDiff(after, before); d != nil {
				t.Errorf("re-parsed values differ: %v", d)
			}
			if diff := cmp.Diff(f.Keys(), g.Keys()); diff != "" {
				t.Errorf("Keys() differ after re-parse (-edited +reparsed):\n%s", diff)
			}
		})
	}
}

func TestSetRefuses(t *testing.T) {
	tests := []struct {
		name   string
		value  string
		reason string
	}{
		{"single quote", secret + "'x", "single quote"},
		{"newline", secret + "\nx", "line break"},
		{"carriage return", secret + "\rx", "line break"},
		{"NUL", secret + "\x00x", "NUL"},
		{"brace expansion", secret + "${HOME}", `"${"`},
		{"double backslash", secret + `\\x`, "two consecutive backslashes"},
		{"trailing backslash", secret + `\`, "ends with a backslash"},
		{"invalid UTF-8", secret + "\xff", "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const in = "# c\nA=old # note\n"
			for _, key := range []string{"A", "NEW"} {
				f := mustParse(t, in)
				err := f.Set(key, tt.value)
				if err == nil {
					t.Fatalf("Set(%s) accepted the value", key)
				}
				if !errors.Is(err, ErrNotPortable) {
					t.Errorf("Set(%s) error does not wrap ErrNotPortable: %v", key, err)
				}
				if !strings.Contains(err.Error(), tt.reason) || !strings.Contains(err.Error(), key) {
					t.Errorf("Set(%s) error %q does not name the key and %q", key, err, tt.reason)
				}
				if strings.Contains(err.Error(), secret[:6]) {
					t.Errorf("Set(%s) error contains the value", key)
				}
				if got := string(f.Bytes()); got != in {
					t.Errorf("refused Set(%s) changed the file", key)
				}
			}
			if _, err := Quote(tt.value); !errors.Is(err, ErrNotPortable) || strings.Contains(err.Error(), secret[:6]) {
				t.Errorf("Quote error = %v", err)
			}
		})
	}
}

func TestSetInvalidKey(t *testing.T) {
	for _, key := range []string{"", "1A", "A-B", "A B", "A=B", "Ä"} {
		f := mustParse(t, "A=1\n")
		if err := f.Set(key, "v"); err == nil {
			t.Errorf("Set(%q) accepted an invalid key", key)
		}
		if string(f.Bytes()) != "A=1\n" {
			t.Errorf("Set(%q) changed the file", key)
		}
	}
}

func TestQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"abc", "abc"},
		{"Az09_-.:/+=@%,~?&*!^[]", "Az09_-.:/+=@%,~?&*!^[]"},
		{"q8+Vx/3kZmFrZQ==", "q8+Vx/3kZmFrZQ=="},
		{"q8-Vx_3kZmFrZQ", "q8-Vx_3kZmFrZQ"},
		{"https://u%40x:p@h/p?a=1&b=2", "https://u%40x:p@h/p?a=1&b=2"},
		{"a b", "'a b'"},
		{"a\tb", "'a\tb'"},
		{"$HOME", "'$HOME'"},
		{"$", "'$'"},
		{"a#b", "'a#b'"},
		{"#", "'#'"},
		{`"`, `'"'`},
		{"`x`", "'`x`'"},
		{`a\b`, `'a\b'`},
		{`\a`, `'\a'`},
		{"ü", "'ü'"},
		{"$(cmd)", "'$(cmd)'"},
		{"{}", "'{}'"},
		{"a;b|c<d>e", "'a;b|c<d>e'"},
	}
	for _, tt := range tests {
		got, err := Quote(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("Quote(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestDelete(t *testing.T) {
	tests := []struct {
		name, in, key, want string
	}{
		{"middle", "A=1\nB=2\nC=3\n", "B", "A=1\nC=3\n"},
		{"first with BOM", "\uFEFFA=1\nB=2\n", "A", "\uFEFFB=2\n"},
		{"multi-line", "A=1\nB=\"x\ny\" # c\nC=3\n", "B", "A=1\nC=3\n"},
		{"CRLF", "A=1\r\nB=2\r\nC=3\r\n", "B", "A=1\r\nC=3\r\n"},
		{"last without newline", "A=1\nB=2", "B", "A=1\n"},
		{"only", "B=2", "B", ""},
		{"export and comment", "export B=2 # c\n# keep\n", "B", "# keep\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := mustParse(t, tt.in)
			if !f.Delete(tt.key) {
				t.Fatal("Delete reported the key absent")
			}
			if got := f.Bytes(); string(got) != tt.want {
				t.Errorf("Bytes(): %s", testkit.BytesDiff(got, []byte(tt.want)))
			}
			if _, ok := f.Get(tt.key); ok || f.Line(tt.key) != 0 {
				t.Error("key still defined")
			}
			if f.Delete(tt.key) {
				t.Error("second Delete reported the key present")
			}
			mustParse(t, string(f.Bytes()))
		})
	}
}

func TestLineAfterEdits(t *testing.T) {
	f := mustParse(t, "A=1\nB=\"x\ny\"\nC=3\n")
	line := func(when, key string, want int) {
		t.Helper()
		if got := f.Line(key); got != want {
			t.Errorf("%sLine(%s) = %d, want %d", when, key, got, want)
		}
	}
	line("", "C", 4)
	if err := f.Set("B", "v"); err != nil {
		t.Fatal(err)
	}
	line("after Set, ", "C", 3)
	f.Delete("A")
	line("after Delete, ", "C", 2)
	if err := f.Set("D", "4"); err != nil {
		t.Fatal(err)
	}
	line("", "D", 3)
	if diff := cmp.Diff([]string{"B", "C", "D"}, f.Keys()); diff != "" {
		t.Errorf("Keys() (-want +got):\n%s", diff)
	}
}

// TestGolden parses testdata/tricky.env, checks the round trip and compares
// the parsed values, the result of several Sets and the result of Deletes
// with golden files. go test -update rewrites the golden files.
func TestGolden(t *testing.T) {
	in, err := os.ReadFile(filepath.Join("testdata", "tricky.env"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := Parse("tricky.env", in)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Bytes(); string(got) != string(in) {
		t.Fatalf("round trip: %s", testkit.BytesDiff(got, in))
	}

	var sb strings.Builder
	for _, b := range bindings(f) {
		fmt.Fprintf(&sb, "%d %s=%q\n", b.Line, b.Key, b.Value)
	}
	testkit.Golden(t, "tricky.values.golden", []byte(sb.String()), *update, testkit.BytesDiff)

	sets := []struct{ key, value string }{
		{"API_KEY", "rotated-PLAIN_1"},                   // export kept, unquoted
		{"SPACED", "rotated # with hash"},                // spacing and comment kept, single quotes
		{"SINGLE", "rotated"},                            // stays single-quoted
		{"DOUBLE", "rotated/+="},                         // stays double-quoted
		{"MULTI", "rotated $dollar"},                     // three lines become one
		{"CRLF_KEY", "rotated-crlf"},                     // CRLF kept
		{"CRLF_QUOTED", "rotated crlf"},                  // CRLF and comment kept
		{"EMPTY_COMMENT", "rotated"},                     // comment kept
		{"EMPTY_QUOTED", ""},                             // stays ''
		{"NOSPACE", "rotated"},                           // space inserted before #
		{"URL", "postgres://u%40corp:p@db:5432/x?ssl=1"}, // plain
		{"LAST", "rotated-last"},                         // still no final newline
		{"NEW_KEY", "appended value"},                    // newline added, then appended
	}
	for _, s := range sets {
		if err := f.Set(s.key, s.value); err != nil {
			t.Fatalf("Set(%s): %v", s.key, err)
		}
	}
	out := f.Bytes()
	testkit.Golden(t, "tricky.set.golden", out, *update, testkit.BytesDiff)
	g, err := Parse("tricky.set.golden", out)
	if err != nil {
		t.Fatalf("re-parse: %v", err)
	}
	for _, s := range sets {
		if v, _ := g.Get(s.key); v != s.value {
			t.Errorf("re-parsed %s: %s", s.key, valueDiff(v, s.value))
		}
	}

	for _, k := range []string{"MULTI", "CRLF_QUOTED", "LAST", "NEW_KEY"} {
		if !g.Delete(k) {
			t.Errorf("Delete(%s) = false", k)
		}
	}
	testkit.Golden(t, "tricky.delete.golden", g.Bytes(), *update, testkit.BytesDiff)
}
