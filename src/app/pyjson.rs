//! What DRF's `JSONParser` says of a body it refuses, word for word: the body decoded in
//! the request's charset as Python's codecs do, then CPython's `json` module (3.11, the C
//! scanner) and DRF's strict constants, with Python's positions in characters.

/// The body as text in `charset` (the `Content-Type`'s; Django ignores one Python does
/// not know, so does this), or the words of Python's `UnicodeDecodeError`. UTF-8, Latin-1
/// and ASCII are decoded; any other charset is read as UTF-8.
pub(super) fn decode(bytes: &[u8], charset: Option<&str>) -> Result<String, String> {
    let name = charset.map(|c| {
        c.trim()
            .trim_matches('"')
            .to_ascii_lowercase()
            .replace('_', "-")
    });
    match name.as_deref() {
        Some("latin-1" | "latin1" | "latin" | "l1" | "iso-8859-1" | "iso8859-1" | "8859" | "cp819" | "iso-ir-100") => {
            Ok(bytes.iter().map(|&b| char::from(b)).collect())
        }
        Some("ascii" | "us-ascii" | "646" | "us") => match bytes.iter().position(|b| !b.is_ascii()) {
            Some(at) => Err(format!(
                "'ascii' codec can't decode byte {:#04x} in position {at}: ordinal not in range(128)",
                bytes[at]
            )),
            None => Ok(String::from_utf8_lossy(bytes).into_owned()),
        },
        _ => String::from_utf8(bytes.to_vec()).map_err(|e| utf8_error(bytes, e.utf8_error())),
    }
}

/// Python's words for invalid UTF-8 (CPython's decoder takes the same maximal invalid
/// sequences as Rust's).
fn utf8_error(bytes: &[u8], e: std::str::Utf8Error) -> String {
    let at = e.valid_up_to();
    let (len, why) = match e.error_len() {
        None => (bytes.len() - at, "unexpected end of data"),
        Some(1) if !matches!(bytes[at], 0xc2..=0xf4) => (1, "invalid start byte"),
        Some(n) => (n, "invalid continuation byte"),
    };
    if len == 1 {
        format!(
            "'utf-8' codec can't decode byte {:#04x} in position {at}: {why}",
            bytes[at]
        )
    } else {
        format!(
            "'utf-8' codec can't decode bytes in position {at}-{}: {why}",
            at + len - 1
        )
    }
}

/// Python's error for a document `json.loads` refuses, or `None` where Python would
/// accept it (numbers out of range, lone surrogates: rare, left to the caller).
pub(super) fn error(text: &str) -> Option<String> {
    let s: Vec<char> = text.chars().collect();
    if s.first() == Some(&'\u{feff}') {
        return Some(at(&s, "Unexpected UTF-8 BOM (decode using utf-8-sig)", 0));
    }
    let p = Scanner { s: &s };
    let result = p.value(p.ws(0), 0).and_then(|end| {
        let end = p.ws(end);
        if end == s.len() {
            Ok(end)
        } else {
            Err(Fail::At("Extra data", end))
        }
    });
    match result {
        Ok(_) => None,
        Err(Fail::At(msg, pos)) => Some(at(&s, msg, pos)),
        Err(Fail::Constant(c)) => Some(format!(
            "Out of range float values are not JSON compliant: '{c}'"
        )),
        Err(Fail::TooDeep) => None,
    }
}

/// `msg: line L column C (char P)`, as `json.JSONDecodeError` prints it.
fn at(s: &[char], msg: &str, pos: usize) -> String {
    let before = &s[..pos.min(s.len())];
    let line = before.iter().filter(|&&c| c == '\n').count() + 1;
    let column = match before.iter().rposition(|&c| c == '\n') {
        Some(nl) => pos - nl,
        None => pos + 1,
    };
    format!("{msg}: line {line} column {column} (char {pos})")
}

enum Fail {
    At(&'static str, usize),
    /// DRF's `strict_constant`: `NaN`, `Infinity`, `-Infinity`.
    Constant(&'static str),
    /// Nested deeper than [`MAX_DEPTH`]: not followed (Python itself would raise a
    /// `RecursionError`, a 500 under DRF).
    TooDeep,
}

/// How deep the scanner follows arrays and objects: serde_json's own limit, so a body of
/// a million `[` costs no stack.
const MAX_DEPTH: usize = 128;

struct Scanner<'a> {
    s: &'a [char],
}

impl Scanner<'_> {
    fn get(&self, i: usize) -> Option<char> {
        self.s.get(i).copied()
    }

    fn ws(&self, mut i: usize) -> usize {
        while matches!(self.get(i), Some(' ' | '\t' | '\n' | '\r')) {
            i += 1;
        }
        i
    }

    fn starts(&self, i: usize, word: &str) -> bool {
        word.chars()
            .enumerate()
            .all(|(k, c)| self.get(i + k) == Some(c))
    }

