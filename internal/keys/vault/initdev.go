package vault

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"golang.org/x/mod/sumdb/note"
	"gopkg.in/yaml.v3"

	"github.com/borderlink/borderlink/internal/identity"
	"github.com/borderlink/borderlink/internal/keys"
)

// InitDevOptions say what InitDev sets up. Zero values take the defaults
// of keys.VaultConfig.
type InitDevOptions struct {
	// TrustDomain is the administration, e.g. nl.customs.example.
	TrustDomain string
	// SignerName is the audit log origin the transit key signs as
	// (audit.Origin(TrustDomain)); used to print the verifier key.
	SignerName string
	// SecretIDFile receives the AppRole secret ID (mode 0600). Required.
	SecretIDFile string

	PKIMount, PKIRole, TransitMount, TransitKey, KVMount string
	// AppRoleMount is where AppRole is enabled; default "approle".
	AppRoleMount string
	// Name names the policy and the AppRole role; default
	// "borderlink-gateway".
	Name string
	// CertTTL is the gateway certificate lifetime put in the config;
	// default 1h. CertMaxTTL bounds it in the PKI role; default 24h.
	CertTTL, CertMaxTTL time.Duration
	// CertNotBefore is how far back the PKI role backdates certificates
	// against clock skew; default 30s (Vault's default).
	CertNotBefore time.Duration
	// TokenTTL and TokenMaxTTL of AppRole logins; defaults 1h and 24h.
	TokenTTL, TokenMaxTTL time.Duration
}

// DevSetup is what InitDev made.
type DevSetup struct {
	// Config is the vault: section for the gateway.
	Config keys.VaultConfig
	// Policy is the name and text of the least-privilege policy.
	PolicyName, Policy string
	// CACertPEM is the own-domain CA.
	CACertPEM string
	// VerifierKey is the audit verifier key of the current transit key
	// version; partners put it in peers.<domain>.audit_key.
	VerifierKey string
}

// Snippet returns the config snippet to paste into the gateway's config.
func (d *DevSetup) Snippet() (string, error) {
	var b strings.Builder
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(map[string]any{"vault": d.Config}); err != nil {
		return "", err
	}
	if err := enc.Close(); err != nil {
		return "", err
	}
	return b.String(), nil
}

func (o *InitDevOptions) setDefaults() {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&o.PKIMount, keys.DefaultVaultPKIMount)
	def(&o.PKIRole, keys.DefaultVaultPKIRole)
	def(&o.TransitMount, keys.DefaultVaultTransitMount)
	def(&o.TransitKey, keys.DefaultVaultTransitKey)
	def(&o.KVMount, keys.DefaultVaultKVMount)
	def(&o.AppRoleMount, "approle")
	def(&o.Name, "borderlink-gateway")
	def(&o.SignerName, o.TrustDomain+"/borderlink/audit")
	defd := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	defd(&o.CertTTL, keys.DefaultVaultCertTTL)
	defd(&o.CertMaxTTL, 24*time.Hour)
	defd(&o.CertNotBefore, 30*time.Second)
	defd(&o.TokenTTL, time.Hour)
	defd(&o.TokenMaxTTL, 24*time.Hour)
}

// PolicyText is the least-privilege policy of a gateway: issue its own
// certificate, read its CA's issuers, read and use its signing key, read
// its own secrets. Token renewal and lookup come from Vault's default
// policy. Reading <pki>/issuer/<id> (one path segment: not the issuer's
// revoke, sign or issue endpoints below it) shows each issuer's key_id,
// usage and revoked flag, which Client.TrustBundle needs; the
// unauthenticated issuer/<id>/json shows none of them. (The PKI engine
// serves ca/pem and issuers without authentication; the policy names them
// anyway, so that it lists everything the gateway reads.)
func PolicyText(o InitDevOptions) string {
	o.setDefaults()
	return fmt.Sprintf(`# Borderlink gateway %[1]s: only what it needs.
path "%[2]s/issue/%[3]s" {
  capabilities = ["update"]
}
path "%[2]s/ca/pem" {
  capabilities = ["read"]
}
path "%[2]s/issuers" {
  capabilities = ["list"]
}
path "%[2]s/issuer/+" {
  capabilities = ["read"]
}
path "%[4]s/keys/%[5]s" {
  capabilities = ["read"]
}
path "%[4]s/sign/%[5]s" {
  capabilities = ["update"]
}
path "%[6]s/data/borderlink/%[1]s/*" {
  capabilities = ["read"]
}
`, o.TrustDomain, o.PKIMount, o.PKIRole, o.TransitMount, o.TransitKey, o.KVMount)
}

