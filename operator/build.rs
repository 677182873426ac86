//! Links the `mcall` executable as position-dependent (`-no-pie`) on Linux with glibc.
//!
//! A position-independent executable carries ~50,000 relative relocations (vtables, panic
//! locations and string tables in `.data.rel.ro`) that the loader applies at every start: it
//! reads 1.2 MiB of relocation records and dirties all 1.4 MiB they patch. Linked at a fixed
//! address, neither is touched, and the operator's resident memory after a burst of 1,000 tasks
//! falls from ~20.9 to ~18.3 MiB (BENCHMARKS.md, "Operator RSS and PIE"). The price, taken
//! deliberately against the memory goal: the executable's own code and data are not
//! address-randomised (its libraries, heap and stacks still are). Only the link changes: the
//! code stays position-independent, so no dependency is rebuilt.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bin=mcall=-no-pie");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