    /// `scan_once`: one value at `i`, inside `depth` arrays and objects; the index after
    /// it.
    fn value(&self, i: usize, depth: usize) -> Result<usize, Fail> {
        if depth > MAX_DEPTH {
            return Err(Fail::TooDeep);
        }
        match self.get(i) {
            Some('"') => self.string(i + 1),
            Some('{') => self.object(i + 1, depth + 1),
            Some('[') => self.array(i + 1, depth + 1),
            Some('n') if self.starts(i, "null") => Ok(i + 4),
            Some('t') if self.starts(i, "true") => Ok(i + 4),
            Some('f') if self.starts(i, "false") => Ok(i + 5),
            _ => {
                if let Some(end) = self.number(i) {
                    return Ok(end);
                }
                for c in ["NaN", "Infinity", "-Infinity"] {
                    if self.starts(i, c) {
                        return Err(Fail::Constant(c));
                    }
                }
                Err(Fail::At("Expecting value", i))
            }
        }
    }

    /// `-?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?`, each optional part only when complete.
    fn number(&self, i: usize) -> Option<usize> {
        let digits = |from: usize| {
            let mut j = from;
            while self.get(j).is_some_and(|c| c.is_ascii_digit()) {
                j += 1;
            }
            j
        };
        let mut j = i + usize::from(self.get(i) == Some('-'));
        match self.get(j) {
            Some('0') => j += 1,
            Some('1'..='9') => j = digits(j),
            _ => return None,
        }
        if self.get(j) == Some('.') && digits(j + 1) > j + 1 {
            j = digits(j + 1);
        }
        if matches!(self.get(j), Some('e' | 'E')) {
            let sign = usize::from(matches!(self.get(j + 1), Some('+' | '-')));
            let exp = j + 1 + sign;
            if digits(exp) > exp {
                j = digits(exp);
            }
        }
        Some(j)
    }

    /// `scanstring` from just after the opening quote.
    fn string(&self, begin: usize) -> Result<usize, Fail> {
        let unterminated = Fail::At("Unterminated string starting at", begin - 1);
        let mut i = begin;
        loop {
            match self.get(i) {
                None => return Err(unterminated),
                Some('"') => return Ok(i + 1),
                Some('\\') => match self.get(i + 1) {
                    None => return Err(unterminated),
                    Some('u') => {
                        let hex = (i + 2..i + 6)
                            .all(|k| self.get(k).is_some_and(|c| c.is_ascii_hexdigit()));
                        if !hex {
                            return Err(Fail::At("Invalid \\uXXXX escape", i + 1));
                        }
                        i += 6;
                    }
                    Some('"' | '\\' | '/' | 'b' | 'f' | 'n' | 'r' | 't') => i += 2,
                    Some(_) => return Err(Fail::At("Invalid \\escape", i)),
                },
                Some(c) if (c as u32) < 0x20 => {
                    return Err(Fail::At("Invalid control character at", i))
                }
                Some(_) => i += 1,
            }
        }
    }

    /// `JSONObject` from just after `{`.
    fn object(&self, i: usize, depth: usize) -> Result<usize, Fail> {
        const NAME: &str = "Expecting property name enclosed in double quotes";
        let mut end = self.ws(i);
        match self.get(end) {
            Some('}') => return Ok(end + 1),
            Some('"') => {}
            _ => return Err(Fail::At(NAME, end)),
        }
        loop {
            end = self.ws(self.string(end + 1)?);
            if self.get(end) != Some(':') {
                return Err(Fail::At("Expecting ':' delimiter", end));
            }
            end = self.ws(self.value(self.ws(end + 1), depth)?);
            match self.get(end) {
                Some('}') => return Ok(end + 1),
                Some(',') => {}
                _ => return Err(Fail::At("Expecting ',' delimiter", end)),
            }
            end = self.ws(end + 1);
            if self.get(end) != Some('"') {
                return Err(Fail::At(NAME, end));
            }
        }
    }

