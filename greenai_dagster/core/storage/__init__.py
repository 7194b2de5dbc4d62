"""Where results live: the DuckDB/Parquet results store, its schema and migrations, and the folders on disk."""
