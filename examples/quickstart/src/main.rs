//! Quickstart (placeholder until the core contracts land).
//!
//! Run: `cargo run -p quickstart`

fn main() -> anyhow::Result<()> {
    let mut ctx = agents::ChatContext::new();
    ctx.add_message(agents::ChatRole::User, "hello");
    eprintln!("{} item(s)", ctx.items().len());
    Ok(())
}
