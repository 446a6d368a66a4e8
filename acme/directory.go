package acme

import (
	"context"
	"fmt"
)

// A Directory lists the server's endpoints (RFC 8555, section 7.1.1).
type Directory struct {
	NewNonce    string        `json:"newNonce"`
	NewAccount  string        `json:"newAccount"`
	NewOrder    string        `json:"newOrder"`
	NewAuthz    string        `json:"newAuthz,omitempty"`
	RevokeCert  string        `json:"revokeCert"`
	KeyChange   string        `json:"keyChange"`
	RenewalInfo string        `json:"renewalInfo,omitempty"` // RFC 9773
	Meta        DirectoryMeta `json:"meta"`
}

// DirectoryMeta is the directory's "meta" object.
type DirectoryMeta struct {
	TermsOfService          string   `json:"termsOfService,omitempty"`
	Website                 string   `json:"website,omitempty"`
	CAAIdentities           []string `json:"caaIdentities,omitempty"`
	ExternalAccountRequired bool     `json:"externalAccountRequired,omitempty"`
	// Profiles maps each profile the server offers to its description
	// (the ACME profiles extension).
	Profiles map[string]string `json:"profiles,omitempty"`
}

// Directory returns the server's directory, fetching it on first use. A
// failed fetch is not cached: the next call tries again.
func (c *Client) Directory(ctx context.Context) (*Directory, error) {
	c.mu.Lock()
	d := c.dir
	c.mu.Unlock()
	if d != nil {
		return d, nil
	}
	if c.DirectoryURL == "" {
		return nil, fmt.Errorf("acme: Client.DirectoryURL is empty")
	}
	resp, err := c.get(ctx, OpDirectory, c.DirectoryURL, maxJSONBody)
	if err != nil {
		return nil, fmt.Errorf("acme: fetching directory: %w", err)
	}
	d, err = parseDirectory(resp.body)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.dir == nil {
		c.dir = d
	}
	d = c.dir
	c.mu.Unlock()
	return d, nil
}

// parseDirectory decodes and checks a directory object: every endpoint the
// client may use must be an absolute https URL.
func parseDirectory(body []byte) (*Directory, error) {
	d := new(Directory)
	if err := decodeJSON(&response{body: body}, d, "directory"); err != nil {
		return nil, err
	}
	required := map[string]string{"newNonce": d.NewNonce, "newAccount": d.NewAccount, "newOrder": d.NewOrder}
	for name, u := range required {
		if u == "" {
			return nil, malformed("directory", nil, "%s is missing", name)
		}
	}
	for name, u := range map[string]string{
		"newNonce": d.NewNonce, "newAccount": d.NewAccount, "newOrder": d.NewOrder,
		"newAuthz": d.NewAuthz, "revokeCert": d.RevokeCert, "keyChange": d.KeyChange,
		"renewalInfo": d.RenewalInfo,
	} {
		if u == "" {
			continue
		}
		if err := checkURL(u); err != nil {
			return nil, fmt.Errorf("acme: directory %s: %w", name, err)
		}
	}
	return d, nil
}
