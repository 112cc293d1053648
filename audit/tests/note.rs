//! Signed notes and checkpoints against the Go reference implementation's
//! test vectors (golang.org/x/mod/sumdb/note, note_test.go), a real
//! checkpoint of the Go checksum database (from transparency-dev/formats,
//! log/note_test.go), and the C2SP checkpoint rules.

use ibl_audit::merkle::{leaf_hash, Tree};
use ibl_audit::note::{key_id, Checkpoint, NoteError, Signer, Verifier, MAX_SIGNATURES};

// --- golang.org/x/mod/sumdb/note, note_test.go ------------------------------

const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const PETER_SKEY: &str =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const ENOCH_VKEY: &str = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop";
const TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                    then you don't know what your problem is.\n";
const PETER_SIG: &str = "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const ENOCH_SIG: &str = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

fn peter_note() -> String {
    format!("{TEXT}\n{PETER_SIG}")
}

#[test]
fn go_verifier_key_reads_with_its_key_id() {
    let v = Verifier::from_vkey(PETER_VKEY).unwrap();
    assert_eq!(v.name(), "PeterNeumann");
    assert_eq!(v.key_id(), 0xc74f20a3);
    assert_eq!(key_id("PeterNeumann", &v.public_key()), 0xc74f20a3);
    assert_eq!(v.vkey(), PETER_VKEY);
    let e = Verifier::from_vkey(ENOCH_VKEY).unwrap();
    assert_eq!(e.key_id(), 0xaf0cfe78);
    assert_eq!(e.vkey(), ENOCH_VKEY);
}

#[test]
fn go_signer_key_signs_the_go_note_byte_for_byte() {
    let s = Signer::from_skey(PETER_SKEY).unwrap();
    assert_eq!(s.name(), "PeterNeumann");
    assert_eq!(s.key_id(), 0xc74f20a3);
    assert_eq!(s.vkey(), PETER_VKEY);
    assert_eq!(s.skey(), PETER_SKEY);
    // Ed25519 is deterministic: the same key signs the same bytes.
    assert_eq!(s.sign_note(TEXT).unwrap(), peter_note());
    // And from the raw seed.
    let again = Signer::from_seed(s.seed(), "PeterNeumann").unwrap();
    assert_eq!(again.sign_note(TEXT).unwrap(), peter_note());
}

#[test]
fn go_note_opens() {
    let peter = Verifier::from_vkey(PETER_VKEY).unwrap();
    assert_eq!(peter.open(&peter_note()).unwrap(), TEXT);
}

#[test]
fn other_keys_signatures_are_ignored_but_one_of_ours_is_required() {
    let peter = Verifier::from_vkey(PETER_VKEY).unwrap();
    let enoch = Verifier::from_vkey(ENOCH_VKEY).unwrap();
    let both = format!("{TEXT}\n{PETER_SIG}{ENOCH_SIG}");
    assert_eq!(peter.open(&both).unwrap(), TEXT);
    // Enoch's signature in the Go test data verifies too.
    assert_eq!(enoch.open(&both).unwrap(), TEXT);
    let enoch_only = format!("{TEXT}\n{ENOCH_SIG}");
    assert_eq!(
        peter.open(&enoch_only),
        Err(NoteError::NotSignedByKey {
            name: "PeterNeumann".into(),
            key_id: 0xc74f20a3
        })
    );
    // Repeated signatures (Go's "duplicated verified and unverified").
    let many = format!("{TEXT}\n{PETER_SIG}{PETER_SIG}{ENOCH_SIG}{ENOCH_SIG}");
    assert_eq!(peter.open(&many).unwrap(), TEXT);
}

#[test]
fn go_bad_messages_are_malformed() {
    let peter = Verifier::from_vkey(PETER_VKEY).unwrap();
    let bad = [
        TEXT.to_string(),
        format!("{TEXT}\n"),
        format!("{TEXT}\n{}", &PETER_SIG[..PETER_SIG.len() - 1]),
        format!("\x01{TEXT}\n{PETER_SIG}"),
        format!("{TEXT}\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM="),
        format!("{TEXT}\n{PETER_SIG}Unexpected line.\n"),
        // And a few more.
        format!("{TEXT}\n- PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"),
        format!("{TEXT}\n— PeterNeumann\n"),
        format!("{TEXT}\n— PeterNeumann not*base64\n"),
        format!("{TEXT}\n— PeterNeumann AAAA\n"),
        format!("{TEXT}\n—  x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"),
        format!("{TEXT}\n{PETER_SIG}\n"),
        format!("{TEXT}\r\n{PETER_SIG}"),
    ];
    for msg in bad {
        assert!(
            matches!(peter.open(&msg), Err(NoteError::MalformedNote(_))),
            "{msg:?} gave {:?}",
            peter.open(&msg)
        );
    }
}

