package config

import (
	"time"

	"gopkg.in/yaml.v3"

	"github.com/rekeyhq/rekey"
)

func (d *decoder) secrets(k, v *yaml.Node, f *fileDecl) bool {
	return d.someEntries(k, v, "secret", "secrets", "add the secrets rekey manages, e.g. JWT_SECRET: {kind: generated, generator: {bytes: 32, encoding: base64}}", func(k, v *yaml.Node) {
		f.secrets = append(f.secrets, d.secret(k, v))
	})
}

var kindHint = "kinds: " + listOf(rekey.Kinds)

func (d *decoder) secret(k, v *yaml.Node) *secretDecl {
	name := k.Value
	s := &secretDecl{spec: rekey.Spec{Name: name, Line: k.Line}}
	if !varName.MatchString(name) {
		d.fail(k, varNameHint, "invalid secret name %s", quote(name))
	}
	what := label("secret", name)
	var kindVal, genKey, rotKey, remKey, pgKey, sessKey, reKey *yaml.Node
	var rot, rem time.Duration
	var pg *rekey.PostgresSpec
	misplaced := map[string]string{}
	for _, f := range []string{"url_from", "host", "port", "database", "role", "sslmode", "changed_by", "admin_secret", "strategy", "roles", "grace"} {
		misplaced[f] = "postgres"
	}
	misplaced["bytes"], misplaced["encoding"] = "generator", "generator"
	_, ok := d.decode(v, section{
		what: what,
		fields: []field{
			{"purpose", d.textTo(&s.spec.Purpose, "purpose of "+what)},
			{"kind", func(k, v *yaml.Node) { kindVal = v }},
			{"generator", func(k, v *yaml.Node) { genKey, s.spec.Generator = k, d.generator(v, what) }},
			{"rotate_every", func(k, v *yaml.Node) { rotKey = k; rot, _ = d.duration(v, "rotate_every of "+what) }},
			{"remind_every", func(k, v *yaml.Node) { remKey = k; rem, _ = d.duration(v, "remind_every of "+what) }},
			{"storage", d.textTo(&s.spec.Storage, "storage of "+what)},
			{"encryption", d.textTo(&s.spec.Encryption, "encryption of "+what)},
			{"access", d.textTo(&s.spec.Access, "access of "+what)},
			{"targets", func(k, v *yaml.Node) {
				s.spec.Targets, s.targets, _ = d.names(v, "targets of "+what, "[app]", "remove targets to publish the secret to every target")
			}},
			{"postgres", func(k, v *yaml.Node) { pgKey = k; pg = d.postgres(v, what, s) }},
			{"sessions", func(k, v *yaml.Node) { sessKey = k; s.spec.Sessions = d.sessions(v, what) }},
			{"reencrypt", func(k, v *yaml.Node) { reKey = k; s.spec.Reencrypt = d.reencrypt(v, what) }},
		},
		misplaced: misplaced,
	})
	if !ok {
		return s
	}
	if isNull(kindVal) {
		d.missing(k, v, "add kind: generated (or "+listOf(rekey.Kinds[1:])+")", "%s has no kind", what)
		return s
	}
	ks, ok := d.text(kindVal, "kind of "+what)
	if !ok {
		return s
	}
	kind := rekey.Kind(ks)
	if !kind.Valid() {
		d.fail(kindVal, didYouMean(ks, rekey.Kinds)+kindHint, "unknown kind %s for %s", quote(ks), what)
		return s
	}
	s.spec.Kind = kind
	if kind == rekey.KindManual {
		if genKey != nil {
			d.fail(genKey, "manual secrets are set by hand with `rekey set`: remove generator", "%s is manual and cannot have a generator", what)
		}
		if rotKey != nil {
			d.fail(rotKey, "rekey does not rotate manual secrets: use remind_every: 90d to be reminded", "%s is manual: rotate_every is not used", what)
		}
		s.spec.Generator = rekey.Generator{}
		s.spec.Period = rem
	} else {
		if genKey == nil {
			d.missing(k, v, "add generator: {bytes: 32, encoding: base64}", "%s (kind %s) has no generator", what, kind)
		}
		if remKey != nil {
			d.fail(remKey, "remind_every is for manual secrets: use rotate_every", "%s is not manual: remind_every is not used", what)
		}
		s.spec.Period = rot
	}
	if kind == rekey.KindPostgresPassword {
		if pg == nil {
			pg = d.postgres(nil, what, s)
		}
		s.spec.Postgres = pg
	} else if pgKey != nil {
		d.fail(pgKey, "postgres settings are for kind postgres-password", "%s is kind %s: postgres is not used", what, kind)
	}
	if reKey != nil && kind != rekey.KindDataKey {
		d.fail(reKey, "reencrypt is for kind data-key (the key that encrypts columns)", "%s is kind %s: reencrypt is not used", what, kind)
	}
	if sessKey != nil && kind != rekey.KindGenerated {
		d.fail(sessKey, "sessions is for a generated signing secret such as JWT_SECRET", "%s is kind %s: sessions is not used", what, kind)
	}
	return s
}

