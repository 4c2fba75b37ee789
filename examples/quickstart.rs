//! The README's quick start: `cargo run --release --example quickstart [DIR]`.

use toykv::Store;

fn main() -> toykv::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "data".into());
    let store = Store::open(&dir)?; // creates or reopens
    store.put(42u64, b"hello")?; // a key is a u64 (big-endian) or a [u8; 8]
    assert_eq!(store.get(42u64)?.as_deref(), Some(&b"hello"[..]));
    for item in store.scan(0u64..=100) {
        // ordered, inclusive
        let (key, value) = item?;
        println!("{} -> {:?}", key.as_u64(), &value[..]);
    }
    assert!(store.delete(42u64)?);
    store.sync()?;
    println!("{:?}", store.stats());
    Ok(())
}
