package selfservice_test

import (
	"bytes"
	"errors"
	"flag"
	"go/ast"
	"go/build"
	"go/doc"
	"go/parser"
	"go/printer"
	gotoken "go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var updateAPI = flag.Bool("update-api", false, "rewrite testdata/api.txt with the exported API as it is")

// TestExportedAPI keeps testdata/api.txt equal to the exported API of the
// module's public packages (every exported declaration, without bodies or
// comments), so that a change of the API shows in review as a change of
// that file. After a deliberate change: go test -run TestExportedAPI -update-api .
func TestExportedAPI(t *testing.T) {
	t.Parallel()
	got, err := exportedAPI(".")
	if err != nil {
		t.Fatal(err)
	}
	const golden = "testdata/api.txt"
	if *updateAPI {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		gotLines, wantLines := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
		for _, l := range gotLines {
			if !slices.Contains(wantLines, l) {
				t.Errorf("new in the API: %s", l)
			}
		}
		for _, l := range wantLines {
			if !slices.Contains(gotLines, l) {
				t.Errorf("gone from the API: %s", l)
			}
		}
		t.Errorf("the exported API differs from %s; if that is meant, run go test -run TestExportedAPI -update-api .", golden)
	}
}

// exportedAPI lists the exported declarations of the packages below root
// that other modules can import: not internal, testdata, example or
// benchmark code, nor nested modules.
func exportedAPI(root string) ([]byte, error) {
	var out bytes.Buffer
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		name := d.Name()
		if path != root {
			if name == "internal" || name == "testdata" || name == "example" || name == "benchmarks" || strings.HasPrefix(name, ".") {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
				return filepath.SkipDir
			}
		}
		bp, err := build.ImportDir(path, 0)
		var noGo *build.NoGoError
		if errors.As(err, &noGo) {
			return nil
		}
		if err != nil {
			return err
		}
		fset := gotoken.NewFileSet()
		var files []*ast.File
		for _, name := range bp.GoFiles {
			f, err := parser.ParseFile(fset, filepath.Join(path, name), nil, parser.ParseComments)
			if err != nil {
				return err
			}
			files = append(files, f)
		}
		dp, err := doc.NewFromFiles(fset, files, "github.com/ciamkit/selfservice/"+filepath.ToSlash(path))
		if err != nil {
			return err
		}
		writePackage(&out, fset, filepath.ToSlash(path), dp)
		return nil
	})
	return out.Bytes(), err
}

func writePackage(out *bytes.Buffer, fset *gotoken.FileSet, path string, p *doc.Package) {
	line := func(kind string, node any) {
		var b bytes.Buffer
		_ = (&printer.Config{Mode: printer.RawFormat}).Fprint(&b, fset, node)
		s := strings.Join(strings.Fields(b.String()), " ")
		out.WriteString(path + ": " + kind + s + "\n")
	}
	values := func(vs []*doc.Value) {
		for _, v := range vs {
			for _, spec := range v.Decl.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if !n.IsExported() {
						continue
					}
					s := v.Decl.Tok.String() + " " + n.Name
					if vs.Type != nil {
						var b bytes.Buffer
						_ = printer.Fprint(&b, fset, vs.Type)
						s += " " + b.String()
					}
					if i < len(vs.Values) && v.Decl.Tok == gotoken.CONST {
						var b bytes.Buffer
						_ = printer.Fprint(&b, fset, vs.Values[i])
						s += " = " + b.String()
					}
					out.WriteString(path + ": " + s + "\n")
				}
			}
		}
	}
	funcs := func(fs []*doc.Func) {
		for _, f := range fs {
			f.Decl.Body, f.Decl.Doc = nil, nil
			line("", f.Decl)
		}
	}
	values(p.Consts)
	values(p.Vars)
	funcs(p.Funcs)
	for _, t := range p.Types {
		spec := t.Decl.Specs[0].(*ast.TypeSpec)
		stripUnexported(spec.Type)
		line("type ", spec)
		values(t.Consts)
		values(t.Vars)
		funcs(t.Funcs)
		funcs(t.Methods)
	}
}

// stripUnexported leaves out a struct's unexported fields and an
// interface's comments: they are not the API.
func stripUnexported(e ast.Expr) {
	switch x := e.(type) {
	case *ast.StructType:
		var kept []*ast.Field
		for _, f := range x.Fields.List {
			f.Doc, f.Comment = nil, nil
			if len(f.Names) == 0 {
				kept = append(kept, f) // embedded
				continue
			}
			var names []*ast.Ident
			for _, n := range f.Names {
				if n.IsExported() {
					names = append(names, n)
				}
			}
			if len(names) > 0 {
				f.Names = names
				kept = append(kept, f)
			}
		}
		x.Fields.List = kept
	case *ast.InterfaceType:
		for _, f := range x.Methods.List {
			f.Doc, f.Comment = nil, nil
		}
	}
}
