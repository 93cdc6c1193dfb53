package rekey

import "math"

// Entropy is the Shannon entropy of s in bits per byte: how random a value
// looks (a credential-like .env value, a leak rule's threshold), never what
// it is. It is 0 for an empty s.
func Entropy[T ~string | ~[]byte](s T) float64 {
	var counts [256]int
	for i := 0; i < len(s); i++ {
		counts[s[i]]++
	}
	var h float64
	n := float64(len(s))
	for _, c := range counts {
		if c > 0 {
			p := float64(c) / n
			h -= p * math.Log2(p)
		}
	}
	return h
}
