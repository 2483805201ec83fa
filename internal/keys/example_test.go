package keys_test

import (
	"crypto/x509"
	"fmt"
	"time"

	"github.com/borderlink/borderlink/internal/keys"
)

// A one-hour certificate is renewed after 40 minutes, leaving 20 for
// retries while Vault is unreachable.
func ExampleRenewAt() {
	start := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	leaf := &x509.Certificate{NotBefore: start, NotAfter: start.Add(time.Hour)}
	fmt.Println(keys.RenewAt(leaf).Format(time.TimeOnly))
	// Output: 10:40:00
}