    /// `JSONArray` from just after `[`.
    fn array(&self, i: usize, depth: usize) -> Result<usize, Fail> {
        let mut end = self.ws(i);
        if self.get(end) == Some(']') {
            return Ok(end + 1);
        }
        loop {
            end = self.ws(self.value(end, depth)?);
            match self.get(end) {
                Some(']') => return Ok(end + 1),
                Some(',') => end = self.ws(end + 1),
                _ => return Err(Fail::At("Expecting ',' delimiter", end)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inputs and what CPython 3.11's `json.loads` raised for them.
    #[test]
    fn errors_read_as_pythons() {
        for (input, python) in [
            ("", "Expecting value: line 1 column 1 (char 0)"),
            ("   ", "Expecting value: line 1 column 4 (char 3)"),
            (
                "{",
                "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
            ),
            (
                "{\"a\"",
                "Expecting ':' delimiter: line 1 column 5 (char 4)",
            ),
            ("{\"a\":", "Expecting value: line 1 column 6 (char 5)"),
            (
                "{\"a\": 1",
                "Expecting ',' delimiter: line 1 column 8 (char 7)",
            ),
            (
                "{\"a\": 1,",
                "Expecting property name enclosed in double quotes: line 1 column 9 (char 8)",
            ),
            (
                "{\"a\": 1,}",
                "Expecting property name enclosed in double quotes: line 1 column 9 (char 8)",
            ),
            ("[1,]", "Expecting value: line 1 column 4 (char 3)"),
            ("[", "Expecting value: line 1 column 2 (char 1)"),
            ("[1", "Expecting ',' delimiter: line 1 column 3 (char 2)"),
            (
                "\"abc",
                "Unterminated string starting at: line 1 column 1 (char 0)",
            ),
            (
                "{\"a\": \"b\\x\"}",
                "Invalid \\escape: line 1 column 9 (char 8)",
            ),
            (
                "{\"a\": \"b\\u12\"}",
                "Invalid \\uXXXX escape: line 1 column 10 (char 9)",
            ),
            (
                "{\"a\": \"b\\u12zz\"}",
                "Invalid \\uXXXX escape: line 1 column 10 (char 9)",
            ),
            (
                "{\"a\": \"b\nc\"}",
                "Invalid control character at: line 1 column 9 (char 8)",
            ),
            (
                "{\"a\" 1}",
                "Expecting ':' delimiter: line 1 column 6 (char 5)",
            ),
            (
                "{\"a\": 1 \"b\": 2}",
                "Expecting ',' delimiter: line 1 column 9 (char 8)",
            ),
            (
                "{1: 2}",
                "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
            ),
            ("{\"a\": 1} x", "Extra data: line 1 column 10 (char 9)"),
            ("[1 2]", "Expecting ',' delimiter: line 1 column 4 (char 3)"),
            ("01", "Extra data: line 1 column 2 (char 1)"),
            ("1.", "Extra data: line 1 column 2 (char 1)"),
            ("-x", "Expecting value: line 1 column 1 (char 0)"),
            ("{\"a\": tru}", "Expecting value: line 1 column 7 (char 6)"),
            (
                "{'a': 1}",
                "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
            ),
            ("[1]]", "Extra data: line 1 column 4 (char 3)"),
            (
                "  {\"a\": 1,  }",
                "Expecting property name enclosed in double quotes: line 1 column 13 (char 12)",
            ),
            (
                "{\"a\":\n 1,\n}",
                "Expecting property name enclosed in double quotes: line 3 column 1 (char 10)",
            ),
            (
                "{\"é\": 1,}",
                "Expecting property name enclosed in double quotes: line 1 column 9 (char 8)",
            ),
            (
                "{\"a\": \"\\",
                "Unterminated string starting at: line 1 column 7 (char 6)",
            ),
            (
                "{\"a\": [1, {\"b\": }]}",
                "Expecting value: line 1 column 17 (char 16)",
            ),
            (
                "\u{feff}{}",
                "Unexpected UTF-8 BOM (decode using utf-8-sig): line 1 column 1 (char 0)",
            ),
            ("{\"a\": .5}", "Expecting value: line 1 column 7 (char 6)"),
            (
                "{\"a\": 1e}",
                "Expecting ',' delimiter: line 1 column 8 (char 7)",
            ),
            (
                "{\"a\": 0x1}",
                "Expecting ',' delimiter: line 1 column 8 (char 7)",
            ),
            (
                "{\"a\": NaN}",
                "Out of range float values are not JSON compliant: 'NaN'",
            ),
            (
                "[-Infinity]",
                "Out of range float values are not JSON compliant: '-Infinity'",
            ),
        ] {
            assert_eq!(error(input).as_deref(), Some(python), "{input:?}");
        }
        // Deep nesting is not followed (serde_json's message stands).
        assert_eq!(error(&"[".repeat(1_000_000)), None);
        for fine in [
            "{}",
            " [1, 2.5e-3, -0, \"\\u00e9\\n\", null, true, false] ",
            "1e400",
        ] {
            assert_eq!(error(fine), None, "{fine:?}");
        }
    }

    /// What CPython 3.11 said decoding these bytes.
    #[test]
    fn decoding_errors_read_as_pythons() {
        for (bytes, charset, python) in [
            (
                &b"{\"a\": \"\xff\"}"[..],
                None,
                "'utf-8' codec can't decode byte 0xff in position 7: invalid start byte",
            ),
            (
                b"\"\xe2\x82A\"",
                Some("utf-8"),
                "'utf-8' codec can't decode bytes in position 1-2: invalid continuation byte",
            ),
            (
                b"\"\xe2A\"",
                None,
                "'utf-8' codec can't decode byte 0xe2 in position 1: invalid continuation byte",
            ),
            (
                b"\"\xe2\x82",
                None,
                "'utf-8' codec can't decode bytes in position 1-2: unexpected end of data",
            ),
            (
                b"\"\xef\"",
                Some("US-ASCII"),
                "'ascii' codec can't decode byte 0xef in position 1: ordinal not in range(128)",
            ),
        ] {
            assert_eq!(decode(bytes, charset).unwrap_err(), python, "{bytes:?}");
        }
        assert_eq!(decode(b"al\xefce", Some("ISO_8859_1")).unwrap(), "alïce");
        assert_eq!(decode(b"caf\xc3\xa9", Some("klingon")).unwrap(), "café");
    }
}
