//! Splits a migration file into statements, so that each runs (and fails) on its own.
//!
//! Running statements one at a time lets an error name the statement that failed, and is
//! required for `CREATE INDEX CONCURRENTLY`, which PostgreSQL refuses inside the implicit
//! transaction of a multi-statement query. Understood: `--` and nested `/* */` comments,
//! `'…'` strings (with `E'…'` backslash escapes), `"…"` and backtick identifiers,
//! PostgreSQL dollar quoting (`$$…$$`, `$tag$…$tag$`), and SQLite trigger bodies
//! (`CREATE TRIGGER … BEGIN …; …; END`), whose inner semicolons do not end the statement.

/// The statements of `sql`, without their terminating `;`, comments kept; statements that
/// are only comments or blank are dropped.
pub fn split(sql: &str) -> Vec<String> {
    let b = sql.as_bytes();
    let mut out = vec![];
    let mut start = 0;
    let mut i = 0;
    let mut depth = 0usize; // BEGIN/CASE … END nesting inside a trigger
    let mut word_start: Option<usize> = None;
    let mut trigger: Option<bool> = None; // decided once the statement's first words are seen

    let flush_word = |from: usize,
                      to: usize,
                      stmt_start: usize,
                      depth: &mut usize,
                      trigger: &mut Option<bool>| {
        let w = sql[from..to].to_ascii_uppercase();
        if trigger.is_none() {
            let head = words(&sql[stmt_start..to]);
            let is_trigger = head.first().map(String::as_str) == Some("CREATE")
                && head.iter().take(4).any(|w| w == "TRIGGER");
            if is_trigger {
                *trigger = Some(true);
            } else if head.len() >= 4 || head.first().is_some_and(|w| w != "CREATE") {
                *trigger = Some(false);
            }
        }
        if *trigger == Some(true) {
            match w.as_str() {
                "BEGIN" | "CASE" => *depth += 1,
                "END" => *depth = depth.saturating_sub(1),
                _ => {}
            }
        }
    };

    while i < b.len() {
        let c = b[i];
        let is_word = c.is_ascii_alphanumeric() || c == b'_';
        if is_word {
            word_start.get_or_insert(i);
            i += 1;
            continue;
        }
        if let Some(ws) = word_start.take() {
            flush_word(ws, i, start, &mut depth, &mut trigger);
        }
        match c {
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut nest = 1;
                i += 2;
                while i < b.len() && nest > 0 {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        nest += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        nest -= 1;
                        i += 2;
                    } else {
                        i += 1;
                    }
                }
            }
            b'\'' => {
                let backslash = i > 0
                    && (b[i - 1] == b'E' || b[i - 1] == b'e')
                    && (i < 2 || !(b[i - 2].is_ascii_alphanumeric() || b[i - 2] == b'_'));
                i += 1;
                while i < b.len() {
                    if backslash && b[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if b[i] == b'\'' {
                        if b.get(i + 1) == Some(&b'\'') {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'"' | b'`' => {
                i += 1;
                while i < b.len() {
                    if b[i] == c {
                        if b.get(i + 1) == Some(&c) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'$' => {
                // $tag$ … $tag$, where the tag is empty or an identifier not starting with
                // a digit (so `$1` parameters are not mistaken for it).
                let prev_word = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
                let mut j = i + 1;
                while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                    j += 1;
                }
                let tag_ok = !prev_word
                    && j < b.len()
                    && b[j] == b'$'
                    && !b.get(i + 1).is_some_and(|d| d.is_ascii_digit());
                if tag_ok {
                    let tag = &sql[i..=j];
                    match sql[j + 1..].find(tag) {
                        Some(end) => i = j + 1 + end + tag.len(),
                        None => i = b.len(),
                    }
                } else {
                    i += 1;
                }
            }
            b';' if depth == 0 => {
                push(&mut out, &sql[start..i]);
                start = i + 1;
                trigger = None;
                i += 1;
            }
            _ => i += 1,
        }
    }
    if let Some(ws) = word_start.take() {
        flush_word(ws, b.len(), start, &mut depth, &mut trigger);
    }
    push(&mut out, &sql[start..]);
    out
}

fn push(out: &mut Vec<String>, stmt: &str) {
    let s = stmt.trim();
    if !strip_comments(s).trim().is_empty() {
        out.push(s.to_string());
    }
}

/// The first few words of a statement, upper-cased, comments skipped.
fn words(s: &str) -> Vec<String> {
    strip_comments(s)
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .take(6)
        .map(|w| w.to_ascii_uppercase())
        .collect()
}

fn strip_comments(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("--") {
            rest = r.find('\n').map_or("", |n| &r[n..]);
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.find("*/").map_or("", |n| &r[n + 2..]);
        } else {
            let ch = rest.chars().next().expect("non-empty");
            out.push(ch);
            rest = &rest[ch.len_utf8()..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn plain_statements_and_comments() {
        let s = split("-- header\nCREATE TABLE a (x INT); -- trailing\n/* block; */ INSERT INTO a VALUES (1);\n\n-- only a comment;\n");
        assert_eq!(
            s,
            vec![
                "-- header\nCREATE TABLE a (x INT)",
                "-- trailing\n/* block; */ INSERT INTO a VALUES (1)"
            ]
        );
    }

    #[test]
    fn strings_identifiers_and_dollar_quotes() {
        let s = split("INSERT INTO t VALUES ('a;b', 'it''s;', E'x\\';y', \"we;ird\");\nCREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;\nDO $body$ BEGIN PERFORM 1; END $body$;\nSELECT $1;");
        assert_eq!(s.len(), 4, "{s:#?}");
        assert!(s[1].ends_with("LANGUAGE sql"));
        assert!(s[2].starts_with("DO $body$"));
    }

    #[test]
    fn sqlite_trigger_bodies_stay_whole() {
        let sql = "CREATE TRIGGER t AFTER UPDATE ON u BEGIN\n  UPDATE v SET n = CASE WHEN 1 THEN 2 ELSE 3 END;\n  DELETE FROM w;\nEND;\nCREATE INDEX i ON u (x);";
        let s = split(sql);
        assert_eq!(s.len(), 2, "{s:#?}");
        assert!(s[0].ends_with("END"));
        assert_eq!(s[1], "CREATE INDEX i ON u (x)");
    }

    #[test]
    fn nested_block_comments() {
        assert_eq!(
            split("/* a /* b; */ c; */ SELECT 1; SELECT 2"),
            vec!["/* a /* b; */ c; */ SELECT 1", "SELECT 2"]
        );
    }
}
