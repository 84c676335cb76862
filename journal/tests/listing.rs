//! A journal is bound to its listing and rules: any other is refused, naming both.

mod common;

use std::fs;

use common::*;
use journal::{recover, Binding, Durability, JournalError};
use matching::{MarketRules, SecurityTable};

fn table(csv: &str) -> SecurityTable {
    SecurityTable::parse_csv(csv).unwrap()
}

const ORIGINAL: &str = "security,reference_price\nVNM,60000\nFPT,95000\nHPG,25000\n";

#[test]
fn a_different_listing_or_rules_is_refused_naming_both() {
    let tmp = tempfile::tempdir().unwrap();
    let c = cfg(tmp.path(), 4096, Durability::Never);
    let original = Binding::new(&table(ORIGINAL), MarketRules::hose());
    let mut store = recover(&c, &original).unwrap().open().unwrap();
    write_ops(&mut store.journal, &stream(50), 5);
    drop(store);
    let copy = c.journal_dir.join("listing.csv");
    assert_eq!(fs::read_to_string(&copy).unwrap(), table(ORIGINAL).to_csv());
    assert_eq!(
        journal::journal_listing(&c.journal_dir).unwrap(),
        Some(table(ORIGINAL))
    );
    assert_eq!(
        journal::journal_listing(&tmp.path().join("nowhere")).unwrap(),
        None
    );

    for edited in [
        "FPT,95000\nVNM,60000\nHPG,25000\n", // rows swapped: ids change
        "VNM,60100\nFPT,95000\nHPG,25000\n", // a reference price changed
        "VNM,60000\nFPT,95000\n",            // a security dropped
    ] {
        let other = Binding::new(&table(edited), MarketRules::hose());
        let err = recover(&c, &other).expect_err("refused");
        assert_eq!(
            err.to_string(),
            format!(
                "the listing given (fingerprint {:016x}) differs from the one this journal was \
                 written with (fingerprint {:016x}); the journal's own copy is {}",
                other.fingerprint(),
                original.fingerprint(),
                copy.display()
            )
        );
    }
    // Same meaning, other formatting: accepted.
    let same = Binding::new(
        &table(" VNM , 60000\r\nFPT,95000\n\nHPG,25000"),
        MarketRules::hose(),
    );
    assert!(recover(&c, &same).unwrap().report().loss.is_none());

    let hnx = Binding::new(&table(ORIGINAL), MarketRules::hnx());
    let err = recover(&c, &hnx).err().unwrap();
    assert!(matches!(err, JournalError::RulesMismatch { .. }));
    assert_eq!(
        err.to_string(),
        format!(
            "the journal in {} was written under rules \"hose\", not \"hnx\"",
            c.journal_dir.display()
        )
    );
}

#[test]
fn an_edited_listing_copy_disagrees_with_the_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let c = cfg(tmp.path(), 4096, Durability::Never);
    let original = Binding::new(&table(ORIGINAL), MarketRules::hose());
    let mut store = recover(&c, &original).unwrap().open().unwrap();
    write_ops(&mut store.journal, &stream(20), 5);
    drop(store);
    // Someone "fixes" the copy to match a new listing and starts with that listing.
    let edited = "VNM,61000\nFPT,95000\nHPG,25000\n";
    let other = Binding::new(&table(edited), MarketRules::hose());
    fs::write(c.journal_dir.join("listing.csv"), table(edited).to_csv()).unwrap();
    let err = recover(&c, &other).err().unwrap();
    match &err {
        JournalError::MetaMismatch {
            segment,
            expected,
            found,
            ..
        } => {
            assert_eq!(*expected, other.fingerprint());
            assert_eq!(*found, original.fingerprint());
            assert!(segment
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("orders-"));
        }
        e => panic!("expected MetaMismatch, got {e}"),
    }
}

#[test]
fn a_missing_copy_is_restored_only_for_the_same_listing() {
    let tmp = tempfile::tempdir().unwrap();
    let c = cfg(tmp.path(), 4096, Durability::Never);
    let original = Binding::new(&table(ORIGINAL), MarketRules::hose());
    let mut store = recover(&c, &original).unwrap().open().unwrap();
    write_ops(&mut store.journal, &stream(20), 5);
    drop(store);
    let copy = c.journal_dir.join("listing.csv");
    fs::remove_file(&copy).unwrap();
    let other = Binding::new(&table("VNM,60000\n"), MarketRules::hose());
    let err = recover(&c, &other).err().unwrap();
    assert!(
        matches!(err, JournalError::ListingMismatch { journal, given, .. } if journal == original.fingerprint() && given == other.fingerprint()),
        "{err}"
    );
    assert!(!copy.exists(), "a refused recovery writes nothing");
    recover(&c, &original).unwrap().open().unwrap();
    assert_eq!(fs::read_to_string(&copy).unwrap(), table(ORIGINAL).to_csv());
}

#[test]
fn a_tape_from_another_listing_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let a = cfg(&tmp.path().join("a"), 4096, Durability::Never);
    let b = cfg(&tmp.path().join("b"), 4096, Durability::Never);
    let ba = Binding::new(&table(ORIGINAL), MarketRules::hose());
    let bb = Binding::new(&table("AAA,1000\n"), MarketRules::hose());
    recover(&a, &ba).unwrap().open().unwrap();
    recover(&b, &bb).unwrap().open().unwrap();
    fs::remove_dir_all(&a.tape_dir).unwrap();
    fs::rename(&b.tape_dir, &a.tape_dir).unwrap();
    let err = recover(&a, &ba).err().unwrap();
    assert!(
        matches!(err, JournalError::MetaMismatch { ref segment, .. } if segment.starts_with(&a.tape_dir)),
        "{err}"
    );
}
