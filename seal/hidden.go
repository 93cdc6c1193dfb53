package seal

// hidden holds a secret behind two pointers.
//
// Format methods redact Key, Sealer and Fingerprinter wherever fmt calls them,
// but fmt cannot call methods on unexported struct fields and walks them by
// reflection instead. It prints a nested pointer as an address, except that
// its "%!s(...)" fallback for a bad verb prints the target of a pointer to an
// array or struct. It never dereferences a pointer to a pointer, so a value
// stored here shows up as an address in every fmt path.
type hidden[T any] struct {
	pp **T
}

// hide wraps v, which must not be nil.
func hide[T any](v *T) hidden[T] {
	return hidden[T]{pp: &v}
}

// get returns the wrapped pointer, or nil for the zero hidden.
func (h hidden[T]) get() *T {
	if h.pp == nil {
		return nil
	}
	return *h.pp
}
