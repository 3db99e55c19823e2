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

/// Writes into `dir` a build context for a PostgreSQL server image made from
/// this machine's PostgreSQL (its binaries, share files, the two modules
/// `initdb` loads, the libraries they link, the system time zones) plus
/// busybox. The container initializes a throwaway cluster in /tmp on start,
/// trusts every client (it lives on a test's own network) and listens on 5432.
pub fn postgres_context(dir: &Path) {
    let version = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (.ci/run installs it)")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .max()
        .expect("a PostgreSQL version");
    let lib = PathBuf::from(format!("/usr/lib/postgresql/{version}"));
    let root = dir.join("root");
    let mut elves = vec![
        lib.join("bin/postgres"),
        lib.join("bin/initdb"),
        lib.join("bin/pg_isready"),
        lib.join("lib/plpgsql.so"),
        lib.join("lib/dict_snowball.so"),
    ];
    let mut files = elves.clone();
    let mut seen = std::collections::HashSet::new();
    while let Some(elf) = elves.pop() {
        let tree = lddtree::DependencyAnalyzer::new(PathBuf::from("/"))
            .analyze(&elf)
            .unwrap_or_else(|e| panic!("resolve {}'s libraries: {e}", elf.display()));
        for l in tree.libraries.values() {
            if seen.insert(l.path.clone()) {
                files.push(l.path.clone());
            }
        }
        if let Some(interp) = &tree.interpreter
            && seen.insert(PathBuf::from(interp))
        {
            files.push(PathBuf::from(interp));
        }
    }
    for f in files {
        let at = root.join(f.strip_prefix("/").expect("absolute"));
        std::fs::create_dir_all(at.parent().expect("parent")).expect("mkdir");
        std::fs::copy(std::fs::canonicalize(&f).expect("real file"), &at).expect("copy file");
    }
    for tree in [
        PathBuf::from(format!("/usr/share/postgresql/{version}")),
        PathBuf::from("/usr/share/zoneinfo"),
    ] {
        copy_tree(&tree, &root.join(tree.strip_prefix("/").expect("absolute")));
    }
    std::fs::create_dir_all(root.join("bin")).expect("mkdir");
    std::fs::copy(busybox(), root.join("bin/busybox")).expect("copy busybox");
    std::fs::create_dir_all(root.join("etc")).expect("mkdir");
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\npostgres:x:999:999::/tmp:/bin/sh\n",
    )
    .expect("passwd");
    std::fs::write(root.join("etc/group"), "root:x:0:\npostgres:x:999:\n").expect("group");
    let start = format!(
        "initdb -D /tmp/pg -U postgres --auth=trust -E UTF8 --locale=C >/tmp/initdb.log 2>&1 \
         || {{ cat /tmp/initdb.log; exit 1; }}; \
         echo 'host all all 0.0.0.0/0 trust' >> /tmp/pg/pg_hba.conf; \
         exec /usr/lib/postgresql/{version}/bin/postgres -D /tmp/pg -c listen_addresses=* \
         -c unix_socket_directories=/tmp -c jit=off -c fsync=off"
    );
    std::fs::write(
        dir.join("Dockerfile"),
        format!(
            "FROM scratch\nCOPY root/ /\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
             RUN [\"/bin/sh\", \"-c\", \"mkdir -p /tmp && chmod 1777 /tmp\"]\n\
             ENV PATH=/usr/lib/postgresql/{version}/bin:/bin\nUSER postgres\n\
             ENTRYPOINT [\"/bin/sh\", \"-c\", \"{start}\"]\n"
        ),
    )
    .expect("dockerfile");
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let path = entry.path();
        let target = to.join(entry.file_name());
        let meta = std::fs::metadata(&path);
        match meta {
            Ok(m) if m.is_dir() => copy_tree(&path, &target),
            Ok(_) => {
                std::fs::copy(&path, &target).expect("copy file");
            }
            // A dangling link in the system tree: nothing to copy.
            Err(_) => {}
        }
    }
}