#[test]
fn too_many_signatures_are_refused() {
    let peter = Verifier::from_vkey(PETER_VKEY).unwrap();
    let at_limit = format!("{TEXT}\n{}", PETER_SIG.repeat(MAX_SIGNATURES));
    assert_eq!(peter.open(&at_limit).unwrap(), TEXT);
    let over = format!("{TEXT}\n{}", PETER_SIG.repeat(MAX_SIGNATURES + 1));
    assert!(matches!(
        peter.open(&over),
        Err(NoteError::MalformedNote(_))
    ));
}

#[test]
fn a_bad_signature_by_our_key_rejects_the_note() {
    let peter = Verifier::from_vkey(PETER_VKEY).unwrap();
    let invalid = NoteError::InvalidSignature {
        name: "PeterNeumann".into(),
        key_id: 0xc74f20a3,
    };
    // Go's case: four base64 characters inserted in the signature.
    let spliced = format!("{TEXT}\n{}ABCD{}", &PETER_SIG[..60], &PETER_SIG[60..]);
    assert_eq!(peter.open(&spliced), Err(invalid.clone()));
    // Even beside a good one.
    let with_good = format!(
        "{TEXT}\n{PETER_SIG}{}ABCD{}",
        &PETER_SIG[..60],
        &PETER_SIG[60..]
    );
    assert_eq!(peter.open(&with_good), Err(invalid.clone()));
    // Another text under the same signature.
    let altered = peter_note().replace("cryptography", "cryptographY");
    assert_eq!(peter.open(&altered), Err(invalid));
}

/// Go's TestNewVerifier and TestNewSigner: every proper substring, and every
/// single-byte increment, of a good key is refused.
#[test]
fn mangled_keys_are_refused() {
    for (key, read) in [
        (
            PETER_VKEY,
            (|k: &str| Verifier::from_vkey(k).is_ok()) as fn(&str) -> bool,
        ),
        (PETER_SKEY, |k: &str| Signer::from_skey(k).is_ok()),
    ] {
        assert!(read(key));
        let b = key.as_bytes();
        for i in 0..=b.len() {
            for j in i + 1..=b.len() {
                if (i, j) != (0, b.len()) {
                    let sub = std::str::from_utf8(&b[i..j]).unwrap();
                    assert!(!read(sub), "{sub:?} accepted");
                }
            }
        }
        for i in 0..b.len() {
            let mut m = b.to_vec();
            m[i] += 1;
            let m = String::from_utf8(m).unwrap();
            assert!(!read(&m), "{m:?} accepted");
        }
    }
    // Go's two extra cases: a key of the wrong length, and an unknown
    // algorithm, each with the key id recomputed to match.
    assert!(Verifier::from_vkey(
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
    )
    .is_err());
    assert_eq!(
        Verifier::from_vkey("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"),
        Err(NoteError::UnknownAlgorithm(0x65))
    );
    // The id is checked.
    assert_eq!(
        Verifier::from_vkey("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"),
        Err(NoteError::KeyIdMismatch {
            claimed: 0xc74f20a4,
            actual: 0xc74f20a3
        })
    );
    // Upper-case hex is the same id.
    assert!(Verifier::from_vkey(
        "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    )
    .is_ok());
}

#[test]
fn key_names_are_checked() {
    for name in [
        "",
        "a b",
        "a+b",
        "a\tb",
        "a\nb",
        "a\u{a0}b",
        "a\u{3000}b",
        "a\x01b",
    ] {
        assert_eq!(
            Signer::from_seed([7; 32], name).map(|_| ()),
            Err(NoteError::InvalidKeyName(name.to_string())),
            "{name:?}"
        );
        assert!(Verifier::from_public_key(name, [0x42; 32]).is_err());
    }
    for name in [
        "example.com/log",
        "PeterNeumann",
        "Señor-1",
        "ibl.example/audit/v1",
    ] {
        assert!(Signer::from_seed([7; 32], name).is_ok(), "{name:?}");
    }
}

#[test]
fn weak_and_invalid_public_keys_are_refused() {
    // The identity point (small order) and a y with no curve point.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert_eq!(
        Verifier::from_public_key("log", identity),
        Err(NoteError::InvalidPublicKey)
    );
    let mut not_on_curve = [0u8; 32];
    not_on_curve[0] = 2;
    assert_eq!(
        Verifier::from_public_key("log", not_on_curve),
        Err(NoteError::InvalidPublicKey)
    );
}

