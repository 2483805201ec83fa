package vault

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/borderlink/borderlink/internal/keys"
)

// ErrNotFound is wrapped when a KV secret or field does not exist.
var ErrNotFound = errors.New("vault: secret not found")

// ReadKV reads the latest version of the KV v2 secret at path under the
// configured kv.mount and returns its fields.
func (c *Client) ReadKV(ctx context.Context, path string) (map[string]any, error) {
	ctx, cancel := c.ctx(ctx)
	defer cancel()
	s, err := c.api.KVv2(c.cfg.KV.Mount).Get(ctx, path)
	full := c.cfg.KV.Mount + "/data/" + path
	if errors.Is(err, vaultapi.ErrSecretNotFound) {
		return nil, fmt.Errorf("vault %s: %s: %w", c.Address(), full, ErrNotFound)
	}
	if err != nil {
		return nil, c.wrap("read secret", full, err)
	}
	return s.Data, nil
}

// ReadSecret implements keys.SecretReader: name is "path#field" under
// kv.mount ("path" alone reads the field "value"). A string field is
// returned as is.
func (c *Client) ReadSecret(ctx context.Context, name string) ([]byte, error) {
	path, field, ok := strings.Cut(name, "#")
	if !ok {
		field = "value"
	}
	data, err := c.ReadKV(ctx, path)
	if err != nil {
		return nil, err
	}
	v, ok := data[field].(string)
	if !ok {
		return nil, fmt.Errorf("vault %s: %s/data/%s: field %q: %w", c.Address(), c.cfg.KV.Mount, path, field, ErrNotFound)
	}
	return []byte(v), nil
}

var _ keys.SecretReader = (*Client)(nil)

// PseudonymKey reads the pseudonymisation key once, from the field "key"
// (standard base64) of the secret at kv.pseudonym_key_path. The key then
// lives in the gateway's memory like the file-based key; see docs/vault.md
// for why this was chosen over transit HMAC.
func (c *Client) PseudonymKey(ctx context.Context) ([]byte, error) {
	if c.cfg.KV.PseudonymKeyPath == "" {
		return nil, errors.New("vault.kv.pseudonym_key_path is not set")
	}
	name := c.cfg.KV.PseudonymKeyPath + "#key"
	return keys.PseudonymKey(ctx, keys.SecretReaderFunc(func(ctx context.Context, name string) ([]byte, error) {
		b64, err := c.ReadSecret(ctx, name)
		if err != nil {
			return nil, err
		}
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b64)))
		if err != nil {
			return nil, fmt.Errorf("field \"key\" is not standard base64: %w", err)
		}
		return b, nil
	}), name)
}
