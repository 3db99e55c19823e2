//! The build context of the endpoint image: this very binary plus exactly the
//! shared libraries it loads, on a `FROM scratch` base. No registry is needed to
//! build it (nothing is pulled) and the tag is a content hash, so the same binary
//! always names the same image.
//!
//! Pure file reading and tar writing: the engine module sends the bytes to the
//! Docker build endpoint.
//!
//! Libraries are resolved with `lddtree` (reads the ELF dynamic section and the
//! loader's search paths; runs nothing). Each is read from its real file
//! (symlinks resolved) and placed at the path the loader searched it at, the
//! interpreter at the exact path named in the binary's `PT_INTERP`. The image
//! has no `ld.so.cache`, so the loader there searches only RPATH/RUNPATH and
//! its built-in directories (`/lib/<triple>`, `/usr/lib/<triple>`, `/lib`,
//! `/usr/lib` on Debian): a library the host found only through an extra
//! `ld.so.conf` entry (say `/usr/local/lib`) would not be found. glibc and
//! libgcc_s, all this binary needs, live in the built-in directories.
//!
//! Name resolution: since glibc 2.34 the `files` and `dns` NSS modules (and
//! libresolv) are built into libc itself; the `libnss_files.so.2` /
//! `libnss_dns.so.2` still shipped are empty compatibility stubs, so no NSS
//! module has to be copied. What glibc does need is a `/etc/nsswitch.conf`:
//! without one the `hosts` default is `dns [!UNAVAIL=return] files`, which never
//! reads `/etc/hosts` when a DNS server answers. Docker bind-mounts `/etc/hosts`,
//! `/etc/resolv.conf` (pointing at its embedded DNS, which knows the service
//! names) and `/etc/hostname` into every container, so the image only ships
//! `hosts: files dns`. No `/etc/passwd`: the container runs as root (uid 0) and
//! nothing in the binary looks users up.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use crate::container::{BINARY_PATH, SERVE_IMAGE};

/// The `/etc/nsswitch.conf` of the image: `/etc/hosts` first, then DNS.
const NSSWITCH_CONF: &str = "hosts: files dns\n";

/// Every entry of the tar gets this mtime, so the bytes depend only on content.
const FIXED_MTIME: u64 = 0;

/// Where image files sit inside the build context (`rootfs/<absolute path>`).
const ROOTFS: &str = "rootfs";

/// A tar build context for the endpoint image, and the tag to build it as.
#[derive(Debug, Clone)]
pub struct ServeImageContext {
    /// The tar archive (Dockerfile first, then `rootfs/…`), ready to send to a
    /// Docker build endpoint.
    pub tar: Vec<u8>,
    /// Full blake3 hex of the image content (every file's path and bytes).
    pub hash: String,
    /// The absolute paths the image holds, sorted: what a reader of a failed
    /// build needs to see.
    pub files: Vec<PathBuf>,
}

impl ServeImageContext {
    /// `reconcile-serve:<first 16 hex of the hash>`: the same binary and
    /// libraries always give the same tag, so an existing image is reused.
    pub fn tag(&self) -> String {
        format!("{SERVE_IMAGE}:{}", &self.hash[..16])
    }
}

/// Why the build context could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ServeImageError {
    /// A file to put into the image cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The binary is not a readable ELF, or its libraries cannot be searched.
    #[error("cannot resolve the shared libraries of {}: {source}", binary.display())]
    Resolve {
        /// The binary analysed.
        binary: PathBuf,
        /// What lddtree reported.
        source: lddtree::Error,
    },
    /// A library the binary needs is not on this machine.
    #[error("{} needs {name}, which is not found in the library search path", binary.display())]
    MissingLibrary {
        /// The binary analysed.
        binary: PathBuf,
        /// The library's soname.
        name: String,
    },
    /// A library or interpreter path is not absolute, so it has no place in the image.
    #[error("{} is not an absolute path", path.display())]
    RelativePath {
        /// The offending path.
        path: PathBuf,
    },
    /// Writing the archive into memory failed.
    #[error("cannot write the build context: {0}")]
    Tar(#[source] io::Error),
}

/// One file of the image: where it goes, what it holds, its mode.
struct ImageFile {
    bytes: Vec<u8>,
    mode: u32,
}

