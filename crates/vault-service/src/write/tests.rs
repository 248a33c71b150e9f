//! Sealing on the caller's thread and committing on the committer's: a card sealed under a key
//! the header does not hold under that key's id is sealed again before it is committed.

use vault_core::{DekId, Expiry, Pan};

use crate::{
    MerchantId, NewCard, TokenizeOptions, Vault, VaultError,
    test_support::{held_keys, key, make_key_in_memory, options, put_keys_back},
};

#[test]
fn a_card_sealed_under_a_key_that_lost_its_id_to_another_is_sealed_again_at_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = Vault::create(dir.path(), &key(), options()).expect("vault");
    let core = vault.inner.core.clone();
    let merchant = MerchantId::new(42).expect("merchant");
    let now = core.clock.now();

    // This process makes key 2 and seals a card under it, but its key 2 never reaches the
    // header: on a shared vault, another daemon rotated at the same moment and its key 2 won.
    let before = held_keys(&core);
    assert_eq!(make_key_in_memory(&core, held_keys(&core)), DekId::new(2));
    let card = NewCard::new(
        Pan::parse("4111111111111111").expect("pan"),
        Expiry::parse_yymm("3012").expect("expiry"),
    );
    let prepared = core
        .prepare(merchant, card, TokenizeOptions::default(), now)
        .expect("prepare");
    assert_eq!(prepared.sealed_with.id(), DekId::new(2));
    put_keys_back(&core, before);
    // The key 2 the header holds is another key with the same id.
    assert_eq!(vault.rotate_key().expect("rotate"), DekId::new(2));
    assert_ne!(core.keyring.read().current_stamp(), prepared.sealed_with);

    let committer_core = core.clone();
    let info = vault
        .inner
        .store
        .write(move |tx| -> Result<_, VaultError> { committer_core.commit_new(tx, &prepared) })
        .expect("commit");
    let revealed = vault.reveal(merchant, &info.token, None).expect("reveal");
    assert_eq!(revealed.pan.expose_digits(), "4111111111111111");
    // And from what is on disk alone.
    drop(core);
    drop(vault);
    let reopened = Vault::open(dir.path(), &key(), options()).expect("reopen");
    let revealed = reopened
        .reveal(merchant, &info.token, None)
        .expect("reveal");
    assert_eq!(revealed.pan.expose_digits(), "4111111111111111");
}
