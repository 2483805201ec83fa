package gen

import (
	"fmt"
	"math/rand/v2"
)

// Transport identifiers carry check digits. Getting them right costs little
// and lets anyone who runs the demo data through a real checker see it pass.

// imoNumber returns "IMO" and seven digits whose last is the IMO check digit:
// the first six weighted 7 down to 2, summed, modulo 10.
func imoNumber(r *rand.Rand) string {
	// Ships built since the 1990s have numbers starting with 9.
	n := 900000 + r.IntN(100000)
	return fmt.Sprintf("IMO%d%d", n, imoCheck(n))
}

func imoCheck(six int) int {
	sum := 0
	for w := 2; w <= 7; w++ {
		sum += (six % 10) * w
		six /= 10
	}
	return sum % 10
}

// containerID returns an ISO 6346 container number: a 3-letter owner code,
// the equipment category "U", six serial digits and the check digit.
func containerID(r *rand.Rand) string {
	for {
		id := fill(r, "@@@U######")
		// Owners do not issue serials whose remainder is 10, because the
		// check digit would be ambiguous with 0.
		if c := iso6346Check(id); c < 10 {
			return fmt.Sprintf("%s%d", id, c)
		}
	}
}

// iso6346Check computes the check digit (0-10) of the first ten characters.
// Letters count from A=10, skipping multiples of 11; position i weighs 2^i.
func iso6346Check(id string) int {
	sum := 0
	for i := 0; i < 10; i++ {
		c := id[i]
		var v int
		if c >= '0' && c <= '9' {
			v = int(c - '0')
		} else {
			v = int(c-'A') + 10
			v += (v - 1) / 10 // skip 11, 22, 33
		}
		sum += v << i
	}
	return sum % 11
}

// airWaybill returns an IATA air waybill number: the carrier prefix and an
// 8-digit serial whose last digit is the first seven modulo 7.
func airWaybill(r *rand.Rand, prefix string) string {
	n := r.IntN(10_000_000)
	return fmt.Sprintf("%s-%07d%d", prefix, n, n%7)
}
