// Package postgres holds the PostgreSQL building blocks of rekey's role
// password rotation: SCRAM-SHA-256 verifiers, DATABASE_URL parsing,
// connecting and probing candidate passwords, changing a role's password
// and cloning a role for the alternating (blue/green) strategy; and the
// Applier that runs them inside rekey's journaled rotations (strategies
// single and alternating, changed by the role itself or by an admin
// connection).
//
// Secret hygiene:
//   - a password is never sent to the server in SQL: ALTER ROLE and CREATE
//     ROLE only ever carry a SCRAM verifier computed here (so log_statement
//     cannot leak it), and SCRAM/md5 authentication never sends it either
//     (cleartext password authentication is refused by default);
//   - errors name the operation, host:port and role, never a password, and
//     ParseURL errors never quote the URL;
//   - Params print with the password redacted under every fmt verb, slog
//     and encoding/json.
//
// Errors are *Error values classified with the sentinels ErrUnreachable,
// ErrAuthFailed, ErrPrivilege, ErrRoleMissing, ErrTLSRequired and ErrNoSCRAM
// (use errors.Is); Hint(err) says what to do about them.
package postgres
