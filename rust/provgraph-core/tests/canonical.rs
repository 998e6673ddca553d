//! RFC 8785 (JCS) conformance: the RFC's own examples, Appendix B's number table, the
//! UTF-16 member order, escaping, duplicate names, and a randomized idempotence check.
use std::cmp::Ordering;

use provgraph_core::canonical::{
    canonical_hash, canonicalize, canonicalize_json, cmp_utf16, parse_strict,
    write_f64, write_i64, write_string,
};
use provgraph_core::Error;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};

fn canon_str(text: &str) -> String {
    String::from_utf8(canonicalize_json(text.as_bytes()).expect("valid JSON")).expect("utf-8")
}

#[test]
fn rfc_3_2_2_sample() {
    let input = r#"{
      "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
      "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
      "literals": [null, true, false]
    }"#;
    let expected = concat!(
        r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"#,
        "\"string\":\"\u{20ac}$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}"
    );
    assert_eq!(canon_str(input), expected);
    // The same through the Value API.
    let v: Value = serde_json::from_str(input).unwrap();
    assert_eq!(canonicalize(&v), expected.as_bytes());
}

#[test]
fn rfc_3_2_3_sorting() {
    let input = r#"{
      "\u20ac": "Euro Sign",
      "\r": "Carriage Return",
      "\ufb33": "Hebrew Letter Dalet With Dagesh",
      "1": "One",
      "\ud83d\ude00": "Emoji: Grinning Face",
      "\u0080": "Control",
      "\u00f6": "Latin Small Letter O With Diaeresis"
    }"#;
    let expected = concat!(
        "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",",
        "\"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",",
        "\"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}"
    );
    assert_eq!(canon_str(input), expected);
}

