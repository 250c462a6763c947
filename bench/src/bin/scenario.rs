//! `scenario`: the benchmark runner. See `bench/README.md`; usually started as `bench/run`.

use clap::Parser;

fn main() {
    let args = ringway_bench::scenario::Args::parse();
    match ringway_bench::scenario::run(args) {
        Ok(dir) => {
            eprintln!("scenario: results in {}", dir.display());
            let readme = dir.join("README.md");
            if let Ok(text) = std::fs::read_to_string(&readme) {
                println!("{text}");
            }
        }
        Err(e) => {
            eprintln!("scenario: {e}");
            std::process::exit(1);
        }
    }
}
