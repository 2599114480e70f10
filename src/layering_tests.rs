//! The module layering of docs/ARCHITECTURE.md, checked: which top-level module may name
//! which (`crate::` paths in the source), and which files may use PyO3. A new edge fails
//! this test; an edge that is allowed here is an architecture decision, written down in
//! docs/ARCHITECTURE.md first.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The edges the architecture allows: `(from, to)` between top-level modules. Lower
/// layers never name higher ones.
const ALLOWED: &[(&str, &str)] = &[
    ("cli", "logs"),
    ("cli", "client_timeouts"),
    ("frontend", "client_timeouts"),
    // `sync` is the loom shim: std's locks and atomics, or loom's under `make loom`.
    ("handoff", "sync"),
    ("frontend", "sync"),
    ("wsgi", "handoff"),
    // The access-control scripts: the front end checks what needs no Python (`auth`),
    // the Python side calls them with `auth`'s answers and arithmetic (401, 403, Digest).
    ("auth", "cli"),
    ("auth", "handoff"),
    ("auth", "logs"),
    ("frontend", "auth"),
    ("wsgi", "auth"),
    // They build the front end's `auth::Gate` from the configuration.
    ("embedded", "auth"),
    ("supervisor", "auth"),
    ("wsgi", "logs"),
    ("frontend", "handoff"),
    ("frontend", "logs"),
    ("frontend", "shutdown"),
    ("frontend", "daemon"),
    ("process", "cli"),
    ("process", "logs"),
    ("process", "wsgi"),
    ("daemon", "cli"),
    ("daemon", "handoff"),
    ("daemon", "process"),
    ("daemon", "logs"),
    ("daemon", "shutdown"),
    ("daemon", "wsgi"),
    ("embedded", "cli"),
    ("embedded", "frontend"),
    // The front end's configuration, built the same way by both modes.
    ("frontend_setup", "cli"),
    ("frontend_setup", "frontend"),
    ("frontend_setup", "process"),
    ("frontend_setup", "auth"),
    ("embedded", "frontend_setup"),
    ("supervisor", "frontend_setup"),
    ("embedded", "logs"),
    ("embedded", "process"),
    ("embedded", "shutdown"),
    ("embedded", "wsgi"),
    // A managed service's process (`--service-script`): the error log, the interpreter
    // set up as for the application, the script run as the application's is.
    ("service", "cli"),
    ("service", "logs"),
    ("service", "process"),
    ("service", "wsgi"),
    ("supervisor", "cli"),
    ("supervisor", "daemon"),
    ("supervisor", "frontend"),
    ("supervisor", "logs"),
    ("supervisor", "process"),
    ("supervisor", "shutdown"),
    // TLS (`tls`: certificates, handshake facts) and the front door's rules
    // (`front_door`: virtual hosts, --https-only, trusted proxies): leaves that `cli`
    // validates with and the front end applies.
    ("cli", "tls"),
    ("cli", "front_door"),
    ("frontend", "tls"),
    ("frontend", "front_door"),
    // The front door reads the Host header as the environ does (`handoff::Host`).
    ("front_door", "handoff"),
    // FastCGI's records (`fastcgi`: pure, no I/O), which the front end speaks to php-fpm.
    ("frontend", "fastcgi"),
    // Reverse proxying (`proxy`: the rules, the header rules, hyper's client): `cli`
    // builds the rules, the front end forwards through them.
    ("cli", "proxy"),
    ("frontend", "proxy"),
    ("proxy", "handoff"),
    ("proxy", "logs"),
];

/// The files that may use PyO3: the Python side of the crate.
fn may_use_pyo3(relative: &str) -> bool {
    relative == "lib.rs"
        || relative.starts_with("wsgi/")
        || relative == "embedded.rs"
        || relative == "service.rs"
        || relative == "daemon/worker.rs"
        || relative == "process/executor.rs"
}

fn source_files(directory: &Path, files: &mut Vec<PathBuf>) {
    for entry in fs_err::read_dir(directory).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            source_files(&path, files);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            files.push(path);
        }
    }
}

