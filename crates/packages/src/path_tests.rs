use super::*;
use PathRejection::*;

#[test]
fn valid_paths() {
    let max = "p".repeat(MAX_PATH_CHARS);
    let cases = [
        "cloudinary/studioPackages/pkg1-x74s.std",
        "https://res.cloudinary.com/x/raw/upload/v1/pkg.std?x=1",
        "https://storage.googleapis.com/bucket/studio/pkg.xaml",
        "http://host:8080/a/b.std#frag",
        "s3://bucket/key with spaces.std",
        "svn+ssh://host/repo",
        "https:\\\\host\\pkg.std",
        "a/b..c/d",
        "..a",
        "a..",
        "a/..b/c",
        ".hidden/file",
        "./pkg.std",
        "a/./b",
        "a//b",
        "folder\\file.std",
        "pkg.std",
        "p",
        "file name.std",
        "caf\u{e9}/\u{65e5}\u{672c}.std",
        "a%20b.std",
        "a%2fb.std",
        "100%25.std",
        "100%.std",
        "50%off",
        "%zz",
        "a%2",
        "https://host/dl?sig=AKIA%2F2023%2Fus-east-1%2Fs3",
        "https://host/a?next=..",
        "v1.2/pkg.std",
        "a~b/c",
        "a/~/b",
        "a/C:/b",
        "a/b:c",
        "a/b;v=1/c",
        "pkg.std?v=2#top",
        "%u",
        "%u12",
        ". /x",
        "x/ ",
        &max,
    ];
    for path in cases {
        assert_eq!(check_path(path), Ok(()), "{path:?}");
        assert!(is_safe_path(path), "{path:?}");
    }
}

#[test]
fn traversal_spellings() {
    let cases = [
        // Literal, with both separators.
        "..",
        "../etc/passwd",
        "a/../../b",
        "a/..",
        "..\\windows",
        "a\\..\\..\\b",
        "a/..\\b",
        // Only dots and spaces (Windows trims trailing dots and spaces).
        "...",
        "a/.../b",
        ".. /b",
        "a/ ../b",
        "a/. ./b",
        "a/.. .. /b",
        "a/..\u{a0}/b",
        // NTFS alternate data stream suffix.
        "a/..::$DATA/b",
        "..:x",
        // Percent-encoded dots and separators, any case.
        "%2e%2e/etc",
        "%2E%2e/etc",
        "%2e%2E%2fetc",
        "a/%2e%2e%2f%2e%2e%2fb",
        "..%2fetc",
        "..%5cetc",
        "a%5c..%5cb",
        ".%2e/x",
        "%2e./x",
        "a/%2e%2e",
        // Double and triple encoding.
        "%252e%252e/etc",
        "%252e%252e%252fetc",
        "..%252f..%252fetc",
        "%25252e%25252e/etc",
        "%%32e%%32e/etc",
        // Encoded spaces around dots.
        "a/..%20/b",
        "a/%2e%2e%09/b",
        // Unicode dot look-alikes.
        "\u{ff0e}\u{ff0e}/etc",
        ".\u{ff0e}/etc",
        "\u{2024}\u{2024}/etc",
        "\u{fe52}\u{fe52}/etc",
        "\u{3002}\u{3002}/etc",
        "\u{ff61}\u{ff61}/etc",
        "\u{2025}/etc",
        "\u{2026}/etc",
        "%ef%bc%8e%ef%bc%8e/etc",
        // Unicode separator look-alikes.
        "a\u{ff0f}..\u{ff0f}b",
        "a\u{ff3c}..\u{ff3c}b",
        "a\u{2215}..\u{2215}b",
        "a\u{2216}..\u{2216}b",
        "a\u{a5}..\u{a5}b",
        // Invisible characters between the dots.
        ".\u{200b}./etc",
        ".\u{feff}./etc",
        ".\u{ad}./etc",
        // Suffixes that consumers cut off: query, fragment, Java path parameter.
        "..?x",
        "a/..#frag",
        "..;/x",
        "a/..;jsessionid=1/b",
        // IIS `%u` encoding.
        "%u002e%u002e/etc",
        "a%u2215..%u2215b",
        "%U002E%U002E%u005cx",
        // Inside URLs, after the host.
        "https://host/a/..?x",
        "https://host/..;/x",
        "https://host/../etc",
        "https://host/a/%2e%2e/%2e%2e/etc",
        "https://host/a/..%2f..%2fetc",
        "https://host\\..\\x",
        "https://host?x=/../y",
    ];
    assert!(cases.len() >= 30);
    for path in cases {
        assert!(check_path(path).is_err(), "{path:?} was accepted");
    }
    // The plain spellings must fail for the stated reason, not by accident.
    for path in ["../x", "%2e%2e/x", "%252e%252e/x", "a/.. /b"] {
        assert_eq!(check_path(path), Err(Traversal), "{path:?}");
    }
    // Look-alikes do not get as far as the segment check: the characters themselves are refused.
    for path in [
        "\u{ff0e}\u{ff0e}/x",
        "%ef%bc%8e%ef%bc%8e/etc",
        "\u{ff0e}a/b",
    ] {
        assert_eq!(check_path(path), Err(Character), "{path:?}");
    }
}

