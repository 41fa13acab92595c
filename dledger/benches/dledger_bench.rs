//! `cargo bench -p dledger`: runs the benchmark program of `src/bin/dledger-bench.rs`.

#[path = "../src/bin/dledger-bench.rs"]
mod program;

fn main() {
    program::main();
}
