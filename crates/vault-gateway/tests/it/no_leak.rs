//! Nothing printable carries a CVV's digits (moved from vault-core's no-leak properties with
//! the type).

use proptest::prelude::*;
use vault_gateway::Cvv;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn cvv_debug_without_digits(cvv in "[0-9]{3,4}") {
        let c = Cvv::parse(&cvv).expect("valid");
        let dbg = format!("{c:?}");
        prop_assert_eq!(&dbg, "Cvv(***)");
        prop_assert!(!dbg.bytes().any(|b| b.is_ascii_digit()));
    }
}
