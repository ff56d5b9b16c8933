package postgres

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
)

// A COPY stream goes from production to the shadow in copyChunks buffers
// of copyBuffer bytes: production sends a message per row, the shadow gets
// them batched, and neither side waits for the other's every write.
const (
	copyBuffer = 256 << 10
	copyChunks = 4
)

// chunkPipe is a pipe with a few buffers between its ends. Memory is
// chunks × size whatever is streamed.
type chunkPipe struct {
	full, free chan []byte
	stop       chan struct{} // closed by the reader
	stopOnce   sync.Once
	cur        []byte // the writer's chunk
	rd, rdBuf  []byte // the reader's chunk, and what is left of it
	err        error  // set before full is closed
}

func newChunkPipe(chunks, size int) *chunkPipe {
	p := &chunkPipe{full: make(chan []byte, chunks), free: make(chan []byte, chunks+1), stop: make(chan struct{})}
	for range chunks + 1 {
		p.free <- make([]byte, 0, size)
	}
	p.cur = <-p.free
	return p
}

var errReaderGone = errors.New("the shadow stopped reading")

func (p *chunkPipe) Write(b []byte) (int, error) {
	n := len(b)
	for len(b) > 0 {
		room := cap(p.cur) - len(p.cur)
		if room == 0 {
			if err := p.send(); err != nil {
				return n - len(b), err
			}
			continue
		}
		k := min(room, len(b))
		p.cur = append(p.cur, b[:k]...)
		b = b[k:]
	}
	return n, nil
}

// send hands the writer's chunk to the reader and takes an empty one.
func (p *chunkPipe) send() error {
	select {
	case p.full <- p.cur:
	case <-p.stop:
		return errReaderGone
	}
	select {
	case p.cur = <-p.free:
		p.cur = p.cur[:0]
	case <-p.stop:
		return errReaderGone
	}
	return nil
}

// CloseWrite sends what is buffered and ends the stream with err (nil: EOF).
func (p *chunkPipe) CloseWrite(err error) {
	if err == nil && len(p.cur) > 0 {
		err = p.send()
	}
	p.err = err
	close(p.full)
}

func (p *chunkPipe) Read(b []byte) (int, error) {
	for len(p.rd) == 0 {
		if p.rdBuf != nil {
			p.free <- p.rdBuf
			p.rdBuf = nil
		}
		c, ok := <-p.full
		if !ok {
			if p.err != nil {
				return 0, p.err
			}
			return 0, io.EOF
		}
		p.rdBuf, p.rd = c, c
	}
	n := copy(b, p.rd)
	p.rd = p.rd[n:]
	return n, nil
}

// CloseRead tells the writer nobody reads any more.
func (p *chunkPipe) CloseRead() { p.stopOnce.Do(func() { close(p.stop) }) }

// rowCounter counts what production sends: a COPY message per row (and
// one for the binary format's trailer).
type rowCounter struct {
	w           io.Writer
	task, table *atomic.Int64
}

func (c rowCounter) Write(p []byte) (int, error) {
	c.task.Add(1)
	c.table.Add(1)
	return c.w.Write(p)
}
