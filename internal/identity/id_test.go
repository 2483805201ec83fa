package identity_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/borderlink/borderlink/internal/identity"
)

func TestParse(t *testing.T) {
	long := strings.Repeat("a", 63)
	tests := []struct {
		in   string
		want identity.ID // zero: must fail with ErrMalformedID
	}{
		{"spiffe://nl.customs.example/gateway", identity.ID{TrustDomain: "nl.customs.example", Kind: identity.KindGateway}},
		{"spiffe://nl.customs.example/agency/health", identity.ID{TrustDomain: "nl.customs.example", Kind: identity.KindAgency, Name: "health"}},
		{"spiffe://sg.customs.example/auditor/dpa", identity.ID{TrustDomain: "sg.customs.example", Kind: identity.KindAuditor, Name: "dpa"}},
		{"spiffe://nl.customs.example/system/cli", identity.ID{TrustDomain: "nl.customs.example", Kind: identity.KindSystem, Name: "cli"}},
		{"spiffe://localhost/system/a-b_c.9", identity.ID{TrustDomain: "localhost", Kind: identity.KindSystem, Name: "a-b_c.9"}},
		{"spiffe://x-1.example/agency/0" + long[1:], identity.ID{TrustDomain: "x-1.example", Kind: identity.KindAgency, Name: "0" + long[1:]}},

		{"", identity.ID{}},
		{"spiffe://", identity.ID{}},
		{"spiffe://nl.customs.example", identity.ID{}},
		{"spiffe://nl.customs.example/", identity.ID{}},
		{"SPIFFE://nl.customs.example/gateway", identity.ID{}},
		{"https://nl.customs.example/gateway", identity.ID{}},
		{"spiffe:nl.customs.example/gateway", identity.ID{}},
		{"spiffe://NL.customs.example/gateway", identity.ID{}},
		{"spiffe://nl.customs.example/Gateway", identity.ID{}},
		{"spiffe://nl.customs.example/agency/Health", identity.ID{}},
		{"spiffe://nl.customs.example:8443/gateway", identity.ID{}},
		{"spiffe://user@nl.customs.example/gateway", identity.ID{}},
		{"spiffe://nl.customs.example/gateway?x=1", identity.ID{}},
		{"spiffe://nl.customs.example/gateway#frag", identity.ID{}},
		{"spiffe://nl.customs.example/gateway/", identity.ID{}},
		{"spiffe://nl.customs.example/agency/health/", identity.ID{}},
		{"spiffe://nl.customs.example//gateway", identity.ID{}},
		{"spiffe://nl.customs.example/gateway/extra", identity.ID{}},
		{"spiffe://nl.customs.example/agency", identity.ID{}},
		{"spiffe://nl.customs.example/agency/", identity.ID{}},
		{"spiffe://nl.customs.example/agency/health/extra", identity.ID{}},
		{"spiffe://nl.customs.example/partner/sg", identity.ID{}},
		{"spiffe://nl.customs.example/agency/-health", identity.ID{}},
		{"spiffe://nl.customs.example/agency/.", identity.ID{}},
		{"spiffe://nl.customs.example/agency/..", identity.ID{}},
		{"spiffe://nl.customs.example/agency/a%2Fb", identity.ID{}},
		{"spiffe://nl.customs.example/agency/" + long + "a", identity.ID{}},
		{"spiffe://nl..example/gateway", identity.ID{}},
		{"spiffe://.nl.example/gateway", identity.ID{}},
		{"spiffe://nl.example./gateway", identity.ID{}},
		{"spiffe://-nl.example/gateway", identity.ID{}},
		{"spiffe://nl_customs.example/gateway", identity.ID{}},
		{"spiffe://" + long + "a.example/gateway", identity.ID{}},
		{"spiffe://127.0.0.1:80/gateway", identity.ID{}},
		{" spiffe://nl.customs.example/gateway", identity.ID{}},
		{"spiffe://nl.customs.example/gateway ", identity.ID{}},
		{"spiffe://" + strings.Repeat("a.", 1100) + "a/gateway", identity.ID{}},
	}
	for _, tt := range tests {
		got, err := identity.Parse(tt.in)
		if tt.want.IsZero() {
			if !errors.Is(err, identity.ErrMalformedID) {
				t.Errorf("Parse(%q) = %+v, %v; want error wrapping ErrMalformedID", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
		if s := got.String(); s != tt.in {
			t.Errorf("Parse(%q).String() = %q; want the input back", tt.in, s)
		}
	}
}

func TestIDString(t *testing.T) {
	tests := []struct {
		id   identity.ID
		want string
	}{
		{identity.ID{}, ""},
		{identity.GatewayID("nl.customs.example"), "spiffe://nl.customs.example/gateway"},
		{identity.ID{TrustDomain: "nl.customs.example", Kind: identity.KindAgency, Name: "health"}, "spiffe://nl.customs.example/agency/health"},
	}
	for _, tt := range tests {
		if got := tt.id.String(); got != tt.want {
			t.Errorf("%+v.String() = %q; want %q", tt.id, got, tt.want)
		}
	}
	if got, want := (identity.ID{}).IsZero(), true; got != want {
		t.Errorf("zero ID IsZero() = %v; want %v", got, want)
	}
	if got, want := identity.GatewayID("x").IsZero(), false; got != want {
		t.Errorf("GatewayID IsZero() = %v; want %v", got, want)
	}
}

func TestMustParsePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("MustParse(bad) did not panic")
		}
	}()
	identity.MustParse("spiffe://nl.customs.example/")
}

