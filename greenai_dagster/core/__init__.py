"""Plain Python core: never imports Dagster, so every piece is testable on its own."""