/// RFC 8785 Appendix B: IEEE-754 bit pattern -> ECMAScript string.
const APPENDIX_B: &[(u64, &str)] = &[
    (0x0000000000000000, "0"),
    (0x8000000000000000, "0"),
    (0x0000000000000001, "5e-324"),
    (0x8000000000000001, "-5e-324"),
    (0x7fefffffffffffff, "1.7976931348623157e+308"),
    (0xffefffffffffffff, "-1.7976931348623157e+308"),
    (0x4340000000000000, "9007199254740992"),
    (0xc340000000000000, "-9007199254740992"),
    (0x4430000000000000, "295147905179352830000"),
    (0x44b52d02c7e14af5, "9.999999999999997e+22"),
    (0x44b52d02c7e14af6, "1e+23"),
    (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
    (0x444b1ae4d6e2ef4e, "999999999999999700000"),
    (0x444b1ae4d6e2ef4f, "999999999999999900000"),
    (0x444b1ae4d6e2ef50, "1e+21"),
    (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
    (0x3eb0c6f7a0b5ed8d, "0.000001"),
    (0x41b3de4355555553, "333333333.3333332"),
    (0x41b3de4355555554, "333333333.33333325"),
    (0x41b3de4355555555, "333333333.3333333"),
    (0x41b3de4355555556, "333333333.3333334"),
    (0x41b3de4355555557, "333333333.33333343"),
    (0xbecbf647612f3696, "-0.0000033333333333333333"),
    (0x43143ff3c1cb0959, "1424953923781206.2"),
];

#[test]
fn rfc_appendix_b_numbers() {
    for &(bits, expected) in APPENDIX_B {
        let f = f64::from_bits(bits);
        let mut out = Vec::new();
        write_f64(f, &mut out).unwrap();
        assert_eq!(std::str::from_utf8(&out).unwrap(), expected, "{bits:#018x}");
        // Through a Value, and through JSON text (parsed with float_roundtrip) too.
        let v = Value::Number(serde_json::Number::from_f64(f).unwrap());
        assert_eq!(
            canonicalize(&v),
            expected.as_bytes(),
            "{bits:#018x} (Value)"
        );
        assert_eq!(
            canon_str(&format!("{f:e}")),
            expected,
            "{bits:#018x} (text)"
        );
        // And the canonical form parses back to the same double.
        let back: f64 = expected.parse().unwrap();
        assert_eq!(
            back,
            if f == 0.0 { 0.0 } else { f },
            "{bits:#018x} round trip"
        );
    }
}

#[test]
fn non_finite_rejected() {
    for f in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert!(matches!(
            write_f64(f, &mut Vec::new()),
            Err(Error::InvalidArgument(_))
        ));
    }
    assert!(matches!(
        canonicalize_json(b"1e400"),
        Err(Error::InvalidJson(_))
    ));
}

#[test]
fn integers_follow_ieee_double() {
    let cases: &[(Value, &str)] = &[
        (json!(0), "0"),
        (json!(-1), "-1"),
        (json!(9007199254740991_u64), "9007199254740991"),
        (json!(9007199254740992_u64), "9007199254740992"),
        (json!(9007199254740993_u64), "9007199254740992"), // ties to even
        (json!(-9007199254740993_i64), "-9007199254740992"),
        (json!(u64::MAX), "18446744073709552000"),
        (json!(i64::MIN), "-9223372036854776000"),
        (json!(100000000000000000000.0), "100000000000000000000"),
        (json!(1e21), "1e+21"),
        (json!(-0.0), "0"),
        (json!(1.5e-7), "1.5e-7"),
        (json!(0.1), "0.1"),
    ];
    for (v, expected) in cases {
        assert_eq!(
            std::str::from_utf8(&canonicalize(v)).unwrap(),
            *expected,
            "{v}"
        );
    }
    assert_eq!(canon_str("18446744073709551616"), "18446744073709552000"); // > u64: parsed as f64
    assert_eq!(canon_str("-0"), "0");
    assert_eq!(canon_str("-0.0"), "0");
    assert_eq!(canon_str("1.0"), "1");
    let mut out = Vec::new();
    write_i64(-(1 << 53) - 1, &mut out);
    assert_eq!(out, b"-9007199254740992");
}

#[test]
fn string_escapes() {
    let mut all_controls = String::new();
    for c in 0u8..0x20 {
        all_controls.push(c as char);
    }
    let mut out = Vec::new();
    write_string(&all_controls, &mut out);
    assert_eq!(
        std::str::from_utf8(&out).unwrap(),
        concat!(
            r#""\u0000\u0001\u0002\u0003\u0004\u0005\u0006\u0007\b\t\n\u000b\f\r\u000e\u000f"#,
            r#"\u0010\u0011\u0012\u0013\u0014\u0015\u0016\u0017\u0018\u0019\u001a\u001b\u001c\u001d\u001e\u001f""#
        )
    );
    // Literal: DEL, U+2028/2029, non-ASCII, astral, '/', '<'.
    let literal = "\u{7f}\u{2028}\u{2029}é€😀/<>&'";
    out.clear();
    write_string(literal, &mut out);
    assert_eq!(out, format!("\"{literal}\"").as_bytes());
    assert_eq!(
        canon_str(r#""\u2028\u002F\ud83d\ude00""#),
        "\"\u{2028}/\u{1f600}\""
    );
    assert_eq!(canon_str(r#""a\"b\\c""#), r#""a\"b\\c""#);
}

#[test]
fn containers_and_literals() {
    assert_eq!(canon_str("{}"), "{}");
    assert_eq!(canon_str("[]"), "[]");
    assert_eq!(canon_str(" [ { } , [ ] , \"\" ] "), r#"[{},[],""]"#);
    assert_eq!(canon_str("null"), "null");
    assert_eq!(canon_str("true"), "true");
    assert_eq!(canon_str(" false\n"), "false");
    assert_eq!(
        canon_str(
            r#"{"b": [1, {"z": null, "a": [true, {"y": 2.50, "x": "s"}]}], "a": {"d": {}, "c": []}}"#
        ),
        r#"{"a":{"c":[],"d":{}},"b":[1,{"a":[true,{"x":"s","y":2.5}],"z":null}]}"#
    );
}

#[test]
fn utf16_order() {
    // U+E000..U+FFFF sort after supplementary characters in UTF-16, before them in UTF-8.
    assert_eq!(cmp_utf16("\u{ffff}", "\u{10000}"), Ordering::Greater);
    assert_eq!(cmp_utf16("\u{e000}", "\u{10ffff}"), Ordering::Greater);
    assert_eq!(cmp_utf16("\u{d7ff}", "\u{10000}"), Ordering::Less);
    assert_eq!(cmp_utf16("a\u{1f600}", "a\u{fb33}"), Ordering::Less);
    assert_eq!(cmp_utf16("\u{1f600}", "\u{1f601}"), Ordering::Less);
    assert_eq!(cmp_utf16("ab", "abc"), Ordering::Less);
    assert_eq!(cmp_utf16("abc", "abc"), Ordering::Equal);
    assert_eq!(cmp_utf16("", "a"), Ordering::Less);
    assert_eq!(cmp_utf16("é", "e\u{301}"), Ordering::Greater);
    // Exhaustive against encode_utf16 on a character sample around the boundaries.
    let sample: Vec<char> = [
        0x0, 0x41, 0x7f, 0x80, 0x7ff, 0x800, 0xd7ff, 0xe000, 0xfb33, 0xfffd, 0xffff, 0x10000,
        0x1f600, 0x10ffff,
    ]
    .iter()
    .map(|&c| char::from_u32(c).unwrap())
    .collect();
    for &x in &sample {
        for &y in &sample {
            for prefix in ["", "k", "\u{1f600}"] {
                let (a, b) = (format!("{prefix}{x}"), format!("{prefix}{y}"));
                assert_eq!(
                    cmp_utf16(&a, &b),
                    a.encode_utf16().cmp(b.encode_utf16()),
                    "{a:?} {b:?}"
                );
            }
        }
    }
}

#[test]
fn duplicate_names_and_bad_text_rejected() {
    for bad in [
        &br#"{"a":1,"a":2}"#[..],
        br#"{"x":{"b":1,"c":2,"b":3}}"#,
        br#"[{"\u0061":1,"a":2}]"#, // same name after unescaping
        br#""\ud800""#,             // lone surrogate
        br#""\udc00x""#,
        b"{\"a\":1",
        b"[1,]",
        b"01",
        b"NaN",
        b"1 2",
        b"\"\xff\"", // invalid UTF-8
        b"",
    ] {
        match canonicalize_json(bad) {
            Err(Error::InvalidJson(_)) => {}
            other => panic!("{:?} -> {other:?}", String::from_utf8_lossy(bad)),
        }
    }
    // Same name at different levels is fine.
    assert_eq!(
        canon_str(r#"{"a":{"a":1},"b":{"a":2}}"#),
        r#"{"a":{"a":1},"b":{"a":2}}"#
    );
}

#[test]
fn nesting_limit_is_serde_json_recursion_limit() {
    let ok = format!("{}{}", "[".repeat(127), "]".repeat(127));
    assert_eq!(canonicalize_json(ok.as_bytes()).unwrap(), ok.as_bytes());
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    assert!(matches!(
        canonicalize_json(deep.as_bytes()),
        Err(Error::InvalidJson(_))
    ));
}

#[test]
fn hash_is_blake3_of_canonical_bytes() {
    let a: Value = serde_json::from_str(r#"{"b":1,"a":[1.0,2e0,"x"]}"#).unwrap();
    let b: Value = serde_json::from_str(r#"{ "a" : [1, 2, "x"], "b" : 1.00 }"#).unwrap();
    assert_eq!(canonical_hash(&a), canonical_hash(&b));
    assert_eq!(
        canonical_hash(&a),
        *blake3::hash(br#"{"a":[1,2,"x"],"b":1}"#).as_bytes()
    );
    assert_ne!(
        canonical_hash(&a),
        canonical_hash(&json!({"b": 2, "a": [1, 2, "x"]}))
    );
}

fn random_string(rng: &mut StdRng) -> String {
    let len = rng.gen_range(0..6);
    (0..len)
        .map(|_| match rng.gen_range(0..6) {
            0 => rng.gen_range(0u32..0x20),
            1 => rng.gen_range(0x20u32..0x80),
            2 => rng.gen_range(0x80u32..0xd800),
            3 => rng.gen_range(0xe000u32..0x10000),
            4 => rng.gen_range(0x10000u32..0x110000),
            _ => *[0x22u32, 0x5c, 0x2028, 0xfb33, 0x1f600, 0xffff]
                .get(rng.gen_range(0..6))
                .unwrap(),
        })
        .map(|c| char::from_u32(c).unwrap())
        .collect()
}

fn random_number(rng: &mut StdRng) -> Value {
    match rng.gen_range(0..5) {
        0 => json!(rng.gen::<i64>()),
        1 => json!(rng.gen::<u64>()),
        2 => json!(rng.gen_range(-1000i64..1000)),
        3 => loop {
            let f = f64::from_bits(rng.gen::<u64>());
            if f.is_finite() {
                break json!(f);
            }
        },
        _ => json!(rng.gen::<f64>() * 10f64.powi(rng.gen_range(-30..30))),
    }
}

fn random_value(rng: &mut StdRng, depth: u32) -> Value {
    let leaf = depth >= 4 || rng.gen_bool(0.4);
    match if leaf {
        rng.gen_range(0..4)
    } else {
        rng.gen_range(4..6)
    } {
        0 => Value::Null,
        1 => Value::Bool(rng.gen()),
        2 => random_number(rng),
        3 => Value::String(random_string(rng)),
        4 => Value::Array(
            (0..rng.gen_range(0..5))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let mut m = Map::new();
            for _ in 0..rng.gen_range(0..6) {
                m.insert(random_string(rng), random_value(rng, depth + 1));
            }
            Value::Object(m)
        }
    }
}

/// Reference member order: sort by encode_utf16 (independent of cmp_utf16's shortcut).
fn reference_keys_in_order(v: &Value, out: &mut Vec<Vec<String>>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| reference_keys_in_order(x, out)),
        Value::Object(m) => {
            let mut keys: Vec<String> = m.keys().cloned().collect();
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            out.push(keys);
            m.values().for_each(|x| reference_keys_in_order(x, out));
        }
        _ => {}
    }
}

#[test]
fn property_idempotent_and_valid() {
    let mut rng = StdRng::seed_from_u64(8785);
    for _ in 0..5000 {
        let v = random_value(&mut rng, 0);
        let c1 = canonicalize(&v);
        // Canonical output is valid JSON, and canonicalizing it again is the identity.
        let reparsed = parse_strict(&c1).expect("canonical output parses");
        let c2 = canonicalize(&reparsed);
        assert_eq!(c1, c2, "{v}");
        assert_eq!(canonicalize_json(&c1).unwrap(), c1);
        // Pretty-printed (whitespace, serde_json's own number format) canonicalizes the same.
        let pretty = serde_json::to_vec_pretty(&v).unwrap();
        assert_eq!(canonicalize_json(&pretty).unwrap(), c1, "{v}");
        // The canonical text carries no insignificant whitespace outside strings and its
        // object members come out in UTF-16 order.
        let mut expected_orders = Vec::new();
        reference_keys_in_order(&reparsed, &mut expected_orders);
        let mut got_orders = Vec::new();
        collect_member_order(&c1, &mut got_orders);
        let mut sorted_expected = expected_orders.clone();
        sorted_expected.sort();
        got_orders.sort();
        assert_eq!(got_orders, sorted_expected, "{v}");
    }
}

/// Member names in the order they appear in each object of canonical JSON text, using a
/// streaming walk over serde_json's preserve-free parse: re-parse each object's raw text.
fn collect_member_order(text: &[u8], out: &mut Vec<Vec<String>>) {
    // Minimal scanner: tracks string state and nesting; records keys at each object level.
    let s = std::str::from_utf8(text).unwrap();
    let mut stack: Vec<Option<Vec<String>>> = Vec::new();
    let mut expect_key = false;
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                // Find the end of the string.
                let mut j = i + 1;
                let bytes = s.as_bytes();
                while bytes[j] != b'"' {
                    j += if bytes[j] == b'\\' { 2 } else { 1 };
                }
                let raw = &s[i..=j];
                if expect_key {
                    let key: String = serde_json::from_str(raw).unwrap();
                    if let Some(Some(keys)) = stack.last_mut() {
                        keys.push(key);
                    }
                    expect_key = false;
                }
                while chars.peek().is_some_and(|&(k, _)| k <= j) {
                    chars.next();
                }
            }
            '{' => {
                stack.push(Some(Vec::new()));
                expect_key = true;
            }
            '[' => stack.push(None),
            ',' => expect_key = matches!(stack.last(), Some(Some(_))),
            '}' => {
                if let Some(Some(keys)) = stack.pop() {
                    out.push(keys);
                }
                expect_key = false;
            }
            ']' => {
                stack.pop();
            }
            ' ' | '\n' | '\t' | '\r' => panic!("whitespace outside a string at {i}"),
            _ => {}
        }
    }
}

#[test]
fn escapes_at_run_edges() {
    // Escapes at the start, middle and end of runs, and across the 8-byte word boundaries
    // of the run scanner, checked against a byte-at-a-time reference.
    fn reference(s: &str) -> Vec<u8> {
        let mut out = vec![b'"'];
        for c in s.chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\u{8}' => out.extend_from_slice(b"\\b"),
                '\u{c}' => out.extend_from_slice(b"\\f"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\t' => out.extend_from_slice(b"\\t"),
                c if (c as u32) < 0x20 => {
                    out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
                }
                c => out.extend_from_slice(c.to_string().as_bytes()),
            }
        }
        out.push(b'"');
        out
    }
    let specials = [
        "\"",
        "\\",
        "\n",
        "\u{1}",
        "\u{1f}",
        "\u{7f}",
        " ",
        "!",
        "#",
        "[",
        "]",
        "\u{e9}",
        "\u{1f600}",
    ];
    for len in 0..20 {
        for pos in 0..=len {
            for sp in specials {
                let s = format!("{}{sp}{}", "a".repeat(pos), "b".repeat(len - pos));
                let mut out = Vec::new();
                write_string(&s, &mut out);
                assert_eq!(out, reference(&s), "{s:?}");
                let doubled = format!("{sp}{s}{sp}");
                out.clear();
                write_string(&doubled, &mut out);
                assert_eq!(out, reference(&doubled), "{doubled:?}");
            }
        }
    }
    // Every byte value next to clean runs of every length up to two words.
    for b in 0u8..0x80 {
        for len in [0, 1, 7, 8, 9, 15, 16, 17] {
            let s = format!("{}{}{}", "x".repeat(len), b as char, "y".repeat(len));
            let mut out = Vec::new();
            write_string(&s, &mut out);
            assert_eq!(out, reference(&s), "{s:?}");
        }
    }
}

#[test]
fn utf16_order_mixed_ascii_and_astral_names() {
    // ASCII, BMP-below-U+D800, U+E000..U+FFFF and supplementary names in one object: the
    // orders differ only between the last two classes.
    let names = [
        "b",
        "a",
        "ab",
        "\u{7ff}",
        "\u{d7ff}",
        "\u{e000}",
        "\u{ffff}",
        "\u{10000}",
        "\u{1f600}",
        "a\u{ffff}",
        "a\u{1f600}",
        "a\u{e000}x",
        "a\u{10ffff}",
        "",
    ];
    let mut m = Map::new();
    for n in names {
        m.insert(n.to_owned(), Value::Null);
    }
    let mut expected: Vec<&str> = names.to_vec();
    expected.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
    let mut got = Vec::new();
    collect_member_order(&canonicalize(&Value::Object(m)), &mut got);
    assert_eq!(
        got,
        vec![expected.iter().map(|s| s.to_string()).collect::<Vec<_>>()]
    );
}

#[test]
fn object_order_independent_of_map_feature() {
    // Insertion order must not leak whichever Map flavour serde_json was built with.
    let mut m = Map::new();
    for k in ["\u{fb33}", "b", "\u{1f600}", "a", "\u{e000}", ""] {
        m.insert(k.to_owned(), Value::Null);
    }
    assert_eq!(
        std::str::from_utf8(&canonicalize(&Value::Object(m))).unwrap(),
        "{\"\":null,\"a\":null,\"b\":null,\"\u{1f600}\":null,\"\u{e000}\":null,\"\u{fb33}\":null}"
    );
}
