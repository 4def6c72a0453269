//! The SOQL the simulated org understands: `SELECT fields FROM Object [WHERE …] [ORDER BY …]
//! [LIMIT n]` and `SELECT COUNT() FROM …`, with parent fields (`Account.Name`), `AND`/`OR`/`NOT`,
//! parentheses, comparison operators, `IN (…)`, `LIKE`, and Salesforce literals: quoted strings,
//! numbers, `true`/`false`, `null`, dates `2024-05-01`, datetimes in exactly the three forms the
//! SOQL guide allows (`2024-05-01T12:00:00Z`, `…+09:00`, `…-05:00`: no fractions, no `+0000`;
//! SOQL sforce_api_calls_soql_select_dateformats) and the date literals `TODAY`, `YESTERDAY`,
//! `TOMORROW`, `LAST_N_DAYS:n`, `NEXT_N_DAYS:n`, `N_DAYS_AGO:n` (in UTC: the org's users here
//! all live in UTC). Keywords, object and field names are case-insensitive. Anything else is
//! `MALFORMED_QUERY`, as Salesforce refuses what it cannot parse; whether the names and literal
//! types fit the object is the org's check (`Org::query`).

use std::cmp::Ordering;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::Value;

use callsync_core::record::parse_sf_datetime;

#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    /// Selected fields (empty for `COUNT()`).
    pub fields: Vec<String>,
    /// `SELECT COUNT()`: only `totalSize` is answered.
    pub count: bool,
    pub object: String,
    pub filter: Option<Expr>,
    pub order: Vec<(String, bool)>,
    pub limit: Option<usize>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    Null,
    Bool(bool),
    Number(f64),
    Text(String),
    DateTime(DateTime<Utc>),
    Date(NaiveDate),
    /// A date literal (`TODAY`, `LAST_N_DAYS:7`): the days from `.0` up to, not including, `.1`.
    Days(NaiveDate, NaiveDate),
    /// A record Id compared with an Id or reference field: 15 or 18 characters name the same
    /// record (the org turns text literals on such fields into this).
    Id(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Like,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Cmp(String, Op, Literal),
    In(String, Vec<Literal>, bool),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Sym(String),
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' {
            let mut v = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err("unterminated string literal".into()),
                    Some('\\') => {
                        if let Some(n) = chars.get(i + 1) {
                            v.push(*n);
                        }
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(ch) => {
                        v.push(*ch);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(v));
        } else if "(),".contains(c) {
            out.push(Tok::Sym(c.to_string()));
            i += 1;
        } else if "=<>!".contains(c) {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            if ["<=", ">=", "!=", "<>"].contains(&two.as_str()) {
                out.push(Tok::Sym(if two == "<>" { "!=".into() } else { two }));
                i += 2;
            } else {
                out.push(Tok::Sym(c.to_string()));
                i += 1;
            }
        } else {
            let start = i;
            while i < chars.len() && !chars[i].is_whitespace() && !"(),=<>!'".contains(chars[i]) {
                i += 1;
            }
            out.push(Tok::Word(chars[start..i].iter().collect()));
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    today: NaiveDate,
}

/// A SOQL datetime literal: `YYYY-MM-DDThh:mm:ssZ` or `…±hh:mm`, nothing else.
pub(crate) fn datetime_literal(w: &str) -> Option<DateTime<Utc>> {
    if let Some(naive) = w.strip_suffix('Z') {
        if naive.len() != 19 {
            return None;
        }
        return NaiveDateTime::parse_from_str(naive, "%Y-%m-%dT%H:%M:%S")
            .ok()
            .map(|d| d.and_utc());
    }
    if w.len() != 25 {
        return None;
    }
    DateTime::parse_from_str(w, "%Y-%m-%dT%H:%M:%S%:z")
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

fn date_literal(w: &str) -> Option<NaiveDate> {
    (w.len() == 10)
        .then(|| NaiveDate::parse_from_str(w, "%Y-%m-%d").ok())
        .flatten()
}

/// The date literals (SOQL sforce_api_calls_soql_select_dateformats) as day ranges.
fn relative_days(w: &str, today: NaiveDate) -> Option<(NaiveDate, NaiveDate)> {
    let day = chrono::Duration::days;
    let upper = w.to_ascii_uppercase();
    let (name, n) = match upper.split_once(':') {
        Some((name, n)) => (
            name,
            Some(
                n.parse::<i64>()
                    .ok()
                    .filter(|n| (0..=100_000).contains(n))?,
            ),
        ),
        None => (upper.as_str(), None),
    };
    Some(match (name, n) {
        ("TODAY", None) => (today, today + day(1)),
        ("YESTERDAY", None) => (today - day(1), today),
        ("TOMORROW", None) => (today + day(1), today + day(2)),
        // "Starts 00:00:00 of the current day and continues for the past n days."
        ("LAST_N_DAYS", Some(n)) => (today - day(n), today + day(1)),
        ("NEXT_N_DAYS", Some(n)) => (today + day(1), today + day(n + 1)),
        ("N_DAYS_AGO", Some(n)) => (today - day(n), today - day(n - 1)),
        _ => return None,
    })
}

impl Parser {
    fn peek_kw(&self, kw: &str) -> bool {
        matches!(self.toks.get(self.pos), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn kw(&mut self, kw: &str) -> Result<(), String> {
        if self.peek_kw(kw) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("expected {kw} at {}", self.here()))
        }
    }

    fn sym(&mut self, s: &str) -> bool {
        if matches!(self.toks.get(self.pos), Some(Tok::Sym(x)) if x == s) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn here(&self) -> String {
        match self.toks.get(self.pos) {
            Some(Tok::Word(w)) => format!("'{w}'"),
            Some(Tok::Str(s)) => format!("'{s}'"),
            Some(Tok::Sym(s)) => format!("'{s}'"),
            None => "end of query".into(),
        }
    }

    fn ident(&mut self) -> Result<String, String> {
        const RESERVED: [&str; 13] = [
            "SELECT", "FROM", "WHERE", "ORDER", "BY", "LIMIT", "AND", "OR", "NOT", "IN", "LIKE",
            "ASC", "DESC",
        ];
        match self.toks.get(self.pos) {
            Some(Tok::Word(w))
                if !RESERVED.iter().any(|r| r.eq_ignore_ascii_case(w))
                    && w.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                    && w.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') =>
            {
                self.pos += 1;
                Ok(w.clone())
            }
            _ => Err(format!("expected a field name at {}", self.here())),
        }
    }

    fn literal(&mut self) -> Result<Literal, String> {
        let tok = self.toks.get(self.pos).cloned();
        self.pos += 1;
        match tok {
            Some(Tok::Str(s)) => Ok(Literal::Text(s)),
            Some(Tok::Word(w)) => {
                let lower = w.to_ascii_lowercase();
                if lower == "null" {
                    Ok(Literal::Null)
                } else if lower == "true" || lower == "false" {
                    Ok(Literal::Bool(lower == "true"))
                } else if let Some(d) = datetime_literal(&w) {
                    Ok(Literal::DateTime(d))
                } else if let Some(d) = date_literal(&w) {
                    Ok(Literal::Date(d))
                } else if let Some((a, b)) = relative_days(&w, self.today) {
                    Ok(Literal::Days(a, b))
                } else if let Ok(n) = w.parse::<f64>() {
                    Ok(Literal::Number(n))
                } else {
                    Err(format!("unexpected token '{w}': not a literal"))
                }
            }
            _ => Err(format!("expected a value at {}", self.here())),
        }
    }

    fn expr(&mut self) -> Result<Expr, String> {
        let mut left = self.term()?;
        while self.peek_kw("OR") {
            self.pos += 1;
            left = Expr::Or(Box::new(left), Box::new(self.term()?));
        }
        Ok(left)
    }

    fn term(&mut self) -> Result<Expr, String> {
        let mut left = self.factor()?;
        while self.peek_kw("AND") {
            self.pos += 1;
            left = Expr::And(Box::new(left), Box::new(self.factor()?));
        }
        Ok(left)
    }

    fn factor(&mut self) -> Result<Expr, String> {
        if self.peek_kw("NOT") {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.factor()?)));
        }
        if self.sym("(") {
            let e = self.expr()?;
            if !self.sym(")") {
                return Err(format!("expected ')' at {}", self.here()));
            }
            return Ok(e);
        }
        let field = self.ident()?;
        let negate_in = if self.peek_kw("NOT") {
            self.pos += 1;
            true
        } else {
            false
        };
        if self.peek_kw("IN") {
            self.pos += 1;
            if !self.sym("(") {
                return Err("expected '(' after IN".into());
            }
            let mut values = vec![self.literal()?];
            while self.sym(",") {
                values.push(self.literal()?);
            }
            if !self.sym(")") {
                return Err(format!("expected ')' at {}", self.here()));
            }
            return Ok(Expr::In(field, values, negate_in));
        }
        if negate_in {
            return Err("expected IN after NOT".into());
        }
        let op = if self.peek_kw("LIKE") {
            self.pos += 1;
            Op::Like
        } else {
            match self.toks.get(self.pos) {
                Some(Tok::Sym(s)) => {
                    let op = match s.as_str() {
                        "=" => Op::Eq,
                        "!=" => Op::Ne,
                        "<" => Op::Lt,
                        "<=" => Op::Le,
                        ">" => Op::Gt,
                        ">=" => Op::Ge,
                        _ => return Err(format!("unexpected '{s}'")),
                    };
                    self.pos += 1;
                    op
                }
                _ => return Err(format!("expected an operator at {}", self.here())),
            }
        };
        Ok(Expr::Cmp(field, op, self.literal()?))
    }
}

