//! Two daemons' vaults on one PostgreSQL database: a card that does not open under the key this
//! process holds by its id is opened after following the stored header.

use vault_core::{DekId, Expiry, Pan};
use vault_store::{DatabaseUrl, Location};
use vault_testkit::postgres::TestDatabase;

use crate::{
    MerchantId, NewCard, TokenizeOptions, Vault,
    test_support::{held_keys, key, make_key_in_memory, options},
};

#[test]
fn a_card_that_does_not_open_under_the_key_held_by_its_id_opens_after_following_the_header() {
    let db = TestDatabase::new();
    let location = Location::Database(DatabaseUrl::new(db.url()));
    let a = Vault::create_at(&location, &key(), options()).expect("create");
    let b = Vault::open_at(&location, &key(), options()).expect("open");
    let merchant = MerchantId::new(42).expect("merchant");

    let core = &a.inner.core;
    let initial = held_keys(core);
    // `b`'s key 2 reaches the header, and `b` seals a card under it...
    assert_eq!(b.rotate_key().expect("rotate"), DekId::new(2));
    let card = NewCard::new(
        Pan::parse("4111111111111111").expect("pan"),
        Expiry::parse_yymm("3012").expect("expiry"),
    );
    let token = b
        .tokenize(merchant, card, TokenizeOptions::default())
        .expect("tokenize")
        .token;
    // ...while `a` has just made a key 2 of its own (its rotation has not found out it lost).
    assert_eq!(make_key_in_memory(core, initial), DekId::new(2));

    // `a` holds a key 2 too, but not that one: it follows the stored header and opens the card.
    // (Its follower thread, which looks once a second, may have got there first.)
    let revealed = a.reveal(merchant, &token, None).expect("reveal");
    assert_eq!(revealed.pan.expose_digits(), "4111111111111111");
    assert_eq!(
        core.keyring.read().current_stamp(),
        b.inner.core.keyring.read().current_stamp()
    );
    drop((a, b));
}