// --- A real checkpoint: the Go checksum database, sum.golang.org ------------
// (transparency-dev/formats, log/note_test.go, TestSumDBNoteParsing)

const SUMDB_VKEY: &str = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8";
const SUMDB_NOTE: &str = "go.sum database tree\n\
6476701\n\
mb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=\n\
\n\
— sum.golang.org Az3grsLX85Gz+s1SiTbgkuqxgItqFq7gsMUEyVnrsa9LM7Us9S+1xbFIGu95949rj4nPRYfvimWEPWL+o3GeoWwOoAw=\n";

#[test]
fn go_checksum_database_checkpoint_verifies() {
    // The key's base64 holds '+' characters of its own.
    let v = Verifier::from_vkey(SUMDB_VKEY).unwrap();
    assert_eq!(v.name(), "sum.golang.org");
    assert_eq!(v.key_id(), 0x033de0ae);
    let cp = v.verify(SUMDB_NOTE).unwrap();
    assert_eq!(cp.origin, "go.sum database tree");
    assert_eq!(cp.size, 6476701);
    assert!(cp.extensions.is_empty());
    assert_eq!(
        cp.body(),
        "go.sum database tree\n6476701\nmb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=\n"
    );
    // Another size under the same signature.
    let forged = SUMDB_NOTE.replace("6476701", "6476702");
    assert!(matches!(
        v.verify(&forged),
        Err(NoteError::InvalidSignature { .. })
    ));
}

// --- Our own checkpoints ----------------------------------------------------

fn log_signer() -> Signer {
    Signer::from_seed([0x11; 32], "ibl.example/audit").unwrap()
}

fn a_checkpoint() -> Checkpoint {
    let mut tree = Tree::new();
    for i in 0..13u32 {
        tree.append(leaf_hash(&i.to_be_bytes()));
    }
    Checkpoint::new("ibl.example/audit", tree.len(), tree.root())
}

#[test]
fn signed_checkpoints_verify_and_read_back() {
    let signer = log_signer();
    let verifier = Verifier::from_vkey(&signer.vkey()).unwrap();
    assert_eq!(verifier, signer.verifier());
    let cp = a_checkpoint();
    let note = signer.sign(&cp).unwrap();
    assert!(note.starts_with(&cp.body()));
    assert!(note.starts_with("ibl.example/audit\n13\n"));
    assert!(note.contains("\n\n— ibl.example/audit "));
    assert_eq!(verifier.verify(&note).unwrap(), cp);

    // With extension lines.
    let mut ext = cp.clone();
    ext.extensions = vec!["timestamp 1700000000".into(), "x".into()];
    let note = signer.sign(&ext).unwrap();
    assert_eq!(verifier.verify(&note).unwrap(), ext);

    // The signer key text round-trips.
    let again = Signer::from_skey(&signer.skey()).unwrap();
    assert_eq!(again.sign(&cp).unwrap(), signer.sign(&cp).unwrap());
    assert!(!format!("{signer:?}").contains(&signer.skey()));
}

#[test]
fn cosigned_checkpoints_verify_for_each_key() {
    let log = log_signer();
    let witness = Signer::from_seed([0x22; 32], "witness.example").unwrap();
    let cp = a_checkpoint();
    let note = log.sign(&cp).unwrap();
    let witness_line = witness
        .sign(&cp)
        .unwrap()
        .split("\n\n")
        .nth(1)
        .unwrap()
        .to_string();
    let cosigned = format!("{note}{witness_line}");
    assert_eq!(log.verifier().verify(&cosigned).unwrap(), cp);
    assert_eq!(witness.verifier().verify(&cosigned).unwrap(), cp);
    // Only the witness: not the log's.
    let witness_only = witness.sign(&cp).unwrap();
    assert!(matches!(
        log.verifier().verify(&witness_only),
        Err(NoteError::NotSignedByKey { .. })
    ));
}