pub fn parse(q: &str) -> Result<Query, String> {
    parse_at(q, Utc::now().date_naive())
}

/// [`parse`] with date literals relative to `today`.
pub(crate) fn parse_at(q: &str, today: NaiveDate) -> Result<Query, String> {
    let mut p = Parser {
        toks: tokenize(q)?,
        pos: 0,
        today,
    };
    p.kw("SELECT")?;
    let mut fields = Vec::new();
    let count = p.peek_kw("COUNT")
        && matches!(p.toks.get(p.pos + 1), Some(Tok::Sym(s)) if s == "(")
        && matches!(p.toks.get(p.pos + 2), Some(Tok::Sym(s)) if s == ")");
    if count {
        p.pos += 3;
    } else {
        fields.push(p.ident()?);
        while p.sym(",") {
            fields.push(p.ident()?);
        }
    }
    p.kw("FROM")?;
    let object = p.ident()?;
    let filter = if p.peek_kw("WHERE") {
        p.pos += 1;
        Some(p.expr()?)
    } else {
        None
    };
    let mut order = Vec::new();
    if p.peek_kw("ORDER") {
        p.pos += 1;
        p.kw("BY")?;
        loop {
            let f = p.ident()?;
            let asc = if p.peek_kw("DESC") {
                p.pos += 1;
                false
            } else {
                if p.peek_kw("ASC") {
                    p.pos += 1;
                }
                true
            };
            order.push((f, asc));
            if !p.sym(",") {
                break;
            }
        }
    }
    let limit = if p.peek_kw("LIMIT") {
        p.pos += 1;
        match p.literal()? {
            Literal::Number(n) if n >= 0.0 => Some(n as usize),
            _ => return Err("LIMIT needs a whole number".into()),
        }
    } else {
        None
    };
    if p.pos != p.toks.len() {
        return Err(format!("unexpected token {}", p.here()));
    }
    if count && !order.is_empty() {
        return Err("ORDER BY is not allowed with COUNT()".into());
    }
    Ok(Query {
        count,
        fields,
        object,
        filter,
        order,
        limit,
    })
}

