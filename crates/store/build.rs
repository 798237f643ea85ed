// `embed_migrations!` reads the folders at compile time but cargo does not know that: without
// this, a new migration file would not be picked up until something else in the crate changed.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations/sqlite");
    println!("cargo:rerun-if-changed=../../migrations/postgres");
}
