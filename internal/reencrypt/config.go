package reencrypt

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/rekeyhq/rekey"
)

// Codec names.
const (
	CodecAESGCM   = "aes-256-gcm"
	CodecChaCha   = "chacha20-poly1305"
	CodecFernet   = "fernet"
	CodecCommand  = "command"
	defaultCodec  = CodecAESGCM
	maxBatchSize  = 50000
	minBatchSize  = 1
	maxIdentBytes = 63 // NAMEDATALEN-1
)

// Column encodings: how a ciphertext is stored in its column.
const (
	EncodingBase64    = "base64"    // text column, standard alphabet (padded on write; unpadded accepted)
	EncodingBase64URL = "base64url" // text column, URL-safe alphabet (padding mirrored; see the package doc)
	EncodingHex       = "hex"       // text column, lowercase hex on write (either case accepted)
	EncodingBytea     = "bytea"     // bytea column, the raw bytes
	EncodingText      = "text"      // text column, the codec's output as it is (fernet tokens, command codecs that emit text)
)

// DefaultBatchSize is the number of rows read and written per batch when
// BatchSize is 0 (see bench/reencrypt for the figures behind it).
const DefaultBatchSize = 2000

// What a job re-encrypts and how is a secret's reencrypt: section of
// rekey.yaml, the domain's rekey.ReencryptSpec; this package reads these
// fields of it (Database, Mode and PreviousKey are the engine's):
//
//   - Codec is aes-256-gcm (default), chacha20-poly1305, fernet or command.
//   - Encoding is how the ciphertext is stored: base64 (default; fernet:
//     text), base64url, hex, bytea, or text (fernet and command only).
//   - Columns are the encrypted columns: "table.column",
//     "schema.table.column", and "table(pk1,pk2).column" to name the key
//     columns of a table without a primary key (they must be covered by a
//     unique index). Identifiers are exact (case-sensitive); double-quote
//     one holding '.', '(' , ')' or ',' ("my.table".col).
//   - Command is the program (and its arguments) of the command codec. It
//     holds no key material: keys travel on the program's stdin.
//   - KeyID prefixes every NEW ciphertext with the key-id header (see the
//     package doc). Values with and without it are read either way.
//   - BatchSize is the number of rows per batch (0: DefaultBatchSize).
//   - RowsPerSecond caps the rows read per second (0: no limit).
//   - Pace, Probe, TargetP99, TargetFactor: the adaptive pace (pace.go).

// TableSpec is the set of encrypted columns of one table, as parsed from
// the spec's Columns.
type TableSpec struct {
	Schema  string   // "" means the first match on the search_path
	Table   string   // exact name
	PK      []string // key columns named in the config; nil: the primary key
	Columns []string // encrypted columns, in config order
}

// Name is the table as written in the config ("schema.table" or "table").
func (t TableSpec) Name() string {
	if t.Schema == "" {
		return displayIdent(t.Table)
	}
	return displayIdent(t.Schema) + "." + displayIdent(t.Table)
}

func invalid(format string, args ...any) *rekey.Error {
	return rekey.Errorf(rekey.CodeInvalid, "reencrypt: "+format, args...)
}