/// Field value by (case-insensitive) name, following one parent relationship (`Account.Name`).
pub fn field<'a>(row: &'a Value, name: &str) -> Option<&'a Value> {
    let mut cur = row;
    for part in name.split('.') {
        let obj = cur.as_object()?;
        cur = obj.get(part).or_else(|| {
            obj.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(part))
                .map(|(_, v)| v)
        })?;
    }
    Some(cur)
}

fn compare(v: Option<&Value>, lit: &Literal) -> Option<Ordering> {
    let v = v.unwrap_or(&Value::Null);
    match (v, lit) {
        (Value::Null, Literal::Null) => Some(Ordering::Equal),
        (Value::Null, _) | (_, Literal::Null) => None,
        (Value::Bool(a), Literal::Bool(b)) => Some(a.cmp(b)),
        (Value::Number(a), Literal::Number(b)) => a.as_f64()?.partial_cmp(b),
        (Value::String(a), Literal::DateTime(b)) => Some(parse_sf_datetime(a)?.cmp(b)),
        (Value::String(a), Literal::Date(b)) => {
            let d = NaiveDate::parse_from_str(a.get(..10)?, "%Y-%m-%d").ok()?;
            Some(d.cmp(b))
        }
        (Value::String(a), Literal::Id(b)) => {
            if super::schema::same_id(a, b) {
                Some(Ordering::Equal)
            } else {
                Some(a.as_str().cmp(b.as_str()))
            }
        }
        (Value::String(a), Literal::Text(b)) => Some(a.to_lowercase().cmp(&b.to_lowercase())),
        (Value::String(a), Literal::Number(b)) => a.parse::<f64>().ok()?.partial_cmp(b),
        _ => None,
    }
}

