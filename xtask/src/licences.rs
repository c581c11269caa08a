//! `cargo xtask licences`: every package of the resolved dependency graph has a licence that
//! `allowed-licences.txt` (at the workspace root) allows.
//!
//! The graph is `cargo metadata --locked --offline --all-features` without `--filter-platform`:
//! every platform, every feature of the workspace, and normal, build and dev dependencies alike
//! (dev and build dependencies are not shipped, but they are compiled here and in CI). The
//! crates' manifests come from cargo's cache; `cargo fetch --locked` fills it first (it touches
//! the network only for crates of `Cargo.lock` that are not there yet).
//!
//! A package's `license` field is an SPDX expression: `OR` (one allowed alternative is enough),
//! `AND` (every part must be allowed; it binds tighter than `OR`), parentheses, `WITH` (the
//! licence and the exception must both be allowed), a trailing `+` ("or any later version": the
//! version named is allowed if it is), and crates.io's legacy `/`, which means `OR`. Licence
//! names compare without regard to case. A package without a `license` field (a `license-file`
//! instead, or nothing) passes only when the allow-list names it, with a reason.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, bail};
use serde::Deserialize;

use crate::devstack;

/// The allow-list, at the workspace root.
pub(crate) const ALLOW_LIST: &str = "allowed-licences.txt";

/// Checks every package's licence against the allow-list; prints a summary, and each package
/// that fails with the reason.
pub(crate) fn run() -> anyhow::Result<()> {
    let layout = devstack::Layout::new();
    let path = layout.workspace.join(ALLOW_LIST);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let policy = Policy::parse(&text).with_context(|| format!("in {}", path.display()))?;
    let metadata = metadata(&layout.workspace)?;
    report(&policy, &metadata)
}

/// What the allow-list allows.
#[derive(Debug, Default)]
struct Policy {
    /// SPDX licence identifiers.
    licences: Vec<String>,
    /// SPDX exception identifiers (the right side of `WITH`).
    exceptions: Vec<String>,
    /// Packages without a `license` field, by name, with the reason they are acceptable.
    packages: BTreeMap<String, String>,
}

