package postgres_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/postgres"
	"github.com/rekeyhq/rekey/internal/testkit"
)

func TestPairRole(t *testing.T) {
	for in, want := range map[string]string{
		"app_blue":              "app_green",
		"app_green":             "app_blue",
		"app-blue":              "app-green",
		"AppBlue":               "AppGreen",
		"app":                   "app_green",
		"postgres":              "postgres_green",
		"_blue":                 "_blue_green",
		strings.Repeat("x", 60): "",
	} {
		if got := postgres.PairRole(in); got != want {
			t.Errorf("PairRole(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRoleTemplate(t *testing.T) {
	for _, c := range []struct{ in, want, err string }{
		{"postgres://app_blue:{{ DATABASE_PASSWORD | urlquery }}@db:5432/app?sslmode=require",
			"postgres://{{ DATABASE_PASSWORD.role | urlquery }}:{{ DATABASE_PASSWORD | urlquery }}@db:5432/app?sslmode=require", ""},
		{"postgresql://App%20%22Blue%22:{{DATABASE_PASSWORD}}@[::1]/x",
			"postgresql://{{ DATABASE_PASSWORD.role | urlquery }}:{{DATABASE_PASSWORD}}@[::1]/x", ""},
		{"postgres://{{ DATABASE_PASSWORD.role | urlquery }}:{{ DATABASE_PASSWORD | urlquery }}@db/app",
			"postgres://{{ DATABASE_PASSWORD.role | urlquery }}:{{ DATABASE_PASSWORD | urlquery }}@db/app", ""},
		{"postgres://db/app?password={{ DATABASE_PASSWORD }}", "", "no user@ part"},
		{"host=db password={{ DATABASE_PASSWORD }}", "", "not a URL"},
		{"postgres://{{ DB_USER }}:{{ DATABASE_PASSWORD }}@db/app", "", "no literal user"},
	} {
		got, changed, err := postgres.RoleTemplate(c.in, "DATABASE_PASSWORD")
		switch {
		case c.err != "":
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("RoleTemplate(%q): err %v, want %q", c.in, err, c.err)
			}
		case err != nil:
			t.Errorf("RoleTemplate(%q): %v", c.in, err)
		case got != c.want || changed != (c.in != c.want):
			t.Errorf("RoleTemplate(%q) = %q, %v; want %q", c.in, got, changed, c.want)
		}
	}
}

func altSpec(roles ...string) *rekey.Spec {
	return &rekey.Spec{Name: "DATABASE_PASSWORD", Kind: rekey.KindPostgresPassword,
		Postgres: &rekey.PostgresSpec{URLFrom: "DATABASE_URL", ChangedBy: "self", Strategy: "alternating", Roles: roles}}
}

func TestApplierAttrs(t *testing.T) {
	a := &postgres.Applier{}
	spec := altSpec("app_blue", "app_green")
	role := func(attrs map[string]string) string { return a.Attrs(spec, rekey.Version{Attrs: attrs})["role"] }
	if got := role(nil); got != "app_green" {
		t.Errorf("first rotation (current without a role): %q, want app_green (the current belongs to roles[0])", got)
	}
	if got := role(map[string]string{"role": "app_green"}); got != "app_blue" {
		t.Errorf("after green: %q", got)
	}
	if got := role(map[string]string{"role": "app_blue"}); got != "app_green" {
		t.Errorf("after blue: %q", got)
	}
	if got := role(map[string]string{"role": "someone_else"}); got != "app_blue" {
		t.Errorf("after a role not in the pair: %q, want roles[0]", got)
	}
	single := &rekey.Spec{Name: "DATABASE_PASSWORD", Kind: rekey.KindPostgresPassword, Postgres: &rekey.PostgresSpec{URLFrom: "DATABASE_URL", Strategy: "single"}}
	if got := a.Attrs(single, rekey.Version{}); got != nil {
		t.Errorf("single: %v, want nil", got)
	}
	if got := postgres.RoleOf(spec, rekey.Version{}); got != "app_blue" {
		t.Errorf("RoleOf a version without attributes: %q", got)
	}
}

// TestApplierParamsRole: the URL is rendered with the version's role.
func TestApplierParamsRole(t *testing.T) {
	a := &postgres.Applier{Derived: []rekey.Derived{{Name: "DATABASE_URL",
		Template: rekey.MustParseTemplate("postgres://{{ DATABASE_PASSWORD.role | urlquery }}:{{ DATABASE_PASSWORD | urlquery }}@db:5432/app")}}}
	spec := altSpec("App Blue", "app_green")
	for attrs, want := range map[string]string{"": "App Blue", "app_green": "app_green"} {
		v := rekey.VersionValue{Value: rekey.NewValueString("pw/with?odd&chars")}
		if attrs != "" {
			v.Attrs = map[string]string{"role": attrs}
		}
		p, err := a.ParamsFor(context.Background(), spec, v)
		if err != nil {
			t.Fatal(err)
		}
		if p.User != want || string(p.Password) != "pw/with?odd&chars" || p.Host != "db" {
			t.Errorf("role %q: %v", attrs, p)
		}
	}
}

// pair creates group role owner, login roles blue (with attrs) and green
// (a plain LOGIN member of owner unless noGreen), and returns the spec and
// an applier whose DATABASE_URL is the cluster's.
func pair(t *testing.T, blueAttrs string, noGreen bool) (spec *rekey.Spec, a *postgres.Applier, blue, green string) {
	t.Helper()
	admin := superConn(t)
	owner := testkit.Unique("pair_owner")
	blue, green = testkit.Unique(`Pair "Blue" X`), testkit.Unique("pair_green")
	mustExec(t, admin, "CREATE ROLE "+postgres.QuoteIdent(owner)+" NOLOGIN")
	mustExec(t, admin, "CREATE ROLE "+postgres.QuoteIdent(blue)+" LOGIN "+blueAttrs+" IN ROLE "+postgres.QuoteIdent(owner))
	if !noGreen {
		mustExec(t, admin, "CREATE ROLE "+postgres.QuoteIdent(green)+" LOGIN IN ROLE "+postgres.QuoteIdent(owner))
	}
	c := testkit.Cluster(t)
	tmpl := "postgres://{{ DATABASE_PASSWORD.role | urlquery }}:{{ DATABASE_PASSWORD | urlquery }}@" + c.Host + ":" + itoa(c.Port) + "/postgres?sslmode=disable"
	a = &postgres.Applier{Derived: []rekey.Derived{{Name: "DATABASE_URL", Template: rekey.MustParseTemplate(tmpl)}}}
	return altSpec(blue, green), a, blue, green
}

// leastAdmin switches spec to changed_by: admin through a login role with
// the least privilege PostgreSQL 16 and later need: CREATEROLE and ADMIN
// OPTION on both roles of the pair.
func leastAdmin(t *testing.T, spec *rekey.Spec, a *postgres.Applier, blue, green string) string {
	t.Helper()
	super := superConn(t)
	role := testkit.Unique("least_admin")
	createLoginRole(t, super, role, []byte("Least-Admin-Pw-1"))
	mustExec(t, super, "ALTER ROLE "+postgres.QuoteIdent(role)+" CREATEROLE")
	for _, r := range []string{blue, green} {
		mustExec(t, super, "GRANT "+postgres.QuoteIdent(r)+" TO "+postgres.QuoteIdent(role)+" WITH ADMIN OPTION, INHERIT FALSE, SET FALSE")
	}
	c := testkit.Cluster(t)
	u := "postgres://" + role + ":Least-Admin-Pw-1@" + c.Host + ":" + itoa(c.Port) + "/postgres?sslmode=disable"
	a.Values = func(context.Context) (map[string]rekey.Value, error) {
		return map[string]rekey.Value{"PG_ADMIN_URL": rekey.NewValueString(u)}, nil
	}
	spec.Postgres.ChangedBy, spec.Postgres.AdminSecret = "admin", "PG_ADMIN_URL"
	t.Logf("PostgreSQL %d: changed_by: admin as %s (CREATEROLE, ADMIN OPTION on both roles)", c.Major, role)
	return role
}

func vv(n int, role, pw string) rekey.VersionValue {
	return rekey.VersionValue{Version: rekey.Version{N: n, Attrs: map[string]string{"role": role}}, Value: rekey.NewValueString(pw)}
}

func canLogin(t *testing.T, role, pw string) bool {
	t.Helper()
	ok, err := postgres.TryLogin(testCtx(t), params(t, role, []byte(pw)))
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// TestApplierAlternating drives Apply, Verify, Revert, Accepts and Expire
// of the alternating strategy against the cluster, with the current role
// (CREATEROLE) changing the idle one's password.
func TestApplierAlternating(t *testing.T) {
	spec, a, blue, green := pair(t, "CREATEROLE", false)
	admin := superConn(t)
	if testkit.Cluster(t).Major >= postgres.AdminOptionMajor {
		// 16 and later: the roles of a pair cannot change each other's
		// password; an admin role with CREATEROLE and ADMIN OPTION on both does.
		leastAdmin(t, spec, a, blue, green)
	}
	if err := postgres.SetPassword(testCtx(t), admin, blue, []byte("blue-pw-1")); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	cur := rekey.VersionValue{Version: rekey.Version{N: 1}, Value: rekey.NewValueString("blue-pw-1")} // no role attribute: roles[0]
	if err := a.Preflight(ctx, "production", spec, cur); err != nil {
		t.Fatal(err)
	}
	pend := vv(2, green, "green-pw-2")
	for i := 0; i < 2; i++ { // idempotent
		if err := a.Apply(ctx, "production", spec, pend, cur); err != nil {
			t.Fatalf("Apply #%d: %v", i+1, err)
		}
	}
	if err := a.Verify(ctx, "production", spec, pend, cur); err != nil {
		t.Fatal(err)
	}
	if !canLogin(t, green, "green-pw-2") || !canLogin(t, blue, "blue-pw-1") {
		t.Fatal("both roles should log in after Apply")
	}
	for _, c := range []struct {
		v    rekey.VersionValue
		want bool
	}{{cur, true}, {pend, true}, {vv(2, blue, "green-pw-2"), false}, {vv(1, green, "blue-pw-1"), false}} {
		if ok, err := a.Accepts(ctx, "production", spec, c.v); err != nil || ok != c.want {
			t.Errorf("Accepts(v%d as %s) = %v, %v; want %v", c.v.N, c.v.Attrs["role"], ok, err, c.want)
		}
	}
	// Revert: the current role still logs in; nothing to undo.
	if err := a.Revert(ctx, "production", spec, pend, cur); err != nil {
		t.Fatal(err)
	}
	if !canLogin(t, blue, "blue-pw-1") {
		t.Fatal("Revert broke the current role")
	}
	// Revert restores a current role whose password was lost, through a
	// session of the pending role (CREATEROLE like its pair).
	mustExec(t, admin, "ALTER ROLE "+postgres.QuoteIdent(green)+" CREATEROLE")
	if err := postgres.SetPassword(ctx, admin, blue, []byte("someone-else")); err != nil {
		t.Fatal(err)
	}
	if err := a.Apply(ctx, "production", spec, pend, cur); err != nil { // pending logs in: nothing to do
		t.Fatal(err)
	}
	if err := a.Revert(ctx, "production", spec, pend, cur); err != nil {
		t.Fatal(err)
	}
	if !canLogin(t, blue, "blue-pw-1") {
		t.Fatal("Revert did not restore the current role's password")
	}
	// Verify fails when the current role no longer logs in (grace broken).
	if err := postgres.SetPassword(ctx, admin, blue, []byte("someone-else")); err != nil {
		t.Fatal(err)
	}
	if err := a.Verify(ctx, "production", spec, pend, cur); err == nil || !strings.Contains(err.Error(), "no longer logs in") {
		t.Fatalf("Verify with a broken current role: %v", err)
	}
	if err := postgres.SetPassword(ctx, admin, blue, []byte("blue-pw-1")); err != nil {
		t.Fatal(err)
	}
	// Expire: blue (v1) gets a password nobody knows; idempotent; it refuses the current role.
	a.Current = func(context.Context, string) (rekey.Version, error) { return pend.Version, nil }
	if err := a.Expire(ctx, "production", spec, pend); err == nil || rekey.ErrorCode(err) != rekey.CodeConflict {
		t.Fatalf("Expire of the current version: %v", err)
	}
	for i := 0; i < 2; i++ {
		if err := a.Expire(ctx, "production", spec, cur); err != nil {
			t.Fatalf("Expire #%d: %v", i+1, err)
		}
	}
	if canLogin(t, blue, "blue-pw-1") || !canLogin(t, green, "green-pw-2") {
		t.Fatal("after Expire of v1: blue should be refused, green accepted")
	}
	if err := a.Expire(ctx, "production", &rekey.Spec{Name: "X", Postgres: &rekey.PostgresSpec{Strategy: "single"}}, cur); err != nil {
		t.Fatalf("Expire in the single strategy is a no-op: %v", err)
	}
	// The next rotation goes back to blue: the current (green) changes its password.
	next := vv(3, blue, "blue-pw-3")
	if got := a.Attrs(spec, pend.Version)["role"]; got != blue {
		t.Fatalf("Attrs after green: %q", got)
	}
	if err := a.Apply(ctx, "production", spec, next, pend); err != nil {
		t.Fatal(err)
	}
	if err := a.Verify(ctx, "production", spec, next, pend); err != nil {
		t.Fatal(err)
	}
	// A pending version on the current role is refused.
	if err := a.Apply(ctx, "production", spec, vv(4, blue, "x-pw"), next); err == nil {
		t.Fatal("Apply on the current role succeeded")
	}
}

// TestApplierAlternatingPrivilege: without CREATEROLE the current role
// cannot set the idle one's password: a clear error with a hint, nothing
// changed; a missing idle role says how to create it.
func TestApplierAlternatingPrivilege(t *testing.T) {
	spec, a, blue, green := pair(t, "NOCREATEROLE", false)
	admin := superConn(t)
	ctx := testCtx(t)
	if err := postgres.SetPassword(ctx, admin, blue, []byte("blue-pw-1")); err != nil {
		t.Fatal(err)
	}
	cur, pend := vv(1, blue, "blue-pw-1"), vv(2, green, "green-pw-2")
	err := a.Apply(ctx, "production", spec, pend, cur)
	if !errors.Is(err, postgres.ErrPrivilege) || !strings.Contains(rekey.ErrorHint(err), "CREATEROLE") || !strings.Contains(rekey.ErrorHint(err), "changed_by: admin") {
		t.Fatalf("Apply without CREATEROLE: %v (hint %q)", err, rekey.ErrorHint(err))
	}
	if strings.Contains(err.Error(), "pw-") {
		t.Fatal("the error shows a password")
	}
	// The statement the server's version needs.
	want := "ALTER ROLE " + postgres.QuoteIdent(blue) + " CREATEROLE"
	if testkit.Cluster(t).Major >= postgres.AdminOptionMajor {
		want = "GRANT " + postgres.QuoteIdent(green) + ` TO "rekey_admin" WITH ADMIN OPTION, INHERIT FALSE, SET FALSE`
	}
	if !strings.Contains(rekey.ErrorHint(err), want) {
		t.Fatalf("PostgreSQL %d: the hint does not say %s: %q", testkit.Cluster(t).Major, want, rekey.ErrorHint(err))
	}
	if err := a.Revert(ctx, "production", spec, pend, cur); err != nil {
		t.Fatal(err)
	}
	// The idle role does not exist.
	spec2, a2, blue2, green2 := pair(t, "CREATEROLE", true)
	if err := postgres.SetPassword(ctx, admin, blue2, []byte("blue-pw-1")); err != nil {
		t.Fatal(err)
	}
	err = a2.Apply(ctx, "production", spec2, vv(2, green2, "green-pw-2"), vv(1, blue2, "blue-pw-1"))
	if !errors.Is(err, postgres.ErrRoleMissing) || !strings.Contains(rekey.ErrorHint(err), "rekey postgres add-role") {
		t.Fatalf("Apply to a missing role: %v (hint %q)", err, rekey.ErrorHint(err))
	}
}

// TestApplierAdmin: changed_by: admin changes the password of a role that
// has no privilege and a name with quotes, spaces and upper case, without
// knowing its current password; single, then alternating.
func TestApplierAdmin(t *testing.T) {
	admin := superConn(t)
	c := testkit.Cluster(t)
	role := testkit.Unique(`Admin's "Quoted" Role`)
	createLoginRole(t, admin, role, []byte("old-password-1"))
	adminURL := c.SuperConnString("postgres")
	values := func(context.Context) (map[string]rekey.Value, error) {
		return map[string]rekey.Value{"PG_ADMIN_URL": rekey.NewValueString(adminURL)}, nil
	}
	tmpl := "postgres://" + strings.ReplaceAll(strings.ReplaceAll(strings.ReplaceAll(role, " ", "%20"), `"`, "%22"), "'", "%27") +
		":{{ DATABASE_PASSWORD | urlquery }}@" + c.Host + ":" + itoa(c.Port) + "/postgres?sslmode=disable"
	a := &postgres.Applier{Derived: []rekey.Derived{{Name: "DATABASE_URL", Template: rekey.MustParseTemplate(tmpl)}}, Values: values}
	spec := &rekey.Spec{Name: "DATABASE_PASSWORD", Kind: rekey.KindPostgresPassword,
		Postgres: &rekey.PostgresSpec{URLFrom: "DATABASE_URL", ChangedBy: "admin", AdminSecret: "PG_ADMIN_URL", Strategy: "single"}}
	ctx := testCtx(t)
	// The stored current is wrong: the admin does not need it.
	cur := rekey.VersionValue{Version: rekey.Version{N: 1}, Value: rekey.NewValueString("not-the-password")}
	pend := rekey.VersionValue{Version: rekey.Version{N: 2}, Value: rekey.NewValueString("new-password-2")}
	if err := a.Preflight(ctx, "production", spec, cur); err == nil {
		t.Fatal("Preflight with a refused current password succeeded")
	}
	for i := 0; i < 2; i++ {
		if err := a.Apply(ctx, "production", spec, pend, cur); err != nil {
			t.Fatalf("Apply #%d: %v", i+1, err)
		}
	}
	if err := a.Verify(ctx, "production", spec, pend, rekey.VersionValue{Version: rekey.Version{N: 1}, Value: rekey.NewValueString("old-password-1")}); err != nil {
		t.Fatal(err)
	}
	if !canLogin(t, role, "new-password-2") || canLogin(t, role, "old-password-1") {
		t.Fatal("after the admin's Apply the new password should log in and the old be refused")
	}
	// Revert through the admin sets the current one back.
	cur = rekey.VersionValue{Version: rekey.Version{N: 1}, Value: rekey.NewValueString("old-password-1")}
	if err := a.Revert(ctx, "production", spec, pend, cur); err != nil {
		t.Fatal(err)
	}
	if !canLogin(t, role, "old-password-1") || canLogin(t, role, "new-password-2") {
		t.Fatal("after Revert the old password should log in and the new be refused")
	}
	// A wrong admin URL: a clear error naming the secret, never the URL.
	bad := &postgres.Applier{Derived: a.Derived, Values: func(context.Context) (map[string]rekey.Value, error) {
		return map[string]rekey.Value{"PG_ADMIN_URL": rekey.NewValueString(c.ConnString(c.SuperUser, "wrong-admin-pw", "postgres"))}, nil
	}}
	err := bad.Apply(ctx, "production", spec, rekey.VersionValue{Value: rekey.NewValueString("third-password-3")}, cur)
	if err == nil || !strings.Contains(err.Error(), "PG_ADMIN_URL") || strings.Contains(err.Error(), "wrong-admin-pw") || !strings.Contains(rekey.ErrorHint(err), "rekey set PG_ADMIN_URL") {
		t.Fatalf("Apply with a wrong admin URL: %v (hint %q)", err, rekey.ErrorHint(err))
	}

	// Alternating through the admin: neither role has any privilege.
	green := testkit.Unique(`Admin's "Green" Role`)
	created, err := postgres.EnsurePair(ctx, admin, role, green)
	if err != nil || !created {
		t.Fatalf("EnsurePair: %v, %v", created, err)
	}
	if created, err := postgres.EnsurePair(ctx, admin, role, green); err != nil || created {
		t.Fatalf("EnsurePair again: %v, %v", created, err)
	}
	out, _, err := postgres.RoleTemplate(tmpl, "DATABASE_PASSWORD")
	if err != nil {
		t.Fatal(err)
	}
	a.Derived = []rekey.Derived{{Name: "DATABASE_URL", Template: rekey.MustParseTemplate(out)}}
	spec.Postgres.Strategy, spec.Postgres.Roles = "alternating", []string{role, green}
	pend = rekey.VersionValue{Version: rekey.Version{N: 2, Attrs: a.Attrs(spec, cur.Version)}, Value: rekey.NewValueString("green-password-2")}
	if pend.Attrs["role"] != green {
		t.Fatalf("Attrs: %v", pend.Attrs)
	}
	if err := a.Apply(ctx, "production", spec, pend, cur); err != nil {
		t.Fatal(err)
	}
	if err := a.Verify(ctx, "production", spec, pend, cur); err != nil {
		t.Fatal(err)
	}
	if !canLogin(t, green, "green-password-2") || !canLogin(t, role, "old-password-1") {
		t.Fatal("both roles should log in")
	}
	// The log holds no password.
	log, err := c.ServerLog()
	if err != nil {
		t.Fatal(err)
	}
	for _, pw := range []string{"old-password-1", "new-password-2", "green-password-2", "third-password-3", c.SuperPassword} {
		if strings.Contains(string(log), pw) {
			t.Errorf("the server log contains a password")
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestApplierRefusesUndeclaredRole: a version whose role attribute names a
// role rekey.yaml does not declare (a superuser, planted in the store) is
// refused before any connection: rekey never sets that role's password.
func TestApplierRefusesUndeclaredRole(t *testing.T) {
	a := &postgres.Applier{Derived: []rekey.Derived{{Name: "DATABASE_URL",
		Template: rekey.MustParseTemplate("postgres://{{ DATABASE_PASSWORD.role | urlquery }}:{{ DATABASE_PASSWORD | urlquery }}@db:5432/app")}}}
	spec := altSpec("app_blue", "app_green")
	_, err := a.ParamsFor(context.Background(), spec, vv(3, "postgres", "attacker-knows-this"))
	if rekey.ErrorCode(err) != rekey.CodeAuth || !strings.Contains(err.Error(), `"postgres"`) {
		t.Fatalf("ParamsFor with role postgres: %v, want CodeAuth naming the role", err)
	}
	// A fresh applier each (Revert after a failed Apply of the same one is a no-op).
	fresh := func() *postgres.Applier { return &postgres.Applier{Derived: a.Derived} }
	for what, call := range map[string]func() error{
		"Apply": func() error {
			return fresh().Apply(context.Background(), "prod", spec, vv(3, "postgres", "new"), vv(2, "app_blue", "cur"))
		},
		"Revert": func() error {
			return fresh().Revert(context.Background(), "prod", spec, vv(3, "app_green", "new"), vv(2, "postgres", "cur"))
		},
		"Expire": func() error { return fresh().Expire(context.Background(), "prod", spec, vv(1, "postgres", "old")) },
	} {
		if err := call(); rekey.ErrorCode(err) != rekey.CodeAuth {
			t.Errorf("%s with role postgres: %v, want CodeAuth", what, err)
		}
	}
}
