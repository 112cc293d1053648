//! RFC 8785 canonicalization against the RFC's examples and the reference
//! implementation's test data.

use ibl_audit::jcs::{es_number, to_jcs, to_jcs_string, JcsError, MAX_EXACT_INTEGER};
use serde_json::{json, Value};

fn canon(input: &str) -> String {
    let value: Value = serde_json::from_str(input).expect("test input parses");
    to_jcs_string(&value).expect("canonicalizes")
}

/// Hex bytes as printed in the reference test data ("7b 22 6c …").
fn unhex(hex: &str) -> Vec<u8> {
    hex.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

// ---------------------------------------------------------------------------
// The test data of the reference implementation, cyberphone/
// json-canonicalization (testdata/input/*.json -> testdata/output/*.json,
// testdata/outhex/*.txt), by an author of RFC 8785.
// ---------------------------------------------------------------------------

#[test]
fn reference_arrays() {
    let input = r#"[
  56,
  {
    "d": true,
    "10": null,
    "1": [ ]
  }
]"#;
    assert_eq!(canon(input), r#"[56,{"1":[],"10":null,"d":true}]"#);
}

#[test]
fn reference_french() {
    let input = r#"{
  "peach": "This sorting order",
  "péché": "is wrong according to French",
  "pêche": "but canonicalization MUST",
  "sin":   "ignore locale"
}"#;
    assert_eq!(
        canon(input),
        r#"{"peach":"This sorting order","péché":"is wrong according to French","pêche":"but canonicalization MUST","sin":"ignore locale"}"#
    );
}

#[test]
fn reference_structures() {
    let input = r#"{
  "1": {"f": {"f": "hi","F": 5} ,"\n": 56.0},
  "10": { },
  "": "empty",
  "a": { },
  "111": [ {"e": "yes","E": "no" } ],
  "A": { }
}"#;
    assert_eq!(
        canon(input),
        r#"{"":"empty","1":{"\n":56,"f":{"F":5,"f":"hi"}},"10":{},"111":[{"E":"no","e":"yes"}],"A":{},"a":{}}"#
    );
}

#[test]
fn reference_unicode_is_not_normalized() {
    let input = r#"{
  "Unnormalized Unicode":"A\u030a"
}"#;
    assert_eq!(canon(input), "{\"Unnormalized Unicode\":\"A\u{030a}\"}");
}

/// Also the example of RFC 8785 §3.2.2 (same input, same output).
#[test]
fn reference_values() {
    let input = r#"{
  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}"#;
    let want = r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#;
    assert_eq!(canon(input), want);
    let outhex = "
7b 22 6c 69 74 65 72 61 6c 73 22 3a 5b 6e 75 6c 6c 2c 74 72 75 65 2c 66 61 6c 73 65 5d 2c 22 6e
75 6d 62 65 72 73 22 3a 5b 33 33 33 33 33 33 33 33 33 2e 33 33 33 33 33 33 33 2c 31 65 2b 33 30
2c 34 2e 35 2c 30 2e 30 30 32 2c 31 65 2d 32 37 5d 2c 22 73 74 72 69 6e 67 22 3a 22 e2 82 ac 24
5c 75 30 30 30 66 5c 6e 41 27 42 5c 22 5c 5c 5c 5c 5c 22 2f 22 7d";
    let value: Value = serde_json::from_str(input).unwrap();
    assert_eq!(to_jcs(&value).unwrap(), unhex(outhex));
}

#[test]
fn reference_weird() {
    let input = r#"{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\u000a": "Newline",
  "1": "One",
  "\u0080": "Control\u007f",
  "\ud83d\ude02": "Smiley",
  "\u00f6": "Latin Small Letter O With Diaeresis",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "</script>": "Browser Challenge"
}"#;
    let want = "{\"\\n\":\"Newline\",\"\\r\":\"Carriage Return\",\"1\":\"One\",\"</script>\":\"Browser Challenge\",\"\u{80}\":\"Control\u{7f}\",\"ö\":\"Latin Small Letter O With Diaeresis\",\"€\":\"Euro Sign\",\"😂\":\"Smiley\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}";
    assert_eq!(canon(input), want);
    let outhex = "
