// Command oracle checks Strongroom's ledger output with Go's golang.org/x/mod/sumdb/note and tlog,
// an implementation written by someone else. It reads one JSON request on stdin and exits non-zero,
// printing the reason, if any check fails.
package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type request struct {
	Vkey        string   `json:"vkey"`
	Note        string   `json:"note"`
	Index       int64    `json:"index"`
	Entry       string   `json:"entry"`
	Proof       []string `json:"proof"`
	OldSize     int64    `json:"old_size"`
	OldRoot     string   `json:"old_root"`
	Consistency []string `json:"consistency"`
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func hashes(encoded []string) []tlog.Hash {
	out := make([]tlog.Hash, len(encoded))
	for i, e := range encoded {
		raw, err := base64.StdEncoding.DecodeString(e)
		if err != nil || len(raw) != tlog.HashSize {
			fail("bad hash %q", e)
		}
		copy(out[i][:], raw)
	}
	return out
}

func main() {
	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fail("bad request: %v", err)
	}
	verifier, err := note.NewVerifier(req.Vkey)
	if err != nil {
		fail("vkey: %v", err)
	}
	n, err := note.Open([]byte(req.Note), note.VerifierList(verifier))
	if err != nil {
		fail("note: %v", err)
	}
	// tlog.ParseTree only accepts the Go checksum database's origin, so parse the C2SP body here.
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 {
		fail("checkpoint: too few lines")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil {
		fail("checkpoint size: %v", err)
	}
	root := hashes([]string{lines[2]})[0]
	if req.Entry != "" {
		entry, err := base64.StdEncoding.DecodeString(req.Entry)
		if err != nil {
			fail("entry: %v", err)
		}
		if err := tlog.CheckRecord(hashes(req.Proof), size, root, req.Index, tlog.RecordHash(entry)); err != nil {
			fail("inclusion: %v", err)
		}
	}
	if req.OldSize > 0 {
		old := hashes([]string{req.OldRoot})[0]
		if err := tlog.CheckTree(hashes(req.Consistency), size, root, req.OldSize, old); err != nil {
			fail("consistency: %v", err)
		}
	}
	fmt.Printf("ok %s %d\n", lines[0], size)
}
