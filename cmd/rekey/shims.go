package main

// Temporary, until the demo moves out of package main (issue 11).
func (a *app) abs(p string) (string, error) { return a.s().Abs(p) }