func TestValidateTrustDomain(t *testing.T) {
	tests := []struct {
		domain string
		ok     bool
	}{
		{"nl.customs.example", true},
		{"localhost", true},
		{"a-1.b", true},
		{"", false},
		{"NL.customs.example", false},
		{"nl.customs.example:443", false},
		{"nl..example", false},
		{"nl-.example", false},
		{"nl_x.example", false},
		{"nl.customs.example/", false},
	}
	for _, tt := range tests {
		err := identity.ValidateTrustDomain(tt.domain)
		if got := err == nil; got != tt.ok {
			t.Errorf("ValidateTrustDomain(%q) = %v; want ok=%v", tt.domain, err, tt.ok)
		}
		if err != nil && !strings.Contains(err.Error(), `"`+tt.domain+`"`) {
			t.Errorf("ValidateTrustDomain(%q) error %q does not name the domain", tt.domain, err)
		}
	}
}

// FuzzParse checks that Parse only accepts canonical strings: whatever it
// accepts prints back byte for byte, so no two strings name the same caller.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"spiffe://nl.customs.example/gateway",
		"spiffe://nl.customs.example/agency/health",
		"spiffe://a/system/x.y_z-1",
		"spiffe://NL.customs.example/gateway",
		"spiffe://nl.customs.example/gateway/",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := identity.Parse(s)
		if err != nil {
			if !errors.Is(err, identity.ErrMalformedID) {
				t.Fatalf("Parse(%q) error %v does not wrap ErrMalformedID", s, err)
			}
			return
		}
		if got := id.String(); got != s {
			t.Fatalf("Parse(%q).String() = %q; want the input back", s, got)
		}
	})
}

func TestFromCertificate(t *testing.T) {
	tests := []struct {
		name    string
		uris    []string
		rawSAN  string // if set, the URI SAN bytes exactly as encoded
		want    identity.ID
		wantErr error
	}{
		{name: "one ID", uris: []string{"spiffe://nl.customs.example/agency/health"},
			want: identity.MustParse("spiffe://nl.customs.example/agency/health")},
		{name: "no URI SAN", wantErr: identity.ErrNoSPIFFEID},
		{name: "two URI SANs", uris: []string{"spiffe://nl.customs.example/gateway", "spiffe://nl.customs.example/agency/health"},
			wantErr: identity.ErrMalformedID},
		{name: "https", uris: []string{"https://nl.customs.example/gateway"}, wantErr: identity.ErrMalformedID},
		// url.URL.String would drop the empty fragment; the ID must be
		// judged on the bytes the CA signed.
		{name: "empty fragment as encoded", rawSAN: "spiffe://nl.customs.example/gateway#", wantErr: identity.ErrMalformedID},
		{name: "escaped path as encoded", rawSAN: "spiffe://nl.customs.example/%67ateway", wantErr: identity.ErrMalformedID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert := selfSigned(t, tt.uris, tt.rawSAN)
			got, err := identity.FromCertificate(cert)
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Errorf("FromCertificate() = %+v, %v; want %+v, %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
	if _, err := identity.FromCertificate(nil); !errors.Is(err, identity.ErrNoCertificate) {
		t.Errorf("FromCertificate(nil) error = %v; want ErrNoCertificate", err)
	}
}

// selfSigned makes a throwaway certificate with the given URI SANs, or with
// one URI SAN encoded byte for byte as rawSAN.
func selfSigned(t *testing.T, uris []string, rawSAN string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	for _, s := range uris {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	if rawSAN != "" {
		value, err := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte(rawSAN)}})
		if err != nil {
			t.Fatal(err)
		}
		tmpl.ExtraExtensions = []pkix.Extension{{Id: asn1.ObjectIdentifier{2, 5, 29, 17}, Value: value}}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}
