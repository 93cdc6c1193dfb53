package config

import (
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/rekeyhq/rekey"
)

// known holds the names that services and checks may reference, read from
// the root mapping, so that the sections can be decoded in any file order.
type known struct {
	secrets, derived, envs []string
	secretsOK, envsOK      bool
}

func knownNames(root *yaml.Node) known {
	var k known
	keys := func(n *yaml.Node) ([]string, bool) {
		n = resolve(n)
		if isNull(n) {
			return nil, true
		}
		if n.Kind != yaml.MappingNode {
			return nil, false
		}
		var out []string
		for i := 0; i+1 < len(n.Content); i += 2 {
			if kn := resolve(n.Content[i]); kn.Kind == yaml.ScalarNode {
				out = append(out, kn.Value)
			}
		}
		return out, true
	}
	get := func(m *yaml.Node, key string) *yaml.Node {
		m = resolve(m)
		if m == nil || m.Kind != yaml.MappingNode {
			return nil
		}
		for i := 0; i+1 < len(m.Content); i += 2 {
			if resolve(m.Content[i]).Value == key {
				return m.Content[i+1]
			}
		}
		return nil
	}
	k.secrets, k.secretsOK = keys(get(root, "secrets"))
	d, _ := keys(get(root, "derived"))
	k.derived = d
	envs := resolve(get(root, "environments"))
	k.envs, k.envsOK = keys(envs)
	for _, e := range k.envs {
		ed, _ := keys(get(get(envs, e), "derived"))
		for _, n := range ed {
			if !slices.Contains(k.derived, n) {
				k.derived = append(k.derived, n)
			}
		}
	}
	return k
}

// ref checks that name (at node n) is a secret or a derived value.
func (d *decoder) ref(n *yaml.Node, name, what string) {
	k := d.known
	if !k.secretsOK || slices.Contains(k.secrets, name) || slices.Contains(k.derived, name) {
		return
	}
	all := append(slices.Clone(k.secrets), k.derived...)
	d.fail(n, didYouMean(name, all)+"name a secret under secrets or a value under derived",
		"%s references %s, which is not a secret or derived value", what, quote(name))
}

// secretRef checks that name is a managed secret.
func (d *decoder) secretRef(n *yaml.Node, name, what string) {
	k := d.known
	if !k.secretsOK || slices.Contains(k.secrets, name) {
		return
	}
	hint := didYouMean(name, k.secrets) + "name a secret under secrets"
	if slices.Contains(k.derived, name) {
		hint = "name the secret itself (a data key), not a derived value"
	}
	d.fail(n, hint, "%s: %s is not a managed secret", what, quote(name))
}

// check runs the cross-reference checks, once every section is read.
func (d *decoder) check(f *fileDecl) {
	secretNames := make([]string, 0, len(f.secrets))
	for _, s := range f.secrets {
		secretNames = append(secretNames, s.spec.Name)
	}
	var derivedNames []string // every derived name, top level or in an environment
	addDerived := func(xs []derivedDecl) {
		for _, x := range xs {
			if !slices.Contains(derivedNames, x.d.Name) {
				derivedNames = append(derivedNames, x.d.Name)
			}
		}
	}
	addDerived(f.derived)
	allDerivedOK := f.derivedOK
	for _, e := range f.envs {
		addDerived(e.derived)
		allDerivedOK = allDerivedOK && e.derivedOK
	}
	if f.secretsOK {
		d.checkDerived(f.derived, "", secretNames, derivedNames)
		for _, e := range f.envs {
			d.checkDerived(e.derived, " of "+label("environment", e.env.Name), secretNames, derivedNames)
		}
	}
	for _, s := range f.secrets {
		what := label("secret", s.spec.Name)
		if f.envsOK {
			d.checkTargets(s, what, f.envs)
		}
		if s.urlFrom != nil && allDerivedOK {
			d.checkURLFrom(s, what, f, secretNames, derivedNames)
		}
		if s.admin != nil && f.secretsOK {
			d.checkAdmin(s, what, secretNames)
		}
	}
}

// checkDerived checks that derived values are not named like a secret and
// reference only secrets.
func (d *decoder) checkDerived(xs []derivedDecl, owner string, secretNames, derivedNames []string) {
	for _, x := range xs {
		what := label("derived value", x.d.Name) + owner
		if slices.Contains(secretNames, x.d.Name) {
			d.fail(x.key, "a name is either a managed secret or a derived value: rename one", "%s has the name of a secret", what)
		}
		if x.d.Template == nil {
			continue
		}
		for _, ref := range x.d.Template.Refs() {
			ref, attr := rekey.SplitRef(ref)
			switch {
			case attr != "" && attr != "role":
				d.fail(x.val, "the one version attribute is role (the login role of an alternating PostgreSQL password): write {{ NAME.role }}", "template of %s references unknown attribute %s", what, quote(attr))
			case slices.Contains(secretNames, ref):
			case slices.Contains(derivedNames, ref):
				d.fail(x.val, "derived values may reference only secrets: write the template in terms of secrets", "template of %s references derived value %s", what, quote(ref))
			default:
				d.fail(x.val, didYouMean(ref, secretNames)+"templates reference secrets; define it under secrets or fix the name", "template of %s references %s, which is not a secret", what, quote(ref))
			}
		}
	}
}

// checkTargets checks that the targets a secret names exist in every
// environment.
func (d *decoder) checkTargets(s *secretDecl, what string, envs []*envDecl) {
items:
	for _, item := range s.targets {
		for _, e := range envs {
			if e.targetsOK && !slices.Contains(e.targets, item.Value) {
				env := label("environment", e.env.Name)
				d.fail(item, fmt.Sprintf("%sa secret's targets must exist in every environment; %s defines: %s",
					didYouMean(item.Value, e.targets), env, strings.Join(e.targets, ", ")),
					"target %s of %s is not defined in %s", quote(item.Value), what, env)
				continue items
			}
		}
	}
}

// checkURLFrom checks that url_from names a derived value defined for every
// environment.
func (d *decoder) checkURLFrom(s *secretDecl, what string, f *fileDecl, secretNames, derivedNames []string) {
	name := s.urlFrom.Value
	switch {
	case !slices.Contains(derivedNames, name):
		hint := didYouMean(name, derivedNames) + "url_from names a value under derived, such as DATABASE_URL"
		if slices.Contains(secretNames, name) {
			hint = "url_from names a derived value (such as DATABASE_URL), not a secret"
		}
		d.fail(s.urlFrom, hint, "url_from of %s: %s is not a derived value", what, quote(name))
	case !slices.ContainsFunc(f.derived, func(x derivedDecl) bool { return x.d.Name == name }):
		for _, e := range f.envs {
			if !slices.ContainsFunc(e.derived, func(x derivedDecl) bool { return x.d.Name == name }) {
				d.fail(s.urlFrom, "define it under the top-level derived, or under derived of every environment",
					"url_from of %s: derived value %s is not defined for %s", what, quote(name), label("environment", e.env.Name))
				break
			}
		}
	}
}

// checkAdmin checks that admin_secret names another managed secret.
func (d *decoder) checkAdmin(s *secretDecl, what string, secretNames []string) {
	name := s.admin.Value
	switch {
	case name == s.spec.Name:
		d.fail(s.admin, "name the secret holding the admin connection URL, e.g. PG_ADMIN_URL", "admin_secret of %s names the secret itself", what)
	case !slices.Contains(secretNames, name):
		d.fail(s.admin, didYouMean(name, secretNames)+"admin_secret names a secret under secrets holding the admin connection URL; add it there",
			"admin_secret of %s: %s is not a managed secret", what, quote(name))
	}
}
