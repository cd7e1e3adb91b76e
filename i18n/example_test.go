package i18n_test

import (
	"fmt"

	"github.com/ciamkit/selfservice/i18n"
)

func ExampleLocale_ErrorBody() {
	b := i18n.Default()
	fmt.Print(string(b.Match("", "en-US,en;q=0.9").ErrorBody(i18n.CodeUserNotFound)))
	fmt.Print(string(b.Match("zh_CN", "").ErrorBody(i18n.CodeUserNotFound)))
	// Output:
	// {"error_code":"IDAAS.SDK.USER.0001","error_msg":"User not found"}
	// {"error_code":"IDAAS.SDK.USER.0001","error_msg":"用户未找到"}
}

func ExampleBundle_Match() {
	b := i18n.Default()
	for _, h := range [][2]string{
		{"zh-CN", ""},        // X-L first
		{"fr", "zh;q=0.8"},   // then Accept-Language
		{"", "fr-FR, de-DE"}, // then the default
	} {
		fmt.Println(b.Match(h[0], h[1]).Tag())
	}
	// Output:
	// zh
	// zh
	// en
}

func ExampleNewBundle() {
	b, err := i18n.NewBundle(i18n.Options{}) // the embedded English and Chinese files
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(b.DefaultLocale().Tag(), b.Match("zh", "").Message(i18n.CodeEmailExists))
	// Output:
	// en 邮箱已存在
}
