//! Test images built from this machine's own binaries (no registry is
//! reachable where the tests run): a static busybox, and a Redis server with
//! the libraries it links.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The static busybox the test images are built `FROM scratch` around.
pub fn busybox() -> PathBuf {
    ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .expect("busybox-static is installed (.ci/run installs it)")
}

/// Writes into `dir` a build context for a Redis server image made from this
/// machine's redis-server and the libraries it links, plus busybox for the
/// health check.
pub fn redis_context(dir: &Path) {
    let server = std::fs::canonicalize("/usr/bin/redis-server")
        .expect("redis-server is installed (.ci/run installs it)");
    std::fs::create_dir_all(dir.join("root/usr/bin")).expect("mkdir");
    std::fs::copy(&server, dir.join("root/usr/bin/redis-server")).expect("copy redis");
    std::fs::create_dir_all(dir.join("root/bin")).expect("mkdir");
    std::fs::copy(busybox(), dir.join("root/bin/busybox")).expect("copy busybox");
    let tree = lddtree::DependencyAnalyzer::new(PathBuf::from("/"))
        .analyze(&server)
        .expect("resolve redis-server's libraries");
    let mut files: Vec<PathBuf> = tree.libraries.values().map(|l| l.path.clone()).collect();
    if let Some(interp) = &tree.interpreter {
        files.push(PathBuf::from(interp));
    }
    for f in files {
        let at = dir
            .join("root")
            .join(f.strip_prefix("/").expect("absolute"));
        std::fs::create_dir_all(at.parent().expect("parent")).expect("mkdir");
        std::fs::copy(std::fs::canonicalize(&f).expect("real file"), &at).expect("copy lib");
    }
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM scratch\nCOPY root/ /\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
         ENTRYPOINT [\"/usr/bin/redis-server\"]\n",
    )
    .expect("dockerfile");
}
