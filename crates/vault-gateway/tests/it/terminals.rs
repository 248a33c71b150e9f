//! Processing terminals: they need an existing merchant, ids are unique and validated.

use vault_gateway::{Gateway, TerminalId};
use vault_testkit::vault::{merchant, new_vault};

#[test]
fn terminals_need_an_existing_merchant() {
    // The API-keys half of this test is vault-service's `keys_need_an_existing_merchant`.
    let dir = tempfile::tempdir().unwrap();
    let (vault, _) = new_vault(dir.path());
    let vault = Gateway::new(vault);
    let m = merchant(5);
    let t = TerminalId::parse("term-0001").unwrap();
    assert!(vault.add_terminal(m, t.clone()).is_err());
    vault.add_merchant(m, "Five").unwrap();
    vault.add_terminal(m, t.clone()).unwrap();
    assert!(vault.add_terminal(m, t.clone()).is_err());
    assert_eq!(vault.terminal(&t).unwrap().unwrap().merchant, m);
    assert_eq!(vault.terminals(Some(m)).unwrap().len(), 1);
    assert!(vault.terminals(Some(merchant(6))).unwrap().is_empty());
    for bad in ["abc", "x".repeat(51).as_str(), "has space", "émoji"] {
        assert!(TerminalId::parse(bad).is_err(), "{bad}");
    }
    assert_eq!(vault.merchants().unwrap().len(), 1);
}
