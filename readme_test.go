package selfservice_test

import (
	"bytes"
	"go/ast"
	"go/parser"
	gotoken "go/token"
	"os"
	"regexp"
	"strings"
	"testing"
)

// snippetMarker names the compiled source of the Go block that follows it
// in the README: a file of the repository and a function in it, whose body
// (or, with "whole", whole declaration) the block must equal.
var snippetMarker = regexp.MustCompile(`<!-- go: (\S+) (\S+)( whole)? -->\n+` + "```go\n" + `((?s).*?)` + "```")

// TestREADMESnippets: every Go block of the README is the text of a
// function that compiles and, for Example and Test functions, runs, so the
// README cannot show code that does not build.
func TestREADMESnippets(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	all := strings.Count(string(readme), "```go\n")
	found := snippetMarker.FindAllSubmatch(readme, -1)
	if len(found) != all {
		t.Errorf("%d Go blocks in README.md, %d of them with a <!-- go: FILE FUNC --> marker: every Go block must come from compiled code", all, len(found))
	}
	for _, m := range found {
		file, fn, whole, block := string(m[1]), string(m[2]), len(m[3]) > 0, string(m[4])
		t.Run(file+"/"+fn, func(t *testing.T) {
			want, err := funcSource(file, fn, whole)
			if err != nil {
				t.Fatal(err)
			}
			if strings.TrimSpace(block) != strings.TrimSpace(want) {
				t.Errorf("the README's block differs from %s %s; it should read:\n%s", file, fn, want)
			}
		})
	}
}

// funcSource returns the body of the function fn in file, without its
// braces and with one level of indentation removed, or with whole its
// whole declaration.
func funcSource(file, fn string, whole bool) (string, error) {
	src, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	fset := gotoken.NewFileSet()
	f, err := parser.ParseFile(fset, file, src, parser.ParseComments)
	if err != nil {
		return "", err
	}
	for _, d := range f.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok || fd.Name.Name != fn {
			continue
		}
		if whole {
			return string(src[fset.Position(fd.Pos()).Offset:fset.Position(fd.End()).Offset]), nil
		}
		body := src[fset.Position(fd.Body.Lbrace).Offset+1 : fset.Position(fd.Body.Rbrace).Offset]
		var out bytes.Buffer
		for _, line := range strings.Split(strings.Trim(string(body), "\n"), "\n") {
			out.WriteString(strings.TrimPrefix(line, "\t"))
			out.WriteByte('\n')
		}
		return out.String(), nil
	}
	return "", os.ErrNotExist
}
