//! Benchmarks (filled in below).
use clap::Subcommand;

#[derive(Subcommand)]
pub enum BenchCommand {}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {}
}
