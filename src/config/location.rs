//! Where a key is in the config file, so that every error can say `file:line` as well as the
//! key: validation works on serde structs, which have forgotten where their values were, so
//! the text is parsed again (with spans) only when there is an error to place.

use std::ops::Range;

use toml_edit::{ImDocument, Item, Table, TableLike, Value};

/// The 1-based line of `key`, named as errors name it (`server[0].route[1].upstream`,
/// `storage.s3.bucket`): the line of its value, or, for a key that was left out, of the
/// deepest table on the way that is in the file. `None` when nothing on the way is (a
/// default listener, say) or the text does not parse.
pub(crate) fn line_of(text: &str, key: &str) -> Option<usize> {
    let doc = ImDocument::parse(text).ok()?;
    let mut item = doc.as_item();
    let mut span = None;
    for segment in segments(key) {
        let next = match segment {
            Segment::Key(k) => item.get(k),
            Segment::Index(i) => item.get(i),
        };
        let Some(next) = next else { break };
        item = next;
        span = first_span(item).or(span);
    }
    span.map(|s| line_col(text, s.start).0)
}

/// The key at byte `offset` (where a serde error points), named as [`line_of`] takes it.
pub(crate) fn key_at(text: &str, offset: usize) -> Option<String> {
    let doc = ImDocument::parse(text).ok()?;
    let mut path = Vec::new();
    in_table(doc.as_table(), offset, &mut path).then(|| path.join("."))
}

/// 1-based line and column of byte `offset`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, col)
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// `server[0].route[1].upstream` → server, 0, route, 1, upstream.
fn segments(key: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in key.split('.') {
        let name = part.split('[').next().unwrap_or(part);
        if !name.is_empty() {
            out.push(Segment::Key(name));
        }
        for index in part.split('[').skip(1) {
            if let Ok(i) = index.trim_end_matches(']').parse() {
                out.push(Segment::Index(i));
            }
        }
    }
    out
}

/// An item's own span or, for a table only implied by its sub-tables (`[server.auth]`
/// without `[server]`), the first of its children's.
fn first_span(item: &Item) -> Option<Range<usize>> {
    item.span().or_else(|| match item {
        Item::Table(t) => t
            .iter()
            .filter_map(|(_, v)| first_span(v))
            .min_by_key(|s| s.start),
        Item::ArrayOfTables(a) => a.iter().find_map(|t| t.span()),
        _ => None,
    })
}

/// Pushes onto `path` the keys leading to `offset` within `table`; true when found.
fn in_table(table: &Table, offset: usize, path: &mut Vec<String>) -> bool {
    in_table_like(table, offset, path)
}

fn in_table_like(table: &dyn TableLike, offset: usize, path: &mut Vec<String>) -> bool {
    for (name, item) in table.iter() {
        let key_here = table
            .key(name)
            .and_then(|k| k.span())
            .is_some_and(|s| s.contains(&offset));
        path.push(name.to_owned());
        if key_here || in_item(item, offset, path) {
            return true;
        }
        path.pop();
    }
    false
}

fn in_item(item: &Item, offset: usize, path: &mut Vec<String>) -> bool {
    if let Item::Value(v) = item {
        return v.span().is_some_and(|s| s.contains(&offset)) && {
            in_value(v, offset, path);
            true
        };
    }
    match item {
        // Look inside every table first: its own span covers its header (and may cover its body).
        Item::Table(t) => {
            in_table(t, offset, path) || t.span().is_some_and(|s| s.contains(&offset))
        }
        Item::ArrayOfTables(a) => a.iter().enumerate().any(|(i, t)| {
            let mut inner = Vec::new();
            let found =
                in_table(t, offset, &mut inner) || t.span().is_some_and(|s| s.contains(&offset));
            if found {
                push_index(path, i);
                path.extend(inner);
            }
            found
        }),
        _ => false,
    }
}

/// Within a value that holds `offset`: an inline table or array may name a deeper key.
fn in_value(value: &Value, offset: usize, path: &mut Vec<String>) {
    if let Some(t) = value.as_inline_table() {
        in_table_like(t, offset, path);
    } else if let Some(a) = value.as_array() {
        if let Some((i, v)) = a
            .iter()
            .enumerate()
            .find(|(_, v)| v.span().is_some_and(|s| s.contains(&offset)))
        {
            push_index(path, i);
            in_value(v, offset, path);
        }
    }
}

/// `route` + 1 → `route[1]`.
fn push_index(path: &mut [String], i: usize) {
    if let Some(last) = path.last_mut() {
        last.push_str(&format!("[{i}]"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# wharf\n\
        [[listener]]\n\
        address = \"0.0.0.0:5000\"\n\
        \n\
        [[server]]\n\
        names = [\"a\"]\n\
        [[server.route]]\n\
        path = \"/\"\n\
        [[server.route]]\n\
        path = \"/x/\"\n\
        upstream = \"nope\"\n\
        [server.auth]\n\
        access = [{ repos = \"*\", who = [\"anonymous\"] }, { repos = \"Team/*\" }]\n\
        [storage.s3]\n\
        bucket = \"b\"\n";

    #[test]
    fn keys_are_found_through_arrays_of_tables_and_inline_tables() {
        assert_eq!(line_of(TEXT, "listener[0].address"), Some(3));
        assert_eq!(line_of(TEXT, "server[0].route[1].upstream"), Some(11));
        assert_eq!(line_of(TEXT, "server[0].auth.access[1]"), Some(13));
        assert_eq!(line_of(TEXT, "storage.s3.bucket"), Some(15));
    }

    #[test]
    fn a_missing_key_is_placed_at_its_table() {
        assert_eq!(line_of(TEXT, "storage.s3.region"), Some(14));
        assert_eq!(line_of(TEXT, "server[0].route[0].upstream"), Some(7));
        // `[storage]` itself is only implied by `[storage.s3]`.
        assert_eq!(line_of(TEXT, "storage.root"), Some(14));
        assert_eq!(line_of(TEXT, "admin.address"), None);
    }

    #[test]
    fn offsets_name_their_key() {
        let at = |needle: &str| key_at(TEXT, TEXT.find(needle).unwrap());
        assert_eq!(
            at("\"nope\"").as_deref(),
            Some("server[0].route[1].upstream")
        );
        assert_eq!(
            at("upstream").as_deref(),
            Some("server[0].route[1].upstream")
        );
        assert_eq!(at("bucket").as_deref(), Some("storage.s3.bucket"));
        assert_eq!(
            at("\"Team/*\"").as_deref(),
            Some("server[0].auth.access[1].repos")
        );
        assert_eq!(at("0.0.0.0").as_deref(), Some("listener[0].address"));
    }

    #[test]
    fn lines_and_columns_count_from_one() {
        assert_eq!(line_col("a\nbc", 0), (1, 1));
        assert_eq!(line_col("a\nbc", 3), (2, 2));
    }
}