fn like(v: Option<&Value>, pattern: &Literal) -> bool {
    let (Some(Value::String(s)), Literal::Text(p)) = (v, pattern) else {
        return false;
    };
    let mut re = String::from("(?i)^");
    for c in p.chars() {
        match c {
            '%' => re.push_str(".*"),
            '_' => re.push('.'),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    regex::Regex::new(&re).is_ok_and(|r| r.is_match(s))
}

pub fn matches(e: &Expr, row: &Value) -> bool {
    match e {
        Expr::Cmp(f, Op::Like, lit) => like(field(row, f), lit),
        Expr::Cmp(f, op, Literal::Days(from, to)) => {
            let day = field(row, f).and_then(Value::as_str).and_then(|s| {
                parse_sf_datetime(s)
                    .map(|d| d.date_naive())
                    .or_else(|| NaiveDate::parse_from_str(s.get(..10)?, "%Y-%m-%d").ok())
            });
            let Some(d) = day else {
                return *op == Op::Ne;
            };
            match op {
                Op::Eq => *from <= d && d < *to,
                Op::Ne => !(*from <= d && d < *to),
                Op::Lt => d < *from,
                Op::Le => d < *to,
                Op::Gt => d >= *to,
                Op::Ge => d >= *from,
                Op::Like => false,
            }
        }
        Expr::Cmp(f, op, lit) => {
            let ord = compare(field(row, f), lit);
            match op {
                Op::Eq => ord == Some(Ordering::Equal),
                Op::Ne => ord != Some(Ordering::Equal),
                Op::Lt => ord == Some(Ordering::Less),
                Op::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
                Op::Gt => ord == Some(Ordering::Greater),
                Op::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
                Op::Like => false,
            }
        }
        Expr::In(f, values, negate) => {
            let hit = values
                .iter()
                .any(|l| compare(field(row, f), l) == Some(Ordering::Equal));
            hit != *negate
        }
        Expr::And(a, b) => matches(a, row) && matches(b, row),
        Expr::Or(a, b) => matches(a, row) || matches(b, row),
        Expr::Not(a) => !matches(a, row),
    }
}

fn sort_key_cmp(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    let rank = |v: Option<&Value>| match v {
        None | Some(Value::Null) => 0,
        _ => 1,
    };
    match (a, b) {
        (Some(Value::String(x)), Some(Value::String(y))) => {
            match (parse_sf_datetime(x), parse_sf_datetime(y)) {
                (Some(dx), Some(dy)) => dx.cmp(&dy),
                _ => x.cmp(y),
            }
        }
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// Sorts rows by the query's ORDER BY (nulls first, as Salesforce does for ASC).
pub fn sort(rows: &mut [Value], order: &[(String, bool)]) {
    rows.sort_by(|a, b| {
        for (f, asc) in order {
            let o = sort_key_cmp(field(a, f), field(b, f));
            let o = if *asc { o } else { o.reverse() };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_what_the_agent_sends() {
        let q = parse(
            "SELECT Id, Name, Account.Name, Phone FROM Contact WHERE SystemModstamp >= 2024-05-01T12:00:00Z AND (IsPersonAccount = false OR Phone != null) ORDER BY SystemModstamp, Id DESC LIMIT 2000",
        )
        .unwrap();
        assert_eq!(q.fields, ["Id", "Name", "Account.Name", "Phone"]);
        assert_eq!(q.object, "Contact");
        assert_eq!(
            q.order,
            [("SystemModstamp".into(), true), ("Id".into(), false)]
        );
        assert_eq!(q.limit, Some(2000));
    }

    #[test]
    fn malformed_queries_say_where() {
        for (q, want) in [
            ("SELECT FROM Contact", "expected a field name"),
            ("SELECT Id Contact", "expected FROM"),
            ("SELECT Id FROM Contact WHERE Name = 'x", "unterminated"),
            (
                "SELECT Id FROM Contact WHERE Name ~ 'x'",
                "expected an operator",
            ),
            ("SELECT Id FROM Contact LIMIT x", "not a literal"),
            ("SELECT Id FROM Contact extra", "unexpected token"),
        ] {
            let e = parse(q).unwrap_err();
            assert!(e.contains(want), "{q}: {e}");
        }
    }

    #[test]
    fn evaluates_filters() {
        let row = json!({"Id": "003A", "Name": "O'Brien", "IsDeleted": false, "N": 5,
            "SystemModstamp": "2024-05-01T12:00:00.000+0000", "Account": {"Name": "Acme"}, "Phone": null});
        let t = |w: &str| {
            matches(
                &parse(&format!("SELECT Id FROM Contact WHERE {w}"))
                    .unwrap()
                    .filter
                    .unwrap(),
                &row,
            )
        };
        assert!(t("SystemModstamp >= 2024-05-01T12:00:00Z"));
        assert!(t("SystemModstamp > 2024-05-01T20:59:59+09:00"));
        assert!(!t("SystemModstamp > 2024-05-01T12:00:00Z"));
        assert!(t("SystemModstamp < 2024-05-02"));
        assert!(t("Name = 'o\\'brien'"));
        assert!(t("Account.Name = 'Acme' AND IsDeleted = false"));
        assert!(t("Phone = null"));
        assert!(!t("Phone != null"));
        assert!(t("Id IN ('003B', '003A')"));
        assert!(t("Id NOT IN ('003B')"));
        assert!(t("Name LIKE 'o%'"));
        assert!(t("N > 4 AND NOT N > 5"));
        assert!(t("(N = 1 OR N = 5) AND Id = '003A'"));
    }

    #[test]
    fn sorts_datetimes_and_ids() {
        let mut rows = vec![
            json!({"Id": "b", "S": "2024-05-01T12:00:00.000+0000"}),
            json!({"Id": "a", "S": "2024-05-01T12:00:00.000+0000"}),
            json!({"Id": "c", "S": "2023-01-01T00:00:00.000+0000"}),
        ];
        sort(&mut rows, &[("S".into(), true), ("Id".into(), true)]);
        let ids: Vec<&str> = rows.iter().map(|r| r["Id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["c", "a", "b"]);
    }
}
