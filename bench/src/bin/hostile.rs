//! `hostile`: the hostile-peer benchmark. See `bench/README.md` ("Hostile peers"); usually
//! started as `bash bench/hostile`.

use clap::Parser;

fn main() {
    let args = ringway_bench::hostile::Args::parse();
    if args.serve_upstream {
        ringway_bench::hostile::serve_upstream(args.upstream_port);
    }
    let list = args.list;
    match ringway_bench::hostile::run(args) {
        Ok(_) if list => {}
        Ok(dir) => {
            eprintln!("hostile: results in {}", dir.display());
            if let Ok(text) = std::fs::read_to_string(dir.join("README.md")) {
                println!("{text}");
            }
        }
        Err(e) => {
            eprintln!("hostile: {e}");
            std::process::exit(1);
        }
    }
}
