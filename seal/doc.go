// Package seal holds rekey's cryptography: the master key, authenticated
// sealing of secret values, passphrase-derived keys, key files and public
// fingerprints.
//
// Secret hygiene is part of every contract in this package:
//
//   - No error message, panic message, String/GoString/Format output, JSON or
//     text marshaling, or slog value produced by this package ever contains key
//     material or plaintext. A [Key] prints as "[REDACTED]" in every form; the
//     only way to get its bytes out is [Key.Encode].
//   - Errors never quote their secret inputs: [ParseKey] does not echo the
//     string it was given, [ReadKeyFile] names the file but not its content.
//   - Authentication failures are opaque: [Sealer.Open] returns the single
//     value [ErrOpen] whatever went wrong, so callers cannot learn (or leak)
//     why a ciphertext was rejected.
//
// Panics are reserved for programming errors that would otherwise weaken the
// cryptography, such as using the zero [Key]; their messages carry no secrets.
package seal
