//! `sqlx::migrate!` embeds the migrations when the crate compiles; without this, adding or
//! editing one would not rebuild the crate, and a warm build would run the old schema.
fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
