//! The `crm` command.

// sled copies tree nodes on every write; mimalloc serves those many
// short-lived allocations about a quarter faster than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    server::cli::main()
}