/// Builds the tar context of the endpoint image for `binary` (normally
/// `std::env::current_exe()`): Dockerfile, the binary at `/reconcile`, its
/// interpreter and libraries at the paths the loader looks for, and an
/// `/etc/nsswitch.conf`. Deterministic: the same files give the same bytes.
pub fn build_context(binary: &Path) -> Result<ServeImageContext, ServeImageError> {
    // Keyed by absolute path inside the image: sorted, and a file reached twice
    // (e.g. the loader, also a DT_NEEDED of libc) is stored once.
    let mut files: BTreeMap<PathBuf, ImageFile> = BTreeMap::new();

    let tree = lddtree::DependencyAnalyzer::new(PathBuf::from("/"))
        .analyze(binary)
        .map_err(|source| ServeImageError::Resolve {
            binary: binary.to_path_buf(),
            source,
        })?;

    // The kernel starts the interpreter by the exact path in PT_INTERP; glibc's
    // libc.so.6 also lists the loader as DT_NEEDED, but the loader satisfies
    // that by soname from itself, so the copy lddtree found through the search
    // path is not needed.
    let interp_name = tree.interpreter.as_deref().and_then(|i| {
        let path = PathBuf::from(i);
        path.file_name().map(|n| n.to_string_lossy().into_owned())
    });
    if let Some(interp) = &tree.interpreter {
        let at = absolute(Path::new(interp))?;
        let bytes = read_real(&at)?;
        files.insert(at, ImageFile { bytes, mode: 0o755 });
    }
    for (name, lib) in &tree.libraries {
        if Some(name) == interp_name.as_ref() {
            continue;
        }
        let Some(real) = &lib.realpath else {
            return Err(ServeImageError::MissingLibrary {
                binary: binary.to_path_buf(),
                name: name.clone(),
            });
        };
        let at = absolute(&lib.path)?;
        let bytes = read(real)?;
        files.insert(at, ImageFile { bytes, mode: 0o755 });
    }
    files.insert(
        PathBuf::from("/etc/nsswitch.conf"),
        ImageFile {
            bytes: NSSWITCH_CONF.as_bytes().to_vec(),
            mode: 0o644,
        },
    );
    files.insert(
        PathBuf::from(BINARY_PATH),
        ImageFile {
            bytes: read_real(binary)?,
            mode: 0o755,
        },
    );

    let dockerfile = dockerfile(files.keys().map(PathBuf::as_path));

    let mut hasher = blake3::Hasher::new();
    for (path, file) in &files {
        let p = path.as_os_str().as_encoded_bytes();
        hasher.update(&(p.len() as u64).to_le_bytes());
        hasher.update(p);
        hasher.update(&(file.bytes.len() as u64).to_le_bytes());
        hasher.update(&file.bytes);
    }
    hasher.update(dockerfile.as_bytes());
    let hash = hasher.finalize().to_hex().to_string();

    let mut builder = tar::Builder::new(Vec::new());
    append(
        &mut builder,
        Path::new("Dockerfile"),
        dockerfile.as_bytes(),
        0o644,
    )?;
    for (path, file) in &files {
        append(&mut builder, &context_path(path), &file.bytes, file.mode)?;
    }
    let tar = builder.into_inner().map_err(ServeImageError::Tar)?;

    Ok(ServeImageContext {
        tar,
        hash,
        files: files.into_keys().collect(),
    })
}

/// `FROM scratch`, one COPY per file (libraries before the binary, which
/// changes most often), and the binary as entrypoint.
fn dockerfile<'a>(paths: impl Iterator<Item = &'a Path>) -> String {
    let mut out = String::from("FROM scratch\n");
    let (binary, rest): (Vec<&Path>, Vec<&Path>) =
        paths.partition(|p| *p == Path::new(BINARY_PATH));
    for p in rest.into_iter().chain(binary) {
        out.push_str(&format!(
            "COPY {} {}\n",
            context_path(p).display(),
            p.display()
        ));
    }
    out.push_str(&format!("ENTRYPOINT [\"{BINARY_PATH}\"]\n"));
    out
}

/// `/lib/x/libc.so.6` → `rootfs/lib/x/libc.so.6`.
fn context_path(image_path: &Path) -> PathBuf {
    let rel = image_path.strip_prefix("/").unwrap_or(image_path);
    Path::new(ROOTFS).join(rel)
}