7b 22 5c 6e 22 3a 22 4e 65 77 6c 69 6e 65 22 2c 22 5c 72 22 3a 22 43 61 72 72 69 61 67 65 20 52
65 74 75 72 6e 22 2c 22 31 22 3a 22 4f 6e 65 22 2c 22 3c 2f 73 63 72 69 70 74 3e 22 3a 22 42 72
6f 77 73 65 72 20 43 68 61 6c 6c 65 6e 67 65 22 2c 22 c2 80 22 3a 22 43 6f 6e 74 72 6f 6c 7f 22
2c 22 c3 b6 22 3a 22 4c 61 74 69 6e 20 53 6d 61 6c 6c 20 4c 65 74 74 65 72 20 4f 20 57 69 74 68
20 44 69 61 65 72 65 73 69 73 22 2c 22 e2 82 ac 22 3a 22 45 75 72 6f 20 53 69 67 6e 22 2c 22 f0
9f 98 82 22 3a 22 53 6d 69 6c 65 79 22 2c 22 ef ac b3 22 3a 22 48 65 62 72 65 77 20 4c 65 74 74
65 72 20 44 61 6c 65 74 20 57 69 74 68 20 44 61 67 65 73 68 22 7d";
    let value: Value = serde_json::from_str(input).unwrap();
    assert_eq!(to_jcs(&value).unwrap(), unhex(outhex));
}

// ---------------------------------------------------------------------------
// RFC 8785 itself.
// ---------------------------------------------------------------------------

/// §3.2.3: members sorted by UTF-16 code units, so U+1F600 (a surrogate
/// pair, D83D DE00) sorts before U+FB33 although it is the larger code
/// point.
#[test]
fn rfc_sorting_example() {
    let input = r#"{
   "\u20ac": "Euro Sign",
   "\r": "Carriage Return",
   "\ufb33": "Hebrew Letter Dalet With Dagesh",
   "1": "One",
   "\ud83d\ude00": "Emoji: Grinning Face",
   "\u0080": "Control",
   "\u00f6": "Latin Small Letter O With Diaeresis"
}"#;
    let value: Value = serde_json::from_str(input).unwrap();
    let out = to_jcs_string(&value).unwrap();
    let order: Vec<usize> = [
        "Carriage Return",
        "One",
        "Control",
        "Latin Small Letter O With Diaeresis",
        "Euro Sign",
        "Emoji: Grinning Face",
        "Hebrew Letter Dalet With Dagesh",
    ]
    .iter()
    .map(|v| out.find(v).unwrap())
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{out}");
    assert_eq!(
        out,
        "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\"ö\":\"Latin Small Letter O With Diaeresis\",\"€\":\"Euro Sign\",\"😀\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}"
    );
}

