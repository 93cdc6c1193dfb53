package rekey

import "testing"

func TestEntropy(t *testing.T) {
	if e := Entropy([]byte("aaaa")); e != 0 {
		t.Fatal(e)
	}
	if e := Entropy([]byte("abcd")); e != 2 {
		t.Fatal(e)
	}
	if e := Entropy(""); e != 0 {
		t.Fatal(e)
	}
}
