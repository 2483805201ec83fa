package identity

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"time"
)

// RejectFunc is told about every peer refused during a handshake, with the
// identity the peer claimed (unverified, peer-controlled, truncated; "" if
// its leaf had no URI SAN) and the error, which wraps one of the sentinel
// errors. It runs inside the handshake and must not block. Do not use claimed
// as a metric label as is: any client can choose it.
type RejectFunc func(claimed string, err error)

// h2 is offered because gRPC requires ALPN to negotiate HTTP/2.
var alpnProtos = []string{"h2"}

// ServerTLSConfig returns a TLS 1.3 server config that presents kp and admits
// only clients whose certificate verifies under b for client auth (see
// [Bundles.Verify]). Refusals are logged at Warn with "claimed_id" and
// "error" and passed to onReject if it is not nil. A nil logger discards.
//
// A client that sends no certificate at all is refused here too, with
// ErrNoCertificate: crypto/tls is only asked to request a certificate
// (RequestClientCert) so that this refusal is logged and counted like every
// other one instead of disappearing inside the handshake.
func ServerTLSConfig(kp *KeyPair, b *Bundles, logger *slog.Logger, onReject RejectFunc) *tls.Config {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return kp.current()
		},
		// ClientCAs cannot bind a CA to a trust domain, so the stdlib is told
		// only to request a certificate and Verify does the verification,
		// including refusing an empty chain.
		ClientAuth: tls.RequestClientCert,
		VerifyPeerCertificate: func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
			if _, err := b.Verify(rawCerts, x509.ExtKeyUsageClientAuth, time.Now()); err != nil {
				claimed := claimedID(rawCerts)
				logger.Warn("refused TLS client", slog.String("claimed_id", claimed), slog.Any("error", err))
				if onReject != nil {
					onReject(claimed, err)
				}
				return err
			}
			return nil
		},
		// VerifyPeerCertificate is not run again on resumed sessions, so a
		// ticket would let a peer back in after its bundle was removed or
		// its domain's CA rotated. gRPC connections are long-lived; the cost
		// of always doing a full handshake is negligible.
		SessionTicketsDisabled: true,
		NextProtos:             alpnProtos,
	}
}

// ClientTLSConfig returns a TLS 1.3 client config that presents kp and
// accepts only a server whose certificate names exactly want and verifies
// under want's trust domain bundle for server auth. The handshake error
// names want and the ID the server presented.
func ClientTLSConfig(kp *KeyPair, b *Bundles, want ID) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return kp.current()
		},
		// InsecureSkipVerify turns off only the stdlib's WebPKI check (one
		// root pool for every name, hostname matching), which cannot express
		// "this SPIFFE ID, vouched for by its own domain's CA".
		// VerifyPeerCertificate below does that verification instead and
		// fails the handshake on any error; this is how go-spiffe's tlsconfig
		// does it. No ClientSessionCache is set, so every connection is a
		// full handshake that runs it.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
			if want.IsZero() {
				return fmt.Errorf("%w: no server identity configured", ErrUnexpectedID)
			}
			if _, err := b.verify(rawCerts, x509.ExtKeyUsageServerAuth, time.Now(), &want); err != nil {
				return fmt.Errorf("verify server %s: %w", want, err)
			}
			return nil
		},
		NextProtos: alpnProtos,
	}
}
