package migrate

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/storage"
)

// certmagicIssuers maps certmagic's issuer folder names (the directory's
// host and path, slashes as hyphens) of well-known CAs to their directory.
var certmagicIssuers = map[string]string{
	"acme-v02.api.letsencrypt.org-directory":         acme.LetsEncryptProduction,
	"acme-staging-v02.api.letsencrypt.org-directory": acme.LetsEncryptStaging,
	"acme.zerossl.com-v2-dv90":                       autotls.ZeroSSLDirectory,
	"dv.acme-v02.api.pki.goog-directory":             autotls.GoogleTrustServicesDirectory,
}

// certmagicMeta is the part of certmagic's <site>.json that matters here.
type certmagicMeta struct {
	SANs       []string `json:"sans"`
	IssuerData struct {
		CA      string `json:"ca"`
		Account string `json:"account"`
	} `json:"issuer_data"`
}

// Certmagic imports the certificates of a certmagic file storage folder
// (the folder that holds "certificates") into dst and reports each site.
// Only a folder that cannot be read, or has no "certificates" folder,
// fails the call (ErrSource); every site that is not imported is
// reported in Report.Skipped with the reason, or in Report.Failed when
// storing it failed.
//
// A site's CA is Options.Directory when set, else the directory URL in its
// metadata (issuer_data.ca), else the well-known CA its issuer folder is
// named after; a site of an unknown CA is skipped. Its names are the SANs
// of its metadata, else the certificate's.
func Certmagic(ctx context.Context, dir string, dst storage.Storage, opts Options) (*Report, error) {
	root, err := openRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	fsys := root.FS()
	issuers, err := fs.ReadDir(fsys, "certificates")
	if err != nil {
		return nil, fmt.Errorf("%w: no certificates folder in %s (%w): give certmagic's storage folder, such as ~/.local/share/certmagic", ErrSource, dir, err)
	}
	rep := &Report{Imported: []Item{}, Skipped: []Item{}, Failed: []Item{}}
	for _, iss := range issuers {
		if !iss.IsDir() {
			continue
		}
		sites, err := fs.ReadDir(fsys, path.Join("certificates", iss.Name()))
		if err != nil {
			rep.skip(path.Join("certificates", iss.Name()), "", "unreadable: "+err.Error())
			continue
		}
		for _, site := range sites {
			if err := ctx.Err(); err != nil {
				return rep, err
			}
			if !site.IsDir() {
				continue
			}
			certmagicSite(ctx, root, dst, rep, opts, iss.Name(), site.Name())
		}
	}
	return rep, nil
}

func certmagicSite(ctx context.Context, root *os.Root, dst storage.Storage, rep *Report, opts Options, issuer, site string) {
	folder := path.Join("certificates", issuer, site)
	var meta certmagicMeta
	if b, err := readFile(root, path.Join(folder, site+".json")); err == nil {
		if err := json.Unmarshal(b, &meta); err != nil {
			rep.skip(folder, "", "unreadable metadata "+site+".json: "+err.Error())
			return
		}
	}
	directory := opts.Directory
	if directory == "" {
		directory = meta.IssuerData.CA
	}
	if directory == "" {
		directory = certmagicIssuers[issuer]
	}
	if directory == "" {
		rep.skip(folder, "", "unknown CA "+issuer+": give its directory URL (Options.Directory, tlsmint import --ca)")
		return
	}
	crt, err := readFile(root, path.Join(folder, site+".crt"))
	if err != nil {
		rep.skip(folder, "", "no certificate "+site+".crt: "+err.Error())
		return
	}
	keyPEM, err := readFile(root, path.Join(folder, site+".key"))
	if err != nil {
		rep.skip(folder, "", "no private key "+site+".key: "+err.Error())
		return
	}
	_, chainPEM, chain, err := parsePEM(crt)
	if err != nil {
		rep.skip(folder, "", err.Error())
		return
	}
	key, _, _, err := parsePEM(keyPEM)
	if err != nil {
		rep.skip(folder, "", err.Error())
		return
	}
	names := meta.SANs
	if len(names) == 0 && len(chain) > 0 {
		names = autotls.CertificateNames(chain[0])
	}
	names = slices.DeleteFunc(slices.Clone(names), func(n string) bool { return strings.TrimSpace(n) == "" })
	if len(names) == 0 {
		rep.skip(folder, "", "no names")
		return
	}
	importOne(ctx, dst, rep, opts, folder, directory, names, key, chainPEM, chain, meta.IssuerData.Account)
}
