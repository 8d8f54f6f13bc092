use crate::common::*;

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn no_object_contains_file_names_or_contents(env: Env) {
    env.init();
    let src = env.path("src");
    std::fs::create_dir_all(&src).unwrap();
    let name = "zebra-umbrella-7731-secret-name.txt";
    let content = b"the distinctive content quokka-47113-marmalade of a private file";
    // Repeated so that zstd shrinks it: compression must not leave it readable either.
    std::fs::write(src.join(name), content.repeat(200)).unwrap();
    std::fs::write(src.join("short"), content).unwrap();
    env.backup_json(&[&src], &[]);
    let files = all_files(&env.repo_dir());
    assert!(
        files.len() >= 4,
        "expected config, key, pack, index and snapshot"
    );
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !contains(&bytes, name.as_bytes()),
            "{} holds the file name",
            f.display()
        );
        assert!(
            !contains(&bytes, b"zebra-umbrella"),
            "{} holds part of the name",
            f.display()
        );
        assert!(
            !contains(&bytes, b"quokka-47113"),
            "{} holds the content",
            f.display()
        );
        assert!(
            !contains(&bytes, src.to_str().unwrap().as_bytes()),
            "{} holds the path",
            f.display()
        );
    }
}

on_both_backends!(no_object_contains_file_names_or_contents);
