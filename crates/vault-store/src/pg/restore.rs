//! Restoring a backup file into an empty database.