// normalized returns c with the defaults of this package applied.
func normalized(c rekey.ReencryptSpec) rekey.ReencryptSpec {
	if c.Codec == "" {
		c.Codec = defaultCodec
	}
	if c.Encoding == "" {
		if c.Codec == CodecFernet {
			c.Encoding = EncodingText
		} else {
			c.Encoding = EncodingBase64
		}
	}
	if c.Codec == CodecFernet && c.Encoding == EncodingBase64URL {
		c.Encoding = EncodingText // a token is URL-safe base64 already: stored as it is
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	return c
}

// Validate checks the configuration (not the database: Run and Count
// check the tables and column types). Errors are *rekey.Error with
// CodeInvalid and never quote key material.
func Validate(c rekey.ReencryptSpec) error {
	_, err := validate(c)
	return err
}

// prepare returns c with the defaults of this package applied and the
// tables it names, or validate's error.
func prepare(c rekey.ReencryptSpec) (rekey.ReencryptSpec, []TableSpec, error) {
	c = normalized(c)
	specs, err := validate(c)
	return c, specs, err
}

func validate(c rekey.ReencryptSpec) ([]TableSpec, error) {
	c = normalized(c)
	switch c.Codec {
	case CodecAESGCM, CodecChaCha, CodecFernet, CodecCommand:
	default:
		return nil, invalid("unknown codec %q", c.Codec).
			WithHint("codec is one of aes-256-gcm, chacha20-poly1305, fernet, command")
	}
	switch c.Encoding {
	case EncodingBase64, EncodingBase64URL, EncodingHex, EncodingBytea:
		if c.Codec == CodecFernet && c.Encoding != EncodingBytea {
			return nil, invalid("encoding %s does not apply to fernet", c.Encoding).
				WithHint("a Fernet token is stored as it is: leave encoding empty (text column) or set bytea (token bytes in a bytea column)")
		}
	case EncodingText:
		if c.Codec != CodecFernet && c.Codec != CodecCommand {
			return nil, invalid("encoding text needs a codec that emits text (fernet, command); %s emits bytes", c.Codec).
				WithHint("set encoding to base64, base64url, hex or bytea")
		}
	default:
		return nil, invalid("unknown encoding %q", c.Encoding).
			WithHint("encoding is one of base64, base64url, hex, bytea, text")
	}
	if c.Codec == CodecCommand {
		if len(c.Command) == 0 || c.Command[0] == "" {
			return nil, invalid("codec command needs a command").WithHint("set command: [program, args...] (keys go to its stdin, never its arguments)")
		}
	} else if len(c.Command) > 0 {
		return nil, invalid("command is only used with codec command (codec is %s)", c.Codec)
	}
	if c.KeyID && c.Codec == CodecFernet {
		return nil, invalid("key_id does not apply to fernet").
			WithHint("a Fernet token has a fixed format that its readers check; remove key_id")
	}
	if c.BatchSize < minBatchSize || c.BatchSize > maxBatchSize {
		return nil, invalid("batch size %d is out of range (1..%d)", c.BatchSize, maxBatchSize)
	}
	if c.RowsPerSecond < 0 {
		return nil, invalid("rows per second must be >= 0 (0: no limit)")
	}
	if c.Pace != "" && c.Pace != rekey.PaceAdaptive && c.Pace != rekey.PaceFull {
		return nil, invalid("unknown pace %q", c.Pace).WithHint("pace is adaptive (the default online) or full")
	}
	if c.TargetP99 < 0 || c.TargetFactor < 0 || c.TargetFactor > 0 && c.TargetFactor < 1 {
		return nil, invalid("target_p99 must be a positive duration or a factor of at least 1")
	}
	return ParseColumns(c.Columns)
}

// ParseColumns parses the spec's Columns and groups them by table, in order
// of first appearance. A table's key columns may be named on any of its
// entries, but never differently on two.
func ParseColumns(cols []string) ([]TableSpec, error) {
	if len(cols) == 0 {
		return nil, invalid("no columns to re-encrypt").WithHint(`list them as "table.column", "schema.table.column" or "table(pk).column"`)
	}
	var specs []TableSpec
	index := map[[2]string]int{}
	seen := map[[3]string]bool{}
	for _, s := range cols {
		ref, err := parseColumn(s)
		if err != nil {
			return nil, err
		}
		k := [2]string{ref.schema, ref.table}
		if seen[[3]string{ref.schema, ref.table, ref.column}] {
			return nil, invalid("column %q is listed twice", s)
		}
		seen[[3]string{ref.schema, ref.table, ref.column}] = true
		i, ok := index[k]
		if !ok {
			i = len(specs)
			index[k] = i
			specs = append(specs, TableSpec{Schema: ref.schema, Table: ref.table})
		}
		sp := &specs[i]
		if ref.pk != nil {
			if sp.PK != nil && !equalStrings(sp.PK, ref.pk) {
				return nil, invalid("table %s is given two different key column lists", sp.Name())
			}
			sp.PK = ref.pk
		}
		for _, p := range ref.pk {
			if p == ref.column {
				return nil, invalid("column %q is also a key column of its table", s)
			}
		}
		sp.Columns = append(sp.Columns, ref.column)
	}
	for _, sp := range specs {
		for _, p := range sp.PK {
			for _, c := range sp.Columns {
				if p == c {
					return nil, invalid("column %s.%s is also a key column of its table", sp.Name(), displayIdent(c))
				}
			}
		}
	}
	return specs, nil
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

type columnRef struct {
	schema, table, column string
	pk                    []string
}

// parseColumn parses `[schema.]table[(pk[, pk...])].column`.
func parseColumn(s string) (columnRef, error) {
	p := &identParser{s: s}
	var parts []string
	var pk []string
	pkAfter := -1
	for {
		p.skipSpace()
		id, err := p.ident()
		if err != nil {
			return columnRef{}, err
		}
		parts = append(parts, id)
		p.skipSpace()
		if p.peek() == '(' {
			if pkAfter >= 0 {
				return columnRef{}, p.fail("key columns given twice")
			}
			p.i++
			for {
				p.skipSpace()
				k, err := p.ident()
				if err != nil {
					return columnRef{}, err
				}
				for _, prev := range pk {
					if prev == k {
						return columnRef{}, p.fail("key column listed twice")
					}
				}
				pk = append(pk, k)
				p.skipSpace()
				c := p.peek()
				p.i++
				if c == ')' {
					break
				}
				if c != ',' {
					return columnRef{}, p.fail("expected ',' or ')' in the key column list")
				}
			}
			pkAfter = len(parts)
			p.skipSpace()
		}
		if p.i == len(s) {
			break
		}
		if p.peek() != '.' {
			return columnRef{}, p.fail("expected '.'")
		}
		p.i++
	}
	if len(parts) < 2 || len(parts) > 3 {
		return columnRef{}, invalid("column %q: want table.column or schema.table.column", s)
	}
	if pkAfter >= 0 && pkAfter != len(parts)-1 {
		return columnRef{}, invalid("column %q: the key column list goes right after the table name: table(pk).column", s)
	}
	ref := columnRef{column: parts[len(parts)-1], table: parts[len(parts)-2], pk: pk}
	if len(parts) == 3 {
		ref.schema = parts[0]
	}
	return ref, nil
}

type identParser struct {
	s string
	i int
}

func (p *identParser) peek() byte {
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

func (p *identParser) skipSpace() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

func (p *identParser) fail(msg string) *rekey.Error {
	return invalid("column %q: %s at offset %d", p.s, msg, p.i)
}

// ident reads a bare identifier (letters, digits, _ and $, not starting
// with a digit or $) or a double-quoted one ("" stands for ").
func (p *identParser) ident() (string, error) {
	start := p.i
	if p.peek() == '"' {
		p.i++
		var b strings.Builder
		for {
			if p.i >= len(p.s) {
				return "", p.fail("unterminated quoted identifier")
			}
			c := p.s[p.i]
			p.i++
			if c == '"' {
				if p.peek() == '"' {
					b.WriteByte('"')
					p.i++
					continue
				}
				break
			}
			b.WriteByte(c)
		}
		id := b.String()
		if err := checkIdent(id); err != nil {
			p.i = start
			return "", p.fail(err.Error())
		}
		return id, nil
	}
	for p.i < len(p.s) {
		r, n := utf8.DecodeRuneInString(p.s[p.i:])
		ok := r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r > 127 && r != utf8.RuneError ||
			p.i > start && (r >= '0' && r <= '9' || r == '$')
		if !ok {
			break
		}
		p.i += n
	}
	if p.i == start {
		return "", p.fail("expected an identifier")
	}
	id := p.s[start:p.i]
	if err := checkIdent(id); err != nil {
		return "", p.fail(err.Error())
	}
	return id, nil
}

func checkIdent(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("empty identifier")
	case len(id) > maxIdentBytes:
		return fmt.Errorf("identifier longer than %d bytes", maxIdentBytes)
	case strings.IndexByte(id, 0) >= 0:
		return fmt.Errorf("NUL in identifier")
	case !utf8.ValidString(id):
		return fmt.Errorf("identifier is not valid UTF-8")
	}
	return nil
}

// quoteIdent quotes a SQL identifier.
func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// displayIdent shows an identifier as the config would write it: bare when
// it can be, quoted otherwise.
func displayIdent(s string) string {
	p := &identParser{s: s}
	if id, err := p.ident(); err == nil && id == s && p.i == len(s) && !strings.ContainsAny(s, `"`) {
		return s
	}
	return quoteIdent(s)
}