#[test]
fn refused_for_each_reason() {
    let too_long = "p".repeat(MAX_PATH_CHARS + 1);
    let cases: &[(&str, PathRejection)] = &[
        (&too_long, TooLong),
        ("a\0b", Nul),
        ("a%00b", Nul),
        ("a%2500b", Nul),
        ("a\nb", Control),
        ("a\rb", Control),
        ("a\tb", Control),
        ("a\u{1b}[31m", Control),
        ("a\u{7f}", Control),
        ("a\u{85}", Control),
        ("a\u{2028}b", Control),
        ("a\u{2029}b", Control),
        ("a%0ab", Control),
        ("a%e2%80%a8b", Control),
        ("%c0%ae%c0%ae/etc", BadEncoding),
        ("%c0%af", BadEncoding),
        ("%e0%80%ae%e0%80%ae/etc", BadEncoding),
        ("%c1%9c", BadEncoding),
        ("%ff", BadEncoding),
        ("%ed%a0%80", BadEncoding),
        ("%uD800", BadEncoding),
        ("%2525252e", TooManyEncodings),
        ("/etc/passwd", Absolute),
        ("\\windows", Absolute),
        ("//host/share", Absolute),
        ("\\\\host\\share", Absolute),
        ("%2fetc", Absolute),
        ("%5cetc", Absolute),
        ("%252fetc", Absolute),
        ("\u{ff0f}etc", Character),
        ("\u{ff3c}etc", Character),
        ("\u{200b}/etc", Character),
        ("C:", DriveLetter),
        ("C:\\Windows", DriveLetter),
        ("c:\\x", DriveLetter),
        ("c:/x", DriveLetter),
        ("C:x", DriveLetter),
        ("z://host/x", DriveLetter),
        ("C%3a/x", DriveLetter),
        ("\u{ff23}\u{ff1a}\\x", Character),
        ("~", HomeDir),
        ("~/x", HomeDir),
        ("~root/x", HomeDir),
        ("%7e/x", HomeDir),
        ("mailto:x@y", NotAUrl),
        ("javascript:alert(1)", NotAUrl),
        ("data:text/plain,x", NotAUrl),
        ("http:/host/x", NotAUrl),
        ("pkg.v1:x", NotAUrl),
        ("file:///etc/passwd", NoHost),
        ("https://", NoHost),
        ("https:///x", NoHost),
        ("https://../x", NoHost),
        ("https://%2e%2e/x", NoHost),
    ];
    for (path, why) in cases {
        assert_eq!(check_path(path), Err(*why), "{path:?}");
    }
    assert!(!is_safe_path(""));
}

#[test]
fn length_counts_characters() {
    // 2048 two-byte characters are 4096 bytes but still within the limit.
    let wide = "\u{e9}".repeat(MAX_PATH_CHARS);
    assert_eq!(check_path(&wide), Ok(()));
    let wider = "\u{e9}".repeat(MAX_PATH_CHARS + 1);
    assert_eq!(check_path(&wider), Err(TooLong));
}