impl Policy {
    /// One entry a line, `#` starts a comment: `licence ID`, `exception ID`, or
    /// `package NAME REASON…`.
    fn parse(text: &str) -> anyhow::Result<Self> {
        let mut policy = Self::default();
        for (number, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let (keyword, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let rest = rest.trim();
            let single = |what: &str| {
                if rest.is_empty() || rest.contains(char::is_whitespace) {
                    bail!("line {}: `{keyword}` takes one {what}", number + 1);
                }
                Ok(rest.to_owned())
            };
            match keyword {
                "licence" => policy.licences.push(single("SPDX licence identifier")?),
                "exception" => policy.exceptions.push(single("SPDX exception identifier")?),
                "package" => {
                    let (name, reason) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                    if name.is_empty() || reason.trim().is_empty() {
                        bail!("line {}: `package` takes a package name and a reason", number + 1);
                    }
                    policy.packages.insert(name.to_owned(), reason.trim().to_owned());
                }
                _ => bail!(
                    "line {}: unknown entry `{keyword}` (licence, exception or package)",
                    number + 1
                ),
            }
        }
        Ok(policy)
    }

    fn allows_licence(&self, id: &str) -> bool {
        self.licences.iter().any(|allowed| allowed.eq_ignore_ascii_case(id))
    }

    fn allows_exception(&self, id: &str) -> bool {
        self.exceptions.iter().any(|allowed| allowed.eq_ignore_ascii_case(id))
    }

    /// Whether a package with this `license` field (or none) is allowed; why not, if it is not.
    fn check(&self, name: &str, licence: Option<&str>) -> Result<(), String> {
        match licence {
            Some(licence) => {
                let expression = Expression::parse(licence)
                    .map_err(|e| format!("not a valid SPDX expression: {e}"))?;
                self.evaluate(&expression).map_err(|mut refused| {
                    refused.sort();
                    refused.dedup();
                    format!("not on the allow-list: {}", refused.join(", "))
                })
            }
            None if self.packages.contains_key(name) => Ok(()),
            None => Err(format!(
                "no `license` field; read its licence file and name the package in {ALLOW_LIST} \
                 (`package {name} <reason>`) if it is acceptable"
            )),
        }
    }

    /// Ok if the expression can be satisfied with allowed licences; else the licences and
    /// exceptions in the way.
    fn evaluate(&self, expression: &Expression) -> Result<(), Vec<String>> {
        match expression {
            Expression::Licence { id, or_later, exception } => {
                let mut refused = Vec::new();
                // `+` (or later): the version named is one of the choices.
                if !self.allows_licence(id) {
                    refused.push(format!("{id}{}", if *or_later { "+" } else { "" }));
                }
                if let Some(exception) = exception.as_ref().filter(|e| !self.allows_exception(e)) {
                    refused.push(format!("the exception {exception}"));
                }
                if refused.is_empty() { Ok(()) } else { Err(refused) }
            }
            Expression::And(left, right) => match (self.evaluate(left), self.evaluate(right)) {
                (Ok(()), Ok(())) => Ok(()),
                (Err(refused), Ok(())) | (Ok(()), Err(refused)) => Err(refused),
                (Err(left), Err(right)) => Err([left, right].concat()),
            },
            Expression::Or(left, right) => match (self.evaluate(left), self.evaluate(right)) {
                (Ok(()), _) | (_, Ok(())) => Ok(()),
                (Err(left), Err(right)) => Err([left, right].concat()),
            },
        }
    }
}

/// An SPDX licence expression.
#[derive(Debug, PartialEq, Eq)]
enum Expression {
    Licence { id: String, or_later: bool, exception: Option<String> },
    And(Box<Expression>, Box<Expression>),
    Or(Box<Expression>, Box<Expression>),
}

impl Expression {
    fn parse(text: &str) -> Result<Self, String> {
        let tokens = tokenize(text);
        let mut parser = Parser { tokens: &tokens, next: 0 };
        let expression = parser.or()?;
        match parser.peek() {
            None => Ok(expression),
            Some(token) => Err(format!("unexpected `{token}`")),
        }
    }
}

/// Words, parentheses and `/`.
fn tokenize(text: &str) -> Vec<&str> {
    let mut tokens = Vec::new();
    let mut start = None;
    for (index, c) in text.char_indices() {
        let single = matches!(c, '(' | ')' | '/');
        if c.is_whitespace() || single {
            if let Some(begin) = start.take() {
                tokens.push(&text[begin..index]);
            }
            if single {
                tokens.push(&text[index..index + 1]);
            }
        } else if start.is_none() {
            start = Some(index);
        }
    }
    if let Some(begin) = start {
        tokens.push(&text[begin..]);
    }
    tokens
}

/// Recursive descent, loosest first: `OR` (and `/`), then `AND`, then `WITH`.
struct Parser<'a> {
    tokens: &'a [&'a str],
    next: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&'a str> {
        self.tokens.get(self.next).copied()
    }

    fn take(&mut self) -> Option<&'a str> {
        let token = self.tokens.get(self.next).copied();
        self.next += 1;
        token
    }

    fn or(&mut self) -> Result<Expression, String> {
        let mut left = self.and()?;
        while matches!(self.peek(), Some("OR" | "/")) {
            self.next += 1;
            left = Expression::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expression, String> {
        let mut left = self.primary()?;
        while self.peek() == Some("AND") {
            self.next += 1;
            left = Expression::And(Box::new(left), Box::new(self.primary()?));
        }
        Ok(left)
    }

    fn primary(&mut self) -> Result<Expression, String> {
        match self.take() {
            None => Err("a licence is missing at the end".to_owned()),
            Some("(") => {
                let inner = self.or()?;
                match self.take() {
                    Some(")") => Ok(inner),
                    _ => Err("a `(` is not closed".to_owned()),
                }
            }
            Some(token @ (")" | "/" | "OR" | "AND" | "WITH")) => {
                Err(format!("a licence is missing before `{token}`"))
            }
            Some(token) => {
                let (id, or_later) = match token.strip_suffix('+') {
                    Some(id) => (id, true),
                    None => (token, false),
                };
                if !is_identifier(id) {
                    return Err(format!("`{token}` is not a licence identifier"));
                }
                let exception = if self.peek() == Some("WITH") {
                    self.next += 1;
                    match self.take() {
                        Some(exception) if is_identifier(exception) => Some(exception.to_owned()),
                        _ => return Err(format!("`{id} WITH` names no exception")),
                    }
                } else {
                    None
                };
                Ok(Expression::Licence { id: id.to_owned(), or_later, exception })
            }
        }
    }
}

/// Letters, digits, `.`, `-` (SPDX identifiers), and `:` (`DocumentRef-…:LicenseRef-…`); not an
/// operator.
fn is_identifier(token: &str) -> bool {
    !token.is_empty()
        && !matches!(token, "OR" | "AND" | "WITH")
        && token.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
}

/// What `cargo metadata` tells of the graph.
#[derive(Debug, Deserialize)]
struct Metadata {
    packages: Vec<Package>,
    workspace_members: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Package {
    id: String,
    name: String,
    version: String,
    license: Option<String>,
    license_file: Option<String>,
}

/// `cargo fetch --locked`, then `cargo metadata --format-version 1 --locked --offline
/// --all-features`.
fn metadata(workspace: &Path) -> anyhow::Result<Metadata> {
    crate::cross::status(
        crate::cargo::command().current_dir(workspace).args(["fetch", "--locked"]),
        "cargo fetch --locked",
    )?;
    let arguments =
        ["metadata", "--format-version", "1", "--locked", "--offline", "--all-features"];
    eprintln!("cargo {}", arguments.join(" "));
    let output = crate::cargo::command()
        .current_dir(workspace)
        .args(arguments)
        .output()
        .context("cannot run cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    serde_json::from_slice(&output.stdout).context("cannot read cargo metadata's output")
}

/// Prints the licences counted and every package that fails; fails if one does.
fn report(policy: &Policy, metadata: &Metadata) -> anyhow::Result<()> {
    let mut counts = BTreeMap::<&str, usize>::new();
    let mut failures = Vec::new();
    for package in &metadata.packages {
        let licence = package.license.as_deref();
        *counts.entry(licence.unwrap_or("(no `license` field)")).or_default() += 1;
        if let Err(reason) = policy.check(&package.name, licence) {
            failures.push((package, reason));
        }
    }
    let ours = metadata.packages.iter().filter(|p| metadata.workspace_members.contains(&p.id));
    println!(
        "{} packages (every platform and feature; normal, build and dev dependencies; {} of them \
         this workspace's), by licence:",
        metadata.packages.len(),
        ours.count()
    );
    let mut counts: Vec<_> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    for (licence, count) in counts {
        println!("{count:>6}  {licence}");
    }
    for name in policy.packages.keys() {
        let present: Vec<_> = metadata.packages.iter().filter(|p| &p.name == name).collect();
        if present.is_empty() {
            println!("note: {ALLOW_LIST} names package {name}, which is not in the graph");
        } else if present.iter().all(|p| p.license.is_some()) {
            println!("note: {ALLOW_LIST} names package {name}, which has a `license` field now");
        }
    }
    if failures.is_empty() {
        println!("every package's licence is allowed by {ALLOW_LIST}");
        return Ok(());
    }
    for (package, reason) in &failures {
        let licence = match (&package.license, &package.license_file) {
            (Some(licence), _) => format!("`{licence}`"),
            (None, Some(file)) => format!("licence file {file}"),
            (None, None) => "no licence given".to_owned(),
        };
        println!("FAIL {} {} ({licence}): {reason}", package.name, package.version);
    }
    bail!(
        "{} of {} packages have a licence {ALLOW_LIST} does not allow",
        failures.len(),
        metadata.packages.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::parse(
            "# a comment\n\
             licence MIT\n\
             licence Apache-2.0  # a comment after an entry\n\
             licence ISC\n\
             licence MPL-2.0\n\
             exception LLVM-exception\n\
             package unlabelled-crate its LICENSE file is the MIT text\n",
        )
        .unwrap()
    }

    #[test]
    fn spdx_expressions() {
        let policy = policy();
        let cases = [
            // One licence.
            ("MIT", true),
            ("mit", true),
            ("GPL-3.0-only", false),
            // OR: one allowed alternative is enough.
            ("MIT OR Apache-2.0", true),
            ("GPL-3.0-only OR MIT", true),
            ("GPL-3.0-only OR LGPL-2.1-or-later", false),
            ("MIT OR Apache-2.0 OR LGPL-2.1-or-later", true),
            // AND: every part.
            ("Apache-2.0 AND ISC", true),
            ("MIT AND GPL-2.0-only", false),
            // AND binds tighter than OR, on either side.
            ("MIT OR GPL-2.0-only AND LGPL-2.1-only", true),
            ("GPL-2.0-only AND LGPL-2.1-only OR MIT", true),
            ("GPL-2.0-only AND MIT OR LGPL-2.1-only", false),
            // Parentheses.
            ("(MIT OR Apache-2.0) AND ISC", true),
            ("(MIT OR GPL-2.0-only) AND (LGPL-2.1-only OR ISC)", true),
            ("(GPL-2.0-only OR LGPL-2.1-only) AND MIT", false),
            ("MIT AND (GPL-2.0-only OR LGPL-2.1-only)", false),
            ("((MIT))", true),
            ("ISC AND (Apache-2.0 OR ISC) AND (Apache-2.0 OR ISC OR MIT-0)", true),
            // WITH: the licence and the exception.
            ("Apache-2.0 WITH LLVM-exception", true),
            ("Apache-2.0 WITH LLVM-exception OR Apache-2.0 OR MIT", true),
            ("GPL-2.0-only WITH Classpath-exception-2.0", false),
            ("Apache-2.0 WITH Some-other-exception", false),
            ("Apache-2.0 WITH Some-other-exception OR MIT", true),
            // The legacy `/` means OR.
            ("MIT/Apache-2.0", true),
            ("Apache-2.0 / MIT", true),
            ("GPL-2.0-only/MIT", true),
            ("GPL-2.0-only / LGPL-2.1-only", false),
            ("Unlicense/MIT", true),
            // `+`: that version or a later one; the version named is allowed.
            ("MPL-2.0+", true),
            ("GPL-2.0+", false),
            // A reference to a licence text elsewhere is on no list.
            ("LicenseRef-LICENSE", false),
        ];
        for (licence, allowed) in cases {
            let result = policy.check("some-crate", Some(licence));
            assert_eq!(result.is_ok(), allowed, "{licence}: {result:?}");
        }
        // A package without a `license` field passes when the allow-list names it, not otherwise.
        assert!(policy.check("unlabelled-crate", None).is_ok());
        let unlisted = policy.check("other-crate", None).unwrap_err();
        assert!(unlisted.contains("package other-crate <reason>"), "{unlisted}");
    }

    #[test]
    fn spdx_structure_and_errors() {
        let licence = |id: &str| {
            Box::new(Expression::Licence { id: id.to_owned(), or_later: false, exception: None })
        };
        assert_eq!(
            Expression::parse("A OR B AND C").unwrap(),
            Expression::Or(licence("A"), Box::new(Expression::And(licence("B"), licence("C"))))
        );
        assert_eq!(
            Expression::parse("(A OR B) AND C").unwrap(),
            Expression::And(Box::new(Expression::Or(licence("A"), licence("B"))), licence("C"))
        );
        assert_eq!(Expression::parse("A/B").unwrap(), Expression::parse("A OR B").unwrap());
        assert_eq!(
            Expression::parse("Apache-2.0 WITH LLVM-exception").unwrap(),
            Expression::Licence {
                id: "Apache-2.0".to_owned(),
                or_later: false,
                exception: Some("LLVM-exception".to_owned()),
            }
        );
        for malformed in [
            "",
            "MIT OR",
            "OR MIT",
            "MIT AND AND Apache-2.0",
            "(MIT",
            "MIT)",
            "MIT Apache-2.0",
            "MIT WITH",
            "WITH LLVM-exception",
            "(MIT) WITH LLVM-exception",
            "MIT /",
            "MIT, Apache-2.0",
        ] {
            assert!(Expression::parse(malformed).is_err(), "{malformed:?} parsed");
            assert!(policy().check("some-crate", Some(malformed)).is_err(), "{malformed:?}");
        }
    }

    #[test]
    fn allow_list_file() {
        let policy = Policy::parse(include_str!("../../allowed-licences.txt")).unwrap();
        // Strong and weak copyleft beyond file level stays off the list.
        for id in &policy.licences {
            let upper = id.to_ascii_uppercase();
            assert!(
                !["GPL", "AGPL", "LGPL", "SSPL", "EUPL", "OSL", "CC-BY-SA"]
                    .iter()
                    .any(|copyleft| upper.starts_with(copyleft)),
                "{id} on the allow-list"
            );
        }
        for bad in ["licence", "licence MIT Apache-2.0", "package name", "allow MIT"] {
            assert!(Policy::parse(bad).is_err(), "{bad:?} parsed");
        }
    }
}
