package postgres

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// Everything written comes out whole and in order, however the writes and
// the buffers line up.
func TestChunkPipe_CarriesEverything(t *testing.T) {
	p := newChunkPipe(2, 7)
	var want bytes.Buffer
	go func() {
		for i := 0; i < 500; i++ {
			row := bytes.Repeat([]byte{byte(i)}, i%13+1)
			want.Write(row)
			p.Write(row)
		}
		p.CloseWrite(nil)
	}()
	got, err := io.ReadAll(p)
	if err != nil || !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("read %d bytes (err %v), want %d", len(got), err, want.Len())
	}
}

// The writer's error reaches the reader; a reader that gives up frees the
// writer instead of leaving it blocked.
func TestChunkPipe_EndsBothWays(t *testing.T) {
	p := newChunkPipe(1, 4)
	boom := errors.New("production went away")
	go func() { p.Write([]byte("abc")); p.CloseWrite(boom) }()
	if _, err := io.ReadAll(p); !errors.Is(err, boom) {
		t.Fatalf("reader got %v, want %v", err, boom)
	}

	p = newChunkPipe(1, 4)
	p.CloseRead()
	if _, err := p.Write(bytes.Repeat([]byte("x"), 100)); !errors.Is(err, errReaderGone) {
		t.Fatalf("writer got %v after the reader left, want %v", err, errReaderGone)
	}
}
