//! The migrations are embedded in this crate (`db::MIGRATIONS`): rebuild when one is added or
//! changed, not only when a file the macro already read changes.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