var encodingHint = "encodings: " + listOf(rekey.Encodings)

func (d *decoder) generator(v *yaml.Node, secret string) rekey.Generator {
	g := rekey.Generator{Bytes: 32, Encoding: rekey.EncBase64}
	what := "generator of " + secret
	d.decode(v, section{
		what: what,
		fields: []field{
			{"bytes", d.intIn(&g.Bytes, "bytes of "+what, "bytes: 32", 16, 1024, "use 16 to 1024; 32 bytes (256 bits) suits most secrets")},
			{"encoding", func(k, v *yaml.Node) {
				s, ok := d.text(v, "encoding of "+what)
				if !ok || isNull(v) {
					return
				}
				e := rekey.Encoding(s)
				if !e.Valid() {
					d.fail(v, didYouMean(s, rekey.Encodings)+encodingHint, "unknown encoding %s in %s", quote(s), what)
					return
				}
				g.Encoding = e
			}},
		},
	})
	return g
}

func (d *decoder) postgres(v *yaml.Node, secret string, s *secretDecl) *rekey.PostgresSpec {
	p := &rekey.PostgresSpec{ChangedBy: "self", Strategy: "single"}
	what := "postgres settings of " + secret
	var changedBy, adminKey, strategy, rolesKey, rolesVal, graceKey *yaml.Node
	rolesOK := true
	_, ok := d.decode(v, section{
		what: what,
		fields: []field{
			{"url_from", func(k, v *yaml.Node) {
				if t, ok := d.text(v, "url_from of "+secret); ok && t != "" {
					p.URLFrom, s.urlFrom = t, v
				}
			}},
			{"host", d.textTo(&p.Host, "host of "+secret)},
			{"port", d.intIn(&p.Port, "port of "+secret, "port: 5432", 1, 65535, "PostgreSQL listens on 5432 by default")},
			{"database", d.textTo(&p.Database, "database of "+secret)},
			{"role", d.textTo(&p.Role, "role of "+secret)},
			{"sslmode", func(k, v *yaml.Node) {
				if m, ok := d.enum(v, "sslmode", SSLModes); ok {
					p.SSLMode = m
				}
			}},
			{"changed_by", func(k, v *yaml.Node) {
				if m, ok := d.enum(v, "changed_by", ChangedBys); ok && m != "" {
					p.ChangedBy, changedBy = m, v
				}
			}},
			{"admin_secret", func(k, v *yaml.Node) {
				adminKey = k
				if t, ok := d.text(v, "admin_secret of "+secret); ok && t != "" {
					p.AdminSecret, s.admin = t, v
				}
			}},
			{"strategy", func(k, v *yaml.Node) {
				if m, ok := d.enum(v, "strategy", Strategies); ok && m != "" {
					p.Strategy, strategy = m, v
				}
			}},
			{"roles", func(k, v *yaml.Node) {
				rolesKey, rolesVal = k, v
				p.Roles, _, rolesOK = d.names(v, "roles of "+secret, "[app_blue, app_green]", "the alternating strategy needs two roles, e.g. [app_blue, app_green]")
			}},
			{"grace", func(k, v *yaml.Node) { graceKey = k; p.Grace, _ = d.duration(v, "grace of "+secret) }},
		},
	})
	if !ok {
		return p
	}
	if p.ChangedBy == "admin" && p.AdminSecret == "" {
		at := changedBy
		if adminKey != nil {
			at = adminKey
		}
		d.fail(at, "admin_secret names the managed secret holding the admin connection URL, e.g. admin_secret: PG_ADMIN_URL", "changed_by: admin needs admin_secret (%s)", secret)
	}
	if p.ChangedBy == "self" && adminKey != nil {
		d.fail(adminKey, "admin_secret is used only with changed_by: admin; add that or remove admin_secret", "%s: admin_secret without changed_by: admin", secret)
	}
	if p.Strategy == "alternating" {
		switch {
		case rolesKey == nil:
			d.fail(strategy, "add roles: [app_blue, app_green]", "strategy: alternating needs roles (%s)", secret)
		case rolesOK && len(p.Roles) != 2:
			d.fail(rolesVal, "list exactly two login roles, e.g. [app_blue, app_green]", "strategy: alternating needs exactly two roles, not %d (%s)", len(p.Roles), secret)
		}
	} else {
		if rolesKey != nil {
			d.fail(rolesKey, "roles are used only with strategy: alternating; add that or remove roles", "%s: roles without strategy: alternating", secret)
		}
		if graceKey != nil {
			d.fail(graceKey, "grace is used only with strategy: alternating; add that or remove grace", "%s: grace without strategy: alternating", secret)
		}
	}
	return p
}
