//! Quick start: create a vault, tokenize a card, look it up, reveal it, reopen it.
//!
//! `cargo run --release --example quickstart [DIR]` (default: a fresh temporary directory,
//! removed at the end; a DIR given is kept, and opened again by the next run).
//! The passphrase comes from `CARDVAULT_PASSPHRASE` (a demo value is used when it is unset).
#![allow(clippy::print_stdout)]

use std::error::Error;

use cardvault::{
    Expiry, KeySource, MerchantId, NewCard, Pan, Passphrase, TokenizeOptions, Vault, VaultOptions,
};

fn main() -> Result<(), Box<dyn Error>> {
    let given = std::env::args().nth(1);
    let throwaway = given.is_none();
    let dir = match given {
        Some(d) => std::path::PathBuf::from(d),
        None => std::env::temp_dir().join(format!("cardvault-quickstart-{}", std::process::id())),
    };
    let passphrase = std::env::var("CARDVAULT_PASSPHRASE")
        .unwrap_or_else(|_| "demo passphrase, not for production".into());
    let key = KeySource::Passphrase(Passphrase::new(passphrase)?);

    let vault = if dir.join("keyheader").exists() {
        Vault::open(&dir, &key, VaultOptions::default())?
    } else {
        Vault::create(&dir, &key, VaultOptions::default())?
    };
    println!("vault: {}", dir.display());

    let merchant = MerchantId::parse("890490")?;
    let card = NewCard::new(Pan::parse("4242424242424242")?, Expiry::parse_yymm("2802")?);
    let info = vault.tokenize(merchant, card, TokenizeOptions::default())?;
    println!("token:       {}", info.token);
    println!("masked_pan:  {}", info.masked_pan);
    println!(
        "keep_until:  {}",
        info.keep_until
            .format(&time::format_description::well_known::Rfc3339)?
    );
    println!("fingerprint: {}", info.fingerprint);

    let seen = vault.get(merchant, &info.token)?;
    println!(
        "get:         {} {} {}",
        seen.masked_pan,
        seen.brand,
        seen.expiry.to_yymm()
    );

    let revealed = vault.reveal(merchant, &info.token, None)?;
    println!(
        "reveal:      {} (last four; the full PAN came back)",
        &revealed.pan.expose_digits()[12..]
    );

    drop(vault);
    let vault = Vault::open(&dir, &key, VaultOptions::default())?;
    println!("reopened:    {} record(s)", vault.stats().records);
    if throwaway {
        drop(vault);
        std::fs::remove_dir_all(&dir)?;
        println!("removed:     {} (a throwaway vault)", dir.display());
    }
    Ok(())
}