fn absolute(path: &Path) -> Result<PathBuf, ServeImageError> {
    if path.is_absolute() {
        Ok(path.to_path_buf())
    } else {
        Err(ServeImageError::RelativePath {
            path: path.to_path_buf(),
        })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, ServeImageError> {
    std::fs::read(path).map_err(|source| ServeImageError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads through symlinks to the real file (`fs::read` follows them too; the
/// canonical path only makes the error name the file that is really missing).
fn read_real(path: &Path) -> Result<Vec<u8>, ServeImageError> {
    let real = std::fs::canonicalize(path).map_err(|source| ServeImageError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    read(&real)
}

fn append(
    builder: &mut tar::Builder<Vec<u8>>,
    path: &Path,
    bytes: &[u8],
    mode: u32,
) -> Result<(), ServeImageError> {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(bytes.len() as u64);
    header.set_mode(mode);
    header.set_mtime(FIXED_MTIME);
    header.set_uid(0);
    header.set_gid(0);
    builder
        .append_data(&mut header, path, bytes)
        .map_err(ServeImageError::Tar)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test binary itself is a dynamically linked ELF like `reconcile`.
    fn context() -> ServeImageContext {
        let exe = std::env::current_exe().expect("test binary path");
        build_context(&exe).expect("build context")
    }

    fn entries(tar: &[u8]) -> BTreeMap<String, Vec<u8>> {
        let mut archive = tar::Archive::new(tar);
        let mut out = BTreeMap::new();
        for e in archive.entries().expect("entries") {
            let mut e = e.expect("entry");
            let path = e.path().expect("path").to_string_lossy().into_owned();
            let mut bytes = Vec::new();
            io::Read::read_to_end(&mut e, &mut bytes).expect("read entry");
            out.insert(path, bytes);
        }
        out
    }

    #[test]
    fn context_holds_dockerfile_binary_and_interpreter() {
        let exe = std::env::current_exe().expect("test binary path");
        let ctx = context();
        let entries = entries(&ctx.tar);

        let dockerfile = String::from_utf8(entries["Dockerfile"].clone()).expect("utf-8");
        assert!(dockerfile.starts_with("FROM scratch\n"), "{dockerfile}");
        assert!(dockerfile.contains("COPY rootfs/reconcile /reconcile\n"));
        assert!(dockerfile.ends_with("ENTRYPOINT [\"/reconcile\"]\n"));

        let binary = std::fs::read(&exe).expect("read test binary");
        assert_eq!(entries["rootfs/reconcile"], binary);

        let tree = lddtree::DependencyAnalyzer::default()
            .analyze(&exe)
            .expect("analyze");
        let interp = tree.interpreter.expect("dynamically linked test binary");
        let in_ctx = format!("{ROOTFS}{interp}");
        assert!(entries.contains_key(&in_ctx), "{in_ctx} missing");
        assert!(dockerfile.contains(&format!("COPY {in_ctx} {interp}\n")));
        assert!(ctx.files.contains(&PathBuf::from(&interp)));
        // The real loader's bytes, not a symlink entry.
        assert_eq!(
            entries[&in_ctx],
            std::fs::read(&interp).expect("read interpreter")
        );
        assert!(entries.contains_key("rootfs/etc/nsswitch.conf"));
        // Every file the Dockerfile copies is in the context.
        for line in dockerfile.lines().filter(|l| l.starts_with("COPY ")) {
            let src = line.split(' ').nth(1).expect("COPY source");
            assert!(
                entries.contains_key(src),
                "{src} copied but not in the context"
            );
        }
    }

    #[test]
    fn same_binary_same_bytes_and_hash() {
        let a = context();
        let b = context();
        assert_eq!(a.hash, b.hash);
        assert_eq!(a.tar, b.tar);
        assert_eq!(a.tag(), format!("{SERVE_IMAGE}:{}", &a.hash[..16]));
        assert_eq!(a.tag().len(), SERVE_IMAGE.len() + 1 + 16);
    }

    #[test]
    fn missing_binary_is_an_error() {
        let err = build_context(Path::new("/nonexistent/reconcile")).expect_err("no such file");
        assert!(err.to_string().contains("/nonexistent/reconcile"), "{err}");
    }
}