/// The top-level module a file belongs to (`frontend` for `frontend/body.rs`).
fn top_level(relative: &str) -> &str {
    let first = relative.split('/').next().unwrap_or(relative);
    first.strip_suffix(".rs").unwrap_or(first)
}

/// The top-level modules a line of code names through `crate::`.
fn named_modules(line: &str) -> Vec<String> {
    let code = line.split("//").next().unwrap_or("");
    let mut modules = Vec::new();
    for (position, _) in code.match_indices("crate::") {
        let rest = &code[position + "crate::".len()..];
        let names: Vec<&str> = match rest.strip_prefix('{') {
            // `crate::{a::b, c}`: each item of the group.
            Some(group) => group
                .split('}')
                .next()
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .collect(),
            None => vec![rest],
        };
        for name in names {
            let module: String = name
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !module.is_empty() {
                modules.push(module);
            }
        }
    }
    modules
}

struct Scan {
    edges: BTreeSet<(String, String)>,
    pyo3_users: BTreeSet<String>,
}

fn scan() -> Scan {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&root, &mut files);
    let mut scan = Scan {
        edges: BTreeSet::new(),
        pyo3_users: BTreeSet::new(),
    };
    for file in files {
        let relative = file
            .strip_prefix(&root)
            .expect("under src/")
            .to_string_lossy()
            .replace('\\', "/");
        if relative == "layering_tests.rs" {
            continue;
        }
        let from = top_level(&relative).to_owned();
        let text = fs_err::read_to_string(&file).expect("a readable source file");
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or("");
            if code.contains("pyo3::") || code.contains("use pyo3") {
                scan.pyo3_users.insert(relative.clone());
            }
            for to in named_modules(line) {
                if to != from && from != "lib" {
                    scan.edges.insert((from.clone(), to));
                }
            }
        }
    }
    scan
}

fn as_set(edges: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    edges
        .iter()
        .map(|(from, to)| ((*from).to_owned(), (*to).to_owned()))
        .collect()
}

#[test]
fn modules_name_only_the_layers_below_them() {
    let scan = scan();
    let allowed = as_set(ALLOWED);
    let new: Vec<_> = scan
        .edges
        .iter()
        .filter(|edge| !allowed.contains(*edge))
        .collect();
    assert!(
        new.is_empty(),
        "edges between top-level modules that the layering forbids: {new:?}\n\
         (see docs/ARCHITECTURE.md; an allowed edge is an architecture change)"
    );
}

#[test]
fn only_the_python_side_uses_pyo3() {
    let scan = scan();
    let outside: Vec<_> = scan
        .pyo3_users
        .iter()
        .filter(|file| !may_use_pyo3(file))
        .collect();
    assert!(
        outside.is_empty(),
        "PyO3 used outside the Python side: {outside:?}"
    );
}

#[test]
fn the_allowed_layering_has_no_cycle() {
    let allowed = as_set(ALLOWED);
    let modules: BTreeSet<&String> = allowed.iter().flat_map(|(a, b)| [a, b]).collect();
    // Repeatedly remove modules that name nothing left; a cycle leaves some behind.
    let mut left: BTreeSet<&String> = modules;
    loop {
        let leaves: Vec<&String> = left
            .iter()
            .copied()
            .filter(|module| {
                !allowed
                    .iter()
                    .any(|(from, to)| from == *module && left.contains(to))
            })
            .collect();
        if leaves.is_empty() {
            break;
        }
        for leaf in leaves {
            left.remove(leaf);
        }
    }
    assert!(
        left.is_empty(),
        "the allowed edges form a cycle among {left:?}"
    );
}

#[test]
fn crate_paths_are_read_in_every_form() {
    assert_eq!(
        named_modules("use crate::logs::{Level, error_log};"),
        ["logs"]
    );
    assert_eq!(
        named_modules("use crate::{cli::Config, wsgi};"),
        ["cli", "wsgi"]
    );
    assert_eq!(
        named_modules("    x // crate::wsgi in a comment"),
        Vec::<String>::new()
    );
    assert_eq!(
        named_modules("let a = crate::frontend::serve(crate::shutdown::Shutdown::new());"),
        ["frontend", "shutdown"]
    );
}
