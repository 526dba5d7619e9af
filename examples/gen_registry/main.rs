//! `cargo run --release --example gen-registry -- --root DIR`: a registry:2 layout with
//! 2,000 repositories and 20,000 blobs, half of them garbage, for `scripts/bench --gc-only`
//! (see `generate.rs` for what is written).

mod generate;

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;

#[derive(Parser)]
#[command(about = "Writes a registry:2 layout with garbage in it, for GC benchmarks")]
struct Args {
    /// The storage root to write (`<root>/docker/registry/v2`); must not hold a registry yet.
    #[arg(long)]
    root: PathBuf,
    #[arg(long, default_value_t = 2000)]
    repos: usize,
    /// Blobs under `blobs/` (manifests included); half of them nothing references.
    #[arg(long, default_value_t = 20_000)]
    blobs: usize,
    /// The same seed writes the same bytes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How many days ago every file is dated (older than any GC grace period).
    #[arg(long, default_value_t = 7)]
    age_days: u64,
    /// Writes the garbage, one `DIGEST SIZE` line per blob sorted by digest, to this file.
    #[arg(long)]
    garbage_list: Option<PathBuf>,
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let spec = generate::Spec {
        repos: args.repos,
        blobs: args.blobs,
        seed: args.seed,
        age: Duration::from_secs(args.age_days * 86_400),
    };
    let started = Instant::now();
    let s = generate::generate(&args.root, &spec)?;
    if let Some(path) = &args.garbage_list {
        let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
        for b in &s.garbage {
            writeln!(out, "{} {}", b.digest, b.size)?;
        }
        out.flush()?;
    }
    let bytes = generate::Summary::bytes;
    println!(
        "{} repositories, {} tags, {} untagged manifests kept; {} blobs live ({} bytes), \
         {} garbage ({} bytes); written in {:.1?}",
        s.repos.len(),
        s.tags.len(),
        s.untagged.len(),
        s.live.len(),
        bytes(&s.live),
        s.garbage.len(),
        bytes(&s.garbage),
        started.elapsed()
    );
    Ok(())
}
