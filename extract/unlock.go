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
	err = p.with(ctx, data, func(in *instance) error {
		open := &requests.OpenDocument{File: &data}
		if password != "" {
			open.Password = &password
		}
		opened, err := in.OpenDocument(open)
		if err != nil {
			return openError(err, password)
		}
		defer in.FPDF_CloseDocument(&requests.FPDF_CloseDocument{Document: opened.Document})
		rev, err := in.FPDF_GetSecurityHandlerRevision(&requests.FPDF_GetSecurityHandlerRevision{Document: opened.Document})
		if err != nil {
			return fmt.Errorf("extract: read security handler: %w", err)
		}
		if rev.SecurityHandlerRevision < 0 { // not encrypted
			out = data
			return nil
		}
		saved, err := in.FPDF_SaveAsCopy(&requests.FPDF_SaveAsCopy{Document: opened.Document, Flags: requests.SaveFlagRemoveSecurity})
		if err != nil || saved.FileBytes == nil {
			return fmt.Errorf("extract: save the PDF without its encryption: %v", err)
		}
		out = *saved.FileBytes
		return nil
	})
	return out, err
}
