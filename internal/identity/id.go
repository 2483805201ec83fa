// Package identity decides who is on the other end of a Borderlink connection.
//
// Every caller and every gateway is named by a SPIFFE ID carried as the only
// URI SAN of its X.509 certificate, in one of four shapes:
//
//	spiffe://<trust-domain>/gateway
//	spiffe://<trust-domain>/agency/<name>
//	spiffe://<trust-domain>/auditor/<name>
//	spiffe://<trust-domain>/system/<name>
//
// The package guarantees that an ID it returns from a verified peer was
// vouched for by a CA in that ID's own trust domain bundle: a partner's CA can
// never vouch for another administration's identities (the SPIFFE federation
// rule). IDs are parsed strictly: anything that is not exactly one of the
// shapes above, in lowercase canonical form, is refused rather than
// normalised, so two different strings never name the same caller.
//
// TLS configurations built here use TLS 1.3 only and take their own
// certificate from a [KeyPair], which can be swapped at runtime for rotation.
package identity

import (
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"strings"
)

// Kinds of callers, from the SPIFFE ID path.
const (
	KindGateway = "gateway" // spiffe://<domain>/gateway (Name "")
	KindAgency  = "agency"  // spiffe://<domain>/agency/<name>
	KindAuditor = "auditor" // spiffe://<domain>/auditor/<name>
	KindSystem  = "system"  // spiffe://<domain>/system/<name>
)

// Sentinel errors. Errors returned by this package wrap exactly one of them
// (plus, where there is one, the underlying x509 error), so callers can map
// them to stable reason codes with errors.Is and log the detail.
var (
	ErrNoCertificate      = errors.New("identity: no certificate presented")
	ErrNoSPIFFEID         = errors.New("identity: certificate has no SPIFFE ID")
	ErrMalformedID        = errors.New("identity: malformed SPIFFE ID")
	ErrUnknownTrustDomain = errors.New("identity: unknown trust domain")
	ErrUntrusted          = errors.New("identity: certificate not trusted by its trust domain's bundle")
	ErrExpired            = errors.New("identity: certificate expired or not yet valid")
	ErrWrongUsage         = errors.New("identity: certificate not valid for this usage")
	ErrUnexpectedID       = errors.New("identity: unexpected peer identity")
)

const (
	scheme = "spiffe://"
	// maxIDLen is the SPIFFE limit on an ID's length; it also keeps error
	// messages that quote a peer-supplied ID bounded.
	maxIDLen      = 2048
	maxDomainLen  = 253
	maxLabelLen   = 63
	maxNameLen    = 63
	maxClaimedLen = 256
	oidSANExtID   = "2.5.29.17"
	sanTagURI     = 6
)

// ID is a parsed SPIFFE ID. The zero value is "no identity".
type ID struct {
	TrustDomain string // e.g. "nl.customs.example"
	Kind        string // one of the Kind constants
	Name        string // "" for KindGateway
}

// GatewayID returns the ID of the gateway of the given trust domain. It does
// not validate domain: an invalid domain yields an ID that never matches a
// verified peer.
func GatewayID(domain string) ID {
	return ID{TrustDomain: domain, Kind: KindGateway}
}

// String returns the canonical URI form, or "" for the zero ID.
func (id ID) String() string {
	switch {
	case id.IsZero():
		return ""
	case id.Kind == KindGateway:
		return scheme + id.TrustDomain + "/" + KindGateway
	default:
		return scheme + id.TrustDomain + "/" + id.Kind + "/" + id.Name
	}
}

// IsZero reports whether id is the zero ID.
func (id ID) IsZero() bool { return id == ID{} }

// Parse parses a SPIFFE ID strictly (see the package doc). Errors wrap
// ErrMalformedID.
func Parse(s string) (ID, error) {
	if len(s) > maxIDLen {
		return ID{}, fmt.Errorf("%w: longer than %d bytes", ErrMalformedID, maxIDLen)
	}
	rest, ok := strings.CutPrefix(s, scheme)
	if !ok {
		return ID{}, malformed(s, `scheme must be "spiffe://"`)
	}
	domain, path, ok := strings.Cut(rest, "/")
	if !ok {
		return ID{}, malformed(s, "missing path")
	}
	if reason := checkTrustDomain(domain); reason != "" {
		return ID{}, malformed(s, "trust domain "+reason)
	}
	segs := strings.Split(path, "/")
	kind := segs[0]
	switch kind {
	case KindGateway:
		if len(segs) != 1 {
			return ID{}, malformed(s, "gateway path takes no further segments")
		}
		return ID{TrustDomain: domain, Kind: KindGateway}, nil
	case KindAgency, KindAuditor, KindSystem:
		switch {
		case len(segs) == 1 || (len(segs) == 2 && segs[1] == ""):
			return ID{}, malformed(s, "missing name after /"+kind+"/")
		case len(segs) > 2:
			return ID{}, malformed(s, "path must be /"+kind+"/<name> with no further segments")
		}
		if reason := checkName(segs[1]); reason != "" {
			return ID{}, malformed(s, "name "+reason)
		}
		return ID{TrustDomain: domain, Kind: kind, Name: segs[1]}, nil
	default:
		return ID{}, malformed(s, fmt.Sprintf("unknown kind %q, want gateway, agency, auditor or system", kind))
	}
}

