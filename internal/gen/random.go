package gen

import (
	"math"
	"math/rand/v2"
	"strings"
)

// Small drawing helpers over one *rand.Rand. Each consumes a fixed number of
// draws for a given input where it can, so that a change to one field's
// generation shifts as little of the rest as possible.

func pick[T any](r *rand.Rand, xs []T) T {
	return xs[r.IntN(len(xs))]
}

// weighted returns an index drawn with probability proportional to
// weight(i). Zero weights are never drawn; at least one weight must be
// positive.
func weighted(r *rand.Rand, n int, weight func(i int) float64) int {
	var total float64
	for i := range n {
		total += weight(i)
	}
	x := r.Float64() * total
	last := 0
	for i := range n {
		w := weight(i)
		if w <= 0 {
			continue
		}
		if x < w {
			return i
		}
		x -= w
		last = i
	}
	return last // only reached through rounding
}

// uniform returns a float in [lo, hi).
func uniform(r *rand.Rand, lo, hi float64) float64 {
	return lo + r.Float64()*(hi-lo)
}

func logNormal(r *rand.Rand, median, sigma float64) float64 {
	return median * math.Exp(sigma*r.NormFloat64())
}

// gamma draws from Gamma(shape, 1) for shape >= 1 (Marsaglia and Tsang).
func gamma(r *rand.Rand, shape float64) float64 {
	d := shape - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := r.NormFloat64()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := r.Float64()
		if u < 1-0.0331*x*x*x*x || math.Log(u) < 0.5*x*x+d*(1-v+math.Log(v)) {
			return d * v
		}
	}
}

func beta(r *rand.Rand, a, b float64) float64 {
	x := gamma(r, a)
	return x / (x + gamma(r, b))
}

const (
	digits     = "0123456789"
	letters    = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	usccChars  = "0123456789ABCDEFGHJKLMNPQRTUWXY" // GB 32100-2015: no I, O, S, V, Z
	nonZeroDig = "123456789"
)

// fill expands a pattern: '#' a digit, '%' a digit 1-9, '@' a letter, '*' a
// character of a Chinese unified social credit code; other runes are copied.
func fill(r *rand.Rand, pattern string) string {
	var b strings.Builder
	for _, c := range pattern {
		switch c {
		case '#':
			b.WriteByte(digits[r.IntN(len(digits))])
		case '%':
			b.WriteByte(nonZeroDig[r.IntN(len(nonZeroDig))])
		case '@':
			b.WriteByte(letters[r.IntN(len(letters))])
		case '*':
			b.WriteByte(usccChars[r.IntN(len(usccChars))])
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

func round1(x float64) float64 { return math.Round(x*10) / 10 }
func round3(x float64) float64 { return math.Round(x*1000) / 1000 }
