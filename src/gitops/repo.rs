//! The git side of GitOps, through libgit2 (`git2`): a bare mirror of the
//! source repository in the GitOps home, fetched on every poll; the new
//! commits of the branch in order (first parents, oldest first); and each
//! commit's tree written into a work tree of its own.
//!
//! Why git2 and not gix: libgit2's checkout writes any commit's tree into any
//! folder (`CheckoutBuilder::target_dir`) and its fetch speaks local paths,
//! `file://` and `git://` with no optional features (so no TLS stack comes
//! along); with gix the same checkout goes through its lower-level
//! worktree-state API. Nothing here shells out to `git`.

use std::path::{Path, PathBuf};

use git2::{FetchOptions, Oid, Repository, build::CheckoutBuilder};

/// Why a git step failed.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// libgit2 refused.
    #[error("{what}: {source}")]
    Git {
        /// The step.
        what: String,
        /// libgit2's error.
        source: git2::Error,
    },
    /// The branch does not exist in the source.
    #[error("the source has no branch `{0}`")]
    NoBranch(String),
    /// A recorded commit id is not one.
    #[error("`{0}` is not a commit id")]
    BadId(String),
    /// A folder could not be prepared.
    #[error("{what}: {source}")]
    Io {
        /// The step.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
}

fn git(what: impl Into<String>) -> impl FnOnce(git2::Error) -> GitError {
    let what = what.into();
    move |source| GitError::Git { what, source }
}

/// A commit's identity, as recorded and printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitInfo {
    /// Full object id.
    pub sha: String,
    /// First line of the message.
    pub subject: String,
    /// Author name.
    pub author: String,
    /// Commit time, ms since the epoch.
    pub time_ms: i64,
}

impl CommitInfo {
    /// The first 12 characters of the id.
    pub fn short(&self) -> &str {
        &self.sha[..self.sha.len().min(12)]
    }
}

/// The mirror of one source repository and branch.
pub struct Mirror {
    repo: Repository,
    source: String,
    branch: String,
}

impl Mirror {
    /// Opens (creating it when missing) the bare mirror at `path` of `source`
    /// (a local path or a git URL).
    pub fn open(path: &Path, source: &str, branch: &str) -> Result<Mirror, GitError> {
        let repo = match Repository::open_bare(path) {
            Ok(r) => r,
            Err(_) => {
                std::fs::create_dir_all(path).map_err(|source| GitError::Io {
                    what: format!("creating {}", path.display()),
                    source,
                })?;
                Repository::init_bare(path)
                    .map_err(git(format!("creating the mirror at {}", path.display())))?
            }
        };
        Ok(Mirror {
            repo,
            source: source.to_string(),
            branch: branch.to_string(),
        })
    }

    fn tracking_ref(&self) -> String {
        format!("refs/reconcile/source/{}", self.branch)
    }

    /// Fetches the branch; returns its head commit.
    pub fn fetch(&self) -> Result<Oid, GitError> {
        let mut remote = self
            .repo
            .remote_anonymous(&self.source)
            .map_err(git(format!("reading {}", self.source)))?;
        let refspec = format!("+refs/heads/{}:{}", self.branch, self.tracking_ref());
        let mut opts = FetchOptions::new();
        opts.download_tags(git2::AutotagOption::None);
        remote
            .fetch(&[refspec.as_str()], Some(&mut opts), None)
            .map_err(git(format!(
                "fetching {} from {}",
                self.branch, self.source
            )))?;
        let head = self
            .repo
            .refname_to_id(&self.tracking_ref())
            .map_err(|_| GitError::NoBranch(self.branch.clone()))?;
        Ok(head)
    }

    /// The commits after `since` up to `head`, oldest first, following first
    /// parents (the branch's own history); only `head` when `since` is not
    /// one of its ancestors (a first run, or a force-push).
    pub fn new_commits(&self, since: Option<Oid>, head: Oid) -> Result<Vec<Oid>, GitError> {
        let Some(since) = since else {
            return Ok(vec![head]);
        };
        if since == head {
            return Ok(Vec::new());
        }
        let mut walk = self.repo.revwalk().map_err(git("walking the history"))?;
        walk.push(head).map_err(git("walking the history"))?;
        walk.simplify_first_parent()
            .map_err(git("walking the history"))?;
        let mut commits = Vec::new();
        for oid in walk {
            let oid = oid.map_err(git("walking the history"))?;
            if oid == since {
                commits.reverse();
                return Ok(commits);
            }
            commits.push(oid);
        }
        Ok(vec![head])
    }

    /// Subject, author and time of a commit.
    pub fn info(&self, oid: Oid) -> Result<CommitInfo, GitError> {
        let c = self
            .repo
            .find_commit(oid)
            .map_err(git(format!("reading commit {oid}")))?;
        Ok(CommitInfo {
            sha: oid.to_string(),
            subject: c
                .summary_bytes()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default(),
            author: String::from_utf8_lossy(c.author().name_bytes()).into_owned(),
            time_ms: c.time().seconds() * 1000,
        })
    }

    /// Writes the tree of `oid` into `dir` (which must not exist yet).
    pub fn checkout(&self, oid: Oid, dir: &Path) -> Result<PathBuf, GitError> {
        let tree = self
            .repo
            .find_commit(oid)
            .and_then(|c| c.tree())
            .map_err(git(format!("reading the tree of {oid}")))?;
        let partial = dir.with_extension("partial");
        if partial.exists() {
            std::fs::remove_dir_all(&partial).map_err(|source| GitError::Io {
                what: format!("removing {}", partial.display()),
                source,
            })?;
        }
        std::fs::create_dir_all(&partial).map_err(|source| GitError::Io {
            what: format!("creating {}", partial.display()),
            source,
        })?;
        let mut co = CheckoutBuilder::new();
        co.target_dir(&partial).force().recreate_missing(true);
        self.repo
            .checkout_tree(tree.as_object(), Some(&mut co))
            .map_err(git(format!("checking out {oid}")))?;
        // Whole or not at all: a work tree appears under its final name only
        // once every file is written.
        std::fs::rename(&partial, dir).map_err(|source| GitError::Io {
            what: format!("moving the work tree of {oid} into place"),
            source,
        })?;
        Ok(dir.to_path_buf())
    }
}

/// Parses a commit id written by this module.
pub fn parse_oid(s: &str) -> Option<Oid> {
    Oid::from_str(s.trim()).ok()
}