// MustParse is Parse that panics on error; for tests and examples only.
func MustParse(s string) ID {
	id, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return id
}

// ValidateTrustDomain reports whether domain is a trust domain this package
// accepts: lowercase DNS-like labels of [a-z0-9-], separated by dots, no
// label starting or ending with '-'. Config loaders and the development CA
// use it so that a domain they accept can also appear in a SPIFFE ID.
func ValidateTrustDomain(domain string) error {
	if reason := checkTrustDomain(domain); reason != "" {
		return fmt.Errorf("invalid trust domain %q: %s", domain, reason)
	}
	return nil
}

func malformed(s, reason string) error {
	return fmt.Errorf("%w %q: %s", ErrMalformedID, s, reason)
}

// checkTrustDomain returns why domain is invalid, or "".
func checkTrustDomain(domain string) string {
	if domain == "" {
		return "is empty"
	}
	if len(domain) > maxDomainLen {
		return fmt.Sprintf("is longer than %d bytes", maxDomainLen)
	}
	for label := range strings.SplitSeq(domain, ".") {
		switch {
		case label == "":
			return "has an empty label"
		case len(label) > maxLabelLen:
			return fmt.Sprintf("has a label longer than %d bytes", maxLabelLen)
		case label[0] == '-' || label[len(label)-1] == '-':
			return "has a label starting or ending with '-'"
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !isLowerAlnum(c) && c != '-' {
				return fmt.Sprintf("contains %q (allowed: a-z 0-9 - .)", c)
			}
		}
	}
	return ""
}

// checkName returns why name is invalid, or "".
func checkName(name string) string {
	if len(name) > maxNameLen {
		return fmt.Sprintf("is longer than %d bytes", maxNameLen)
	}
	if !isLowerAlnum(name[0]) {
		return "must start with a-z or 0-9"
	}
	for i := 1; i < len(name); i++ {
		if c := name[i]; !isLowerAlnum(c) && c != '-' && c != '_' && c != '.' {
			return fmt.Sprintf("contains %q (allowed: a-z 0-9 - _ .)", c)
		}
	}
	return ""
}

func isLowerAlnum(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }

// FromCertificate returns the SPIFFE ID in cert's URI SAN. The certificate
// must carry exactly one URI SAN (X509-SVID rule); more than one wraps
// ErrMalformedID, none is ErrNoSPIFFEID. It does not verify the certificate.
func FromCertificate(cert *x509.Certificate) (ID, error) {
	if cert == nil {
		return ID{}, ErrNoCertificate
	}
	uris, err := uriSANs(cert)
	if err != nil {
		return ID{}, err
	}
	switch len(uris) {
	case 0:
		return ID{}, ErrNoSPIFFEID
	case 1:
		return Parse(uris[0])
	default:
		return ID{}, fmt.Errorf("%w: certificate has %d URI SANs, want exactly one", ErrMalformedID, len(uris))
	}
}

// uriSANs returns the URI SANs exactly as encoded. cert.URIs is not enough:
// it holds url.URL values whose String form normalises (an empty fragment
// disappears, a percent-encoded host is decoded), and strict parsing must see
// the bytes the CA signed.
func uriSANs(cert *x509.Certificate) ([]string, error) {
	for _, ext := range cert.Extensions {
		if ext.Id.String() != oidSANExtID {
			continue
		}
		var seq asn1.RawValue
		if rest, err := asn1.Unmarshal(ext.Value, &seq); err != nil || len(rest) > 0 || !seq.IsCompound {
			return nil, fmt.Errorf("%w: unparseable subject alternative name extension", ErrMalformedID)
		}
		var uris []string
		for b := seq.Bytes; len(b) > 0; {
			var v asn1.RawValue
			var err error
			if b, err = asn1.Unmarshal(b, &v); err != nil {
				return nil, fmt.Errorf("%w: unparseable subject alternative name: %w", ErrMalformedID, err)
			}
			if v.Class == asn1.ClassContextSpecific && v.Tag == sanTagURI {
				uris = append(uris, string(v.Bytes))
			}
		}
		return uris, nil
	}
	// A certificate built in memory rather than parsed has no raw extensions.
	uris := make([]string, len(cert.URIs))
	for i, u := range cert.URIs {
		uris[i] = u.String()
	}
	return uris, nil
}

// claimedID is the best-effort, unverified identity a peer claimed, for logs
// and metrics: its leaf's URI SANs as sent, "" if none. It is peer-controlled,
// so it is truncated.
func claimedID(rawCerts [][]byte) string {
	if len(rawCerts) == 0 {
		return ""
	}
	leaf, err := x509.ParseCertificate(rawCerts[0])
	if err != nil {
		return ""
	}
	uris, err := uriSANs(leaf)
	if err != nil {
		return ""
	}
	s := strings.Join(uris, ",")
	if len(s) > maxClaimedLen {
		s = s[:maxClaimedLen] + "…"
	}
	return s
}
