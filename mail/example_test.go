package mail_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"golang.org/x/text/language"

	"github.com/ciamkit/selfservice"
	"github.com/ciamkit/selfservice/i18n"
	"github.com/ciamkit/selfservice/mail"
)

func ExampleRender() {
	c, err := mail.Render(i18n.Default(), selfservice.Message{
		Kind:      selfservice.MailCode,
		Purpose:   selfservice.PurposeUpdateEmail,
		To:        "new.address@example.com",
		Language:  language.English,
		Code:      "881395",
		ExpiresIn: 10 * time.Minute,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("Subject:", c.Subject)
	fmt.Println()
	fmt.Print(c.Text)
	// Output:
	// Subject: Confirm your new email address
	//
	// Enter this verification code to confirm your new email address:
	//
	//     881395
	//
	// The code expires in 10 min.
	// Never share this code with anyone. We will never ask you for it.
	//
	// If you did not ask to change your email address, ignore this email: nothing will change.
	//
	// This is an automated message, please do not reply.
}

func ExampleRender_notice() {
	c, err := mail.Render(nil, selfservice.Message{
		Kind:      selfservice.MailEmailChanged,
		To:        "old.address@example.com",
		Language:  language.Chinese,
		NewEmail:  selfservice.MaskEmail("new.address@example.com"),
		ChangedAt: time.Date(2031, 5, 6, 15, 8, 0, 0, time.FixedZone("CST", 8*3600)),
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("Subject:", c.Subject)
	fmt.Println()
	fmt.Print(c.Text)
	// Output:
	// Subject: 您账号的邮箱地址已更改
	//
	// 您账号的邮箱地址已于 2031-05-06 15:08 (UTC+08:00) 更改为 n***@example.com。
	//
	// 如果这不是您本人的操作，请立即联系客服：您的账号可能已被他人控制。
	//
	// 此邮件由系统自动发送，请勿回复。
}

// A notice to a user without a stored language is written in every
// language of the bundle, and its undo link leads to Options.RevertURL
// with the token in the fragment.
func ExampleSMTPMailer_Render() {
	mailer, err := mail.New(mail.Options{
		Host:      "smtp.example.com",
		From:      "no-reply@example.com",
		RevertURL: "https://app.example.com/account/undo-email",
	})
	if err != nil {
		log.Fatal(err)
	}
	c, err := mailer.Render(selfservice.Message{
		Kind:        selfservice.MailEmailChanged,
		To:          "old.address@example.com",
		Language:    language.Und, // the user has no stored language
		NewEmail:    selfservice.MaskEmail("new.address@example.com"),
		ChangedAt:   time.Date(2031, 5, 6, 7, 8, 0, 0, time.UTC),
		RevertToken: "rKQ7XNW3M4YJZ6QHC2FVN5BDTG",
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("Subject:", c.Subject)
	fmt.Println("Content-Language:", c.ContentLanguage)
	fmt.Println()
	fmt.Print(c.Text)
	// Output:
	// Subject: The email address of your account was changed / 您账号的邮箱地址已更改
	// Content-Language: en, zh
	//
	// The email address of your account was changed to n***@example.com at 2031-05-06 07:08 (UTC+00:00).
	//
	// If this was not you, undo the change now: this link restores your previous address (it works once, and only for a limited time).
	// https://app.example.com/account/undo-email#revert_token=rKQ7XNW3M4YJZ6QHC2FVN5BDTG
	//
	// If this was not you, contact support immediately: someone else may control your account.
	//
	// This is an automated message, please do not reply.
	//
	// ----------------------------------------
	//
	// 您账号的邮箱地址已于 2031-05-06 07:08 (UTC+00:00) 更改为 n***@example.com。
	//
	// 如果这不是您本人的操作，请立即撤销此次更改：下面的链接可恢复您原来的邮箱地址（仅可使用一次，且仅在限定时间内有效）。
	// https://app.example.com/account/undo-email#revert_token=rKQ7XNW3M4YJZ6QHC2FVN5BDTG
	//
	// 如果这不是您本人的操作，请立即联系客服：您的账号可能已被他人控制。
	//
	// 此邮件由系统自动发送，请勿回复。
}

func ExampleParseURL() {
	opts, err := mail.ParseURL("smtps://mailer:s3cret@smtp.example.com?from=no-reply@example.com&from_name=Example+Accounts&timeout=5s")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(opts.Host, opts.Port, opts.TLS)
	fmt.Println(opts.Username, opts.From, opts.FromName, opts.Timeout)

	opts, err = mail.ParseURL("smtp://127.0.0.1:1025")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(opts.Host, opts.Port, opts.TLS, opts.From)
	// Output:
	// smtp.example.com 0 implicit TLS
	// mailer no-reply@example.com Example Accounts 5s
	// 127.0.0.1 1025 opportunistic STARTTLS no-reply@127.0.0.1
}

func ExampleNew() {
	mailer, err := mail.New(mail.Options{
		Host:     "smtp.example.com", // port 587, STARTTLS required
		Username: "mailer",
		Password: "s3cret",
		From:     "no-reply@example.com",
		FromName: "Example Accounts",
	})
	if err != nil {
		log.Fatal(err)
	}
	// At shutdown, after the selfservice.Service's: QUIT the sessions.
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := mailer.Close(ctx); err != nil {
			log.Print(err)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = mailer.Send(ctx, selfservice.Message{
		Kind:      selfservice.MailCode,
		Purpose:   selfservice.PurposeUpdateEmail,
		To:        "new.address@example.com",
		Language:  language.Chinese,
		Code:      "881395",
		ExpiresIn: 10 * time.Minute,
	})
	if err != nil {
		log.Print(err) // the recipient masked, the code never shown
	}
}
