package chat

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/llm"
	"github.com/ferryhq/ferry/store"
)

// Document is a file a user's message carries to the model, as
// POST /analyze/pdf sends a PDF. It is stored with the message, and every
// later turn of the conversation sends it again: whole to a provider that
// reads documents (Anthropic), as Text to the others.
type Document struct {
	Name      string // the file name the client gave; may be ""
	MediaType string // "application/pdf"
	Pages     int
	Data      []byte // the file itself
	// Text is the file's text page by page, each page after a
	// "--- page N ---" line; "" when it has none (scanned images).
	Text string
	// TextOnly sends Text even to a provider that reads documents, as
	// for a PDF that needed a password, which the model would lack. The
	// file is not stored then, only its size and hash.
	TextOnly bool
}

// tokensPerPDFPage is what a PDF page sent whole is taken to cost:
// Anthropic reads each page as text and as an image, 1,500 to 3,000
// tokens a page by its documentation.
const tokensPerPDFPage = 2000

// documentPart is how d reaches provider p: a document part when p reads
// documents and d's file is at hand, otherwise its text with a heading
// that names it. It also returns the part's estimated cost in tokens.
func documentPart(p llm.Provider, d *store.TurnDocument) (llm.Part, int) {
	if p.Accepts(llm.PartDocument) && len(d.Data) > 0 {
		return llm.Part{Kind: llm.PartDocument, Document: &llm.Document{Name: d.Name, MediaType: d.MediaType, Data: d.Data}},
			d.Pages * tokensPerPDFPage
	}
	name := d.Name
	if name == "" {
		name = "(unnamed)"
	}
	text := fmt.Sprintf("Document %q, %d pages:\n\n%s", name, d.Pages, d.Text)
	return llm.Part{Kind: llm.PartText, Text: text}, EstimateTokens(text)
}

// turnDocument is the row that stores d as carried by the user message
// with id messageID.
func turnDocument(d *Document, messageID, conversationID string) *store.TurnDocument {
	sum := sha256.Sum256(d.Data)
	row := &store.TurnDocument{MessageID: messageID, ConversationID: conversationID, Name: d.Name, MediaType: d.MediaType,
		Pages: d.Pages, Size: int64(len(d.Data)), SHA256: hex.EncodeToString(sum[:]), Text: d.Text, Data: d.Data}
	if d.TextOnly {
		row.Data = []byte{}
	}
	return row
}

// withDocuments puts documents into msgs, the history and new message that
// History built: the conversation's earlier documents (earlier) before the
// text of the first message sent, which is a user's, and the new one
// (current, may be nil) before the text of the new message. Earlier
// documents go to the first message rather than to the one that carried
// them, which the token budget may have left out: the documents are what
// the conversation is about, so they are always sent.
func withDocuments(msgs []llm.Message, earlier []llm.Part, current *llm.Part) []llm.Message {
	if current != nil {
		last := &msgs[len(msgs)-1]
		last.Parts = append([]llm.Part{*current}, last.Parts...)
	}
	if len(earlier) > 0 {
		first := &msgs[0]
		first.Parts = append(append([]llm.Part(nil), earlier...), first.Parts...)
	}
	return msgs
}

// messages builds a turn's messages: the history that fits the token
// budget and the new message (see History), with the conversation's
// documents (docs) and the new one (req.Document) in them (see
// withDocuments). The documents' estimated cost comes out of the budget
// of the earlier messages. Without documents it routes nothing; with them
// it resolves req.Model to learn whether the provider reads documents,
// with Start's errors for a model that does not route.
func (s *Service) messages(req Request, system string, history []*ferry.Message, docs []*store.TurnDocument) ([]llm.Message, error) {
	budget := s.opts.ContextTokens - EstimateTokens(system)
	if len(docs) == 0 && req.Document == nil {
		return History(history, req.Message, budget), nil
	}
	provider, _, err := s.router.Resolve(req.Model)
	if err != nil {
		return nil, err
	}
	var earlier []llm.Part
	for _, d := range docs {
		part, cost := documentPart(provider, d)
		earlier = append(earlier, part)
		budget -= cost
	}
	var current *llm.Part
	if req.Document != nil {
		d := req.Document
		row := &store.TurnDocument{Name: d.Name, MediaType: d.MediaType, Pages: d.Pages, Text: d.Text, Data: d.Data}
		if d.TextOnly {
			row.Data = nil
		}
		part, cost := documentPart(provider, row)
		current = &part
		budget -= cost
	}
	return withDocuments(History(history, req.Message, budget), earlier, current), nil
}