// InitDev sets up a development Vault at addr with an admin token (the
// dev server's root token): it mounts PKI (with a root CA for the trust
// domain and a role that issues only spiffe://<domain>/gateway), transit
// (with an Ed25519 signing key), KV v2 (with a random pseudonymisation key)
// and AppRole (with a role bound to a least-privilege policy), writes the
// role's secret ID to o.SecretIDFile and returns the gateway's config.
//
// It is idempotent: what exists is kept, except that the policy and the
// roles are rewritten and a new secret ID is generated. The
// pseudonymisation key and the CA are never replaced.
func InitDev(ctx context.Context, addr, token string, o InitDevOptions) (*DevSetup, error) {
	o.setDefaults()
	if err := identity.ValidateTrustDomain(o.TrustDomain); err != nil {
		return nil, fmt.Errorf("init-dev: %w", err)
	}
	if o.SecretIDFile == "" {
		return nil, errors.New("init-dev: a file for the AppRole secret ID is required")
	}
	vc := vaultapi.DefaultConfig()
	vc.Address = addr
	vc.MaxRetries = 0
	api, err := vaultapi.NewClient(vc)
	if err != nil {
		return nil, fmt.Errorf("init-dev: vault %s: %w", addr, err)
	}
	api.SetToken(token)
	// Errors go through Client.wrap so they name the path and capability.
	c := &Client{api: api, timeout: 30 * time.Second}
	step := func(what string, err error) error {
		if err == nil {
			return nil
		}
		return fmt.Errorf("init-dev: %s: %w", what, err)
	}
	w := func(path string, data map[string]any) (*vaultapi.Secret, error) {
		s, err := api.Logical().WriteWithContext(ctx, path, data)
		return s, c.wrap("write", path, err)
	}
	r := func(path string) (*vaultapi.Secret, error) {
		s, err := api.Logical().ReadWithContext(ctx, path)
		return s, c.wrap("read", path, err)
	}

	// Mounts.
	mounts, err := api.Sys().ListMountsWithContext(ctx)
	if err != nil {
		return nil, step("list mounts", c.wrap("list mounts", "sys/mounts", err))
	}
	newPKI := mounts[o.PKIMount+"/"] == nil
	for _, m := range []struct {
		path string
		in   vaultapi.MountInput
	}{
		{o.PKIMount, vaultapi.MountInput{Type: "pki", Config: vaultapi.MountConfigInput{MaxLeaseTTL: "87600h"}}},
		{o.TransitMount, vaultapi.MountInput{Type: "transit"}},
		{o.KVMount, vaultapi.MountInput{Type: "kv", Options: map[string]string{"version": "2"}}},
	} {
		if have := mounts[m.path+"/"]; have != nil {
			if have.Type != m.in.Type {
				return nil, fmt.Errorf("init-dev: %s is already mounted as %s, want %s (choose another mount)", m.path, have.Type, m.in.Type)
			}
			continue
		}
		if err := api.Sys().MountWithContext(ctx, m.path, &m.in); err != nil {
			return nil, step("mount "+m.path, c.wrap("mount", "sys/mounts/"+m.path, err))
		}
	}
	auths, err := api.Sys().ListAuthWithContext(ctx)
	if err != nil {
		return nil, step("list auth methods", c.wrap("list auth", "sys/auth", err))
	}
	if auths[o.AppRoleMount+"/"] == nil {
		if err := api.Sys().EnableAuthWithOptionsWithContext(ctx, o.AppRoleMount, &vaultapi.EnableAuthOptions{Type: "approle"}); err != nil {
			return nil, step("enable approle", c.wrap("enable auth", "sys/auth/"+o.AppRoleMount, err))
		}
	}

	// PKI: a root for the trust domain, and a role for the gateway only.
	if newPKI {
		if _, err := w(o.PKIMount+"/root/generate/internal", map[string]any{
			"common_name": o.TrustDomain + " Borderlink development CA",
			"ttl":         "87600h",
			"key_type":    "ec",
			"key_bits":    256,
		}); err != nil {
			return nil, step("generate root CA", err)
		}
	}
	if _, err := w(o.PKIMount+"/roles/"+o.PKIRole, map[string]any{
		"allowed_uri_sans":    identity.GatewayID(o.TrustDomain).String(),
		"require_cn":          false,
		"allow_any_name":      false,
		"allow_localhost":     false,
		"allow_ip_sans":       false,
		"allowed_domains":     []string{},
		"server_flag":         true,
		"client_flag":         true,
		"key_type":            "ec",
		"key_bits":            256,
		"max_ttl":             o.CertMaxTTL.String(),
		"not_before_duration": o.CertNotBefore.String(),
		// Short-lived certificates are not stored: at one per replica
		// per 40 minutes storage would only grow.
		"no_store": true,
	}); err != nil {
		return nil, step("write PKI role", err)
	}

	// Transit: an Ed25519 key that never leaves Vault.
	key := o.TransitMount + "/keys/" + o.TransitKey
	if s, err := r(key); err != nil {
		return nil, step("read transit key", err)
	} else if s == nil {
		if _, err := w(key, map[string]any{"type": "ed25519"}); err != nil {
			return nil, step("create transit key", err)
		}
	}

	// KV: the pseudonymisation key, created once and never replaced
	// (changing it changes every pseudonym partners have seen).
	pseudonymPath := "borderlink/" + o.TrustDomain + "/pseudonym"
	kv := api.KVv2(o.KVMount)
	if _, err := kv.Get(ctx, pseudonymPath); errors.Is(err, vaultapi.ErrSecretNotFound) {
		k := make([]byte, 32)
		rand.Read(k)
		if _, err := kv.Put(ctx, pseudonymPath, map[string]any{"key": base64.StdEncoding.EncodeToString(k)}, vaultapi.WithCheckAndSet(0)); err != nil {
			return nil, step("write pseudonymisation key", c.wrap("write", o.KVMount+"/data/"+pseudonymPath, err))
		}
	} else if err != nil {
		return nil, step("read pseudonymisation key", c.wrap("read", o.KVMount+"/data/"+pseudonymPath, err))
	}

	// Policy and AppRole.
	policy := PolicyText(o)
	if err := api.Sys().PutPolicyWithContext(ctx, o.Name, policy); err != nil {
		return nil, step("write policy", c.wrap("write", "sys/policies/acl/"+o.Name, err))
	}
	role := "auth/" + o.AppRoleMount + "/role/" + o.Name
	if _, err := w(role, map[string]any{
		"token_policies": []string{o.Name},
		"token_ttl":      o.TokenTTL.String(),
		"token_max_ttl":  o.TokenMaxTTL.String(),
		"token_type":     "service",
		// The secret ID is reused at every re-login; an orchestrator that
		// delivers single-use secret IDs must replace the file first.
		"secret_id_num_uses": 0,
	}); err != nil {
		return nil, step("write approle role", err)
	}
	s, err := r(role + "/role-id")
	if err != nil {
		return nil, step("read role ID", err)
	}
	roleID, _ := s.Data["role_id"].(string)
	s, err = w(role+"/secret-id", nil)
	if err != nil {
		return nil, step("generate secret ID", err)
	}
	secretID, _ := s.Data["secret_id"].(string)
	if roleID == "" || secretID == "" {
		return nil, fmt.Errorf("init-dev: %s returned no role or secret ID", role)
	}
	if err := os.WriteFile(o.SecretIDFile, []byte(secretID+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("init-dev: write secret ID: %w", err)
	}

	// Read back what the gateway will be told to trust and publish.
	resp, err := api.Logical().ReadRawWithContext(ctx, o.PKIMount+"/ca/pem")
	if err != nil {
		return nil, step("read CA", c.wrap("read", o.PKIMount+"/ca/pem", err))
	}
	defer resp.Body.Close()
	ca, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, step("read CA", c.wrap("read", o.PKIMount+"/ca/pem", err))
	}
	ks, err := r(key)
	if err != nil {
		return nil, step("read transit key", err)
	}
	latest := toInt(ks.Data["latest_version"])
	versions, _ := ks.Data["keys"].(map[string]any)
	info, _ := versions[fmt.Sprint(latest)].(map[string]any)
	pub, _ := base64.StdEncoding.DecodeString(fmt.Sprint(info["public_key"]))
	vkey, err := note.NewEd25519VerifierKey(o.SignerName, pub)
	if err != nil {
		return nil, fmt.Errorf("init-dev: transit key %s: %w", key, err)
	}

	cfg := keys.VaultConfig{
		Address: addr,
		Auth: keys.VaultAuth{AppRole: &keys.VaultAppRole{
			RoleID:       roleID,
			SecretIDFile: o.SecretIDFile,
		}},
		PKI:     keys.VaultPKI{Mount: o.PKIMount, Role: o.PKIRole, TTL: keys.VaultDurationStr(o.CertTTL.String())},
		Transit: keys.VaultTransit{Mount: o.TransitMount, Key: o.TransitKey},
		KV:      keys.VaultKV{Mount: o.KVMount, PseudonymKeyPath: pseudonymPath},
	}
	if o.AppRoleMount != "approle" {
		cfg.Auth.Mount = o.AppRoleMount
	}
	return &DevSetup{Config: cfg, PolicyName: o.Name, Policy: policy, CACertPEM: string(ca), VerifierKey: vkey}, nil
}
