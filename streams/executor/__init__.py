"""The executor process: runs approved actions once, keeps offsets in order, and rolls back what failed."""
