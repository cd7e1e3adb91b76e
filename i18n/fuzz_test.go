package i18n_test

import (
	"slices"
	"testing"

	"github.com/ciamkit/selfservice/i18n"
)

func FuzzMatch(f *testing.F) {
	for _, s := range [][2]string{
		{"zh", ""}, {"zh-CN", ""}, {"zh_CN", ""}, {"ZH", ""}, {"en-US", ""},
		{"", "zh-CN,zh;q=0.9"}, {"fr", "fr, en;q=0.5"}, {"x-\x00", "*;q=0.1"},
		{"zh-Hant-TW-u-co-pinyin", "en;q=1.5"}, {"i-klingon", ";;,,"},
	} {
		f.Add(s[0], s[1])
	}
	b := i18n.Default()
	f.Fuzz(func(t *testing.T, xl, acceptLanguage string) {
		loc := b.Match(xl, acceptLanguage)
		if !slices.Contains(b.Locales(), loc) {
			t.Fatalf("Match(%q, %q) = %v, not a supported locale", xl, acceptLanguage, loc)
		}
		if again := b.Match(xl, acceptLanguage); again != loc {
			t.Fatalf("Match(%q, %q) is not deterministic: %v then %v", xl, acceptLanguage, loc.Tag(), again.Tag())
		}
	})
}
