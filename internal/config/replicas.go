package config

import "gopkg.in/yaml.v3"

// secretList reads a list of managed secret names (replicas: of a
// reencrypt section: secrets holding the URLs of streaming replicas).
func (d *decoder) secretList(v *yaml.Node, what string) []string {
	v = resolve(v)
	if isNull(v) {
		return nil
	}
	if v.Kind != yaml.SequenceNode {
		d.fail(v, "list them, e.g. replicas: [REPLICA_URL]", "%s must be a list of secret names, not %s", what, kindOf(v))
		return nil
	}
	var out []string
	for _, item := range v.Content {
		t, ok := d.text(item, what)
		if !ok || t == "" {
			if ok {
				d.fail(item, "name a secret holding a replica's postgres:// URL", "%s has an empty entry", what)
			}
			continue
		}
		d.secretRef(item, t, what)
		out = append(out, t)
	}
	return out
}
