"""The seed's REST API (`greenai serve`): a thin FastAPI app (`app`) over plain functions (`service`)."""
