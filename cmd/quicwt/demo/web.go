package demo

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
)

// The demo pages: plain HTML and JavaScript, embedded, no build step.
//
//go:embed web
var webFS embed.FS

// pageConfig is served at /config.json: where the pages connect and how
// they pin the certificate.
type pageConfig struct {
	URL            string            `json:"url"` // https://host:port of the WebTransport server
	CertHashHex    string            `json:"certHashHex"`
	CertHashBase64 string            `json:"certHashBase64"`
	SPKIHashBase64 string            `json:"spkiHashBase64"`
	UseCertHash    bool              `json:"useCertHash"` // pass serverCertificateHashes
	Endpoints      map[string]string `json:"endpoints"`   // name -> WebTransport URL
}

func (d *Server) config() pageConfig {
	eps := map[string]string{}
	for _, n := range []string{"counter", "echo", "clicker", "chat"} {
		eps[n] = d.wtURL + "/" + n
	}
	return pageConfig{
		URL:            d.wtURL,
		CertHashHex:    d.hashes.Hex,
		CertHashBase64: d.hashes.Base64,
		SPKIHashBase64: d.hashes.SPKIB64,
		UseCertHash:    d.pinned,
		Endpoints:      eps,
	}
}

func (d *Server) pageHandler() http.Handler {
	sub, err := fs.Sub(webFS, "web")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.FileServerFS(sub)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /config.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		json.NewEncoder(w).Encode(d.config())
	})
	mux.Handle("GET /", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	}))
	return mux
}