/// Appendix B, "Number Serialization Samples": IEEE 754 bit patterns and
/// their serialization (also what V8, Node 20, prints for each).
#[test]
fn rfc_number_samples() {
    let samples: &[(u64, Option<&str>)] = &[
        (0x0000000000000000, Some("0")),
        (0x8000000000000000, Some("0")),
        (0x0000000000000001, Some("5e-324")),
        (0x8000000000000001, Some("-5e-324")),
        (0x7fefffffffffffff, Some("1.7976931348623157e+308")),
        (0xffefffffffffffff, Some("-1.7976931348623157e+308")),
        (0x4340000000000000, Some("9007199254740992")),
        (0xc340000000000000, Some("-9007199254740992")),
        (0x4430000000000000, Some("295147905179352830000")),
        (0x7fffffffffffffff, None), // NaN
        (0x7ff0000000000000, None), // Infinity
        (0x44b52d02c7e14af5, Some("9.999999999999997e+22")),
        (0x44b52d02c7e14af6, Some("1e+23")),
        (0x44b52d02c7e14af7, Some("1.0000000000000001e+23")),
        (0x444b1ae4d6e2ef4e, Some("999999999999999700000")),
        (0x444b1ae4d6e2ef4f, Some("999999999999999900000")),
        (0x444b1ae4d6e2ef50, Some("1e+21")),
        (0x3eb0c6f7a0b5ed8c, Some("9.999999999999997e-7")),
        (0x3eb0c6f7a0b5ed8d, Some("0.000001")),
        (0x41b3de4355555553, Some("333333333.3333332")),
        (0x41b3de4355555554, Some("333333333.33333325")),
        (0x41b3de4355555555, Some("333333333.3333333")),
        (0x41b3de4355555556, Some("333333333.3333334")),
        (0x41b3de4355555557, Some("333333333.33333343")),
        (0xbecbf647612f3696, Some("-0.0000033333333333333333")),
        // The exact value is …206.25: a tie between …206.2 and …206.3,
        // which ECMAScript breaks to the even digit.
        (0x43143ff3c1cb0959, Some("1424953923781206.2")),
    ];
    for &(bits, want) in samples {
        let x = f64::from_bits(bits);
        match want {
            Some(want) => {
                assert_eq!(es_number(x).unwrap(), want, "{bits:016x}");
                // Through a serde_json Value too (which cannot hold NaN).
                let v = Value::from(x);
                assert_eq!(to_jcs_string(&v).unwrap(), want, "{bits:016x}");
            }
            None => assert!(
                matches!(es_number(x), Err(JcsError::NonFinite(_))),
                "{bits:016x}"
            ),
        }
    }
}

// ---------------------------------------------------------------------------
// Integers, strings, round trips.
// ---------------------------------------------------------------------------

#[test]
fn integers_up_to_two_to_the_53_are_exact_and_beyond_are_refused() {
    let max = MAX_EXACT_INTEGER;
    assert_eq!(max, 9_007_199_254_740_992);
    assert_eq!(to_jcs_string(&json!(max)).unwrap(), "9007199254740992");
    assert_eq!(
        to_jcs_string(&json!(-(max as i64))).unwrap(),
        "-9007199254740992"
    );
    assert_eq!(to_jcs_string(&json!(max - 1)).unwrap(), "9007199254740991");
    assert_eq!(
        to_jcs_string(&json!({"id": 1234567890123u64, "n": -42})).unwrap(),
        r#"{"id":1234567890123,"n":-42}"#
    );
    for refused in [
        json!(max + 1),
        json!(u64::MAX),
        json!(-(max as i64) - 1),
        json!(i64::MIN),
        json!({"deep": [1, {"id": max + 1}]}),
    ] {
        assert!(
            matches!(to_jcs(&refused), Err(JcsError::IntegerOutOfRange(_))),
            "{refused}"
        );
    }
    // Parsed from text: an integer literal is an integer.
    let parsed: Value = serde_json::from_str("9007199254740993").unwrap();
    assert!(to_jcs(&parsed).is_err());
    // A double that happens to be a large integer is a double: written as
    // ECMAScript writes it.
    assert_eq!(to_jcs_string(&json!(1e21)).unwrap(), "1e+21");
    assert_eq!(
        to_jcs_string(&json!(18446744073709551616.0)).unwrap(),
        "18446744073709552000"
    );
}

#[test]
fn strings_escape_only_what_the_rfc_escapes() {
    let all_controls: String = (0u32..0x20).map(|c| char::from_u32(c).unwrap()).collect();
    let out = to_jcs_string(&json!(all_controls)).unwrap();
    assert_eq!(
        out,
        r#""\u0000\u0001\u0002\u0003\u0004\u0005\u0006\u0007\b\t\n\u000b\f\r\u000e\u000f\u0010\u0011\u0012\u0013\u0014\u0015\u0016\u0017\u0018\u0019\u001a\u001b\u001c\u001d\u001e\u001f""#
    );
    assert_eq!(
        to_jcs_string(&json!("\"\\/\u{7f}\u{2028}\u{2029}é€😀<>&'")).unwrap(),
        "\"\\\"\\\\/\u{7f}\u{2028}\u{2029}é€😀<>&'\""
    );
}

