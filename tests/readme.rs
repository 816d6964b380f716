//! The README's Rust examples compile as written. The README is the crate's documentation,
//! so rustdoc builds and runs each one; this test keeps them whole programs without
//! rustdoc's hidden `# ` lines, which a reader who pastes them would not have.

/// The README's ```rust blocks: (first line number, lines).
fn rust_blocks(readme: &str) -> Vec<(usize, Vec<&str>)> {
    let mut blocks = Vec::new();
    let mut open: Option<(bool, usize, Vec<&str>)> = None;
    for (n, line) in readme.lines().enumerate() {
        match (&mut open, line.trim_start().starts_with("```")) {
            (None, true) => open = Some((line.trim() == "```rust", n + 1, Vec::new())),
            (Some(_), true) => {
                if let Some((true, start, lines)) = open.take() {
                    blocks.push((start, lines));
                }
            }
            (Some((_, _, lines)), false) => lines.push(line),
            (None, false) => {}
        }
    }
    blocks
}

#[test]
fn readme_rust_examples_are_whole_programs_without_hidden_lines() {
    let blocks = rust_blocks(include_str!("../README.md"));
    assert!(!blocks.is_empty(), "the README has no Rust example");
    for (start, lines) in blocks {
        for (i, line) in lines.iter().enumerate() {
            let hidden = line.trim_start() == "#" || line.trim_start().starts_with("# ");
            assert!(
                !hidden,
                "README.md:{}: a hidden doctest line: {line}",
                start + 1 + i
            );
        }
        assert!(
            lines.iter().any(|l| l.contains("fn main")),
            "README.md:{start}: the example is not a whole program (no fn main)"
        );
    }
}

#[test]
fn hidden_lines_are_found() {
    let readme = "text\n```rust\n# fn main() {}\n```\n```sh\n# a shell comment\n```\n";
    let blocks = rust_blocks(readme);
    assert_eq!(blocks, [(2, vec!["# fn main() {}"])]);
}
