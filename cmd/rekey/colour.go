package main

import (
	"io"
	"os"

	"golang.org/x/term"
)

// Colour of states (status, doctor, verify, services): on a terminal only.
// Never in a pipe, a file or --json output; never when NO_COLOR is set to
// anything (https://no-color.org) or TERM is dumb.

// colourEnabled decides whether output is coloured: w is a terminal, NO_COLOR
// is empty and TERM is not dumb.
func colourEnabled(tty bool, getenv func(string) string) bool {
	return tty && getenv("NO_COLOR") == "" && getenv("TERM") != "dumb"
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// ANSI colours. Every code has the same length (5 bytes, then 4 to reset),
// so a coloured column of a tabwriter table stays aligned.
const (
	ansiGreen   = "\x1b[32m"
	ansiYellow  = "\x1b[33m"
	ansiRed     = "\x1b[31m"
	ansiDefault = "\x1b[39m"
	ansiReset   = "\x1b[0m"
)

// stateColour is the colour of a state word as rekey prints it.
func stateColour(state string) string {
	switch state {
	case "ok", "PASS", "done", "consistent", "current":
		return ansiGreen
	case "due-soon", "WARN", "manual", "-", "pending", "in-progress":
		return ansiYellow
	case "overdue", "weak", "missing", "drift", "reencrypt-incomplete", "FAIL", "FAILED", "failed", "rolled-back", "interrupted":
		return ansiRed
	}
	return ansiDefault
}

// paint colours a state word when the output is coloured (a.colour), and
// returns it as is otherwise.
func (a *app) paint(state string) string {
	if !a.colour() {
		return state
	}
	return stateColour(state) + state + ansiReset
}

// paintPadded pads a state word to width, then colours it (padding after
// the escape codes would count them as text).
func (a *app) paintPadded(state string, width int) string {
	pad := ""
	for i := len(state); i < width; i++ {
		pad += " "
	}
	return a.paint(state) + pad
}

// colour reports whether stdout is coloured: a terminal, no NO_COLOR, TERM
// not dumb, and no JSON asked for.
func (a *app) colour() bool {
	if a.jsonOut {
		return false
	}
	if a.colourOn == nil {
		on := colourEnabled(isTerminal(a.out()), a.getenv)
		a.colourOn = &on
	}
	return *a.colourOn
}
