package extract

import (
	"context"
	"fmt"

	"github.com/klippa-app/go-pdfium/requests"
)

// Unlock returns an encrypted PDF saved again without its encryption,
// opened with password (its user or owner password), so that it can be
// kept and read later without the password, which is never stored. A PDF
// that is not encrypted is returned as it is. Its refusals are Extract's:
// not a PDF, a missing or wrong password, a damaged file.
func (p *PDF) Unlock(ctx context.Context, data []byte, password string) (out []byte, err error) {
	if !IsPDF(data) {
		return nil, unsupported("the file is not a PDF: it has no %PDF- header in its first 1024 bytes")
	}
	in, err := p.acquire(ctx)
	if err != nil {
		return nil, err
	}
	healthy := false
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("extract: PDFium failed: %v", r)
			healthy = false
		}
		p.release(in, healthy)
	}()
	in.docs++
	open := &requests.OpenDocument{File: &data}
	if password != "" {
		open.Password = &password
	}
	opened, err := in.OpenDocument(open)
	if err != nil {
		healthy = true // the document was refused; the instance is fine
		return nil, openError(err, password)
	}
	defer in.FPDF_CloseDocument(&requests.FPDF_CloseDocument{Document: opened.Document})
	rev, err := in.FPDF_GetSecurityHandlerRevision(&requests.FPDF_GetSecurityHandlerRevision{Document: opened.Document})
	if err != nil {
		return nil, fmt.Errorf("extract: read security handler: %w", err)
	}
	if rev.SecurityHandlerRevision < 0 { // not encrypted
		healthy = true
		return data, nil
	}
	saved, err := in.FPDF_SaveAsCopy(&requests.FPDF_SaveAsCopy{Document: opened.Document, Flags: requests.SaveFlagRemoveSecurity})
	if err != nil || saved.FileBytes == nil {
		return nil, fmt.Errorf("extract: save the PDF without its encryption: %v", err)
	}
	healthy = true
	return *saved.FileBytes, nil
}
