//! The stores' schema migrations, compiled in.
//!
//! Listed here rather than found by `sqlx::migrate!`: that macro needs sqlx's
//! `macros` feature, which builds a second copy of sqlx's drivers (and
//! SQLite's C source) for the compiler's host — about 150 s of CPU in each
//! clean build, clippy's and the tests', for two calls. Each migration's
//! checksum is sqlx's own (of the file's text), its version and description
//! are parsed from the file name as sqlx does, so a database migrated by
//! either agrees; the tests below hold the lists to the folders.

use std::borrow::Cow;

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// One migration file, `migrations/<dir>/<version>_<description>.sql`.
macro_rules! migration {
    ($dir:literal, $version:literal, $description:literal) => {
        (
            $version,
            $description,
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/migrations/",
                $dir,
                "/",
                $version,
                "_",
                $description,
                ".sql"
            )),
        )
    };
}

/// (version as in the file name, description as in the file name, SQL).
type Listed = (&'static str, &'static str, &'static str);

const SQLITE: &[Listed] = &[
    migration!("sqlite", "0001", "init"),
    migration!("sqlite", "0002", "online"),
    migration!("sqlite", "0003", "registry"),
    migration!("sqlite", "0005", "monitoring"),
    migration!("sqlite", "0007", "gitops"),
];

const POSTGRES: &[Listed] = &[
    migration!("postgres", "0001", "init"),
    migration!("postgres", "0002", "online"),
    migration!("postgres", "0003", "registry"),
    migration!("postgres", "0004", "artifact_storage"),
    migration!("postgres", "0005", "monitoring"),
    migration!("postgres", "0007", "gitops"),
    migration!("postgres", "0008", "online_partitions"),
];

fn migrator(listed: &[Listed]) -> Migrator {
    Migrator::with_migrations(
        listed
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    // The list holds digits only (the tests parse every entry).
                    version.parse().unwrap_or_default(),
                    Cow::Owned(description.replace('_', " ")),
                    MigrationType::Simple,
                    sqlx::AssertSqlSafe(*sql).into_sql_str(),
                    sql.starts_with("-- no-transaction"),
                )
            })
            .collect(),
    )
}

/// The SQLite store's migrations.
pub fn sqlite() -> Migrator {
    migrator(SQLITE)
}

/// The PostgreSQL store's migrations.
pub fn postgres() -> Migrator {
    migrator(POSTGRES)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The compiled-in list against sqlx's own reading of the folder:
    /// the same versions, descriptions, checksums and SQL, none missing.
    async fn same_as_folder(dir: &str, ours: Migrator) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(dir);
        let theirs = Migrator::new(path).await.expect("the folder resolves");
        let key = |m: &Migration| {
            (
                m.version,
                m.description.to_string(),
                m.checksum.to_vec(),
                m.sql.as_str().to_string(),
                m.no_tx,
            )
        };
        let ours: Vec<_> = ours.iter().map(key).collect();
        let theirs: Vec<_> = theirs.iter().map(key).collect();
        assert_eq!(
            ours, theirs,
            "migrations/{dir} and src/store/migrations.rs differ"
        );
    }

    #[tokio::test]
    async fn the_lists_are_the_folders() {
        same_as_folder("sqlite", sqlite()).await;
        same_as_folder("postgres", postgres()).await;
    }

    #[test]
    fn versions_are_numbers() {
        for (version, _, _) in SQLITE.iter().chain(POSTGRES) {
            assert!(version.parse::<i64>().is_ok(), "{version}");
        }
    }
}