#[test]
fn keys_sharing_a_name_or_an_id_are_other_keys() {
    let log = log_signer();
    let cp = a_checkpoint();
    // Same name, another key: its signature is ignored, not judged.
    let impostor = Signer::from_seed([0x33; 32], "ibl.example/audit").unwrap();
    let note = impostor.sign(&cp).unwrap();
    assert!(matches!(
        log.verifier().verify(&note),
        Err(NoteError::NotSignedByKey { .. })
    ));
    // Our key id under another name: ignored too.
    let renamed = log
        .sign(&cp)
        .unwrap()
        .replace("— ibl.example/audit ", "— someone.else ");
    assert!(matches!(
        log.verifier().verify(&renamed),
        Err(NoteError::NotSignedByKey { .. })
    ));
    // Our name with a bad signature under our id: rejected outright.
    // (A character well inside the base64 signature, past the key id.)
    let mut tampered = log.sign(&cp).unwrap();
    let at = tampered.len() - 20;
    let c = if &tampered[at..at + 1] == "A" {
        "B"
    } else {
        "A"
    };
    tampered.replace_range(at..at + 1, c);
    assert_eq!(
        log.verifier().verify(&tampered),
        Err(NoteError::InvalidSignature {
            name: "ibl.example/audit".into(),
            key_id: log.key_id()
        })
    );
}

#[test]
fn every_flipped_bit_of_a_signed_checkpoint_is_caught() {
    let signer = log_signer();
    let verifier = signer.verifier();
    let cp = a_checkpoint();
    let note = signer.sign(&cp).unwrap();
    for i in 0..note.len() {
        for bit in 0..8 {
            let mut bytes = note.clone().into_bytes();
            bytes[i] ^= 1 << bit;
            // (A note is text: the caller has refused invalid UTF-8.)
            let Ok(changed) = String::from_utf8(bytes) else {
                continue;
            };
            let result = verifier.verify(&changed);
            assert!(
                result.is_err(),
                "byte {i} bit {bit} flipped and still verified"
            );
        }
    }
    assert_eq!(verifier.verify(&note).unwrap(), cp);
}

#[test]
fn signing_refuses_what_would_not_parse() {
    let signer = log_signer();
    let root = a_checkpoint().root;
    for bad in [
        Checkpoint::new("", 1, root),
        Checkpoint::new("two\nlines", 1, root),
        Checkpoint::new("tab\there", 1, root),
        Checkpoint {
            extensions: vec![String::new()],
            ..Checkpoint::new("log", 1, root)
        },
    ] {
        assert!(
            matches!(signer.sign(&bad), Err(NoteError::MalformedCheckpoint(_))),
            "{bad:?}"
        );
    }
    assert!(signer.sign_note("no newline").is_err());
    assert!(signer.sign_note("bell\x07\n").is_err());
}

// --- Checkpoint bodies (C2SP tlog-checkpoint) --------------------------------

#[test]
fn checkpoint_bodies_parse_as_the_spec_says() {
    // The spec's own example body.
    let cp = Checkpoint::parse(
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
    )
    .unwrap();
    assert_eq!(cp.origin, "example.com/behind-the-sofa");
    assert_eq!(cp.size, 20852163);
    assert!(cp.extensions.is_empty());
    assert_eq!(
        cp.body(),
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    );

    let root64 = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";
    let ok = |body: String| Checkpoint::parse(&body).unwrap();
    assert_eq!(ok(format!("Log\n0\n{root64}\n")).size, 0);
    assert_eq!(ok(format!("Log\n{}\n{root64}\n", u64::MAX)).size, u64::MAX);
    assert_eq!(
        ok(format!(
            "Moon Log\n4027504\n{root64}\n6086d1a9\nWaxing gibbous\n"
        ))
        .extensions,
        vec!["6086d1a9", "Waxing gibbous"]
    );

    // transparency-dev/formats log/checkpoint_test.go's invalid bodies, and
    // more.
    for bad in [
        "Head\n9944\n".to_string(),
        format!("\n9944\n{root64}\n"),
        format!("Log\n123\n{root64}"),
        format!("Log\nbananas\n{root64}\n"),
        format!("Log\n-34\n{root64}\n"),
        format!("Log\n3438945738945739845734895735\n{root64}\n"),
        "Log\n123\nThisIsn'tBase64\n".to_string(),
        "Log\n123\nYmFuYW5hcw==\n".to_string(), // 7 bytes, not a SHA-256
        format!("Log\n0123\n{root64}\n"),
        format!("Log\n+123\n{root64}\n"),
        format!("Log\n 123\n{root64}\n"),
        format!("Log\n\n{root64}\n"),
        format!("Log\n123\n{}\n", root64.trim_end_matches('=')),
        format!("Log\n123\n{root64}\n\n"),
        format!("Log\n123\n{root64}\next\n\n"),
        format!("Log\x07\n123\n{root64}\n"),
        // Non-canonical base64: the last character's unused bits set.
        "Log\n123\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2J=\n".to_string(),
    ] {
        assert!(
            matches!(
                Checkpoint::parse(&bad),
                Err(NoteError::MalformedCheckpoint(_))
            ),
            "{bad:?} parsed"
        );
    }
}
