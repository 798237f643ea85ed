#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;

use rpa_packages::{Package, PackageDir, PackagesError, validate_trigger};
use serde_json::{Value, json};

const SEED_FILE: &str = r#"{"Package":{"package_name":"package-x74s-eg","path":"cloudinary/studioPackages/pkg1-x74s.std"},"JobID":21}"#;

fn seed_package() -> Package {
    let doc = json!({
        "Package":  { "package_name": "package-x74s-eg", "path": "cloudinary/studioPackages/pkg1-x74s.std" },
        "Robot":    { "robot_name": "LAPTOP-TAUNF8FD", "robot_address": "001AFFDB45C2" },
        "Schedule": { "date": "15-7", "time": "9:00:00" }
    });
    validate_trigger(&doc).unwrap().package
}

fn package(name: &str, extra: Value) -> Package {
    let mut obj = json!({"package_name": name, "path": "a/b.std"});
    obj.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    Package::from_object(obj.as_object().unwrap().clone()).unwrap()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn save_writes_the_original_format_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = PackageDir::open(tmp.path()).unwrap();
    let saved = dir.save(&seed_package(), 21).unwrap();
    assert_eq!(saved, dir.path().join("package-x74s-eg_21"));
    assert_eq!(fs::read(&saved).unwrap(), SEED_FILE.as_bytes());
    assert_eq!(entries(dir.path()), ["package-x74s-eg_21"]);
}

#[test]
fn save_keeps_extra_keys_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = PackageDir::open(tmp.path()).unwrap().with_sync(false);
    let pkg = package("p", json!({"z": [1, {"b": null}], "a": "\u{e9}\"\n"}));
    let saved = dir.save(&pkg, -3).unwrap();
    assert_eq!(
        fs::read_to_string(saved).unwrap(),
        r#"{"Package":{"package_name":"p","path":"a/b.std","z":[1,{"b":null}],"a":"é\"\n"},"JobID":-3}"#
    );
}

#[test]
fn overwrite_replaces_the_file_and_leaves_no_temp_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = PackageDir::open(tmp.path()).unwrap();
    dir.save(&package("p", json!({"v": 1})), 5).unwrap();
    dir.save(&package("p", json!({"v": 2})), 5).unwrap();
    assert_eq!(
        dir.read("p", 5).unwrap().unwrap(),
        json!({"Package": {"package_name": "p", "path": "a/b.std", "v": 2}, "JobID": 5})
    );
    assert_eq!(entries(dir.path()), ["p_5"]);
}

#[test]
fn readers_never_see_a_partial_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = PackageDir::open(tmp.path()).unwrap().with_sync(false);
    let small = package("p", json!({"v": "s"}));
    let large = package("p", json!({"v": "L".repeat(20_000)}));
    let expected: Vec<Vec<u8>> = [&small, &large]
        .iter()
        .map(|p| format!(r#"{{"Package":{},"JobID":1}}"#, p.as_json()).into_bytes())
        .collect();
    dir.save(&small, 1).unwrap();
    let file = dir.path().join("p_1");
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..200 {
                dir.save(if i % 2 == 0 { &large } else { &small }, 1)
                    .unwrap();
            }
        });
        for _ in 0..400 {
            let bytes = fs::read(&file).unwrap();
            assert!(
                expected.contains(&bytes),
                "partial file of {} bytes",
                bytes.len()
            );
        }
    });
    assert_eq!(entries(dir.path()), ["p_1"]);
}

#[test]
fn folder_and_parents_are_created_when_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let wanted = tmp.path().join("a").join("b").join("packages");
    let dir = PackageDir::open(&wanted).unwrap();
    assert!(wanted.is_dir());
    assert_eq!(dir.path(), fs::canonicalize(&wanted).unwrap());
    // Opening an existing folder again is fine, and the writability probe leaves nothing.
    PackageDir::open(&wanted).unwrap();
    assert!(entries(&wanted).is_empty());
}

#[test]
fn a_file_is_not_a_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("packages");
    fs::write(&file, "x").unwrap();
    let err = PackageDir::open(&file).unwrap_err();
    assert!(
        matches!(err, PackagesError::NotADirectory { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("not a directory"));
}

#[cfg(unix)]
#[test]
fn unwritable_folder_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let locked = tmp.path().join("locked");
    fs::create_dir(&locked).unwrap();
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o555)).unwrap();
    // Root (or CAP_DAC_OVERRIDE) ignores permission bits: find out by trying.
    let bypasses_permissions = fs::write(locked.join("try"), "x").is_ok();
    let result = PackageDir::open(&locked);
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o755)).unwrap();
    if bypasses_permissions {
        eprintln!("skipped: this process ignores permission bits");
        return;
    }
    let err = result.unwrap_err();
    assert!(matches!(err, PackagesError::NotWritable { .. }), "{err:?}");
    assert!(err.is_permission());
    assert!(!err.is_storage_full());
}

#[cfg(unix)]
#[test]
fn symlinked_root_is_resolved_once() {
    let tmp = tempfile::tempdir().unwrap();
    let real = tmp.path().join("real");
    fs::create_dir(&real).unwrap();
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let dir = PackageDir::open(&link).unwrap();
    assert_eq!(dir.path(), fs::canonicalize(&real).unwrap());
    // Repointing the link later does not move the folder.
    fs::remove_file(&link).unwrap();
    let elsewhere = tmp.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
    dir.save(&seed_package(), 21).unwrap();
    assert_eq!(entries(&real), ["package-x74s-eg_21"]);
    assert!(entries(&elsewhere).is_empty());
}

