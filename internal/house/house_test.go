package house

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// root is the module's root, from this package's directory.
const root = "../.."

// TestHouse_FunctionsFitOnAScreen: no function over 80 lines in the
// packages where features land (a longer one is a plan and its steps).
func TestHouse_FunctionsFitOnAScreen(t *testing.T) {
	for _, dir := range []string{"runner/postgres", "bot", "cmd/stagebot"} {
		walkGo(t, filepath.Join(root, dir), func(path string, fset *token.FileSet, f *ast.File) {
			if isFake(path) {
				return // a fake's dispatch is one switch over a protocol
			}
			for _, d := range f.Decls {
				fd, ok := d.(*ast.FuncDecl)
				if !ok || fd.Body == nil {
					continue
				}
				if n := fset.Position(fd.End()).Line - fset.Position(fd.Pos()).Line + 1; n > 80 {
					t.Errorf("%s: %s is %d lines: make it a plan and its steps (80 at most)", rel(path), fd.Name.Name, n)
				}
			}
		})
	}
}

// TestHouse_FilesDoOneJob: no file over 700 lines but the fakes of chat
// platforms, which speak a whole protocol.
func TestHouse_FilesDoOneJob(t *testing.T) {
	walkGo(t, root, func(path string, fset *token.FileSet, f *ast.File) {
		if isFake(path) {
			return
		}
		if n := fset.File(f.Pos()).LineCount(); n > 700 {
			t.Errorf("%s is %d lines: split it by job (700 at most)", rel(path), n)
		}
	}, true)
}

// walkGo parses every Go file under dir (tests too when withTests).
func walkGo(t *testing.T, dir string, fn func(string, *token.FileSet, *ast.File), withTests ...bool) {
	t.Helper()
	tests := len(withTests) > 0 && withTests[0]
	fset := token.NewFileSet()
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "bin" || d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != dir {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || (!tests && strings.HasSuffix(path, "_test.go")) {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		n++
		fn(path, fset, f)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatalf("no Go files under %s: the test looks in the wrong place", dir)
	}
}

// isFake says whether path is a chat platform's fake (slacktest,
// discordtest, matrixtest), which speaks a whole protocol.
func isFake(path string) bool { return strings.HasSuffix(path, "test/server.go") }

func rel(path string) string {
	r, err := filepath.Rel(root, path)
	if err != nil {
		return path
	}
	return r
}
