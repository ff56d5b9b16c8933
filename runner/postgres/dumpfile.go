package postgres

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// format is what a backup file holds.
type format struct {
	dir         bool   // pg_dump -Fd directory
	custom      bool   // pg_dump -Fc archive (else plain SQL)
	compression string // "", "gzip", "xz" or "zstd": compression around the file
}

func (f format) String() string {
	s := "plain SQL"
	switch {
	case f.dir:
		return "directory format"
	case f.custom:
		s = "custom format"
	}
	if f.compression != "" {
		s += ", " + f.compression + " compressed"
	}
	return s
}

var magics = []struct {
	name  string
	magic []byte
}{
	{"gzip", []byte{0x1f, 0x8b}},
	{"xz", []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}},
	{"zstd", []byte{0x28, 0xb5, 0x2f, 0xfd}},
}

// sniff reads the start of a backup (through its compression) to tell its
// format; a file it cannot read is an error that says so.
func sniff(path string) (format, error) {
	st, err := os.Stat(path)
	if err != nil {
		return format{}, err
	}
	if st.IsDir() {
		if _, err := os.Stat(filepath.Join(path, "toc.dat")); err != nil {
			return format{}, fmt.Errorf("%s is a directory without toc.dat: not a pg_dump directory-format backup", path)
		}
		return format{dir: true}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return format{}, err
	}
	defer f.Close()
	head := make([]byte, 8)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	var fm format
	for _, m := range magics {
		if bytes.HasPrefix(head, m.magic) {
			fm.compression = m.name
		}
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fm, err
	}
	r, err := decompress(f, fm.compression)
	if err != nil {
		return fm, fmt.Errorf("%s is not a readable %s file: %w", filepath.Base(path), fm.compression, err)
	}
	inner := make([]byte, 5)
	n, err = io.ReadFull(r, inner)
	if err != nil && n == 0 {
		return fm, fmt.Errorf("%s is empty or unreadable: %v", filepath.Base(path), err)
	}
	if string(inner[:n]) == "PGDMP" {
		fm.custom = true
		return fm, nil
	}
	if !looksLikeSQL(inner[:n]) {
		return fm, fmt.Errorf("%s is neither a pg_dump archive nor plain SQL", filepath.Base(path))
	}
	return fm, nil
}

func looksLikeSQL(b []byte) bool {
	for _, c := range b {
		if c < 0x09 || (c > 0x0d && c < 0x20) {
			return false
		}
	}
	return true
}

// decompress wraps r in the named decompressor.
func decompress(r io.Reader, name string) (io.Reader, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	switch name {
	case "":
		return br, nil
	case "gzip":
		return gzip.NewReader(br)
	case "xz":
		return xz.NewReader(br)
	case "zstd":
		d, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	}
	return nil, fmt.Errorf("unknown compression %q", name)
}