#[test]
fn decoding_is_bounded() {
    assert_eq!(percent_decode("abc"), Ok(None));
    assert_eq!(percent_decode("100%"), Ok(None));
    assert_eq!(percent_decode("%2E%2e"), Ok(Some("..".to_owned())));
    assert_eq!(percent_decode("%252e"), Ok(Some("%2e".to_owned())));
    assert_eq!(
        percent_decode("%u00e9%U002F"),
        Ok(Some("\u{e9}/".to_owned()))
    );
    assert_eq!(percent_decode("%u00"), Ok(None));
    assert_eq!(percent_decode("%uzzzz%2"), Ok(None));
    // Three layers decode; a fourth is refused rather than followed.
    assert_eq!(check_path("%25252e%25252e/x"), Err(Traversal));
    assert_eq!(check_path("%2525252e%2525252e/x"), Err(TooManyEncodings));
}

#[test]
fn the_character_allow_list() {
    for ok in ['a', '~', ' ', 'é', 'ß', 'Ж', '中', 'ا', '٢'] {
        assert!(allowed_char(ok), "{ok:?}");
    }
    for refused in [
        '\u{ff0e}',
        '\u{ff0f}',
        '\u{ff05}',
        '\u{ff12}',
        '\u{fe52}',
        '\u{fe6a}',
        '\u{fe19}',
        '\u{fe12}',
        '\u{3002}',
        '\u{2024}',
        '\u{2215}',
        '\u{a5}',
        '\u{200b}',
        '\u{feff}',
        '\u{b2}',
        '\u{2082}',
        '\u{1d49}',
        '\u{212f}',
        '\u{2460}',
        '\u{fb00}',
        '\u{1d41a}',
        '\u{301}',
        '\u{2028}',
    ] {
        assert!(
            !allowed_char(refused),
            "{refused:?} U+{:04X}",
            refused as u32
        );
    }
}

#[test]
fn every_letter_whose_nfkc_form_holds_ascii_is_refused() {
    // Missed by a list of blocks: modifier capitals, small capitals, other letterlike forms.
    for refused in [
        '\u{a7f3}',
        '\u{a7f2}',
        '\u{a7f4}',
        '\u{1d2c}',
        '\u{2c7c}',
        '\u{1f130}',
    ] {
        assert!(
            !allowed_char(refused),
            "{refused:?} U+{:04X}",
            refused as u32
        );
    }
    assert!(check_path("%\u{a7f3}\u{a7f3}/x").is_err());
    assert!(check_path("\u{a7f3}:/x").is_err());
    // Every character the allow-list takes folds to something that is not ASCII.
    use unicode_normalization::UnicodeNormalization as _;
    for c in (0x80..0x3_0000)
        .filter_map(char::from_u32)
        .filter(|c| allowed_char(*c))
    {
        assert!(
            std::iter::once(c).nfkc().all(|f| !f.is_ascii()),
            "U+{:04X}",
            c as u32
        );
    }
}

#[test]
fn fuzzer_findings_are_refused() {
    for path in [
        "\u{fe19}",
        "\u{fe12}\u{fe12}/x",
        "%EF%B8%99/x",
        "\u{ff05}00",
        "\u{ff05}\u{ff12}\u{ff45}\u{ff05}\u{ff12}\u{ff45}/x",
        "\u{fe6a}2e\u{fe6a}2e/x",
        "%\u{b2}e%\u{b2}e/x",
        "%\u{200b}2e%\u{200b}2e/x",
        "%0\u{feff}e",
        "http://..:80/x",
        "http://user@..:80/x",
        "http://user:pw@../x",
        "ht://..;:x",
        "http://..;x/a",
        "http://..#x",
    ] {
        assert!(check_path(path).is_err(), "{path:?} was accepted");
    }
    assert_eq!(host_of("user:pw@example.com:8080"), "example.com");
    assert_eq!(host_of("[::1]:80"), "[::1]");
    assert!(check_path("https://user@example.com:8443/a/b.std").is_ok());
}