#[cfg(unix)]
#[test]
fn symlink_at_the_target_is_replaced_not_followed() {
    use std::os::unix::fs::symlink;
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let victim = outside.join("victim");
    fs::write(&victim, "original").unwrap();
    let dir = PackageDir::open(tmp.path().join("packages")).unwrap();

    // A link to an existing file outside, and a dangling link to a file outside.
    symlink(&victim, dir.path().join("package-x74s-eg_21")).unwrap();
    symlink(
        outside.join("created"),
        dir.path().join("package-x74s-eg_22"),
    )
    .unwrap();
    // The read side refuses to follow links too.
    let err = dir.read("package-x74s-eg", 21).unwrap_err();
    assert!(matches!(err, PackagesError::NotAFile { .. }), "{err:?}");

    let saved = dir.save(&seed_package(), 21).unwrap();
    dir.save(&seed_package(), 22).unwrap();

    assert!(fs::symlink_metadata(&saved).unwrap().file_type().is_file());
    assert_eq!(fs::read(&saved).unwrap(), SEED_FILE.as_bytes());
    assert_eq!(fs::read_to_string(&victim).unwrap(), "original");
    assert_eq!(entries(&outside), ["victim"]);
    assert_eq!(
        entries(dir.path()),
        ["package-x74s-eg_21", "package-x74s-eg_22"]
    );

    // Removing a link removes the link, not its target.
    symlink(&victim, dir.path().join("package-x74s-eg_23")).unwrap();
    dir.remove("package-x74s-eg", 23).unwrap();
    assert_eq!(fs::read_to_string(&victim).unwrap(), "original");
}

#[test]
fn failed_rename_removes_the_temp_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = PackageDir::open(tmp.path()).unwrap();
    // A non-empty directory where the file should go cannot be renamed over.
    fs::create_dir_all(dir.path().join("p_9").join("inside")).unwrap();
    let err = dir.save(&package("p", json!({})), 9).unwrap_err();
    assert!(matches!(err, PackagesError::Rename { .. }), "{err:?}");
    assert_eq!(entries(dir.path()), ["p_9"]);
}

#[test]
fn remove_and_read() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = PackageDir::open(tmp.path()).unwrap();
    assert_eq!(dir.read("package-x74s-eg", 21).unwrap(), None);
    dir.save(&seed_package(), 21).unwrap();
    assert_eq!(
        dir.read("package-x74s-eg", 21).unwrap(),
        Some(serde_json::from_str::<Value>(SEED_FILE).unwrap())
    );
    dir.remove("package-x74s-eg", 21).unwrap();
    assert_eq!(dir.read("package-x74s-eg", 21).unwrap(), None);
    // Already gone is fine.
    dir.remove("package-x74s-eg", 21).unwrap();
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn read_refuses_what_save_never_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = PackageDir::open(tmp.path()).unwrap();
    fs::write(dir.path().join("p_1"), "{not json").unwrap();
    let err = dir.read("p", 1).unwrap_err();
    assert!(matches!(err, PackagesError::Corrupt { .. }), "{err:?}");

    fs::write(dir.path().join("p_2"), vec![b' '; 1 << 20]).unwrap();
    let err = dir.read("p", 2).unwrap_err();
    assert!(matches!(err, PackagesError::TooLarge { .. }), "{err:?}");

    fs::create_dir(dir.path().join("p_3")).unwrap();
    let err = dir.read("p", 3).unwrap_err();
    assert!(matches!(err, PackagesError::NotAFile { .. }), "{err:?}");
}

#[test]
fn unsafe_names_never_become_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = PackageDir::open(tmp.path().join("packages")).unwrap();
    for name in [
        "",
        "..",
        "../x",
        "a/b",
        "a\\b",
        ".hidden",
        "a\0b",
        "\u{ff0e}\u{ff0e}",
    ] {
        for err in [
            dir.remove(name, 1).unwrap_err(),
            dir.read(name, 1).unwrap_err(),
            dir.path_of(name, 1).unwrap_err(),
        ] {
            assert!(
                matches!(err, PackagesError::UnsafeName { .. }),
                "{name:?}: {err:?}"
            );
        }
    }
    assert!(entries(tmp.path()) == ["packages"]);
}

#[test]
fn save_all_writes_each_file_and_reports_each_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = PackageDir::open(tmp.path()).unwrap();
    let json = r#"{"package_name":"a","path":"x"}"#;
    let results = dir.save_all([("a", 1, json), ("../evil", 2, json), ("a", 3, json)]);
    assert!(results[0].is_ok() && results[2].is_ok());
    assert!(matches!(results[1], Err(PackagesError::UnsafeName { .. })));
    assert_eq!(entries(tmp.path()), ["a_1", "a_3"]);
    assert_eq!(
        fs::read_to_string(tmp.path().join("a_3")).unwrap(),
        format!(r#"{{"Package":{json},"JobID":3}}"#)
    );
}
