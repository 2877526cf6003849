//! Embeds the commit this crate is built from (`ROBUSTFT_BUILD_COMMIT`, empty outside a git
//! checkout), so run records name the code that produced them, not whatever repository the user
//! runs the binary from. Reruns when HEAD or the branch it points to moves.

use std::process::Command;

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(&dir)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "HEAD"])
        .filter(|c| c.len() == 40)
        .unwrap_or_default();
    println!("cargo:rustc-env=ROBUSTFT_BUILD_COMMIT={commit}");
    println!("cargo:rerun-if-changed=build.rs");
    let mut watch = vec!["HEAD".to_string(), "packed-refs".to_string()];
    watch.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for name in watch {
        if let Some(path) = git(&["rev-parse", "--path-format=absolute", "--git-path", &name])
            && std::path::Path::new(&path).exists()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