#[test]
fn no_whitespace_and_nested_objects_sorted() {
    let v = json!({
        "b": [1, 2, {"z": null, "a": true}],
        "a": {"y": "x", "x": [[], {}]},
        "aa": 0.5,
        "B": false
    });
    assert_eq!(
        to_jcs_string(&v).unwrap(),
        r#"{"B":false,"a":{"x":[[],{}],"y":"x"},"aa":0.5,"b":[1,2,{"a":true,"z":null}]}"#
    );
    assert_eq!(to_jcs_string(&json!({})).unwrap(), "{}");
    assert_eq!(to_jcs_string(&json!([])).unwrap(), "[]");
    assert_eq!(to_jcs_string(&json!("")).unwrap(), "\"\"");
    assert_eq!(to_jcs_string(&json!(null)).unwrap(), "null");
}

/// Keys that UTF-8 byte order and UTF-16 code unit order disagree on:
/// U+FF61 (EF BD A1 in UTF-8, FF61 in UTF-16) and U+10000 (F0 90 80 80,
/// D800 DC00).
#[test]
fn keys_sort_by_utf16_not_utf8() {
    let v = json!({"\u{ff61}": 1, "\u{10000}": 2, "\u{e000}": 3});
    // UTF-16: D800 < E000 < FF61. UTF-8 would put U+10000 last.
    assert_eq!(
        to_jcs_string(&v).unwrap(),
        "{\"\u{10000}\":2,\"\u{e000}\":3,\"\u{ff61}\":1}"
    );
}

#[test]
fn canonical_text_reads_back_to_the_same_value_and_is_a_fixed_point() {
    let inputs = [
        r#"{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001,-0.0,1e-7,123456789012]}"#,
        r#"[{"b":1,"a":[true,false,null,"x\ty"]},"€",-5e-324,1.7976931348623157e308]"#,
        r#"{"event":{"type":"credential.issued","id":4503599627370496,"at":"2024-01-01T00:00:00Z","data":{"score":0.1,"tags":["a","b"]}}}"#,
        r#"{"\u0000":"\u001f","\ud83d\ude00":"\u00e9"}"#,
    ];
    for input in inputs {
        let value: Value = serde_json::from_str(input).unwrap();
        let once = to_jcs(&value).unwrap();
        let back: Value = serde_json::from_slice(&once).unwrap();
        // Same numbers as doubles, same strings, same structure.
        assert_eq!(as_doubles(&back), as_doubles(&value), "{input}");
        let twice = to_jcs(&back).unwrap();
        assert_eq!(once, twice, "{input}");
    }
}

/// The value with every number as an f64 (JCS's data model), -0 as 0.
fn as_doubles(v: &Value) -> Value {
    match v {
        Value::Number(n) => {
            let f = n.as_f64().unwrap();
            Value::from(if f == 0.0 { 0.0 } else { f })
        }
        Value::Array(a) => Value::Array(a.iter().map(as_doubles).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), as_doubles(v))).collect())
        }
        other => other.clone(),
    }
}

/// The crate turns on serde_json's `float_roundtrip`: without it serde_json
/// reads some literals one ulp off, and the canonical form of parsed JSON
/// would differ from every other implementation's (this literal is the
/// RFC's §3.2.2 example).
#[test]
fn parsing_rounds_to_the_nearest_double() {
    let x: f64 = serde_json::from_str("333333333.33333329").unwrap();
    assert_eq!(x.to_bits(), 0x41b3de4355555555);
    let x: f64 = serde_json::from_str("1424953923781206.25").unwrap();
    assert_eq!(x.to_bits(), 0x43143ff3c1cb0959);
}
