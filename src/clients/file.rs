//! Safe edits of a client's configuration file.
