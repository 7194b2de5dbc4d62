"""Where results live: the DuckDB/Parquet results store (store.py, composed of locks.py, duckdb_file.py and
row_files.py), its schema and migrations (schema.py), and the folders on disk (paths.py)."""
